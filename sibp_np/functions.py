"""Activations and losses, written against the array module ``xp`` of the arrays they receive.

Notation (paper, eq. 1): ``G_{i+1} = F_i W_i^T + b_i`` (pre-activation, rows are samples) and
``F_{i+1} = sigma(G_{i+1})``; the last layer is linear, ``F_N = G_N``.
"""
import numpy as np

from ._validation import check_choice
from .backend import array_module, backend_of


class Activation:
    """An elementwise activation ``sigma`` and what the inner solver needs of it.

    Subclasses define :meth:`forward` and :meth:`deriv`; the three solver hooks below have generic
    definitions in terms of those two, and ReLU overrides them with the backend's fused ops.
    """

    name = "base"

    def forward(self, G):
        raise NotImplementedError

    def deriv(self, G):
        """``sigma'(G)``, same shape as G."""
        raise NotImplementedError

    def backprop(self, G, delta):
        """``sigma'(G) * delta``: the error through this activation (eqs. 4, 5 and 9)."""
        return self.deriv(G) * delta

    # --- hooks used by the nonlinear-CG solver of the SIBP subproblem (7) ---------------------
    def residual(self, backend, Z, T):
        """``sigma'(Z) * (sigma(Z) - T)``: half the gradient of ``||sigma(Z) - T||^2`` w.r.t. Z."""
        return self.deriv(Z) * (self.forward(Z) - T)

    def residual_sqnorm(self, backend, Z, P, T, alpha, work=None):
        """``||sigma(Z + alpha P) - T||_F^2`` as a 0-d array (one line-search trial)."""
        xp = backend.xp
        R = self.forward(Z + backend.cast(alpha, Z.dtype) * P) - T
        return xp.vdot(R.ravel(), R.ravel())

    def residual_sqnorm_multi(self, backend, Z, P, T, alphas, work=None):
        """:meth:`residual_sqnorm` at every step of ``alphas`` (shape (M,)), as an array of shape (M,):
        the trials of a batched Armijo search in one pass."""
        a = alphas.astype(Z.dtype)[:, None, None]
        R = self.forward(P[None] * a + Z) - T
        return (R * R).reshape(alphas.shape[0], -1).sum(axis=1)

    def curvature(self, backend, Z, P, work=None):
        """``||sigma'(Z) * P||_F^2`` as a 0-d array: the Gauss-Newton curvature of the data term along
        P (``work``: an optional scratch buffer of Z's shape)."""
        xp = backend.xp
        S = self.deriv(Z) * P
        return xp.vdot(S.ravel(), S.ravel())


class Identity(Activation):
    name = "identity"

    def forward(self, G):
        return G

    def deriv(self, G):
        return array_module(G).ones_like(G)

    def backprop(self, G, delta):
        return delta

    def residual(self, backend, Z, T):
        return Z - T

    def residual_sqnorm(self, backend, Z, P, T, alpha, work=None):
        """``||Z + alpha P - T||_F^2`` in the work buffer: no array allocated per line-search trial."""
        xp = backend.xp
        if work is None:
            work = xp.empty_like(Z)
        backend.shifted(Z, P, alpha, out=work)
        work -= T
        return xp.vdot(work.ravel(), work.ravel())

    def curvature(self, backend, Z, P, work=None):
        """``||P||_F^2`` over Z's shape (a bias direction counts once per sample), summed as
        ``(P * P).sum()``; a one-row ``P`` is squared into ``work`` (``broadcast_to`` costs more
        than the product on the small output layer)."""
        if P.shape == Z.shape:
            return (P * P).sum()
        if work is None:
            work = backend.xp.empty_like(Z)
        return backend.xp.multiply(P, P, out=work).sum()


class ReLU(Activation):
    name = "relu"

    def forward(self, G):
        xp = array_module(G)
        return xp.maximum(G, 0)

    def deriv(self, G):
        return (G > 0).astype(G.dtype)

    def backprop(self, G, delta):
        return delta * (G > 0)

    def residual(self, backend, Z, T):
        return backend.masked_residual(Z, T)

    def residual_sqnorm(self, backend, Z, P, T, alpha, work=None):
        return backend.masked_residual_sqnorm(Z, P, T, alpha, work=work)

    def residual_sqnorm_multi(self, backend, Z, P, T, alphas, work=None):
        return backend.masked_residual_sqnorm_multi(Z, P, T, alphas, work=work)

    def curvature(self, backend, Z, P, work=None):
        return backend.masked_sqnorm(Z, P, work=work)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, G):
        xp = array_module(G)
        # 0.5 * (1 + tanh(G/2)) is the overflow-free logistic function
        return G.dtype.type(0.5) * (xp.tanh(G.dtype.type(0.5) * G) + 1)

    def deriv(self, G):
        s = self.forward(G)
        return s * (1 - s)


class Tanh(Activation):
    name = "tanh"

    def forward(self, G):
        return array_module(G).tanh(G)

    def deriv(self, G):
        t = array_module(G).tanh(G)
        return 1 - t * t


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity}


def get_activation(name):
    """Activation instance by name (``relu``, ``sigmoid``, ``tanh``, ``identity``)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[check_choice("activation", name, tuple(ACTIVATIONS))]()


# ---------------------------------------------------------------------------------------- losses
def one_hot(y, n_classes, dtype, xp=np):
    """``Y``: one-hot targets, shape (n_samples, n_classes)."""
    Y = xp.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[xp.arange(y.shape[0]), y] = 1
    return Y


def log_softmax(F):
    """Row-wise ``log softmax(F)``, stable for logits of any finite magnitude."""
    xp = array_module(F)
    m = F.max(axis=1, keepdims=True)
    S = F - m
    return S - xp.log(xp.exp(S).sum(axis=1, keepdims=True))


def softmax(F):
    xp = array_module(F)
    S = F - F.max(axis=1, keepdims=True)
    E = xp.exp(S)
    return E / E.sum(axis=1, keepdims=True)


class Loss:
    """A loss ``L(F_N, Y)`` with two gradients.

    * :meth:`sample_grad` is the per-sample error ``delta_N`` without a ``1/B`` factor (SIBP's eq. 6,
      as in the authors' code): ``softmax(F_N) - Y`` for cross-entropy, ``F_N - Y`` for squared error.
    * the batch-mean gradient used by SGD/Adam/RMSprop/ProxBP is ``sample_grad / B``.

    ``task`` is ``"classification"`` (targets are integer labels, scored by accuracy) or
    ``"regression"`` (real targets of shape (n_samples, n_outputs), scored by MSE and R^2).
    """

    name = "base"
    task = "classification"
    #: whether the loss is a quadratic in ``F_N`` (a squared error): its curvature along the error never
    #: decays, so SIBP caps its hidden layers' steps by default (``neuron_step``)
    quadratic = False

    def value(self, F, y):
        """Mean loss over the rows of ``F`` (float)."""
        return backend_of(F).to_float(self.value_array(F, y))

    def value_array(self, F, y):
        """:meth:`value` as a 0-d array, left on the device."""
        raise NotImplementedError

    def sample_grad(self, F, y):
        """Per-sample gradient ``dL_n/dF_n``, shape (n_samples, n_classes)."""
        raise NotImplementedError

    def mean_grad(self, F, y):
        """Gradient of the batch-mean loss: ``sample_grad / B``."""
        return self.sample_grad(F, y) / F.dtype.type(F.shape[0])

    def value_and_sample_grad(self, F, y, read=True):
        """``(value(F, y), sample_grad(F, y))``, the same numbers as the two calls; a loss may share
        the work between them (cross-entropy computes the softmax once). ``read=False`` leaves the value
        on the device as a 0-d array."""
        value = self.value_array(F, y)
        return (backend_of(F).to_float(value) if read else value), self.sample_grad(F, y)

    def error_curvature(self, F, delta):
        """``h = <delta, H delta> / ||delta||^2``: the curvature of the loss along the per-sample error
        ``delta = sample_grad(F, y)``, with ``H`` the per-sample Hessian in ``F`` (summed over the rows).
        Moving every row of ``F`` by ``-s delta_n`` lowers the quadratic model of the loss most at
        ``s = 1 / h``; SIBP caps its hidden layers' steps by it (``neuron_step="capped"``). 1 for
        squared errors."""
        return 1.0

    def value_and_mean_grad(self, F, y):
        """``(value(F, y), mean_grad(F, y))`` from :meth:`value_and_sample_grad` (what the explicit
        methods and ProxBP need at the top of back propagation)."""
        value, g = self.value_and_sample_grad(F, y)
        g /= g.dtype.type(F.shape[0])
        return value, g


class SoftmaxCrossEntropy(Loss):
    """``L = -(1/B) sum_n log softmax(F_n)[y_n]``."""

    name = "cross_entropy"

    def value_array(self, F, y):
        xp = array_module(F)
        return -log_softmax(F)[xp.arange(F.shape[0]), y].mean()

    def sample_grad(self, F, y):
        """``softmax(F) - Y``."""
        return self.value_and_sample_grad(F, y)[1]

    def value_and_sample_grad(self, F, y, read=True):
        """One pass of ``exp`` for both: ``log softmax(F) = S - log(sum exp S)`` and
        ``softmax(F) = exp(S) / sum exp S`` with ``S = F - max F`` (row-wise); the value is the one
        :meth:`value` computes from :func:`log_softmax`, bit for bit."""
        xp = array_module(F)
        S = F - F.max(axis=1, keepdims=True)
        E = xp.exp(S)
        total = E.sum(axis=1, keepdims=True)
        rows = xp.arange(F.shape[0])
        value = -(S[rows, y] - xp.log(total)[:, 0]).mean()
        if read:
            value = backend_of(F).to_float(value)
        E /= total
        E[rows, y] -= 1
        return value, E

    def error_curvature(self, F, delta):
        """``H_n = diag(p_n) - p_n p_n^T`` with ``p = softmax(F)``, so ``<delta_n, H_n delta_n> =
        sum_k p_nk delta_nk^2 - (sum_k p_nk delta_nk)^2`` (at most ``||delta_n||^2 / 2``), as a 0-d
        float64 array (no read from the device)."""
        xp = array_module(F)
        P = softmax(F)
        PD = P * delta
        num = xp.vdot(PD.ravel(), delta.ravel()).astype(xp.float64) - (PD.sum(axis=1) ** 2).sum()
        den = xp.vdot(delta.ravel(), delta.ravel()).astype(xp.float64)
        return xp.where(den > 0, xp.maximum(num, 0.0) / xp.where(den > 0, den, 1.0), 0.0)


class SquaredError(Loss):
    """``L = (1/B) sum_n 1/2 ||F_n - Y_n||^2`` on one-hot targets: a *classification* loss on integer
    labels (scored by accuracy). For real-valued targets use ``"mse"``."""

    name = "squared_error"
    quadratic = True

    def value_array(self, F, y):
        xp = array_module(F)
        R = F - one_hot(y, F.shape[1], F.dtype, xp)
        return 0.5 * backend_of(F).scalar(xp.vdot(R.ravel(), R.ravel())) / F.shape[0]

    def sample_grad(self, F, y):
        xp = array_module(F)
        return F - one_hot(y, F.shape[1], F.dtype, xp)


class MeanSquaredError(Loss):
    """Regression: ``L = (1/B) sum_n 1/2 ||F_n - Y_n||^2`` on real targets ``Y`` of shape
    (n_samples, n_outputs). The per-sample error is ``F_N - Y``, so SIBP's output target (eq. 6) is
    ``T_N = F_N - eta (F_N - Y)``. Records report ``mse`` (the mean of ``(F - Y)^2`` over all entries,
    as ``sklearn.metrics.mean_squared_error``) and ``r2`` beside this loss."""

    name = "mse"
    task = "regression"
    quadratic = True

    def value_array(self, F, Y):
        R = F - Y
        return 0.5 * backend_of(F).scalar(array_module(F).vdot(R.ravel(), R.ravel())) / F.shape[0]

    def sample_grad(self, F, Y):
        return F - Y


LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "squared_error": SquaredError, "mse": MeanSquaredError}


def get_loss(name):
    if isinstance(name, Loss):
        return name
    return LOSSES[check_choice("loss", name, tuple(LOSSES))]()
