"""A fingerprint of the algorithms' numbers, for refactors that must not change them.

    python tools/fingerprint.py OUT.json          # at 1 BLAS thread
    python tools/fingerprint.py --steps OUT.json  # the quick part only (about a minute)

Runs the mnist-5k step-size grid (784-500-10, 5 epochs, seed 0; SIBP and ProxBP at lam = 1 over eta,
SGD over lr, each over 100, 10, 1, 0.1, 0.01) and writes, per run, every history column and the first
16 hex digits of the SHA-256 of the final parameters. Then, for every method and form (Adam, RMSprop,
SGD with momentum, SIBP's primal, dual and exact-output forms, ``compat="matlab"``, ProxBP's CG and exact
solves) on 784-500-10, 784-600x4-10 and 200-300-300-10, the same digest after 12 minibatch steps from
seed 0 (the ``steps`` part). Two fingerprints from the same machine and thread
count are equal iff every run gave the same numbers, bit for bit (`cmp before.json after.json`).
"""
import hashlib
import json
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, fit, get_method, load_dataset
from sibp_np._io import write_text

GRID = (100.0, 10.0, 1.0, 0.1, 0.01)
RUNS = (("sibp", "eta", {"lam": 1.0}), ("sgd", "lr", {}), ("proxbp", "eta", {"lam": 1.0}))
COLUMNS = ("train_acc", "val_acc", "train_loss", "val_loss", "batch_loss")
STEP_NETS = ([784, 500, 10], [784, 600, 600, 600, 600, 10], [200, 300, 300, 10])
STEP_METHODS = (("adam", {}), ("rmsprop", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
                ("sibp", {"weight_form": "primal"}), ("sibp", {"weight_form": "dual"}),
                ("sibp", {"eta": 10.0, "linear_solve": "exact"}), ("sibp", {"safeguard": "none"}),
                ("sibp", {"compat": "matlab", "lam": 2.0}), ("sibp", {"cg_variant": "pr+"}),
                ("proxbp", {}), ("proxbp", {"linear_solve": "exact"}))


def digest(model):
    return hashlib.sha256(b"".join(a.tobytes() for a in model.get_params().values())).hexdigest()[:16]


def step_rows(steps=12, batch=100):
    """Digests of the parameters after ``steps`` minibatch steps of every method form on every net."""
    rows = []
    r = np.random.default_rng(0)
    for sizes in STEP_NETS:
        X = r.random((steps * batch, sizes[0]), dtype=np.float32)
        y = r.integers(0, sizes[-1], steps * batch)
        for name, hp in STEP_METHODS:
            model, method = MLP(sizes, seed=0, init_std=0.05), get_method(name, **hp)
            losses = [method.step(model, X[j:j + batch], y[j:j + batch]) for j in range(0, len(y), batch)]
            rows.append({"net": sizes, "method": name, **hp, "losses": losses, "params_sha": digest(model)})
            print(sizes, name, hp, rows[-1]["params_sha"], flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = argv[:1] == ["--steps"]
    argv = argv[1:] if quick else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    rows = []
    with threadpool_limits(1):
        rows.append({"steps": step_rows()})
        if quick:
            write_text(argv[0], json.dumps(rows, indent=1))
            return
        data = load_dataset("mnist-5k")
        for name, param, fixed in RUNS:
            for v in GRID:
                model = MLP([784, 500, 10], seed=0)
                h = fit(model, get_method(name, **{param: v}, **fixed), *data.train, val=data.val,
                        epochs=5, seed=0, verbose=0)
                rows.append({"method": name, param: v, "diverged": h.diverged,
                             "params_sha": digest(model), **{k: h[k] for k in COLUMNS}})
                print(name, v, h.last["train_acc"], h.last["val_acc"], rows[-1]["params_sha"], flush=True)
    write_text(argv[0], json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
