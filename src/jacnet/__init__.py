"""jacnet: multilayer perceptrons on exact Jacobian backpropagation.

Conventions, stated once: rows are samples; a layer computes ``Y = f(X @ W + b)`` with
``W`` of shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``; ``T`` is the
pre-activation ``X @ W + b``; an activation's Jacobian is ``[s, i, j] = df_i/dt_j``.
Formulas are named as in the lecture notes (``seed 1``-``seed 6``, ``seed R-b``, ...).
"""

from .activations import ACTIVATIONS, Activation, Elementwise, get_activation, register_activation
from .estimators import MLPClassifier, MLPRegressor
from .gradcheck import GradCheck, gradcheck
from .io import ModelFileError, load, load_network, save_network
from .layers import Dense
from .losses import LOSSES, Loss, get_loss
from .network import Network
from .optimizers import OPTIMIZERS, get_optimizer
from .record import TrainingRecord
from .schedules import SCHEDULES, get_schedule
from .training import SOLVERS, TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "SOLVERS",
    "Activation",
    "Dense",
    "Elementwise",
    "GradCheck",
    "Loss",
    "ModelFileError",
    "MLPClassifier",
    "MLPRegressor",
    "Network",
    "TrainConfig",
    "TrainingRecord",
    "get_activation",
    "get_loss",
    "get_optimizer",
    "get_schedule",
    "gradcheck",
    "load",
    "load_network",
    "register_activation",
    "save_network",
    "train",
]
