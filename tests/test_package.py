"""The package namespace: the public API only, loaded lazily where it costs.

``dir(jacnet)`` once showed ``Any``, ``TYPE_CHECKING`` and ``import_module``, helpers of the
package's own ``__init__``. These tests pin that it lists ``__all__`` (and the dunders) and
nothing else, that every public name resolves, and that ``import jacnet`` leaves
scikit-learn unloaded (the estimators and model files load on first use).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jacnet


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def test_package_dir_is_the_public_api():
    assert [n for n in dir(jacnet) if not _is_dunder(n)] == sorted(jacnet.__all__)
    assert len(set(jacnet.__all__)) == len(jacnet.__all__)
    assert "__version__" in dir(jacnet)


def test_package_every_public_name_resolves():
    for name in jacnet.__all__:
        assert getattr(jacnet, name) is not None, name


def test_package_unknown_name_is_an_attribute_error():
    try:
        jacnet.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("jacnet.no_such_name resolved")


def test_package_import_does_not_load_scikit_learn():
    code = (
        "import sys, jacnet\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sklearn', 'safetensors', 'pandas'))\n"
        "print(heavy)\n"
        "jacnet.MLPRegressor\n"
        "print('sklearn' in sys.modules)\n"
    )
    src = str(Path(jacnet.__file__).resolve().parents[1])  # this jacnet, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.splitlines()
    assert out == ["[]", "True"], out


def test_makefile_parses_and_names_the_readme_commands():
    """The Makefile the README's two commands run parses (a merge left a conflict marker in
    it once, which only a fresh `make` showed); `make -n` prints the targets' recipes
    without running them."""
    root = Path(__file__).resolve().parents[1]
    for target in ("run", "test", "bench"):
        done = subprocess.run(["make", "-n", "-B", target], cwd=root, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, f"make -n {target}: {done.stderr}"
    text = (root / "Makefile").read_text()
    assert not any(line.startswith(("<<<<<<<", ">>>>>>>")) for line in text.splitlines())
