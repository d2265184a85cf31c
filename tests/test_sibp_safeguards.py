"""SIBP's trust-region safeguard and the MATLAB-compatible solver (``compat="matlab"``), in float64."""
import math

import numpy as np
import pytest

from sibp_np import MLP, SIBP, fit, load_dataset
from sibp_np.backend import get_backend
from sibp_np.functions import get_activation
from sibp_np.ncg import ncg
from sibp_np.sibp import DualWeightSubproblem, WeightSubproblem

BE = get_backend("numpy")














# ------------------------------------------------------------------ the trust region
def _w_problem(form, radius, seed=0, B=12, n_in=7, n_out=4):
    r = np.random.default_rng(seed)
    F = np.abs(r.normal(size=(B, n_in)))
    W = r.normal(size=(n_out, n_in)) * 0.3
    b = r.normal(size=n_out) * 0.1
    T = 5 * np.abs(r.normal(size=(B, n_out)))  # far targets: the ball binds
    cls = DualWeightSubproblem if form == "dual" else WeightSubproblem
    prob = cls(BE, get_activation("relu"), F, F @ W.T + b, T, W.copy(), 1.0, np.empty((B, n_out)))
    prob.radius = radius
    return prob, W


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_trust_region_ball_holds_and_binds(form):
    free, W0 = _w_problem(form, math.inf)
    ncg(free, max_iter=5)
    free_step = np.linalg.norm(free.x - W0)
    radius = 0.25 * free_step
    prob, _ = _w_problem(form, radius)
    res = ncg(prob, max_iter=5)
    step = np.linalg.norm(prob.x - W0)
    assert step <= radius * (1 + 1e-12)
    assert step == pytest.approx(radius, rel=1e-9)  # it stopped on the boundary
    assert res.message == "stopped on the trust-region boundary"
    assert prob.step_norm() == pytest.approx(step, rel=1e-9)
    assert res.f < res.f0


@pytest.mark.parametrize("p1", [-3.0, 0.0, 2.0])
def test_max_step_is_the_boundary(p1):
    prob, _ = _w_problem("primal", 2.0)
    prob.p0, prob.p1, prob.p2 = 1.5, p1, 4.0
    a = prob.max_step()
    assert prob.p0 + 2 * a * prob.p1 + a * a * prob.p2 == pytest.approx(prob.radius ** 2, rel=1e-12)
    assert a > 0


def test_inactive_trust_region_changes_nothing():
    """A radius that does not bind gives the plain algorithm's iterates bitwise."""
    r = np.random.default_rng(2)
    X, y = r.normal(size=(30, 6)), r.integers(0, 3, size=30)
    a = MLP((6, 5, 3), init_std=0.5, seed=3, dtype="float64")
    b = a.copy()
    SIBP(eta=0.05, safeguard="none").step(a, X, y)
    SIBP(eta=0.05, trust_radius=1e6, prox_metric="weights").step(b, X, y)
    for Wa, Wb in zip(a.params(), b.params()):
        np.testing.assert_array_equal(Wa, Wb)


def test_step_norms_within_the_radius_on_a_network():
    r = np.random.default_rng(4)
    X, y = r.normal(size=(40, 10)), r.integers(0, 3, size=40)
    model = MLP((10, 8, 8, 8, 3), init_std=0.5, seed=0, dtype="float64")
    m = SIBP(eta=20.0)
    m.record_stats = True
    for _ in range(3):
        m.step(model, X, y)
    rows = [s for step in m.stats for s in step]
    assert all(s["step_norm"] <= s["radius"] * (1 + 1e-9) for s in rows)
    assert any(s["message"] == "stopped on the trust-region boundary" for s in rows)


@pytest.mark.outcome
def test_default_trains_a_deep_net_where_the_plain_algorithm_fails():
    """20-16x6-3 on separable synthetic data at eta = 1, over 5 seeds (data, init and minibatches): the
    trust-region default never diverges and lowers the loss on every seed, the plain Algorithm 1 blows
    the loss up on some. Over 50 seeds (these 5 under the 10 shifts of tools/seed_audit.py) the default
    ended at 0.4-44% of the starting loss (train accuracy 0.68-1.0), and the plain algorithm ended
    above 1e3 times the start on 39 of 50, at least 2 in every 5."""
    blew_up = 0
    for seed in range(5):
        r = np.random.default_rng(seed)
        n = 600
        centers = r.normal(size=(3, 20)) * 2
        y = r.integers(0, 3, size=n)
        X = centers[y] + r.normal(size=(n, 20))
        sizes = (20,) + (16,) * 6 + (3,)
        results = {}
        for safeguard in ("none", "trust-region"):
            model = MLP(sizes, init_std=0.1, seed=seed, dtype="float64")
            with np.errstate(all="ignore"):
                h = fit(model, SIBP(eta=1.0, lam=1.0, safeguard=safeguard), X, y, epochs=3,
                        batch_size=50, seed=seed, verbose=0)
            results[safeguard] = h
        plain, safe = results["none"], results["trust-region"]
        start = plain["train_loss"][0]
        blew_up += plain.diverged is not None or plain.last["train_loss"] > 1e3 * start
        assert safe.diverged is None and safe.last["train_loss"] < 0.7 * start, seed
        assert safe.last["train_acc"] > 0.5, seed  # chance is 1/3
    assert blew_up >= 1


def test_prox_metric_defaults_follow_the_safeguard_and_compat():
    def in_use(**kw):
        return SIBP(**kw).hyperparameters()["prox_metric"]
    assert in_use() == "output"
    assert in_use(safeguard="none") == "weights"  # the plain Algorithm 1, as the paper has it
    assert in_use(compat="matlab") == "weights"
    assert in_use(safeguard="none", prox_metric="output") == "output"
    with pytest.raises(ValueError, match=r"compat='matlab'.*prox_metric='weights', got "
                                         r"prox_metric='output'"):
        SIBP(compat="matlab", prox_metric="output")
    with pytest.raises(ValueError, match="prox_metric"):
        SIBP(prox_metric="outputs")


@pytest.mark.parametrize("metric", ["output", "weights"])
def test_output_metric_makes_the_step_independent_of_the_input_scale(metric):
    """Inputs c X and first-layer weights W0 / c give the same pre-activations. With the output-space
    metric the step is then the same in pre-activation space (W0 / c moves to W0_new / c and every other
    parameter moves identically); with the paper's metric it is not."""
    r = np.random.default_rng(5)
    X, y = r.normal(size=(30, 6)), r.integers(0, 3, size=30)
    c = 8.0
    a = MLP((6, 5, 4, 3), init_std=0.5, seed=1, dtype="float64")
    b = a.copy()
    b.weights[0] = a.weights[0] / c
    for model, inputs in ((a, X), (b, c * X)):
        SIBP(eta=0.5, safeguard="none", prox_metric=metric).step(model, inputs, y)
    same = np.allclose(b.weights[0] * c, a.weights[0], rtol=1e-9, atol=1e-12) and all(
        np.allclose(pb, pa, rtol=1e-9, atol=1e-12) for pa, pb in zip(a.params()[1:], b.params()[1:]))
    assert same == (metric == "output")


@pytest.mark.slow
@pytest.mark.outcome
def test_default_trains_the_papers_deep_net_at_eta_10():
    """The deep network of Figure 4: 784-600x10-10 on the embedded mnist-5k, N(0, 0.05^2), 2 epochs,
    eta = 10, lam = 1. The previous default (the trust region alone) ended at 0.33 train accuracy here,
    the authors' code at chance. Over the seeds 0-9 of tools/seed_audit.py (each another train/val
    split, init and shuffling) the default ends at 0.75-0.91 train and 0.74-0.89 validation accuracy;
    the bound leaves a margin under the lowest, far above the previous default and chance."""
    data = load_dataset("mnist-5k")
    model = MLP([784] + [600] * 10 + [10], init_std=0.05, seed=0)
    with np.errstate(all="ignore"):
        h = fit(model, SIBP(eta=10.0, lam=1.0), *data.train, val=data.val, epochs=2, seed=0, verbose=0)
    assert h.diverged is None
    assert h.last["train_acc"] >= 0.65 and h.last["val_acc"] >= 0.65


def test_output_metric_scale_and_its_floor_in_the_statistics():
    """lam_W = lam max(||F||_F^2 / n_in, 1) and lam_b = lam n: the input layer (large inputs) gets the
    scaled weight, a layer fed by tiny activations keeps the paper's lam."""
    r = np.random.default_rng(9)
    X, y = 3.0 * r.normal(size=(40, 8)), r.integers(0, 3, size=40)
    model = MLP((8, 6, 3), init_std=1e-3, seed=0, dtype="float64")
    F1 = np.maximum(X @ model.weights[0].T + model.biases[0], 0)
    m = SIBP(eta=0.5, lam=2.0)
    m.record_stats = True
    m.step(model, X, y)
    lam = {(s["layer"], s["param"]): s["lam"] for s in m.stats[0]}
    assert lam[(0, "W")] == pytest.approx(2.0 * (X ** 2).sum() / 8, rel=1e-12)
    assert (F1 ** 2).sum() / 6 < 1 and lam[(1, "W")] == 2.0
    assert lam[(0, "b")] == lam[(1, "b")] == 2.0 * 40
