"""Backtracking line search on a scalar function ``phi(alpha)``.

The search knows no arrays: the caller hands it ``phi`` (for SIBP, one fused reduction plus a closed-form
quadratic, so a trial costs no matrix product), ``phi(0)``, the slope ``phi'(0) < 0`` and a first step.
"""
import dataclasses
import math


@dataclasses.dataclass
class LineSearchResult:
    """Outcome of :func:`armijo_backtracking`.

    Attributes
    ----------
    alpha : float
        Accepted step (0.0 when no trial was accepted).
    phi : float
        ``phi(alpha)`` (``phi(0)`` when rejected).
    trials : int
        Number of evaluations of ``phi``.
    accepted : bool
    """

    alpha: float
    phi: float
    trials: int
    accepted: bool


def armijo_backtracking(phi, phi0, dphi0, alpha0=1.0, c1=1e-4, shrink=0.5, max_trials=20):
    """First ``alpha = alpha0 * shrink^m`` (m = 0, 1, ...) that satisfies the Armijo condition

    ``phi(alpha) <= phi0 + c1 * alpha * dphi0``,

    trying at most ``max_trials`` steps. A trial that gives a non-finite value counts as failed. Every
    accepted step is returned (the first trial included).

    Parameters
    ----------
    phi : callable float -> float
    phi0 : float
        ``phi(0)``.
    dphi0 : float
        ``phi'(0)``; must be negative (a descent direction).
    alpha0 : float > 0
    c1 : float in (0, 1)
    shrink : float in (0, 1)
    max_trials : int >= 1
    """
    if not dphi0 < 0:
        raise ValueError(f"dphi0 must be negative (a descent direction), got {dphi0!r}")
    if not (alpha0 > 0 and math.isfinite(alpha0)):
        raise ValueError(f"alpha0 must be a finite positive step, got {alpha0!r}")
    alpha = alpha0
    for trial in range(1, max_trials + 1):
        value = phi(alpha)
        if math.isfinite(value) and value <= phi0 + c1 * alpha * dphi0:
            return LineSearchResult(alpha, value, trial, True)
        alpha *= shrink
    return LineSearchResult(0.0, phi0, max_trials, False)


def armijo_batched(phi_multi, phi0, dphi0, alpha0, xp, c1=1e-4, shrink=0.5, trials=4):
    """:func:`armijo_backtracking` with its first ``trials`` steps evaluated at once, on the device.

    ``phi_multi(alphas)`` returns ``phi`` at every step of ``alphas = alpha0 shrink^m``
    (m = 0 ... trials - 1) in one pass. The first step that satisfies the Armijo condition (and gives a
    finite value) is chosen on the device: ``phi0``, ``dphi0`` and ``alpha0`` are 0-d arrays, and so is
    everything returned, so the search reads nothing back to the host.

    Whenever the sequential search accepts within ``trials`` steps this accepts the same step (exactly,
    when ``shrink`` is a power of 2, as the default 0.5 is; otherwise the steps ``alpha0 shrink^m`` may
    differ from the sequential ``((alpha0 shrink) shrink) ...`` in the last bit). Where it would need
    more, this one rejects: ``alpha = 0``, and the caller restarts along ``-g``.

    Returns
    -------
    alpha, phi, trials_used, accepted : 0-d arrays
        The accepted step (0 when rejected), ``phi`` there (``phi0`` when rejected), the number of
        trials the sequential search would have made (``trials`` when rejected), and whether a step was
        accepted.
    """
    alphas = alpha0 * shrink ** xp.arange(trials, dtype=xp.float64)
    values = phi_multi(alphas)
    ok = xp.isfinite(values) & (values <= phi0 + c1 * alphas * dphi0)
    first = xp.argmax(ok)
    accepted = ok.any()
    alpha = xp.where(accepted, alphas[first], 0.0)
    phi = xp.where(accepted, values[first], phi0)
    used = xp.where(accepted, first + 1, trials)
    return alpha, phi, used, accepted
