"""Callbacks (sibp_np.callbacks): the hooks run as documented, stop the loop, and take their records."""

import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import (
    SGD,
    Callback,
    EvalEvery,
    TimeBudget,
    fit,
)


# ---------------------------------------------------------------------------------------- callbacks
class Counter(Callback):
    def __init__(self, stop_at=None):
        self.calls = {"begin": 0, "step": 0, "record": 0, "epoch": 0}
        self.stop_at = stop_at

    def on_train_begin(self, run):
        self.calls["begin"] += 1

    def on_step_end(self, run):
        self.calls["step"] += 1
        if run.iteration == self.stop_at:
            run.stop()

    def on_record(self, run, record):
        self.calls["record"] += 1

    def on_epoch_end(self, run):
        self.calls["epoch"] += 1


def test_callback_hooks_run_as_documented():
    model, X, y = small_problem()
    c = Counter()
    h = fit(model, SGD(lr=0.1), X, y, epochs=3, batch_size=10, verbose=0, seed=0, callbacks=[c])
    assert c.calls == {"begin": 1, "step": 12, "record": 4, "epoch": 3}
    assert h["epoch"] == [0, 1, 2, 3]


def test_a_callback_stops_the_loop_cleanly():
    model, X, y = small_problem()
    c = Counter(stop_at=6)
    h = fit(model, SGD(lr=0.1), X, y, epochs=5, batch_size=10, verbose=0, seed=0, callbacks=[c])
    assert c.calls["step"] == 6 and h.diverged is None
    assert h.last["iterations"] == 4  # the stop came mid-epoch 2: the last record is epoch 1's
    # the parameters are those after 6 steps: the same as a 2-epoch run stopped after 6 steps
    m2, _, _ = small_problem()
    fit(m2, SGD(lr=0.1), X, y, epochs=5, batch_size=10, verbose=0, seed=0, callbacks=[Counter(6)])
    for a, b in zip(model.params(), m2.params()):
        np.testing.assert_array_equal(a, b)


def test_callbacks_must_be_callback_objects():
    model, X, y = small_problem()
    with pytest.raises(TypeError, match="callbacks must be sibp_np.Callback instances"):
        fit(model, SGD(), X, y, epochs=1, batch_size=10, verbose=0, callbacks=[print])


def test_eval_every_and_time_budget_take_one_record_per_iteration():
    model, X, y = small_problem()
    h = fit(model, SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0,
            callbacks=[EvalEvery(2), TimeBudget(1e-12)])
    assert h["iterations"] == [0, 1]  # the budget ends the run at the first step, with one record
    h = fit(small_problem()[0], SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0,
            eval_every=2)
    assert h["iterations"] == [0, 2, 4, 6, 8]  # epoch ends coincide with eval points: no duplicates


def test_the_table_shows_the_step_a_schedule_sets(capsys):
    model, X, y = small_problem()
    fit(model, SGD(lr=0.4), X, y, epochs=2, batch_size=10, verbose=1, seed=0, schedule="inverse")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "lr"
    assert [float(row.split()[-1]) for row in lines[1:]] == [0.4, 0.4, 0.2]  # lr / epoch


def test_a_diverged_regression_is_named_by_its_outputs():
    from sibp_np import MLP
    model = MLP([3, 4, 1], loss="mse", dtype="float64", seed=0)
    X, Y = np.ones((6, 3)), np.full((6, 1), 1e200)  # a squared error of 1e400 overflows
    h = fit(model, SGD(lr=1e-30), X, Y, epochs=1, batch_size=6, verbose=0)
    assert "squared error overflows" in h.diverged["reason"] and "logits" not in h.diverged["reason"]
