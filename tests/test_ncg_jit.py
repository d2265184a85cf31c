"""The compiled inner solver (``SIBP(jit=True)``, :mod:`sibp_np.ncg_jit`) against the NumPy one.

In float64 the two give the same iterates up to rounding (the reductions are summed in another order),
the same decisions (iterations, trials, restarts, how the solve ended) and the same counts of matrix
products. Tested on the subproblem objects, and on whole SIBP steps.
"""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import SIBP
from sibp_np.backend import get_backend
from sibp_np.functions import get_activation
from sibp_np.ncg import ncg
from sibp_np.sibp import BiasSubproblem, DualWeightSubproblem, WeightSubproblem

ncg_jit = pytest.importorskip("sibp_np.ncg_jit", exc_type=ImportError)


def subproblem(kind, act, seed, radius=np.inf, lam=2.0, B=30, n_in=7, n_out=5):
    """A fresh float64 subproblem of ``kind`` ("primal", "dual", "bias") from ``seed``."""
    r = np.random.default_rng(seed)
    F = np.abs(r.normal(size=(B, n_in)))
    W = r.normal(size=(n_out, n_in)) * 0.5
    b = r.normal(size=n_out) * 0.1
    T = np.abs(r.normal(size=(B, n_out)))
    a, be = get_activation(act), get_backend("numpy")
    Z, work = F @ W.T + b, np.empty((B, n_out))
    if kind == "bias":
        prob = BiasSubproblem(be, a, Z, T, b, lam, work)
    else:
        cls = DualWeightSubproblem if kind == "dual" else WeightSubproblem
        prob = cls(be, a, F, Z, T, W, lam, work)
    prob.radius = radius
    return prob


@pytest.mark.parametrize("kind", ["primal", "dual", "bias"])
@pytest.mark.parametrize("act", ["relu", "identity"])
@pytest.mark.parametrize("variant", ["fr", "pr+"])
@pytest.mark.parametrize("radius", [np.inf, 0.3])
def test_the_compiled_solve_takes_the_numpy_solves_iterates(kind, act, variant, radius):
    """Same decisions; iterates that differ by rounding only. How far rounding alone moves the NumPy
    solve is measured on the same problem with its targets changed by 4 ulps: CG on the unbounded
    linear problems amplifies a last-bit change to about 1e-11 of the solution in 6 iterations. The
    compiled solve must stay within 50 times that (the largest ratio seen over these cases is 11)."""
    for seed in range(4):
        a, b, c = (subproblem(kind, act, seed, radius) for _ in range(3))
        c.T *= 1 + 4 * np.finfo(np.float64).eps
        ra = ncg(a, max_iter=6, variant=variant, ftol=1e-14)
        rb = ncg_jit.ncg(b, max_iter=6, variant=variant, ftol=1e-14)
        ncg(c, max_iter=6, variant=variant, ftol=1e-14)
        assert (rb.iterations, rb.trials, rb.rejected, rb.restarts, rb.message, rb.success) == (
            ra.iterations, ra.trials, ra.rejected, ra.restarts, ra.message, ra.success), seed
        assert ra.iterations > 0
        for name in ("x", "Z"):
            ref, got, nudged = getattr(a, name), getattr(b, name), getattr(c, name)
            scale = np.abs(ref).max()
            rounding = max(np.abs(nudged - ref).max(), 1e-14 * scale)
            assert np.abs(got - ref).max() <= 50 * rounding, (name, seed)
        np.testing.assert_allclose([rb.f0, rb.f], [ra.f0, ra.f], rtol=1e-12)
        np.testing.assert_allclose(np.array(rb.steps), np.array(ra.steps), rtol=1e-8)
        assert (b.matmuls, b.flops) == (a.matmuls, a.flops)


def test_the_trust_region_ends_the_compiled_solve_on_its_boundary():
    prob = subproblem("primal", "relu", 0, radius=1e-3)
    res = ncg_jit.ncg(prob, max_iter=5)
    assert res.message == "stopped on the trust-region boundary"
    assert np.linalg.norm(prob.x - prob.xk) == pytest.approx(1e-3, rel=1e-9)


def test_a_non_finite_start_is_reported_and_nothing_moves():
    prob = subproblem("primal", "relu", 0)
    prob.T[0, 0] = np.inf
    W = prob.x.copy()
    res = ncg_jit.ncg(prob, max_iter=5)
    assert (res.success, res.message) == (False, "objective is not finite at the start")
    np.testing.assert_array_equal(prob.x, W)


@pytest.mark.parametrize("loss,sizes", [("cross_entropy", (6, 8, 7, 4)), ("mse", (6, 8, 3))])
@pytest.mark.parametrize("weight_form", ["primal", "dual"])
def test_sibp_steps_with_jit_match_the_numpy_solver_in_float64(loss, sizes, weight_form):
    for seed in range(3):
        runs = []
        for jit in (False, True):
            model, X, y = small_problem(seed, sizes=sizes, loss=loss)
            if loss == "mse":
                y = np.random.default_rng(seed).normal(size=(X.shape[0], sizes[-1]))
            method = SIBP(eta=1.0, lam=1.0, weight_form=weight_form, jit=jit)
            method.record_stats = True
            losses = [method.step(model, X, y) for _ in range(3)]
            runs.append((model, method, losses))
        (m0, s0, l0), (m1, s1, l1) = runs
        for p0, p1 in zip(m0.params(), m1.params()):
            np.testing.assert_allclose(p1, p0, rtol=1e-9, atol=1e-10 * np.abs(p0).max())
        np.testing.assert_allclose(l1, l0, rtol=1e-10)
        decisions = [[(st["layer"], st["param"], st["form"], st["iterations"], st["trials"], st["message"],
                       st["matmuls"]) for st in step] for step in s0.stats]
        assert [[(st["layer"], st["param"], st["form"], st["iterations"], st["trials"], st["message"],
                  st["matmuls"]) for st in step] for step in s1.stats] == decisions
        numbers = ("f0", "f", "radius", "lam", "step_norm")
        np.testing.assert_allclose([[st[k] for k in numbers] for step in s1.stats for st in step],
                                   [[st[k] for k in numbers] for step in s0.stats for st in step], rtol=1e-9)
        assert (s1.matmuls_last_step, s1.flops_last_step) == (s0.matmuls_last_step, s0.flops_last_step)
        assert sorted(s1.state) == sorted(s0.state)  # the power iteration's vectors, one per layer
        for key in s0.state:
            np.testing.assert_allclose(s1.state[key], s0.state[key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [dict(weight_form="primal"), dict(weight_form="dual"),
                                     dict(weight_form="dual", safeguard="none", cg_variant="pr+"),
                                     dict(loss="mse", weight_form="dual")])
def test_a_layer_solved_whole_gives_the_compiled_subproblems_numbers_bit_for_bit(monkeypatch, dtype,
                                                                                 options):
    """:func:`ncg_jit.solve_layer` (one call per layer) against :func:`ncg_jit.ncg` on the subproblem
    objects (two calls and the Python around them): the same kernel on the same arrays, so the same
    numbers, bit for bit, in float32 too. The statistical gate that ``jit=True`` passed holds for both."""
    options = dict(options)
    loss = options.pop("loss", "cross_entropy")
    runs = []
    for whole in (False, True):
        if not whole:
            monkeypatch.setattr(ncg_jit, "supports_layer", lambda *args: False)
        else:
            monkeypatch.undo()
        model, X, y = small_problem(3, n=60, sizes=(6, 9, 7, 4), loss=loss, dtype=dtype)
        if loss == "mse":
            y = np.random.default_rng(3).normal(size=(X.shape[0], 4)).astype(dtype)
        method = SIBP(eta=2.0, lam=1.0, jit=True, **options)
        method.record_stats = True
        losses = [method.step(model, X, y) for _ in range(4)]
        runs.append((model, method, losses))
    (m0, s0, l0), (m1, s1, l1) = runs
    assert l1 == l0
    for p0, p1 in zip(m0.params(), m1.params()):
        np.testing.assert_array_equal(p1, p0)
    assert s1.stats == s0.stats
    assert (s1.matmuls_last_step, s1.flops_last_step) == (s0.matmuls_last_step, s0.flops_last_step)


def test_subproblems_the_kernel_does_not_cover_run_on_the_numpy_solver(monkeypatch):
    import scipy.sparse
    compiled, real_ncg, real_layer = [], ncg_jit.ncg, ncg_jit.solve_layer
    def spy_ncg(prob, *args, **kwargs):
        compiled.append((prob.act.name, prob.param))
        return real_ncg(prob, *args, **kwargs)
    def spy_layer(act, *args, **kwargs):
        compiled.append((act.name, "W and b"))
        return real_layer(act, *args, **kwargs)
    monkeypatch.setattr(ncg_jit, "ncg", spy_ncg)
    monkeypatch.setattr(ncg_jit, "solve_layer", spy_layer)
    model, X, y = small_problem(1, sizes=(5, 6, 3), activation="tanh")
    SIBP(jit=True).step(model, X, y)
    assert compiled == [("identity", "W and b")]  # the tanh layer ran on ncg.ncg
    compiled.clear()
    model, X, y = small_problem(1, sizes=(5, 6, 3))
    SIBP(jit=True, weight_form="primal").step(model, scipy.sparse.csr_array(X), y)
    assert compiled == [("identity", "W and b"), ("relu", "b")]  # W_1 = f(sparse X) on ncg.ncg
    compiled.clear()
    model, X, y = small_problem(1, sizes=(5, 6, 3))
    SIBP(jit=True, linear_solve="exact").step(model, X, y)
    assert compiled == [("relu", "W and b")]  # the output layer's exact solve is not NCG


@pytest.mark.outcome
def test_a_float32_fit_with_jit_learns():
    model, X, y = small_problem(0, n=200, sizes=(6, 16, 3), dtype="float32")
    method = SIBP(jit=True)
    first = method.step(model, X, y)
    for _ in range(20):
        last = method.step(model, X, y)
    assert np.isfinite(last) and last < 0.9 * first


def test_jit_is_refused_where_it_cannot_apply(monkeypatch):
    with pytest.raises(ValueError, match="compat='matlab'.*needs jit=False, got jit=True"):
        SIBP(compat="matlab", jit=True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    with pytest.raises(ImportError, match=r"jit=True .*Numba.*; numba not installed: pip install "
                                          r"'sibp_np\[fast\]'"):
        SIBP(jit=True)
    with pytest.raises(TypeError, match="jit"):
        SIBP(jit="yes")


def test_import_sibp_np_and_a_jit_free_step_do_not_import_numba():
    code = ("import sys, numpy as np, sibp_np; m = sibp_np.MLP([3, 4, 2]); "
            "sibp_np.SIBP().step(m, np.ones((5, 3)), np.array([0, 1, 0, 1, 0])); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kernel", ["_ncg", "_layer"])
def test_compiled_code_runs_blas_at_one_thread_and_restores_it(monkeypatch, kernel):
    """``_ncg`` (a subproblem, :func:`ncg_jit.ncg`) and ``_layer`` (a layer, an SIBP step)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    def blas_threads():
        return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"}
    seen, real = [], getattr(ncg_jit, kernel)
    def spy(*args):
        seen.append(set(blas_threads().values()))
        return real(*args)
    monkeypatch.setattr(ncg_jit, kernel, spy)
    ncg_jit._blas_libraries()  # SciPy's BLAS loaded, so that "before" lists it whatever ran first
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        if kernel == "_ncg":
            ncg_jit.ncg(subproblem("dual", "relu", 0), max_iter=3)
        else:
            model, X, y = small_problem(0, sizes=(5, 6, 3))
            SIBP(jit=True).step(model, X, y)
        after = blas_threads()
    assert seen == [{1}] * (1 if kernel == "_ncg" else 2)
    assert after == before


def test_a_product_above_the_limit_stays_with_the_numpy_solver(monkeypatch):
    small = subproblem("primal", "relu", 0, B=30, n_in=7, n_out=5)
    assert ncg_jit.product_size(small) == 30 * 5 * 7 and ncg_jit.supports(small)
    monkeypatch.setattr(ncg_jit, "MAX_PRODUCT", 30 * 5 * 7 - 1)
    assert not ncg_jit.supports(small)
    assert ncg_jit.supports(subproblem("bias", "relu", 0))  # a bias solve has no product
    assert ncg_jit.product_size(subproblem("dual", "relu", 0, B=30, n_out=5)) == 30 * 30 * 5


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_a_layer_with_a_product_above_the_limit_is_not_compiled_whole(monkeypatch, form):
    """The limit counts the products inside the solves: ``F D^T``-sized ones (primal), ``K M`` (dual).
    The dual form's Gram matrix and final product are NumPy's, at its threads."""
    B, n_in, n_out = 30, 7, 5
    r = np.random.default_rng(0)
    F, G, W = r.normal(size=(B, n_in)), r.normal(size=(B, n_out)), r.normal(size=(n_out, n_in))
    b, relu = np.zeros(n_out), get_activation("relu")
    largest = B * B * n_out if form == "dual" else B * n_in * n_out
    monkeypatch.setattr(ncg_jit, "MAX_PRODUCT", largest)
    assert ncg_jit.supports_layer(relu, F, G, W, b, form)
    monkeypatch.setattr(ncg_jit, "MAX_PRODUCT", largest - 1)
    assert not ncg_jit.supports_layer(relu, F, G, W, b, form)


def test_jit_is_a_nested_parameter_of_the_estimators():
    pytest.importorskip("sklearn")
    from sklearn.base import clone

    from sibp_np.sklearn import MLPClassifier
    clf = MLPClassifier(method=SIBP(jit=True))
    assert clf.get_params()["method__jit"] is True
    assert clone(clf).set_params(method__jit=False).get_params()["method__jit"] is False
    assert clf.method.jit is True  # clone copied it; the given object is unchanged
