"""The solves' matrix products in Numba's BLAS (SciPy's OpenBLAS, which ncg_jit's kernels call) and in
NumPy's, one BLAS thread each, float32, best of 5 x 2000 calls (us).

    python blas_numba_vs_numpy.py
"""
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import sibp_np.ncg_jit as J


@numba.njit
def grad_primal(M, F, g):  # the primal gradient's M^T F
    np.dot(M.T, F, g)


@numba.njit
def image_primal(F, D, P):  # the primal direction's image F D^T
    np.dot(F, D.T, P)


@numba.njit
def grad_dual(K, M, g):  # the dual gradient's K M
    np.dot(K, M, g)


def best(f, n=2000):
    f()
    out = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            f()
        out = min(out, (time.perf_counter() - t) / n)
    return out * 1e6


J._blas_libraries()  # SciPy's OpenBLAS loaded before the limit, so that it is limited too
rng = np.random.default_rng(0)
with threadpool_limits(1):
    print("(B, n_in, n_out)  M^T F numba/numpy  F D^T numba/numpy  K M numba/numpy")
    for B, n_in, n_out in ((100, 64, 100), (100, 100, 10), (100, 500, 10), (100, 784, 500)):
        F = rng.standard_normal((B, n_in)).astype(np.float32)
        M = rng.standard_normal((B, n_out)).astype(np.float32)
        W = rng.standard_normal((n_out, n_in)).astype(np.float32)
        g, P, K = np.empty_like(W), np.empty_like(M), F @ F.T
        print((B, n_in, n_out), "%.1f / %.1f   %.1f / %.1f   %.1f / %.1f" % (
            best(lambda: grad_primal(M, F, g)), best(lambda: np.matmul(M.T, F, out=g)),
            best(lambda: image_primal(F, W, P)), best(lambda: np.matmul(F, W.T, out=P)),
            best(lambda: grad_dual(K, M, P)), best(lambda: np.matmul(K, M, out=P))))
