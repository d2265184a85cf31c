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


def test_sigkill_and_resume(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ref = tmp_path / "ref.npz"
    subprocess.run([sys.executable, str(script), "-", str(ref)], env=ENV, check=True, timeout=120)
    ckpt, out = tmp_path / "run.h5", tmp_path / "out.npz"
    rng = np.random.default_rng(2024)
    kills = kills_in_write = resumes = 0
    while True:
        if ckpt.exists():
            resumes += 1
        p = subprocess.Popen([sys.executable, str(script), str(ckpt), str(out)], env=ENV)
        if kills < 8:
            aim_at_write = kills % 2 == 1
            deadline = time.time() + (4.0 if aim_at_write else rng.uniform(0.4, 1.5))
            hit = False
            while p.poll() is None and time.time() < deadline:
                if aim_at_write and list(tmp_path.glob(".run.h5.*.tmp")):
                    hit = True
                    break
                time.sleep(0.0005)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                kills_in_write += hit
                if ckpt.exists():
                    load_checkpoint(ckpt)  # never unreadable: raises if it were
                continue
        assert p.wait(timeout=120) == 0
        break
    print(f"\ncrash test: {kills} kills ({kills_in_write} during a checkpoint write), {resumes} resumes, "
          f"1 run compared")
    got, want = np.load(out), np.load(ref)
    for k in want.files:
        np.testing.assert_array_equal(got[k], want[k])
    assert kills == 8 and kills_in_write >= 1 and resumes >= 1
