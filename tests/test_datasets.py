import gzip
import pickle
import struct

import numpy as np
import pytest

import sibp_np.datasets as ds
from sibp_np.datasets import load_dataset, read_cifar10_batch, read_idx, save_h5, write_idx


def write_mnist_like(folder, n_train=24, n_test=12, seed=0):
    r = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    X = r.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y = (np.arange(n_train) % 10).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", X)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y)
    write_idx(folder / "t10k-images-idx3-ubyte", r.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))
    return X, y


def test_idx_header_is_the_real_format(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(tmp_path / "a.idx", a)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x02" and struct.unpack(">II", raw[4:12]) == (2, 3)
    assert raw[12:] == bytes(range(6))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    write_idx(tmp_path / "b.gz", a.astype(np.int32))
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), a)


def test_idx_errors(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((5, 4), np.uint8))
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match=r"truncated or corrupt: header says \(5, 4\) \(20 bytes of data\) "
                                         r"but 17 bytes follow"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut.gz")


def test_mnist_loader_on_files_in_the_real_format(tmp_path):
    X, y = write_mnist_like(tmp_path / "mnist")
    d = load_dataset("mnist", root=tmp_path)
    assert d.X_train.shape == (22, 784) and d.X_val.shape == (2, 784) and d.X_test.shape == (12, 784)
    assert d.X_train.dtype == np.float32 and d.X_train.min() >= 0 and d.X_train.max() <= 1
    both = np.concatenate([d.X_train, d.X_val]) * 255
    np.testing.assert_array_equal(np.sort(np.round(both).astype(int), axis=0),
                                  np.sort(X.reshape(24, -1).astype(int), axis=0))


def test_search_order_env_var_and_missing_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIBP_NP_DATA", str(tmp_path / "store"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "store" / "mnist") in msg
    assert "download=True" in msg
    write_mnist_like(tmp_path / "store" / "mnist")
    assert load_dataset("mnist").source == str(tmp_path / "store" / "mnist")


def test_download_failure_is_reported_clearly(tmp_path, monkeypatch):
    def offline(url, timeout=30):
        raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(ds, "_urlopen", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"could not download train-images-idx3-ubyte.gz for dataset "
                                           r"'mnist' \(.*name resolution.*offline, place the files in"):
        load_dataset("mnist", root=tmp_path / "x", download=True)


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    import io

    class Resp(io.BytesIO):
        headers = {"Content-Length": "5"}
    monkeypatch.setattr(ds, "_urlopen", lambda url, timeout=30: Resp(b"wrong"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIBP_NP_DATA", raising=False)
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        load_dataset("mnist", root=tmp_path, download=True)
    assert not list((tmp_path / "mnist").glob("*.gz"))  # nothing half-written is left


def _cifar_batch(path, n, seed, drop=None):
    r = np.random.default_rng(seed)
    # as in the real files: Python ints for the labels, a uint8 array for the pixels, protocol 2
    d = {b"batch_label": b"x", b"labels": [int(v) for v in r.integers(0, 10, size=n)],
         b"data": r.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"filenames": [b"f"] * n}
    if drop:
        del d[drop]
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=2)


def test_cifar10_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _cifar_batch(folder / f"data_batch_{i}", 12, i)
    _cifar_batch(folder / "test_batch", 7, 9)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.X_train.shape[1] == 3072 and len(d.X_train) + len(d.X_val) == 60 and len(d.X_test) == 7
    X, y = read_cifar10_batch(folder / "data_batch_1")
    assert X.shape == (12, 3072) and X.dtype == np.uint8


def test_cifar10_missing_keys(tmp_path):
    _cifar_batch(tmp_path / "b", 4, 0, drop=b"labels")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['labels'\]"):
        read_cifar10_batch(tmp_path / "b")
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 pickle"):
        read_cifar10_batch(tmp_path / "junk")


def test_h5_datasets(tmp_path):
    r = np.random.default_rng(0)
    save_h5(tmp_path / "d.h5", X_train=r.random((30, 5)), y_train=r.integers(0, 3, 30),
            X_val=r.random((6, 5)), y_val=r.integers(0, 3, 6))
    d = load_dataset(str(tmp_path / "d.h5"))
    assert d.X_train.shape == (30, 5) and d.y_val.shape == (6,) and d.X_test is None
    save_h5(tmp_path / "bad.h5", X=r.random((3, 2)))
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['X_train', 'y_train'\]"):
        load_dataset(str(tmp_path / "bad.h5"))
    (tmp_path / "fake.h5").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        load_dataset(str(tmp_path / "fake.h5"))


def test_embedded_mnist_5k_is_real_and_split_stratified():
    d = load_dataset("mnist-5k")
    assert d.X_train.shape == (4000, 784) and d.X_val.shape == (1000, 784) and d.X_test is None
    assert np.bincount(d.y_val).tolist() == [100] * 10
    assert np.bincount(d.y_train).tolist() == [400] * 10
    assert d.X_train.max() == 1.0 and (d.X_train == 0).mean() > 0.7  # real digits: mostly background
    assert len(np.unique(np.round(d.X_train * 255))) > 200
    d2 = load_dataset("mnist-5k", split_seed=1)
    assert not np.array_equal(d.y_train[:50], d2.y_train[:50])


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset='imagenet' is not known; choose one of mnist"):
        load_dataset("imagenet")
    with pytest.raises(TypeError, match="name must be a dataset name"):
        load_dataset(3)


def test_h5_dataset_without_val_or_test_loads(tmp_path):
    X = np.random.default_rng(0).random((10, 3, 2))  # rows are flattened to 6 features
    save_h5(tmp_path / "d.h5", X_train=X, y_train=np.arange(10) % 2)
    d = load_dataset(str(tmp_path / "d.h5"))
    assert d.X_train.shape == (10, 6) and d.X_val.shape == (0, 6) and d.y_val.shape == (0,)
    assert d.X_test is None and d.n_classes == 2 and d.task == "classification"
