"""The Armijo line searches (sibp_np.linesearch): the condition holds for every accepted step, trials are
bounded, and the batched search of the device path picks the sequential search's step."""
import math

import numpy as np
import pytest
from _helpers import assert_armijo

from sibp_np.linesearch import armijo_backtracking, armijo_batched


def test_armijo_property_and_bounded_trials():
    calls = []

    def phi(a):
        return (calls.append(a), (a - 2.0) ** 2 + abs(a - 1.0))[1]  # nonsmooth, phi'(0) = -5
    res = armijo_backtracking(phi, phi(0.0), -5.0, alpha0=8.0, c1=0.3, shrink=0.5)
    assert res.accepted and res.phi <= phi(0.0) + 0.3 * res.alpha * -5.0
    assert res.alpha == 2.0 and res.trials == 3  # 8 and 4 fail, 2 is the first that passes
    res = armijo_backtracking(lambda a: float("inf"), 1.0, -1.0, max_trials=7)
    assert not res.accepted and res.trials == 7 and res.alpha == 0.0
    with pytest.raises(ValueError, match="dphi0 must be negative"):
        armijo_backtracking(phi, 1.0, 0.5)


@pytest.mark.parametrize("seed", range(20))
def test_every_accepted_step_satisfies_armijo_and_is_the_first_that_does(seed):
    # random smooth and nonsmooth 1-D functions with phi'(0) < 0: the accepted step is the first of
    # alpha0, alpha0 shrink, ... that passes, and each rejected trial failed the condition
    r = np.random.default_rng(seed)
    a, b, c = r.uniform(0.1, 5.0), r.uniform(0.1, 3.0), r.uniform(0.0, 2.0)
    dphi0 = -b

    def phi(alpha):
        return a * alpha ** 2 - b * alpha + c * abs(math.sin(alpha)) * alpha ** 2
    c1, shrink = r.uniform(1e-4, 0.5), r.uniform(0.2, 0.8)
    alpha0 = r.uniform(0.1, 20.0)
    res = armijo_backtracking(phi, phi(0.0), dphi0, alpha0=alpha0, c1=c1, shrink=shrink, max_trials=60)
    assert_armijo(res, phi(0.0), dphi0, c1)
    assert res.accepted  # a descent direction of a function smooth at 0: a small enough step passes
    assert res.alpha == pytest.approx(alpha0 * shrink ** (res.trials - 1), rel=1e-12)
    for k in range(res.trials - 1):  # every earlier trial failed
        t = alpha0 * shrink ** k
        assert phi(t) > phi(0.0) + c1 * t * dphi0


@pytest.mark.parametrize("max_trials", [1, 3, 8])
def test_a_search_with_no_acceptable_step_stops_at_its_bound(max_trials):
    calls = []

    def phi(alpha):
        calls.append(alpha)
        return 1.0 + alpha  # rises along the "descent" direction: no step passes
    res = armijo_backtracking(phi, 1.0, -1.0, max_trials=max_trials)
    assert_armijo(res, 1.0, -1.0, 1e-4)
    assert not res.accepted and res.trials == max_trials == len(calls)


def test_batched_armijo_picks_the_sequential_step_or_rejects_past_its_trials():
    def phi(alpha):  # a quadratic with minimum at 0.1: from 1.6 the search halves 4 times
        return (alpha - 0.1) ** 2 - 0.01

    def phi_multi(alphas):
        return (alphas - 0.1) ** 2 - 0.01
    seq = armijo_backtracking(phi, 0.0, -0.2, 1.6)
    for trials in (seq.trials, seq.trials + 3):
        alpha, value, used, accepted = armijo_batched(phi_multi, np.float64(0.0), np.float64(-0.2),
                                                      np.float64(1.6), np, trials=trials)
        assert bool(accepted) and float(alpha) == seq.alpha and float(value) == seq.phi
        assert int(used) == seq.trials
    alpha, value, used, accepted = armijo_batched(phi_multi, np.float64(0.0), np.float64(-0.2),
                                                  np.float64(1.6), np, trials=seq.trials - 1)
    assert not bool(accepted) and float(alpha) == 0.0 and float(value) == 0.0 and int(used) == seq.trials - 1
