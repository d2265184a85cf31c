"""Reference math of every backend op, written against ``self.xp``.

The same methods run on NumPy (``xp = numpy``) and on CuPy (``xp = cupy``): this class *is* the CPU
backend and the unfused GPU reference. :class:`~sibp_np.backend.cupy_backend.CupyBackend` overrides only
the ops named in :data:`FUSED_OPS` with hand-written kernels.
"""
import contextlib
import sys

import numpy

#: The ops that a subclass may replace with fused kernels. Each has a reference here.
FUSED_OPS = ("masked_residual", "masked_residual_sqnorm", "masked_sqnorm", "masked_residual_sqnorm_multi")

_SYNC_COUNTERS = []  # the active count_host_syncs() counters


class HostSyncCounter:
    """What :func:`count_host_syncs` yields: ``count`` is the number of device-to-host reads so far."""

    def __init__(self):
        self.count = 0

    def __repr__(self):
        return f"HostSyncCounter(count={self.count})"


@contextlib.contextmanager
def count_host_syncs():
    """Count the device-to-host reads (:meth:`Backend.to_float`, :meth:`Backend.to_bool`,
    :meth:`Backend.to_host`) made inside the ``with`` block, on any backend::

        with count_host_syncs() as c:
            method.step(model, X, y)
        c.count

    On NumPy nothing waits, but the count is the one a GPU would see: the engine reads every device
    value through these three methods.
    """
    counter = HostSyncCounter()
    _SYNC_COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _SYNC_COUNTERS.remove(counter)


def _note_sync():
    for counter in _SYNC_COUNTERS:
        counter.count += 1

#: The ops whose code here is not generic in ``xp`` (it calls SciPy, or NumPy has no such thing): every
#: device backend overrides them.
DEVICE_OPS = ("_solve_spd", "capture", "is_sparse", "as_sparse", "vector_norm")


class NotPositiveDefinite(numpy.linalg.LinAlgError):  # a ValueError too
    """:meth:`Backend.solve_spd`'s matrix is not numerically positive definite; the message names it."""


class Backend:
    """Array backend: NumPy by default.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"cupy"``.
    xp : module
        The array module (``numpy`` or ``cupy``).
    """

    name = "numpy"
    #: whether reading a scalar back costs a device round trip (SIBP's control="auto" then keeps its
    #: scalars on the device)
    device_resident = False
    #: whether :meth:`capture` can record a step as a graph and replay it
    supports_graphs = False

    def __init__(self):
        self.xp = numpy

    def __repr__(self):
        return f"<sibp_np backend {self.name!r}>"

    # ------------------------------------------------------------------ data movement
    def asarray(self, a, dtype=None):
        """Array on this backend (a copy only where the device or dtype differ)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a):
        """NumPy copy (or view) of ``a`` (a device-to-host read, counted by :func:`count_host_syncs`)."""
        _note_sync()
        return numpy.asarray(a)

    def to_float(self, a):
        """``float(a)`` of a 0-d array: the one way the engine reads a device scalar on the host."""
        _note_sync()
        return float(a)

    def to_bool(self, a):
        """``bool(a)`` of a 0-d array (a device-side decision read on the host)."""
        _note_sync()
        return bool(a)

    def scalar(self, a):
        """A 0-d float64 array on this backend holding ``a`` (a reduction's result, or a number): the
        device-resident form of a scalar. float64 arithmetic on it rounds exactly as Python floats do."""
        return self.xp.asarray(a, dtype=numpy.float64)

    def cast(self, a, dtype):
        """``a`` (a number or a 0-d array) as a scalar of ``dtype`` for an update ``x += a * D``: a NumPy
        scalar from a number, as before, and a 0-d array, without a read, from an array."""
        if isinstance(a, self.xp.ndarray):
            return a.astype(dtype)
        return numpy.dtype(dtype).type(a)

    def is_array(self, a):
        return isinstance(a, self.xp.ndarray)

    # ------------------------------------------------------------------ sparse inputs
    # A sparse X (scipy.sparse CSR/CSC; cupyx.scipy.sparse on the GPU) only ever meets the first layer,
    # through the four products below: ``X W^T`` (plain ``@``), ``A^T X``, ``X X^T``, and reductions.
    def is_sparse(self, a):
        """Whether ``a`` is a sparse matrix or array (SciPy's). Asked in the solvers' inner loops, so it
        imports nothing: a SciPy sparse matrix exists only once ``scipy.sparse`` has been imported."""
        sparse = sys.modules.get("scipy.sparse")
        return sparse is not None and sparse.issparse(a)

    def as_sparse(self, a, dtype):
        """``a`` (any sparse format) as a CSR array of ``dtype`` on this backend, in canonical form
        (sorted indices, duplicates summed). The caller's matrix is never changed: a conversion may
        share its index arrays, so a matrix that needs sorting is copied first."""
        import scipy.sparse
        out = scipy.sparse.csr_array(a, dtype=dtype)
        if not out.has_canonical_format:
            out = scipy.sparse.csr_array(a, dtype=dtype, copy=True)
            out.sum_duplicates()
        return out

    def t_matmul(self, A, F):
        """``A^T F`` (dense), also for a sparse ``F``: there as ``(F^T A)^T``."""
        if not self.is_sparse(F):
            return A.T @ F
        out = F.T @ A
        return self.xp.ascontiguousarray((out.toarray() if self.is_sparse(out) else out).T)

    def gram(self, F):
        """``F F^T`` (dense), also for a sparse ``F``."""
        out = F @ F.T
        return out.toarray() if self.is_sparse(out) else out

    def sqnorm(self, F):
        """``||F||_F^2`` as a 0-d array, also for a sparse ``F`` (its stored values)."""
        a = F.data if self.is_sparse(F) else F.ravel()
        return self.xp.vdot(a, a)

    def vector_norm(self, a):
        """``||a||_2`` of a real 1-D array as a 0-d array of its dtype: ``sqrt(a . a)``, the formula of
        ``numpy.linalg.norm`` (the same number) without its checks, which cost about 5 us a call."""
        return self.xp.sqrt(a.dot(a))

    def colsum(self, F):
        """``F.sum(axis=0)`` as a 1-D array, also for a sparse ``F``."""
        return self.xp.asarray(F.sum(axis=0)).ravel() if self.is_sparse(F) else F.sum(axis=0)

    def all_finite(self, X):
        """``isfinite(X).all()`` as a 0-d array (not read), also for a sparse ``X``."""
        return self.xp.isfinite(X.data if self.is_sparse(X) else X).all()

    def synchronize(self):
        """Wait for queued device work (a no-op on the CPU)."""

    def capture(self, fn, X, y):
        """Record ``fn(X, y)`` (a step that reads nothing back) as a graph: an object whose
        ``replay(X, y)`` copies the inputs into the captured ones, runs the recorded work and returns
        what ``fn`` returned. Capture only records; the caller replays to run it. NumPy has no graphs."""
        raise NotImplementedError(f"the {self.name} backend records no graphs")

    # ------------------------------------------------------------------ linear algebra
    def solve_spd(self, A, B, what="the matrix", hint=""):
        """``X`` with ``A X = B`` for a symmetric positive-definite ``A`` (SciPy's Cholesky on the CPU).

        Parameters
        ----------
        A : array, shape (n, n)
        B : array, shape (n, k)
        what, hint : str
            Name the matrix (its layer and form) and what to do, in the ``ValueError`` raised when ``A``
            is not numerically positive definite (a ``numpy.linalg.LinAlgError`` too).

        Returns
        -------
        X : array, shape (n, k)
        """
        try:
            return self._solve_spd(A, B)
        except numpy.linalg.LinAlgError as exc:
            raise NotPositiveDefinite(f"{what} is not numerically positive definite in {A.dtype} ({exc})"
                                      + (f"; {hint}" if hint else "")) from exc

    def _solve_spd(self, A, B):
        import scipy.linalg
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(A), B)

    # ------------------------------------------------------------------ line-search ops
    def shifted(self, z, p, alpha, out):
        """``out = z + alpha p``, rounded as ``fl(fl(alpha p) + z)`` (``Z(alpha)`` of a trial).

        A bias direction ``p`` (one row, broadcast over the samples) is scaled before it is
        broadcast: one pass over ``z`` instead of two.
        """
        a = z.dtype.type(alpha)
        if p.shape == z.shape:
            self.xp.multiply(p, a, out=out)
            out += z
        else:
            self.xp.add(z, p * a, out=out)
        return out

    def masked_residual(self, z, t, out=None):
        """ReLU-masked residual ``(relu(z) - t) * 1[z > 0]``, i.e. ``where(z > 0, z - t, 0)``.

        This is ``sigma'(Z) * (sigma(Z) - T)`` for ReLU, the factor in the gradient of the
        subproblem (7): ``grad_W = 2 M^T F + lam (W - W^k)``.

        Parameters
        ----------
        z, t : array, shape (n_samples, n_out)
            Pre-activation ``Z = F W^T + b`` and post-activation target ``T``.
        out : array, optional
            Buffer of z's shape and dtype to write into.

        Returns
        -------
        M : array, shape (n_samples, n_out)
        """
        xp = self.xp
        if out is None:
            out = xp.empty_like(z)
        xp.subtract(z, t, out=out)
        out *= z > 0
        return out

    def masked_residual_sqnorm(self, z, p, t, alpha, work=None):
        """Line-search objective ``sum((max(z + alpha p, 0) - t)^2)`` as a 0-d array.

        Evaluates the data term of (7) at ``W + alpha D`` from ``Z`` and ``P = F D^T``, so a trial
        step costs no matrix product.

        Parameters
        ----------
        z, t : array, shape (n_samples, n_out)
        p : array, broadcastable to z's shape (``P = F D^T``, or a bias direction ``d[None, :]``)
        alpha : float
        work : array, optional
            Scratch buffer of z's shape and dtype (saves an allocation per trial).
        """
        xp = self.xp
        if work is None:
            work = xp.empty_like(z)
        self.shifted(z, p, alpha, out=work)
        xp.maximum(work, 0, out=work)
        work -= t
        return xp.vdot(work.ravel(), work.ravel())

    def masked_residual_sqnorm_multi(self, z, p, t, alphas, work=None):
        """:meth:`masked_residual_sqnorm` at ``M`` steps at once: ``out[m] = sum((max(z + alphas[m] p,
        0) - t)^2)``, one pass over an ``(M, n_samples, n_out)`` array (a batched Armijo search).

        Parameters
        ----------
        z, t : array, shape (n_samples, n_out)
        p : array, broadcastable to z's shape
        alphas : array, shape (M,)
        work : array, optional
            Scratch buffer of shape ``(M,) + z.shape`` and z's dtype.

        Returns
        -------
        array, shape (M,)
            Each entry rounds as ``fl(fl(alpha p) + z)`` before the ReLU, as a single trial does; only
            the order of the final sum may differ.
        """
        xp = self.xp
        shape = (alphas.shape[0],) + z.shape
        if work is None:
            work = xp.empty(shape, dtype=z.dtype)
        a = alphas.astype(z.dtype)[:, None, None]
        xp.multiply(p[None], a, out=work)
        work += z
        xp.maximum(work, 0, out=work)
        work -= t
        work *= work
        return work.reshape(shape[0], -1).sum(axis=1)

    def masked_sqnorm(self, z, p, work=None):
        """``sum((p * 1[z > 0])^2)``: the Gauss-Newton curvature of the ReLU objective along ``p``.

        Parameters
        ----------
        z : array, shape (n_samples, n_out)
        p : array, broadcastable to z's shape
        work : array, optional
            Scratch buffer of z's shape and dtype.

        Returns
        -------
        0-d array
        """
        xp = self.xp
        if work is None:
            work = xp.empty_like(z)
        xp.multiply(p, z > 0, out=work)  # 7x faster than where(z > 0, p, 0), and the same values
        return xp.vdot(work.ravel(), work.ravel())
