"""``Ensemble``: several regressors fitted from different seeds, predicting with the mixture
of their predictive distributions (a scikit-learn meta-estimator).

Each member ``m`` gives a mean ``mu_m(x)`` and a predictive standard deviation ``s_m(x)``
(``predict(X, return_std=True)``: for jacnet's ``MLPRegressor`` its own linearised
posterior, :mod:`jacnet.uncertainty`). With equal weights the mixture has::

    mean = (1/M) sum_m mu_m,     var = (1/M) sum_m s_m^2 + (1/M) sum_m (mu_m - mean)^2,

the members' own uncertainty plus their disagreement (deep ensembles; Lakshminarayanan et
al. 2017). Its intervals are the mixture's exact quantiles, each member a Student-t with
its posterior's degrees of freedom (Gaussian for a member without them).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any, Self, TypeVar

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from .estimators import MLPRegressor
from .uncertainty import check_coverage, mixture, mixture_interval

Array = np.ndarray
Result = TypeVar("Result")

__all__ = ["Ensemble"]


def _fit_member(estimator: Any, X: Any, y: Any, sample_weight: Any) -> Any:
    if sample_weight is None:
        return estimator.fit(X, y)
    return estimator.fit(X, y, sample_weight=sample_weight)


class Ensemble(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """An ensemble of regressors fitted from different seeds.

    Parameters
    ----------
    estimator : regressor, optional
        The member to clone; its ``random_state`` is set per member. It must take
        ``predict(X, return_std=True)`` for the ensemble's uncertainty. Default:
        ``MLPRegressor(hidden_layer_sizes=(10,), activation="tanh", solver="br")``.
    n_members : int, default 5
    n_jobs : int, optional
        Members fitted in parallel (joblib; None: one at a time).
    random_state : int, RandomState or None
        Draws the members' seeds.

    Attributes
    ----------
    estimators_ : list of fitted regressors
    n_features_in_, feature_names_in_ : as in scikit-learn
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "estimator": [None, HasMethods(["fit", "predict"])],
        "n_members": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator: Any = None, n_members: int = 5, n_jobs: int | None = None,
                 random_state: Any = None) -> None:
        self.estimator = estimator
        self.n_members = n_members
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _member(self) -> Any:
        if self.estimator is None:
            return MLPRegressor(hidden_layer_sizes=(10,), activation="tanh", solver="br")
        return self.estimator

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Fit ``n_members`` clones of ``estimator``, each with its own ``random_state``
        drawn from the ensemble's.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Passed to every member's ``fit``.
        """
        self._validate_params()
        validate_data(self, X, y, multi_output=True, y_numeric=True, accept_sparse=True,
                      dtype=None, ensure_all_finite=True)  # the checks and n_features_in_
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(m, X, y, sample_weight) for m in self._new_members())
        return self

    def _new_members(self) -> list[Any]:
        """``n_members`` unfitted clones of ``estimator``, each with its own ``random_state``
        drawn from the ensemble's."""
        rs = check_random_state(self.random_state)
        seeds = rs.randint(np.iinfo(np.int32).max, size=self.n_members)
        members = []
        for seed in seeds:
            member = clone(self._member())
            if "random_state" in member.get_params(deep=False):
                member.set_params(random_state=int(seed))
            members.append(member)
        return members

    def fit_members(self, fit: Callable[[int, Any], Result]) -> list[Result]:
        """Fit the members one at a time with the caller's own fit, ``fit(k, member)``
        (e.g. ``member.fit_divided`` on a division, with a progress bar), on the same
        members (clones, seeds) as :meth:`fit`; the fitted attributes come from the first
        member. Returns what ``fit`` returned, per member.

        Parameters
        ----------
        fit : callable ``fit(k, member) -> result``
            Fits ``member`` (the k-th, from 0) in place.
        """
        self._validate_params()
        members = self._new_members()
        results = [fit(k, member) for k, member in enumerate(members)]
        self._set_members(members)
        return results

    def _set_members(self, members: list[Any]) -> None:
        self.estimators_ = members
        self.n_features_in_ = members[0].n_features_in_
        names = getattr(members[0], "feature_names_in_", None)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def to_state(self) -> tuple[list[tuple[dict[str, Array], dict[str, Any]]], dict[str, Any]]:
        """The fitted ensemble as its members' states (each ``member.to_state()``) and its
        own parameters ``{"n_members", "n_jobs", "random_state"}`` (an int or None: a
        ``RandomState`` instance is not stored); :meth:`from_state` is the inverse. Members
        must be jacnet ``MLPRegressor``s."""
        check_is_fitted(self, "estimators_")
        for member in self.estimators_:
            if not isinstance(member, MLPRegressor):
                raise TypeError(f"only an ensemble of jacnet MLPRegressors can be saved, got "
                                f"a member {type(member).__name__}")
        seed = self.random_state
        params = {"n_members": int(self.n_members), "n_jobs": self.n_jobs,
                  "random_state": int(seed) if isinstance(seed, Integral) else None}
        return [m.to_state() for m in self.estimators_], params

    @classmethod
    def from_state(cls, members: list[tuple[dict[str, Array], dict[str, Any]]],
                   params: dict[str, Any]) -> Self:
        """The ensemble of :meth:`to_state`'s ``(members, params)``: its ``estimator`` an
        unfitted clone of the first member."""
        fitted = [MLPRegressor.from_state(tensors, meta) for tensors, meta in members]
        ens = cls(clone(fitted[0]), n_members=len(fitted), n_jobs=params.get("n_jobs"),
                  random_state=params.get("random_state"))
        ens._set_members(fitted)
        return ens

    def _members_predict(self, X: Any) -> tuple[Array, Array]:
        """Every member's mean and std, stacked: (M, n_samples[, n_outputs]) each."""
        check_is_fitted(self, "estimators_")
        validate_data(self, X, reset=False, accept_sparse=True, dtype=None,
                      ensure_all_finite=True)
        pairs = [m.predict(X, return_std=True) for m in self.estimators_]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """The mixture's mean (n_samples,) or (n_samples, n_outputs); with ``return_std``
        also its standard deviation (same shape): mean of the members' variances plus
        the variance of their means."""
        if not return_std:
            check_is_fitted(self, "estimators_")
            validate_data(self, X, reset=False, accept_sparse=True, dtype=None,
                          ensure_all_finite=True)
            return np.mean([m.predict(X) for m in self.estimators_], axis=0)
        means, stds = self._members_predict(X)
        mean, var = mixture(means, stds ** 2)
        return mean, np.sqrt(var)

    def predict_interval(self, X: Any, coverage: float = 0.95) -> tuple[Array, Array]:
        """``(lower, upper)``: the central interval of probability ``coverage`` in (0, 1)
        of the mixture (each member a Student-t with its posterior's degrees of freedom,
        ``posterior_.dof``, or a Gaussian)."""
        coverage = check_coverage(coverage)
        means, stds = self._members_predict(X)
        dofs = [getattr(getattr(m, "posterior_", None), "dof", np.inf)
                for m in self.estimators_]
        return mixture_interval(means, stds, np.asarray(dofs, dtype=float), coverage)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
