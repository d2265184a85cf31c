import json

import h5py
import numpy as np
import pytest

from sibp_np.cli import main
from sibp_np.datasets import save_h5
from sibp_np.history import History


@pytest.fixture
def toy(tmp_path):
    r = np.random.default_rng(0)
    X = r.random((60, 8))
    y = (X[:, 0] > 0.5).astype(int)
    save_h5(tmp_path / "toy.h5", X_train=X[:50], y_train=y[:50], X_val=X[50:], y_val=y[50:])
    return tmp_path / "toy.h5"


def test_table1_end_to_end_at_toy_scale(toy, tmp_path, capsys):
    out = tmp_path / "t1"
    rc = main(["table1", "--dataset", str(toy), "--layers", "8,6,2", "--runs", "2", "--epochs", "1",
               "--batch-size", "10", "--out", str(out), "--quiet"])
    assert rc == 0
    text = (out / "table1.md").read_text()
    assert text in capsys.readouterr().out  # printed as written
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    labels = [l.split("|")[1].strip() for l in lines[2:12]]
    assert labels[0] == "SGD, η (train)" and labels[-1] == "Semi-implicit (η=0.1, 1/λ) (val)"
    assert "the paper's own Table 1" in text and "0.9904" in text  # the paper's numbers, labelled
    data = json.loads((out / "table1.json").read_text())
    with h5py.File(out / "table1.h5") as f:
        for row in data["rows"]:
            for cell in row["cells"]:
                accs = [History.load_hdf5(f[f"{row['label']}/{cell['value']:g}/run{r}"]).last["train_acc"]
                        for r in range(2)]
                ok = [a for a, run in zip(accs, cell["runs"]) if run["diverged"] is None]
                if ok:  # the table's numbers are the histories' numbers
                    assert cell["train_acc"][0] == pytest.approx(np.mean(ok))
                    assert cell["train_acc"][1] == pytest.approx(np.std(ok))
                else:
                    assert cell["train_acc"] is None and f"diverged ({cell['n_diverged']}/2)" in text


def test_table1_shifted_sibp_grid_is_said(toy, tmp_path):
    out = tmp_path / "t2"
    assert main(["table1", "--dataset", str(toy), "--layers", "8,4,2", "--runs", "1", "--epochs", "1",
                 "--batch-size", "10", "--rows", "4", "--grid", "1,0.1", "--sibp-eta-scale", "0.1",
                 "--out", str(out), "--quiet"]) == 0
    text = (out / "table1.md").read_text()
    assert "SIBP rows use eta × 0.1 (a shifted grid)" in text
    run = json.loads((out / "table1.json").read_text())["rows"][0]["cells"][0]["runs"][0]
    assert run["hyperparameters"]["eta"] == pytest.approx(0.1)


@pytest.mark.parametrize("number", ["2", "3", "4", "5"])
def test_figure_commands_end_to_end_at_toy_scale(number, toy, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"f{number}"
    argv = ["figure", number, "--dataset", str(toy), "--widths", "5,4", "--batch-size", "10", "--out",
            str(out), "--quiet", "--eval-every", "2"]
    argv += ["--time-budget", "0.2"] if number in ("4", "5") else ["--epochs", "1", "--tune"]
    assert main(argv) == 0
    meta = json.loads((out / f"figure{number}.json").read_text())
    assert (out / f"figure{number}.png").stat().st_size > 1000
    assert meta["layers"] == [8, 5, 4, 2] and any("follows the data" in n for n in meta["notes"])
    for run in meta["runs"]:
        slug = run["label"].lower().replace(" ", "_").replace("=", "_")
        h = History.load(out / f"{slug}.json")
        assert run["final"]["train_acc"] == h.last["train_acc"]  # the figure's numbers are the histories'
        if number in ("2", "3"):
            assert run["tuning"]["chosen"] == run["hyperparameters"][run["tuning"]["parameter"]]
