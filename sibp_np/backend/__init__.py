"""Backend selection: ``SIBP_NP_BACKEND=numpy|cupy``, :func:`set_backend`, :func:`use_backend`.

Precedence, strongest first: an explicit ``backend=`` argument, :func:`use_backend` (a context),
:func:`set_backend`, the environment variable ``SIBP_NP_BACKEND`` (read on first use, not at import),
and finally ``numpy``. CuPy is imported only when the ``cupy`` backend is asked for, and a request for it
never falls back to the CPU: it raises instead.
"""
import contextlib
import contextvars
import os

from .._validation import check_choice
from .base import DEVICE_OPS, FUSED_OPS, Backend, HostSyncCounter, count_host_syncs

BACKENDS = ("numpy", "cupy")
ENV_VAR = "SIBP_NP_BACKEND"

_context = contextvars.ContextVar("sibp_np_backend", default=None)
_default_name = None  # set by set_backend; None means "read the environment variable"
_instances = {}

__all__ = ["Backend", "FUSED_OPS", "DEVICE_OPS", "BACKENDS", "get_backend", "set_backend",
           "use_backend", "backend_of", "array_module", "count_host_syncs", "HostSyncCounter"]


def _normalize(name, source):
    if isinstance(name, Backend):
        return name.name
    return check_choice(source, name, BACKENDS, what="backend")


def _instance(key):
    if key not in _instances:
        if key == "numpy":
            _instances[key] = Backend()
        else:
            from .cupy_backend import CupyBackend  # imports cupy: only here
            _instances[key] = CupyBackend()
    return _instances[key]


def get_backend(name=None):
    """The backend to use now.

    Parameters
    ----------
    name : str or Backend, optional
        ``"numpy"`` or ``"cupy"`` (case and surrounding whitespace ignored). ``None`` means the current
        default (context, then :func:`set_backend`, then ``$SIBP_NP_BACKEND``, then numpy).

    Raises
    ------
    ValueError
        Unknown name. ImportError: CuPy asked for but not installed. RuntimeError: CuPy installed but no
        usable CUDA device.
    """
    if isinstance(name, Backend):
        return name
    if name is not None:
        return _instance(_normalize(name, "backend"))
    ctx = _context.get()
    if ctx is not None:
        return _instance(ctx)
    if _default_name is not None:
        return _instance(_default_name)
    env = os.environ.get(ENV_VAR)
    if env is None or env.strip() == "":
        return _instance("numpy")
    return _instance(_normalize(env, ENV_VAR))


def set_backend(name):
    """Set the process-wide default backend (overrides ``$SIBP_NP_BACKEND``); ``None`` resets it."""
    global _default_name
    if name is None:
        _default_name = None
        return None
    key = _normalize(name, "backend")
    _instance(key)  # fail now, not at first use
    _default_name = key
    return _instances[key]


@contextlib.contextmanager
def use_backend(name):
    """Context manager: use backend ``name`` inside the ``with`` block."""
    key = _normalize(name, "backend")
    backend = _instance(key)
    token = _context.set(key)
    try:
        yield backend
    finally:
        _context.reset(token)


def _is_cupy_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def backend_of(*arrays):
    """The backend that owns ``arrays``: cupy if any of them is a CuPy array, else numpy."""
    if any(_is_cupy_array(a) for a in arrays):
        return _instance("cupy")
    return _instance("numpy")


def array_module(a):
    """``numpy`` or ``cupy``: the array module of ``a`` (for code that receives arrays, not a model)."""
    return _instance("cupy").xp if _is_cupy_array(a) else _instance("numpy").xp
