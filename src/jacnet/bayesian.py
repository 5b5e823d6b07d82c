"""Bayesian regularization: MATLAB's ``trainbr`` (MacKay 1992; Foresee & Hagan 1997) on the
exact Gauss-Newton matrix, with per-output noise and per-layer weight precisions, and the
network-level Laplace posterior that gives the evidence and predictive error bars.

The model (trainbr's conventions: ``E_D`` and ``E_W`` carry no factor 1/2)
-----------------------------------------------------------------------------
Outputs ``k = 1..K`` with noise precision ``2 beta_k``, weight groups ``l = 1..L`` with
prior precision ``2 alpha_l``::

    p(D | theta, beta) = prod_k (beta_k / pi)^(N_k / 2) exp(-beta_k E_D,k)
    p(theta | alpha)   = prod_l (alpha_l / pi)^(P_l / 2) exp(-alpha_l E_W,l)
    F(theta) = sum_k beta_k E_D,k + sum_l alpha_l E_W,l

``E_D,k = sum_s w_s e_sk^2`` (``e = y - t``; ``w`` the sample weights, 1 without) and
``E_W,l = ||theta_l||^2``: every parameter is regularised, biases too (as trainbr does).
trainbr is ``K = L = 1``: one ``beta`` for all ``N_e`` target values, one ``alpha``.
With the Gauss-Newton curvature ``grad^2 F = 2 H``,

    H = sum_k beta_k J_k^T W J_k + A,    A = diag(alpha_l(i)),

(``J_k`` the rows of output ``k``), the posterior is ``N(theta*, (2H)^-1)`` (Laplace).

The evidence and its fixed point (MacKay's updates, derived)
------------------------------------------------------------
Integrating ``exp(-F)`` around its minimum theta*::

    log p(D | alpha, beta) = -F(theta*) - 1/2 log det H + sum_l P_l/2 log alpha_l
                             + sum_k N_k/2 log beta_k - N_e/2 log pi

(``log det 2H = P log 2 + log det H``; the 2s cancel against ``(2 pi)^(P/2)``). Its
derivative in ``alpha_l``, with ``dF/dtheta = 0`` at theta* and ``H``'s dependence on
theta* through ``J`` neglected (MacKay's approximation), is
``-E_W,l - 1/2 tr_l(H^-1) + P_l / (2 alpha_l)`` (``tr_l``: the diagonal of group ``l``).
Zero gives

    gamma_l = P_l - alpha_l tr_l(H^-1),      alpha_l = gamma_l / (2 E_W,l).

In ``beta_k`` it is ``-E_D,k - 1/2 tr(H^-1 J_k^T W J_k) + N_k / (2 beta_k)``; zero gives

    gamma_k = beta_k tr(J_k^T W J_k H^-1),  beta_k = (N_k - gamma_k) / (2 E_D,k).

Since ``sum_k beta_k J_k^T W J_k = H - A``, ``sum_k gamma_k = P - tr(A H^-1) = sum_l
gamma_l = gamma``, the effective number of parameters: the split by output is the share
of the data fit that each output's rows determine. With ``K = L = 1`` these are trainbr's
``gamma = P - alpha tr[(beta J^T J + alpha I)^-1]``, ``alpha = gamma / (2 E_W)``,
``beta = (N_e - gamma) / (2 E_D)``. ``0 <= gamma_l <= P_l`` (``H >= A``); the computed
values are clipped to that range.

The predictive distribution of output ``k`` at ``x``, linearised (``j_k(x) = dy_k/dtheta``):
``var = 1/(2 beta_k) + j_k^T (2H)^-1 j_k``. A linear network is Bayesian linear regression
(scikit-learn's ``BayesianRidge`` with noise precision ``2 beta`` and weight precision
``2 alpha``); the tests hold the two to each other.

Why Cholesky, and where the eigendecomposition is kept
------------------------------------------------------
An epoch needs a solve of ``beta J^T W J + (alpha + mu) I`` for each mu trial, the trace
of ``H^-1`` at the old ``(alpha, beta)`` for the update and ``log det H`` at the new ones
for the evidence. One symmetric eigendecomposition ``J^T W J = V Lambda V^T`` gives all
three (eigenvalues ``beta lambda + alpha + mu`` on the same ``V``), but LAPACK's
eigendecomposition with vectors costs as much as a few dozen Cholesky factorisations of
the same matrix (its tridiagonal reduction and back-transformation against one
triangular sweep; measured in docs/training.md, "Bayesian regularization"), and an epoch
has one to three trials. So each trial is one Cholesky solve (as trainlm's), the trace
is ``||U^-1||_F^2`` from the Cholesky factor ``H = U^T U`` and one triangular inverse,
and ``log det H = 2 sum log U_ii`` (one more factorisation, at the new precisions). The
same holds with several groups or outputs: ``diag(H^-1)`` is the row sums of squares of
``U^-1`` and ``tr(G_k H^-1)`` an elementwise product with ``H^-1 = U^-1 U^-T``. The
eigendecomposition is kept where Cholesky fails: an ``H`` that rounding leaves not
positive definite (``alpha`` tiny against ``beta J^T W J``) is decomposed, its eigenvalues
clipped at ``min alpha`` (a lower bound of its spectrum), so gamma, alpha and beta stay
finite; a trial whose matrix Cholesky refuses counts as failed (mu grows), as in trainlm.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from .gauss_newton import DualSystem
from .jacobian import default_chunk, param_offsets
from .losses import get_loss
from .network import Network
from .sobolev import SobolevData, SobolevObjective, check_derivatives
from .solvers import EpochResult, Solver
from .validation import as_weights, check_int, check_real

Array = np.ndarray

__all__ = ["BayesianRegularization", "Laplace", "Curvature", "Factor", "parameter_groups",
           "COLLAPSE_GAMMA", "COLLAPSE_FIT", "RESTART_ALPHA"]

_MU_MIN = 1e-20  # trainbr's floor on mu
# LAPACK directly: the matrices are finite by construction, and scipy's cho_factor would
# check that again on every trial
_potrf, _potrs, _trtri = lapack.get_lapack_funcs(("potrf", "potrs", "trtri"),
                                                  dtype=np.float64)
#: The collapse guard (:class:`BayesianRegularization`, ``restart``): a run has collapsed
#: when gamma < COLLAPSE_GAMMA * P while E_D >= (1 - COLLAPSE_FIT) * E_D of the zero
#: network (theta = 0: a constant prediction); the restart's prior precision is
#: RESTART_ALPHA times trainbr's start value.
COLLAPSE_GAMMA = 0.01
COLLAPSE_FIT = 0.01
RESTART_ALPHA = 0.01
NOISE_MODELS = ("shared", "per_output")
WEIGHT_GROUPS = ("single", "per_layer")


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def parameter_groups(net: Network, weight_groups: str = "single") -> Array:
    """The weight group of each parameter, (P,) ints: all 0 (``"single"``, trainbr), or
    the layer's index (``"per_layer"``: one ``alpha`` for a layer's ``W`` and ``b``)."""
    _choice(weight_groups, "weight_groups", WEIGHT_GROUPS)
    groups = np.zeros(net.n_params, dtype=np.intp)
    if weight_groups == "per_layer":
        for k, (w0, _, end) in enumerate(param_offsets(net.layers)):
            groups[w0:end] = k
    return groups


class Factor:
    """``H`` (P, P) factored: ``log det H`` and ``R`` with ``R R^T = H^-1``.

    From the Cholesky factor ``H = U^T U`` (``R = U^-1``, upper triangular, formed on
    first use: the evidence needs only ``log det H``), or, where rounding leaves ``H`` not
    positive definite, from its eigendecomposition ``V diag(w) V^T`` with ``w`` clipped at
    ``floor`` (``R = V diag(w)^-1/2``).

    Parameters
    ----------
    build : callable
        ``build()`` returns a new (P, P) array holding ``H`` in its upper triangle (called
        a second time only where Cholesky fails: the factorisation overwrites it).
    floor : float
        A positive lower bound of ``H``'s spectrum (the smallest prior precision).
    """

    def __init__(self, build: Callable[[], Array], floor: float) -> None:
        U, info = _potrf(build(), lower=0, clean=1, overwrite_a=1)
        self._R: Array | None = None
        self._U: Array | None = None
        if info == 0:
            self._U = U
            self.logdet_H = 2.0 * float(np.log(U.diagonal()).sum())
        else:
            w, V = linalg.eigh(build(), lower=False, overwrite_a=True)
            w = np.maximum(w, floor)
            self._R = V / np.sqrt(w)
            self.logdet_H = float(np.log(w).sum())

    @property
    def R(self) -> Array:
        """``R`` (P, P), ``R R^T = H^-1`` (formed in the Cholesky factor's place)."""
        if self._R is None:
            assert self._U is not None
            self._R = _trtri(self._U, lower=0, overwrite_c=1)[0]
        return self._R

    def diag_inverse(self) -> Array:
        """The diagonal of ``H^-1`` (P,)."""
        return np.einsum("ij,ij->i", self.R, self.R)

    def trace_inverse(self) -> float:
        """``tr(H^-1)``."""
        r = self.R.ravel(order="K")  # a view in either memory order (vdot would copy)
        return float(r @ r)

    def trace_with(self, G: Array, inverse: Array | None = None) -> float:
        """``tr(G H^-1)`` for a symmetric (P, P) ``G`` of which the upper triangle is read;
        ``inverse``: ``H^-1`` when already formed."""
        Hinv = self.R @ self.R.T if inverse is None else inverse
        upper = np.triu(G)
        return float(2.0 * np.vdot(upper, Hinv) - np.diag(G) @ np.diag(Hinv))

    def logdet(self) -> float:
        """``log det H``."""
        return self.logdet_H

    def covariance_factor(self) -> Array:
        """``L`` (P, P) with ``L L^T = (2H)^-1``, the posterior covariance of theta."""
        return self.R / math.sqrt(2.0)


def _shifted_solve(M: Array, g: Array) -> Array | None:
    """``-M^-1 g`` (P,) by Cholesky from ``M``'s upper triangle (``M`` is overwritten);
    None when ``M`` is not numerically positive definite."""
    U, info = _potrf(M, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        return None
    x, info = _potrs(U, g, lower=0)
    return -x if info == 0 else None


class Curvature:
    """The data's Gauss-Newton sums at one theta, per noise block.

    A noise block is all outputs (one shared ``beta``) or one output. ``F``, ``H``, the
    gammas and the evidence of any ``(alpha, beta)`` follow from these.

    Parameters
    ----------
    G : ndarray of shape (K, P, P)
        ``J_k^T W J_k``; only the upper triangle is read.
    b : ndarray of shape (K, P)
        ``J_k^T W e_k``.
    E_D : ndarray of shape (K,)
    n_values : ndarray of shape (K,)
        ``N_k``, the target values of each block.
    theta : ndarray of shape (P,)
    groups : ndarray of shape (P,)
        :func:`parameter_groups`.
    """

    def __init__(self, G: Array, b: Array, E_D: Array, n_values: Array, theta: Array,
                 groups: Array) -> None:
        self.G, self.b, self.E_D, self.n_values = G, b, E_D, n_values
        self.theta, self.groups = theta, groups
        self.n_groups = int(groups.max()) + 1
        self.P_l = np.bincount(groups, minlength=self.n_groups).astype(float)
        self.E_W = np.bincount(groups, theta.astype(float) ** 2, minlength=self.n_groups)
        self._diagonal = np.arange(theta.size)

    def matrix(self, alpha: Array, beta: Array, mu: float = 0.0, out: Array | None = None
               ) -> Array:
        """``H + mu I = sum_k beta_k G_k + A + mu I`` (P, P), in ``out`` (a Fortran-ordered
        buffer the solver reuses: a fresh array of this size costs the operating system's
        page faults every time) or a new array; only its upper triangle is meaningful."""
        if self.G.shape[0] == 1:
            M = np.multiply(self.G[0], beta[0], out=out)
        else:
            M = np.einsum("k,kij->ij", beta, self.G, out=out)
        M[self._diagonal, self._diagonal] += alpha[self.groups] + mu
        return M

    def factor(self, alpha: Array, beta: Array, out: Array | None = None) -> Factor:
        """:class:`Factor` of ``H = sum_k beta_k G_k + A``, in ``out`` if given (see
        :meth:`matrix`; the factor then holds it until dropped)."""
        return Factor(lambda: self.matrix(alpha, beta, out=out), float(alpha.min()))

    def step(self, alpha: Array, beta: Array, mu: float, g: Array, out: Array | None = None
             ) -> Array | None:
        """Levenberg-Marquardt's step on ``F`` from ``g = grad F / 2``: ``-(H + mu I)^-1 g``
        (P,), by Cholesky (in ``out`` if given); None when rounding leaves ``H + mu I`` not
        positive definite."""
        return _shifted_solve(self.matrix(alpha, beta, mu, out), g)

    def half_gradient(self, alpha: Array, beta: Array) -> Array:
        """``grad F / 2 = sum_k beta_k J_k^T W e_k + A theta`` (P,)."""
        return beta @ self.b + alpha[self.groups] * self.theta

    def objective(self, alpha: Array, beta: Array) -> float:
        """``F = beta . E_D + alpha . E_W``."""
        return float(beta @ self.E_D + alpha @ self.E_W)

    def gammas(self, factor: Factor, alpha: Array, beta: Array) -> tuple[Array, Array]:
        """``(gamma_l (L,), gamma_k (K,))`` at ``H``'s ``factor`` (the module's formulas)."""
        if self.n_groups == 1:
            tr = np.array([factor.trace_inverse()])
        else:
            tr = np.bincount(self.groups, factor.diag_inverse(), minlength=self.n_groups)
        gamma_l = np.clip(self.P_l - alpha * tr, 0.0, self.P_l)
        if self.G.shape[0] == 1:
            return gamma_l, np.array([gamma_l.sum()])
        Hinv = factor.R @ factor.R.T
        gamma_k = np.array([b * factor.trace_with(G, Hinv)
                            for b, G in zip(beta, self.G, strict=True)])
        return gamma_l, np.clip(gamma_k, 0.0, self.n_values)

    def log_evidence(self, factor: Factor, alpha: Array, beta: Array) -> float:
        """``log p(D | alpha, beta)`` (Laplace) with theta taken as the mode."""
        return float(-self.objective(alpha, beta) - 0.5 * factor.logdet()
                     + 0.5 * (self.P_l @ np.log(alpha) + self.n_values @ np.log(beta))
                     - 0.5 * self.n_values.sum() * math.log(math.pi))

    def start_values(self) -> tuple[Array, Array]:
        """trainbr's start: ``gamma = P``, ``alpha_l = P_l / (2 E_W,l)``, ``beta =
        (N_e - gamma) / (2 E_D)`` (1 where ``E_D = 0`` or that is <= 0; per output, gamma
        split in proportion to ``N_k``); ``alpha_l = 1`` where ``E_W,l = 0``."""
        P = self.P_l.sum()
        gamma_k = P * self.n_values / self.n_values.sum()
        return (_precision(self.P_l, self.E_W, np.ones(self.n_groups), False),
                _precision(self.n_values - gamma_k, self.E_D, np.ones(self.E_D.size), True))

    def restart_values(self) -> tuple[Array, Array]:
        """The collapse guard's start (MacKay's: a weak prior, the noise from the fit):
        ``alpha_l = RESTART_ALPHA P_l / (2 E_W,l)``, ``beta_k = N_k / (2 E_D,k)`` (the
        noise precision with gamma = 0); 1 where an energy is 0."""
        return (_precision(RESTART_ALPHA * self.P_l, self.E_W, np.ones(self.n_groups), False),
                _precision(self.n_values, self.E_D, np.ones(self.E_D.size), True))

    def updated(self, factor: Factor, alpha: Array, beta: Array
                ) -> tuple[Array, Array, float]:
        """MacKay's update at this theta from ``H(alpha, beta)``'s factor:
        ``(alpha', beta', gamma)``. A value that comes out zero or not finite (no data
        curvature at all) keeps the previous one."""
        gamma_l, gamma_k = self.gammas(factor, alpha, beta)
        new_alpha = _precision(gamma_l, self.E_W, alpha, False)
        new_beta = _precision(self.n_values - gamma_k, self.E_D, beta, True)
        return new_alpha, new_beta, float(gamma_l.sum())


def _precision(count: Array, energy: Array, previous: Array, one_if_not_positive: bool
               ) -> Array:
    """``count / (2 energy)`` with trainbr's guards: 1 where ``energy = 0`` (and, for beta,
    where ``count <= 0``); ``previous`` where the quotient is still not finite and positive
    (an alpha whose gamma is 0: no data curvature at all)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = count / (2.0 * energy)
    one = (energy == 0) | ((count <= 0) if one_if_not_positive else False)
    value = np.where(one, 1.0, value)
    return np.where(np.isfinite(value) & (value > 0), value, previous).astype(float)


def curvature(net: Network, X: Array, T: Array, w: Array | None = None, *,
              per_output: bool = False, groups: Array | None = None, chunk: int | None = None,
              Y: Array | None = None, derivatives: SobolevData | None = None) -> Curvature:
    """The :class:`Curvature` of in-memory, checked ``(X, T, w)`` at the network's theta.

    ``per_output``: one noise block per output (each ``J_k^T W J_k`` streamed on its own,
    memory O(q P^2 + chunk q P)); else one for all. ``Y``: ``net(X)`` when known.
    ``derivatives``: derivative data of the rows; their residuals ``lambda (dy/dx - g)``
    join the values' in ``J`` and ``E_D`` and their count in ``N_e``, in one block (one
    noise precision: the derivative residuals' variance is the values' over lambda^2),
    as :class:`BayesianRegularization` trains with them.
    """
    if derivatives is not None:
        if per_output:
            raise ValueError("derivative data share the values' noise precision: "
                             "per_output must be False")
        objective = SobolevObjective(net, X, T, get_loss("sse"), w, chunk=chunk,
                                     data=derivatives)
        block = _Shared(objective, objective.n_weighted)
        return block.curvature(*block.evaluate(), parameter_groups(net) if groups is None
                               else groups, chunk)
    Y = net.forward(X) if Y is None else Y
    R = (Y - T).astype(float)
    sq = R * R if w is None else R * R * w[:, None]
    N, q = R.shape
    P = net.n_params
    if per_output and q > 1:
        G, b = np.empty((q, P, P)), np.empty((q, P))
        for k in range(q):
            weights = np.zeros((N, q), dtype=net.dtype)
            weights[:, k] = 1 if w is None else w
            JtJ, Jtr = net.gauss_newton(X, Y - T, weights, chunk)
            G[k], b[k] = JtJ, Jtr
        E_D, n_values = sq.sum(axis=0), np.full(q, _rows(X, w))
    else:
        JtJ, Jtr = net.gauss_newton(X, Y - T, w, chunk)
        G, b = np.asarray(JtJ, dtype=float)[None], np.asarray(Jtr, dtype=float)[None]
        E_D, n_values = np.array([sq.sum()]), np.array([_rows(X, w) * q])
    groups = parameter_groups(net) if groups is None else groups
    return Curvature(G, b, E_D, n_values, net.get_flat().astype(float), groups)


def _rows(X: Any, w: Any) -> float:
    """How many rows the data counts as: N, or the sum of the sample weights (an integer
    weight is that many repeated rows, in N_e as in E_D)."""
    return float(X.shape[0]) if w is None else float(w.sum())


class _Shared:
    """One noise block through the :class:`~jacnet.objective.Objective` seam, so that a
    data-parallel objective (Dask) sums the partitions. The objective's loss is ``sse``
    or ``mse``: ``E_D`` is its value times ``2 / scale`` (1 or the total weight)."""

    def __init__(self, objective: Any, n_values: float) -> None:
        self.obj, self.n_values, self.norm = objective, float(n_values), math.nan

    def evaluate(self) -> tuple[float, Any]:
        return self.obj.value()

    def energies(self, loss: float, state: Any) -> Array:
        return np.array([loss * self.norm])

    def curvature(self, loss: float, state: Any, groups: Array, chunk: int | None
                  ) -> Curvature:
        system = self.obj.system(state, chunk)
        if isinstance(system, DualSystem):  # N q < P: J^T W J = A^T A
            G = np.asarray(system.A.T @ system.A, dtype=float)
        else:  # its upper triangle, all that is read
            G = np.asarray(system.JtHJ, dtype=float)
        self.norm = 2.0 / system.scale
        theta = self.obj.net.get_flat().astype(float)
        return Curvature(G[None], np.asarray(system.Jtg, dtype=float)[None],
                         self.energies(loss, state), np.array([self.n_values]), theta, groups)


class _PerOutput:
    """One noise block per output, on in-memory arrays (each output's ``J_k^T W J_k``)."""

    def __init__(self, run: Any) -> None:
        X, T, w = run.train_set
        if not all(isinstance(a, np.ndarray) for a in (X, T)):
            raise ValueError("noise='per_output' needs in-memory numpy arrays; use "
                             "noise='shared' on distributed data")
        self.net, self.X, self.T, self.w, self.loss = run.net, X, T, w, run.loss

    def evaluate(self) -> tuple[float, Any]:
        value, Y, _ = self.net.evaluate(self.X, self.T, self.loss, self.w)
        return value, Y

    def energies(self, loss: float, Y: Any) -> Array:
        R = (Y - self.T).astype(float)
        sq = R * R if self.w is None else R * R * self.w[:, None]
        return sq.sum(axis=0)

    def curvature(self, loss: float, Y: Any, groups: Array, chunk: int | None) -> Curvature:
        return curvature(self.net, self.X, self.T, self.w, per_output=True, groups=groups,
                         chunk=chunk, Y=Y)


@dataclass
class _Collapse:
    """The end of a trajectory that collapsed (gamma -> 0): what the collapse guard
    returns to when its restart ends with a lower evidence."""

    theta: Array
    alpha: Array
    beta: Array
    gamma: float
    log_evidence: float
    mu: float
    loss: float
    grad_norm: float
    reason: str
    entry: dict[str, Any] = field(default_factory=dict)

    def to_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """For a checkpoint: the weights as an array, the rest JSON-serialisable."""
        return {"collapse_theta": self.theta}, {
            "alpha": [float(x) for x in self.alpha], "beta": [float(x) for x in self.beta],
            "gamma": self.gamma, "log_evidence": self.log_evidence, "mu": self.mu,
            "loss": self.loss, "grad_norm": self.grad_norm, "reason": self.reason,
            "entry": self.entry}

    @classmethod
    def from_state(cls, arrays: dict[str, Array], meta: dict[str, Any]) -> _Collapse:
        return cls(np.array(arrays["collapse_theta"]), np.array(meta["alpha"], float),
                   np.array(meta["beta"], float), float(meta["gamma"]),
                   float(meta["log_evidence"]), float(meta["mu"]), float(meta["loss"]),
                   float(meta["grad_norm"]), str(meta["reason"]), dict(meta["entry"]))


#: the stop reasons after which the collapse guard may restart (the solver converged) or
#: return to the collapsed state (the restart converged, ran out of epochs or diverged)
_CONVERGED = ("min_grad", "mu_max")
_JUDGED = ("min_grad", "mu_max", "max_epochs", "non_finite")


class BayesianRegularization(Solver):
    """MATLAB's ``trainbr``: Levenberg-Marquardt on ``F = beta E_D + alpha E_W`` with
    ``alpha`` and ``beta`` re-estimated from the data after every accepted step.

    The solver ``"br"`` (losses ``"sse"`` and ``"mse"`` only: ``E_D`` is the sum of
    squared errors over outputs and samples either way; the loss names what the record's
    ``loss`` shows). ``E_W = ||theta||^2`` over ALL parameters, biases included, as in
    trainbr; the loop's ``alpha`` must stay 0 (the solver finds its own). One epoch:

    - ``d = -(beta J^T J + (mu + alpha) I)^-1 (beta J^T e + alpha theta)``; accepted when
      ``F`` falls (``mu <- max(mu mu_dec, 1e-20)``), else ``mu <- mu mu_inc`` and again,
      until ``mu > mu_max`` (stop reason ``mu_max``);
    - with ``J^T J`` at the new theta: ``gamma = P - alpha tr[(beta J^T J + alpha I)^-1]``,
      ``alpha = gamma / (2 E_W)``, ``beta = (N_e - gamma) / (2 E_D)``.

    It starts from ``gamma = P``, ``beta = (N_e - P) / (2 E_D)`` (1 if ``E_D = 0`` or that
    is <= 0), ``alpha = P / (2 E_W)``. As trainlm, a gradient norm (of ``F``: ``||2 (beta
    J^T e + alpha theta)||``) below ``min_grad`` tries no step; no validation stopping
    unless validation data are given. The record's epochs hold ``mu``, ``gamma`` (the
    effective number of parameters), ``alpha``, ``beta``, ``E_D``, ``E_W`` and
    ``log_evidence`` (after the update, at the new theta). See the module docstring for
    the model, the derivation and the eigendecomposition behind every solve.

    With derivative data (``dTdX`` in :func:`jacnet.train`) the derivative residuals
    ``lambda (dy/dx - g)`` join ``E_D`` and ``J`` with the same ``beta``, and ``N_e``
    counts the observed derivatives as well as the target values (``noise="shared"``).

    **The collapse guard** (``restart=True``). trainbr's start (``gamma = P``, so ``beta``
    from ``N_e - P``) regularises hard when ``N_e`` is not much above ``P``, and the
    iteration can fall to the evidence's degenerate maximum ``theta = 0``: gamma -> 0, a
    constant prediction. That point is a fixed point (no curvature is left to pull gamma
    up) and, on data with a signal, of far lower evidence than a fit; tracking the
    evidence per epoch cannot help, since along the collapsing trajectory it rises to the
    collapse. So when a trajectory converges (stop ``min_grad`` or ``mu_max``) collapsed,
    ``gamma < COLLAPSE_GAMMA P`` with ``E_D >= (1 - COLLAPSE_FIT)`` times the zero
    network's, and at least two epochs of the budget are left, the run restarts once from
    the weights it started from, with MacKay's start: ``alpha_l = RESTART_ALPHA P_l / (2
    E_W,l)`` (a weak prior), ``beta_k = N_k / (2 E_D,k)`` (the noise from the fit), mu
    the setting's. The first epoch after it carries ``"restart": "collapse"`` in the
    record. The restart keeps the budget's last epoch back: when it ends (converged, out of
    epochs or diverged) with a lower log evidence than the collapsed state, that state is
    restored and recorded as one more epoch with ``"restart": "reverted"`` (its values
    repeated), so the evidence decides and the record's last entry always describes the
    weights kept. A run that ends collapsed still (or with no room to restart) warns with
    a ``ConvergenceWarning``. A run that does not collapse is not touched.

    Parameters
    ----------
    mu, mu_dec, mu_inc, mu_max : float
        trainbr's defaults 0.005, 0.1, 10, 1e10.
    noise : {"shared", "per_output"}
        One ``beta`` for all outputs (trainbr), or one per output (``beta`` and ``E_D``
        in the record are then lists; in-memory data only).
    weight_groups : {"single", "per_layer"}
        One ``alpha`` (trainbr), or one per layer for its ``W`` and ``b`` together
        (MacKay's groups; ``alpha`` and ``E_W`` in the record are then lists).
    chunk : int, optional
        Rows per block of the streamed Gauss-Newton sums.
    restart : bool, default True
        The collapse guard (above); False: trainbr's iteration only (the warning stays).

    Attributes
    ----------
    alpha, beta : ndarray or None
        The current precisions, (L,) and (K,); kept from one call to the next.
    gamma, log_evidence : float or None
        Of the last epoch.
    """

    name = "br"
    #: the solver models Gaussian noise on real-valued targets: no classification
    regression_only: ClassVar[bool] = True

    def __init__(self, mu: float = 0.005, mu_dec: float = 0.1, mu_inc: float = 10.0,
                 mu_max: float = 1e10, noise: str = "shared", weight_groups: str = "single",
                 chunk: int | None = None, restart: bool = True) -> None:
        self.mu = check_real(mu, "mu", "a positive number", lambda x: x > 0)
        self.mu_dec = check_real(mu_dec, "mu_dec", "a number in (0, 1)", lambda x: 0 < x < 1)
        self.mu_inc = check_real(mu_inc, "mu_inc", "a number > 1", lambda x: x > 1)
        self.mu_max = check_real(mu_max, "mu_max", "a positive number", lambda x: x > 0)
        self.noise = _choice(noise, "noise", NOISE_MODELS)
        self.weight_groups = _choice(weight_groups, "weight_groups", WEIGHT_GROUPS)
        self.chunk = None if chunk is None else check_int(chunk, "chunk")
        if not isinstance(restart, (bool, np.bool_)):
            raise TypeError(f"restart must be a bool, got {type(restart).__name__}")
        self.restart = bool(restart)
        self._mu_start = self.mu  # the guard's restart begins from the setting
        self.alpha: Array | None = None
        self.beta: Array | None = None
        self.gamma: float | None = None
        self.log_evidence: float | None = None
        self._theta0: Array | None = None  # the weights this call started from
        self._collapse: _Collapse | None = None  # set once the guard has restarted
        self._resumed = False
        self._note: str | None = None  # the next record entry's "restart" field
        self._last_grad = math.nan
        self._stopped: str | None = None  # a resumed run's last stop (see ended)
        self._release()

    def _release(self) -> None:
        self._data: Any = None
        self._curv: Curvature | None = None
        self._loss = math.nan
        self._state: Any = None
        self._work: Array | None = None  # the (P, P) buffer of every factorisation

    # ------------------------------------------------- the solver protocol
    def start(self, run: Any) -> None:
        if not run.loss.sum_of_squares:
            raise ValueError(f"loss must be 'sse' or 'mse' for solver 'br' (it models "
                             f"Gaussian noise), got loss={run.loss.name!r}")
        if run.alpha:
            raise ValueError(f"alpha must be 0 with solver 'br', which finds its own weight "
                             f"precision from the data; got alpha={run.alpha!r}")
        T = run.train_set[1]
        self._groups = parameter_groups(run.net, self.weight_groups)
        per_output = self.noise == "per_output" and T.shape[1] > 1
        self._data = _PerOutput(run) if per_output else self._shared(run)
        shape = (int(self._groups.max()) + 1, T.shape[1] if per_output else 1)
        if self.alpha is None or self.beta is None or (self.alpha.size, self.beta.size) != shape:
            self.alpha = self.beta = None  # trainbr's start values at the first epoch
        self._net = run.net
        self._work = np.empty((run.net.n_params,) * 2, order="F")
        if not self._resumed or self._theta0 is None:
            self._theta0 = run.net.get_flat().astype(float)
            self._collapse = None
        self._resumed = False

    def _shared(self, run: Any) -> _Shared:
        """One noise block on the run's objective. ``N_e``: the target values (trainbr),
        plus the observed derivatives with derivative data (:class:`SobolevObjective`:
        their residuals share ``beta`` with the values')."""
        X, T, w = run.train_set
        objective = run.objective(self.chunk)
        if isinstance(objective, SobolevObjective):
            return _Shared(objective, objective.n_weighted)
        return _Shared(objective, _rows(X, w) * T.shape[1])

    def start_loss(self) -> float | None:
        self._loss, self._state = self._data.evaluate()
        return self._loss

    def epoch(self, run: Any) -> EpochResult:
        """One trainbr iteration (see the class docstring); the stop reason ``mu_max``
        when no mu up to mu_max lowers F, ``non_finite`` when the loss is not finite."""
        if self._curv is None and not self._begin():
            return EpochResult(self._loss, math.nan, stop="non_finite")
        curv = self._curv
        assert curv is not None
        assert self.alpha is not None and self.beta is not None
        g = curv.half_gradient(self.alpha, self.beta)
        grad_norm = 2.0 * math.sqrt(float(g @ g))
        if grad_norm < run.min_grad:
            return EpochResult(self._loss, grad_norm, self._entry())
        if not self._trials(curv, g):
            self.mu = min(self.mu, self.mu_max)  # a later call may try again
            return EpochResult(self._loss, grad_norm,
                               stop="mu_max" if math.isfinite(self._loss) else "non_finite")
        self._update()
        return EpochResult(self._loss, grad_norm, self._entry())

    def _begin(self) -> bool:
        """The curvature at the start (and trainbr's start values on a fresh run); False
        when the loss there is not finite."""
        if not math.isfinite(self._loss):
            self.start_loss()
        if not math.isfinite(self._loss):
            return False
        curv = self._curv = self._data.curvature(self._loss, self._state, self._groups,
                                                 self.chunk)
        if self.alpha is None or self.beta is None:
            restarted = self._collapse is not None
            self.alpha, self.beta = curv.restart_values() if restarted else curv.start_values()
            self.gamma = float(curv.P_l.sum())
        self.log_evidence = curv.log_evidence(curv.factor(self.alpha, self.beta, self._work),
                                              self.alpha, self.beta)
        return True

    def _trials(self, curv: Curvature, g: Array) -> bool:
        """Levenberg-Marquardt's mu trials on F from ``curv.theta``; whether one was
        accepted (the network then holds it; else ``curv.theta`` again)."""
        alpha, beta, net = self.alpha, self.beta, self._net
        assert alpha is not None and beta is not None
        F = curv.objective(alpha, beta)
        while self.mu <= self.mu_max:
            d = curv.step(alpha, beta, self.mu, g, self._work)
            if d is None:  # not numerically positive definite: a failed trial (trainlm)
                self.mu *= self.mu_inc
                continue
            net.theta[...] = curv.theta + d
            loss, state = self._data.evaluate()
            E_W = np.bincount(self._groups, net.theta.astype(float) ** 2,
                              minlength=alpha.size)
            F_new = float(beta @ self._data.energies(loss, state) + alpha @ E_W)
            if math.isfinite(F_new) and F_new < F and np.isfinite(d).all():
                self._loss, self._state = loss, state
                self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                return True
            self.mu *= self.mu_inc
        net.theta[...] = curv.theta
        return False

    def _update(self) -> None:
        """MacKay's update with the curvature at the new theta (the trace of ``H^-1`` at
        the old precisions), then the evidence (``log det H`` at the new ones)."""
        assert self.alpha is not None and self.beta is not None
        curv = self._curv = self._data.curvature(self._loss, self._state, self._groups,
                                                 self.chunk)
        before = curv.factor(self.alpha, self.beta, self._work)
        self.alpha, self.beta, self.gamma = curv.updated(before, self.alpha, self.beta)
        after = curv.factor(self.alpha, self.beta, self._work)  # before is done with it
        self.log_evidence = curv.log_evidence(after, self.alpha, self.beta)

    def _entry(self) -> dict[str, Any]:
        """The solver's fields of the epoch's record entry."""
        curv = self._curv
        assert curv is not None and self.alpha is not None and self.beta is not None

        def listed(v: Array) -> float | list[float]:
            return float(v[0]) if v.size == 1 else [float(x) for x in v]

        entry: dict[str, Any] = {"mu": self.mu, "gamma": self.gamma, "alpha": listed(self.alpha),
                                 "beta": listed(self.beta), "E_D": listed(curv.E_D),
                                 "E_W": listed(curv.E_W), "log_evidence": self.log_evidence}
        if self._note is not None:
            entry["restart"], self._note = self._note, None
        return entry

    # ------------------------------------------------- the collapse guard
    def run(self, run: Any) -> str:
        """Epochs until a stop reason, with the collapse guard (see the class docstring):
        the trajectory; if it converged collapsed with epochs left, the restart (the
        budget's last epoch kept back) and the choice by evidence; that reason."""
        if self._collapse is None:
            reason = self._resumed_stop(run) or self._epochs(run, run.max_epochs)
            if not self._restart_due(run, reason):
                return self._end(run, reason)
            self._collapse = self._snapshot(reason)
            self._net.theta[...] = self._theta0
            self.alpha = self.beta = self._curv = None  # restart_values at the next epoch
            self.mu, self._loss, self._note = self._mu_start, math.nan, "collapse"
        return self._end(run, self._choose(run, self._epochs(run, run.max_epochs - 1)))

    def _epochs(self, run: Any, last: int) -> str:
        """:meth:`Solver.run`'s loop, ending with ``max_epochs`` at epoch ``last`` at the
        latest (the loop's own rule ends it at the budget)."""
        while run.record.n_epochs < last:
            result = self.epoch(run)
            self._last_grad = result.grad_norm
            reason = result.stop or run.end_epoch(result)
            if reason:
                return reason
        return "max_epochs"

    def ended(self, run: Any, reason: str) -> bool:
        """A resumed run whose checkpoint holds the epoch that ended a collapsed
        trajectory goes on to the restart, as the uninterrupted run did (the curvature at
        the checkpoint's weights first: the collapse test and the snapshot read it)."""
        if self._collapse is not None or not self.restart or reason not in _CONVERGED:
            return True
        if self._curv is None and not self._begin():
            return True
        if not self._restart_due(run, reason):
            return True
        self._stopped = reason
        return False

    def _resumed_stop(self, run: Any) -> str | None:
        """The stop that :meth:`ended` kept, once, with the last epoch's gradient norm
        (which :meth:`_snapshot` records)."""
        reason, self._stopped = self._stopped, None
        if reason is not None:
            self._last_grad = float(run.record.epochs[-1]["grad_norm"])
        return reason

    def _restart_due(self, run: Any, reason: str) -> bool:
        return (self.restart and reason in _CONVERGED
                and run.record.n_epochs + 2 <= run.max_epochs and self._collapsed(run))

    def _collapsed(self, run: Any) -> bool:
        """Whether the state of the last record entry has collapsed: ``gamma <
        COLLAPSE_GAMMA P`` while ``E_D`` is at least ``1 - COLLAPSE_FIT`` of the zero
        network's (evaluated only when gamma is that small)."""
        last = run.record.epochs[-1] if run.record.epochs else {}
        if last.get("gamma") is None or last["gamma"] >= COLLAPSE_GAMMA * self._net.n_params:
            return False
        return float(np.sum(last["E_D"])) >= (1.0 - COLLAPSE_FIT) * self._zero_energy()

    def _zero_energy(self) -> float:
        """``E_D`` of the network at theta = 0 (a constant prediction, no derivative)."""
        net = self._net
        theta = net.get_flat()
        net.theta[...] = 0
        try:
            loss, state = self._data.evaluate()
            return float(self._data.energies(loss, state).sum())
        finally:
            net.theta[...] = theta
            self._loss, self._state = self._data.evaluate()  # the objective's state again

    def _snapshot(self, reason: str) -> _Collapse:
        assert self.alpha is not None and self.beta is not None and self.gamma is not None
        assert self.log_evidence is not None
        return _Collapse(self._net.get_flat().astype(float), self.alpha.copy(),
                         self.beta.copy(), self.gamma, self.log_evidence, self.mu,
                         self._loss, self._last_grad, reason, self._entry())

    def _choose(self, run: Any, reason: str) -> str:
        """After the restart's trajectory: keep it (and run the epoch kept back), or, when
        it ended with a lower evidence than the collapsed state, return to that state,
        recorded as an epoch; the stop reason."""
        c = self._collapse
        assert c is not None
        # lower by more than rounding (two collapsed states tie: the later one stays)
        lower = not (self.log_evidence is not None and self.log_evidence
                     >= c.log_evidence - 1e-9 * max(1.0, abs(c.log_evidence)))
        if not (lower and reason in _JUDGED):
            if reason == "max_epochs" and run.record.n_epochs < run.max_epochs:
                return self._epochs(run, run.max_epochs)  # the epoch kept back
            return reason
        self._net.theta[...] = c.theta
        self.alpha, self.beta, self.gamma = c.alpha, c.beta, c.gamma
        self.log_evidence, self.mu = c.log_evidence, c.mu
        self._curv, self._loss = None, math.nan  # a later call begins at the state again
        result = EpochResult(c.loss, c.grad_norm, {**c.entry, "restart": "reverted"})
        return run.end_epoch(result) or c.reason

    def _end(self, run: Any, reason: str) -> str:
        """The stop reason, after a ``ConvergenceWarning`` if the kept state collapsed."""
        if self._collapsed(run):
            last = run.record.epochs[-1]
            c = self._collapse
            if c is None:
                why = ("restart=False" if not self.restart else
                       "the run did not converge" if reason not in _CONVERGED else
                       "fewer than two epochs of the budget were left")
                tried = f"No restart was tried ({why})."
            elif last.get("restart") == "reverted":
                tried = (f"A restart from the initial weights with a weak prior ended with "
                         f"a lower log evidence than the collapsed state's "
                         f"({c.log_evidence:.6g}) and was set aside.")
            else:
                tried = "A restart from the initial weights with a weak prior collapsed too."
            # scikit-learn's category, the one users filter; imported here, as jacnet's
            # import does not load scikit-learn
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(
                f"solver 'br' ended collapsed: gamma = {last['gamma']:.3g} effective "
                f"parameters of {self._net.n_params}, the weights near zero and the "
                f"prediction nearly constant. {tried} The data may hold no signal this "
                "network can fit; more rows, fewer hidden units or other initial weights "
                "may help.", ConvergenceWarning, stacklevel=2)
        return reason

    def release(self) -> None:
        self._release()

    def get_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        def listed(v: Array | None) -> list[float] | None:
            return None if v is None else [float(x) for x in v]

        arrays: dict[str, Array] = {}
        meta: dict[str, Any] = {
            "mu": self.mu, "alpha": listed(self.alpha), "beta": listed(self.beta),
            "gamma": self.gamma, "log_evidence": self.log_evidence, "collapse": None}
        if self._theta0 is not None:
            arrays["theta0"] = self._theta0
        if self._collapse is not None:
            more, meta["collapse"] = self._collapse.to_state()
            arrays.update(more)
        return arrays, meta

    def set_state(self, arrays: dict[str, Array], meta: dict[str, Any]) -> None:
        self.mu, self.gamma = meta["mu"], meta.get("gamma")
        self.log_evidence = meta.get("log_evidence")
        self.alpha = None if meta.get("alpha") is None else np.array(meta["alpha"], float)
        self.beta = None if meta.get("beta") is None else np.array(meta["beta"], float)
        theta0 = arrays.get("theta0")  # a checkpoint older than the guard has none
        self._theta0 = None if theta0 is None else np.array(theta0, dtype=float)
        collapse = meta.get("collapse")
        self._collapse = None if collapse is None else _Collapse.from_state(arrays, collapse)
        self._resumed = True

    def continue_from(self, previous: Solver | None) -> None:
        if (isinstance(previous, BayesianRegularization) and previous.noise == self.noise
                and previous.weight_groups == self.weight_groups):
            self.mu, self.gamma = previous.mu, previous.gamma
            self.alpha, self.beta = previous.alpha, previous.beta


def _precisions(value: Any, name: str, size: int, sizes: tuple[int, ...]) -> Array:
    """A positive scalar or vector of precisions as a float array of one of ``sizes``
    (a scalar: of ``size``)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.ndim != 1 or arr.size not in sizes or not (np.isfinite(arr) & (arr > 0)).all():
        raise ValueError(f"{name} must be a positive number or a vector of {sizes} positive "
                         f"numbers, got {value!r}")
    return arr


class Laplace:
    """The linearised Laplace posterior of a network's theta on ``(X, T)``.

    With ``H = sum_k beta_k J_k^T W J_k + A`` at the network's theta (taken as the mode of
    ``F``; see the module docstring), the posterior of theta is ``N(theta, (2H)^-1)`` and
    the predictive variance of output ``k`` at ``x`` is ``1/(2 beta_k) + j_k(x)^T (2H)^-1
    j_k(x)``. Memory: the (P, P) factor, plus one chunk of J when predicting.

    With derivative data (``dTdX``, as :func:`jacnet.train` takes them) the likelihood has
    the derivative residuals ``lambda (dy/dx - g)`` too, under the same ``beta`` (one
    shared): ``J^T W J`` and ``E_D`` then hold their Gauss-Newton terms and ``N_e`` their
    count, so the posterior is the one ``br`` trained on values and derivatives.

    Parameters
    ----------
    net : Network
    X : array-like of shape (N, n_in)
    T : array-like of shape (N, n_out)
    alpha : float or array-like of shape (L,)
        Weight precisions (``F``'s ``alpha E_W``), one per group of ``weight_groups``.
    beta : float or array-like of shape (n_out,)
        Noise precisions (``F``'s ``beta E_D``): one shared, or one per output (values
        only).
    sample_weight : array-like of shape (N,), optional
    weight_groups : {"single", "per_layer"}
    chunk : int, optional
        Rows per block of the Gauss-Newton sums and of :meth:`std`.
    dTdX : array-like of shape (N, n_out, n_in) or (N, n_in), optional
        Derivative data of the rows (NaN: not observed).
    derivative_weight : float, default 1.0
        lambda, the weight of the derivative residuals.

    Attributes
    ----------
    covariance_factor : ndarray of shape (P, P)
        ``L`` with ``L L^T = (2H)^-1``, the posterior covariance of theta.
    log_evidence : float
        ``log p(D | alpha, beta)``.
    effective_n_params : float
        ``gamma = P - tr(A H^-1)``.
    noise_variance : ndarray of shape (n_out,)
        ``1 / (2 beta_k)``.
    n_values : float
        ``N_e``: the target values (and observed derivatives) counted, with sample weights
        their sum.
    """

    def __init__(self, net: Network, X: Any, T: Any, alpha: Any, beta: Any, *,
                 sample_weight: Any = None, weight_groups: str = "single",
                 chunk: int | None = None, dTdX: Any = None,
                 derivative_weight: float = 1.0) -> None:
        X = net.check_X(X)
        T = net.check_T(T, X.shape[0])
        w = as_weights(sample_weight, X.shape[0], net.dtype)
        groups = parameter_groups(net, weight_groups)
        n_groups, q = int(groups.max()) + 1, net.n_out
        self.alpha = _precisions(alpha, "alpha", n_groups, (n_groups,))
        self.beta = _precisions(beta, "beta", 1, (1,) if dTdX is not None else (1, q))
        self.net, self.chunk = net, None if chunk is None else check_int(chunk, "chunk")
        data = None if dTdX is None else SobolevData(check_derivatives(dTdX, net, X.shape[0]),
                                                     derivative_weight)
        curv = curvature(net, X, T, w, per_output=self.beta.size > 1, groups=groups,
                         chunk=self.chunk, derivatives=data)
        factor = curv.factor(self.alpha, self.beta)
        self.log_evidence = curv.log_evidence(factor, self.alpha, self.beta)
        self.effective_n_params = float(curv.gammas(factor, self.alpha, self.beta)[0].sum())
        self.covariance_factor = factor.covariance_factor()
        self.noise_variance = np.broadcast_to(0.5 / self.beta, (q,)).copy()
        self.n_values = float(curv.n_values.sum())

    @classmethod
    def from_solver(cls, solver: BayesianRegularization, net: Network, X: Any, T: Any, *,
                    sample_weight: Any = None, chunk: int | None = None, dTdX: Any = None,
                    derivative_weight: float = 1.0) -> Laplace:
        """The posterior at the precisions a :class:`BayesianRegularization` run ended with
        (on the rows it trained on, with their derivative data if it had them)."""
        if solver.alpha is None or solver.beta is None:
            raise ValueError("solver has not trained yet: it holds no alpha and beta")
        return cls(net, X, T, solver.alpha, solver.beta, sample_weight=sample_weight,
                   weight_groups=solver.weight_groups, chunk=chunk, dTdX=dTdX,
                   derivative_weight=derivative_weight)

    def std(self, X: Any, noise: bool = True) -> Array:
        """Predictive standard deviation per output, (N, n_out), streamed over chunks of
        ``X`` (memory O(P^2 + chunk n_out P)); ``noise=False``: of the mean only."""
        net = self.net
        X = net.check_X(X)
        N, q, P = X.shape[0], net.n_out, net.n_params
        step = self.chunk or default_chunk(N, q * P)
        var = np.empty((N, q))
        L = self.covariance_factor
        for start in range(0, N, step):
            J = net.jacobian(X[start : start + step]).astype(float, copy=False)
            Z = J.reshape(-1, P) @ L
            var[start : start + J.shape[0]] = np.einsum("ij,ij->i", Z, Z).reshape(-1, q)
        if noise:
            var += self.noise_variance
        return np.sqrt(var)
