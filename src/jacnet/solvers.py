"""Full-batch solvers: Levenberg-Marquardt on exact Jacobians, and the L-BFGS objective.

Levenberg-Marquardt follows MATLAB's ``trainlm``: each iteration forms ``J^T J`` and
``J^T e`` (here streamed over chunks of samples by ``gauss_newton``), solves

    (J^T H J + mu I) d = -J^T g

by Cholesky, and accepts ``d`` only when the loss falls: then ``mu *= mu_dec``,
otherwise ``mu *= mu_inc`` and it tries again, up to ``mu_max``. For squared errors
``H`` holds the sample weights and ``g = H e`` (``e = y - t``), which is trainlm's system;
for cross-entropy it is the generalised Gauss-Newton model of the loss (see
``Loss.gauss_newton_terms``). When ``N * n_out < P`` the same step is solved in the dual
form ``(A A^T + mu I) a = -r``, ``d = A^T a`` with ``A = H^(1/2) J``, ``r = H^(-1/2) g``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from . import jacobian as _jac
from .losses import Loss
from .network import Network

Array = np.ndarray

__all__ = ["Objective", "LevenbergMarquardt", "LMStep"]

_MU_MIN = 1e-20  # trainlm's floor on mu


class Objective:
    """The training objective on fixed data: ``loss(net(X), T; w) + alpha/2 ||W||^2``.

    ``alpha`` penalises weights only (``net.weight_mask()``), not biases.
    """

    def __init__(
        self, net: Network, X: Array, T: Array, loss: Loss, w: Array | None, alpha: float = 0.0
    ) -> None:
        self.net, self.X, self.T, self.loss, self.w, self.alpha = net, X, T, loss, w, alpha
        self.mask = net.weight_mask() if alpha else None
        self._grad = np.empty(net.n_params, dtype=net.dtype)

    def penalty(self, theta: Array) -> float:
        if self.mask is None:
            return 0.0
        Wt = theta * self.mask
        return 0.5 * self.alpha * float(np.vdot(Wt, Wt))

    def value(self) -> tuple[float, Array]:
        """Objective at the network's current theta, and the outputs."""
        value, Y = self.net._loss_value(self.X, self.T, self.loss, self.w)
        return value + self.penalty(self.net.theta), Y

    def value_and_grad(self) -> tuple[float, Array]:
        """Objective and its gradient (P,) at the current theta (the buffer is reused)."""
        value, grad = self.net._loss_and_flat_grad(self.X, self.T, self.loss, self.w, self._grad)
        if self.mask is not None:
            value += self.penalty(self.net.theta)
            grad += self.alpha * self.mask * self.net.theta
        return value, grad


@dataclass
class LMStep:
    """Outcome of one Levenberg-Marquardt iteration."""

    loss: float
    grad_norm: float
    mu: float
    accepted: bool
    trials: int


class LevenbergMarquardt:
    """trainlm's iteration on an :class:`Objective`; ``mu`` persists across iterations."""

    def __init__(
        self,
        objective: Objective,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        chunk: int | None = None,
    ) -> None:
        self.obj = objective
        self.mu, self.mu_dec, self.mu_inc, self.mu_max = mu, mu_dec, mu_inc, mu_max
        self.chunk = chunk
        self._current: tuple[float, Array] | None = None

    def _system(self, Y: Array) -> tuple[Array | None, Array, Array, float, Array]:
        """Return ``(JtHJ or None, Jtg, A (dual form) or None, scale, r)``."""
        obj, net = self.obj, self.obj.net
        H, g, scale = obj.loss.gauss_newton_terms(Y, obj.T, obj.w)
        P = net.n_params
        nq = Y.size
        if nq < P and obj.mask is None and bool(np.all(H > 0)):
            h = np.sqrt(H).reshape(nq, 1)
            A = _jac.param_jacobian(net.layers, obj.X, self.chunk).reshape(nq, P) * h
            r = g.reshape(nq) / h[:, 0]
            return None, A.T @ r, A, scale, r
        weights = None if obj.loss.sum_of_squares and obj.w is None else H
        JtHJ, Jtg = _jac.gauss_newton(
            net.layers, obj.X, g, weights, self.chunk, weight_residuals=False
        )
        if obj.mask is not None:
            c = obj.alpha / scale
            JtHJ[np.diag_indices(P)] += c * obj.mask
            Jtg += c * obj.mask * net.theta
        return JtHJ, Jtg, np.empty(0), scale, np.empty(0)

    def step(self, min_grad: float = 0.0) -> LMStep:
        """One iteration: build the system once, try mu until the loss falls or mu_max.

        As trainlm, a gradient norm below ``min_grad`` ends the iteration before any
        trial (``accepted`` False, ``trials`` 0).
        """
        net = self.obj.net
        if self._current is None:
            self._current = self.obj.value()
        loss, Y = self._current
        JtHJ, Jtg, A, scale, r = self._system(Y)
        grad_norm = scale * float(np.linalg.norm(Jtg))
        if grad_norm < min_grad:
            return LMStep(loss, grad_norm, self.mu, False, 0)
        theta0 = net.get_flat()
        trials = 0
        while self.mu <= self.mu_max:
            trials += 1
            d = self._solve(JtHJ, Jtg, A, r)
            if d is not None:
                net.theta[...] = theta0 + d
                new_loss, Y_new = self.obj.value()
                if np.isfinite(new_loss) and new_loss < loss:
                    self._current = (new_loss, Y_new)
                    self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                    return LMStep(new_loss, grad_norm, self.mu, True, trials)
            self.mu *= self.mu_inc
        net.theta[...] = theta0
        return LMStep(loss, grad_norm, self.mu, False, trials)

    def _solve(self, JtHJ: Array | None, Jtg: Array, A: Array, r: Array) -> Array | None:
        try:
            if JtHJ is None:  # dual form: (A A^T + mu I) a = -r, d = A^T a
                K = A @ A.T
                K[np.diag_indices_from(K)] += self.mu
                return A.T @ linalg.cho_solve(linalg.cho_factor(K, check_finite=False), -r)
            M = JtHJ.copy()
            M[np.diag_indices_from(M)] += self.mu
            return linalg.cho_solve(linalg.cho_factor(M, check_finite=False), -Jtg)
        except (linalg.LinAlgError, ValueError):
            return None  # not positive definite at this mu: the caller raises mu

    def reset(self) -> None:
        """Forget the cached loss (after theta was changed from outside)."""
        self._current = None
