"""Nonlinear conjugate gradients with Armijo backtracking, warm-started and bounded.

The solver works on a *problem* object, so that the problem can keep whatever makes a line-search trial
cheap. A problem has an iterate ``x`` and these methods:

``objective()``
    the objective at ``x`` (float);
``gradient()``
    the gradient at ``x`` (array of x's shape);
``prepare(D)``
    precompute what the trials along direction ``D`` need (for SIBP: ``P = F D^T``, the only matrix
    product per direction);
``phi(alpha)``
    the objective at ``x + alpha D`` (no matrix product);
``initial_step(dphi0)``
    a first trial step (the Gauss-Newton minimiser along ``D``);
``max_step()`` (optional)
    the largest step along ``D`` that stays inside a trust region (``math.inf`` for none);
``move(alpha)``
    ``x <- x + alpha D``, updating the cached quantities;
``dot(a, b)``, ``neg(a)`` and ``next_direction(g, beta, D)``
    the inner product of two gradient-shaped vectors, ``-a``, and the next CG direction ``-g + beta D``
    (which may overwrite ``D``: the solver no longer needs it). :class:`EuclideanVectors` gives the
    plain array versions; a problem may store its vectors in another representation (SIBP's dual form
    keeps coefficient matrices) as long as these agree with it;
``finish()`` (optional)
    called once at the end (SIBP's dual form forms ``W`` there).

:func:`ncg_device` also needs ``phi_multi(alphas)``, ``initial_step_device(dphi0)``,
``max_step_device()`` and ``keep_or_steepest(restart, g, D)``, the same quantities as 0-d arrays, and
its problems return their scalars as 0-d arrays.
"""
import dataclasses
import math

from .linesearch import armijo_backtracking, armijo_batched

VARIANTS = ("fr", "pr+")


@dataclasses.dataclass
class NCGResult:
    """Outcome of :func:`ncg`.

    Attributes
    ----------
    x : array
        The final iterate (the problem's own array, updated in place).
    f0, f : float
        Objective before and after.
    iterations : int
        Accepted NCG steps.
    trials : int
        Line-search evaluations of ``phi`` in all.
    rejected : int
        Line searches that found no Armijo step.
    restarts : int
        Times the direction was reset to steepest descent (non-descent direction or failed search).
    steps : list of (float, float, int)
        For each line search, the first trial step ``alpha0``, the accepted step (0.0 when the
        search found none) and the trials it took: how far the Gauss-Newton guess was from what Armijo
        took.
    success : bool
    message : str
    """

    x: object
    f0: float
    f: float
    iterations: int = 0
    trials: int = 0
    rejected: int = 0
    restarts: int = 0
    steps: list = dataclasses.field(default_factory=list)
    success: bool = True
    message: str = ""


class EuclideanVectors:
    """Vector operations for problems whose gradients and directions are plain arrays (the problem
    gives ``backend``, ``xp`` and ``scalar``, how a reduction becomes a number)."""

    def dot(self, a, b):
        return self.scalar(self.xp.vdot(a.ravel(), b.ravel()))

    def neg(self, a):
        return -a

    def next_direction(self, g, beta, D):
        """``-g + beta D`` in ``D``'s array: ``beta D - g`` rounds exactly as ``-g + beta D``."""
        D *= self.backend.cast(beta, D.dtype)
        D -= g
        return D

    def keep_or_steepest(self, restart, g, D):
        """``-g`` where the 0-d bool ``restart`` holds, else ``D`` (in D's array, no read)."""
        D *= self.backend.cast(self.xp.logical_not(restart), D.dtype)
        D -= self.backend.cast(restart, D.dtype) * g
        return D


def ncg(problem, max_iter=5, variant="fr", c1=1e-4, shrink=0.5, max_trials=20, ftol=0.0):
    """Minimise ``problem`` by at most ``max_iter`` nonlinear-CG iterations from its current ``x``.

    Directions: ``D_0 = -g_0``, ``D_{k+1} = -g_{k+1} + beta_k D_k`` with Fletcher-Reeves
    ``beta = ||g_{k+1}||^2 / ||g_k||^2`` (``variant="fr"``, the authors' choice) or Polak-Ribiere+
    ``beta = max(0, g_{k+1}.(g_{k+1} - g_k) / ||g_k||^2)`` (``"pr+"``). A direction that is not a
    descent direction (``g.D >= 0``) is replaced by ``-g``; a failed line search along a CG direction
    is retried along ``-g``; a failed search along ``-g`` ends the solve. Every Armijo-accepted step is
    applied, so the objective never increases.

    With a trust region (``problem.max_step()``), the first trial step is capped at the boundary and the
    solve ends once a step lands on it (Steihaug's rule).

    The solve also ends (successfully) when the decrease predicted along ``D``,
    ``-alpha0 * phi'(0) / 2``, is at most ``ftol * |f|``: below the rounding level of the objective
    (SIBP sets ``ftol`` from the dtype's machine epsilon), further trials would only compare noise.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; choose one of {', '.join(VARIANTS)}")
    f0 = f = problem.objective()
    res = NCGResult(problem.x, f0, f0)
    if not math.isfinite(f0):
        res.success, res.message = False, "objective is not finite at the start"
        return res
    g = problem.gradient()
    gg = problem.dot(g, g)
    if not gg > 0.0:  # (in a non-Euclidean representation rounding can make it <= 0)
        res.message = "gradient is zero at the start"
        return res
    def minus_g():
        return problem.neg(g)
    D = minus_g()
    steepest = True
    k = 0
    while k < max_iter:
        dphi0 = -gg if steepest else problem.dot(g, D)  # g.(-g) = -||g||^2 exactly
        if not math.isfinite(dphi0):  # an overflowing gradient: the run is diverging, fit reports it
            res.success, res.message = False, "the directional derivative is not finite"
            break
        if not dphi0 < 0:
            D, dphi0, steepest = minus_g(), -gg, True
            res.restarts += 1
        problem.prepare(D)
        alpha0 = problem.initial_step(dphi0)
        alpha_max = problem.max_step() if hasattr(problem, "max_step") else math.inf
        boundary = alpha0 >= alpha_max
        if boundary:
            alpha0 = alpha_max
        if not alpha0 > 0:  # already on the trust-region boundary, or no finite step along D
            res.message = "no room to move: on the trust-region boundary"
            break
        if -0.5 * alpha0 * dphi0 <= ftol * abs(f):
            res.message = "converged: predicted decrease below the objective's rounding level"
            break
        ls = armijo_backtracking(problem.phi, f, dphi0, alpha0, c1=c1, shrink=shrink,
                                 max_trials=max_trials)
        res.trials += ls.trials
        res.steps.append((alpha0, ls.alpha, ls.trials))
        k += 1
        if not ls.accepted:
            res.rejected += 1
            if steepest:
                res.success = False
                res.message = "no Armijo step along steepest descent"
                break
            D, steepest = minus_g(), True
            res.restarts += 1
            continue
        problem.move(ls.alpha)
        f = ls.phi
        res.iterations += 1
        if boundary and ls.alpha == alpha0:
            res.message = "stopped on the trust-region boundary"
            break
        if k == max_iter:
            break  # the next gradient would only serve a step we will not take
        g_new = problem.gradient()
        gg_new = problem.dot(g_new, g_new)
        if not gg_new > 0.0:
            res.message = "gradient is zero"
            break
        if variant == "fr":
            beta = gg_new / gg
        else:
            beta = max(0.0, (gg_new - problem.dot(g_new, g)) / gg)
        D = problem.next_direction(g_new, beta, D)
        g, gg, steepest = g_new, gg_new, False
    res.f = f
    if hasattr(problem, "finish"):
        problem.finish()
    if res.success and not res.message:
        res.message = f"{res.iterations} iterations"
    return res


def ncg_device(problem, max_iter=5, variant="fr", c1=1e-4, shrink=0.5, trials=4, ftol=0.0):
    """:func:`ncg` with every scalar kept on the device: no read back to the host.

    The same iterations as :func:`ncg`, computed with 0-d arrays (``problem`` built with
    ``device=True``, so that its reductions stay arrays) and the Armijo search of
    :func:`~sibp_np.linesearch.armijo_batched`. Each test that ends :func:`ncg` early becomes a mask
    instead: once the solve is over (a zero gradient, no room inside the trust region, a predicted
    decrease below ``ftol * |f|``, a step that lands on the boundary, or no Armijo step along
    ``-g``), every later step is ``alpha = 0``, which leaves the iterate where it is. The solve is
    then a fixed sequence of ``max_iter`` iterations, whatever happens.

    Differences from :func:`ncg`: a search that would need more than ``trials`` steps is rejected
    (along a CG direction the next iteration restarts along ``-g``, as after any rejection; along
    ``-g`` the solve ends), and after the solve has ended the remaining iterations still run (their
    steps are 0). The iterates are otherwise the same.

    Returns
    -------
    NCGResult
        ``f0``, ``f``, ``iterations``, ``trials``, ``rejected`` and ``restarts`` are 0-d arrays;
        ``beyond`` counts the searches rejected for want of trials; ``steps`` is empty.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; choose one of {', '.join(VARIANTS)}")
    xp = problem.xp
    with _quiet(xp):
        f0 = f = problem.objective()
        g = problem.gradient()
        gg = problem.dot(g, g)
        live = xp.isfinite(f0) & (gg > 0)  # the solve is still going
        zero = xp.zeros((), dtype=xp.int64)
        res = NCGResult(problem.x, f0, f0, iterations=zero, trials=zero, rejected=zero, restarts=zero,
                        message="device control")
        res.beyond = zero
        D = problem.neg(g)
        steepest = xp.ones((), dtype=bool)
        for k in range(max_iter):
            dphi0 = problem.dot(g, D)
            live = live & xp.isfinite(dphi0)
            restart = ~(dphi0 < 0)
            D = problem.keep_or_steepest(restart, g, D)
            dphi0 = xp.where(restart, -gg, dphi0)
            steepest = steepest | restart
            res.restarts = res.restarts + (restart & live)
            problem.prepare(D)
            alpha0 = problem.initial_step_device(dphi0)
            alpha_max = problem.max_step_device()
            boundary = alpha0 >= alpha_max
            alpha0 = xp.where(boundary, alpha_max, alpha0)
            live = live & (alpha0 > 0) & ~(-0.5 * alpha0 * dphi0 <= ftol * xp.abs(f))
            alpha, phi, used, accepted = armijo_batched(
                problem.phi_multi, f, dphi0, xp.where(live, alpha0, 1.0), xp, c1, shrink, trials)
            accepted = accepted & live
            rejected = live & ~accepted
            res.trials = res.trials + xp.where(live, used, 0)
            res.rejected = res.rejected + rejected
            res.beyond = res.beyond + rejected
            live = live & ~(rejected & steepest)  # no Armijo step along -g: the solve ends
            alpha = xp.where(accepted, alpha, 0.0)
            problem.move(alpha)
            f = xp.where(accepted, phi, f)
            res.iterations = res.iterations + accepted
            live = live & ~(boundary & accepted & (alpha == alpha0))  # on the boundary: Steihaug
            if k == max_iter - 1:
                break  # the next gradient would only serve a step we will not take
            g_new = problem.gradient()
            gg_new = problem.dot(g_new, g_new)
            live = live & (gg_new > 0)
            ratio = gg_new / xp.where(gg > 0, gg, 1.0)
            if variant == "fr":
                beta = ratio
            else:
                beta = xp.maximum(0.0, (gg_new - problem.dot(g_new, g)) / xp.where(gg > 0, gg, 1.0))
            # after a rejection the next direction is -g (beta = 0); nothing moved, so g_new is g
            beta = xp.where(accepted, beta, 0.0)
            D = problem.next_direction(g_new, beta, D)
            g, gg, steepest = g_new, gg_new, ~accepted
        res.f = f
        if hasattr(problem, "finish"):
            problem.finish()
    return res


def _quiet(xp):
    """Masked branches divide by zero or overflow where their results are discarded."""
    import numpy
    return numpy.errstate(all="ignore")
