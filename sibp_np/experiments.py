"""Experiment commands that reproduce the paper: ``sibp-np table1`` (Table 1).

Run r of every method starts from the same initial weights (``seed + r``) and sees the same minibatches
(shuffling seeded by ``seed + r``), so the methods differ only in the method.
"""
import json
import math
import os
import time

import numpy as np

GRID = (100.0, 10.0, 1.0, 0.1, 0.01)

#: (label, method, swept quantity, fixed hyperparameters). "inv_lam" sweeps 1/lambda.
TABLE1_ROWS = (
    ("SGD, η", "sgd", "lr", {}),
    ("ProxBP (λ=1, η)", "proxbp", "eta", {"lam": 1.0}),
    ("ProxBP (η=1, 1/λ)", "proxbp", "inv_lam", {"eta": 1.0}),
    ("Semi-implicit (λ=1, η)", "sibp", "eta", {"lam": 1.0}),
    ("Semi-implicit (η=0.1, 1/λ)", "sibp", "inv_lam", {"eta": 0.1}),
)

#: The paper's Table 1 (MNIST 55k, 784-500-10, 2 epochs, mean of 5 runs): train / validation accuracy
#: per step size 100, 10, 1, 0.1, 0.01, quoted for reference.
PAPER_TABLE1 = {
    "SGD, η": ((0.0985, 0.1123, 0.9835, 0.9487, 0.8885), (0.1002, 0.1126, 0.9760, 0.9492, 0.8988)),
    "ProxBP (λ=1, η)": ((0.9239, 0.9349, 0.9390, 0.9032, 0.8415), (0.9344, 0.9374, 0.9494, 0.9244, 0.8832)),
    "ProxBP (η=1, 1/λ)": ((0.9420, 0.9444, 0.9383, 0.9171, 0.8743), (0.9486, 0.9554, 0.9494, 0.9344, 0.9064)),
    "Semi-implicit (λ=1, η)": ((0.9780, 0.9801, 0.9904, 0.9737, 0.9104), (0.9710, 0.9724, 0.9800, 0.9748, 0.9338)),
    "Semi-implicit (η=0.1, 1/λ)": ((0.9765, 0.9752, 0.9735, 0.9598, 0.9206), (0.9736, 0.9778, 0.9738, 0.9672, 0.9394)),
}


def add_commands(sub):
    p = sub.add_parser("table1", help="the paper's Table 1: every method over the step-size grid",
                       description="Reproduce Table 1: train/validation accuracy (mean ± std over runs) "
                       "for SGD, ProxBP and SIBP over the step sizes 100, 10, 1, 0.1, 0.01.")
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--data-root", default=None)
    p.add_argument("--layers", default=None, help="default: inputs,500,classes")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--backend", default=None)
    p.add_argument("--grid", default=",".join(f"{g:g}" for g in GRID))
    p.add_argument("--sibp-eta-scale", type=float, default=1.0,
                   help="multiply the SIBP rows' eta by this (e.g. 0.01 = 1/batch: SIBP's eta is a "
                        "per-sample step, SGD's lr a batch-mean step)")
    p.add_argument("--rows", default=None, help="comma-separated row numbers (1-5) to run; default all")
    p.add_argument("--out", default="table1_out", help="folder for table1.md/.json/.h5")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run_table1)
    return sub


def _method(name, swept, value, fixed, eta_scale):
    from .methods import get_method
    kw = dict(fixed)
    if swept == "inv_lam":
        kw["lam"] = 1.0 / value
    else:
        kw[swept] = value
    if name == "sibp":
        kw["eta"] = kw["eta"] * eta_scale
    return get_method(name, **kw)


def run_table1(args):
    import h5py

    from ._validation import check_int
    from .datasets import load_dataset
    from .model import MLP
    from .train import fit
    runs = check_int("--runs", args.runs, minimum=1)
    data = load_dataset(args.dataset, root=args.data_root, dtype=args.dtype)
    layers = [int(v) for v in args.layers.split(",")] if args.layers else [data.n_features, 500,
                                                                            data.n_classes]
    grid = [float(v) for v in args.grid.split(",")]
    rows = TABLE1_ROWS if args.rows is None else [TABLE1_ROWS[int(k) - 1] for k in args.rows.split(",")]
    os.makedirs(args.out, exist_ok=True)
    results = []
    h5 = h5py.File(os.path.join(args.out, "table1.h5"), "w")
    t0 = time.perf_counter()
    for label, name, swept, fixed in rows:
        row = {"label": label, "method": name, "swept": swept, "fixed": fixed, "cells": []}
        for v in grid:
            cell = {"value": v, "runs": []}
            for r in range(runs):
                model = MLP(layers, seed=args.seed + r, dtype=args.dtype, backend=args.backend)
                method = _method(name, swept, v, fixed, args.sibp_eta_scale)
                h = fit(model, method, *data.train, val=data.val if len(data.y_val) else None,
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed + r, verbose=0)
                g = h5.require_group(f"{label}/{v:g}/run{r}")
                h.save_hdf5(g)
                cell["runs"].append({"train_acc": h.last["train_acc"], "val_acc": h.last["val_acc"],
                                     "diverged": h.diverged, "hyperparameters": method.hyperparameters()})
            ok = [x for x in cell["runs"] if x["diverged"] is None]
            for key in ("train_acc", "val_acc"):
                vals = [x[key] for x in ok]
                cell[key] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
            cell["n_diverged"] = runs - len(ok)
            row["cells"].append(cell)
            if not args.quiet:
                print(f"  {label} {swept}={v:g}: {_fmt(cell, 'train_acc')} / {_fmt(cell, 'val_acc')}",
                      flush=True)
        results.append(row)
    h5.close()
    meta = {"dataset": data.name, "n_train": int(len(data.y_train)), "n_val": int(len(data.y_val)),
            "layers": layers, "runs": runs, "epochs": args.epochs, "batch_size": args.batch_size,
            "seed": args.seed, "dtype": args.dtype, "grid": grid, "sibp_eta_scale": args.sibp_eta_scale,
            "seconds": time.perf_counter() - t0}
    with open(os.path.join(args.out, "table1.json"), "w") as fh:
        json.dump({"meta": meta, "rows": results}, fh, indent=1, default=str)
    text = format_table1(meta, results)
    with open(os.path.join(args.out, "table1.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


def _fmt(cell, key):
    if cell[key] is None:
        return f"diverged ({cell['n_diverged']}/{len(cell['runs'])})"
    m, s = cell[key]
    extra = f" [{cell['n_diverged']} div]" if cell["n_diverged"] else ""
    return f"{m:.4f}±{s:.4f}{extra}"


def format_table1(meta, rows):
    grid = meta["grid"]
    scale = meta["sibp_eta_scale"]
    lines = [f"Table 1 on {meta['dataset']} ({meta['n_train']} train / {meta['n_val']} val), layers "
             f"{'-'.join(map(str, meta['layers']))}, {meta['epochs']} epochs, batch {meta['batch_size']}, "
             f"{meta['runs']} runs (mean ± std; a diverged run is counted and left out of the mean), "
             f"{meta['dtype']}.",
             f"Step-size grid: {', '.join(f'{g:g}' for g in grid)}; SIBP rows use eta × {scale:g}"
             + (" (the paper's grid)" if scale == 1 else " (a shifted grid)") + ".", "",
             "| row | " + " | ".join(f"{g:g}" for g in grid) + " |",
             "| --- | " + " | ".join("---" for _ in grid) + " |"]
    for row in rows:
        for key, tag in (("train_acc", "train"), ("val_acc", "val")):
            cells = [_fmt(c, key) for c in row["cells"]]
            lines.append(f"| {row['label']} ({tag}) | " + " | ".join(cells) + " |")
    if list(grid) == list(GRID):
        lines += ["", "For reference, the paper's own Table 1 (MNIST 55k, 2 epochs, 5 runs):", "",
                  "| row | " + " | ".join(f"{g:g}" for g in GRID) + " |",
                  "| --- | " + " | ".join("---" for _ in GRID) + " |"]
        for row in rows:
            paper = PAPER_TABLE1.get(row["label"])
            if paper:
                lines.append(f"| {row['label']} (train) | " + " | ".join(f"{x:.4f}" for x in paper[0]) + " |")
                lines.append(f"| {row['label']} (val) | " + " | ".join(f"{x:.4f}" for x in paper[1]) + " |")
    return "\n".join(lines) + "\n"
