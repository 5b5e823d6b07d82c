"""``jacnet train``: divide the data, fit an estimator with live progress, write the run folder."""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.markup import escape

from .. import fitplan
from ..checkpoint import atomic_write, may_write
from ..data import (
    DataError,
    FeatureEncoder,
    check_columns,
    derivative_columns,
    derivative_values,
    divide,
    infer_task,
    target_values,
)
from ..ensemble import Ensemble
from ..progress import Progress
from ..record import strict_json
from ..training import SOLVERS
from .common import (
    COVERAGE,
    CliError,
    DatasetOpt,
    Debug,
    app,
    has_posterior,
    jsonable,
    load_frame,
    metrics_tables,
    model_metrics,
    out,
    short_list,
    versions,
)


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


#: ``--solver``'s choices: "auto", then the solver registry's names.
Solver = Enum("Solver", {name: name for name in ("auto", *SOLVERS)}, type=str)  # type: ignore[misc]
_AUTO = Solver("auto")


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"



#: ``--epochs``'s default, and for ``br`` (MATLAB trainbr's ``epochs``).
EPOCHS, BR_EPOCHS = 200, 1000

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
    derivatives: Annotated[bool, typer.Option(
        "--derivatives/--no-derivatives",
        help="Fit the derivative columns d<target>/d<feature> (regression); "
        "--no-derivatives leaves them out.")] = True,
    hidden: Annotated[str, typer.Option(
        metavar="SIZES",
        help="Hidden layer sizes, comma separated ('' or 'none' for no hidden layer).")] = "512",
    activation: Annotated[str, typer.Option(
        metavar="NAMES",
        help="Hidden activation: one name, or one per hidden layer, comma separated.")] = "relu",
    solver: Annotated[Solver, typer.Option(
        help="'auto': Levenberg-Marquardt for small problems, else Adam.")] = _AUTO,
    epochs: Annotated[int | None, typer.Option(
        min=1, help=f"Most epochs to train (default {EPOCHS}; {BR_EPOCHS} for br, as "
        "trainbr).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size (Adam, SGD, ...).")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam, SGD, ...).")] = 1e-3,
    alpha: Annotated[float, typer.Option(min=0.0, help="L2 penalty on the weights.")] = 0.03,
    patience: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many epochs without a better validation loss "
        f"(default {fitplan.MINI_BATCH_PATIENCE}; {fitplan.FULL_BATCH_PATIENCE} for lm and "
        "lbfgs, as trainlm; never for br, as trainbr).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the division, "
                                           "initial weights and shuffling.")] = 0,
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
    ensemble: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Fit N networks from different seeds (regression) and "
        "predict with the mixture of their predictive distributions.", show_default=False)
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="No progress bar and no summary.")] = False,
    debug: Debug = False,
) -> None:
    """Train a network on a data file or a built-in dataset; write model, record and plots."""
    t0 = time.perf_counter()
    options = {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v)
               for k, v in locals().items() if k != "t0"}
    _check_rates(lr, alpha)
    sizes = _parse_hidden(hidden)
    acts = _parse_activations(activation, len(sizes))
    table = _read(data, dataset, target, drop, task, derivatives)
    division = _divide(table, val_fraction, test_fraction, seed)
    t_data = time.perf_counter()  # the table read, encoded and divided
    layers = [table.X.shape[1], *sizes, _n_outputs(table.y, table.kind)]
    n_params = _n_params(layers)
    rows = layers[-1] * (1 if table.dydx is None else 1 + layers[0])  # of J per sample
    chosen = _choose_solver(solver.value, len(division["train"]) * rows, n_params)
    if ensemble is not None and table.kind != "regression":
        raise CliError(f"--ensemble needs a regression task (the mixture of predictive "
                       f"distributions), this is {table.kind}")
    wait = fitplan.patience(chosen, max_fail=patience)  # the estimators' rule, decided there
    options["epochs"] = epochs = epochs or (BR_EPOCHS if chosen == "br" else EPOCHS)
    est = _estimator(table.kind, sizes, acts, chosen, epochs, batch_size, lr, alpha, wait,
                     seed, val_fraction, standardize, dtype.value)
    if ensemble is not None:
        est = Ensemble(est, n_members=ensemble, random_state=seed)
    t_load = time.perf_counter()
    if not quiet:
        _announce(table, layers, n_params, chosen, dtype.value, ensemble)
    run_dir, records, notes = _fit_in_run_dir(est, table, division, wait, out_dir, quiet)
    record = records[0]
    t_train = time.perf_counter()
    splits = {name: (table.X.iloc[idx], table.y[idx]) for name, idx in division.items()}
    metrics = {name: model_metrics(est, table.kind, *xy, table.targets)
               for name, xy in splits.items()}
    pictures, t_save = _save(est, table, record, splits, run_dir, plots)
    t_end = time.perf_counter()
    model = {"file": "model.safetensors", "solver": chosen, "n_params": n_params,
             "layers": layers, "activations": acts, "ensemble": ensemble}
    timings = {"data_s": t_data - t0, "setup_s": t_load - t_data, "train_s": t_train - t_load,
               "evaluate_save_s": t_save - t_train, "plots_s": t_end - t_save,
               "total_s": t_end - t0}
    bayes = _bayesian(est, records)
    _write_record(run_dir, record, table, est, {"metrics": metrics, "model": model,
                  "options": options, "warnings": notes, "timings": timings, **bayes})
    for stale in _PLOT_FILES:  # a reused --out folder keeps no plot of an earlier run
        if run_dir / stale not in pictures:
            (run_dir / stale).unlink(missing_ok=True)
    if not quiet:
        _summary(record, metrics, table.kind, notes, run_dir, pictures, t_end - t0,
                 kept_last=chosen == "br" and wait == fitplan.NEVER)
        _bayesian_summary(bayes, n_params)


@dataclass
class _Table:
    """A run's data: the table read, its feature columns one-hot encoded (``X``, a frame
    of ``encoder.names``) and its targets (``y``, labels or values)."""

    frame: pd.DataFrame
    targets: list[str]
    source: str
    features: list[str]
    kind: str
    encoder: FeatureEncoder
    X: pd.DataFrame
    y: np.ndarray
    derivatives: dict[str, tuple[str, str]]
    dydx: np.ndarray | None  # (rows, targets, encoded features), NaN: not observed


def _check_rates(lr: float, alpha: float) -> None:
    if not (math.isfinite(lr) and lr > 0):
        raise CliError(f"--lr must be a positive finite number, got {lr}")
    if not math.isfinite(alpha):
        raise CliError(f"--alpha must be a finite number >= 0, got {alpha}")


def _read(data: Path | None, dataset: str | None, target: list[str] | None,
          drop: list[str] | None, task: Task, use_derivatives: bool = True) -> _Table:
    """Read the table, pick the feature columns, infer the task, encode features and
    targets; the derivative columns ``d<target>/d<feature>`` (never features) are read
    into ``dydx`` unless ``use_derivatives`` is false (then they are left out)."""
    frame, targets, source = load_frame(data, dataset, target, default="digits")
    check_columns(frame, list(drop or []), "--drop")
    deriv = derivative_columns(frame, targets, drop or [], strict=use_derivatives)
    features = [c for c in frame.columns
                if c not in targets and c not in (drop or []) and c not in deriv]
    kind = infer_task(frame, targets) if task is Task.auto else task.value
    if use_derivatives and deriv and kind != "regression":
        raise DataError(f"derivative columns ({short_list(list(deriv))}) need a regression "
                        f"target, and {short_list(targets)} is {kind}; use --task regression "
                        "or --no-derivatives")
    encoder = FeatureEncoder.fit(frame, features)
    dydx = (derivative_values(frame, deriv, targets, encoder)
            if use_derivatives and deriv else None)
    return _Table(frame, targets, source, features, kind, encoder, encoder.transform(frame),
                  target_values(frame, targets, kind), deriv if dydx is not None else {}, dydx)


def _divide(table: _Table, val_fraction: float, test_fraction: float,
            seed: int) -> dict[str, np.ndarray]:
    """The seeded division of the rows (:func:`jacnet.data.divide`), stratified by class
    for one class target; every class must keep a training row."""
    y = table.y
    stratify = y if table.kind == "classification" and y.ndim == 1 else None
    division = divide(len(table.frame), val_fraction, test_fraction, seed, stratify)
    _check_classes_in_train(y, division, table.kind)
    return division


def _announce(table: _Table, layers: list[int], n_params: int, solver: str,
              dtype: str, ensemble: int | None) -> None:
    # user strings (file and column names) are escaped: "[...]" is rich markup
    out.print(f"[bold]jacnet train[/]: {escape(table.source)}, {len(table.frame)} rows, "
              f"{len(table.features)} feature columns ({table.X.shape[1]} encoded), "
              f"{table.kind} of {escape(short_list(table.targets))}")
    members = "" if ensemble is None else f", an ensemble of {ensemble}"
    out.print(f"network {' -> '.join(map(str, layers))} ({n_params} parameters), solver "
              f"{solver}, {dtype}{members}")


def _fit_in_run_dir(est: Any, table: _Table, division: dict[str, np.ndarray], patience: int,
                    out_dir: Path | None, quiet: bool) -> tuple[Path, list[Any], list[str]]:
    """Make the run folder, then fit: ``(run folder, records, warning texts)``, one record
    per network (one, or one per member of an ensemble).

    The folder is made and checked before training, so that a folder or file that cannot
    be written fails at once instead of after the work it would have kept; a fit that
    fails removes the folder again if it made it and nothing was written into it."""
    fresh = out_dir is None or not out_dir.exists()
    run_dir = _run_dir(out_dir)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            extra = {} if table.dydx is None else {"dydx": table.dydx}
            fitted = _fit_divided(est, table.X, table.y, division, patience,
                                  progress=not quiet, **extra)
    except BaseException:
        if fresh and not any(run_dir.iterdir()):
            run_dir.rmdir()  # no empty run folder is left behind by a failed run
        raise
    notes = sorted({" ".join(str(w.message).split()) for w in caught
                    if not issubclass(w.category, DeprecationWarning)})
    for member in getattr(est, "estimators_", [est]):
        member.verbose = False
    return run_dir, fitted if isinstance(fitted, list) else [fitted], notes


def _save(est: Any, table: _Table, record: Any,
          splits: dict[str, tuple[pd.DataFrame, np.ndarray]], run_dir: Path,
          plots: bool) -> tuple[list[Path], float]:
    """Write the model file, then the plots: ``(plot files, time the model was saved)``."""
    from .. import plots as plotting
    from ..io import save_estimator

    spec = {"features": table.encoder.to_dict(), "targets": table.targets,
            "task": table.kind, "source": table.source}
    save_estimator(est, run_dir / "model.safetensors", extra={"data": spec})
    t_save = time.perf_counter()
    if not plots:
        return [], t_save
    return _plots(plotting, est, table.kind, record, splits, table.targets, run_dir), t_save


def _write_record(run_dir: Path, record: Any, table: _Table, est: Any,
                  run: dict[str, Any]) -> None:
    """``record.json``: the training record, then ``run``'s metrics, model, options,
    warnings and timings with the task, classes, data and versions."""
    doc = record.to_dict()
    doc.update({
        "metrics": run["metrics"], "task": table.kind, "targets": table.targets,
        "classes": [jsonable(c) for c in est.classes_] if table.kind == "classification"
        else None,
        "data": {"source": table.source, "rows": len(table.frame), "features": table.features,
                 "encoded_features": table.encoder.names, **_derivative_note(table, record)},
        "model": run["model"], "options": run["options"], "warnings": run["warnings"],
        "versions": versions(), "timings": run["timings"],
    })
    doc.update({k: run[k] for k in ("bayesian", "ensemble") if k in run})
    # strict JSON: a diverged model's metrics (inf) become null, as the record's own numbers
    atomic_write(run_dir / "record.json",
                 json.dumps(strict_json(doc), indent=1, allow_nan=False).encode())


def _derivative_note(table: _Table, record: Any) -> dict[str, Any]:
    """record.json's note of the derivative data: its columns and how many values the
    fit used (those observed in the training rows)."""
    if table.dydx is None:
        return {}
    used = int(np.count_nonzero(~np.isnan(table.dydx[record.division["train"]])))
    return {"derivative_columns": list(table.derivatives), "derivative_values": used}


def _fit_divided(est: Any, X: pd.DataFrame, y: np.ndarray, division: dict[str, np.ndarray],
                 patience: int, progress: bool, dydx: np.ndarray | None = None) -> Any:
    """``est.fit_divided`` on the division made here, with the live progress bar; for an
    ensemble each member's in turn, a list of their records. ``dydx``: derivative data of
    every row (the training rows' are fitted)."""
    if isinstance(est, Ensemble):
        def member_fit(k: int, member: Any) -> Any:
            if progress:
                out.print(f"member {k + 1} of {est.n_members}")
            return _fit_divided(member, X, y, division, patience, progress, dydx)

        return est.fit_members(member_fit)
    bar = Progress(est.max_iter, console=out) if progress else None
    extra = {} if dydx is None else {"dydx": dydx}  # a classifier takes none
    try:
        return est.fit_divided(X, y, division["train"], division["validation"],
                               division["test"], max_fail=patience,
                               callbacks=[bar.update] if bar is not None else [], **extra)
    finally:
        if bar is not None:
            bar.stop()


def _estimator(kind: str, sizes: list[int], acts: list[str], solver: str, epochs: int,
               batch_size: int, lr: float, alpha: float, patience: int, seed: int,
               val_fraction: float, standardize: bool, dtype: str) -> Any:
    from ..estimators import MLPClassifier, MLPRegressor

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
        raise DataError(f"class(es) {short_list(rare)} have no row in the training part; use "
                        "more data or smaller --val-fraction/--test-fraction")




#: Every plot ``jacnet train`` may write into its run folder.
_PLOT_FILES = ("loss.png", "confusion.png", "predicted_vs_true.png", "intervals.png",
               "errors.png")


def _plots(plotting: Any, est: Any, kind: str, record: Any,
           splits: dict[str, tuple[pd.DataFrame, np.ndarray]], targets: list[str],
           run_dir: Path) -> list[Path]:
    files = [run_dir / "loss.png"]
    members = getattr(est, "estimators_", None)
    first = est if members is None else members[0]
    penalised = first.alpha > 0 and first.solver != "br"
    plotting.loss_curves(record, files[0], train_label="train (with the L2 penalty)"
                         if penalised else "train", title="" if members is None else
                         f"Loss per epoch, member 1 of {len(members)} ({record.solver}; "
                         f"stop: {record.stop_reason})")
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
        files.extend(_regression_plots(plotting, est, nonempty, targets, run_dir))
    return files


def _regression_plots(plotting: Any, est: Any,
                      parts: dict[str, tuple[pd.DataFrame, np.ndarray]], targets: list[str],
                      run_dir: Path) -> list[Path]:
    """Predicted vs true, the error histogram and, for a model with a posterior, the
    predictions with their intervals."""
    pred = {k: est.predict(X) for k, (X, _) in parts.items()}
    plotting.predicted_vs_true({k: (y, pred[k]) for k, (_, y) in parts.items()},
                               run_dir / "predicted_vs_true.png", names=targets)
    plotting.error_histogram({k: (y, pred[k]) for k, (_, y) in parts.items()},
                             run_dir / "errors.png", names=targets)
    files = [run_dir / "predicted_vs_true.png", run_dir / "errors.png"]
    if has_posterior(est):
        bounds = {k: est.predict_interval(X, COVERAGE) for k, (X, _) in parts.items()}
        plotting.intervals({k: (y, pred[k], *bounds[k]) for k, (_, y) in parts.items()},
                           run_dir / "intervals.png", names=targets, coverage=COVERAGE)
        files.append(run_dir / "intervals.png")
    return files


def _summary(record: Any, metrics: dict[str, Any], kind: str, notes: list[str],
             run_dir: Path, pictures: list[Path], seconds: float, kept_last: bool) -> None:
    """The metrics tables, the stop, the notes and the files written. ``kept_last``: the
    weights are the last epoch's (``br`` without validation stopping), whatever epoch the
    record names best."""
    for table in metrics_tables(metrics, "Result"):
        out.print(table)
    kept = (f"the last epoch's weights kept, {record.n_epochs}" if kept_last
            else f"best epoch {record.best_epoch} of {record.n_epochs}")
    out.print(f"stopped: {record.stop_reason} ({record.to_dict()['stop_message']}); {kept}; "
              f"{seconds:.1f} s in all", soft_wrap=True)
    for note in notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    files = ["model.safetensors", "record.json", *(p.name for p in pictures)]
    out.print(f"wrote {escape(str(run_dir))}/: {', '.join(files)}")



def _bayesian(est: Any, records: list[Any]) -> dict[str, Any]:
    """The record's ``bayesian`` entry (a ``br`` network: its gamma, alpha, beta, log
    evidence and noise std in the targets' units) or ``ensemble`` entry (per member: its
    seed, stop, epochs and, for ``br``, the same)."""
    members = getattr(est, "estimators_", None)
    if members is None:
        return {"bayesian": _evidence(est)} if hasattr(est, "gamma_") else {}
    rows = [{"random_state": m.random_state, "stop_reason": r.stop_reason,
             "best_epoch": r.best_epoch, "n_epochs": r.n_epochs,
             **({"bayesian": _evidence(m)} if hasattr(m, "gamma_") else {})}
            for m, r in zip(members, records, strict=True)]
    return {"ensemble": {"n_members": len(members), "members": rows}}


def _evidence(est: Any) -> dict[str, Any]:
    """A ``br`` regressor's gamma, alpha, beta, log evidence (trainbr's convention, in the
    standardised units the network trains in) and noise std in the targets' units."""
    def plain(v: Any) -> Any:
        return np.asarray(v, dtype=float).tolist()

    beta = np.atleast_1d(np.asarray(est.beta_, dtype=float))
    scale = np.ones(est.n_outputs_) if est.y_scale_ is None else est.y_scale_
    noise = np.sqrt(1.0 / (2.0 * beta)) * scale
    return {"gamma": float(est.gamma_), "alpha": plain(est.alpha_), "beta": plain(est.beta_),
            "log_evidence": float(est.log_evidence_), "n_params": est.network_.n_params,
            "noise_std": noise.tolist()}


def _bayesian_summary(bayes: dict[str, Any], n_params: int) -> None:
    """One line per ``br`` network: gamma of P, alpha, beta, the log evidence."""
    rows = [bayes["bayesian"]] if "bayesian" in bayes else [
        m["bayesian"] for m in bayes.get("ensemble", {}).get("members", []) if "bayesian" in m]

    def g(v: Any) -> str:
        return ", ".join(f"{x:.4g}" for x in np.atleast_1d(v))

    for k, b in enumerate(rows):
        who = "" if len(rows) == 1 else f"member {k + 1}: "
        out.print(f"{who}Bayesian regularization: γ = {b['gamma']:.4g} effective parameters "
                  f"of {n_params}, α = {g(b['alpha'])}, β = {g(b['beta'])} (noise std "
                  f"{g(b['noise_std'])} in the targets' units), log evidence "
                  f"{b['log_evidence']:.6g}", soft_wrap=True)


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
    for name in (".", "model.safetensors", "record.json", *_PLOT_FILES):
        if not may_write(path / name):
            what = "the folder" if name == "." else name
            raise CliError(f"--out {path}: no permission to write {what}; make it writable "
                           "or choose another --out (checked before training)")
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
    from ..activations import ACTIVATIONS

    names = [s.strip() for s in text.split(",")]
    unknown = [s for s in names if s not in ACTIVATIONS]
    if unknown:
        raise CliError(f"--activation: unknown name(s) {', '.join(unknown)}; valid names: "
                       f"{', '.join(sorted(ACTIVATIONS))}")
    if len(names) not in (1, n_hidden):
        raise CliError(f"--activation needs one name or one per hidden layer ({n_hidden}), "
                       f"got {len(names)}")
    return names * n_hidden if len(names) == 1 else names
