"""The per-epoch records of a run, and their JSON and HDF5 files.

``History.load(path)`` reads both formats; ``History.save(path)`` writes either, atomically.
"""
import json
import math
from pathlib import Path

import numpy as np

from ._io import write_hdf5, write_text
from ._validation import check_output_path

#: the keys of every record (plus ``epoch_float``, and ``grad_norm`` when the stationarity is asked for)
#: the keys of a classification record; a regression record has ``*_mse`` and ``*_r2`` in place of
#: ``*_acc``, and a step-size schedule adds the value it set (``eta`` or ``lr``)
METRICS = ("epoch", "iterations", "train_loss", "train_acc", "val_loss", "val_acc", "batch_loss",
           "train_seconds", "elapsed_seconds")
_INT_KEYS = ("epoch", "iterations")
_HDF5_SUFFIXES = (".h5", ".hdf5")


def jsonable(o):
    """``default=`` for :func:`json.dumps`: NumPy scalars and arrays, tuples and sets, else ``str``."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


class History:
    """Per-epoch records of a run.

    ``history.records`` is a list of dicts with the keys of :data:`METRICS` (for a regression, ``mse``
    and ``r2`` in place of ``acc``; with a schedule, its ``eta`` or ``lr``). Record 0 is the initial
    network (epoch 0, no update). ``history["val_acc"]`` is the column as a list. ``history.diverged``
    is ``None`` or a dict with the epoch, iteration, method and reason. ``history.config`` describes
    the run (model, method and hyperparameters, batch size, seeds, ...); ``history.environment`` the
    machine and software it ran on (:func:`sibp_np.environment.environment`); ``history.summary`` what
    was found once, after training: ``"test"`` (the test-set metrics of ``fit(..., test=...)``) and
    ``"early_stopping"`` (:class:`~sibp_np.callbacks.EarlyStopping`'s best epoch).
    """

    def __init__(self, config=None, environment=None):
        self.records = []
        self.diverged = None
        self.config = dict(config or {})
        self.environment = dict(environment or {})
        self.summary = {}

    def append(self, record):
        self.records.append(dict(record))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        return [r.get(key) for r in self.records]

    @property
    def last(self):
        return self.records[-1] if self.records else {}

    # ------------------------------------------------------------------ JSON
    def to_dict(self):
        return {"config": self.config, "records": self.records, "diverged": self.diverged,
                "environment": self.environment, "summary": self.summary}

    @classmethod
    def from_dict(cls, d):
        h = cls(d.get("config"), d.get("environment"))
        h.records = [dict(r) for r in d.get("records", [])]
        h.diverged = d.get("diverged")
        h.summary = dict(d.get("summary") or {})
        return h

    def to_json(self, path=None, indent=1):
        """The history as JSON text, with a SHA-256 of its contents (``"sha256"``, checked by
        :meth:`load`); also written (atomically) to ``path`` when given."""
        d = self.to_dict()
        d["sha256"] = _json_sha256(d)
        text = json.dumps(d, indent=indent, default=jsonable)
        if path is not None:
            write_text(path, text + "\n")
        return text

    # ------------------------------------------------------------------ HDF5
    def save_hdf5(self, path_or_group, name="history"):
        """Write the history into an HDF5 file (a path, written atomically) or an open ``h5py.Group``."""
        if _is_path(path_or_group):
            with write_hdf5(path_or_group) as f:  # a file of its own gets a checksum
                self.save_hdf5(f, name)
            return
        g = path_or_group.require_group(name)
        for k in sorted({k for r in self.records for k in r}):
            col = np.array([np.nan if r.get(k) is None else r.get(k) for r in self.records], dtype=float)
            g.create_dataset(k, data=col)
        g.attrs["config"] = json.dumps(self.config, default=jsonable)
        g.attrs["diverged"] = json.dumps(self.diverged, default=jsonable)
        g.attrs["environment"] = json.dumps(self.environment, default=jsonable)
        g.attrs["summary"] = json.dumps(self.summary, default=jsonable)

    @classmethod
    def load_hdf5(cls, path_or_group, name="history"):
        import h5py
        if _is_path(path_or_group):
            from ._io import check_declared_size, hdf5_digest
            with h5py.File(path_or_group, "r") as f:
                check_declared_size(f, path_or_group, ValueError)
                if "sha256" in f.attrs and f.attrs["sha256"] != hdf5_digest(f):
                    raise ValueError(f"{path_or_group} is corrupt: its SHA-256 checksum does not match its "
                                     f"contents")
                return cls.load_hdf5(f, name)
        g = path_or_group[name]
        h = cls(json.loads(g.attrs["config"]), json.loads(g.attrs.get("environment", "{}")))
        h.diverged = json.loads(g.attrs["diverged"])
        h.summary = json.loads(g.attrs.get("summary", "{}"))
        cols = {k: g[k][()] for k in g}
        shapes = {k: (v.shape, v.dtype.kind) for k, v in cols.items()}
        if any(len(sh) != 1 or kind not in "fiu" for sh, kind in shapes.values()) or \
                len({sh for sh, _ in shapes.values()}) > 1:
            raise ValueError(f"{getattr(g.file, 'filename', '?')}: a history's columns are 1-D numbers of "
                             f"one length; got {dict(sorted(shapes.items())[:6])}")
        n = len(next(iter(cols.values()))) if cols else 0
        for i in range(n):
            rec = {}
            for k, v in cols.items():
                x = float(v[i])
                rec[k] = None if math.isnan(x) else (int(x) if k in _INT_KEYS else x)
            h.records.append(rec)
        return h

    # ------------------------------------------------------------------ either format
    def save(self, path):
        """Save as JSON (``.json``) or HDF5 (``.h5``/``.hdf5``), atomically: a failed or killed save
        leaves the previous file as it was."""
        kind = _format_of(path, "out")
        check_output_path("out", path, (".json",) + _HDF5_SUFFIXES)
        if kind == "hdf5":
            self.save_hdf5(path)
        else:
            self.to_json(path)

    @classmethod
    def load(cls, path):
        """Read a history saved by :meth:`save` (the format follows the file name). The file is checked:
        anything that is not a history (another artefact, columns of different lengths, records that
        are not numbers) is a ``ValueError`` that names the file."""
        if _format_of(path, "path") == "hdf5":
            try:
                h = cls.load_hdf5(path)
            except (ValueError, FileNotFoundError):
                raise
            except Exception as exc:  # h5py's KeyError/OSError on a file that is not a history
                raise ValueError(f"{path} is not a sibp_np history: {type(exc).__name__}: {exc}") from None
            _check_records(h.records, path)
            return h
        try:
            with open(path) as fh:
                d = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"{path} is not a JSON history: {type(exc).__name__}: {exc}") from None
        if not isinstance(d, dict) or not isinstance(d.get("records"), list) or not isinstance(
                d.get("config", {}), dict):
            raise ValueError(f"{path} is not a sibp_np history: it needs an object with a 'records' list "
                             f"and a 'config' object (got {type(d).__name__} with keys "
                             f"{sorted(d)[:8] if isinstance(d, dict) else '-'})")
        if "sha256" in d and d.pop("sha256") != _json_sha256(d):  # files from before it have none
            raise ValueError(f"{path} is corrupt: its SHA-256 checksum does not match its contents")
        _check_records(d["records"], path)
        return cls.from_dict(d)


def _json_sha256(d):
    import hashlib
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=jsonable).encode()).hexdigest()


def _check_records(records, path):
    """Every record an object of numbers (or None, or short strings such as a method's name), with a
    whole, finite ``epoch``."""
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i} is a {type(r).__name__}, not an object")
        epoch = r.get("epoch")
        if not (isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and math.isfinite(epoch)
                and epoch == int(epoch)):
            raise ValueError(f"{path}: record {i} has epoch {epoch!r}; it must be a whole number")
        for k, v in r.items():
            if not (v is None or isinstance(v, (int, float, str)) and not isinstance(v, bool)):
                raise ValueError(f"{path}: record {i} has {k}={v!r:.60}; records hold numbers")


def _is_path(obj):
    return isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__")


def _format_of(path, name):
    suffix = Path(str(path)).suffix.lower()
    if suffix in _HDF5_SUFFIXES:
        return "hdf5"
    if suffix == ".json":
        return "json"
    raise ValueError(f"{name}={str(path)!r}: use a .json or .h5 file name")
