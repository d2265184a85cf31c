"""The fully connected network of the paper (eq. 1) and plain back propagation (eqs. 4-5)."""

import numpy as np

from . import metrics, persist
from ._validation import (
    check_choice,
    check_dtype,
    check_finite_array,
    check_init_std,
    check_layer_sizes,
    check_seed,
    check_X,
    check_Xy,
)
from .backend import get_backend
from .functions import get_activation, get_loss, softmax

INITS = ("normal", "he", "xavier")


def _memory_bytes():
    """This machine's physical memory in bytes, or 0 where it cannot be asked."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class MLP(persist.Persistent):
    """Fully connected network ``G_{i+1} = F_i W_i^T + b_i``, ``F_{i+1} = sigma(G_{i+1})`` (eq. 1).

    The last layer is linear (``F_N = G_N``), as in the paper.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, hidden..., n_classes)``, e.g. ``(784, 500, 10)``; at least two entries.
    activation : {"relu", "sigmoid", "tanh"}
        ``sigma`` of the hidden layers.
    init_std : float
        Standard deviation of the paper's ``N(0, init_std^2)`` init of weights *and* biases.
    init : {"normal", "he", "xavier"}
        ``normal``: the paper's N(0, init_std^2). ``he``: N(0, 2/n_in) weights, zero biases.
        ``xavier``: N(0, 2/(n_in + n_out)) weights, zero biases.
    seed : int or numpy.random.Generator, optional
        Seeds the host-side generator that draws the initial parameters, so the same seed gives the same
        network on every backend.
    dtype : {"float32", "float64"}
    backend : str or Backend, optional
        Where the parameters live; default from :func:`sibp_np.get_backend`.
    loss : {"cross_entropy", "squared_error"}

    Attributes
    ----------
    weights : list of arrays
        ``weights[i]`` is ``W_i`` with shape ``(n_out, n_in)`` = ``(layer_sizes[i+1], layer_sizes[i])``.
    biases : list of arrays
        ``biases[i]`` is ``b_i`` with shape ``(n_out,)``.
    """

    def __init__(self, layer_sizes, activation="relu", init_std=0.01, seed=None, dtype="float32",
                 backend=None, init="normal", loss="cross_entropy"):
        self._configure(layer_sizes, activation, init_std, dtype, backend, init, loss)
        self._store_params(*initial_params(self.layer_sizes, self.init, self.init_std, seed))

    def _configure(self, layer_sizes, activation, init_std, dtype, backend, init, loss):
        """Validate and set everything but the parameters."""
        self.dtype = check_dtype("dtype", dtype)
        self.layer_sizes = check_layer_sizes(layer_sizes, self.dtype, _memory_bytes())
        self.activation = get_activation(activation)
        if self.activation.name == "identity":
            raise ValueError("activation='identity' makes the network linear; use relu, sigmoid or tanh")
        self.output_activation = get_activation("identity")
        self.loss = get_loss(loss)
        self.init = check_choice("init", init, INITS)
        self.init_std = check_init_std(init_std, self.dtype)
        self.backend = get_backend(backend)

    def _store_params(self, W_list, b_list, check=True):
        """Put host arrays on the backend as the parameters (their shapes already checked; their values
        too unless ``check``)."""
        sizes = self.layer_sizes
        for name, arrays in ((("W", W_list), ("b", b_list)) if check else ()):
            for i, a in enumerate(arrays):
                with np.errstate(over="ignore"):
                    if not np.isfinite(np.asarray(a, dtype=self.dtype)).all():
                        raise ValueError(f"parameter {name}{i} is not finite in {self.dtype.name} (NaN, "
                                         f"inf, or values that overflow it)")
        self._W = [self.backend.asarray(W, dtype=self.dtype) for W in W_list]
        self._b = [self.backend.asarray(b, dtype=self.dtype) for b in b_list]
        self.weights = _ParamList(self, self._W, "weights", lambda i: (sizes[i + 1], sizes[i]))
        self.biases = _ParamList(self, self._b, "biases", lambda i: (sizes[i + 1],))

    # ------------------------------------------------------------------ basics
    @property
    def n_layers(self):
        """Number of weight layers ``N - 1``."""
        return len(self.layer_sizes) - 1

    @property
    def n_features(self):
        return self.layer_sizes[0]

    @property
    def n_classes(self):
        """Width of the output layer: classes, or outputs of a regression (also :attr:`n_outputs`)."""
        return self.layer_sizes[-1]

    @property
    def n_outputs(self):
        return self.layer_sizes[-1]

    @property
    def task(self):
        """``"classification"`` or ``"regression"``: what the loss makes of the targets."""
        return self.loss.task

    @property
    def xp(self):
        return self.backend.xp

    def params(self):
        """``[W_1, b_1, W_2, b_2, ...]``: the arrays that the update rules change in place."""
        return [p for W, b in zip(self._W, self._b) for p in (W, b)]

    def activation_of(self, i):
        """``sigma`` after layer ``i`` (0-based): the hidden activation, or identity for the last."""
        return self.output_activation if i == self.n_layers - 1 else self.activation

    def layers(self):
        """``(W_i, b_i, sigma_i)`` for each layer, input to output: the arrays themselves (methods
        update them in place) and the layer's activation (identity for the output layer)."""
        for i, (W, b) in enumerate(zip(self._W, self._b)):
            yield W, b, self.activation_of(i)

    def params_finite(self):
        """Whether every parameter is finite (fit checks it after every step): ``||p||^2``, one BLAS dot
        product, is finite when every entry is; only when it is not (also for entries beyond 1e19) are
        the entries checked one by one."""
        xp = self.xp
        norms = xp.stack([xp.vdot(p.ravel(), p.ravel()) for p in self.params()])
        if self.backend.to_bool(xp.isfinite(norms).all()):
            return True
        return all(self.backend.to_bool(xp.isfinite(p).all()) for p in self.params())

    def __repr__(self):
        return (f"MLP({list(self.layer_sizes)}, activation={self.activation.name!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend.name!r})")

    # ------------------------------------------------------------------ input checks
    def check_X(self, X, name="X"):
        return check_X(X, self.n_features, self.backend, self.dtype, name=name)

    def check_Xy(self, X, y, names=("X", "y")):
        """Checked ``X`` and targets on the backend (:func:`sibp_np._validation.check_Xy`): int64 labels
        ``(n_samples,)`` for classification, ``(n_samples, n_outputs)`` reals of the model's dtype for a
        regression. ``names`` are used in the messages (e.g. ``("X_val", "y_val")``)."""
        return check_Xy(X, y, self.n_features, self.n_outputs, self.task == "regression", self.backend,
                        self.dtype, names)

    # ------------------------------------------------------------------ forward / backward
    def _propagate(self, X, keep):
        """The forward pass (eq. 1), the one routine behind :meth:`forward_cache`, :meth:`forward`,
        :meth:`predict`, :meth:`predict_proba` and :meth:`evaluate`. Returns ``(G, F)`` lists when
        ``keep``, else the logits alone."""
        G, F = [None], [X]
        A = X
        for W, b, sigma in self.layers():
            Z = A @ W.T
            Z += b
            A = sigma.forward(Z)
            if keep:
                G.append(Z)
                F.append(A)
        return (G, F) if keep else A

    def forward_cache(self, X):
        """Forward pass (eq. 1) keeping every layer, on a checked ``X`` (n_samples, n_features).
        Returns lists ``G, F`` indexed from 0: ``F[0] = X`` (the paper's ``F_1``), ``G[i+1]`` of shape
        ``(n_samples, layer_sizes[i+1])`` (``G_{i+2}``; ``G[0]`` is None), ``F[i+1] = sigma(G[i+1])``,
        and ``F[-1] = G[-1]`` the logits."""
        return self._propagate(X, keep=True)

    def backward(self, G, F, delta_N):
        """Back propagation, eqs. (4)-(5), from :meth:`forward_cache`'s ``G, F`` and ``delta_N = dJ/dF_N``
        (n_samples, n_classes). Returns ``[dJ/dW_1, dJ/db_1, ...]`` in the order of :meth:`params`:
        ``dJ/dW_i = (sigma'(G_{i+1}) * delta_{i+1})^T F_i`` (eq. 5), with
        ``delta_i = (sigma'(G_{i+1}) * delta_{i+1}) W_i`` (eq. 4)."""
        grads = [None] * (2 * self.n_layers)
        delta = delta_N
        for i in range(self.n_layers - 1, -1, -1):
            dG = self.activation_of(i).backprop(G[i + 1], delta)
            grads[2 * i] = self.backend.t_matmul(dG, F[i])  # dG^T F_i (F_1 = X may be sparse)
            grads[2 * i + 1] = dG.sum(axis=0)
            if i > 0:
                delta = dG @ self._W[i]
        return grads

    def loss_and_grads(self, X, y):
        """Batch-mean loss and its gradients (for the explicit methods). X, y already checked."""
        G, F = self.forward_cache(X)
        loss, delta = self.loss.value_and_mean_grad(F[-1], y)
        return loss, self.backward(G, F, delta)

    def gradient_norm(self, X, y, chunk=4096):
        """``||dJ/dtheta||`` on all of ``(X, y)``: :func:`sibp_np.metrics.gradient_norm`."""
        return metrics.gradient_norm(self, X, y, chunk)

    def forward(self, X, check=True, chunk=4096):
        """Logits ``F_N``, shape (n_samples, n_classes), on the model's backend, ``chunk`` rows per
        pass (``check=False``: ``X`` is already checked, on the backend and of the model's dtype)."""
        X = self.check_X(X) if check else X
        return self._chunks(X, lambda F: F, chunk)

    def _chunks(self, X, fn, chunk=4096):
        parts = [fn(self._propagate(X[s:s + chunk], keep=False)) for s in range(0, X.shape[0], chunk)]
        return self.xp.concatenate(parts) if len(parts) > 1 else parts[0]

    def predict_proba(self, X):
        """Class probabilities ``softmax(F_N)``, shape (n_samples, n_classes), as a NumPy array."""
        if self.task == "regression":
            raise TypeError(f"predict_proba: the model is a regression (loss={self.loss.name!r}); "
                            f"use predict")
        X = self.check_X(X)
        P = self.backend.to_host(self._chunks(X, softmax))
        metrics.warn_nonfinite(P, "predict_proba")
        return P

    def predict(self, X):
        """Predicted labels, shape (n_samples,), as a NumPy int64 array; for a regression, the outputs
        ``F_N``, shape (n_samples, n_outputs), as a NumPy array of the model's dtype."""
        X = self.check_X(X)
        logits = self._chunks(X, lambda F: F)
        if self.task == "regression":
            out = self.backend.to_host(logits)
            metrics.warn_nonfinite(out, "predict")
            return out
        if not self.backend.to_bool(self.xp.isfinite(logits).all()):
            metrics.warn_nonfinite(np.array([np.nan]), "predict")
        return self.backend.to_host(logits.argmax(axis=1)).astype(np.int64)

    def evaluate(self, X, y, chunk=4096, warn=True):
        """``(loss, score)`` on ``(X, y)``: the mean loss, and the accuracy for classification or R^2
        for a regression (:func:`sibp_np.metrics.metrics`; ``chunk`` rows per forward pass, a
        ``RuntimeWarning`` when ``warn`` and the loss is not finite)."""
        m = metrics.metrics(self, X, y, chunk=chunk, warn=warn)
        return m["loss"], m["r2"] if self.task == "regression" else m["acc"]

    def metrics(self, X, y, chunk=4096, warn=True):
        """``{"loss", "acc"}`` or ``{"loss", "mse", "r2"}`` on ``(X, y)``: :func:`sibp_np.metrics.metrics`."""
        return metrics.metrics(self, X, y, chunk=chunk, warn=warn)

    # ------------------------------------------------------------------ state
    def get_params(self):
        """Host copies ``{"W0": ..., "b0": ..., ...}`` of every parameter."""
        out = {}
        for i, (W, b) in enumerate(zip(self._W, self._b)):
            out[f"W{i}"] = self.backend.to_host(W).copy()
            out[f"b{i}"] = self.backend.to_host(b).copy()
        return out

    def set_params(self, params):
        """Assign ``{"W0": ..., "b0": ..., ...}`` (as :meth:`get_params` returns), checked."""
        missing = [k for i in range(self.n_layers) for k in (f"W{i}", f"b{i}") if k not in params]
        if missing:
            raise ValueError(f"params is missing {missing}")
        for i in range(self.n_layers):
            self.weights[i] = params[f"W{i}"]
            self.biases[i] = params[f"b{i}"]

    @classmethod
    def from_checkpoint(cls, path, backend=None):
        """The network of a training checkpoint (:mod:`sibp_np.checkpoint`), e.g. to predict with it."""
        from .checkpoint import model_from_checkpoint
        return model_from_checkpoint(cls, path, backend)


def initial_params(layer_sizes, init, init_std, seed):
    """Host arrays ``(W_list, b_list)`` drawn from ``seed`` (an int, None or a NumPy ``Generator``):
    ``init="normal"``, the paper's ``N(0, init_std^2)`` for weights and biases; ``"he"``/``"xavier"``,
    ``N(0, 2/n_in)``/``N(0, 2/(n_in + n_out))`` weights and zero biases."""
    seed = check_seed("seed", seed)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    W_init, b_init = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        if init == "normal":
            W_init.append(rng.normal(0.0, init_std, size=(n_out, n_in)))
            b_init.append(rng.normal(0.0, init_std, size=n_out))
        else:
            var = 2.0 / n_in if init == "he" else 2.0 / (n_in + n_out)
            W_init.append(rng.normal(0.0, np.sqrt(var), size=(n_out, n_in)))
            b_init.append(np.zeros(n_out))
    return W_init, b_init


class _ParamList:
    """List-like view of weights or biases whose assignment checks shape and converts dtype/device."""

    def __init__(self, model, store, name, shape_of):
        self._model, self._store, self._name, self._shape_of = model, store, name, shape_of

    def __len__(self):
        return len(self._store)

    def __getitem__(self, i):
        return self._store[i]

    def __iter__(self):
        return iter(self._store)

    def __setitem__(self, i, value):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{self._name} index must be an integer, got {type(i).__name__} {i!r}")
        if not -len(self._store) <= i < len(self._store):
            raise IndexError(f"{self._name}[{i}]: the model has {len(self._store)} layers")
        i = int(i) % len(self._store)
        self._store[i] = check_finite_array(f"{self._name}[{i}]", value, self._shape_of(i),
                                            self._model.dtype, self._model.backend)

    def __repr__(self):
        return f"[{', '.join(f'array{tuple(a.shape)}' for a in self._store)}]"
