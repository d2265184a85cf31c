"""History (sibp_np.history): files read back what was written, in the format their name says."""

import numpy as np
import pytest
from _helpers import small_problem

from sibp_np import (
    SIBP,
    History,
    fit,
)


# ---------------------------------------------------------------------------------------- histories
@pytest.mark.parametrize("suffix", [".json", ".h5", ".HDF5"])
def test_history_load_reads_what_save_wrote(tmp_path, suffix):
    model, X, y = small_problem()
    h = fit(model, SIBP(eta=0.5), X, y, val=(X, y), epochs=2, batch_size=10, verbose=0, seed=0)
    path = tmp_path / f"run{suffix}"
    h.save(path)
    back = History.load(path)
    assert back.records == h.records and back.config == h.config and back.diverged == h.diverged
    assert back.environment == h.environment and back.environment["numpy"] == np.__version__


def test_history_format_follows_the_name(tmp_path):
    with pytest.raises(ValueError, match="out='run.txt': use a .json or .h5"):
        History().save("run.txt")
    with pytest.raises(ValueError, match="path='x.csv'"):
        History.load("x.csv")
