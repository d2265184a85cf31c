"""Sweeps: the same table on every executor, resuming a killed sweep, and a bad Dask address."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sibp_np import History, sweep
from sibp_np.cli import main

TABLE = ["table1", "--dataset", "mnist-5k", "--rows", "4", "--grid", "1,0.1", "--runs", "2", "--epochs",
         "1", "--layers", "784,16,10", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def rows(folder):
    return json.loads((folder / "table1.json").read_text())["rows"]


@pytest.mark.slow
def test_serial_processes_and_dask_give_the_same_table(tmp_path, capsys):
    pytest.importorskip("distributed")
    outs = {}
    for name, extra in (("serial", []), ("jobs", ["--jobs", "2"]), ("dask", ["--dask", "local:2"])):
        outs[name] = tmp_path / name
        assert main(TABLE + ["--out", str(outs[name])] + extra) == 0
    serial = rows(outs["serial"])
    cells = [c for r in serial for c in r["cells"]]
    assert len(cells) == 2 and all(len(c["runs"]) == 2 for c in cells)
    assert rows(outs["jobs"]) == serial  # number for number, every run's accuracies and hyperparameters
    assert rows(outs["dask"]) == serial
    print(json.dumps([[c["train_acc"], c["val_acc"]] for c in cells]))
    for name in ("jobs", "dask"):  # and every run's whole history, but for the times
        for f in (outs["serial"] / "runs").iterdir():
            a, b = History.load(f), History.load(outs[name] / "runs" / f.name)
            assert untimed(a.records) == untimed(b.records) and a.config["spec"] == b.config["spec"]


def untimed(records):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_skips_the_finished_runs(tmp_path):
    out = tmp_path / "t"
    argv = [sys.executable, "-m", "sibp_np", *TABLE[:-1], "--runs", "4", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stdout:  # kill it once three runs are done
        if line.strip().startswith("3/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    finished = len(list((out / "runs").glob("*.h5")))
    assert 3 <= finished < 8
    again = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=True).stdout
    assert f"sweep: 8 runs, {finished} already done" in again
    assert f"running {8 - finished} on serial" in again
    executed = [line for line in again.splitlines() if "runs done" in line]
    assert len(executed) == 8 - finished  # only the missing runs ran
    fresh = tmp_path / "fresh"
    subprocess.run(argv[:-1] + [str(fresh)], capture_output=True, env=ENV, check=True)
    assert rows(out) == rows(fresh)  # and the table is the uninterrupted one


@pytest.mark.slow
def test_a_bad_dask_address_is_one_line_and_quick(tmp_path, capsys):
    pytest.importorskip("distributed")
    t = time.perf_counter()
    rc = main(TABLE + ["--out", str(tmp_path / "x"), "--dask", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and time.perf_counter() - t < 60
    assert err.count("\n") == 1 and "no Dask scheduler answered" in err and "Traceback" not in err


def test_spec_ids_are_stable_and_specs_plain():
    spec = sweep.run_spec(dataset="mnist-5k", layers=[784, 8, 10], method="sgd",
                          hyperparameters={"lr": 0.1}, seed=3, epochs=1)
    assert sweep.spec_id(spec) == sweep.spec_id(json.loads(json.dumps(spec)))
    assert sweep.spec_id({**spec, "seed": 4}) != sweep.spec_id(spec)
    with pytest.raises(ValueError, match="give jobs or dask, not both"):
        sweep.make_executor(jobs=2, dask="local:1")


def test_a_stale_saved_run_is_run_again_and_the_log_says_why(tmp_path, capsys):
    import numpy as np

    from sibp_np.datasets import save_h5
    r = np.random.default_rng(0)
    data = tmp_path / "d.h5"

    def write_data(scale):
        save_h5(data, X_train=scale * r.random((60, 5)), y_train=r.integers(0, 3, 60),
                X_val=r.random((20, 5)), y_val=r.integers(0, 3, 20))
    write_data(1.0)
    spec = sweep.run_spec(dataset=str(data), layers=[5, 8, 3], method="sgd", hyperparameters={"lr": 0.1},
                          seed=0, epochs=1, batch_size=20)
    out = tmp_path / "out"
    first = sweep.run_sweep([spec], out=out, verbose=0)[0]
    saved = out / "runs" / f"{sweep.spec_id(spec)}.h5"
    again = sweep.run_sweep([spec], out=out, verbose=0)[0]  # reused: the same numbers, no message
    assert again.records == first.records and "stale" not in capsys.readouterr().err

    def reran(edit, why):
        edit()
        sweep.run_sweep([spec], out=out, verbose=0)
        err = capsys.readouterr().err
        assert "is stale, running it again" in err and why in err, err

    def corrupt_numbers():
        h = History.load(saved)
        h.records[-1]["train_loss"] = 0.0  # a plausible number, silently wrong
        h.save(saved)

    def other_version():
        h = History.load(saved)
        h.summary["sweep_cache"]["sibp_np"] = "0.0.1"
        h.save(saved)

    reran(corrupt_numbers, "do not match their checksum")
    reran(other_version, "sibp_np 0.0.1")
    time.sleep(0.01)
    reran(lambda: write_data(2.0), "the dataset changed since")
    sweep.run_sweep([spec], out=out, verbose=0)  # the rerun saved a current file: reused now
    assert "stale" not in capsys.readouterr().err
