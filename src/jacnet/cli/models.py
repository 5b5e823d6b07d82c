"""``jacnet predict``, ``evaluate`` and ``info``: use and inspect a model file."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from ..checkpoint import atomic_write
from ..data import (
    DataError,
    check_columns,
    target_values,
)
from ..record import strict_json
from .common import (
    CliError,
    DatasetOpt,
    Debug,
    app,
    fmt_g,
    load_frame,
    load_model,
    metrics_tables,
    model_features,
    model_metrics,
    model_text_columns,
    out,
    short_list,
)


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
    keep: Annotated[list[str] | None, typer.Option(
        "--keep", metavar="COL", help="Copy this input column into the output, first "
        "(repeatable), e.g. an id to join the predictions back on.", show_default=False)
    ] = None,
    std: Annotated[bool, typer.Option(
        "--std", help="Add <target>_std: the predictive standard deviation, noise "
        "included (regression).")] = False,
    interval: Annotated[float | None, typer.Option(
        "--interval", metavar="COVERAGE", help="Add <target>_lower and <target>_upper: "
        "the prediction interval of this coverage in (0, 1), e.g. 0.95 (regression).",
        show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Predict with a trained model; one output row per input row."""
    est, doc = load_model(model)
    if (std or interval is not None) and doc["kind"] not in ("MLPRegressor", "Ensemble"):
        flag = "--std" if std else "--interval"
        raise CliError(f"{flag} needs a regression model; {model} holds "
                       f"{'a bare network' if doc['kind'] == 'network' else 'a classifier'}")
    spec = (doc.get("extra") or {}).get("data") or {}
    targets = list(spec.get("targets", []))
    kept = list(dict.fromkeys(keep or []))
    frame, _, _ = load_frame(data, dataset, None, default=None,
                             text_columns=[*model_text_columns(est, doc), *kept])
    check_columns(frame, kept, "--keep")
    X = model_features(est, doc, frame, targets)
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
        if std or interval is not None:
            _add_uncertainty(result, est, X, names, std, interval)
        if proba and doc["kind"] == "MLPClassifier":
            P = est.predict_proba(X)
            multilabel = doc["estimator"]["label_binarizer"]["y_type"].startswith("multilabel")
            labels = names if multilabel else est.classes_
            for j, c in enumerate(labels):
                result[f"proba_{c}"] = P[:, j]
    if kept:
        clash = [c for c in kept if c in result.columns]
        if clash:
            raise CliError(f"--keep {clash[0]}: the output already has a column of that name")
        result = pd.concat([frame[kept].reset_index(drop=True), result], axis=1)
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
    est, doc = load_model(model)
    if doc["kind"] == "network":
        raise CliError(f"{model} holds a bare network; evaluate needs a trained estimator")
    spec = (doc.get("extra") or {}).get("data") or {}
    targets = list(target or spec.get("targets") or [])
    frame, _, _ = load_frame(data, dataset, None, default=None,
                             text_columns=model_text_columns(est, doc, targets))
    if not targets:
        raise CliError("name the target column(s) with --target")
    check_columns(frame, targets, "target")
    kind = "classification" if doc["kind"] == "MLPClassifier" else "regression"
    y = target_values(frame, targets, kind, min_classes=1)  # one class scores fine
    X = model_features(est, doc, frame, targets)
    if kind == "classification":
        unknown = sorted({str(c) for c in np.unique(y).tolist()} -
                         {str(c) for c in est.classes_.tolist()})
        if unknown and y.ndim == 1:
            raise DataError(f"target {targets[0]!r} has classes the model does not know: "
                            f"{', '.join(unknown)}")
        y = _as_classes(y, est.classes_)
    metrics = model_metrics(est, kind, X, y, targets)
    assert metrics is not None
    if json_out:
        out.print_json(json.dumps(strict_json(metrics)))
        return
    out.print(f"[bold]{escape(str(model))}[/] on {escape(str(data or dataset))}: {kind}")
    for table in metrics_tables({"all": metrics}, ""):
        out.print(table)


def _add_uncertainty(result: pd.DataFrame, est: Any, X: Any, names: list[str], std: bool,
                     interval: float | None) -> None:
    """``<name>_std`` and ``<name>_lower``/``<name>_upper`` columns of a regressor's
    predictions (Student-t intervals; see ``MLPRegressor.predict_interval``)."""
    n = len(result)
    columns: dict[str, np.ndarray] = {}
    if std:
        _, s = est.predict(X, return_std=True)
        s = s.reshape(n, -1)
        columns.update({f"{name}_std": s[:, j] for j, name in enumerate(names)})
    if interval is not None:
        if not 0 < interval < 1:
            raise CliError(f"--interval must be a coverage in (0, 1), e.g. 0.95; got {interval}")
        lower, upper = (b.reshape(n, -1) for b in est.predict_interval(X, interval))
        for j, name in enumerate(names):
            columns[f"{name}_lower"], columns[f"{name}_upper"] = lower[:, j], upper[:, j]
    for name, values in columns.items():
        result[name] = values


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
    if suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode()
    atomic_write(path, data)  # a reader never sees half a predictions file


# ------------------------------------------------------------------------------ info
@app.command()
def info(
    model: Annotated[Path, typer.Argument(
        help="A model file (model.safetensors), or an ONNX file (.onnx).")],
    debug: Debug = False,
) -> None:
    """Show a model file: architecture, parameters, preprocessing, training summary."""
    if model.suffix.lower() == ".onnx":
        _onnx_info(model)
        return
    obj, doc = load_model(model)
    members = getattr(obj, "estimators_", None)
    if members is not None:  # an ensemble: its first member's details, its size
        obj = members[0]
    net = obj if doc["kind"] == "network" else obj.network_
    kind = doc["kind"] if members is None else (
        f"Ensemble of {len(members)} {type(obj).__name__} members")
    each = "" if members is None else " each"
    out.print(f"[bold]{escape(str(model))}[/]: {kind}, {net.n_params} parameters{each}, "
              f"{doc['dtype']}, "
              f"format {doc['format']} v{doc['format_version']}, written by jacnet "
              f"{doc['jacnet_version']}")
    table = Table(title="Layers", title_justify="left")
    for c, j in (("#", "right"), ("n_in", "right"), ("n_out", "right"), ("activation", "left"),
                 ("parameters", "right")):
        table.add_column(c, justify=j)  # type: ignore[arg-type]
    for k, layer in enumerate(net.layers):
        table.add_row(str(k), str(layer.n_in), str(layer.n_out), escape(repr(layer.activation)),
                      str(layer.n_params))
    out.print(table)
    if doc["kind"] == "network":
        return
    spec = (doc.get("extra") or {}).get("data") or {}
    rows = []
    if spec:
        rows.append(("task", f"{spec['task']} of {short_list(spec['targets'])} ({spec['source']})"))
        cats = spec["features"].get("categories", {})
        rows.append(("features", f"{len(spec['features']['columns'])} columns: "
                                 f"{short_list(spec['features']['columns'])}"))
        if cats:
            rows.append(("one-hot", "; ".join(f"{c}: {short_list(v)}" for c, v in cats.items())))
    elif getattr(obj, "feature_names_in_", None) is not None:
        rows.append(("features", short_list([str(s) for s in obj.feature_names_in_])))
    rows.append(("inputs", "standardised (mean/std of the training rows)"
                 if obj.x_mean_ is not None else "used as given"))
    if members is not None:
        rows.append(("ensemble", f"{len(members)} members (random_state "
                                 f"{short_list([m.random_state for m in members])}); the "
                                 "training shown is the first member's"))
    if doc["kind"] != "MLPClassifier":
        rows.append(("targets", "standardised inside the model" if obj.y_mean_ is not None
                     else "used as given"))
    else:
        rows.append(("classes", short_list([str(c) for c in obj.classes_.tolist()])))
    rows.extend(_training_rows(getattr(obj, "training_record_", None), obj))
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in rows:
        summary.add_row(key, escape(value))  # column and class names: not markup
    out.print(summary)


def _training_rows(record: Any, est: Any = None) -> list[tuple[str, str]]:
    """``info``'s rows of a training record: solver, epochs, stop, best epoch (for ``br``
    the epoch kept and its hyperparameters), division."""
    rows: list[tuple[str, str]] = []
    if record is None:
        return rows
    rows.append(("training", f"solver {record.solver}, {record.n_epochs} epochs, "
                             f"{record.seconds:.1f} s, stopped: {record.stop_reason}"))
    kept = _br_rows(record, est)
    if kept:
        rows.extend(kept)
    else:
        best = f"best epoch {record.best_epoch}, loss {fmt_g(record.best_loss)}"
        if record.best_val_loss is not None:
            best += f", validation loss {fmt_g(record.best_val_loss)}"
        rows.append(("best", best))
    if record.division:
        rows.append(("division", ", ".join(f"{k} {len(record.division[k])}" for k in
                                           ("train", "validation", "test")
                                           if k in record.division)))
    return rows


def _br_rows(record: Any, est: Any) -> list[tuple[str, str]]:
    """A ``br`` fit's rows: the epoch whose weights the model holds (Bayesian
    regularization keeps its last weights, not those of the lowest training loss, unless
    validation rows stopped it) with its gamma, alpha, beta and log evidence (the
    estimator's ``gamma_``, ... : of that epoch), and the collapse guard's restart if
    there was one; none for another solver or a model without them."""
    evidence = getattr(est, "log_evidence_", None)
    if record.solver != "br" or evidence is None:
        return []
    n_params = est.network_.n_params
    kept = next((e for e in reversed(record.epochs) if e.get("log_evidence") == evidence
                 and e.get("gamma") == est.gamma_), None)
    where = "the weights of the last epoch" if kept is record.epochs[-1] else (
        "the weights of the lowest validation loss")
    text = "-" if kept is None else f"epoch {kept['epoch']} ({where}), loss {fmt_g(kept['loss'])}"
    if kept is not None and kept.get("val_loss") is not None:
        text += f", validation loss {fmt_g(kept['val_loss'])}"
    rows = [("kept", text),
            ("evidence", f"gamma {fmt_g(est.gamma_)} of {n_params} parameters, alpha "
                         f"{_values(est.alpha_)}, beta {_values(est.beta_)} (network units), "
                         f"log evidence {fmt_g(evidence)}")]
    marks = [(e["epoch"], e["restart"]) for e in record.epochs if e.get("restart")]
    if marks:
        rows.append(("restart", "; ".join(
            f"collapsed (gamma -> 0): restarted at epoch {k}" if what == "collapse" else
            f"the restart's evidence was lower: the collapsed state restored at epoch {k}"
            for k, what in marks)))
    return rows


def _values(v: Any) -> str:
    """A float, or a list of them (per layer or per output), in four digits."""
    return fmt_g(v) if np.ndim(v) == 0 else "[" + ", ".join(fmt_g(x) for x in v) + "]"


def _onnx_info(path: Path) -> None:
    """An ONNX file's inputs and outputs; for one jacnet made, what model it holds."""
    import json

    from ..export import describe_onnx

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    info = describe_onnx(path)
    meta = info["jacnet"]
    opsets = ", ".join(f"{k} {v}" for k, v in info["opsets"].items())
    made = (f"{meta.get('kind', '?')}, {meta.get('dtype', '?')}, written by jacnet "
            f"{meta.get('version', '?')}") if meta else (
        f"not made by jacnet (producer: {info['producer'] or 'unknown'})")
    out.print(f"[bold]{escape(str(path))}[/]: ONNX, {made}; opsets {opsets}")
    table = Table(title="Inputs and outputs", title_justify="left")
    for c in ("", "name", "type", "shape"):
        table.add_column(c)
    for role in ("inputs", "outputs"):
        for name, kind, shape in info[role]:
            table.add_row(role[:-1], escape(name), kind,
                          "(" + ", ".join(str(d) for d in shape) + ")")
    out.print(table)
    if not meta:
        return
    layers = json.loads(meta["layers"])
    rows = [("layers", f"{layers[0][0]} inputs" + "".join(
        f" -> {n_out} {act}" for _, n_out, act in layers))]
    standardized = json.loads(meta.get("standardized", "[]"))
    rows.append(("standardised", ", ".join(standardized) if standardized else "nothing"))
    if "classes" in meta:
        rows.append(("classes", short_list(json.loads(meta["classes"]))))
    if "features" in meta:
        features = json.loads(meta["features"])
        rows.append(("features", short_list(features["columns"])))
        for col, cats in features.get("categories", {}).items():
            rows.append((f"one-hot {col}", short_list(cats)))
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in rows:
        summary.add_row(key, escape(value))
    out.print(summary)
