"""Model files, pickling and checkpoints as models: round trips are bitwise, bad files are named."""
import contextlib
import pickle

import h5py
import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import MLP, SIBP, fit
from sibp_np.persist import ModelFileError


@pytest.mark.parametrize("loss,dtype", [("cross_entropy", "float32"), ("mse", "float64")])
def test_save_load_predict_is_bitwise(tmp_path, loss, dtype, backend):
    model, X, y = small_problem(dtype=dtype, loss=loss, backend=backend)
    if loss == "mse":
        y = np.random.default_rng(1).normal(size=(len(X), 3))
    fit(model, SIBP(eta=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0)
    model.save(tmp_path / "m.h5")
    back = MLP.load(tmp_path / "m.h5", backend=backend)
    assert back.architecture() == model.architecture() and repr(back) == repr(model)
    for a, b in zip(model.get_params().values(), back.get_params().values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    if loss != "mse":
        np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_pickle_round_trip_is_bitwise_and_independent():
    model, X, _ = small_problem()
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    again.weights[0] = np.zeros_like(model.weights[0])
    assert not np.array_equal(again.predict_proba(X), model.predict_proba(X))  # its own arrays


def test_from_checkpoint_gives_the_trained_network(tmp_path):
    model, X, y = small_problem()
    fit(model, SIBP(), X, y, epochs=2, batch_size=10, verbose=0, checkpoint=tmp_path / "c.h5")
    back = MLP.from_checkpoint(tmp_path / "c.h5")
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_from_checkpoint_keeps_the_recorded_architecture(tmp_path):
    # the run records model.architecture(): nothing is invented (init, init_std)
    model = MLP([5, 7, 3], init="he", init_std=0.3, seed=0, dtype="float64")
    X, y = np.random.default_rng(0).normal(size=(20, 5)), np.arange(20) % 3
    fit(model, SIBP(), X, y, epochs=1, batch_size=10, verbose=0, checkpoint=tmp_path / "c.h5")
    assert MLP.from_checkpoint(tmp_path / "c.h5").architecture() == model.architecture()


class Wide(MLP):
    """A subclass (at module level, so that pickle can find it)."""


def test_copy_pickle_astype_and_files_keep_a_subclass(tmp_path):
    model, X, _ = small_problem()
    model = Wide.from_state(model.__getstate__())
    model.save(tmp_path / "w.h5")
    for other in (model.copy(), pickle.loads(pickle.dumps(model)), model.astype("float64"),
                  Wide.load(tmp_path / "w.h5")):
        assert type(other) is Wide
        np.testing.assert_allclose(other.predict_proba(X), model.predict_proba(X), rtol=1e-5)
    diverged = model.copy()
    diverged.params()[0][0, 0] = np.nan  # a copy carries a diverged network as it is
    assert not diverged.copy().params_finite()


def test_astype_predicts_in_another_precision():
    model, X, _ = small_problem(dtype="float32")
    wide = model.astype("float64")
    assert wide is not model and wide.dtype == np.float64 and model.astype("float32") is model
    np.testing.assert_allclose(wide.predict_proba(X), model.predict_proba(X), rtol=1e-5)


def _write(path, **attrs):
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def test_bad_model_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLP.load(tmp_path / "none.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ModelFileError, match="not a readable HDF5 file"):
        MLP.load(tmp_path / "text.h5")
    with pytest.raises(ModelFileError, match="not a sibp_np model"):
        MLP.load(_write(tmp_path / "other.h5", format="something"))
    model, _, _ = small_problem()
    # each edit below recomputes the checksum, so that the field checks behind it are reached
    model.save(tmp_path / "good.h5")
    with resealed(tmp_path / "good.h5") as f:
        del f["params/b1"]
    with pytest.raises(ModelFileError, match=r"missing \['b1'\]"):
        MLP.load(tmp_path / "good.h5")
    model.save(tmp_path / "shape.h5")
    with resealed(tmp_path / "shape.h5") as f:
        del f["params/W0"]
        f["params/W0"] = np.zeros((2, 2))
    with pytest.raises(ModelFileError, match=r"parameter W0 must be a float array of shape \(5, 6\)"):
        MLP.load(tmp_path / "shape.h5")
    model.save(tmp_path / "arch.h5")
    with resealed(tmp_path / "arch.h5") as f:
        f.attrs["architecture"] = f.attrs["architecture"].replace('"relu"', '"swish"')
    with pytest.raises(ModelFileError, match="invalid architecture: activation='swish'"):
        MLP.load(tmp_path / "arch.h5")
    model.save(tmp_path / "nan.h5")
    with resealed(tmp_path / "nan.h5") as f:
        f["params/W1"][0, 0] = np.nan
    with pytest.raises(ModelFileError, match="parameter W1 holds NaN or inf"):
        MLP.load(tmp_path / "nan.h5")


@contextlib.contextmanager
def resealed(path):
    """Edit a model file and recompute its checksum, as a deliberate edit would."""
    from sibp_np._io import hdf5_digest
    with h5py.File(path, "a") as f:
        yield f
        f.attrs["sha256"] = hdf5_digest(f)


def test_a_model_file_with_a_flipped_byte_is_refused(tmp_path):
    model, X, _ = small_problem()
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:  # one parameter changed, the checksum left as it was
        W = f["params/W0"][()]
        W.view(np.uint8)[3] ^= 1
        f["params/W0"][...] = W
    with pytest.raises(ModelFileError, match="is corrupt: its SHA-256 checksum does not match"):
        MLP.load(tmp_path / "m.h5")


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model, X, _ = small_problem()
    model.save(tmp_path / "m.h5")
    before = (tmp_path / "m.h5").read_bytes()
    other = MLP([6, 5, 4, 3], seed=9, dtype="float64")
    def full(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(OSError, match="disk full"):
        other.save(tmp_path / "m.h5")
    assert (tmp_path / "m.h5").read_bytes() == before and list(tmp_path.iterdir()) == [tmp_path / "m.h5"]
