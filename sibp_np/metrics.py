"""Scores of a network on a dataset: the loss, the accuracy, and R^2 as scikit-learn computes it.

Pure functions of a model and arrays; :meth:`sibp_np.MLP.evaluate` and :meth:`sibp_np.MLP.metrics` call
them. The forward passes run ``chunk`` rows at a time, which bounds the memory of the activations.
"""
import math
import warnings

import numpy as np

from ._validation import check_int


def r2_score(ss_res, ss_tot):
    """The coefficient of determination averaged over the outputs, as ``sklearn.metrics.r2_score``:
    ``1 - ss_res / ss_tot`` per output, where an output with constant targets (``ss_tot = 0``) scores 1
    when it is fitted exactly and 0 otherwise.

    Parameters
    ----------
    ss_res, ss_tot : arrays, shape (n_outputs,)
        ``sum_n (F_N - Y)^2`` and ``sum_n (Y - mean(Y))^2`` per output.
    """
    ss_res, ss_tot = np.asarray(ss_res, dtype=np.float64), np.asarray(ss_tot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res == 0, 1.0, 0.0))
    return float(r2.mean())


def metrics(model, X, y, chunk=4096, warn=True):
    """``{"loss", "acc"}`` for classification, ``{"loss", "mse", "r2"}`` for a regression, of ``model``
    on ``(X, y)``. ``mse`` is the mean of ``(F_N - Y)^2`` over all entries; ``r2``: :func:`r2_score`."""
    X, y = model.check_Xy(X, y)
    chunk = check_int("chunk", chunk, minimum=1)
    n, xp, backend = X.shape[0], model.xp, model.backend
    regression = model.task == "regression"
    total_loss, correct, ss_res = 0.0, 0, 0.0
    for s in range(0, n, chunk):
        F_N, ys = model.forward(X[s:s + chunk], check=False, chunk=chunk), y[s:s + chunk]
        total_loss += model.loss.value(F_N, ys) * F_N.shape[0]
        if regression:
            ss_res = ss_res + ((F_N - ys) ** 2).sum(axis=0, dtype=xp.float64)
        else:
            correct += int(backend.to_float((F_N.argmax(axis=1) == ys).sum()))
    out = {"loss": total_loss / n}
    if warn and not math.isfinite(out["loss"]):
        warn_nonfinite(np.array([out["loss"]]), "evaluate")
    if not regression:
        out["acc"] = correct / n
        return out
    ss_res = backend.to_host(ss_res)
    yc = y - y.mean(axis=0, dtype=xp.float64)
    out["mse"] = float(ss_res.sum()) / y.size
    out["r2"] = r2_score(ss_res, backend.to_host((yc * yc).sum(axis=0)))
    return out


def gradient_norm(model, X, y, chunk=4096):
    """``||dJ/dtheta||`` of the batch-mean loss on all of ``(X, y)`` (Proposition 1's stationarity),
    accumulated ``chunk`` rows at a time."""
    X, y = model.check_Xy(X, y)
    n = X.shape[0]
    total = None
    for s in range(0, n, chunk):
        G, F = model.forward_cache(X[s:s + chunk])
        g = model.backward(G, F, model.loss.sample_grad(F[-1], y[s:s + chunk]) / F[-1].dtype.type(n))
        total = g if total is None else [a + b for a, b in zip(total, g)]
    return math.sqrt(sum(model.backend.to_float(model.xp.vdot(a.ravel(), a.ravel())) for a in total))


def warn_nonfinite(arr, where):
    """A ``RuntimeWarning`` when ``arr`` (host) holds NaN or inf: the model's output is not finite."""
    if not np.isfinite(np.asarray(arr)).all():
        warnings.warn(f"{where}: the model's output is not finite (diverged parameters?)",
                      RuntimeWarning, stacklevel=3)
