"""scikit-learn's own MLP tests, run on jacnet's estimators (issue 21).

The test file ``sklearn/neural_network/tests/test_mlp.py`` of the installed scikit-learn
is copied at test time into a temporary folder (its text is scikit-learn's, never part of
this repository), with one change: the line that imports ``MLPClassifier`` and
``MLPRegressor`` from ``sklearn.neural_network`` imports jacnet's instead. It then runs in
its own pytest process, with scikit-learn's ``conftest`` as a plugin (for its fixtures,
such as ``global_random_seed``), and every test must pass except those that read
scikit-learn's private internals (:data:`PRIVATE`), which are deselected by name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import sklearn

import jacnet

#: The tests of scikit-learn's file that read its MLP's private internals, and what they
#: read. jacnet's estimators keep their state elsewhere (``network_``, the solver
#: objects), so these cannot pass on any other implementation. scikit-learn's
#: ``test_n_iter_no_change`` reads ``_no_improvement_count`` too, which jacnet answers:
#: it runs with the rest.
PRIVATE = {
    "test_fit": "sets _coef_grads, _intercept_velocity and other private buffers by hand "
                "before a partial_fit",
    "test_gradient": "calls the private _loss_grad_lbfgs",
    "test_adaptive_learning_rate": "reads the private _optimizer.learning_rate",
    "test_learning_rate_warmstart": "reads the private _optimizer.learning_rate",
}
#: The public estimators the copy imports instead of scikit-learn's.
IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"


def _copy_of_sklearn_suite(folder: Path) -> Path:
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    text = source.read_text()
    assert text.count(IMPORT) == 1, "scikit-learn's test file imports its MLP differently"
    names = set(re.findall(r"^def (test_\w+)\(", text, flags=re.M))
    assert set(PRIVATE) <= names, f"not in scikit-learn's file: {set(PRIVATE) - names}"
    target = folder / "test_mlp.py"
    target.write_text(text.replace(IMPORT, "from jacnet import MLPClassifier, MLPRegressor"))
    (folder / "pytest.ini").write_text("[pytest]\n")  # not this repository's settings
    return target


def test_sklearn_own_mlp_tests_pass_on_jacnet(tmp_path):
    test_file = _copy_of_sklearn_suite(tmp_path)
    src = str(Path(jacnet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    deselect = [arg for name in PRIVATE for arg in ("--deselect", f"{test_file.name}::{name}")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "sklearn.conftest", "--rootdir", str(tmp_path), "--durations=5",
         test_file.name, *deselect],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-8000:]
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and not re.search(r"failed|error", summary), summary
    deselected = re.search(r"(\d+) deselected", summary)
    assert deselected and int(deselected.group(1)) == len(PRIVATE), summary
