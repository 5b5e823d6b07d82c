"""jacnet: multilayer perceptrons on exact Jacobian backpropagation.

Conventions, stated once: rows are samples; a layer computes ``Y = f(X @ W + b)`` with
``W`` of shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``; ``T`` is the
pre-activation ``X @ W + b``; an activation's Jacobian is ``[s, i, j] = df_i/dt_j``.
Formulas are named as in the lecture notes (``seed 1``-``seed 6``, ``seed R-b``, ...).
"""

from .activations import ACTIVATIONS, Activation, Elementwise, get_activation, register_activation
from .gradcheck import GradCheck, gradcheck
from .layers import Dense
from .losses import LOSSES, Loss, get_loss
from .network import Network

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Activation",
    "Dense",
    "Elementwise",
    "GradCheck",
    "Loss",
    "Network",
    "get_activation",
    "get_loss",
    "gradcheck",
    "register_activation",
]
