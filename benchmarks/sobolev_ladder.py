"""The sobolev study's samples-to-reach ratio read off another ladder of training sizes.

    python -m benchmarks.sobolev_ladder [--problem branin] [--with 5,7,10,...]
                                        [--without 10,14,20,...] [--seeds 5] [--epochs 1000]

The suite (``--suite sobolev``) reads "samples to reach test RMSE r" off median curves
on ladders of sizes doubling, linear in log N against log RMSE between ladder points.
This runs LM without and with derivatives exactly as the suite does (``sobolev.fit_lm``:
the same samples per (seed, N), the same epochs and penalty, one thread) on the ladders
given, prints each median and the ratio at the suite's levels, so that how much the
reading depends on the ladder can be seen. The default ladders are the suite's Branin
sizes refined to steps of about sqrt(2).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from . import sobolev as s

DEFAULT_WITH = (5, 7, 10, 14, 20, 28, 40, 57, 80)
DEFAULT_WITHOUT = (10, 14, 20, 28, 40, 57, 80, 113, 160)


def medians(problem: s.Problem, sizes: Sequence[int], derivatives: bool, seeds: int,
            epochs: int) -> list[tuple[int, float]]:
    """(N, median test RMSE over the seeds) for each size, as the suite fits them."""
    test = s.test_set(problem)
    curve = []
    for n in sizes:
        rmses = []
        for seed in range(seeds):
            X = problem.sample(n, np.random.default_rng((seed, n)))
            y, G = problem.fn(X)
            fit = s.fit_lm(problem, X, y, G if derivatives else None, seed, test, epochs)
            rmses.append(fit.rmse)
        curve.append((n, statistics.median(rmses)))
        print(f"  {'LM + ∂' if derivatives else 'LM'} N = {n}: median RMSE "
              f"{curve[-1][1]:.4g}", flush=True)
    return curve


def sizes_arg(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="branin", choices=[p.key for p in s.PROBLEMS])
    parser.add_argument("--with", dest="with_", type=sizes_arg, default=DEFAULT_WITH)
    parser.add_argument("--without", type=sizes_arg, default=DEFAULT_WITHOUT)
    parser.add_argument("--seeds", type=int, default=len(s.SEEDS[0]))
    parser.add_argument("--epochs", type=int, default=s.MAX_EPOCHS[0])
    args = parser.parse_args(argv)
    problem = next(p for p in s.PROBLEMS if p.key == args.problem)
    sd = float(s.test_set(problem).y.std())
    with threadpool_limits(1):
        with_ = medians(problem, args.with_, True, args.seeds, args.epochs)
        without = medians(problem, args.without, False, args.seeds, args.epochs)
    for level in s.TARGET_LEVELS:
        r = level * sd
        a, b = s.samples_to_reach(without, r), s.samples_to_reach(with_, r)
        ratio, kind = s.reach_ratio(a, b)
        print(f"r = {r:.3g} ({100 * level:g}% of the test std): N without ∂ {a.text()}, "
              f"with ∂ {b.text()}: ratio {'' if kind == '=' else kind + ' '}{ratio:.3g}")


if __name__ == "__main__":
    main()
