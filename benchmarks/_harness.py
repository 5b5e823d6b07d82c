"""A small timing harness: equal threads, warm-up excluded, robust statistics, machine info.

Every benchmark compares jacnet with a peer on the same data and the same number of
threads. Repeats of the two sides are interleaved (jacnet, peer, jacnet, peer, ...) so that
a noisy neighbour on a shared machine slows both sides alike. The median is the headline;
the minimum and the inter-quartile range show the spread.

A suite module (``benchmarks/core.py`` is the model) gives ``TITLE``, ``DESCRIPTION`` and
``cases(smoke) -> list[Case]``; each case runs on a :class:`Context` and returns
:class:`Row` objects, which :func:`format_section` turns into a markdown section.
"""

from __future__ import annotations

import cProfile
import gc
import io
import math
import os
import platform
import pstats
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.linalg  # noqa: F401  (load scipy's own BLAS now, so threads are pinned for it too)
from threadpoolctl import threadpool_info, threadpool_limits

import jacnet  # noqa: F401  (its BLAS users load before threadpool_limits runs)

#: Environment variables that change what BLAS does; reported in every header.
BLAS_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
#: The two that force OpenBLAS onto a slower kernel or blocking; run with them unset.
SLOWING_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

REPO_ROOT = Path(__file__).resolve().parent.parent


class MismatchError(AssertionError):
    """jacnet and a peer (or two jacnet paths) disagree: a bug, not a slow run."""


# --------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up excluded)."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return q3 - q1

    def describe(self) -> str:
        """``"41.2 ms (min 40.9, IQR 0.8)"``: all in the unit of the median."""
        unit, scale = _unit(self.median)
        if len(self.times) == 1:
            return f"{self.median * scale:.3g} {unit}"
        return (
            f"{self.median * scale:.3g} {unit} "
            f"(min {self.min * scale:.3g}, IQR {self.iqr * scale:.2g})"
        )


def seconds_text(s: float) -> str:
    """``s`` seconds as text in the unit that suits it: "1.23 s", "45.6 ms" (a dash when
    not finite)."""
    if not math.isfinite(s):
        return "—"
    unit, scale = _unit(abs(s))
    return f"{s * scale:.3g} {unit}"


def _unit(seconds: float) -> tuple[str, float]:
    if seconds >= 1:
        return "s", 1.0
    if seconds >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def call_orders(n: int) -> list[list[int]]:
    """Rows of a balanced Latin square (Williams design) on ``range(n)``.

    Each row is an order of all ``n`` items; over the rows every item comes first equally
    often and every ordered pair ``(a, b)`` is adjacent (``b`` right after ``a``) equally
    often: once in ``n`` rows for even ``n``, twice in ``2 n`` rows (each row also
    reversed) for odd ``n``.
    """
    first, lo, hi = [0], 1, n - 1
    while lo <= hi:  # 0, 1, n-1, 2, n-2, ...
        first.append(lo)
        if lo != hi:
            first.append(hi)
        lo, hi = lo + 1, hi - 1
    rows = [[(x + r) % n for x in first[:n]] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def measure(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    min_time: float = 0.02,
    pause: float = 0.05,
) -> dict[str, Timing]:
    """Seconds per call of each function, ``repeats`` times, interleaved between functions.

    ``warmup`` untimed calls of each come first (first-call allocations, lazy imports,
    torch's dispatcher caches). A function faster than ``min_time`` is called ``number``
    times per repeat (as ``timeit`` does) and the time divided, so the clock's resolution
    and the call overhead do not dominate. Between timed calls the loop sleeps ``pause``
    seconds, untimed: the BLAS and OpenMP worker threads of the previous call stop spinning
    before the next one starts, so neither side pays for the other's idle threads. Each
    repeat runs the functions in the next row of a balanced Latin square
    (:func:`call_orders`), so over the rows each function follows each other one equally
    often. The garbage collector is paused inside each timed call; results are dropped
    at once.
    """
    number = {name: 1 for name in fns}
    for i in range(warmup):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i == 0:
                elapsed = time.perf_counter() - t0
                number[name] = max(1, min(1000, int(min_time / max(elapsed, 1e-7))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    orders = call_orders(len(names))
    for i in range(repeats):
        # What a call leaves behind (freed memory to fault in again, caches, a peer
        # library's threads) falls on every side alike: no function always follows the
        # same one. (A rotation keeps the cyclic order: in the core suite jacnet's
        # gauss_newton followed torch in 3 of 5 repeats, dsyrk never did.)
        for name in (names[j] for j in orders[i % len(orders)]):
            fn, k = fns[name], number[name]
            gc.collect()
            time.sleep(pause)
            gc.disable()
            try:
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                times[name].append((time.perf_counter() - t0) / k)
            finally:
                gc.enable()
    return {name: Timing(tuple(ts)) for name, ts in times.items()}


# ------------------------------------------------------------------------- threads
def load_torch(enabled: bool = True) -> tuple[ModuleType | None, str]:
    """``(torch, "")`` or ``(None, why it is missing)``; torch is an optional peer."""
    if not enabled:
        return None, "torch disabled (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "torch not installed (pip install -e '.[bench]')"
    return torch, ""


@contextmanager
def pinned_threads(n: int, torch: ModuleType | None = None) -> Iterator[None]:
    """Give numpy/scipy's BLAS, OpenMP and torch the same ``n`` threads, then restore."""
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None and previous is not None:
                torch.set_num_threads(previous)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------- the machine
def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, flags=re.MULTILINE)
    model = match.group(1).strip() if match else platform.machine()
    if flags:
        simd = [f for f in ("avx512f", "avx2", "fma") if f in flags.group(1).split()]
        if simd:
            model += f" [{', '.join(simd)}]"
    return model


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def blas_libraries() -> list[dict[str, Any]]:
    """threadpoolctl's view of every loaded BLAS/OpenMP library."""
    return [dict(d) for d in threadpool_info()]


def blas_kernel_summary() -> str:
    """``"openblas 0.3.31 SkylakeX (pthreads) x2"`` for each loaded BLAS."""
    parts = []
    for lib in blas_libraries():
        if lib.get("user_api") != "blas":
            continue
        desc = f"{lib.get('internal_api')} {lib.get('version')}"
        if lib.get("architecture"):
            desc += f" kernel {lib['architecture']}"
        if lib.get("threading_layer"):
            desc += f" ({lib['threading_layer']})"
        desc += f" `{Path(lib['filepath']).name}`"
        parts.append(desc)
    return "; ".join(parts) or "none found"


def blas_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in BLAS_ENV_VARS}


def gemm_rate(n: int = 1000, repeats: int = 3) -> float:
    """Measured float64 GEMM rate of numpy's BLAS in GFLOP/s (``n x n`` times ``n x n``).

    A one-number calibration of the machine at the time of the run: compare it across
    runs before comparing anything else.
    """
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    t = measure({"gemm": lambda: A @ B}, repeats=repeats, pause=0.0).get("gemm")
    assert t is not None
    return 2 * n**3 / t.median / 1e9


def machine_info(torch: ModuleType | None, probe: bool = True) -> dict[str, Any]:
    """CPU, cores, versions, BLAS libraries and kernels, BLAS env vars, a GEMM rate."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {default_threads()} usable by this process",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "jacnet": _version("jacnet"),
        "torch": torch.__version__ if torch is not None else _version("torch"),
        "torch-levenberg-marquardt": _version("torch-levenberg-marquardt"),
        "scikit-learn": _version("scikit-learn"),
        "threadpoolctl": _version("threadpoolctl"),
        "blas": blas_kernel_summary(),
        "env": blas_env(),
    }
    if torch is not None:
        cfg = torch.__config__.show()
        blas = re.search(r"BLAS_INFO=(\w+)", cfg)
        cap = re.search(r"CPU capability usage: (\w+)", cfg)
        info["torch_blas"] = (
            f"{blas.group(1) if blas else '?'}, CPU capability {cap.group(1) if cap else '?'}"
        )
    info["load_start"] = load_average()
    if probe:
        info["gemm_gflops"] = gemm_rate()
    return info


def load_average() -> str:
    """The 1-minute load average over the usable cores: other work slows every timing."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return "unknown"
    return f"{load1:.2f} on {default_threads()} cores"


def env_warning(env: dict[str, str | None]) -> str | None:
    """A warning when a variable that slows OpenBLAS down is set."""
    bad = {k: env[k] for k in SLOWING_ENV_VARS if env.get(k) is not None}
    if not bad:
        return None
    settings = ", ".join(f"{k}={v}" for k, v in bad.items())
    return (
        f"{settings} is set: OpenBLAS runs a forced kernel/blocking, numpy is slower than "
        "the machine allows; rerun with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`."
    )


def memory_available() -> int | None:
    """Bytes the kernel reports as available (MemAvailable), or None off Linux."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s*(\d+) kB", text, flags=re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


#: /proc/vmstat counters of the kernel's work on page faults for huge pages.
THP_COUNTERS = ("compact_stall", "thp_fault_alloc", "thp_fault_fallback")


def vmstat(names: Sequence[str] = THP_COUNTERS) -> dict[str, int] | None:
    """The named /proc/vmstat counters (system-wide, since boot), or None off Linux."""
    try:
        text = Path("/proc/vmstat").read_text()
    except OSError:
        return None
    values = dict(line.split() for line in text.splitlines() if line.count(" ") == 1)
    return {name: int(values[name]) for name in names if name in values}


def vmstat_change(before: dict[str, int] | None) -> dict[str, int] | None:
    """How much each counter of ``before`` (from :func:`vmstat`) has grown since."""
    after = vmstat(list(before)) if before is not None else None
    if before is None or after is None:
        return None
    return {name: after[name] - before[name] for name in before if name in after}


# ------------------------------------------------------------------- cases and rows
def _times(r: float) -> str:
    return f"{r:.0f}x" if r >= 100 else f"{r:.3g}x"


@dataclass
class Row:
    """One line of a results table.

    ``ratio`` is peer time / jacnet time: above 1 jacnet is faster (a speedup). For a
    ``kind="fraction"`` row the peer is a hardware ceiling (e.g. dsyrk's rate) and the
    ratio is the fraction of that ceiling jacnet reaches.
    """

    case: str
    name: str
    peer: str
    jacnet: Timing | None = None
    peer_time: Timing | None = None
    target: float | None = None
    kind: str = "speedup"
    status: str = ""
    note: str = ""
    command: str = ""
    #: Shown in the target column instead of ``target`` when the row is judged on
    #: something other than its time ratio (its status is then set by the suite).
    target_label: str = ""

    @property
    def ratio(self) -> float | None:
        if self.jacnet is None or self.peer_time is None:
            return None
        return self.peer_time.median / self.jacnet.median

    @property
    def ratio_of_mins(self) -> float | None:
        """The same ratio on the fastest repeats: less sensitive to a busy machine."""
        if self.jacnet is None or self.peer_time is None:
            return None
        return self.peer_time.min / self.jacnet.min

    def ratio_text(self) -> str:
        r, rm = self.ratio, self.ratio_of_mins
        if r is None or rm is None:
            return "—"
        if self.kind == "fraction":
            text, text_min = f"{100 * r:.0f}%", f"{100 * rm:.0f}%"
        else:
            text, text_min = _times(r), _times(rm)
        if self.jacnet is not None and len(self.jacnet.times) > 1:
            text += f" (mins: {text_min})"
        return text

    def target_text(self) -> str:
        if self.target_label:
            return self.target_label
        if self.target is None:
            return "—"
        if self.kind == "fraction":
            return f"≥ {100 * self.target:.0f}%"
        return f"≥ {self.target:g}x"


@dataclass
class Case:
    """A named unit of work that produces rows; ``id`` is what ``--only`` matches."""

    id: str
    run: Callable[[Context], list[Row]]


@dataclass
class Context:
    """What every case needs: repeats, threads, the optional torch module, smoke mode."""

    suite: str
    repeats: int
    threads: int
    smoke: bool
    torch: ModuleType | None
    torch_note: str = ""
    warmup: int = 1
    extra_args: Sequence[str] = field(default_factory=tuple)
    only: Sequence[str] = field(default_factory=tuple)
    #: Extra ``(title, markdown table)`` pairs a suite adds to its section with
    #: :meth:`add_table`, for results that are not one row per comparison (a study).
    tables: list[tuple[str, str]] = field(default_factory=list)

    def add_table(self, title: str, markdown: str) -> None:
        """Add a titled markdown block to the suite's section, above its rows table."""
        self.tables.append((title, markdown.strip()))

    def measure(self, fns: dict[str, Callable[[], Any]]) -> dict[str, Timing]:
        return measure(
            fns, repeats=self.repeats, warmup=self.warmup, pause=0.0 if self.smoke else 0.2
        )

    def command(self, case: str) -> str:
        """The shell command that reruns ``case`` alone."""
        args = ["python", "-m", "benchmarks.run", "--suite", self.suite, "--only", case]
        if self.smoke:
            args.append("--smoke")
        else:
            args += ["--repeats", str(self.repeats)]
        args += ["--threads", str(self.threads), *self.extra_args]
        return "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " + shlex.join(args)

    def row(self, case: str, name: str, peer: str, **kw: Any) -> Row:
        """A row with its reproducing command filled in; status is set by :meth:`judge`."""
        row = Row(case=case, name=name, peer=peer, command=self.command(case), **kw)
        return self.judge(row)

    def judge(self, row: Row) -> Row:
        if row.status:
            return row
        if row.peer_time is None:
            row.status = "skip"
        elif self.smoke:
            row.status = "ok"  # correctness only: smoke sizes say nothing about speed
        elif row.target is None:
            row.status = "—"
        else:
            assert row.ratio is not None
            row.status = "pass" if row.ratio >= row.target else "miss"
        return row

    def skip_for_memory(self, needed: int) -> str | None:
        """A note when fewer than ``needed`` bytes (plus a margin) are available."""
        avail = memory_available()
        if avail is None or avail >= needed * 1.2:
            return None
        return f"skipped: needs ~{needed / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"


def profile_top(fn: Callable[[], Any], k: int = 6) -> str:
    """cProfile's top ``k`` entries by own time of one call: ``name own-s/calls``."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:k]  # type: ignore[attr-defined]
    out = []
    for (file, line, name), (_, calls, own, _, _) in entries:
        where = name if file == "~" else f"{file.rsplit('/', 1)[-1]}:{line} {name}"
        out.append(f"{where} {own:.3g} s/{calls}")
    return "cProfile top own time: " + "; ".join(out)


def check_close(what: str, actual: Any, expected: Any, tol: float = 1e-10) -> float:
    """Max abs difference, scaled by ``max(1, max|expected|)``; raise above ``tol``."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise MismatchError(f"{what}: shapes differ, {a.shape} vs {e.shape}")
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    err = float(np.max(np.abs(a - e))) / scale if e.size else 0.0
    if not err <= tol:
        raise MismatchError(f"{what}: scaled max difference {err:.3g} > {tol:g}")
    return err


# --------------------------------------------------------------------- the document
PREAMBLE = """\
# Benchmarks

Every number below is measured by `python -m benchmarks.run` (`make bench`) and written
into this file by it, one section per suite; nothing is typed in by hand. Ratios are
peer time / jacnet time on the same data, in the same dtype, with the same number of
threads for numpy's BLAS and for PyTorch; above 1 means jacnet is faster. Each row lists
the command that reruns it alone.

Run with the OpenBLAS overrides unset, they force a slower kernel
(`python -m benchmarks.blas_env` measures what they cost on your machine):

```
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench
```

See `benchmarks/README.md` for the options and how to add a suite.
"""


def _markers(suite: str) -> tuple[str, str]:
    return f"<!-- suite:{suite}:start -->", f"<!-- suite:{suite}:end -->"


def measure_mode(repeats: int, warmup: int) -> str:
    """The "mode" line of :func:`measure`'s protocol."""
    return (
        f"{repeats} timed repeats after {warmup} warm-up, interleaved with the peers "
        "in the orders of a balanced Latin square, so each function follows each other one "
        "equally often (calls under 20 ms looped, time per call); median (min, IQR)"
    )


#: A suite's own "mode" line: text, or a function of the run's Context.
Mode = str | Callable[["Context"], str] | None


def format_header(info: dict[str, Any], ctx: Context, mode: Mode = None) -> str:
    """The machine and run lines; ``mode``: how the suite times, where that is not
    :meth:`Context.measure` with the run's repeats (the default line)."""
    env = info["env"]
    env_text = ", ".join(f"{k}={v}" for k, v in env.items() if v is not None) or "none set"
    lines = [
        f"- machine: {info['cpu']}; {info['cores']}",
        f"- threads: {ctx.threads} for numpy/scipy BLAS (threadpoolctl) and for torch "
        "(`torch.set_num_threads`)",
        f"- BLAS (numpy/scipy): {info['blas']}",
    ]
    if "torch_blas" in info:
        lines.append(f"- BLAS (torch): {info['torch_blas']}")
    lines.append(f"- BLAS environment: {env_text}")
    warning = env_warning(env)
    if warning:
        lines.append(f"- **warning**: {warning}")
    if "gemm_gflops" in info:
        lines.append(
            f"- calibration: numpy float64 GEMM 1000³ at {info['gemm_gflops']:.1f} GFLOP/s"
        )
    versions = ", ".join(
        f"{k} {info[k]}"
        for k in (
            "python",
            "numpy",
            "scipy",
            "jacnet",
            "torch",
            "torch-levenberg-marquardt",
            "scikit-learn",
            "threadpoolctl",
        )
    )
    lines.append(f"- versions: {versions}")
    if ctx.smoke:
        text = "smoke (tiny sizes, correctness only: timings mean nothing)"
    elif mode is None:
        text = measure_mode(ctx.repeats, ctx.warmup)
    else:
        text = mode(ctx) if callable(mode) else mode
    lines.append(f"- mode: {text}")
    lines.append(
        f"- run: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average at start "
        f"{info['load_start']}, at end {load_average()} (this process included)"
    )
    if ctx.torch is None:
        lines.append(f"- peers: {ctx.torch_note}; torch rows skipped")
    return "\n".join(lines)


def format_table(rows: Sequence[Row]) -> str:
    head = (
        "| case | benchmark | jacnet | peer | peer time | ratio (of medians) | target | result |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    body = []
    for r in rows:
        status = r.status if r.status not in ("miss", "FAIL") else f"**{r.status}**"
        body.append(
            f"| `{r.case}` | {r.name} | {r.jacnet.describe() if r.jacnet else '—'} "
            f"| {r.peer} | {r.peer_time.describe() if r.peer_time else '—'} "
            f"| {r.ratio_text()} | {r.target_text()} | {status} |"
        )
    notes = [f"- `{r.case}` vs {r.peer}: {r.note}" for r in rows if r.note]
    cmds = list(dict.fromkeys(f"- `{r.case}`: `{r.command}`" for r in rows))
    parts = [head, *body]
    if notes:
        parts += ["", "Notes:", "", *notes]
    parts += ["", "Commands:", "", *cmds]
    return "\n".join(parts)


def format_section(
    suite: str,
    title: str,
    description: str,
    info: dict[str, Any],
    rows: Sequence[Row],
    ctx: Context,
    mode: Mode = None,
) -> str:
    start, end = _markers(suite)
    return "\n".join(
        [
            start,
            f"## {title}",
            "",
            description.strip(),
            "",
            format_header(info, ctx, mode),
            "",
            *(f"### {t}\n\n{md}\n" for t, md in ctx.tables),
            format_table(rows),
            end,
        ]
    )


def write_section(path: Path, suite: str, section: str) -> None:
    """Replace the suite's marked section in ``path``, or append it; touch nothing else."""
    start, end = _markers(suite)
    text = path.read_text() if path.exists() else PREAMBLE
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def console(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
