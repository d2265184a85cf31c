"""Datasets: IDX (MNIST/Fashion-MNIST), CIFAR-10 python pickles, HDF5, and the embedded mnist-5k.

:func:`load_dataset` returns the paper's splits with pixels as floats in [0, 1]:

* ``mnist`` and ``fashion-mnist``: 55,000 train / 5,000 validation from the training file (seeded random
  split), plus the 10,000 test images;
* ``cifar10``: 45,000 / 5,000 from ``data_batch_1..5`` (seeded random split), plus ``test_batch``;
* ``mnist-5k``: the embedded 5,000 real MNIST digits, 4,000 / 1,000, stratified and seeded; no test set;
* a path ending in ``.h5``/``.hdf5``: arrays ``X_train, y_train`` and optionally ``X_val, y_val,
  X_test, y_test`` (see :func:`save_h5`).

Files are searched for in this order: ``root``, ``$SIBP_NP_DATA``, ``./data``, the package's own data
folder, and for Fashion-MNIST also ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``). Inside each place a dataset may sit in a sub-folder of its name
(``mnist/``, ``fashion-mnist/``, ``cifar10/``); an explicit ``root`` may also hold the files directly.
"""
import codecs
import dataclasses
import gzip
import hashlib
import importlib
import math
import os
import pickle
import struct
import sys
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ._io import atomic_path
from ._validation import check_dtype, check_int

DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-5k")
ENV_VAR = "SIBP_NP_DATA"

_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}

_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Published MD5 checksums of the original .gz files (as used by torchvision).
_SOURCES = {
    "mnist": {
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"),
        "md5": dict(zip(_MNIST_FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                       "d53e105ee54ea40749a09fcbcd1e9432",
                                       "9fb629c4189551a2d022fa330f9573f3",
                                       "ec29112dd5afa0611ce80d1b7f02629c")))},
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "md5": dict(zip(_MNIST_FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                       "25c81989df183df01b3e8a0aad5dffbe",
                                       "bef4ecab320f06d8554ea6380940ec79",
                                       "bb300cfdad3c16e7a12a480ee83cd310")))},
    "cifar10": {
        "mirrors": ("https://www.cs.toronto.edu/~kriz/",),
        "md5": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}},
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_MNIST5K_FILES = ("mnist-5k-images-idx3-ubyte.gz", "mnist-5k-labels-idx1-ubyte.gz")
_HOW_TO_GET = {
    "mnist": "download=True (or `sibp-np train --download`) where the network allows, or copy the four "
             "IDX .gz files from a machine that has them",
    "fashion-mnist": "`apt-get install dataset-fashion-mnist` (Debian), download=True where the network "
                     "allows, or copy the four IDX .gz files",
    "cifar10": "download=True where the network allows, or unpack cifar-10-python.tar.gz there",
    "mnist-5k": "it ships in the repository's data/ folder; reinstall sibp_np from a full checkout",
}


# ------------------------------------------------------------------------------------ IDX files
def _open_maybe_gz(path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path):
    """Read an IDX file (the MNIST format), gzip-compressed or raw.

    Returns
    -------
    numpy.ndarray with the file's dimensions and element type (native byte order).

    Raises
    ------
    ValueError
        Bad magic number, unknown type code, or a file shorter or longer than its header says.
    """
    path = Path(path)
    try:
        with _open_maybe_gz(path) as fh:
            data = fh.read()
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"IDX file {path} is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file: bad magic number {data[:4]!r}")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}")
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header is truncated (ndim={ndim}, {len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dt = _IDX_TYPES[code]
    expected = math.prod(dims) * dt.itemsize  # Python ints: no overflow for absurd headers
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise ValueError(f"IDX file {path} is truncated or corrupt: header says {dims} "
                         f"({expected} bytes of data) but {len(body)} bytes follow")
    return np.frombuffer(body, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` as an IDX file (gzip-compressed if the name ends in ``.gz``)."""
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"array dtype {array.dtype} has no IDX type code")
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(_IDX_TYPES[code], copy=False).tobytes()
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.GzipFile(tmp, "wb", mtime=0) as fh:
                fh.write(header + body)
        else:
            tmp.write_bytes(header + body)


# ------------------------------------------------------------------------------------ CIFAR-10
def _numpy_internal(name):
    """``numpy._core.multiarray._reconstruct`` and friends, wherever this NumPy keeps them."""
    module, attr = name.rsplit(".", 1)
    for candidate in (f"numpy._core.{module}", f"numpy.core.{module}"):
        try:
            return getattr(importlib.import_module(candidate), attr)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this NumPy has no {name}")


class _PickledNDArray:
    """What ``numpy.ndarray`` stands for in a CIFAR pickle: an argument of :func:`_empty_array` only.
    Called directly, as a crafted file does to declare gigabytes of memory as pixels, it refuses."""

    def __init__(self, *args, **kwargs):
        raise pickle.UnpicklingError("it calls numpy.ndarray directly (a declared size, not data): refused")


def _empty_array(subtype, shape, dtype):
    """NumPy's ``_reconstruct``, which pickles always call with an empty shape before filling the array
    from its bytes (whose length must then match the shape): any other shape is refused."""
    if subtype is not _PickledNDArray or not isinstance(shape, tuple) or math.prod(shape) != 0:
        raise pickle.UnpicklingError(f"it reconstructs an array of shape {shape!r} before its data: "
                                     f"refused")
    return _numpy_internal("multiarray._reconstruct")(np.ndarray, shape, dtype)


#: what a CIFAR-10 batch may reference: NumPy's array reconstruction, and bytes from Python 2 strings
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): lambda: _PickledNDArray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _empty_array,
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_internal("numeric._frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_internal("numeric._frombuffer"),
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and NumPy arrays: a crafted file
    cannot name any other function, so it cannot run code."""

    def find_class(self, module, name):
        make = _CIFAR_GLOBALS.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-10 batch does "
                                         f"not contain (refused: unpickling it could run code)")
        return make()


def read_cifar10_batch(path):
    """Read one CIFAR-10 "python version" batch: ``(X uint8 (n, 3072), y int64 (n,))``.

    The file is unpickled by a restricted unpickler (:class:`_CifarUnpickler`); pixels must be integers
    in 0..255 and labels integers in 0..9.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"{path} is not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a CIFAR-10 batch is a dict, got {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise ValueError(f"{path}: CIFAR-10 batch is missing key(s) {missing}; has {sorted(d)}")
    X, y = np.asarray(d["data"]), np.asarray(d["labels"])
    if X.ndim != 2 or X.shape[1] != 3072 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: expected data of shape (n, 3072) and n labels, got {X.shape} and "
                         f"{y.shape}")
    X = _integral(X, f"{path}: pixel", 0, 255)
    y = _integral(y, f"{path}: label", 0, 9)
    return X.astype(np.uint8), y.astype(np.int64)


def _integral(a, what, lo, hi):
    """``a`` if it holds whole numbers in ``[lo, hi]``, else a ValueError naming ``what``."""
    if a.dtype.kind not in "iufb":
        raise ValueError(f"{what}s must be numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and np.array_equal(a, np.round(a))):
        raise ValueError(f"{what}s must be whole numbers; found non-integral values such as "
                         f"{a[np.round(a) != a][:3].tolist()}")
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{what}s must lie in {lo}..{hi}; found {a.min()}..{a.max()}")
    return a


def read_cifar10(folder):
    """Read ``data_batch_1..5`` and ``test_batch`` from ``folder``: ``(X_train, y_train, X_test, y_test)``."""
    folder = Path(folder)
    parts = [read_cifar10_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    X_test, y_test = read_cifar10_batch(folder / "test_batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            X_test, y_test)


# ------------------------------------------------------------------------------------ HDF5
def save_h5(path, **arrays):
    """Save arrays (e.g. ``X_train=..., y_train=..., X_val=..., ...``) to an HDF5 file (gzip)."""
    import h5py
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in arrays.items():
            v = np.asarray(v)
            f.create_dataset(k, data=v, compression="gzip" if v.size > 1024 else None)


#: the datasets a dataset file may hold; anything else in it is never read
SPLIT_NAMES = tuple(f"{v}_{s}" for s in ("train", "val", "test") for v in "Xy")


def load_h5(path, names=SPLIT_NAMES):
    """The datasets ``names`` of an HDF5 file (those present) as a dict of NumPy arrays, each checked
    against the file's size before it is read (:func:`sibp_np._io.check_declared_size`)."""
    import h5py

    from ._io import check_declared_size
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            check_declared_size(f, path, ValueError, names=names)
            return {k: f[k][()] for k in names if k in f and isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file ({exc})") from exc


# ------------------------------------------------------------------------------------ loading
@dataclasses.dataclass
class Dataset:
    """Splits of a dataset; ``X_*`` are float arrays in [0, 1] of shape (n, n_features)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray = None
    y_test: np.ndarray = None
    source: str = ""

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def task(self):
        """``"regression"`` when the targets are real numbers (an ``.h5`` file's float ``y``), else
        ``"classification"``."""
        return "regression" if self.y_train.dtype.kind == "f" else "classification"

    @property
    def n_classes(self):
        if self.task == "regression":
            raise TypeError(f"{self.name} is a regression dataset: it has n_outputs, not classes")
        return int(max(self.y_train.max(), self.y_val.max() if self.y_val.size else 0)) + 1

    @property
    def n_outputs(self):
        """Classes of a classification, outputs (target columns) of a regression."""
        if self.task == "regression":
            return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]
        return self.n_classes

    @property
    def train(self):
        return self.X_train, self.y_train

    @property
    def val(self):
        return self.X_val, self.y_val

    @property
    def test(self):
        return self.X_test, self.y_test

    def __repr__(self):
        n_test = 0 if self.X_test is None else len(self.X_test)
        return (f"Dataset({self.name!r}: train {self.X_train.shape}, val {self.X_val.shape}, test "
                f"{n_test}, from {self.source})")


def package_data_dirs():
    """The folders where the package's own data may be: the checkout's data/ and the install's."""
    here = Path(__file__).resolve().parent
    return [here.parent / "data", Path(sys.prefix) / "share" / "sibp_np" / "data"]


def search_places(name, root=None):
    """Folders searched for ``name``, in order (existing or not)."""
    places = []
    if root is not None:
        places += [Path(root), Path(root) / name]
    env = os.environ.get(ENV_VAR)
    if env:
        places += [Path(env) / name] + ([Path(env)] if name == "mnist-5k" else [])
    places += [Path("data") / name] + ([Path("data")] if name == "mnist-5k" else [])
    if name == "mnist-5k":
        places += package_data_dirs()
    if name == "fashion-mnist":
        places.append(Path("/usr/share/datasets/fashion-mnist"))
    if name == "cifar10":
        places = [q for p in places for q in (p, p / _CIFAR_DIR)]
    out = []
    for p in places:
        if p not in out:
            out.append(p)
    return out


def _files_for(name):
    return {"mnist": _MNIST_FILES, "fashion-mnist": _MNIST_FILES, "cifar10": _CIFAR_FILES,
            "mnist-5k": _MNIST5K_FILES}[name]


def find_files(name, root=None):
    """The first searched folder that holds all of ``name``'s files, else FileNotFoundError."""
    files = _files_for(name)
    places = search_places(name, root)
    for p in places:
        if all(_exists(p / f) for f in files):
            return p
    raise FileNotFoundError(
        f"dataset {name!r} not found: need {', '.join(files)}; searched "
        f"{', '.join(str(p) for p in places)}. To get it: {_HOW_TO_GET[name]}.")


def _exists(path):
    return path.exists() or (path.suffix == ".gz" and path.with_suffix("").exists())


def _idx(folder, fname):
    p = folder / fname
    return read_idx(p if p.exists() else p.with_suffix(""))


def _mnist_pair(folder, images, labels):
    """MNIST-format images ``(n, 784)`` and labels ``(n,)``, checked: 28 x 28 images of whole numbers in
    0..255, one whole-number label in 0..9 per image."""
    X, y = _idx(folder, images), _idx(folder, labels)
    if X.ndim != 3 or X.shape[1:] != (28, 28):
        raise ValueError(f"{folder / images}: expected images of shape (n, 28, 28), got {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{folder}: {images} holds {len(X)} images but {labels} has shape {y.shape}")
    X = _integral(X, f"{folder / images}: pixel", 0, 255)
    y = _integral(y, f"{folder / labels}: label", 0, 9)
    return X.reshape(len(X), 784), y.astype(np.int64)


def _split(n, n_val, seed, y=None):
    """Seeded split of ``range(n)`` into (train, val) index arrays; stratified by ``y`` if given."""
    rng = np.random.default_rng(seed)
    if y is None:
        perm = rng.permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    classes = np.unique(y)
    val = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        k = int(round(n_val * len(idx) / n))
        val.append(rng.permutation(idx)[:k])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(n), val)
    # keep no class order: the embedded file is sorted by label
    return rng.permutation(train), rng.permutation(val)


def load_dataset(name, root=None, download=False, split_seed=0, dtype="float32"):
    """Load a dataset with the paper's splits.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "cifar10", "mnist-5k"} or path to an ``.h5`` file
    root : path, optional
        Searched first.
    download : bool
        Fetch missing MNIST/Fashion-MNIST/CIFAR-10 files from the usual mirrors (with progress and an
        MD5 check) into ``root`` (or ``$SIBP_NP_DATA``, or ``./data``).
    split_seed : int
        Seeds the train/validation split.
    dtype : {"float32", "float64"}

    Returns
    -------
    Dataset
    """
    dt = check_dtype("dtype", dtype)
    split_seed = check_int("split_seed", split_seed, minimum=0)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a dataset name or a path, got {type(name).__name__}")
    sname = str(name)
    if sname.lower().endswith((".h5", ".hdf5")):
        return _load_h5_dataset(Path(sname), dt)
    key = sname.strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
           "mnist5k": "mnist-5k"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"dataset={name!r} is not known; choose one of {', '.join(DATASETS)} or give "
                         f"a path to an .h5 file")
    try:
        folder = find_files(key, root)
    except FileNotFoundError:
        if not download or key == "mnist-5k":
            raise
        folder = _download(key, root)
    scale = dt.type(1.0 / 255.0)
    if key in ("mnist", "fashion-mnist", "mnist-5k"):
        if key == "mnist-5k":
            X, y = _mnist_pair(folder, *_MNIST5K_FILES)
            tr, va = _split(len(y), 1000, split_seed, y=y)
            Xt = yt = None
        else:
            X, y = _mnist_pair(folder, *_MNIST_FILES[:2])
            Xt, yt = _mnist_pair(folder, *_MNIST_FILES[2:])
            tr, va = _split(len(y), 5000 if len(y) > 10000 else len(y) // 12, split_seed)
    else:
        X, y, Xt, yt = read_cifar10(folder)
        tr, va = _split(len(y), 5000 if len(y) > 10000 else len(y) // 10, split_seed)
    def conv(A):
        return None if A is None else A.astype(dt) * scale
    return Dataset(key, conv(X[tr]), y[tr], conv(X[va]), y[va], conv(Xt), yt, str(folder))


def _load_h5_dataset(path, dt):
    """An ``.h5`` dataset, checked: ``X_*``/``y_*`` come in pairs of matching lengths, every ``X_*`` has
    ``X_train``'s width, and labels are whole numbers >= 0 (real ``y`` that are not all whole numbers
    make a regression). ``X_val``/``y_val`` and ``X_test``/``y_test`` are optional."""
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    d = load_h5(path)
    for split in ("train", "val", "test"):
        pair = (f"X_{split}", f"y_{split}")
        if (pair[0] in d) != (pair[1] in d):
            raise ValueError(f"{path}: {pair[0]} and {pair[1]} come together, but only "
                             f"{pair[0] if pair[0] in d else pair[1]} is there")
    if "X_train" not in d:
        raise ValueError(f"{path}: missing dataset(s) ['X_train', 'y_train']; has {sorted(d)}")
    y_train = np.asarray(d["y_train"])
    real = y_train.dtype.kind == "f" and not np.array_equal(y_train, np.round(y_train))
    width, splits = None, {}
    for split in ("train", "val", "test"):
        if f"X_{split}" not in d:
            continue
        X, y = np.asarray(d[f"X_{split}"]), np.asarray(d[f"y_{split}"])
        if X.ndim < 1 or X.dtype.kind not in "iufb":
            raise ValueError(f"{path}: X_{split} must be a numeric array (n, ...), got {X.dtype} {X.shape}")
        X = X.reshape(X.shape[0], math.prod(X.shape[1:]))
        width = X.shape[1] if width is None else width
        if X.shape[1] != width:
            raise ValueError(f"{path}: X_{split} has {X.shape[1]} features but X_train has {width}")
        if y.ndim < 1 or len(y) != len(X):
            raise ValueError(f"{path}: X_{split} has {len(X)} rows but y_{split} has shape {y.shape}")
        if real:
            y = np.asarray(y, dtype=dt)
        else:
            y = _integral(y, f"{path}: y_{split} label", 0, np.iinfo(np.int64).max).astype(np.int64)
        splits[split] = (np.asarray(X, dtype=dt), y)
    if not real:  # K output units for labels 0 ... K-1: more classes than samples is no dataset
        n = sum(len(y) for _, y in splits.values())
        top = max(int(y.max()) for _, y in splits.values() if len(y))
        if top + 1 > max(n, 2):
            raise ValueError(f"{path}: label {top} asks for {top + 1} classes (output units) in a dataset of "
                             f"{n} samples; labels must be 0 ... K-1 with K at most the number of samples")
    X_train, y_train = splits["train"]
    X_val, y_val = splits.get("val", (X_train[:0], y_train[:0]))
    X_test, y_test = splits.get("test", (None, None))
    return Dataset(path.stem, X_train, y_train, X_val, y_val, X_test, y_test, str(path))


# ------------------------------------------------------------------------------------ download
def _urlopen(url, timeout=30):
    return urllib.request.urlopen(url, timeout=timeout)


def _download(key, root):
    dest_root = Path(root) if root is not None else Path(os.environ.get(ENV_VAR) or "data")
    dest = dest_root / key
    dest.mkdir(parents=True, exist_ok=True)
    src = _SOURCES[key]
    for fname, md5 in src["md5"].items():
        target = dest / fname
        if target.exists() and _md5(target) == md5:
            continue
        errors = []
        for mirror in src["mirrors"]:
            try:
                _fetch(mirror + fname, target, md5)
                break
            except Exception as exc:  # network errors, HTTP errors, checksum mismatch
                errors.append(f"{mirror + fname}: {exc}")
        else:
            raise RuntimeError(
                f"could not download {fname} for dataset {key!r} ({'; '.join(errors)}). If this machine "
                f"is offline, place the files in {dest} by hand. Other way to get it: {_HOW_TO_GET[key]}.")
    if key == "cifar10":
        with tarfile.open(dest / "cifar-10-python.tar.gz") as tf:
            tf.extractall(dest, filter="data")
    return find_files(key, root if root is not None else dest_root)


def _fetch(url, target, md5):
    tmp = target.with_name(target.name + ".part")
    h = hashlib.md5()
    with _urlopen(url) as r, open(tmp, "wb") as out:
        total = int(r.headers.get("Content-Length") or 0)
        got = 0
        while True:
            block = r.read(1 << 20)
            if not block:
                break
            out.write(block)
            h.update(block)
            got += len(block)
            if total:
                sys.stderr.write(f"\r{target.name}: {got / total:6.1%} of {total / 1e6:.1f} MB")
        sys.stderr.write("\n")
    if h.hexdigest() != md5:
        tmp.unlink()
        raise ValueError(f"checksum mismatch (md5 {h.hexdigest()}, expected {md5})")
    os.replace(tmp, target)


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
