"""scikit-learn estimators: drop-in ``MLPRegressor`` and ``MLPClassifier``.

Every constructor parameter of scikit-learn's estimators of the same names keeps its name,
default and meaning where it applies; jacnet adds Levenberg-Marquardt (``solver="lm"``
with trainlm's ``mu``, ``mu_dec``, ``mu_inc``, ``mu_max``, ``goal``, ``min_grad``), AdamW
and RMSprop, per-layer and vector activations, ``output_activation``, ``dtype``,
standardisation, ``network_``, ``training_record_`` and exact Jacobians.

Differences from scikit-learn, by design:

- ``early_stopping`` watches the validation score for the mini-batch solvers, as
  scikit-learn does, and keeps the weights of the highest score;
  ``early_stopping_metric="loss"`` (the default of ``lbfgs`` and ``lm``, which scikit-learn
  does not stop early) watches the validation *loss* instead and restores the weights of
  the lowest, ``best_validation_score_`` being their score (docs/training.md, "The
  estimators as scikit-learn's MLP").
- ``standardize="auto"`` standardises inputs (and regression targets) for ``solver="lm"``
  only; the model's outputs, ``coefs_``, ``jacobian`` and ``input_jacobian`` are in the
  units of the original data all the same.
- With ``early_stopping=True`` and ``early_stopping_metric="loss"``,
  ``learning_rate="adaptive"`` runs scikit-learn's rule on the validation loss:
  ``n_iter_no_change + 1`` epochs in a row without a fall by more than ``tol`` divide the
  rate by 5, and stop training once it is at most 1e-6; otherwise it is scikit-learn's
  rule exactly.
- ``warm_start=True`` carries the optimizer's state (Adam's moments, LM's mu) into the
  next ``fit``, so two fits of ``max_iter`` epochs equal one of twice as many; scikit-learn
  restarts its optimizer. ``loss_curve_`` and ``t_`` continue and ``n_iter_`` counts the
  new fit's epochs, as there.
- ``solver="sgd"`` with momentum keeps PyTorch's velocity (see :class:`jacnet.optimizers.SGD`):
  the same iterates as scikit-learn's while the rate is constant, different ones once
  ``learning_rate="invscaling"`` or ``"adaptive"`` changes it.
- With ``sample_weight``, the stochastic solvers divide ``alpha`` by the batch size;
  scikit-learn divides it by the batch's weight sum (as jacnet's ``lbfgs`` and ``lm`` do
  with the data's), so weights scaled up together weaken its penalty and not jacnet's.
- ``loss_``, ``loss_curve_`` and ``best_loss_`` are in the units of the data even when the
  targets are standardised inside the model (``solver="lm"``); ``training_record_`` holds
  the objective as trained (standardised units, the ones ``min_grad`` and ``val_loss``
  use). ``goal`` is MATLAB's: the mean squared error in the targets' own units.
- Sparse input is made dense for the engine (the memory of the dense matrix).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import division
from .activations import Activation, Sigmoid, Softmax, Sparsemax, get_activation
from .fitplan import (
    NEVER,
    BestScore,
    FitPlan,
    MSEGoal,
    SGDRate,
    SklearnStall,
    patience,
    score_callback,
    test_loss_callback,
)
from .layers import Dense
from .losses import Loss, Scaled, get_loss
from .modelfile import PREPROCESSING, build_network, network_state, state_document, write
from .network import Network
from .optimizers import l2_penalty
from .record import STOP_REASONS, TrainingRecord
from .schedules import Schedule
from .sobolev import SobolevData, as_derivatives, check_second_order
from .solvers import Solver
from .training import SOLVERS, STOCHASTIC, Callback, train
from .uncertainty import (
    INTERVAL_METHODS,
    FitSums,
    Posterior,
    bayes_posterior,
    bayes_posterior_from_sums,
    check_coverage,
    conformal_halfwidth,
    penalty_posterior,
    penalty_posterior_from_sums,
    t_halfwidth,
)
from .validation import check_choice, positive_int

Array = np.ndarray

__all__ = ["MLPRegressor", "MLPClassifier", "expected_failed_checks"]

# The solvers come from the registry (jacnet.training.SOLVERS).
_STOCHASTIC = STOCHASTIC
# The built-in output activations each classifier loss can take: rows that sum to one for
# categorical cross-entropy, outputs in (0, 1) for binary cross-entropy.
_SIMPLEX: tuple[type[Activation], ...] = (Softmax, Sparsemax)
_UNIT: tuple[type[Activation], ...] = (Sigmoid,)
# The input types the estimators take as they are; anything else becomes float64.
_FLOATS = (np.float64, np.float32)
# Sparse inputs are accepted and made dense for the engine (see _dense).
_SPARSE = ("csr", "csc", "coo")
_SCHEDULES = {"constant": "constant", "invscaling": "invscaling", "adaptive": "reduce_on_plateau"}
# The fitted attributes a state (and a model file) holds, in the file's order; from_state
# sets these and nothing else (a file is untrusted input).
_FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
           "best_validation_score_", "n_layers_", "n_outputs_", "n_features_in_",
           "out_activation_", "_multiclass", "_y_1d", "alpha_", "beta_", "gamma_",
           "log_evidence_")
#: The largest network (parameters) whose posterior a model file stores: its covariance
#: factor is P x P floats (32 MiB at this size), computed when the estimator is saved.
STORED_POSTERIOR_MAX_PARAMS = 2048


def _dense(X: Any) -> Array:
    """``X`` as a dense array: the engine multiplies dense blocks, so a sparse input costs
    the memory of its dense form (n_samples x n_features) while it trains or predicts."""
    return X.toarray(order="C") if sp.issparse(X) else X


def _row_positions(idx: Any, name: str, n_rows: int) -> Array:
    """``idx`` (row positions, or a boolean mask over the rows) as int64 positions."""
    arr = np.asarray(idx).reshape(-1)
    if arr.dtype == bool:
        if arr.size != n_rows:
            raise ValueError(f"{name} as a boolean mask must have {n_rows} entries, "
                             f"got {arr.size}")
        return np.flatnonzero(arr)
    if not arr.size:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer row positions or be a boolean mask, "
                         f"got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_rows:
        raise ValueError(f"{name} must hold row positions in [0, {n_rows}), got values "
                         f"from {arr.min()} to {arr.max()}")
    return arr.astype(np.int64, copy=False)


def _layers_and_split(sizes: Any, acts: Any, validation_fraction: float,
                      early_stopping: bool) -> tuple[list[int], list[Activation]]:
    """The per-layer checks that ``_parameter_constraints`` cannot express: the hidden
    sizes as positive ints, one activation (name or instance) or one per hidden layer,
    and a validation set when ``early_stopping`` needs one."""
    sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, Integral) or int(s) <= 0:
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {sizes}")
    if isinstance(acts, (list, tuple)):
        if len(acts) != len(sizes):
            raise ValueError(
                f"activation must be one name/Activation or a list with one per hidden "
                f"layer ({len(sizes)}), got a list of {len(acts)}"
            )
        hidden = [get_activation(a) for a in acts]
    else:
        hidden = [get_activation(acts) for _ in sizes]
    if validation_fraction == 0 and early_stopping:
        raise ValueError("validation_fraction must be in (0, 1) with early_stopping=True, "
                         f"got {validation_fraction!r}")
    return sizes, hidden


def _regression_only(solver: str) -> bool:
    """Whether the registered solver fits squared errors only (Bayesian regularization)."""
    return bool(getattr(SOLVERS[solver], "regression_only", False))


class _BaseMLP(BaseEstimator):
    """Shared machinery; see MLPRegressor and MLPClassifier for the parameters."""

    n_outputs_: int
    training_record_: TrainingRecord

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: Any = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: float = 10,
        max_fun: int = 15000,
        output_activation: Any = None,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        goal: float = 0.0,
        min_grad: float = 1e-7,
        standardize: Any = "auto",
        dtype: Any = None,
        early_stopping_metric: str = "auto",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.output_activation = output_activation
        self.mu = mu
        self.mu_dec = mu_dec
        self.mu_inc = mu_inc
        self.mu_max = mu_max
        self.goal = goal
        self.min_grad = min_grad
        self.standardize = standardize
        self.dtype = dtype
        self.early_stopping_metric = early_stopping_metric

    # ------------------------------------------------------------ to override
    def targets(self, y: Any, incremental: bool, reset: bool) -> Array:
        """The network's targets ``T`` (n_samples, n_outputs) for ``y``.

        Sets ``n_outputs_`` (and a classifier's ``label_binarizer_`` and ``classes_`` when
        ``reset``); ``incremental``: a ``partial_fit`` call, where only unseen classes fail.
        """
        raise NotImplementedError

    def _output(self) -> tuple[Activation, Loss]:
        raise NotImplementedError

    def _score_fn(self, y: Any, pred: Any, sample_weight: Any = None) -> float:
        raise NotImplementedError

    def _val_targets(self, T: Array) -> Any:
        return T

    # ------------------------------------------------------------ validation
    # scikit-learn's declarative checks, run by BaseEstimator._validate_params; what they
    # cannot say (each hidden size, one activation per hidden layer, a validation set for
    # early stopping) is checked by _layers_and_split below.
    _parameter_constraints: dict[str, list[Any]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [str, Activation, list, tuple],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(_SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        # scikit-learn accepts [0, 1); a validation set needs a positive fraction
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        # np.inf: never stop for want of improvement (scikit-learn's value for warm starts)
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "output_activation": [None, str, Activation],
        # Levenberg-Marquardt (MATLAB trainlm's settings)
        "mu": [Interval(Real, 0, None, closed="neither")],
        "mu_dec": [Interval(Real, 0, 1, closed="neither")],
        "mu_inc": [Interval(Real, 1, None, closed="neither")],
        "mu_max": [Interval(Real, 0, None, closed="neither")],
        "goal": [Interval(Real, 0, None, closed="left")],
        "min_grad": [Interval(Real, 0, None, closed="left")],
        "standardize": [StrOptions({"auto"}), "boolean"],
        "early_stopping_metric": [StrOptions({"auto", "score", "loss"})],
        "dtype": [None, StrOptions({"float32", "float64"}),
                  Options(type, {np.float32, np.float64}),
                  Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64)})],
    }

    def validated_params(self) -> tuple[list[int], list[Activation]]:
        """Check every parameter; return the hidden layer sizes and their activations.

        Raises ``sklearn.utils._param_validation.InvalidParameterError`` (a ValueError and
        a TypeError) naming the parameter, or a ValueError for what the constraints
        cannot express.
        """
        self._validate_params()
        if isinstance(self, ClassifierMixin) and _regression_only(self.solver):
            usable = sorted(n for n in SOLVERS if not _regression_only(n))
            raise ValueError(f"solver={self.solver!r} fits regression only (squared errors); "
                             f"{type(self).__name__} takes one of {usable}")
        return _layers_and_split(self.hidden_layer_sizes, self.activation,
                                 self.validation_fraction, self.early_stopping)

    def _standardizes(self) -> bool:
        if self.standardize == "auto":  # the Gauss-Newton solvers' mu, goal and alpha scale
            return self.solver in ("lm", "br")
        return bool(self.standardize)

    def fit_dtype(self, input_dtype: Any) -> np.dtype:
        """The network's float type for a fresh fit on input of ``input_dtype``: ``dtype``
        when set, else scikit-learn's rule (float32 input stays float32, any other input
        trains in float64)."""
        if self.dtype is None:
            return np.dtype(np.float32 if np.dtype(input_dtype) == np.float32 else np.float64)
        return np.dtype(self.dtype)

    def _by_score(self) -> bool:
        """Whether early stopping watches the validation score (scikit-learn's rule, the
        default of the mini-batch solvers) rather than the validation loss (trainlm's)."""
        if self.early_stopping_metric == "auto":
            return self.solver in _STOCHASTIC
        return self.early_stopping_metric == "score"

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None, *, dydx: Any = None
            ) -> _BaseMLP:
        """Fit the model to ``X`` (n_samples, n_features) and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A dask array or DataFrame trains on its Dask cluster (``solver`` "lbfgs",
            "lm" or "br"; see ``jacnet.distributed``), with ``y``, ``sample_weight`` and
            ``dydx`` chunked with its rows (in memory, they are sent to the cluster once).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
        dydx : array-like of shape (n_samples, n_outputs, n_features), optional
            Regression only (``MLPRegressor``): derivative data, ``dydx[s, i, d]`` the
            observed ``dy_i/dx_d`` at sample s ((n_samples, n_features) for one output),
            NaN where not observed; fitted with the values, weighted by
            ``derivative_weight`` (docs/training.md, "Derivative data").

        Returns
        -------
        self
        """
        self._no_derivatives_here(dydx)
        dask = sys.modules.get("dask")  # loaded whenever X can be a dask collection
        if dask is not None and dask.is_dask_collection(X):
            from .distributed import fit_estimator

            return fit_estimator(self, X, y, sample_weight, dydx=dydx)
        return self._fit(X, y, sample_weight, incremental=False, dydx=dydx)

    def _no_derivatives_here(self, dydx: Any) -> None:
        """A classifier's ValueError for derivative data (regressors take it)."""
        if dydx is not None and isinstance(self, ClassifierMixin):
            raise ValueError(f"dydx (derivative data) is for regression: {type(self).__name__} "
                             "fits class probabilities; use MLPRegressor")

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool, dydx: Any = None
             ) -> _BaseMLP:
        """``fit`` (``incremental=False``) and ``partial_fit`` on in-memory data."""
        self._no_derivatives_here(dydx)
        sizes, hidden = self.validated_params()
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, multi_output=True, dtype=_FLOATS,
                             accept_sparse=_SPARSE, reset=first,
                             y_numeric=not isinstance(self, ClassifierMixin))
        dtype = self.fit_dtype(X.dtype) if first else self.network_.dtype
        X = _dense(X).astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        T = self.targets(y, incremental, reset=first).astype(dtype, copy=False)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=dtype, ensure_non_negative=True)
        G = self._derivatives(dydx, X.shape[0], X.shape[1], dtype)
        rs = check_random_state(self.random_state)
        if first:
            self.init_model(X, T, sizes, hidden, dtype, rs, sw)
        self._second_order(G, first)
        self.execute_plan(self.plan_fit(self.scale_in(X), self.scale_out(T), sw, rs,
                                        first=first, incremental=incremental,
                                        dydx=self.scale_derivatives(G)))
        return self

    def _derivatives(self, dydx: Any, n_rows: int, n_features: int, dtype: np.dtype
                     ) -> Array | None:
        """``dydx`` checked: (n_rows, n_outputs, n_features) of ``dtype`` (NaN kept), or
        None; after :meth:`targets` (``n_outputs_``). A ValueError names ``dydx``."""
        if dydx is None:
            return None
        if getattr(self, "loss", None) != "squared_error":
            raise ValueError(f"dydx (derivative data) needs loss='squared_error', got "
                             f"loss={getattr(self, 'loss', None)!r}")
        return as_derivatives(_dense(dydx) if sp.issparse(dydx) else dydx, n_rows,
                              self.n_outputs_, n_features, dtype, "dydx",
                              ("n_outputs", "n_features"))

    def _second_order(self, G: Array | None, first: bool) -> None:
        """With derivative data, every layer's activation needs its second-order term; a
        fresh model that lacks it is left unfitted (the ValueError names ``dydx``)."""
        if G is None:
            return
        try:
            check_second_order(self.network_, "dydx")
        except ValueError:
            if first:
                del self.network_
            raise

    def fit_divided(self, X: Any, y: Any, train: Any, validation: Any = (), test: Any = (),
                    *, max_fail: int | None = None, callbacks: Sequence[Any] = (),
                    dydx: Any = None) -> TrainingRecord:
        """Fit on the rows ``train``, stop early on the rows ``validation``, log ``test``.

        MATLAB's ``divideind`` with trainlm's early stopping: the initial weights and the
        standardisation statistics come from the training rows only. With validation rows,
        training stops after ``max_fail`` epochs in a row without a lower validation loss
        (default ``n_iter_no_change + 1``, as ``fit`` with ``early_stopping``) and keeps the
        best weights; with ``solver="sgd"`` and ``learning_rate="adaptive"`` such a streak
        divides the rate by 5 instead, and stops training once the rate is at most 1e-6
        (scikit-learn's rule, as in ``fit``). Without validation rows ``fit``'s own
        stopping rules apply. With test rows every
        epoch of the record gets a ``test_loss`` (the objective on those rows; they never
        steer training). Always a fresh fit; ``early_stopping`` and ``validation_fraction``
        do not apply.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        train, validation, test : sequences of int, or boolean masks over the rows
            Row positions of the three parts (a mask names the rows where it is true).
        max_fail : int, optional
            Patience of the early stop on the validation rows.
        callbacks : sequence of callables
            Each is called as ``callback(entry, network)`` after every epoch (after the test
            loss is entered); a true return value stops training.
        dydx : array-like of shape (n_samples, n_outputs, n_features), optional
            Derivative data of every row (as in :meth:`fit`; NaN: not observed); the
            training rows' are fitted, the validation and test rows are judged on their
            values.

        Returns
        -------
        TrainingRecord
            Also ``training_record_``; its ``division`` holds the three index arrays.
        """
        from sklearn.utils import _safe_indexing
        from sklearn.utils.validation import _num_samples

        self._no_derivatives_here(dydx)
        parts = {name: _row_positions(idx, name, _num_samples(X))
                 for name, idx in (("train", train), ("validation", validation),
                                   ("test", test))}
        if not len(parts["train"]):
            raise ValueError("train must name at least one row")
        if max_fail is not None:
            positive_int(max_fail, "max_fail")
        sizes, hidden = self.validated_params()
        y = np.asarray(y)

        def rows(idx: Array, reset: bool, dtype: np.dtype | None = None
                 ) -> tuple[Array, Array]:
            Xp = validate_data(self, _safe_indexing(X, idx), reset=reset, dtype=_FLOATS,
                               accept_sparse=_SPARSE)
            dtype = self.fit_dtype(Xp.dtype) if dtype is None else dtype
            # validation and test rows may lack a class (incremental: only unseen ones fail)
            Tp = self.targets(y[idx], incremental=not reset, reset=reset)
            return _dense(Xp).astype(dtype, copy=False), Tp.astype(dtype, copy=False)

        X_tr, T_tr = rows(parts["train"], reset=True)
        G = self._derivatives(dydx, _num_samples(X), X_tr.shape[1], X_tr.dtype)
        rs = check_random_state(self.random_state)
        self.init_model(X_tr, T_tr, sizes, hidden, X_tr.dtype, rs, None)
        self._second_order(G, True)

        def scaled(idx: Array) -> tuple[Array, Array] | None:
            if not len(idx):
                return None
            Xp, Tp = rows(idx, reset=False, dtype=X_tr.dtype)
            return self.scale_in(Xp), self.scale_out(Tp)

        val, test = scaled(parts["validation"]), scaled(parts["test"])
        plan = self.plan_fit(self.scale_in(X_tr), self.scale_out(T_tr), None, rs,
                             validation=None if val is None else (*val, None), test=test,
                             division=parts, max_fail=max_fail, callbacks=list(callbacks),
                             dydx=None if G is None else self.scale_derivatives(G[parts["train"]]))
        return self.execute_plan(plan)

    def execute_plan(self, plan: FitPlan,
                     posterior_sums: Callable[[], FitSums | None] | None = None
                     ) -> TrainingRecord:
        """Run ``plan`` (:meth:`plan_fit`) on ``network_`` and set the fitted attributes
        from its record; the record (also ``training_record_``). ``posterior_sums``: how a
        fit whose rows are not in memory (Dask) sums them for a regressor's posterior, at
        the fitted weights (None when it cannot)."""
        record = plan.run(self.network_)
        # the validation score of the weights kept (early stopping restores the best)
        if plan.best is not None:
            kept_score: float | None = plan.best.best
        else:
            kept_score = None if plan.scorer is None else plan.scorer(self.network_)
        self._after_fit(record, plan.data[0].shape[0], plan.incremental, plan.first,
                        kept_score)
        self._check_finite(record, plan)
        self._keep_for_uncertainty(plan, posterior_sums)
        return record

    def _keep_for_uncertainty(self, plan: FitPlan,
                              posterior_sums: Callable[[], FitSums | None] | None) -> None:
        """What a regressor's predictive uncertainty needs from the fit (nothing here)."""

    def _check_finite(self, record: TrainingRecord, plan: FitPlan) -> None:
        """scikit-learn's ValueError when ``fit`` or ``partial_fit`` leaves a model that
        cannot fit its own training rows (non-finite weights, or outputs or a loss that
        overflow there); a RuntimeWarning when the run diverged but the last finite weights
        kept still do, and always from ``fit_divided``, whose caller keeps the record of
        the diverged run (the command line writes it)."""
        X, T, _ = plan.data
        net = self.network_
        broken = not np.isfinite(net.theta).all()
        if not broken and record.stop_reason == "non_finite" and plan.division is None \
                and isinstance(X, np.ndarray):
            with np.errstate(over="ignore", invalid="ignore"):
                Y = net.forward(X)
                broken = not (np.isfinite(Y).all()
                              and math.isfinite(net.loss(X, T, plan.options["loss"])))
        if broken:
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        if record.stop_reason == "non_finite":
            warnings.warn(f"training stopped: {STOP_REASONS['non_finite']}; the last finite "
                          "weights were kept. Scale the inputs or lower learning_rate_init.",
                          RuntimeWarning, stacklevel=4)

    def init_model(self, X: Array, T: Array, sizes: list[int], hidden: list[Activation],
                   dtype: np.dtype, rs: np.random.RandomState, sw: Array | None) -> None:
        """A fresh ``network_`` (scikit-learn's initial weights drawn from ``rs``), the
        standardisation statistics of ``X`` (n_samples, n_features) and ``T`` (n_samples,
        n_outputs) under the weights ``sw``, and the fitted attributes' starting values.
        ``sizes`` and ``hidden``: :meth:`validated_params`."""
        out_act, _ = self._output()
        widths = [X.shape[1], *sizes, T.shape[1]]
        acts = [*hidden, out_act]
        layers = [Dense(a, b, f) for a, b, f in zip(widths[:-1], widths[1:], acts, strict=True)]
        self.network_ = Network(layers, seed=0, dtype=dtype)
        _init_like_sklearn(self.network_, rs, self.activation in ("logistic", "sigmoid"))
        self.x_mean_: Array | None = None
        self.x_scale_: Array | None = None
        self.y_mean_: Array | None = None
        self.y_scale_: Array | None = None
        if self._standardizes():
            # weighted moments: an integer weight must act as repeated rows
            self.x_mean_, self.x_scale_ = _weighted_moments(X, sw)
            if self._standardizes_targets():
                self.y_mean_, self.y_scale_ = _weighted_moments(T, sw)
        self._solver: Solver | None = None  # the last fit's solver: warm starts continue it
        self._stalls: dict[str, SklearnStall] = {}  # scikit-learn's rule, by the loss watched
        # A model file's extra (io.load) describes the data of that fit, not a fresh one's.
        self._file_extra: dict[str, Any] | None = None
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_validation_score_: float | None = -np.inf if self.early_stopping else None
        self.best_loss_: float | None = None if self.early_stopping else np.inf
        self.n_layers_ = len(sizes) + 2
        self.out_activation_ = {"sigmoid": "logistic"}.get(out_act.name, out_act.name)

    def _standardizes_targets(self) -> bool:
        return False

    def plan_fit(self, X: Array, T: Array, sw: Array | None, rs: np.random.RandomState, *,
                 first: bool = True, incremental: bool = False,
                 validation: tuple[Array, Array, Array | None] | None = None,
                 test: tuple[Array, Array] | None = None,
                 division: dict[str, Array] | None = None, max_fail: int | None = None,
                 callbacks: Sequence[Callback] = (),
                 trainer: Callable[..., TrainingRecord] = train,
                 dydx: Array | None = None) -> FitPlan:
        """The plan of one fit (see :mod:`jacnet.fitplan`), on data in the network's units.

        Parameters
        ----------
        X, T, sw : arrays (n, n_features), (n, n_outputs), (n,) or None
            Scaled (:meth:`scale_in`, :meth:`scale_out`). Without ``division`` and with
            ``early_stopping``, scikit-learn's validation split is taken of them.
        rs : numpy.random.RandomState
            The fit's random state (after :meth:`init_model`): the split, then the
            loop's seed, are drawn from it.
        first, incremental : bool
            A fresh model; a ``partial_fit`` epoch.
        validation, test : scaled rows, optional
            The caller's (``fit_divided``).
        division : dict of str to int array, optional
            The caller's division, recorded; nothing is split off and no progress bar is
            shown (the caller passes its own as a callback).
        max_fail : int, optional
            Patience on the validation rows (:func:`jacnet.fitplan.patience`).
        callbacks : sequence of callables ``cb(entry, network)``
            Called after the plan's own callbacks.
        trainer : callable
            ``jacnet.train``, or the Dask trainer; only ``jacnet.train`` gets the loss in
            scikit-learn's units (elsewhere it would cost a pass over the data an epoch).
        dydx : ndarray of shape (n, n_outputs, n_features), optional
            Derivative data of the rows, scaled (:meth:`scale_derivatives`; NaN: not
            observed): the trainer's ``dTdX``.
        """
        if incremental and self.solver not in _STOCHASTIC:
            raise ValueError(f"partial_fit needs a stochastic solver {_STOCHASTIC}, "
                             f"got solver={self.solver!r}")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if division is None and self.early_stopping:
            (X, T, sw), validation, dydx = self._split(X, T, sw, rs, dydx)
        # scikit-learn's early stopping (on fit's own split): the validation score
        by_score = validation is not None and division is None and self._by_score()
        wait = patience(self.solver, self.n_iter_no_change, max_fail)
        n = X.shape[0]
        bs = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        stall, schedule = self._sklearn_rules(validation is not None, by_score, incremental,
                                              n, wait)
        solver = self._solver_for(bs, schedule)
        options = self._loop_options(n if sw is None else float(sw.sum()), bs, rs,
                                     incremental, stall)
        # the estimators print scikit-learn's lines, never the command line's progress bar
        # br never stopped by its validation rows (trainbr's max_fail = inf) keeps its
        # last weights, the evidence maximum, not those of the best validation epoch
        last = self.solver == "br" and wait == NEVER
        options.update(early_stopping=validation is not None and stall is None,
                       max_fail=wait, verbose=False, restore_best=not (by_score or last))
        scorer = None
        if validation is not None and self.early_stopping:
            scorer = self._val_scorer(*validation)
        plan = FitPlan(solver, options, (X, T, sw), validation, test, stall, [], scorer,
                       division, incremental, first, trainer, derivatives=dydx)
        if dydx is not None:
            options["derivative_weight"] = getattr(self, "derivative_weight", 1.0)
        if by_score:
            best = self.best_validation_score_
            plan.best = BestScore(self.network_.get_flat(), -np.inf if best is None else best)
        self._add_callbacks(plan)
        plan.callbacks.extend(callbacks)
        return plan

    def _add_callbacks(self, plan: FitPlan) -> None:
        """The plan's own epoch callbacks, in order: the test loss, the validation score,
        the best-score weights, the loss in scikit-learn's units with the goal's mean
        squared error, and scikit-learn's verbose lines. Sets ``goal``'s rule or option."""
        X, T, sw = plan.data
        options = plan.options
        if plan.test is not None:
            plan.callbacks.append(test_loss_callback(plan.test, options["loss"]))
        if plan.scorer is not None:
            plan.callbacks.append(score_callback(plan.scorer))
        if plan.best is not None:
            plan.callbacks.append(plan.best)
        mse_goal = self.goal > 0 and getattr(self, "loss", None) == "squared_error"
        if plan.trainer is train:
            outputs = self._outputs_on(X, plan.solver)  # shared by both measures below
            if plan.derivatives is None:  # loss_curve_ in the data's units (with
                # derivatives it is the objective as trained, values and derivatives)
                plan.callbacks.append(self._epoch_callback(T, sw, options["alpha"], outputs))
            if mse_goal:  # MATLAB's goal: the mean squared error in the targets' units
                rule = MSEGoal(self.goal, self._mse_of(T, sw, outputs))
                plan.rules.append(rule)
                plan.callbacks.append(rule.callback)
                options["goal"] = 0.0
        elif mse_goal:
            # the Dask trainer: the goal on the trained objective (half the MSE in
            # standardised units plus the penalty), exact for one output and alpha 0
            scale = 1.0 if self.y_scale_ is None else float(np.mean(self.y_scale_ ** 2))
            options["goal"] = self.goal / (2.0 * scale)
        if self.verbose and plan.division is None:  # fit_divided's caller shows its own
            plan.callbacks.append(_print_epoch)

    def _outputs_on(self, X: Array, solver: Solver) -> Callable[[Network], Array]:
        """``outputs(network)``: the network's outputs on the scaled training rows ``X``,
        in the targets' own units, once per set of weights: the epoch's callbacks (the loss
        in scikit-learn's units, the goal's mean squared error) share them, and take them
        from the ``solver`` when it holds them at these weights (Levenberg-Marquardt's
        accepted trial), so that no forward pass of their own runs."""
        last: list[Array] = []  # [theta, outputs] of the last call

        def outputs(net: Network) -> Array:
            if not last or not np.array_equal(last[0], net.theta):
                Y = solver.outputs_on(X)
                Y = net.forward(X) if Y is None else Y
                last[:] = [net.get_flat(), self._unscale_out(Y)]
            return last[1]

        return outputs

    def _mse_of(self, T: Array, w: Array | None, outputs: Callable[[Network], Array]
                ) -> Callable[[Network], float]:
        """``measure(network)``: the mean squared error over samples (weighted by ``w``)
        and outputs of the scaled rows ``(X, T)``, in the targets' own units (``outputs``:
        :meth:`_outputs_on` of ``X``)."""
        T_data = self._unscale_out(T)

        def measure(net: Network) -> float:
            E = outputs(net) - T_data
            return float(np.average(np.mean(E * E, axis=1), weights=w))

        return measure

    def _loop_options(self, n_weight: float, bs: int, rs: np.random.RandomState,
                      incremental: bool, stall: SklearnStall | None) -> dict[str, Any]:
        """``jacnet.train``'s loop and stop-rule options of a fit whose training rows weigh
        ``n_weight`` (their number, or their weights' sum); draws the loop's seed."""
        stochastic = self.solver in _STOCHASTIC
        _, loss = self._output()
        return {
            "loss": loss, "max_epochs": 1 if incremental else self.max_iter,
            # scikit-learn's penalty: alpha/2 ||W||^2 divided by the samples in the objective;
            # Bayesian regularization finds its own weight precision from the data
            "alpha": 0.0 if self.solver == "br" else self.alpha / (bs if stochastic else n_weight),
            "seed": int(rs.randint(2**31 - 1)),
            "tol": self.tol if stochastic and (stall is None or stall.key != "loss") else 0.0,
            "goal": self.goal, "min_grad": self.tol if self.solver == "lbfgs" else self.min_grad,
        }

    def _sklearn_rules(self, validation: bool, by_score: bool, incremental: bool, n: int,
                       wait: int) -> tuple[SklearnStall | None, str | Schedule]:
        """scikit-learn's no-improvement rule (None where the loop's own rules apply, see
        :meth:`_stall_rule`), its best and count carried over from the last fit, and the
        learning-rate schedule (:class:`~jacnet.fitplan.SGDRate` for sgd) of a fit on
        ``n`` training rows; ``wait``: the patience on validation rows."""
        rule = self._stall_rule(validation, by_score)
        stall = None
        if rule is not None:
            stall = self._stalls.setdefault(rule, SklearnStall(rule))
            stall.limit = wait if rule != "loss" else self.n_iter_no_change + 1
            self._stall_now = stall
            stall.tol = self.tol
        schedule: str | Schedule = "constant"
        if self.solver == "sgd" and (rule is not None or self.learning_rate == "invscaling"):
            lr_now = self.learning_rate_init
            carried = self._stalls.get("loss")
            if self.learning_rate == "adaptive" and incremental and carried is not None \
                    and carried.rate is not None:
                lr_now = carried.rate.current
            schedule = SGDRate(self.learning_rate_init, self.learning_rate, self.power_t,
                               t0=self.t_, n_samples=n, current=lr_now)
            if stall is not None:
                stall.rate = schedule
        return stall, schedule

    def _solver_for(self, bs: int, schedule: str | Schedule) -> Solver:
        """The solver object of ``self.solver`` with the estimator's settings, continuing
        the state of the last fit's (Adam's moments, LM's mu) where it applies."""
        if self.solver in _STOCHASTIC:
            rule: dict[str, Any] = {}
            if self.solver == "sgd":
                rule = {"momentum": self.momentum,
                        "nesterov": self.nesterovs_momentum and self.momentum > 0}
            elif self.solver in ("adam", "adamw"):
                rule = {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
            elif self.solver == "rmsprop":
                rule = {"epsilon": self.epsilon}
            settings: dict[str, Any] = {
                "lr": self.learning_rate_init, "batch_size": bs, "schedule": schedule,
                "shuffle": self.shuffle, "optimizer_options": rule}
        elif self.solver == "lbfgs":
            settings = {"max_fun": self.max_fun}
        else:
            settings = {"mu": self.mu, "mu_dec": self.mu_dec, "mu_inc": self.mu_inc,
                        "mu_max": self.mu_max}
        solver = SOLVERS.create(self.solver, **settings)
        solver.continue_from(self._solver)
        self._solver = solver
        return solver

    def _split(self, X: Array, T: Array, sw: Array | None, rs: np.random.RandomState,
               G: Array | None = None) -> tuple[tuple[Array, Array, Array | None],
                                                tuple[Array, Array, Array | None], Array | None]:
        """scikit-learn's early-stopping split of ``(X, T, sw)``: ``(training, validation,
        the training rows of the derivative data G)``.

        Its MLP's rows exactly: ``train_test_split`` with ``validation_fraction`` of the
        rows (rounded up), stratified by class for a classifier (not multilabel), drawn
        from ``rs``; here of the row positions (:func:`jacnet.division.split`), then
        indexing the arrays, which gives the same rows."""
        stratify = None
        if isinstance(self, ClassifierMixin) and T.shape[1] > 1 and self._multiclass:
            stratify = T.argmax(axis=1)
        elif isinstance(self, ClassifierMixin) and T.shape[1] == 1:
            stratify = T[:, :1].astype(bool)  # scikit-learn's labels, in its error messages
        n = X.shape[0]
        _, n_val, _ = division.sizes(n, self.validation_fraction, rounding="ceil")
        train_rows, val_rows = division.split(np.arange(n), n_val, rs, stratify)
        if val_rows.shape[0] < 2:
            raise ValueError("The validation set is too small: increase validation_fraction "
                             "or the number of samples (validation_fraction)")

        def rows(idx: Array) -> tuple[Array, Array, Array | None]:
            return X[idx], T[idx], None if sw is None else sw[idx]

        return rows(train_rows), rows(val_rows), None if G is None else G[train_rows]

    def _val_scorer(self, Xv: Array, Tv: Array, wv: Array | None) -> Any:
        """``scorer(network)``: the estimator's score on the (scaled) validation rows."""
        yv = self._val_targets(self._unscale_out(Tv))

        def scorer(net: Network) -> float:
            Y = net.forward(Xv)
            if not np.isfinite(Y).all():  # a diverged fit: scikit-learn's NaN score
                return float("nan")
            return float(self._score_fn(yv, self._decode(self._unscale_out(Y)), wv))

        return scorer

    def _stall_rule(self, validation: bool, by_score: bool) -> str | None:
        """The quantity that scikit-learn's no-improvement rule watches
        (:class:`~jacnet.fitplan.SklearnStall`).

        ``"val_score"``: the validation score, for early stopping by score (``by_score``,
        :meth:`_by_score`: scikit-learn's rule, ``sgd``'s adaptive rate included).
        ``"loss"``: the training loss, for the stochastic solvers without validation data.
        ``"val_loss"``: the validation loss, for sgd with ``learning_rate="adaptive"`` and
        validation data (scikit-learn divides the rate by 5 there too, and stops only once
        it is at most 1e-6). ``None``: the training loop's own rules (early stopping on the
        validation loss after ``max_fail`` failures, the solvers' own tests).
        """
        if validation and by_score:
            return "val_score"
        if self.solver not in _STOCHASTIC:
            return None
        if not validation:
            return "loss"
        return "val_loss" if self.solver == "sgd" and self.learning_rate == "adaptive" else None

    def _epoch_callback(self, T: Array, w: Array | None, alpha: float,
                        outputs: Callable[[Network], Array]) -> Any:
        """Per epoch: the loss in scikit-learn's units.

        With standardised targets and ``loss="squared_error"`` the trained objective is in
        standardised units; ``entry["loss_sklearn"]`` is the same objective with the data
        term in the targets' own units (half the mean squared error, at the epoch's final
        weights) plus the same L2 term, and ``loss_curve_`` (and scikit-learn's stop rule,
        :class:`~jacnet.fitplan.SklearnStall`) takes that value. ``outputs``:
        :meth:`_outputs_on` of the scaled training rows, whose targets are ``T``.
        """
        _, loss = self._output()
        in_data_units = self.y_scale_ is not None and getattr(self, "loss", "") == "squared_error"
        T_data = self._unscale_out(T) if in_data_units else None
        mask = self.network_.weight_mask() if alpha else None

        def callback(entry: dict[str, Any], net: Network) -> bool:
            if T_data is not None:
                value = loss.value(outputs(net), T_data, w)
                value += l2_penalty(net.theta, mask, alpha)
                entry["loss_sklearn"] = float(value)
            return False

        return callback

    def _after_fit(self, record: TrainingRecord, n_train: int, incremental: bool,
                   first: bool = True, kept_score: float | None = None) -> None:
        """Set the fitted attributes from a fit's ``record``; ``kept_score``: the validation
        score of the weights kept (early stopping)."""
        new = list(record.epochs)
        if not first and hasattr(self, "training_record_"):
            # partial_fit and warm starts continue the record and loss_curve_ (scikit-learn
            # keeps appending to loss_curve_ and counting n_iter_ and t_)
            prev = self.training_record_
            offset = prev.n_epochs
            for e in record.epochs:
                e["epoch"] += offset
            prev.epochs.extend(record.epochs)
            prev.stop_reason = record.stop_reason
            # The best epoch over all fits. With validation data this fit kept its own best
            # weights unless that was the weights it started from (best_epoch 0, the earlier
            # best stands); without, the lowest training loss wins.
            if record.best_epoch and (record.best_val_loss is not None
                                      or record.best_loss < prev.best_loss):
                prev.best_epoch = record.best_epoch + offset
                prev.best_loss, prev.best_val_loss = record.best_loss, record.best_val_loss
            record = prev
        self.training_record_ = record
        self.loss_curve_.extend(e.get("loss_sklearn", e["loss"]) for e in new)
        # scikit-learn: a warm-started fit counts its own epochs in n_iter_
        self.n_iter_ = len(new) if not (first or incremental) else len(self.loss_curve_)
        self.t_ += n_train * len(new)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else np.nan
        if self.early_stopping:
            assert self.validation_scores_ is not None
            self.validation_scores_.extend(e.get("val_score", np.nan) for e in new)
            if kept_score is not None:  # the weights kept are those of the lowest val loss
                self.best_validation_score_ = kept_score
        else:  # scikit-learn's initial value stands when no epoch ran
            self.best_loss_ = float(min(self.loss_curve_, default=np.inf))
        if record.stop_reason == "max_epochs" and not incremental:
            warnings.warn(f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        elif record.stop_reason == "max_fun":
            warnings.warn(f"{type(self).__name__}: L-BFGS used up max_fun ({self.max_fun}) "
                          "evaluations of the objective and the optimization hasn't converged "
                          "yet.", ConvergenceWarning, stacklevel=3)

    # ---------------------------------------------------------- scaling
    def scale_in(self, X: Array) -> Array:
        """``X`` (n_samples, n_features) in the network's input units (standardised)."""
        if getattr(self, "x_mean_", None) is None:
            return X
        return ((X - self.x_mean_) / self.x_scale_).astype(X.dtype, copy=False)

    def scale_out(self, T: Array) -> Array:
        """Targets ``T`` (n_samples, n_outputs) in the network's output units."""
        if getattr(self, "y_mean_", None) is None:
            return T
        return ((T - self.y_mean_) / self.y_scale_).astype(T.dtype, copy=False)

    def scale_derivatives(self, G: Array | None) -> Array | None:
        """Derivative data ``G`` (n, n_outputs, n_features) in the network's units:
        ``d y~_i / d x~_d = dy_i/dx_d . sigma_x[d] / sigma_y[i]`` (NaN stays NaN)."""
        if G is None:
            return None
        x_scale, y_scale = getattr(self, "x_scale_", None), getattr(self, "y_scale_", None)
        if x_scale is not None:
            G = G * x_scale[None, None, :]
        if y_scale is not None:
            G = G / y_scale[None, :, None]
        return G.astype(self.network_.dtype, copy=False)

    def _unscale_out(self, Y: Array) -> Array:
        if getattr(self, "y_mean_", None) is None:
            return Y
        return Y * self.y_scale_ + self.y_mean_

    # ---------------------------------------------------------- the model in data units
    @property
    def coefs_(self) -> list[Array]:
        """The weight matrices in the data's units, (n_in, n_out) per layer; live.

        Without standardisation they are views of ``network_``'s weights: writing into one
        (``coefs_[0][i, j] = v``), setting an item (``coefs_[0] = W``) or the whole list
        changes the model, as in scikit-learn. With standardisation they are the weights
        with the statistics folded in, read-only copies: set an item or the list and the
        estimator unfolds it into ``network_`` (:meth:`set_model`).
        """
        return _LiveParams(self, 0)

    @coefs_.setter
    def coefs_(self, value: Sequence[Any]) -> None:
        self.set_model(coefs=value)

    @property
    def intercepts_(self) -> list[Array]:
        """The bias vectors in the data's units, (n_out,) per layer; live as ``coefs_``."""
        return _LiveParams(self, 1)

    @intercepts_.setter
    def intercepts_(self, value: Sequence[Any]) -> None:
        self.set_model(intercepts=value)

    def model(self) -> tuple[list[Array], list[Array]]:
        """``(coefs, intercepts)``: the model in the data's units (see ``coefs_``)."""
        if "network_" not in self.__dict__:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: "
                                 "it has no coefs_ or intercepts_")
        coefs = [layer.W for layer in self.network_.layers]
        intercepts = [layer.b for layer in self.network_.layers]
        if self.x_mean_ is None and self.y_mean_ is None:
            return coefs, intercepts  # views: writes change the model
        if self.x_mean_ is not None and self.x_scale_ is not None:
            W0 = coefs[0] / self.x_scale_[:, None]
            intercepts[0] = intercepts[0] - (self.x_mean_ @ W0)
            coefs[0] = W0
        if self.y_mean_ is not None:
            coefs[-1] = coefs[-1] * self.y_scale_
            intercepts[-1] = intercepts[-1] * self.y_scale_ + self.y_mean_
        coefs, intercepts = [c.copy() for c in coefs], [b.copy() for b in intercepts]
        for a in (*coefs, *intercepts):
            a.flags.writeable = False  # a write into a folded copy would change nothing
        return coefs, intercepts

    def set_model(self, coefs: Sequence[Any] | None = None,
                  intercepts: Sequence[Any] | None = None) -> None:
        """Set the model in the data's units: every layer's weights ``coefs`` (n_in, n_out)
        and biases ``intercepts`` (n_out,), or either alone (the other stays). The
        standardisation, when there is one, is unfolded: ``network_`` gets
        ``W_1 = C_1 * x_scale[:, None]``, ``b_1 = c_1 + x_mean @ C_1`` for the first layer
        and ``W_n = C_n / y_scale``, ``b_n = (c_n - y_mean) / y_scale`` for the last."""
        old_c, old_b = self.model()
        net = self.network_
        C = [np.asarray(c, dtype=net.dtype) for c in (old_c if coefs is None else coefs)]
        B = [np.asarray(b, dtype=net.dtype) for b in (old_b if intercepts is None else intercepts)]
        for name, given, layers_of in (("coefs_", C, "W"), ("intercepts_", B, "b")):
            shapes = [getattr(layer, layers_of).shape for layer in net.layers]
            if [a.shape for a in given] != shapes:
                raise ValueError(f"{name} must hold arrays of shapes {shapes}, got "
                                 f"{[a.shape for a in given]}")
        if self.y_mean_ is not None and self.y_scale_ is not None:
            C[-1], B[-1] = C[-1] / self.y_scale_, (B[-1] - self.y_mean_) / self.y_scale_
        if self.x_mean_ is not None and self.x_scale_ is not None:
            C[0], B[0] = C[0] * self.x_scale_[:, None], B[0] + self.x_mean_ @ C[0]
        for layer, W, b in zip(net.layers, C, B, strict=True):
            layer.W[...], layer.b[...] = W, b
        self.__dict__.pop("_posterior", None)  # a regressor's posterior was of the old theta
        self.__dict__.pop("_sums", None)  # and so were a Dask fit's sums
        solver = getattr(self, "_solver", None)
        if solver is not None and hasattr(solver, "reset"):
            solver.reset()  # LM's cached loss belongs to the old weights

    @property
    def _no_improvement_count(self) -> int:
        """scikit-learn's counter of epochs without improvement (its tests read it)."""
        stall = getattr(self, "_stall_now", None)
        return 0 if stall is None else int(stall.count)

    # ------------------------------------------------------------ predict
    def _inputs(self, X: Any) -> Array:
        """``X`` checked against the fit, dense, in the network's dtype and input units."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=_FLOATS, accept_sparse=_SPARSE)
        return self.scale_in(_dense(X).astype(self.network_.dtype, copy=False))

    def _forward(self, X: Any) -> Array:
        Z = self._inputs(X)  # first: it checks that the estimator is fitted
        return self._unscale_out(self.network_.forward(Z))

    def _decode(self, Y: Array) -> Any:
        return Y

    def jacobian(self, X: Any) -> Array:
        """``d y_i / d theta`` per sample, (n_samples, n_outputs, P), in the targets' units.

        ``theta`` is ``network_``'s flat parameter vector (``network_.get_flat()``).
        """
        Z = self._inputs(X)
        J = self.network_.jacobian(Z)
        if self.y_scale_ is not None:
            J *= self.y_scale_[None, :, None]
        return J

    def input_jacobian(self, X: Any) -> Array:
        """``d y_i / d x_j`` per sample, (n_samples, n_outputs, n_features), data units."""
        Z = self._inputs(X)
        J = self.network_.input_jacobian(Z)
        if self.x_scale_ is not None:
            J /= self.x_scale_[None, None, :]
        if self.y_scale_ is not None:
            J *= self.y_scale_[None, :, None]
        return J

    def save(self, path: str) -> None:
        """Write the fitted estimator to a safetensors file (see :func:`jacnet.load`).

        The same file as ``jacnet.io.save_estimator(self, path)``: an estimator loaded
        from a file keeps that file's ``extra`` until a fresh fit."""
        tensors, meta = self.to_state()
        write(path, tensors, state_document(meta))

    # ------------------------------------------------------------ state
    def to_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """The fitted estimator as tensors and plain values (what a model file holds).

        Returns
        -------
        tensors : dict of str to ndarray
            ``layers.{k}.W`` (n_in, n_out) and ``layers.{k}.b`` (n_out,) of ``network_``,
            and ``preprocessing.{x_mean, x_scale, y_mean, y_scale}`` where present.
        meta : dict
            ``kind``, ``dtype``, ``architecture`` (per layer ``n_in``, ``n_out``,
            ``activation``), ``extra`` (that of the file it was loaded from, else None),
            ``preprocessing`` (the statistics present), ``params``, ``fitted`` (the fitted
            attributes by name), ``feature_names_in``, ``training_record`` (a dict or None)
            and, for a classifier, ``classes`` and ``label_binarizer``.
            :meth:`from_state` is the inverse; the optimizer state is not part of it.
        """
        check_is_fitted(self, "network_")
        tensors, net = network_state(self.network_)
        present = []
        for name in PREPROCESSING:
            value = getattr(self, f"{name}_", None)
            if value is not None:
                tensors[f"preprocessing.{name}"] = np.ascontiguousarray(value)
                present.append(name)
        params = self.get_params(deep=False)
        rs = params["random_state"]
        if not (rs is None or isinstance(rs, (int, np.integer))):
            params["random_state"] = None  # a RandomState: only the seed of a future fit
        names = getattr(self, "feature_names_in_", None)
        record = getattr(self, "training_record_", None)
        meta: dict[str, Any] = {
            "kind": type(self).__name__, **net,
            "extra": getattr(self, "_file_extra", None), "preprocessing": present,
            "params": params,
            "fitted": {k: getattr(self, k) for k in _FITTED if hasattr(self, k)},
            "feature_names_in": None if names is None else [str(s) for s in names],
            "training_record": None if record is None else record.to_dict(),
        }
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, Array], meta: dict[str, Any]) -> Self:
        """A fitted estimator rebuilt from :meth:`to_state`'s ``(tensors, meta)``.

        It predicts exactly as the estimator it came from; further training restarts the
        optimizer (its state is not part of the state). Only the fitted attributes this
        class stores are set, whatever else ``meta["fitted"]`` holds.
        """
        est = cls(**meta["params"])
        est.network_ = build_network(tensors, meta)
        for name in PREPROCESSING:
            value = tensors.get(f"preprocessing.{name}")
            setattr(est, f"{name}_", None if value is None or name not in meta["preprocessing"]
                    else np.array(value, copy=True))
        for name in _FITTED:
            if name in meta["fitted"]:
                setattr(est, name, meta["fitted"][name])
        if meta["feature_names_in"] is not None:
            est.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        est._restore_labels(meta)
        if meta["training_record"] is not None:
            est.training_record_ = TrainingRecord.from_dict(meta["training_record"])
        est._file_extra = meta["extra"]  # written again by save (until a fresh fit)
        return est

    def _restore_labels(self, meta: dict[str, Any]) -> None:
        """A classifier's label encoding from ``meta`` (nothing for a regressor)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.sparse = True
        return tags

    def to_onnx(self, path: Any, *, dtype: str = "float64",
                with_input_jacobian: bool = False) -> None:
        """Write the fitted model as an ONNX file: :func:`jacnet.export.export_onnx`
        (needs the ``onnx`` extra; see docs/deployment.md)."""
        from .export import export_onnx

        export_onnx(self, path, dtype=dtype, with_input_jacobian=with_input_jacobian)


def expected_failed_checks(estimator: _BaseMLP) -> dict[str, str]:
    """The scikit-learn estimator checks expected to fail, with the reason.

    Pass it to ``check_estimator(..., expected_failed_checks=...)`` or
    ``parametrize_with_checks`` (``jacnet.expected_failed_checks``). Only the stochastic
    solvers and ``br`` have them (sample-weight equivalence, on dense and sparse data):
    with ``solver="lbfgs"`` or ``"lm"`` every check passes.
    """
    if estimator.solver == "br":
        why = ("Bayesian regularization on the check's 15 rows and 257 parameters (N_e < P) "
               "re-estimates alpha and beta from a gamma that swings between 4 and 120, so "
               "rounding alone decides its path: the same weighted fit with its rows in "
               "another order differs by 0.06 in the outputs, as much as the repeated-rows "
               "fit does; weights count as repeated rows exactly in E_D, J^T J and N_e")
        return {f"check_sample_weight_equivalence_on_{kind}_data": why
                for kind in ("dense", "sparse")}
    if estimator.solver in _STOCHASTIC:
        why = ("mini-batch solvers see a repeated sample in other batches than a weighted "
               "one, so the fits differ (outputs by 1e-5 up to a few 1e-2); the full-batch "
               "solvers 'lbfgs' and 'lm' satisfy the equivalence")
        return {f"check_sample_weight_equivalence_on_{kind}_data": why
                for kind in ("dense", "sparse")}
    return {}


class _LiveParams(list):
    """``coefs_`` or ``intercepts_`` (``part`` 0 or 1): a list whose item assignment sets
    the estimator's model (:meth:`_BaseMLP.set_model`); a copy or pickle is a plain list."""

    def __init__(self, owner: _BaseMLP, part: int) -> None:
        super().__init__(owner.model()[part])
        self._owner, self._part = owner, part

    def __setitem__(self, index: Any, value: Any) -> None:
        items = list(self)
        items[index] = value
        self._owner.set_model(**{("coefs", "intercepts")[self._part]: items})
        super().__setitem__(slice(None), self._owner.model()[self._part])

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (list, (list(self),))


def _print_epoch(entry: dict[str, Any], net: Network) -> None:
    """scikit-learn's ``verbose`` lines for one epoch (the loss in its units)."""
    loss = entry.get("loss_sklearn", entry["loss"])
    print(f"Iteration {entry['epoch']:d}, loss = {loss:.8f}")
    if entry.get("val_score") is not None:
        print(f"Validation score: {entry['val_score']:f}")


def _init_like_sklearn(net: Network, rs: np.random.RandomState, logistic: bool) -> None:
    """scikit-learn's MLP initialisation, drawn from ``rs`` in its order: per layer, W then b
    uniform on ``±sqrt(factor / (fan_in + fan_out))`` with factor 2 for a logistic layer and
    6 otherwise; the output layer takes the factor of ``activation`` (``logistic``: the
    estimator's activation is "logistic"), as scikit-learn does. With the same
    ``random_state`` the initial weights are scikit-learn's, so the two start alike.
    """
    for k, layer in enumerate(net.layers):
        last = k == len(net.layers) - 1
        small = logistic if last else layer.activation.name == "sigmoid"
        bound = np.sqrt((2.0 if small else 6.0) / (layer.n_in + layer.n_out))
        layer.W[...] = rs.uniform(-bound, bound, (layer.n_in, layer.n_out))
        layer.b[...] = rs.uniform(-bound, bound, layer.n_out)


def _weighted_moments(A: Array, w: Array | None) -> tuple[Array, Array]:
    """Column means and standard deviations (1 where 0) of ``A`` under weights ``w``."""
    mean = np.average(A, axis=0, weights=w)
    s = np.sqrt(np.average((A - mean) ** 2, axis=0, weights=w))
    return mean.astype(A.dtype), np.where(s > 0, s, 1.0).astype(A.dtype)


def _stochastic_solver(estimator: _BaseMLP) -> bool:
    """``partial_fit`` exists only for the mini-batch solvers (as in scikit-learn)."""
    if estimator.solver not in _STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic solvers "
                             f"{_STOCHASTIC}, not for solver={estimator.solver!r}")
    return True


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor on exact Jacobian backpropagation.

    The parameters of ``sklearn.neural_network.MLPRegressor`` keep their names, defaults
    and meaning (``random_state`` included: the initial weights are scikit-learn's own draw,
    so both start from the same weights), plus:

    Parameters
    ----------
    loss : {"squared_error", "huber", "poisson"}, default "squared_error"
        ``squared_error`` is the seed's J normalised as scikit-learn does (half the mean
        over samples and outputs); ``poisson`` uses an ``exp`` output.
    solver : {"adam", "sgd", "lbfgs", "lm", "br", "adamw", "rmsprop"}, default "adam"
        ``"lm"``: Levenberg-Marquardt on exact Jacobians (MATLAB trainlm's settings
        ``mu``, ``mu_dec``, ``mu_inc``, ``mu_max``, ``goal``, ``min_grad``). ``"br"``
        (regression only): Bayesian-regularized Levenberg-Marquardt (MATLAB trainbr), which
        finds the weight decay from the data, so ``alpha`` is not used; it starts from
        ``mu`` like LM.
    activation : str, Activation or list, default "relu"
        One for every hidden layer, or one per hidden layer (vector activations such as
        softmax allowed).
    output_activation : str or Activation, optional
        Default identity (exp for poisson).
    standardize : {"auto", True, False}, default "auto"
        Standardise inputs and targets inside the model; "auto" does it for ``lm`` and
        ``br``.
    goal : float, default 0
        MATLAB trainlm's performance goal (0: none). For ``loss="squared_error"`` it is the
        mean squared error over samples and outputs, in the targets' own units, of the
        training rows (the L2 term not included; the record's ``mse`` column); for the
        other losses, the objective as trained.
    min_grad : float, default 1e-7
        Stop when the norm of the gradient of the objective as trained (with respect to
        ``network_``'s parameters, in standardised units under standardisation) falls
        below it; LM then tries no step.
    dtype : {None, "float64", "float32"}, default None
        The network's float type; None: the input's (float32 stays float32, anything else
        float64), as scikit-learn keeps float32 input.
    early_stopping_metric : {"auto", "score", "loss"}, default "auto"
        What ``early_stopping`` watches: "score", the validation score (scikit-learn's
        rule, the weights of the best score kept); "loss", the validation loss (trainlm's
        rule, the weights of the lowest loss kept); "auto": "score" for the mini-batch
        solvers, "loss" for ``lbfgs``, ``lm`` and ``br``.
    derivative_weight : float, default 1.0
        lambda, the weight of the derivative residuals ``lambda (dy/dx - g)`` against the
        value residuals when ``fit`` is given derivative data ``dydx`` (both in the
        network's standardised units; docs/training.md, "Derivative data").

    Attributes
    ----------
    network_ : Network
    training_record_ : TrainingRecord
    coefs_, intercepts_ : list of arrays
        The model in the data's units, live: see :attr:`_BaseMLP.coefs_`.
    loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, n_iter_, n_layers_, n_outputs_, out_activation_, t_,
    n_features_in_, feature_names_in_ : as in scikit-learn.
    posterior_ : jacnet.uncertainty.Posterior
        The fit's linearised posterior behind ``predict(X, return_std=True)`` and
        :meth:`predict_interval` (computed on first use; docs/training.md, "Predictive
        uncertainty").
    alpha_, beta_, gamma_, log_evidence_ : float
        ``solver="br"`` only: the weight and noise precisions (trainbr's convention, in the
        network's standardised units), the effective number of parameters and the log
        evidence, of the epoch whose weights were kept.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "huber", "poisson"})],
        "derivative_weight": [Interval(Real, 0, None, closed="left")],
    }
    # set by a fit (_keep_for_uncertainty) or from_state
    _posterior: Posterior | None
    _rows: tuple[Array, Array, Array | None] | None
    _sums: FitSums | None
    _derivative_data: SobolevData | None
    _penalty: float
    _posterior_source: str
    _conformal_scores: Array | None
    alpha_: Any
    beta_: Any
    gamma_: float
    log_evidence_: float

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: Any = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: float = 10,
        max_fun: int = 15000,
        output_activation: Any = None,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        goal: float = 0.0,
        min_grad: float = 1e-7,
        standardize: Any = "auto",
        dtype: Any = None,
        early_stopping_metric: str = "auto",
        derivative_weight: float = 1.0,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            output_activation=output_activation,
            mu=mu,
            mu_dec=mu_dec,
            mu_inc=mu_inc,
            mu_max=mu_max,
            goal=goal,
            min_grad=min_grad,
            standardize=standardize,
            dtype=dtype,
            early_stopping_metric=early_stopping_metric,
        )
        self.loss = loss
        self.derivative_weight = derivative_weight

    def _output(self) -> tuple[Activation, Loss]:
        losses = {"squared_error": "mse", "huber": "huber", "poisson": "poisson"}
        default = "exp" if self.loss == "poisson" else "identity"
        act = get_activation(self.output_activation or default)
        q = self.n_outputs_
        # scikit-learn's units: half the mean over samples and outputs
        factor = 1.0 / (2 * q) if self.loss == "squared_error" else 1.0 / q
        return act, Scaled(get_loss(losses[self.loss]), factor)

    def _standardizes_targets(self) -> bool:
        act = get_activation(self.output_activation or "identity")
        return self.loss != "poisson" and act.name == "identity"

    def targets(self, y: Any, incremental: bool, reset: bool) -> Array:
        T = np.asarray(y, dtype=np.float64)  # the fit casts it to the network's dtype
        self._y_1d = T.ndim == 1
        T = T.reshape(T.shape[0], -1)
        if self.loss == "poisson" and (T < 0).any():
            raise ValueError("y must be non-negative for loss='poisson'")
        if not reset and T.shape[1] != self.n_outputs_:
            raise ValueError(f"y must have {self.n_outputs_} outputs as in the first fit, "
                             f"got {T.shape[1]}")
        self.n_outputs_ = T.shape[1]
        return T

    def _score_fn(self, y: Any, pred: Any, sample_weight: Any = None) -> float:
        return float(r2_score(y, pred, sample_weight=sample_weight))

    def predict(self, X: Any, return_std: bool = False, return_cov: bool = False) -> Any:
        """Predicted values, (n_samples,) for one output, else (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default False
            Also return the predictive standard deviation, noise included, in the targets'
            units and of the mean's shape (scikit-learn's convention, as
            ``BayesianRidge``): the linearised Laplace posterior of the fit
            (:attr:`posterior_`; :mod:`jacnet.uncertainty`, docs/training.md).
        return_cov : bool, default False
            Also return the joint covariance of the outputs per sample, (n_samples,
            n_outputs, n_outputs), noise included. At most one of the two.

        Returns
        -------
        mean : ndarray
        std or cov : ndarray, only when asked for
        """
        if return_std and return_cov:
            raise ValueError("at most one of return_std and return_cov can be requested")
        Z = self._inputs(X)  # first: it checks that the estimator is fitted
        Y = self._unscale_out(self.network_.forward(Z))
        mean = Y.ravel() if Y.shape[1] == 1 else Y
        if not (return_std or return_cov):
            return mean
        M = self.posterior_.moments(self.network_, Z, cov=return_cov)
        s = np.ones(Y.shape[1]) if self.y_scale_ is None else self.y_scale_.astype(float)
        if return_cov:  # in the targets' units: cov_kl s_k s_l
            return mean, M * s[:, None] * s[None, :]
        std = np.sqrt(M) * s
        return mean, std.ravel() if Y.shape[1] == 1 else std

    def predict_interval(self, X: Any, coverage: float = 0.95, method: str = "t"
                         ) -> tuple[Array, Array]:
        """Prediction intervals ``(lower, upper)``, each of :meth:`predict`'s shape.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        coverage : float in (0, 1), default 0.95
            The probability that a fresh target falls inside.
        method : {"t", "conformal"}, default "t"
            ``"t"``: ``mean +- t std``, Student-t with ``N_e - gamma`` degrees of freedom
            (``posterior_.dof``) on :meth:`predict`'s std. ``"conformal"``: split conformal,
            ``mean +- q`` with ``q`` per output the ``ceil((n + 1) coverage)``-th smallest
            absolute residual of the fit's ``n`` validation rows (``fit_divided``'s, or
            ``early_stopping``'s split), in the targets' units; a ValueError when the fit
            had none.
        """
        coverage = check_coverage(coverage)
        check_choice(method, "method", INTERVAL_METHODS)
        if method == "t":
            mean, std = self.predict(X, return_std=True)
            half = t_halfwidth(std, self.posterior_.dof, coverage)
            return mean - half, mean + half
        mean = self.predict(X)
        scores = getattr(self, "_conformal_scores", None)
        if scores is None:
            raise ValueError("method='conformal' needs the validation rows of the fit "
                             "(fit_divided with validation rows, or early_stopping=True); "
                             "this fit had none: use method='t' or refit with them")
        half = conformal_halfwidth(scores, coverage)
        half = half[0] if mean.ndim == 1 else half
        return mean - half, mean + half

    @property
    def posterior_(self) -> Posterior:
        """The linearised posterior of the fit (:class:`jacnet.uncertainty.Posterior`,
        in the network's units), computed from the training rows on first use and kept.

        ``solver="br"``: at the alpha, beta of the epoch whose weights were kept.
        Otherwise: the L2 penalty as a Gaussian prior on the weights (a jitter on the
        unpenalised biases, and on the weights when ``alpha=0``) and the residual
        variance with ``gamma`` degrees of freedom. A loaded model has it when its file
        stored it (networks of at most :data:`STORED_POSTERIOR_MAX_PARAMS` parameters).
        """
        check_is_fitted(self, "network_")
        post = self.__dict__.get("_posterior")
        if post is not None:
            return post
        if self.loss != "squared_error":
            raise ValueError(f"return_std needs loss='squared_error' (a Gaussian noise "
                             f"model), got loss={self.loss!r}")
        rows, sums = getattr(self, "_rows", None), getattr(self, "_sums", None)
        if rows is None and sums is None:
            raise ValueError(
                "this model holds no posterior: it was loaded from a file without one "
                f"(networks over {STORED_POSTERIOR_MAX_PARAMS} parameters, or files older "
                "than predictive uncertainty), or fit on a Dask collection by 'lbfgs' with "
                "more parameters than jacnet.distributed.POSTERIOR_MAX_PARAMS; refit it on "
                "in-memory data for return_std and predict_interval")
        if self._posterior_source == "br" and not hasattr(self, "alpha_"):
            raise ValueError("the br fit ran no epoch: it has no alpha_, beta_ to build "
                             "its posterior from")
        if rows is None:  # a Dask fit's sums
            assert sums is not None
            if self._posterior_source == "br":
                post = bayes_posterior_from_sums(self.network_, sums, self.alpha_, self.beta_)
            else:  # the ratio below: q W a
                post = penalty_posterior_from_sums(self.network_, sums,
                                                   sums.mse_divisor * self._penalty)
            self._posterior = post
            return post
        X, T, w = rows
        if self._posterior_source == "br":
            post = bayes_posterior(self.network_, X, T, w, self.alpha_, self.beta_,
                                   derivatives=getattr(self, "_derivative_data", None))
        else:
            # the trained objective is sum w e^2 / (2 q W) + a/2 ||M theta||^2 (a the
            # loop's alpha, W the rows' weight): times 2 q W, a penalty ratio of q W a
            n_weight = X.shape[0] if w is None else float(w.sum())
            ratio = T.shape[1] * n_weight * self._penalty
            post = penalty_posterior(self.network_, X, T, w, ratio,
                                     derivatives=getattr(self, "_derivative_data", None))
        self._posterior = post
        return post

    def _keep_for_uncertainty(self, plan: FitPlan,
                              posterior_sums: Callable[[], FitSums | None] | None) -> None:
        """The training rows for :attr:`posterior_` (a reference; in-memory fits), or the
        sums over them (``posterior_sums()``, at the end of a Dask fit), the
        penalty, ``br``'s ``alpha_``, ``beta_``, ``gamma_``, ``log_evidence_`` (of the epoch
        whose weights were kept) and the validation rows' absolute residuals (conformal)."""
        X, T, w = plan.data
        in_memory = isinstance(X, np.ndarray)
        self._rows = (X, T, w) if in_memory else None
        self._sums = None
        if not in_memory and posterior_sums is not None and self.loss == "squared_error":
            self._sums = posterior_sums()
        self._derivative_data = None if plan.derivatives is None else SobolevData(
            plan.derivatives, float(plan.options["derivative_weight"]))
        self._posterior = None
        self._penalty = float(plan.options["alpha"])
        self._posterior_source = "br" if self.solver == "br" else "penalty"
        self._conformal_scores = None
        if plan.validation is not None and isinstance(plan.validation[0], np.ndarray):
            Xv, Tv = plan.validation[0], plan.validation[1]
            Yv = self._unscale_out(self.network_.forward(Xv))
            self._conformal_scores = np.abs(Yv - self._unscale_out(Tv)).astype(float)
        for name in ("alpha_", "beta_", "gamma_", "log_evidence_"):
            self.__dict__.pop(name, None)
        if self.solver == "br":
            record = self.training_record_
            restored = record.best_val_loss is not None and plan.options["restore_best"]
            kept = record.best_epoch if restored else record.n_epochs
            entries = [e for e in record.epochs if "alpha" in e and e["epoch"] <= kept]
            if entries:
                e = entries[-1]
                self.alpha_, self.beta_ = e["alpha"], e["beta"]
                self.gamma_, self.log_evidence_ = e["gamma"], e["log_evidence"]

    def to_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """As :meth:`_BaseMLP.to_state`, plus the posterior where there is one (computed
        now for a network of at most :data:`STORED_POSTERIOR_MAX_PARAMS` parameters):
        the tensor ``uncertainty.covariance_factor`` (P, P) and ``meta["uncertainty"]``
        (``noise_variance``, ``dof``, ``effective_n_params``, ``source``; None without);
        and the validation rows' absolute residuals ``uncertainty.conformal_scores``
        (n_validation, n_outputs) where the fit had them."""
        tensors, meta = super().to_state()
        post = self.__dict__.get("_posterior")
        has_data = getattr(self, "_rows", None) is not None or \
            getattr(self, "_sums", None) is not None
        if post is None and has_data and self.network_.n_params <= STORED_POSTERIOR_MAX_PARAMS:
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    post = self.posterior_
            except (ValueError, np.linalg.LinAlgError):
                post = None  # a loss without a Gaussian model, a br fit of no epoch
        meta["uncertainty"] = None
        if post is not None and np.isfinite(post.covariance_factor).all() \
                and np.isfinite(post.noise_variance).all():  # a diverged fit stores none
            tensors["uncertainty.covariance_factor"] = np.ascontiguousarray(
                post.covariance_factor, dtype=np.float64)
            meta["uncertainty"] = {
                "noise_variance": [float(v) for v in post.noise_variance],
                "dof": float(post.dof), "effective_n_params": float(post.effective_n_params),
                "source": post.source}
        scores = getattr(self, "_conformal_scores", None)
        if scores is not None:
            tensors["uncertainty.conformal_scores"] = np.ascontiguousarray(scores)
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, Array], meta: dict[str, Any]) -> Self:
        """As :meth:`_BaseMLP.from_state`, with the stored posterior and conformal scores
        (a state without them, e.g. an older file's, predicts means only)."""
        est = super().from_state(tensors, meta)
        info = meta.get("uncertainty")
        if info is not None:
            est._posterior = Posterior(
                np.array(tensors["uncertainty.covariance_factor"], dtype=float),
                np.array(info["noise_variance"], dtype=float), float(info["dof"]),
                float(info["effective_n_params"]), str(info["source"]))
        scores = tensors.get("uncertainty.conformal_scores")
        est._conformal_scores = None if scores is None else np.array(scores, dtype=float)
        return est

    @available_if(_stochastic_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, *, dydx: Any = None
                    ) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing the optimizer's state (stochastic solvers);
        ``dydx``: derivative data of these rows, as in :meth:`fit`."""
        self._fit(X, y, sample_weight, incremental=True, dydx=dydx)
        return self


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier on exact Jacobian backpropagation.

    The parameters of ``sklearn.neural_network.MLPClassifier`` keep their names, defaults
    and meaning (the initial weights are scikit-learn's for the same ``random_state``); the
    extras are those of :class:`MLPRegressor`. The output is softmax with
    cross-entropy for multiclass targets, sigmoid with binary cross-entropy for binary and
    multilabel targets (``output_activation`` overrides the activation). With
    ``solver="lm"`` the step uses the generalised Gauss-Newton model of the
    cross-entropy (see ``jacnet.losses``). ``output_activation="sparsemax"`` is accepted
    for multiclass targets, but it outputs exact zeros: a sample whose class gets 0 adds
    no gradient to the cross-entropy, so the stochastic solvers can stall on it (digits:
    58% training accuracy with adam against 99% with ``solver="lm"``).
    """

    def _output(self) -> tuple[Activation, Loss]:
        if self._multiclass:
            act, loss, fits = self.output_activation or "softmax", "cross_entropy", _SIMPLEX
        else:
            act, loss, fits = self.output_activation or "sigmoid", "binary_cross_entropy", _UNIT
        act = get_activation(act)
        # A built-in whose outputs are not probabilities of this kind trains a degenerate
        # model (sigmoid under categorical cross-entropy: every output rises towards 1).
        # A user activation (registered or not, a subclass too) is taken at its word: the
        # built-ins are the classes jacnet.activations itself defines.
        if type(act).__module__ == Activation.__module__ and type(act) not in fits:
            target = "multiclass" if self._multiclass else "binary or multilabel"
            raise ValueError(
                f"output_activation must give {loss} probabilities for a {target} target "
                f"({' or '.join(cls.name for cls in fits)}), got {act.name!r}")
        return act, get_loss(loss)

    def targets(self, y: Any, incremental: bool, reset: bool) -> Array:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if reset and not (incremental and hasattr(self, "label_binarizer_")):
            self.label_binarizer_ = LabelBinarizer().fit(y)
            self.classes_ = self.label_binarizer_.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 "as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {classes}")
            unseen = np.setdiff1d(classes, self.classes_)
            if len(unseen):
                raise ValueError(f"y has classes not seen in the first fit: {unseen.tolist()}; "
                                 f"known classes_: {self.classes_.tolist()}")
        self._multiclass = self.label_binarizer_.y_type_ == "multiclass"
        T = self.label_binarizer_.transform(y).astype(np.float64)  # the fit casts it
        self.n_outputs_ = T.shape[1]
        return T

    def _val_targets(self, T: Array) -> Any:
        return self.label_binarizer_.inverse_transform(T)

    def to_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """As :meth:`MLPRegressor.to_state`, plus ``classes`` and ``label_binarizer``
        (``y_type``, ``neg_label``, ``pos_label``, ``sparse_input``)."""
        tensors, meta = super().to_state()
        lb = self.label_binarizer_
        meta["classes"] = np.asarray(lb.classes_)
        meta["label_binarizer"] = {
            "y_type": str(lb.y_type_), "neg_label": int(lb.neg_label),
            "pos_label": int(lb.pos_label), "sparse_input": bool(lb.sparse_input_),
        }
        return tensors, meta

    def _restore_labels(self, meta: dict[str, Any]) -> None:
        info = meta["label_binarizer"]
        lb = LabelBinarizer(neg_label=info["neg_label"], pos_label=info["pos_label"])
        lb.classes_ = meta["classes"]
        lb.y_type_ = info["y_type"]
        lb.sparse_input_ = info["sparse_input"]
        self.label_binarizer_ = lb
        self.classes_ = lb.classes_
        self._multiclass = lb.y_type_ == "multiclass"

    def _decode(self, Y: Array) -> Any:
        return self.label_binarizer_.inverse_transform(Y)

    def _score_fn(self, y: Any, pred: Any, sample_weight: Any = None) -> float:
        return float(accuracy_score(y, pred, sample_weight=sample_weight))

    def predict(self, X: Any) -> Array:
        """Predicted class labels."""
        return self._decode(self._forward(X))

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, (n_samples, n_classes), columns ordered as ``classes_``.

        A sigmoid output (binary and multilabel targets) is kept within ``[eps, 1 - eps]``
        (``eps`` of the dtype), as scikit-learn's log loss clips it: far from the boundary
        the logistic rounds to exactly 0 or 1, which is no probability of a class.
        """
        Y = self._forward(X)
        if not self._multiclass:
            eps = np.finfo(Y.dtype).eps
            Y = np.clip(Y, eps, 1 - eps)
        if Y.shape[1] == 1 and not self.label_binarizer_.y_type_.startswith("multilabel"):
            return np.hstack([1 - Y, Y])
        return Y

    def predict_log_proba(self, X: Any) -> Array:
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P)

    @available_if(_stochastic_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Sequence[Any] | None = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; ``classes`` is required on the first call."""
        self._validate_params()  # a bad parameter is named before a missing ``classes``
        if hasattr(self, "classes_") and classes is not None \
                and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={list(classes)!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.label_binarizer_ = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self.label_binarizer_.fit(y)
            else:
                self.label_binarizer_.fit(np.asarray(classes))
            self.classes_ = self.label_binarizer_.classes_
        self._fit(X, y, sample_weight, incremental=True)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
