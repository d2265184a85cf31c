"""Model files: one HDF5 file holds a network's architecture, its parameters and the package version.

The file is written atomically, with a SHA-256 checksum over everything in it. Reading treats it as
untrusted: the checksum and every field are checked (format, architecture, the set of parameters, their
shapes, dtypes and finiteness), and anything wrong is a :class:`ModelFileError` that names it. No pickle
is involved.
"""
import json
from pathlib import Path

import numpy as np

from ._io import atomic_path, check_declared_size, hdf5_digest, open_hdf5
from ._version import __version__

FORMAT = "sibp_np-model"
FORMAT_VERSION = 2  # 2: with a SHA-256 checksum (version 1 files, without one, still load)
ARCHITECTURE_KEYS = ("layer_sizes", "activation", "loss", "dtype", "init", "init_std")


class ModelFileError(ValueError):
    """A model file that cannot be read, or whose contents do not describe a valid network."""


def save_model(state, path):
    """Write ``state`` (``architecture`` dict and ``params`` dict of host arrays) to ``path``."""
    import h5py
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["sibp_np_version"] = __version__
        f.attrs["architecture"] = json.dumps(state["architecture"])
        g = f.create_group("params")
        for k, v in state["params"].items():
            g.create_dataset(k, data=v)
        f.attrs["sha256"] = hdf5_digest(f)


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
