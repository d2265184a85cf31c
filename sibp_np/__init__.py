"""sibp_np: Semi-Implicit Back Propagation (Liu & Zhang) and its baselines, in NumPy/CuPy.

>>> from sibp_np import MLP, SIBP, fit, load_dataset
>>> data = load_dataset("mnist-5k")
>>> model = MLP([784, 500, 10], seed=0)
>>> history = fit(model, SIBP(eta=1.0, lam=1.0), *data.train, val=data.val, epochs=5)

Importing sibp_np never imports CuPy; the ``cupy`` backend imports it when it is first asked for.
"""
from ._version import __version__
from .backend import backend_of, get_backend, set_backend, use_backend
from .callbacks import (
    Callback,
    Checkpoint,
    DivergenceCheck,
    EarlyStopping,
    EvalEvery,
    GradientNorm,
    OnRecord,
    ProgressTable,
    StepSchedule,
    TimeBudget,
    TrainingDiverged,
)
from .datasets import Dataset, load_dataset
from .functions import get_activation, get_loss
from .history import History
from .methods import METHODS, Method, get_method, register
from .model import MLP
from .optim import SGD, Adam, RMSprop
from .proxbp import ProxBP
from .sibp import SIBP
from .train import Run, fit

__all__ = [
    "__version__", "MLP", "fit", "Run", "History", "TrainingDiverged", "SGD", "Adam", "RMSprop",
    "SIBP", "ProxBP", "Method", "METHODS", "get_method", "register", "load_dataset", "Dataset",
    "get_backend", "set_backend", "use_backend", "backend_of", "get_activation", "get_loss",
    "Callback", "Checkpoint", "DivergenceCheck", "EvalEvery", "GradientNorm", "OnRecord",
    "ProgressTable", "TimeBudget", "EarlyStopping", "StepSchedule",
]
