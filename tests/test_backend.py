import inspect
import subprocess
import sys
import types

import numpy as np
import pytest

import sibp_np.backend as B
from sibp_np.backend import DEVICE_OPS, FUSED_OPS, Backend, backend_of, get_backend, set_backend, use_backend
from sibp_np.backend.cupy_backend import CupyBackend


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    monkeypatch.delenv("SIBP_NP_BACKEND", raising=False)
    set_backend(None)
    yield
    set_backend(None)


@pytest.mark.parametrize("value", ["numpy", " NumPy ", "NUMPY\n", ""])
def test_env_var_matching_ignores_case_and_whitespace(monkeypatch, value):
    monkeypatch.setenv("SIBP_NP_BACKEND", value)
    assert get_backend().name == "numpy"


def test_env_var_typo_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SIBP_NP_BACKEND", "numpyy")
    with pytest.raises(ValueError, match=r"SIBP_NP_BACKEND='numpyy' is not a known backend; choose one "
                                         r"of numpy, cupy"):
        get_backend()


def test_env_var_is_read_at_first_use_not_import(monkeypatch):
    monkeypatch.setenv("SIBP_NP_BACKEND", "bogus")  # importing must not fail
    code = "import os; os.environ['SIBP_NP_BACKEND']='bogus'; import sibp_np; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "imported" in out.stdout


def test_precedence_explicit_then_context_then_set_then_env(monkeypatch):
    monkeypatch.setenv("SIBP_NP_BACKEND", "cupy")  # would fail if it were consulted
    set_backend("numpy")
    assert get_backend().name == "numpy"
    with use_backend("numpy") as be:
        assert be is get_backend()
    assert get_backend("numpy").name == "numpy"
    with pytest.raises(ValueError, match="backend='jax'"):
        get_backend("jax")
    with pytest.raises(TypeError, match="backend must be a str, one of numpy, cupy"):
        get_backend(3)


def test_cupy_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    B._instances.pop("cupy", None)
    with pytest.raises(ImportError, match=r'pip install "sibp_np\[gpu\]"') as info:
        get_backend("cupy")
    assert info.value.__cause__ is not None


def test_cupy_without_device_is_a_runtime_error(monkeypatch):
    fake = types.ModuleType("cupy")

    class _Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake.cuda = types.SimpleNamespace(runtime=_Runtime)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    B._instances.pop("cupy", None)
    with pytest.raises(RuntimeError, match="no CUDA device is usable: cudaErrorNoDevice"):
        get_backend("cupy")
    B._instances.pop("cupy", None)


def test_import_does_not_import_cupy():
    code = "import sys, sibp_np; sibp_np.MLP([3, 2]); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backend_of_numpy_arrays_is_numpy():
    assert backend_of(np.zeros(3), [1, 2]).name == "numpy"


def test_device_ops_are_exactly_the_overrides_with_the_base_signatures():
    overridden = {n for n, f in vars(CupyBackend).items()
                  if callable(f) and (not n.startswith("_") or n == "_solve_spd") and hasattr(Backend, n)
                  and n not in ("to_host", "synchronize")}
    assert overridden == set(FUSED_OPS) | set(DEVICE_OPS)
    for op in FUSED_OPS + DEVICE_OPS:
        assert inspect.signature(getattr(CupyBackend, op)) == inspect.signature(getattr(Backend, op))


def test_reference_ops_against_plain_formulas(rng):
    be = get_backend("numpy")
    z, p, t = rng.normal(size=(3, 17, 9))
    z[0, :3] = 0.0
    np.testing.assert_array_equal(be.masked_residual(z, t), np.where(z > 0, z - t, 0.0))
    for alpha in (0.0, 0.37, -2.0):
        ref = ((np.maximum(z + alpha * p, 0) - t) ** 2).sum()
        assert be.masked_residual_sqnorm(z, p, t, alpha) == pytest.approx(ref, rel=1e-13)
    assert be.masked_sqnorm(z, p) == pytest.approx(((p * (z > 0)) ** 2).sum(), rel=1e-13)
    d = rng.normal(size=9)  # a broadcast bias direction
    ref = ((np.maximum(z + 0.5 * d, 0) - t) ** 2).sum()
    assert be.masked_residual_sqnorm(z, d[None, :], t, 0.5, work=np.empty_like(z)) == pytest.approx(ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_norm_is_numpys_norm_bit_for_bit(dtype, rng):
    """``vector_norm`` (the trust radii's norms) gives ``numpy.linalg.norm``'s bits and dtype, also for
    vectors whose squares over- or underflow in the dtype."""
    be = get_backend("numpy")
    for n in (1, 3, 64, 500, 4097):
        for scale in (1e-30, 1e-3, 1.0, 1e25):
            a = (rng.normal(size=n) * scale).astype(dtype)
            with np.errstate(over="ignore", under="ignore"):
                got, ref = be.vector_norm(a), np.linalg.norm(a)
            assert got.dtype == ref.dtype == dtype
            assert got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("rows", [5, 1])
def test_shifted_rounds_as_scale_then_add(rows, rng):
    """``shifted`` (a line-search trial's ``Z + alpha P``) gives the bits of ``fl(fl(alpha P) + Z)``
    for a full direction and for a one-row bias direction, which it scales before broadcasting."""
    z = rng.normal(size=(5, 7)).astype(np.float32)
    p = rng.normal(size=(rows, 7)).astype(np.float32)
    expected = np.broadcast_to(p * np.float32(0.37), z.shape) + z
    got = Backend().shifted(z, p, 0.37, out=np.empty_like(z))
    assert got.tobytes() == expected.tobytes()


# ---------------------------------------------------------------------------------------- backend
def test_solve_spd_solves(rng):
    A = rng.normal(size=(6, 6))
    A = A @ A.T + 6 * np.eye(6)
    B = rng.normal(size=(6, 3))
    np.testing.assert_allclose(get_backend("numpy").solve_spd(A, B), np.linalg.solve(A, B), rtol=1e-12)
