"""The training loop: ``fit(model, method, X, y, ...) -> History``.

``fit`` reads top to bottom: shuffle, step, record, callbacks. Everything else it can do (divergence
checks, periodic records, time budgets, checkpoints, the progress table) is a callback
(:mod:`sibp_np.callbacks`); its keyword arguments are shortcuts that build them.
"""
import inspect
import time

import numpy as np

from . import callbacks as cb
from ._validation import check_int, check_seed
from .callbacks import TrainingDiverged
from .checkpoint import keyed, resume_run
from .environment import environment
from .history import METRICS, History
from .methods import Method

__all__ = ["fit", "Run", "History", "METRICS", "TrainingDiverged"]


#: what fit records in ``History.config`` itself (``config=`` may add keys, not change these)
RECORDED = ("layer_sizes", "activation", "dtype", "backend", "loss", "method", "hyperparameters",
            "batch_size", "shuffle", "seed", "n_train", "train_eval_size", "architecture")


def _architecture(model):
    """``model.architecture()`` (what a checkpoint rebuilds the network from), or None for a network
    with an unregistered activation or loss, which no file can name."""
    try:
        return model.architecture()
    except TypeError:
        return None


class Run:
    """A training run in progress: what callbacks see.

    Attributes
    ----------
    model, method, history, rng :
        The model, the method, the :class:`History` being filled, and the shuffling generator.
    X, y : arrays
        The (checked) training set.
    epoch, epochs : int
        The epoch in progress (0 before the first) and the last one.
    iteration : int
        Update steps taken so far, over all epochs.
    n_batches : int
        Minibatches per epoch.
    batch_losses : list of float
        This epoch's minibatch losses (what ``step`` returned).
    epoch_seconds, elapsed_seconds : float
        Seconds spent in update steps in this epoch, and in all (resumed runs included).
    stopped : bool
        Set by :meth:`stop`.
    """

    def __init__(self, model, method, X, y, *, val, epochs, batch_size, shuffle, seed, train_eval_size,
                 config, callbacks, test=None):
        if not isinstance(method, Method) and not callable(getattr(method, "step", None)):
            raise TypeError(f"method must have a step(model, X, y) method, got {type(method).__name__}")
        if hasattr(method, "check_model"):
            method.check_model(model)
        self.epochs = check_int("epochs", epochs, minimum=0)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.X, self.y = model.check_Xy(X, y)
        n = self.X.shape[0]
        if self.batch_size > n:
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({n} samples)")
        if val is not None and (not isinstance(val, (tuple, list)) or len(val) != 2):
            raise TypeError("val must be a pair (X_val, y_val)")
        self.val = None if val is None else model.check_Xy(*val, names=("X_val", "y_val"))
        if test is not None and (not isinstance(test, (tuple, list)) or len(test) != 2):
            raise TypeError("test must be a pair (X_test, y_test)")
        self.test = None if test is None else model.check_Xy(*test, names=("X_test", "y_test"))
        self.eval_set = self.X, self.y
        if train_eval_size is not None:
            train_eval_size = check_int("train_eval_size", train_eval_size, minimum=1)
            if train_eval_size < n:
                rows = np.sort(np.random.default_rng(0).permutation(n)[:train_eval_size])
                rows = model.backend.asarray(rows)
                self.eval_set = self.X[rows], self.y[rows]
        bad = [c for c in callbacks if not isinstance(c, cb.Callback)]
        if bad:
            raise TypeError(f"callbacks must be sibp_np.Callback instances, got {bad[0]!r}")
        self.model, self.method, self.callbacks, self.shuffle = model, method, list(callbacks), shuffle
        self._takes_checked = "checked" in inspect.signature(method.step).parameters
        self.rng = np.random.default_rng(check_seed("seed", seed))
        reserved = sorted(set(config or {}) & set(RECORDED))
        if reserved:
            raise ValueError(f"config may not set {reserved}: fit records them from the model, method "
                             f"and data")
        self.history = History({
            "layer_sizes": list(model.layer_sizes), "activation": model.activation.name,
            "dtype": model.dtype.name, "backend": model.backend.name, "loss": model.loss.name,
            "method": getattr(method, "name", type(method).__name__),
            "hyperparameters": method.hyperparameters() if hasattr(method, "hyperparameters") else {},
            "batch_size": self.batch_size, "shuffle": shuffle, "seed": seed, "n_train": n,
            "train_eval_size": train_eval_size, "architecture": _architecture(model), **(config or {})},
            environment())
        self.n_batches = -(-n // self.batch_size)
        self.epoch, self.iteration, self.stopped = 0, 0, False
        self.batch_losses, self.epoch_seconds, self.seconds_before = [], 0.0, 0.0
        self.recorded_at = None

    @property
    def elapsed_seconds(self):
        return self.seconds_before + self.epoch_seconds

    def step(self, X_b, y_b):
        """``method.step`` on a minibatch of the checked training set, telling a method that takes
        ``checked`` (every built-in one) not to check it again."""
        if self._takes_checked:
            return self.method.step(self.model, X_b, y_b, checked=True)
        return self.method.step(self.model, X_b, y_b)

    def stop(self):
        """Ask the loop to return the history once the current callbacks have run."""
        self.stopped = True

    def restore(self, ckpt, history):
        """Go on from a checkpoint (:func:`sibp_np.checkpoint.load_checkpoint`'s dict) and its
        :class:`History`: the parameters, the method's state, the shuffling state, the callbacks' state,
        the history, the epoch and iteration. A run whose history ended in divergence is restored as
        stopped. Bad contents raise ``ValueError``/``TypeError``/``KeyError``."""
        self.model.set_params(ckpt["params"])
        self.method.load_state_dict(ckpt["method_state"], self.model.backend)
        if hasattr(self.method, "check_state"):
            self.method.check_state(self.model)
        self.rng.bit_generator.state = ckpt["rng_state"]
        for key, c in keyed(self.callbacks):  # those with a past (EarlyStopping) go on from it
            saved = ckpt["callbacks"].get(key)
            if saved is not None:
                if not isinstance(saved[0], dict):
                    raise ValueError(f"the state of callback {type(c).__name__} is not an object")
                c.load_state_dict(saved[0], saved[1], self)
        self.history.records, self.history.diverged = history.records, history.diverged
        self.epoch = ckpt["epoch"]
        self.iteration = self.recorded_at = ckpt["iteration"]
        self.seconds_before = self.history.last.get("elapsed_seconds") or 0.0
        if self.history.diverged is not None:
            self.stop()

    def notify(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def minibatches(self):
        """Start the next epoch and yield its minibatches ``(X_b, y_b)`` in shuffled order."""
        self.epoch += 1
        self.seconds_before += self.epoch_seconds
        self.batch_losses, self.epoch_seconds = [], 0.0
        self.notify("on_epoch_begin")
        order = self.rng.permutation(self.X.shape[0]) if self.shuffle else np.arange(self.X.shape[0])
        order = self.model.backend.asarray(order)
        for j in range(self.n_batches):
            rows = order[j * self.batch_size:(j + 1) * self.batch_size]
            yield self.X[rows], self.y[rows]

    def end_step(self, loss, seconds):
        self.iteration += 1
        self.batch_losses.append(loss)
        self.epoch_seconds += seconds

    def record(self):
        """Append a record of the network now (at most one per iteration) and tell the callbacks."""
        if self.recorded_at == self.iteration:
            return
        self.recorded_at = self.iteration
        rec = {"epoch": self.epoch, "iterations": self.iteration,
               "epoch_float": self.iteration / self.n_batches}
        # finite parameters can still give overflowing logits: DivergenceCheck reports them
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            train = self.model.metrics(*self.eval_set, warn=False)
            val = dict.fromkeys(train) if self.val is None else \
                self.model.metrics(*self.val, warn=False)
        rec.update({f"train_{k}": v for k, v in train.items()})
        rec.update({f"val_{k}": v for k, v in val.items()})
        rec["batch_loss"] = float(np.mean(self.batch_losses)) if self.batch_losses else None
        rec["train_seconds"], rec["elapsed_seconds"] = self.epoch_seconds, self.elapsed_seconds
        self.history.append(rec)
        self.notify("on_record", self.history.last)

    def finish(self):
        """End the run: ``on_train_end``, then the test-set metrics (once) into ``history.summary``."""
        self.notify("on_train_end")
        if self.test is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                metrics = self.model.metrics(*self.test, warn=False)
            self.history.summary["test"] = {f"test_{k}": v for k, v in metrics.items()}
        return self.history


def shortcut_callbacks(*, verbose, on_divergence, stationarity, callback, checkpoint, checkpoint_every,
                       eval_every, time_budget, schedule=None):
    """The callbacks that ``fit``'s keyword arguments stand for, in the order they run."""
    verbose = check_int("verbose", verbose, minimum=0)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    out = [cb.DivergenceCheck(on_divergence, verbose)]
    out += [cb.StepSchedule(schedule)] if schedule is not None else []
    out += [cb.GradientNorm()] if stationarity else []
    out += [cb.OnRecord(callback)] if callback is not None else []
    out += [cb.ProgressTable()] if verbose else []
    out += [cb.Checkpoint(checkpoint, checkpoint_every)] if checkpoint is not None else []
    out += [cb.EvalEvery(eval_every)] if eval_every is not None else []
    out += [cb.TimeBudget(time_budget)] if time_budget is not None else []
    return out


def fit(model, method, X, y, *, val=None, epochs, batch_size=100, shuffle=True, seed=None, verbose=1,
        on_divergence="stop", stationarity=False, callback=None, checkpoint=None, checkpoint_every=1,
        resume=None, config=None, eval_every=None, time_budget=None, train_eval_size=None,
        callbacks=(), schedule=None, test=None):
    """Train ``model`` with ``method`` for ``epochs`` passes over ``(X, y)``; returns a :class:`History`.

    Parameters
    ----------
    model, method : MLP, and anything with ``step(model, X, y) -> float`` (SGD, ..., SIBP)
    X, y : arrays, shapes (n_samples, n_features) and labels (n_samples,) or regression targets
    val, test : (X_val, y_val), (X_test, y_test), optional
        The test set is evaluated once, after training, into ``history.summary["test"]``.
    epochs, batch_size : int
        Passes over the data (>= 0), and the minibatch size (the last minibatch holds the remainder).
    shuffle, seed :
        Reshuffle every epoch with a generator seeded by ``seed``, so one seed gives one run.
    callbacks : sequence of Callback
        Run after those the shortcuts build: ``verbose`` (:class:`ProgressTable`), ``on_divergence``
        ``"stop"``/``"raise"`` (:class:`DivergenceCheck`, always on), ``stationarity``
        (:class:`GradientNorm`), ``callback(record)`` (:class:`OnRecord`), ``checkpoint`` and
        ``checkpoint_every`` (:class:`Checkpoint`), ``eval_every`` (:class:`EvalEvery`), ``time_budget``
        in seconds of update steps (:class:`TimeBudget`), ``schedule`` of the step size: "constant",
        "inverse", "cosine" or ``f(epoch)`` (:class:`StepSchedule`).
    resume : path, optional
        Continue the checkpointed run up to ``epochs`` epochs in all; the model, method and batch size
        must match. With NumPy and a fixed BLAS thread count it is bitwise equal to an unbroken run.
    config, train_eval_size :
        Extra configuration recorded in the history and checkpoints (e.g. the dataset's name); compute
        ``train_loss``/``train_acc`` on a fixed seeded subset of this many training samples.

    Returns History: record 0 is the initial network, record e is after epoch e (training metrics on
    the whole training set, as in Table 1); ``train_seconds`` is the epoch's time in update steps.
    """
    callbacks = shortcut_callbacks(
        verbose=verbose, on_divergence=on_divergence, stationarity=stationarity, callback=callback,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, eval_every=eval_every,
        time_budget=time_budget, schedule=schedule) + list(callbacks)
    run = Run(model, method, X, y, val=val, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
              seed=seed, train_eval_size=train_eval_size, config=config, callbacks=callbacks, test=test)
    if resume is not None:
        resume_run(run, resume, verbose=verbose)
    run.notify("on_train_begin")
    if resume is None:
        run.record()
    while not run.stopped and run.epoch < run.epochs:
        for X_b, y_b in run.minibatches():
            t0 = time.perf_counter()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss = run.step(X_b, y_b)  # a diverging run overflows: DivergenceCheck
            model.backend.synchronize()
            run.end_step(loss, time.perf_counter() - t0)
            run.notify("on_step_end")
            if run.stopped:
                break
        else:
            run.record()
            if not run.stopped:
                run.notify("on_epoch_end")
    return run.finish()
