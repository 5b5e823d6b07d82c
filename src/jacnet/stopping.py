"""Stop rules: each decides one reason to end training, and is the only place that gives it.

The training loop records an epoch as a dict ``entry`` (``epoch``, ``loss``, ``val_loss``,
``grad_norm``, ``seconds``, ...), lets every rule :meth:`~StopRule.observe` it, and stops
with the reason of the first rule that has :meth:`~StopRule.fired`. A rule keeps its own
counters (the failures of early stopping, the best score it compares with), which
:meth:`~StopRule.get_state` and :meth:`~StopRule.set_state` carry through a checkpoint, so
a resumed run stops where the uninterrupted one would. The reasons' texts are
``jacnet.record.STOP_REASONS``.

The solvers read two of these settings through the loop: ``min_grad`` is also the
gradient norm below which Levenberg-Marquardt tries no step and L-BFGS converges, and
``tol`` is L-BFGS's relative-reduction tolerance.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .validation import check_int, check_real

__all__ = [
    "StopRule",
    "Goal",
    "MinGrad",
    "ValidationFail",
    "NoImprovement",
    "TimeLimit",
    "MaxEpochs",
    "stop_rules",
]


class StopRule:
    """Base class: a rule that may end training, with the one reason it gives.

    Subclasses set ``reason`` (a key of ``STOP_REASONS``) and override :meth:`fired`;
    a rule with counters overrides :meth:`observe`, :meth:`get_state`, :meth:`set_state`.
    """

    reason: str = ""

    def start(self, run: Any) -> bool:
        """Whether the run is over before its first epoch (a fresh run only). ``run`` gives
        ``record``, ``initial_val_loss`` and ``solver``."""
        return False

    def observe(self, entry: dict[str, Any]) -> None:
        """Take in the epoch just recorded (update counters)."""

    def fired(self, entry: dict[str, Any]) -> bool:
        """Whether training stops after ``entry``, the last epoch recorded (also asked
        on resume, of the checkpoint's last epoch)."""
        return False

    def get_state(self) -> dict[str, Any]:
        """The counters, JSON-serialisable (for a checkpoint)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`get_state`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Goal(StopRule):
    """Stop when the training loss is at most ``goal`` (trainlm's ``goal``; 0: never).

    A solver that evaluates its objective before the first step (Levenberg-Marquardt,
    L-BFGS) has the initial weights checked too: trainlm's test at epoch 0.
    """

    reason = "goal"

    def __init__(self, goal: float) -> None:
        self.goal = check_real(goal, "goal", "a non-negative number", lambda x: x >= 0)

    def start(self, run: Any) -> bool:
        if not self.goal or run.record.n_epochs:
            return False
        value = run.solver.start_loss()  # None: the solver has no loss before its first step
        return value is not None and value <= self.goal

    def fired(self, entry: dict[str, Any]) -> bool:
        return bool(self.goal) and entry["loss"] <= self.goal


class MinGrad(StopRule):
    """Stop when the gradient norm falls below ``min_grad`` (trainlm's 1e-7)."""

    reason = "min_grad"

    def __init__(self, min_grad: float = 1e-7) -> None:
        self.min_grad = check_real(min_grad, "min_grad", "a non-negative number",
                                   lambda x: x >= 0)

    def fired(self, entry: dict[str, Any]) -> bool:
        return entry["grad_norm"] < self.min_grad


class _Patience(StopRule):
    """Counts epochs in a row whose score is not below the best so far by more than
    ``tol``; any strict improvement is the new best (scikit-learn's rule: a gain smaller
    than ``tol`` still moves the best). Fires when the count reaches ``patience``."""

    key: ClassVar[str] = "loss"

    def __init__(self, patience: int, tol: float, name: str) -> None:
        self.patience = check_int(patience, name, 1)
        self.tol = check_real(tol, "tol", "a non-negative number", lambda x: x >= 0)
        self.best = math.inf
        self.fails = 0

    def observe(self, entry: dict[str, Any]) -> None:
        score = entry[self.key]
        self.fails = 0 if score < self.best - self.tol else self.fails + 1
        if score < self.best:
            self.best = score

    def fired(self, entry: dict[str, Any]) -> bool:
        return self.fails >= self.patience

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "fails": self.fails}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.fails = state["best"], state["fails"]


class ValidationFail(_Patience):
    """trainlm's early stopping: ``max_fail`` epochs in a row without a validation loss
    lower than the best by more than ``tol``. The initial weights are the first candidate
    (epoch 0)."""

    reason = "validation"
    key = "val_loss"

    def __init__(self, max_fail: int = 6, tol: float = 0.0) -> None:
        super().__init__(max_fail, tol, "max_fail")

    @property
    def max_fail(self) -> int:
        return self.patience

    def start(self, run: Any) -> bool:
        initial = run.initial_val_loss
        if initial is not None and math.isfinite(initial):
            self.best = initial
        return False


class NoImprovement(_Patience):
    """scikit-learn's ``n_iter_no_change``: that many epochs in a row without a training
    loss lower than the best by more than ``tol``."""

    reason = "no_improvement"

    def __init__(self, n_iter_no_change: int, tol: float = 0.0) -> None:
        super().__init__(n_iter_no_change, tol, "n_iter_no_change")

    @property
    def n_iter_no_change(self) -> int:
        return self.patience


class TimeLimit(StopRule):
    """Stop once the run has taken ``seconds`` (wall time, resumed runs included)."""

    reason = "time_limit"

    def __init__(self, seconds: float) -> None:
        self.seconds = check_real(seconds, "time_limit", "a positive number", lambda x: x > 0)

    def fired(self, entry: dict[str, Any]) -> bool:
        return entry["seconds"] >= self.seconds


class MaxEpochs(StopRule):
    """Stop after epoch ``max_epochs`` (the epoch budget; 0: no epoch at all)."""

    reason = "max_epochs"

    def __init__(self, max_epochs: int = 1000) -> None:
        self.max_epochs = check_int(max_epochs, "max_epochs", 0)

    def start(self, run: Any) -> bool:
        return run.record.n_epochs >= self.max_epochs

    def fired(self, entry: dict[str, Any]) -> bool:
        return entry["epoch"] >= self.max_epochs


def stop_rules(
    *,
    max_epochs: int = 1000,
    validation: bool = False,
    goal: float = 0.0,
    min_grad: float = 1e-7,
    early_stopping: bool = True,
    max_fail: int = 6,
    n_iter_no_change: int | None = None,
    tol: float = 0.0,
    time_limit: float | None = None,
) -> list[StopRule]:
    """The rules of :func:`jacnet.train`'s keyword options, in the order they are asked.

    ``validation``: whether the run has validation data. With it (and ``early_stopping``)
    :class:`ValidationFail` watches the validation loss; without it ``n_iter_no_change``
    (when given) watches the training loss. Every value is checked here, by name.
    """
    rules: list[StopRule] = [Goal(goal), MinGrad(min_grad)]
    fail = ValidationFail(max_fail, tol)  # checked even when it does not apply
    if n_iter_no_change is not None:
        stall: StopRule | None = NoImprovement(n_iter_no_change, tol)
    else:
        stall = None
        check_real(tol, "tol", "a non-negative number", lambda x: x >= 0)
    if validation and early_stopping:
        rules.append(fail)
    elif not validation and stall is not None:
        rules.append(stall)
    if time_limit is not None:
        rules.append(TimeLimit(time_limit))
    rules.append(MaxEpochs(max_epochs))
    return rules

