"""Callbacks: what :func:`sibp_np.fit` does besides stepping, as small objects with one interface.

A callback sees the :class:`~sibp_np.train.Run` in progress (model, method, history, epoch, iteration,
minibatch losses, seconds) at six points:

* ``on_train_begin(run)``: before the first record and step (after a resume, if any);
* ``on_epoch_begin(run)``: before an epoch's first step (``run.epoch`` is the new epoch);
* ``on_step_end(run)``: after every update step;
* ``on_record(run, record)``: after a record is appended to ``run.history`` (``record`` is that dict;
  a callback may add keys to it);
* ``on_epoch_end(run)``: after an epoch's record;
* ``on_train_end(run)``: once, when the loop is over (stopped early or not), before ``fit`` reports
  the test set.

``run.record()`` takes a record now (at most one per iteration), and ``run.stop()`` asks the loop to
stop cleanly: it returns the :class:`~sibp_np.history.History` after the current callback round.

>>> class StopAbove(Callback):          # stop once the validation accuracy reaches a target
...     def __init__(self, target):
...         self.target = target
...     def on_record(self, run, record):
...         if (record["val_acc"] or 0) >= self.target:
...             run.stop()
"""
import math
import sys

from ._validation import check_bool, check_choice, check_int, check_output_path, check_positive
from .checkpoint import keyed, save_checkpoint


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, run):
        pass

    def on_epoch_begin(self, run):
        pass

    def on_step_end(self, run):
        pass

    def on_record(self, run, record):
        pass

    def on_epoch_end(self, run):
        pass

    def on_train_end(self, run):
        pass

    # checkpoints: a callback whose decisions depend on the past keeps that past here
    def state_dict(self):
        """``(scalars, arrays)`` to checkpoint (a JSON-able dict and a dict of host arrays), or None
        for a callback without state."""
        return None

    def load_state_dict(self, scalars, arrays, run):
        """Restore what :meth:`state_dict` gave (called by ``fit(resume=...)`` before
        :meth:`on_train_begin`)."""


class TrainingDiverged(RuntimeError):
    """Raised by :func:`~sibp_np.fit` with ``on_divergence="raise"`` when a loss or parameter is not
    finite; ``info`` holds the epoch, iteration, method and reason."""

    def __init__(self, info):
        self.info = info
        super().__init__(f"training diverged at epoch {info['epoch']}, iteration {info['iteration']} "
                         f"({info['method']}): {info['reason']}")


class DivergenceCheck(Callback):
    """Stop (``"stop"``: recorded in ``History.diverged``) or raise :class:`TrainingDiverged`
    (``"raise"``) when a minibatch loss, a parameter, or the training-set loss of a record is not
    finite. The last checkpoint keeps the last finite state."""

    def __init__(self, on_divergence="stop", verbose=0):
        self.on_divergence = check_choice("on_divergence", on_divergence, ("stop", "raise"))
        self.verbose = verbose

    def on_step_end(self, run):
        loss = run.batch_losses[-1]
        if not math.isfinite(loss):
            self._diverge(run, f"minibatch loss is {loss}")
        elif not run.model.params_finite():
            self._diverge(run, "a parameter became NaN or inf")

    def on_record(self, run, record):
        if not math.isfinite(record["train_loss"]):
            what = ("the outputs are so far from the targets that their squared error overflows"
                    if run.model.task == "regression" else "the logits overflow the softmax")
            self._diverge(run, f"the training-set loss is not finite ({what})")

    def _diverge(self, run, reason):
        info = {"epoch": run.epoch, "iteration": run.iteration, "method": run.history.config["method"],
                "reason": reason}
        run.history.diverged = info
        if self.verbose:
            print(f"diverged at epoch {run.epoch}, iteration {run.iteration}: {reason}")
        if self.on_divergence == "raise":
            raise TrainingDiverged(info)
        run.stop()


class EvalEvery(Callback):
    """Take a record every ``eval_every`` iterations inside an epoch too (for curves against time)."""

    def __init__(self, eval_every):
        self.eval_every = check_int("eval_every", eval_every, minimum=1)

    def on_step_end(self, run):
        if run.iteration % self.eval_every == 0:
            run.record()


class TimeBudget(Callback):
    """Take a final record and stop once the update steps have taken ``time_budget`` seconds in all."""

    def __init__(self, time_budget):
        self.time_budget = check_positive("time_budget", time_budget)

    def on_step_end(self, run):
        if run.elapsed_seconds >= self.time_budget:
            run.record()
            run.stop()


class GradientNorm(Callback):
    """Add ``grad_norm = ||dJ/dtheta||`` on the whole training set to every record (Proposition 1's
    stationarity measure; ``None`` when the training loss is not finite)."""

    def on_record(self, run, record):
        finite = math.isfinite(record["train_loss"])
        record["grad_norm"] = run.model.gradient_norm(run.X, run.y) if finite else None


class Checkpoint(Callback):
    """Write an HDF5 checkpoint to ``path`` (atomically) every ``checkpoint_every`` epochs and after the
    last one (:mod:`sibp_np.checkpoint`)."""

    def __init__(self, path, checkpoint_every=1):
        self.path = check_output_path("checkpoint", path, (".h5", ".hdf5"))
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)

    def on_epoch_end(self, run):
        if run.epoch % self.checkpoint_every == 0 or run.epoch == run.epochs:
            states = {key: st for key, c in keyed(run.callbacks) if (st := c.state_dict()) is not None}
            save_checkpoint(self.path, run.model, run.method, rng=run.rng, epoch=run.epoch,
                            iteration=run.iteration, history=run.history, callbacks=states)


class OnRecord(Callback):
    """Call ``fn(record)`` after every record (``fit``'s ``callback=`` shortcut)."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {fn!r}")
        self.fn = fn

    def on_record(self, run, record):
        self.fn(record)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs, and restore the best parameters.

    Parameters
    ----------
    monitor : str
        A record key: ``"val_loss"`` (default), ``"val_acc"``, ``"train_loss"``, ..., or for a
        regression ``"val_mse"``, ``"val_r2"``. Losses and MSE must decrease, accuracy and R^2 increase.
    patience : int >= 1
        Epochs without an improvement before the run stops.
    min_delta : float >= 0
        The least change that counts as an improvement.
    restore_best : bool
        When training ends (stopped here or at the epoch limit), put back the parameters of the best
        epoch's record. The records themselves are not changed: the last one is still the last epoch's.

    Only epoch-end records count (and the initial one, as the baseline); records taken inside an
    epoch (``eval_every``) do not. ``history.summary["early_stopping"]`` tells the best epoch, its
    value, where the run stopped and whether the parameters were restored.
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, restore_best=True):
        if not isinstance(monitor, str) or "_" not in monitor:
            raise ValueError(f"monitor must be a record key such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.patience = check_int("patience", patience, minimum=1)
        self.min_delta = check_positive("min_delta", min_delta, allow_zero=True)
        self.restore_best = check_bool("restore_best", restore_best)
        self.sign = -1.0 if monitor.endswith(("_acc", "_r2")) else 1.0  # to be minimised: sign * value

    def state_dict(self):
        scalars = {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
                   "wait": self.wait, "stopped_epoch": self.stopped_epoch}
        return scalars, dict(self.best_params or {})

    def load_state_dict(self, scalars, arrays, run):
        if scalars.get("monitor") != self.monitor:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r} but the checkpoint's monitored "
                             f"{scalars.get('monitor')!r}")
        best, wait = scalars.get("best"), scalars.get("wait")
        if not (best is None or isinstance(best, (int, float))) or not isinstance(wait, int) or wait < 0:
            raise ValueError(f"EarlyStopping's checkpointed state is not valid: {scalars!r:.200}")
        shapes = {k: tuple(v.shape) for k, v in run.model.get_params().items()}
        if arrays and {k: tuple(v.shape) for k, v in arrays.items()} != shapes:
            raise ValueError("EarlyStopping's checkpointed best parameters do not fit the model")
        self.best, self.best_epoch, self.wait = best, scalars.get("best_epoch"), wait
        self.stopped_epoch = scalars.get("stopped_epoch")
        self.best_params = {k: v.copy() for k, v in arrays.items()} if arrays else None
        self._restored = True

    def on_train_begin(self, run):
        restored, self._restored = getattr(self, "_restored", False), False
        split, metric = self.monitor.split("_", 1)
        known = ("loss", "mse", "r2") if run.model.task == "regression" else ("loss", "acc")
        if split not in ("train", "val") or metric not in known:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}): a {run.model.task} run records "
                             f"{', '.join(f'{s}_{m}' for s in ('train', 'val') for m in known)}")
        if split == "val" and run.val is None:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}) needs val=(X_val, y_val) in fit")
        if not restored:  # a resumed run goes on from the checkpointed best and patience
            self.best = self.best_epoch = self.best_params = self.stopped_epoch = None
            self.wait = 0

    def on_record(self, run, record):
        if record["iterations"] % run.n_batches:  # inside an epoch
            return
        value = record[self.monitor]
        if value is None or not math.isfinite(value):
            return  # a diverging run: DivergenceCheck reports it
        if self.best is None or self.sign * (value - self.best) < -self.min_delta:
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self.best_params = run.model.get_params()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = record["epoch"]
            run.stop()

    def on_train_end(self, run):
        restored = (self.restore_best and self.best_params is not None
                    and self.best_epoch != run.history.last.get("epoch"))
        if restored:
            run.model.set_params(self.best_params)
        run.history.summary["early_stopping"] = {
            "monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch, "restored": bool(restored)}


#: the named step-size schedules: the factor on the initial step at epoch e of E (e = 1, ..., E)
SCHEDULES = {
    "constant": lambda e, E: 1.0,
    "inverse": lambda e, E: 1.0 / e,
    "cosine": lambda e, E: 0.5 * (1.0 + math.cos(math.pi * (e - 1) / E)),
}


class StepSchedule(Callback):
    """Set the method's step size (``lr`` or ``eta``) at the start of every epoch.

    ``schedule`` is ``"constant"``, ``"inverse"`` (the initial step divided by the epoch number),
    ``"cosine"`` (half a cosine from the initial step down towards 0 over the run's epochs), or a
    callable ``schedule(epoch) -> step size`` (epochs count from 1). The value goes through the
    method's validated setter, and every record shows the value in use under the parameter's name.
    """

    def __init__(self, schedule, param=None):
        if not callable(schedule):
            schedule = check_choice("schedule", schedule, tuple(SCHEDULES))
        self.schedule, self.param = schedule, param

    def on_train_begin(self, run):
        names = getattr(run.method, "hyperparameter_names", lambda: [])()
        param = self.param or next((p for p in ("lr", "eta") if p in names), None)
        if param is None or param not in names:
            raise ValueError(f"schedule: {type(run.method).__name__} has no step size to schedule "
                             f"(no 'lr' or 'eta' hyperparameter)")
        self.name, self.initial = param, getattr(run.method, param)
        if callable(self.schedule):
            self._set(run, 1)  # a bad value fails before any work

    def _set(self, run, epoch):
        if callable(self.schedule):
            value = self.schedule(epoch)
        else:
            value = self.initial * SCHEDULES[self.schedule](epoch, run.epochs)
        setattr(run.method, self.name, value)

    def on_epoch_begin(self, run):
        self._set(run, run.epoch)

    def on_record(self, run, record):
        record[self.name] = getattr(run.method, self.name)


class ProgressTable(Callback):
    """Print one table row per record on stdout, and a progress bar inside the epoch on a terminal."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream
        self.bar = False

    def on_step_end(self, run):
        err = sys.stderr
        j = (run.iteration - 1) % run.n_batches
        if err.isatty() and (j % 20 == 0 or j == run.n_batches - 1):
            done = int(self.WIDTH * (j + 1) / run.n_batches)
            err.write(f"\repoch {run.epoch:3d} [{'#' * done}{'.' * (self.WIDTH - done)}] "
                      f"{j + 1}/{run.n_batches} loss {run.batch_losses[-1]:.4f}")
            err.flush()
            self.bar = True

    def on_record(self, run, record):
        if self.bar:
            sys.stderr.write("\r" + " " * 70 + "\r")
            self.bar = False
        out = self.stream or sys.stdout
        score = "r2" if "train_r2" in record else "acc"  # R^2 for a regression, accuracy otherwise
        columns = (("train_loss", 10, 4), (f"train_{score}", 9, 4), ("val_loss", 9, 4),
                   (f"val_{score}", 8, 4), ("train_seconds", 8, 2))
        # the step in use, where a schedule changes it (StepSchedule records it as "eta" or "lr")
        columns += tuple((k, 9, None) for k in ("eta", "lr") if k in record)
        if len(run.history) == 1:
            print(f"{'epoch':>5} {'iters':>7} " + " ".join(f"{k.replace('train_seconds', 'seconds'):>{w}}"
                                                          for k, w, _ in columns), file=out)
        row = [_cell(record[k], w, p) for k, w, p in columns]
        print(f"{record['epoch']:>5d} {record['iterations']:>7d} " + " ".join(row), file=out, flush=True)


def _cell(value, width, places):
    """``value`` right-aligned: ``places`` decimals, or 4 significant digits where ``places`` is None."""
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.4g}" if places is None else f"{value:>{width}.{places}f}"
