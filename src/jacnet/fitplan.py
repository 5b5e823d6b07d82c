"""One fit plan for every entry point of the estimators.

Every fit of ``MLPRegressor``/``MLPClassifier`` (``fit``, ``partial_fit``, ``fit_divided``,
the Dask fit of :func:`jacnet.distributed.fit_estimator`, and ``jacnet train`` through
``fit_divided``) is the same two steps: the estimator turns its parameters, the data and
the division into a :class:`FitPlan` (``plan_fit``: the scaled training rows, the
validation and test rows, the solver object, the loop's options and stop rules, the
callbacks), then executes it (``execute_plan``: :meth:`FitPlan.run`, then the fitted
attributes from the record). Where the entry points differ (one epoch for
``partial_fit``, a continued solver for a warm start, the caller's own rows for
``fit_divided``, the Dask trainer) is a field of the plan.

This module holds the plan and the pieces of scikit-learn's training rules that the loop
runs for the estimators: the patience of early stopping (decided here for the estimators
and the command line alike), scikit-learn's no-improvement rule (:class:`SklearnStall`) and
its SGD learning rate (:class:`SGDRate`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .losses import Loss
from .network import Network
from .record import TrainingRecord
from .schedules import Schedule
from .solvers import Solver
from .stopping import StopRule
from .training import STOCHASTIC, Callback, train

Array = np.ndarray
Rows = tuple[Array, Array, Array | None]  # (X, T, sample weights or None), scaled

__all__ = ["FULL_BATCH_PATIENCE", "MINI_BATCH_PATIENCE", "NEVER", "BestScore", "FitPlan",
           "MSEGoal", "SGDRate", "SklearnStall",
           "patience", "score_callback", "test_loss_callback"]

#: A patience no run reaches: the stop rules count epochs in ints, and scikit-learn's
#: ``n_iter_no_change=np.inf`` means that training never stops for want of improvement.
NEVER = sys.maxsize
#: MATLAB trainlm's ``max_fail``: epochs without a lower validation loss before the stop,
#: for the full-batch solvers (one epoch is one step of the whole objective).
FULL_BATCH_PATIENCE = 6
#: The same for the mini-batch solvers, whose validation loss is noisier from epoch to
#: epoch (the command line's default).
MINI_BATCH_PATIENCE = 30


def patience(solver: str, n_iter_no_change: float | None = None,
             max_fail: int | None = None) -> int:
    """Epochs in a row without a lower validation loss before early stopping.

    ``max_fail`` when given; else scikit-learn's ``n_iter_no_change + 1`` (the estimators:
    its rule stops on the epoch after ``n_iter_no_change`` failures; ``np.inf``: never,
    given as :data:`NEVER` epochs); else, with neither (the command line),
    :data:`FULL_BATCH_PATIENCE` for "lm" and "lbfgs", :data:`MINI_BATCH_PATIENCE` for the
    mini-batch solvers and :data:`NEVER` for "br" (trainbr's ``max_fail = inf``: the
    evidence, not the validation rows, decides when Bayesian regularization is done).
    """
    if max_fail is not None:
        return int(max_fail)
    if n_iter_no_change is not None:
        if math.isinf(n_iter_no_change):
            return NEVER
        return int(n_iter_no_change) + 1
    if solver == "br":
        return NEVER
    return MINI_BATCH_PATIENCE if solver in STOCHASTIC else FULL_BATCH_PATIENCE


@dataclass
class FitPlan:
    """What one fit trains with, and how.

    Attributes
    ----------
    solver : Solver
        The solver object (continuing the last fit's state for a warm start).
    options : dict
        ``jacnet.train``'s loop and stop-rule options (``loss``, ``alpha``,
        ``max_epochs``, ``seed``, ``early_stopping``, ``max_fail``, ``tol``, ...).
    data : (X, T, w)
        The training rows in the network's units: (n, n_features), (n, n_outputs), (n,)
        or None.
    validation : (X, T, w) or None
        The validation rows, scaled; they steer early stopping (w: for the score only).
    test : (X, T) or None
        The test rows, scaled; only logged (``test_loss``), never steering.
    stall : SklearnStall or None
        scikit-learn's no-improvement rule, asked before the loop's own rules.
    callbacks : list of callables ``cb(entry, network)``
        The test loss, the validation score, the loss in scikit-learn's units, then the
        caller's callbacks, in that order.
    scorer : callable ``scorer(network) -> float`` or None
        The validation score, taken once more of the weights kept.
    division : dict of str to int array, or None
        The caller's division (``fit_divided``), written into the record.
    incremental : bool
        A ``partial_fit`` epoch.
    first : bool
        A fresh model (not a warm start nor a later ``partial_fit``).
    trainer : callable
        ``jacnet.train``, or the Dask trainer (with its client bound).
    rules : list of StopRule
        Further rules asked after ``stall`` and before the loop's own (:class:`MSEGoal`).
    best : BestScore or None
        scikit-learn's early stopping: the weights of the best validation score, put back
        at the end (the loop then restores nothing itself).
    derivatives : ndarray of shape (n, n_outputs, n_features) or None
        Derivative data of the training rows in the network's units (NaN: not observed),
        ``jacnet.train``'s ``dTdX``; its weight is the option ``derivative_weight``.
    """

    solver: Solver
    options: dict[str, Any]
    data: Rows
    validation: Rows | None = None
    test: tuple[Array, Array] | None = None
    stall: SklearnStall | None = None
    callbacks: list[Callback] = field(default_factory=list)
    scorer: Callable[[Network], float] | None = None
    division: dict[str, Array] | None = None
    incremental: bool = False
    first: bool = True
    trainer: Callable[..., TrainingRecord] = train
    rules: list[StopRule] = field(default_factory=list)
    best: BestScore | None = None
    derivatives: Array | None = None

    def run(self, net: Network) -> TrainingRecord:
        """Train ``net`` in place as planned; the record, with the plan's division."""
        X, T, w = self.data
        extra: dict[str, Any] = {}
        if self.validation is not None:
            extra["validation_data"] = self.validation[:2]
        stop = [rule for rule in (self.stall, *self.rules) if rule is not None]
        if stop:
            extra["stop"] = stop
        if self.derivatives is not None:
            extra["dTdX"] = self.derivatives
        record = self.trainer(net, X, T, self.solver, sample_weight=w,
                              callbacks=self.callbacks, **extra, **self.options)
        if self.best is not None:
            self.best.restore(net)
        if self.division is not None:
            record.division = self.division
        return record


class BestScore:
    """scikit-learn's early stopping keeps the weights of the highest validation score.

    An epoch callback: whenever ``entry["val_score"]`` beats ``best`` (a NaN score never
    does) it copies the weights; :meth:`restore` puts the best back. It starts from the
    weights the fit starts from and the best score so far (a warm start continues).
    """

    def __init__(self, theta: Array, best: float = -math.inf) -> None:
        self.theta, self.best = theta, float(best)

    def __call__(self, entry: dict[str, Any], net: Network) -> bool:
        score = entry["val_score"]
        if score > self.best:
            self.best, self.theta = float(score), net.get_flat()
        return False

    def restore(self, net: Network) -> None:
        net.set_flat(self.theta)


class MSEGoal(StopRule):
    """MATLAB's ``goal``: stop once the training rows' mean squared error, in the targets'
    own units, is at most ``goal`` (the loop's :class:`~jacnet.stopping.Goal` reads the
    objective as trained, in standardised units when the targets are standardised).

    ``measure(network)`` gives the error; :meth:`callback` enters it as the epoch entry's
    ``mse``. The initial weights are checked too (trainlm's test at epoch 0).
    """

    reason = "goal"

    def __init__(self, goal: float, measure: Callable[[Network], float]) -> None:
        self.goal, self.measure = float(goal), measure

    def start(self, run: Any) -> bool:
        return not run.record.n_epochs and self.measure(run.net) <= self.goal

    def callback(self, entry: dict[str, Any], net: Network) -> bool:
        entry["mse"] = self.measure(net)
        return False

    def fired(self, entry: dict[str, Any]) -> bool:
        return entry["mse"] <= self.goal


def score_callback(scorer: Callable[[Network], float]) -> Callback:
    """An epoch callback that enters ``scorer(network)`` as the entry's ``val_score``."""

    def callback(entry: dict[str, Any], net: Network) -> None:
        entry["val_score"] = scorer(net)

    return callback


def test_loss_callback(test: tuple[Array, Array], loss: Loss) -> Callback:
    """An epoch callback that enters the objective's data term on the ``test`` rows
    ``(X, T)`` as the entry's ``test_loss``."""
    X, T = test

    def callback(entry: dict[str, Any], net: Network) -> None:
        entry["test_loss"] = float(net.loss(X, T, loss))

    return callback


class SklearnStall(StopRule):
    """scikit-learn's no-improvement rule on ``key`` (``"loss"``: the training loss, in the
    data's units when the estimator computes them; ``"val_score"``: the validation score,
    scikit-learn's early stopping; ``"val_loss"``: the validation loss, jacnet's).

    An epoch counts as no improvement when the loss is above the best so far minus
    ``tol`` (a score: below the best plus ``tol``, so the negated score is the loss here;
    a NaN score counts as an improvement that sets no new best, as there); ``limit`` of
    them in a row (``np.inf``: never) stop training or, for ``learning_rate="adaptive"``
    (``rate``), divide the learning rate by 5 (the stop comes once it is at most 1e-6).
    The best and the count carry over from one fit to the next (``partial_fit``).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.reason = "no_improvement" if key == "loss" else "validation"
        self.limit: float = 1
        self.tol = 0.0
        self.best, self.count = np.inf, 0
        self.rate: SGDRate | None = None

    def observe(self, entry: dict[str, Any]) -> None:
        if self.key == "loss":
            value = entry.get("loss_sklearn", entry["loss"])
        else:
            value = -entry["val_score"] if self.key == "val_score" else entry["val_loss"]
        count = self.count + 1 if value > self.best - self.tol else 0
        rate = self.rate
        if count >= self.limit and rate is not None and rate.kind == "adaptive" \
                and rate.current > 1e-6:
            rate.current /= 5.0
            count = 0
        self.best, self.count = min(self.best, value), count

    def fired(self, entry: dict[str, Any]) -> bool:
        return self.count >= self.limit

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "count": self.count}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.count = state["best"], state["count"]


class SGDRate(Schedule):
    """scikit-learn's learning rate for ``solver="sgd"``, with time counted in samples.

    ::

        constant:    lr
        invscaling:  lr / (t + 1)^power_t,   t = t0 + epoch · n_samples
        adaptive:    current (:class:`SklearnStall` divides it by 5 when training stalls)

    ``t`` is scikit-learn's ``t_``: the samples seen before the epoch (``t0`` before this
    call), so a fresh fit's first epoch runs at ``lr`` and the rate falls per sample seen,
    not per epoch.
    """

    name = "sklearn_sgd"

    def __init__(self, lr: float, kind: str, power_t: float, t0: int, n_samples: int,
                 current: float) -> None:
        super().__init__(lr)
        self.kind, self.power_t, self.t0, self.n_samples = kind, power_t, t0, n_samples
        self.current = current

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "power_t": self.power_t,
                "t0": self.t0, "n_samples": self.n_samples, "current": self.current}

    def lr_at(self, epoch: int) -> float:
        if self.kind == "invscaling":
            return float(self.lr / (self.t0 + epoch * self.n_samples + 1) ** self.power_t)
        return self.current if self.kind == "adaptive" else self.lr
