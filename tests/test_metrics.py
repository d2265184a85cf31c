"""sibp_np.metrics: R^2 as scikit-learn computes it, and the scores of a network on a dataset."""
import numpy as np
import pytest

from sibp_np.metrics import r2_score


def test_r2_score_is_scikit_learns_including_constant_targets(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    Y = rng.normal(size=(30, 3))
    Y[:, 2] = 1.5  # a constant output: 1 when fitted exactly, else 0
    for F in (Y + 0.3 * rng.normal(size=Y.shape), Y.copy()):
        ss_res = ((F - Y) ** 2).sum(axis=0)
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        assert r2_score(ss_res, ss_tot) == pytest.approx(metrics.r2_score(Y, F), rel=1e-12)


def test_r2_score_of_a_perfect_and_of_a_mean_prediction():
    assert r2_score([0.0, 0.0], [2.0, 0.0]) == 1.0
    assert r2_score([2.0], [2.0]) == 0.0  # predicting the mean
    assert np.isfinite(r2_score([1.0], [0.0]))  # no division by zero
