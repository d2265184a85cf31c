"""SIBP on the deep network of Figure 4 (784-600x10-10): why the plain algorithm collapses, and the table
of the safeguard against the authors' solver.

    python tools/deepnet.py analysis                 # per-layer figures of the first steps at eta = 1
    python tools/deepnet.py table --init-std 0.05    # eta in {0.1, 1, 10}: default lam=1, lam=2, matlab
    python tools/deepnet.py growth --eta 10          # activations over 2 epochs: trust region alone
                                                     # against the default (output-space prox)
    python tools/deepnet.py seeds --eta 10 --seeds 8 # the default and the previous one on 8 seeds

Data: the embedded mnist-5k (4,000 train / 1,000 val), batch 100, 2 epochs, float32, seed 0, 1 BLAS
thread. Every run of a table starts from the same initial weights and sees the same minibatches.
"""
import argparse
import json
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, SIBP, fit, load_dataset
from sibp_np._io import write_text
from sibp_np.environment import environment

LAYERS = [784] + [600] * 10 + [10]
#: the default before the output-space proximal term: the trust region alone, radius 2
PREVIOUS = {"safeguard": "trust-region", "prox_metric": "weights", "trust_radius": 2.0}
ROWS = (("default, lam=1", {"lam": 1.0}), ("default, lam=2", {"lam": 2.0}),
        ("compat='matlab', lam=2", {"lam": 2.0, "compat": "matlab"}),
        ("safeguard='none', lam=1", {"lam": 1.0, "safeguard": "none"}),
        ("trust region alone (the previous default: prox_metric='weights', trust_radius=2), lam=1",
         {"lam": 1.0, **PREVIOUS}),
        ("output-space prox alone (safeguard='none', prox_metric='output'), lam=1",
         {"lam": 1.0, "safeguard": "none", "prox_metric": "output"}),
        ("trust region alone, trust_radius=4 (prox_metric='weights'), lam=1",
         {"lam": 1.0, "safeguard": "trust-region", "prox_metric": "weights", "trust_radius": 4.0}))
CONFIGS = (("plain Algorithm 1", {"safeguard": "none"}),
           ("trust region alone (the previous default)", PREVIOUS),
           ("default (trust region + output-space prox)", {}))


def analysis(data, init_std, eta, steps, label, kw):
    """Per step and layer: ||W^{k+1} - W^k||_F / ||W^k||_2, the gain ||W^{k+1}||_2 / ||W^k||_2, the
    error's size ||delta_i|| = ||F_i - T_i|| / eta, and the batch loss before and after the step."""
    X, y = data.train
    model = MLP(LAYERS, init_std=init_std, seed=0)
    method = SIBP(eta=eta, lam=1.0, **kw)
    method.record_stats = True
    print(f"\n## {label}: {method!r}, init N(0, {init_std}^2)")
    for k in range(steps):
        Xb, yb = X[100 * k:100 * (k + 1)], y[100 * k:100 * (k + 1)]
        old = [W.copy() for W in model.weights]
        G, F = model.forward_cache(Xb)
        with np.errstate(all="ignore"):
            before = method.step(model, Xb, yb)
            after = model.evaluate(Xb, yb)[0]
        T = method.last_targets
        print(f"step {k}: batch loss {before:.4g} -> {after:.4g}")
        print("  layer  ||dW||_F/||W||_2  gain ratio  ||delta_{i+1}||  W-solve message")
        stats = {(s["layer"], s["param"]): s for s in method.stats[-1]}
        for i in range(model.n_layers - 1, -1, -1):
            with np.errstate(all="ignore"):
                s_old = np.linalg.norm(old[i], 2)
                s_new = np.linalg.norm(model.weights[i], 2) if np.isfinite(model.weights[i]).all() \
                    else np.inf
                dW = np.linalg.norm(model.weights[i] - old[i])
                dnorm = np.linalg.norm(F[i + 1] - T[i + 2]) / eta
            print(f"  {i:5d}  {dW / s_old:16.3g}  {s_new / s_old:10.3g}  {dnorm:14.3g}  "
                  f"{stats[(i, 'W')]['message']}")


def growth(data, init_std, eta, epochs, every=10):
    """Every ``every`` steps: the minibatch loss before the step, the accuracy on the first 1,000
    training samples, and the RMS activation of every layer's output (bottom first) on the minibatch."""
    X, y = data.train
    for label, kw in CONFIGS[1:]:
        model = MLP(LAYERS, init_std=init_std, seed=0)
        method = SIBP(eta=eta, lam=1.0, **kw)
        print(f"\n## {label}: {method!r}, init N(0, {init_std}^2)")
        print("| step | batch loss | acc (first 1,000) | RMS activation per layer, bottom first |")
        print("|---|---|---|---|")
        rng = np.random.default_rng(0)
        k = 0
        for _ in range(epochs):
            order = rng.permutation(len(X))
            for j in range(0, len(X), 100):
                Xb, yb = X[order[j:j + 100]], y[order[j:j + 100]]
                with np.errstate(all="ignore"):
                    if k % every == 0:
                        F = model.forward_cache(Xb)[1]
                        rms = " ".join(f"{np.sqrt(np.mean(Fi.astype(np.float64) ** 2)):.3g}" for Fi in F[1:])
                    loss = method.step(model, Xb, yb)
                    if k % every == 0:
                        acc = float(np.mean(model.predict(X[:1000]) == y[:1000]))
                        print(f"| {k} | {loss:.4g} | {acc:.3f} | {rms} |", flush=True)
                k += 1


def train(data, init_std, seed, epochs, **method_kw):
    """``fit`` of SIBP(**method_kw) on the deep net; ``seed`` draws the weights and the batch order."""
    model = MLP(LAYERS, init_std=init_std, seed=seed)
    with np.errstate(all="ignore"):
        return fit(model, SIBP(**method_kw), *data.train, val=data.val, epochs=epochs, batch_size=100,
                   seed=seed, verbose=0)


def seeds(data, init_std, eta, epochs, n_seeds):
    """The default and the previous default (trust region alone) at ``eta``, lam=1, over seeds: each
    seed draws both the initial weights and the minibatch order."""
    print(f"\n## 784-600x10-10, init N(0, {init_std}^2), eta={eta}, lam=1, {epochs} epochs: train / val")
    print("| seed | default | previous default (trust region alone, radius 2) |")
    print("|---|---|---|")
    for seed in range(n_seeds):
        cells = []
        for kw in ({}, PREVIOUS):
            h = train(data, init_std, seed, epochs, eta=eta, lam=1.0, **kw)
            cells.append(f"{h.last['train_acc']:.4f} / {h.last['val_acc']:.4f}")
        print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)


def table(data, init_std, etas, epochs, rows):
    out = []
    print(f"\n## 784-600x10-10, init N(0, {init_std}^2), mnist-5k, {epochs} epochs, batch 100")
    print("| method | " + " | ".join(f"eta={e:g} train / val" for e in etas) + " |")
    print("|---|" + "---|" * len(etas))
    for label, kw in rows:
        cells = []
        for eta in etas:
            t = time.perf_counter()
            h = train(data, init_std, 0, epochs, eta=eta, **kw)
            last = h.last
            cell = f"{last['train_acc']:.4f} / {last['val_acc']:.4f}"
            if h.diverged:
                cell += f" (diverged, epoch {h.diverged['epoch']})"
            cells.append(cell)
            out.append({"method": label, "eta": eta, "init_std": init_std, "train_acc": last["train_acc"],
                        "val_acc": last["val_acc"], "diverged": h.diverged,
                        "seconds": time.perf_counter() - t})
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("analysis", "table", "growth", "seeds"))
    p.add_argument("--seeds", type=int, default=8, help="seeds: how many (0, 1, ...)")
    p.add_argument("--init-std", type=float, default=0.05)
    p.add_argument("--eta", type=float, default=1.0, help="analysis: the step")
    p.add_argument("--steps", type=int, default=2, help="analysis: steps shown")
    p.add_argument("--etas", default="0.1,1,10", help="table: the steps")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rows", default="0,1,2", help="table: rows by index (0 default lam=1, 1 default "
                   "lam=2, 2 compat='matlab' lam=2, 3 safeguard='none' lam=1, 4 the previous default "
                   "lam=1, 5 output-space prox alone lam=1, 6 trust region alone with radius 4)")
    p.add_argument("--json", default=None, help="table: also write the cells to this JSON file")
    a = p.parse_args(argv)
    print(f"environment: {json.dumps(environment())}")
    data = load_dataset("mnist-5k")
    with threadpool_limits(1):
        if a.what == "analysis":
            for label, kw in CONFIGS:
                analysis(data, a.init_std, a.eta, a.steps, label, kw)
        elif a.what == "growth":
            growth(data, a.init_std, a.eta, a.epochs)
        elif a.what == "seeds":
            seeds(data, a.init_std, a.eta, a.epochs, a.seeds)
        else:
            rows = [ROWS[int(r)] for r in a.rows.split(",")]
            cells = table(data, a.init_std, [float(e) for e in a.etas.split(",")], a.epochs, rows)
            if a.json:
                write_text(a.json, json.dumps({"environment": environment(), "cells": cells}, indent=1))


if __name__ == "__main__":
    main()
