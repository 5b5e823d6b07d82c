"""Small data sets, networks and fits that several test modules share (imported as
``helpers``: pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import jacnet as jn


def sin_data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced points on [-pi, pi] and ``sin x``, each (n, 1)."""
    X = np.linspace(-np.pi, np.pi, n)[:, None]
    return X, np.sin(X)


def sin_net(seed: int = 0) -> jn.Network:
    """A 1-5-1 tanh network for :func:`sin_data`."""
    return jn.Network([jn.Dense(1, 5, "tanh"), jn.Dense(5, 1)], seed=seed)


def flat_jacobian(net: jn.Network, X: np.ndarray) -> np.ndarray:
    """J of shape (N * n_out, P), rows in the order of ``(Y - T).ravel()``."""
    return net.jacobian(X).reshape(-1, net.n_params)


def fit_quietly(est: Any, X: Any, y: Any) -> Any:
    """``est.fit(X, y)`` with its warnings (a short fit's ConvergenceWarning) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def three_class_data() -> tuple[np.ndarray, np.ndarray]:
    """60 rows of 4 normal features and a 3-class label from them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y
