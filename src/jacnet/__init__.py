"""jacnet: multilayer perceptrons on exact Jacobian backpropagation.

Conventions, stated once: rows are samples; a layer computes ``Y = f(X @ W + b)`` with
``W`` of shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``; ``T`` is the
pre-activation ``X @ W + b``; an activation's Jacobian is ``[s, i, j] = df_i/dt_j``.
Formulas are named as in the derivation the package implements, ``docs/notes.md``
(``seed 1``-``seed 6``, ``seed R-b``, ``seed L1``, ...).

The namespace holds the public API only: ``dir(jacnet)`` is ``__all__`` and the dunders.
"""

import typing

from .activations import ACTIVATIONS, Activation, Elementwise, get_activation, register_activation
from .bayesian import BayesianRegularization
from .evidence import Laplace
from .gradcheck import GradCheck, gradcheck
from .layers import Dense
from .losses import LOSSES, Loss, get_loss
from .minibatch import MiniBatch
from .network import Network
from .optimizers import OPTIMIZERS, get_optimizer
from .record import TrainingRecord
from .schedules import SCHEDULES, get_schedule
from .sobolev import SobolevObjective, sobolev_jacobian
from .solvers import LBFGS, LevenbergMarquardt
from .training import SOLVERS, train

if typing.TYPE_CHECKING:
    from .ensemble import Ensemble
    from .estimators import MLPClassifier, MLPRegressor, expected_failed_checks
    from .export import export_onnx
    from .io import ModelFileError, load, load_network, load_pipeline, save_network
del typing  # only the public API stays in the namespace

__version__ = "0.1.0"

# The engine needs numpy and scipy only. The estimators and model files pull in
# scikit-learn (and safetensors), which costs more to import than the rest of jacnet: they
# load on first use, so that a Dask worker or a script using only the engine starts fast.
# The ONNX export loads the onnx package only when it runs (the optional extra).
_LAZY = {
    "Ensemble": "ensemble",
    "MLPClassifier": "estimators",
    "MLPRegressor": "estimators",
    "expected_failed_checks": "estimators",
    "ModelFileError": "io",
    "export_onnx": "export",
    "load": "io",
    "load_network": "io",
    "load_pipeline": "io",
    "save_network": "io",
}


def __getattr__(name: str) -> object:
    """The estimators and io names, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jacnet' has no attribute {name!r}")
    import importlib  # here, so that the name never enters the package's namespace

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    """The public API and the dunders: submodules and private helpers are left out."""
    dunders = {n for n in globals() if n.startswith("__") and n.endswith("__")}
    return sorted(dunders | set(__all__))


__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "SOLVERS",
    "Activation",
    "BayesianRegularization",
    "Dense",
    "Elementwise",
    "Ensemble",
    "GradCheck",
    "LBFGS",
    "Laplace",
    "LevenbergMarquardt",
    "Loss",
    "ModelFileError",
    "MLPClassifier",
    "MLPRegressor",
    "MiniBatch",
    "Network",
    "SobolevObjective",
    "TrainingRecord",
    "export_onnx",
    "expected_failed_checks",
    "get_activation",
    "get_loss",
    "get_optimizer",
    "get_schedule",
    "gradcheck",
    "load",
    "load_network",
    "load_pipeline",
    "register_activation",
    "save_network",
    "sobolev_jacobian",
    "train",
]
