"""Data safety: no code runs from a data file, a killed save loses nothing, a corrupted checkpoint is
refused. Each of these failed before the code that makes it pass (see tools/NOTES.md, "Bad input and
data safety")."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from sibp_np import MLP, Adam, fit
from sibp_np.checkpoint import CheckpointError
from sibp_np.datasets import read_cifar10_batch


class _Payload:
    """Unpickling this creates the file ``marker`` (what a malicious pickle could do instead)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_cifar_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Payload(str(marker))}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match="data_batch_1"):
        read_cifar10_batch(path)
    assert not marker.exists()


WRITER = r"""
import sys
from sibp_np import History
path = sys.argv[1]
h = History({"note": "x" * 1000})
for i in range(200000):
    h.records.append({"epoch": i, "iterations": i, "train_loss": 0.1 * i, "train_acc": 0.5})
gen = 0
while True:  # rewrite the same file again and again until killed
    gen += 1
    h.config["generation"] = gen
    h.save(path)
    print(gen, flush=True)
"""


def _kill_when_incomplete(proc, path, patience=1.5):
    """SIGKILL ``proc`` the moment ``path`` looks incomplete (shorter than a whole save), or after
    ``patience`` seconds if it never does: the worst moment for a writer that is not atomic."""
    whole = path.stat().st_size
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if path.stat().st_size < 0.99 * whole:
                break
        except FileNotFoundError:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".json", ".h5"])
def test_a_history_save_killed_at_any_moment_leaves_a_whole_file(tmp_path, suffix):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / f"history{suffix}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                                env=env)
        proc.stdout.readline()  # one save has completed: the file exists and is whole
        _kill_when_incomplete(proc, path)
        if suffix == ".json":
            with open(path) as fh:
                d = json.load(fh)
            n = len(d["records"])
        else:
            with h5py.File(path, "r") as f:
                n = len(f["history/epoch"])
        assert n == 200000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("writer.py", path.name)]
    assert all(name.endswith(".tmp") for name in leftovers)  # only the killed writer's scratch file


def _flip_a_byte(path, dataset):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
        assert offset is not None, "stored compressed or chunked: no single offset"
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        b = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("dataset", ["model/W0", "method_state/m1"])
def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path, dataset):
    r = np.random.default_rng(0)
    X, y = r.random((40, 6)), r.integers(0, 3, size=40)
    fit(MLP([6, 5, 3], seed=0), Adam(), X, y, epochs=2, batch_size=10, verbose=0, seed=0,
        checkpoint=tmp_path / "c.h5")
    _flip_a_byte(tmp_path / "c.h5", dataset)
    with pytest.raises(CheckpointError, match=r"c\.h5.*(checksum|corrupt)"):
        fit(MLP([6, 5, 3], seed=0), Adam(), X, y, epochs=4, batch_size=10, verbose=0, seed=0,
            resume=tmp_path / "c.h5")


@pytest.mark.parametrize("command,name", [("table1", "table1.h5"), ("eta-grid", "eta_grid.h5"),
                                          ("table1", "runs/data.h5")])
def test_an_experiment_never_overwrites_its_own_dataset(tmp_path, command, name):
    from sibp_np.cli import main
    from sibp_np.datasets import save_h5
    r = np.random.default_rng(0)
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    dataset = out / name
    save_h5(dataset, X_train=r.random((40, 6)), y_train=r.integers(0, 3, 40), X_val=r.random((10, 6)),
            y_val=r.integers(0, 3, 10))
    before = dataset.read_bytes()
    rc = main([command, "--dataset", str(dataset), "--out", str(out), "--epochs", "1", "--grid", "1",
               "--quiet"])
    assert rc != 0 and dataset.read_bytes() == before
    # the same dataset elsewhere in the folder is not one of the outputs: the command runs
    other = out / "data.h5"
    other.write_bytes(before)
    assert main([command, "--dataset", str(other), "--out", str(out), "--epochs", "1", "--grid", "1",
                 "--batch-size", "10", "--quiet",
                 *(["--runs", "1", "--rows", "4"] if command == "table1" else [])]) == 0
    assert other.read_bytes() == before


def test_a_second_writer_leaves_a_live_writers_temporary_file_alone(tmp_path):
    from sibp_np._io import write_text
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = tmp_path / f".run.json.{live.pid}.tmp"      # a sweep writing the same file right now
        killed = tmp_path / f".run.json.{dead.pid}.tmp"    # one that was killed mid-write
        mine.write_text("half")
        killed.write_text("half")
        write_text(tmp_path / "run.json", "{}")
        assert mine.exists() and not killed.exists() and (tmp_path / "run.json").read_text() == "{}"
    finally:
        live.kill()
        live.wait()


#: the peak resident memory of the process that runs it: resource.getrusage's ru_maxrss, or on Linux
#: VmHWM, since a child started by fork inherits its parent's ru_maxrss across exec
PEAK = """
import resource
def peak_kb():
    try:
        with open("/proc/self/status") as fh:
            return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""
BOMB = (2 ** 31, 2)  # float32: 16 GiB once read; never written, so the file stays a few KB


def _bomb(group, name):
    if name in group:
        del group[name]
    group.create_dataset(name, shape=BOMB, dtype="f4", chunks=(4096, 2))


def _bomb_files(tmp_path):
    from sibp_np import SGD
    from sibp_np.datasets import save_h5
    model = MLP([4, 3, 2], seed=0)
    model.save(tmp_path / "model.h5")
    r = np.random.default_rng(0)
    X, y = r.random((20, 4)), r.integers(0, 2, 20)
    h = fit(model, SGD(), X, y, epochs=1, batch_size=10, verbose=0, checkpoint=str(tmp_path / "ckpt.h5"))
    h.save(tmp_path / "history.h5")
    save_h5(tmp_path / "data.h5", X_train=X, y_train=y)
    edits = {"model.h5": "params/W0", "ckpt.h5": "model/W0", "history.h5": "history/train_loss",
             "data.h5": "X_train"}
    for name, target in edits.items():
        with h5py.File(tmp_path / name, "a") as f:
            _bomb(f, target)
        assert (tmp_path / name).stat().st_size < 64 * 1024
    return {"model.h5": "MLP.load", "ckpt.h5": "MLP.from_checkpoint", "history.h5": "History.load",
            "data.h5": "load_dataset"}


def test_files_of_a_few_kb_that_declare_16_gib_are_refused_before_reading(tmp_path):
    loaders = _bomb_files(tmp_path)
    code = PEAK + """
import sys
from sibp_np import MLP, History, load_dataset
loader = {"MLP.load": MLP.load, "MLP.from_checkpoint": MLP.from_checkpoint, "History.load": History.load,
          "load_dataset": load_dataset}[sys.argv[1]]
try:
    loader(sys.argv[2])
    print("LOADED")
except Exception as exc:
    print(type(exc).__name__, exc)
print("MAXRSS_KB", peak_kb())
"""
    for name, loader in loaders.items():
        out = subprocess.run([sys.executable, "-c", code, loader, str(tmp_path / name)],
                             capture_output=True, text=True, timeout=120).stdout
        assert "declares 17,179,869,184 bytes" in out and "refused before reading" in out, (name, out)
        rss_mb = int(out.split("MAXRSS_KB")[1]) / 1024
        assert rss_mb < 200, (name, rss_mb)


def test_a_dataset_file_is_read_for_its_splits_only_and_its_labels_are_bounded(tmp_path):
    from sibp_np import load_dataset
    from sibp_np.datasets import save_h5
    r = np.random.default_rng(0)
    X, y = r.random((20, 4)), r.integers(0, 2, 20)
    save_h5(tmp_path / "d.h5", X_train=X, y_train=y)
    with h5py.File(tmp_path / "d.h5", "a") as f:
        _bomb(f, "notes")  # an unrelated dataset: never read
    assert load_dataset(str(tmp_path / "d.h5")).X_train.shape == (20, 4)
    y[3] = 3_000_000
    save_h5(tmp_path / "labels.h5", X_train=X, y_train=y)
    with pytest.raises(ValueError, match="label 3000000 asks for 3000001 classes.*20 samples"):
        load_dataset(str(tmp_path / "labels.h5"))


@pytest.mark.parametrize("how", ["direct", "reconstruct"])
def test_a_cifar_pickle_cannot_declare_gigabytes_as_pixels(tmp_path, how):
    big = (2 ** 33,)  # 8 GiB of uint8
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct

    class Declared:
        def __reduce__(self):
            if how == "direct":
                return np.ndarray, (big, "u1")
            return _reconstruct, (np.ndarray, big, b"b")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Declared(), b"labels": [0]}, protocol=2))
    assert path.stat().st_size < 300
    code = PEAK + ("import sys\nfrom sibp_np.datasets import read_cifar10_batch\n"
                   "try:\n    read_cifar10_batch(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n"
                   "print('MAXRSS_KB', peak_kb())\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=60).stdout
    assert "refused" in out and "not a readable CIFAR-10 pickle" in out, out
    assert int(out.split("MAXRSS_KB")[1]) / 1024 < 200
