"""Digests of SIBP(eta=10, jit=True)'s parameters after 15 mnist-5k minibatch steps (seed 1), on three
networks: run with two versions of sibp_np on PYTHONPATH and compare.

    PYTHONPATH=<checkout> python bitwise.py [--float64]
"""
import hashlib
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from sibp_np import MLP, get_method, load_dataset

dtype = "float64" if "--float64" in sys.argv[1:] else "float32"
X, y = load_dataset("mnist-5k").train
with threadpool_limits(1):
    for sizes, std in (([784, 500, 10], None), ([784, 600, 600, 10], 0.05), ([64, 100, 10], None)):
        model = MLP(sizes, seed=1, dtype=dtype, **({"init_std": std} if std else {}))
        method = get_method("sibp", eta=10.0, jit=True)
        for k in range(15):
            Xc, yc = model.check_Xy(X[k * 100:(k + 1) * 100, :sizes[0]], y[k * 100:(k + 1) * 100])
            method.step(model, Xc, yc, checked=True)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in model.params()))
        print(sizes, digest.hexdigest()[:16])
