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

The statistical gate, for changes that may move roundings (a fused or reordered sum):

    python tools/fingerprint.py --stat OUT.json [--fashion] [--jit] [--nudge]  # before, and after
    python tools/fingerprint.py --compare BEFORE.json AFTER.json
    python tools/fingerprint.py --spread OUT.json N [--jit]     # the two chaotic cells over N seeds
    python tools/fingerprint.py --compare-spread BEFORE.json AFTER.json
    python tools/fingerprint.py --noise K [--jit]      # the two chaotic cells under K pure-rounding changes

``--stat`` records the mnist-5k step-size grid over 3 seeds (784-500-10, 5 epochs; SIBP over eta, SGD
over lr, each over 100 ... 0.01, and Adam at lr 1e-3), the deep-network row of SIBP's default
(784-600x10-10 from N(0, 0.05^2), mnist-5k, 2 epochs, eta 0.1, 1, 10, seed 0), and with ``--fashion``
SIBP's best Table 1 cell on Fashion-MNIST (eta 1, lam 1, 2 epochs, 5 runs). ``--compare`` passes when
the mean train and validation accuracies per step size move by at most 0.005, each deep-network cell
by at most 0.02, and the Fashion cell's mean by at most its standard deviation over the runs. ``--jit``
runs every SIBP cell with ``jit=True`` (the compiled inner solver, which needs Numba). ``--nudge``
multiplies the training inputs by ``1 + eps`` (one unit in the last place of float32) and changes nothing
else: how far rounding alone moves each cell, the noise floor of the gate's thresholds. ``--noise K``
repeats that for the two most chaotic cells with ``1 + k eps``, k = 1 ... K, and counts how many of
these pure-rounding changes the fixed limits reject.
"""
import hashlib
import json
import math
import sys
import types

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


STAT_SEEDS = (0, 1, 2)
GRID_LIMIT, DEEP_LIMIT = 0.005, 0.02  # the fixed gate's largest moves of a grid cell and a deep cell
DEEP = [784] + [600] * 10 + [10]


def _final(model, method, data, epochs, seed, batch_size=100):
    with np.errstate(all="ignore"):
        h = fit(model, method, *data.train, val=data.val, epochs=epochs, batch_size=batch_size, seed=seed,
                verbose=0)
    return [h.last["train_acc"], h.last["val_acc"]]


def _nudged(data, k=1):
    """``data`` with its training inputs multiplied by ``1 + k eps`` (float32's)."""
    X, y = data.train
    return types.SimpleNamespace(train=(X * np.float32(1 + k * np.finfo(np.float32).eps), y), val=data.val)


def _grid_cell(data, name, hp):
    """A grid cell of ``--stat``: mean (train, val) accuracy over ``STAT_SEEDS`` on 784-500-10, 5 epochs."""
    return np.mean([_final(MLP([784, 500, 10], seed=s), get_method(name, **hp), data, 5, s)
                    for s in STAT_SEEDS], axis=0).tolist()


def _deep_cell(data, eta, sibp):
    """A deep-network cell of ``--stat``: SIBP at ``eta`` on 784-600x10-10 from N(0, 0.05^2), 2 epochs,
    seed 0."""
    return _final(MLP(DEEP, init_std=0.05, seed=0), get_method("sibp", eta=eta, **sibp), data, 2, 0)


def stat_rows(fashion=False, jit=False, nudge=False):
    """The statistics the gate compares (see the module docstring)."""
    out = {"grid": {}, "deep": {}, "fashion": None}
    data = load_dataset("mnist-5k")
    data = _nudged(data) if nudge else data
    sibp = {"jit": True} if jit else {}
    for name, param in (("sibp", "eta"), ("sgd", "lr")):
        for v in GRID:
            hp = {param: v, **(sibp if name == "sibp" else {})}
            out["grid"][f"{name} {param}={v:g}"] = _grid_cell(data, name, hp)
            print(name, v, out["grid"][f"{name} {param}={v:g}"], flush=True)
    out["grid"]["adam lr=0.001"] = _grid_cell(data, "adam", {})
    for eta in (0.1, 1.0, 10.0):
        out["deep"][f"eta={eta:g}"] = _deep_cell(data, eta, sibp)
        print("deep", eta, out["deep"][f"eta={eta:g}"], flush=True)
    if fashion:
        fm = _nudged(load_dataset("fashion-mnist")) if nudge else load_dataset("fashion-mnist")
        runs = [_final(MLP([784, 500, 10], seed=s), get_method("sibp", eta=1.0, lam=1.0, **sibp), fm, 2,
                       s) for s in range(5)]
        out["fashion"] = {"mean": np.mean(runs, axis=0).tolist(), "std": np.std(runs, axis=0).tolist()}
        print("fashion", out["fashion"], flush=True)
    return out


SPREAD_CELLS = (("mnist-5k 784-500-10 sibp eta=100, 5 epochs", [784, 500, 10], None, 100.0, 5),
                ("deep 784-600x10-10 sibp eta=10, 2 epochs", DEEP, 0.05, 10.0, 2))


def spread_rows(seeds, jit=False):
    """The gate's two most chaotic cells (the grid's eta = 100 and the deep network's eta = 10) over
    ``seeds``, per seed: whether a change moved them beyond their seed-to-seed spread."""
    data = load_dataset("mnist-5k")
    out = {}
    for label, sizes, std, eta, epochs in SPREAD_CELLS:
        init = {"init_std": std} if std else {}
        out[label] = [_final(MLP(sizes, seed=s, **init), get_method("sibp", eta=eta, jit=jit), data,
                             epochs, s) for s in seeds]
        print(label, out[label], flush=True)
    return out


def noise_report(K, jit=False):
    """How far rounding alone moves the gate's two most chaotic cells (the grid's SIBP eta = 100 and the
    deep network's eta = 10, computed as ``--stat`` does): the training inputs multiplied by
    ``1 + k eps`` for k = 1 ... K, each run against k = 0, and how many of these pure-rounding changes
    the fixed limits reject."""
    data, sibp = load_dataset("mnist-5k"), ({"jit": True} if jit else {})
    cells = {"grid eta=100": (GRID_LIMIT, lambda d: _grid_cell(d, "sibp", {"eta": 100.0, **sibp})),
             "deep eta=10": (DEEP_LIMIT, lambda d: _deep_cell(d, 10.0, sibp))}
    rows = {c: [] for c in cells}
    for k in range(K + 1):
        d = _nudged(data, k) if k else data
        for c, (_, run) in cells.items():
            rows[c].append(run(d))
        print(f"k={k}", {c: np.round(v[-1], 4).tolist() for c, v in rows.items()}, flush=True)
    lines = [f"SIBP(jit={jit}): the moves |d| = max over train/val against k = 0"]
    over = np.zeros(K, dtype=bool)
    for c, (limit, _) in cells.items():
        r = np.array(rows[c])
        d = np.abs(r[1:] - r[0]).max(axis=1)
        over |= d > limit
        lines.append(f"{c}: |d| {np.round(np.sort(d), 4).tolist()}; median {np.median(d):.4f}, "
                     f"max {d.max():.4f}; {(d > limit).sum()} of {K} over the limit {limit}")
    lines.append(f"the fixed gate fails {over.sum()} of these {K} pure-rounding changes on these two "
                 f"cells alone")
    return "\n".join(lines)


def compare_spread(before, after):
    """Per cell: the mean over seeds before and after, and whether they differ by at most twice the
    standard error of the difference of two means (a two-sample test at about 95%)."""
    lines, ok = [], True
    for label in before:
        b, a = np.array(before[label]), np.array(after[label])
        for col, name in enumerate(("train", "val")):
            se = math.sqrt(b[:, col].var(ddof=1) / len(b) + a[:, col].var(ddof=1) / len(a))
            d = abs(a[:, col].mean() - b[:, col].mean())
            good = d <= 2 * se
            ok &= good
            lines.append(f"{label} {name}: {b[:, col].mean():.4f} +- {b[:, col].std(ddof=1):.4f} -> "
                         f"{a[:, col].mean():.4f} +- {a[:, col].std(ddof=1):.4f} ({len(b)} seeds)  "
                         f"|d| {d:.4f} <= 2 se {2 * se:.4f} {'ok' if good else 'FAIL'}")
    lines.append("spread gate: " + ("PASS" if ok else "FAIL"))
    return "\n".join(lines), ok


def compare(before, after):
    """The gate's verdict on two ``--stat`` files: a report, and whether every check passed."""
    lines, ok = [], True
    for key, (b, a) in ((k, (before["grid"][k], after["grid"][k])) for k in before["grid"]):
        d = max(abs(x - y) for x, y in zip(a, b))
        ok &= d <= GRID_LIMIT
        lines.append(f"grid {key:<16} train/val {b[0]:.4f}/{b[1]:.4f} -> {a[0]:.4f}/{a[1]:.4f}  "
                     f"|d| {d:.4f} <= {GRID_LIMIT} {'ok' if d <= GRID_LIMIT else 'FAIL'}")
    for key in before["deep"]:
        b, a = before["deep"][key], after["deep"][key]
        d = max(abs(x - y) for x, y in zip(a, b))
        ok &= d <= DEEP_LIMIT
        lines.append(f"deep {key:<16} train/val {b[0]:.4f}/{b[1]:.4f} -> {a[0]:.4f}/{a[1]:.4f}  "
                     f"|d| {d:.4f} <= {DEEP_LIMIT} {'ok' if d <= DEEP_LIMIT else 'FAIL'}")
    if before.get("fashion") and after.get("fashion"):
        b, a, sd = before["fashion"]["mean"], after["fashion"]["mean"], before["fashion"]["std"]
        good = all(abs(x - y) <= s for x, y, s in zip(a, b, sd))
        ok &= good
        lines.append(f"fashion best cell train/val {b[0]:.4f}/{b[1]:.4f} -> {a[0]:.4f}/{a[1]:.4f}  "
                     f"within std {sd[0]:.4f}/{sd[1]:.4f}: {'ok' if good else 'FAIL'}")
    lines.append("gate: " + ("PASS" if ok else "FAIL"))
    return "\n".join(lines), ok


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--compare"] and len(argv) == 3:
        from pathlib import Path
        report, ok = compare(*(json.loads(Path(p).read_text()) for p in argv[1:]))
        print(report)
        raise SystemExit(0 if ok else 1)
    if argv[:1] == ["--compare-spread"] and len(argv) == 3:
        from pathlib import Path
        report, ok = compare_spread(*(json.loads(Path(p).read_text()) for p in argv[1:]))
        print(report)
        raise SystemExit(0 if ok else 1)
    if argv[:1] == ["--spread"] and len(argv) in (3, 4):
        with threadpool_limits(1):
            rows = spread_rows(range(int(argv[2])), jit="--jit" in argv[3:])
        write_text(argv[1], json.dumps(rows, indent=1))
        return
    if argv[:1] == ["--noise"] and len(argv) in (2, 3):
        with threadpool_limits(1):
            print(noise_report(int(argv[1]), jit="--jit" in argv[2:]))
        return
    if argv[:1] == ["--stat"]:
        rest = argv[1:]
        flags = ("--fashion", "--jit", "--nudge")
        fashion, jit, nudge = (f in rest for f in flags)
        rest = [r for r in rest if r not in flags]
        if len(rest) != 1:
            raise SystemExit(__doc__)
        with threadpool_limits(1):
            write_text(rest[0], json.dumps(stat_rows(fashion, jit, nudge), indent=1))
        return
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
