"""Experiment commands that reproduce the paper: ``sibp-np table1`` (Table 1) and
``sibp-np figure {2,3,4,5}`` (analogues of Figures 2-5).

Run r of every method starts from the same initial weights (``seed + r``) and sees the same minibatches
(shuffling seeded by ``seed + r``), so the methods differ only in the method.
"""
import json
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


#: Figures: (title, hidden widths, x axis, [(label, method, default hyperparameters, tuning grid)]).
#: SIBP's defaults are the paper's where it gives them (eta = 0.1 in Fig. 2) and our Table-1 best
#: (eta = 1, lam = 1) elsewhere; with --tune every method's step, SIBP's included, is chosen by the
#: same held-out grid search (the paper "carefully chose" the baselines' steps).
FIGURES = {
    "2": ("Figure 2: SIBP vs ProxBP vs Adam", [2000, 500], "epochs", [
        ("SIBP", "sibp", {"eta": 0.1, "lam": 1.0}, ("eta", (0.1, 1.0, 10.0))),
        ("ProxBP", "proxbp", {"eta": 0.1, "lam": 1.0}, ("eta", (0.1, 1.0, 10.0))),
        ("Adam", "adam", {"lr": 1e-3}, ("lr", (1e-4, 3e-4, 1e-3, 3e-3)))]),
    "3": ("Figure 3: SIBP vs SGD vs Adam vs RMSprop", [4000, 1000, 4000], "epochs", [
        ("SIBP", "sibp", {"eta": 1.0, "lam": 1.0}, ("eta", (0.1, 1.0, 10.0))),
        ("SGD", "sgd", {"lr": 0.1}, ("lr", (0.01, 0.1, 1.0))),
        ("Adam", "adam", {"lr": 1e-3}, ("lr", (1e-4, 3e-4, 1e-3))),
        ("RMSprop", "rmsprop", {"lr": 1e-3}, ("lr", (1e-4, 3e-4, 1e-3)))]),
    "4": ("Figure 4: deep network, SIBP vs SGD vs Adam", [600] * 10, "seconds", [
        ("SIBP", "sibp", {"eta": 1.0, "lam": 1.0}, ("eta", (0.1, 1.0, 10.0))),
        ("SGD", "sgd", {"lr": 0.1}, ("lr", (0.01, 0.1, 1.0))),
        ("Adam", "adam", {"lr": 1e-3}, ("lr", (1e-4, 3e-4, 1e-3)))]),
    "5": ("Figure 5: SIBP with 1, 2, 3, 5, 10 NCG steps", [4000, 1000, 4000], "seconds", [
        (f"SIBP cg={k}", "sibp", {"eta": 1.0, "lam": 1.0, "cg_steps": k}, None) for k in (1, 2, 3, 5, 10)]),
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

    f = sub.add_parser("figure", help="analogues of the paper's Figures 2-5 (PNG plots + histories)",
                       description="Train the methods of one of the paper's figures and plot training "
                       "loss, training accuracy and validation accuracy against epochs and seconds.")
    f.add_argument("number", choices=sorted(FIGURES), help="which figure")
    f.add_argument("--dataset", default="mnist-5k")
    f.add_argument("--data-root", default=None)
    f.add_argument("--widths", default=None,
                   help="hidden widths, e.g. 1000,250 (default: the paper's); the input width always "
                        "follows the data")
    f.add_argument("--epochs", type=int, default=3)
    f.add_argument("--time-budget", type=float, default=None,
                   help="seconds of training per method (figures 4 and 5 plot against time)")
    f.add_argument("--eval-every", type=int, default=None, help="iterations between records")
    f.add_argument("--train-eval-size", type=int, default=None,
                   help="training metrics on a fixed subset of this size (cheaper curves)")
    f.add_argument("--batch-size", type=int, default=100)
    f.add_argument("--init-std", type=float, default=0.01)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--dtype", default="float32")
    f.add_argument("--backend", default=None)
    f.add_argument("--tune", action="store_true",
                   help="choose each method's step (SIBP's too; not figure 5's) on a held-out split "
                        "(1 epoch on up to 10,000 training samples, judged on the last 20%% of them)")
    f.add_argument("--out", default=None, help="folder (default figureN_out)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(handler=run_figure)
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


def _tune(name, defaults, grid, data, layers, args):
    """Best value of ``grid[0]`` (by held-out accuracy after 1 epoch) on a split of the training set."""
    from .methods import get_method
    from .model import MLP
    from .train import fit
    key, values = grid
    n = min(10000, len(data.y_train))
    cut = int(0.8 * n)
    Xt, yt = data.X_train[:cut], data.y_train[:cut]
    Xh, yh = data.X_train[cut:n], data.y_train[cut:n]
    scores = {}
    for v in values:
        model = MLP(layers, seed=args.seed, dtype=args.dtype, backend=args.backend, init_std=args.init_std)
        h = fit(model, get_method(name, **{**defaults, key: v}), Xt, yt, val=(Xh, yh), epochs=1,
                batch_size=args.batch_size, seed=args.seed, verbose=0)
        scores[v] = -1.0 if h.diverged is not None else h.last["val_acc"]
    best = max(values, key=lambda v: scores[v])
    return {**defaults, key: best}, {"parameter": key, "scores": {f"{v:g}": scores[v] for v in values},
                                     "chosen": best}


def run_figure(args):
    from .datasets import load_dataset
    from .methods import get_method
    from .model import MLP
    from .train import fit
    title, widths, xaxis, runs = FIGURES[args.number]
    data = load_dataset(args.dataset, root=args.data_root, dtype=args.dtype)
    hidden = [int(v) for v in args.widths.split(",")] if args.widths else widths
    layers = [data.n_features] + hidden + [data.n_classes]
    notes = []
    paper_in = 784 if args.number == "4" else 3072
    if data.n_features != paper_in:
        notes.append(f"the paper's input width is {paper_in}; here the first width follows the data "
                     f"({data.n_features}, {data.name})")
    if hidden != widths:
        notes.append(f"hidden widths scaled from the paper's {widths} to {hidden}")
    out = args.out or f"figure{args.number}_out"
    os.makedirs(out, exist_ok=True)
    if not args.quiet:
        print(f"{title}: layers {layers}, {data!r}")
        for note in notes:
            print(f"note: {note}")
    results = []
    for label, name, defaults, grid in runs:
        hyper, tuning = dict(defaults), None
        if args.tune and grid is not None:
            hyper, tuning = _tune(name, defaults, grid, data, layers, args)
            if not args.quiet:
                print(f"tuned {label}: {tuning}")
        model = MLP(layers, seed=args.seed, dtype=args.dtype, backend=args.backend, init_std=args.init_std)
        h = fit(model, get_method(name, **hyper), *data.train, val=data.val if len(data.y_val) else None,
                epochs=args.epochs if args.time_budget is None else 10 ** 6, batch_size=args.batch_size,
                seed=args.seed, verbose=0, eval_every=args.eval_every, time_budget=args.time_budget,
                train_eval_size=args.train_eval_size)
        h.config.update(label=label, tuning=tuning, dataset=data.name)
        h.save(os.path.join(out, f"{_slug(label)}.json"))
        results.append((label, h))
        if not args.quiet:
            last = h.last
            print(f"  {label:<12} {name} {hyper}: epochs {last['epoch_float']:.2f}, "
                  f"{last['elapsed_seconds']:.1f} s, train loss {last['train_loss']:.4f}, train acc "
                  f"{last['train_acc']:.4f}, val acc {_f(last['val_acc'])}"
                  + (f", DIVERGED {h.diverged}" if h.diverged else ""), flush=True)
    meta = {"figure": args.number, "title": title, "layers": layers, "dataset": data.name, "notes": notes,
            "x_axis": xaxis, "epochs": args.epochs, "time_budget": args.time_budget,
            "batch_size": args.batch_size, "seed": args.seed, "init_std": args.init_std,
            "runs": [{"label": lab, "method": h.config["method"], "hyperparameters": h.config["hyperparameters"],
                      "tuning": h.config["tuning"], "final": h.last, "diverged": h.diverged}
                     for lab, h in results]}
    with open(os.path.join(out, f"figure{args.number}.json"), "w") as fh:
        json.dump(meta, fh, indent=1, default=str)
    png = plot_figure(results, meta, os.path.join(out, f"figure{args.number}.png"))
    if not args.quiet:
        print(f"wrote {png or '(no plot: matplotlib missing)'} and the histories in {out}")
    return 0


def _slug(label):
    return "".join(c if c.isalnum() else "_" for c in label).strip("_").lower()


def _f(v):
    return "-" if v is None else f"{v:.4f}"


def plot_figure(results, meta, path):
    """Two rows (against epochs, against seconds) by three panels (training loss, training accuracy,
    validation accuracy). Returns the path, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'sibp_np[plot]'): no PNG written")
        return None
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for label, h in results:
        for row, xkey in enumerate(("epoch_float", "elapsed_seconds")):
            x = h[xkey]
            for col, key in enumerate(("train_loss", "train_acc", "val_acc")):
                yv = [np.nan if v is None else v for v in h[key]]
                axes[row, col].plot(x, yv, marker=".", label=label)
    names = {"train_loss": "training loss", "train_acc": "training accuracy", "val_acc": "validation accuracy"}
    for row, xl in enumerate(("epochs", "training seconds")):
        for col, key in enumerate(("train_loss", "train_acc", "val_acc")):
            ax = axes[row, col]
            ax.set_xlabel(xl)
            ax.set_ylabel(names[key])
            ax.grid(alpha=0.3)
            if key == "train_loss":
                ax.set_yscale("log")
    axes[0, 0].legend()
    sub = f"{meta['dataset']}, layers {'-'.join(map(str, meta['layers']))}, batch {meta['batch_size']}"
    fig.suptitle(f"{meta['title']} ({sub})" + ("\n" + "; ".join(meta["notes"]) if meta["notes"] else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
