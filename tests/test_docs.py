"""The documentation's examples, run as written.

Every fenced block of README.md and docs/*.md that a reader would run is executed here from
the file's own text: the Python blocks in this process, the walk-through's commands through
bash and the installed console script, with ``.venv/bin/`` read as this interpreter's bin
folder. Where the text shows an output (a shape in a comment, the lines ``head`` prints,
the table ``make run`` ends with) the output is compared with it. What the prose leaves
to the reader (the ``X`` of "Back in Python", the rows of ``new_patients.csv``) is built
from the same diabetes table. A block that no test runs makes
``test_every_block_is_run_or_excused`` fail, so a new example cannot go untested.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# One worker runs these (make test: --dist loadgroup), beside the CLI's own tests.
pytestmark = pytest.mark.xdist_group("cli")

# The blocks the tests below run, by the text each begins with: (file, info string, start).
COVERED = {
    "engine": ("README.md", "python", "import numpy as np, jacnet as jn\n\nnet"),
    "make run": ("README.md", "", "jacnet train: dataset digits"),
    "look inside": ("README.md", "", ".venv/bin/jacnet info runs/<timestamp>"),
    "diabetes csv": ("README.md", "", '.venv/bin/python -c "from sklearn.datasets import'),
    "diabetes train": ("README.md", "", ".venv/bin/jacnet train diabetes.csv"),
    "diabetes predict": ("README.md", "", ".venv/bin/jacnet predict runs/diabetes"),
    "back in python": ("README.md", "python", "import jacnet as jn\nest = jn.load("),
    "pipeline": ("README.md", "python", "import pandas as pd\npipe ="),
    "fit_divided": ("README.md", "python", "est = jn.MLPRegressor(hidden_layer_sizes=(10,)"),
    "error bars": ("README.md", "python", "import numpy as np, jacnet as jn\nrng = "),
    "model files": ("cli.md", "python", "import jacnet as jn\nest = jn.load("),
    "synopsis": ("cli.md", "", "jacnet train [DATA] [OPTIONS]"),
    "sinc": ("training.md", "python", "import numpy as np, jacnet as jn"),
    "derivative data": ("training.md", "python", "# 25 samples of sin(x1) cos(x2)"),
    "cluster": ("distributed.md", "python", "import dask.array as da"),
    "dask estimator": ("distributed.md", "python",
                       "est = jn.MLPRegressor(hidden_layer_sizes=(16,)"),
    "onnx runtime": ("deployment.md", "python", "import numpy as np, jacnet as jn\nimport onnx"),
}

# Blocks that need what a test cannot have: a remote scheduler, an object store.
EXCUSED = {
    ("distributed.md", 'from distributed import Client\nclient = Client("tcp://scheduler:8786")'):
        "a remote scheduler and Parquet files on s3",
    ("distributed.md", "import joblib"): "a remote scheduler (GridSearchCV on dask)",
}


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced blocks of ``path`` whose info string is ``lang`` ("" for plain fences)."""
    found, current, inside = [], [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if inside is None:
                inside = line[3:].strip()
                current = []
            else:
                if inside == lang:
                    found.append("\n".join(current) + "\n")
                inside = None
        elif inside is not None:
            current.append(line)
    return found


def _path(name: str) -> Path:
    return ROOT / name if name == "README.md" else ROOT / "docs" / name


def block(key: str) -> str:
    """The one block ``COVERED[key]`` names."""
    name, lang, starts = COVERED[key]
    hits = [b for b in blocks(_path(name), lang) if b.startswith(starts)]
    assert len(hits) == 1, f"{name}: {len(hits)} blocks start with {starts!r}"
    return hits[0]


def execute(code: str, ns: dict[str, Any]) -> tuple[Any, str]:
    """Run ``code`` in ``ns`` as a reader pastes it; returns the value of a last expression
    statement (what the REPL would show) and what was printed."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(tree, "<doc>", "exec"), ns)
        value = None if last is None else eval(
            compile(ast.Expression(last.value), "<doc>", "eval"), ns)
    return value, out.getvalue()


def shell(code: str, cwd: Path) -> str:
    """A shell block's commands through bash in ``cwd``; comment lines are not run."""
    code = code.replace(".venv/bin/", f"{BIN}/")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, text=True,
                          capture_output=True, timeout=900,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, (code, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def shown(code: str) -> list[str]:
    """The output a shell block shows: its ``# `` lines, without the ``# ``."""
    return [line[2:] for line in code.splitlines() if line.startswith("# ")]


def comment_shapes(code: str, ns: dict[str, Any], P: int) -> int:
    """Check every ``NAME[, NAME] = ...  # (shape)[, (shape)]`` line against ``ns``."""
    checked = 0
    for line in code.splitlines():
        m = re.match(r"^([\w, ]+?)\s*=[^#]*#\s*(\(.*?\)(?:,\s*\(.*?\))*)(?::|$)", line)
        if not m:
            continue
        names = [n.strip() for n in m.group(1).split(",")]
        shapes = re.findall(r"\(([^()]*)\)", m.group(2))
        assert len(names) == len(shapes), line
        for name, text in zip(names, shapes, strict=True):
            want = tuple(P if s.strip() == "P" else int(s) for s in text.split(",") if s.strip())
            assert ns[name].shape == want, (line, ns[name].shape)
            checked += 1
    return checked


def test_readme_engine_in_ten_lines():
    code = block("engine")
    ns: dict[str, Any] = {}
    _, printed = execute(code, ns)
    net = ns["net"]
    # Y, J, Jx, JtJ and Jtr: every shape the comments state
    assert comment_shapes(code, ns, net.n_params) == 5
    assert len(ns["grads"]) == 2 and ns["grads"][0][0].shape == (4, 16)
    assert printed.startswith("GradCheck(errors=[")
    errors = [float(e) for e in re.findall(r"[\d.e+-]+(?=[,\]])", printed)]
    assert len(errors) == 2 and max(errors) < 1e-6


def test_training_md_sinc_reaches_its_goal():
    code = block("sinc")
    ns: dict[str, Any] = {}
    _, printed = execute(code, ns)
    record = ns["record"]
    assert record.stop_reason == "goal" and record.epochs[-1]["loss"] <= 1e-6
    assert printed.split()[:2] == ["goal", str(record.n_epochs)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """``make run``'s command (``jacnet train --dataset digits``) into a known folder."""
    cwd = tmp_path_factory.mktemp("digits")
    out = shell(".venv/bin/jacnet train --dataset digits --out runs/digits", cwd)
    return cwd, out


# A run's figures depend on the machine's floating point (the BLAS kernel's rounding), so
# the transcript's accuracies and best epoch are checked as ranges and properties, not as
# one machine's digits; what the division alone decides (row counts, baselines) stays exact.
ACCURACY_RANGE = (95.0, 100.0)
TABLE_ROW = re.compile(r"^│ (\w+)\s+│\s+(\d+) │\s+([\d.]+)% │\s+([\d.]+)% │\s+([\d.]+)% │$")
STOPPED = re.compile(r"^stopped: (.*); best epoch (\d+) of (\d+)$")
PATIENCE = 30  # "training stops when the validation loss has not improved for 30 epochs"


def _untimed(line: str) -> str:
    return re.sub(r"; [\d.]+ s in all$", "", line.rstrip())


def _accuracies_in_range(*values: str) -> bool:
    low, high = ACCURACY_RANGE
    return all(low <= float(v) <= high for v in values)


def _best_epoch_fits(reason: str, best: int, n_epochs: int) -> bool:
    """The kept epoch is one of the run's; a validation stop comes PATIENCE epochs later."""
    return 1 <= best <= n_epochs <= 200 and (
        not reason.startswith("validation") or n_epochs == best + PATIENCE)


def test_readme_make_run_output_is_what_it_prints(digits_run):
    """The README's transcript of ``make run``: the same lines and the same table, but for
    the live bar's timings, the folder's name and the run's figures, which both the
    transcript and the run must show in range: every accuracy in ACCURACY_RANGE, the best
    epoch one of the epochs run (the last but PATIENCE for a validation stop)."""
    _, out = digits_run
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    transcript = block("make run")
    assert transcript in readme
    got = [_untimed(line) for line in out.splitlines()]
    rows = {m.group(1): m.groups() for m in map(TABLE_ROW.match, got) if m}
    stops = [m.groups() for m in map(STOPPED.match, got) if m]
    figures = 0
    for line in transcript.splitlines():
        if line.startswith(("epoch ", "wrote runs/")):
            continue  # the live bar's timings; the folder is named by the time
        row, stop = TABLE_ROW.match(_untimed(line)), STOPPED.match(_untimed(line))
        if row:
            name, n, accuracy, balanced, baseline = row.groups()
            assert name in rows, (line, out)
            assert rows[name][1] == n and rows[name][4] == baseline, (line, rows[name])
            assert _accuracies_in_range(accuracy, balanced, *rows[name][2:4]), (line, out)
            figures += 1
        elif stop:
            reason, best, n_epochs = stop.group(1), int(stop.group(2)), int(stop.group(3))
            assert _best_epoch_fits(reason, best, n_epochs), line
            assert [s[0] for s in stops] == [reason], (line, out)
            assert _best_epoch_fits(reason, int(stops[0][1]), int(stops[0][2])), out
            figures += 1
        else:
            assert _untimed(line) in got, (line, out)
    assert figures == 4  # the train, validation and test rows, and the stop line
    assert "wrote runs/digits/: model.safetensors, record.json, loss.png, confusion.png" in got


def test_readme_look_inside_score_predict(digits_run):
    """Section 2's three commands on that run's model; ``evaluate`` scores every row it is
    given, which the README puts at a figure in ACCURACY_RANGE, as the run's own must be."""
    cwd, out_train = digits_run
    code = block("look inside")
    out = shell(code.replace("runs/<timestamp>", "runs/digits"), cwd)
    assert "38410 parameters" in out  # info
    best = re.search(r"best epoch (\d+),", out)
    stopped = next(filter(None, (STOPPED.match(_untimed(line))
                                 for line in out_train.splitlines())), None)
    assert best and stopped, (out, out_train)
    assert best.group(1) == stopped.group(2)  # info reads the best epoch the run kept
    assert 1 <= int(best.group(1)) <= int(stopped.group(3))
    evaluated = re.search(r"│ all\s+│\s+1797 │\s+([\d.]+)% │", out)  # evaluate
    assert evaluated and _accuracies_in_range(evaluated.group(1)), out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"`evaluate` scores every row it is given \(.*?([\d.]+)%\)", readme,
                       re.S)
    assert stated and _accuracies_in_range(stated.group(1)), "README: evaluate's figure"
    pred = pd.read_csv(cwd / "predictions.csv")
    assert len(pred) == 1797 and pred.filter(like="prob").shape[1] == 10
    np.testing.assert_allclose(pred.filter(like="prob").sum(axis=1), 1.0, rtol=1e-6)


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    """Section 3 as written: the CSV, the training, and the new rows it predicts for."""
    cwd = tmp_path_factory.mktemp("diabetes")
    make_csv = block("diabetes csv")
    out = shell(make_csv, cwd)
    assert out.splitlines() == shown(make_csv)  # what `head -2` prints
    train = block("diabetes train")
    out = shell(train, cwd)
    assert shown(train)[0] in out  # the network line; the next is a summary ("...")
    for name in ("model.safetensors", "record.json", "loss.png", "predicted_vs_true.png"):
        assert (cwd / "runs" / "diabetes" / name).is_file()
    # "new rows (same feature columns; the target column may be absent)"
    table = pd.read_csv(cwd / "diabetes.csv")
    table.drop(columns="target").iloc[:25].to_csv(cwd / "new_patients.csv", index=False)
    shell(block("diabetes predict"), cwd)
    return cwd, table


def test_readme_error_bars_gradients_deployment(tmp_path, monkeypatch):
    """README's section 5 as a reader runs it: br fitted to values and gradients, error bars
    that cover the truth, an ONNX file written."""
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # br runs its max_iter: a ConvergenceWarning
        value, _ = execute(block("error bars"), ns)
    gamma, log_evidence = value
    assert 0 < gamma <= ns["est"].network_.n_params and np.isfinite(log_evidence)
    truth = ns["y"][:3]
    assert np.all(ns["std"] > 0) and np.all(ns["lower"] < truth) and np.all(truth < ns["upper"])
    assert (tmp_path / "surrogate.onnx").stat().st_size > 0


def test_readme_back_in_python(diabetes):
    cwd, table = diabetes
    X = table.drop(columns="target")  # the columns the command line encoded (all numbers)
    here = os.getcwd()
    os.chdir(cwd)
    try:
        ns: dict[str, Any] = {"X": X}
        execute(block("back in python"), ns)
        est = ns["est"]
        assert type(est).__name__ == "MLPRegressor"
        assert ns["est"].input_jacobian(X).shape == (442, 1, 10)
        copy = ns["jn"].load("copy.safetensors")
        np.testing.assert_array_equal(copy.predict(X), est.predict(X))
        # "it predicts what `jacnet predict` writes"
        value, _ = execute(block("pipeline"), ns)
        written = pd.read_csv("predicted.csv")
        assert len(written) == 25
        np.testing.assert_allclose(value, written.iloc[:, -1].to_numpy(), rtol=1e-12)
        # fit_divided: the rows are the reader's; here a fixed division of the table
        rows = np.random.default_rng(0).permutation(len(table))
        ns.update(y=table["target"].to_numpy(), train_rows=rows[:300],
                  validation_rows=rows[300:370], test_rows=rows[370:])
        best, test_loss, test_rows = execute(
            block("fit_divided"), ns)[0]
        assert 0 <= best <= ns["record"].n_epochs and np.isfinite(test_loss)
        assert sorted(np.asarray(test_rows).tolist()) == sorted(rows[370:].tolist())
    finally:
        os.chdir(here)


def test_cli_md_model_files_from_python(digits_run):
    """docs/cli.md's load/save lines on a run folder of the name it shows; ``net`` is the
    reader's network (here the loaded estimator's)."""
    cwd, _ = digits_run
    code = block("model files")
    run = cwd / "runs" / "20250101-120000"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes((cwd / "runs/digits/model.safetensors").read_bytes())
    here = os.getcwd()
    os.chdir(cwd)
    try:
        import jacnet as jn

        original = jn.load("runs/digits/model.safetensors").network_
        ns: dict[str, Any] = {"net": original}
        execute(code, ns)
        np.testing.assert_array_equal(ns["net"].get_flat(), original.get_flat())
        assert ns["net"] is not original
        assert (cwd / "copy.safetensors").is_file()
    finally:
        os.chdir(here)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_deployment_md_runs_in_onnx_runtime(tmp_path, monkeypatch):
    """docs/deployment.md's example in a fresh folder: the shapes it states, and True."""
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    code = block("onnx runtime")
    ns: dict[str, Any] = {}
    _, printed = execute(code, ns)
    assert comment_shapes(code, ns, 0) == 2 and printed == "True\n"


def test_every_block_is_run_or_excused():
    """Each Python block, and each shell block that runs jacnet or the venv's Python, is one
    that a test above runs (COVERED) or is excused (EXCUSED), and each of those names
    exactly one block: a new example cannot go untested, a changed one cannot go unseen."""
    starts = [v for v in COVERED.values()] + [(f, "python", s) for f, s in EXCUSED]
    for key in COVERED:
        block(key)  # exactly one block each
    missing = []
    for path in DOCS:
        for lang in ("python", ""):
            for code in blocks(path, lang):
                if lang == "" and not re.search(r"\.venv/bin/|^jacnet ", code, re.M):
                    continue  # output transcripts and the `make` lines
                if not any(path.name == f and lang == g and code.startswith(s)
                           for f, g, s in starts):
                    missing.append(f"{path.name}: {code.splitlines()[0]}")
    assert not missing, missing


def _cli_md_tables() -> dict[str, list[list[str]]]:
    """docs/cli.md's option tables by command: the rows under each ``## `jacnet CMD ...` ``."""
    tables: dict[str, list[list[str]]] = {}
    command = None
    for line in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^## `jacnet (\w+)", line)
        if m:
            command = m.group(1)
            tables[command] = []
        elif line.startswith("## "):
            command = None
        elif command and line.startswith("| `"):
            tables[command].append([c.strip() for c in line.strip("|").split(" | ")])
    return tables


def test_cli_md_lists_every_option_of_every_command():
    """"`jacnet --help` and `jacnet COMMAND --help` print the same options as this page":
    the synopsis names every command, each command's table every option (and no other),
    and a default written as one literal is the option's default."""
    import typer

    from jacnet.cli.common import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    synopsis = block("synopsis")
    assert sorted(re.findall(r"^jacnet (\w+)", synopsis, re.M)) == sorted(commands)
    tables = _cli_md_tables()
    assert sorted(tables) == sorted(commands)
    for name, cmd in commands.items():
        documented: dict[str, str] = {}
        for first, default, *_ in tables[name]:
            for flag in re.findall(r"--?[\w-]+", first.split("`")[1]):
                documented[flag] = default
        options = [p for p in cmd.params if p.param_type_name == "option"]
        flags = {f for p in options for f in (*p.opts, *p.secondary_opts)}
        assert set(documented) == flags, (name, set(documented) ^ flags)
        for p in options:
            m = re.fullmatch(r"`([^`]*)`", documented[p.opts[0]])
            if m and p.default is not None and not isinstance(p.default, bool):
                text, value = m.group(1), p.default
                same = float(text) == value if isinstance(value, (int, float)) else (
                    text == str(getattr(value, "value", value)))
                assert same, (name, p.opts, text, value)


@pytest.mark.xdist_group("dask")  # beside the other Dask tests, in file order
# the block's max_iter=100 ends before LM converges, and says so
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_distributed_md_estimator_on_dask_arrays():
    """docs/distributed.md's estimator block with the current client of a LocalCluster (in
    threads, as tests/test_distributed.py runs it); ``X``, ``y`` dask arrays as it says."""
    da = pytest.importorskip("dask.array")
    from test_distributed import _cluster

    import jacnet as jn

    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, (2000, 4))
    yn = np.sin(2 * Xn[:, 0]) + Xn[:, 1] * Xn[:, 2]
    ns: dict[str, Any] = {"jn": jn, "X": da.from_array(Xn, chunks=500),
                          "y": da.from_array(yn, chunks=500), "X_small": Xn[:10]}
    for _ in _cluster(processes=False):
        execute(block("dask estimator"), ns)
        y_hat = ns["y_hat"].compute()
    est = ns["est"]
    assert est.n_iter_ >= 1 and est.n_features_in_ == 4
    # block by block or all at once: the same numbers but for the BLAS kernel's rounding
    np.testing.assert_allclose(y_hat, est.predict(Xn), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ns["est"].predict(ns["X_small"]), y_hat[:10], rtol=1e-12,
                               atol=1e-14)
    assert est.score(Xn, yn) > 0.9


# the block's LocalCluster takes Dask's default dashboard port; another cluster may hold it
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
@pytest.mark.xdist_group("dask")
def test_distributed_md_local_cluster_example():
    """docs/distributed.md's LocalCluster block as written but for its size: 10^5 rows in
    the same 8 partitions instead of 10^7 (the full size is the distributed benchmark's)."""
    pytest.importorskip("dask.array")
    code = block("cluster")
    small = code.replace("(10_000_000, 4)", "(100_000, 4)").replace("(1_250_000, 4)",
                                                                       "(12_500, 4)")
    assert small.count("100_000") == 1 and small.count("12_500") == 1, code
    import dask
    from test_distributed import _SLOW

    ns: dict[str, Any] = {}
    try:
        with dask.config.set(_SLOW):
            _, printed = execute(small, ns)
    finally:
        for name in ("client", "cluster"):
            if name in ns:
                ns[name].close()
    record = ns["record"]
    assert record.stop_reason in ("goal", "max_epochs") and record.n_epochs >= 1
    assert record.epochs[-1]["loss"] < record.epochs[0]["loss"]
    assert printed.split()[-2:] == [str(record.stop_reason), repr(record.epochs[-1]["loss"])]


def test_derivation_md_points_at_code_and_tests_that_exist():
    """docs/derivation.md maps every formula to code and tests: each ``file.py:Name`` names
    a def or class of that file, each test it names exists, and each code quotation in a
    cell that names a file (``np.``, ``checked_``, ``# seed``, ``blas``) is in that file
    (whitespace aside). Formulas written as math (``·``, juxtaposition) are not code."""
    text = (ROOT / "docs" / "derivation.md").read_text(encoding="utf-8")
    files = {p.name: p.read_text(encoding="utf-8") for p in
             [*(ROOT / "src" / "jacnet").rglob("*.py"), *(ROOT / "tests").glob("*.py")]}

    def flat(code: str) -> str:
        return re.sub(r"\s+", " ", code)

    problems, quoted = [], 0
    for f, name in re.findall(r"`(\w+\.py):([\w.]+)`", text):
        if not re.search(rf"^\s*(def|class) {name.split('.')[-1]}\b", files.get(f, ""), re.M):
            problems.append(f"{f}:{name}")
    tests = "\n".join(v for k, v in files.items() if k.startswith("test_"))
    for name in set(re.findall(r"`(?:test_\w+\.py::)?(test_\w+)`", text)):
        if not re.search(rf"^def {name}\b", tests, re.M):
            problems.append(name)
    for line in text.splitlines():
        for cell in line.split(" | ") if line.startswith("|") else []:
            ref = re.search(r"`(\w+\.py):[\w.]+`", cell)
            for code in re.findall(r"`([^`]+)`", cell) if ref else []:
                is_code = re.search(r"np\.|checked_|# seed|blas", code)
                if is_code and not re.match(r"\w+\.py:", code):
                    quoted += 1
                    if flat(code) not in flat(files[ref.group(1)]):
                        problems.append(f"{ref.group(1)}: {code}")
    assert not problems, problems
    assert quoted >= 5  # the check ran on the table's quotations


def test_training_md_defaults_stop_reasons_and_record_keys():
    """docs/training.md's stated defaults are those of LevenbergMarquardt and of the stop
    rules, its stop reasons are ``jacnet.record.STOP_REASONS``, its solvers are
    ``jacnet.SOLVERS``, and its record keys are what a record holds."""
    import inspect

    import jacnet as jn
    from jacnet.record import STOP_REASONS
    from jacnet.stopping import stop_rules

    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    defaults = {name: p.default
                for f in (jn.LevenbergMarquardt.__init__, stop_rules)
                for name, p in inspect.signature(f).parameters.items()}
    stated = re.findall(r"`(\w+)=([^`]+)`", text.split("Defaults:")[1].split("\n\n")[0])
    assert len(stated) == 7
    for name, value in stated:
        assert float(value) == defaults[name], (name, value, defaults[name])
    listed = re.search(r"Stop reasons \(`jacnet.record.STOP_REASONS`\): (.*?)\.\n\n", text,
                       re.S)
    assert listed and re.findall(r"`(\w+)`", listed.group(1)) == list(STOP_REASONS)
    table = text.split("## Solvers")[1].split("\n\n")[1]
    assert sorted(re.findall(r"`(\w+)`", table.split("\n", 2)[2])) == sorted(jn.SOLVERS)
    paragraph = text.split("The record (`TrainingRecord.to_dict()`")[1].split("\n\n")[0]
    _, epoch_part, top_part = re.split(r"\s—\s", paragraph)
    net = jn.Network([jn.Dense(1, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    x = np.linspace(-1, 1, 40)[:, None]
    for solver, rate in (("adam", "lr"), ("lm", "mu")):
        options = {"batch_size": 10} if solver == "adam" else {}
        record = jn.train(net, x, x**2, solver=solver, max_epochs=2, **options).to_dict()
        epoch_keys = set(re.findall(r"`(\w+)`", epoch_part)) - {"lr", "mu"} | {rate}
        assert set(record["epochs"][-1]) == epoch_keys
        assert set(record) == set(re.findall(r"`(\w+)`", top_part)) | {"epochs"}
