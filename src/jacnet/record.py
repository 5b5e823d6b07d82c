"""The training record: what happened in every epoch, why training stopped, the division."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrainingRecord", "STOP_REASONS"]

#: Every stop reason the training loop can give, with its meaning.
STOP_REASONS: dict[str, str] = {
    "max_epochs": "the epoch budget (max_iter) was used up",
    "max_fun": "L-BFGS used up its budget of function evaluations (max_fun)",
    "goal": "the training loss reached the goal",
    "min_grad": "the gradient norm fell below min_grad",
    "mu_max": "Levenberg-Marquardt's mu rose above mu_max: no step lowers the loss",
    "validation": "the validation loss failed to improve max_fail epochs in a row",
    "no_improvement": "the training loss failed to improve by tol for n_iter_no_change epochs",
    "converged": "L-BFGS converged (its own gradient or function tolerance)",
    "line_search": "L-BFGS stopped: its line search found no acceptable step",
    "time_limit": "the time limit was reached",
    "non_finite": "the loss stayed NaN or inf after lowering the step several times",
    "callback": "a callback asked to stop",
}


@dataclass
class TrainingRecord:
    """Per-epoch history of one training run.

    Attributes
    ----------
    epochs : list of dict
        One dict per epoch: ``epoch`` (1-based), ``loss`` (training objective, L2 term
        included), ``val_loss`` and ``test_loss`` (None without those sets),
        ``grad_norm``, ``lr`` (gradient solvers) or ``mu`` (LM), ``seconds`` (since start).
    stop_reason : str
        A key of ``STOP_REASONS``.
    best_epoch : int
        Epoch of the best validation loss (of the training loss without validation);
        0 means the initial weights.
    division : dict of str -> ndarray
        Indices of the ``train``, ``validation`` and ``test`` samples in the data given.
    """

    solver: str = ""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    best_epoch: int = 0
    best_loss: float = float("inf")
    best_val_loss: float | None = None
    division: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    def column(self, key: str) -> np.ndarray:
        """One column of the epoch table as an array (None becomes NaN)."""
        return np.array([np.nan if e.get(key) is None else e[key] for e in self.epochs], float)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "solver": self.solver,
            "stop_reason": self.stop_reason,
            "stop_message": STOP_REASONS.get(self.stop_reason, ""),
            "best_epoch": self.best_epoch,
            "best_loss": _num(self.best_loss),
            "best_val_loss": _num(self.best_val_loss),
            "seconds": self.seconds,
            "epochs": [{k: _clean(v) for k, v in e.items()} for e in self.epochs],
            "division": {k: np.asarray(v).tolist() for k, v in self.division.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingRecord:
        return cls(
            solver=d.get("solver", ""),
            epochs=list(d.get("epochs", [])),
            stop_reason=d.get("stop_reason", ""),
            best_epoch=int(d.get("best_epoch", 0)),
            best_loss=float("inf") if d.get("best_loss") is None else float(d["best_loss"]),
            best_val_loss=d.get("best_val_loss"),
            division={k: np.asarray(v, dtype=np.int64) for k, v in d.get("division", {}).items()},
            seconds=float(d.get("seconds", 0.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        return (
            f"TrainingRecord(solver={self.solver!r}, epochs={self.n_epochs}, "
            f"stop_reason={self.stop_reason!r}, best_epoch={self.best_epoch})"
        )


def strict_json(v: Any) -> Any:
    """``v`` with every non-finite float in its dicts, lists and tuples made None (for
    ``json.dumps(..., allow_nan=False)``) and numpy scalars made Python numbers."""
    if isinstance(v, dict):
        return {k: strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    return _clean(v)


def _clean(v: Any) -> Any:
    """Strict-JSON value: non-finite floats become None."""
    if isinstance(v, (float, np.floating)):
        return _num(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def _num(x: float | None) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    return float(x)
