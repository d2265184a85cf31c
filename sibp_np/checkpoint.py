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

from ._io import atomic_path, open_hdf5
from ._version import __version__
from .history import History
from .history import jsonable as _json

FORMAT = "sibp_np-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that does not match the run it should resume."""


def save_checkpoint(path, model, method, *, rng, epoch, iteration, history):
    """Write a checkpoint to ``path`` atomically (see the module docstring)."""
    import h5py
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
        scalars = {}
        for k, v in method.state_dict(model.backend).items():
            if isinstance(v, np.ndarray):
                s.create_dataset(k, data=v)
            else:
                scalars[k] = v
        s.attrs["scalars"] = json.dumps(scalars, default=_json)


def load_checkpoint(path):
    """Read and validate a checkpoint; returns a dict (``params``, ``method_state``, ``rng_state``,
    ``epoch``, ``iteration``, ``history``, ``config``, ``version``).

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Not an HDF5 file, truncated, or not a sibp_np checkpoint.
    """
    path = Path(path)
    f = open_hdf5(path, "checkpoint", CheckpointError)
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not a sibp_np checkpoint")
            out = {
                "params": {k: f["model"][k][()] for k in f["model"]},
                "method_state": {k: f["method_state"][k][()] for k in f["method_state"]},
                "rng_state": json.loads(f.attrs["rng_state"]),
                "epoch": int(f.attrs["epoch"]),
                "iteration": int(f.attrs["iteration"]),
                "history": json.loads(f.attrs["history"]),
                "config": json.loads(f.attrs["config"]),
                "version": str(f.attrs["sibp_np_version"]),
            }
            out["method_state"].update(json.loads(f["method_state"].attrs["scalars"]))
            return out
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged file: missing groups, unreadable datasets
        raise CheckpointError(f"checkpoint {path} is damaged: {type(exc).__name__}: {exc}") from exc


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
    restored as stopped."""
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, run.history.config, path)
    run.model.set_params(ckpt["params"])
    run.method.load_state_dict(ckpt["method_state"], run.model.backend)
    run.rng.bit_generator.state = ckpt["rng_state"]
    old = History.from_dict(ckpt["history"])
    run.history.records, run.history.diverged = old.records, old.diverged
    run.epoch = ckpt["epoch"]
    run.iteration = run.recorded_at = ckpt["iteration"]
    run.seconds_before = run.history.last.get("elapsed_seconds") or 0.0
    if verbose:
        print(f"resumed from {path} after epoch {ckpt['epoch']} (iteration {run.iteration})")
    if run.history.diverged is not None:
        run.stop()
