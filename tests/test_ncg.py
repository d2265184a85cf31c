"""Nonlinear CG (sibp_np.ncg): on a convex quadratic it is linear CG and reaches np.linalg.solve's
answer; on SIBP's subproblems the objective never rises."""
import math

import numpy as np
import pytest
from _helpers import assert_never_rises, w_problem

from sibp_np.backend import get_backend
from sibp_np.ncg import EuclideanVectors, ncg


class Quadratic(EuclideanVectors):
    """``f(x) = x^T A x / 2 - c^T x`` with the protocol of :func:`ncg`: a trial is exact (closed form)
    and the first trial step is the exact minimiser along the direction."""

    backend, xp, scalar = get_backend("numpy"), np, float  # what EuclideanVectors uses

    def __init__(self, A, c, x0):
        self.A, self.c, self.x = A, c, x0.copy()

    def objective(self):
        return 0.5 * self.x @ self.A @ self.x - self.c @ self.x

    def gradient(self):
        return self.A @ self.x - self.c

    def prepare(self, D):
        self.D = D
        self.f0, self.slope, self.curv = self.objective(), self.gradient() @ D, D @ self.A @ D

    def phi(self, alpha):
        return self.f0 + alpha * self.slope + 0.5 * alpha ** 2 * self.curv

    def initial_step(self, dphi0):
        return -dphi0 / self.curv

    def max_step(self):
        return math.inf

    def move(self, alpha):
        self.x = self.x + alpha * self.D


@pytest.mark.parametrize("variant", ["fr", "pr+"])
@pytest.mark.parametrize("seed", range(5))
def test_on_a_convex_quadratic_ncg_is_linear_cg(variant, seed):
    r = np.random.default_rng(seed)
    n = 12
    Q = r.normal(size=(n, n))
    A = Q @ Q.T + n * np.eye(n)  # well conditioned: n iterations leave rounding only
    c = r.normal(size=n)
    x0 = r.normal(size=n)
    first = Quadratic(A, c, x0)
    res = ncg(first, max_iter=n // 2, variant=variant)
    # while the gradient is well above rounding, every step is accepted and every direction descends
    # (near the solution, searches at the rounding level may fail and restart, as they should)
    assert res.iterations == n // 2 and res.restarts == 0 and res.rejected == 0
    # linear CG ends in n steps in exact arithmetic; in floating point its directions lose conjugacy
    # slowly, and a few more steps reach the solve's answer. A search that compares objective values
    # cannot see a change of x below sqrt(eps) relative (the objective moves by its square), times the
    # condition number: that is how close it can get
    prob = Quadratic(A, c, x0)
    ncg(prob, max_iter=3 * n, variant=variant)
    reach = np.sqrt(np.finfo(np.float64).eps) * np.linalg.cond(A)
    x = np.linalg.solve(A, c)
    assert np.linalg.norm(prob.x - x) <= reach * np.linalg.norm(x)


@pytest.mark.parametrize("variant", ["fr", "pr+"])
def test_every_iterate_lowers_the_quadratic(variant):
    r = np.random.default_rng(7)
    Q = r.normal(size=(8, 8))
    A, c, x0 = Q @ Q.T + np.eye(8), r.normal(size=8), r.normal(size=8)
    values = []
    for k in range(9):  # deterministic: k iterations are the first k of a longer run
        prob = Quadratic(A, c, x0)
        ncg(prob, max_iter=k, variant=variant)
        values.append(prob.objective())
    assert_never_rises(values)
    assert values[-1] < values[0]


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_ncg_objective_never_increases(form):
    make, f, _, _ = w_problem(seed=5, form=form, lam=0.5)
    values = [f(make().x.ravel())]
    for k in range(1, 12):  # the iterates are deterministic: k iterations = first k of a longer run
        prob = make()
        ncg(prob, max_iter=k)
        values.append(f(prob.x.ravel()))
    assert_never_rises(values, tol=1e-12)
    assert values[-1] < values[0]


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_next_direction_is_minus_g_plus_beta_d_to_the_bit(form):
    """The in-place CG update rounds exactly as -g + beta D (x + (-y) is x - y in IEEE arithmetic),
    in the primal and in the dual (coefficient) representation alike."""
    make, _, _, _ = w_problem(form=form)
    prob = make()
    g = prob.gradient()
    D = prob.neg(g)
    prob.prepare(D)
    prob.move(0.01)
    g_new = prob.gradient()
    for beta in (0.37, 1e-30, 3.0):
        parts = (lambda v: v) if form == "dual" else (lambda v: (v,))
        expected = tuple(-a + b.dtype.type(beta) * b for a, b in zip(parts(g_new), parts(D)))
        got = parts(prob.next_direction(g_new, beta, tuple(a.copy() for a in parts(D))
                                        if form == "dual" else D.copy()))
        for e, o in zip(expected, got):
            assert e.tobytes() == o.tobytes()


def test_ncg_accepts_a_first_trial_step():
    # the authors' code throws away a step accepted at the first trial; ours applies it
    make, f, _, W0 = w_problem(act="identity")
    prob = make()
    res = ncg(prob, max_iter=1)
    assert res.iterations == 1 and res.trials == 1 and not np.allclose(prob.x, W0)
