"""The nonlinear-CG solve of SIBP's subproblem (7), compiled by Numba (``SIBP(jit=True)``).

On a small network an NCG iteration of :func:`sibp_np.ncg.ncg` costs more in Python and NumPy dispatch
than in arithmetic: some 120 calls of 1-5 us each on arrays of 100 x 100. :func:`ncg` here runs a whole
solve, the same iterations on the same three subproblems (:class:`~sibp_np.sibp.WeightSubproblem`,
:class:`~sibp_np.sibp.DualWeightSubproblem`, :class:`~sibp_np.sibp.BiasSubproblem`), as one compiled
call. The elementwise passes are fused into loops, the reductions are summed in float64, and the matrix
products go to BLAS (Numba calls SciPy's).

The iterates are the NumPy path's up to rounding: the reductions are summed in another order (in float64,
where NumPy's dot products sum in the array's dtype), so a float32 run drifts from the NumPy one as two
BLAS libraries' runs do. In float64 the two make the same decisions, and their iterates differ by about
what a change of a few ulps in the inputs makes (``tests/test_ncg_jit.py``).

Numba is optional (``pip install "sibp_np[fast]"``): ``import sibp_np`` never imports it, this module is
imported on the first step of ``SIBP(jit=True)``. Covered: the NumPy backend with host control, ReLU and
identity activations, dense inputs, products of at most ``MAX_PRODUCT`` multiply-adds. Any other
subproblem runs on :func:`sibp_np.ncg.ncg` as without ``jit``.

Vectors: the W and b solves keep their gradients and directions as arrays of the parameter's shape
(``x`` is the model's array, ``b`` as one row); the dual form keeps the pair ``(C, K C)`` of
:class:`~sibp_np.sibp.DualWeightSubproblem` as two arrays ``v0, v1`` of Z's shape.
"""
import contextlib
import functools
import math

import numba
import numpy as np

from .ncg import VARIANTS, NCGResult

PRIMAL, DUAL, BIAS = 0, 1, 2
RELU, IDENTITY = 0, 1
#: how a solve ended, by the code the kernel returns: (message, success), as :func:`sibp_np.ncg.ncg`
ENDINGS = (
    ("", True),
    ("objective is not finite at the start", False),
    ("gradient is zero at the start", True),
    ("the directional derivative is not finite", False),
    ("no room to move: on the trust-region boundary", True),
    ("converged: predicted decrease below the objective's rounding level", True),
    ("no Armijo step along steepest descent", False),
    ("stopped on the trust-region boundary", True),
    ("gradient is zero", True),
)  # code 9, a first trial step that is not finite, raises instead (as the line search does)
# the kernel's counters, in its int64 array
ITERATIONS, TRIALS, REJECTED, RESTARTS, ENDING, GRADIENTS, DIRECTIONS, SEARCHES = range(8)

_jit = numba.njit(cache=True, nogil=True)
# the reductions may be summed in any order (``reassoc``), so that they run in SIMD lanes: 4-5x faster;
# the order then depends on the CPU's vector width, as BLAS's dot products do
_reduction = numba.njit(cache=True, nogil=True, fastmath={"reassoc"})


#: the largest matrix product (in multiply-adds) that a compiled solve computes. A compiled solve runs
#: BLAS at one thread (:func:`_one_blas_thread`); it saves about 100 us of Python per NCG iteration,
#: which outweighs what a second thread gives a product of up to about 2^23 multiply-adds. A W
#: subproblem with a larger product runs on :func:`sibp_np.ncg.ncg`, with NumPy's BLAS threads.
MAX_PRODUCT = 2 ** 23


def product_size(prob):
    """Multiply-adds of the largest matrix product in one NCG iteration of ``prob`` (0 for a bias)."""
    B, n = prob.Z.shape
    if prob.param == "b":
        return 0
    return B * B * n if prob.form == "dual" else B * n * prob.F.shape[1]


def supports(prob):
    """Whether :func:`ncg` solves ``prob``: NumPy arrays in float32 or float64, host control, ReLU or
    identity, a dense F, and products of at most ``MAX_PRODUCT`` multiply-adds."""
    if prob.backend.name != "numpy" or prob.device or prob.act.name not in ("relu", "identity"):
        return False
    F = getattr(prob, "F", None)
    return ((F is None or isinstance(F, np.ndarray)) and prob.Z.dtype in (np.float32, np.float64)
            and product_size(prob) <= MAX_PRODUCT)


@functools.cache
def _blas_libraries():
    """threadpoolctl's controllers of the process's BLAS libraries, SciPy's (Numba's) included."""
    import scipy.linalg.cython_blas  # noqa: F401 - the library Numba's products call, loaded first
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController().select(user_api="blas").lib_controllers


@contextlib.contextmanager
def _one_blas_thread():
    """Every BLAS library at one thread for the duration of a compiled solve, then as it was.

    Numba's matrix products call SciPy's BLAS, which on a pip install is a second OpenBLAS beside
    NumPy's. Two thread pools on the same cores slow each other down (a compiled solve ran 3-4x slower
    at the default two threads than at one, on the 2-vCPU machine of ``tools/NOTES.md``), and the
    products here are small (``MAX_PRODUCT``), where one thread is the fastest anyway. Uses
    threadpoolctl (installed with the ``[fast]`` extra, checked by ``SIBP(jit=True)``). A library
    already at one thread is left alone, so a solve never raises another one's limit.
    """
    libs = _blas_libraries()
    saved = [lib.get_num_threads() for lib in libs]
    for lib, n in zip(libs, saved):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved):
            if n != 1:
                lib.set_num_threads(n)


# ------------------------------------------------------------------------------ fused passes
@_jit
def _cast(one, value):
    """``value`` (a float64) in the dtype of the 1-element array ``one`` (the arrays' dtype)."""
    one[0] = value
    return one[0]


@_reduction
def _data(act, Z, T):
    """``||sigma(Z) - T||_F^2`` (float64)."""
    acc = 0.0
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            z = Z[i, j]
            r = z - T[i, j] if act == IDENTITY or z > 0 else -T[i, j]  # sigma(z) - t, in Z's dtype
            acc += np.float64(r) * r
    return acc


@_reduction
def _data_along(act, Z, P, T, a):
    """``||sigma(Z + a P) - T||_F^2`` with ``Z + a P`` rounded as ``fl(fl(a P) + Z)``, as
    :meth:`Backend.shifted`; a one-row ``P`` (a bias direction) moves every row."""
    acc = 0.0
    row = P.shape[0] == 1
    for i in range(Z.shape[0]):
        pi = 0 if row else i
        for j in range(Z.shape[1]):
            z = a * P[pi, j] + Z[i, j]
            r = z - T[i, j] if act == IDENTITY or z > 0 else -T[i, j]
            acc += np.float64(r) * r
    return acc


@_reduction
def _curvature(act, Z, P):
    """``||sigma'(Z) * P||_F^2`` over Z's shape (float64): the Gauss-Newton curvature along P."""
    acc = 0.0
    row = P.shape[0] == 1
    for i in range(Z.shape[0]):
        pi = 0 if row else i
        for j in range(Z.shape[1]):
            if act == IDENTITY or Z[i, j] > 0:
                acc += np.float64(P[pi, j]) * P[pi, j]
    return acc


@_jit
def _residual(act, Z, T, M):
    """``M = sigma'(Z) * (sigma(Z) - T)``, half the gradient of the data term with respect to Z."""
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            z = Z[i, j]
            if act == IDENTITY or z > 0:
                M[i, j] = z - T[i, j]
            else:
                M[i, j] = 0
    return M


@_reduction
def _dot(a, b):
    acc = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            acc += np.float64(a[i, j]) * b[i, j]
    return acc


@_reduction
def _prox_parts(x, xk, D):
    """``(||x - x^k||^2, <x - x^k, D>, ||D||^2)`` (float64), ``x - x^k`` rounded in the arrays' dtype."""
    p0 = p1 = p2 = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            e = np.float64(x[i, j] - xk[i, j])
            d = np.float64(D[i, j])
            p0 += e * e
            p1 += e * d
            p2 += d * d
    return p0, p1, p2


# ------------------------------------------------------------------------------ the problem's parts
# Each helper is one pass over its arrays: what the NumPy path computes in several passes (the gradient
# and its norm; the next direction, the slope along it and the proximal quadratic's three numbers)
# comes out of one loop here.
@_reduction
def _gradient(kind, act, F, K, Z, T, x, xk, Ce, KCe, lam, one, M, g0, g1, old0, old1):
    """The gradient at ``x`` into ``g0`` (the dual form: ``C`` into g0, ``K C`` into g1); returns
    ``(<g, g>, <g, old>)``, ``old`` the previous gradient (for Polak-Ribiere).

    Primal ``2 M^T F + lam (W - W^k)``; bias ``2 sum_n M_n + lam (b - b^k)``; dual
    ``C = 2 M + lam C_e``, ``K C = 2 K M + lam K C_e`` (and ``<a, b> = <C_a, K C_b>``).
    """
    two, lam_x = _cast(one, 2.0), _cast(one, lam)
    _residual(act, Z, T, M)
    gg = go = 0.0
    if kind == DUAL:
        np.dot(K, M, g1)
        for i in range(g0.shape[0]):
            for j in range(g0.shape[1]):
                c = M[i, j] * two + lam_x * Ce[i, j]
                g0[i, j] = c
                g1[i, j] = g1[i, j] * two + lam_x * KCe[i, j]
                gg += np.float64(c) * g1[i, j]
                go += np.float64(c) * old1[i, j]
        return gg, go
    if kind == PRIMAL:
        np.dot(M.T, F, g0)
    else:
        colsum = np.zeros(M.shape[1])  # in float64, a row at a time
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                colsum[j] += M[i, j]
        for j in range(g0.shape[1]):
            g0[0, j] = _cast(one, colsum[j])
    for i in range(g0.shape[0]):
        for j in range(g0.shape[1]):
            g = g0[i, j] * two + lam_x * (x[i, j] - xk[i, j])
            g0[i, j] = g
            gg += np.float64(g) * g
            go += np.float64(g) * old0[i, j]
    return gg, go


@_reduction
def _direction(kind, steepest, beta, one, g0, g1, x, xk, Ce, KCe, D0, D1):
    """``D <- -g`` (``steepest``) or ``D <- beta D - g`` (which rounds as ``-g + beta D``), and in the
    same pass ``(<g, D>, p0, p1, p2)``: the slope along D and the proximal quadratic's numbers
    ``||x - x^k||^2, <x - x^k, D>, ||D||^2`` (dual: ``<C_e, K C_e>, <C_e, K C_d>, <C_d, K C_d>``)."""
    s = _cast(one, beta)
    slope = p0 = p1 = p2 = 0.0
    for i in range(g0.shape[0]):
        for j in range(g0.shape[1]):
            d0 = -g0[i, j] if steepest else D0[i, j] * s - g0[i, j]
            D0[i, j] = d0
            if kind == DUAL:
                d1 = -g1[i, j] if steepest else D1[i, j] * s - g1[i, j]
                D1[i, j] = d1
                e = np.float64(Ce[i, j])
                slope += np.float64(g0[i, j]) * d1
                p0 += e * KCe[i, j]
                p1 += e * d1
                p2 += np.float64(d0) * d1
            else:
                e = np.float64(x[i, j] - xk[i, j])
                slope += np.float64(g0[i, j]) * d0
                p0 += e * e
                p1 += e * d0
                p2 += np.float64(d0) * d0
    return slope, p0, p1, p2


@_jit
def _image(kind, F, D0, D1, Pbuf):
    """``P``, the direction's image in Z: ``F D^T`` (primal), ``d`` as one row (bias), ``K C_d`` (dual)."""
    if kind == PRIMAL:
        np.dot(F, D0.T, Pbuf)
        return Pbuf
    return D0 if kind == BIAS else D1


@_jit
def _move(kind, alpha, one, x, Ce, KCe, Z, D0, P):
    """``x <- x + alpha D`` (dual: ``C_e``, ``K C_e``) and ``Z <- Z + alpha P``."""
    a = _cast(one, alpha)
    if kind == DUAL:  # C_e, K C_e and Z have one shape: one pass
        for i in range(Ce.shape[0]):
            for j in range(Ce.shape[1]):
                Ce[i, j] += D0[i, j] * a
                w = P[i, j] * a
                KCe[i, j] += w
                Z[i, j] += w
        return
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += a * D0[i, j]
    row = P.shape[0] == 1
    for i in range(Z.shape[0]):
        pi = 0 if row else i
        for j in range(Z.shape[1]):
            Z[i, j] += P[pi, j] * a


@_jit
def _max_step(radius, p0, p1, p2):
    """:meth:`~sibp_np.sibp._ProxLeastSquares.max_step`: the step to the trust-region boundary."""
    if not math.isfinite(radius):
        return math.inf
    slack = radius * radius - p0
    if slack <= 0 or p2 <= 0:
        return 0.0
    root = math.sqrt(p1 * p1 + p2 * slack)
    return slack / (p1 + root) if p1 >= 0 else (root - p1) / p2


# ------------------------------------------------------------------------------ the solver
@_jit
def _ncg(kind, act, F, K, Z, T, x, xk, Ce, KCe, lam, radius, max_iter, fr, c1, shrink, max_trials,
         ftol, steps, counts):
    """:func:`sibp_np.ncg.ncg`, line for line, on one subproblem; returns ``(f0, f)`` and fills
    ``counts`` (see ``ITERATIONS`` ...) and ``steps`` (one row ``alpha0, alpha, trials`` per search)."""
    one = np.empty(1, Z.dtype)
    shape = Z.shape if kind == DUAL else x.shape
    M, Pbuf = np.empty_like(Z), np.empty_like(Z)
    g0, g1 = np.empty(shape, Z.dtype), np.empty(shape, Z.dtype)
    h0, h1 = np.empty(shape, Z.dtype), np.empty(shape, Z.dtype)
    D0, D1 = np.empty(shape, Z.dtype), np.empty(shape, Z.dtype)

    prox = 0.5 * lam * (_dot(Ce, KCe) if kind == DUAL else _prox_parts(x, xk, x)[0])
    f0 = f = _data(act, Z, T) + prox
    if not math.isfinite(f0):
        counts[ENDING] = 1
        return f0, f
    gg = _gradient(kind, act, F, K, Z, T, x, xk, Ce, KCe, lam, one, M, g0, g1, g0, g1)[0]
    counts[GRADIENTS] += 1
    if not gg > 0.0:
        counts[ENDING] = 2
        return f0, f
    slope, p0, p1, p2 = _direction(kind, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0, D1)
    steepest = True
    k = 0
    while k < max_iter:
        dphi0 = -gg if steepest else slope  # g.(-g) = -||g||^2 exactly
        if not math.isfinite(dphi0):
            counts[ENDING] = 3
            break
        if not dphi0 < 0:
            slope, p0, p1, p2 = _direction(kind, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0, D1)
            dphi0, steepest = -gg, True
            counts[RESTARTS] += 1
        P = _image(kind, F, D0, D1, Pbuf)
        counts[DIRECTIONS] += 1
        curv = 2.0 * _curvature(act, Z, P) + lam * p2
        alpha0 = -dphi0 / curv if curv > 0 and math.isfinite(curv) else 1.0
        alpha_max = _max_step(radius, p0, p1, p2)
        boundary = alpha0 >= alpha_max
        if boundary:
            alpha0 = alpha_max
        if not alpha0 > 0:
            counts[ENDING] = 4
            break
        if -0.5 * alpha0 * dphi0 <= ftol * abs(f):
            counts[ENDING] = 5
            break
        if not math.isfinite(alpha0):
            counts[ENDING] = 9
            break
        # Armijo backtracking (sibp_np.linesearch.armijo_backtracking)
        alpha, accepted, trial, value = alpha0, False, 0, f
        while trial < max_trials:
            trial += 1
            value = _data_along(act, Z, P, T, _cast(one, alpha)) + 0.5 * lam * (
                p0 + 2.0 * alpha * p1 + alpha * alpha * p2)
            if math.isfinite(value) and value <= f + c1 * alpha * dphi0:
                accepted = True
                break
            alpha *= shrink
        counts[TRIALS] += trial
        steps[k, 0], steps[k, 1], steps[k, 2] = alpha0, alpha if accepted else 0.0, trial
        counts[SEARCHES] += 1
        k += 1
        if not accepted:
            counts[REJECTED] += 1
            if steepest:
                counts[ENDING] = 6
                break
            slope, p0, p1, p2 = _direction(kind, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0, D1)
            steepest = True
            counts[RESTARTS] += 1
            continue
        _move(kind, alpha, one, x, Ce, KCe, Z, D0, P)
        f = value
        counts[ITERATIONS] += 1
        if boundary and alpha == alpha0:
            counts[ENDING] = 7
            break
        if k == max_iter:
            break
        gg_new, g_old = _gradient(kind, act, F, K, Z, T, x, xk, Ce, KCe, lam, one, M, h0, h1, g0, g1)
        counts[GRADIENTS] += 1
        if not gg_new > 0.0:
            counts[ENDING] = 8
            break
        beta = gg_new / gg if fr else max(0.0, (gg_new - g_old) / gg)
        slope, p0, p1, p2 = _direction(kind, False, beta, one, h0, h1, x, xk, Ce, KCe, D0, D1)
        g0, h0 = h0, g0
        g1, h1 = h1, g1
        gg, steepest = gg_new, False
    return f0, f


def ncg(problem, max_iter=5, variant="fr", c1=1e-4, shrink=0.5, max_trials=20, ftol=0.0):
    """:func:`sibp_np.ncg.ncg` on a subproblem of :mod:`sibp_np.sibp`, compiled (see the module's
    docstring); ``problem`` must pass :func:`supports`. Updates the problem's arrays in place, adds its
    matrix products to ``problem.matmuls``/``flops`` and returns the same :class:`NCGResult`."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; choose one of {', '.join(VARIANTS)}")
    Z, T = problem.Z, problem.T
    dummy = np.zeros((1, 1), dtype=Z.dtype)
    if problem.param == "b":
        kind, F, K = BIAS, dummy, dummy
        x, xk, Ce, KCe = problem.x.reshape(1, -1), problem.xk.reshape(1, -1), dummy, dummy
    elif problem.form == "dual":
        kind, F, K, x, xk = DUAL, problem.F, problem.K, dummy, dummy
        Ce, KCe = problem.Ce, problem.KCe
    else:
        kind, F, K, x, xk, Ce, KCe = PRIMAL, problem.F, dummy, problem.x, problem.xk, dummy, dummy
    arrays = [np.ascontiguousarray(a) for a in (F, K, T)]
    for a in (Z, x, xk, Ce, KCe):  # updated in place: they must be the problem's own arrays
        if not a.flags.c_contiguous:
            raise ValueError("ncg_jit.ncg needs C-contiguous arrays in the problem")
    steps = np.zeros((max_iter, 3))
    counts = np.zeros(8, dtype=np.int64)
    with _one_blas_thread():
        f0, f = _ncg(kind, RELU if problem.act.name == "relu" else IDENTITY, arrays[0], arrays[1], Z,
                     arrays[2], x, xk, Ce, KCe, float(problem.lam), float(problem.radius), int(max_iter),
                     variant == "fr", float(c1), float(shrink), int(max_trials), float(ftol), steps, counts)
    c = counts.tolist()
    # primal: a gradient (M^T F) and a direction's image (F D^T) are one product each; dual: K M per
    # gradient; bias: none
    products = {PRIMAL: c[GRADIENTS] + c[DIRECTIONS], DUAL: c[GRADIENTS], BIAS: 0}[kind]
    problem.matmuls += products
    problem.flops += 2 * products * product_size(problem)
    if c[ENDING] == 9:  # as sibp_np.linesearch.armijo_backtracking
        raise ValueError("alpha0 must be a finite positive step, got inf")
    if hasattr(problem, "finish") and c[ENDING] not in (1, 2):  # ncg.ncg returns early there
        problem.finish()
    message, success = ENDINGS[c[ENDING]]
    searches = [(a0, a, int(t)) for a0, a, t in steps[:c[SEARCHES]].tolist()]
    return NCGResult(problem.x, f0, f, iterations=c[ITERATIONS], trials=c[TRIALS], rejected=c[REJECTED],
                     restarts=c[RESTARTS], steps=searches, success=success,
                     message=message or f"{c[ITERATIONS]} iterations")
