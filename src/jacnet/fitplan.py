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

__all__ = ["FULL_BATCH_PATIENCE", "MINI_BATCH_PATIENCE", "FitPlan", "SGDRate", "SklearnStall",
           "patience", "score_callback", "test_loss_callback"]

#: MATLAB trainlm's ``max_fail``: epochs without a lower validation loss before the stop,
#: for the full-batch solvers (one epoch is one step of the whole objective).
FULL_BATCH_PATIENCE = 6
#: The same for the mini-batch solvers, whose validation loss is noisier from epoch to
#: epoch (the command line's default).
MINI_BATCH_PATIENCE = 30


def patience(solver: str, n_iter_no_change: int | None = None,
             max_fail: int | None = None) -> int:
    """Epochs in a row without a lower validation loss before early stopping.

    ``max_fail`` when given; else scikit-learn's ``n_iter_no_change + 1`` (the estimators:
    its rule stops on the epoch after ``n_iter_no_change`` failures); else, with neither
    (the command line), :data:`FULL_BATCH_PATIENCE` for "lm" and "lbfgs" and
    :data:`MINI_BATCH_PATIENCE` for the mini-batch solvers.
    """
    if max_fail is not None:
        return int(max_fail)
    if n_iter_no_change is not None:
        return int(n_iter_no_change) + 1
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

    def run(self, net: Network) -> TrainingRecord:
        """Train ``net`` in place as planned; the record, with the plan's division."""
        X, T, w = self.data
        extra: dict[str, Any] = {}
        if self.validation is not None:
            extra["validation_data"] = self.validation[:2]
        if self.stall is not None:
            extra["stop"] = [self.stall]
        record = self.trainer(net, X, T, self.solver, sample_weight=w,
                              callbacks=self.callbacks, **extra, **self.options)
        if self.division is not None:
            record.division = self.division
        return record


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
    data's units when the estimator computes them; ``"val_loss"``: the validation loss).

    An epoch counts as no improvement when the loss is above the best so far minus
    ``tol``; ``limit`` of them in a row stop training or, for ``learning_rate="adaptive"``
    (``rate``), divide the learning rate by 5 (the stop comes once it is at most 1e-6).
    The best and the count carry over from one fit to the next (``partial_fit``).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.reason = "validation" if key == "val_loss" else "no_improvement"
        self.limit, self.tol = 1, 0.0
        self.best, self.count = np.inf, 0
        self.rate: SGDRate | None = None

    def observe(self, entry: dict[str, Any]) -> None:
        value = entry["val_loss"] if self.key == "val_loss" else entry.get(
            "loss_sklearn", entry["loss"])
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
