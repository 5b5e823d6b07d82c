"""The linearised (Laplace) posterior of a network's theta and its evidence, on the exact
Gauss-Newton matrix: the curvature ``H``, its factor, MacKay's updates of the precisions,
the log evidence, the noise blocks the curvature is summed over, and :class:`Laplace`
(predictive error bars of any network). :class:`jacnet.bayesian.BayesianRegularization`
(trainbr) iterates on these.

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
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from .gauss_newton import DualSystem, cho_solve_shifted
from .jacobian import default_chunk, param_offsets
from .losses import get_loss
from .network import Network
from .sobolev import SobolevData, SobolevObjective, check_derivatives
from .validation import as_weights, check_choice, check_int

Array = np.ndarray

__all__ = ["Laplace", "Curvature", "Factor", "curvature", "parameter_groups",
           "SharedNoise", "PerOutputNoise", "counted_rows", "WEIGHT_GROUPS"]

# LAPACK directly: the matrices are finite by construction, and scipy's cho_factor would
# check that again on every trial
_potrf, _trtri = lapack.get_lapack_funcs(("potrf", "trtri"),
                                                  dtype=np.float64)
WEIGHT_GROUPS = ("single", "per_layer")


def parameter_groups(net: Network, weight_groups: str = "single") -> Array:
    """The weight group of each parameter, (P,) ints: all 0 (``"single"``, trainbr), or
    the layer's index (``"per_layer"``: one ``alpha`` for a layer's ``W`` and ``b``)."""
    check_choice(weight_groups, "weight_groups", WEIGHT_GROUPS)
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
    None when ``M`` is not numerically positive definite (a failed trial)."""
    try:
        return -cho_solve_shifted(M, 0.0, g)
    except linalg.LinAlgError:
        return None


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

    def restart_values(self, weak: float) -> tuple[Array, Array]:
        """The collapse guard's start (MacKay's: a weak prior, the noise from the fit):
        ``alpha_l = weak P_l / (2 E_W,l)`` (``weak``: the guard's ``RESTART_ALPHA``),
        ``beta_k = N_k / (2 E_D,k)`` (the noise precision with gamma = 0); 1 where an
        energy is 0."""
        return (_precision(weak * self.P_l, self.E_W, np.ones(self.n_groups), False),
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
        block = SharedNoise(objective, objective.n_weighted)
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
        E_D, n_values = sq.sum(axis=0), np.full(q, counted_rows(X, w))
    else:
        JtJ, Jtr = net.gauss_newton(X, Y - T, w, chunk)
        G, b = np.asarray(JtJ, dtype=float)[None], np.asarray(Jtr, dtype=float)[None]
        E_D, n_values = np.array([sq.sum()]), np.array([counted_rows(X, w) * q])
    groups = parameter_groups(net) if groups is None else groups
    return Curvature(G, b, E_D, n_values, net.get_flat().astype(float), groups)


def counted_rows(X: Any, w: Any) -> float:
    """How many rows the data counts as: N, or the sum of the sample weights (an integer
    weight is that many repeated rows, in N_e as in E_D)."""
    return float(X.shape[0]) if w is None else float(w.sum())


class SharedNoise:
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
        system = self.obj.data_system(state, chunk)  # the samples' sums, no penalty
        if isinstance(system, DualSystem):  # fewer rows than P: J^T W J = A^T A
            system = system.primal()
        G = np.asarray(system.JtHJ, dtype=float)  # its upper triangle, all that is read
        self.norm = 2.0 / system.scale
        theta = self.obj.net.get_flat().astype(float)
        return Curvature(G[None], np.asarray(system.Jtg, dtype=float)[None],
                         self.energies(loss, state), np.array([self.n_values]), theta, groups)


class PerOutputNoise:
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
    def from_solver(cls, solver: Any, net: Network, X: Any, T: Any, *,
                    sample_weight: Any = None, chunk: int | None = None, dTdX: Any = None,
                    derivative_weight: float = 1.0) -> Laplace:
        """The posterior at the precisions a
        :class:`~jacnet.bayesian.BayesianRegularization` run ended with
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
