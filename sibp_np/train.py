"""The training loop: ``fit(model, method, X, y, ...) -> History``."""
import json
import math
import sys
import time

import numpy as np

from ._validation import check_choice, check_int
from .methods import Method

METRICS = ("epoch", "iterations", "train_loss", "train_acc", "val_loss", "val_acc", "batch_loss",
           "train_seconds", "elapsed_seconds")


class TrainingDiverged(RuntimeError):
    """Raised by :func:`fit` with ``on_divergence="raise"`` when a loss or parameter is not finite."""

    def __init__(self, info):
        self.info = info
        super().__init__(f"training diverged at epoch {info['epoch']}, iteration {info['iteration']} "
                         f"({info['method']}): {info['reason']}")


class History:
    """Per-epoch records of a run.

    ``history.records`` is a list of dicts with the keys of :data:`METRICS` (plus ``grad_norm`` when
    the stationarity measure is asked for). Record 0 is the initial network (epoch 0, no update).
    ``history["val_acc"]`` is the column as a list. ``history.diverged`` is ``None`` or a dict with the
    epoch, iteration, method and reason.
    """

    def __init__(self, config=None):
        self.records = []
        self.diverged = None
        self.config = dict(config or {})

    def append(self, record):
        self.records.append(dict(record))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        return [r.get(key) for r in self.records]

    @property
    def last(self):
        return self.records[-1] if self.records else {}

    def to_dict(self):
        return {"config": self.config, "records": self.records, "diverged": self.diverged}

    def to_json(self, path=None, **kw):
        text = json.dumps(self.to_dict(), indent=kw.pop("indent", 1), default=_jsonable, **kw)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d):
        h = cls(d.get("config"))
        h.records = [dict(r) for r in d.get("records", [])]
        h.diverged = d.get("diverged")
        return h

    def save_hdf5(self, path_or_group, name="history"):
        """Write the history into an HDF5 file (path) or an open ``h5py.Group``."""
        import h5py
        if isinstance(path_or_group, (str, bytes)) or hasattr(path_or_group, "__fspath__"):
            with h5py.File(path_or_group, "w") as f:
                self.save_hdf5(f, name)
            return
        g = path_or_group.require_group(name)
        keys = sorted({k for r in self.records for k in r})
        for k in keys:
            col = np.array([np.nan if r.get(k) is None else r.get(k) for r in self.records], dtype=float)
            g.create_dataset(k, data=col)
        g.attrs["config"] = json.dumps(self.config, default=_jsonable)
        g.attrs["diverged"] = json.dumps(self.diverged, default=_jsonable)

    @classmethod
    def load_hdf5(cls, path_or_group, name="history"):
        import h5py
        if isinstance(path_or_group, (str, bytes)) or hasattr(path_or_group, "__fspath__"):
            with h5py.File(path_or_group, "r") as f:
                return cls.load_hdf5(f, name)
        g = path_or_group[name]
        h = cls(json.loads(g.attrs["config"]))
        h.diverged = json.loads(g.attrs["diverged"])
        cols = {k: g[k][()] for k in g}
        n = len(next(iter(cols.values()))) if cols else 0
        for i in range(n):
            rec = {}
            for k, v in cols.items():
                x = float(v[i])
                rec[k] = None if math.isnan(x) else (int(x) if k in ("epoch", "iterations") else x)
            h.records.append(rec)
        return h

    def save(self, path):
        """Save as JSON (``.json``) or HDF5 (``.h5``/``.hdf5``)."""
        path = str(path)
        if path.endswith((".h5", ".hdf5")):
            self.save_hdf5(path)
        elif path.endswith(".json"):
            self.to_json(path)
        else:
            raise ValueError(f"out={path!r}: use a .json or .h5 file name")


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def gradient_norm(model, X, y, chunk=4096):
    """``||dJ/dtheta||`` of the batch-mean loss on all of ``(X, y)`` (Proposition 1's stationarity)."""
    total = None
    n = X.shape[0]
    for s in range(0, n, chunk):
        Xs, ys = X[s:s + chunk], y[s:s + chunk]
        G, F = model.forward_cache(Xs)
        g = model.backward(G, F, model.loss.sample_grad(F[-1], ys) / F[-1].dtype.type(n))
        total = g if total is None else [a + b for a, b in zip(total, g)]
    xp = model.xp
    return math.sqrt(sum(float(xp.vdot(a.ravel(), a.ravel())) for a in total))


def fit(model, method, X, y, *, val=None, epochs, batch_size=100, shuffle=True, seed=None, verbose=1,
        on_divergence="stop", stationarity=False, callback=None, checkpoint=None, checkpoint_every=1,
        resume=None, config=None, eval_every=None, time_budget=None, train_eval_size=None):
    """Train ``model`` with ``method`` for ``epochs`` passes over ``(X, y)``.

    Parameters
    ----------
    model : MLP
    method : Method
        Anything with ``step(model, X, y) -> float`` (SGD, Adam, RMSprop, ProxBP, SIBP, ...).
    X : array, shape (n_samples, n_features)
    y : array of int, shape (n_samples,)
    val : (X_val, y_val), optional
    epochs : int >= 0
    batch_size : int >= 1
        The last minibatch of an epoch holds the remainder (it is smaller when n_samples is not a
        multiple of batch_size).
    shuffle : bool
        Reshuffle every epoch with a generator seeded by ``seed``, so one seed gives one run.
    verbose : int
        0: silent. 1: one line per epoch, and a progress bar inside the epoch on a terminal.
    on_divergence : {"stop", "raise"}
        What a non-finite loss or parameter does: stop and record it in ``History.diverged``, or raise
        :class:`TrainingDiverged`.
    stationarity : bool
        Also record ``grad_norm = ||dJ/dtheta||`` on the training set after each epoch.
    callback : callable, optional
        ``callback(record)`` after each epoch's record.
    checkpoint : path, optional
        Write an HDF5 checkpoint (atomically) every ``checkpoint_every`` epochs and at the end.
    resume : path, optional
        Continue the run saved in this checkpoint: parameters, method state, shuffling state and
        history are restored, and training goes on up to ``epochs`` epochs in all. The model, method
        and batch size must match the checkpoint's (a :class:`~sibp_np.checkpoint.CheckpointError`
        names the first difference). On the NumPy backend with a fixed BLAS thread count, a resumed run
        is bitwise equal to an uninterrupted one.
    config : dict, optional
        Extra configuration recorded in the history and checkpoints (e.g. dataset name, split seed).
    eval_every : int, optional
        Also take a record every ``eval_every`` iterations inside an epoch (for curves against time);
        such records have ``epoch`` = the epoch in progress and ``epoch_float`` = iterations per epoch.
    time_budget : float, optional
        Stop (with a final record) once ``train_seconds`` in all exceed this many seconds.
    train_eval_size : int, optional
        Compute ``train_loss``/``train_acc`` on a fixed seeded subset of this many training samples
        instead of the whole set (cheaper curves; recorded in ``History.config``).

    Returns
    -------
    History
        Record 0 is the initial network; record e is after epoch e. ``train_loss``/``train_acc`` are
        evaluated on the whole training set after the epoch (as in the paper's Table 1);
        ``train_seconds`` is the time spent in update steps only; ``batch_loss`` is the mean of the
        minibatch losses that ``step`` returned.
    """
    if not isinstance(method, Method) and not callable(getattr(method, "step", None)):
        raise TypeError(f"method must have a step(model, X, y) method, got {type(method).__name__}")
    epochs = check_int("epochs", epochs, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    on_divergence = check_choice("on_divergence", on_divergence, ("stop", "raise"))
    verbose = check_int("verbose", verbose, minimum=0)
    X, y = model.check_Xy(X, y)
    n = X.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({n} samples)")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise TypeError("val must be a pair (X_val, y_val)")
        Xv, yv = model.check_Xy(*val)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if eval_every is not None:
        eval_every = check_int("eval_every", eval_every, minimum=1)
    if time_budget is not None:
        from ._validation import check_positive
        time_budget = check_positive("time_budget", time_budget)
    rng = np.random.default_rng(seed)
    Xe, ye = X, y
    if train_eval_size is not None:
        train_eval_size = check_int("train_eval_size", train_eval_size, minimum=1)
        if train_eval_size < n:
            sub = model.backend.asarray(np.sort(np.random.default_rng(0).permutation(n)[:train_eval_size]))
            Xe, ye = X[sub], y[sub]

    history = History({
        "layer_sizes": list(model.layer_sizes), "activation": model.activation.name,
        "dtype": model.dtype.name, "backend": model.backend.name, "loss": model.loss.name,
        "method": getattr(method, "name", type(method).__name__),
        "hyperparameters": method.hyperparameters() if hasattr(method, "hyperparameters") else {},
        "batch_size": batch_size, "shuffle": shuffle, "seed": seed, "n_train": n,
        "train_eval_size": train_eval_size, **(config or {}),
    })

    def record(epoch, iterations, batch_losses, seconds, elapsed):
        rec = {"epoch": epoch, "iterations": iterations, "epoch_float": iterations / n_batches}
        # finite parameters can still give overflowing logits: that is reported as divergence below
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            rec["train_loss"], rec["train_acc"] = model._evaluate(Xe, ye, warn=False)
            rec["val_loss"], rec["val_acc"] = (model._evaluate(Xv, yv, warn=False) if val is not None
                                               else (None, None))
        rec["batch_loss"] = float(np.mean(batch_losses)) if batch_losses else None
        rec["train_seconds"], rec["elapsed_seconds"] = seconds, elapsed
        if stationarity:
            rec["grad_norm"] = gradient_norm(model, X, y) if math.isfinite(rec["train_loss"]) else None
        history.append(rec)
        if callback is not None:
            callback(rec)
        if verbose:
            _print_record(rec, header=len(history) == 1)
        if not math.isfinite(rec["train_loss"]):
            return diverge(epoch, iterations, "the training-set loss is not finite (overflowing logits)")
        return None

    def diverge(epoch, iteration, reason):
        info = {"epoch": epoch, "iteration": iteration, "method": history.config["method"],
                "reason": reason}
        history.diverged = info
        if verbose:
            print(f"diverged at epoch {epoch}, iteration {iteration}: {reason}")
        if on_divergence == "raise":
            raise TrainingDiverged(info)
        return history

    n_batches = -(-n // batch_size)
    start, iterations, elapsed = 1, 0, 0.0
    if resume is not None:
        from .checkpoint import check_compatible, load_checkpoint
        ckpt = load_checkpoint(resume)
        check_compatible(ckpt, history.config, resume)
        model.set_params(ckpt["params"])
        method.load_state_dict(ckpt["method_state"], model.backend)
        rng.bit_generator.state = ckpt["rng_state"]
        old = History.from_dict(ckpt["history"])
        history.records, history.diverged = old.records, old.diverged
        start, iterations = ckpt["epoch"] + 1, ckpt["iteration"]
        elapsed = history.last.get("elapsed_seconds") or 0.0
        if verbose:
            print(f"resumed from {resume} after epoch {ckpt['epoch']} (iteration {iterations})")
        if history.diverged is not None:
            return history
    elif record(0, 0, [], 0.0, 0.0) is not None:
        return history

    def save(epoch):
        if checkpoint is not None:
            from .checkpoint import save_checkpoint
            save_checkpoint(checkpoint, model, method, rng=rng, epoch=epoch, iteration=iterations,
                            history=history)

    show_bar = verbose > 0 and sys.stderr.isatty()
    for epoch in range(start, epochs + 1):
        order = rng.permutation(n) if shuffle else np.arange(n)
        order_dev = model.backend.asarray(order)
        batch_losses, seconds = [], 0.0
        for j in range(n_batches):
            idx = order_dev[j * batch_size:(j + 1) * batch_size]
            Xb, yb = X[idx], y[idx]
            t0 = time.perf_counter()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # a diverging run overflows; it is detected just below and reported in History
                loss = method.step(model, Xb, yb)
            model.backend.synchronize()
            seconds += time.perf_counter() - t0
            iterations += 1
            batch_losses.append(loss)
            reason = None
            if not math.isfinite(loss):
                reason = f"minibatch loss is {loss}"
            elif not _params_finite(model):
                reason = "a parameter became NaN or inf"
            if reason is not None:
                if show_bar:
                    sys.stderr.write("\n")
                return diverge(epoch, iterations, reason)  # the last checkpoint keeps the last finite state
            if show_bar and (j % 20 == 0 or j == n_batches - 1):
                _progress(epoch, j + 1, n_batches, loss)
            out_of_time = time_budget is not None and elapsed + seconds >= time_budget
            if out_of_time or (eval_every and iterations % eval_every == 0 and j < n_batches - 1):
                if show_bar:
                    sys.stderr.write("\n")
                if record(epoch, iterations, batch_losses, seconds, elapsed + seconds) is not None \
                        or out_of_time:
                    return history
        if show_bar:
            sys.stderr.write("\r" + " " * 70 + "\r")
        elapsed += seconds
        if record(epoch, iterations, batch_losses, seconds, elapsed) is not None:
            return history
        if epoch % checkpoint_every == 0 or epoch == epochs:
            save(epoch)
    return history


def _params_finite(model):
    # one reduction per parameter and one host sync: a sum is finite iff no entry is NaN/inf
    # (barring an overflow of the sum itself, which only a diverging run reaches)
    xp = model.xp
    s = sum(xp.sum(p, dtype=xp.float64) for p in model.params())
    return math.isfinite(float(s))


def _progress(epoch, j, n, loss):
    width = 30
    done = int(width * j / n)
    sys.stderr.write(f"\repoch {epoch:3d} [{'#' * done}{'.' * (width - done)}] {j}/{n} loss {loss:.4f}")
    sys.stderr.flush()


def _print_record(rec, header=False):
    if header:
        print(f"{'epoch':>5} {'iters':>7} {'train_loss':>10} {'train_acc':>9} {'val_loss':>9} "
              f"{'val_acc':>8} {'seconds':>8}")
    fmt = lambda v, w, p: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"
    print(f"{rec['epoch']:>5d} {rec['iterations']:>7d} {fmt(rec['train_loss'], 10, 4)} "
          f"{fmt(rec['train_acc'], 9, 4)} {fmt(rec['val_loss'], 9, 4)} {fmt(rec['val_acc'], 8, 4)} "
          f"{fmt(rec['train_seconds'], 8, 2)}", flush=True)
