"""Checkpoints: one HDF5 file with everything needed to resume a run exactly.

Contents: the model's parameters, the method's state (momentum buffers, moments, step counters), the
shuffling generator's state, the epoch and iteration, the history so far, the configuration (layer sizes,
activation, dtype, loss, method and hyperparameters, batch size, and whatever the caller adds, such as
the dataset name and split seed) and the package version.

Writes are atomic: the file is written under a temporary name in the same folder, flushed and fsynced,
then moved over the old one with ``os.replace``; a crash at any moment leaves the old checkpoint or the
new one, never a broken file.
"""
import json
from pathlib import Path

import numpy as np

from ._io import atomic_path, check_declared_size, open_hdf5
from ._io import hdf5_digest as digest
from ._version import __version__
from .history import History
from .history import jsonable as _json
from .persist import ModelFileError, check_params

FORMAT = "sibp_np-checkpoint"
FORMAT_VERSION = 2  # 2: with a SHA-256 checksum and the list of method-state keys


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that does not match the run it should resume."""


def keyed(callbacks):
    """``(key, callback)`` pairs, the key its class name and its place among callbacks of that class
    (``EarlyStopping0``): the name of its state in a checkpoint, stable when a resumed run adds or
    drops callbacks of other kinds."""
    seen = {}
    for c in callbacks:
        name = type(c).__name__
        seen[name] = seen.get(name, -1) + 1
        yield f"{name}{seen[name]}", c


def save_checkpoint(path, model, method, *, rng, epoch, iteration, history, callbacks=None):
    """Write a checkpoint to ``path`` atomically (see the module docstring), with its SHA-256.
    ``callbacks`` maps a name to a callback's ``(scalars, arrays)`` state (:meth:`Callback.state_dict`)."""
    import h5py
    state = method.state_dict(model.backend)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["sibp_np_version"] = __version__
        f.attrs["epoch"] = int(epoch)
        f.attrs["iteration"] = int(iteration)
        f.attrs["rng_state"] = json.dumps(rng.bit_generator.state, default=_json)
        f.attrs["config"] = json.dumps(history.config, default=_json)
        f.attrs["history"] = json.dumps(history.to_dict(), default=_json)
        g = f.create_group("model")
        for k, v in model.get_params().items():
            g.create_dataset(k, data=v)
        s = f.create_group("method_state")
        scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                s.create_dataset(k, data=v)
        s.attrs["scalars"] = json.dumps(scalars, default=_json)
        s.attrs["keys"] = json.dumps(sorted(state))
        for name, (cb_scalars, cb_arrays) in (callbacks or {}).items():
            c = f.create_group(f"callbacks/{name}")
            c.attrs["scalars"] = json.dumps(cb_scalars, default=_json)
            for k, v in cb_arrays.items():
                c.create_dataset(k, data=v)
        f.flush()
        f.attrs["sha256"] = digest(f)




def load_checkpoint(path):
    """Read and validate a checkpoint; returns a dict (``params``, ``method_state``, ``rng_state``,
    ``epoch``, ``iteration``, ``history``, ``config``, ``version``).

    The file's SHA-256 must match the one written with it, and its structure must be whole: every
    parameter of the recorded architecture with the right shape and dtype, every method-state entry
    that was saved, an epoch and iteration count that agree with the recorded batch size and history.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Not an HDF5 file, truncated, not a sibp_np checkpoint, corrupt (checksum mismatch) or
        incomplete; the message names the file and the problem.
    """
    path = Path(path)
    f = open_hdf5(path, "checkpoint", CheckpointError)
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not a sibp_np checkpoint")
            version = int(f.attrs.get("format_version", 0))
            if version != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path} has format version {version}; this sibp_np "
                                      f"({__version__}) reads version {FORMAT_VERSION} (with a checksum)")
            check_declared_size(f, path, CheckpointError)  # before the checksum reads everything
            arrays = {}
            if f.attrs.get("sha256") != digest(f, arrays):
                raise CheckpointError(f"checkpoint {path} is corrupt: its SHA-256 checksum does not match "
                                      f"its contents (a flipped byte, or an edited entry)")
            out = {
                "params": {k: arrays[f"model/{k}"] for k in f["model"]},
                "method_state": {k: arrays[f"method_state/{k}"] for k in f["method_state"]},
                "rng_state": json.loads(f.attrs["rng_state"]),
                "epoch": int(f.attrs["epoch"]),
                "iteration": int(f.attrs["iteration"]),
                "history": json.loads(f.attrs["history"]),
                "config": json.loads(f.attrs["config"]),
                "version": str(f.attrs["sibp_np_version"]),
            }
            out["method_state"].update(json.loads(f["method_state"].attrs["scalars"]))
            out["callbacks"] = {name: (json.loads(g.attrs["scalars"]),
                                       {k: arrays[f"callbacks/{name}/{k}"] for k in g})
                                for name, g in (f["callbacks"].items() if "callbacks" in f else ())}
            keys = json.loads(f["method_state"].attrs["keys"])
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged file: missing groups, unreadable datasets
        raise CheckpointError(f"checkpoint {path} is damaged: {type(exc).__name__}: {exc}") from exc
    _check_structure(out, keys, path)
    return out


def _check_structure(ckpt, keys, path):
    config = ckpt["config"]
    try:
        arch = {"layer_sizes": config.get("layer_sizes")}
        if not isinstance(arch["layer_sizes"], list):
            raise ModelFileError(f"the configuration has no layer_sizes: {config!r:.200}")
        check_params(ckpt["params"], arch, f"checkpoint {path}")
    except ModelFileError as exc:
        raise CheckpointError(str(exc)) from exc
    missing = sorted(set(keys) - set(ckpt["method_state"]))
    if missing or sorted(ckpt["method_state"]) != sorted(keys):
        raise CheckpointError(f"checkpoint {path}: the method state is incomplete: missing {missing}")
    epoch, iteration = ckpt["epoch"], ckpt["iteration"]
    n_train, batch = config.get("n_train"), config.get("batch_size")
    if not (isinstance(n_train, int) and isinstance(batch, int) and n_train >= 1 and batch >= 1):
        raise CheckpointError(f"checkpoint {path}: n_train and batch_size must be positive integers, "
                              f"got {n_train!r} and {batch!r}")
    n_batches = -(-n_train // batch)
    if epoch < 0 or iteration != epoch * n_batches:
        raise CheckpointError(f"checkpoint {path}: epoch {epoch} and iteration {iteration} do not agree "
                              f"({n_batches} minibatches per epoch)")
    records = ckpt["history"].get("records") or []
    if not records or records[-1].get("epoch") != epoch:
        raise CheckpointError(f"checkpoint {path}: its history does not end at epoch {epoch}")


#: configuration keys that must agree between a checkpoint and the run that resumes it
MATCH_KEYS = ("layer_sizes", "activation", "dtype", "loss", "method", "hyperparameters", "batch_size",
              "n_train", "shuffle")


def check_compatible(ckpt, config, path):
    """Raise :class:`CheckpointError` naming the first configuration key that differs."""
    saved = ckpt["config"]
    now = json.loads(json.dumps(config, default=_json))
    for key in MATCH_KEYS + tuple(k for k in ("dataset", "split_seed") if k in saved or k in now):
        if saved.get(key) != now.get(key):
            raise CheckpointError(f"checkpoint {path} does not match this run: {key} is "
                                  f"{saved.get(key)!r} in the checkpoint but {now.get(key)!r} now")


def resume_run(run, path, verbose=0):
    """Restore a :class:`~sibp_np.train.Run` from the checkpoint at ``path``: parameters, method state,
    shuffling state, history, epoch and iteration. A run whose history ended in divergence is
    restored as stopped. Any failure is a :class:`CheckpointError` naming the file."""
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, run.history.config, path)
    try:
        run.model.set_params(ckpt["params"])
        run.method.load_state_dict(ckpt["method_state"], run.model.backend)
        if hasattr(run.method, "check_state"):
            run.method.check_state(run.model)
        run.rng.bit_generator.state = ckpt["rng_state"]
        for key, c in keyed(run.callbacks):  # those with a past (EarlyStopping) go on from it
            saved = ckpt["callbacks"].get(key)
            if saved is not None:
                if not isinstance(saved[0], dict):
                    raise ValueError(f"the state of callback {type(c).__name__} is not an object")
                c.load_state_dict(saved[0], saved[1], run)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {exc}") from exc
    old = History.from_dict(ckpt["history"])
    run.history.records, run.history.diverged = old.records, old.diverged
    run.epoch = ckpt["epoch"]
    run.iteration = run.recorded_at = ckpt["iteration"]
    run.seconds_before = run.history.last.get("elapsed_seconds") or 0.0
    if verbose:
        print(f"resumed from {path} after epoch {ckpt['epoch']} (iteration {run.iteration})")
    if run.history.diverged is not None:
        run.stop()
