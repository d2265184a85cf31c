"""Checkpoints: exact resume for every method, validation of what is loaded."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sibp_np import MLP, SGD, SIBP, Adam, ProxBP, RMSprop, fit
from sibp_np.checkpoint import CheckpointError, load_checkpoint
from sibp_np.cli import main

TIMING = ("train_seconds", "elapsed_seconds")

METHODS = {
    "sgd": lambda: SGD(lr=0.3, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(lr=3e-3),
    "rmsprop": lambda: RMSprop(lr=1e-3, momentum=0.5),
    "proxbp": lambda: ProxBP(eta=1.0, lam=1.0),
    "proxbp+adam": lambda: ProxBP(eta=1.0, lam=1.0, optimizer=Adam(lr=1e-3)),
    "sibp": lambda: SIBP(eta=1.0, lam=1.0),
}


def data(n=120, d=12, k=3, seed=0):
    r = np.random.default_rng(seed)
    X = r.random((n, d)).astype(np.float32)
    return X, (X[:, 0] * 3).astype(int) % k


def strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(name, tmp_path):
    X, y = data()
    kw = dict(epochs=4, batch_size=16, seed=5, verbose=0, val=(X[:30], y[:30]))
    with threadpool_limits(1):
        straight = MLP([12, 10, 3], seed=1, init_std=0.1)
        h_straight = fit(straight, METHODS[name](), X, y, **kw)
        part = MLP([12, 10, 3], seed=1, init_std=0.1)
        fit(part, METHODS[name](), X, y, **{**kw, "epochs": 2}, checkpoint=tmp_path / "c.h5")
        resumed = MLP([12, 10, 3], seed=99, init_std=0.1)  # different init: the checkpoint must win
        h_resumed = fit(resumed, METHODS[name](), X, y, **kw, resume=tmp_path / "c.h5")
    for a, b in zip(straight.params(), resumed.params()):
        np.testing.assert_array_equal(a, b)
    assert strip(h_resumed.records) == strip(h_straight.records)


def test_checkpoint_holds_what_it_should(tmp_path):
    X, y = data()
    m = MLP([12, 10, 3], seed=1)
    fit(m, Adam(), X, y, epochs=2, batch_size=16, seed=3, verbose=0, checkpoint=tmp_path / "c.h5",
        config={"dataset": "toy", "split_seed": 7})
    c = load_checkpoint(tmp_path / "c.h5")
    assert c["epoch"] == 2 and c["iteration"] == 16 and set(c["params"]) == {"W0", "b0", "W1", "b1"}
    assert c["method_state"]["t"] == 16 and c["method_state"]["m0"].shape == (10, 12)
    assert c["config"]["dataset"] == "toy" and c["config"]["split_seed"] == 7
    assert c["config"]["hyperparameters"]["lr"] == 1e-3 and c["version"]
    assert len(c["history"]["records"]) == 3 and "state" in c["rng_state"]
    assert not [p for p in tmp_path.iterdir() if p.name != "c.h5"]  # no temporary left behind


@pytest.mark.parametrize("change,match", [
    (lambda: (MLP([12, 8, 3], seed=1), Adam()), r"layer_sizes is \[12, 10, 3\] in the checkpoint but "
                                                 r"\[12, 8, 3\] now"),
    (lambda: (MLP([12, 10, 3], seed=1), SGD(lr=0.1)), "method is 'adam' in the checkpoint but 'sgd' now"),
    (lambda: (MLP([12, 10, 3], seed=1), Adam(lr=0.1)), "hyperparameters is"),
    (lambda: (MLP([12, 10, 3], seed=1, activation="tanh"), Adam()), "activation is 'relu'"),
])
def test_mismatched_resume_is_refused(tmp_path, change, match):
    X, y = data()
    fit(MLP([12, 10, 3], seed=1), Adam(), X, y, epochs=1, batch_size=16, verbose=0,
        checkpoint=tmp_path / "c.h5")
    model, method = change()
    with pytest.raises(CheckpointError, match=match):
        fit(model, method, X, y, epochs=2, batch_size=16, verbose=0, resume=tmp_path / "c.h5")


def test_bad_checkpoint_files(tmp_path):
    X, y = data()
    fit(MLP([12, 10, 3], seed=1), Adam(), X, y, epochs=1, batch_size=16, verbose=0,
        checkpoint=tmp_path / "c.h5")
    raw = (tmp_path / "c.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable HDF5 file|damaged"):
        load_checkpoint(tmp_path / "cut.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        load_checkpoint(tmp_path / "text.h5")
    import h5py
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(CheckpointError, match="not a sibp_np checkpoint"):
        load_checkpoint(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.h5")


def test_cli_checkpoint_and_resume(tmp_path, capsys):
    c = tmp_path / "c.h5"
    base = ["--layers", "784,8,10", "--method", "adam", "--quiet"]
    assert main(base + ["--epochs", "1", "--checkpoint", str(c)]) == 0
    assert main(base + ["--epochs", "2", "--resume", str(c), "--checkpoint", str(c)]) == 0
    assert load_checkpoint(c)["epoch"] == 2
    assert main(["--layers", "784,9,10", "--method", "adam", "--epochs", "3", "--resume", str(c)]) == 2
    assert "layer_sizes is [784, 8, 10] in the checkpoint" in capsys.readouterr().err


def test_a_resumed_run_with_early_stopping_stops_where_the_unbroken_one_does(tmp_path):
    from sibp_np import EarlyStopping
    r = np.random.default_rng(0)  # a noisy linear task: the validation loss falls, then rises
    X, w = r.normal(size=(60, 6)), r.normal(size=(6, 3))
    y = (X @ w + r.normal(size=(60, 3))).argmax(1)
    Xv = r.normal(size=(40, 6))
    val = (Xv, (Xv @ w + r.normal(size=(40, 3))).argmax(1))
    kw = dict(batch_size=10, seed=0, verbose=0, val=val)

    def run(epochs, **extra):
        model = MLP([6, 64, 3], seed=0, init_std=0.3)
        stop = EarlyStopping(patience=3)
        with threadpool_limits(1):
            h = fit(model, SGD(lr=0.3), X, y, epochs=epochs, callbacks=[stop], **kw, **extra)
        return model, h
    straight, h_straight = run(100)
    stopped = h_straight.summary["early_stopping"]["stopped_epoch"]
    assert stopped is not None and stopped > 3  # the best epoch is not the initial network
    # interrupted after the best epoch but before the stop: the patience already used must carry over
    cut = stopped - 1
    run(cut, checkpoint=tmp_path / "c.h5")
    resumed, h_resumed = run(100, resume=tmp_path / "c.h5")
    assert h_resumed.summary["early_stopping"] == h_straight.summary["early_stopping"]
    for a, b in zip(straight.params(), resumed.params()):  # the same best weights restored
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_written_under_the_old_names_still_matches():
    from sibp_np.checkpoint import check_compatible
    from sibp_np.methods import METHODS
    now = {"method": "sibp", "hyperparameters": METHODS["sibp"]().hyperparameters(), "layer_sizes": [2, 3]}
    old = dict(now["hyperparameters"])
    old["weight_solver"], old["output_solve"] = old.pop("weight_form"), old.pop("linear_solve")
    old["record_stats"] = False
    check_compatible({"config": {**now, "hyperparameters": old}}, now, "c.h5")  # no error
    old["weight_solver"] = "dual"  # a real difference is still one, under its current name
    with pytest.raises(CheckpointError, match="hyperparameters"):
        check_compatible({"config": {**now, "hyperparameters": old}}, now, "c.h5")
