"""Run the tests that assert a training outcome under other seeds and other BLAS kernels; report which fail.

    python tools/seed_audit.py                         # the tests marked `outcome`: seeds 0-9, 3 kernels
    python tools/seed_audit.py --seeds 3 --kernels default
    python tools/seed_audit.py --select "tests/test_sklearn.py -k regressor"   # any pytest selection

A test that asserts an accuracy, an R^2 or a loss holds on any CPU only if it holds with a margin over the
things that vary between machines. This runs the selected tests again under two such perturbations:

* **seed k** (k = 0 ... 9): every integer seed that the tests or the library hand to NumPy
  (``numpy.random.default_rng`` and ``numpy.random.RandomState``, which scikit-learn's ``random_state``
  goes through) becomes ``seed + k * 1000003``. Seed 0 is the suite as it is; seeds 1-9 are nine other
  draws of the data, the initial weights, the minibatches and the splits, as if every test had been
  written with another seed;
* **BLAS kernel**: ``OPENBLAS_CORETYPE`` makes NumPy's OpenBLAS use another CPU's kernels (those this
  CPU can run), which round as that CPU would. This is how a test that passes on AMD fails on Intel.

It prints one line per run and a table of the tests that failed anywhere, with where. It exits 1 when
any test failed. Loaded by pytest as a plugin (``-p seed_audit``), this file applies the seed shift
named by ``SIBP_NP_SEED_SHIFT``; it changes nothing when that is unset or 0.
"""
import argparse
import numbers
import os
import re
import subprocess
import sys
import time

import numpy as np

SHIFT = 1000003
KERNELS = ("default", "Sandybridge", "Nehalem")


def _shifted(seed, k):
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return int(seed) + k * SHIFT
    return seed


def pytest_configure(config):
    """The plugin: shift every integer seed by ``SIBP_NP_SEED_SHIFT * 1000003``."""
    k = int(os.environ.get("SIBP_NP_SEED_SHIFT", "0"))
    if not k:
        return
    default_rng = np.random.default_rng

    def shifted_default_rng(seed=None):
        return default_rng(_shifted(seed, k))

    class ShiftedRandomState(np.random.RandomState):
        def __init__(self, seed=None):
            super().__init__(_shifted(seed, k))

    np.random.default_rng = shifted_default_rng
    np.random.RandomState = ShiftedRandomState


def run(select, seed, kernel):
    env = {**os.environ, "SIBP_NP_SEED_SHIFT": str(seed), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel != "default":
        env["OPENBLAS_CORETYPE"] = kernel
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "seed_audit", "-p", "no:cacheprovider", "-rfE",
           "-W", "ignore::FutureWarning", *select]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, flags=re.M)
    summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
    return failed, summary, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--select", default="-m outcome", help="pytest arguments that pick the tests")
    p.add_argument("--seeds", type=int, default=10, help="seed shifts 0 ... N-1 (10)")
    p.add_argument("--kernels", default=",".join(KERNELS),
                   help=f"OPENBLAS_CORETYPE values, 'default' for this CPU's ({','.join(KERNELS)})")
    a = p.parse_args(argv)
    select = a.select.split()
    runs = [(s, "default") for s in range(a.seeds)]
    runs += [(0, k) for k in a.kernels.split(",") if k and k != "default"]
    where = {}
    for seed, kernel in runs:
        failed, summary, seconds = run(select, seed, kernel)
        print(f"seed {seed}, kernel {kernel}: {summary} ({seconds:.0f} s)", flush=True)
        for test in failed:
            where.setdefault(test, []).append(f"seed {seed}" if kernel == "default" else kernel)
    if not where:
        print(f"\nno test failed in {len(runs)} runs")
        return 0
    print(f"\n{len(where)} test(s) failed in some of the {len(runs)} runs:")
    print("| test | failed under |\n|---|---|")
    for test, runs_failed in sorted(where.items()):
        print(f"| {test} | {', '.join(runs_failed)} |")
    return 1


if __name__ == "__main__":
    sys.exit(main())
