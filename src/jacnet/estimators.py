"""scikit-learn estimators: drop-in ``MLPRegressor`` and ``MLPClassifier``.

Every constructor parameter of scikit-learn's estimators of the same names keeps its name,
default and meaning where it applies; jacnet adds Levenberg-Marquardt (``solver="lm"``
with trainlm's ``mu``, ``mu_dec``, ``mu_inc``, ``mu_max``, ``goal``, ``min_grad``), AdamW
and RMSprop, per-layer and vector activations, ``output_activation``, ``dtype``,
standardisation, ``network_``, ``training_record_`` and exact Jacobians.

Differences from scikit-learn, by design:

- ``early_stopping`` watches the validation *loss* (scikit-learn: the score); the score
  is still recorded in ``validation_scores_``. The weights of the lowest validation loss
  are restored, and ``best_validation_score_`` is their score (scikit-learn: the highest
  score, whose weights it restores).
- ``standardize="auto"`` standardises inputs (and regression targets) for ``solver="lm"``
  only; the model's outputs, ``coefs_``, ``jacobian`` and ``input_jacobian`` are in the
  units of the original data all the same.
- With ``early_stopping=True``, ``learning_rate="adaptive"`` runs scikit-learn's rule on
  the validation loss: ``n_iter_no_change + 1`` epochs in a row without a fall by more
  than ``tol`` divide the rate by 5, and stop training once it is at most 1e-6; without
  early stopping it is scikit-learn's rule exactly.
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
  the objective as trained (standardised units, the ones ``goal`` and ``val_loss`` use).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
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
    FitPlan,
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
from .solvers import Solver
from .training import SOLVERS, STOCHASTIC, Callback, train
from .validation import positive_int

Array = np.ndarray

__all__ = ["MLPRegressor", "MLPClassifier", "expected_failed_checks"]

# The solvers come from the registry (jacnet.training.SOLVERS).
_STOCHASTIC = STOCHASTIC
# The built-in output activations each classifier loss can take: rows that sum to one for
# categorical cross-entropy, outputs in (0, 1) for binary cross-entropy.
_SIMPLEX: tuple[type[Activation], ...] = (Softmax, Sparsemax)
_UNIT: tuple[type[Activation], ...] = (Sigmoid,)
_SCHEDULES = {"constant": "constant", "invscaling": "invscaling", "adaptive": "reduce_on_plateau"}
# The fitted attributes a state (and a model file) holds, in the file's order; from_state
# sets these and nothing else (a file is untrusted input).
_FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
           "best_validation_score_", "n_layers_", "n_outputs_", "n_features_in_",
           "out_activation_", "_multiclass", "_y_1d")


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
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        output_activation: Any = None,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        goal: float = 0.0,
        min_grad: float = 1e-7,
        standardize: Any = "auto",
        dtype: Any = "float64",
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
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
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
        "dtype": [StrOptions({"float32", "float64"}),
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

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _BaseMLP:
        """Fit the model to ``X`` (n_samples, n_features) and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A dask array or DataFrame trains on its Dask cluster (``solver`` "lbfgs" or
            "lm"; see ``jacnet.distributed``), with ``y`` and ``sample_weight`` in dask too.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        dask = sys.modules.get("dask")  # loaded whenever X can be a dask collection
        if dask is not None and dask.is_dask_collection(X):
            from .distributed import fit_estimator

            return fit_estimator(self, X, y, sample_weight)
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> _BaseMLP:
        """``fit`` (``incremental=False``) and ``partial_fit`` on in-memory data."""
        sizes, hidden = self.validated_params()
        dtype = np.dtype(self.dtype)
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=first, y_numeric=not isinstance(self, ClassifierMixin))
        X = X.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        T = self.targets(y, incremental, reset=first)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=dtype, ensure_non_negative=True)
        rs = check_random_state(self.random_state)
        if first:
            self.init_model(X, T, sizes, hidden, dtype, rs, sw)
        self.execute_plan(self.plan_fit(self.scale_in(X), self.scale_out(T), sw, rs,
                                        first=first, incremental=incremental))
        return self

    def fit_divided(self, X: Any, y: Any, train: Any, validation: Any = (), test: Any = (),
                    *, max_fail: int | None = None, callbacks: Sequence[Any] = ()
                    ) -> TrainingRecord:
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

        Returns
        -------
        TrainingRecord
            Also ``training_record_``; its ``division`` holds the three index arrays.
        """
        from sklearn.utils import _safe_indexing

        parts = {name: _row_positions(idx, name, len(X))
                 for name, idx in (("train", train), ("validation", validation),
                                   ("test", test))}
        if not len(parts["train"]):
            raise ValueError("train must name at least one row")
        if max_fail is not None:
            positive_int(max_fail, "max_fail")
        sizes, hidden = self.validated_params()
        dtype = np.dtype(self.dtype)
        y = np.asarray(y)

        def rows(idx: Array, reset: bool) -> tuple[Array, Array]:
            Xp = validate_data(self, _safe_indexing(X, idx), reset=reset,
                               dtype=(np.float64, np.float32)).astype(dtype, copy=False)
            # validation and test rows may lack a class (incremental: only unseen ones fail)
            return Xp, self.targets(y[idx], incremental=not reset, reset=reset)

        X_tr, T_tr = rows(parts["train"], reset=True)
        rs = check_random_state(self.random_state)
        self.init_model(X_tr, T_tr, sizes, hidden, dtype, rs, None)

        def scaled(idx: Array) -> tuple[Array, Array] | None:
            if not len(idx):
                return None
            Xp, Tp = rows(idx, reset=False)
            return self.scale_in(Xp), self.scale_out(Tp)

        val, test = scaled(parts["validation"]), scaled(parts["test"])
        plan = self.plan_fit(self.scale_in(X_tr), self.scale_out(T_tr), None, rs,
                             validation=None if val is None else (*val, None), test=test,
                             division=parts, max_fail=max_fail, callbacks=list(callbacks))
        return self.execute_plan(plan)

    def execute_plan(self, plan: FitPlan) -> TrainingRecord:
        """Run ``plan`` (:meth:`plan_fit`) on ``network_`` and set the fitted attributes
        from its record; the record (also ``training_record_``)."""
        record = plan.run(self.network_)
        # the validation score of the weights kept (early stopping restores the best)
        kept_score = None if plan.scorer is None else plan.scorer(self.network_)
        self._after_fit(record, plan.data[0].shape[0], plan.incremental, plan.first,
                        kept_score)
        return record

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
                 trainer: Callable[..., TrainingRecord] = train) -> FitPlan:
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
        """
        if incremental and self.solver not in _STOCHASTIC:
            raise ValueError(f"partial_fit needs a stochastic solver {_STOCHASTIC}, "
                             f"got solver={self.solver!r}")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if division is None and self.early_stopping:
            (X, T, sw), validation = self._split(X, T, sw, rs)
        wait = patience(self.solver, self.n_iter_no_change, max_fail)
        n = X.shape[0]
        bs = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        stall, schedule = self._sklearn_rules(validation is not None, incremental, n, wait)
        solver = self._solver_for(bs, schedule)
        options = self._loop_options(n if sw is None else float(sw.sum()), bs, rs,
                                     incremental, stall)
        options.update(early_stopping=validation is not None and stall is None,
                       max_fail=wait, verbose=bool(self.verbose) and division is None)
        scorer = None
        if validation is not None and self.early_stopping:
            scorer = self._val_scorer(*validation)
        plan = FitPlan(solver, options, (X, T, sw), validation, test, stall, [], scorer,
                       division, incremental, first, trainer)
        if test is not None:
            plan.callbacks.append(test_loss_callback(test, options["loss"]))
        if scorer is not None:
            plan.callbacks.append(score_callback(scorer))
        if trainer is train:  # loss_curve_ in the data's units
            plan.callbacks.append(self._epoch_callback(X, T, sw, options["alpha"]))
        plan.callbacks.extend(callbacks)
        return plan

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

    def _sklearn_rules(self, validation: bool, incremental: bool, n: int, wait: int
                       ) -> tuple[SklearnStall | None, str | Schedule]:
        """scikit-learn's no-improvement rule (None where the loop's own rules apply, see
        :meth:`_stall_rule`), its best and count carried over from the last fit, and the
        learning-rate schedule (:class:`~jacnet.fitplan.SGDRate` for sgd) of a fit on
        ``n`` training rows; ``wait``: the patience on validation rows."""
        rule = self._stall_rule(validation)
        stall = None
        if rule is not None:
            stall = self._stalls.setdefault(rule, SklearnStall(rule))
            stall.limit = wait if rule == "val_loss" else self.n_iter_no_change + 1
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

    def _split(self, X: Array, T: Array, sw: Array | None, rs: np.random.RandomState
               ) -> tuple[tuple[Array, Array, Array | None], tuple[Array, Array, Array | None]]:
        """scikit-learn's early-stopping split of ``(X, T, sw)``: ``(training, validation)``.

        Its MLP's rows exactly: ``train_test_split`` with ``validation_fraction`` of the
        rows (rounded up), stratified by class for a classifier (not multilabel), drawn
        from ``rs``; here of the row positions (:func:`jacnet.division.split`), then
        indexing the arrays, which gives the same rows."""
        stratify = None
        if isinstance(self, ClassifierMixin) and T.shape[1] > 1 and self._multiclass:
            stratify = T.argmax(axis=1)
        elif isinstance(self, ClassifierMixin) and T.shape[1] == 1:
            stratify = T[:, 0]
        n = X.shape[0]
        _, n_val, _ = division.sizes(n, self.validation_fraction, rounding="ceil")
        train_rows, val_rows = division.split(np.arange(n), n_val, rs, stratify)
        if val_rows.shape[0] < 2:
            raise ValueError("The validation set is too small: increase validation_fraction "
                             "or the number of samples (validation_fraction)")

        def rows(idx: Array) -> tuple[Array, Array, Array | None]:
            return X[idx], T[idx], None if sw is None else sw[idx]

        return rows(train_rows), rows(val_rows)

    def _val_scorer(self, Xv: Array, Tv: Array, wv: Array | None) -> Any:
        """``scorer(network)``: the estimator's score on the (scaled) validation rows."""
        yv = self._val_targets(self._unscale_out(Tv))

        def scorer(net: Network) -> float:
            return float(self._score_fn(yv, self._decode(self._unscale_out(net.forward(Xv))), wv))

        return scorer

    def _stall_rule(self, validation: bool) -> str | None:
        """The loss that scikit-learn's no-improvement rule watches
        (:class:`~jacnet.fitplan.SklearnStall`).

        ``"loss"``: the training loss, for the stochastic solvers without validation data.
        ``"val_loss"``: the validation loss, for sgd with ``learning_rate="adaptive"`` and
        validation data (scikit-learn divides the rate by 5 there too, and stops only once
        it is at most 1e-6). ``None``: the training loop's own rules (early stopping on the
        validation loss after ``max_fail`` failures, the solvers' own tests).
        """
        if self.solver not in _STOCHASTIC:
            return None
        if not validation:
            return "loss"
        return "val_loss" if self.solver == "sgd" and self.learning_rate == "adaptive" else None

    def _epoch_callback(self, X: Array, T: Array, w: Array | None, alpha: float) -> Any:
        """Per epoch: the loss in scikit-learn's units.

        With standardised targets and ``loss="squared_error"`` the trained objective is in
        standardised units; ``entry["loss_sklearn"]`` is the same objective with the data
        term in the targets' own units (half the mean squared error, at the epoch's final
        weights) plus the same L2 term, and ``loss_curve_`` (and scikit-learn's stop rule,
        :class:`~jacnet.fitplan.SklearnStall`) takes that value.
        """
        _, loss = self._output()
        in_data_units = self.y_scale_ is not None and getattr(self, "loss", "") == "squared_error"
        T_data = self._unscale_out(T) if in_data_units else None
        mask = self.network_.weight_mask() if alpha else None

        def callback(entry: dict[str, Any], net: Network) -> bool:
            if T_data is not None:
                value = loss.value(self._unscale_out(net.forward(X)), T_data, w)
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
        theta = self.network_.theta
        if not np.isfinite(theta).all():  # never expected: training restores finite weights
            raise ValueError("Solver produced non-finite parameter weights")
        if record.stop_reason == "non_finite":
            warnings.warn(f"training stopped: {STOP_REASONS['non_finite']}; the last finite "
                          "weights were kept. Scale the inputs or lower learning_rate_init.",
                          RuntimeWarning, stacklevel=3)
        elif record.stop_reason == "max_epochs" and not incremental:
            warnings.warn(f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        self.coefs_, self.intercepts_ = self._folded_params()

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

    def _unscale_out(self, Y: Array) -> Array:
        if getattr(self, "y_mean_", None) is None:
            return Y
        return Y * self.y_scale_ + self.y_mean_

    def _folded_params(self) -> tuple[list[Array], list[Array]]:
        """Weights with the standardisation folded in: the model in the data's units."""
        coefs = [layer.W.copy() for layer in self.network_.layers]
        intercepts = [layer.b.copy() for layer in self.network_.layers]
        if self.x_mean_ is not None and self.x_scale_ is not None:
            W0 = coefs[0] / self.x_scale_[:, None]
            intercepts[0] = intercepts[0] - (self.x_mean_ @ W0)
            coefs[0] = W0
        if self.y_mean_ is not None:
            coefs[-1] = coefs[-1] * self.y_scale_
            intercepts[-1] = intercepts[-1] * self.y_scale_ + self.y_mean_
        return coefs, intercepts

    # ------------------------------------------------------------ predict
    def _forward(self, X: Any) -> Array:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        X = X.astype(self.network_.dtype, copy=False)
        return self._unscale_out(self.network_.forward(self.scale_in(X)))

    def _decode(self, Y: Array) -> Any:
        return Y

    def jacobian(self, X: Any) -> Array:
        """``d y_i / d theta`` per sample, (n_samples, n_outputs, P), in the targets' units.

        ``theta`` is ``network_``'s flat parameter vector (``network_.get_flat()``).
        """
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        J = self.network_.jacobian(self.scale_in(X.astype(self.network_.dtype, copy=False)))
        if self.y_scale_ is not None:
            J *= self.y_scale_[None, :, None]
        return J

    def input_jacobian(self, X: Any) -> Array:
        """``d y_i / d x_j`` per sample, (n_samples, n_outputs, n_features), data units."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        J = self.network_.input_jacobian(
            self.scale_in(X.astype(self.network_.dtype, copy=False)))
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
        est.coefs_, est.intercepts_ = est._folded_params()
        return est

    def _restore_labels(self, meta: dict[str, Any]) -> None:
        """A classifier's label encoding from ``meta`` (nothing for a regressor)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
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
    ``parametrize_with_checks``. Only the stochastic solvers have one: with
    ``solver="lbfgs"`` or ``"lm"`` every check passes.
    """
    if estimator.solver in _STOCHASTIC:
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "mini-batch solvers see a repeated sample in other batches than a weighted "
                "one, so the fits differ (outputs by 1e-5 up to a few 1e-2); the full-batch "
                "solvers 'lbfgs' and 'lm' satisfy the equivalence"
            )
        }
    return {}


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
    dtype : {"float64", "float32"}, default "float64"

    Attributes
    ----------
    network_ : Network
    training_record_ : TrainingRecord
    coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, n_iter_, n_layers_, n_outputs_, out_activation_, t_,
    n_features_in_, feature_names_in_ : as in scikit-learn.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "huber", "poisson"})],
    }

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
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        output_activation: Any = None,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        goal: float = 0.0,
        min_grad: float = 1e-7,
        standardize: Any = "auto",
        dtype: Any = "float64",
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
        )
        self.loss = loss

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
        T = np.asarray(y, dtype=np.dtype(self.dtype))
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

    def predict(self, X: Any) -> Array:
        """Predicted values, (n_samples,) for one output, else (n_samples, n_outputs)."""
        Y = self._forward(X)
        return Y.ravel() if Y.shape[1] == 1 else Y

    @available_if(_stochastic_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing the optimizer's state (stochastic solvers)."""
        self._fit(X, y, sample_weight, incremental=True)
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
            unseen = np.setdiff1d(classes, self.classes_)
            if len(unseen):
                raise ValueError(f"y has classes not seen in the first fit: {unseen.tolist()}; "
                                 f"known classes_: {self.classes_.tolist()}")
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError("warm_start needs y to have the same classes as before, "
                                 f"got {classes.tolist()} vs {self.classes_.tolist()}")
        self._multiclass = self.label_binarizer_.y_type_ == "multiclass"
        T = self.label_binarizer_.transform(y).astype(np.dtype(self.dtype))
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
        """Class probabilities, (n_samples, n_classes), columns ordered as ``classes_``."""
        Y = self._forward(X)
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
