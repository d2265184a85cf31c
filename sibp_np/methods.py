"""The one protocol every training method follows, and the registry of methods by name.

``method.step(model, X, y) -> float`` runs one iteration on one minibatch and returns that minibatch's
batch-mean loss *before* the update. ``y`` holds integer labels. The training loop only ever calls
``step``, so it never branches on the method.
"""
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


class Method:
    """Base class of all training methods.

    Subclasses implement :meth:`step`; those with state (momentum buffers, moments, counters) keep it in
    ``self.state`` (a dict of host-convertible arrays and numbers) so that checkpoints can save it.
    """

    name = "method"

    def __init__(self):
        self.state = {}

    def step(self, model, X, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def hyperparameters(self):
        """The constructor's arguments as a dict (for histories and checkpoints)."""
        return dict(self._hyper)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}({args})"

    # checkpoints ---------------------------------------------------------------------------
    def state_dict(self, backend):
        """Host copy of ``self.state``."""
        return {k: (backend.to_host(v).copy() if backend.is_array(v) else v)
                for k, v in self.state.items()}

    def load_state_dict(self, state, backend):
        self.state = {k: (backend.asarray(v) if isinstance(v, np.ndarray) else v)
                      for k, v in state.items()}
