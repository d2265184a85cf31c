"""Finite-difference checks (float64) of every activation, loss and of back propagation (eqs. 4-5)."""
import numpy as np
import pytest
from _helpers import small_problem

from sibp_np.functions import ACTIVATIONS, LOSSES, get_activation, get_loss, log_softmax, softmax


def fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_matches_finite_differences(name, rng):
    act = get_activation(name)
    G = rng.normal(size=(7, 5))
    G[np.abs(G) < 1e-3] = 0.5  # keep away from the ReLU kink
    num = fd(lambda A: act.forward(A).sum(), G)
    np.testing.assert_allclose(act.deriv(G), num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(act.backprop(G, 2 * np.ones_like(G)), 2 * num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_solver_hooks_match_their_definitions(name, rng):
    from sibp_np.backend import get_backend
    be, act = get_backend("numpy"), get_activation(name)
    Z, P, T = rng.normal(size=(3, 6, 4))
    np.testing.assert_allclose(act.residual(be, Z, T), act.deriv(Z) * (act.forward(Z) - T), atol=1e-14)
    ref = ((act.forward(Z + 0.3 * P) - T) ** 2).sum()
    assert act.residual_sqnorm(be, Z, P, T, 0.3) == pytest.approx(ref, rel=1e-12)
    assert act.curvature(be, Z, P) == pytest.approx(((act.deriv(Z) * P) ** 2).sum(), rel=1e-12)
    # a bias direction: one row, broadcast over the samples (the b subproblems of (7))
    d = P[:1]
    ref = ((act.forward(Z + 0.3 * d) - T) ** 2).sum()
    assert act.residual_sqnorm(be, Z, d, T, 0.3, work=np.empty_like(Z)) == pytest.approx(ref, rel=1e-12)
    assert act.curvature(be, Z, d, work=np.empty_like(Z)) == pytest.approx(
        ((act.deriv(Z) * d) ** 2).sum(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradients_match_finite_differences(name, rng):
    loss = get_loss(name)
    F = rng.normal(size=(6, 4))
    y = rng.normal(size=(6, 4)) if loss.task == "regression" else rng.integers(0, 4, size=6)
    num = fd(lambda A: loss.value(A, y), F)
    np.testing.assert_allclose(loss.mean_grad(F, y), num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss.sample_grad(F, y), 6 * num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_sample_grad_are_the_two_calls_to_the_bit(name, dtype, rng):
    loss = get_loss(name)
    F = (rng.normal(size=(7, 5)) * 30).astype(dtype)  # large logits: the softmax saturates
    y = rng.normal(size=(7, 5)).astype(dtype) if loss.task == "regression" else rng.integers(0, 5, 7)
    value, grad = loss.value_and_sample_grad(F.copy(), y)
    assert value == loss.value(F, y)
    if name == "cross_entropy":  # sample_grad is this shared form: compare with softmax(F) - Y itself
        expected = softmax(F)
        expected[np.arange(7), y] -= 1
    else:
        expected = loss.sample_grad(F, y)
    assert grad.dtype == F.dtype and grad.tobytes() == expected.tobytes()
    mean_value, mean = loss.value_and_mean_grad(F.copy(), y)
    assert mean_value == value and mean.tobytes() == (expected / F.dtype.type(7)).tobytes()


def test_mse_value_is_half_the_mean_squared_row_norm(rng):
    F, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    assert get_loss("mse").value(F, Y) == pytest.approx(0.5 * ((F - Y) ** 2).sum(axis=1).mean(), rel=1e-13)
    np.testing.assert_array_equal(get_loss("mse").sample_grad(F, Y), F - Y)  # SIBP's delta_N, eq. (6)


def test_cross_entropy_value_against_direct_formula(rng):
    F = rng.normal(size=(5, 3))
    y = np.array([0, 2, 1, 1, 0])
    P = np.exp(F) / np.exp(F).sum(1, keepdims=True)
    assert get_loss("cross_entropy").value(F, y) == pytest.approx(-np.log(P[np.arange(5), y]).mean())
    np.testing.assert_allclose(softmax(F), P, rtol=1e-12)


def test_cross_entropy_is_finite_for_huge_logits():
    F = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], dtype=np.float32)
    y = np.array([1, 0])
    loss = get_loss("cross_entropy").value(F, y)
    assert np.isfinite(loss) and loss == pytest.approx(2e4, rel=1e-6)
    assert np.isfinite(log_softmax(F)).all()
    assert np.isfinite(get_loss("cross_entropy").sample_grad(F, y)).all()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_backprop_matches_finite_differences(activation, loss):
    model, X, y = small_problem(activation=activation, loss=loss)
    grads = model.loss_and_grads(X, y)[1]
    for k, p in enumerate(model.params()):
        def J(v, p=p):
            old = p.copy()
            p[...] = v
            val = model.loss.value(model.forward(X), y)
            p[...] = old
            return val
        np.testing.assert_allclose(grads[k], fd(J, p.copy()), rtol=1e-5, atol=1e-8,
                                   err_msg=f"parameter {k}")


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="activation='swish'"):
        get_activation("swish")
    with pytest.raises(ValueError, match="loss='hinge'"):
        get_loss("hinge")
