"""Atomic file writes: a file is written under a temporary name in its folder, flushed and fsynced, then
moved over the target with ``os.replace``. A crash at any moment leaves the old file or the new one,
never a broken one."""
import contextlib
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Context manager yielding a temporary path to write; on success it replaces ``path``.

    Temporary files left by a writer that was killed (``.NAME.<pid>.tmp`` beside ``path``, whose process
    no longer runs) are removed first; a live writer's, another process writing the same file at the
    same time, is left alone. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if _writer_alive(stale.name[len(path.name) + 2:-len(".tmp")]):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def write_hdf5(path, format=None, format_version=None):
    """The one writer of this package's HDF5 files: yields an ``h5py.File`` open on a temporary path
    (:func:`atomic_path`); with ``format``, writes the header (``format``, ``format_version``,
    ``sibp_np_version``) first; and on success stamps the SHA-256 of everything written
    (:func:`hdf5_digest`, attribute ``sha256``) and moves the file into place."""
    import h5py

    from ._version import __version__
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        if format is not None:
            f.attrs["format"] = format
            f.attrs["format_version"] = format_version
            f.attrs["sibp_np_version"] = __version__
        yield f
        f.flush()
        f.attrs["sha256"] = hdf5_digest(f)


def _writer_alive(pid):
    """Whether the process ``pid`` (the text between the dots of a temporary name) still runs here."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # it exists (another user's process), or cannot be asked: leave its file alone
    return True


#: the most that deflate (gzip) can expand its input: a compressed dataset declaring more than this
#: many times its stored bytes cannot be real data
DEFLATE_MAX_RATIO = 1032


def check_declared_size(f, path, error, names=None):
    """Before reading: refuse datasets whose declared size the file cannot hold.

    A dataset of shape ``(2**31, 2)`` whose chunks were never written takes a few hundred bytes on disk
    and 16 GiB in memory once read. Every dataset in ``f`` (or those of ``names`` that exist) must have
    its declared bytes stored in the file: all of them when uncompressed, at least 1/1032 of them when
    compressed (deflate's limit). External and virtual datasets, which read other files, are refused.
    """
    import h5py
    items = []
    if names is None:
        f.visititems(lambda name, obj: items.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    else:
        items = [(n, f[n]) for n in names if n in f and isinstance(f[n], h5py.Dataset)]
    for name, d in items:
        if d.is_virtual or d.external:
            raise error(f"{path}: dataset {name!r} reads data from other files; refused")
        declared = int(np.prod(d.shape, dtype=np.float64)) * d.dtype.itemsize if d.shape else d.dtype.itemsize
        stored = d.id.get_storage_size()
        limit = stored * (DEFLATE_MAX_RATIO if d.compression else 1)
        if declared > max(limit, 64 * 1024 if not d.chunks else 0):
            raise error(f"{path}: dataset {name!r} declares {declared:,} bytes ({d.dtype} {d.shape}) "
                        f"but stores {stored:,}: refused before reading")


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def open_hdf5(path, what, error):
    """Open an untrusted HDF5 file for reading: ``FileNotFoundError`` when it is missing, ``error``
    (an exception class) naming ``what`` when it is not a readable HDF5 file."""
    import h5py
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise error(f"{what} {path} is not a readable HDF5 file (truncated, or not HDF5): {exc}") from exc


def hdf5_digest(f, arrays=None):
    """SHA-256 over every attribute and dataset of the open HDF5 file ``f`` (names, types, shapes and
    bytes), except the ``sha256`` attribute itself. ``arrays``, a dict, receives every dataset read
    (by path), so that a loader reads each array once."""
    import hashlib

    import h5py
    import numpy as np
    h = hashlib.sha256()
    names = []
    f.visit(names.append)
    for name in [""] + sorted(names):
        obj = f[name] if name else f
        for key in sorted(obj.attrs):
            if name or key != "sha256":
                value = obj.attrs[key]
                data = value.encode() if isinstance(value, str) else np.asarray(value).tobytes()
                h.update(f"attr {name}@{key} {type(value).__name__}\0".encode() + data + b"\0")
        if isinstance(obj, h5py.Dataset):
            a = np.ascontiguousarray(obj[()])
            if arrays is not None:
                arrays[name] = a
            h.update(f"data {name} {a.dtype.str} {a.shape}\0".encode() + a.tobytes() + b"\0")
    return h.hexdigest()
