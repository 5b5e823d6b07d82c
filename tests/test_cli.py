"""The ``jacnet`` command on real files: the installed console script in a subprocess for
every subcommand and every error the CLI issue lists, with its exit code; ``jacnet.cli.main``
in this process for the further errors and checks (a new interpreter costs seconds)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plots import assert_picture

import jacnet as jn
from jacnet.data import FeatureEncoder
from jacnet.io import read_model

# One pytest worker runs this file (make test: --dist loadgroup), so the module fixtures
# below (a training in a subprocess among them) run once, not once per worker.
pytestmark = pytest.mark.xdist_group("cli")

_SCRIPT = Path(sys.executable).with_name("jacnet")
JACNET = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "jacnet.cli"]


def run(*args, cwd=None, code=0, script=False):
    """``jacnet ARGS``: ``jacnet.cli.main``, the console script's function, in this process;
    with ``script=True`` the installed console script in a subprocess, as users run it.
    Asserts the exit code."""
    argv = [str(a) for a in args]
    if script:
        proc = subprocess.run([*JACNET, *argv], capture_output=True, text=True, cwd=cwd,
                              timeout=900)
    else:
        from jacnet.cli import main

        out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
        try:
            os.chdir(cwd or here)
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main(argv)
                    status = 0
                except SystemExit as exc:
                    status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            os.chdir(here)
        proc = subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "color": rng.choice(["red", "green", "blue"], n)})
    df["label"] = np.where(df.x1 + (df.color == "red") > 0.3, "yes", "no")
    df["size"] = 2 * df.x1 - df.x2 + (df.color == "blue") + 0.1 * rng.normal(size=n)
    df["weight"] = df.x1 * df.x2 + 0.1 * rng.normal(size=n)
    return df


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def csv_file(work):
    path = work / "animals.csv"
    _table().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def classifier_run(work, csv_file):
    out = work / "cls"
    proc = run("train", csv_file, "--target", "label", "--drop", "size", "--drop", "weight",
               "--hidden", "8", "--solver", "adam", "--epochs", "15", "--seed", "3",
               "--out", out, script=True)
    return out, proc


@pytest.fixture(scope="module")
def regressor_run(work):
    path = work / "table.parquet"
    _table(seed=1).drop(columns="label").to_parquet(path)
    out = work / "reg"
    proc = run("train", path, "-t", "size", "-t", "weight", "--hidden", "6,4",
               "--activation", "tanh,relu", "--epochs", "8", "--out", out)
    return out, proc


# ------------------------------------------------------------------------------ train
def test_cli_train_classification_outputs(classifier_run):
    out, proc = classifier_run
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "record.json", "loss.png",
                                              "confusion.png"}
    for text in ("epoch", "loss", "val", "lr", "ETA", "accuracy", "test", "wrote"):
        assert text in proc.stdout
    record = json.loads((out / "record.json").read_text())
    for key in ("stop_reason", "best_epoch", "epochs", "division", "metrics", "versions",
                "timings"):
        assert key in record
    assert len(record["epochs"]) >= 1 and {"loss", "val_loss", "test_loss", "lr"} <= set(
        record["epochs"][0])
    division = record["division"]
    rows = sorted(division["train"] + division["validation"] + division["test"])
    assert rows == list(range(120))
    assert len(division["test"]) == 18 and len(division["validation"]) == 18
    for split in ("train", "validation", "test"):
        assert 0 <= record["metrics"][split]["accuracy"] <= 1
    assert record["classes"] == ["no", "yes"]
    assert_picture(out / "loss.png")
    assert_picture(out / "confusion.png")


def test_cli_train_regression_outputs(regressor_run):
    out, proc = regressor_run
    record = json.loads((out / "record.json").read_text())
    assert record["task"] == "regression" and record["targets"] == ["size", "weight"]
    assert set(record["metrics"]["test"]) == {"n", "r2", "mse", "per_target", "nll",
                                              "coverage_95", "width_95"}
    assert set(record["metrics"]["test"]["per_target"]) == {"size", "weight"}
    assert record["model"]["solver"] == "lm"  # --solver auto on a small problem
    assert "mu" in proc.stdout and "r2" in proc.stdout
    assert_picture(out / "predicted_vs_true.png", (300, 600))
    assert_picture(out / "loss.png")


def test_cli_train_is_reproducible(work, csv_file, classifier_run):
    out, _ = classifier_run
    again = work / "cls_again"
    # the first run was the console script in a fresh interpreter; this one runs in the
    # test's process, after everything else the tests did in it
    run("train", csv_file, "--target", "label", "--drop", "size", "--drop", "weight",
        "--hidden", "8", "--solver", "adam", "--epochs", "15", "--seed", "3", "--out", again,
        "--quiet", "--no-plots")
    a, b = (jn.load(p / "model.safetensors") for p in (out, again))
    assert np.array_equal(a.network_.get_flat(), b.network_.get_flat())


def test_cli_train_builtin_default_dataset_quiet(work):
    proc = run("train", "--epochs", "2", "--quiet", "--no-plots", "--out", work / "digits")
    assert proc.stdout == ""
    record = json.loads((work / "digits" / "record.json").read_text())
    assert record["data"]["source"] == "dataset digits" and len(record["epochs"]) == 2


@pytest.mark.parametrize("fmt", ["tsv", "npz"])
def test_cli_train_reads_tsv_and_npz(work, fmt):
    df = _table(60, seed=2)
    if fmt == "tsv":
        path = work / "t.tsv"
        df.to_csv(path, sep="\t", index=False)
        args = ["--target", "label"]
    else:
        path = work / "t.npz"
        np.savez(path, X=df[["x1", "x2"]].to_numpy(), y=df["size"].to_numpy())
        args = []
    run("train", path, *args, "--epochs", "3", "--hidden", "4", "--quiet", "--no-plots",
        "--out", work / f"run_{fmt}")
    record = json.loads((work / f"run_{fmt}" / "record.json").read_text())
    assert record["task"] == ("classification" if fmt == "tsv" else "regression")


# ------------------------------------------------------------------ predict, evaluate
def test_cli_predict_matches_the_library(work, csv_file, classifier_run):
    out, _ = classifier_run
    proc = run("predict", out / "model.safetensors", csv_file, script=True)
    pred = pd.read_csv(io.StringIO(proc.stdout))
    assert list(pred.columns) == ["label", "proba_no", "proba_yes"] and len(pred) == 120
    est, doc = read_model(out / "model.safetensors")
    X = FeatureEncoder.from_dict(doc["extra"]["data"]["features"]).transform(
        pd.read_csv(csv_file))
    assert pred["label"].tolist() == est.predict(X).tolist()
    np.testing.assert_allclose(pred["proba_yes"], est.predict_proba(X)[:, 1], rtol=1e-12)
    run("predict", out / "model.safetensors", csv_file, "-o", work / "p.parquet", "--no-proba")
    assert pd.read_parquet(work / "p.parquet").columns.tolist() == ["label"]


def test_cli_predict_regression_to_csv(work, regressor_run):
    out, _ = regressor_run
    data = work / "new.csv"
    _table(10, seed=5).drop(columns=["label", "size", "weight"]).to_csv(data, index=False)
    run("predict", out / "model.safetensors", data, "-o", work / "pred.csv")
    assert pd.read_csv(work / "pred.csv").shape == (10, 2)


def test_cli_evaluate(csv_file, classifier_run):
    out, _ = classifier_run
    proc = run("evaluate", out / "model.safetensors", csv_file, "--json", script=True)
    metrics = json.loads(proc.stdout)
    record = json.loads((out / "record.json").read_text())
    n = {k: v["n"] for k, v in record["metrics"].items()}
    overall = sum(record["metrics"][k]["accuracy"] * n[k] for k in n) / sum(n.values())
    assert metrics["n"] == 120 and metrics["accuracy"] == pytest.approx(overall)
    assert "accuracy" in run("evaluate", out / "model.safetensors", csv_file,
                             "--target", "label").stdout


def test_cli_info(classifier_run, regressor_run):
    proc = run("info", classifier_run[0] / "model.safetensors", script=True)
    for text in ("MLPClassifier", "parameters", "ReLU", "Sigmoid", "one-hot",
                 "color: blue, green, red", "classes", "no, yes", "stopped", "division"):
        assert text in proc.stdout
    proc = run("info", regressor_run[0] / "model.safetensors")
    assert "MLPRegressor" in proc.stdout and "Tanh" in proc.stdout


def test_cli_info_bare_network(work):
    jn.save_network(jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0),
                    work / "net.safetensors")
    assert "network, 13 parameters" in run("info", work / "net.safetensors").stdout


def test_cli_info_br_shows_the_kept_epoch_and_its_evidence(work):
    """br keeps its last weights (not the lowest training loss): info names that epoch
    with its gamma, alpha, beta and log evidence, and the collapse guard's restart."""
    import warnings

    from jacnet.io import save_estimator

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(40, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # seed 0 of this size collapses under trainbr's start and is restarted
        est = jn.MLPRegressor(hidden_layer_sizes=(8,), solver="br", random_state=0).fit(X, y)
    record = est.training_record_
    restarted = [e["epoch"] for e in record.epochs if e.get("restart") == "collapse"]
    assert restarted
    save_estimator(est, work / "br.safetensors")
    text = " ".join(run("info", work / "br.safetensors").stdout.split())
    last = record.epochs[-1]
    assert f"epoch {last['epoch']} (the weights of the last epoch)" in text
    assert f"gamma {last['gamma']:.4g} of {est.network_.n_params} parameters" in text
    assert f"alpha {last['alpha']:.4g}" in text and f"beta {last['beta']:.4g}" in text
    assert f"log evidence {last['log_evidence']:.4g}" in text
    assert f"restarted at epoch {restarted[0]}" in text
    assert "best epoch" not in text


def test_cli_gradcheck_passes_and_fails():
    proc = run("gradcheck")
    assert "softmax + cross-entropy" in proc.stdout and "19 of 19 passed" in proc.stdout
    assert "FAIL" in run("gradcheck", "--tol", "1e-30", code=1, script=True).stdout


def test_cli_help_and_no_arguments():
    assert "train" in run(script=True).stdout
    assert "--hidden" in run("train", "--help").stdout


# ---------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bad_files(work):
    files = {"empty.csv": "", "header.csv": "a,b,y\n", "nan.csv": "a,b,y\n1,2,\n2,3,1\n3,1,0\n",
             "data.csv": "a,b,y\n1,2,0\n2,3,1\n3,1,0\n4,4,1\n", "model.csv": "a,b\n1,2\n",
             "notes.xlsx": "x", "unseen.csv": "x1,x2,color\n0.1,0.2,purple\n",
             "semicolon.csv": "a;b;y\n1,5;2;0\n2,5;3;1\n",
             "dates.csv": "when,b,y\n" + "".join(f"2021-01-{d:02d},{d},{d % 2}\n"
                                                 for d in range(1, 31)),
             "dup.csv": "a,a,y\n1,2,0\n2,3,1\n3,1,0\n",
             "classes2.csv": "a,k,k2\n" + "".join(f"{i},{i % 3},{i % 4}\n" for i in range(12))}
    for name, text in files.items():
        (work / name).write_text(text)
    ids = _table(60)
    ids["id"] = [f"row{i}" for i in range(60)]
    ids.to_csv(work / "ids.csv", index=False)
    return work


# Each one-line error. The errors the CLI issue lists (missing file, unknown column, empty
# file, features that cannot be encoded, NaN in the target, a file that is not a model)
# run through the console script in a subprocess, as users meet them; the others through
# main() in this process (a new interpreter costs seconds, minutes on a starved machine).
ERRORS = {
    "missing file": (["train", "nothere.csv"], "file not found: nothere.csv"),
    "empty file": (["train", "empty.csv"], "empty.csv is empty"),
    "no rows": (["train", "header.csv"], "has no data rows"),
    "unknown column": (["train", "data.csv", "--target", "z"], "unknown target column 'z'"),
    "unknown drop": (["train", "data.csv", "--drop", "q"], "unknown --drop column 'q'"),
    "text feature": (["train", "ids.csv", "--target", "label"], "feature column 'id'"),
    "NaN target": (["train", "nan.csv"], "target column 'y' has 1 missing value"),
    "not a model": (["info", "model.csv"], "is not a jacnet model file"),
    "no model": (["predict", "nothere.safetensors", "data.csv"], "model file not found"),
    "bad epochs": (["train", "data.csv", "--epochs", "0"], "'--epochs'"),
    "file type": (["train", "notes.xlsx"], "unsupported file type '.xlsx'"),
    "bad hidden": (["train", "data.csv", "--hidden", "8,x"], "--hidden"),
    "bad activation": (["train", "data.csv", "--activation", "swishy"], "unknown name"),
    "activation count": (["train", "data.csv", "--hidden", "3,3,3", "--activation",
                          "tanh,relu"], "one per hidden layer"),
    "bad solver": (["train", "data.csv", "--solver", "newton"], "'--solver'"),
    "bad lr": (["train", "data.csv", "--lr", "0"], "--lr must be a positive"),
    "bad fractions": (["train", "data.csv", "--val-fraction", "0.6", "--test-fraction", "0.5"],
                      "must be < 1"),
    "unknown option": (["train", "--colour"], "--colour"),
    "both inputs": (["train", "data.csv", "--dataset", "iris"], "not both"),
    "unknown dataset": (["train", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    "text target": (["train", "ids.csv", "--target", "label", "--task", "regression",
                     "--drop", "id"],
                    "target 'label' is not numeric"),
    "infinite lr": (["train", "data.csv", "--lr", "inf"], "--lr must be a positive finite"),
    "infinite alpha": (["train", "data.csv", "--alpha", "inf"], "--alpha must be a finite"),
    "negative seed": (["train", "data.csv", "--seed", "-1"], "'--seed'"),
    "semicolons": (["train", "semicolon.csv"], "a semicolon-separated file?"),
    "dates in a CSV": (["train", "dates.csv"], "feature column 'when' holds dates or times"),
    "repeated header": (["train", "dup.csv"], "duplicate column names: 'a'"),
    "date target": (["train", "dates.csv", "-t", "when"], "target 'when' holds 30 dates or times"),
    "rare classes": (["train", "ids.csv", "-t", "id", "--drop", "label", "--drop", "color"],
                     "row28, ... (18 in all) have no row in the training part"),
    "several class targets": (["train", "classes2.csv", "-t", "k", "-t", "k2"],
                              "several class targets must all be 0/1"),
    "several class targets, --task": (["train", "classes2.csv", "-t", "k", "-t", "k2",
                                       "--task", "classification"],
                                      "target 'k' is not 0/1"),
}


IN_SUBPROCESS = {"missing file", "unknown column", "empty file", "text feature", "NaN target",
                 "not a model"}
assert IN_SUBPROCESS <= ERRORS.keys()


def _assert_one_line(stderr, message):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jacnet: error: "), stderr
    assert message in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_cli_errors_exit_2_with_one_line(bad_files, case):
    args, message = ERRORS[case]
    proc = run(*args, cwd=bad_files, code=2, script=case in IN_SUBPROCESS)
    _assert_one_line(proc.stderr, message)


def test_cli_predict_unseen_category(bad_files, classifier_run):
    proc = run("predict", classifier_run[0] / "model.safetensors", "unseen.csv",
               cwd=bad_files, code=2)
    assert "values not seen in training: 'purple'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_evaluate_corrupted_model(bad_files, classifier_run):
    data = bytearray((classifier_run[0] / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (bad_files / "broken.safetensors").write_bytes(bytes(data))
    proc = run("evaluate", "broken.safetensors", "unseen.csv", cwd=bad_files, code=2)
    assert "corrupted" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_debug_shows_the_traceback(bad_files):
    _assert_one_line(run("train", "nothere.csv", cwd=bad_files, code=2, script=True).stderr,
                     "file not found: nothere.csv")
    proc = run("train", "nothere.csv", "--debug", cwd=bad_files, code=2, script=True)
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("jacnet: error: file not found")


# ----------------------------------------------------------------- review findings
def test_cli_files_get_the_usual_permissions(work, csv_file):
    """mkstemp makes private files; the run folder's files follow the umask like any
    tool's, and a replaced file keeps its mode."""
    out = work / "modes"
    old = os.umask(0o022)
    try:
        run("train", csv_file, "-t", "label", "--hidden", "4", "--epochs", "2", "--out", out,
            "-q")
        run("predict", out / "model.safetensors", csv_file, "-o", work / "modes.csv")
        for f in [*out.iterdir(), work / "modes.csv"]:
            assert f.stat().st_mode & 0o777 == 0o644, f
        (out / "record.json").chmod(0o640)
        run("train", csv_file, "-t", "label", "--hidden", "4", "--epochs", "2", "--out", out,
            "-q")
        assert (out / "record.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_cli_diverged_run_writes_a_strict_json_record(work, csv_file):
    out = work / "diverged"
    run("train", csv_file, "-t", "size", "--drop", "label", "--hidden", "16", "--solver",
        "sgd", "--lr", "1000", "--val-fraction", "0", "--epochs", "5", "--out", out, "-q")
    record = json.loads((out / "record.json").read_text())  # strict JSON: null, not inf
    assert record["stop_reason"] == "non_finite"
    assert {"model.safetensors", "record.json"} <= {p.name for p in out.iterdir()}


def test_cli_evaluate_scores_rows_of_one_class(work, csv_file, classifier_run):
    df = pd.read_csv(csv_file)
    df[df.label == "yes"].to_csv(work / "yes_only.csv", index=False)
    metrics = json.loads(run("evaluate", classifier_run[0] / "model.safetensors",
                             work / "yes_only.csv", "--json").stdout)
    assert metrics["n"] == int((df.label == "yes").sum()) and 0 <= metrics["accuracy"] <= 1


def test_cli_prints_column_names_with_brackets_as_they_are(work):
    """rich reads "[...]" as markup; column names are escaped, never interpreted."""
    df = _table(60).drop(columns=["label", "color", "weight"])
    df.columns = ["rate [/s]", "x2", "response [m/s]"]
    df.to_csv(work / "units.csv", index=False)
    out = work / "units"
    proc = run("train", work / "units.csv", "--hidden", "4", "--epochs", "2", "--out", out)
    assert "regression of response [m/s]" in " ".join(proc.stdout.split())
    assert "rate [/s]" in run("info", out / "model.safetensors").stdout


def test_cli_default_target_of_a_csv_is_its_last_column(work):
    df = pd.DataFrame({"y1": np.arange(30.0), "y2": np.arange(30.0) % 7,
                       "y3": np.sin(np.arange(30.0))})
    df.to_csv(work / "lags.csv", index=False)
    proc = run("train", work / "lags.csv", "--hidden", "3", "--epochs", "2", "-q",
               "--out", work / "lags")
    assert proc.returncode == 0
    assert json.loads((work / "lags" / "record.json").read_text())["targets"] == ["y3"]


def test_cli_reused_out_folder_keeps_no_plot_of_an_earlier_run(work, csv_file):
    out = work / "reused"
    run("train", csv_file, "-t", "label", "--hidden", "4", "--epochs", "2", "--out", out, "-q")
    assert (out / "confusion.png").exists()
    run("train", csv_file, "-t", "size", "--drop", "label", "--hidden", "4", "--epochs", "2",
        "--out", out, "-q", "--no-plots")
    assert not any(p.suffix == ".png" for p in out.iterdir())


def test_cli_out_that_cannot_be_written_fails_before_training(work, csv_file, unprivileged):
    """--out is checked before the fit, not after the work it would keep: a file in its
    place, or a model file in it that the user may not write, ends the command at once."""
    not_a_folder = work / "a_file"
    not_a_folder.write_text("x")
    proc = run("train", csv_file, "-t", "label", "--hidden", "4", "--out", not_a_folder,
               code=2)
    assert "exists and is not a folder" in proc.stderr and "epoch" not in proc.stdout
    from jacnet.cli import train as cli_train
    from jacnet.cli.common import CliError

    (unprivileged.folder / "record.json").write_text("{}")
    (unprivileged.folder / "record.json").chmod(0o444)

    def check() -> int:
        try:
            cli_train._run_dir(unprivileged.folder)
        except CliError as e:
            return 13 if "no permission to write record.json" in str(e) else 2
        return 0

    assert unprivileged.run(check) == 13
    (unprivileged.folder / "record.json").chmod(0o666)
    assert unprivileged.run(check) == 0


def test_cli_interrupted_training_leaves_no_empty_run_folder(work, csv_file, monkeypatch):
    """The run folder is made before training; a run stopped during the fit (Ctrl-C here)
    removes it again when nothing was written into it."""
    from jacnet.cli import train as cli_train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_train, "_fit_divided", interrupted)
    out = work / "interrupted"
    run("train", csv_file, "-t", "label", "--hidden", "4", "--out", out, code=130)
    assert not out.exists()
    home = work / "home_interrupted"
    home.mkdir()
    run("train", csv_file, "-t", "label", "--hidden", "4", cwd=home, code=130)
    assert list((home / "runs").iterdir()) == []  # runs/<time> made, then removed


def test_cli_codes_that_look_like_numbers_stay_text_at_prediction(work):
    """A file of new rows whose codes all look like numbers ("010", "007") is read with the
    model's text columns as text: "010" is not the category "10", and labels keep zeros."""
    rng = np.random.default_rng(0)
    zone = rng.choice(["010", "10", "x"], 90)
    label = np.where(zone == "010", "007", np.where(zone == "10", "008", "x"))
    df = pd.DataFrame({"u": rng.normal(size=90), "zone": zone, "label": label})
    df.to_csv(work / "zones.csv", index=False)
    out = work / "zones"
    run("train", work / "zones.csv", "-t", "label", "--hidden", "4", "--solver", "lm",
        "--epochs", "30", "--out", out, "-q")
    full = pd.read_csv(io.StringIO(run("predict", out / "model.safetensors",
                                       work / "zones.csv").stdout), dtype=str)
    rows = df.zone == "010"
    df[rows].to_csv(work / "zones010.csv", index=False)
    part = pd.read_csv(io.StringIO(run("predict", out / "model.safetensors",
                                       work / "zones010.csv").stdout), dtype=str)
    assert part["label"].tolist() == full["label"][rows.to_numpy()].tolist()
    assert set(part["label"]) == {"007"}
    metrics = json.loads(run("evaluate", out / "model.safetensors", work / "zones010.csv",
                             "--json").stdout)
    assert metrics["accuracy"] == 1.0


def test_cli_scores_each_target_and_an_imbalanced_class_honestly(work):
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["small"] = df.a + 0.1 * rng.normal(size=n)
    df["large"] = 100 * df.a * df.b
    df.to_csv(work / "units2.csv", index=False)
    out = work / "units2"
    proc = run("train", work / "units2.csv", "-t", "small", "-t", "large", "--hidden", "8",
               "--solver", "lm", "--epochs", "10", "--out", out)
    assert "Per target" in proc.stdout and "r2 (mean)" in proc.stdout
    test = json.loads((out / "record.json").read_text())["metrics"]["test"]
    assert set(test["per_target"]) == {"small", "large"}
    pred = pd.read_csv(io.StringIO(run("predict", out / "model.safetensors",
                                       work / "units2.csv").stdout))
    idx = json.loads((out / "record.json").read_text())["division"]["test"]
    mse_large = float(np.mean((pred["large"].to_numpy()[idx] - df["large"].to_numpy()[idx]) ** 2))
    assert test["per_target"]["large"]["mse"] == pytest.approx(mse_large, rel=1e-6)
    # a 6% class: the baseline (always the majority) and the balanced accuracy are shown
    c = pd.DataFrame({"a": rng.normal(size=n)})
    c["churn"] = np.where(c.a > 1.55, "yes", "no")
    c.to_csv(work / "churn.csv", index=False)
    model = _train_quiet(work, "churn.csv")
    metrics = json.loads(run("evaluate", model, work / "churn.csv", "--json").stdout)
    assert metrics["baseline_accuracy"] == pytest.approx((c.churn == "no").mean())
    assert 0 <= metrics["balanced_accuracy"] <= 1


def _train_quiet(work, name):
    out = work / (name + ".run")
    run("train", work / name, "--hidden", "4", "--epochs", "5", "--out", out, "-q")
    return out / "model.safetensors"


def test_load_pipeline_predicts_the_raw_table_as_the_cli_does(work, csv_file, classifier_run):
    out, _ = classifier_run
    pipe = jn.load_pipeline(out / "model.safetensors")
    df = pd.read_csv(csv_file)
    cli = pd.read_csv(io.StringIO(run("predict", out / "model.safetensors", csv_file).stdout))
    assert pipe.predict(df).tolist() == cli["label"].tolist()
    np.testing.assert_allclose(pipe.predict_proba(df)[:, 1], cli["proba_yes"], rtol=1e-12)
    with pytest.raises(TypeError, match="X must be a pandas DataFrame"):
        pipe.predict(df.to_numpy())
    with pytest.raises(TypeError, match="holds a bare network"):
        jn.save_network(jn.Network([jn.Dense(2, 1)], seed=0), work / "bare.safetensors")
        jn.load_pipeline(work / "bare.safetensors")


def test_cli_scores_of_a_diverged_model_are_null_not_an_error():
    from jacnet.cli.common import model_metrics
    from jacnet.data import target_values

    class Diverged:
        def predict(self, X):
            return np.array([[np.inf, 1.0], [np.nan, 3.0], [2.0, 2.0]])

    m = model_metrics(Diverged(), "regression", None, np.ones((3, 2)), ["a", "b"])
    assert m["r2"] is None and m["per_target"]["a"]["r2"] is None
    assert json.loads(json.dumps(jn.record.strict_json(m)))["mse"] is None
    # a few time slots are classes (only a column of many dates is refused)
    slots = pd.DataFrame({"slot": ["09:00", "12:30", "09:00", "17:45"]})
    assert target_values(slots, ["slot"], "classification").tolist()[1] == "12:30"


def test_cli_predict_keeps_the_columns_asked_for(work, csv_file, classifier_run):
    out, _ = classifier_run
    df = pd.read_csv(csv_file, dtype={"color": str})
    df.insert(0, "id", [f"{i:03d}" for i in range(len(df))])
    df.to_csv(work / "with_ids.csv", index=False)
    proc = run("predict", out / "model.safetensors", work / "with_ids.csv", "--keep", "id",
               "--keep", "color")
    pred = pd.read_csv(io.StringIO(proc.stdout), dtype={"id": str})
    assert list(pred.columns[:3]) == ["id", "color", "label"]
    assert pred["id"].tolist() == df["id"].tolist()  # "007" stays "007"
    plain = pd.read_csv(io.StringIO(run("predict", out / "model.safetensors", csv_file).stdout))
    assert pred["label"].tolist() == plain["label"].tolist()
    err = run("predict", out / "model.safetensors", csv_file, "--keep", "nope", code=2).stderr
    assert "unknown --keep column 'nope'" in err


# ------------------------------------------------------- br, uncertainty, ensembles
@pytest.fixture(scope="module")
def br_run(work, csv_file):
    out = work / "br"
    proc = run("train", csv_file, "-t", "size", "--drop", "label", "--drop", "weight",
               "--solver", "br", "--hidden", "4", "--activation", "tanh", "--epochs", "60",
               "--out", out)
    return out, proc


def test_cli_br_records_its_evidence_and_error_bar_metrics(br_run):
    """trainbr from the command line: gamma, alpha, beta and the log evidence in the record
    and the summary; every part scored by its NLL, 95% coverage and width; the validation
    rows scored every epoch but never stopping the run, whose last weights are kept."""
    out, proc = br_run
    record = json.loads((out / "record.json").read_text())
    bayes = record["bayesian"]
    assert set(bayes) == {"gamma", "alpha", "beta", "log_evidence", "n_params", "noise_std"}
    assert 0 < bayes["gamma"] <= bayes["n_params"] and bayes["alpha"] > 0 < bayes["beta"]
    last = record["epochs"][-1]  # the kept weights are the last epoch's: its alpha, beta
    assert (bayes["gamma"], bayes["alpha"], bayes["beta"], bayes["log_evidence"]) == (
        last["gamma"], last["alpha"], last["beta"], last["log_evidence"])
    assert record["stop_reason"] != "validation" and record["options"]["epochs"] == 60
    assert all(e["val_loss"] is not None for e in record["epochs"])
    assert len(record["division"]["validation"]) == 18
    for part in ("train", "validation", "test"):
        m = record["metrics"][part]
        assert np.isfinite(m["nll"]) and 0 <= m["coverage_95"] <= 1 and m["width_95"] > 0
    for text in ("Bayesian regularization", "γ =", "log evidence", "nll", "coverage 95",
                 "last epoch's weights kept"):
        assert text in proc.stdout
    assert_picture(out / "intervals.png", (300, 600))
    assert_picture(out / "errors.png")
    model = jn.load(out / "model.safetensors")
    assert model.gamma_ == bayes["gamma"]


def test_cli_br_takes_no_validation_patience_unless_asked(monkeypatch, tmp_path):
    """trainbr's max_fail = inf: the plan's patience for br is "never", --patience sets one."""
    from jacnet.cli import main
    from jacnet.cli import train as cli_train
    from jacnet.fitplan import NEVER

    seen = []

    def fit_divided(est, X, y, division, wait, progress):
        seen.append((wait, est.max_iter))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_train, "_fit_divided", fit_divided)
    for given in ([], ["--patience", "5", "--epochs", "7"]):
        with pytest.raises(SystemExit):
            main(["train", "--dataset", "diabetes", "--solver", "br", "--hidden", "3",
                  "--out", str(tmp_path / "r"), "-q", *given])
    assert seen == [(NEVER, 1000), (5, 7)]


def test_cli_evaluate_prints_the_error_bar_metrics(br_run, csv_file):
    out, _ = br_run
    metrics = json.loads(run("evaluate", out / "model.safetensors", csv_file, "--json").stdout)
    assert {"nll", "coverage_95", "width_95"} <= set(metrics) and metrics["n"] == 120
    assert "coverage 95" in run("evaluate", out / "model.safetensors", csv_file).stdout


@pytest.fixture(scope="module")
def ensemble_run(work, csv_file):
    out = work / "ensemble"
    proc = run("train", csv_file, "-t", "size", "-t", "weight", "--drop", "label",
               "--solver", "br", "--hidden", "3", "--activation", "tanh", "--epochs", "25",
               "--ensemble", "3", "--out", out)
    return out, proc


def test_cli_ensemble_trains_saves_and_predicts_with_the_mixture(ensemble_run, csv_file, work):
    out, proc = ensemble_run
    record = json.loads((out / "record.json").read_text())
    assert record["model"]["ensemble"] == 3 and record["ensemble"]["n_members"] == 3
    members = record["ensemble"]["members"]
    assert len({m["random_state"] for m in members}) == 3
    assert all(set(m["bayesian"]) >= {"gamma", "alpha", "beta", "log_evidence"}
               for m in members)
    assert {"nll", "coverage_95", "width_95"} <= set(record["metrics"]["test"])
    assert {"nll", "coverage_95"} <= set(record["metrics"]["test"]["per_target"]["weight"])
    assert "member 3 of 3" in proc.stdout and "member 2: Bayesian" in proc.stdout
    assert_picture(out / "intervals.png", (300, 600))
    ens = jn.load(out / "model.safetensors")
    assert isinstance(ens, jn.Ensemble) and len(ens.estimators_) == 3
    pred = out / "pred.csv"
    run("predict", out / "model.safetensors", csv_file, "--std", "--interval", "0.9",
        "-o", pred)
    table = pd.read_csv(pred)
    assert list(table.columns) == ["size", "weight", "size_std", "weight_std", "size_lower",
                                   "size_upper", "weight_lower", "weight_upper"]
    X = FeatureEncoder.from_dict(read_model(out / "model.safetensors")[1]["extra"]["data"]
                                 ["features"]).transform(pd.read_csv(csv_file))
    mean, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(table[["size", "weight"]], mean, rtol=1e-12)
    np.testing.assert_allclose(table[["size_std", "weight_std"]], std, rtol=1e-12)
    assert "Ensemble of 3 MLPRegressor members" in run("info", out / "model.safetensors").stdout


def test_cli_ensemble_bad_input_exits_2(work, csv_file):
    proc = run("train", csv_file, "-t", "label", "--ensemble", "2", "--out", work / "x",
               code=2)
    _assert_one_line(proc.stderr, "--ensemble needs a regression task")
    proc = run("train", csv_file, "-t", "size", "--ensemble", "0", "--out", work / "x", code=2)
    assert "--ensemble" in proc.stderr


# ------------------------------------------------------------------ derivative columns
def _derivative_table(n=60, seed=0):
    """y = sin(x1) cos(x2) with its gradient in the columns dy/dx1, dy/dx2 (some empty)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "y": np.sin(x1) * np.cos(x2),
                       "dy/dx1": np.cos(x1) * np.cos(x2), "dy/dx2": -np.sin(x1) * np.sin(x2)})
    df.loc[::4, "dy/dx2"] = np.nan  # not observed: an empty field in the CSV
    return df


def test_cli_train_fits_the_derivative_columns(tmp_path):
    """The columns d<target>/d<feature> are not features, are fitted (a lower test error
    than without them) and noted in record.json; --no-derivatives leaves them out."""
    df = _derivative_table()
    df.to_csv(tmp_path / "grad.csv", index=False)
    common = ["train", tmp_path / "grad.csv", "--target", "y", "--hidden", "12",
              "--activation", "tanh", "--solver", "lm", "--epochs", "100", "--patience",
              "100", "--no-plots", "-q"]
    records = {}
    for flag in ("--derivatives", "--no-derivatives"):
        run(*common, flag, "-o", tmp_path / flag)
        records[flag] = json.loads((tmp_path / flag / "record.json").read_text())
    data = records["--derivatives"]["data"]
    assert data["features"] == ["x1", "x2"]
    assert data["derivative_columns"] == ["dy/dx1", "dy/dx2"]
    train = records["--derivatives"]["division"]["train"]
    observed = df[["dy/dx1", "dy/dx2"]].iloc[train].notna().to_numpy().sum()
    assert data["derivative_values"] == observed < 2 * len(train)
    plain = records["--no-derivatives"]["data"]
    assert plain["features"] == ["x1", "x2"] and "derivative_columns" not in plain
    mse = {k: r["metrics"]["test"]["mse"] for k, r in records.items()}
    assert mse["--derivatives"] < mse["--no-derivatives"], mse


@pytest.mark.parametrize("column, message", [
    ("dz/dx1", "derivative column 'dz/dx1': 'z' is not a target"),
    ("dy/dq", "derivative column 'dy/dq': its feature 'q' is not a column"),
])
def test_cli_derivative_column_of_an_unknown_target_or_feature_is_named(tmp_path, column,
                                                                        message):
    df = _derivative_table(12)
    df[column] = 1.0
    df.to_csv(tmp_path / "bad.csv", index=False)
    err = run("train", tmp_path / "bad.csv", "--target", "y", "-q", "--no-plots", "-o",
              tmp_path / "out", code=2).stderr
    assert message in err
    if column == "dz/dx1":  # --no-derivatives: an ordinary column, a feature
        run("train", tmp_path / "bad.csv", "--target", "y", "--no-derivatives", "--hidden",
            "3", "--epochs", "2", "-q", "--no-plots", "-o", tmp_path / "plain")
        record = json.loads((tmp_path / "plain" / "record.json").read_text())
        assert record["data"]["features"] == ["x1", "x2", "dz/dx1"]


def test_cli_derivative_columns_need_a_regression_target_and_numbers(tmp_path):
    df = _derivative_table(12)
    df["y"] = np.where(df["y"] > 0, "up", "down")
    df.to_csv(tmp_path / "labels.csv", index=False)
    err = run("train", tmp_path / "labels.csv", "--target", "y", "-q", "--no-plots", "-o",
              tmp_path / "out", code=2).stderr
    assert "derivative columns" in err and "regression" in err
    df = _derivative_table(12)
    df["dy/dx1"] = df["dy/dx1"].astype(object)
    df.loc[3, "dy/dx1"] = "steep"
    df.to_csv(tmp_path / "text.csv", index=False)
    err = run("train", tmp_path / "text.csv", "--target", "y", "-q", "--no-plots", "-o",
              tmp_path / "out", code=2).stderr
    assert "derivative column 'dy/dx1' holds a non-numeric value 'steep'" in err
