"""SIBP off the paper's task: regression and the scikit-learn estimators at their defaults.

    python tools/regression.py spike [--seed 0]    # per layer, across a loss spike: plain vs capped
    python tools/regression.py seeds [--seeds 10]  # the sin task, estimator defaults, R^2 at 20 and 60
    python tools/regression.py scale               # fitting c*y, c in 0.01, 1, 100
    python tools/regression.py cv                  # 5-fold CV, raw y, against scikit-learn's MLPRegressor()
    python tools/regression.py methods             # every method at the estimator defaults

The sin task is the test suite's: x uniform on [-1, 1]^2 (seed 0), y = sin(3 x1) + x2^2, 500 samples to
train and 100 held out, 2-32-32-1, batch 50. Everything runs at 1 BLAS thread.
"""
import argparse
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, SIBP


def sin_task():
    r = np.random.default_rng(0)
    X = r.uniform(-1, 1, size=(600, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    return X[:500], y[:500], X[500:], y[500:]


def spikes(losses, start=10):
    """Epochs (1-based) after ``start`` whose loss is more than 3x the best before it."""
    return [e + 1 for e in range(start, len(losses)) if losses[e] > 3 * min(losses[:e])]


# ----------------------------------------------------------------------------------- spike analysis
def trace(neuron_step, seed, epochs):
    """Train the estimator's network on the sin task and record, per step and layer, what the issue
    names: the NCG's first trial step and accepted step (first iteration of the W solve), whether the
    trust region bound, the proximal weight in use, the fraction of dead ReLUs, the target distance
    ||T_i - F_i||, the step eta_i on the neurons, and how far the output moved against its target."""
    X, y, _, _ = sin_task()
    s = int(np.random.RandomState(seed).randint(np.iinfo(np.int32).max))
    model = MLP([2, 32, 32, 1], init_std=0.01, seed=s, loss="mse")
    method = SIBP(eta=0.1, lam=1.0, neuron_step=neuron_step)
    method.record_stats = True
    rng = np.random.default_rng(s)
    steps = []
    for epoch in range(epochs):
        order = rng.permutation(500)
        for j in range(10):
            rows = order[50 * j:50 * (j + 1)]
            Xb, yb = X[rows], y[rows, None]
            G, F = model.forward_cache(model.check_X(Xb))
            F_N = F[-1].astype(np.float64)
            gains = [np.linalg.norm(W, 2) for W in model.weights]
            method.step(model, Xb, yb)
            moved = model.forward(model.check_X(Xb)).astype(np.float64) - F_N
            target = method.last_targets[-1].astype(np.float64) - F_N
            stats = {(r["layer"], r["param"]): r for r in method.stats[-1]}
            layers = []
            for i in range(model.n_layers - 1, -1, -1):
                w = stats[(i, "W")]
                a0, a, _ = w["steps"][0] if w["steps"] else (0.0, 0.0, 0)
                layers.append({
                    "layer": i, "alpha0": a0, "alpha": a, "bound": "boundary" in w["message"],
                    "lam_W": w["lam"], "gain": gains[i], "eta_i": method.last_etas[i + 2],
                    "dead": float((G[i + 1] <= 0).mean()) if i < model.n_layers - 1 else None,
                    "target_distance": float(np.linalg.norm(method.last_targets[i + 2] - F[i + 1]))})
            steps.append({"epoch": epoch + 1, "batch": j,
                          "move": float(np.vdot(moved, target) / np.vdot(target, target)),
                          "train_loss": None, "layers": layers})
        pred = model.astype("float64").predict(X).ravel()
        steps[-1]["train_loss"] = 0.5 * float(np.mean((pred - y) ** 2))
    return steps


def spike(a):
    for neuron_step in ("plain", "capped"):
        steps = trace(neuron_step, a.seed, a.epochs)
        losses = [s["train_loss"] for s in steps if s["train_loss"] is not None]
        where = spikes(losses)
        moves = np.array([s["move"] for s in steps])
        print(f"\n## neuron_step={neuron_step!r}, eta = 0.1, lam = 1, seed {a.seed}: train loss per epoch")
        print(" ".join(f"{v:.3f}" for v in losses))
        print(f"spikes (epoch > 10, loss > 3x the best before): {where or 'none'}")
        print(f"output move along the target step (1 = exactly the target T_N): median "
              f"{np.median(moves):.2f}, 90th percentile {np.percentile(moves, 90):.2f}, epochs 1-5 "
              f"{np.median(moves[:50]):.2f}, epochs 15-{a.epochs} {np.median(moves[140:]):.2f}")
        first = where[0] if where else a.epochs
        print(f"\nper layer over the 20 steps before the epoch {first} record (median; output layer first)")
        print("| layer | alpha0 | alpha | trust region bound | lam_W | ||W||_2 | eta_i | dead ReLUs "
              "| ||T_i - F_i|| |")
        print("|---|---|---|---|---|---|---|---|---|")
        window = steps[max(0, 10 * first - 20):10 * first]
        for k in range(len(window[0]["layers"])):
            rows = [s["layers"][k] for s in window]

            def med(key, rows=rows):
                return float(np.median([r[key] for r in rows]))
            dead = "-" if rows[0]["dead"] is None else f"{med('dead'):.2f}"
            print(f"| {rows[0]['layer']} | {med('alpha0'):.3g} | {med('alpha'):.3g} | "
                  f"{sum(r['bound'] for r in rows)}/{len(rows)} | {med('lam_W'):.3g} | {med('gain'):.3g} "
                  f"| {med('eta_i'):.3g} | {dead} | {med('target_distance'):.3g} |")
        print("output move per step there: " + " ".join(f"{s['move']:.1f}" for s in window))


# ----------------------------------------------------------------------------------- estimator runs
def sin_seeds(a):
    from sibp_np.sklearn import MLPRegressor
    X, y, Xt, yt = sin_task()
    print("| seed | R^2 at max_iter=20 (epochs run) | R^2 at max_iter=60 (epochs run) | spikes in 60 |")
    print("|---|---|---|---|")
    worst = [1.0, 1.0]
    for seed in range(a.seeds):
        out = []
        for max_iter in (20, 60):
            reg = MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=max_iter, batch_size=50,
                               random_state=seed).fit(X, y)
            out.append((reg.score(Xt, yt), reg.n_iter_, [r["train_loss"] for r in reg.history_.records[1:]]))
        worst = [min(worst[0], out[0][0]), min(worst[1], out[1][0])]
        print(f"| {seed} | {out[0][0]:.4f} ({out[0][1]}) | {out[1][0]:.4f} ({out[1][1]}) | "
              f"{spikes(out[1][2]) or 'none'} |", flush=True)
    print(f"lowest R^2: {worst[0]:.4f} at 20, {worst[1]:.4f} at 60")


def scale(a):
    from sibp_np import fit
    from sibp_np.sklearn import MLPRegressor
    X, y, Xt, yt = sin_task()
    print("| c | SIBP(eta=0.1, lam=0.5) via fit | SIBP(eta=0.1, neuron_step='plain') via fit "
          "| MLPRegressor() max_iter=60 |")
    print("|---|---|---|---|")
    for c in (0.01, 1.0, 100.0):
        row = []
        for kw in ({"eta": 0.1, "lam": 0.5}, {"eta": 0.1, "neuron_step": "plain"}):
            model = MLP([2, 32, 32, 1], init_std=0.01, seed=0, loss="mse")
            fit(model, SIBP(**kw), X, c * y, epochs=60, batch_size=50, seed=0, verbose=0)
            p = model.astype("float64").predict(Xt).ravel()
            row.append(1 - ((p - c * yt) ** 2).sum() / ((c * yt - c * yt.mean()) ** 2).sum())
        reg = MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=60, batch_size=50, random_state=0)
        row.append(reg.fit(X, c * y).score(Xt, c * yt))
        print(f"| {c:g} | " + " | ".join(f"{v:.4f}" for v in row) + " |", flush=True)


def cv(a):
    from sklearn.datasets import load_diabetes, make_friedman1
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPRegressor as SkMLP
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sibp_np.sklearn import MLPRegressor
    tasks = {"friedman1 (noise 1, 100 samples)": make_friedman1(noise=1.0, random_state=0),
             "friedman1 (noise 1, 1,000 samples)": make_friedman1(1000, noise=1.0, random_state=0),
             "diabetes": load_diabetes(return_X_y=True)}
    print("| task | sibp_np MLPRegressor() R^2 (folds) | scikit-learn MLPRegressor() R^2 (folds) | "
          "sibp_np - scikit-learn |")
    print("|---|---|---|---|")
    for name, (X, y) in tasks.items():
        folds = KFold(5, shuffle=True, random_state=0)
        scores = []
        for est in (MLPRegressor(random_state=0), SkMLP(random_state=0)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter
                scores.append(cross_val_score(make_pipeline(StandardScaler(), est), X, y, cv=folds))
        print(f"| {name} | {scores[0].mean():.4f} ({' '.join(f'{v:.2f}' for v in scores[0])}) | "
              f"{scores[1].mean():.4f} ({' '.join(f'{v:.2f}' for v in scores[1])}) | "
              f"{scores[0].mean() - scores[1].mean():+.4f} |", flush=True)


def methods(a):
    from sklearn.datasets import load_digits, load_wine, make_friedman1
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkClf
    from sklearn.neural_network import MLPRegressor as SkReg
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sibp_np.sklearn import MLPClassifier, MLPRegressor
    tasks = {"friedman1, 100 samples, raw y (R^2)": (make_friedman1(noise=1.0, random_state=0), True),
             "friedman1, 1,000 samples, raw y (R^2)":
                 (make_friedman1(1000, noise=1.0, random_state=0), True),
             "wine (accuracy)": (load_wine(return_X_y=True), False),
             "digits (accuracy)": (load_digits(return_X_y=True), False)}
    names = ("sibp", "sgd", "adam", "rmsprop", "proxbp")
    print("held-out score (epochs run, seconds) at the estimator defaults; 25% held out, X standardised")
    print("| task | " + " | ".join(names) + " | scikit-learn |")
    print("|---|" + "---|" * (len(names) + 1))
    for label, ((X, y), regression) in tasks.items():
        Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.25, random_state=0)
        cells = []
        ours = MLPRegressor if regression else MLPClassifier
        for est in [ours(method=m, random_state=0) for m in names] + \
                   [(SkReg if regression else SkClf)(random_state=0)]:
            pipe = make_pipeline(StandardScaler(), est)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    pipe.fit(Xa, ya)
                    score = f"{pipe.score(Xb, yb):.4f}"
                except Exception as exc:  # a diverging run is a result here, not a crash
                    score = f"failed: {type(exc).__name__}"
            cells.append(f"{score} ({est.n_iter_}, {time.perf_counter() - t:.1f} s)")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("spike")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--epochs", type=int, default=40)
    sub.add_parser("seeds").add_argument("--seeds", type=int, default=10)
    sub.add_parser("scale")
    sub.add_parser("cv")
    sub.add_parser("methods")
    a = p.parse_args(argv)
    with threadpool_limits(1):
        {"spike": spike, "seeds": sin_seeds, "scale": scale, "cv": cv, "methods": methods}[a.command](a)


if __name__ == "__main__":
    main()
