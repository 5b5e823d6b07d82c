"""Predictive uncertainty of a fitted regression network: the linearised posterior
(the delta method on the exact Jacobian), its Student-t intervals, split-conformal
intervals and the mixture of several members' predictive distributions.

The model, in the network's units (standardised targets where the estimator standardises)
------------------------------------------------------------------------------------------
Around the fitted theta the network is linear in theta, ``y_k(x) ~ y_k(x; theta) +
j_k(x)^T (theta' - theta)`` (``j_k = dy_k/dtheta``), and the posterior of theta is
Gaussian, ``N(theta, Sigma)`` (Laplace). The predictive variance of output ``k`` at ``x``
is the noise plus the spread of the mean::

    var_k(x) = sigma_k^2 + j_k(x)^T Sigma j_k(x),
    cov(x)_kl = delta_kl sigma_k^2 + j_k(x)^T Sigma j_l(x)     (the joint covariance).

Two sources of ``Sigma`` and ``sigma^2``:

- **Bayesian regularization** (``br``): ``Sigma = (2H)^-1``, ``H = beta J^T W J + alpha I``
  and ``sigma^2 = 1/(2 beta)``, at the alpha, beta the run found
  (:class:`jacnet.evidence.Laplace`).
- **A fit with a weight penalty** (``lm``, ``lbfgs``, the gradient solvers): the L2 term
  read as a Gaussian prior. Minimising ``sum w e^2 + lambda ||M theta||^2`` (``M`` the
  weights, not the biases) is the MAP estimate of a Gaussian likelihood of variance
  ``sigma^2`` and a prior of precision ``lambda / sigma^2`` on the weights; then
  ``Sigma = sigma^2 (J^T W J + Lambda)^-1`` with ``Lambda = diag(lambda M + eps (1 - M))``.
  The biases carry no penalty (an improper flat prior), and neither do the weights when
  ``lambda = 0``: those get the jitter ``eps = 1e-8 * mean(diag(J^T W J))`` (:data:`JITTER`),
  which keeps ``Sigma`` finite and leaves a direction the data do not determine at a huge
  variance, as it should. The noise variance is the residual variance with ``gamma``
  degrees of freedom, ``sigma^2 = E_D / (N_e - gamma)``, ``gamma = P - tr(Lambda (J^T W J
  + Lambda)^-1)`` the effective number of parameters (independent of sigma).

**Derivative data.** A fit given derivatives ``g`` (``fit(X, y, dydx=...)``) minimised the
squared errors of the values and of ``lambda (dy/dx - g)`` (``lambda`` the
``derivative_weight``): the likelihood of a derivative is Gaussian with the values' noise
variance over ``lambda^2``. The posterior's ``J^T W J`` then holds the Gauss-Newton terms
of both residuals (``jacnet.sobolev.SobolevObjective``'s sums), ``E_D`` both squared
errors and ``N_e`` the values and the observed derivatives; the predictive variance of a
value keeps the values' noise ``sigma^2``.

Both assume the fitted theta is the mode of the objective (a stochastic solver stopped
early is only near it) and the network is near-linear in theta over the posterior's
spread (the linearised Laplace approximation; MacKay 1992). The intervals are Student-t
with ``N_e - gamma`` degrees of freedom, ``mean +- t_{(1+c)/2} std``: the noise variance
is estimated, not known.

Memory: the (P, P) covariance factor and one chunk of J at a time, never N x P.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .evidence import Curvature, Laplace, curvature, parameter_groups
from .jacobian import default_chunk
from .network import Network
from .sobolev import SobolevData
from .validation import check_real

Array = np.ndarray

__all__ = ["JITTER", "INTERVAL_METHODS", "FitSums", "Posterior", "bayes_posterior",
           "bayes_posterior_from_sums", "check_coverage", "conformal_halfwidth", "gaussian_nll",
           "interval_scores", "mixture", "mixture_interval", "penalty_posterior",
           "penalty_posterior_from_sums", "t_halfwidth"]

#: The prior precision given to parameters the fit did not penalise, relative to the mean
#: diagonal of ``J^T W J`` (see the module docstring).
JITTER = 1e-8
#: The ways :func:`t_halfwidth` and :func:`conformal_halfwidth` make intervals.
INTERVAL_METHODS = ("t", "conformal")


@dataclass(frozen=True)
class Posterior:
    """The linearised posterior of a regression network, in the network's units.

    Attributes
    ----------
    covariance_factor : ndarray of shape (P, P)
        ``L`` with ``L L^T = Sigma``, the posterior covariance of theta.
    noise_variance : ndarray of shape (n_out,)
        ``sigma_k^2``.
    dof : float
        Degrees of freedom of the noise estimate, ``N_e - gamma`` (at least 1).
    effective_n_params : float
        ``gamma``.
    source : {"br", "penalty"}
        Bayesian regularization's own alpha, beta, or the fit's weight penalty.
    """

    covariance_factor: Array
    noise_variance: Array
    dof: float
    effective_n_params: float
    source: str

    def moments(self, net: Network, X: Array, *, cov: bool = False,
                chunk: int | None = None) -> Array:
        """The predictive variance per output, (N, n_out), or with ``cov`` the joint
        covariance of the outputs per sample, (N, n_out, n_out), at the rows ``X``
        (N, n_in) of the network's units; streamed over chunks of X (memory O(P^2 +
        chunk n_out P))."""
        N, q, P = X.shape[0], net.n_out, net.n_params
        step = chunk or default_chunk(N, q * P)
        L = self.covariance_factor
        out = np.empty((N, q, q) if cov else (N, q))
        for start in range(0, N, step):
            J = net.jacobian(X[start : start + step]).astype(float, copy=False)  # (n, q, P)
            Z = J @ L  # j_k^T Sigma j_l = (L^T j_k) . (L^T j_l)
            if cov:
                out[start : start + J.shape[0]] = Z @ Z.transpose(0, 2, 1)
            else:
                out[start : start + J.shape[0]] = np.einsum("nkp,nkp->nk", Z, Z)
        if cov:
            out[:, np.arange(q), np.arange(q)] += self.noise_variance
        else:
            out += self.noise_variance
        return out


def bayes_posterior(net: Network, X: Array, T: Array, w: Array | None, alpha: Any,
                    beta: Any, chunk: int | None = None,
                    derivatives: SobolevData | None = None) -> Posterior:
    """The posterior of a ``br`` fit at its ``alpha``, ``beta`` (trainbr's convention,
    :class:`jacnet.evidence.Laplace`) on its training rows ``(X, T, w)`` and, if it had
    them, their derivative data (see the module docstring)."""
    lap = Laplace(net, X, T, alpha, beta, sample_weight=w, chunk=chunk,
                  dTdX=None if derivatives is None else derivatives.G,
                  derivative_weight=1.0 if derivatives is None else derivatives.lam)
    gamma = lap.effective_n_params
    return Posterior(lap.covariance_factor, lap.noise_variance, _dof(lap.n_values, gamma),
                     gamma, "br")


@dataclass(frozen=True)
class FitSums:
    """The sums over a fit's training rows that its posterior is built from, at the fitted
    theta and in the network's units; a data-parallel fit (:mod:`jacnet.distributed`) adds
    them up over its partitions.

    Attributes
    ----------
    G : ndarray of shape (P, P)
        ``J^T W J``; only its upper triangle is read (as :class:`~jacnet.evidence.Curvature`'s).
    E_D : float
        ``sum_s w_s ||y_s - t_s||^2``.
    n_values : float
        ``N_e``: ``n_out`` times the rows' total weight (their number without weights),
        plus the weighted count of observed derivatives where the fit had them.
    mse_divisor : float
        ``n_out`` times the rows' total weight: what a mean squared error divides by (the
        derivative residuals share the values' divisor), so what turns the training loop's
        L2 penalty into a prior precision over the noise precision.
    """

    G: Array
    E_D: float
    n_values: float
    mse_divisor: float

    def curvature(self, net: Network, groups: Array) -> Curvature:
        """The sums as one noise block's :class:`~jacnet.evidence.Curvature` at ``net``'s
        theta (``J^T W e`` is not needed by a posterior: zeros)."""
        return Curvature(np.asarray(self.G, dtype=float)[None], np.zeros((1, net.n_params)),
                         np.array([self.E_D], dtype=float),
                         np.array([self.n_values], dtype=float),
                         net.get_flat().astype(float), groups)


def bayes_posterior_from_sums(net: Network, sums: FitSums, alpha: Any, beta: Any) -> Posterior:
    """:func:`bayes_posterior` from the training rows' :class:`FitSums`, for one ``alpha``
    and one shared ``beta`` (trainbr's model, :class:`jacnet.evidence.Laplace`'s steps)."""
    curv = sums.curvature(net, parameter_groups(net))
    a, b = np.atleast_1d(np.asarray(alpha, float)), np.atleast_1d(np.asarray(beta, float))
    factor = curv.factor(a, b)
    gamma = float(curv.gammas(factor, a, b)[0].sum())
    return Posterior(factor.covariance_factor(), np.full(net.n_out, 0.5 / b[0]),
                     _dof(sums.n_values, gamma), gamma, "br")


def penalty_posterior(net: Network, X: Array, T: Array, w: Array | None, ratio: float,
                      chunk: int | None = None, derivatives: SobolevData | None = None
                      ) -> Posterior:
    """The posterior of a fit that minimised ``sum w e^2 + ratio ||M theta||^2`` (the L2
    penalty on the weights as a Gaussian prior; see the module docstring) on ``(X, T, w)``.

    Parameters
    ----------
    net : Network
    X : ndarray of shape (N, n_in)
    T : ndarray of shape (N, n_out)
    w : ndarray of shape (N,) or None
    ratio : float
        ``lambda``, the prior precision of a weight over the noise precision (0: none).
    chunk : int, optional
    derivatives : SobolevData, optional
        The rows' derivative data, when the fit had them: their residuals join ``J``,
        ``E_D`` and ``N_e`` (see the module docstring).
    """
    curv = curvature(net, X, T, w, chunk=chunk, derivatives=derivatives)
    sums = FitSums(curv.G[0], float(curv.E_D.sum()), float(curv.n_values.sum()),
                   float((X.shape[0] if w is None else w.sum()) * T.shape[1]))
    return penalty_posterior_from_sums(net, sums, ratio)


def penalty_posterior_from_sums(net: Network, sums: FitSums, ratio: float) -> Posterior:
    """:func:`penalty_posterior` from the training rows' :class:`FitSums`."""
    groups = np.where(net.weight_mask() > 0, 0, 1)  # 0: weights, 1: biases
    curv = sums.curvature(net, groups)
    G = curv.G[0]
    jitter = JITTER * max(float(np.mean(np.diag(G))), np.finfo(float).tiny)
    lam = np.array([ratio if ratio > 0 else jitter, jitter])
    one = np.ones(1)
    factor = curv.factor(lam, one)  # of J^T W J + Lambda
    gamma = float(curv.gammas(factor, lam, one)[0].sum())
    dof = _dof(float(curv.n_values.sum()), gamma)
    sigma2 = float(curv.E_D.sum()) / dof
    # covariance_factor() is of (2 (J^T W J + Lambda))^-1; Sigma is sigma^2 (...)^-1
    L = factor.covariance_factor() * math.sqrt(2.0 * sigma2)
    return Posterior(L, np.full(net.n_out, sigma2), dof, gamma, "penalty")


def _dof(n_values: float, gamma: float) -> float:
    """``N_e - gamma``, at least 1 (with a warning): fewer leaves the noise unidentified."""
    dof = n_values - gamma
    if dof < 1:
        warnings.warn(f"the fit has N_e - gamma = {dof:.3g} degrees of freedom left "
                      f"({n_values:g} target values, {gamma:.4g} effective parameters): the "
                      "noise variance is not identified and the error bars are unreliable; "
                      "taken as 1", RuntimeWarning, stacklevel=3)
    return max(dof, 1.0)


def check_coverage(coverage: Any) -> float:
    """``coverage`` as a float in (0, 1), else the validator's TypeError/ValueError."""
    return check_real(coverage, "coverage", "a number in (0, 1)", lambda c: 0 < c < 1)


def t_halfwidth(std: Array, dof: float, coverage: float) -> Array:
    """``t_{(1+c)/2, dof} * std``: half the central interval of probability ``coverage``."""
    return stats.t.ppf(0.5 + 0.5 * coverage, dof) * std


def conformal_halfwidth(scores: Array, coverage: float) -> Array:
    """Split-conformal half-widths per output (Lei et al. 2018): the ``ceil((n + 1) c)``-th
    smallest of the ``n`` absolute residuals ``scores`` (n, n_out) of rows that did not
    train the model; ``ValueError`` (naming ``coverage``) when ``n`` is too small for it."""
    n = scores.shape[0]
    k = math.ceil((n + 1) * coverage)
    if k > n:
        need = math.ceil(coverage / (1 - coverage))
        raise ValueError(f"coverage={coverage!r} needs at least {need} validation rows for a "
                         f"conformal interval, the fit had {n}")
    return np.sort(scores, axis=0)[k - 1]


def mixture(means: Array, variances: Array) -> tuple[Array, Array]:
    """The mean and variance of an equal-weight mixture of M members' predictive
    distributions, ``means`` and ``variances`` of shape (M, ...): the mean of the means,
    and the mean of the variances plus the (population) variance of the means."""
    mean = means.mean(axis=0)
    return mean, variances.mean(axis=0) + ((means - mean) ** 2).mean(axis=0)


def mixture_interval(means: Array, stds: Array, dofs: Array, coverage: float
                     ) -> tuple[Array, Array]:
    """The central interval of probability ``coverage`` of an equal-weight mixture of
    Student-t members (location ``means``, scale ``stds``, (M, ...); ``dofs`` (M,), inf for
    a Gaussian): its exact ``(1 -+ c)/2`` quantiles, by bisection of the mixture's CDF
    between the members' own quantiles (which bracket it)."""
    dofs = np.asarray(dofs, dtype=float).reshape((-1,) + (1,) * (means.ndim - 1))
    stds = np.maximum(stds, np.finfo(float).tiny)  # a member without spread: a step CDF

    def quantile(p: float) -> Array:
        q_m = means + stats.t.ppf(p, dofs) * stds
        lo, hi = q_m.min(axis=0), q_m.max(axis=0)
        for _ in range(100):  # the bracket halves each time: 100 reach the float's spacing
            mid = 0.5 * (lo + hi)
            below = stats.t.cdf((mid - means) / stds, dofs).mean(axis=0) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    return quantile(0.5 - 0.5 * coverage), quantile(0.5 + 0.5 * coverage)


def gaussian_nll(y: Array, mean: Array, std: Array) -> Array:
    """The Gaussian negative log-likelihood of each value, in the data's units::

        nll = log(std) + (1/2) log(2 pi) + (y - mean)^2 / (2 std^2)

    ``y``, ``mean``, ``std``: arrays of one shape, (n,) or (n, n_out); the result has it too
    (average it for the mean per value). A zero std gives inf (or nan for a zero error)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(y, dtype=float) - mean) / std
        return np.log(std) + 0.5 * math.log(2 * math.pi) + 0.5 * z * z


def interval_scores(y: Array, lower: Array, upper: Array) -> tuple[Array, Array]:
    """``(inside, width)``, each of ``y``'s shape: whether each value lies in its interval
    ``[lower, upper]`` (1.0 or 0.0; average it for the coverage) and the interval's width."""
    y = np.asarray(y, dtype=float)
    return ((y >= lower) & (y <= upper)).astype(float), upper - lower
