"""Sweeps: many independent training runs (Table 1, step-size grids, tuning) on one of three executors.

A run is a :func:`run_spec` dict of plain values (dataset, model, method and hyperparameters, seeds,
epochs), so it can travel to another process or machine. Its numbers depend on the spec alone: the
initial weights and the minibatch order are seeded from it, and BLAS runs on one thread in every worker
(threadpoolctl, when installed). Executors:

* ``serial`` (the default): in this process;
* ``jobs=N``: N local processes (``concurrent.futures``);
* ``dask=ADDRESS`` (a running ``dask.distributed`` scheduler, e.g. ``tcp://host:8786``) or
  ``dask="local:N"`` (a ``LocalCluster`` of N single-threaded workers). Needs the ``[dask]`` extra;
  ``import sibp_np`` does not import Dask.

:func:`run_sweep` writes each finished run's history atomically to ``<out>/runs/<spec id>.h5`` as it
completes. Run again with the same ``out``, it loads those and runs only the rest, so a killed sweep
resumes where it stopped. A saved run is reused only when it was made for the same spec, by the same
package version and commit, from the same dataset file (its size and modification time), and its
numbers still match the checksum saved with them; otherwise it runs again, and the log says why. A
single run always trains in one process: the engine distributes runs, not the inside of a run.
"""
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

from ._validation import check_int
from ._version import __version__
from .history import History


def run_spec(*, dataset, layers, method, hyperparameters, seed, epochs, batch_size=100, dtype="float32",
             init_std=0.01, data_root=None, train_rows=None, val="val", backend=None):
    """A run as a plain dict (JSON-serialisable): everything its numbers depend on.

    ``train_rows`` is ``None`` (the whole training split) or ``[start, stop]``; ``val`` is ``"val"`` (the
    validation split), ``None``, or ``[start, stop]`` (rows of the training split held out, as the
    tuning of :func:`sibp_np.experiments.figure` does). The model and the shuffling are seeded by
    ``seed``.
    """
    spec = {"dataset": str(dataset), "data_root": None if data_root is None else str(data_root),
            "dtype": str(dtype), "layers": [int(v) for v in layers], "init_std": float(init_std),
            "method": str(method), "hyperparameters": dict(hyperparameters), "seed": int(seed),
            "epochs": int(epochs), "batch_size": int(batch_size),
            "train_rows": None if train_rows is None else [int(v) for v in train_rows],
            "val": val if val in (None, "val") else [int(v) for v in val],
            "backend": None if backend is None else str(getattr(backend, "name", backend))}
    json.dumps(spec)  # plain values only
    return spec


def spec_id(spec):
    """16 hex digits of the SHA-256 of the spec's canonical JSON: the name of its result file."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _dataset(name, root, dtype):
    """Loaded once per process (per worker), not once per run."""
    from .datasets import load_dataset
    return load_dataset(name, root=root, dtype=dtype)


def execute(spec):
    """Train the run ``spec`` describes (BLAS on one thread) and return its :class:`History`."""
    from .methods import get_method
    from .model import MLP
    from .train import fit
    data = _dataset(spec["dataset"], spec["data_root"], spec["dtype"])
    X, y = data.train
    if spec["train_rows"] is not None:
        a, b = spec["train_rows"]
        X, y = X[a:b], y[a:b]
    if spec["val"] == "val":
        val = data.val if len(data.y_val) else None
    elif spec["val"] is None:
        val = None
    else:
        a, b = spec["val"]
        val = (data.X_train[a:b], data.y_train[a:b])
    with _one_blas_thread():
        model = MLP(spec["layers"], seed=spec["seed"], dtype=spec["dtype"], init_std=spec["init_std"],
                    backend=spec["backend"])
        method = get_method(spec["method"], **spec["hyperparameters"])
        history = fit(model, method, X, y, val=val, epochs=spec["epochs"], batch_size=spec["batch_size"],
                      seed=spec["seed"], verbose=0)
    history.config["spec"] = spec
    return history


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the [dask] and [test] extras
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


# ---------------------------------------------------------------------------------------- executors
class SerialExecutor:
    """Runs the specs one after the other in this process."""

    name = "serial"

    def map_unordered(self, specs):
        for spec in specs:
            yield spec, execute(spec)

    def close(self):
        pass


class ProcessExecutor:
    """Runs the specs on ``jobs`` local processes (``concurrent.futures.ProcessPoolExecutor``)."""

    def __init__(self, jobs):
        import concurrent.futures
        import multiprocessing
        self.jobs = check_int("jobs", jobs, minimum=1)
        self.name = f"{self.jobs} local processes"
        # "spawn": fresh interpreters, whatever threads or BLAS state this process has
        self.pool = concurrent.futures.ProcessPoolExecutor(
            self.jobs, mp_context=multiprocessing.get_context("spawn"))

    def map_unordered(self, specs):
        import concurrent.futures
        futures = {self.pool.submit(execute, spec): spec for spec in specs}
        for fut in concurrent.futures.as_completed(futures):
            yield futures[fut], fut.result()

    def close(self):
        self.pool.shutdown(cancel_futures=True)


class DaskExecutor:
    """Runs the specs on a Dask cluster: ``address`` of a running scheduler, or ``"local:N"`` for a
    ``LocalCluster`` of N single-threaded worker processes started (and closed) here."""

    def __init__(self, address, timeout=10):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImportError(f"--dask needs Dask's distributed scheduler ({exc}); install it with: "
                              f'pip install "sibp_np[dask]"') from exc
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"dask must be a scheduler address such as tcp://host:8786 or 'local:N', "
                             f"got {address!r}")
        self.cluster = None
        if address.startswith("local:"):
            n = address.split(":", 1)[1]
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"dask={address!r}: write local:N with N >= 1 workers")
            self.cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                        dashboard_address=":0")
            self.client = Client(self.cluster, timeout=f"{timeout}s")
        else:
            try:
                self.client = Client(address, timeout=f"{timeout}s")
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(f"dask={address!r}: no Dask scheduler answered within {timeout} s "
                                   f"({type(exc).__name__}: {exc})") from None
        self.name = f"Dask at {self.client.scheduler.address}"
        self.dashboard = self.client.dashboard_link

    def map_unordered(self, specs):
        from distributed import as_completed
        specs = list(specs)
        futures = {self.client.submit(execute, spec, pure=False): i for i, spec in enumerate(specs)}
        for fut in as_completed(futures):
            yield specs[futures[fut]], fut.result()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(jobs=None, dask=None):
    """The executor for ``jobs``/``dask`` (at most one of them): serial when both are None."""
    if jobs is not None and dask is not None:
        raise ValueError("give jobs or dask, not both")
    if dask is not None:
        return DaskExecutor(dask)
    if jobs is not None and check_int("jobs", jobs, minimum=1) > 1:
        return ProcessExecutor(jobs)
    return SerialExecutor()


# ---------------------------------------------------------------------------------------- the sweep
def run_sweep(specs, *, out=None, jobs=None, dask=None, verbose=1):
    """Run ``specs`` (a list of :func:`run_spec` dicts) and return their histories, in the same order.

    With ``out``, each finished run is saved at once (atomically) as ``out/runs/<spec id>.h5``, and runs
    already saved there are loaded instead of run again. Progress (runs done of the total, and an
    estimate of the time left) goes to stdout with ``verbose``; with Dask, the dashboard address too.
    """
    specs = list(specs)
    ids = [spec_id(s) for s in specs]
    folder = None if out is None else Path(out) / "runs"
    results = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for sid, spec in zip(ids, specs):
            h = _load_result(folder / f"{sid}.h5", spec)
            if h is not None:
                results[sid] = h
    distinct = dict(zip(ids, specs))  # a repeated spec (the same run in two cells) runs once
    todo = [s for sid, s in distinct.items() if sid not in results]
    if verbose:
        repeats = f" ({len(distinct)} distinct)" if len(distinct) < len(specs) else ""
        print(f"sweep: {len(specs)} runs{repeats}, {len(distinct) - len(todo)} already done"
              + (f" (in {folder})" if results else ""), flush=True)
    if todo:
        executor = make_executor(jobs, dask)
        if verbose:
            print(f"sweep: running {len(todo)} on {executor.name}"
                  + (f"; dashboard {executor.dashboard}" if getattr(executor, "dashboard", None) else ""),
                  flush=True)
        t0 = time.perf_counter()
        try:
            for done, (spec, history) in enumerate(executor.map_unordered(todo), 1):
                sid = spec_id(spec)
                results[sid] = history
                if folder is not None:
                    history.summary["sweep_cache"] = {**_cache_key(spec),
                                                      "records_sha256": _records_sha256(history)}
                    history.save(folder / f"{sid}.h5")
                if verbose:
                    left = (time.perf_counter() - t0) / done * (len(todo) - done)
                    print(f"  {done}/{len(todo)} runs done, about {left:.0f} s left", flush=True)
        finally:
            executor.close()
    return [results[sid] for sid in ids]


def _load_result(path, spec):
    """A saved run's history, or None when there is none (or it is unreadable, or for another spec)."""
    if not path.exists():
        return None
    try:
        h = History.load(path)
    except Exception as exc:  # a damaged file: the run is done again
        print(f"sweep: {path} is unreadable ({type(exc).__name__}); running it again", file=sys.stderr)
        return None
    if h.config.get("spec") != spec:
        return None
    saved, now = h.summary.get("sweep_cache"), _cache_key(spec)
    if not isinstance(saved, dict):
        why = "it has no cache key (an older sibp_np made it)"
    elif (saved.get("sibp_np"), saved.get("git_commit")) != (now["sibp_np"], now["git_commit"]):
        why = (f"sibp_np {saved.get('sibp_np')} (commit {saved.get('git_commit')}) made it, this is "
               f"{now['sibp_np']} (commit {now['git_commit']})")
    elif saved.get("dataset") != now["dataset"]:
        why = f"the dataset changed since: {saved.get('dataset')} then, {now['dataset']} now"
    elif saved.get("records_sha256") != _records_sha256(h):
        why = "its numbers do not match their checksum"
    else:
        return h
    print(f"sweep: {path} is stale, running it again: {why}", file=sys.stderr)
    return None


def _cache_key(spec):
    """What a saved run must share with this process to be reused, besides its spec."""
    from .environment import _git_commit
    return {"sibp_np": __version__, "git_commit": _cached_commit(_git_commit),
            "dataset": _dataset_identity(spec)}


@functools.lru_cache(maxsize=1)
def _cached_commit(git_commit):
    return git_commit()


def _dataset_identity(spec):
    """A dataset file's resolved path, size and modification time; a named dataset's name."""
    name, root = spec["dataset"], spec["data_root"]
    for candidate in ([Path(root) / name] if root else []) + [Path(name)]:
        if candidate.is_file():
            st = candidate.stat()
            return {"path": str(candidate.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"name": name}


def _records_sha256(history):
    return hashlib.sha256(json.dumps(history.records, sort_keys=True, default=str).encode()).hexdigest()
