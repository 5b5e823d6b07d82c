"""Gradient check: backpropagation against central finite differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .losses import Loss, get_loss
from .network import Network

__all__ = ["GradCheck", "gradcheck"]


@dataclass(frozen=True)
class GradCheck:
    """Result of :func:`gradcheck`.

    ``errors[k]`` is the max relative error of layer k's (W, b) gradient:
    ``max |analytic - numeric| / max(max |numeric|, floor)``.
    """

    errors: list[float]
    tol: float

    @property
    def max_error(self) -> float:
        return float(np.max(self.errors))  # NaN when any is (Python's max depends on order)

    @property
    def passed(self) -> bool:
        return all(e <= self.tol for e in self.errors)  # a NaN error never passes

    def __bool__(self) -> bool:
        return self.passed


def gradcheck(
    net: Network,
    X: Any,
    T: Any,
    loss: str | Loss = "sse",
    sample_weight: Any = None,
    eps: float = 1e-6,
    tol: float = 1e-6,
) -> GradCheck:
    """Compare ``net.loss_and_grad`` with central differences of the loss.

    Each parameter p is moved by ``+-eps`` and ``(J(p + eps) - J(p - eps)) / (2 eps)`` is
    compared with the backpropagated derivative, layer by layer. Runs in float64 on a
    copy; ``net`` is left untouched.

    Returns
    -------
    GradCheck
        Per-layer max relative errors and whether all are within ``tol``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be a positive float, got {eps!r}")
    loss_fn = get_loss(loss)
    work = net.copy() if net.dtype == np.float64 else _as_float64(net)
    _, grad = work.loss_and_flat_grad(X, T, loss_fn, sample_weight)
    theta = work.get_flat()
    numeric = np.empty_like(theta)
    for p in range(theta.size):
        saved = theta[p]
        work.theta[p] = saved + eps
        up = work.loss(X, T, loss_fn, sample_weight)
        work.theta[p] = saved - eps
        down = work.loss(X, T, loss_fn, sample_weight)
        work.theta[p] = saved
        numeric[p] = (up - down) / (2 * eps)
    errors = []
    for (gW, gb), (nW, nb) in zip(work.split_flat(grad), work.split_flat(numeric), strict=True):
        a = np.concatenate([gW.ravel(), gb])
        n = np.concatenate([nW.ravel(), nb])
        scale = max(float(np.abs(n).max()), 1e-8)
        errors.append(float(np.abs(a - n).max()) / scale)
    return GradCheck(errors=errors, tol=tol)


def _as_float64(net: Network) -> Network:
    from .layers import Dense

    layers = [Dense(la.n_in, la.n_out, la.activation) for la in net.layers]
    out = Network(layers, seed=0, dtype=np.float64)
    out.set_flat(net.get_flat().astype(np.float64))
    return out
