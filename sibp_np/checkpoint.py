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

from ._io import check_declared_size, open_hdf5, write_hdf5
from ._io import hdf5_digest as digest
from ._version import __version__
from .history import History
from .history import jsonable as _json
from .persist import ModelFileError, build_model, check_architecture, check_params

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
    state = method.state_dict(model.backend)
    with write_hdf5(path, FORMAT, FORMAT_VERSION) as f:
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




def model_from_checkpoint(cls, path, backend=None):
    """The network of a training checkpoint. Its architecture is the one the run recorded; a checkpoint
    from before sibp_np recorded it gives the initialisation as the paper's (it does not matter for
    predictions)."""
    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    arch = config.get("architecture") or {
        "layer_sizes": config.get("layer_sizes"), "activation": config.get("activation"),
        "loss": config.get("loss"), "dtype": config.get("dtype"), "init": "normal", "init_std": 0.01}
    arch = check_architecture(arch, path)
    return build_model(cls, arch, check_params(ckpt["params"], arch, path), backend, path)


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
    saved = _current_names(ckpt["config"])
    now = json.loads(json.dumps(config, default=_json))
    for key in MATCH_KEYS + tuple(k for k in ("dataset", "split_seed") if k in saved or k in now):
        if saved.get(key) != now.get(key):
            raise CheckpointError(f"checkpoint {path} does not match this run: {key} is "
                                  f"{saved.get(key)!r} in the checkpoint but {now.get(key)!r} now")


def _current_names(config):
    """``config`` with its hyperparameters under their current names (a checkpoint written before a
    rename, :attr:`Method.renamed`, still resumes; ``record_stats`` is no longer one)."""
    from .methods import METHODS
    cls = METHODS.get(config.get("method"))
    hp = config.get("hyperparameters")
    if cls is None or not isinstance(hp, dict):
        return config
    hp = {cls.renamed.get(k, k): v for k, v in hp.items() if k != "record_stats"}
    return {**config, "hyperparameters": hp}


def resume_run(run, path, verbose=0):
    """Restore a :class:`~sibp_np.train.Run` from the checkpoint at ``path``: parameters, method state,
    shuffling state, history, epoch and iteration. A run whose history ended in divergence is
    restored as stopped. Any failure is a :class:`CheckpointError` naming the file."""
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, run.history.config, path)
    try:
        run.restore(ckpt, History.from_dict(ckpt["history"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {exc}") from exc
    if verbose:
        print(f"resumed from {path} after epoch {ckpt['epoch']} (iteration {run.iteration})")
