"""LM's system in the residual space against the P x P form, per epoch, around n = P.

    python -m benchmarks.lm_forms [--threads 1] [--epochs 15]

With n residuals of positive weight fewer than the P parameters, Levenberg-Marquardt can
solve its system in the residual space (``gauss_newton.DualSystem``; with the L2 penalty
``gauss_newton.PenalizedDualSystem``) instead of as P x P (``PrimalSystem``).
``gauss_newton.dual_pays`` picks between them by n / P. This times LM epochs with each
form forced, on values alone and with derivative data, with and without a penalty, at
several n / P, and prints the primal form's time over the residual space's (> 1: the
residual space is faster) next to the rule's choice, so that its share
(``gauss_newton.PENALIZED_DUAL_SHARE``) can be checked on another machine. The table in
docs/architecture.md ("The residual-space systems") is its output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

import jacnet as jn
import jacnet.gauss_newton as gn
from jacnet.losses import get_loss
from jacnet.objective import Objective
from jacnet.sobolev import SobolevData, SobolevObjective
from jacnet.solvers import LevenbergMarquardt

#: (widths, with derivative data, penalty alpha)
CASES: list[tuple[Sequence[int], bool, float]] = [
    ((2, 16, 16, 1), True, 1e-4), ((6, 24, 24, 1), True, 1e-4), ((10, 16, 16, 1), True, 1e-4),
    ((6, 24, 24, 1), False, 1e-4), ((2, 30, 30, 1), False, 1e-4),
    ((10, 40, 40, 1), False, 1e-4), ((6, 24, 24, 1), False, 0.0),
    ((2, 30, 30, 1), False, 0.0), ((10, 40, 40, 1), False, 0.0),
]
SHARES = (0.1, 0.4, 0.6, 0.75, 0.9, 0.98)


def objective(widths: Sequence[int], share: float, derivatives: bool, alpha: float,
              form: str | None = None) -> Objective:
    """tanh hidden layers, a linear output; about ``share * P`` residuals of
    sin(sum x) (and its gradient) on uniform inputs; ``form`` "primal" or "dual" forces
    that form of LM's system (None: the rule's)."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    layers = [jn.Dense(a, b, "tanh") for a, b in pairs[:-1]] + [jn.Dense(*pairs[-1])]
    net = jn.Network(layers, seed=0)
    d = widths[0]
    per_sample = 1 + d if derivatives else 1
    n = max(2, int(share * net.n_params / per_sample))
    X = np.random.default_rng(0).uniform(-1, 1, (n, d))
    T = np.sin(X.sum(axis=1, keepdims=True))
    if derivatives:
        G = np.repeat(np.cos(X.sum(axis=1))[:, None, None], d, axis=2)
        obj: Objective = SobolevObjective(net, X, T, get_loss("mse"), None, alpha,
                                          data=SobolevData(G, 1.0))
        if form is not None:  # the count the form is chosen by
            obj.n_values = 10**9 if form == "primal" else 0
        return obj
    obj = Objective(net, X, T, get_loss("mse"), None, alpha=alpha)
    if form is not None:
        build = gn.primal_system if form == "primal" else gn.gauss_newton_system

        def data_system(state, chunk):  # type: ignore[no-untyped-def]
            Y, cache = state  # every n here is below P: gauss_newton_system's dual form
            return build(net.layers, X, T, obj.loss, None, Y, chunk=chunk, cache=cache)

        obj.data_system = data_system  # type: ignore[method-assign]
    return obj


def epoch_seconds(obj: Objective, epochs: int) -> float:
    """Mean seconds per LM epoch after one untimed epoch."""
    lm = LevenbergMarquardt().bind(obj)
    lm.step()
    t0 = time.perf_counter()
    for _ in range(epochs):
        lm.step()
    return (time.perf_counter() - t0) / epochs


def compare(widths: Sequence[int], derivatives: bool, alpha: float, share: float,
            epochs: int) -> tuple[float, bool]:
    """(primal seconds / residual-space seconds, whether ``dual_pays`` picks the
    residual space) at about ``share * P`` residuals."""
    plain = objective(widths, share, derivatives, alpha)
    n = plain.n_values if isinstance(plain, SobolevObjective) else plain.X.shape[0]
    primal, dual = (epoch_seconds(objective(widths, share, derivatives, alpha, form), epochs)
                    for form in ("primal", "dual"))
    return primal / dual, gn.dual_pays(n, plain.net.n_params, alpha > 0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    print("| network (P) | data | " + " | ".join(f"n/P ≈ {s:g}" for s in SHARES) + " |")
    print("|---|---|" + "---|" * len(SHARES))
    with threadpool_limits(args.threads):
        for widths, derivatives, alpha in CASES:
            P = objective(widths, 1.0, False, 0.0).net.n_params
            cells = []
            for share in SHARES:
                ratio, dual = compare(widths, derivatives, alpha, share, args.epochs)
                wrong = (ratio > 1) != dual  # the rule picks the slower form here
                cells.append(f"{ratio:.2f}" + (f" (rule: {'dual' if dual else 'primal'})"
                                               if wrong else ""))
            data = ("∂" if derivatives else "values") + (", penalty" if alpha else ", no penalty")
            print(f"| {'-'.join(map(str, widths))} ({P}) | {data} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
