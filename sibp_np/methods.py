"""The one protocol every training method follows, its hyperparameters, and the registry of methods.

``method.step(model, X, y) -> float`` runs one iteration on one minibatch and returns that minibatch's
batch-mean loss *before* the update. ``step(model, X, y, checked=True)`` skips the input checks for
arrays that ``model.check_Xy`` already returned (``fit`` passes its minibatches so: the training set is
checked once, not once per step). ``y`` holds integer labels, or real targets for a regression
model. The training loop only ever calls ``step``, so it never branches on the method.

A method's hyperparameters are its constructor's arguments, stored under the same names (as in
scikit-learn): :meth:`Method.hyperparameters` reads them from the signature. Declaring one as a
:class:`Hyperparameter` makes every assignment, in ``__init__`` and after, go through the same check.
Values are stored as given; defaults that depend on others (``None``, ``"auto"``) are resolved where
they are used, so the result never depends on the order of assignment.
"""
import inspect
import warnings

import numpy as np

from ._validation import check_choice

METHODS = {}


def register(name):
    """Class decorator: make ``name`` usable in :func:`get_method` and the CLI's ``--method``."""
    def deco(cls):
        METHODS[name] = cls
        cls.name = name
        return cls
    return deco


def get_method(name, **hyperparameters):
    """A method instance by registry name, e.g. ``get_method("sibp", eta=1.0, lam=1.0)``."""
    key = check_choice("method", name, tuple(sorted(METHODS)))
    return METHODS[key](**hyperparameters)


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values whose comparison is not a bool: not the same
        return False


class Hyperparameter:
    """A method's constructor argument, checked on every assignment.

    ``Hyperparameter(check, help="...", **options)`` stores ``check(name, value, **options)``, which
    returns the value to keep or raises a ``TypeError``/``ValueError`` that names the parameter. ``help``
    is one line for the command line, which builds its options from these objects (their check gives the
    type, ``options["choices"]`` the choices); ``default_text`` says what a default that is resolved at
    use (``None``) amounts to. Once all of an
    instance's hyperparameters are set, every assignment also runs the method's :meth:`Method._validate`
    (the checks between parameters, and defaults that depend on others); if that fails, the old value
    is put back before the error propagates.
    """

    def __init__(self, check, help="", default_text=None, **options):
        self.check, self.help, self.default_text, self.options = check, help, default_text, options

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, obj, value):
        new = self.check(self.name, value, **self.options)
        if type(new) is type(value) and _same(new, value):
            new = value  # the very object given, as scikit-learn's clone checks
        missing = object()
        old = obj.__dict__.get(self.name, missing)
        obj.__dict__[self.name] = new
        if all(n in obj.__dict__ for n in type(obj).declared_hyperparameters()):
            try:
                obj._validate()
            except Exception:
                if old is missing:
                    del obj.__dict__[self.name]
                else:
                    obj.__dict__[self.name] = old
                raise
            obj._hyperparameter_changed(self.name)


class Method:
    """Base class of all training methods.

    Subclasses implement :meth:`step`; those with state (momentum buffers, moments, counters) keep it in
    ``self.state`` (a dict of host-convertible arrays and numbers) so that checkpoints can save it.
    """

    name = "method"
    #: ``{old name: new name}`` of renamed hyperparameters, accepted with a ``FutureWarning`` for one
    #: release (as constructor arguments and as attributes)
    renamed = {}

    def __init__(self):
        self.state = {}

    def _renamed_arguments(self, kwargs):
        """``{new name: value}`` for the deprecated names in ``kwargs`` (a constructor's ``**kwargs``),
        with a ``FutureWarning`` each; a ``TypeError`` names any other unknown argument."""
        out = {}
        for old, value in kwargs.items():
            if old not in self.renamed:
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {old!r}; "
                                f"its hyperparameters are {self.hyperparameter_names()}")
            out[self._warn_renamed(old)] = value
        return out

    def _warn_renamed(self, old):
        new = self.renamed[old]
        warnings.warn(f"{type(self).__name__}: {old!r} is renamed {new!r}; the old name will be removed "
                      f"in the next release", FutureWarning, stacklevel=4)
        return new

    def __getattr__(self, name):  # only called when the usual lookup fails
        if name in type(self).renamed:
            return getattr(self, self._warn_renamed(name))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in type(self).renamed:
            name = self._warn_renamed(name)
        object.__setattr__(self, name, value)

    def step(self, model, X, y, checked=False):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def hyperparameter_names(cls):
        """The constructor's named arguments, in signature order. A constructor that passes
        ``**kwargs`` on (``def __init__(self, extra=1, **kw): super().__init__(**kw)``) adds its own
        names to its parent's."""
        names = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            params = list(inspect.signature(init).parameters.values())[1:]
            names += [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                      and p.name not in names]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return names

    @classmethod
    def hyperparameter_objects(cls):
        """``{name: Hyperparameter}`` for each constructor argument declared as one (the nearest class's
        declaration wins)."""
        out = {}
        for name in cls.hyperparameter_names():
            for klass in cls.__mro__:
                if isinstance(vars(klass).get(name), Hyperparameter):
                    out[name] = vars(klass)[name]
                    break
        return out

    @classmethod
    def declared_hyperparameters(cls):
        """The names declared as :class:`Hyperparameter` on the class and its bases: once all are set,
        every assignment runs :meth:`_validate`."""
        return [n for klass in cls.__mro__ for n, v in vars(klass).items() if isinstance(v, Hyperparameter)]

    def hyperparameters(self):
        """``{name: value in use}`` for each constructor argument (for repr, histories, checkpoints):
        the attributes as given, with defaults such as ``None`` resolved (:meth:`_in_use`)."""
        out = {}
        for name in self.hyperparameter_names():
            if not hasattr(self, name):
                raise TypeError(f"{type(self).__name__}.__init__ takes {name!r}, but the instance has "
                                f"no attribute {name!r}: store each constructor argument under its "
                                f"own name")
            out[name] = getattr(self, name)
        out.update({k: v for k, v in self._in_use().items() if k in out})
        return out

    def _in_use(self):
        """``{name: value in use}`` for the hyperparameters whose default is resolved at use."""
        return {}

    # scikit-learn's parameter protocol: clone, GridSearchCV's "method__eta", Pipeline-style nesting
    def get_params(self, deep=True):
        """``{name: value as given}`` for each constructor argument (scikit-learn's convention, so that
        ``sklearn.base.clone`` rebuilds an equal method); with ``deep``, a hyperparameter that has
        parameters of its own (ProxBP's ``optimizer``) adds them as ``"optimizer__lr"``."""
        out = {}
        for name in self.hyperparameter_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self, **params):
        """Set hyperparameters by name (each checked as on assignment); ``"optimizer__lr"`` reaches a
        nested one. An unknown name is a ``ValueError`` that names the method and its parameters."""
        names = self.hyperparameter_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in names and name not in self.renamed:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {name!r} (in "
                                 f"set_params({key}=...)); its hyperparameters are {names}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            inner = getattr(self, name)
            if not hasattr(inner, "set_params"):
                raise ValueError(f"{type(self).__name__}.{name} is {inner!r}, which has no parameters to "
                                 f"set ({', '.join(f'{name}__{k}' for k in sub_params)})")
            inner.set_params(**sub_params)
        return self

    def _validate(self):
        """Checks between hyperparameters, run after ``__init__`` and after each later assignment."""

    def _hyperparameter_changed(self, name):
        """Called after each accepted assignment, once all hyperparameters are set (a method that
        caches work derived from them drops it here)."""

    def check_model(self, model):
        """Refuse a positive real hyperparameter (``eta``, ``lam``, ``lr``, ``eps``, ...) that is not
        finite, or rounds to zero, in the model's dtype: the run would overflow or never move."""
        dt = model.dtype.type
        for name, value in self.hyperparameters().items():
            if isinstance(value, float) and value > 0:
                with np.errstate(over="ignore", under="ignore"):
                    cast = dt(value)
                if not (np.isfinite(cast) and cast > 0):
                    raise ValueError(f"{name}={value!r} becomes {cast} in the model's {model.dtype.name}; "
                                     f"choose a value that {model.dtype.name} can hold, or dtype='float64'")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    # checkpoints ---------------------------------------------------------------------------
    def state_dict(self, backend):
        """Host copy of ``self.state``."""
        return {k: (backend.to_host(v).copy() if backend.is_array(v) else v)
                for k, v in self.state.items()}

    def load_state_dict(self, state, backend):
        """Restore ``state`` (from :meth:`state_dict`): every entry must be a finite number or a
        finite numeric array, or a ``ValueError`` names it (a checkpoint is untrusted)."""
        for k, v in state.items():
            ok = (isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and np.isfinite(v).all()) or (
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                and np.isfinite(v))
            if not ok:
                raise ValueError(f"{type(self).__name__}'s state {k!r} must be a finite number or numeric "
                                 f"array, got {type(v).__name__} {str(v)[:40]!r}")
        self.state = {k: (backend.asarray(v) if isinstance(v, np.ndarray) else v)
                      for k, v in state.items()}
