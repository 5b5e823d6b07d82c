"""Shared pieces of the ``jacnet`` command: the typer app, the console, data and model loading."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console

from ..data import (
    BUILTIN,
    FeatureEncoder,
    builtin,
    check_columns,
    default_targets,
    read_table,
)

app = typer.Typer(
    name="jacnet",
    help="Multilayer perceptrons on exact Jacobian backpropagation: train, predict, inspect.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) gets lines wide enough for the progress bar and tables.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


class CliError(ValueError):
    """A bad command-line input; the message is one line."""


Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", metavar="NAME", help=f"A built-in dataset instead of DATA: {', '.join(BUILTIN)}.")]


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _metrics(est: Any, kind: str, X: pd.DataFrame, y: np.ndarray) -> dict[str, Any] | None:
    from sklearn.metrics import accuracy_score, mean_squared_error, r2_score

    if len(y) == 0:
        return None
    pred = est.predict(X)
    if kind == "classification":
        return {"n": len(y), "accuracy": float(accuracy_score(y, pred))}
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged model's are inf/NaN
        r2 = float(r2_score(y, pred)) if len(y) >= 2 else None
        mse = float(mean_squared_error(y, pred))
    return {"n": len(y), "r2": r2, "mse": mse}


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.2%}" if metric == "accuracy" else f"{v:.4g}"


def _frame(data: Path | None, dataset: str | None, target: list[str] | None,
           default: str | None, text_columns: Sequence[str] = ()
           ) -> tuple[pd.DataFrame, list[str], str]:
    """The data frame, its target columns and a description of the source.

    ``text_columns``: read from a CSV as written (see :func:`jacnet.data.read_table`)."""
    if data is not None and dataset is not None:
        raise CliError("give a DATA file or --dataset, not both")
    if data is None:
        name = dataset or default
        if name is None:
            raise CliError("missing DATA: give a data file or --dataset NAME")
        frame, targets = builtin(name)
        source = f"dataset {name}"
    else:
        frame = read_table(data, text_columns)
        targets = default_targets(frame, npz=data.suffix.lower() == ".npz")
        source = str(data)
    if target:
        check_columns(frame, list(target), "target")
        targets = list(dict.fromkeys(target))
    return frame, targets, source


def _load_model(path: Path) -> tuple[Any, dict[str, Any]]:
    from ..io import read_model

    model, doc = read_model(path)
    return model, doc


def _text_columns(est: Any, doc: dict[str, Any], targets: Sequence[str] = ()) -> list[str]:
    """The columns a model reads as text: its one-hot features, and its targets when its
    classes are text (so "007" stays "007" in a file where every label looks like a number)."""
    spec = (doc.get("extra") or {}).get("data") or {}
    text = list((spec.get("features") or {}).get("categories", {}))
    classes = getattr(est, "classes_", None)
    if classes is not None and np.asarray(classes).dtype.kind in "OUS":
        text += list(targets)
    return text


def _features(model: Any, doc: dict[str, Any], frame: pd.DataFrame,
              targets: list[str]) -> pd.DataFrame | np.ndarray:
    """The model's input from ``frame``: the stored encoding, else the numeric columns."""
    spec = (doc.get("extra") or {}).get("data")
    if spec is not None:
        return FeatureEncoder.from_dict(spec["features"]).transform(frame)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        columns = [str(c) for c in names]
    else:
        columns = [c for c in frame.columns if c not in targets]
    check_columns(frame, columns, "feature")
    encoded = FeatureEncoder(columns).transform(frame)
    n_in = model.n_in if hasattr(model, "n_in") else model.n_features_in_
    if encoded.shape[1] != n_in:
        raise CliError(f"the model expects {n_in} features, the data has {encoded.shape[1]} "
                       f"columns ({_list(columns)})")
    return encoded if names is not None else encoded.to_numpy()


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _list(items: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _versions() -> dict[str, str]:
    import scipy
    import sklearn

    from .. import __version__

    return {"jacnet": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
            "platform": platform.platform()}
