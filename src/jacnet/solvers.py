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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg

from . import jacobian as _jac
from .layers import blas_matmul
from .losses import LogitModel, Loss
from .network import Network

Array = np.ndarray

__all__ = ["Objective", "LevenbergMarquardt", "LMStep", "gauss_newton_system"]

_MU_MIN = 1e-20  # trainlm's floor on mu


class Objective:
    """The training objective on fixed data: ``loss(net(X), T; w) + alpha/2 ||W||^2``.

    ``alpha`` penalises weights only (``net.weight_mask()``), not biases. The solvers see
    only :meth:`value`, :meth:`value_and_grad` and :meth:`system`; the three ``_data_*``
    methods are the sums over samples, the one part that a data-parallel objective
    (``jacnet.distributed``) replaces with a reduction over partitions.
    """

    def __init__(
        self, net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float = 0.0,
        chunk: int | None = None,
    ) -> None:
        self.net, self.X, self.T, self.loss, self.w, self.alpha = net, X, T, loss, w, alpha
        self.chunk = chunk  # rows per forward pass of value(); None: bounded by default
        self.mask = net.weight_mask() if alpha else None
        self._grad = np.empty(net.n_params, dtype=net.dtype)
        self._workspace = _jac.Workspace()  # Gauss-Newton's chunk of J, reused per system

    def penalty(self, theta: Array) -> float:
        if self.mask is None:
            return 0.0
        Wt = theta * self.mask
        return 0.5 * self.alpha * float(np.vdot(Wt, Wt))

    def value(self) -> tuple[float, Any]:
        """Objective at the network's current theta, and what :meth:`system` reuses of it
        (here the outputs ``Y`` and, when one chunk held all rows, the forward cache)."""
        value, Y = self._data_value()
        return value + self.penalty(self.net.theta), Y

    def value_and_grad(self) -> tuple[float, Array]:
        """Objective and its gradient (P,) at the current theta (the buffer is reused)."""
        value, grad = self._data_value_and_grad()
        if self.mask is not None:
            value += self.penalty(self.net.theta)
            grad += self.alpha * self.mask * self.net.theta
        return value, grad

    def system(
        self, state: Any, chunk: int | None = None
    ) -> tuple[Array | None, Array, Array, float, Array]:
        """LM's linear system at the current theta: ``(JtHJ or None, Jtg, A, scale, r)``.

        ``state`` is the second result of :meth:`value` at the same theta. ``JtHJ`` is None
        when the dual form ``A = H^(1/2) J``, ``r = H^(-1/2) g`` was chosen instead; else
        only its upper triangle is set (the strictly lower one is zero), which is all the
        Cholesky solve reads.
        """
        JtHJ, Jtg, A, scale, r = self._data_system(state, chunk)
        if self.mask is not None and JtHJ is not None:
            c = self.alpha / scale  # the penalty's Hessian and gradient in the model's units
            JtHJ[np.diag_indices(self.net.n_params)] += c * self.mask
            Jtg += c * self.mask * self.net.theta
        return JtHJ, Jtg, A, scale, r

    # ------------------------------------------------- sums over the samples
    def _data_value(self) -> tuple[float, Any]:
        # The forward pass in scipy's BLAS, like the Gauss-Newton system that follows it.
        value, Y, cache = self.net._loss_value_and_cache(
            self.X, self.T, self.loss, self.w, self.chunk, blas_matmul
        )
        return value, (Y, cache)

    def _data_value_and_grad(self) -> tuple[float, Array]:
        return self.net._loss_and_flat_grad(self.X, self.T, self.loss, self.w, self._grad)

    def _data_system(
        self, state: Any, chunk: int | None
    ) -> tuple[Array | None, Array, Array, float, Array]:
        Y, cache = state
        return gauss_newton_system(
            self.net, self.X, self.T, self.loss, self.w, Y, chunk, dual=self.mask is None,
            cache=cache, workspace=self._workspace, mirror=False,
        )


def gauss_newton_system(
    net: Network,
    X: Array,
    T: Array,
    loss: Loss,
    w: Array | None,
    Y: Array,
    chunk: int | None = None,
    dual: bool = True,
    cache: Any = None,
    workspace: _jac.Workspace | None = None,
    mirror: bool = True,
) -> tuple[Array | None, Array, Array, float, Array]:
    """The loss's Gauss-Newton system on ``(X, T, w)`` at ``Y = net(X)``, no penalty.

    Returns ``(J^T H J, J^T g, A, scale, r)`` with ``A``, ``r`` empty; or, when ``dual``
    allows it and ``N * n_out < P`` with ``H > 0``, ``(None, J^T g, A, scale, r)`` for the
    dual form. ``J^T H J`` and ``J^T g`` are sums over samples (``H``, ``g`` are not
    normalised), so the system of a data set is the sum of its partitions' systems.
    ``cache``: the forward cache of ``X`` at this theta when there is one (from
    :meth:`Network._loss_value_and_cache`), so the Jacobian does not run it again.
    ``workspace``: where :func:`jacobian.gauss_newton` keeps its chunk between calls.
    ``mirror=False``: ``J^T H J`` holds its upper triangle only, the strictly lower one
    zero (enough for the Cholesky solve; see :func:`jacobian.gauss_newton`).
    """
    model = loss.logit_model(net.layers[-1].activation, Y, T, w)
    if model is not None:
        return _logit_system(net, X, model, chunk, dual, cache, workspace, mirror)
    H, g, scale = loss.gauss_newton_terms(Y, T, w)
    P = net.n_params
    nq = Y.size
    if dual and nq < P and bool(np.all(H > 0)):
        h = np.sqrt(H).reshape(nq, 1)
        A = _jac.param_jacobian(net.layers, X, chunk, cache).reshape(nq, P) * h
        r = g.reshape(nq) / h[:, 0]
        return None, A.T @ r, A, scale, r
    weights = None if loss.sum_of_squares and w is None else H
    JtHJ, Jtg = _jac.gauss_newton(
        net.layers, X, g, weights, chunk, weight_residuals=False, cache=cache,
        workspace=workspace, mirror=mirror,
    )
    return JtHJ, Jtg, np.empty(0), scale, np.empty(0)


def _logit_system(
    net: Network, X: Array, model: LogitModel, chunk: int | None, dual: bool, cache: Any,
    workspace: _jac.Workspace | None, mirror: bool,
) -> tuple[Array | None, Array, Array, float, Array]:
    """:func:`gauss_newton_system` for a fused output pair, from the Jacobian of the logits
    J_z: the recursion starts from the model's rows A_s, so the fill writes A_s J_z."""
    (N, q), P = model.g.shape, net.n_params
    if dual and N * q < P and model.dual_r is not None:
        J = _jac.param_jacobian(net.layers, X, chunk, cache, first=model.rows)
        A, r = J.reshape(N * q, P), model.dual_r.reshape(N * q)
        return None, A.T @ r, A, model.scale, r
    JtHJ, Jtg = _jac.gauss_newton(net.layers, X, model.g, None, chunk, weight_residuals=False,
                                  cache=cache, workspace=workspace, mirror=mirror,
                                  first=model.rows)
    return JtHJ, Jtg, np.empty(0), model.scale, np.empty(0)


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

    def _system(self, Y: Any) -> tuple[Array | None, Array, Array, float, Array]:
        """Return ``(JtHJ or None, Jtg, A (dual form) or None, scale, r)``."""
        return self.obj.system(Y, self.chunk)

    def step(self, min_grad: float = 0.0) -> LMStep:
        """One iteration: build the system once, try mu until the loss falls or mu_max.

        As trainlm, a gradient norm below ``min_grad`` ends the iteration before any
        trial (``accepted`` False, ``trials`` 0).
        """
        net = self.obj.net
        loss, Y = self.value()
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
                if math.isfinite(new_loss) and new_loss < loss:
                    self._current = (new_loss, Y_new)
                    self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                    return LMStep(new_loss, grad_norm, self.mu, True, trials)
            self.mu *= self.mu_inc
        net.theta[...] = theta0
        return LMStep(loss, grad_norm, self.mu, False, trials)

    def _solve(self, JtHJ: Array | None, Jtg: Array, A: Array, r: Array) -> Array | None:
        try:
            if JtHJ is None:  # dual form: (A A^T + mu I) a = -r, d = A^T a
                return A.T @ _cho_solve_shifted(A @ A.T, self.mu, -r)
            return _cho_solve_shifted(JtHJ.copy(order="K"), self.mu, -Jtg)
        except linalg.LinAlgError:
            return None  # not positive definite at this mu: the caller raises mu

    def value(self) -> tuple[float, Any]:
        """``objective.value()`` at the current weights, kept for the next :meth:`step`
        (which would otherwise evaluate it again)."""
        if self._current is None:
            self._current = self.obj.value()
        return self._current

    def reset(self) -> None:
        """Forget the cached loss (after theta was changed from outside)."""
        self._current = None


def _cho_solve_shifted(M: Array, mu: float, rhs: Array) -> Array:
    """Solve ``(M + mu I) x = rhs`` by Cholesky from ``M``'s upper triangle, overwriting ``M``.

    ``M`` is square and contiguous (C or Fortran order); only its upper triangle is read, so
    a Gauss-Newton matrix that was never mirrored will do. ``M`` and ``rhs`` are finite by
    construction (the loss at theta was finite), so the factor and solve go to LAPACK's
    potrf/potrs directly: scipy's ``cho_factor`` and ``cho_solve`` re-check finiteness and
    convert their arguments, 40% of a solve at P = 61. Raises ``LinAlgError`` when
    ``M + mu I`` is not positive definite.
    """
    n = M.shape[0]
    if not (M.flags.c_contiguous or M.flags.f_contiguous):
        raise ValueError("M must be C- or Fortran-contiguous")
    M.ravel(order="K")[:: n + 1] += mu  # the diagonal, in either order (a view: contiguous)
    # LAPACK reads Fortran order. A C-ordered M is the Fortran array M.T, whose lower
    # triangle is M's upper one.
    F, lower = (M, 0) if M.flags.f_contiguous else (M.T, 1)
    potrf, potrs = linalg.get_lapack_funcs(("potrf", "potrs"), (F,))
    factor, info = potrf(F, lower=lower, clean=0, overwrite_a=1)
    if info != 0:
        raise linalg.LinAlgError(f"potrf: leading minor {info} is not positive definite")
    x, info = potrs(factor, rhs, lower=lower)
    if info != 0:  # pragma: no cover - potrs fails only on invalid arguments
        raise ValueError(f"potrs: argument {-info} is invalid")
    return x
