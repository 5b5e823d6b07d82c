"""jacnet.record: the training record, its strict-JSON form, and the table of stop reasons."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

import jacnet
from jacnet.record import STOP_REASONS, TrainingRecord, strict_json

SRC = Path(jacnet.__file__).parent


def _record() -> TrainingRecord:
    epochs = [
        {"epoch": 1, "loss": 2.0, "val_loss": 2.5, "test_loss": None, "grad_norm": 1.0,
         "mu": 0.001, "seconds": 0.1},
        {"epoch": 2, "loss": np.float64(1.0), "val_loss": 1.5, "test_loss": None,
         "grad_norm": np.float32(0.5), "mu": 0.0001, "seconds": 0.2},
        {"epoch": np.int64(3), "loss": 0.5, "val_loss": 1.75, "test_loss": None,
         "grad_norm": 0.25, "mu": 1e-5, "seconds": 0.3},
    ]
    division = {"train": np.array([0, 2, 3, 5, 7]), "validation": np.array([1, 6]),
                "test": np.array([4], dtype=np.int32)}
    return TrainingRecord(solver="lm", epochs=epochs, stop_reason="validation", best_epoch=2,
                          best_loss=1.0, best_val_loss=1.5, division=division, seconds=0.3)


# ------------------------------------------------------------------ the record itself
def test_record_columns_and_epoch_count():
    rec = _record()
    assert rec.n_epochs == 3
    np.testing.assert_array_equal(rec.column("loss"), [2.0, 1.0, 0.5])
    assert rec.column("loss").dtype == np.float64
    assert np.isnan(rec.column("test_loss")).all()  # None becomes NaN
    assert np.isnan(rec.column("lr")).all()  # a key no epoch has
    assert TrainingRecord().column("loss").shape == (0,)


def test_record_defaults_mean_nothing_happened_yet():
    rec = TrainingRecord()
    assert (rec.n_epochs, rec.stop_reason, rec.best_epoch, rec.solver) == (0, "", 0, "")
    assert rec.best_loss == math.inf and rec.best_val_loss is None and rec.division == {}
    assert TrainingRecord().epochs is not rec.epochs  # no shared mutable default


def test_record_repr_names_solver_epochs_and_stop():
    text = repr(_record())
    assert text == "TrainingRecord(solver='lm', epochs=3, stop_reason='validation', best_epoch=2)"


# ---------------------------------------------------------------- dict and JSON forms
def test_record_to_dict_from_dict_round_trip_with_the_division():
    rec = _record()
    d = rec.to_dict()
    assert d["stop_message"] == STOP_REASONS["validation"]
    assert d["division"] == {"train": [0, 2, 3, 5, 7], "validation": [1, 6], "test": [4]}
    back = TrainingRecord.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d
    assert (back.solver, back.stop_reason, back.best_epoch, back.seconds) == (
        "lm", "validation", 2, 0.3)
    assert back.best_loss == 1.0 and back.best_val_loss == 1.5
    assert back.epochs == json.loads(json.dumps(d["epochs"]))
    assert set(back.division) == {"train", "validation", "test"}
    for key, idx in rec.division.items():
        assert back.division[key].dtype == np.int64
        np.testing.assert_array_equal(back.division[key], idx)


def test_record_to_dict_makes_numpy_scalars_python_numbers():
    d = _record().to_dict()
    second, third = d["epochs"][1], d["epochs"][2]
    assert type(second["loss"]) is float and type(second["grad_norm"]) is float
    assert type(third["epoch"]) is int
    assert all(type(i) is int for i in d["division"]["test"])


def test_record_from_dict_of_an_empty_dict_is_the_empty_record():
    back = TrainingRecord.from_dict({})
    assert back.to_dict() == TrainingRecord().to_dict()
    assert back.best_loss == math.inf
    empty = TrainingRecord.from_dict(json.loads(TrainingRecord().to_json()))
    assert empty.best_loss == math.inf and empty.n_epochs == 0


def test_record_to_json_is_strict_json():
    rec = _record()
    rec.epochs[0]["loss"] = math.nan
    rec.epochs[1]["val_loss"] = math.inf
    rec.epochs[2]["grad_norm"] = np.float32(-np.inf)
    rec.best_loss = math.inf
    rec.best_val_loss = math.nan
    text = rec.to_json()
    for word in ("NaN", "Infinity"):
        assert word not in text
    d = json.loads(text)  # and Python's own strict parser accepts it
    json.dumps(d, allow_nan=False)
    assert d["epochs"][0]["loss"] is None and d["epochs"][1]["val_loss"] is None
    assert d["epochs"][2]["grad_norm"] is None
    assert d["best_loss"] is None and d["best_val_loss"] is None
    assert d["epochs"][1]["loss"] == 1.0  # finite values untouched
    assert TrainingRecord.from_dict(d).best_loss == math.inf  # null reads back as "none yet"


def test_record_unknown_stop_reason_has_an_empty_message():
    assert TrainingRecord(stop_reason="").to_dict()["stop_message"] == ""


def test_strict_json_cleans_nested_containers():
    value = {"a": [1.0, math.nan, (np.float32(2.5), np.inf)], "b": {"c": np.int64(7),
             "d": -math.inf, "e": "text", "f": None, "g": True}}
    out = strict_json(value)
    assert out == {"a": [1.0, None, [2.5, None]],
                   "b": {"c": 7, "d": None, "e": "text", "f": None, "g": True}}
    assert type(out["b"]["c"]) is int and type(out["a"][2][0]) is float
    json.dumps(out, allow_nan=False)
    assert strict_json(math.nan) is None and strict_json(3) == 3


# ----------------------------------------------------------------------- stop reasons
def _literals(node: ast.AST | None) -> set[str]:
    """The string constants an expression can evaluate to (through and/or, if-else and
    tuples, whose first item is the reason: ``return "non_finite", state``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.BoolOp):
        return set().union(*(_literals(v) for v in node.values))
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    if isinstance(node, ast.Tuple) and node.elts:
        return _literals(node.elts[0])
    return set()


def _names_reason(target: ast.AST) -> bool:
    name = target.id if isinstance(target, ast.Name) else (
        target.attr if isinstance(target, ast.Attribute) else "")
    return "reason" in name.lower() or name == "stalled"


def _returns(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The literals ``fn`` itself returns (not those of functions nested in it)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return):
            found |= _literals(node.value)
        stack.extend(ast.iter_child_nodes(node))
    return found


def stop_reasons_in_the_code() -> dict[str, str]:
    """Every string the package's code gives as a stop reason -> where.

    Found in the AST of ``src/jacnet``: values assigned to or compared with a name
    holding "reason" (``record.stop_reason = reason or "max_epochs"``), and the literals
    returned by a function that returns a stop reason: one whose docstring says "stop
    reason", or one that returns some key of STOP_REASONS (then every literal it returns
    must be one, as the solvers' epoch loops do).
    """
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(SRC))
        for node in ast.walk(tree):
            values: set[str] = set()
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(_names_reason(t) for t in targets):
                    values = _literals(node.value)
            elif isinstance(node, ast.Compare) and _names_reason(node.left):
                values = set().union(*(_literals(c) for c in node.comparators))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                returned = _returns(node)
                doc = (ast.get_docstring(node) or "").lower()
                if "stop reason" in " ".join(doc.split()) or returned & set(STOP_REASONS):
                    values = returned
            for v in values - {""}:  # "" is a record's "not stopped yet"
                found.setdefault(v, f"{where}:{node.lineno}")
    return found


def test_every_stop_reason_in_the_code_has_a_text():
    found = stop_reasons_in_the_code()
    # the scan must see the loop's reasons at all, or it proves nothing
    assert len(set(found) & set(STOP_REASONS)) >= 4, sorted(found)
    missing = {v: at for v, at in found.items() if v not in STOP_REASONS}
    assert not missing, f"stop reasons without a text in STOP_REASONS: {missing}"


def test_stop_reason_scan_sees_a_new_reason(tmp_path, monkeypatch):
    """The scan above can fail: a reason returned by a solver loop, set on a record or
    documented as a stop reason is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "loop.py").write_text(
        'def epochs(run):\n'
        '    if run:\n        return "goal"\n'
        '    return "ran_out_of_patience"\n\n'
        'def rule(x):\n    """The stop reason of x."""\n    return "wobbly" if x else None\n\n'
        'def finish(record, reason):\n    record.stop_reason = reason or "exhausted"\n'
        '    if record.stop_reason == "sleepy":\n        pass\n\n'
        'def unrelated():\n    return "train"\n')
    monkeypatch.setattr(f"{__name__}.SRC", pkg)
    found = stop_reasons_in_the_code()
    assert set(found) == {"goal", "ran_out_of_patience", "wobbly", "exhausted", "sleepy"}


@pytest.mark.parametrize("reason", sorted(STOP_REASONS))
def test_stop_reasons_have_a_one_line_text(reason):
    text = STOP_REASONS[reason]
    assert text and "\n" not in text and text == text.strip()
