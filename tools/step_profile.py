"""Where an SIBP step's time goes on a small network: calls per NCG iteration and microseconds per call.

    python tools/step_profile.py                  # 64-100-10, batch 100, 200 steps
    python tools/step_profile.py --layers 784,500,10 --steps 50 --top 25
    python tools/step_profile.py --jit            # SIBP(jit=True), the compiled solves (Numba)

Runs the steps under cProfile at 1 BLAS thread (after warm-up steps outside it; the minibatches checked
once, as ``fit`` passes them, ``checked=True``) and reports the NCG iterations they took (from
``record_stats`` of a separate, identical run), the function calls per NCG iteration (every Python
function and NumPy call that cProfile sees), the wall time per iteration measured without the profiler,
and the functions with the most calls.
"""
import argparse
import cProfile
import inspect
import pstats
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, SIBP


def batches(layers, steps, batch, seed=0):
    r = np.random.default_rng(seed)
    X = r.random((steps * batch, layers[0]), dtype=np.float32)
    y = r.integers(0, layers[-1], steps * batch)
    return [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


def run(layers, data, method=None, jit=False):
    """The steps as ``fit`` makes them: the minibatches checked once, outside the timed loop."""
    model = MLP(layers, seed=0, init_std=0.05)
    method = method or SIBP(jit=jit)
    checked = [model.check_Xy(Xb, yb) for Xb, yb in data]
    kw = {"checked": True} if "checked" in inspect.signature(method.step).parameters else {}
    for Xb, yb in checked:
        method.step(model, Xb, yb, **kw)
    return method


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="64,100,10")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--jit", action="store_true", help="SIBP(jit=True): the compiled inner solver (Numba)")
    a = p.parse_args(argv)
    layers = [int(v) for v in a.layers.split(",")]
    data = batches(layers, a.steps, a.batch)
    with threadpool_limits(1):
        counted = SIBP(jit=a.jit)
        counted.record_stats = True
        run(layers, data, counted)
        iterations = sum(int(s["iterations"]) for step in counted.stats for s in step)
        run(layers, data[:20], jit=a.jit)  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            run(layers, data, jit=a.jit)
            times.append(time.perf_counter() - t)
        prof = cProfile.Profile()
        prof.enable()
        run(layers, data, jit=a.jit)
        prof.disable()
    st = pstats.Stats(prof)
    calls = sum(v[1] for v in st.stats.values())  # primitive and recursive calls alike
    seconds = min(times)
    print(f"SIBP(jit={a.jit}), layers {layers}, batch {a.batch}, {a.steps} steps, {iterations} NCG "
          f"iterations ({iterations / a.steps:.1f} per step), 1 BLAS thread")
    print(f"wall time (best of 3, no profiler): {seconds * 1e3:.1f} ms, {seconds / a.steps * 1e6:.0f} us "
          f"per step, {seconds / iterations * 1e6:.1f} us per NCG iteration")
    print(f"function calls: {calls}, {calls / iterations:.1f} per NCG iteration; "
          f"{seconds / calls * 1e6:.2f} us per call on average")
    print(f"\nthe {a.top} functions with the most calls (calls per NCG iteration, own time per call):")
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][1])[:a.top]
    for (file, line, name), (_, ncalls, tottime, _, _) in rows:
        where = name if file == "~" else f"{file.rsplit('/', 1)[-1]}:{line}({name})"
        print(f"  {ncalls / iterations:7.2f}  {tottime / ncalls * 1e6:6.2f} us  {where}")


if __name__ == "__main__":
    main()
