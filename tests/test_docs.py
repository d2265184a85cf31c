"""The documentation runs: every Python block of the README, in order, and the worked example."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
@pytest.mark.outcome
def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6  # API, saving, callbacks, regression, scikit-learn, experiments
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README python block {i + 1} failed: {exc!r}\n{code}") from exc
    assert (tmp_path / "model.h5").exists() and (tmp_path / "table1_out" / "table1.md").exists()
    assert namespace["h"].last["val_r2"] > 0.5  # the regression example learns


def test_worked_example_matches_an_independent_computation(capsys):
    from sibp_np.worked_example import main
    out = main()
    text = capsys.readouterr().out
    assert "T_3" in text and "delta_2" in text and "objective" in text
    Y, F_N, eta = out["Y"], out["F_N"], out["eta"]
    P = np.exp(F_N - F_N.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    np.testing.assert_allclose(out["targets"][-1], F_N - eta * (P - Y), rtol=1e-12)  # eq. (6)
    # eq. (9): the error goes down with the new weights and the forward-pass mask
    W_new, G = out["weights_after"], out["G"]
    # (out["deltas"], out["targets"] are indexed as in the paper; G, F and W_new from 0: W_new[i] is
    # W_{i+1}, G[i + 1] is G_{i+2} and F[i] is F_{i+1})
    for i in range(len(W_new) - 1, 0, -1):
        above = out["deltas"][i + 2]
        expected = ((G[i + 1] > 0) * above if i + 1 < len(W_new) else above) @ W_new[i]
        np.testing.assert_allclose(out["deltas"][i + 1], expected, rtol=1e-12)
        np.testing.assert_allclose(out["targets"][i + 1], out["F"][i] - eta * out["deltas"][i + 1],
                                   rtol=1e-12)
    for row in out["stats"]:  # every subproblem's objective went down (or stayed)
        assert row["f"] <= row["f0"]


def test_the_which_method_table_names_commands_that_parse():
    # each row's command (last column) is one that this checkout's tools accept as written
    import importlib.util
    import shlex

    from sibp_np.cli import build_parser
    text = README.read_text()
    section = text[text.index("## Which method?"):text.index("## scikit-learn estimators")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`SIBP()`", "`SIBP(jit=True)`", "`Adam()`", "`SGD()`",
                                                       "`ProxBP()`"]
    spec = importlib.util.spec_from_file_location("bench", README.parent / "tools" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for row in rows:
        command = re.findall(r"`([^`]*)`", row.split("|")[4])[0]
        argv = shlex.split(command)
        if argv[:2] == ["python", "tools/bench.py"]:
            assert bench.parse_args(argv[2:]) is not None, command
        else:
            assert argv[0] == "sibp-np" and build_parser().parse_args(argv[1:]).command, command
