import os

# scikit-learn's check_array_api_input runs only with SciPy's array-API support switched on, which must
# happen before SciPy is first imported (nothing imports it before this file)
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest


def _cupy_usable():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0, ""
    except Exception as exc:  # not installed, or no device/driver
        return False, f"{type(exc).__name__}: {exc}"


HAS_GPU, GPU_REASON = _cupy_usable()


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Backend name; the cupy case is marked `gpu` and skipped, with the reason, without a device."""
    if request.param == "cupy" and not HAS_GPU:
        pytest.skip(f"no usable CUDA device for CuPy ({GPU_REASON or 'cupy not installed'})")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
