"""Kill a training subprocess with SIGKILL at random moments (some during checkpoint writes), resume it,
and check that the result equals the uninterrupted run and that no checkpoint is ever unreadable."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sibp_np.checkpoint import load_checkpoint

SCRIPT = r"""
import os, sys
import numpy as np
import pytest
from sibp_np import MLP, Adam, fit
ckpt, out = sys.argv[1], sys.argv[2]
r = np.random.default_rng(0)
X = r.random((600, 100)).astype(np.float32)
y = (X[:, 0] * 10).astype(int) % 10
m = MLP([100, 300, 10], seed=1, init_std=0.05)
resume = ckpt if ckpt != "-" and os.path.exists(ckpt) else None
fit(m, Adam(lr=1e-3), X, y, epochs=150, batch_size=50, seed=2, verbose=0,
    checkpoint=None if ckpt == "-" else ckpt, resume=resume)
np.savez(out, **m.get_params())
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_and_resume(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ref = tmp_path / "ref.npz"
    subprocess.run([sys.executable, str(script), "-", str(ref)], env=ENV, check=True, timeout=120)
    ckpt, out = tmp_path / "run.h5", tmp_path / "out.npz"
    rng = np.random.default_rng(2024)

    def saved_epoch():  # reading the committed checkpoint must always work
        return load_checkpoint(ckpt)["epoch"] if ckpt.exists() else 0

    kills = kills_in_write = resumes = 0
    while True:
        start = saved_epoch()
        resumes += start > 0
        p = subprocess.Popen([sys.executable, str(script), str(ckpt), str(out)], env=ENV)
        if kills < 8:
            # kill after progress, not after a time, so that the test cannot race the machine's speed:
            # at most 3 epochs per kill, 8 kills << 150 epochs
            aim_at_write = kills % 2 == 1
            target = start + (1 if aim_at_write else int(rng.integers(1, 4)))
            deadline = time.time() + 60
            hit = False
            while p.poll() is None and time.time() < deadline and saved_epoch() < target:
                time.sleep(0.002)
            if aim_at_write:  # the next checkpoint write: kill while its temporary file exists
                while p.poll() is None and time.time() < deadline:
                    if list(tmp_path.glob(".run.h5.*.tmp")):
                        hit = True
                        break
                    time.sleep(0.0002)
            else:
                time.sleep(rng.uniform(0.0, 0.03))  # somewhere inside the next epoch
            assert p.poll() is None, "training finished before it could be killed"
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            kills_in_write += hit
            saved_epoch()  # never unreadable: raises if it were
            continue
        assert p.wait(timeout=120) == 0
        break
    print(f"\ncrash test: {kills} kills ({kills_in_write} during a checkpoint write), {resumes} resumes, "
          f"1 run compared")
    got, want = np.load(out), np.load(ref)
    for k in want.files:
        np.testing.assert_array_equal(got[k], want[k])
    assert kills == 8 and kills_in_write >= 2 and resumes >= 8
