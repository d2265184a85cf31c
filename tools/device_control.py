"""SIBP's device-resident control (``control="device"``) against the host path, on NumPy.

    python tools/device_control.py syncs        # host syncs per step, host vs device, on three nets
    python tools/device_control.py beyond       # share of Armijo searches that need more than M trials
    python tools/device_control.py equivalence  # train accuracy, host vs device: mnist-5k grid, deep net
    python tools/device_control.py cost         # seconds per step on NumPy, host vs device (interleaved)
    python tools/device_control.py summary --backend cupy --cpu-threads 1,16   # the GPU check's timings

``summary`` times SGD and SIBP (``control="host"``, ``"device"``, and ``"device"`` with CUDA-graph replay)
per epoch on the backend, and SIBP on
the CPU at each thread count, on 784-500-10 and 3072-4000-1000-4000-10 (synthetic data, batch 100,
float32), counts the host syncs of a device step, and ends with one line ``GPU SUMMARY ...``
(``tests=`` comes from ``$GPU_TESTS``, which tools/gpu_check.sh sets from its pytest run). With
``--backend numpy`` it runs the same code on the CPU (a dry run of the script).

Everything runs at 1 BLAS thread, float32, on the embedded mnist-5k unless said otherwise.
"""
import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, SIBP, fit, load_dataset
from sibp_np.backend import count_host_syncs

NETS = {"784-500-10": [784, 500, 10], "784-600x10-10": [784] + [600] * 10 + [10],
        "3072-4000-1000-4000-10": [3072, 4000, 1000, 4000, 10]}


def syncs(a):
    r = np.random.default_rng(0)
    print("| net (B = 100) | host syncs per step | device syncs per step |\n|---|---|---|")
    for name, sizes in NETS.items():
        X = r.random((100, sizes[0]), dtype=np.float32)
        y = r.integers(0, sizes[-1], 100)
        counts = []
        for control in ("host", "device"):
            model, method = MLP(sizes, seed=0, init_std=0.05), SIBP(control=control)
            method.step(model, X, y)  # the first step (cold power iterations) aside
            with count_host_syncs() as c:
                method.step(model, X, y)
            counts.append(c.count)
        print(f"| {name} | {counts[0]} | {counts[1]} |", flush=True)


def beyond(a):
    data = load_dataset("mnist-5k")
    print("searches of the host path (record_stats) that took more than M trials, mnist-5k 784-500-10, "
          "5 epochs, seed 0, lam = 1")
    print("| eta | searches | > 2 | > 4 | > 8 | rejected (no step in 20) |\n|---|---|---|---|---|---|")
    for eta in (100.0, 10.0, 1.0, 0.1, 0.01):
        method = SIBP(eta=eta, lam=1.0, control="host")
        method.record_stats = True
        fit(MLP([784, 500, 10], seed=0), method, *data.train, epochs=5, seed=0, verbose=0)
        trials = [t for step in method.stats for s in step for (_, alpha, t) in s["steps"]]
        rejected = sum(alpha == 0 for step in method.stats for s in step for (_, alpha, _) in s["steps"])
        n = len(trials)
        share = [sum(t > m for t in trials) / n for m in (2, 4, 8)]
        print(f"| {eta:g} | {n} | {share[0]:.4f} | {share[1]:.4f} | {share[2]:.4f} | {rejected} |",
              flush=True)


def equivalence(a):
    data = load_dataset("mnist-5k")
    rows = [("784-500-10, 5 epochs", [784, 500, 10], 5, 0.01, (100.0, 10.0, 1.0, 0.1)),
            ("784-600x10-10 N(0, 0.05^2), 2 epochs", NETS["784-600x10-10"], 2, 0.05, (0.1, 1.0, 10.0))]
    print("train accuracy, host / device, seeds 0-2, lam = 1\n| net | eta | host | device | max |diff| |")
    print("|---|---|---|---|---|")
    for label, sizes, epochs, init_std, etas in rows:
        for eta in etas:
            acc = {}
            for control in ("host", "device"):
                acc[control] = []
                for seed in range(3):
                    model = MLP(sizes, seed=seed, init_std=init_std)
                    with np.errstate(all="ignore"):
                        h = fit(model, SIBP(eta=eta, lam=1.0, control=control), *data.train,
                                epochs=epochs, seed=seed, verbose=0)
                    acc[control].append(h.last["train_acc"])
            diff = max(abs(p - q) for p, q in zip(acc["host"], acc["device"]))
            print(f"| {label} | {eta:g} | {' '.join(f'{v:.4f}' for v in acc['host'])} | "
                  f"{' '.join(f'{v:.4f}' for v in acc['device'])} | {diff:.4f} |", flush=True)


def cost(a):
    r = np.random.default_rng(0)
    print("seconds per SIBP step on NumPy (B = 100, median of interleaved repeats)")
    print("| net | host | device | device / host |\n|---|---|---|---|")
    for name in ("784-500-10", "784-600x10-10"):
        sizes = NETS[name]
        X = r.random((100, sizes[0]), dtype=np.float32)
        y = r.integers(0, sizes[-1], 100)
        runs = {c: (MLP(sizes, seed=0, init_std=0.05), SIBP(control=c)) for c in ("host", "device")}
        times = {c: [] for c in runs}
        for _ in range(a.repeats):
            for c, (model, method) in runs.items():
                t = time.perf_counter()
                method.step(model, X, y)
                times[c].append(time.perf_counter() - t)
        h, d = np.median(times["host"]), np.median(times["device"])
        print(f"| {name} | {h:.4f} | {d:.4f} | {d / h:.2f} |", flush=True)


def _epoch_seconds(method, sizes, backend, samples, repeats):
    """Median seconds per epoch of ``method`` over ``samples`` synthetic samples, batch 100."""
    r = np.random.default_rng(0)
    X = r.random((samples, sizes[0]), dtype=np.float32)
    y = r.integers(0, sizes[-1], samples)
    model = MLP(sizes, seed=0, init_std=0.05, backend=backend)
    be = model.backend
    Xd, yd = be.asarray(X), be.asarray(y)
    method.step(model, Xd[:100], yd[:100])  # compile kernels, allocate, cold power iterations
    be.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for j in range(0, samples, 100):
            method.step(model, Xd[j:j + 100], yd[j:j + 100])
        be.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def summary(a):
    from sibp_np import SGD
    nets = {"small": NETS["784-500-10"], "wide": NETS["3072-4000-1000-4000-10"]}
    samples = {"small": a.samples, "wide": max(100, a.samples // 10)}
    threads = [int(t) for t in a.cpu_threads.split(",")]
    out, sync = {}, 0
    for key, sizes in nets.items():
        n = samples[key]
        sgd = _epoch_seconds(SGD(lr=0.1), sizes, a.backend, n, a.repeats)
        host = _epoch_seconds(SIBP(control="host"), sizes, a.backend, n, a.repeats)
        nograph = _epoch_seconds(SIBP(control="device", cuda_graph=False), sizes, a.backend, n, a.repeats)
        dev = _epoch_seconds(SIBP(control="device"), sizes, a.backend, n, a.repeats)  # graphs where possible
        cpu = {}
        for t in threads:
            with threadpool_limits(t):
                cpu[t] = _epoch_seconds(SIBP(), sizes, "numpy", max(100, n // a.cpu_fraction), 1) \
                    * a.cpu_fraction
        r = np.random.default_rng(0)
        model = MLP(sizes, seed=0, init_std=0.05, backend=a.backend)
        X = model.backend.asarray(r.random((100, sizes[0]), dtype=np.float32))
        y = model.backend.asarray(r.integers(0, sizes[-1], 100))
        method = SIBP(control="device")
        method.step(model, X, y)
        with count_host_syncs() as c:
            method.step(model, X, y)
        sync = max(sync, c.count)
        print(f"{key} {'-'.join(map(str, sizes))}, {n} samples: s/epoch SGD {sgd:.4f}, SIBP host "
              f"{host:.4f}, SIBP device {nograph:.4f}, SIBP device + graph replay {dev:.4f}; SIBP on the CPU "
              + ", ".join(f"{t} thread(s) {v:.3f}" for t, v in cpu.items())
              + f"; per step: host {host / (n / 100) * 1e3:.2f} ms, device "
              f"{nograph / (n / 100) * 1e3:.2f} ms, device + graph {dev / (n / 100) * 1e3:.2f} ms; "
              f"syncs per device step {c.count}", flush=True)
        out[key] = {"sgd": sgd, "dev": dev, "cpu": cpu[max(threads)]}
    tests = os.environ.get("GPU_TESTS", "?")
    print(f"GPU SUMMARY sibp_over_sgd_small={out['small']['dev'] / out['small']['sgd']:.2f} "
          f"sibp_over_sgd_wide={out['wide']['dev'] / out['wide']['sgd']:.2f} "
          f"gpu_over_cpu{max(threads)}_small={out['small']['cpu'] / out['small']['dev']:.2f} "
          f"gpu_over_cpu{max(threads)}_wide={out['wide']['cpu'] / out['wide']['dev']:.2f} "
          f"syncs_per_step={sync} tests={tests}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("syncs", "beyond", "equivalence", "cost", "summary"))
    p.add_argument("--repeats", type=int, default=None, help="cost: 20; summary: 2")
    p.add_argument("--backend", default="numpy", help="summary: the backend timed against the CPU")
    p.add_argument("--samples", type=int, default=5000, help="summary: samples per epoch, small net")
    p.add_argument("--cpu-threads", default="1", help="summary: BLAS threads of the CPU reference")
    p.add_argument("--cpu-fraction", type=int, default=5, help="summary: the CPU runs 1/N of the epoch")
    a = p.parse_args(argv)
    a.repeats = a.repeats or (2 if a.what == "summary" else 20)
    if a.what == "summary":
        summary(a)  # sets its own thread counts for the CPU reference
        return
    with threadpool_limits(1):
        {"syncs": syncs, "beyond": beyond, "equivalence": equivalence, "cost": cost}[a.what](a)


if __name__ == "__main__":
    main()
