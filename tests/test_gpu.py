"""CuPy backend: fused kernels against the reference, and CPU/GPU parity of whole runs.

Everything marked `gpu` is skipped, with the reason, where no CUDA device is usable."""
import numpy as np
import pytest
from conftest import GPU_REASON, HAS_GPU

from sibp_np import MLP, SGD, SIBP, Adam, ProxBP, RMSprop
from sibp_np.backend import get_backend

pytestmark = pytest.mark.gpu
if not HAS_GPU:
    pytestmark = [pytest.mark.gpu, pytest.mark.skip(
        reason=f"no usable CUDA device for CuPy ({GPU_REASON or 'cupy not installed'})")]

TOL = {np.float32: dict(rtol=2e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(scope="module")
def gpu():
    return get_backend("cupy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (100, 500), (3001, 1021)])  # odd; several grids
def test_fused_ops_match_reference_and_numpy(gpu, dtype, shape):
    cp = gpu.xp
    r = np.random.default_rng(0)
    z, p, t = (r.normal(size=shape).astype(dtype) for _ in range(3))
    z.flat[::7] = 0.0
    Z, P, T = (cp.asarray(a) for a in (z, p, t))
    ref = gpu.unfused()
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


def _twin_models():
    """Data and the same float64 network on the CPU and on the GPU."""
    r = np.random.default_rng(0)
    X = r.random((400, 30))
    y = r.integers(0, 5, size=400)
    cpu = MLP([30, 40, 20, 5], seed=3, dtype="float64", backend="numpy", init_std=0.1)
    gpu = MLP([30, 40, 20, 5], seed=3, dtype="float64", backend="cupy", init_std=0.1)
    return X, y, cpu, gpu


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.5, momentum=0.9), lambda: Adam(lr=1e-3),
                                  lambda: SIBP(eta=1.0, lam=1.0)])
def test_twenty_steps_cpu_and_gpu_agree(make):
    X, y, cpu, gpu = _twin_models()
    mc, mg = make(), make()
    for k in range(20):
        idx = slice(20 * k, 20 * (k + 1))
        lc = mc.step(cpu, X[idx], y[idx])
        lg = mg.step(gpu, X[idx], y[idx])
        assert lg == pytest.approx(lc, rel=1e-8)
    for a, b in zip(cpu.get_params().values(), gpu.get_params().values()):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------- what the code gained since
# every method's form, on the device, against the CPU in float64: the SIBP default (trust region), the plain
# algorithm, compat="matlab", ProxBP in both weight forms and with the exact solve, and RMSprop
PARITY = {
    "rmsprop": lambda: RMSprop(lr=1e-3),
    "sibp-plain": lambda: SIBP(eta=1.0, lam=1.0, safeguard="none"),
    "sibp-weights-metric": lambda: SIBP(eta=10.0, lam=1.0, prox_metric="weights", trust_radius=2.0),
    "sibp-primal": lambda: SIBP(eta=10.0, lam=1.0, weight_form="primal"),
    "sibp-exact-output": lambda: SIBP(eta=1.0, lam=1.0, linear_linear_solve="exact"),
    "sibp-matlab": lambda: SIBP(eta=1.0, lam=2.0, compat="matlab"),
    "proxbp-dual": lambda: ProxBP(eta=1.0, lam=1.0, weight_form="dual"),
    "proxbp-primal": lambda: ProxBP(eta=1.0, lam=1.0, weight_form="primal"),
    "proxbp-exact": lambda: ProxBP(eta=1.0, lam=1.0, linear_solve="exact"),
    "proxbp-adam": lambda: ProxBP(eta=1.0, lam=1.0, optimizer=Adam(lr=1e-3)),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_every_method_form_takes_the_cpu_step_on_the_gpu(name):
    """Each of twenty steps from the same parameters and method state on both sides.

    Over twenty free-running steps the plain algorithm (and eta = 10) amplifies the backends' different
    summation orders to ~1e-6 (seen on an H200), as it amplifies any rounding; what must agree is the
    step map itself, so the GPU starts every step from the CPU's state."""
    X, y, cpu, gpu = _twin_models()
    mc, mg = PARITY[name](), PARITY[name]()
    for k in range(20):
        gpu.set_params(cpu.get_params())
        mg.load_state_dict(mc.state_dict(cpu.backend), gpu.backend)
        idx = slice(20 * k, 20 * (k + 1))
        lc = mc.step(cpu, X[idx], y[idx])
        lg = mg.step(gpu, X[idx], y[idx])
        assert lg == pytest.approx(lc, rel=1e-8), k
        for key, a in cpu.get_params().items():
            np.testing.assert_allclose(gpu.get_params()[key], a, rtol=1e-7, atol=1e-9, err_msg=f"{key} {k}")


def test_rowwise_and_single_block_reductions_agree(gpu, monkeypatch):
    cp = gpu.xp
    r = np.random.default_rng(8)
    Z, T = (cp.asarray(r.normal(size=(100, 700))) for _ in range(2))
    d = cp.asarray(r.normal(size=700))[None, :]  # a bias direction, broadcast over the rows
    got = {}
    for rowwise_min in (1, 10 ** 9):
        monkeypatch.setattr(gpu, "ROWWISE_MIN", rowwise_min)
        got[rowwise_min] = (gpu.masked_residual_sqnorm(Z, d, T, 0.3), gpu.masked_sqnorm(Z, d))
    assert got[1] == pytest.approx(got[10 ** 9], rel=1e-12)


def test_solve_spd_matches_scipy(gpu):
    r = np.random.default_rng(4)
    M = r.normal(size=(60, 40))
    A, B = M.T @ M + 0.5 * np.eye(40), r.normal(size=(40, 7))
    got = gpu.to_host(gpu.solve_spd(gpu.xp.asarray(A), gpu.xp.asarray(B)))
    np.testing.assert_allclose(got, get_backend("numpy").solve_spd(A, B), rtol=1e-10, atol=1e-12)


def test_solve_spd_refuses_an_indefinite_matrix_as_the_cpu_does(gpu):
    A = np.diag([1.0, -1.0, 2.0])
    with pytest.raises(np.linalg.LinAlgError):
        get_backend("numpy").solve_spd(A, np.ones((3, 1)))
    with pytest.raises(np.linalg.LinAlgError):
        gpu.solve_spd(gpu.xp.asarray(A), gpu.xp.ones((3, 1)))


def _fit_both(tmp_path, **kw):
    from sibp_np import fit
    r = np.random.default_rng(5)
    X, y = r.random((300, 20)), r.integers(0, 4, size=300)
    Xv, yv = r.random((90, 20)), r.integers(0, 4, size=90)
    out = {}
    for be in ("numpy", "cupy"):
        model = MLP([20, 30, 4], seed=1, dtype="float64", backend=be, init_std=0.1)
        out[be] = (model, fit(model, SIBP(eta=1.0), X, y, val=(Xv, yv), epochs=2, batch_size=50, seed=2,
                              verbose=0, eval_every=3, **kw))
    return out, Xv


def test_fit_with_callbacks_gives_the_cpu_history(tmp_path):
    out, Xv = _fit_both(tmp_path)
    (mc, hc), (mg, hg) = out["numpy"], out["cupy"]
    assert len(hc) == len(hg) > 2
    keys = ("epoch", "iterations", "train_loss", "train_acc", "val_loss", "val_acc", "batch_loss")
    assert all(hc.last[k] is not None for k in keys)
    for rc, rg in zip(hc.records, hg.records):
        for k in keys:
            if isinstance(rc.get(k), float):
                assert rg[k] == pytest.approx(rc[k], rel=1e-8, abs=1e-12), k
            else:
                assert rg.get(k) == rc.get(k), k
    np.testing.assert_array_equal(mg.predict(Xv), mc.predict(Xv))
    assert isinstance(mg.predict(Xv), np.ndarray) and isinstance(mg.predict_proba(Xv), np.ndarray)


def test_a_gpu_model_saves_and_loads_on_either_backend(tmp_path):
    out, Xv = _fit_both(tmp_path)
    mg = out["cupy"][0]
    mg.save(tmp_path / "m.h5")
    on_cpu = MLP.load(tmp_path / "m.h5", backend="numpy")
    on_gpu = MLP.load(tmp_path / "m.h5", backend="cupy")
    for a, b, c in zip(mg.get_params().values(), on_cpu.get_params().values(), on_gpu.get_params().values()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(on_cpu.predict(Xv), mg.predict(Xv))


def test_checkpoint_resume_on_the_gpu_continues_the_run(tmp_path):
    from sibp_np import fit
    r = np.random.default_rng(6)
    X, y = r.random((200, 12)), r.integers(0, 3, size=200)
    kw = dict(epochs=2, batch_size=40, seed=3, verbose=0)
    whole = MLP([12, 16, 3], seed=0, dtype="float64", backend="cupy", init_std=0.1)
    fit(whole, SIBP(eta=1.0), X, y, **kw)
    half = MLP([12, 16, 3], seed=0, dtype="float64", backend="cupy", init_std=0.1)
    fit(half, SIBP(eta=1.0), X, y, **{**kw, "epochs": 1}, checkpoint=tmp_path / "ck.h5")
    resumed = MLP([12, 16, 3], seed=0, dtype="float64", backend="cupy", init_std=0.1)
    fit(resumed, SIBP(eta=1.0), X, y, **kw, resume=tmp_path / "ck.h5")
    for a, b in zip(whole.get_params().values(), resumed.get_params().values()):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_sklearn_estimator_under_the_cupy_backend():
    pytest.importorskip("sklearn")
    from sibp_np.backend import use_backend
    from sibp_np.sklearn import MLPClassifier
    r = np.random.default_rng(7)
    X, y = r.random((120, 8)), r.integers(0, 3, size=120)
    preds = {}
    for be in ("numpy", "cupy"):
        with use_backend(be):
            clf = MLPClassifier(hidden_layer_sizes=(10,), epochs=2, dtype="float64", random_state=0,
                                init_std=0.1).fit(X, y)
            preds[be] = clf.predict_proba(X)
    assert isinstance(preds["cupy"], np.ndarray)
    np.testing.assert_allclose(preds["cupy"], preds["numpy"], rtol=1e-8, atol=1e-10)


# ------------------------------------------------------------------ device-resident SIBP control
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_trial_kernel_matches_the_reference(gpu, dtype):
    cp = gpu.xp
    host = get_backend("numpy")
    r = np.random.default_rng(1)
    for shape in ((7, 13), (100, 500), (300, 1021)):
        z, p, t = (r.normal(size=shape).astype(dtype) for _ in range(3))
        alphas = np.array([1.0, 0.5, 0.25, -0.125])
        got = cp.asnumpy(gpu.masked_residual_sqnorm_multi(cp.asarray(z), cp.asarray(p), cp.asarray(t),
                                                          cp.asarray(alphas)))
        np.testing.assert_allclose(got, host.masked_residual_sqnorm_multi(z, p, t, alphas),
                                   rtol=TOL[dtype]["rtol"] * 10)
        d = r.normal(size=(1, shape[1])).astype(dtype)
        got = cp.asnumpy(gpu.masked_residual_sqnorm_multi(cp.asarray(z), cp.asarray(d), cp.asarray(t),
                                                          cp.asarray(alphas)))
        np.testing.assert_allclose(got, host.masked_residual_sqnorm_multi(z, d, t, alphas),
                                   rtol=TOL[dtype]["rtol"] * 10)


def test_device_control_on_cupy_matches_the_host_path_on_numpy(gpu):
    from sibp_np.backend import count_host_syncs
    r = np.random.default_rng(2)
    X, y = r.normal(size=(50, 30)), r.integers(0, 10, 50)
    cpu = MLP([30, 40, 40, 10], seed=0, init_std=0.3, dtype="float64")
    dev = MLP([30, 40, 40, 10], seed=0, init_std=0.3, dtype="float64", backend="cupy")
    host_method, dev_method = SIBP(control="host"), SIBP(device_trials=20)  # "auto" is device on CuPy
    for _ in range(3):
        host_method.step(cpu, X, y)
        with count_host_syncs() as c:
            dev_method.step(dev, gpu.xp.asarray(X), gpu.xp.asarray(y))
        assert c.count <= 2
    for p, q in zip(cpu.params(), dev.params()):
        np.testing.assert_allclose(gpu.to_host(q), p, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_graph_replay_gives_the_steps_without_it(gpu, dtype):
    import warnings

    from sibp_np.backend import count_host_syncs
    cp = gpu.xp
    r = np.random.default_rng(3)
    data = [(cp.asarray(r.normal(size=(100, 64))), cp.asarray(r.integers(0, 10, 100))) for _ in range(5)]
    data.append((data[0][0][:37], data[0][1][:37]))  # a last, smaller batch: a second shape
    runs = {}
    for graph in (False, None):
        model = MLP([64, 80, 80, 10], seed=0, init_std=0.1, dtype=dtype, backend="cupy")
        method = SIBP(cuda_graph=graph)
        pool = cp.get_default_memory_pool()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # capture must work here, not fall back
            losses = []
            for k, (X, y) in enumerate(data + data):
                if k == len(data):
                    reserved = pool.total_bytes()  # every shape captured by now
                with count_host_syncs() as c:
                    losses.append(method.step(model, X, y))
                assert c.count <= 2
        if graph is None:  # replayed steps allocate nothing new
            assert pool.total_bytes() == reserved
        runs[graph] = (losses, [gpu.to_host(p) for p in model.params()])
    tol = TOL[np.dtype(dtype).type]
    np.testing.assert_allclose(runs[None][0], runs[False][0], **tol)
    for p, q in zip(runs[False][1], runs[None][1]):
        np.testing.assert_allclose(q, p, **tol)


@pytest.mark.parametrize("name", ["sibp", "sibp-dual", "proxbp", "adam"])
def test_a_sparse_input_on_cupy_gives_the_dense_iterates(gpu, name):
    # a scipy.sparse minibatch becomes cupyx.scipy.sparse CSR on the device, and stays sparse
    import scipy.sparse as sp
    make = {"sibp": SIBP, "sibp-dual": lambda: SIBP(weight_form="dual"), "proxbp": ProxBP, "adam": Adam}[name]
    r = np.random.default_rng(0)
    X = r.normal(size=(40, 50)) * (r.random((40, 50)) < 0.15)
    y = r.integers(0, 3, 40)
    dense, sparse = (MLP([50, 9, 3], seed=0, dtype="float64", init_std=0.3, backend="cupy") for _ in range(2))
    md, ms = make(), make()
    for k in range(3):
        rows = slice(10 * k, 10 * k + 10)
        md.step(dense, X[rows], y[rows])
        ms.step(sparse, sp.csr_matrix(X[rows]), y[rows])
    for p, q in zip(dense.params(), sparse.params()):
        np.testing.assert_allclose(gpu.to_host(q), gpu.to_host(p), rtol=1e-10, atol=1e-12)
