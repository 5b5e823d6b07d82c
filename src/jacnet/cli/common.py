"""Shared pieces of the ``jacnet`` command: the typer app, the console, data and model loading."""

from __future__ import annotations

import platform
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


def fmt_g(v: float | None) -> str:
    """``v`` in four significant digits, "-" for None."""
    return "-" if v is None else f"{v:.4g}"


def model_metrics(est: Any, kind: str, X: pd.DataFrame, y: np.ndarray,
             targets: Sequence[str] = ()) -> dict[str, Any] | None:
    """The scores of ``est`` on ``(X, y)``.

    Classification: accuracy, and for one target also the balanced accuracy and the
    baseline (the share of the most frequent class: what always answering it scores),
    which an imbalanced target needs for its accuracy to mean anything. Regression: R² and
    MSE averaged over the targets, and with several targets each one's (``per_target``:
    targets in other units would hide in the average).
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        mean_squared_error,
        r2_score,
    )

    if len(y) == 0:
        return None
    pred = est.predict(X)
    if kind == "classification":
        out: dict[str, Any] = {"n": len(y), "accuracy": float(accuracy_score(y, pred))}
        if y.ndim == 1:
            with warnings.catch_warnings():  # a class absent from these rows
                warnings.simplefilter("ignore")
                out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
            out["baseline_accuracy"] = float(pd.Series(y).value_counts().iloc[0] / len(y))
        return out

    def scores(t: np.ndarray, p: np.ndarray) -> tuple[float | None, float]:
        if not np.isfinite(p).all():  # a diverged model: no score (scikit-learn would raise)
            return None, float("inf")
        with np.errstate(over="ignore", invalid="ignore"):  # huge but finite: inf, then null
            return (float(r2_score(t, p)) if len(t) >= 2 else None,
                    float(mean_squared_error(t, p)))

    r2, mse = scores(y, pred)
    out = {"n": len(y), "r2": r2, "mse": mse}
    values = uncertainty_metrics(est, X, y) if has_posterior(est) else None
    if values is not None:
        out.update({k: _finite_mean(v) for k, v in values.items()})
    if y.ndim == 2 and y.shape[1] > 1:
        names = list(targets) if len(targets) == y.shape[1] else [
            f"output {j}" for j in range(y.shape[1])]
        out["per_target"] = {name: dict(zip(("r2", "mse"), scores(y[:, j], pred[:, j]),
                                            strict=True)) for j, name in enumerate(names)}
        for j, name in enumerate(names):
            out["per_target"][name].update(
                {k: _finite_mean(v[:, j]) for k, v in (values or {}).items()})
    return out


#: The coverage of the intervals the regression metrics score (``coverage_95``, ``width_95``).
COVERAGE = 0.95


def has_posterior(est: Any) -> bool:
    """Whether ``est`` (a regressor, or an :class:`jacnet.Ensemble` of them) gives error bars
    at a modest cost: each network has at most ``STORED_POSTERIOR_MAX_PARAMS`` parameters
    (the size a model file stores the posterior for) and its posterior exists (a squared
    error fit on in-memory rows, or a file that stored it). The posterior is computed now
    and kept."""
    from ..estimators import STORED_POSTERIOR_MAX_PARAMS

    members = getattr(est, "estimators_", None) or [est]
    for member in members:
        net = getattr(member, "network_", None)
        if net is None or not hasattr(member, "predict_interval") \
                or net.n_params > STORED_POSTERIOR_MAX_PARAMS:
            return False
        try:
            with np.errstate(all="ignore"):  # a diverged fit: checked just below
                post = member.posterior_  # computed once, and kept by the estimator
        except (ValueError, np.linalg.LinAlgError):
            return False
        if not (np.isfinite(post.covariance_factor).all()
                and np.isfinite(post.noise_variance).all()):
            return False
    return True


def uncertainty_metrics(est: Any, X: Any, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per value, (n, n_outputs): the Gaussian negative log-likelihood of ``y`` under the
    predictive distribution (mean and std, noise included, in the data's units;
    :func:`jacnet.uncertainty.gaussian_nll`), whether it lies in the central
    :data:`COVERAGE` interval (``coverage_95``) and that interval's width (``width_95``)."""
    from ..uncertainty import gaussian_nll, interval_scores

    with np.errstate(all="ignore"):  # a diverged model's inf scores become None
        mean, std = est.predict(X, return_std=True)
        lower, upper = est.predict_interval(X, COVERAGE)
    n = len(y)
    t = np.asarray(y, dtype=float).reshape(n, -1)
    mean, std, lower, upper = (a.reshape(n, -1) for a in (mean, std, lower, upper))
    inside, width = interval_scores(t, lower, upper)
    return {"nll": gaussian_nll(t, mean, std), "coverage_95": inside, "width_95": width}


def _finite_mean(values: np.ndarray) -> float | None:
    """The mean, or None when it is not finite (a diverged model)."""
    with np.errstate(all="ignore"):
        m = float(np.mean(values))
    return m if np.isfinite(m) else None


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.2%}" if metric.endswith("accuracy") or metric.startswith("coverage") \
        else f"{v:.4g}"


def metrics_tables(metrics: dict[str, dict[str, Any] | None], title: str) -> list[Table]:
    """``metrics`` per row set (train, validation, ...) as tables: the scores, and for
    several regression targets one more table of each target's."""
    shown = {name: m for name, m in metrics.items() if m is not None}
    keys = [k for k in next(iter(shown.values())) if k not in ("n", "per_target")]
    several = any("per_target" in m for m in shown.values())
    table = Table(title=title, title_justify="left")
    for c in ("rows", "n", *(k.replace("_", " ") + (" (mean)" if several else "")
                             for k in keys)):
        table.add_column(c, justify="left" if c == "rows" else "right")
    for name, m in shown.items():
        table.add_row(name, str(m["n"]), *(_fmt(m[k], k) for k in keys))
    tables = [table]
    if several:
        per = Table(title="Per target", title_justify="left")
        first = next(iter(next(m for m in shown.values() if "per_target" in m)
                          ["per_target"].values()))
        for c in ("rows", "target", *(k.replace("_", " ") for k in first)):
            per.add_column(c, justify="left" if c in ("rows", "target") else "right")
        for name, m in shown.items():
            for target, s in m.get("per_target", {}).items():
                per.add_row(name, escape(str(target)), *(_fmt(s.get(k), k) for k in first))
        tables.append(per)
    return tables


def load_frame(data: Path | None, dataset: str | None, target: list[str] | None,
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


def load_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The model of a file and its JSON document (:func:`jacnet.io.read_model`)."""
    from ..io import read_model

    model, doc = read_model(path)
    return model, doc


def model_text_columns(est: Any, doc: dict[str, Any], targets: Sequence[str] = ()) -> list[str]:
    """The columns a model reads as text: its one-hot features, and its targets when its
    classes are text (so "007" stays "007" in a file where every label looks like a number)."""
    spec = (doc.get("extra") or {}).get("data") or {}
    text = list((spec.get("features") or {}).get("categories", {}))
    classes = getattr(est, "classes_", None)
    if classes is not None and np.asarray(classes).dtype.kind in "OUS":
        text += list(targets)
    return text


def model_features(model: Any, doc: dict[str, Any], frame: pd.DataFrame,
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
                       f"columns ({short_list(columns)})")
    return encoded if names is not None else encoded.to_numpy()


def jsonable(v: Any) -> Any:
    """A numpy scalar as the Python value JSON takes."""
    return v.item() if isinstance(v, np.generic) else v


def short_list(items: list[Any], limit: int = 8) -> str:
    """The first ``limit`` items, comma separated, with the count of all when cut."""
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def versions() -> dict[str, str]:
    """The versions of jacnet, Python and the libraries a run's record names."""
    import scipy
    import sklearn

    from .. import __version__

    return {"jacnet": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
            "platform": platform.platform()}
