"""The training objective of the full-batch solvers: loss on fixed data plus an L2 penalty.

The solvers (L-BFGS, Levenberg-Marquardt) see only :meth:`Objective.value`,
:meth:`Objective.value_and_grad` and :meth:`Objective.system`. The three ``data_*``
methods are the sums over the samples, the one seam that a data-parallel objective
(:class:`jacnet.distributed.DaskObjective`) replaces with a reduction over partitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gauss_newton import (
    DualSystem,
    LinearSystem,
    PrimalSystem,
    Workspace,
    gauss_newton_system,
)
from .layers import blas_matmul
from .losses import Loss
from .network import Network
from .optimizers import l2_penalty

Array = np.ndarray

__all__ = ["Objective"]


class Objective:
    """The training objective on fixed data: ``loss(net(X), T; w) + alpha/2 ||W||^2``.

    ``alpha`` penalises weights only (``net.weight_mask()``), not biases.

    Parameters
    ----------
    net : Network
    X : ndarray of shape (N, n_in)
    T : ndarray of shape (N, n_out)
    loss : Loss
    w : ndarray of shape (N,) or None
        Sample weights.
    alpha : float, default 0.0
    chunk : int, optional
        Rows per forward pass of :meth:`value` (None: bounded by default).
    """

    def __init__(
        self, net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float = 0.0,
        chunk: int | None = None,
    ) -> None:
        self.net, self.X, self.T, self.loss, self.w, self.alpha = net, X, T, loss, w, alpha
        self.chunk = chunk  # rows per forward pass of value(); None: bounded by default
        self.mask = net.weight_mask() if alpha else None
        # every gradient is written into this one buffer (a subclass's data sums too)
        self.grad = np.empty(net.n_params, dtype=net.dtype)
        self._backprop = net.backprop(loss, grad=self.grad)
        self._workspace = Workspace()  # Gauss-Newton's chunk of J, reused per system

    def penalty(self, theta: Array) -> float:
        """``alpha/2 ||W||^2`` at ``theta`` (:func:`jacnet.optimizers.l2_penalty`)."""
        return l2_penalty(theta, self.mask, self.alpha)

    def value(self) -> tuple[float, Any]:
        """Objective at the network's current theta, and what :meth:`system` reuses of it
        (here the outputs ``Y`` and, when one chunk held all rows, the forward cache)."""
        value, Y = self.data_value()
        return value + self.penalty(self.net.theta), Y

    def outputs(self, state: Any) -> Array | None:
        """The network's outputs (N, n_out) on ``X`` from a :meth:`value` state, when the
        state holds them (here it does; an objective whose state is None gives None)."""
        return None if state is None else state[0]

    def value_and_grad(self) -> tuple[float, Array]:
        """Objective and its gradient (P,) at the current theta (the buffer is reused)."""
        value, grad = self.data_value_and_grad()
        if self.mask is not None:
            value += self.penalty(self.net.theta)
            grad += self.alpha * self.mask * self.net.theta
        return value, grad

    def system(self, state: Any, chunk: int | None = None) -> LinearSystem:
        """LM's linear system at the current theta, the penalty included.

        ``state`` is the second result of :meth:`value` at the same theta. The samples'
        system (:meth:`data_system`) is a :class:`~jacnet.gauss_newton.PrimalSystem`, to
        whose diagonal the penalty adds (only its upper triangle is set, the strictly
        lower one zero, which is all the Cholesky solve reads), or, with fewer residuals
        than parameters, a :class:`~jacnet.gauss_newton.DualSystem`, which with a penalty
        becomes a :class:`~jacnet.gauss_newton.PenalizedDualSystem` (no P x P matrix).
        """
        system = self.data_system(state, chunk)
        if self.mask is None:
            return system
        c = self.alpha / system.scale  # the penalty's Hessian and gradient, model's units
        if isinstance(system, DualSystem):
            return system.penalized(c, self.mask, self.net.theta)
        np.einsum("ii->i", system.JtHJ)[...] += c * self.mask  # a view of the diagonal
        system.Jtg[...] += c * self.mask * self.net.theta
        return system

    # ------------------------------------------------- sums over the samples
    def data_value(self) -> tuple[float, Any]:
        """The loss's value over the samples, and the state :meth:`data_system` reuses."""
        # The forward pass in scipy's BLAS, like the Gauss-Newton system that follows it.
        value, Y, cache = self.net.evaluate(
            self.X, self.T, self.loss, self.w, self.chunk, blas_matmul
        )
        return value, (Y, cache)

    def data_value_and_grad(self) -> tuple[float, Array]:
        """The loss's value and gradient (P,) over the samples."""
        return self._backprop(self.X, self.T, self.w), self._backprop.grad

    def data_system(self, state: Any, chunk: int | None) -> PrimalSystem | DualSystem:
        """The loss's Gauss-Newton system over the samples (no penalty): the dual form
        where that is faster (:func:`~jacnet.gauss_newton.dual_pays`), else the primal."""
        Y, cache = state
        return gauss_newton_system(self.net.layers, self.X, self.T, self.loss, self.w, Y,
                                   chunk=chunk, cache=cache, workspace=self._workspace,
                                   penalized=self.mask is not None)
