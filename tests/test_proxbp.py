"""ProxBP (Frerix et al.), float64, against closed forms computed here."""
import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import SGD, Adam, ProxBP


def by_hand(model, X, y, eta, lam):
    """Hidden layer (one-hidden-layer net): theta_new from the normal equations, solved directly."""
    W0, b0, W1 = model.weights[0], model.biases[0], model.weights[1]
    G1 = X @ W0.T + b0
    F1 = np.maximum(G1, 0)
    F2 = F1 @ W1.T + model.biases[1]
    P = np.exp(F2 - F2.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    dz2 = (P - np.eye(F2.shape[1])[y]) / len(X)       # batch-mean loss
    dz1 = (dz2 @ W1) * (G1 > 0)                        # plain BP, old weights
    A = np.hstack([X, np.ones((len(X), 1))])
    theta = np.hstack([W0, b0[:, None]])
    zhalf = G1 - eta * dz1
    new = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ zhalf + lam * theta.T).T
    return new[:, :-1], new[:, -1], dz2, F1


@pytest.mark.parametrize("eta,lam", [(1.0, 1.0), (10.0, 0.05), (0.3, 7.0)])
def test_exact_matches_closed_form(eta, lam):
    model, X, y = small_problem(sizes=(6, 5, 3))
    Wn, bn, _, _ = by_hand(model, X, y, eta, lam)
    ProxBP(eta=eta, lam=lam, linear_solve="exact").step(model, X, y)
    np.testing.assert_allclose(model.weights[0], Wn, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.biases[0], bn, rtol=1e-10, atol=1e-12)


def test_cg_with_n_in_plus_one_iterations_matches_exact():
    model, X, y = small_problem(sizes=(6, 5, 3))
    exact = model.copy()
    ProxBP(eta=2.0, lam=0.5, linear_solve="exact").step(exact, X, y)
    ProxBP(eta=2.0, lam=0.5, linear_solve="cg", cg_steps=6 + 1).step(model, X, y)
    for a, b in zip(model.params(), exact.params()):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_cg_decreases_the_quadratic_at_every_iteration():
    model, X, y = small_problem(sizes=(6, 5, 3), n=50)
    eta, lam = 1.0, 0.2
    Wn, bn, _, _ = by_hand(model, X, y, eta, lam)
    A = np.hstack([X, np.ones((len(X), 1))])
    theta0 = np.hstack([model.weights[0], model.biases[0][:, None]])
    q_exact_target = np.hstack([Wn, bn[:, None]])
    # z^{1/2} recovered from the exact solution: (A^T A + lam I) theta* = A^T z + lam theta0
    rhs = q_exact_target @ (A.T @ A + lam * np.eye(7)) - lam * theta0
    def q(th):
        return 0.5 * ((A @ th.T) ** 2).sum() - (rhs * th).sum() + lam / 2 * ((th - theta0) ** 2).sum()
    values = []
    for k in range(0, 6):
        m = model.copy()
        if k:
            ProxBP(eta=eta, lam=lam, cg_steps=k).step(m, X, y)
        values.append(q(np.hstack([m.weights[0], m.biases[0][:, None]])))
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert values[-1] >= q(q_exact_target) - 1e-12


def test_large_lam_limit_is_sgd_on_hidden_layers():
    model, X, y = small_problem(sizes=(6, 5, 3))
    sgd = model.copy()
    ratio = 0.1
    ProxBP(eta=ratio * 1e7, lam=1e7, linear_solve="exact").step(model, X, y)
    SGD(lr=ratio).step(sgd, X, y)
    for k in (0, 1):  # W_1, b_1 (hidden)
        np.testing.assert_allclose(model.params()[k], sgd.params()[k], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("solve", ["cg", "exact"])
def test_output_layer_is_an_sgd_step_with_lr_eta(solve):
    model, X, y = small_problem(sizes=(6, 5, 4, 3))
    sgd = model.copy()
    ProxBP(eta=0.7, lam=1.0, linear_solve=solve).step(model, X, y)
    SGD(lr=0.7).step(sgd, X, y)
    for k in (4, 5):
        np.testing.assert_allclose(model.params()[k], sgd.params()[k], rtol=1e-12)


def test_optimizer_receives_the_pseudo_gradient():
    model, X, y = small_problem(sizes=(6, 5, 3))
    a, b = model.copy(), model.copy()
    ProxBP(eta=1.0, lam=0.5, linear_solve="exact", optimizer=SGD(lr=1.0)).step(a, X, y)
    ProxBP(eta=1.0, lam=0.5, linear_solve="exact").step(b, X, y)
    for p, q in zip(a.params(), b.params()):
        np.testing.assert_allclose(p, q, rtol=1e-12)
    c = model.copy()
    m = ProxBP(eta=1.0, lam=0.5, optimizer=Adam(lr=1e-3))
    m.step(c, X, y)
    assert m.optimizer.state["t"] == 1 and "optimizer.t" in m.state_dict(c.backend)


@pytest.mark.parametrize("kw,match", [(dict(eta=-1), "eta must be"), (dict(lam=0), "lam must be"),
                                      (dict(linear_solve="lu"), "linear_solve='lu'"),
                                      (dict(optimizer="sgd"), "optimizer must be")])
def test_bad_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ProxBP(**kw)


@pytest.mark.parametrize("solve,cg_steps", [("cg", 1), ("cg", 3), ("cg", 8), ("exact", 5)])
def test_row_space_form_gives_the_primal_iterates(solve, cg_steps):
    """The dual (row-space) form runs the same CG iterates, and the same exact solution (Woodbury)."""
    from sibp_np import MLP
    r = np.random.default_rng(7)
    X, y = r.normal(size=(12, 30)), r.integers(0, 4, size=12)  # batch < n_in: the dual is the cheaper
    out = {}
    for form in ("primal", "dual"):
        model = MLP([30, 20, 15, 4], seed=3, dtype="float64", init_std=0.3)
        method = ProxBP(eta=0.7, lam=0.3, cg_steps=cg_steps, linear_solve=solve, weight_form=form)
        method.step(model, X, y)
        assert method.last_forms == [form, form, "explicit"]
        out[form] = model.get_params()
    for k in out["primal"]:
        np.testing.assert_allclose(out["dual"][k], out["primal"][k], rtol=1e-10, atol=1e-12)


def test_auto_form_picks_the_cheaper_per_layer():
    from sibp_np.proxbp import proxbp_form
    assert proxbp_form(100, 784, 500, 5, "cg") == "dual"
    assert proxbp_form(100, 500, 10, 5, "cg") == "primal"  # tiny n_out: B^2 n_out loses
    assert proxbp_form(100, 784, 500, 5, "exact") == "dual"
    assert proxbp_form(5000, 20, 20, 5, "exact") == "primal"
