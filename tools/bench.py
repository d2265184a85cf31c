"""Benchmark: seconds per epoch of SGD, Adam, SIBP and ProxBP, measured side by side in one run.

    python tools/bench.py                      # 784-500-10, batch 100, 55,000 MNIST-shaped samples
    python tools/bench.py --quick              # 11,000 samples, 1 repeat
    python tools/bench.py --backend cupy       # on a GPU: also fused vs unfused SIBP and GPU/CPU ratio
    python tools/bench.py --layers 3072,4000,1000,4000,10 --samples 5000

Each repeat runs one epoch of every method in turn (interleaved), on the same data and minibatch order;
the table gives the median over repeats. Only update steps are timed (as ``fit``'s ``train_seconds``).
BLAS runs on ``--threads`` threads (default 1; threadpoolctl). The matmul peak is the best of several
float32 ``n x n @ n x n`` products measured in the same process; a method's "fraction of peak" counts
the flops of its matrix products only.
"""
import argparse
import importlib.util
import json
import math
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from sibp_np import MLP, SGD, SIBP, Adam, ProxBP, get_backend
from sibp_np.environment import environment


def matmul_peak(backend, dtype, n=1024, reps=5):
    r = np.random.default_rng(0)
    A = backend.asarray(r.random((n, n)), dtype=dtype)
    Bm = backend.asarray(r.random((n, n)), dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        backend.synchronize()
        t = time.perf_counter()
        A @ Bm
        backend.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def bp_flops(layers, B):
    """Matrix-product flops of one BP step: forward, dW for every layer, delta below the top."""
    f = sum(2 * B * a * b for a, b in zip(layers[:-1], layers[1:]))
    return 2 * f + sum(2 * B * a * b for a, b in zip(layers[1:-1], layers[2:]))


def epoch_seconds(model, method, X, y, order, B):
    """Seconds of the update steps of one epoch, as ``fit`` runs them: the data checked once, each
    minibatch passed with ``checked=True`` (where the method takes it; older code: checked per step)."""
    import inspect
    be = model.backend
    checked = "checked" in inspect.signature(method.step).parameters
    if checked:
        X, y = model.check_Xy(X, y)
    kw = {"checked": True} if checked else {}
    total = 0.0
    for j in range(0, len(order), B):
        idx = order[j:j + B]
        Xb, yb = X[idx], y[idx]
        be.synchronize()
        t = time.perf_counter()
        method.step(model, Xb, yb, **kw)
        be.synchronize()
        total += time.perf_counter() - t
    return total


def _bare_weights(layers, dtype, r):
    """The weights of the bare-NumPy loops below, ``(n_out, n_in)`` each, drawn from ``r``."""
    return [r.normal(0, 0.01, (b, a)).astype(dtype) for a, b in zip(layers[:-1], layers[1:])]


def numpy_floor_epoch(layers, X, y, order, B, lr=0.1, seed=0):
    """The floor for our SGD: a bare NumPy loop with the same matrix products (forward, dW, dH, ReLU,
    softmax cross-entropy), no checks, no engine. Seconds of one epoch."""
    r = np.random.default_rng(seed)
    Ws = _bare_weights(layers, X.dtype, r)
    bs = [np.zeros(b, X.dtype) for b in layers[1:]]
    lr = X.dtype.type(lr)
    total = 0.0
    for j in range(0, len(order), B):
        idx = order[j:j + B]
        Xb, yb = X[idx], y[idx]
        t = time.perf_counter()
        Fs, A = [Xb], Xb
        for i, (W, b) in enumerate(zip(Ws, bs)):
            A = A @ W.T + b
            if i < len(Ws) - 1:
                A = np.maximum(A, 0)
            Fs.append(A)
        P = np.exp(A - A.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(len(yb)), yb] -= 1
        D = P / X.dtype.type(len(yb))
        for i in range(len(Ws) - 1, -1, -1):
            gW, gb = D.T @ Fs[i], D.sum(axis=0)
            if i > 0:
                D = (D @ Ws[i]) * (Fs[i] > 0)
            Ws[i] -= lr * gW
            bs[i] -= lr * gb
        total += time.perf_counter() - t
    return total


def numpy_matmul_epoch(layers, X, y, order, B, seed=0):
    """The matrix products of our SGD step alone (forward, dW, delta; same shapes, same order), with
    no elementwise work at all: a bound below any NumPy SGD on this BLAS. Seconds of one epoch."""
    r = np.random.default_rng(seed)
    Ws = _bare_weights(layers, X.dtype, r)
    Ds = [r.normal(0, 0.01, (B, b)).astype(X.dtype) for b in layers[1:]]
    total = 0.0
    for j in range(0, len(order) - B + 1, B):
        Xb = X[order[j:j + B]]
        t = time.perf_counter()
        Fs, A = [Xb], Xb
        for W in Ws:
            A = A @ W.T
            Fs.append(A)
        for i in range(len(Ws) - 1, -1, -1):
            Ds[i].T @ Fs[i]
            if i > 0:
                Ds[i] @ Ws[i]
        total += time.perf_counter() - t
    return total * len(order) / (len(order) - len(order) % B)


def torch_version():
    import torch
    return torch.__version__


def torch_epochs(layers, X, y, order, B):
    """PyTorch CPU SGD and Adam epoch makers (same data, same minibatches), or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    idx = torch.from_numpy(np.asarray(order, dtype=np.int64))

    def make(opt_cls, **kw):
        torch.manual_seed(0)
        mods = []
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            mods.append(torch.nn.Linear(a, b))
            if i < len(layers) - 2:
                mods.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*mods)
        opt = opt_cls(net.parameters(), **kw)
        loss_fn = torch.nn.CrossEntropyLoss()

        def epoch():
            total = 0.0
            for j in range(0, len(idx), B):
                rows = idx[j:j + B]
                Xb, yb = Xt[rows], yt[rows]
                t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss_fn(net(Xb), yb).backward()
                opt.step()
                total += time.perf_counter() - t
            return total
        return epoch
    return {"torch-sgd": make(torch.optim.SGD, lr=0.1), "torch-adam": make(torch.optim.Adam, lr=1e-3)}


def time_to_accuracy(a):
    """Seconds of update steps each method needs to reach ``a.target`` validation accuracy on
    Fashion-MNIST 784-500-10 (records every 55 steps; evaluation time is not counted).

    Every method first makes a few steps on a throwaway model (the warm-up: Numba's compiled code is
    loaded once per process, about half a second, and NumPy's and PyTorch's first calls allocate); then
    the races run ``a.repeats`` times, interleaved, and the table gives each method's median."""
    from sibp_np import Callback, fit, load_dataset

    class StopAt(Callback):
        def on_record(self, run, record):
            if (record["val_acc"] or 0.0) >= a.target:
                run.stop()

    data = load_dataset("fashion-mnist")
    runs = (("SIBP eta=1 lam=1", lambda: SIBP(eta=1.0, lam=1.0)), ("Adam lr=1e-3", lambda: Adam(lr=1e-3)),
            ("SGD lr=0.1", lambda: SGD(lr=0.1)))
    if importlib.util.find_spec("numba"):  # the compiled inner solver, an optional extra
        runs = runs[:1] + (("SIBP eta=1 lam=1 jit", lambda: SIBP(eta=1.0, lam=1.0, jit=True)),) + runs[1:]

    def race(make):
        h = fit(MLP([784, 500, 10], seed=0), make(), *data.train, val=data.val, epochs=10 ** 6,
                seed=0, verbose=0, eval_every=55, time_budget=a.max_seconds, callbacks=[StopAt()])
        last = h.last
        reached = last["val_acc"] >= a.target
        return (last["elapsed_seconds"] if reached else math.inf), last["epoch_float"], last["val_acc"]

    torch_race = torch_time_to_accuracy(data, a)
    print(f"time to {a.target} validation accuracy, Fashion-MNIST 784-500-10, batch 100, seed 0, "
          f"records every 55 steps, at most {a.max_seconds:g} s of steps; median of {a.repeats} interleaved "
          f"repeats, after a warm-up of 5 steps per method")
    print("| method | seconds | each repeat | epochs | val acc reached |")
    print("| --- | --- | --- | --- | --- |")
    races = dict(runs)
    if torch_race is not None:
        races["PyTorch Adam lr=1e-3 (same init)"] = torch_race
    results = {label: [] for label in races}
    with threadpool_limits(a.threads):
        X, y = data.train
        for _label, make in runs:  # the warm-up
            fit(MLP([784, 500, 10], seed=1), make(), X[:500], y[:500], epochs=1, verbose=0)
        if torch_race is not None:
            torch_race(warm_up=True)
        for _ in range(a.repeats):
            for label, make in races.items():
                results[label].append(make() if label.startswith("PyTorch") else race(make))
    for label, rows in results.items():
        seconds = sorted(r[0] for r in rows)
        median = seconds[len(seconds) // 2]
        secs = f"{median:.2f}" if math.isfinite(median) else f"> {a.max_seconds:g}"
        each = ", ".join(f"{t:.2f}" for t in (r[0] for r in rows))
        print(f"| {label} | {secs} | {each} | {rows[0][1]:.2f} | {rows[0][2]:.4f} |", flush=True)


def torch_time_to_accuracy(data, a):
    """The same race for PyTorch's Adam (lr 1e-3) from our initial weights and minibatch order, when
    torch is importable (a benchmark-only dependency): a function that runs it and returns
    ``(seconds, epochs, val_acc)`` (``warm_up=True``: 5 steps on throwaway weights), or None."""
    try:
        import torch
    except ImportError:
        return None
    from sibp_np import MLP
    torch.set_num_threads(a.threads)
    X, y = torch.from_numpy(data.X_train.astype(np.float32)), torch.from_numpy(data.y_train.astype(np.int64))
    Xv, yv = torch.from_numpy(data.X_val.astype(np.float32)), torch.from_numpy(data.y_val.astype(np.int64))

    def race(warm_up=False):
        model = MLP([784, 500, 10], seed=0)
        net = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10))
        with torch.no_grad():
            for lin, W, b in zip((net[0], net[2]), model.weights, model.biases):
                lin.weight.copy_(torch.from_numpy(np.asarray(W)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b)))
        opt, loss_fn = torch.optim.Adam(net.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
        rng, n, seconds, steps, acc = np.random.default_rng(0), X.shape[0], 0.0, 0, 0.0
        while seconds < a.max_seconds:
            order = torch.from_numpy(rng.permutation(n))
            for j in range(0, n, 100):
                idx = order[j:j + 100]
                t = time.perf_counter()
                opt.zero_grad()
                loss_fn(net(X[idx]), y[idx]).backward()
                opt.step()
                seconds += time.perf_counter() - t
                steps += 1
                if warm_up and steps == 5:
                    return None
                if steps % 55 == 0:
                    with torch.no_grad():
                        acc = float((net(Xv).argmax(1) == yv).float().mean())
                    if acc >= a.target:
                        break
            else:
                continue
            break
        return (seconds if acc >= a.target else math.inf), steps * 100 / n, acc

    return race


MEMORY_SCRIPT = r"""
import json, resource, sys
import numpy as np
from sibp_np import MLP, fit, get_method
name, steps, n, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
kw = {"sgd": {"lr": 0.1}, "adam": {}, "rmsprop": {}, "sibp": {}, "proxbp": {}}[name]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # interpreter + imports
r = np.random.default_rng(0)
X = r.random((n, layers[0]), dtype=np.float32)
y = r.integers(0, layers[-1], size=n)
model = MLP(layers, seed=0)
method = get_method(name, **kw)
# fit with epochs=0 runs fit's whole set-up and its chunked full-set evaluation; then minibatch steps
fit(model, method, X, y, epochs=0, batch_size=100, verbose=0)
order = r.permutation(n)
for j in range(steps):
    idx = order[j * 100:(j + 1) * 100]
    method.step(model, X[idx], y[idx])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
state = sum(v.nbytes for v in method.state.values() if hasattr(v, "nbytes"))
print(json.dumps({"base": base, "peak": peak, "data": X.nbytes + y.nbytes,
                  "params": sum(p.nbytes for p in model.params()), "state": state}))
"""


def memory_report(a):
    """Peak RSS of fit (minus the bare interpreter's) against data + parameters + optimizer state."""
    import json
    import subprocess
    import sys
    layers = [3072, 4000, 1000, 4000, 10] if a.layers == "784,500,10" else \
        [int(v) for v in a.layers.split(",")]
    n = 45000 if a.samples == 55000 else a.samples
    print(f"peak memory of fit: layers {layers}, {n} random float32 samples, batch 100, "
          f"{a.memory_steps} steps after the full-set evaluation (ru_maxrss of a fresh subprocess, "
          f"minus the interpreter's own)")
    print(f"{'method':<8} {'data MB':>8} {'params MB':>9} {'state MB':>8} {'peak-base MB':>12} {'ratio':>6}")
    for name in a.methods.split(","):
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, name, str(a.memory_steps), str(n),
                              json.dumps(layers)], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        budget = m["data"] + m["params"] + m["state"]
        used = m["peak"] - m["base"]
        print(f"{name:<8} {m['data'] / 2**20:8.1f} {m['params'] / 2**20:9.1f} {m['state'] / 2**20:8.1f} "
              f"{used / 2**20:12.1f} {used / budget:6.2f}", flush=True)
    print("ratio = (peak - base) / (data + params + state); the goal is at most 2.5")


def parse_args(argv=None):
    """The command line of this tool (also read by the README test of "Which method?")."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--layers", default="784,500,10")
    p.add_argument("--samples", type=int, default=55000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--methods", default="sgd,adam,sibp,proxbp")
    p.add_argument("--quick", action="store_true", help="11,000 samples, 1 repeat")
    p.add_argument("--small", action="store_true",
                   help="the small net where scikit-learn users live: 64-100-10 (digits-sized), 17,970 "
                        "samples, methods sgd,adam,sibp, 5 repeats")
    p.add_argument("--time-to-accuracy", action="store_true",
                   help="seconds to --target validation accuracy on Fashion-MNIST (SIBP, Adam, SGD)")
    p.add_argument("--target", type=float, default=0.86)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="leave out the bare-NumPy floor and PyTorch (when importable) epochs")
    p.add_argument("--cpu-threads", default="1",
                   help="with --backend cupy: BLAS threads of the CPU reference epochs, comma-separated (1)")
    p.add_argument("--cpu-samples", type=int, default=None,
                   help="with --backend cupy: time the CPU reference on this many samples and scale its "
                        "seconds per step to the epoch (default: all)")
    p.add_argument("--memory", action="store_true",
                   help="peak memory of fit on 3072-4000-1000-4000-10 with 45,000 random CIFAR-shaped "
                        "float32 samples, batch 100, per method (each in its own subprocess)")
    p.add_argument("--memory-steps", type=int, default=20,
                   help="minibatch steps after fit's full-set evaluation in --memory (20)")
    a = p.parse_args(argv)
    if a.small:
        a.layers, a.samples, a.repeats = "64,100,10", 17970, 5
        a.methods = "sgd,adam,sibp" + (",sibp-jit" if importlib.util.find_spec("numba") else "")
    return a


def main(argv=None):
    a = parse_args(argv)
    print(f"environment: {json.dumps(environment())}")
    if a.memory:
        return memory_report(a)
    if a.time_to_accuracy:
        return time_to_accuracy(a)
    if a.quick:
        a.samples, a.repeats = 11000, 1
    layers = [int(v) for v in a.layers.split(",")]
    B = a.batch_size
    be = get_backend(a.backend)
    r = np.random.default_rng(0)
    X = be.asarray(r.random((a.samples, layers[0]), dtype=np.float32), dtype=a.dtype)
    y = be.asarray(r.integers(0, layers[-1], size=a.samples))
    order = be.asarray(r.permutation(a.samples))
    makers = {"sgd": lambda: SGD(lr=0.1), "adam": lambda: Adam(lr=1e-3),
              "sibp": lambda: SIBP(eta=1.0, lam=1.0, cg_steps=5),
              "sibp-primal": lambda: SIBP(eta=1.0, lam=1.0, cg_steps=5, weight_form="primal"),
              "sibp-previous": lambda: SIBP(eta=1.0, lam=1.0, cg_steps=5, prox_metric="weights",
                                            trust_radius=2.0),  # the default before the output metric
              "sibp-jit": lambda: SIBP(eta=1.0, lam=1.0, cg_steps=5, jit=True),  # needs numba
              "proxbp": lambda: ProxBP(eta=1.0, lam=1.0, cg_steps=5)}
    names = a.methods.split(",")
    fused_pair = be.name == "cupy" and "sibp" in names
    if fused_pair:
        names.append("sibp-unfused")
        makers["sibp-unfused"] = makers["sibp"]
    with threadpool_limits(a.threads):
        blas = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)" for i in threadpool_info()]
        peak = matmul_peak(be, a.dtype)
        models = {n: MLP(layers, seed=0, dtype=a.dtype, backend=be) for n in names}
        names = list(names)
        methods = {n: makers[n]() for n in names}
        extra = {}
        if be.name == "numpy" and a.compare:
            Xh, yh, oh = be.to_host(X), be.to_host(y), be.to_host(order)
            extra["numpy-floor"] = lambda: numpy_floor_epoch(layers, Xh, yh, oh, B)
            extra["numpy-matmuls"] = lambda: numpy_matmul_epoch(layers, Xh, yh, oh, B)
            extra.update(torch_epochs(layers, Xh, yh, oh, B))
        names += list(extra)
        times = {n: [] for n in names}
        if be.name == "cupy":  # compile and load every kernel before the clock runs
            for n in [m for m in names if m not in extra]:
                be.fused = n != "sibp-unfused"
                warm = MLP(layers, seed=0, dtype=a.dtype, backend=be)
                epoch_seconds(warm, makers[n](), X, y, order[:3 * B], B)
        for _rep in range(a.repeats):
            for n in names:
                if n in extra:
                    times[n].append(extra[n]())
                    continue
                if be.name == "cupy":
                    be.fused = n != "sibp-unfused"
                times[n].append(epoch_seconds(models[n], methods[n], X, y, order, B))
        if be.name == "cupy":
            be.fused = True
        # SIBP's counters, measured on a short separate pass so the timing above carries no bookkeeping
        stats = {}
        for n in [m for m in names if m.startswith("sibp") and m != "sibp-unfused"]:
            m = SIBP(**methods[n].hyperparameters())
            m.record_stats = True
            model = MLP(layers, seed=0, dtype=a.dtype, backend=be)
            for j in range(0, min(50 * B, a.samples), B):
                m.step(model, X[order[j:j + B]], y[order[j:j + B]])
            flat = [s for step in m.stats for s in step]
            its = sum(s["iterations"] for s in flat)
            stats[n] = dict(matmuls=m.matmuls_last_step, design=m.matmul_design(model, B),
                            trials=sum(s["trials"] for s in flat) / max(its, 1),
                            rejected=sum(s["rejected"] for s in flat), flops=m.flops_last_step,
                            forms=sorted({f"L{s['layer']}:{s['form']}" for s in flat if s["form"]}))
    steps = -(-a.samples // B)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"backend {be.name}, {a.dtype}, layers {layers}, batch {B}, {a.samples} samples "
          f"({steps} steps/epoch), {a.repeats} interleaved repeats; BLAS: {'; '.join(blas) or 'n/a'}")
    print(f"measured matmul peak: {peak / 1e9:.1f} GFLOP/s ({a.dtype}, 1024^3)")
    print(f"{'method':<13} {'s/epoch':>8} {'x SGD':>6} {'GFLOP/s':>8} {'% peak':>7}  notes")
    for n in names:
        fl = bp_flops(layers, B) if n in ("sgd", "adam", "numpy-floor", "numpy-matmuls", "torch-sgd",
                                          "torch-adam") else None
        if n in stats:
            fl = stats[n]["flops"]
        rate = fl * steps / med[n] if fl else None
        note = ""
        if n in stats:
            s = stats[n]
            note = (f"matmuls/step {s['matmuls']} (design {s['design']}), flops x SGD "
                    f"{s['flops'] / bp_flops(layers, B):.2f}, trials/NCG-it {s['trials']:.2f}, "
                    f"rejected {s['rejected']}, W forms {' '.join(s['forms'])}")
        if n == "proxbp":
            note = "flops not counted (CG products vary)"
        if n == "numpy-floor":
            note = "bare NumPy loop, same products: our SGD / floor = " + f"{med['sgd'] / med[n]:.3f}" \
                if "sgd" in med else "bare NumPy loop"
        if n == "numpy-matmuls":
            note = "the SGD step's matrix products alone" + "".join(
                f"; / {t} = {med[n] / med[t]:.3f}" for t in ("torch-sgd", "torch-adam") if t in med)
        if n.startswith("torch-"):
            ours = "sgd" if n == "torch-sgd" else "adam"
            note = f"PyTorch {torch_version()} CPU; ours / PyTorch = {med[ours] / med[n]:.3f}" \
                if ours in med else f"PyTorch {torch_version()}"
        ratio = med[n] / med["sgd"] if "sgd" in med else float("nan")
        gf = f"{rate / 1e9:8.1f}" if rate else f"{'-':>8}"
        pk = f"{100 * rate / peak:6.1f}%" if rate else f"{'-':>7}"
        print(f"{n:<13} {med[n]:8.3f} {ratio:6.2f} {gf} {pk}  {note}")
    if fused_pair:
        print(f"fused line search: sibp-unfused / sibp = {med['sibp-unfused'] / med['sibp']:.2f}")
    if be.name == "cupy":
        fused_op_report(be, layers, B, a.dtype)
        cpu_report(a, be, layers, B, X, y, order, makers, med, steps)
    return med


def fused_op_report(be, layers, B, dtype, reps=200):
    """Seconds per call of each line-search op, fused kernel against the unfused reference, on the
    ``(B, n_out)`` arrays of every layer (what one line-search trial touches)."""
    ref = be.unfused()
    r = np.random.default_rng(1)
    print(f"fused line-search ops, {reps} calls each, per call (unfused / fused):")
    for n_out in sorted(set(layers[1:])):
        z, p, t = (be.asarray(r.normal(size=(B, n_out)), dtype=dtype) for _ in range(3))
        work = be.xp.empty_like(z)
        ops = {"masked_residual_sqnorm": ((z, p, t, 0.5), {"work": work}),
               "masked_sqnorm": ((z, p), {"work": work}),
               "masked_residual": ((z, t), {"out": work})}
        cells = []
        for op, (args, kw) in ops.items():
            sec = {}
            for side, m in (("fused", be), ("unfused", ref), ("fused", be), ("unfused", ref)):
                call = getattr(m, op)
                call(*args, **kw)  # warm (compiles on first use)
                be.synchronize()
                t0 = time.perf_counter()
                for _ in range(reps):
                    call(*args, **kw)
                be.synchronize()
                sec[side] = min(sec.get(side, float("inf")), (time.perf_counter() - t0) / reps)
            cells.append(f"{op} {1e6 * sec['unfused']:.1f}/{1e6 * sec['fused']:.1f} us "
                         f"= {sec['unfused'] / sec['fused']:.2f}x")
        print(f"  ({B}, {n_out}): " + "; ".join(cells))


def cpu_report(a, be, layers, B, X, y, order, makers, med, steps):
    """The same epoch on the host CPU (one run per thread count), for the GPU/CPU ratio."""
    cpu = get_backend("numpy")
    n = a.cpu_samples or a.samples
    Xh, yh, oh = be.to_host(X), be.to_host(y), be.to_host(order)[:n]
    cpu_steps = -(-n // B)
    for threads in [int(v) for v in str(a.cpu_threads).split(",")]:
        with threadpool_limits(threads):
            for name in [m for m in ("sgd", "adam", "sibp", "proxbp") if m in med]:
                t = epoch_seconds(MLP(layers, seed=0, dtype=a.dtype, backend=cpu), makers[name](),
                                  Xh, yh, oh, B) * steps / cpu_steps
                print(f"CPU ({threads} BLAS thr, {cpu_steps} steps scaled to {steps}) {name}: "
                      f"{t:.3f} s/epoch; GPU/CPU speed-up {t / med[name]:.1f}x")


if __name__ == "__main__":
    main()
