import json

import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import MLP, SGD, SIBP, Adam, History, TrainingDiverged, fit


def test_shapes_and_default_init():
    m = MLP([784, 500, 10], seed=0)
    assert [w.shape for w in m.weights] == [(500, 784), (10, 500)]
    assert [b.shape for b in m.biases] == [(500,), (10,)]
    assert m.weights[0].dtype == np.float32
    assert abs(m.weights[0].std() - 0.01) < 2e-4 and abs(m.weights[0].mean()) < 1e-4
    assert MLP([784, 500, 10], init="he", seed=0).weights[0].std() == pytest.approx(np.sqrt(2 / 784),
                                                                                    rel=0.01)


def test_same_seed_same_network():
    a, b = MLP([5, 4, 3], seed=7), MLP([5, 4, 3], seed=7)
    for p, q in zip(a.params(), b.params()):
        np.testing.assert_array_equal(p, q)


def test_assignment_checks_shape_and_converts_dtype():
    m = MLP([5, 4, 3], seed=0)
    m.weights[1] = np.ones((3, 4))
    assert m.weights[1].dtype == np.float32 and m.weights[1].sum() == 12
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(4, 5\), got \(5, 4\)"):
        m.weights[0] = np.ones((5, 4))


def test_evaluate_in_chunks_equals_one_chunk():
    m, X, y = small_problem(n=103)
    Xc, yc = m.check_Xy(X, y)
    assert m.evaluate(Xc, yc, chunk=10) == pytest.approx(m.evaluate(Xc, yc, chunk=1000), rel=1e-12)
    loss, acc = m.evaluate(X, y)
    assert acc == pytest.approx((m.predict(X) == y).mean())
    np.testing.assert_allclose(m.predict_proba(X).sum(1), 1.0)


@pytest.mark.parametrize("sizes,err,match", [
    ([5], ValueError, "at least 2 entries"), ([5, 0, 3], ValueError, r"layer_sizes\[1\] must be a positive"),
    ([5, 2.5, 3], TypeError, r"layer_sizes\[1\] must be an integer"), ("5,3", TypeError, "sequence")])
def test_bad_layer_sizes(sizes, err, match):
    with pytest.raises(err, match=match):
        MLP(sizes)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="activation='gelu'"):
        MLP([3, 2], activation="gelu")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        MLP([3, 2], dtype="float16")


@pytest.mark.parametrize("X,y,err,match", [
    (np.ones((4, 7)), [0, 1, 2, 0], ValueError, "X has 7 features but the model expects 6"),
    (np.ones((4, 6, 1)), [0, 1, 2, 0], ValueError, r"X must be 2-D \(n_samples, 6\), got shape \(4, 6, 1\)"),
    (np.ones((0, 6)), [], ValueError, "X is empty"),
    (np.full((4, 6), np.nan), [0, 1, 2, 0], ValueError, "X contains NaN or inf"),
    (np.full((4, 6), np.inf), [0, 1, 2, 0], ValueError, "X contains NaN or inf"),
    (np.ones((4, 6), np.float16), [0, 1, 2, 0], TypeError, "X has dtype float16"),
    (np.ones((4, 6)), [0, 1, 3, 0], ValueError, r"y has labels in \[0, 3\] but the model has 3 classes"),
    (np.ones((4, 6)), [0, -1, 2, 0], ValueError, r"y has labels in \[-1, 2\]"),
    (np.ones((4, 6)), [0, 1, 2], ValueError, r"y has 3 entries for 4 samples \(different lengths: 4 and 3\)"),
    (np.ones((4, 6)), [0.5, 1, 2, 0], TypeError, "y must hold integer class labels"),
    (np.ones((4, 6)), np.eye(3)[[0, 1, 2, 0]], ValueError, "one-hot targets are not accepted"),
    (np.ones((4, 6)), ["a", "b", "c", "a"], TypeError, "y must hold integer class labels"),
    ("abc", [0], TypeError, "X must be an array"),
])
def test_bad_data_for_every_method(X, y, err, match):
    for method in (SGD(lr=0.1), Adam(), SIBP()):
        m, _, _ = small_problem(sizes=(6, 5, 3))
        with pytest.raises(err, match=match):
            method.step(m, X, y)
        with pytest.raises(err, match=match):
            fit(m, method, X, y, epochs=1, batch_size=1, verbose=0)


def test_lists_and_fortran_or_strided_arrays_work():
    m, X, y = small_problem()
    ref = m.evaluate(X, y)
    assert m.evaluate(X.tolist(), y.tolist()) == pytest.approx(ref)
    assert m.evaluate(np.asfortranarray(X), y) == pytest.approx(ref)
    Xw = np.zeros((X.shape[0], 2 * X.shape[1]))
    Xw[:, ::2] = X
    assert m.evaluate(Xw[:, ::2], y) == pytest.approx(ref)


@pytest.mark.parametrize("kw,err,match", [
    (dict(epochs=-1), ValueError, "epochs must be >= 0, got -1"),
    (dict(epochs=1, batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(epochs=1, batch_size=1000), ValueError, "batch_size=1000 is larger than the training set"),
    (dict(epochs=1.5), TypeError, "epochs must be an integer"),
    (dict(epochs=1, on_divergence="ignore"), ValueError, "on_divergence='ignore'"),
])
def test_bad_fit_arguments(kw, err, match):
    m, X, y = small_problem()
    with pytest.raises(err, match=match):
        fit(m, SGD(lr=0.1), X, y, verbose=0, **kw)


@pytest.mark.outcome
def test_fit_is_deterministic_and_records_epochs(tmp_path, backend):
    runs = []
    for _ in range(2):
        m, X, y = small_problem(backend=backend)
        h = fit(m, Adam(lr=0.01), X, y, val=(X[:10], y[:10]), epochs=3, batch_size=8, seed=3, verbose=0)
        runs.append((h, m))
    (h1, m1), (h2, m2) = runs
    assert h1["train_loss"] == h2["train_loss"] and len(h1) == 4
    for p, q in zip(m1.params(), m2.params()):
        np.testing.assert_array_equal(m1.backend.to_host(p), m2.backend.to_host(q))
    assert h1["iterations"] == [0, 5, 10, 15]
    assert h1.last["train_loss"] == pytest.approx(m1.evaluate(*small_problem()[1:])[0])
    assert h1.last["train_loss"] < h1.records[0]["train_loss"]
    h1.save(tmp_path / "h.json")
    h1.save(tmp_path / "h.h5")
    assert History.from_dict(json.loads((tmp_path / "h.json").read_text())).records == h1.records
    back = History.load_hdf5(tmp_path / "h.h5")
    assert back["train_loss"] == pytest.approx(h1["train_loss"]) and back.config == json.loads(
        json.dumps(h1.config))
    with pytest.raises(ValueError, match="use a .json or .h5"):
        h1.save(tmp_path / "h.txt")


def test_divergence_is_recorded_or_raised():
    m, X, y = small_problem(init_std=1.0, dtype="float32")
    h = fit(m, SGD(lr=1e30), X, y, epochs=3, batch_size=10, verbose=0)
    assert h.diverged is not None and h.diverged["method"] == "sgd" and h.diverged["epoch"] == 1
    assert h.diverged["iteration"] <= 4
    m, X, y = small_problem(init_std=1.0, dtype="float32")
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1"):
        fit(m, SGD(lr=1e30), X, y, epochs=3, batch_size=10, verbose=0, on_divergence="raise")
    with pytest.warns(RuntimeWarning, match="not finite"):
        m.evaluate(X, y)


def test_stationarity_measure_is_the_gradient_norm():
    m, X, y = small_problem()
    h = fit(m, SGD(lr=0.1), X, y, epochs=1, batch_size=8, verbose=0, stationarity=True)
    g = m.loss_and_grads(*m.check_Xy(X, y))[1]
    assert h.last["grad_norm"] == pytest.approx(np.sqrt(sum((a ** 2).sum() for a in g)), rel=1e-10)


def test_verbose_prints_one_line_per_epoch(capsys):
    m, X, y = small_problem()
    fit(m, SGD(lr=0.1), X, y, epochs=2, batch_size=8, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["epoch", "iters", "train_loss"] and len(lines) == 4


def test_eval_every_time_budget_and_train_subset():
    m, X, y = small_problem(n=60)
    h = fit(m, SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, eval_every=2, train_eval_size=25)
    assert h["iterations"] == [0, 2, 4, 6, 8, 10, 12]
    assert h["epoch"] == [0, 1, 1, 1, 2, 2, 2] and h["epoch_float"][-1] == 2.0
    Xc, yc = m.check_Xy(X, y)
    sub = np.sort(np.random.default_rng(0).permutation(60)[:25])
    assert h.last["train_acc"] == pytest.approx(m.evaluate(Xc[sub], yc[sub])[1])
    m2, _, _ = small_problem(n=60)
    h2 = fit(m2, SIBP(), X, y, epochs=1000, batch_size=10, verbose=0, time_budget=0.05)
    assert h2.last["elapsed_seconds"] >= 0.05 and h2.last["iterations"] < 6000
    with pytest.raises(ValueError, match="time_budget must be a finite number > 0"):
        fit(m2, SGD(lr=0.1), X, y, epochs=1, batch_size=10, verbose=0, time_budget=0)


def test_overflowing_logits_with_finite_parameters_are_reported_as_divergence():
    m, X, y = small_problem(dtype="float32")
    m.weights[0] = np.full(m.weights[0].shape, 1e19, dtype=np.float32)  # finite, but logits overflow
    m.weights[1] = np.full(m.weights[1].shape, 1e19, dtype=np.float32)
    h = fit(m, SGD(lr=1e-30), X, y, epochs=2, batch_size=10, verbose=0)
    assert h.diverged is not None and "not finite" in h.diverged["reason"]


def test_params_finite_sees_nan_and_inf_but_not_huge_finite_values():
    """The cheap check (the squared norm of each parameter) falls back to an entry-by-entry one when
    the norm overflows, so a finite but huge parameter is not called diverged."""
    model = MLP([3, 4, 2], seed=0)
    assert model.params_finite()
    for value, finite in ((np.nan, False), (np.inf, False), (-np.inf, False), (3e37, True)):
        m = model.copy()
        m.params()[2][1, 3] = value  # in place, as the update rules change them
        assert m.params_finite() is finite, value


def test_fit_checks_the_training_set_once_not_every_minibatch(monkeypatch):
    model, X, y = small_problem()
    calls = []
    real = type(model).check_Xy
    monkeypatch.setattr(type(model), "check_Xy",
                        lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    h = fit(model, SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0)  # 8 steps
    assert len(calls) == 1 + len(h)  # the training set once, and each record's evaluation; no step
    calls.clear()
    SGD(lr=0.1).step(model, X[:10], y[:10])  # called directly, a step checks its input
    assert len(calls) == 1
