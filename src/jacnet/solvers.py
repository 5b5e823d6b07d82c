"""Full-batch solvers: Levenberg-Marquardt on exact Jacobians, and the L-BFGS objective.

Levenberg-Marquardt follows MATLAB's ``trainlm``: each iteration forms ``J^T J`` and
``J^T e`` (here streamed over chunks of samples by :mod:`jacnet.gauss_newton`), solves

    (J^T H J + mu I) d = -J^T g

by Cholesky, and accepts ``d`` only when the loss falls: then ``mu *= mu_dec``,
otherwise ``mu *= mu_inc`` and it tries again, up to ``mu_max``. For squared errors
``H`` holds the sample weights and ``g = H e`` (``e = y - t``), which is trainlm's system;
for cross-entropy it is the generalised Gauss-Newton model of the loss (see
``Loss.gauss_newton_terms``). When ``N * n_out < P`` the same step is solved in the dual
form ``(A A^T + mu I) a = -r``, ``d = A^T a`` with ``A = H^(1/2) J``, ``r = H^(-1/2) g``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .objective import Objective

Array = np.ndarray

__all__ = ["LevenbergMarquardt", "LMStep"]

_MU_MIN = 1e-20  # trainlm's floor on mu


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
        self._current: tuple[float, Any] | None = None

    def step(self, min_grad: float = 0.0) -> LMStep:
        """One iteration: build the system once, try mu until the loss falls or mu_max.

        As trainlm, a gradient norm below ``min_grad`` ends the iteration before any
        trial (``accepted`` False, ``trials`` 0).
        """
        net = self.obj.net
        loss, Y = self.value()
        system = self.obj.system(Y, self.chunk)
        grad_norm = system.grad_norm
        if grad_norm < min_grad:
            return LMStep(loss, grad_norm, self.mu, False, 0)
        theta0 = net.get_flat()
        trials = 0
        while self.mu <= self.mu_max:
            trials += 1
            d = system.solve(self.mu)
            if d is not None:
                net.theta[...] = theta0 + d
                new_loss, Y_new = self.obj.value()
                if math.isfinite(new_loss) and new_loss < loss:
                    self._current = (new_loss, Y_new)
                    self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                    return LMStep(new_loss, grad_norm, self.mu, True, trials)
            self.mu *= self.mu_inc
        net.theta[...] = theta0
        return LMStep(loss, grad_norm, self.mu, False, trials)

    def value(self) -> tuple[float, Any]:
        """``objective.value()`` at the current weights, kept for the next :meth:`step`
        (which would otherwise evaluate it again)."""
        if self._current is None:
            self._current = self.obj.value()
        return self._current

    def reset(self) -> None:
        """Forget the cached loss (after theta was changed from outside)."""
        self._current = None

