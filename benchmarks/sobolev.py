"""Suite "sobolev": fitting the derivatives too, on smooth test functions with exact gradients.

A study (issue 23): test RMSE against the number of training samples for jacnet's
Levenberg-Marquardt without derivatives, with derivatives (``dTdX``, ``derivative_weight``
1 on standardized data) and the published gradient-enhanced network ``jenn`` (Adam), on
Branin (2 inputs), Hartmann-6 (6) and the wing-weight function (10). Per function a table
(size x method: median RMSE and fit time over the seeds), the "samples to reach RMSE r"
ratio without/with derivatives, and jacnet against jenn at equal samples. ``jenn`` is an
optional peer (the ``bench`` extra): without it its rows are skipped with a note.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from scipy.stats import qmc

import jacnet as jn

from ._harness import Case, Context, MismatchError, Row, Timing, console, seconds_text

try:
    import jenn
except ImportError:  # an optional peer: its rows are skipped
    jenn = None

Array = np.ndarray

TITLE = "Derivative fitting (Sobolev training): samples against test error, and jenn"
DESCRIPTION = """\
Smooth test functions with exact gradients (checked against central differences before
each run). For each training size N and seed: N Latin-hypercube points on the function's
domain (scipy `qmc.LatinHypercube`, seeded by (seed, N)), values and gradients there; one
fixed test set of 1000 uniform points (seed 12345). The test RMSE is in the function's own
units. Seeds 0..4: the seed draws the sample and the initial weights; the tables give
medians over the seeds.

- **Branin** on [-5, 10] × [0, 15] (2 inputs), network 2-16-16-1.
- **Hartmann-6** on [0, 1]⁶ (6 inputs), network 6-24-24-1.
- **Wing weight** (Forrester, Sóbester & Keane 2008; 10 inputs on their usual ranges, the
  sweep angle in degrees), network 10-16-16-1.

Every network: tanh hidden layers, a linear output, float64. Every method minimizes the
same objective, scikit-learn's: (1/2N)·(Σ (y − t)² + Σ (∂y/∂x − g)² + α·‖W‖²) on
standardized data, with the L2 penalty α = 1e-4 on the weights (not the biases) that
`jacnet.MLPRegressor` applies by default (scikit-learn's default alpha).

- **LM**: `jacnet.train(net, X, T, solver="lm", loss="mse", alpha=2e-4/N, goal=0,
  max_epochs=1000)` (trainlm's defaults: 1000 epochs, goal 0, min_grad 1e-7, mu_max 1e10)
  on standardized data: inputs and output standardized by the training sample's mean and
  standard deviation. `alpha=2e-4/N` on train's mean squared error is the estimator's
  default penalty (α/N on half of it): `MLPRegressor(solver="lm", max_iter=1000)`'s
  objective. The study's run before this one stopped at 200 epochs (MLPRegressor's
  default `max_iter`), where the fits at the larger sizes were still improving (Hartmann-6
  with ∂, N = 768, seed 0: test RMSE 0.0085 after 200 epochs, 0.0017 after 600): a study of
  what the samples teach wants the fits run out, and both curves get the same epochs.
- **LM + ∂**: the same, with `dTdX=G·σ_x/σ_y` (the gradients in standardized units) and
  `derivative_weight=1`: the sum of squares of the value and derivative residuals.
- **jenn** (`jenn.NeuralNet(widths, "tanh", "linear").fit(x, y, dydx, ...)`, Adam, full
  batch): `is_normalize=True` (its own standardization, the same as above), `gamma=1`
  (derivative weight), `lambd=1e-4` (its L2 term is the same α·‖W‖², weights only; its
  default is 0), learning rate `alpha=0.002`, `max_iter=5000`. jenn's defaults are
  `alpha=0.05`, `max_iter=1000`; the setting was picked on the grid in the table "jenn
  settings" (run on Branin by this suite, with the same `lambd`; the best cell of the grid
  is named under it).

LM without derivatives runs further up the ladder (it needs more samples); LM + ∂ and jenn
run on the same sizes. Fit time is wall time around the `train`/`fit` call alone, after one
untimed warm-up of every method. "Time to jenn's RMSE": a callback records jacnet's test
RMSE after every LM epoch (its own time excluded); the time at which it first reaches the
RMSE that jenn ended with on the same sample (— when never).

Targets (issue 23): with derivatives, LM reaches the target RMSE r with at least 3 times
fewer samples than without (N read off the median curves, linear in log N against
log RMSE between ladder points; "> N_max" when a curve never reaches r, which makes the
ratio a lower bound), at r = 10% and 1% of the function's standard deviation on the test
set; and at every common size, LM + ∂ has a lower median RMSE than jenn and reaches jenn's
RMSE in less time than jenn's fit takes (medians over the seeds). A sample with its
gradient carries 1 + d numbers (d inputs) where a value alone carries one, so on Branin
(d = 2) 3 times fewer samples asks for every number of a gradient to teach as much as a
value does: the target sits at that edge there, and has room on 6 and 10 inputs. The
reading treats both curves alike (the same ladder of sizes doubling, the same
interpolation, both methods at the same epochs and penalty); its noise is the medians':
at the smallest sizes the seeds' RMSEs spread over an order of magnitude, so a ratio
within some tenths of 3 is not told apart from 3 by five seeds. Where a curve ends above
r the ratio is not measured; where only the curve without derivatives does, the ratio is
a lower bound (its last size over the crossing with ∂).

How firm the reading is: `python -m benchmarks.sobolev_ladder` reads Branin's ratios off
ladders of steps of about √2 (5, 7, 10, 14, 20, 28, 40, 57, 80 with ∂; 10 to 160 without;
all else as here). On the committed code it gave 1.93x at 10% and 2.94x at 1%, against
2.77x and 3.40x on the doubling ladder: the medians between the doubling points do not
lie on the straight lines the reading draws (with ∂, N = 14 is at 5.89, hardly below N =
10's 6.15; without, N = 28 is already at 5.00). With five seeds Branin's ratio lies
between about 2 and 3.4, at or below the 3x edge that a sample's 1 + d = 3 numbers set;
on Hartmann-6 and the wing weight (5x and more) the margin holds either way.

Where a sample set gives fewer residuals, N·(1 + d), than the network has weights P, the
penalty is what restrains the weights between the samples: without it (α = 0, this
study's previous run) LM drove the training residuals to zero there, and jenn's Adam,
stopped after its iterations short of that, had the lower test RMSE at N ≤ 40 on the wing
weight and at N = 48, 96 on Hartmann-6. The jenn rows name those sizes. Below 0.8 P
residuals LM solves its system in the residual space (N·(1 + d) square, the penalty
included; docs/derivation.md D1-D3, and docs/architecture.md for where that pays) rather
than as P × P.

The committed run used `--threads 1` in two processes started together, one per core:
Hartmann-6 in one, the jenn settings, Branin and the wing weight in the other (`--only`;
the section joins their outputs, and each process's run and calibration lines are below).
These networks' products are small, and with two BLAS threads per process on a shared
two-core machine (an earlier run, other work running) single LM fits ran orders of
magnitude slower than on one thread."""

#: How this suite times (the run's "mode" line): it does not use Context.measure.
MODE = ("one timed fit per seed, size and method (a study), after one untimed warm-up fit of "
        "every method; the methods of a seed and size run back to back; medians over seeds")

SEEDS = (tuple(range(5)), (0,))  # (full, smoke)
TEST_N = 1000
MAX_EPOCHS = (1000, 5)
JENN_SETTINGS = {"alpha": 0.002, "max_iter": 5000}
JENN_SMOKE = {"alpha": 0.002, "max_iter": 20}
JENN_GRID = ((0.05, 0.01, 0.002), (1000, 5000))  # (alpha, max_iter); jenn's default first
TARGET_RATIO = 3.0
#: The L2 penalty of every method: scikit-learn's (and MLPRegressor's) default alpha, in
#: the objective (1/2N)(sum of squares + ALPHA ||W||^2)
ALPHA = 1e-4
TARGET_LEVELS = (0.10, 0.01)  # r as a fraction of the test set's standard deviation


# ------------------------------------------------------------------- test functions
def branin(X: Array) -> tuple[Array, Array]:
    """Branin-Hoo, (N, 2) -> values (N,) and gradients (N, 2)."""
    x1, x2 = X[:, 0], X[:, 1]
    b, c, r, s, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 6.0, 10.0, 1 / (8 * np.pi)
    u = x2 - b * x1**2 + c * x1 - r
    f = u**2 + s * (1 - t) * np.cos(x1) + s
    g = np.stack([2 * u * (c - 2 * b * x1) - s * (1 - t) * np.sin(x1), 2 * u], axis=1)
    return f, g


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(X: Array) -> tuple[Array, Array]:
    """Hartmann-6, -sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2); (N, 6) -> (N,), (N, 6)."""
    D = X[:, None, :] - _H_P[None]
    E = _H_ALPHA * np.exp(-np.sum(_H_A * D**2, axis=-1))  # (N, 4)
    return -E.sum(axis=1), np.einsum("ni,nij->nj", E, 2 * _H_A * D)


#: Wing weight: Sw, Wfw, A, Lambda (deg), q, lambda, t/c, Nz, Wdg, Wp; and the power of
#: each in the product term (Lambda and Wp enter otherwise).
_W_LO = np.array([150, 220, 6, -10, 16, 0.5, 0.08, 2.5, 1700, 0.025])
_W_HI = np.array([200, 300, 10, 10, 45, 1, 0.18, 6, 2500, 0.08])
_W_POW = np.array([0.758, 0.0035, 0.6, 0, 0.006, 0.04, -0.3, 0.49, 0.49, 0])


def wing_weight(X: Array) -> tuple[Array, Array]:
    """The wing-weight function, (N, 10) -> (N,), (N, 10); the product term's derivative
    is the term times each power over its input (cos Lambda enters as cos^-0.9)."""
    Sw, Wfw, A, sweep, q, lam, tc, Nz, Wdg, Wp = X.T
    rad = np.deg2rad(sweep)
    term = (0.036 * Sw**0.758 * Wfw**0.0035 * (A / np.cos(rad) ** 2) ** 0.6 * q**0.006
            * lam**0.04 * (100 * tc / np.cos(rad)) ** -0.3 * (Nz * Wdg) ** 0.49)
    G = term[:, None] * _W_POW / np.where(_W_POW == 0, 1.0, X)
    G[:, 3] = term * 0.9 * np.tan(rad) * np.pi / 180
    G[:, 0] += Wp
    G[:, 9] = Sw
    return term + Sw * Wp, G


@dataclass(frozen=True)
class Problem:
    """A test function on a box, its network and its ladders of training sizes."""

    key: str
    name: str
    fn: Callable[[Array], tuple[Array, Array]]
    lo: Array
    hi: Array
    hidden: tuple[int, ...]
    sizes: tuple[int, ...]  # LM + derivatives and jenn (LM without: these and `more`)
    more: tuple[int, ...]  # further sizes for LM without derivatives
    smoke_sizes: tuple[int, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        return (len(self.lo), *self.hidden, 1)

    def tag(self) -> str:
        return "-".join(map(str, self.widths))

    def sample(self, n: int, rng: Any) -> Array:
        d = len(self.lo)
        return self.lo + (self.hi - self.lo) * qmc.LatinHypercube(d=d, rng=rng).random(n)


PROBLEMS = (
    Problem("branin", "Branin", branin, np.array([-5.0, 0.0]), np.array([10.0, 15.0]),
            (16, 16), (5, 10, 20, 40, 80, 160), (320, 640), (5, 10)),
    Problem("hartmann6", "Hartmann-6", hartmann6, np.zeros(6), np.ones(6),
            (24, 24), (12, 24, 48, 96, 192, 384, 768), (1536, 3072), (12,)),
    Problem("wing", "Wing weight", wing_weight, _W_LO.astype(float), _W_HI.astype(float),
            (16, 16), (10, 20, 40, 80, 160), (320, 640, 1280), (10,)),
)


def check_gradient(problem: Problem) -> float:
    """Central differences against the exact gradient at 50 points; raise above 1e-6."""
    X = problem.sample(50, np.random.default_rng(7))
    _, G = problem.fn(X)
    h = 1e-6 * np.maximum(1.0, np.abs(X))
    numeric = np.empty_like(G)
    for j in range(X.shape[1]):
        up, down = X.copy(), X.copy()
        up[:, j] += h[:, j]
        down[:, j] -= h[:, j]
        numeric[:, j] = (problem.fn(up)[0] - problem.fn(down)[0]) / (2 * h[:, j])
    err = float(np.max(np.abs(numeric - G)) / np.max(np.abs(G)))
    if not err <= 1e-6:
        raise MismatchError(f"{problem.key}: gradient against central differences {err:.3g}")
    return err


# ------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class Fit:
    """One fit: test RMSE, wall seconds and, for LM, ``path``: (seconds, test RMSE) after
    each epoch (the recording's own time excluded)."""

    rmse: float
    seconds: float
    path: tuple[tuple[float, float], ...] = ()

    def time_to(self, r: float) -> float:
        """Seconds until the test RMSE was first at most ``r`` (inf when never)."""
        return next((t for t, e in self.path if e <= r), math.inf)


@dataclass(frozen=True)
class TestSet:
    X: Array
    y: Array


def rmse(pred: Array, y: Array) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def make_network(widths: Sequence[int], seed: int) -> jn.Network:
    """tanh hidden layers, a linear output, float64, weights drawn from ``seed``."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    layers = [jn.Dense(a, b, "tanh") for a, b in pairs[:-1]]
    layers.append(jn.Dense(*pairs[-1], "identity"))
    return jn.Network(layers, seed=seed, dtype=np.float64)


def fit_lm(problem: Problem, X: Array, y: Array, G: Array | None, seed: int, test: TestSet,
           epochs: int) -> Fit:
    """jacnet LM on standardized data (with derivatives when ``G`` is given); the test
    RMSE in the function's units after every epoch."""
    mx, sx, my, sy = X.mean(axis=0), X.std(axis=0), float(y.mean()), float(y.std())
    Xt = (test.X - mx) / sx
    net = make_network(problem.widths, seed)
    path: list[tuple[float, float]] = []
    clock = [0.0, 0.0]  # start, seconds spent recording

    def record(entry: Any, net: jn.Network) -> bool:
        t = time.perf_counter()
        path.append((t - clock[0] - clock[1], rmse(net.forward(Xt)[:, 0] * sy + my, test.y)))
        clock[1] += time.perf_counter() - t
        return False

    extra: dict[str, Any] = {}
    if G is not None:  # in standardized units: d(y/sy)/d((x-mx)/sx) = G sx / sy
        extra = {"dTdX": G * sx / sy, "derivative_weight": 1.0}
    gc.collect()
    clock[0] = time.perf_counter()
    # mse + (a/2)||W||^2 with a = 2 ALPHA / N: twice the objective of ALPHA (same minimizer)
    jn.train(net, (X - mx) / sx, ((y - my) / sy)[:, None], solver="lm", loss="mse", goal=0.0,
             alpha=2 * ALPHA / len(X), max_epochs=epochs, seed=seed, callbacks=[record],
             **extra)
    seconds = time.perf_counter() - clock[0] - clock[1]
    return Fit(rmse(net.forward(Xt)[:, 0] * sy + my, test.y), seconds, tuple(path))


def fit_jenn(problem: Problem, X: Array, y: Array, G: Array, seed: int, test: TestSet,
             settings: dict[str, Any]) -> Fit:
    """jenn's gradient-enhanced network; its arrays are (features, samples)."""
    assert jenn is not None
    model = jenn.NeuralNet(list(problem.widths), "tanh", "linear")
    gc.collect()
    t0 = time.perf_counter()
    model.fit(np.ascontiguousarray(X.T), y[None, :], np.ascontiguousarray(G.T[None]),
              is_normalize=True, gamma=1.0, lambd=ALPHA, random_state=seed, **settings)
    seconds = time.perf_counter() - t0
    return Fit(rmse(model.predict(np.ascontiguousarray(test.X.T))[0], test.y), seconds)


def test_set(problem: Problem) -> TestSet:
    rng = np.random.default_rng(12345)
    X = problem.lo + (problem.hi - problem.lo) * rng.random((TEST_N, len(problem.lo)))
    return TestSet(X, problem.fn(X)[0])


# --------------------------------------------------------------------- the study
LM, LMD, JENN = "LM", "LM + ∂", "jenn"
Results = dict[str, dict[int, list[Fit]]]


def run_study(problem: Problem, ctx: Context) -> Results:
    """Every seed, size and method; the methods of a (seed, size) back to back."""
    test = test_set(problem)
    epochs = MAX_EPOCHS[1 if ctx.smoke else 0]
    jenn_settings = JENN_SMOKE if ctx.smoke else JENN_SETTINGS
    sizes = problem.smoke_sizes if ctx.smoke else problem.sizes
    more = () if ctx.smoke else problem.more
    X0 = problem.sample(sizes[0], np.random.default_rng(0))
    y0, G0 = problem.fn(X0)
    fit_lm(problem, X0, y0, None, 0, test, 2)  # untimed warm-up of every method
    fit_lm(problem, X0, y0, G0, 0, test, 2)
    if jenn is not None:
        fit_jenn(problem, X0, y0, G0, 0, test, {"max_iter": 2})
    results: Results = {LM: {}, LMD: {}, JENN: {}}
    for seed in SEEDS[1 if ctx.smoke else 0]:
        for n in (*sizes, *more):
            X = problem.sample(n, np.random.default_rng((seed, n)))
            y, G = problem.fn(X)
            results[LM].setdefault(n, []).append(fit_lm(problem, X, y, None, seed, test, epochs))
            if n not in sizes:
                continue
            results[LMD].setdefault(n, []).append(fit_lm(problem, X, y, G, seed, test, epochs))
            if jenn is not None:
                results[JENN].setdefault(n, []).append(
                    fit_jenn(problem, X, y, G, seed, test, jenn_settings))
    return results


def med_rmse(fits: list[Fit]) -> float:
    return statistics.median(f.rmse for f in fits)


def med_seconds(fits: list[Fit]) -> float:
    return statistics.median(f.seconds for f in fits)


def time_to_peer(ours: list[Fit], peer: list[Fit]) -> float:
    """Median over the seeds of the time LM + ∂ took to reach jenn's RMSE on that seed."""
    return statistics.median(a.time_to(b.rmse) for a, b in zip(ours, peer, strict=True))


def study_table(results: Results) -> str:
    """One line per size: median RMSE (function units) and median fit time per method."""
    lines = [f"| N | {LM}: RMSE | {LM}: time | {LMD}: RMSE | {LMD}: time | {JENN}: RMSE "
             f"| {JENN}: time | {LMD}: time to {JENN}'s RMSE |",
             "|---|---|---|---|---|---|---|---|"]
    for n in sorted(results[LM]):
        cells = [str(n)]
        for method in (LM, LMD, JENN):
            fits = results[method].get(n)
            cells += ([f"{med_rmse(fits):.3g}", seconds_text(med_seconds(fits))] if fits
                      else ["—", "—"])
        peer = results[JENN].get(n)
        reach = time_to_peer(results[LMD][n], peer) if peer else math.nan
        cells.append("not reached" if reach == math.inf else seconds_text(reach))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------- samples to reach r
@dataclass(frozen=True)
class Reach:
    """The N at which a median curve reaches r: ``"="`` interpolated, ``"≤"`` already at
    the first size, ``">"`` never within the ladder (``n`` is then its last size)."""

    n: float
    kind: str

    def text(self) -> str:
        return f"{'' if self.kind == '=' else self.kind + ' '}{self.n:.3g}"


def samples_to_reach(curve: Sequence[tuple[int, float]], r: float) -> Reach:
    """The first crossing of ``r`` by the curve (N, RMSE), linear in log N and log RMSE."""
    if curve[0][1] <= r:
        return Reach(curve[0][0], "≤")
    for (n0, e0), (n1, e1) in zip(curve[:-1], curve[1:], strict=True):
        if e1 <= r:
            w = math.log(e0 / r) / math.log(e0 / e1) if e1 > 0 else 1.0
            return Reach(math.exp(math.log(n0) + w * math.log(n1 / n0)), "=")
    return Reach(curve[-1][0], ">")


def reach_ratio(without: Reach, with_: Reach) -> tuple[float, str]:
    """N without / N with and whether that is exact ``"="``, a lower bound ``"≥"`` or
    unknown ``"?"`` (LM + ∂ never reached r)."""
    if with_.kind == ">":
        return math.nan, "?"
    exact = without.kind == "=" and with_.kind == "="
    return without.n / with_.n, "=" if exact else "≥"


def samples_rows(ctx: Context, problem: Problem, results: Results, sd: float) -> list[Row]:
    """One row per target level r: samples to reach r without and with derivatives."""
    rows = []
    curves = {m: [(n, med_rmse(f)) for n, f in sorted(results[m].items())] for m in (LM, LMD)}
    for level in TARGET_LEVELS:
        r = level * sd
        a, b = samples_to_reach(curves[LM], r), samples_to_reach(curves[LMD], r)
        ratio, kind = reach_ratio(a, b)
        ok = kind != "?" and ratio >= TARGET_RATIO
        ratio_text = (f"not measured (LM + ∂ does not reach r by N = {b.n:g} either)"
                      if kind == "?" else f"{'≥ ' if kind == '≥' else ''}{ratio:.3g}x fewer")
        rows.append(ctx.row(
            f"sobolev.{problem.key}",  # the case id: what --only matches to rerun it
            f"{problem.name} {problem.tag()}: samples to reach test RMSE r = {r:.3g} "
            f"({100 * level:g}% of the test std)",
            f"N without ∂ {a.text()}, with ∂ {b.text()}: {ratio_text}",
            target_label=f"≥ {TARGET_RATIO:g}x fewer samples",
            status="ok" if ctx.smoke else ("pass" if ok else "miss"),
        ))
    return rows


def jenn_row(ctx: Context, problem: Problem, results: Results) -> Row:
    """LM + ∂ against jenn at every common size; the timings shown are the largest."""
    case = f"sobolev.{problem.key}"
    settings = JENN_SMOKE if ctx.smoke else JENN_SETTINGS
    peer = f"jenn (Adam, alpha {settings['alpha']:g}, {settings['max_iter']} iterations)"
    if jenn is None:
        return ctx.row(case, f"{problem.name}: LM + ∂ against jenn at equal N", peer,
                       note="jenn not installed (pip install -e '.[bench]')")
    sizes = sorted(results[JENN])
    better = [n for n in sizes if med_rmse(results[LMD][n]) < med_rmse(results[JENN][n])]
    sooner = [n for n in sizes
              if time_to_peer(results[LMD][n], results[JENN][n]) < med_seconds(results[JENN][n])]
    whole = [n for n in sizes
             if med_seconds(results[LMD][n]) < med_seconds(results[JENN][n])]
    ok = len(better) == len(sooner) == len(sizes)
    top = sizes[-1]
    n_params = make_network(problem.widths, 0).n_params
    few = [n for n in sizes if n * (1 + len(problem.lo)) < n_params]
    return ctx.row(
        case,
        f"{problem.name}: LM + ∂ against jenn at equal N (times: N = {top}, whole fits)",
        peer,
        jacnet=Timing(tuple(f.seconds for f in results[LMD][top])),
        peer_time=Timing(tuple(f.seconds for f in results[JENN][top])),
        target_label="lower RMSE, reached sooner, at every N",
        status="ok" if ctx.smoke else ("pass" if ok else "miss"),
        note=(f"of N = {', '.join(map(str, sizes))}: median RMSE below jenn's at "
              f"{len(better)}; jenn's RMSE reached in less than jenn's fit time at "
              f"{len(sooner)} ({', '.join(map(str, sooner)) or 'none'}); whole LM + ∂ fit "
              f"faster than jenn's at {len(whole)} ({', '.join(map(str, whole)) or 'none'}); "
              f"fewer residuals N·(1 + d) than weights P = {n_params} at N = "
              f"{', '.join(map(str, few)) or 'none'}"),
    )


def study_case(ctx: Context, problem: Problem) -> list[Row]:
    """The study of one function: its table, the samples rows and the jenn row."""
    check_gradient(problem)
    sd = float(test_set(problem).y.std())
    results = run_study(problem, ctx)
    seeds = SEEDS[1 if ctx.smoke else 0]
    table = study_table(results)
    for method, fits in results.items():
        for n, runs in fits.items():
            if not all(math.isfinite(f.rmse) for f in runs):
                raise MismatchError(f"{problem.key}: {method} at N = {n} gave a non-finite RMSE")
    n_params = make_network(problem.widths, 0).n_params
    title = (f"{problem.name}: {problem.tag()} tanh (P = {n_params})"
             f", test std {sd:.3g}, seeds {seeds[0]}..{seeds[-1]}, medians")
    ctx.add_table(title, table)
    console(f"  {title}\n{table}")
    return [*samples_rows(ctx, problem, results, sd), jenn_row(ctx, problem, results)]


# ------------------------------------------------------------------ jenn settings
def jenn_grid_case(ctx: Context) -> list[Row]:
    """jenn's learning rate and iterations on Branin, N = 80 (smoke: 10), 3 seeds: where
    the study's setting comes from."""
    case = "sobolev.jenn_settings"
    problem = PROBLEMS[0]
    n, seeds = (10, (0,)) if ctx.smoke else (80, (0, 1, 2))
    alphas, iters = ((0.05, 0.002), (5, 10)) if ctx.smoke else JENN_GRID
    name = f"jenn's settings on {problem.name}, N = {n}"
    if jenn is None:
        return [ctx.row(case, name, "jenn", note="jenn not installed (pip install -e '.[bench]')")]
    test = test_set(problem)
    cells: dict[tuple[float, int], list[Fit]] = {}
    for seed in seeds:
        X = problem.sample(n, np.random.default_rng((seed, n)))
        y, G = problem.fn(X)
        for alpha in alphas:
            for it in iters:
                cells.setdefault((alpha, it), []).append(
                    fit_jenn(problem, X, y, G, seed, test, {"alpha": alpha, "max_iter": it}))
    lines = ["| alpha | max_iter | median RMSE | median fit time |", "|---|---|---|---|"]
    lines += [f"| {a:g} | {it} | {med_rmse(f):.3g} | {seconds_text(med_seconds(f))} |"
              for (a, it), f in cells.items()]
    best = min(cells, key=lambda k: med_rmse(cells[k]))
    chosen = (JENN_SETTINGS["alpha"], JENN_SETTINGS["max_iter"])
    text = (f"Lowest median RMSE in this grid: alpha {best[0]:g}, max_iter {best[1]}; the study "
            f"uses alpha {chosen[0]:g}, max_iter {chosen[1]} (jenn's defaults: alpha 0.05, "
            "max_iter 1000).")
    ctx.add_table(f"jenn settings: {problem.name} {problem.tag()}, N = {n}, seeds "
                  f"{seeds[0]}..{seeds[-1]}, with derivatives", "\n".join(lines) + "\n\n" + text)
    console("\n".join(lines) + "\n" + text)
    return [ctx.row(case, name, f"best: alpha {best[0]:g}, max_iter {best[1]}",
                    status="ok" if ctx.smoke else "—", note=text)]


# --------------------------------------------------------------------------- cases
def cases(smoke: bool) -> list[Case]:
    """Every case of the suite (``smoke`` picks the tiny sizes inside each)."""
    out = [Case("sobolev.jenn_settings", jenn_grid_case)]
    out += [Case(f"sobolev.{p.key}", partial(study_case, problem=p)) for p in PROBLEMS]
    return out
