"""Semi-Implicit Back Propagation (Liu & Zhang), Algorithm 1.

One step on a minibatch ``(X, Y)``:

1. forward pass (eq. 1), keeping ``G_i`` and ``F_i``;
2. output target (eq. 6), per sample: ``T_N = F_N - eta * delta_N`` with ``delta_N = softmax(F_N) - Y``
   (``F_N - Y`` for squared error), *without* a 1/B factor, so ``eta`` is a step on each sample's logits;
3. for i = N-1 down to 1 (code index ``i-1``):

   * ``W_i`` solves (7): ``min_W ||sigma(F_i W^T + b_i) - T_{i+1}||_F^2 + (lam/2) ||W - W_i^k||_F^2``,
   * then ``b_i`` solves (7) with the new ``W_i``,
   * if i > 1, the error goes down with the **new** weights and the forward-pass derivative (eq. 9):
     ``delta_i = (sigma'(G_{i+1}) * delta_{i+1}) W_i^{k+1}`` and ``T_i = F_i - eta * delta_i``.

The subproblems are solved by a few nonlinear-CG iterations warm-started at the current values
(:func:`sibp_np.ncg.ncg`). Along a direction ``D`` the pre-activation is affine in the step,
``Z(alpha) = Z + alpha P`` with ``P = F D^T`` computed once, so a line-search trial is one masked-residual
reduction plus the proximal term in closed form: no matrix product per trial.
"""
import importlib.util
import math
import warnings

import numpy as np

from ._validation import (
    check_bool,
    check_choice,
    check_int,
    check_open_unit,
    check_optional_bool,
    check_optional_choice,
    check_positive,
)
from .matlab_compat import solve_matlab
from .methods import Hyperparameter, Method, register
from .ncg import VARIANTS, EuclideanVectors, ncg, ncg_device

#: power iterations per step for ||W||_2 (warm-started), and from the first (cold) start
POWER_ITERATIONS, POWER_ITERATIONS_COLD = 1, 20


class _ProxLeastSquares:
    """Common part of the two subproblems (7): ``||sigma(Z(x)) - T||^2 + (lam/2) ||x - x^k||^2``.

    ``Z`` (n_samples, n_out) is the pre-activation at the current ``x`` and is kept up to date by
    :meth:`move`, so it is never recomputed from scratch. Along a direction ``D`` it moves as
    ``Z + alpha P``, and the proximal term is the quadratic ``(lam/2) (p0 + 2 alpha p1 + alpha^2 p2)``
    with ``p0 = ||x - x^k||^2``, ``p1 = <x - x^k, D>``, ``p2 = ||D||^2``. Subclasses set ``P`` and the
    three numbers in ``prepare``.
    """

    def __init__(self, backend, act, Z, T, lam, work, device=False):
        self.backend, self.xp, self.act = backend, backend.xp, act
        self.Z, self.T, self.lam, self.work = Z, T, lam, work
        self.radius = math.inf  # trust region ||x - x^k|| <= radius (set by the caller)
        self.matmuls = 0
        self.flops = 0
        # how a reduction becomes a scalar: a host float (one read each), or a 0-d float64 array that
        # stays on the device (control="device"); float64 arithmetic rounds the same on both
        self.scalar = backend.scalar if device else backend.to_float
        self.device = device

    def _mm(self, a, b):
        """A counted matrix product (used outside line-search trials only)."""
        self.matmuls += 1
        self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    def _mm_t(self, a, F):
        """A counted ``a^T F`` (``F`` may be a sparse input, :meth:`Backend.t_matmul`)."""
        self.matmuls += 1
        self.flops += 2 * a.shape[1] * a.shape[0] * F.shape[1]
        return self.backend.t_matmul(a, F)

    def _vdot(self, a, b):
        return self.scalar(self.xp.vdot(a.ravel(), b.ravel()))

    def _data_objective(self):
        R = self.act.forward(self.Z) - self.T
        return self._vdot(R, R)

    def phi(self, alpha):
        """Objective at ``x + alpha D``: one reduction over ``Z + alpha P`` and a scalar quadratic."""
        data = self.scalar(self.act.residual_sqnorm(self.backend, self.Z, self.P, self.T, alpha,
                                                    work=self.work))
        return data + 0.5 * self.lam * (self.p0 + 2.0 * alpha * self.p1 + alpha * alpha * self.p2)

    def phi_multi(self, alphas):
        """:meth:`phi` at every step of ``alphas`` (a float64 array of shape (M,)), in one pass."""
        shape = (alphas.shape[0],) + self.Z.shape
        if getattr(self, "_multi_work", None) is None or self._multi_work.shape != shape:
            self._multi_work = self.xp.empty(shape, dtype=self.Z.dtype)  # once per solve, not per search
        data = self.scalar(self.act.residual_sqnorm_multi(self.backend, self.Z, self.P, self.T, alphas,
                                                          work=self._multi_work))
        return data + 0.5 * self.lam * (self.p0 + 2.0 * alphas * self.p1 + alphas * alphas * self.p2)

    def max_step(self):
        """Largest ``alpha`` with ``||x + alpha D - x^k||^2 = p0 + 2 alpha p1 + alpha^2 p2 <= radius^2``."""
        if not math.isfinite(self.radius):
            return math.inf
        slack = self.radius * self.radius - self.p0
        if slack <= 0 or self.p2 <= 0:
            return 0.0
        root = math.sqrt(self.p1 * self.p1 + self.p2 * slack)
        # the positive root of the quadratic, in the form without cancellation
        return slack / (self.p1 + root) if self.p1 >= 0 else (root - self.p1) / self.p2

    def max_step_device(self):
        """:meth:`max_step` as a 0-d array, its branches as masks (the same numbers)."""
        xp, scalar = self.xp, self.backend.scalar
        if not isinstance(self.radius, xp.ndarray) and not math.isfinite(self.radius):
            return scalar(math.inf)
        slack = self.radius * self.radius - self.p0
        root = xp.sqrt(xp.maximum(self.p1 * self.p1 + self.p2 * slack, 0.0))
        pos = slack / xp.where(self.p1 + root > 0, self.p1 + root, 1.0)
        neg = (root - self.p1) / xp.where(self.p2 > 0, self.p2, 1.0)
        return xp.where((slack <= 0) | (self.p2 <= 0), 0.0, xp.where(self.p1 >= 0, pos, neg))

    def initial_step(self, dphi0):
        """Minimiser of the Gauss-Newton model along D: ``-phi'(0) / (2 ||sigma'(Z) P||^2 + lam p2)``.

        Exact for a linear layer and, within a fixed ReLU pattern, for ReLU layers.
        """
        curv = 2.0 * self._curvature() + self.lam * self.p2
        return -dphi0 / curv if curv > 0 and math.isfinite(curv) else 1.0

    def initial_step_device(self, dphi0):
        """:meth:`initial_step` as a 0-d array."""
        xp = self.xp
        curv = 2.0 * self._curvature() + self.lam * self.p2
        ok = (curv > 0) & xp.isfinite(curv)
        return xp.where(ok, -dphi0 / xp.where(ok, curv, 1.0), 1.0)

    def _curvature(self):
        return self.scalar(self.act.curvature(self.backend, self.Z, self.P, work=self.work))


class _PrimalProblem(EuclideanVectors, _ProxLeastSquares):
    """Iterate ``x`` stored as itself (the model's array, updated in place); ``x^k`` is a copy."""

    def __init__(self, backend, act, Z, T, x, lam, work, device=False):
        super().__init__(backend, act, Z, T, lam, work, device)
        self.x, self.xk = x, x.copy()
        self._moved = False

    def objective(self):
        E = self.x - self.xk
        return self._data_objective() + 0.5 * self.lam * self._vdot(E, E)

    def step_norm(self):
        """``||x - x^k||`` (for the statistics)."""
        E = self.x - self.xk
        return math.sqrt(self.backend.to_float(self.xp.vdot(E.ravel(), E.ravel())))

    def prepare(self, D):
        self.D = D
        self.P = self._direction_image(D)
        E = self.x - self.xk
        self.p0, self.p1, self.p2 = self._vdot(E, E), self._vdot(E, D), self._vdot(D, D)

    def move(self, alpha):
        a = self.backend.cast(alpha, self.x.dtype)
        self.x += a * self.D
        self._moved = True
        # alpha P in the work buffer (a bias direction is one row, broadcast over the samples)
        self.Z += self.xp.multiply(self.P, a, out=self.work[:self.P.shape[0]])

    def _add_proximal_gradient(self, g):
        """``g += lam (x - x^k)``; before the first move ``x = x^k`` and the term is zero, so it is not
        computed (the same numbers)."""
        if self._moved:
            g += self.backend.cast(self.lam, self.x.dtype) * (self.x - self.xk)
        return g


class WeightSubproblem(_PrimalProblem):
    """Subproblem (7) for ``W_i`` in the primal form (the reference; read this one first).

    ``Z = F W^T + b``; gradient ``2 M^T F + lam (W - W^k)`` with ``M = sigma'(Z) * (sigma(Z) - T)``;
    ``P = F D^T`` once per direction. Two products of size n_samples x n_in x n_out per iteration.
    Shapes: F (n_samples, n_in), W (n_out, n_in), Z and T (n_samples, n_out).
    """

    param, form = "W", "primal"

    def __init__(self, backend, act, F, Z, T, W, lam, work, device=False):
        super().__init__(backend, act, Z, T, W, lam, work, device)
        self.F = F

    def gradient(self):
        M = self.act.residual(self.backend, self.Z, self.T)
        g = self._mm_t(M, self.F)
        g *= g.dtype.type(2)
        return self._add_proximal_gradient(g)

    def _direction_image(self, D):
        return self._mm(self.F, D.T)  # P = F D^T: the only matrix product per direction


class DualWeightSubproblem(_ProxLeastSquares):
    """Subproblem (7) for ``W_i``, the same NCG iterates computed in the row space of F.

    Every iterate stays of the form ``W = W^k + C_e^T F``: the gradient is
    ``g = 2 M^T F + lam (W - W^k) = (2 M + lam C_e)^T F`` and each direction is a combination of
    gradients. So gradients and directions are kept as coefficient matrices ``C`` (n_samples, n_out)
    together with ``K C``, where ``K = F F^T`` (n_samples x n_samples). Then

    * ``P = F D^T = K C_d`` comes for free with the direction,
    * ``<C_a^T F, C_b^T F> = <C_a, K C_b>``,
    * ``W`` itself is formed once, at the end: ``W = W^k + C_e^T F``.

    Per iteration this costs one n_samples^2 x n_out product (``K M``) instead of two
    n_samples x n_in x n_out ones: far cheaper whenever the batch is smaller than the layer's input.
    In exact arithmetic the iterates equal :class:`WeightSubproblem`'s.
    """

    param, form = "W", "dual"

    def __init__(self, backend, act, F, Z, T, W, lam, work, device=False):
        super().__init__(backend, act, Z, T, lam, work, device)
        self.F, self.x = F, W
        self.matmuls += 1
        self.flops += 2 * F.shape[0] * F.shape[1] * F.shape[0]
        self.K = backend.gram(F)  # F F^T (F may be a sparse input)
        self.Ce = self.xp.zeros_like(Z)
        self.KCe = self.xp.zeros_like(Z)

    # vectors are pairs (C, K C)
    def dot(self, a, b):
        return self._vdot(a[0], b[1])

    def neg(self, a):
        return (-a[0], -a[1])

    def next_direction(self, g, beta, D):
        s = self.backend.cast(beta, D[0].dtype)
        for d, gi in zip(D, g):  # in D's arrays: beta D - g rounds exactly as -g + beta D
            d *= s
            d -= gi
        return D

    def keep_or_steepest(self, restart, g, D):
        """``-g`` where the 0-d bool ``restart`` holds, else ``D`` (in D's arrays, no read)."""
        keep, minus = (self.backend.cast(self.xp.logical_not(restart), D[0].dtype),
                       self.backend.cast(restart, D[0].dtype))
        for d, gi in zip(D, g):
            d *= keep
            d -= minus * gi
        return D

    def objective(self):
        return self._data_objective() + 0.5 * self.lam * self._vdot(self.Ce, self.KCe)

    def step_norm(self):
        """``||W - W^k||_F = sqrt(<C_e, K C_e>)`` (for the statistics)."""
        return math.sqrt(max(self.backend.to_float(self.xp.vdot(self.Ce.ravel(), self.KCe.ravel())), 0.0))

    def gradient(self):
        xp, work = self.xp, self.work
        M = self.act.residual(self.backend, self.Z, self.T)
        lam = self.backend.cast(self.lam, M.dtype)
        two = M.dtype.type(2)
        KC = self._mm(self.K, M)
        C = M  # C = 2 M + lam C_e and K C = 2 K M + lam K C_e, in the arrays M and K M
        for out, lam_part in ((C, self.Ce), (KC, self.KCe)):
            out *= two
            out += xp.multiply(lam_part, lam, out=work)
        return (C, KC)

    def prepare(self, D):
        self.D = D
        self.P = D[1]  # F D^T = F F^T C_d
        self.p0 = self._vdot(self.Ce, self.KCe)
        self.p1 = self._vdot(self.Ce, D[1])
        self.p2 = self._vdot(D[0], D[1])

    def move(self, alpha):
        a, xp, work = self.backend.cast(alpha, self.Z.dtype), self.xp, self.work
        self.Ce += xp.multiply(self.D[0], a, out=work)
        xp.multiply(self.D[1], a, out=work)  # alpha K C_d = alpha P moves both K C_e and Z
        self.KCe += work
        self.Z += work

    def finish(self):
        self.x += self._mm_t(self.Ce, self.F)


class BiasSubproblem(_PrimalProblem):
    """Subproblem (7) for ``b_i`` with the new ``W_i``: gradient ``2 sum_n M_n + lam (b - b^k)``;
    a direction ``d`` moves every row of Z by ``d``, so no matrix product at all."""

    param, form = "b", ""

    def gradient(self):
        M = self.act.residual(self.backend, self.Z, self.T)
        g = M.sum(axis=0)
        g *= g.dtype.type(2)
        return self._add_proximal_gradient(g)

    def _direction_image(self, d):
        return d[None, :]


def cheaper_weight_form(n_samples, n_in, n_out, cg_steps):
    """``"dual"`` when :class:`DualWeightSubproblem` needs fewer flops than the primal form, else
    ``"primal"``. Primal: ``2 cg B n_in n_out``; dual: ``B^2 n_in + cg B^2 n_out + B n_in n_out``."""
    B = n_samples
    primal = 2 * cg_steps * B * n_in * n_out
    dual = B * B * n_in + cg_steps * B * B * n_out + B * n_in * n_out
    return "dual" if dual < primal else "primal"


def _read(backend, a, device):
    """A reduction's result as a scalar: a 0-d float64 array on the device, or a host float."""
    return backend.scalar(a) if device else backend.to_float(a)


def _at_least_1(xp, a):
    """``max(a, 1)`` for a host float or a 0-d array (the same number)."""
    return xp.maximum(a, 1.0) if isinstance(a, xp.ndarray) else max(a, 1.0)


def _paper_index(layers):
    """``(W, b, sigma)`` from a model's ``layers()``, each a tuple indexed as in the paper: ``W[i]``,
    ``b[i]`` and ``sigma[i]`` map ``F_i`` to ``F_{i+1}`` (index 0 is None). The arrays are the model's
    own (updated in place)."""
    W, b, sigma = zip(*layers)
    return (None, *W), (None, *b), (None, *sigma)


def _solve_ncg(prob, method, output, bias):
    """The inner solve of subproblem (7) by nonlinear CG (:func:`~sibp_np.ncg.ncg` on the host,
    :func:`~sibp_np.ncg.ncg_device` with ``control="device"``). Returns the solve's statistics when
    ``method.record_stats``, else None. ``output`` and ``bias`` serve the MATLAB solver only."""
    ftol = _ftol(prob.Z)
    if prob.device:
        res = ncg_device(prob, method.cg_steps, method.cg_variant, method.c1, method.shrink,
                         method.device_trials, ftol=ftol)
    elif method.jit and (jit := _jit_module()).supports(prob):
        res = jit.ncg(prob, method.cg_steps, method.cg_variant, method.c1, method.shrink, method.max_trials,
                      ftol=ftol)
    else:
        res = ncg(prob, method.cg_steps, method.cg_variant, method.c1, method.shrink, method.max_trials,
                  ftol=ftol)
    if not method.record_stats:
        return None
    return _solve_stats(prob.backend, res, prob.radius, prob.lam, prob.step_norm())


def _ftol(Z):
    """The inner solves' ``ftol``: they stop when the predicted decrease is below the rounding level of
    a reduction over ``Z``."""
    return float(np.finfo(Z.dtype).eps) * math.sqrt(Z.size)


def _solve_stats(backend, res, radius, lam, step_norm):
    """One solve's entry of ``SIBP.stats`` from its :class:`~sibp_np.ncg.NCGResult` (instrumentation:
    reads every number back)."""
    read = backend.to_float
    num = {k: read(v) if backend.is_array(v) else v for k, v in (
        ("f0", res.f0), ("f", res.f), ("radius", radius), ("lam", lam))}
    count = {k: int(read(v)) if backend.is_array(v) else v for k, v in (
        ("iterations", res.iterations), ("trials", res.trials), ("rejected", res.rejected),
        ("restarts", res.restarts))}
    return {**num, **count, "steps": res.steps,
            "beyond": int(read(res.beyond)) if hasattr(res, "beyond") else 0,
            "step_norm": step_norm, "message": res.message}


def _jit_module():
    """:mod:`sibp_np.ncg_jit`, imported on first use (it imports Numba, an optional dependency)."""
    from . import ncg_jit
    return ncg_jit


def _record_stats_argument(kwargs):
    """``record_stats`` is an attribute now, not a hyperparameter; the constructor takes it for one
    release, with a ``FutureWarning``."""
    if "record_stats" not in kwargs:
        return False
    warnings.warn("SIBP(record_stats=...) is deprecated: record_stats is instrumentation, not a "
                  "hyperparameter; set method.record_stats = True after construction", FutureWarning,
                  stacklevel=3)
    return check_bool("record_stats", kwargs.pop("record_stats"))


class _Step:
    """What one step of :meth:`SIBP._algorithm1` shares between its helpers: its settings, and what it
    records (the targets, errors and neuron steps for inspection; the matrix products and flops)."""

    def __init__(self, method, model, X):
        self.model, self.backend, self.xp = model, model.backend, model.xp
        self.device = method._control_in_use(model.backend) == "device"
        self.eta = model.dtype.type(method.eta)
        self.N = N = model.n_layers + 1
        self.kappa = method.trust_radius / (N - 1) if method._safeguard_in_use() == "trust-region" else None
        self.n_samples = B = X.shape[0]
        self.layers = layers = list(model.layers())
        self.forms = (None, *[method._weight_form_in_use(B, W) for W, _, _ in layers])
        self.prox_metric = method._prox_metric_in_use()
        self.cap = None  # the capped neuron step's bound, set with the output's target
        self.targets, self.deltas, self.etas = [None] * (N + 1), [None] * (N + 1), [None] * (N + 1)
        self.stats = []
        self.matmuls, self.flops = 0, 0

    def count(self, matmuls, flops):
        self.matmuls += matmuls
        self.flops += flops

    def record(self, i, param, form, matmuls, stats):
        """One solve's entry of ``SIBP.stats`` (``stats``: :func:`_solve_stats`'s), for layer ``i``."""
        self.stats.append({"layer": i - 1, "param": param, "form": form, "matmuls": matmuls, **stats})


class StepGraphs:
    """The CUDA graphs of one SIBP method: one per (model, minibatch shape), captured on the second
    step of that shape (the first compiles the kernels and builds the solver's state) and replayed
    after. Where graphs do not apply (the host path, NumPy, ``record_stats``, ``cuda_graph=False``) or
    capture fails, the step runs as usual."""

    def __init__(self, method):
        self.method, self.graphs, self.warned = method, {}, False

    def clear(self):
        self.graphs.clear()

    def _usable(self, backend):
        m = self.method
        return (m.cuda_graph is not False and backend.supports_graphs and not m.record_stats
                and m._control_in_use(backend) == "device")

    def run(self, model, X, y):
        backend = model.backend
        if not self._usable(backend):
            return self.method._algorithm1(model, X, y)
        key = (id(model), X.shape, X.dtype.str, y.shape, y.dtype.str, tuple(id(p) for p in model.params()))
        graph = self.graphs.get(key)
        if graph is None:  # the first step of this shape runs as usual
            self.graphs[key] = "seen"
            return self.method._algorithm1(model, X, y)
        if graph == "seen":
            try:
                graph = backend.capture(lambda Xs, ys: self.method._algorithm1(model, Xs, ys), X, y)
            except Exception as exc:  # noqa: BLE001 - any failure to capture falls back
                self.graphs[key] = graph = "eager"
                if self.method.cuda_graph or not self.warned:
                    warnings.warn(f"SIBP: CUDA-graph capture failed ({type(exc).__name__}: {exc}); "
                                  f"the steps run without graph replay", stacklevel=4)
                    self.warned = True
            else:
                self.graphs[key] = graph
        if graph == "eager":
            return self.method._algorithm1(model, X, y)
        return graph.replay(X, y)


SAFEGUARDS = ("trust-region", "none")
PROX_METRICS = ("output", "weights")


@register("sibp")
class SIBP(Method):
    """Semi-Implicit Back Propagation (Algorithm 1 of Liu & Zhang).

    Parameters
    ----------
    eta : float > 0
        Explicit step on the neurons (eqs. 6 and 9); a per-sample step on the logits.
    lam : float > 0
        Proximal weight of (7); ``1/lam`` is the implicit step on the parameters.
    cg_steps : int >= 1
        Nonlinear-CG iterations per subproblem (the paper uses 5).
    cg_variant : {"fr", "pr+"}
        Fletcher-Reeves (the authors' choice) or Polak-Ribiere+.
    linear_solve : {"ncg", "exact"}
        How the linear (output) layer's subproblems, which are ridge problems, are solved: by NCG like
        the others, or ``"exact"``ly by Cholesky. (Formerly ``output_solve``, accepted for one release.)
    weight_form : {"auto", "primal", "dual"}
        How the W subproblems compute the *same* NCG iterates: :class:`WeightSubproblem` (primal,
        two n_samples x n_in x n_out products per iteration) or :class:`DualWeightSubproblem` (in the
        row space of F, one n_samples^2 x n_out product per iteration). ``"auto"`` picks the one with
        fewer flops for each layer (:func:`cheaper_weight_form`). (Formerly ``weight_solver``.)
    safeguard : {"trust-region", "none"}, optional
        ``"trust-region"`` (the default) solves each subproblem (7) inside a ball around the current
        parameters (see Notes); ``"none"`` is the plain Algorithm 1. With ``compat="matlab"`` the
        default is ``"none"``, and it is the only value allowed.
    trust_radius : float > 0
        ``kappa`` of the trust region: the network's gain grows by at most ``e^kappa`` per step.
        The default, 4, is a backstop behind the output-space proximal term. With the paper's metric
        (``prox_metric="weights"``) the trust region has to do all the work, and 2 suits it better
        (``tools/NOTES.md``).
    prox_metric : {"output", "weights"}, optional
        How the proximal term of (7) measures a change. ``"weights"`` is the paper's
        ``(lam/2) ||W - W^k||_F^2``. ``"output"`` (the default) scales it by
        ``max(||F_i||_F^2 / n_in, 1)``, and the bias term by ``n_samples``. That is the expected
        change of the layer's pre-activations over the minibatch, ``(lam/2) ||(W - W^k) F_i^T||_F^2``,
        and never less than the paper's term (see Notes). The
        default is ``"weights"`` with ``safeguard="none"`` or ``compat="matlab"``. The latter allows
        no other value.
    neuron_step : {"capped", "plain"}, optional
        The step of eq. (9) on a hidden layer's neurons, ``T_i = F_i - eta_i delta_i``. ``"plain"`` is
        the paper's ``eta_i = eta``. ``"capped"`` uses ``eta_i = min(eta, ||delta_N||^2 / (L h
        ||delta_i||^2))``, with ``h`` the loss's curvature along the output error ``delta_N`` (see
        Notes). The default is ``"capped"`` for the squared-error losses (``"mse"``,
        ``"squared_error"``) and ``"plain"`` for cross-entropy, with ``safeguard="none"`` and with
        ``compat="matlab"``.
    compat : {None, "matlab"}
        ``"matlab"`` replaces the inner solver by the authors' own (``FR3.m``/``FR4.m``), reproduced
        step for step with all its quirks (:mod:`sibp_np.matlab_compat`); ``cg_steps`` is their
        ``maxk``. It needs ``cg_variant="fr"`` and ``linear_solve="ncg"``.
    jit : bool
        Run each layer's two NCG solves (W, then b) as one call compiled by Numba
        (:mod:`sibp_np.ncg_jit`; ``pip install "sibp_np[fast]"``): the same iterations, without the
        Python and NumPy dispatch that dominates a small network's step, and with the reductions summed
        in float64 (the iterates are the same up to rounding, not bitwise). Applies on the NumPy
        backend with host control, to ReLU and linear layers with dense inputs whose products in the
        solves have at most ``ncg_jit.MAX_PRODUCT`` multiply-adds (a compiled solve runs BLAS at one
        thread); other subproblems run as with ``jit=False``. It pays where Python's overhead
        dominates: small layers and minibatches. The first use compiles the solver (about 12 s; Numba
        caches it on disk), and each new process loads it on its first step (about half a second).
    c1, shrink, max_trials :
        Armijo constant, backtracking factor and trial bound of the line search.
    control : {"auto", "host", "device"}
        Where the inner solver's decisions are made. ``"host"`` reads every scalar (objective values,
        slopes, steps, CG's beta) back to Python, about 130-720 reads per step; ``"device"`` keeps them
        as 0-d arrays and turns every early stop into a mask (:func:`sibp_np.ncg.ncg_device`), so a
        step reads two numbers (the minibatch's checks and the loss). ``"auto"`` is ``"device"`` on a
        GPU backend and ``"host"`` on NumPy, where a read costs nothing and the fixed sequence of the
        device path does more work. ``compat="matlab"`` runs on the host.
    cuda_graph : bool, optional
        Replay each step from a CUDA graph (``control="device"`` on a backend that supports graphs:
        CuPy): the first step of each minibatch shape runs as usual, the second is captured into a
        graph, and every later one replays it, with one launch instead of hundreds. ``None`` (the
        default) uses graphs wherever they can be captured and falls back, with one warning, where
        capture fails; ``False`` never does. Off with ``record_stats`` (which reads every number back).
    device_trials : int >= 1
        ``M``, the Armijo trial steps evaluated at once by the device path (in one pass, with no matrix
        product). A search that would need more is rejected, and the next iteration restarts along
        ``-g``; with ``M >= max_trials`` the device path gives the host path's iterates (how often 4 is
        too few: ``tools/NOTES.md``).

    Attributes
    ----------
    record_stats : bool
        Instrumentation, not a hyperparameter (default False): set it to keep per-step, per-layer
        solver statistics in ``stats``. It reads every number back to the host.
    last_targets, last_deltas, last_etas : lists
        The last step's ``F_i^{k+1/2}``, ``delta_i`` and neuron step, at the paper's index ``i``
        (``1..N``; index ``N`` is the output, entries never computed are None).

    Notes
    -----
    The defaults depart from the paper in three ways, each a safeguard for a case the paper did not
    meet (deep networks, large steps, regression). ``safeguard="none"`` with ``neuron_step="plain"``
    is Algorithm 1 as published. The measurements behind them are in ``tools/NOTES.md``.

    **The trust region** (``safeguard="trust-region"``). Eq. (9) sends the error down with the *new*
    weights, and a layer's change ``W - W^k`` is aligned with the error it came from, so the errors
    (and the next layer's change) compound down a deep network. For layer ``i`` of ``L``, (7) is solved
    subject to ``||W_i - W_i^k||_F <= (kappa / L) max(||W_i^k||_2, 1)`` and
    ``||b_i - b_i^k||_2 <= (kappa / L) max(||b_i^k||_2, 1)``. Each layer's gain then grows by at most
    ``1 + kappa / L``, and the error of eq. (9) by at most ``e^kappa``. ``||W^k||_2`` is estimated by
    one warm-started power iteration per step (20 at the first), kept in ``state``. A line search starts
    no further than the boundary, and a step that lands on it ends the solve (Steihaug's rule).
    ``linear_solve="exact"`` solves the output layer outside the ball.

    **The proximal term in the output space** (``prox_metric="output"``). (7) is solved with ``lam``
    replaced by ``lam_W = lam max(||F_i||_F^2 / n_in, 1)`` for ``W_i`` (the expected
    ``||(W - W^k) F_i^T||_F^2`` of an undirected change, never less than the paper's term) and
    ``lam_b = lam n_samples`` for ``b_i``. A linear layer with isotropic inputs then moves its
    pre-activations the fraction ``2 / (2 + lam)`` of the way to its targets, whatever the scale and
    width of its input and the batch size.

    **The capped step on the hidden neurons** (``neuron_step="capped"``, squared errors). A hidden
    layer's step is ``eta_i = min(eta, ||delta_N||^2 / (L h ||delta_i||^2))``, ``h`` the loss's
    curvature along ``delta_N``. To first order the layers together then move the output by at most
    the Newton step ``1 / h`` along ``delta_N``; without it a squared error (``h = 1``) overshoots and
    oscillates. Cross-entropy's ``h <= 1/2`` decays as the fit gets confident, and the cap only slows it.

    **Where the default differs from the authors' MATLAB code** (``sibp_inner.m``, ``FR3.m``,
    ``FR4.m``; ``compat="matlab"`` reproduces theirs):

    * the paper writes the proximal term as ``(lam/2) ||W - W^k||^2``; their code uses
      ``lam ||W - W^k||^2`` (and no halves on the data term either). We follow the paper, so their
      ``lam = 1`` is our ``lam = 2``;
    * their line search keeps a step only when it is accepted after at least one backtrack: a unit step
      accepted at the first trial is thrown away. We apply every accepted step;
    * their output-layer solver (FR4) computes its first gradient without the fixed term (the bias for
      the W solve, ``W F`` for the b solve); we use the true gradient from the first iteration;
    * their first trial step is a unit step (then a jump sized for a 1% decrease); ours is the
      Gauss-Newton minimiser along the direction, and we restart with steepest descent when a direction
      is not a descent direction;
    * a subproblem stops before ``cg_steps`` iterations when the decrease predicted along the next
      direction is below the rounding level of the objective;
    * the three safeguards above.

    The minibatch loss returned by :meth:`step` is the batch-mean loss before the update, like every
    other method's.
    """

    eta = Hyperparameter(check_positive, help="explicit step on the neurons, per sample (eqs. 6 and 9)")
    lam = Hyperparameter(check_positive,
        help="proximal weight of (7); 1/lam is the implicit step on the parameters")
    cg_steps = Hyperparameter(check_int, minimum=1,
        help="nonlinear-CG iterations per subproblem (the paper: 5)")
    cg_variant = Hyperparameter(check_choice, choices=VARIANTS,
        help="Fletcher-Reeves (the authors' choice) or Polak-Ribiere+")
    linear_solve = Hyperparameter(check_choice, choices=("ncg", "exact"),
        help="the linear output layer's ridge problems: by NCG, or exactly (Cholesky)")
    weight_form = Hyperparameter(check_choice, choices=("auto", "primal", "dual"),
        help="where the W solves run: primal, or in the row space of the inputs (dual); auto: fewer flops")
    safeguard = Hyperparameter(check_optional_choice, choices=SAFEGUARDS,
        help="a trust region around the current parameters, or none (the paper)")
    trust_radius = Hyperparameter(check_positive,
        help="kappa: the network's gain grows by at most e^kappa per step")
    prox_metric = Hyperparameter(check_optional_choice, choices=PROX_METRICS,
        help="the proximal term on the layer's outputs, or on the weights (the paper)")
    neuron_step = Hyperparameter(check_optional_choice, choices=("capped", "plain"),
        help="the hidden neurons' step: capped within the loss's Newton step, or eta (the paper)",
        default_text="capped for squared errors, else plain")
    control = Hyperparameter(check_choice, choices=("auto", "host", "device"),
        help="where the inner solver decides: host, or device (no reads back)",
        default_text="auto: device on a GPU, else host")
    device_trials = Hyperparameter(check_int, minimum=1,
        help="Armijo trial steps evaluated at once by the device path")
    cuda_graph = Hyperparameter(check_optional_bool,
        help="replay each step from a CUDA graph (control=device)", default_text="where capture works")
    compat = Hyperparameter(check_optional_choice, choices=("matlab",),
        help="matlab: the authors' inner solver (FR3.m/FR4.m), step for step", default_text="off")
    jit = Hyperparameter(check_bool, help="the inner solves compiled by Numba (pip install sibp_np[fast])")
    c1 = Hyperparameter(check_open_unit, help="Armijo's sufficient-decrease constant")
    shrink = Hyperparameter(check_open_unit, help="the line search's backtracking factor")
    max_trials = Hyperparameter(check_int, minimum=1, help="trial steps before a line search gives up")
    renamed = {"weight_solver": "weight_form", "output_solve": "linear_solve"}

    def __init__(self, eta=1.0, lam=1.0, cg_steps=5, cg_variant="fr", linear_solve="ncg",
                 weight_form="auto", safeguard=None, trust_radius=4.0, prox_metric=None,
                 neuron_step=None, compat=None, c1=1e-4, shrink=0.5, max_trials=20, control="auto",
                 device_trials=4, cuda_graph=None, jit=False, **renamed):
        super().__init__()
        self._graphs = StepGraphs(self)
        self.record_stats = _record_stats_argument(renamed)
        self.stats = []
        self.last_targets = None  # F_i^{k+1/2} at paper index i (eqs. 6 and 9), kept for inspection
        self.last_deltas = None   # delta_i, the errors that made them
        self.last_etas = None     # the step on the neurons that made each (eta, or less when capped)
        self.matmuls_last_step = self.flops_last_step = 0
        given = dict(eta=eta, lam=lam, cg_steps=cg_steps, cg_variant=cg_variant, linear_solve=linear_solve,
                     weight_form=weight_form, safeguard=safeguard, trust_radius=trust_radius,
                     prox_metric=prox_metric, neuron_step=neuron_step, compat=compat, c1=c1, shrink=shrink,
                     max_trials=max_trials, control=control, device_trials=device_trials,
                     cuda_graph=cuda_graph, jit=jit)
        for name, value in {**given, **self._renamed_arguments(renamed)}.items():
            setattr(self, name, value)

    def _hyperparameter_changed(self, name):
        self._graphs.clear()  # a captured step holds the old values

    def load_state_dict(self, state, backend):
        super().load_state_dict(state, backend)
        self._graphs.clear()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_graphs"] = None  # device graphs do not travel
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._graphs = StepGraphs(self)

    def _safeguard_in_use(self):
        """``safeguard`` as given, or its default: ``"none"`` with ``compat="matlab"``, else
        ``"trust-region"``."""
        if self.safeguard is not None:
            return self.safeguard
        return "none" if self.compat == "matlab" else "trust-region"

    def _prox_metric_in_use(self):
        """``prox_metric`` as given, or its default: ``"weights"`` for the plain algorithm
        (``safeguard="none"``) and ``compat="matlab"``, else ``"output"``."""
        if self.prox_metric is not None:
            return self.prox_metric
        plain = self.compat == "matlab" or self._safeguard_in_use() == "none"
        return "weights" if plain else "output"

    def _in_use(self):
        # what repr, histories and checkpoints record: the defaults resolved (the attributes keep
        # what was given, so the result never depends on the order of assignment)
        return {"safeguard": self._safeguard_in_use(), "prox_metric": self._prox_metric_in_use()}

    def _weight_form_in_use(self, n_samples, W):
        """``weight_form`` as given, or the cheaper form for ``W`` (:func:`cheaper_weight_form`)."""
        if self.weight_form != "auto":
            return self.weight_form
        return cheaper_weight_form(n_samples, W.shape[1], W.shape[0], self.cg_steps)

    def _validate(self):
        # the inner solver, picked once here: the authors' (compat="matlab") or nonlinear CG
        self._inner_solver = solve_matlab if self.compat == "matlab" else _solve_ncg
        safeguard, prox_metric = self._safeguard_in_use(), self._prox_metric_in_use()
        if self.compat == "matlab" and prox_metric != "weights":
            raise ValueError(f"compat='matlab' runs the authors' solver as it is: it needs "
                             f"prox_metric='weights', got prox_metric={prox_metric!r}")
        if self.jit and self.compat == "matlab":
            raise ValueError("compat='matlab' runs the authors' solver as it is: it needs jit=False, "
                             "got jit=True")
        missing = [m for m in ("numba", "threadpoolctl") if self.jit and importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"jit=True compiles the inner solver with Numba and runs it with "
                              f"threadpoolctl; {' and '.join(missing)} not installed: pip install "
                              f"'sibp_np[fast]', or use jit=False")
        if self.compat == "matlab" and self.control == "device":
            raise ValueError("compat='matlab' runs the authors' solver on the host: it needs "
                             "control='auto' or 'host', got control='device'")
        if self.compat == "matlab" and (safeguard != "none" or self.cg_variant != "fr"
                                        or self.linear_solve != "ncg"):
            raise ValueError("compat='matlab' runs the authors' solver as it is: it needs "
                             f"safeguard='none', cg_variant='fr' and linear_solve='ncg', got "
                             f"safeguard={safeguard!r}, cg_variant={self.cg_variant!r}, "
                             f"linear_solve={self.linear_solve!r}")

    # --------------------------------------------------------------------------------------
    def step(self, model, X, y, checked=False):
        """One SIBP iteration (Algorithm 1) on the minibatch ``(X, y)``; returns the loss before it.
        ``checked``: ``X, y`` come from ``model.check_Xy`` already."""
        if not checked:
            X, y = model.check_Xy(X, y)
        return model.backend.to_float(self._graphs.run(model, X, y))

    def _algorithm1(self, model, X, y):
        """Algorithm 1 on checked arrays; returns the loss as a 0-d array (read by :meth:`step`).

        The lists are indexed as in the paper: ``F[1] = X``, ``F[N]`` is the output, and ``W[i]``,
        ``b[i]`` map ``F[i]`` to ``G[i+1]``.
        """
        s = self._begin(model, X)
        G, F = model.forward_cache(X)                                       # eq. (1)
        G, F, (W, b, sigma) = (None, *G), (None, *F), _paper_index(s.layers)
        N = model.n_layers + 1
        loss, delta = model.loss.value_and_sample_grad(F[N], y, read=False)  # delta_N, eq. (6)
        T = self._explicit_update(s, N, F[N], delta)                        # F_N^{k+1/2}, eq. (6)
        for i in range(N - 1, 0, -1):
            self._implicit_update(s, i, F[i], G[i + 1], T, W[i], b[i], sigma[i])  # W_i, b_i: eq. (7)
            if i > 1:
                delta = self._error_propagation(s, G[i + 1], delta, W[i], sigma[i])  # delta_i: eq. (9)
                T = self._explicit_update(s, i, F[i], delta)                      # F_i^{k+1/2}: (9)
        self._end(s)
        return loss
    def _begin(self, model, X):
        s = _Step(self, model, X)
        s.count(len(s.layers), sum(2 * s.n_samples * W.size for W, _, _ in s.layers))  # eq. (1)
        return s

    def _end(self, s):
        self.matmuls_last_step, self.flops_last_step = s.matmuls, s.flops
        self.last_targets, self.last_deltas, self.last_etas = s.targets, s.deltas, s.etas
        if self.record_stats:
            self.stats.append(s.stats)

    def _explicit_update(self, s, i, F_i, delta):
        """``F_i^{k+1/2} = F_i - eta_i delta_i``, eqs. (6) (``i = N``) and (9). ``eta_i = eta``, except
        on a hidden layer with ``neuron_step="capped"``."""
        if i == s.N:
            s.cap, eta_i = self._neuron_cap(s.model, F_i, delta, s.device), s.eta
        elif s.cap is None:
            eta_i = s.eta
        else:
            eta_i = self._capped_step(s.backend, s.eta, delta, s.cap, s.device)
        s.deltas[i], s.etas[i] = delta, eta_i
        s.targets[i] = T = F_i - eta_i * delta
        return T

    def _implicit_update(self, s, i, F_i, G_next, T, W, b, sigma):
        """Subproblem (7) for layer ``i``: ``W_i`` from ``F_i`` and the target ``T = F_{i+1}^{k+1/2}``,
        then ``b_i`` with the new ``W_i``; both in place, in the model's arrays.

        ``G_next`` is ``G_{i+1}``, the warm start's pre-activation (kept: eq. 9 needs its mask).
        """
        output = i == s.N - 1
        lam_W, lam_b = self._prox_weights(s.backend, F_i, s.prox_metric, s.device)
        if output and self.linear_solve == "exact":
            self._exact_output(s.backend, i, F_i, T, W, b, lam_W, lam_b)
            n, n_in = F_i.shape
            s.count(3, 2 * n_in * n * (n_in + 2 * W.shape[0]))
            return
        if (self.jit and not s.device
                and (jit := _jit_module()).supports_layer(sigma, F_i, G_next, W, b, s.forms[i])):
            self._compiled_layer(s, i, jit, F_i, G_next, T, W, b, sigma, lam_W, lam_b)
            return
        Z = G_next.copy()  # the solves move Z along with the parameters
        work = s.xp.empty_like(Z)
        Wsub = DualWeightSubproblem if s.forms[i] == "dual" else WeightSubproblem
        prob = Wsub(s.backend, sigma, F_i, Z, T, W, lam_W, work, s.device)
        if s.kappa is not None:
            prob.radius = self._weight_radius(s, W, i)
        self._inner(s, i, prob, output, b)
        prob = BiasSubproblem(s.backend, sigma, Z, T, b, lam_b, work, s.device)  # Z = F_i W_new^T + b^k
        if s.kappa is not None:
            prob.radius = self._bias_radius(s, b)
        self._inner(s, i, prob, output, b)

    def _weight_radius(self, s, W, i):
        """The W solve's trust radius ``kappa max(||W_i^k||_2, 1)`` (see the Notes)."""
        return s.kappa * _at_least_1(s.xp, self._spectral_norm(s.backend, W, i - 1, s.device))

    @staticmethod
    def _bias_radius(s, b):
        """The b solve's trust radius ``kappa max(||b_i^k||, 1)`` (see the Notes)."""
        return s.kappa * _at_least_1(s.xp, _read(s.backend, s.backend.vector_norm(b), s.device))

    def _inner(self, s, i, prob, output, b):
        """Solve one subproblem with the inner solver chosen in validation; count and record it."""
        stats = self._inner_solver(prob, self, output, b)
        s.count(prob.matmuls, prob.flops)
        if stats is not None:
            s.record(i, prob.param, prob.form, prob.matmuls, stats)

    def _compiled_layer(self, s, i, jit, F_i, G_next, T, W, b, sigma, lam_W, lam_b):
        """The W and b solves of :meth:`_implicit_update` with one call compiled by Numba (``jit=True``,
        :func:`sibp_np.ncg_jit.solve_layer`): the numbers of :func:`sibp_np.ncg_jit.ncg` on the
        subproblem objects, bit for bit, without building them."""
        radius_W = radius_b = math.inf
        if s.kappa is not None:
            radius_W, radius_b = self._weight_radius(s, W, i), self._bias_radius(s, b)
        solves = jit.solve_layer(sigma, F_i, G_next, T, W, b, lam_W, lam_b, radius_W, radius_b, s.forms[i],
                                 self.cg_steps, self.cg_variant, self.c1, self.shrink, self.max_trials,
                                 ftol=_ftol(G_next), stats=self.record_stats)
        for solve, lam, radius in zip(solves, (lam_W, lam_b), (radius_W, radius_b)):
            s.count(solve.matmuls, solve.flops)
            if self.record_stats:
                s.record(i, solve.param, solve.form, solve.matmuls,
                         _solve_stats(s.backend, solve.result, radius, lam, solve.step_norm))

    def _error_propagation(self, s, G_next, delta, W, sigma):
        """``delta_i = (sigma'(G_{i+1}) * delta_{i+1}) W_i^{k+1}``, eq. (9): the new weights, the
        forward pass's derivative."""
        s.count(1, 2 * s.n_samples * W.size)
        return sigma.backprop(G_next, delta) @ W

    def _neuron_step_in_use(self, loss):
        """``neuron_step`` as given, or its default for ``loss``: ``"capped"`` for a squared error
        (with the default safeguard), ``"plain"`` otherwise."""
        if self.neuron_step is not None:
            return self.neuron_step
        plain = self.compat == "matlab" or self._safeguard_in_use() == "none" or not loss.quadratic
        return "plain" if plain else "capped"

    def _control_in_use(self, backend):
        """``control`` as given, or ``"device"`` on a GPU backend (``backend.device_resident``) and
        ``"host"`` on NumPy (and always with ``compat="matlab"``)."""
        if self.control != "auto":
            return self.control
        return "device" if backend.device_resident and self.compat is None else "host"

    def _neuron_cap(self, model, F_N, delta_N, device=False):
        """``||delta_N||^2 / (L h)`` for ``neuron_step="capped"`` (``h``: the loss's curvature along
        ``delta_N``, :meth:`~sibp_np.functions.Loss.error_curvature`), else None (on the device, inf
        for ``h = 0``)."""
        if self._neuron_step_in_use(model.loss) != "capped":
            return None
        xp, backend = model.xp, model.backend
        h = model.loss.error_curvature(F_N, delta_N)
        d2 = _read(backend, xp.vdot(delta_N.ravel(), delta_N.ravel()), device)
        if device:
            return xp.where(h > 0, d2 / (model.n_layers * xp.where(h > 0, h, 1.0)), math.inf)
        h = backend.to_float(h) if backend.is_array(h) else h
        if not h > 0:
            return None
        return d2 / (model.n_layers * h)

    @staticmethod
    def _capped_step(backend, eta, delta, cap, device=False):
        """``min(eta, cap / ||delta_i||^2)``: the hidden layer's step on its neurons (eq. 9)."""
        xp = backend.xp
        d2 = _read(backend, xp.vdot(delta.ravel(), delta.ravel()), device)
        if device:
            capped = (d2 * eta > cap) & xp.isfinite(d2)
            return backend.cast(xp.where(capped, cap / xp.where(d2 > 0, d2, 1.0), eta), eta.dtype)
        if not (d2 * eta > cap and math.isfinite(d2)):
            return eta
        return eta.dtype.type(cap / d2)

    def _prox_weights(self, backend, F, prox_metric, device=False):
        """``(lam_W, lam_b)``, the proximal weights of (7) for the layer with input ``F``: ``lam`` for
        both with ``prox_metric="weights"`` (the metric in use, :meth:`_prox_metric_in_use`);
        ``lam max(||F||_F^2 / n_in, 1)`` and ``lam n_samples`` with ``"output"`` (see the Notes of
        :class:`SIBP`)."""
        if prox_metric == "weights":
            return self.lam, self.lam
        n, n_in = F.shape
        scale = _read(backend, backend.sqnorm(F), device) / n_in
        return self.lam * _at_least_1(backend.xp, scale), self.lam * n

    def _spectral_norm(self, backend, W, i, device=False):
        """``||W||_2`` by power iteration on ``W^T W`` (an estimate from below), warm-started from the
        previous step's vector, which is kept in ``state`` so that a resumed run continues exactly.
        0 when an iterate vanishes or overflows (the previous vector is then kept). On the device
        (``device=True``) the same numbers, as a 0-d array, without a read."""
        xp = backend.xp
        key = f"power_vector{i}"
        v = self.state.get(key)
        n_iter = POWER_ITERATIONS
        if v is None or v.shape != (W.shape[1],):
            v = xp.full(W.shape[1], 1.0 / math.sqrt(W.shape[1]), dtype=W.dtype)
            n_iter = POWER_ITERATIONS_COLD
        if device:
            return self._spectral_norm_device(backend, W, key, v, n_iter)
        for _ in range(n_iter):
            v = W.T @ (W @ v)
            nv = backend.to_float(backend.vector_norm(v))
            if not (nv > 0 and math.isfinite(nv)):
                return 0.0
            v /= v.dtype.type(nv)
        self.state[key] = v
        return backend.to_float(backend.vector_norm(W @ v))

    def _spectral_norm_device(self, backend, W, key, v, n_iter):
        """:meth:`_spectral_norm`'s iterations with no read: a failed iteration is masked, not returned
        from, and the vector is updated in place (a replayed graph writes where it was captured)."""
        xp = backend.xp
        v0, ok = v, True
        for _ in range(n_iter):
            v = W.T @ (W @ v)
            nv = backend.scalar(backend.vector_norm(v))
            good = (nv > 0) & xp.isfinite(nv)
            ok = ok & good
            v /= backend.cast(xp.where(good, nv, 1.0), v.dtype)
        v0[...] = xp.where(ok, v, v0)  # as the host path, a failed iteration keeps the previous vector
        self.state[key] = v0
        return xp.where(ok, backend.scalar(backend.vector_norm(W @ v)), 0.0)

    def _exact_output(self, backend, layer, F, T, W, b, lam_W, lam_b):
        """Exact ridge solves of (7) for the linear output layer, W then b (``backend.solve_spd``).

        ``W (2 F^T F + lam_W I) = 2 (T - b)^T F + lam_W W^k`` and
        ``b (2 B + lam_b) = 2 sum_n (T - F W^T)_n + lam_b b^k``.
        """
        dt = W.dtype.type
        lam = backend.cast(lam_W, W.dtype)
        A = dt(2) * backend.t_matmul(F, F)
        A.ravel()[:: A.shape[0] + 1] += lam  # the diagonal, on any backend
        rhs = dt(2) * backend.t_matmul(T - b, F) + lam * W  # (n_out, n_in)
        W[...] = backend.solve_spd(A, rhs.T, what=f"lam={self.lam}: the exact output solve's matrix "
                                   f"2 F^T F + lam I (W_{layer})",
                                   hint="use a larger lam or linear_solve='ncg'").T
        n = F.shape[0]
        b[...] = ((dt(2) * (T - F @ W.T).sum(axis=0) + backend.cast(lam_b, W.dtype) * b)
                  / backend.cast(2 * n + lam_b, W.dtype))

    def matmul_design(self, model, n_samples):
        """Matrix products per step in the design, for a minibatch of ``n_samples``.

        Forward pass: L. Per NCG-solved W: primal ``2 cg_steps`` (a gradient and ``P = F D^T`` per
        iteration, none after the last) or dual ``cg_steps + 2`` (``K = F F^T``, one ``K M`` per
        iteration, and ``W^k + C_e^T F`` at the end). Per b: 0. Error propagation: L - 1. An exact
        output solve: 3.
        """
        L = model.n_layers
        count = L + (L - 1)
        for i in range(L):
            if i == L - 1 and self.linear_solve == "exact":
                count += 3
                continue
            form = self._weight_form_in_use(n_samples, model.weights[i])
            count += 2 * self.cg_steps if form == "primal" else self.cg_steps + 2
        return count
