"""Run benchmark suites and write their sections of ``docs/benchmarks.md``.

    python -m benchmarks.run [--suite core] [--smoke] [--repeats N] [--threads N]
                             [--only CASE] [--out docs/benchmarks.md] [--no-torch] [--strict]

``--smoke`` runs tiny sizes once: it checks that every case runs and that jacnet agrees
with its peers, and asserts nothing about time; it works without torch (peer rows are
skipped with a note). Exit status: 1 when results disagree (or, with ``--strict``, when a
target is missed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from . import _harness as h

#: Suite name -> module. A suite module gives TITLE, DESCRIPTION and cases(smoke).
SUITES: dict[str, str] = {
    "core": "benchmarks.core",
    "distributed": "benchmarks.distributed",
    "estimators": "benchmarks.estimators",
    "export": "benchmarks.export",
    "training": "benchmarks.training",
    "perf": "benchmarks.perf",
    "sobolev": "benchmarks.sobolev",
    "uncertainty": "benchmarks.uncertainty",
}

DEFAULT_OUT = h.REPO_ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="suite to run (repeatable); default: all",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one repeat: correctness only, no timing asserted",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per measurement (default 5; 1 with --smoke)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for numpy BLAS and torch alike (default: usable cores)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CASE",
        help="run only cases whose id contains CASE (repeatable)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file to update (default docs/benchmarks.md; with --smoke "
        "or --only nothing is written unless --out is given)",
    )
    p.add_argument(
        "--no-torch",
        action="store_true",
        help="skip the torch peers as if torch were not installed",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 5
    if args.threads is None:
        args.threads = h.default_threads()
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be at least 1")
    return args


def run_suite(name: str, module: ModuleType, ctx: h.Context) -> tuple[list[h.Row], bool]:
    """Run the selected cases of one suite; ``ok`` is False when a result disagreed."""
    rows: list[h.Row] = []
    ok = True
    for case in module.cases(ctx.smoke):
        if ctx.only and not any(o in case.id for o in ctx.only):
            continue
        h.console(f"[{name}] {case.id} ...")
        try:
            new = case.run(ctx)
        except h.MismatchError as exc:
            ok = False
            new = [
                h.Row(
                    case=case.id,
                    name=case.id,
                    peer="—",
                    status="FAIL",
                    note=str(exc),
                    command=ctx.command(case.id),
                )
            ]
        for row in new:
            h.console(
                f"    {row.peer}: jacnet {row.jacnet.describe() if row.jacnet else '—'}, "
                f"peer {row.peer_time.describe() if row.peer_time else '—'}, "
                f"ratio {row.ratio_text()} (target {row.target_text()}) -> {row.status}"
                + (f"  [{row.note}]" if row.note else "")
            )
        rows += new
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch, torch_note = h.load_torch(enabled=not args.no_torch)
    warning = h.env_warning(h.blas_env())
    if warning:
        h.console(f"warning: {warning}")
    out = args.out
    if out is None and not args.smoke and not args.only:
        out = DEFAULT_OUT
    ok, missed = True, False
    # Every suite's libraries are loaded before the threads are pinned: threadpoolctl
    # limits the pools it finds loaded (scikit-learn's own OpenMP came in later and kept
    # all cores).
    modules = {name: importlib.import_module(SUITES[name]) for name in args.suite or SUITES}
    with h.pinned_threads(args.threads, torch):
        info = h.machine_info(torch, probe=not args.smoke)
        h.console(f"machine: {info['cpu']}; BLAS: {info['blas']}; threads {args.threads}")
        for name, module in modules.items():
            ctx = h.Context(
                suite=name,
                repeats=args.repeats,
                threads=args.threads,
                smoke=args.smoke,
                torch=torch,
                torch_note=torch_note,
                warmup=0 if args.smoke else 1,
                extra_args=("--no-torch",) if args.no_torch else (),
                only=tuple(args.only),
            )
            rows, suite_ok = run_suite(name, module, ctx)
            ok &= suite_ok
            missed |= any(r.status == "miss" for r in rows)
            if out is not None and rows:
                section = h.format_section(name, module.TITLE, module.DESCRIPTION, info, rows,
                                           ctx, getattr(module, "MODE", None))
                h.write_section(out, name, section)
                h.console(f"[{name}] wrote its section of {out}")
    if not ok:
        h.console("FAILED: jacnet and a peer disagree (see the FAIL rows)")
        return 1
    if missed and args.strict:
        h.console("a target was missed (--strict)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
