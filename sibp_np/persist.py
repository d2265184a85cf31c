"""Model files: one HDF5 file holds a network's architecture, its parameters and the package version.

The file is written atomically, with a SHA-256 checksum over everything in it. Reading treats it as
untrusted: the checksum and every field are checked (format, architecture, the set of parameters, their
shapes, dtypes and finiteness), and anything wrong is a :class:`ModelFileError` that names it. No pickle
is involved.
"""
import json
from pathlib import Path

import numpy as np

from ._io import check_declared_size, hdf5_digest, open_hdf5, write_hdf5
from ._validation import check_dtype, check_output_path
from ._version import __version__
from .functions import ACTIVATIONS, LOSSES

FORMAT = "sibp_np-model"
FORMAT_VERSION = 2  # 2: with a SHA-256 checksum (version 1 files, without one, still load)
ARCHITECTURE_KEYS = ("layer_sizes", "activation", "loss", "dtype", "init", "init_std")


class Persistent:
    """What :class:`sibp_np.MLP` is besides the network: its model files, pickling, copies and dtype
    conversions, which all rebuild a network by one path (:meth:`__setstate__`). A subclass keeps its
    class through every one of them."""

    def architecture(self):
        """What :meth:`save` writes besides the parameters (`architecture`)."""
        return architecture(self)

    def save(self, path):
        """Write the network to one HDF5 file, atomically (`save_model`);
        :meth:`load` reads it back, and the loaded model's predictions are bitwise the same."""
        save_model(self, check_output_path("path", path, (".h5", ".hdf5")))

    @classmethod
    def load(cls, path, backend=None):
        """The network saved in ``path`` by :meth:`save`, on ``backend`` (default: the current one).
        Raises ``FileNotFoundError``, or :class:`~sibp_np.persist.ModelFileError` naming what is wrong."""
        return load_model(cls, path, backend)

    def __getstate__(self):
        # the backend holds a module: it travels by name, and the arrays as host copies
        return self._state(self.get_params())

    def _state(self, params):
        return {"activation": self.activation, "loss": self.loss, "layer_sizes": list(self.layer_sizes),
                "dtype": self.dtype.name, "init": self.init, "init_std": self.init_std,
                "backend": self.backend.name, "params": params}

    def __setstate__(self, state):
        """The one rebuild path: unpickling, :meth:`copy`, :meth:`astype` and the file loaders."""
        self._configure(state["layer_sizes"], state["activation"], state["init_std"], state["dtype"],
                        state["backend"], state["init"], state["loss"])
        n = len(self.layer_sizes) - 1
        self._store_params([state["params"][f"W{i}"] for i in range(n)],
                           [state["params"][f"b{i}"] for i in range(n)], check=state.get("check", True))

    @classmethod
    def from_state(cls, state):
        """A network of this class from a :meth:`__getstate__` dictionary."""
        model = cls.__new__(cls)
        model.__setstate__(state)
        return model

    def astype(self, dtype):
        """The network with its parameters converted to ``dtype`` (a copy), or ``self`` when it already
        has that dtype. E.g. ``model.astype("float64").predict(X)`` predicts a float32 network in float64."""
        dtype = check_dtype("dtype", dtype)
        return self if dtype == self.dtype else self.from_state({**self.__getstate__(), "dtype": dtype.name})

    def copy(self):
        """An independent copy (of the same class, on the same backend; diverged parameters too)."""
        params = {f"{k}{i}": a.copy() for k, arrays in (("W", self._W), ("b", self._b))
                  for i, a in enumerate(arrays)}  # copied where they are: no trip to the host
        return self.from_state({**self._state(params), "backend": self.backend, "check": False})


class ModelFileError(ValueError):
    """A model file that cannot be read, or whose contents do not describe a valid network."""


def architecture(model):
    """``{"layer_sizes", "activation", "loss", "dtype", "init", "init_std"}`` of ``model``: what a model
    file holds besides the parameters. A ``TypeError`` when the activation or loss is not a registered
    name (a file can only name them)."""
    for part, obj in (("activation", model.activation), ("loss", model.loss)):
        registry = ACTIVATIONS if part == "activation" else LOSSES
        if registry.get(obj.name) is not type(obj):
            raise TypeError(f"{part} {obj!r} is not a registered name: a model file can only name it")
    return {"layer_sizes": list(model.layer_sizes), "activation": model.activation.name,
            "loss": model.loss.name, "dtype": model.dtype.name, "init": model.init,
            "init_std": model.init_std}


def save_model(model, path):
    """Write ``model``'s architecture and parameters to ``path`` (atomically, with a checksum)."""
    arch = architecture(model)
    with write_hdf5(path, FORMAT, FORMAT_VERSION) as f:
        f.attrs["architecture"] = json.dumps(arch)
        g = f.create_group("params")
        for k, v in model.get_params().items():
            g.create_dataset(k, data=v)


def load_model(cls, path, backend=None):
    """The network of class ``cls`` saved in ``path`` by :func:`save_model`, on ``backend``."""
    state = read_model(path)
    return build_model(cls, state["architecture"], state["params"], backend, path)


def build_model(cls, arch, params, backend, source):
    """A network of class ``cls`` from a checked architecture and parameters; ``source`` names the file
    in a :class:`ModelFileError`."""
    try:
        return cls.from_state({**arch, "backend": backend, "params": params})
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: invalid architecture: {exc}") from exc


def read_model(path):
    """The state saved by :func:`save_model`, checked: ``{"architecture", "params", "version"}``."""
    path = Path(path)
    with open_hdf5(path, "model file", ModelFileError) as f:
        if f.attrs.get("format") != FORMAT:
            raise ModelFileError(f"{path} is an HDF5 file but not a sibp_np model (format "
                                 f"{f.attrs.get('format')!r}); a checkpoint loads with MLP.from_checkpoint")
        if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
            raise ModelFileError(f"{path} has model format version {f.attrs['format_version']}, newer "
                                 f"than this sibp_np ({__version__}) reads ({FORMAT_VERSION})")
        check_declared_size(f, path, ModelFileError)  # before anything is read
        try:
            arch = json.loads(f.attrs["architecture"])
            group = f["params"]
            params = {k: group[k][()] for k in group}
            checked = int(f.attrs["format_version"]) >= 2
            if checked and f.attrs.get("sha256") != hdf5_digest(f):
                raise ModelFileError(f"model file {path} is corrupt: its SHA-256 checksum does not match "
                                     f"its contents (a changed byte, or an edit)")
        except ModelFileError:
            raise
        except Exception as exc:  # missing attributes or groups, unreadable datasets
            raise ModelFileError(f"model file {path} is damaged: {type(exc).__name__}: {exc}") from exc
        version = str(f.attrs.get("sibp_np_version", "?"))
    return {"architecture": check_architecture(arch, path), "params": check_params(params, arch, path),
            "version": version}


def check_architecture(arch, source):
    if not isinstance(arch, dict) or any(k not in arch for k in ARCHITECTURE_KEYS):
        raise ModelFileError(f"{source}: the architecture must give {', '.join(ARCHITECTURE_KEYS)}; "
                             f"got {arch!r}")
    sizes = arch["layer_sizes"]
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ModelFileError(f"{source}: layer_sizes must be a list of at least 2 positive ints, "
                             f"got {sizes!r}")
    return {k: arch[k] for k in ARCHITECTURE_KEYS}


def check_params(params, arch, source):
    """Exactly ``W0, b0, ..., W{L-1}, b{L-1}``, float arrays of the architecture's shapes."""
    sizes = arch["layer_sizes"]
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"W{i}"], shapes[f"b{i}"] = (n_out, n_in), (n_out,)
    missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
    if missing or extra:
        raise ModelFileError(f"{source}: the parameters do not match layer_sizes {sizes}: missing "
                             f"{missing or 'none'}, unexpected {extra or 'none'}")
    for k, shape in shapes.items():
        a = np.asarray(params[k])
        if a.shape != shape or a.dtype.kind != "f":
            raise ModelFileError(f"{source}: parameter {k} must be a float array of shape {shape}, got "
                                 f"{a.dtype} {a.shape}")
        if not np.isfinite(a).all():
            raise ModelFileError(f"{source}: parameter {k} holds NaN or inf")
    return {k: np.asarray(params[k]) for k in shapes}
