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
