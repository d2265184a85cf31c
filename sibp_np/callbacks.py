"""Callbacks: what :func:`sibp_np.fit` does besides stepping, as small objects with one interface.

A callback sees the :class:`~sibp_np.train.Run` in progress (model, method, history, epoch, iteration,
minibatch losses, seconds) at four points:

* ``on_train_begin(run)``: before the first step (after a resume, if any);
* ``on_step_end(run)``: after every update step;
* ``on_record(run, record)``: after a record is appended to ``run.history`` (``record`` is that dict;
  a callback may add keys to it);
* ``on_epoch_end(run)``: after an epoch's record.

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

from ._validation import check_choice, check_int, check_positive
from .checkpoint import save_checkpoint


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, run):
        pass

    def on_step_end(self, run):
        pass

    def on_record(self, run, record):
        pass

    def on_epoch_end(self, run):
        pass


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
            self._diverge(run, "the training-set loss is not finite (overflowing logits)")

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
        self.path = path
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)

    def on_epoch_end(self, run):
        if run.epoch % self.checkpoint_every == 0 or run.epoch == run.epochs:
            save_checkpoint(self.path, run.model, run.method, rng=run.rng, epoch=run.epoch,
                            iteration=run.iteration, history=run.history)


class OnRecord(Callback):
    """Call ``fn(record)`` after every record (``fit``'s ``callback=`` shortcut)."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {fn!r}")
        self.fn = fn

    def on_record(self, run, record):
        self.fn(record)


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
        if len(run.history) == 1:
            print(f"{'epoch':>5} {'iters':>7} {'train_loss':>10} {'train_acc':>9} {'val_loss':>9} "
                  f"{'val_acc':>8} {'seconds':>8}", file=out)
        row = [_cell(record[k], w, p) for k, w, p in (("train_loss", 10, 4), ("train_acc", 9, 4),
               ("val_loss", 9, 4), ("val_acc", 8, 4), ("train_seconds", 8, 2))]
        print(f"{record['epoch']:>5d} {record['iterations']:>7d} " + " ".join(row), file=out, flush=True)


def _cell(value, width, places):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{places}f}"
