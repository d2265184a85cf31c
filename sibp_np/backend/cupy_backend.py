"""CuPy backend: the base class's ``xp`` code on the GPU, fused kernels for :data:`FUSED_OPS`, and the
device versions of :data:`DEVICE_OPS`.

Every kernel is an explicit ``cupy.ElementwiseKernel``/``cupy.ReductionKernel`` (never ``cupy.fuse``,
which mis-compiles Python conditionals: CuPy issue 7878), built lazily on first use, memoized, and named
``sibp_*`` so that it is easy to find in a profiler. ``SIBP_NP_FUSED=0`` switches the kernels off (the base
class's reference code then runs on CuPy), for bisecting a discrepancy.
"""
import functools
import os
import sys

import numpy

from .base import DEVICE_OPS, FUSED_OPS, Backend, _note_sync

_INSTALL_HINT = 'pip install "sibp_np[gpu]"   (CUDA 12; or the cupy wheel that matches your CUDA)'
_CTK_HINT = 'pip install "cupy-cuda12x[ctk]"'

_SQ_RELU_RESIDUAL = r"""
template <typename T>
__device__ __forceinline__ T sibp_sq_relu_residual(T z, T p, T t, T alpha) {
    T u = z + alpha * p;
    u = u > T(0) ? u : T(0);
    T r = u - t;
    return r * r;
}
"""


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            f"the 'cupy' backend needs CuPy, which could not be imported ({exc}). Install it with: "
            f"{_INSTALL_HINT}") from exc
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a missing driver library
        raise RuntimeError(f"CuPy is installed but no CUDA device is usable: {exc}") from exc
    if n < 1:
        raise RuntimeError("CuPy is installed but no CUDA device is usable: 0 devices found")
    return cupy


@functools.cache
def _kernel(name):
    """Build the kernel ``sibp_<name>`` once (per process); CuPy caches per dtype after that."""
    import cupy
    if name == "masked_residual":
        return cupy.ElementwiseKernel(
            "T z, T t", "T m", "m = z > T(0) ? z - t : T(0)", "sibp_masked_residual")
    if name == "masked_residual_sqnorm":
        return cupy.ReductionKernel(
            "T z, T p, T t, T alpha", "T y",
            "sibp_sq_relu_residual(z, p, t, alpha)", "a + b", "y = a", "0",
            "sibp_masked_residual_sqnorm", preamble=_SQ_RELU_RESIDUAL)
    if name == "masked_sqnorm":
        return cupy.ReductionKernel(
            "T z, T p", "T y", "z > T(0) ? p * p : T(0)", "a + b", "y = a", "0",
            "sibp_masked_sqnorm")
    raise KeyError(name)


class CupyBackend(Backend):
    """GPU backend. Overrides the ops of :data:`FUSED_OPS` and :data:`DEVICE_OPS` (with the base
    signatures) and the data movement (``to_host``, ``synchronize``)."""

    name = "cupy"
    device_resident = True
    supports_graphs = True
    #: arrays of at least this many elements are reduced row by row first (see :meth:`_reduce`)
    ROWWISE_MIN = 1 << 16

    def __init__(self):
        self.xp = _import_cupy()
        self.fused = os.environ.get("SIBP_NP_FUSED", "1").strip() not in ("0", "false", "no", "off")

    def to_host(self, a):
        _note_sync()
        return self.xp.asnumpy(a)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    def is_sparse(self, a):
        return any(m is not None and m.issparse(a) for m in (sys.modules.get("cupyx.scipy.sparse"),
                                                              sys.modules.get("scipy.sparse")))

    def vector_norm(self, a):
        return self.xp.linalg.norm(a)  # CuPy's own

    def as_sparse(self, a, dtype):
        import cupyx.scipy.sparse
        out = cupyx.scipy.sparse.csr_matrix(a, dtype=dtype, copy=True)  # never sorts the caller's arrays
        out.sum_duplicates()
        return out

    def _solve_spd(self, A, B):
        # cuSOLVER's Cholesky (potrf) and two triangular solves. CuPy checks potrf's info only under
        # errstate(linalg="raise"); a matrix that is not numerically positive definite then raises
        # numpy.linalg.LinAlgError, as SciPy's cho_factor does on the CPU. The finiteness check (one
        # reduction, one sync per solve) catches what the factorization lets through.
        import cupyx
        from cupyx.scipy.linalg import solve_triangular
        xp = self.xp
        with cupyx.errstate(linalg="raise"):
            L = xp.linalg.cholesky(A)
        X = solve_triangular(L, solve_triangular(L, B, lower=True), lower=True, trans="T")
        if not bool(xp.isfinite(X).all()):
            raise numpy.linalg.LinAlgError("the matrix is not numerically positive definite")
        return X

    def capture(self, fn, X, y):
        return _CapturedStep(self.xp, fn, X, y)

    def unfused(self):
        """The base class's reference ops running on CuPy: what the fused kernels replace (for tests and
        benchmarks; ``SIBP_NP_FUSED=0`` switches a whole run over instead)."""
        ref = Backend()
        ref.xp, ref.name = self.xp, "cupy-reference"
        return ref

    # ------------------------------------------------------------------ helpers
    def _check(self, op, **arrays):
        for pname, a in arrays.items():
            if not isinstance(a, self.xp.ndarray):
                raise TypeError(
                    f"{op}: {pname} is a {type(a).__module__}.{type(a).__name__}, but the cupy backend "
                    f"needs CuPy arrays; move it with backend.asarray({pname}) (or build the model "
                    f"with backend='numpy')")

    def _fusable(self, *arrays):
        return self.fused and all(a.dtype.char in "fd" for a in arrays)

    def _launch(self, name, *args, **kwargs):
        try:
            return _kernel(name)(*args, **kwargs)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if "Compile" in type(exc).__name__ or "nvrtc" in text.lower():
                raise RuntimeError(
                    f"compiling the CuPy kernel sibp_{name} failed ({text}). A machine with only the "
                    f"NVIDIA driver needs the CUDA runtime compiler: {_CTK_HINT}") from exc
            raise

    # ------------------------------------------------------------------ fused ops
    def masked_residual(self, z, t, out=None):
        self._check("masked_residual", z=z, t=t)
        if not self._fusable(z, t):
            return super().masked_residual(z, t, out=out)
        return self._launch("masked_residual", z, t, out) if out is not None else \
            self._launch("masked_residual", z, t)

    def _reduce(self, name, z, *args):
        """A fused sum of squares as a 0-d array (no read). CuPy runs a reduction to one value in a single
        thread block, which is memory-bound on one multiprocessor (measured on an H200: slower than the
        unfused ops from 100 x 4000 elements on). Above ``ROWWISE_MIN`` elements each row is reduced by
        its own block and the row sums are added by ``cupy.sum`` (CUB): two launches."""
        if z.ndim == 2 and z.size >= self.ROWWISE_MIN:
            return self._launch(name, z, *args, axis=1).sum()
        return self._launch(name, z, *args)

    def masked_residual_sqnorm(self, z, p, t, alpha, work=None):
        self._check("masked_residual_sqnorm", z=z, p=p, t=t)
        if not self._fusable(z, p, t):
            return super().masked_residual_sqnorm(z, p, t, alpha, work=work)
        return self._reduce("masked_residual_sqnorm", z, p, t, z.dtype.type(alpha))

    def masked_residual_sqnorm_multi(self, z, p, t, alphas, work=None):
        # the single-trial kernel, broadcast over alphas[:, None, None] and reduced over each trial's
        # (n_samples, n_out) block: M trials in one launch, no (M, n_samples, n_out) array in memory
        self._check("masked_residual_sqnorm_multi", z=z, p=p, t=t, alphas=alphas)
        if not self._fusable(z, p, t):
            return super().masked_residual_sqnorm_multi(z, p, t, alphas, work=work)
        a = alphas.astype(z.dtype)[:, None, None]
        if z.size >= self.ROWWISE_MIN:
            return self._launch("masked_residual_sqnorm", z, p, t, a, axis=2).sum(axis=1)
        return self._launch("masked_residual_sqnorm", z, p, t, a, axis=(1, 2))

    def masked_sqnorm(self, z, p, work=None):
        self._check("masked_sqnorm", z=z, p=p)
        if not self._fusable(z, p):
            return super().masked_sqnorm(z, p, work=work)
        return self._reduce("masked_sqnorm", z, p)


class _CapturedStep:
    """One step recorded as a CUDA graph, with its own memory.

    The inputs are copied into arrays that the graph reads. Everything the step allocates while it is
    captured comes from a memory pool of its own, which lives as long as the graph: the addresses the
    graph writes stay reserved for it, and its temporaries are reused only inside the graph, in the
    order the capture recorded. Capture runs on a non-blocking stream in CuPy's relaxed mode (the pool
    may grow while capturing); a read back to the host during capture raises, and the caller falls
    back to running the step as usual.
    """

    def __init__(self, cp, fn, X, y):
        self.cp = cp
        self.X, self.y = X.copy(), y.copy()
        self.pool = cp.cuda.MemoryPool()
        self.stream = cp.cuda.Stream(non_blocking=True)
        cp.cuda.get_current_stream().synchronize()  # the parameters' last writes are done
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture()
            try:
                self.out = fn(self.X, self.y)
            finally:
                self.graph = self.stream.end_capture()

    def replay(self, X, y):
        self.X[...] = X
        self.y[...] = y
        self.graph.launch(stream=self.cp.cuda.get_current_stream())
        return self.out


assert all(op in vars(CupyBackend) for op in FUSED_OPS + DEVICE_OPS)
