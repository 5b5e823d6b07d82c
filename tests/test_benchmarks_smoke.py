"""The benchmark runner's smoke mode: every case runs and agrees with its peer.

Correctness only (tiny sizes, no timing asserted). It must pass without torch, so most runs
force the torch peers off; the others use torch when it is installed.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks package lives beside src/, not in it
    sys.path.insert(0, str(ROOT))


class Smoke:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


def _run_smoke(out: Path, *extra: str) -> Smoke:
    """``python -m benchmarks.run --smoke ...``, its ``main`` in this process (a new
    interpreter per suite would cost more than the smoke run itself)."""
    from benchmarks.run import main

    log = io.StringIO()
    with redirect_stderr(log), redirect_stdout(log):
        code = main(["--smoke", "--threads", "1", "--out", str(out), *extra])
    return Smoke(code, log.getvalue())


def _section(text: str, suite: str) -> str:
    start, end = f"<!-- suite:{suite}:start -->", f"<!-- suite:{suite}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    return text[text.index(start) : text.index(end)]


def test_benchmarks_smoke_runs_without_torch(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    out.write_text(
        "# mine\n\n<!-- suite:core:start -->\nstale-row-42\n<!-- suite:core:end -->\n\n"
        "<!-- suite:other:start -->\nkeep me\n<!-- suite:other:end -->\n"
    )
    proc = _run_smoke(out, "--suite", "core", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    # its own section is replaced; the rest of the file is left as it was
    assert text.startswith("# mine\n")
    assert "keep me" in _section(text, "other")
    core = _section(text, "core")
    assert "stale-row-42" not in core
    assert "core.softmax_vjp" in core and "core.jacobian" in core and "core.gauss_newton" in core
    assert "| skip |" in core  # torch rows are skipped with a note, not failed
    assert "FAIL" not in core
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.run" in core


def test_benchmarks_smoke_estimators_section(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "estimators", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    est = _section(out.read_text(), "estimators")  # the drop-in's scores, no torch needed
    assert "estimators.iris" in est and "estimators.diabetes" in est
    assert "accuracy" in est and "R²" in est and "scikit-learn lbfgs" in est
    assert "FAIL" not in est and "| skip |" not in est


def test_benchmarks_smoke_agrees_with_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "core")
    assert proc.returncode == 0, proc.stderr
    core = _section(out.read_text(), "core")
    assert "torch.func vmap(jacrev)" in core
    assert "| skip |" not in core and "FAIL" not in core
    # the fresh-J floor and torch's own per-parameter output, each a row with its target
    assert "floor: a fresh array of J's size written once" in core
    assert "≥ 0.8x (within 1.25x of the floor)" in core
    assert "per-parameter tuple (no concatenation) | " in core


def test_benchmarks_smoke_perf_suite_runs_and_agrees(tmp_path: Path) -> None:
    # Training speed (issue 6): every case agrees with its peers on the first batch.
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "perf")
    assert proc.returncode == 0, proc.stderr
    perf = _section(out.read_text(), "perf")
    assert "perf.mlp.b128.f32" in perf and "perf.small.b32.f32" in perf
    assert "roofline: the epoch's GEMMs alone" in perf
    assert "FAIL" not in perf
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    assert "PyTorch eager" in perf and "first-batch loss and gradient agree" in perf


def test_benchmarks_smoke_training_section(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "training", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    training = _section(out.read_text(), "training")
    for case in ("training.study.sin", "training.study.sinc", "training.study.surface",
                 "training.torch_lm.sinc", "training.memory.lm", "training.br_lm.sinc",
                 "training.br_lm.sines10", "training.cli.csv"):
        assert case in training
    # the study tables: one line per solver, success counted over the seeds
    assert "### sinc: 1-20-1 tanh (P = 61)" in training
    assert "| LM | " in training and "| L-BFGS | " in training and "| Adam | " in training
    assert "LM peak memory" in training and "FAIL" not in training
    # without torch, LM through the estimator still runs and meets its floor row
    assert '| jacnet `MLPRegressor(solver="lm")` | ' in training
    assert "the epoch's floor: one forward pass, J fill, syrk, Cholesky solves" in training
    assert "`lm` time per epoch, same network" in training
    assert "the whole run (its record's total)" in training and "data_s" not in training


def test_benchmarks_smoke_export_section(tmp_path: Path, monkeypatch) -> None:
    """The ONNX export suite: jacnet's graphs reproduce scikit-learn's predict (a mismatch
    fails the run); skl2onnx's rows are compared when it is installed, skipped without."""
    pytest.importorskip("onnxruntime")
    import benchmarks.export as suite

    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "export", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "export")
    for case in ("export.regressor", "export.multioutput", "export.classifier"):
        assert case in section
    assert "jacnet export_onnx, float64" in section and "FAIL" not in section
    if suite.convert_sklearn is not None:
        assert "skl2onnx DoubleTensorType, float64" in section and "| skip |" not in section
    monkeypatch.setattr(suite, "convert_sklearn", None)  # as if skl2onnx were missing
    proc = _run_smoke(out, "--suite", "export", "--no-torch", "--only", "export.classifier")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "export")
    assert "| skip |" in section and "skl2onnx not installed" in section
    assert "FAIL" not in section


def test_benchmarks_smoke_sobolev_section(tmp_path: Path, monkeypatch) -> None:
    """The derivative-fitting study: exact gradients checked, every method fits, the tables
    land in the section; jenn's rows are compared when it is installed, skipped without."""
    import benchmarks.sobolev as suite

    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "sobolev", "--no-torch", "--only", "sobolev.branin")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "sobolev")
    assert "samples to reach test RMSE" in section and "LM + ∂ against jenn" in section
    assert "--only sobolev.branin " in section  # the rows' commands rerun their case
    assert "### Branin: 2-16-16-1 tanh (P = 337)" in section
    assert "| N | LM: RMSE | LM: time | LM + ∂: RMSE |" in section and "FAIL" not in section
    if suite.jenn is not None:
        assert "| skip |" not in section
    monkeypatch.setattr(suite, "jenn", None)  # as if jenn were missing
    proc = _run_smoke(out, "--suite", "sobolev", "--no-torch", "--only", "sobolev.branin")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "sobolev")
    assert "| skip |" in section and "jenn not installed" in section
    assert "FAIL" not in section


def test_sobolev_test_functions_have_exact_gradients():
    """Branin, Hartmann-6 and the wing weight: gradients against central differences, and
    the samples-to-reach reading of a median curve (interpolated, bounded, or unknown)."""
    from benchmarks.sobolev import PROBLEMS, Reach, check_gradient, reach_ratio, samples_to_reach

    assert all(check_gradient(p) < 1e-6 for p in PROBLEMS)
    curve = [(10, 1.0), (20, 0.1), (40, 0.01)]
    hit = samples_to_reach(curve, 0.1)
    assert hit.kind == "=" and abs(hit.n - 20) < 1e-9
    assert abs(samples_to_reach(curve, 0.1**1.5).n - 20 * 2**0.5) < 1e-9
    assert samples_to_reach(curve, 2.0) == Reach(10, "≤")
    assert samples_to_reach(curve, 1e-3) == Reach(40, ">")
    assert reach_ratio(Reach(40, ">"), Reach(10, "=")) == (4.0, "≥")
    assert reach_ratio(Reach(40, "="), Reach(10, "=")) == (4.0, "=")
    assert reach_ratio(Reach(40, "="), Reach(40, ">"))[1] == "?"


def test_benchmarks_smoke_uncertainty_section(tmp_path: Path) -> None:
    """The uncertainty study without torch: jacnet's three methods, scikit-learn's MLP and
    the GP fit every split (one output and several), the tables land in the section, and
    the torch peers' rows are skipped with a note."""
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "uncertainty", "--no-torch",
                      "--only", "uncertainty.linnerud", "--only", "uncertainty.friedman3")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "uncertainty")
    assert "### linnerud: 20 rows, 3 inputs, 3 outputs; 1 splits 90/10; 3-10-3 tanh" in section
    assert "### Friedman 3: 60 rows, 4 inputs, 1 output" in section
    assert "| method | RMSE | NLL | coverage of 95% | mean width | fit time (median) |" in section
    for label in ("jacnet br", "jacnet br x5", "jacnet lm + early stop",
                  "sklearn MLP (CV alpha)", "GP (ARD RBF + white)"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        assert "—" not in row, row  # every cell measured
    assert "| deep ensemble x5 (torch) | — |" in section
    assert "| laplace-torch (full) | — |" in section
    assert "### Summary: mean rank over the datasets (1 = best)" in section
    assert "Datasets: linnerud, friedman3." in section
    assert "--only uncertainty.linnerud " in section  # the rows' commands rerun their case
    assert "| skip |" in section and "torch disabled (--no-torch)" in section
    assert "FAIL" not in section


def test_benchmarks_smoke_uncertainty_with_the_torch_peers(tmp_path: Path) -> None:
    """The deep ensemble and laplace-torch run beside jacnet (several outputs: linnerud),
    and the deep ensemble's settings grid gives its table."""
    pytest.importorskip("torch")
    pytest.importorskip("laplace")
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "uncertainty", "--only", "uncertainty.linnerud",
                      "--only", "uncertainty.deep_ensemble_settings")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "uncertainty")
    assert "### Deep-ensemble settings (mean NLL over 3 tuning splits, linnerud 10)" in section
    assert "| rate | epochs | diabetes: NLL | linnerud: NLL | friedman1: NLL | mean rank |" \
        in section
    for label in ("deep ensemble x5 (torch)", "laplace-torch (full)"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        assert "—" not in row, row
    assert "linnerud: jacnet br x5 against a deep ensemble x5" in section
    assert "| skip |" not in section and "FAIL" not in section


def test_uncertainty_study_uses_every_bundled_regression_set():
    """The study's bundled sets are the regression sets among jacnet's built-in datasets."""
    from benchmarks.uncertainty import BUNDLED, DATASETS
    from jacnet.data import BUILTIN, builtin, infer_task

    assert set(BUNDLED) == {n for n in BUILTIN if infer_task(*builtin(n)) == "regression"}
    assert set(BUNDLED) <= {d.key for d in DATASETS}


@pytest.mark.slow  # a Dask cluster: test_distributed.py covers the solvers; make test-all
def test_benchmarks_smoke_distributed_section(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    proc = _run_smoke(out, "--suite", "distributed", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    section = _section(out.read_text(), "distributed")
    assert "distributed.lm." in section and "theta agrees" in section
    assert "FAIL" not in section


@pytest.mark.parametrize("n", range(1, 8))
def test_call_orders_let_each_function_follow_each_other_equally_often(n):
    """The timing harness's orders: every row a permutation, every function first equally
    often, every ordered pair adjacent equally often (what a rotation does not give)."""
    from collections import Counter

    from benchmarks._harness import call_orders

    rows = call_orders(n)
    assert all(sorted(row) == list(range(n)) for row in rows)
    firsts = Counter(row[0] for row in rows)
    assert set(firsts) == set(range(n)) and len(set(firsts.values())) == 1
    pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) <= 1


def test_gn_forms_times_both_forms_and_restores_the_model():
    """benchmarks.gn_forms forces each form in turn; the model is the same after."""
    import jacnet.gauss_newton as gn
    from benchmarks.gn_forms import compare

    model = gn._kronecker_pays
    syrk, kron, picks = compare((4, 10, 3), 50, 1)
    assert syrk > 0 and kron > 0 and picks is False
    assert gn._kronecker_pays is model


@pytest.mark.parametrize(("derivatives", "alpha"), [(True, 1e-4), (False, 1e-4), (False, 0.0)])
def test_lm_forms_forces_each_form_and_reports_the_rule(derivatives, alpha):
    """benchmarks.lm_forms builds each form it claims to time, on the rows it asks for,
    and reports gauss_newton.dual_pays's choice."""
    import jacnet.gauss_newton as gn
    from benchmarks.lm_forms import compare, objective

    widths = (2, 6, 6, 1)  # P = 67
    for form, kind in (("primal", gn.PrimalSystem), ("dual", gn.DualSystem)):
        obj = objective(widths, 0.85, derivatives, alpha, form)
        system = obj.system(obj.value()[1])
        assert isinstance(system, gn.PenalizedDualSystem if alpha and form == "dual" else kind)
    plain = objective(widths, 0.85, derivatives, alpha)
    n = plain.n_values if derivatives else plain.X.shape[0]
    assert 0.8 * 67 <= n <= 0.85 * 67  # between the two shares: the penalty decides
    ratio, dual = compare(widths, derivatives, alpha, 0.85, 1)
    assert ratio > 0 and dual == (not alpha)


def test_kernel_fault_counters_and_the_jacobian_note_built_on_them():
    """The core suite's fresh-J note reports the kernel's compaction stalls as counted, and
    says the spread is not compaction only when the count is zero."""
    from benchmarks._harness import THP_COUNTERS, vmstat, vmstat_change
    from benchmarks.core import _fault_note

    assert vmstat_change(None) is None and _fault_note(None) == ""
    now = vmstat()
    if now is None:
        pytest.skip("no /proc/vmstat here")
    assert set(now) <= set(THP_COUNTERS) and all(isinstance(v, int) for v in now.values())
    earlier = {name: value - 3 for name, value in now.items()}
    grown = vmstat_change(earlier)
    assert grown is not None and all(v >= 3 for v in grown.values())
    quiet = _fault_note({"compact_stall": 0, "thp_fault_alloc": 12, "thp_fault_fallback": 1})
    assert "0 compaction stall(s) and 12 huge-page faults (1 fell back" in quiet
    assert "not the kernel compacting memory" in quiet
    busy = _fault_note({"compact_stall": 4, "thp_fault_alloc": 12, "thp_fault_fallback": 0})
    assert "4 compaction stall(s)" in busy and "not the kernel" not in busy


def test_each_suite_header_states_how_that_suite_times():
    """The "mode" line of a section describes the suite's own protocol: the shared
    measure() at the run's repeats, measure() at the distributed suite's cap, and the
    studies of the training and estimators suites (which time one run per seed)."""
    import importlib

    from benchmarks._harness import Context, format_header, machine_info, measure_mode

    info = machine_info(None, probe=False)
    info["load_start"] = "0"
    ctx = Context(suite="x", repeats=5, threads=1, smoke=False, torch=None, torch_note="",
                  warmup=1)

    def mode(suite: str) -> str:
        module = importlib.import_module(f"benchmarks.{suite}")
        header = format_header(info, ctx, getattr(module, "MODE", None))
        return next(line for line in header.splitlines() if line.startswith("- mode: "))

    assert mode("core") == mode("perf") == f"- mode: {measure_mode(5, 1)}"
    assert mode("distributed") == f"- mode: {measure_mode(3, 1)}"
    assert "one timed run per seed" in mode("training") and "Latin" not in mode("training")
    assert "untimed warm-up fit" in mode("estimators") and "Latin" not in mode("estimators")
    smoke = Context(suite="x", repeats=1, threads=1, smoke=True, torch=None, torch_note="",
                    warmup=0)
    assert "- mode: smoke" in format_header(info, smoke, "ignored in smoke mode")


def test_compare_times_two_trees_and_checks_their_weights(tmp_path):
    """benchmarks.compare on HEAD against the working tree: the workload runs in both, the
    weights agree (same code), and the table lands between its markers in the output file,
    replacing an earlier one and keeping what surrounds it."""
    import subprocess

    from benchmarks import compare

    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode:
        pytest.skip("not a git checkout")
    out = tmp_path / "bench.md"
    out.write_text(f"# Head\n\n{compare.START}\nstale\n{compare.END}\n\n## After\n")
    assert compare.main(["--old", "HEAD", "--smoke", "--rounds", "1", "--repeats", "1",
                         "--only", "training.lm.sinc", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Head\n") and text.rstrip().endswith("## After")
    assert "stale" not in text and text.count(compare.START) == 1
    row = next(line for line in text.splitlines() if line.startswith("| training.lm.sinc"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[4] == "yes"


def test_sobolev_ladder_reads_the_ratio_off_the_ladders_given(capsys):
    """benchmarks.sobolev_ladder fits as the suite does on the sizes it is given and
    prints each median and the ratio at both levels."""
    from benchmarks.sobolev_ladder import main

    main(["--with", "5,10", "--without", "5,10", "--seeds", "1", "--epochs", "2"])
    out = capsys.readouterr().out
    assert out.count("median RMSE") == 4
    assert out.count("ratio") == 2 and "(10% of the test std)" in out
