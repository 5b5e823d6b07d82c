"""Both forms of the Gauss-Newton system on the networks the cost model was fitted on.

    python -m benchmarks.gn_forms [--threads 2] [--repeats 5]

``jacnet.gauss_newton`` builds ``J^T J, J^T r`` either by syrk on chunks of J or from
the Kronecker structure of J (``gauss_newton._kronecker_sums``), and lets a cost model
(``gauss_newton._kronecker_pays``) choose. This times both forms, forced, on each network
(float64, ``mirror=False`` as Levenberg-Marquardt asks, median of ``--repeats`` after a
warm-up) and prints the measured ratio next to the model's choice, so the model's constants
can be checked, or fitted again, on another machine: a row marked ``slower`` is one where
the model picks the form that measured slower.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import jacnet.gauss_newton as gn

from ._harness import measure
from .core import forced_form, make_network

#: (widths, samples): the 29 networks the constants of gauss_newton's cost model were fitted on.
NETWORKS: list[tuple[Sequence[int], int]] = [
    ((2, 30, 2), 1000), ((4, 10, 3), 150), ((4, 20, 3), 500), ((10, 20, 20, 5), 2000),
    ((64, 16, 10), 1257), ((13, 32, 32, 3), 5000), ((13, 32, 32, 3), 1000),
    ((64, 32, 10), 1257), ((20, 40, 40, 4), 3000), ((8, 64, 64, 2), 2000),
    ((30, 60, 10), 2000), ((8, 64, 64, 1), 10000), ((10, 32, 32, 1), 2000),
    ((4, 16, 1), 10000), ((1, 20, 1), 1000), ((64, 16, 10), 200), ((13, 32, 32, 3), 300),
    ((10, 40, 2), 2000), ((20, 40, 40, 2), 2000), ((13, 32, 32, 2), 5000),
    ((4, 100, 2), 2000), ((13, 20, 3), 1000), ((4, 30, 3), 1000), ((4, 100, 3), 2000),
    ((4, 200, 10), 1000), ((2, 50, 50, 3), 2000), ((4, 60, 3), 2000), ((10, 100, 10), 1000),
    ((1, 100, 100, 3), 1000),
]


def compare(widths: Sequence[int], n: int, repeats: int) -> tuple[float, float, bool]:
    """Seconds for syrk and for the Kronecker form, and whether the model picks the latter."""
    net = make_network(widths)
    rng = np.random.default_rng(3)
    X, R = rng.standard_normal((n, widths[0])), rng.standard_normal((n, widths[-1]))
    picks = gn._kronecker_pays(net.layers, widths[-1], n)

    def forced(kronecker: bool) -> Callable[[], Any]:
        def call() -> Any:
            with forced_form(kronecker):
                return gn.normal_equations(net.layers, X, R, mirror=False)
        return call

    # the harness's timing: a warm-up, then the two forms interleaved, median of each
    t = measure({"syrk": forced(False), "kronecker": forced(True)}, repeats, pause=0.0)
    return t["syrk"].median, t["kronecker"].median, picks


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    wrong = 0
    with threadpool_limits(args.threads):
        print(f"{'network':18s} {'N':>6s} {'syrk':>10s} {'Kronecker':>10s} {'ratio':>6s}  model")
        for widths, n in NETWORKS:
            syrk, kron, picks = compare(widths, n, args.repeats)
            slower = (kron > syrk) == picks
            wrong += slower
            print(f"{'-'.join(map(str, widths)):18s} {n:6d} {syrk * 1e3:8.2f}ms "
                  f"{kron * 1e3:8.2f}ms {kron / syrk:6.2f}  "
                  f"{'Kronecker' if picks else 'syrk'}{'  slower' if slower else ''}")
    print(f"the model picks the slower form for {wrong} of {len(NETWORKS)} networks")


if __name__ == "__main__":
    main()
