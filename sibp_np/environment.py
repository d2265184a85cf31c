"""What a result was computed with: recorded in every history and experiment artefact.

Numbers from another machine (another CPU, BLAS or thread count) agree only to rounding, so an
artefact carries the package version, the git commit of the source when it is a checkout, NumPy's and
the BLAS library's versions, the BLAS thread count and the CPU model.
"""
import functools
import os
import platform
import subprocess
from pathlib import Path

import numpy

from ._version import __version__


def _git_commit():
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or len(commit) != 40:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas():
    """``(name and version, threads)``: from threadpoolctl when it is installed, else NumPy's build
    configuration and the thread environment variables."""
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return f"{pool.get('internal_api')} {pool.get('version')}", pool.get("num_threads")
    except ImportError:
        pass
    name = None
    config = getattr(getattr(numpy, "__config__", None), "CONFIG", None)
    if isinstance(config, dict):
        blas = config.get("Build Dependencies", {}).get("blas", {})
        name = f"{blas.get('name')} {blas.get('version')}".strip()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            return name, os.environ[var]
    return name, None


@functools.lru_cache(maxsize=1)
def _static():
    blas, _ = _blas()
    return {"sibp_np": __version__, "git_commit": _git_commit(), "python": platform.python_version(),
            "numpy": numpy.__version__, "blas": blas, "cpu": _cpu_model(), "cpu_count": os.cpu_count()}


def environment():
    """A dict describing this process: version, git commit (or None), Python, NumPy, BLAS and its
    thread count now, CPU model and count."""
    return {**_static(), "blas_threads": _blas()[1]}
