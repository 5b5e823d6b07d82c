"""PNG figures of a training run: loss curves, predicted vs true, prediction intervals,
error histogram, confusion matrix.

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

__all__ = ["loss_curves", "predicted_vs_true", "intervals", "error_histogram",
           "confusion_matrix"]

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


def intervals(splits: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
              path: PathLike, names: Sequence[str] = (), coverage: float = 0.95,
              title: str = "", max_points: int = 400) -> None:
    """Predictions with their intervals against the truth: per target (row) and split
    (column) one panel of the rows sorted by prediction, the interval a band around the
    predicted line, each true value a dot (a red cross outside its interval); the share
    inside and the mean width in the panel's title.

    Parameters
    ----------
    splits : mapping of split name -> (y_true, y_pred, lower, upper)
        Arrays of shape (n,) or (n, k); empty splits are skipped.
    names : sequence of str
        The k target names.
    coverage : float
        The intervals' nominal coverage (for the labels).
    max_points : int
        Most rows drawn per panel (evenly spaced in the sorted order, so the whole range
        shows); the share inside and the width are of all rows.
    """
    parts = _parts(splits, 4)
    k = next(iter(parts.values()))[0].shape[1]
    names = list(names) or [f"output {j}" for j in range(k)]
    cols = len(parts)
    fig = Figure(figsize=(4.4 * cols, 3.8 * k), layout="constrained")
    for j in range(k):
        for c, (split, (t, p, low, up)) in enumerate(parts.items()):
            ax = fig.add_subplot(k, cols, j * cols + c + 1)
            order = np.argsort(p[:, j], kind="stable")
            keep = np.unique(np.linspace(0, len(t) - 1, min(len(t), max_points)).round())
            rows = order[keep.astype(int)]
            x = np.arange(len(rows))
            inside = (t[:, j] >= low[:, j]) & (t[:, j] <= up[:, j])
            ax.fill_between(x, low[rows, j], up[rows, j], color=_COLORS.get(split, "0.5"),
                            alpha=0.3, lw=0, label=f"{coverage:.0%} interval")
            ax.plot(x, p[rows, j], color=_COLORS.get(split, "0.3"), lw=1.4, label="predicted")
            hit = inside[rows]
            ax.plot(x[hit], t[rows, j][hit], ".", color="0.15", ms=4, label="true")
            if not hit.all():
                ax.plot(x[~hit], t[rows, j][~hit], "x", color="tab:red", ms=5, mew=1.5,
                        label=f"true, outside ({int((~inside).sum())})")
            drawn = "" if len(rows) == len(t) else f", {len(rows)} drawn"
            ax.set_title(f"{split}: {inside.mean():.1%} inside, mean width "
                         f"{float(np.mean(up[:, j] - low[:, j])):.3g}", fontsize=10)
            ax.set_xlabel(f"rows sorted by prediction (n={len(t)}{drawn})")
            ax.set_ylabel(names[j])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"Predictions with their {coverage:.0%} intervals against the truth")
    _save(fig, path)


def error_histogram(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], path: PathLike,
                    names: Sequence[str] = (), bins: int = 20, title: str = "") -> None:
    """MATLAB's ``ploterrhist``: the errors ``y_true - y_pred`` of each split in one
    histogram per target, the splits stacked in ``bins`` common bins, zero error marked.

    Parameters
    ----------
    splits : mapping of split name -> (y_true, y_pred)
        Arrays of shape (n,) or (n, k); empty splits are skipped.
    names : sequence of str
        The k target names.
    """
    parts = _parts(splits, 2)
    k = next(iter(parts.values()))[0].shape[1]
    names = list(names) or [f"output {j}" for j in range(k)]
    fig, axes = _panels(k)
    for j, ax in enumerate(axes):
        errors = {split: (t[:, j] - p[:, j]) for split, (t, p) in parts.items()}
        every = np.concatenate(list(errors.values()))
        every = every[np.isfinite(every)]
        if not len(every):
            ax.text(0.5, 0.5, "no finite error", ha="center", va="center",
                    transform=ax.transAxes, color="0.3")
            continue
        edges = np.histogram_bin_edges(every, bins=bins)
        ax.hist([e[np.isfinite(e)] for e in errors.values()], bins=edges, stacked=True,
                color=[_COLORS.get(s, "0.5") for s in errors], edgecolor="white", lw=0.5,
                label=[f"{s} (n={len(e)})" for s, e in errors.items()])
        ax.axvline(0.0, color="tab:red", lw=1.5, label="zero error")
        ax.set_xlabel(f"error = true - predicted {names[j]}")
        ax.set_ylabel("rows")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Error histogram ({bins} bins)")
    _save(fig, path)


def _parts(splits: Mapping[str, tuple[np.ndarray, ...]], width: int
           ) -> dict[str, tuple[np.ndarray, ...]]:
    """The non-empty splits' arrays as (n, k), checked to be ``width`` arrays of one shape
    and the same k in every split."""
    parts = {name: tuple(_2d(a) for a in arrays) for name, arrays in splits.items()
             if len(arrays[0])}
    if not parts:
        raise ValueError(f"splits must hold at least one non-empty split, got {list(splits)}")
    for name, arrays in parts.items():
        if len(arrays) != width or len({a.shape for a in arrays}) > 1:
            raise ValueError(f"splits[{name!r}] must hold {width} arrays of one shape")
    if len({a[0].shape[1] for a in parts.values()}) > 1:
        raise ValueError("splits must all have the same number of outputs")
    return parts


def _panels(k: int) -> tuple[Figure, list[Any]]:
    """A figure of ``k`` panels, at most three a row."""
    cols = min(k, 3)
    rows = -(-k // cols)
    fig = Figure(figsize=(4.8 * cols, 4.4 * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, j + 1) for j in range(k)]


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
