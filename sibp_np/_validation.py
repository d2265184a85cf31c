"""Input checks shared by the public entry points: clear errors that name the parameter and value."""
import math
import numbers

import numpy as np


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_positive(name, value, allow_zero=False, allow_inf=False):
    """A finite real number > 0 (or >= 0); bools are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {_short(value)}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_fraction(name, value, closed_low=True):
    """A real number in [0, 1) (or (0, 1))."""
    v = check_positive(name, value, allow_zero=True)
    if v >= 1 or (v == 0 and not closed_low):
        raise ValueError(f"{name} must lie in {'[0' if closed_low else '(0'}, 1), got {value!r}")
    return v


def check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {_short(value)}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return v


def check_choice(name, value, choices, what=""):
    """``value`` lower-cased and stripped, if it is one of ``choices``; ``what`` names the kind."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(choices)}; got {_short(value)}")
    key = value.strip().lower()
    if key not in choices:
        kind = f"a known {what}" if what else "known"
        raise ValueError(f"{name}={value!r} is not {kind}; choose one of {', '.join(choices)}")
    return key


def check_dtype(name, value):
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {_short(value)}") from exc
    if dt not in (np.float32, np.float64):
        raise ValueError(f"{name} must be 'float32' or 'float64', got {value!r}")
    return dt


def check_X(X, n_features, backend, dtype, name="X", values=True):
    """Validate features ``(n_samples, n_features)`` and return them on ``backend`` as ``dtype``.

    Lists, non-contiguous and Fortran-ordered arrays are accepted (copied to C order); float16 and
    non-numeric data are not. ``values=False`` leaves out the check that every value is finite (the
    one that reads from the device): the caller makes it, together with others, in one read.
    """
    xp = backend.xp
    if isinstance(X, (list, tuple)):
        try:
            X = np.asarray(X)
        except ValueError as exc:  # rows of different lengths
            raise ValueError(f"{name} is ragged: each row must have {n_features} values ({exc})") from None
    if isinstance(X, np.ma.MaskedArray):
        if np.ma.getmaskarray(X).any():
            raise TypeError(f"{name} is a masked array with masked entries; fill them first "
                            f"({name}.filled(value)) or drop those rows")
        X = X.data
    sparse = backend.is_sparse(X)
    if not (isinstance(X, np.ndarray) or backend.is_array(X) or sparse):
        raise TypeError(f"{name} must be an array (dense, or scipy.sparse) of shape (n_samples, "
                        f"{n_features}), got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(X.shape)}")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features} "
                         f"(shape {tuple(X.shape)})")
    kind = X.dtype.kind
    if kind == "f" and X.dtype.itemsize < 4:
        raise TypeError(f"{name} has dtype {X.dtype}; use float32 or float64 (float16 loses too much "
                        f"precision for the inner solvers)")
    if kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    if sparse:  # kept sparse (CSR): it only meets the first layer's products
        out = backend.as_sparse(X, dtype)
    else:
        out = xp.ascontiguousarray(backend.asarray(X, dtype=dtype))
    if values and not backend.to_bool(backend.all_finite(out)):
        raise ValueError(f"{name} contains NaN or inf")
    return out


def _targets_array(y, backend, name, what):
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if not (isinstance(y, np.ndarray) or backend.is_array(y)):
        raise TypeError(f"{name} must be an array of {what}, got {type(y).__name__}")
    return y


def _check_length(name, y, n_samples):
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} entries for {n_samples} samples (different lengths: "
                         f"{n_samples} and {y.shape[0]})")


def check_y(y, n_samples, n_classes, backend, name="y", values=True):
    """Validate integer labels ``(n_samples,)`` in ``[0, n_classes)``; return int64 on ``backend``.
    ``values=False`` leaves the range check to the caller (:func:`check_label_range`)."""
    xp = backend.xp
    y = _targets_array(y, backend, name, "integer labels")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer labels of shape ({n_samples},), got shape "
                         f"{tuple(y.shape)} (one-hot targets are not accepted; pass y.argmax(1))")
    _check_length(name, y, n_samples)
    if y.dtype.kind == "f" and not backend.to_bool(xp.isfinite(xp.asarray(y)).all()):
        raise ValueError(f"{name} contains NaN or inf (class labels must be whole numbers)")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and backend.to_bool(xp.all(xp.asarray(y) == xp.round(xp.asarray(y)))):
            pass  # integral floats are accepted
        else:
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = backend.asarray(y)
    if values:
        lo, hi = backend.to_host(xp.stack([y.min(), y.max()]))
        check_label_range(lo, hi, n_classes, name)
    return y.astype(xp.int64, copy=False)


def check_label_range(lo, hi, n_classes, name="y"):
    """Labels in ``[lo, hi]`` (host numbers) must lie in ``[0, n_classes)``."""
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{name} has labels in [{lo}, {hi}] but the model has {n_classes} classes "
                         f"(labels must lie in [0, {n_classes - 1}])")


def check_layer_sizes(layer_sizes, dtype, memory_bytes=0):
    """``layer_sizes`` as a tuple of at least two positive ints, whose parameters fit in
    ``memory_bytes`` (when known) in ``dtype``."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
    sizes = tuple(check_int(f"layer_sizes[{i}]", s) for i, s in enumerate(layer_sizes))
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least 2 entries (inputs, outputs), got {layer_sizes!r}")
    for i, s in enumerate(sizes):
        if s < 1:
            raise ValueError(f"layer_sizes[{i}] must be a positive width, got {s} in {layer_sizes!r}")
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    need = n_params * np.dtype(dtype).itemsize
    if memory_bytes and need > memory_bytes:
        raise ValueError(f"layer_sizes={list(sizes)} has {n_params:,} parameters: {need / 2**30:.1f} GiB "
                         f"in {np.dtype(dtype).name}, more than this machine's "
                         f"{memory_bytes / 2**30:.1f} GiB")
    return sizes


def check_init_std(init_std, dtype):
    """A positive ``init_std`` whose draws (8 standard deviations) are still numbers in ``dtype``."""
    init_std = check_positive("init_std", init_std)
    with np.errstate(over="ignore"):
        if not np.isfinite(np.dtype(dtype).type(8.0 * init_std)):
            raise ValueError(f"init_std={init_std!r} overflows {np.dtype(dtype).name}: the initial weights "
                             f"would be inf; choose a smaller init_std or dtype='float64'")
    return init_std


def check_Xy(X, y, n_features, n_outputs, regression, backend, dtype, names=("X", "y")):
    """Checked ``X`` and targets on ``backend`` for a network with ``n_features`` inputs and
    ``n_outputs`` outputs (classes): int64 labels ``(n_samples,)``, or for a ``regression``
    ``(n_samples, n_outputs)`` reals of ``dtype``. The values of both are checked in one read from the
    device. ``names`` are used in the messages."""
    xp = backend.xp
    X = check_X(X, n_features, backend, dtype, name=names[0], values=False)
    if regression:
        y = check_targets(y, X.shape[0], n_outputs, backend, dtype, name=names[1], values=False)
        finite = backend.to_host(xp.stack([backend.all_finite(X), xp.isfinite(y).all()]))
    else:
        y = check_y(y, X.shape[0], n_outputs, backend, name=names[1], values=False)
        finite = backend.to_host(xp.stack([backend.all_finite(X).astype(xp.int64), y.min(), y.max()]))
    if not finite[0]:
        raise ValueError(f"{names[0]} contains NaN or inf")
    if regression and not finite[1]:
        raise ValueError(f"{names[1]} contains NaN or inf")
    if not regression:
        check_label_range(finite[1], finite[2], n_outputs, names[1])
    return X, y


def check_open_unit(name, value):
    """A real number in the open interval (0, 1)."""
    v = check_positive(name, value)
    if v >= 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return v


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {_short(value)}")
    return bool(value)


def check_optional_bool(name, value):
    """``None`` or a bool."""
    return None if value is None else check_bool(name, value)


def check_optional_choice(name, value, choices):
    """``None``, or one of ``choices`` as :func:`check_choice` accepts it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be None or one of {', '.join(choices)}; got {_short(value)}")
    key = value.strip().lower()
    if key not in choices:
        raise ValueError(f"{name} must be None or {' or '.join(repr(c) for c in choices)}, got {value!r}")
    return key


def check_pair(name, value, each):
    """A pair ``(a, b)``, each checked by ``each(f"{name}[i]", x)``; returned as a tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair ({name}[0], {name}[1]), got {_short(value)}")
    return tuple(each(f"{name}[{i}]", v) for i, v in enumerate(value))


def check_optimizer(name, value):
    """``None``, or an explicit method with an ``update(params, grads)`` method (ProxBP's optimizer)."""
    if isinstance(value, type):
        raise TypeError(f"{name} must be an instance such as {value.__name__}(lr=0.1), not the class "
                        f"{value.__name__}")
    if value is not None and not callable(getattr(value, "update", None)):
        raise TypeError(f"{name} must be an SGD, Adam or RMSprop instance, got {value!r}")
    return value


def check_seed(name, value):
    """``None``, a non-negative int, or a ``numpy.random.Generator``."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None, a non-negative int or a numpy.random.Generator, got "
                        f"{type(value).__name__} {_short(value)}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(value)


def check_output_path(name, path, suffixes):
    """A file path that can be written: a known suffix, not a folder, in a folder that exists and is
    writable. Returned as a ``Path``."""
    import os
    from pathlib import Path
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"{name} must be a file path, got {_short(path)}")
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{name}={str(path)!r}: use a file name ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a folder, not a file")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise ValueError(f"{name}={str(path)!r}: the folder {str(parent)!r} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={str(path)!r}: the folder {str(parent)!r} is not writable")
    return path


def check_output_folder(name, folder):
    """A folder that exists and is writable, or can be created in one that does."""
    import os
    from pathlib import Path
    if not isinstance(folder, (str, os.PathLike)) or str(folder) == "":
        raise TypeError(f"{name} must be a folder path, got {_short(folder)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name}={str(folder)!r} is a file, not a folder")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={str(folder)!r}: {str(probe)!r} is not a writable folder")
    return folder


def check_finite_array(name, value, shape, dtype, backend):
    """``value`` as a C-ordered copy on ``backend`` in ``dtype``: a real, finite array of ``shape``."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of shape {shape}, got {_short(value)}")
    host = value if backend.is_array(value) else np.asarray(value)
    if host.dtype.kind not in "iuf" or host.dtype == np.float16:
        raise TypeError(f"{name} must hold real numbers (float32 or float64), got dtype {host.dtype}")
    if tuple(host.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape}, got {tuple(host.shape)}")
    arr = backend.xp.array(backend.asarray(host, dtype=dtype), copy=True, order="C")
    if not bool(backend.xp.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or inf (or values that overflow {np.dtype(dtype).name})")
    return arr


def check_targets(y, n_samples, n_outputs, backend, dtype, name="y", values=True):
    """Validate real regression targets, shape (n_samples,) (one output) or (n_samples, n_outputs);
    return them as ``dtype`` of shape (n_samples, n_outputs) on ``backend``."""
    xp = backend.xp
    y = _targets_array(y, backend, name, "real targets")
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        want = f"({n_samples},) or ({n_samples}, 1)" if n_outputs == 1 else f"({n_samples}, {n_outputs})"
        raise ValueError(f"{name} must have shape {want} for a model with {n_outputs} output(s), got "
                         f"shape {tuple(y.shape)}")
    _check_length(name, y, n_samples)
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
    out = xp.ascontiguousarray(backend.asarray(y, dtype=dtype))
    if values and not backend.to_bool(xp.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return out
