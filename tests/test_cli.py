import json
import subprocess
import sys

import pytest

from sibp_np.cli import main


def test_train_runs_and_writes_history(tmp_path, capsys):
    out = tmp_path / "h.json"
    rc = main(["train", "--layers", "784,16,10", "--epochs", "1", "--method", "sgd", "--lr", "0.5",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "epoch" in text and "train_acc" in text
    h = json.loads(out.read_text())
    assert h["config"]["method"] == "sgd" and len(h["records"]) == 2


def test_flags_only_defaults_to_train(tmp_path):
    assert main(["--layers", "784,8,10", "--epochs", "0", "--quiet", "--out", str(tmp_path / "h.h5")]) == 0


@pytest.mark.parametrize("argv,match", [
    (["--method", "lbfgs"], "--method='lbfgs' is not known"),
    (["--method", "sgd", "--eta", "1"], "--eta does not apply to method 'sgd'"),
    (["--dataset", "nope"], "dataset='nope' is not known"),
    (["--method", "adam", "--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
    (["--layers", "10,5,10"], "--layers starts with 10 inputs but mnist-5k has 784"),
    (["--backend", "tpu"], "backend='tpu' is not a known backend"),
    (["--epochs", "-2"], "epochs must be >= 0"),
])
def test_bad_cli_input_is_one_clear_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "sibp_np", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for opt in ("--dataset", "--layers", "--activation", "--method", "--lr", "--eta", "--lam", "--epochs",
                "--batch-size", "--seed", "--backend", "--dtype", "--out", "--cg-steps"):
        assert opt in out
