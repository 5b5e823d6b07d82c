"""``jacnet gradcheck``: the engine against central finite differences on random networks."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from .common import CliError, Debug, app, out


@app.command()
def gradcheck(
    seed: Annotated[int, typer.Option(help="Seed of the random networks and data.")] = 0,
    tol: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    debug: Debug = False,
) -> None:
    """Check backpropagation against finite differences on random networks (exit 1 on failure)."""
    from ..activations import ACTIVATIONS
    from ..gradcheck import gradcheck as check
    from ..layers import Dense
    from ..network import Network

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
