"""The explicit update rules, recomputed independently with scalar Python loops (torch.optim's
published equations), step by step."""
import math

import numpy as np
import pytest

from sibp_np import SGD, Adam, RMSprop


def run(opt, p0, grads):
    p = p0.copy()
    out = []
    for g in grads:
        opt.update([p], [g.copy()])
        out.append(p.copy())
    return out


@pytest.fixture
def seq(rng):
    return rng.normal(size=4), [rng.normal(size=4) for _ in range(5)]


def ref_sgd(p0, grads, lr, mom=0.0, nesterov=False, wd=0.0, damp=0.0):
    p, buf, out = list(p0), None, []
    for g in grads:
        g = [gi + wd * pi for gi, pi in zip(g, p)]
        if mom:
            buf = list(g) if buf is None else [mom * b + (1 - damp) * gi for b, gi in zip(buf, g)]
            d = [gi + mom * b for gi, b in zip(g, buf)] if nesterov else buf
        else:
            d = g
        p = [pi - lr * di for pi, di in zip(p, d)]
        out.append(np.array(p))
    return out


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.05, momentum=0.9),
                                dict(lr=0.05, momentum=0.9, nesterov=True),
                                dict(lr=0.05, momentum=0.5, weight_decay=0.01, dampening=0.1)])
def test_sgd_matches_independent_computation(seq, kw):
    p0, grads = seq
    got = run(SGD(**kw), p0, grads)
    ref = ref_sgd(p0, grads, kw["lr"], kw.get("momentum", 0), kw.get("nesterov", False),
                  kw.get("weight_decay", 0), kw.get("dampening", 0))
    np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-13)


@pytest.mark.parametrize("kw", [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)])
def test_adam_matches_independent_computation(seq, kw):
    p0, grads = seq
    lr, (b1, b2), eps, wd = kw.get("lr", 1e-3), kw.get("betas", (0.9, 0.999)), kw.get("eps", 1e-8), \
        kw.get("weight_decay", 0.0)
    p, m, v, ref = list(p0), [0.0] * 4, [0.0] * 4, []
    for t, g in enumerate(grads, start=1):
        for j in range(4):
            gj = g[j] + wd * p[j]
            m[j] = b1 * m[j] + (1 - b1) * gj
            v[j] = b2 * v[j] + (1 - b2) * gj * gj
            mhat_step = lr / (1 - b1 ** t)
            denom = math.sqrt(v[j]) / math.sqrt(1 - b2 ** t) + eps
            p[j] -= mhat_step * m[j] / denom
        ref.append(np.array(p))
    np.testing.assert_allclose(np.array(run(Adam(**kw), p0, grads)), np.array(ref), rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(lr=0.003, alpha=0.9, eps=1e-6, momentum=0.8, weight_decay=0.05)])
def test_rmsprop_matches_independent_computation(seq, kw):
    p0, grads = seq
    lr, a, eps, mom, wd = kw.get("lr", 1e-2), kw.get("alpha", 0.99), kw.get("eps", 1e-8), \
        kw.get("momentum", 0.0), kw.get("weight_decay", 0.0)
    p, v, buf, ref = list(p0), [0.0] * 4, [0.0] * 4, []
    for g in grads:
        for j in range(4):
            gj = g[j] + wd * p[j]
            v[j] = a * v[j] + (1 - a) * gj * gj
            avg = math.sqrt(v[j]) + eps
            if mom:
                buf[j] = mom * buf[j] + gj / avg
                p[j] -= lr * buf[j]
            else:
                p[j] -= lr * gj / avg
        ref.append(np.array(p))
    np.testing.assert_allclose(np.array(run(RMSprop(**kw), p0, grads)), np.array(ref), rtol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    # with bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g)
    p = np.array([1.0, -2.0])
    Adam(lr=0.1).update([p], [np.array([3.0, -0.5])])
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop])
def test_bad_learning_rates_are_rejected(cls, bad):
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got"):
        cls(lr=bad)


def test_bad_optimizer_arguments():
    with pytest.raises(TypeError, match="lr must be a real number, got str"):
        SGD(lr="0.1")
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\), got 1.0"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas must be a pair"):
        Adam(betas=0.9)


def test_subnormal_state_is_flushed_periodically():
    from sibp_np.optim import FLUSH_EVERY
    opt = Adam(lr=1e-3)
    p = np.ones(3, dtype=np.float32)
    opt.update([p], [np.array([1e-3, 0.0, 1.0], dtype=np.float32)])
    opt.state["m0"][1] = np.float32(1e-40)  # a subnormal first moment
    assert opt.state["m0"][1] != 0
    for _ in range(FLUSH_EVERY - 1):
        opt.update([p], [np.array([0.0, 0.0, 1.0], dtype=np.float32)])
    assert opt.state["m0"][1] == 0 and opt.state["t"] % FLUSH_EVERY == 0
    assert opt.state["m0"][2] > 0.5  # normal numbers are untouched


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1), lambda: SGD(lr=0.1, momentum=0.9),
                                  lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                                  lambda: SGD(lr=0.1, weight_decay=0.01), lambda: Adam(lr=0.01),
                                  lambda: RMSprop(lr=0.01, momentum=0.5)])
def test_overwrite_grads_gives_the_same_parameters_to_the_bit(make, rng):
    """``update(..., overwrite_grads=True)`` (what ``step`` passes for its own gradients) may use the
    gradient arrays as work space; the parameters and the state come out the same, and a rule that
    keeps a gradient (momentum's first buffer) never keeps an array it is allowed to overwrite."""
    p0 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    grads = [[rng.normal(size=a.shape).astype(np.float32) for a in p0] for _ in range(4)]
    runs = []
    for overwrite in (False, True):
        opt, p = make(), [a.copy() for a in p0]
        for g in grads:
            given = [a.copy() for a in g]
            opt.update(p, given, overwrite_grads=overwrite)
            if not overwrite:
                assert all(np.array_equal(a, b) for a, b in zip(given, g))  # left as they were
            for a in given:
                a[...] = np.nan  # the caller reuses its arrays: the state must not see it
        runs.append((p, opt.state))
    (p1, s1), (p2, s2) = runs
    assert all(a.tobytes() == b.tobytes() for a, b in zip(p1, p2))
    assert s1.keys() == s2.keys()
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
