"""Explicit update rules: SGD (plain BP, eq. 3), Adam and RMSprop.

Each follows exactly the update of ``torch.optim``'s class of the same name (defaults, bias correction,
where ``eps`` goes, the form of Nesterov momentum), so that runs can be compared with PyTorch runs. The
equations are written out in each class's Notes; ``g`` is the gradient of the **batch-mean** loss.

The rules never see the model: :meth:`Optimizer.update` takes a list of parameter arrays and a list of
gradients (or pseudo-gradients, as ProxBP passes them) and changes the parameters in place.
"""
import math

from ._validation import check_bool, check_fraction, check_pair, check_positive
from .backend import array_module
from .methods import Hyperparameter, Method, register

#: every this many updates, optimizer buffers are scanned for subnormal numbers (see Optimizer.update)
FLUSH_EVERY = 16


class Optimizer(Method):
    """An explicit method: ``step`` = batch-mean loss, back propagation, :meth:`update`.

    Subnormal entries of the state buffers (momentum, moments) are flushed to zero every
    :data:`FLUSH_EVERY` updates. A buffer entry whose gradient stays zero decays geometrically
    (``m <- beta1 m``) into the subnormal range, where CPU arithmetic is many times slower: measured here,
    Adam on 784-500-10 went from 3.5 to 12 ms per step once most of its first moment was subnormal.
    CPUs in flush-to-zero mode do the same; the update differs from the unflushed one by less than
    ``lr * tiny / eps`` (about 1e-33 with Adam's defaults in float32), far below the resolution of any
    parameter.
    """

    def step(self, model, X, y, checked=False):
        """One update on ``(X, y)``; returns the batch-mean loss before it (``checked``: ``X, y`` come
        from ``model.check_Xy`` already)."""
        if not checked:
            X, y = model.check_Xy(X, y)
        loss, grads = model.loss_and_grads(X, y)
        self.update(model.params(), grads, overwrite_grads=True)  # the gradients are ours
        return loss

    def update(self, params, grads, overwrite_grads=False):
        """Apply one update to ``params`` (in place) from ``grads``; same order and shapes.

        With ``overwrite_grads=True`` the rule may use the arrays of ``grads`` as work space (as
        SciPy's ``overwrite_a``): one pass and one buffer fewer per parameter, and the same numbers.
        """
        self.state["t"] = self.state.get("t", 0) + 1
        xp = array_module(params[0])
        for k, (p, g) in enumerate(zip(params, grads)):
            self._update_one(xp, k, p, g, overwrite_grads)
        if self.state["t"] % FLUSH_EVERY == 0:
            self._flush_subnormals()

    def _flush_subnormals(self):
        for _key, a in self.state.items():
            if hasattr(a, "dtype") and a.dtype.kind == "f":
                xp = array_module(a)
                tiny = xp.finfo(a.dtype).tiny
                xp.putmask(a, xp.abs(a) < tiny, 0)

    def _buffer(self, name, k, like):
        key = f"{name}{k}"
        if key not in self.state:
            self.state[key] = array_module(like).zeros_like(like)
        buf = self.state[key]
        if buf.shape != like.shape:
            raise ValueError(f"{type(self).__name__} was used on another model: its state {key} has shape "
                             f"{tuple(buf.shape)} but parameter {k} has shape {tuple(like.shape)}; use a "
                             f"new {type(self).__name__}(...) for each model")
        return buf

    def check_state(self, model):
        """Raise ``ValueError`` unless every state buffer fits ``model``'s parameter of its index."""
        params = model.params()
        for key, value in self.state.items():
            index = key.lstrip("abcdefghijklmnopqrstuvwxyz")
            if not index.isdigit() or not hasattr(value, "shape"):
                continue
            k = int(index)
            if k >= len(params) or tuple(value.shape) != tuple(params[k].shape):
                shape = tuple(params[k].shape) if k < len(params) else "no such parameter"
                raise ValueError(f"{type(self).__name__}'s state {key} has shape {tuple(value.shape)} "
                                 f"but the model's parameter {k} has {shape}")

    def _scratch(self, k, like):
        """A work array per parameter, kept outside ``state`` (not checkpointed)."""
        if not hasattr(self, "_work"):
            self._work = {}
        w = self._work.get(k)
        if w is None or w.shape != like.shape or w.dtype != like.dtype:
            w = self._work[k] = array_module(like).empty_like(like)
        return w

    def _update_one(self, xp, k, p, g, overwrite):  # pragma: no cover - abstract
        raise NotImplementedError


@register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    Parameters
    ----------
    lr : float > 0
        Learning rate: the step on the batch-mean gradient.
    momentum : float >= 0
        Momentum factor (0: plain BP).
    nesterov : bool
        Nesterov momentum (needs momentum > 0 and dampening = 0).
    weight_decay : float >= 0
        L2 penalty added to the gradient.
    dampening : float >= 0
        Dampening of the momentum.

    Notes
    -----
    With ``g = grad + weight_decay * p``::

        if momentum == 0:  p <- p - lr * g
        else:
            buf <- g                                   (first step)
            buf <- momentum * buf + (1 - dampening) * g (later steps)
            d = g + momentum * buf  if nesterov else buf
            p <- p - lr * d

    With ``momentum = 0`` this is plain BP, eq. (3) of the paper.
    """

    lr = Hyperparameter(check_positive, help="learning rate, on the batch-mean loss")
    momentum = Hyperparameter(check_positive, allow_zero=True, help="momentum factor (0: none)")
    nesterov = Hyperparameter(check_bool, help="Nesterov momentum")
    weight_decay = Hyperparameter(check_positive, allow_zero=True, help="L2 penalty added to the gradient")
    dampening = Hyperparameter(check_positive, allow_zero=True, help="dampening of the momentum")

    def __init__(self, lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        super().__init__()
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.weight_decay, self.dampening = weight_decay, dampening

    def _validate(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0, got momentum="
                             f"{self.momentum!r}, dampening={self.dampening!r}")

    def _update_one(self, xp, k, p, g, overwrite):
        dt = p.dtype.type
        if self.weight_decay:
            g, overwrite = g + dt(self.weight_decay) * p, True
        if self.momentum:
            first = f"buf{k}" not in self.state
            buf = self._buffer("buf", k, p)
            if first:
                buf[...] = g
            else:
                buf *= dt(self.momentum)
                buf += dt(1 - self.dampening) * g
            g, overwrite = (g + dt(self.momentum) * buf, True) if self.nesterov else (buf, False)
        step = g if overwrite else self._scratch(k, p)  # lr * g without a new array per update
        xp.multiply(g, dt(self.lr), out=step)
        p -= step


@register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam`` (``amsgrad=False``).

    Parameters
    ----------
    lr : float > 0
        Learning rate.
    betas : (float, float)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float > 0
        Added to the denominator.
    weight_decay : float >= 0
        L2 penalty added to the gradient (not AdamW).

    Notes
    -----
    At step ``t = 1, 2, ...`` with ``g = grad + weight_decay * p`` (L2, not AdamW)::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``eps`` is added *after* the bias-corrected square root, as in PyTorch.
    """

    lr = Hyperparameter(check_positive, help="learning rate, on the batch-mean loss")
    betas = Hyperparameter(check_pair, each=check_fraction,
        help="decay rates of the gradient's first and second moments, e.g. 0.9,0.999")
    eps = Hyperparameter(check_positive, help="added to the denominator, for stability")
    weight_decay = Hyperparameter(check_positive, allow_zero=True, help="L2 penalty added to the gradient")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__()
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay

    def _update_one(self, xp, k, p, g, overwrite):
        dt = p.dtype.type
        b1, b2 = self.betas
        t = self.state["t"]
        if self.weight_decay:
            g = g + dt(self.weight_decay) * p
        m = self._buffer("m", k, p)
        v = self._buffer("v", k, p)
        tmp = self._scratch(k, p)  # no allocation per step
        m *= dt(b1)
        xp.multiply(g, dt(1 - b1), out=tmp)
        m += tmp
        v *= dt(b2)
        xp.multiply(g, g, out=tmp)
        tmp *= dt(1 - b2)
        v += tmp
        # lr m_hat / (sqrt(v_hat) + eps) with the bias corrections c1 = 1 - b1^t, c2 = 1 - b2^t folded
        # into the scalars: (lr sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2)), one pass fewer than
        # dividing sqrt(v) by sqrt(c2) (the same update up to rounding)
        root_c2 = math.sqrt(1 - b2 ** t)
        xp.sqrt(v, out=tmp)
        tmp += dt(self.eps * root_c2)
        xp.divide(m, tmp, out=tmp)
        tmp *= dt(self.lr * root_c2 / (1 - b1 ** t))
        p -= tmp


@register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (``centered=False``).

    Each parameter's step is divided by a running root mean square of its gradients.

    Parameters
    ----------
    lr : float > 0
        Learning rate.
    alpha : float in [0, 1)
        Smoothing constant of the squared-gradient average.
    eps : float > 0
        Added to the denominator.
    momentum : float >= 0
        Momentum factor.
    weight_decay : float >= 0
        L2 penalty added to the gradient.

    Notes
    -----
    With ``g = grad + weight_decay * p``::

        v <- alpha * v + (1 - alpha) * g^2
        if momentum > 0:  buf <- momentum * buf + g / (sqrt(v) + eps);  p <- p - lr * buf
        else:             p <- p - lr * g / (sqrt(v) + eps)
    """

    lr = Hyperparameter(check_positive, help="learning rate, on the batch-mean loss")
    alpha = Hyperparameter(check_fraction, help="decay rate of the squared gradient's average")
    eps = Hyperparameter(check_positive, help="added to the denominator, for stability")
    momentum = Hyperparameter(check_positive, allow_zero=True, help="momentum factor (0: none)")
    weight_decay = Hyperparameter(check_positive, allow_zero=True, help="L2 penalty added to the gradient")

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__()
        self.lr, self.alpha, self.eps, self.momentum = lr, alpha, eps, momentum
        self.weight_decay = weight_decay

    def _update_one(self, xp, k, p, g, overwrite):
        dt = p.dtype.type
        if self.weight_decay:
            g = g + dt(self.weight_decay) * p
        v = self._buffer("v", k, p)
        v *= dt(self.alpha)
        v += dt(1 - self.alpha) * (g * g)
        avg = xp.sqrt(v)
        avg += dt(self.eps)
        if self.momentum:
            buf = self._buffer("buf", k, p)
            buf *= dt(self.momentum)
            buf += g / avg
            p -= dt(self.lr) * buf
        else:
            p -= dt(self.lr) * (g / avg)
