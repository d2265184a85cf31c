"""How far rounding alone moves the statistical gate's two most chaotic cells: the training inputs
multiplied by ``1 + k eps`` (float32's eps, k = 1 ... K; a few ulps, nothing else changed), each run
against k = 0, and the fraction of those pure-rounding changes that the fixed gate's limits would
reject.

    python gate_noise.py K [--jit]

Cells as in ``tools/fingerprint.py --stat``: the mnist-5k grid's SIBP eta = 100 (784-500-10, 5
epochs, the mean over seeds 0-2; limit 0.005) and the deep network's eta = 10 (784-600x10-10 from
N(0, 0.05^2), 2 epochs, seed 0; limit 0.02). 1 BLAS thread.
"""
import sys
import types

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, fit, get_method, load_dataset

DEEP = [784] + [600] * 10 + [10]


def final(model, method, data, epochs, seed):
    with np.errstate(all="ignore"):
        h = fit(model, method, *data.train, val=data.val, epochs=epochs, batch_size=100, seed=seed, verbose=0)
    return np.array([h.last["train_acc"], h.last["val_acc"]])


def nudged(data, k):
    X, y = data.train
    return types.SimpleNamespace(train=(X * np.float32(1 + k * np.finfo(np.float32).eps), y), val=data.val)


def main():
    K = int(sys.argv[1])
    kw = {"jit": True} if "--jit" in sys.argv[2:] else {}
    data = load_dataset("mnist-5k")
    rows = {"grid eta=100": [], "deep eta=10": []}
    with threadpool_limits(1):
        for k in range(K + 1):
            d = nudged(data, k) if k else data
            rows["grid eta=100"].append(np.mean([final(MLP([784, 500, 10], seed=s),
                                                       get_method("sibp", eta=100.0, lam=1.0, **kw), d, 5, s)
                                                 for s in (0, 1, 2)], axis=0))
            deep = MLP(DEEP, init_std=0.05, seed=0)
            rows["deep eta=10"].append(final(deep, get_method("sibp", eta=10.0, **kw), d, 2, 0))
            print(f"k={k}", {c: np.round(v[-1], 4).tolist() for c, v in rows.items()}, flush=True)
    name = f"SIBP({', '.join(f'{a}={b}' for a, b in kw.items())})"
    print(f"{name}: the moves |d| = max over train/val against k = 0")
    over = np.zeros(K, dtype=bool)
    for cell, limit in (("grid eta=100", 0.005), ("deep eta=10", 0.02)):
        r = np.array(rows[cell])
        d = np.abs(r[1:] - r[0]).max(axis=1)
        over |= d > limit
        print(f"{cell}: |d| {np.round(np.sort(d), 4).tolist()}; median {np.median(d):.4f}, "
              f"max {d.max():.4f}; {(d > limit).sum()} of {len(d)} over the limit {limit}")
    print(f"the fixed gate fails {over.sum()} of these {K} pure-rounding changes on these two cells alone")


if __name__ == "__main__":
    main()
