"""The fully connected network of the paper (eq. 1) and plain back propagation (eqs. 4-5)."""
import math

import numpy as np

from ._validation import (
    check_choice,
    check_dtype,
    check_finite_array,
    check_int,
    check_label_range,
    check_output_path,
    check_positive,
    check_seed,
    check_targets,
    check_X,
    check_y,
)
from .backend import get_backend
from .functions import ACTIVATIONS, LOSSES, get_activation, get_loss, softmax
from .persist import ModelFileError, check_architecture, check_params, read_model, save_model

INITS = ("normal", "he", "xavier")


def _memory_bytes():
    """This machine's physical memory in bytes, or 0 where it cannot be asked."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class MLP:
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
        sizes = self.layer_sizes
        seed = check_seed("seed", seed)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        W_init, b_init = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if self.init == "normal":
                W_init.append(rng.normal(0.0, self.init_std, size=(n_out, n_in)))
                b_init.append(rng.normal(0.0, self.init_std, size=n_out))
            else:
                var = 2.0 / n_in if self.init == "he" else 2.0 / (n_in + n_out)
                W_init.append(rng.normal(0.0, np.sqrt(var), size=(n_out, n_in)))
                b_init.append(np.zeros(n_out))
        self._store_params(W_init, b_init)

    def _configure(self, layer_sizes, activation, init_std, dtype, backend, init, loss):
        """Validate and set everything but the parameters."""
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
        sizes = tuple(check_int(f"layer_sizes[{i}]", s) for i, s in enumerate(layer_sizes))
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least 2 entries (inputs, outputs), got {layer_sizes!r}")
        for i, s in enumerate(sizes):
            if s < 1:
                raise ValueError(f"layer_sizes[{i}] must be a positive width, got {s} in {layer_sizes!r}")
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        need, have = n_params * np.dtype(check_dtype("dtype", dtype)).itemsize, _memory_bytes()
        if have and need > have:
            raise ValueError(f"layer_sizes={list(sizes)} has {n_params:,} parameters: {need / 2**30:.1f} GiB "
                             f"in {np.dtype(dtype).name}, more than this machine's {have / 2**30:.1f} GiB")
        self.layer_sizes = sizes
        self.activation = get_activation(activation)
        if self.activation.name == "identity":
            raise ValueError("activation='identity' makes the network linear; use relu, sigmoid or tanh")
        self.output_activation = get_activation("identity")
        self.loss = get_loss(loss)
        self.dtype = check_dtype("dtype", dtype)
        self.init = check_choice("init", init, INITS)
        self.init_std = check_positive("init_std", init_std)
        with np.errstate(over="ignore"):  # a draw of 8 standard deviations must still be a number
            if not np.isfinite(self.dtype.type(8.0 * self.init_std)):
                raise ValueError(f"init_std={init_std!r} overflows {self.dtype.name}: the initial weights "
                                 f"would be inf; choose a smaller init_std or dtype='float64'")
        self.backend = get_backend(backend)

    def _store_params(self, W_list, b_list):
        """Put host arrays on the backend as the parameters (their shapes already checked)."""
        sizes = self.layer_sizes
        for name, arrays in (("W", W_list), ("b", b_list)):
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
        out = []
        for W, b in zip(self._W, self._b):
            out += [W, b]
        return out

    def activation_of(self, i):
        """``sigma`` after layer ``i`` (0-based): the hidden activation, or identity for the last."""
        return self.output_activation if i == self.n_layers - 1 else self.activation

    def layers(self):
        """``(W_i, b_i, sigma_i)`` for each layer, input to output: the arrays themselves (methods
        update them in place) and the layer's activation (identity for the output layer)."""
        for i, (W, b) in enumerate(zip(self._W, self._b)):
            yield W, b, self.activation_of(i)

    def params_finite(self):
        """Whether every parameter is finite (fit checks it after every step).

        ``||p||^2`` (a BLAS dot product, 5x cheaper here than a float64 sum) is finite when every entry
        is; NaN and inf propagate through it. Only when it is not finite, which a finite ``p`` with
        entries beyond ``1e19`` can also give, is ``isfinite`` checked entry by entry.
        """
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
        """Checked ``X`` and targets on the backend: int64 labels ``(n_samples,)`` for classification,
        ``(n_samples, n_outputs)`` reals of the model's dtype for regression. ``names`` are used in the
        messages (e.g. ``("X_val", "y_val")``)."""
        be, xp = self.backend, self.xp
        X = check_X(X, self.n_features, be, self.dtype, name=names[0], values=False)
        # the values of both are checked in one read from the device
        if self.task == "regression":
            y = check_targets(y, X.shape[0], self.n_outputs, be, self.dtype, name=names[1], values=False)
            finite = be.to_host(xp.stack([xp.isfinite(X).all(), xp.isfinite(y).all()]))
        else:
            y = check_y(y, X.shape[0], self.n_classes, be, name=names[1], values=False)
            finite = be.to_host(xp.stack([xp.isfinite(X).all().astype(xp.int64), y.min(), y.max()]))
        if not finite[0]:
            raise ValueError(f"{names[0]} contains NaN or inf")
        if self.task == "regression":
            if not finite[1]:
                raise ValueError(f"{names[1]} contains NaN or inf")
        else:
            check_label_range(finite[1], finite[2], self.n_classes, names[1])
        return X, y

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
        """Forward pass (eq. 1) keeping every layer.

        Parameters
        ----------
        X : array, shape (n_samples, n_features), already on the backend and of the model's dtype.

        Returns
        -------
        G : list of arrays
            ``G[i+1]`` has shape ``(n_samples, layer_sizes[i+1])``; ``G[0]`` is None.
        F : list of arrays
            ``F[0] = X`` and ``F[i+1] = sigma(G[i+1])``; ``F[-1] = G[-1]`` are the logits.
        """
        return self._propagate(X, keep=True)

    def backward(self, G, F, delta_N):
        """Back propagation, eqs. (4)-(5).

        Parameters
        ----------
        G, F : lists from :meth:`forward_cache`.
        delta_N : array, shape (n_samples, n_classes)
            ``dJ/dF_N``.

        Returns
        -------
        grads : list of arrays
            ``[dJ/dW_1, dJ/db_1, ...]`` in the order of :meth:`params`, where
            ``dJ/dW_i = (sigma'(G_{i+1}) * delta_{i+1})^T F_i`` (eq. 5) and
            ``delta_i = (sigma'(G_{i+1}) * delta_{i+1}) W_i`` (eq. 4).
        """
        grads = [None] * (2 * self.n_layers)
        delta = delta_N
        for i in range(self.n_layers - 1, -1, -1):
            dG = self.activation_of(i).backprop(G[i + 1], delta)
            grads[2 * i] = dG.T @ F[i]
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
        """``||dJ/dtheta||`` of the batch-mean loss on all of ``(X, y)`` (Proposition 1's stationarity),
        accumulated ``chunk`` rows at a time."""
        X, y = self.check_Xy(X, y)
        n = X.shape[0]
        total = None
        for s in range(0, n, chunk):
            G, F = self.forward_cache(X[s:s + chunk])
            g = self.backward(G, F, self.loss.sample_grad(F[-1], y[s:s + chunk]) / F[-1].dtype.type(n))
            total = g if total is None else [a + b for a, b in zip(total, g)]
        return math.sqrt(sum(self.backend.to_float(self.xp.vdot(a.ravel(), a.ravel())) for a in total))

    def forward(self, X):
        """Logits ``F_N``, shape (n_samples, n_classes), on the model's backend."""
        X = self.check_X(X)
        return self._chunks(X, lambda F: F)

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
        _warn_nonfinite(P, "predict_proba")
        return P

    def predict(self, X):
        """Predicted labels, shape (n_samples,), as a NumPy int64 array; for a regression, the outputs
        ``F_N``, shape (n_samples, n_outputs), as a NumPy array of the model's dtype."""
        X = self.check_X(X)
        logits = self._chunks(X, lambda F: F)
        if self.task == "regression":
            out = self.backend.to_host(logits)
            _warn_nonfinite(out, "predict")
            return out
        if not self.backend.to_bool(self.xp.isfinite(logits).all()):
            _warn_nonfinite(np.array([np.nan]), "predict")
        return self.backend.to_host(logits.argmax(axis=1)).astype(np.int64)

    def evaluate(self, X, y, chunk=4096, warn=True):
        """Mean loss and score on ``(X, y)``: the accuracy for classification, R^2 for a regression.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)
        y : array, shape (n_samples,) labels, or (n_samples, n_outputs) regression targets
        chunk : int
            Rows per forward pass (bounds the memory of the activations).
        warn : bool
            Warn (``RuntimeWarning``) when the loss is not finite.

        Returns
        -------
        loss, score : float, float
        """
        m = self.metrics(X, y, chunk=chunk, warn=warn)
        return m["loss"], m["r2"] if self.task == "regression" else m["acc"]

    def metrics(self, X, y, chunk=4096, warn=True):
        """``{"loss", "acc"}`` for classification, ``{"loss", "mse", "r2"}`` for a regression, on
        ``(X, y)``, computed ``chunk`` rows at a time. ``mse`` is the mean of ``(F_N - Y)^2`` over all
        entries; ``r2`` is the coefficient of determination averaged over the outputs, as
        ``sklearn.metrics.r2_score`` computes them (an output with constant targets scores 1 when fitted
        exactly, else 0)."""
        X, y = self.check_Xy(X, y)
        chunk = check_int("chunk", chunk, minimum=1)
        n, xp = X.shape[0], self.xp
        total_loss, correct, ss_res = 0.0, 0, 0.0
        for s in range(0, n, chunk):
            F_N, ys = self._propagate(X[s:s + chunk], keep=False), y[s:s + chunk]
            total_loss += self.loss.value(F_N, ys) * F_N.shape[0]
            if self.task == "regression":
                ss_res = ss_res + ((F_N - ys) ** 2).sum(axis=0, dtype=xp.float64)
            else:
                correct += int(self.backend.to_float((F_N.argmax(axis=1) == ys).sum()))
        out = {"loss": total_loss / n}
        if warn and not np.isfinite(out["loss"]):
            _warn_nonfinite(np.array([out["loss"]]), "evaluate")
        if self.task != "regression":
            out["acc"] = correct / n
            return out
        ss_res = self.backend.to_host(ss_res)
        yc = y - y.mean(axis=0, dtype=xp.float64)
        ss_tot = self.backend.to_host((yc * yc).sum(axis=0))
        exact = ss_res == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.where(exact, 1.0, 0.0))
        out["mse"] = float(ss_res.sum()) / y.size  # host arrays by now
        out["r2"] = float(r2.mean())
        return out

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

    # ------------------------------------------------------------------ persistence
    def architecture(self):
        """What :meth:`save` writes besides the parameters: layer sizes, activation, loss, dtype, init."""
        for part, obj in (("activation", self.activation), ("loss", self.loss)):
            registry = ACTIVATIONS if part == "activation" else LOSSES
            if registry.get(obj.name) is not type(obj):
                raise TypeError(f"{part} {obj!r} is not a registered name: a model file can only name it")
        return {"layer_sizes": list(self.layer_sizes), "activation": self.activation.name,
                "loss": self.loss.name, "dtype": self.dtype.name, "init": self.init,
                "init_std": self.init_std}

    def save(self, path):
        """Write the network to one HDF5 file (atomically): architecture, parameters, package version.
        :meth:`load` reads it back, and the loaded model's predictions are bitwise the same."""
        path = check_output_path("path", path, (".h5", ".hdf5"))
        save_model({"architecture": self.architecture(), "params": self.get_params()}, path)

    @classmethod
    def load(cls, path, backend=None):
        """The network saved in ``path`` by :meth:`save`, on ``backend`` (default: the current one).

        Raises ``FileNotFoundError``, or :class:`~sibp_np.persist.ModelFileError` naming what is wrong
        with the file (not HDF5, not a model, damaged, parameters that do not fit the architecture)."""
        state = read_model(path)
        return cls._from_state(state["architecture"], state["params"], backend, path)

    @classmethod
    def from_checkpoint(cls, path, backend=None):
        """The network of a training checkpoint (:mod:`sibp_np.checkpoint`), e.g. to predict with it."""
        from .checkpoint import load_checkpoint
        ckpt = load_checkpoint(path)
        config = ckpt["config"]
        arch = {"layer_sizes": config.get("layer_sizes"), "activation": config.get("activation"),
                "loss": config.get("loss"), "dtype": config.get("dtype"), "init": "normal",
                "init_std": 0.01}
        arch = check_architecture(arch, path)
        return cls._from_state(arch, check_params(ckpt["params"], arch, path), backend, path)

    @classmethod
    def _from_state(cls, arch, params, backend, source):
        model = cls.__new__(cls)
        try:
            model._configure(arch["layer_sizes"], arch["activation"], arch["init_std"], arch["dtype"],
                             backend, arch["init"], arch["loss"])
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: invalid architecture: {exc}") from exc
        sizes = model.layer_sizes
        model._store_params([params[f"W{i}"] for i in range(len(sizes) - 1)],
                            [params[f"b{i}"] for i in range(len(sizes) - 1)])
        return model

    def __getstate__(self):
        # the backend holds a module: it travels by name, and the arrays as host copies
        return {"activation": self.activation, "loss": self.loss, "layer_sizes": list(self.layer_sizes),
                "dtype": self.dtype.name, "init": self.init, "init_std": self.init_std,
                "backend": self.backend.name, "params": self.get_params()}

    def __setstate__(self, state):
        self._configure(state["layer_sizes"], state["activation"], state["init_std"], state["dtype"],
                        state["backend"], state["init"], state["loss"])
        n = len(self.layer_sizes) - 1
        self._store_params([state["params"][f"W{i}"] for i in range(n)],
                           [state["params"][f"b{i}"] for i in range(n)])

    def astype(self, dtype):
        """The network with its parameters converted to ``dtype`` (a copy), or ``self`` when it already
        has that dtype. E.g. ``model.astype("float64").predict(X)`` predicts a float32 network in float64."""
        dtype = check_dtype("dtype", dtype)
        if dtype == self.dtype:
            return self
        state = self.__getstate__()
        state["dtype"] = dtype.name
        new = type(self).__new__(type(self))
        new.__setstate__(state)
        return new

    def copy(self):
        """An independent copy on the same backend."""
        new = object.__new__(MLP)
        new.__dict__.update(self.__dict__)
        new._W = [W.copy() for W in self._W]
        new._b = [b.copy() for b in self._b]
        sizes = self.layer_sizes
        new.weights = _ParamList(new, new._W, "weights", lambda i: (sizes[i + 1], sizes[i]))
        new.biases = _ParamList(new, new._b, "biases", lambda i: (sizes[i + 1],))
        return new


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


def _warn_nonfinite(arr, where):
    if not np.isfinite(np.asarray(arr)).all():
        import warnings
        warnings.warn(f"{where}: the model's output is not finite (diverged parameters?)",
                      RuntimeWarning, stacklevel=3)
