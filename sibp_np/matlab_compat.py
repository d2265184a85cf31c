"""The authors' inner solver (``FR3.m`` and ``FR4.m`` of liur0810/semi-implicit-back-propagation),
reproduced step for step on this package's subproblem objects, for ``SIBP(compat="matlab")``.

Their files were read to learn the behaviour; nothing here is their code. What their solver does, in
the paper's notation (their ``lambda ||.||^2`` is our ``(lam/2) ||.||^2``, the same objective):

* ``cg_steps`` (their 5) Fletcher-Reeves iterations, with no descent check and no restart:
  ``d_0 = -g_0``, ``d_{k+1} = -g_{k+1} + (||g_{k+1}||^2 / ||g_k||^2) d_k``.
* Each iteration runs an Armijo search over the steps ``rho^m`` (``rho = 0.6``) with the test
  ``f(x + rho^m d) < f(x) + sigma rho^m g.d`` (``sigma = 0.1``, a *strict* ``<``), for ``m < 50``.
* Hidden layers (FR3) jump: after the first trial (``m = 0``), ``m`` becomes
  ``max(floor(log(0.01 f(x) / |sigma g.d|) / log rho), 0)``, the step that predicts a 1% decrease.
  The first trial's acceptance test still uses ``m = 0``'s values, but an acceptance records the
  *jumped* ``m``, so the step applied is ``rho^m_jumped``, a step that was never tested.
* A step is applied only when the recorded ``m`` is positive: a unit step accepted at ``m = 0`` (only
  possible in the output layer, which does not jump) is thrown away.
* The gradient and the direction are updated at every iteration, also when no step was applied.
* The output layer (FR4) does not jump, and its first gradient leaves out the fixed term: the bias for
  the W solve, ``F W^T`` for the b solve. Later gradients are the true ones.
* MATLAB's arithmetic at the edges: ``max(NaN, 0)`` is 0 (``0.01 f / 0`` at a zero slope), and an
  infinite jump (``f(x) = 0``) makes every later trial index fail ``m < 50``, so the search ends with
  no step.

A line-search trial costs no matrix product here either: ``phi(alpha)`` is the problem's one reduction
over ``Z + alpha P`` plus the closed-form proximal quadratic.
"""
import math

RHO = 0.6
SIGMA = 0.1
MAX_M = 50
JUMP_DECREASE = 0.01


def armijo_matlab(phi, f0, slope, jump):
    """The authors' backtracking search; returns the recorded ``m`` (0 means: no step).

    Parameters
    ----------
    phi : callable float -> float
        Objective at ``x + alpha d``.
    f0 : float
        Objective at ``x``.
    slope : float
        ``g.d`` (not necessarily negative: their FR directions are not checked for descent).
    jump : bool
        FR3's jump after the first trial (hidden layers); FR4 (output layer) has none.
    """
    gsearch = SIGMA * slope
    m, jumped = 0, False
    while m < MAX_M:
        value = phi(RHO ** m)
        bound = f0 + gsearch * RHO ** m
        if jump and m == 0 and not jumped:
            m = _jump(f0, gsearch)
            jumped = True
        if value < bound:
            return m
        m += 1
    return 0


def _jump(f0, gsearch):
    """``max(floor(log(0.01 f0 / |gsearch|) / log rho), 0)`` with MATLAB's NaN and infinity rules."""
    with_nan = _matlab_div(JUMP_DECREASE * f0, abs(gsearch))
    if math.isnan(with_nan):
        return 0
    logged = math.log(with_nan) if with_nan > 0 else -math.inf
    m = logged / math.log(RHO)
    if math.isnan(m):
        return 0  # max(NaN, 0) = 0
    return max(math.floor(m) if math.isfinite(m) else m, 0)


def _matlab_div(a, b):
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def fr_matlab(problem, max_iter=5, jump=True, first_gradient=None):
    """Run the authors' FR solver on a subproblem (see the module docstring). Returns the number of
    steps applied.

    ``problem`` is one of SIBP's subproblem objects (:mod:`sibp_np.sibp`); ``first_gradient`` is the
    gradient to start from (FR4's, without the fixed term), or None for the true gradient.
    """
    g = problem.gradient() if first_gradient is None else first_gradient
    d = problem.neg(g)
    applied = 0
    for k in range(max_iter):
        f0 = problem.objective()
        slope = problem.dot(g, d)
        problem.prepare(d)
        m = armijo_matlab(problem.phi, f0, slope, jump)
        if m > 0 and math.isfinite(m):
            problem.move(RHO ** m)
            applied += 1
        if k == max_iter - 1:
            break  # their last gradient and direction are computed but never used
        g_new = problem.gradient()
        beta = _matlab_div(problem.dot(g_new, g_new), problem.dot(g, g))
        d = problem.next_direction(g_new, beta, d)
        g = g_new
    if hasattr(problem, "finish"):
        problem.finish()
    return applied


def solve_matlab(problem, method, output, bias):
    """SIBP's inner solve (``SIBP(compat="matlab")``) by the authors' solver: ``method.cg_steps``
    iterations of FR3 on a hidden layer, FR4 on the output layer, whose first gradient leaves out the
    fixed term (``bias``, the layer's ``b^k``, for the W solve; ``F W^T`` for the b solve). Returns the
    solve's statistics when ``method.record_stats``, else None."""
    first = None
    if output:
        Z = problem.Z
        Z_free = Z - bias if problem.param == "W" else problem.xp.broadcast_to(bias, Z.shape)
        problem.Z = Z_free
        try:
            first = problem.gradient()
        finally:
            problem.Z = Z
    f0 = problem.objective() if method.record_stats else math.nan
    applied = fr_matlab(problem, method.cg_steps, jump=not output, first_gradient=first)
    if not method.record_stats:
        return None
    return {"f0": f0, "f": problem.objective(), "iterations": applied, "step_norm": problem.step_norm(),
            "radius": problem.radius, "lam": problem.lam, "message": f"{applied} steps applied "
            f"(compat='matlab')"}
