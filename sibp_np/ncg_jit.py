"""The nonlinear-CG solve of SIBP's subproblem (7), compiled by Numba (``SIBP(jit=True)``).

On a small network an NCG iteration of :func:`sibp_np.ncg.ncg` costs more in Python and NumPy dispatch
than in arithmetic: some 120 calls of 1-5 us each on arrays of 100 x 100. :func:`ncg` here runs a whole
solve, the same iterations on the same three subproblems (:class:`~sibp_np.sibp.WeightSubproblem`,
:class:`~sibp_np.sibp.DualWeightSubproblem`, :class:`~sibp_np.sibp.BiasSubproblem`), as one compiled
call. The elementwise passes are fused into loops, the reductions are summed in float64, and the matrix
products go to BLAS (Numba calls SciPy's).

:func:`solve_layer` goes one level up: a layer's two solves in
:meth:`~sibp_np.sibp.SIBP._implicit_update` (W, then b) are one compiled call, so that a step of a
two-layer network makes two calls here and none of the Python that builds the subproblems. What the
subproblem objects compute with NumPy (the proximal weights and trust radii, given by the caller; the dual
form's Gram matrix and final product) stays NumPy's, so its numbers are :func:`ncg`'s, bit for bit.
``SIBP(jit=True)`` uses it wherever the layer qualifies (:func:`supports_layer`), and :func:`ncg` for a
single subproblem that does where its layer does not (a sparse input's layer has its b solve compiled).

The iterates are the NumPy path's up to rounding: the reductions are summed in another order (in float64,
where NumPy's dot products sum in the array's dtype), so a float32 run drifts from the NumPy one as two
BLAS libraries' runs do. In float64 the two make the same decisions, and their iterates differ by about
what a change of a few ulps in the inputs makes (``tests/test_ncg_jit.py``).

Numba is optional (``pip install "sibp_np[fast]"``): ``import sibp_np`` never imports it, this module is
imported on the first step of ``SIBP(jit=True)``. Covered: the NumPy backend with host control, ReLU and
identity activations, dense inputs, products of at most ``MAX_PRODUCT`` multiply-adds, NCG solves (not
``linear_solve="exact"``). Any other subproblem runs on :func:`sibp_np.ncg.ncg` as without ``jit``.

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


def _weight_product_size(form, n_samples, n_in, n_out):
    """Multiply-adds of one product in an NCG iteration of a W subproblem: ``K M`` (dual,
    n_samples^2 n_out) or ``M^T F`` and ``F D^T`` (primal, n_samples n_in n_out)."""
    return n_samples * n_out * (n_samples if form == "dual" else n_in)


def product_size(prob):
    """Multiply-adds of the largest matrix product in one NCG iteration of ``prob`` (0 for a bias)."""
    if prob.param == "b":
        return 0
    B, n_out = prob.Z.shape
    return _weight_product_size(prob.form, B, prob.F.shape[1], n_out)


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
# Each pass is a flat loop over contiguous arrays (``_flat``), and ReLU's mask is a select,
# ``(z > 0) | identity``, not a branch: both let LLVM vectorise the loop (about 1.6x faster than nested
# loops with a branch, on arrays of 100 x 100). A bias direction, one row that moves every row of Z, is the
# one case with two loops.
@_jit
def _cast(one, value):
    """``value`` (a float64) in the dtype of the 1-element array ``one`` (the arrays' dtype)."""
    one[0] = value
    return one[0]


@_jit
def _flat(a):
    """A contiguous array as one row (a view: writes go to ``a``)."""
    return a.reshape(a.size)


@_reduction
def _data(act, Z, T, M):
    """``||sigma(Z) - T||_F^2`` (float64), and in the same pass ``M = sigma'(Z) * (sigma(Z) - T)``, half
    the gradient of the data term with respect to Z."""
    z, t, m = _flat(Z), _flat(T), _flat(M)
    identity, zero = act == IDENTITY, Z.dtype.type(0)
    acc = 0.0
    for k in range(z.size):
        r = (z[k] if (z[k] > zero) | identity else zero) - t[k]  # sigma(z) - t, in Z's dtype
        m[k] = r if (z[k] > zero) | identity else zero
        acc += np.float64(r) * r
    return acc


@_reduction
def _data_along(act, Z, P, T, a):
    """``||sigma(Z + a P) - T||_F^2`` with ``Z + a P`` rounded as ``fl(fl(a P) + Z)``, as
    :meth:`Backend.shifted`; a one-row ``P`` (a bias direction) moves every row."""
    identity, zero = act == IDENTITY, Z.dtype.type(0)
    acc = 0.0
    if P.shape[0] == 1:
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                s = a * P[0, j] + Z[i, j]
                r = (s if (s > zero) | identity else zero) - T[i, j]
                acc += np.float64(r) * r
        return acc
    z, p, t = _flat(Z), _flat(P), _flat(T)
    for k in range(z.size):
        s = a * p[k] + z[k]
        r = (s if (s > zero) | identity else zero) - t[k]
        acc += np.float64(r) * r
    return acc


@_reduction
def _curvature(act, Z, P):
    """``||sigma'(Z) * P||_F^2`` over Z's shape (float64): the Gauss-Newton curvature along P."""
    identity, zero = act == IDENTITY, Z.dtype.type(0)
    acc = 0.0
    if P.shape[0] == 1:
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                q = P[0, j] if (Z[i, j] > zero) | identity else zero
                acc += np.float64(q) * q
        return acc
    z, p = _flat(Z), _flat(P)
    for k in range(z.size):
        q = p[k] if (z[k] > zero) | identity else zero
        acc += np.float64(q) * q
    return acc


@_reduction
def _dot(a, b):
    """``<a, b>`` (float64)."""
    a, b = _flat(a), _flat(b)
    acc = 0.0
    for k in range(a.size):
        acc += np.float64(a[k]) * b[k]
    return acc


@_reduction
def _prox_parts(x, xk, D):
    """``(||x - x^k||^2, <x - x^k, D>, ||D||^2)`` (float64), ``x - x^k`` rounded in the arrays' dtype."""
    x, xk, D = _flat(x), _flat(xk), _flat(D)
    p0 = p1 = p2 = 0.0
    for k in range(x.size):
        e = np.float64(x[k] - xk[k])
        d = np.float64(D[k])
        p0 += e * e
        p1 += e * d
        p2 += d * d
    return p0, p1, p2


# ------------------------------------------------------------------------------ the problem's parts
# Each helper is one pass over its arrays: what the NumPy path computes in several passes (the gradient
# and its norm; the next direction, the slope along it and the proximal quadratic's three numbers; the
# move and the next residual) comes out of one loop here.
@_reduction
def _gradient(kind, fr, F, K, M, x, xk, Ce, KCe, lam, one, g0, g1, old0, old1):
    """The gradient at ``x`` into ``g0`` (the dual form: ``C`` into g0, ``K C`` into g1), from the
    residual ``M`` at ``x`` (:func:`_data`, :func:`_move`); returns ``(<g, g>, <g, old>)``, ``old`` the
    previous gradient (Polak-Ribiere's; 0 with ``fr``, Fletcher-Reeves, which does not need it).

    Primal ``2 M^T F + lam (W - W^k)``; bias ``2 sum_n M_n + lam (b - b^k)``; dual
    ``C = 2 M + lam C_e``, ``K C = 2 K M + lam K C_e`` (and ``<a, b> = <C_a, K C_b>``).
    """
    two, lam_x = _cast(one, 2.0), _cast(one, lam)
    gg = go = 0.0
    if kind == DUAL:
        np.dot(K, M, g1)
        c0, c1, m, ce, kce, o1 = _flat(g0), _flat(g1), _flat(M), _flat(Ce), _flat(KCe), _flat(old1)
        for k in range(c0.size):
            c = m[k] * two + lam_x * ce[k]
            kc = c1[k] * two + lam_x * kce[k]
            c0[k], c1[k] = c, kc
            gg += np.float64(c) * kc
            if not fr:
                go += np.float64(c) * o1[k]
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
    g, xf, xkf, o0 = _flat(g0), _flat(x), _flat(xk), _flat(old0)
    for k in range(g.size):
        gk = g[k] * two + lam_x * (xf[k] - xkf[k])
        g[k] = gk
        gg += np.float64(gk) * gk
        if not fr:
            go += np.float64(gk) * o0[k]
    return gg, go


@_reduction
def _direction(kind, act, Z, steepest, beta, one, g0, g1, x, xk, Ce, KCe, D0, D1):
    """``D <- -g`` (``steepest``) or ``D <- beta D - g`` (which rounds as ``-g + beta D``), and in the
    same pass ``(<g, D>, p0, p1, p2)``: the slope along D and the proximal quadratic's numbers
    ``||x - x^k||^2, <x - x^k, D>, ||D||^2`` (dual: ``<C_e, K C_e>, <C_e, K C_d>, <C_d, K C_d>``).
    The dual form's image of D in Z is ``P = K C_d``, here in hand: its curvature
    ``||sigma'(Z) * P||^2`` (:func:`_curvature`) comes out of the same pass, as a fifth number (0 for
    the other forms)."""
    s = _cast(one, beta)
    slope = p0 = p1 = p2 = q = 0.0
    a0, d0 = _flat(g0), _flat(D0)
    if kind == DUAL:
        a1, d1, ce, kce, z = _flat(g1), _flat(D1), _flat(Ce), _flat(KCe), _flat(Z)
        identity, zero = act == IDENTITY, Z.dtype.type(0)
        for k in range(a0.size):
            u = -a0[k] if steepest else d0[k] * s - a0[k]
            v = -a1[k] if steepest else d1[k] * s - a1[k]
            d0[k], d1[k] = u, v
            e = np.float64(ce[k])
            slope += np.float64(a0[k]) * v
            p0 += e * kce[k]
            p1 += e * v
            p2 += np.float64(u) * v
            w = v if (z[k] > zero) | identity else zero
            q += np.float64(w) * w
        return slope, p0, p1, p2, q
    xf, xkf = _flat(x), _flat(xk)
    for k in range(a0.size):
        u = -a0[k] if steepest else d0[k] * s - a0[k]
        d0[k] = u
        e = np.float64(xf[k] - xkf[k])
        slope += np.float64(a0[k]) * u
        p0 += e * e
        p1 += e * u
        p2 += np.float64(u) * u
    return slope, p0, p1, p2, q


@_jit
def _image(kind, F, D0, D1, Pbuf):
    """``P``, the direction's image in Z: ``F D^T`` (primal), ``d`` as one row (bias), ``K C_d`` (dual)."""
    if kind == PRIMAL:
        np.dot(F, D0.T, Pbuf)
        return Pbuf
    return D0 if kind == BIAS else D1


@_jit
def _move(kind, act, alpha, one, x, Ce, KCe, Z, D0, P, T, M):
    """``x <- x + alpha D`` (dual: ``C_e``, ``K C_e``) and ``Z <- Z + alpha P``, and in the same pass the
    residual ``M`` at the new Z (as :func:`_data`)."""
    a = _cast(one, alpha)
    identity, zero = act == IDENTITY, Z.dtype.type(0)
    if kind == DUAL:  # C_e, K C_e, Z and M have one shape: one pass
        ce, kce, z, d, p, t, m = _flat(Ce), _flat(KCe), _flat(Z), _flat(D0), _flat(P), _flat(T), _flat(M)
        for k in range(z.size):
            ce[k] += d[k] * a
            w = p[k] * a
            kce[k] += w
            s = z[k] + w
            z[k] = s
            m[k] = s - t[k] if (s > zero) | identity else zero
        return
    xf, d = _flat(x), _flat(D0)
    for k in range(xf.size):
        xf[k] += a * d[k]
    if P.shape[0] == 1:
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                s = Z[i, j] + P[0, j] * a
                Z[i, j] = s
                M[i, j] = s - T[i, j] if (s > zero) | identity else zero
        return
    z, p, t, m = _flat(Z), _flat(P), _flat(T), _flat(M)
    for k in range(z.size):
        s = z[k] + p[k] * a
        z[k] = s
        m[k] = s - t[k] if (s > zero) | identity else zero


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
    f0 = f = _data(act, Z, T, M) + prox
    if not math.isfinite(f0):
        counts[ENDING] = 1
        return f0, f
    gg = _gradient(kind, fr, F, K, M, x, xk, Ce, KCe, lam, one, g0, g1, g0, g1)[0]
    counts[GRADIENTS] += 1
    if not gg > 0.0:
        counts[ENDING] = 2
        return f0, f
    slope, p0, p1, p2, q = _direction(kind, act, Z, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0, D1)
    steepest = True
    k = 0
    while k < max_iter:
        dphi0 = -gg if steepest else slope  # g.(-g) = -||g||^2 exactly
        if not math.isfinite(dphi0):
            counts[ENDING] = 3
            break
        if not dphi0 < 0:
            slope, p0, p1, p2, q = _direction(kind, act, Z, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0,
                                              D1)
            dphi0, steepest = -gg, True
            counts[RESTARTS] += 1
        P = _image(kind, F, D0, D1, Pbuf)
        counts[DIRECTIONS] += 1
        curv = 2.0 * (q if kind == DUAL else _curvature(act, Z, P)) + lam * p2
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
            slope, p0, p1, p2, q = _direction(kind, act, Z, True, 0.0, one, g0, g1, x, xk, Ce, KCe, D0,
                                              D1)
            steepest = True
            counts[RESTARTS] += 1
            continue
        _move(kind, act, alpha, one, x, Ce, KCe, Z, D0, P, T, M)
        f = value
        counts[ITERATIONS] += 1
        if boundary and alpha == alpha0:
            counts[ENDING] = 7
            break
        if k == max_iter:
            break
        gg_new, g_old = _gradient(kind, fr, F, K, M, x, xk, Ce, KCe, lam, one, h0, h1, g0, g1)
        counts[GRADIENTS] += 1
        if not gg_new > 0.0:
            counts[ENDING] = 8
            break
        beta = gg_new / gg if fr else max(0.0, (gg_new - g_old) / gg)
        slope, p0, p1, p2, q = _direction(kind, act, Z, False, beta, one, h0, h1, x, xk, Ce, KCe, D0,
                                          D1)
        g0, h0 = h0, g0
        g1, h1 = h1, g1
        gg, steepest = gg_new, False
    return f0, f


def _check_first_step(c):
    """Raise where a solve ended with code 9 (a first trial step that is not finite), as
    :func:`sibp_np.linesearch.armijo_backtracking` does; ``c``: the kernel's counts (a list)."""
    if c[ENDING] == 9:
        raise ValueError("alpha0 must be a finite positive step, got inf")


def _result(x, f0, f, c, steps):
    """The :class:`NCGResult` of a solve from the kernel's counts ``c`` (a list) and ``steps``."""
    message, success = ENDINGS[c[ENDING]]
    searches = [(a0, a, int(t)) for a0, a, t in steps[:c[SEARCHES]].tolist()]
    return NCGResult(x, f0, f, iterations=c[ITERATIONS], trials=c[TRIALS], rejected=c[REJECTED],
                     restarts=c[RESTARTS], steps=searches, success=success,
                     message=message or f"{c[ITERATIONS]} iterations")


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
    _check_first_step(c)
    if hasattr(problem, "finish") and c[ENDING] not in (1, 2):  # ncg.ncg returns early there
        problem.finish()
    return _result(problem.x, f0, f, c, steps)


# ------------------------------------------------------------------------------ one layer's two solves
@_jit
def _layer(kind, act, F, K, G, T, W, b, Ce, KCe, lam_W, lam_b, radius_W, radius_b, max_iter, fr, c1, shrink,
           max_trials, ftol, steps, counts, out):
    """The two NCG solves of subproblem (7) for one layer: ``W`` (primal or dual form, ``kind``) from
    ``Z = G``, then ``b`` from the ``Z`` that the W solve moved. ``W`` (primal) and ``b`` are updated in
    place; the dual form leaves ``C_e`` and ``K C_e`` in ``Ce`` and ``KCe`` (the caller forms
    ``W = W^k + C_e^T F``, which the b solve does not need).

    ``steps[0]``, ``counts[0]`` are the W solve's, ``steps[1]``, ``counts[1]`` the b solve's (as
    :func:`_ncg`); ``out`` gets ``f0, f`` of each. A W solve that ends with code 9 (a first trial step
    that is not finite) leaves the b solve undone: the caller raises.
    """
    dummy = np.zeros((1, 1), G.dtype)
    Z = G.copy()
    for which in range(2):  # one call site of _ncg: Numba compiles (and inlines) it once
        if which == 0 and kind == DUAL:
            solve, Kx, x, xk, c, kc, lam, radius = DUAL, K, dummy, dummy, Ce, KCe, lam_W, radius_W
        elif which == 0:
            solve, Kx, x, xk, c, kc, lam, radius = PRIMAL, dummy, W, W.copy(), dummy, dummy, lam_W, radius_W
        else:
            row = b.reshape(1, b.shape[0])
            solve, Kx, x, xk, c, kc, lam, radius = BIAS, dummy, row, row.copy(), dummy, dummy, lam_b, radius_b
        out[2 * which], out[2 * which + 1] = _ncg(solve, act, F, Kx, Z, T, x, xk, c, kc, lam, radius,
                                                  max_iter, fr, c1, shrink, max_trials, ftol, steps[which],
                                                  counts[which])
        if counts[0, ENDING] == 9:
            return


class LayerSolve:
    """What :func:`solve_layer` reports of one of its two solves: ``param`` ("W" or "b"), ``form``,
    its matrix products and flops, and (``stats=True``) ``result`` (an :class:`NCGResult`) and
    ``step_norm``, as the subproblem objects and :func:`ncg` give them."""

    __slots__ = ("param", "form", "matmuls", "flops", "result", "step_norm")

    def __init__(self, param, form, matmuls, flops):
        self.param, self.form, self.matmuls, self.flops = param, form, matmuls, flops
        self.result = self.step_norm = None


def supports_layer(act, F, G, W, b, form):
    """Whether :func:`solve_layer` solves this layer: NumPy arrays in float32 or float64 (W, b and G of
    one dtype; W and b C-contiguous), ReLU or identity, a dense F, and products in the solves of at most
    ``MAX_PRODUCT`` multiply-adds (as :func:`supports`; the dual form's Gram matrix and final product
    are NumPy's, at its threads)."""
    dtype = W.dtype
    if (act.name not in ("relu", "identity") or not isinstance(F, np.ndarray)
            or not isinstance(G, np.ndarray) or not isinstance(b, np.ndarray) or dtype.char not in "fd"
            or F.dtype != dtype or G.dtype != dtype or b.dtype != dtype
            or not (W.flags.c_contiguous and b.flags.c_contiguous)):
        return False
    return _weight_product_size(form, F.shape[0], F.shape[1], W.shape[0]) <= MAX_PRODUCT


def solve_layer(act, F, G, T, W, b, lam_W, lam_b, radius_W, radius_b, form, max_iter=5, variant="fr",
                c1=1e-4, shrink=0.5, max_trials=20, ftol=0.0, stats=False):
    """Subproblem (7) for one layer, W then b, with one compiled call (:func:`_layer`): the iterations of
    :class:`~sibp_np.sibp.WeightSubproblem` (``form="primal"``) or
    :class:`~sibp_np.sibp.DualWeightSubproblem` (``"dual"``), then of
    :class:`~sibp_np.sibp.BiasSubproblem`. The numbers are :func:`ncg`'s on those objects, bit for bit:
    the same kernel on the same arrays, with the dual form's Gram matrix and final product computed by
    NumPy as the objects compute them (``tests/test_ncg_jit.py``).

    Parameters
    ----------
    act : Activation
        ``sigma_i`` (ReLU or identity; :func:`supports_layer`).
    F : ndarray, shape (n_samples, n_in)
        The layer's input ``F_i``.
    G : ndarray, shape (n_samples, n_out)
        Its pre-activation ``G_{i+1} = F_i W^T + b`` (not changed).
    T : ndarray, shape (n_samples, n_out)
        The target ``F_{i+1}^{k+1/2}``.
    W : ndarray, shape (n_out, n_in); b : ndarray, shape (n_out,)
        The model's arrays, updated in place.
    lam_W, lam_b : float
        The proximal weights of the two subproblems.
    radius_W, radius_b : float
        Their trust radii (inf: none).
    form : {"primal", "dual"}
    stats : bool
        Also report each solve's :class:`NCGResult` and step norm.

    Returns
    -------
    list of two :class:`LayerSolve`, the W solve's and the b solve's.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; choose one of {', '.join(VARIANTS)}")
    steps = np.zeros((2, max_iter, 3))
    counts = np.zeros((2, 8), dtype=np.int64)
    out = np.zeros(4)
    kind = DUAL if form == "dual" else PRIMAL
    dummy = np.zeros((1, 1), W.dtype)
    K = F @ F.T if kind == DUAL else dummy  # as Backend.gram
    Ce, KCe = (np.zeros_like(G), np.zeros_like(G)) if kind == DUAL else (dummy, dummy)
    Wk, bk = (W.copy(), b.copy()) if stats else (None, None)  # the step norms, as the objects compute them
    Fc, Gc, Tc = np.ascontiguousarray(F), np.ascontiguousarray(G), np.ascontiguousarray(T)
    with _one_blas_thread():
        _layer(kind, RELU if act.name == "relu" else IDENTITY, Fc, K, Gc, Tc, W, b, Ce, KCe, float(lam_W),
               float(lam_b), float(radius_W), float(radius_b), int(max_iter), variant == "fr", float(c1),
               float(shrink), int(max_trials), float(ftol), steps, counts, out)
    cw, cb = counts.tolist()
    _check_first_step(cw)
    B, n_in = F.shape
    n_out = W.shape[0]
    finished = kind == DUAL and cw[ENDING] not in (1, 2)
    if finished:  # as DualWeightSubproblem.finish (Backend.t_matmul), before the b solve could raise
        W += Ce.T @ F
    _check_first_step(cb)
    per_iteration = 2 * _weight_product_size(form, B, n_in, n_out)  # flops of one product in the loop
    if kind == DUAL:  # the Gram matrix, K M per gradient, and C_e^T F at the end
        matmuls = 1 + cw[GRADIENTS] + finished
        flops = 2 * B * B * n_in + cw[GRADIENTS] * per_iteration + finished * 2 * B * n_in * n_out
    else:  # M^T F per gradient, F D^T per direction
        matmuls = cw[GRADIENTS] + cw[DIRECTIONS]
        flops = matmuls * per_iteration
    solves = [LayerSolve("W", form, matmuls, flops), LayerSolve("b", "", 0, 0)]
    if stats:
        E, e = W - Wk, b - bk
        norms = (math.sqrt(max(float(np.vdot(Ce.ravel(), KCe.ravel())), 0.0)) if kind == DUAL
                 else math.sqrt(float(np.vdot(E.ravel(), E.ravel()))), math.sqrt(float(np.vdot(e, e))))
        for solve, x, f0, f, c, st, norm in zip(solves, (W, b), out[0::2].tolist(), out[1::2].tolist(),
                                                (cw, cb), steps, norms):
            solve.result, solve.step_norm = _result(x, f0, f, c, st), norm
    return solves
