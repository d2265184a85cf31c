"""Helpers shared by the tests: small problems, and property checks of the solvers' guarantees."""
import numpy as np

from sibp_np import MLP
from sibp_np.backend import get_backend
from sibp_np.functions import get_activation
from sibp_np.sibp import DualWeightSubproblem, WeightSubproblem


def small_problem(seed=0, n=40, sizes=(6, 5, 4, 3), dtype="float64", activation="relu", init_std=0.5,
                  backend="numpy", loss="cross_entropy"):
    """A network ``sizes`` (float64 by default) and ``n`` samples ``(X, y)`` of standard normal
    features and uniform labels, all from ``seed``."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, sizes[0]))
    y = r.integers(0, sizes[-1], size=n)
    model = MLP(sizes, activation=activation, init_std=init_std, seed=seed, dtype=dtype,
                backend=backend, loss=loss)
    return model, X, y


def assert_armijo(res, phi0, dphi0, c1):
    """A line search's result keeps its promise: an accepted step satisfies Armijo's condition
    ``phi(alpha) <= phi0 + c1 alpha phi'(0)`` with ``alpha > 0``; a rejected one takes no step."""
    if res.accepted:
        assert res.alpha > 0 and res.phi <= phi0 + c1 * res.alpha * dphi0, (res, phi0, dphi0)
    else:
        assert res.alpha == 0.0, res


def assert_never_rises(values, tol=0.0):
    """The objective never goes up along a sequence of iterates (within ``tol``, relative)."""
    for k, (a, b) in enumerate(zip(values, values[1:])):
        assert b <= a + tol * abs(a), f"the objective rose at iteration {k + 1}: {a!r} -> {b!r}"


def w_problem(seed=0, B=20, n_in=6, n_out=4, lam=2.0, act="relu", form="primal"):
    """SIBP's W subproblem (7) in float64: ``make()`` builds a fresh problem object (primal or dual
    form), ``f``/``grad`` are its objective and gradient written out independently, ``W`` the start."""
    r = np.random.default_rng(seed)
    F = np.abs(r.normal(size=(B, n_in)))
    W = r.normal(size=(n_out, n_in)) * 0.5
    b = r.normal(size=n_out) * 0.1
    T = r.normal(size=(B, n_out))
    if act == "relu":
        # with targets < 0 the ReLU objective has convex kinks where any solver may stall (scipy's
        # BFGS too); targets >= 0 leave only concave kinks, and the comparison is well posed
        T = np.abs(T)
    cls = DualWeightSubproblem if form == "dual" else WeightSubproblem
    a = get_activation(act)
    def make():
        return cls(get_backend("numpy"), a, F, F @ W.T + b, T, W.copy(), lam, np.empty((B, n_out)))
    def f(Wv):
        return ((a.forward(F @ Wv.reshape(W.shape).T + b) - T) ** 2).sum() \
            + 0.5 * lam * ((Wv.reshape(W.shape) - W) ** 2).sum()
    def grad(Wv):
        Z = F @ Wv.reshape(W.shape).T + b
        M = a.deriv(Z) * (a.forward(Z) - T)
        return (2 * M.T @ F + lam * (Wv.reshape(W.shape) - W)).ravel()
    return make, f, grad, W
