"""The ``jacnet`` command: train, predict, evaluate, info, gradcheck.

Every error a user can cause (a missing file, an unknown column, a bad option value, a
file that is not a model) ends the command with exit code 2 and one line on stderr;
``--debug`` prints the traceback as well. ``jacnet gradcheck`` exits 1 when a check fails.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
import warnings
from dataclasses import replace
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from .data import (
    BUILTIN,
    DataError,
    FeatureEncoder,
    builtin,
    check_columns,
    default_targets,
    divide,
    infer_task,
    read_table,
    target_values,
)
from .io import ModelFileError

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


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


class Solver(str, Enum):
    auto = "auto"
    lm = "lm"
    lbfgs = "lbfgs"
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", metavar="NAME", help=f"A built-in dataset instead of DATA: {', '.join(BUILTIN)}.")]

#: ``--solver auto`` picks Levenberg-Marquardt when one LM epoch costs at most this many
#: floating-point operations (N·outputs·P² for JᵀJ plus P³ for the solve), else Adam.
LM_BUDGET = 1e9


# ----------------------------------------------------------------------------- train
@app.command()
def train(
    data: Annotated[Path | None, typer.Argument(
        help="CSV, TSV, Parquet or .npz file; without it, --dataset.", show_default=False)] = None,
    dataset: DatasetOpt = None,
    target: Annotated[list[str] | None, typer.Option(
        "--target", "-t", metavar="COL", help="Target column (repeat for several outputs); "
        "default: the last column.", show_default=False)] = None,
    drop: Annotated[list[str] | None, typer.Option(
        "--drop", metavar="COL", help="Column to leave out of the features (repeatable).",
        show_default=False)] = None,
    task: Annotated[Task, typer.Option(help="Inferred from the target by default.")] = Task.auto,
    hidden: Annotated[str, typer.Option(
        metavar="SIZES",
        help="Hidden layer sizes, comma separated ('' or 'none' for no hidden layer).")] = "512",
    activation: Annotated[str, typer.Option(
        metavar="NAMES",
        help="Hidden activation: one name, or one per hidden layer, comma separated.")] = "relu",
    solver: Annotated[Solver, typer.Option(
        help="'auto': Levenberg-Marquardt for small problems, else Adam.")] = Solver.auto,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs to train.")] = 200,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size (Adam, SGD, ...).")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam, SGD, ...).")] = 1e-3,
    alpha: Annotated[float, typer.Option(min=0.0, help="L2 penalty on the weights.")] = 0.03,
    patience: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many epochs without a better validation loss "
        "(default 30; 6 for lm and lbfgs, as trainlm).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the division, initial weights and "
                                           "shuffling.")] = 0,
    val_fraction: Annotated[float, typer.Option(
        help="Fraction of rows for validation (early stopping).")] = 0.15,
    test_fraction: Annotated[float, typer.Option(
        help="Fraction of rows held out for the test metrics.")] = 0.15,
    dtype: Annotated[DType, typer.Option(help="Floating-point type of the network.")
                     ] = DType.float64,
    standardize: Annotated[bool, typer.Option(
        "--standardize/--no-standardize",
        help="Standardise inputs (and regression targets) inside the model.")] = True,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder; default runs/<timestamp>.", show_default=False)
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="No progress bar and no summary.")] = False,
    debug: Debug = False,
) -> None:
    """Train a network on a data file or a built-in dataset; write model, record and plots."""
    from . import plots as plotting
    from .io import save_estimator

    t0 = time.perf_counter()
    options = {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v)
               for k, v in locals().items() if k not in ("t0", "plotting", "save_estimator")}
    if not lr > 0:
        raise CliError(f"--lr must be a positive number, got {lr}")
    sizes = _parse_hidden(hidden)
    acts = _parse_activations(activation, len(sizes))
    frame, targets, source = _frame(data, dataset, target, default="digits")
    features = [c for c in frame.columns if c not in targets and c not in (drop or [])]
    check_columns(frame, list(drop or []), "--drop")
    kind = infer_task(frame, targets) if task is Task.auto else task.value
    encoder = FeatureEncoder.fit(frame, features)
    X = encoder.transform(frame)
    y = target_values(frame, targets, kind)
    stratify = y if kind == "classification" and y.ndim == 1 else None
    division = divide(len(frame), val_fraction, test_fraction, seed, stratify)
    _check_classes_in_train(y, division, kind)
    n_out = _n_outputs(y, kind)
    n_params = _n_params([X.shape[1], *sizes, n_out])
    chosen = _choose_solver(solver.value, len(division["train"]) * n_out, n_params)
    if patience is None:
        patience = 6 if chosen in ("lm", "lbfgs") else 30
    est = _estimator(kind, sizes, acts, chosen, epochs, batch_size, lr, alpha, patience, seed,
                     val_fraction, standardize, dtype.value)
    t_load = time.perf_counter()
    if not quiet:
        out.print(f"[bold]jacnet train[/]: {source}, {len(frame)} rows, {len(features)} "
                  f"feature columns ({X.shape[1]} encoded), {kind} of {_list(targets)}")
        out.print(f"network {' -> '.join(map(str, [X.shape[1], *sizes, n_out]))} "
                  f"({n_params} parameters), solver {chosen}, {dtype.value}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = _fit_divided(est, X, y, division, patience, progress=not quiet)
    notes = sorted({" ".join(str(w.message).split()) for w in caught
                    if not issubclass(w.category, DeprecationWarning)})
    est.verbose = False
    t_train = time.perf_counter()
    splits = {name: (X.iloc[idx], y[idx]) for name, idx in division.items()}
    metrics = {name: _metrics(est, kind, *xy) for name, xy in splits.items()}
    run_dir = _run_dir(out_dir)
    spec = {"features": encoder.to_dict(), "targets": targets, "task": kind, "source": source}
    save_estimator(est, run_dir / "model.safetensors", extra={"data": spec})
    t_save = time.perf_counter()
    pictures = _plots(plotting, est, kind, record, splits, targets, run_dir) if plots else []
    t_end = time.perf_counter()
    doc = record.to_dict()
    doc.update({
        "metrics": metrics, "task": kind, "targets": targets,
        "classes": [_jsonable(c) for c in est.classes_] if kind == "classification" else None,
        "data": {"source": source, "rows": len(frame), "features": features,
                 "encoded_features": encoder.names},
        "model": {"file": "model.safetensors", "solver": chosen, "n_params": n_params,
                  "layers": [X.shape[1], *sizes, n_out], "activations": acts},
        "options": options, "warnings": notes, "versions": _versions(),
        "timings": {"data_s": t_load - t0, "train_s": t_train - t_load,
                    "evaluate_save_s": t_save - t_train, "plots_s": t_end - t_save,
                    "total_s": t_end - t0},
    })
    (run_dir / "record.json").write_text(json.dumps(doc, indent=1, allow_nan=False))
    if not quiet:
        _summary(record, metrics, kind, notes, run_dir, pictures, t_end - t0)


def _fit_divided(est: Any, X: pd.DataFrame, y: np.ndarray, division: dict[str, np.ndarray],
                 patience: int, progress: bool) -> Any:
    """Fit ``est`` on the training rows, stop early on the validation rows, log test loss.

    The steps of ``est.fit`` (``_BaseMLP._fit``: keep them in step) with the division made
    here, so that ``record.json`` can name it, and a test-loss column per epoch; the
    standardisation statistics come from the training rows only.
    """
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import validate_data

    from .training import train

    tr, va, te = division["train"], division["validation"], division["test"]
    sizes, hidden = est._check_params()
    dtype = np.dtype(est.dtype)
    X_tr = validate_data(est, X.iloc[tr], reset=True, dtype=(np.float64, np.float32))
    X_tr = X_tr.astype(dtype, copy=False)
    T_tr = est._targets(y[tr], incremental=False, reset=True)
    rs = check_random_state(est.random_state)
    est._init_model(X_tr, T_tr, sizes, hidden, dtype, rs, None)

    def scaled(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xp = est._scale_in(X.iloc[idx].to_numpy(dtype=dtype))
        return Xp, est._scale_out(est._targets(y[idx], incremental=False, reset=False))

    Xs, Ts = est._scale_in(X_tr), est._scale_out(T_tr)
    cfg, _ = est._config(Xs, Ts, None, False, rs)
    has_val = len(va) > 0
    cfg = replace(cfg, early_stopping=has_val, max_fail=patience, verbose=False,
                  n_iter_no_change=None if has_val else cfg.n_iter_no_change)
    val = scaled(va) if has_val else None
    test = scaled(te) if len(te) else None
    bar = _Progress(cfg.max_epochs, est.solver) if progress else None

    def callback(entry: dict[str, Any], net: Any) -> None:
        if test is not None:
            entry["test_loss"] = float(net.loss(test[0], test[1], cfg.loss))
        if bar is not None:
            bar.update(entry)

    try:
        record = train(est.network_, Xs, Ts, cfg, validation_data=val, callbacks=[callback],
                       carry=est._carry)
    finally:
        if bar is not None:
            bar.stop()
    record.division = {name: np.asarray(idx, dtype=np.int64) for name, idx in division.items()}
    est._after_fit(record, len(tr), False)
    return record


class _Progress:
    """A live bar: epoch, loss, validation loss, test loss, learning rate or mu, ETA."""

    def __init__(self, total: int, solver: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.step = "mu" if solver == "lm" else "lr"
        self.bar = Progress(
            TextColumn("epoch"), MofNCompleteColumn(), BarColumn(bar_width=16),
            TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  "
                       "test {task.fields[test]}  {task.fields[step]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=out, transient=False)
        self.task = self.bar.add_task("train", total=total, loss="-", val="-", test="-",
                                      step="")
        self.bar.start()

    def update(self, e: dict[str, Any]) -> None:
        step = e.get("mu", e.get("lr"))
        self.bar.update(self.task, completed=e["epoch"], loss=_g(e["loss"]),
                        val=_g(e.get("val_loss")), test=_g(e.get("test_loss")),
                        step="" if step is None else f"{self.step} {step:.2g}")

    def stop(self) -> None:
        self.bar.stop()


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _estimator(kind: str, sizes: list[int], acts: list[str], solver: str, epochs: int,
               batch_size: int, lr: float, alpha: float, patience: int, seed: int,
               val_fraction: float, standardize: bool, dtype: str) -> Any:
    from .estimators import MLPClassifier, MLPRegressor

    cls = MLPClassifier if kind == "classification" else MLPRegressor
    return cls(hidden_layer_sizes=tuple(sizes), activation=acts if len(set(acts)) > 1
               else (acts[0] if acts else "relu"), solver=solver, alpha=alpha,
               batch_size=batch_size, learning_rate_init=lr, max_iter=epochs,
               random_state=seed, n_iter_no_change=patience,
               validation_fraction=val_fraction if val_fraction > 0 else 0.1,
               standardize=standardize, dtype=dtype)


def _choose_solver(solver: str, rows: int, n_params: int) -> str:
    if solver != "auto":
        return solver
    cost = rows * n_params**2 + n_params**3
    return "lm" if cost <= LM_BUDGET else "adam"


def _n_outputs(y: np.ndarray, kind: str) -> int:
    if kind == "regression" or y.ndim == 2:
        return 1 if y.ndim == 1 else y.shape[1]
    n = len(np.unique(y))
    return 1 if n == 2 else n


def _n_params(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def _check_classes_in_train(y: np.ndarray, division: dict[str, np.ndarray], kind: str) -> None:
    if kind != "classification" or y.ndim != 1:
        return
    seen = set(np.unique(y[division["train"]]).tolist())
    rare = sorted({str(c) for c in np.unique(y).tolist() if c not in seen})
    if rare:
        raise DataError(f"class(es) {', '.join(rare)} have no row in the training part; use "
                        "more data or smaller --val-fraction/--test-fraction")


def _metrics(est: Any, kind: str, X: pd.DataFrame, y: np.ndarray) -> dict[str, Any] | None:
    from sklearn.metrics import accuracy_score, mean_squared_error, r2_score

    if len(y) == 0:
        return None
    pred = est.predict(X)
    if kind == "classification":
        return {"n": len(y), "accuracy": float(accuracy_score(y, pred))}
    r2 = float(r2_score(y, pred)) if len(y) >= 2 else None
    return {"n": len(y), "r2": r2, "mse": float(mean_squared_error(y, pred))}


def _plots(plotting: Any, est: Any, kind: str, record: Any,
           splits: dict[str, tuple[pd.DataFrame, np.ndarray]], targets: list[str],
           run_dir: Path) -> list[Path]:
    files = [run_dir / "loss.png"]
    plotting.loss_curves(record, files[0], train_label="train (with the L2 penalty)"
                         if est.alpha > 0 else "train")
    nonempty = {k: v for k, v in splits.items() if len(v[1])}
    if kind == "classification" and next(iter(nonempty.values()))[1].ndim == 1:
        name = "test" if "test" in nonempty else "validation" if "validation" in nonempty \
            else "train"
        Xp, yp = nonempty[name]
        pred = est.predict(Xp)
        acc = float(np.mean(pred == yp))
        files.append(run_dir / "confusion.png")
        plotting.confusion_matrix(yp, pred, est.classes_, files[-1],
                                  title=f"Confusion matrix, {name} rows (accuracy {acc:.1%})")
    elif kind == "regression":
        files.append(run_dir / "predicted_vs_true.png")
        plotting.predicted_vs_true({k: (v[1], est.predict(v[0])) for k, v in nonempty.items()},
                                   files[-1], names=targets)
    return files


def _summary(record: Any, metrics: dict[str, Any], kind: str, notes: list[str],
             run_dir: Path, pictures: list[Path], seconds: float) -> None:
    table = Table(title="Result", title_justify="left")
    table.add_column("rows")
    table.add_column("n", justify="right")
    cols = ["accuracy"] if kind == "classification" else ["r2", "mse"]
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in metrics.items():
        if m is not None:
            table.add_row(name, str(m["n"]), *(_fmt(m[c], c) for c in cols))
    out.print(table)
    out.print(f"stopped: {record.stop_reason} ({record.to_dict()['stop_message']}); best epoch "
              f"{record.best_epoch} of {record.n_epochs}; {seconds:.1f} s in all")
    for note in notes:
        out.print(f"[yellow]note:[/] {note}")
    files = ["model.safetensors", "record.json", *(p.name for p in pictures)]
    out.print(f"wrote {run_dir}/: {', '.join(files)}")


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.2%}" if metric == "accuracy" else f"{v:.4g}"


def _run_dir(path: Path | None) -> Path:
    if path is None:
        base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _parse_hidden(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "0"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise CliError(f"--hidden must be comma-separated positive integers such as 64,32, "
                       f"got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise CliError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def _parse_activations(text: str, n_hidden: int) -> list[str]:
    from .activations import ACTIVATIONS

    names = [s.strip() for s in text.split(",")]
    unknown = [s for s in names if s not in ACTIVATIONS]
    if unknown:
        raise CliError(f"--activation: unknown name(s) {', '.join(unknown)}; valid names: "
                       f"{', '.join(sorted(ACTIVATIONS))}")
    if len(names) not in (1, n_hidden):
        raise CliError(f"--activation needs one name or one per hidden layer ({n_hidden}), "
                       f"got {len(names)}")
    return names * n_hidden if len(names) == 1 else names


def _frame(data: Path | None, dataset: str | None, target: list[str] | None,
           default: str | None) -> tuple[pd.DataFrame, list[str], str]:
    """The data frame, its target columns and a description of the source."""
    if data is not None and dataset is not None:
        raise CliError("give a DATA file or --dataset, not both")
    if data is None:
        name = dataset or default
        if name is None:
            raise CliError("missing DATA: give a data file or --dataset NAME")
        frame, targets = builtin(name)
        source = f"dataset {name}"
    else:
        frame = read_table(data)
        targets = default_targets(frame)
        source = str(data)
    if target:
        check_columns(frame, list(target), "target")
        targets = list(dict.fromkeys(target))
    return frame, targets, source


# --------------------------------------------------------------- predict, evaluate
def _load_model(path: Path) -> tuple[Any, dict[str, Any]]:
    from .io import read_model

    model, doc = read_model(path)
    return model, doc


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


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A model file (model.safetensors).")],
    data: Annotated[Path | None, typer.Argument(
        help="CSV, TSV, Parquet or .npz file with the feature columns.",
        show_default=False)] = None,
    dataset: DatasetOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write predictions here (.csv, .tsv, .parquet); default: "
        "CSV on stdout.", show_default=False)] = None,
    proba: Annotated[bool, typer.Option("--proba/--no-proba",
                                        help="Add class probabilities.")] = True,
    debug: Debug = False,
) -> None:
    """Predict with a trained model; one output row per input row."""
    est, doc = _load_model(model)
    frame, _, _ = _frame(data, dataset, None, default=None)
    spec = (doc.get("extra") or {}).get("data") or {}
    targets = list(spec.get("targets", []))
    X = _features(est, doc, frame, targets)
    if doc["kind"] == "network":
        Y = est.forward(np.asarray(X, dtype=est.dtype))
        result = pd.DataFrame(Y, columns=[f"y{j}" for j in range(Y.shape[1])])
    else:
        pred = est.predict(X)
        pred2 = pred.reshape(len(frame), -1)
        names = targets if len(targets) == pred2.shape[1] else (
            ["prediction"] if pred2.shape[1] == 1 else [f"prediction{j}"
                                                        for j in range(pred2.shape[1])])
        result = pd.DataFrame({n: pred2[:, j] for j, n in enumerate(names)})
        if proba and doc["kind"] == "MLPClassifier":
            P = est.predict_proba(X)
            multilabel = doc["estimator"]["label_binarizer"]["y_type"].startswith("multilabel")
            labels = names if multilabel else est.classes_
            for j, c in enumerate(labels):
                result[f"proba_{c}"] = P[:, j]
    _write_table(result, output)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A model file (model.safetensors).")],
    data: Annotated[Path | None, typer.Argument(
        help="CSV, TSV, Parquet or .npz file with features and targets.",
        show_default=False)] = None,
    dataset: DatasetOpt = None,
    target: Annotated[list[str] | None, typer.Option(
        "--target", "-t", metavar="COL",
        help="Target column(s); default: those the model was trained on.",
        show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Score a trained model on labelled data: accuracy, or R² and MSE."""
    est, doc = _load_model(model)
    if doc["kind"] == "network":
        raise CliError(f"{model} holds a bare network; evaluate needs a trained estimator")
    spec = (doc.get("extra") or {}).get("data") or {}
    frame, _, _ = _frame(data, dataset, None, default=None)
    targets = list(target or spec.get("targets") or [])
    if not targets:
        raise CliError("name the target column(s) with --target")
    check_columns(frame, targets, "target")
    kind = "classification" if doc["kind"] == "MLPClassifier" else "regression"
    y = target_values(frame, targets, kind)
    X = _features(est, doc, frame, targets)
    if kind == "classification":
        unknown = sorted({str(c) for c in np.unique(y).tolist()} -
                         {str(c) for c in est.classes_.tolist()})
        if unknown and y.ndim == 1:
            raise DataError(f"target {targets[0]!r} has classes the model does not know: "
                            f"{', '.join(unknown)}")
        y = _as_classes(y, est.classes_)
    metrics = _metrics(est, kind, X, y)
    assert metrics is not None
    if json_out:
        out.print_json(json.dumps(metrics))
        return
    out.print(f"[bold]{model}[/] on {data or dataset}: {kind}")
    table = Table()
    for k in metrics:
        table.add_column(k, justify="right")
    table.add_row(*(_fmt(v, k) if k != "n" else str(v) for k, v in metrics.items()))
    out.print(table)


def _as_classes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels read from a file (ints or strings) in the type of the model's classes."""
    if y.ndim != 1 or y.dtype.kind == classes.dtype.kind:
        return y
    lookup = {str(c): c for c in classes.tolist()}
    return np.asarray([lookup[str(v)] for v in y.tolist()], dtype=classes.dtype)


def _write_table(frame: pd.DataFrame, path: Path | None) -> None:
    if path is None:
        sys.stdout.write(frame.to_csv(index=False))
        return
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet", ".pq"):
        raise CliError(f"--output {path}: use a .csv, .tsv or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")


# ------------------------------------------------------------------------------ info
@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="A model file (model.safetensors).")],
    debug: Debug = False,
) -> None:
    """Show a model file: architecture, parameters, preprocessing, training summary."""
    obj, doc = _load_model(model)
    net = obj if doc["kind"] == "network" else obj.network_
    out.print(f"[bold]{model}[/]: {doc['kind']}, {net.n_params} parameters, {doc['dtype']}, "
              f"format {doc['format']} v{doc['format_version']}, written by jacnet "
              f"{doc['jacnet_version']}")
    table = Table(title="Layers", title_justify="left")
    for c, j in (("#", "right"), ("n_in", "right"), ("n_out", "right"), ("activation", "left"),
                 ("parameters", "right")):
        table.add_column(c, justify=j)  # type: ignore[arg-type]
    for k, layer in enumerate(net.layers):
        table.add_row(str(k), str(layer.n_in), str(layer.n_out), repr(layer.activation),
                      str(layer.n_params))
    out.print(table)
    if doc["kind"] == "network":
        return
    spec = (doc.get("extra") or {}).get("data") or {}
    rows = []
    if spec:
        rows.append(("task", f"{spec['task']} of {_list(spec['targets'])} ({spec['source']})"))
        cats = spec["features"].get("categories", {})
        rows.append(("features", f"{len(spec['features']['columns'])} columns: "
                                 f"{_list(spec['features']['columns'])}"))
        if cats:
            rows.append(("one-hot", "; ".join(f"{c}: {_list(v)}" for c, v in cats.items())))
    elif getattr(obj, "feature_names_in_", None) is not None:
        rows.append(("features", _list([str(s) for s in obj.feature_names_in_])))
    rows.append(("inputs", "standardised (mean/std of the training rows)"
                 if obj.x_mean_ is not None else "used as given"))
    if doc["kind"] == "MLPRegressor":
        rows.append(("targets", "standardised inside the model" if obj.y_mean_ is not None
                     else "used as given"))
    else:
        rows.append(("classes", _list([str(c) for c in obj.classes_.tolist()])))
    record = getattr(obj, "training_record_", None)
    if record is not None:
        rows.append(("training", f"solver {record.solver}, {record.n_epochs} epochs, "
                                 f"{record.seconds:.1f} s, stopped: {record.stop_reason}"))
        best = f"best epoch {record.best_epoch}, loss {_g(record.best_loss)}"
        if record.best_val_loss is not None:
            best += f", validation loss {_g(record.best_val_loss)}"
        rows.append(("best", best))
        if record.division:
            rows.append(("division", ", ".join(f"{k} {len(record.division[k])}" for k in
                                               ("train", "validation", "test")
                                               if k in record.division)))
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in rows:
        summary.add_row(key, value)
    out.print(summary)


# ------------------------------------------------------------------------- gradcheck
@app.command()
def gradcheck(
    seed: Annotated[int, typer.Option(help="Seed of the random networks and data.")] = 0,
    tol: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    debug: Debug = False,
) -> None:
    """Check backpropagation against finite differences on random networks (exit 1 on failure)."""
    from .activations import ACTIVATIONS
    from .gradcheck import gradcheck as check
    from .layers import Dense
    from .network import Network

    if not tol > 0:
        raise CliError(f"--tol must be a positive number, got {tol}")
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, list[str], str]] = []
    for name in sorted({cls.name for cls in ACTIVATIONS.values()}):
        cases.append((f"{name} hidden", [name, "identity"], "sse"))
    cases += [("softmax + cross-entropy", ["tanh", "softmax"], "cross_entropy"),
              ("sigmoid + binary cross-entropy", ["relu", "sigmoid"], "binary_cross_entropy"),
              ("deep mixed", ["tanh", "layer_norm", "sparsemax", "identity"], "mse"),
              ("huber", ["gelu", "identity"], "huber")]
    table = Table(title=f"Gradient check (central differences, tol {tol:g})",
                  title_justify="left")
    for c in ("network", "widths", "loss", "max rel. error", "result"):
        table.add_column(c, justify="right" if c == "max rel. error" else "left")
    failed = 0
    for label, acts, loss in cases:
        widths = [4] + [int(w) for w in rng.integers(3, 7, size=len(acts))]
        net = Network([Dense(a, b, f) for a, b, f in zip(widths[:-1], widths[1:], acts,
                                                         strict=True)], seed=rng)
        X = rng.normal(size=(6, widths[0]))
        T = _targets_for(loss, 6, widths[-1], rng)
        result = check(net, X, T, loss=loss, tol=tol)
        failed += not result.passed
        table.add_row(label, "-".join(map(str, widths)), loss, f"{result.max_error:.2e}",
                      "[green]pass[/]" if result.passed else "[red]FAIL[/]")
    out.print(table)
    out.print(f"{len(cases) - failed} of {len(cases)} passed")
    if failed:
        raise typer.Exit(1)


def _targets_for(loss: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "cross_entropy":
        return np.eye(m)[rng.integers(0, m, size=n)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, m)).astype(float)
    return rng.normal(size=(n, m))


# ------------------------------------------------------------------------------ main
def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _list(items: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _versions() -> dict[str, str]:
    import scipy
    import sklearn

    from . import __version__

    return {"jacnet": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
            "platform": platform.platform()}


_USER_ERRORS = (CliError, DataError, ModelFileError, FileNotFoundError, ValueError, OSError)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``jacnet`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (args[: args.index("--")] if "--" in args else args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="jacnet", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: bad option values and such
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            sys.exit(0)
        _fail(exc.format_message(), getattr(exc, "exit_code", 2), debug)
    except (KeyboardInterrupt, typer.Abort):
        print("jacnet: interrupted", file=sys.stderr)
        sys.exit(130)
    except _USER_ERRORS as exc:
        _fail(str(exc), 2, debug)
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        _fail(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", 1, debug)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    line = " ".join(message.split()) or "failed"
    print(f"jacnet: error: {line}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
