"""The paper's experiments as library functions: :func:`table1` (Table 1), :func:`figure` (analogues of
Figures 2-5), :func:`eta_grid` (one method over a grid of step sizes) and :func:`merge_table1`.

Each returns a result object with ``.to_markdown()`` and ``.save(folder)``; every saved artefact
records the environment it was computed in (:func:`sibp_np.environment.environment`). Run r of every
method starts from the same initial weights (``seed + r``) and sees the same minibatches (shuffling
seeded by ``seed + r``), so the methods differ only in the method. The command line (``sibp-np table1``,
``figure``, ``eta-grid``, ``merge-table1``) calls these functions.
"""
import json
import time
from pathlib import Path

import numpy as np

from ._io import atomic_path, write_text
from ._validation import check_choice, check_int, check_output_folder, check_seed
from .datasets import load_dataset
from .environment import environment
from .history import History, jsonable
from .methods import get_method
from .model import MLP
from .sweep import run_spec, run_sweep
from .train import fit

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
    "SGD, η": ((0.0985, 0.1123, 0.9835, 0.9487, 0.8885), (0.1002, 0.1126, 0.9760, 0.9492, 0.8988)),  # noqa: E501
    "ProxBP (λ=1, η)": ((0.9239, 0.9349, 0.9390, 0.9032, 0.8415), (0.9344, 0.9374, 0.9494, 0.9244, 0.8832)),  # noqa: E501
    "ProxBP (η=1, 1/λ)": ((0.9420, 0.9444, 0.9383, 0.9171, 0.8743), (0.9486, 0.9554, 0.9494, 0.9344, 0.9064)),  # noqa: E501
    "Semi-implicit (λ=1, η)": ((0.9780, 0.9801, 0.9904, 0.9737, 0.9104), (0.9710, 0.9724, 0.9800, 0.9748, 0.9338)),  # noqa: E501
    "Semi-implicit (η=0.1, 1/λ)": ((0.9765, 0.9752, 0.9735, 0.9598, 0.9206), (0.9736, 0.9778, 0.9738, 0.9672, 0.9394)),  # noqa: E501
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


def _float_list(name, values):
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(np.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers > 0, got {values!r}")
    return out


def _layers(data, layers):
    layers = list(layers) if layers is not None else [data.n_features, 500, data.n_classes]
    if layers[0] != data.n_features:
        raise ValueError(f"layers={layers!r} starts with {layers[0]} inputs but {data.name} has "
                         f"{data.n_features} features")
    return layers


def _say(verbose, text):
    if verbose:
        print(text, flush=True)


def _write_json(path, obj):
    write_text(path, json.dumps(obj, indent=1, default=jsonable) + "\n")


def _save_histories(path, histories):
    """``{group path: History}`` into one HDF5 file, atomically."""
    import h5py
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, h in histories.items():
            h.save_hdf5(f.require_group(key))


def _load_histories(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.setdefault(name.rsplit("/history", 1)[0], None)
                     if name.endswith("/history") else None)
        return {key: History.load_hdf5(f[key]) for key in out}


# ---------------------------------------------------------------------------------------- Table 1
class Table1Result:
    """Table 1: ``meta`` (settings and environment), ``rows`` (per row, per grid value: the runs and
    their mean ± std) and ``histories`` (``"label/value/runR"`` -> :class:`History`)."""

    def __init__(self, meta, rows, histories=None):
        self.meta, self.rows, self.histories = meta, rows, dict(histories or {})

    def to_markdown(self):
        return format_table1(self.meta, self.rows)

    def save(self, folder):
        """Write ``table1.md``, ``table1.json`` and (with the histories) ``table1.h5`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.histories:
            _save_histories(folder / "table1.h5", self.histories)
        _write_json(folder / "table1.json", {"meta": self.meta, "rows": self.rows})
        write_text(folder / "table1.md", self.to_markdown())
        return folder

    @classmethod
    def load(cls, folder):
        """Read a saved table (and its histories, when ``table1.h5`` is there)."""
        folder = Path(folder)
        path = folder / "table1.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a table1 folder: it has no table1.json")
        try:
            with open(path) as fh:
                d = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"{path} is not a table1 result: {type(exc).__name__}: {exc}") from None
        labels = {r[0] for r in TABLE1_ROWS}
        if not (isinstance(d, dict) and isinstance(d.get("meta"), dict) and isinstance(d.get("rows"), list)
                and isinstance(d["meta"].get("seconds"), (int, float))
                and all(isinstance(r, dict) and r.get("label") in labels for r in d["rows"])):
            raise ValueError(f"{path} is not a table1 result: it needs 'meta' (with 'seconds') and 'rows' "
                             f"labelled as Table 1's rows")
        h5 = folder / "table1.h5"
        try:
            histories = _load_histories(h5) if h5.exists() else None
        except Exception as exc:  # a damaged table1.h5
            raise ValueError(f"{h5} cannot be read: {type(exc).__name__}: {exc}") from None
        return cls(d["meta"], d["rows"], histories)


def _check_not_an_output(dataset, data_root, out, names):
    """Refuse, before any work, a dataset file that this command's output folder would overwrite:
    one of ``names`` in ``out``, or anything in the folders under it that sweeps write."""
    if not isinstance(dataset, (str, Path)) or not str(dataset).lower().endswith((".h5", ".hdf5")):
        return
    candidates = [Path(dataset)] + ([Path(data_root) / dataset] if data_root else [])
    out = Path(out).resolve()
    for path in (c.resolve() for c in candidates if c.exists()):
        written = path.parent == out and path.name in names
        if written or out in path.parents and path.parent != out:
            raise ValueError(f"dataset={str(dataset)!r} is {'one of' if written else 'inside'} the files "
                             f"that out={str(out)!r} receives: it would be overwritten. Move the dataset "
                             f"or choose another out folder")


def table1(dataset="mnist-5k", *, runs=5, epochs=2, rows=None, grid=None, seed=0, out=None, verbose=1,
           layers=None, batch_size=100, dtype="float32", backend=None, sibp_eta_scale=1.0,
           data_root=None, jobs=None, dask=None):
    """Reproduce Table 1: train/validation accuracy (mean ± std over ``runs``) of SGD, ProxBP and SIBP
    over the step-size ``grid`` after ``epochs`` epochs.

    Parameters
    ----------
    dataset : str
        A name for :func:`sibp_np.load_dataset` or an ``.h5`` path.
    rows : sequence of int, optional
        Which of the five rows (1-5, in :data:`TABLE1_ROWS`) to run; all by default.
    grid : sequence of float, optional
        The step sizes; the paper's :data:`GRID` by default.
    out : path, optional
        Save the result into this folder (:meth:`Table1Result.save`).
    layers : sequence of int, optional
        Default ``(n_features, 500, n_classes)``.
    sibp_eta_scale : float
        Multiplies the SIBP rows' eta (e.g. 0.01 = 1/batch: SIBP's eta is a per-sample step).
    jobs, dask :
        Run the runs on ``jobs`` local processes or on a Dask cluster (:mod:`sibp_np.sweep`); with
        ``out``, each finished run is saved in ``out/runs/`` and a rerun skips it. The results are the
        same, bit for bit, on every executor.

    Returns
    -------
    Table1Result
    """
    runs = check_int("runs", runs, minimum=1)
    seed = check_seed("seed", seed)
    if out is not None:
        check_output_folder("out", out)
        _check_not_an_output(dataset, data_root, out, ("table1.h5", "table1.json", "table1.md"))
    grid = _float_list("grid", GRID if grid is None else grid)
    picked = range(1, len(TABLE1_ROWS) + 1) if rows is None else [check_int("rows[]", r) for r in rows]
    bad = [r for r in picked if not 1 <= r <= len(TABLE1_ROWS)]
    if bad:
        raise ValueError(f"rows={rows!r}: row numbers run from 1 to {len(TABLE1_ROWS)}")
    data = load_dataset(dataset, root=data_root, dtype=dtype)
    layers = _layers(data, layers)
    t0 = time.perf_counter()
    chosen = [TABLE1_ROWS[r - 1] for r in picked]
    specs = [run_spec(dataset=dataset, data_root=data_root, dtype=dtype, layers=layers, method=name,
                      hyperparameters=_table1_hyper(name, swept, v, fixed, sibp_eta_scale), seed=seed + r,
                      epochs=epochs, batch_size=batch_size, backend=backend)
             for _, name, swept, fixed in chosen for v in grid for r in range(runs)]
    done = iter(run_sweep(specs, out=out, jobs=jobs, dask=dask, verbose=verbose))
    results, histories = [], {}
    for label, name, swept, fixed in chosen:
        row = {"label": label, "method": name, "swept": swept, "fixed": fixed, "cells": []}
        for v in grid:
            cell = {"value": v, "runs": []}
            for r in range(runs):
                h = next(done)
                histories[f"{label}/{v:g}/run{r}"] = h
                cell["runs"].append({"train_acc": h.last["train_acc"], "val_acc": h.last["val_acc"],
                                     "diverged": h.diverged, "hyperparameters": h.config["hyperparameters"]})
            _summarize(cell, runs)
            row["cells"].append(cell)
            _say(verbose, f"  {label} {swept}={v:g}: {_fmt(cell, 'train_acc')} / {_fmt(cell, 'val_acc')}")
        results.append(row)
    meta = {"dataset": data.name, "n_train": int(len(data.y_train)), "n_val": int(len(data.y_val)),
            "layers": layers, "runs": runs, "epochs": epochs, "batch_size": batch_size, "seed": seed,
            "dtype": dtype, "grid": grid, "sibp_eta_scale": sibp_eta_scale,
            "seconds": time.perf_counter() - t0, "environment": environment()}
    result = Table1Result(meta, results, histories)
    if out is not None:
        result.save(out)
    return result


def _table1_hyper(name, swept, value, fixed, eta_scale):
    """The hyperparameters of one Table 1 cell, checked (a bad one fails before any run)."""
    kw = dict(fixed)
    if swept == "inv_lam":
        kw["lam"] = 1.0 / value
    else:
        kw[swept] = value
    if name == "sibp":
        kw["eta"] = kw["eta"] * eta_scale
    return get_method(name, **kw).hyperparameters()


def _summarize(cell, runs):
    ok = [x for x in cell["runs"] if x["diverged"] is None]
    for key in ("train_acc", "val_acc"):
        vals = [x[key] for x in ok]
        cell[key] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
    cell["n_diverged"] = runs - len(ok)


#: the settings that must agree between the parts of a merged table
MERGE_KEYS = ("dataset", "layers", "runs", "epochs", "batch_size", "seed", "dtype", "grid",
              "sibp_eta_scale")


def merge_table1(parts, out=None):
    """One table from parts run separately (e.g. ``rows=[1, 2, 3]`` and ``rows=[4, 5]`` on two
    machines): ``parts`` are folders saved by :meth:`Table1Result.save` or results. Their settings must
    agree (:data:`MERGE_KEYS`) and no row may appear twice; the histories (``table1.h5``) are merged too.
    """
    parts = [p if isinstance(p, Table1Result) else Table1Result.load(p) for p in parts]
    if not parts:
        raise ValueError("parts is empty: give at least one table1 folder")
    meta = dict(parts[0].meta)
    for p in parts[1:]:
        for k in MERGE_KEYS:
            if p.meta.get(k) != meta.get(k):
                raise ValueError(f"{k} differs between the parts: {p.meta.get(k)!r} vs {meta.get(k)!r}")
    labels = [r["label"] for p in parts for r in p.rows]
    twice = sorted({lab for lab in labels if labels.count(lab) > 1})
    if twice:
        raise ValueError(f"rows {twice} appear in more than one part")
    order = [r[0] for r in TABLE1_ROWS]
    meta["seconds"] = sum(p.meta["seconds"] for p in parts)
    meta["environment"] = [p.meta.get("environment") for p in parts]
    rows = sorted((r for p in parts for r in p.rows), key=lambda r: order.index(r["label"]))
    histories = {k: h for p in parts for k, h in p.histories.items()}
    result = Table1Result(meta, rows, histories)
    if out is not None:
        result.save(out)
    return result


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



# ---------------------------------------------------------------------------------------- step-size grid
class GridResult:
    """One method over a grid of values of one hyperparameter: ``meta`` and ``rows`` (value, final
    accuracies and loss, divergence, seconds per epoch), and the ``histories`` by value."""

    def __init__(self, meta, rows, histories=None):
        self.meta, self.rows, self.histories = meta, rows, dict(histories or {})

    def to_markdown(self):
        m, p = self.meta, self.meta["param"]
        lines = [f"{m['method']} on {m['dataset']} ({m['n_train']} train / {m['n_val']} val), layers "
                 f"{'-'.join(map(str, m['layers']))}, {m['epochs']} epochs, batch {m['batch_size']}, "
                 f"{m['dtype']}, seed {m['seed']}, fixed {m['fixed']}.", "",
                 f"| {p} | train_acc | val_acc | train_loss | s/epoch | diverged |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            div = "-" if r["diverged"] is None else \
                f"epoch {r['diverged']['epoch']} it {r['diverged']['iteration']}"
            lines.append(f"| {r[p]:g} | {r['train_acc']:.4f} | {_f(r['val_acc'])} | "
                         f"{r['train_loss']:.4g} | {r['sec_per_epoch']:.2f} | {div} |")
        return "\n".join(lines) + "\n"

    def save(self, folder):
        """Write ``eta_grid.md``, ``eta_grid.json`` and ``eta_grid.h5`` (the histories) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.histories:
            _save_histories(folder / "eta_grid.h5", {f"{k:g}": h for k, h in self.histories.items()})
        _write_json(folder / "eta_grid.json", {"meta": self.meta, "rows": self.rows})
        write_text(folder / "eta_grid.md", self.to_markdown())
        return folder


def eta_grid(method="sibp", dataset="mnist-5k", *, param=None, grid=GRID, fixed=None, epochs=5,
             layers=None, batch_size=100, seed=0, dtype="float32", backend=None, out=None, verbose=1,
             data_root=None, jobs=None, dask=None):
    """Train ``method`` once per value of ``param`` in ``grid`` (default param: ``eta`` for sibp and
    proxbp, ``lr`` otherwise), every run from the same initial weights and minibatches (``seed``).

    ``fixed`` holds the other hyperparameters. Returns a :class:`GridResult`; ``out`` saves it there.
    ``jobs``/``dask`` run the grid's runs in parallel (:mod:`sibp_np.sweep`), with the same results.
    """
    from .methods import METHODS
    method = check_choice("method", method, tuple(sorted(METHODS)))
    param = param or ("eta" if method in ("sibp", "proxbp") else "lr")
    if param not in METHODS[method].hyperparameter_names():
        raise ValueError(f"param={param!r} is not a hyperparameter of {method} (it has "
                         f"{', '.join(METHODS[method].hyperparameter_names())})")
    grid, fixed = _float_list("grid", grid), dict(fixed or {})
    seed = check_seed("seed", seed)
    if out is not None:
        check_output_folder("out", out)
        _check_not_an_output(dataset, data_root, out, ("eta_grid.h5", "eta_grid.json", "eta_grid.md"))
    get_method(method, **{param: grid[0]}, **fixed)  # bad hyperparameters fail before any training
    data = load_dataset(dataset, root=data_root, dtype=dtype)
    layers = _layers(data, layers)
    specs = [run_spec(dataset=dataset, data_root=data_root, dtype=dtype, layers=layers, method=method,
                      hyperparameters=get_method(method, **{param: v}, **fixed).hyperparameters(),
                      seed=seed, epochs=epochs, batch_size=batch_size, backend=backend) for v in grid]
    rows, histories = [], {}
    for v, h in zip(grid, run_sweep(specs, out=out, jobs=jobs, dask=dask, verbose=verbose)):
        last = h.last
        histories[v] = h
        rows.append({param: v, "train_acc": last["train_acc"], "val_acc": last["val_acc"],
                     "train_loss": last["train_loss"], "diverged": h.diverged,
                     "sec_per_epoch": last["elapsed_seconds"] / max(last["epoch"], 1)})
        _say(verbose, f"  {param}={v:g}: train {last['train_acc']:.4f} val {_f(last['val_acc'])}"
                      + ("" if h.diverged is None else f" (diverged: {h.diverged['reason']})"))
    meta = {"method": method, "param": param, "fixed": fixed, "dataset": data.name,
            "n_train": int(len(data.y_train)), "n_val": int(len(data.y_val)), "layers": layers,
            "epochs": epochs, "batch_size": batch_size, "seed": seed, "dtype": dtype, "grid": grid,
            "environment": environment()}
    result = GridResult(meta, rows, histories)
    if out is not None:
        result.save(out)
    return result


# ---------------------------------------------------------------------------------------- figures
class FigureResult:
    """One figure's runs: ``meta`` (settings, tuning, final records, environment) and ``histories``
    (label -> :class:`History`)."""

    def __init__(self, meta, histories):
        self.meta, self.histories = meta, dict(histories)

    def to_markdown(self):
        lines = [f"{self.meta['title']} ({self.meta['dataset']}, layers "
                 f"{'-'.join(map(str, self.meta['layers']))})", "",
                 "| run | hyperparameters | epochs | seconds | train loss | train acc | val acc |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for run in self.meta["runs"]:
            last = run["final"]
            hyper = ", ".join(f"{k}={v}" for k, v in run["hyperparameters"].items()
                              if k in ("eta", "lam", "lr", "cg_steps"))
            lines.append(f"| {run['label']} | {hyper} | {last['epoch_float']:.2f} | "
                         f"{last['elapsed_seconds']:.1f} | {last['train_loss']:.4f} | "
                         f"{last['train_acc']:.4f} | {_f(last['val_acc'])} |"
                         + (" diverged" if run["diverged"] else ""))
        return "\n".join(lines) + "\n"

    def save(self, folder):
        """Write ``figureN.json``, one history per run (``<label>.json``), ``figureN.md`` and, with
        matplotlib, ``figureN.png``. Returns the PNG's path, or None without matplotlib."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        n = self.meta["figure"]
        for label, h in self.histories.items():
            h.save(folder / f"{_slug(label)}.json")
        _write_json(folder / f"figure{n}.json", self.meta)
        write_text(folder / f"figure{n}.md", self.to_markdown())
        return plot_figure(list(self.histories.items()), self.meta, folder / f"figure{n}.png")


def figure(number, *, dataset="mnist-5k", widths=None, epochs=3, time_budget=None, eval_every=None,
           train_eval_size=None, batch_size=100, init_std=0.01, seed=0, dtype="float32", backend=None,
           tune=False, out=None, verbose=1, data_root=None, jobs=None, dask=None):
    """Train the methods of the paper's Figure ``number`` (2, 3, 4 or 5; :data:`FIGURES`).

    Parameters
    ----------
    widths : sequence of int, optional
        Hidden widths (default: the paper's); the input width always follows the data.
    time_budget : float, optional
        Seconds of training per method (figures 4 and 5 plot against time); then ``epochs`` is ignored.
    eval_every, train_eval_size :
        Records every so many iterations; training metrics on a fixed subset of this size.
    tune : bool
        Choose each method's step (SIBP's too; not figure 5's) on a held-out split: 1 epoch on up to
        10,000 training samples, judged on the last 20% of them.
    out : path, optional
        Save the result into this folder (:meth:`FigureResult.save`).
    jobs, dask :
        Run the tuning runs in parallel (:mod:`sibp_np.sweep`; saved in ``out/tuning/runs``). The
        figure's own runs are timed, so they run one after the other here.

    Returns
    -------
    FigureResult
    """
    number = check_choice("number", str(number), tuple(sorted(FIGURES)))
    seed = check_seed("seed", seed)
    if out is not None:
        check_output_folder("out", out)
        _check_not_an_output(dataset, data_root, out, ())
    title, paper_widths, xaxis, runs = FIGURES[number]
    data = load_dataset(dataset, root=data_root, dtype=dtype)
    hidden = [check_int("widths[]", w, minimum=1) for w in widths] if widths else paper_widths
    layers = [data.n_features] + hidden + [data.n_classes]
    notes = []
    paper_in = 784 if number == "4" else 3072
    if data.n_features != paper_in:
        notes.append(f"the paper's input width is {paper_in}; here the first width follows the data "
                     f"({data.n_features}, {data.name})")
    if hidden != paper_widths:
        notes.append(f"hidden widths scaled from the paper's {paper_widths} to {hidden}")
    _say(verbose, f"{title}: layers {layers}, {data!r}" + "".join(f"\nnote: {n}" for n in notes))
    tuned = {}
    if tune:
        common = dict(dataset=dataset, data_root=data_root, dtype=dtype, layers=layers, init_std=init_std,
                      seed=seed, batch_size=batch_size, backend=backend)
        tuned = _tune([r for r in runs if r[3] is not None], data, common, jobs=jobs, dask=dask,
                      out=None if out is None else Path(out) / "tuning", verbose=verbose)
    histories = {}
    for label, name, defaults, _grid in runs:
        hyper, tuning = tuned.get(label, (dict(defaults), None))
        if tuning is not None:
            _say(verbose, f"tuned {label}: {tuning}")
        model = MLP(layers, seed=seed, dtype=dtype, backend=backend, init_std=init_std)
        h = fit(model, get_method(name, **hyper), *data.train, val=data.val if len(data.y_val) else None,
                epochs=epochs if time_budget is None else 10 ** 6, batch_size=batch_size, seed=seed,
                verbose=0, eval_every=eval_every, time_budget=time_budget, train_eval_size=train_eval_size)
        h.config.update(label=label, tuning=tuning, dataset=data.name)
        histories[label] = h
        last = h.last
        _say(verbose, f"  {label:<12} {name} {hyper}: epochs {last['epoch_float']:.2f}, "
                      f"{last['elapsed_seconds']:.1f} s, train loss {last['train_loss']:.4f}, train acc "
                      f"{last['train_acc']:.4f}, val acc {_f(last['val_acc'])}"
                      + (f", DIVERGED {h.diverged}" if h.diverged else ""))
    meta = {"figure": number, "title": title, "layers": layers, "dataset": data.name, "notes": notes,
            "x_axis": xaxis, "epochs": epochs, "time_budget": time_budget, "batch_size": batch_size,
            "seed": seed, "init_std": init_std, "environment": environment(),
            "runs": [{"label": lab, "method": h.config["method"],
                      "hyperparameters": h.config["hyperparameters"], "tuning": h.config["tuning"],
                      "final": h.last, "diverged": h.diverged} for lab, h in histories.items()]}
    result = FigureResult(meta, histories)
    if out is not None:
        png = result.save(out)
        _say(verbose, f"wrote {png or '(no plot: matplotlib missing)'} and the histories in {out}")
    return result


def _tune(runs, data, common, *, jobs, dask, out, verbose):
    """For each ``(label, method, defaults, (key, values))``: the value of ``key`` with the best held-out
    accuracy after 1 epoch on a split of the training set (the first 80% of up to 10,000 samples train,
    the rest judge). All the tuning runs form one sweep. Returns ``{label: (hyperparameters, tuning)}``."""
    n = min(10000, len(data.y_train))
    cut = int(0.8 * n)
    plan = [(label, name, defaults, key, v) for label, name, defaults, (key, values) in runs for v in values]
    specs = [run_spec(method=name, hyperparameters=get_method(name, **{**defaults, key: v}).hyperparameters(),
                      epochs=1, train_rows=[0, cut], val=[cut, n], **common)
             for label, name, defaults, key, v in plan]
    scores = {}
    for (label, _, _, _, v), h in zip(plan, run_sweep(specs, out=out, jobs=jobs, dask=dask, verbose=verbose)):
        scores.setdefault(label, {})[v] = -1.0 if h.diverged is not None else h.last["val_acc"]
    out_ = {}
    for label, _, defaults, (key, values) in runs:
        best = max(values, key=lambda v, s=scores[label]: s[v])
        out_[label] = ({**defaults, key: best}, {"parameter": key, "chosen": best,
                                                  "scores": {f"{v:g}": scores[label][v] for v in values}})
    return out_


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
    names = {"train_loss": "training loss", "train_acc": "training accuracy",
             "val_acc": "validation accuracy"}
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
