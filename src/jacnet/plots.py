"""PNG figures of a training run: loss curves, predicted vs true, confusion matrix.

Figures are drawn on matplotlib's ``Figure`` with the Agg canvas (no pyplot state, no
display needed) and written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .checkpoint import atomic_write
from .record import TrainingRecord

__all__ = ["loss_curves", "predicted_vs_true", "confusion_matrix"]

PathLike = str | os.PathLike[str]
_COLORS = {"train": "tab:blue", "validation": "tab:orange", "test": "tab:green"}


def loss_curves(record: TrainingRecord, path: PathLike, title: str = "",
                train_label: str = "train") -> None:
    """Training, validation and test loss per epoch, the best epoch marked.

    The training curve is the objective the solver minimised (L2 term included, say so in
    ``train_label``); the validation and test curves are the loss alone on those sets.
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    epochs = record.column("epoch")
    curves = {"train": record.column("loss"), "validation": record.column("val_loss"),
              "test": record.column("test_loss")}
    shown = {k: v for k, v in curves.items() if len(v) and np.isfinite(v).any()}
    for name, values in shown.items():
        ax.plot(epochs, values, color=_COLORS[name], lw=1.6,
                label=train_label if name == "train" else name,
                marker="o" if len(epochs) < 30 else None, ms=3)
    best = record.best_epoch
    if best >= 1 and len(epochs):
        ax.axvline(best, color="0.3", ls="--", lw=1, label=f"best epoch ({best})")
        key = "validation" if "validation" in shown else "train"
        y = shown[key][best - 1] if best <= len(shown[key]) else np.nan
        if np.isfinite(y):
            ax.plot([best], [y], "o", color=_COLORS[key], ms=8, mfc="none", mew=2)
    every = np.concatenate([v[np.isfinite(v)] for v in shown.values()] or [np.ones(1)])
    if (every > 0).all() and every.max() / every.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or f"Loss per epoch ({record.solver}; stop: {record.stop_reason})")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend()
    else:  # no epoch, or none with a finite loss: say so rather than leave a blank frame
        ax.text(0.5, 0.5, f"no finite loss recorded ({record.n_epochs} epochs)",
                ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")
    _save(fig, path)


def predicted_vs_true(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], path: PathLike,
                      names: Sequence[str] = (), title: str = "") -> None:
    """Scatter of predictions against targets per split, Pearson's R in the legend.

    Parameters
    ----------
    splits : mapping of split name -> (y_true, y_pred)
        Arrays of shape (n,) or (n, k); empty splits are skipped.
    names : sequence of str
        The k target names (one panel each).
    """
    parts = {k: (_2d(t), _2d(p)) for k, (t, p) in splits.items() if len(t)}
    if not parts:
        raise ValueError(f"splits must hold at least one non-empty split, got {list(splits)}")
    for split, (t, p) in parts.items():
        if t.shape != p.shape:
            raise ValueError(f"splits[{split!r}] must pair y_true and y_pred of one shape, "
                             f"got {t.shape} and {p.shape}")
    k = next(iter(parts.values()))[0].shape[1]
    if len({t.shape[1] for t, _ in parts.values()}) > 1:
        raise ValueError("splits must all have the same number of outputs")
    names = list(names) or [f"output {j}" for j in range(k)]
    cols = min(k, 3)
    rows = -(-k // cols)
    fig = Figure(figsize=(4.6 * cols, 4.4 * rows), layout="constrained")
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        lo, hi = np.inf, -np.inf
        for split, (t, p) in parts.items():
            r = _pearson(t[:, j], p[:, j])
            ax.scatter(t[:, j], p[:, j], s=12, alpha=0.6, color=_COLORS.get(split),
                       label=f"{split}: R = {r:.3f} (n={len(t)})")
            lo, hi = min(lo, t[:, j].min(), p[:, j].min()), max(hi, t[:, j].max(), p[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="y = x")
        ax.set_xlabel(f"true {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "Predicted vs true")
    _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any],
                     path: PathLike, title: str = "") -> None:
    """Counts of (true class, predicted class), annotated, rows = true classes."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    m = len(classes)
    true, pred = np.asarray(y_true).tolist(), np.asarray(y_pred).tolist()
    if len(true) != len(pred):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(true)} and "
                         f"{len(pred)}")
    for name, labels in (("y_true", true), ("y_pred", pred)):
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise ValueError(f"{name} holds labels that are not in classes: {unknown}")
    counts = np.zeros((m, m), dtype=int)
    for t, p in zip(true, pred, strict=True):
        counts[index[t], index[p]] += 1
    size = min(2.8 + 0.4 * m, 10)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8, label="samples")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(m), labels, rotation=45 if max(map(len, labels)) > 3 else 0,
                  ha="right" if max(map(len, labels)) > 3 else "center")
    ax.set_yticks(range(m), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if m <= 25:
        threshold = counts.max() / 2
        for i in range(m):
            for j in range(m):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                            color="white" if counts[i, j] > threshold else "black")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(title or f"Confusion matrix (accuracy {accuracy:.1%})")
    _save(fig, path)


def _2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # undefined (NaN) for a constant column, or a diverged model's huge or inf predictions
    if len(a) < 2:
        return float("nan")
    with np.errstate(all="ignore"):
        sa, sb = a.std(), b.std()
        r = float(np.corrcoef(a, b)[0, 1]) if sa > 0 and sb > 0 else float("nan")
    return r if np.isfinite(r) else float("nan")


def _save(fig: Figure, path: PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, buf.getvalue())
