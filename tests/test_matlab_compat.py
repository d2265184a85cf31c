"""The authors' solver reproduced (sibp_np.matlab_compat): a step against a transcript, and its quirks."""
import math

import numpy as np
import pytest

from sibp_np import MLP, SIBP
from sibp_np.backend import get_backend
from sibp_np.matlab_compat import _jump, armijo_matlab

BE = get_backend("numpy")


# ------------------------------------------------------------------ a straight MATLAB transcription
# The authors' FR3.m / FR4.m / sibp_inner.m, written out loop for loop in their layout (columns are
# samples, weights (n_out, n_in), their proximal weight lam_m = our lam / 2). Independent of the package.
def _fr_transcript(F, Bm, T, W_old, lam_m, hidden, counts):
    act = (lambda Z: np.maximum(Z, 0)) if hidden else (lambda Z: Z)
    rho, sigma = 0.6, 0.1
    x0 = W_old.copy()

    def grad(x, first):
        if hidden:
            mid = np.maximum(x @ F + Bm, 0)
            return 2 * ((mid - T) * (mid > 0)) @ F.T + 2 * lam_m * (x - W_old)
        if first:  # FR4's first gradient leaves the fixed term Bm out
            return 2 * (x @ F - T) @ F.T + 2 * lam_m * (x - W_old)
        return 2 * (x @ F + Bm - T) @ F.T + 2 * lam_m * (x - W_old)

    g = grad(x0, True)
    d = -g
    for _ in range(5):
        m, mk, m_on = 0, 0, False
        B0_1 = np.sum((act(x0 @ F + Bm) - T) ** 2) + lam_m * np.sum((x0 - W_old) ** 2)
        gsearch = sigma * np.sum(g * d)
        while m < 50:
            x1 = x0 + rho ** m * d
            A0 = np.sum((act(x1 @ F + Bm) - T) ** 2) + lam_m * np.sum((x1 - W_old) ** 2)
            B0 = B0_1 + gsearch * rho ** m
            if hidden and m == 0 and not m_on:
                m = max(math.floor(math.log(B0_1 * 0.01 / abs(gsearch)) / math.log(rho)), 0)
                m_on = True
                counts["jumps"] += m > 0
            if A0 < B0:
                mk = m
                counts["accepted_at_0"] += mk == 0
                break
            m += 1
        if mk > 0:
            x0 = x0 + rho ** mk * d
        gnew = grad(x0, False)
        beta = np.sum(gnew ** 2) / np.sum(g ** 2)
        d = -gnew + beta * d
        g = gnew
    return x0


def _sibp_inner_transcript(X, Y, Ws, bs, lam_m, ita, counts):
    Ws, bs = [W.copy() for W in Ws], [b.copy() for b in bs]
    n = X.shape[1]
    ones = np.ones((1, n))
    F = [X]
    for W, b in zip(Ws[:-1], bs[:-1]):
        F.append(np.maximum(W @ F[-1] + b, 0))
    FN = Ws[-1] @ F[-1] + bs[-1]
    E = np.exp(FN - FN.max(axis=0))
    gd = E / E.sum(axis=0) - Y
    target = FN - gd * ita
    Ws[-1] = _fr_transcript(F[-1], bs[-1] @ ones, target, Ws[-1], lam_m, False, counts)
    bs[-1] = _fr_transcript(ones, Ws[-1] @ F[-1], target, bs[-1], lam_m, False, counts)
    gd = Ws[-1].T @ gd
    mid = F[-1]
    target = F[-1] - ita * gd
    for i in range(len(Ws) - 2, -1, -1):
        Ws[i] = _fr_transcript(F[i], bs[i] @ ones, target, Ws[i], lam_m, True, counts)
        bs[i] = _fr_transcript(ones, Ws[i] @ F[i], target, bs[i], lam_m, True, counts)
        if i > 0:
            gd = Ws[i].T @ (gd * (mid > 0))
            mid = F[i]
            target = F[i] - ita * gd
    return Ws, bs


@pytest.mark.parametrize("weight_form", ["primal", "dual"])
@pytest.mark.parametrize("eta", [0.5, 5.0])
def test_matlab_compat_step_matches_transcript(weight_form, eta):
    r = np.random.default_rng(7)
    sizes, n = (6, 5, 4, 3), 8
    X = np.abs(r.normal(size=(n, sizes[0])))
    y = r.integers(0, sizes[-1], size=n)
    model = MLP(sizes, init_std=0.5, seed=1, dtype="float64")
    lam = 2.0  # their lambda = 1
    Ws = [W.copy() for W in model.weights]
    bs = [b.copy()[:, None] for b in model.biases]
    counts = {"jumps": 0, "accepted_at_0": 0}
    Y = np.eye(sizes[-1])[y].T
    W_ref, b_ref = _sibp_inner_transcript(X.T, Y, Ws, bs, lam / 2, eta, counts)
    SIBP(eta=eta, lam=lam, compat="matlab", weight_form=weight_form).step(model, X, y)
    for i in range(model.n_layers):
        np.testing.assert_allclose(model.weights[i], W_ref[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(model.biases[i], b_ref[i][:, 0], rtol=1e-10, atol=1e-12)
    # the example exercises the quirks: untested jumped steps and, at the larger eta, m = 0
    # acceptances thrown away
    assert counts["jumps"] > 0
    assert counts["accepted_at_0"] > 0 or eta < 1
    assert any(not np.allclose(W, W0) for W, W0 in zip(model.weights, Ws))


def test_matlab_jump_edges():
    assert _jump(1.0, 0.0) == 0  # 0.01 f / 0 = inf: log(inf)/log(rho) = -inf, max(-inf, 0) = 0
    assert _jump(0.0, 0.0) == 0  # 0 / 0 = NaN, max(NaN, 0) = 0
    assert _jump(0.0, -1.0) == math.inf  # log(0) = -inf: an infinite jump
    # 0.01 * 100 / 1 = 1 = 0.6^0 -> m = 0; 0.01 * 100 / 10 = 0.1 -> floor(log 0.1 / log 0.6) = 4
    assert _jump(100.0, -1.0) == 0 and _jump(100.0, -10.0) == 4


def test_matlab_armijo_quirks():
    calls = []

    def phi(alpha):
        calls.append(alpha)
        return 0.0  # everything passes the test
    # the hidden-layer search accepts its first trial and records the jumped m, an untested step
    assert armijo_matlab(phi, 100.0, -100.0, jump=True) == 4  # gsearch = -10: 0.01*100/10 = 0.1
    assert calls == [1.0]
    # the output layer does not jump: m = 0 is recorded, i.e. no step
    assert armijo_matlab(phi, 100.0, -100.0, jump=False) == 0
    # an infinite jump that is rejected ends the search: no trial index after it is < 50
    calls.clear()
    assert armijo_matlab(lambda a: calls.append(a) or 1.0, 0.0, -1.0, jump=True) == 0
    assert calls == [1.0]
    # strict <: a trial equal to the bound is rejected
    assert armijo_matlab(lambda a: 100.0 - 10.0 * a, 100.0, -100.0, jump=False) == 0


def test_matlab_compat_arguments():
    assert SIBP(compat="matlab").hyperparameters()["safeguard"] == "none"
    assert SIBP().hyperparameters()["safeguard"] == "trust-region"
    with pytest.raises(ValueError, match="compat='matlab'.*safeguard='none'"):
        SIBP(compat="matlab", safeguard="trust-region")
    with pytest.raises(ValueError, match="cg_variant"):
        SIBP(compat="matlab", cg_variant="pr+")
    with pytest.raises(ValueError, match="compat must be None or 'matlab', got 'octave'"):
        SIBP(compat="octave")
    with pytest.raises(ValueError, match="safeguard"):
        SIBP(safeguard="clip")
    with pytest.raises(ValueError, match="trust_radius"):
        SIBP(trust_radius=0)
