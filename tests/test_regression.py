"""Regression (loss="mse"), early stopping, step-size schedules and test-set reports."""
import json

import numpy as np
import pytest

from sibp_np import METHODS, MLP, SGD, SIBP, EarlyStopping, fit, load_dataset
from sibp_np.cli import main
from sibp_np.datasets import save_h5


def smooth(n=400, seed=0):
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, size=(n, 2))
    return X, np.sin(3 * X[:, 0]) + X[:, 1] ** 2


def test_mse_and_r2_match_their_definitions(rng):
    model = MLP([3, 7, 2], loss="mse", seed=0, dtype="float64", init="he")
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    Y[:, 1] = 5.0  # a constant output: R^2 is 0 unless it is fitted exactly
    F = model.forward(X)
    m = model.metrics(X, Y, chunk=7)
    assert m["mse"] == pytest.approx(((F - Y) ** 2).mean(), rel=1e-12)
    assert m["loss"] == pytest.approx(0.5 * ((F - Y) ** 2).sum(axis=1).mean(), rel=1e-12)
    r2_0 = 1 - ((F[:, 0] - Y[:, 0]) ** 2).sum() / ((Y[:, 0] - Y[:, 0].mean()) ** 2).sum()
    assert m["r2"] == pytest.approx((r2_0 + 0.0) / 2, rel=1e-12)
    assert model.evaluate(X, Y, chunk=7) == (m["loss"], m["r2"])


def test_sibp_output_target_for_squared_error_is_F_minus_eta_times_residual():
    X, y = smooth(20)
    model = MLP([2, 5, 1], loss="mse", seed=0, dtype="float64")
    F_N = model.forward(X)
    s = SIBP(eta=0.3)
    s.step(model, X, y)
    np.testing.assert_allclose(s.last_targets[-1], F_N - 0.3 * (F_N - y[:, None]), rtol=1e-12)


@pytest.mark.outcome
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_fits_a_regression(name):
    X, y = smooth()
    step = {"sgd": {"lr": 0.05}, "adam": {"lr": 1e-2}, "rmsprop": {"lr": 1e-3}, "sibp": {"eta": 0.1},
            "proxbp": {"eta": 0.1}}[name]
    model = MLP([2, 32, 32, 1], loss="mse", init="he", seed=0)
    h = fit(model, METHODS[name](**step), X[:300], y[:300], val=(X[300:], y[300:]), epochs=10,
            batch_size=25, seed=0, verbose=0)
    assert h.diverged is None and set(h.last) >= {"train_mse", "train_r2", "val_mse", "val_r2"}
    assert "train_acc" not in h.last and h.last["val_r2"] > h.records[0]["val_r2"] + 0.3


def test_regression_targets_are_checked():
    model = MLP([2, 4, 2], loss="mse")
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(5, 2\) for a model with 2 output"):
        model.evaluate(X, np.zeros(5))
    with pytest.raises(ValueError, match="y contains NaN"):
        model.evaluate(X, np.full((5, 2), np.nan))
    with pytest.raises(TypeError, match="predict_proba: the model is a regression"):
        model.predict_proba(X)


def test_cli_trains_a_regression_h5_and_reports_the_test_set(tmp_path, capsys):
    X, y = smooth(300)
    save_h5(tmp_path / "reg.h5", X_train=X[:200], y_train=y[:200], X_val=X[200:250], y_val=y[200:250],
            X_test=X[250:], y_test=y[250:])
    assert load_dataset(str(tmp_path / "reg.h5")).task == "regression"
    rc = main(["train", "--dataset", str(tmp_path / "reg.h5"), "--layers", "2,16,1", "--epochs", "3",
               "--batch-size", "20", "--eta", "0.1", "--test", "--out", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "train_r2" in out and "test: test_loss" in out and "test_r2" in out
    h = json.loads((tmp_path / "h.json").read_text())
    assert h["config"]["loss"] == "mse" and set(h["summary"]["test"]) == {"test_loss", "test_mse", "test_r2"}


# ------------------------------------------------------------------------------- early stopping
def test_early_stopping_stops_and_restores_the_best_parameters():
    r = np.random.default_rng(0)
    X, y = r.normal(size=(60, 6)), r.integers(0, 3, size=60)  # noise: the validation loss soon rises
    Xv, yv = r.normal(size=(40, 6)), r.integers(0, 3, size=40)
    model = MLP([6, 64, 3], seed=0, init_std=0.3)
    snapshots = []
    h = fit(model, SGD(lr=0.5), X, y, val=(Xv, yv), epochs=100, batch_size=10, verbose=0, seed=0,
            callbacks=[EarlyStopping(patience=3)],
            callback=lambda rec: snapshots.append(model.get_params()))
    stop = h.summary["early_stopping"]
    vals = h["val_loss"]
    best = int(np.argmin(vals))
    assert stop["best_epoch"] == best and stop["stopped_epoch"] == best + 3 == h.last["epoch"] < 100
    assert stop["restored"]
    for k, v in model.get_params().items():
        np.testing.assert_array_equal(v, snapshots[best][k])
    assert model.evaluate(Xv, yv)[0] == pytest.approx(vals[best], rel=1e-6)


def test_early_stopping_needs_what_it_monitors():
    model, X, y = MLP([3, 4, 2]), np.zeros((10, 3)), np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="needs val="):
        fit(model, SGD(), X, y, epochs=1, batch_size=5, verbose=0, callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match="records train_loss, train_acc, val_loss, val_acc"):
        fit(model, SGD(), X, y, epochs=1, batch_size=5, verbose=0,
            callbacks=[EarlyStopping(monitor="val_r2")])


# ------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule,expected", [
    ("constant", [0.4] * 4), ("inverse", [0.4, 0.2, 0.4 / 3, 0.1]),
    ("cosine", [0.4 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)]),
    (lambda epoch: 0.1 * epoch, [0.1, 0.2, 0.3, 0.4])])
def test_schedules_drive_the_step_and_records_show_it(schedule, expected):
    model, X, y = MLP([3, 4, 2], seed=0), np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    method = SGD(lr=0.4)
    h = fit(model, method, X, y, epochs=4, batch_size=10, verbose=0, schedule=schedule)
    np.testing.assert_allclose(h["lr"][1:], expected, rtol=1e-12)
    assert method.lr == pytest.approx(expected[-1])


def test_schedule_values_are_validated_before_training():
    model, X, y = MLP([3, 4, 2]), np.zeros((10, 3)), np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1"):
        fit(model, SGD(), X, y, epochs=2, batch_size=5, verbose=0, schedule=lambda e: -1)
    with pytest.raises(ValueError, match="schedule='linear' is not known"):
        fit(model, SGD(), X, y, epochs=2, batch_size=5, verbose=0, schedule="linear")


def test_test_set_is_reported_once_after_training():
    model, X, y = MLP([3, 4, 2], seed=0), np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    h = fit(model, SGD(), X, y, epochs=2, batch_size=10, verbose=0, test=(X[:8], y[:8]))
    assert h.summary["test"] == {f"test_{k}": v for k, v in model.metrics(X[:8], y[:8]).items()}
    assert all("test_loss" not in r for r in h.records)
