"""Learning-rate schedules: the learning rate as a function of the epoch.

A schedule gives the ``lr`` that the training loop passes to ``Optimizer.update``::

    sched = get_schedule("cosine", lr=0.01, t_max=100)
    for epoch in range(n_epochs):
        lr = sched.lr_at(epoch)               # epoch counts from 0
        ...                                   # opt.update(params, grads, state, lr=lr)
        sched.observe(epoch, val_loss)        # only ReduceOnPlateau listens

``epoch`` is the 0-based index of the current epoch; a loop that schedules per step may
pass the step index instead (the formulas do not care, only the meaning of ``step_size``,
``t_max`` and ``patience`` changes). Every schedule but :class:`ReduceOnPlateau` is a pure
function of ``epoch``. ``to_dict``/``from_dict`` save and restore a schedule, state
included, as a JSON-serialisable dict (for checkpoints).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from numbers import Real
from typing import Any, ClassVar

from .registry import Registry
from .validation import check_int, check_real

__all__ = [
    "Schedule",
    "Constant",
    "InvScaling",
    "Step",
    "Cosine",
    "ReduceOnPlateau",
    "SCHEDULES",
    "get_schedule",
]


def _epoch(epoch: Any) -> int:
    return check_int(epoch, "epoch", 0)


class Schedule(ABC):
    """Base class: ``lr_at(epoch)`` plus the hooks a stateful schedule needs.

    Parameters
    ----------
    lr : float
        The initial (or constant) learning rate, > 0.
    """

    name: ClassVar[str] = ""

    def __init__(self, lr: float) -> None:
        self.lr = check_real(lr, "lr", "a positive float", lambda x: x > 0)

    @abstractmethod
    def lr_at(self, epoch: int) -> float:
        """Learning rate for ``epoch`` (0-based)."""

    def observe(self, epoch: int, val_loss: float) -> None:
        """Report the validation loss at the end of ``epoch``; a no-op unless stateful."""
        _epoch(epoch)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``type(s)(**s.get_config())`` builds a fresh copy."""
        return {"lr": self.lr}

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"schedule {self.name!r} has no state, got keys {sorted(state)}")

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "config", "state"}``, JSON-serialisable; see :meth:`from_dict`."""
        return {"name": self.name, "config": self.get_config(), "state": self._get_state()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        """Rebuild a schedule, state included, from the output of :meth:`to_dict`.

        ``Schedule.from_dict`` accepts any registered schedule; a subclass only its own
        (built as that class when the names agree, so it need not be registered).
        """
        if cls is not Schedule and d["name"] == cls.name:
            sched: Schedule = cls(**d["config"])
        else:
            sched = get_schedule(d["name"], **d["config"])
        if not isinstance(sched, cls):
            raise ValueError(f"{cls.__name__}.from_dict got a {type(sched).__name__} dict")
        sched._set_state(d.get("state", {}))
        return sched

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr_e = lr`` for every epoch ``e``."""

    name = "constant"

    def lr_at(self, epoch: int) -> float:
        _epoch(epoch)
        return self.lr


class InvScaling(Schedule):
    """Inverse scaling, as scikit-learn's ``learning_rate="invscaling"``.

    ::

        lr_e = lr / (e + 1)^power_t

    with ``e`` the 0-based epoch, so epoch 0 uses ``lr``. scikit-learn counts samples seen
    instead (``t = e · n_samples``, updated at the end of each epoch); a loop that wants
    its values exactly passes ``e · n_samples`` as ``epoch``.

    Parameters
    ----------
    lr : float
    power_t : float, default=0.5
        Exponent >= 0.
    """

    name = "invscaling"

    def __init__(self, lr: float, power_t: float = 0.5) -> None:
        super().__init__(lr)
        self.power_t = check_real(power_t, "power_t", "a non-negative float", lambda x: x >= 0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power_t": self.power_t}

    def lr_at(self, epoch: int) -> float:
        return self.lr / (_epoch(epoch) + 1) ** self.power_t


class Step(Schedule):
    """Step decay: multiply by ``gamma`` every ``step_size`` epochs (PyTorch's ``StepLR``).

    ::

        lr_e = lr · gamma^⌊e / step_size⌋

    Parameters
    ----------
    lr : float
    step_size : int
        Epochs between two decays, >= 1.
    gamma : float, default=0.1
        Decay factor in (0, 1].
    """

    name = "step"

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(lr)
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_real(gamma, "gamma", "a float in (0, 1]", lambda x: 0 < x <= 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "step_size": self.step_size, "gamma": self.gamma}

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.gamma ** (_epoch(epoch) // self.step_size)


class Cosine(Schedule):
    """Cosine annealing without restarts (Loshchilov & Hutter, ICLR 2017, eq. 5).

    ::

        lr_e = lr_min + (lr - lr_min) · (1 + cos(π · min(e, t_max) / t_max)) / 2

    It falls from ``lr`` at epoch 0 to ``lr_min`` at epoch ``t_max`` and stays there
    (PyTorch's closed form would climb back up after ``t_max``).

    Parameters
    ----------
    lr : float
    t_max : int
        Epochs to reach ``lr_min``, >= 1.
    lr_min : float, default=0.0
        Final learning rate, in [0, lr].
    """

    name = "cosine"

    def __init__(self, lr: float, t_max: int, lr_min: float = 0.0) -> None:
        super().__init__(lr)
        self.t_max = check_int(t_max, "t_max", 1)
        self.lr_min = check_real(
            lr_min, "lr_min", f"a float in [0, lr={self.lr}]", lambda x: 0 <= x <= self.lr
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "t_max": self.t_max, "lr_min": self.lr_min}

    def lr_at(self, epoch: int) -> float:
        e = min(_epoch(epoch), self.t_max)
        return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * e / self.t_max)) / 2


class ReduceOnPlateau(Schedule):
    """Divide the learning rate when the validation loss stops improving.

    PyTorch's ``ReduceLROnPlateau`` (mode ``"min"``, relative threshold, no cooldown). At
    each :meth:`observe`::

        improved = val_loss < best - threshold · |best|      (any finite loss beats none)
        if improved: best = val_loss, bad = 0  else: bad += 1
        if bad > patience: lr_cur = max(lr_cur · factor, min_lr), bad = 0

    so ``patience + 1`` epochs in a row without improvement trigger one reduction, which
    applies from the next ``lr_at``. A NaN loss never counts as an improvement. ``lr_at``
    returns ``lr_cur`` whatever the epoch.

    Parameters
    ----------
    lr : float
    factor : float, default=0.1
        Multiplier in (0, 1).
    patience : int, default=10
        Epochs without improvement tolerated, >= 0.
    threshold : float, default=1e-4
        Relative improvement that counts, >= 0.
    min_lr : float, default=0.0
        Floor, in [0, lr].
    """

    name = "reduce_on_plateau"

    def __init__(
        self,
        lr: float,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.factor = check_real(factor, "factor", "a float in (0, 1)", lambda x: 0 < x < 1)
        self.patience = check_int(patience, "patience", 0)
        self.threshold = check_real(
            threshold, "threshold", "a non-negative float", lambda x: x >= 0
        )
        self.min_lr = check_real(
            min_lr, "min_lr", f"a float in [0, lr={self.lr}]", lambda x: 0 <= x <= self.lr
        )
        self.lr_current = self.lr
        self.best: float | None = None
        self.n_bad_epochs = 0

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "min_lr": self.min_lr,
        }

    def _get_state(self) -> dict[str, Any]:
        # best is None before the first finite loss: JSON has no infinity.
        return {"lr_current": self.lr_current, "best": self.best, "n_bad_epochs": self.n_bad_epochs}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.lr_current = float(state["lr_current"])
        self.best = None if state["best"] is None else float(state["best"])
        self.n_bad_epochs = int(state["n_bad_epochs"])

    def lr_at(self, epoch: int) -> float:
        _epoch(epoch)
        return self.lr_current

    def observe(self, epoch: int, val_loss: float) -> None:
        _epoch(epoch)
        if isinstance(val_loss, bool) or not isinstance(val_loss, Real):
            raise TypeError(f"val_loss must be a real number, got {type(val_loss).__name__}")
        loss = float(val_loss)
        # |best| keeps the relative threshold meaningful for negative losses too.
        if self.best is None:
            improved = math.isfinite(loss)
        else:
            improved = loss < self.best - self.threshold * abs(self.best)
        if improved:
            self.best, self.n_bad_epochs = loss, 0
        else:
            self.n_bad_epochs += 1
        if self.n_bad_epochs > self.patience:
            self.lr_current = max(self.lr_current * self.factor, self.min_lr)
            self.n_bad_epochs = 0


SCHEDULES: Registry[Schedule] = Registry(
    "schedule", Schedule, (Constant, InvScaling, Step, Cosine, ReduceOnPlateau)
)


def get_schedule(spec: str | Schedule, **config: Any) -> Schedule:
    """Return a schedule from a name or an instance.

    Parameters
    ----------
    spec : str or Schedule
        A name in ``SCHEDULES`` (``"constant"``, ``"invscaling"``, ``"step"``,
        ``"cosine"``, ``"reduce_on_plateau"``) or an instance, returned as is.
    **config
        Constructor arguments (``lr`` and the schedule's own) when ``spec`` is a name.
    """
    return SCHEDULES.create(spec, **config)
