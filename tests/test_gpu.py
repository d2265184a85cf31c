"""CuPy backend: fused kernels against the reference, and CPU/GPU parity of whole runs.

Everything marked `gpu` is skipped, with the reason, where no CUDA device is usable."""
import numpy as np
import pytest
from conftest import GPU_REASON, HAS_GPU

from sibp_np import MLP, SGD, SIBP, Adam
from sibp_np.backend import Backend, get_backend

pytestmark = pytest.mark.gpu
if not HAS_GPU:
    pytestmark = [pytest.mark.gpu, pytest.mark.skip(
        reason=f"no usable CUDA device for CuPy ({GPU_REASON or 'cupy not installed'})")]

TOL = {np.float32: dict(rtol=2e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(scope="module")
def gpu():
    return get_backend("cupy")


def _ref(gpu):
    """The base class's reference math running on CuPy (the unfused path)."""
    ref = Backend()
    ref.xp = gpu.xp
    ref.name = "cupy-reference"
    return ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (100, 500), (3001, 1021)])  # odd; several grids
def test_fused_ops_match_reference_and_numpy(gpu, dtype, shape):
    cp = gpu.xp
    r = np.random.default_rng(0)
    z, p, t = (r.normal(size=shape).astype(dtype) for _ in range(3))
    z.flat[::7] = 0.0
    Z, P, T = (cp.asarray(a) for a in (z, p, t))
    ref = _ref(gpu)
    host = get_backend("numpy")
    fused = cp.asnumpy(gpu.masked_residual(Z, T))
    np.testing.assert_allclose(fused, host.masked_residual(z, t), **TOL[dtype])
    np.testing.assert_array_equal(fused, cp.asnumpy(ref.masked_residual(Z, T)))
    for alpha in (0.0, 0.5, -1.75):
        a = gpu.masked_residual_sqnorm(Z, P, T, alpha)
        assert a == pytest.approx(ref.masked_residual_sqnorm(Z, P, T, alpha), rel=TOL[dtype]["rtol"] * 10)
        assert a == pytest.approx(host.masked_residual_sqnorm(z, p, t, alpha), rel=TOL[dtype]["rtol"] * 10)
    assert gpu.masked_sqnorm(Z, P) == pytest.approx(host.masked_sqnorm(z, p), rel=TOL[dtype]["rtol"] * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_kinks_signs_and_noncontiguous(gpu, dtype):
    cp = gpu.xp
    r = np.random.default_rng(1)
    p = r.integers(-5, 6, size=(64, 33)).astype(dtype)
    alpha = 0.5
    z = (-alpha * p).astype(dtype)  # z + alpha p == 0 exactly: on the kink
    t = r.normal(size=p.shape).astype(dtype)
    host = get_backend("numpy")
    for zz in (z, -np.abs(z) - 1, np.abs(z) + 1):  # kink, all negative, all positive
        got = gpu.masked_residual_sqnorm(cp.asarray(zz), cp.asarray(p), cp.asarray(t), alpha)
        assert got == pytest.approx(host.masked_residual_sqnorm(zz, p, t, alpha), rel=1e-5)
    Zw = cp.asarray(r.normal(size=(64, 66)).astype(dtype))[:, ::2]  # non-contiguous views
    Tw = cp.asarray(r.normal(size=(128, 33)).astype(dtype))[::2]
    np.testing.assert_allclose(cp.asnumpy(gpu.masked_residual(Zw, Tw)),
                               host.masked_residual(cp.asnumpy(Zw), cp.asnumpy(Tw)), **TOL[dtype])
    d = cp.asarray(r.normal(size=33).astype(dtype))  # a broadcast bias direction
    assert gpu.masked_residual_sqnorm(Zw, d[None, :], Tw, 0.3) == pytest.approx(
        host.masked_residual_sqnorm(cp.asnumpy(Zw), cp.asnumpy(d)[None, :], cp.asnumpy(Tw), 0.3), rel=1e-5)


def test_numpy_array_into_cupy_path_says_what_to_do(gpu):
    z = np.zeros((3, 3))
    with pytest.raises(TypeError, match=r"needs CuPy arrays; move it with backend.asarray\(z\)"):
        gpu.masked_residual(z, gpu.xp.zeros((3, 3)))


def test_unfused_switch(gpu, monkeypatch):
    cp = gpu.xp
    Z = cp.asarray(np.random.default_rng(2).normal(size=(50, 40)))
    fused = gpu.masked_residual_sqnorm(Z, Z, Z * 0.5, 0.25)
    monkeypatch.setattr(gpu, "fused", False)
    assert gpu.masked_residual_sqnorm(Z, Z, Z * 0.5, 0.25) == pytest.approx(fused, rel=1e-12)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.5, momentum=0.9), lambda: Adam(lr=1e-3),
                                  lambda: SIBP(eta=1.0, lam=1.0)])
def test_twenty_steps_cpu_and_gpu_agree(make):
    r = np.random.default_rng(0)
    X = r.random((400, 30))
    y = r.integers(0, 5, size=400)
    cpu = MLP([30, 40, 20, 5], seed=3, dtype="float64", backend="numpy", init_std=0.1)
    gpu = MLP([30, 40, 20, 5], seed=3, dtype="float64", backend="cupy", init_std=0.1)
    mc, mg = make(), make()
    for k in range(20):
        idx = slice(20 * k, 20 * (k + 1))
        lc = mc.step(cpu, X[idx], y[idx])
        lg = mg.step(gpu, X[idx], y[idx])
        assert lg == pytest.approx(lc, rel=1e-8)
    for a, b in zip(cpu.get_params().values(), gpu.get_params().values()):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
