"""Suite "training": Levenberg-Marquardt, L-BFGS and Adam on function approximation, float64.

1. A study over 30 seeds (0..29) of three problems: sin on [-pi, pi] with 1-5-1 tanh
   (MathWorks' comparison of training functions, goal MSE 0.002), sinc(10x) on [-1, 1]
   with 1-20-1 tanh, N = 1000 (goal 1e-6), and a 2-input 2-output surface with 2-30-2
   tanh. Each seed trains LM, L-BFGS and Adam from the same initial weights, interleaved
   (seed 0: LM, L-BFGS, Adam; seed 1: ...) so a noisy neighbour slows all alike; the
   section gets one table per problem: success rate, median epochs, median wall time
   with its IQR, median time to the goal, median final MSE.
2. LM as a user calls it, ``MLPRegressor(solver="lm", goal=1e-6)`` (the goal in the data's
   units), against the package ``torch-levenberg-marquardt`` on sinc: same goal, seeds, N,
   dtype and threads; time to the goal; and its time per epoch against the epoch's floor
   (one forward pass, a write over J, syrk, the Cholesky solves, each timed alone).
3. Bayesian regularization's epoch against LM's on the same network (sinc, and a 10-20-1
   problem).
4. The peak memory of LM on N = 10^6 samples, measured in a fresh interpreter, against
   the data's bytes, O(P^2 + chunk·P) and the bytes that all of J would take.
5. A user's ``jacnet train`` on a 50,000-row CSV: the share of the run that reading,
   encoding and dividing the table take.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import jacnet as jn

from ._harness import (
    REPO_ROOT,
    Case,
    Context,
    Row,
    Timing,
    console,
    measure,
    profile_top,
    seconds_text,
)

TITLE = "Training: Levenberg-Marquardt, L-BFGS and Adam (float64)"
DESCRIPTION = """\
Three function-approximation problems, 30 seeds each (seeds 0..29: the seed draws the
initial weights, Glorot-uniform, biases 0, and every solver of a seed starts from the same
weights), float64, `loss="mse"` (jacnet's mse is the sum of squared errors over the outputs
divided by the number of samples). A run succeeds when it stops with `stop_reason == "goal"`.

- **sin**: x = 41 evenly spaced points on [-π, π], t = sin x; 1-5-1 tanh with a linear
  output (P = 16); goal MSE 0.002 (the SIN problem of MathWorks' "Choose a multilayer
  neural network training function"; N = 41 is our choice).
- **sinc**: x = 1000 evenly spaced points on [-1, 1], t = sin(10x)/(10x); 1-20-1 tanh
  (P = 61); goal MSE 1e-6.
- **surface**: a 20 × 20 grid on [-1, 1]² (N = 400), t = (sin(πx₁)cos(πx₂),
  x₁x₂ + 0.5 tanh(2x₂)); 2-30-2 tanh (P = 152); goal MSE 1e-5 (sum over both outputs,
  per sample).

Solvers (every other setting at jacnet's default):

- **LM**: `solver="lm"` with trainlm's defaults (mu 1e-3, mu_dec 0.1, mu_inc 10, mu_max 1e10,
  min_grad 1e-7), `max_epochs=1000`.
- **L-BFGS**: `solver="lbfgs"` (scipy L-BFGS-B, exact gradients), `min_grad=0`, `tol=1e-15`
  (so that only the goal or the budget stops it), `max_epochs=5000`, `max_fun=15000`,
  `time_limit=2` s.
- **Adam**: `solver="adam"`, full batch (`batch_size=None`), `lr=0.01`, `max_epochs=5000`,
  `time_limit=2` s.

Wall time is `time.perf_counter()` around `jacnet.train` (building the network excluded),
after one untimed warm-up run of every solver on every problem. Medians and IQRs of the
epochs and wall times are over all 30 seeds (a failed seed counts with the epochs and time
it used up); "time to goal" is the median over the successful seeds only. The final MSE is
recomputed on the data after training.

The torch-levenberg-marquardt comparison (through `MLPRegressor`, 10 seeds), Bayesian
regularization's epoch against LM's, the peak-memory measurement and the command line's run
are described in the notes under their rows. The target on each problem is the issue's aim,
LM reaching the goal in at least 90% of the seeds."""

#: How this suite times (the run's "mode" line): it does not use Context.measure.
MODE = ("one timed run per seed (a study), after one untimed warm-up run of every solver on "
        "every problem; against torch-levenberg-marquardt the two run back to back seed by "
        "seed; medians and IQRs over the seeds")

Array = np.ndarray

SEEDS = (tuple(range(30)), (0,))  # (full, smoke)


# ------------------------------------------------------------------------- problems
def sin_data(n: int) -> tuple[Array, Array]:
    """``n`` evenly spaced points on [-pi, pi] and ``sin x``, each (n, 1)."""
    x = np.linspace(-np.pi, np.pi, n)[:, None]
    return x, np.sin(x)


def sinc_data(n: int) -> tuple[Array, Array]:
    """``n`` evenly spaced points on [-1, 1] and ``sin(10x)/(10x)`` (1 at 0), each (n, 1)."""
    x = np.linspace(-1.0, 1.0, n)[:, None]
    return x, np.sinc(10.0 * x / np.pi)  # numpy's sinc is sin(pi u)/(pi u)


def surface_data(n: int) -> tuple[Array, Array]:
    """A ``side x side`` grid on [-1, 1]^2 (``side = round(sqrt(n))``), two smooth outputs."""
    side = max(2, round(math.sqrt(n)))
    g = np.linspace(-1.0, 1.0, side)
    x1, x2 = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    T = np.stack([np.sin(np.pi * x1) * np.cos(np.pi * x2), x1 * x2 + 0.5 * np.tanh(2 * x2)], 1)
    return np.stack([x1, x2], axis=1), T


@dataclass(frozen=True)
class Problem:
    """A data set, a network shape and the goal every solver is asked to reach."""

    key: str
    widths: tuple[int, ...]
    goal: float
    data: Callable[[int], tuple[Array, Array]]
    n: tuple[int, int]  # samples: (full, smoke)

    def tag(self) -> str:
        return "-".join(map(str, self.widths))


PROBLEMS = (
    Problem("sin", (1, 5, 1), 0.002, sin_data, (41, 41)),
    Problem("sinc", (1, 20, 1), 1e-6, sinc_data, (1000, 100)),
    Problem("surface", (2, 30, 2), 1e-5, surface_data, (400, 64)),
)


def make_network(widths: Sequence[int], seed: int) -> jn.Network:
    """tanh hidden layers, a linear output, float64, weights drawn from ``seed``."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    layers = [jn.Dense(a, b, "tanh") for a, b in pairs[:-1]]
    layers.append(jn.Dense(*pairs[-1], "identity"))
    return jn.Network(layers, seed=seed, dtype=np.float64)


# -------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class Solver:
    """A solver's name and the options of ``jacnet.train`` (full, smoke)."""

    name: str
    options: dict[str, Any]
    smoke: dict[str, Any] = field(default_factory=dict)

    def settings(self, smoke: bool) -> dict[str, Any]:
        return {**self.options, **(self.smoke if smoke else {})}


BUDGET_S = 2.0  # time limit per run of L-BFGS and Adam
SOLVERS = (
    Solver("LM", {"solver": "lm", "max_epochs": 1000, "min_grad": 1e-7}, {"max_epochs": 30}),
    Solver(
        "L-BFGS",
        {"solver": "lbfgs", "max_epochs": 5000, "min_grad": 0.0, "tol": 1e-15,
         "time_limit": BUDGET_S},
        {"max_epochs": 30},
    ),
    Solver(
        "Adam",
        {"solver": "adam", "lr": 0.01, "batch_size": None, "shuffle": False,
         "max_epochs": 5000, "time_limit": BUDGET_S},
        {"max_epochs": 30},
    ),
)


@dataclass(frozen=True)
class Outcome:
    """One training run: wall seconds, epochs, final MSE, whether the goal was reached."""

    seconds: float
    epochs: int
    mse: float
    reached: bool


def train_once(problem: Problem, solver: Solver, seed: int, X: Array, T: Array,
               smoke: bool) -> Outcome:
    """Train a fresh network from ``seed``'s weights; time ``jacnet.train`` alone."""
    net = make_network(problem.widths, seed)
    options = solver.settings(smoke)
    gc.collect()
    t0 = time.perf_counter()
    rec = jn.train(net, X, T, loss="mse", goal=problem.goal, seed=seed, **options)
    seconds = time.perf_counter() - t0
    mse = net.loss(X, T, "mse")
    if not math.isfinite(mse):
        raise AssertionError(f"{solver.name} on {problem.key}, seed {seed}: final MSE {mse}")
    return Outcome(seconds, rec.n_epochs, mse, rec.stop_reason == "goal")


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def study_table(problem: Problem, n: int, results: dict[str, list[Outcome]]) -> str:
    """The markdown table of one problem: one line per solver."""
    lines = [
        "| solver | success | median epochs (IQR) | median wall time (IQR) "
        "| time to goal (successes) | median final MSE |",
        "|---|---|---|---|---|---|",
    ]
    for name, outs in results.items():
        ok = [o for o in outs if o.reached]
        secs = [o.seconds for o in outs]
        epochs = [float(o.epochs) for o in outs]
        lines.append(
            f"| {name} | {len(ok)}/{len(outs)} ({100 * len(ok) / len(outs):.0f}%) "
            f"| {_median(epochs):.0f} ({_iqr(epochs):.0f}) "
            f"| {seconds_text(_median(secs))} ({seconds_text(_iqr(secs))}) "
            f"| {seconds_text(_median([o.seconds for o in ok]))} "
            f"| {_median([o.mse for o in outs]):.3g} |"
        )
    return "\n".join(lines)


def study_case(ctx: Context, problem: Problem) -> list[Row]:
    """All seeds of one problem, every solver per seed; a table and the LM success row."""
    case = f"training.study.{problem.key}"
    n = problem.n[1 if ctx.smoke else 0]
    X, T = problem.data(n)
    n = X.shape[0]
    seeds = SEEDS[1 if ctx.smoke else 0]
    results: dict[str, list[Outcome]] = {s.name: [] for s in SOLVERS}
    for solver in SOLVERS:  # untimed warm-up: first-call costs (imports, caches)
        jn.train(make_network(problem.widths, 0), X, T, loss="mse",
                 **{**solver.settings(ctx.smoke), "max_epochs": 3})
    for seed in seeds:
        for solver in SOLVERS:
            results[solver.name].append(train_once(problem, solver, seed, X, T, ctx.smoke))
    net = make_network(problem.widths, 0)
    title = (f"{problem.key}: {problem.tag()} tanh (P = {net.n_params}), N = {n}, "
             f"goal MSE {problem.goal:g}, seeds {seeds[0]}..{seeds[-1]}")
    table = study_table(problem, n, results)
    ctx.add_table(title, table)
    console(f"  {title}\n{table}")
    lm = results["LM"]
    hits = sum(o.reached for o in lm)
    rate = hits / len(lm)
    status = "ok" if ctx.smoke else ("pass" if rate >= 0.9 else "miss")
    others = ", ".join(
        f"{name} {sum(o.reached for o in outs)}/{len(outs)}"
        for name, outs in results.items() if name != "LM"
    )
    return [
        ctx.row(
            case,
            f"{problem.key} {problem.tag()} (N={n}, goal {problem.goal:g}): LM wall time per seed",
            f"LM reached the goal in {hits}/{len(lm)} seeds ({100 * rate:.0f}%)",
            jacnet=Timing(tuple(o.seconds for o in lm)),
            target_label="LM success ≥ 90%",
            status=status,
            note=f"goal reached by {others} (their budgets in the description)",
        )
    ]


# --------------------------------------------------- LM vs torch-levenberg-marquardt
#: ``MLPRegressor`` as a user calls it for LM on sinc: trainlm's defaults, the goal as
#: MATLAB's (the mean squared error in the targets' own units).
LM_ESTIMATOR: dict[str, Any] = {"hidden_layer_sizes": (20,), "activation": "tanh",
                                "solver": "lm"}
TORCH_LM_SEEDS = (tuple(range(10)), (0,))  # (full, smoke)


def fit_estimator(problem: Problem, seed: int, X: Array, y: Array,
                  max_iter: int) -> tuple[Outcome, Any]:
    """``MLPRegressor(solver="lm", goal=...)`` fitted from ``random_state=seed``; its fit
    alone is timed (checks, standardisation, training, the record: what a user waits for)."""
    from sklearn.exceptions import ConvergenceWarning

    est = jn.MLPRegressor(**LM_ESTIMATOR, goal=problem.goal, max_iter=max_iter,
                          random_state=seed)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a short smoke budget
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    mse = float(np.mean((est.predict(X) - y) ** 2))
    if not math.isfinite(mse):
        raise AssertionError(f"MLPRegressor(solver='lm') on {problem.key}, seed {seed}: "
                             f"final MSE {mse}")
    reached = est.training_record_.stop_reason == "goal"
    return Outcome(seconds, est.n_iter_, mse, reached), est


def lm_trials(est: Any) -> list[int]:
    """The Cholesky solves of each of a fitted LM estimator's epochs, read from its record's
    ``mu``: every failed trial multiplied mu by ``mu_inc``, the accepted one by ``mu_dec``."""
    mus = [est.mu, *est.training_record_.column("mu")]
    inc, dec = math.log(est.mu_inc), math.log(est.mu_dec)
    return [max(1, round((math.log(b / a) - dec) / inc) + 1)
            for a, b in zip(mus[:-1], mus[1:], strict=True)]


def lm_epoch_floor(widths: Sequence[int], n: int, trials: float,
                   repeats: int) -> tuple[float, dict[str, Timing]]:
    """The floor of one LM epoch on ``n`` samples of a tanh network ``widths``, each part
    timed alone at the same shapes: one forward pass (BLAS ``gemm`` adding the bias in,
    tanh in place), one write pass over J (``n q`` rows, ``P`` columns, reused as LM reuses
    its buffer), syrk on J (scipy's ``dsyrk``, as the core suite) and ``trials`` Cholesky
    solves (LAPACK's ``potrf`` and ``potrs`` of a P x P system). Returns the floor in
    seconds and the parts."""
    from scipy.linalg import blas, lapack

    from .core import dsyrk_chunks

    rng = np.random.default_rng(0)
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    Ws = [rng.standard_normal((a, b)) / math.sqrt(a) for a, b in pairs]
    bs = [rng.standard_normal(b) for _, b in pairs]
    X = rng.standard_normal((n, widths[0]))
    q, P = widths[-1], sum(a * b + b for a, b in pairs)

    def forward() -> Array:
        h = X
        for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            out = np.empty((n, W.shape[1]))
            out[...] = b
            # (h W + b)^T = W^T h^T + b^T in Fortran order: gemm adds the product to the
            # bias (beta 1), with no copy of the C-ordered h, W and out (numpy's matmul
            # forms a one-input layer's outer product several times slower)
            h = blas.dgemm(1.0, W.T, h.T, beta=1.0, c=out.T, overwrite_c=1).T
            if k < len(Ws) - 1:
                np.tanh(h, out=h)
        return h

    J = np.zeros((n * q, P))

    def fill() -> None:
        J[...] = 1.0

    A = rng.standard_normal((n * q, P))
    M = A.T @ A + np.eye(P)
    r = A.T @ rng.standard_normal(n * q)

    def cholesky() -> Array:
        factor, info = lapack.dpotrf(M, lower=0, clean=0, overwrite_a=0)
        return lapack.dpotrs(factor, r, lower=0)[0]

    parts = measure({"forward": forward, "J fill": fill, "syrk": dsyrk_chunks(n * q, P, n * q),
                     "Cholesky solve": cholesky}, repeats=repeats, pause=0.0)
    floor = sum(t.median for name, t in parts.items() if name != "Cholesky solve")
    return floor + trials * parts["Cholesky solve"].median, parts


def torch_lm_case(ctx: Context) -> list[Row]:
    """``MLPRegressor(solver="lm")`` on sinc against ``torch_levenberg_marquardt``, seed by
    seed, interleaved; and jacnet's epoch against its floor."""
    case = "training.torch_lm.sinc"
    problem = PROBLEMS[1]
    n = problem.n[1 if ctx.smoke else 0]
    seeds = TORCH_LM_SEEDS[1 if ctx.smoke else 0]
    max_epochs = SOLVERS[0].settings(ctx.smoke)["max_epochs"]
    name = (f"sinc 1-20-1 (N={n}, goal MSE {problem.goal:g}): `MLPRegressor(solver=\"lm\")` "
            "wall time to goal per seed")
    peer = "torch-levenberg-marquardt"
    X, T = sinc_data(n)
    y = T.ravel()
    torch_run = _torch_lm_runner(ctx, problem, X, T)
    fit_estimator(problem, 0, X, y, 3)  # untimed warm-up: first-call costs
    ours: list[Outcome] = []
    theirs: list[Outcome] = []
    trials: list[int] = []
    for seed in seeds:
        outcome, est = fit_estimator(problem, seed, X, y, max_epochs)
        ours.append(outcome)
        trials += lm_trials(est)
        if torch_run is not None:
            theirs.append(torch_run(seed, max_epochs))
    # Where jacnet's LM time goes, for the row's note: one seed under cProfile (its
    # overhead inflates the total; the shares are what matter).
    est = jn.MLPRegressor(**LM_ESTIMATOR, goal=problem.goal, max_iter=max_epochs,
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short smoke budget's ConvergenceWarning
        profile = profile_top(lambda: est.fit(X, y), k=8)
    tables = {"jacnet `MLPRegressor(solver=\"lm\")`": ours}
    if theirs:
        tables["torch-levenberg-marquardt"] = theirs
    table = study_table(problem, n, tables)
    per_epoch = [[o.seconds / max(o.epochs, 1) for o in outs] for outs in tables.values()]
    ctx.add_table(
        f"sinc: jacnet LM (`MLPRegressor`) vs torch-levenberg-marquardt, N = {n}, "
        f"goal MSE {problem.goal:g} in the data's units",
        table + "\n\nMedian time per epoch: " + ", ".join(
            f"{label} {seconds_text(_median(times))}"
            for label, times in zip(tables, per_epoch, strict=True)) + ".",
    )
    console(table)
    rows = [_torch_lm_row(ctx, case, name, peer, ours, theirs, max_epochs, profile)]
    mean_trials = statistics.fmean(trials) if trials else 1.0
    floor, parts = lm_epoch_floor(problem.widths, n, mean_trials, ctx.repeats)
    rows.append(ctx.row(
        case,
        f"sinc 1-20-1 (N={n}): `MLPRegressor(solver=\"lm\")` time per epoch (fit time over "
        "epochs, per seed)",
        "the epoch's floor: one forward pass, J fill, syrk, Cholesky solves",
        jacnet=Timing(tuple(per_epoch[0])),
        peer_time=Timing((floor,)),
        target=1 / 3,
        target_label="≤ 3x the floor (ratio ≥ 0.333x)",
        note=("the floor is the sum of its parts, each timed alone at the same shapes: "
              + "; ".join(f"{k} {t.describe()}" for k, t in parts.items())
              + f"; the Cholesky solve counted {mean_trials:.2f} times, the mean number of "
              "trials per epoch of jacnet's runs (from their records' mu); jacnet's epoch "
              "runs a forward pass per trial (the loss at the trial's weights), and the "
              "goal's MSE and scikit-learn's loss in the data's units take the accepted "
              "trial's outputs"),
    ))
    return rows


def _torch_lm_runner(ctx: Context, problem: Problem, X: Array, T: Array
                     ) -> Callable[[int, int], Outcome] | None:
    """``run(seed, epochs)``: the peer from ``seed``'s weights (:func:`make_network`), timed,
    or None without torch or torch-levenberg-marquardt. Calibrates the peer's loss to the
    mean squared error once (untimed warm-up)."""
    if ctx.torch is None:
        return None
    try:
        import torch_levenberg_marquardt as tlm
    except ImportError:
        return None
    torch, n = ctx.torch, X.shape[0]
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(T)

    def peer_mse(model: Any) -> float:
        with torch.no_grad():
            return float(((model(Xt) - Tt) ** 2).sum()) / n

    def run(seed: int, epochs: int) -> Outcome:
        net = make_network(problem.widths, seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(1, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1)
        ).to(torch.float64)
        with torch.no_grad():  # the same initial weights; torch keeps W as (out, in)
            for lin, layer in zip((model[0], model[2]), net.layers, strict=True):
                lin.weight.copy_(torch.from_numpy(layer.W.T))
                lin.bias.copy_(torch.from_numpy(layer.b))
        module = tlm.training.LevenbergMarquardtModule(model=model, loss_fn=tlm.loss.MSELoss())
        gc.collect()
        t0 = time.perf_counter()
        reached, done = False, 0
        for done in range(1, epochs + 1):  # noqa: B007  (done is read after the loop)
            _, loss, stop, _ = module.training_step(Xt, Tt)
            if scale[0] * float(loss) <= problem.goal:
                reached = True
                break
            if stop:
                break
        seconds = time.perf_counter() - t0
        last[0] = (float(loss), peer_mse(model))
        return Outcome(seconds, done, last[0][1], reached)

    # The loss the peer returns is its MSELoss at the accepted weights; its scale
    # relative to the mean squared error is read once here (untimed warm-up: torch's
    # dispatcher, vmap and jacrev caches), so the timed loop needs no extra forward pass.
    scale, last = [1.0], [(1.0, 1.0)]
    run(0, 3)
    scale[0] = last[0][1] / last[0][0]
    if not 0.1 <= scale[0] <= 10:
        raise AssertionError(f"the peer's loss is {1 / scale[0]:.3g} x the mse")
    return run


def _torch_lm_row(ctx: Context, case: str, name: str, peer: str, ours: list[Outcome],
                  theirs: list[Outcome], max_epochs: int, profile: str) -> Row:
    """The time-to-goal row against torch-levenberg-marquardt (a note when it is missing)."""
    if not theirs:
        return ctx.row(case, name, peer, jacnet=Timing(tuple(o.seconds for o in ours)),
                       note=ctx.torch_note or "torch-levenberg-marquardt not installed")
    hits = [sum(o.reached for o in outs) for outs in (ours, theirs)]
    # Each seed's two runs are back to back, so their ratio is free of the machine's
    # drift across the suite; reported beside the ratio of medians that the target reads.
    paired = sorted(b.seconds / a.seconds for a, b in zip(ours, theirs, strict=True))
    return ctx.row(
        case,
        name,
        f"{peer} (same seeds)",
        jacnet=Timing(tuple(o.seconds for o in ours)),
        peer_time=Timing(tuple(o.seconds for o in theirs)),
        target=5.0,
        note=(
            f"goal reached by jacnet in {hits[0]}/{len(ours)} seeds, by the peer in "
            f"{hits[1]}/{len(theirs)}; a seed that misses counts with the time it used "
            f"(at most {max_epochs} epochs each). jacnet as a user calls it: "
            "`MLPRegressor(hidden_layer_sizes=(20,), activation=\"tanh\", solver=\"lm\", "
            "goal=1e-6, random_state=seed).fit(x, t)` on the raw data (it standardises "
            "inputs and targets inside the model and draws scikit-learn's initial weights "
            "from the seed); the peer from the weights of `make_network(seed)` on the same "
            "raw data. Seed by seed (the two runs back to back), peer time over jacnet time: "
            f"median {_median(paired):.2f}x, range {paired[0]:.2f}-{paired[-1]:.2f}x. Peer: "
            "`LevenbergMarquardtModule` with its defaults (MSELoss, StandardDampingStrategy, "
            "learning_rate 1, 10 attempts per step, solve_method 'qr'), full batch, one "
            "`training_step` per epoch, stopped when the loss it returns reaches the goal. "
            "jacnet, seed 0, " + profile
        ),
    )


# ------------------------------------------------ Bayesian regularization vs LM, per epoch
def sines_data(n: int) -> tuple[Array, Array]:
    """``n`` points drawn uniformly on [-1, 1]^10 (seeded) and a smooth sum of their sines
    with a little noise (Bayesian regularization's use case), (n, 10) and (n, 1)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (n, 10))
    t = np.sin(np.pi * X).sum(axis=1) / math.sqrt(10) + 0.05 * rng.standard_normal(n)
    return X, t[:, None]


BR_PROBLEMS = (
    PROBLEMS[1],
    Problem("sines10", (10, 20, 1), 0.0, sines_data, (1000, 100)),
)
BR_EPOCHS = (100, 5)  # (full, smoke): epochs per run, the same for both solvers
BR_SEEDS = (tuple(range(5)), (0,))


def br_lm_case(ctx: Context, problem: Problem) -> list[Row]:
    """Bayesian regularization's epoch against LM's, seed by seed, on the same network."""
    case = f"training.br_lm.{problem.key}"
    n = problem.n[1 if ctx.smoke else 0]
    X, T = problem.data(n)
    epochs = BR_EPOCHS[1 if ctx.smoke else 0]
    seeds = BR_SEEDS[1 if ctx.smoke else 0]
    net = make_network(problem.widths, 0)

    def run(solver: str, seed: int, max_epochs: int) -> float:
        """Seconds per epoch of ``jacnet.train`` (building the network excluded)."""
        net = make_network(problem.widths, seed)
        gc.collect()
        t0 = time.perf_counter()
        rec = jn.train(net, X, T, solver=solver, loss="sse", max_epochs=max_epochs,
                       min_grad=0.0, seed=seed)
        return (time.perf_counter() - t0) / max(rec.n_epochs, 1)

    for solver in ("lm", "br"):  # untimed warm-up
        run(solver, 0, 3)
    times: dict[str, list[float]] = {"lm": [], "br": []}
    for seed in seeds:
        for solver in times:
            times[solver].append(run(solver, seed, epochs))
    extra = _br_linear_algebra(net.n_params)
    gap = float(np.median(times["br"]) - np.median(times["lm"]))
    return [ctx.row(
        case,
        f"{problem.key} {problem.tag()} (N={n}, P={net.n_params}): `br` time per epoch",
        "`lm` time per epoch, same network, data and initial weights",
        jacnet=Timing(tuple(times["br"])),
        peer_time=Timing(tuple(times["lm"])),
        target=1 / 1.5,
        target_label="≤ 1.5x LM's epoch (ratio ≥ 0.667x)",
        note=(f"`jacnet.train(net, X, T, solver=..., loss=\"sse\", max_epochs={epochs}, "
              f"min_grad=0)` per seed ({seeds[0]}..{seeds[-1]}), the two solvers back to back; "
              "time per epoch is the run's wall time over its recorded epochs (either may "
              "stop earlier, at mu_max). What br adds to LM's epoch: after the accepted "
              "step, a Cholesky of beta JᵀJ + alpha I and the inverse of its triangular "
              "factor (for gamma's trace and the evidence), the P³ work that LM has not; "
              f"those two alone, timed at P = {net.n_params}: {extra * 1e6:.0f} µs, against "
              f"a measured gap of {gap * 1e6:.0f} µs per epoch between the medians"),
    )]


def _br_linear_algebra(P: int, repeats: int = 31) -> float:
    """Median seconds of one Cholesky and one triangular inverse of a P x P SPD matrix."""
    from scipy.linalg import cho_factor
    from scipy.linalg.lapack import dtrtri

    rng = np.random.default_rng(0)
    A = rng.standard_normal((2 * P, P))
    M = A.T @ A + np.eye(P)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c, _ = cho_factor(M.copy(), lower=True, check_finite=False)
        dtrtri(c, lower=1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ------------------------------------------------- a user's `jacnet train` on a CSV
CLI_ROWS = (50_000, 2_000)  # (full, smoke)
CLI_EPOCHS = (5, 1)


def write_table(path: Path, n: int) -> None:
    """A CSV of ``n`` rows: 10 numeric feature columns, 3 text ones (4, 5 and 3
    categories) and a numeric target ``y`` that depends on both kinds."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 10))
    colour = np.array(["red", "green", "blue", "yellow"])[rng.integers(0, 4, n)]
    region = np.array(["north", "south", "east", "west", "centre"])[rng.integers(0, 5, n)]
    grade = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + (colour == "red") - 0.3 * (grade == "C")
         + 0.1 * rng.standard_normal(n))
    import pandas as pd

    frame = pd.DataFrame({f"x{j}": X[:, j] for j in range(10)})
    frame["colour"], frame["region"], frame["grade"], frame["y"] = colour, region, grade, y
    frame.to_csv(path, index=False)


def cli_case(ctx: Context) -> list[Row]:
    """``jacnet train`` through its entry point, in this process; its record's timings."""
    from jacnet.cli import main

    case = "training.cli.csv"
    n, epochs = CLI_ROWS[1 if ctx.smoke else 0], CLI_EPOCHS[1 if ctx.smoke else 0]
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        write_table(path, n)

        def train(out: str, epochs: int) -> dict[str, Any]:
            args = ["train", str(path), "--target", "y", "--epochs", str(epochs), "--quiet",
                    "--out", str(Path(tmp) / out)]
            try:
                main(args)
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise AssertionError(f"jacnet {' '.join(args)} exited with {exc.code}"
                                         ) from None
            return dict(json.loads((Path(tmp) / out / "record.json").read_text()))

        train("warm-up", 1)  # untimed: first-call costs (imports, plots)
        for k in range(1 if ctx.smoke else ctx.repeats):
            doc = train(f"run{k}", epochs)
            runs.append(doc["timings"])
        model, stop = doc["model"], doc["stop_reason"]
    phases = ("data_s", "setup_s", "train_s", "evaluate_save_s", "plots_s")
    shares = "; ".join(
        f"{p[:-2].replace('_', ' and ')} {seconds_text(_median([r[p] for r in runs]))}"
        for p in phases)
    return [ctx.row(
        case,
        f"`jacnet train` on a {n:,}-row CSV (10 numeric, 3 text columns): reading, "
        "encoding and dividing the table",
        "the whole run (its record's total)",
        jacnet=Timing(tuple(r["data_s"] for r in runs)),
        peer_time=Timing(tuple(r["total_s"] for r in runs)),
        target=10.0,
        target_label="≤ 10% of the run (ratio ≥ 10x)",
        note=(f"`jacnet.cli.main([\"train\", data.csv, \"--target\", \"y\", \"--epochs\", "
              f"\"{epochs}\", \"--quiet\", \"--out\", ...])` in this process after one "
              "untimed run; every other setting at its default (a "
              f"{' -> '.join(map(str, model['layers']))} network, solver {model['solver']}, "
              f"stop: {stop}); the phases, as the run's record.json times them (medians): "
              f"{shares}"),
    )]


# ------------------------------------------------------------------ peak memory of LM
MEMORY_SCRIPT = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
import jacnet as jn
n, widths = int(sys.argv[1]), json.loads(sys.argv[2])
chunk, epochs = int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
X = rng.uniform(-1.0, 1.0, (n, widths[0]))
T = np.sin(np.pi * X).sum(axis=1, keepdims=True)
pairs = list(zip(widths[:-1], widths[1:]))
layers = [jn.Dense(a, b, "tanh") for a, b in pairs[:-1]] + [jn.Dense(*pairs[-1], "identity")]
net = jn.Network(layers, seed=0)
# warm-up on 2,000 rows (chunks big enough for the compiled J fill): numba's import and
# compiler allocate Python objects that tracemalloc would count as the fit's memory
warm = jn.Network([jn.Dense(a, b, layer.activation) for (a, b), layer in zip(pairs, layers)],
                  seed=1)
jn.train(warm, X[:2000], T[:2000], solver="lm", loss="mse", max_epochs=1, min_grad=0.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tracemalloc.start()
t0 = time.perf_counter()
rec = jn.train(net, X, T, solver="lm", loss="mse", max_epochs=epochs, min_grad=0.0, chunk=chunk)
seconds = time.perf_counter() - t0
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"P": net.n_params, "data": X.nbytes + T.nbytes, "traced_peak": peak,
                  "rss_before": before, "rss_after": after, "epochs": rec.n_epochs,
                  "seconds": seconds, "loss": rec.column("loss")[-1]}))
"""


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f} MiB"


def memory_case(ctx: Context, n: int, widths: tuple[int, ...], chunk: int,
                epochs: int) -> list[Row]:
    """LM's peak memory on ``n`` samples in a fresh interpreter (tracemalloc and ru_maxrss)."""
    case = "training.memory.lm"
    tag = "-".join(map(str, widths))
    name = f"LM peak memory, {tag} on N = {n:,} samples, chunk {chunk}"
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(ctx.threads),
               OMP_NUM_THREADS=str(ctx.threads))
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(n), json.dumps(list(widths)), str(chunk),
         str(epochs)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{case}: the measuring interpreter failed:\n{proc.stderr}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    P, q = m["P"], widths[-1]
    j_bytes = n * q * P * 8
    model = P * P * 8 + chunk * q * P * 8
    traced, rss = m["traced_peak"], max(0, m["rss_after"] - m["rss_before"])
    bound = 2 * m["data"] + 8 * model  # see the note: the data again, plus a small multiple
    ok = traced <= bound and traced < j_bytes / 2
    ctx.add_table(
        f"LM peak memory: {tag} (P = {P}), N = {n:,}, chunk {chunk}, {m['epochs']} epochs "
        f"in {m['seconds']:.1f} s",
        "\n".join([
            "| quantity | bytes |",
            "|---|---|",
            f"| data X, T (float64) | {_mib(m['data'])} |",
            f"| P² + chunk·q·P (float64): JᵀJ and one chunk of J | {_mib(model)} |",
            f"| all of J, N·q·P (float64): what holding J would take | {_mib(j_bytes)} |",
            f"| **measured**: peak of numpy allocations during `train` (tracemalloc) "
            f"| **{_mib(traced)}** |",
            f"| measured: growth of the peak resident set during `train` (ru_maxrss) "
            f"| {_mib(rss)} |",
        ]),
    )
    status = "ok" if ctx.smoke else ("pass" if ok else "miss")
    return [
        ctx.row(
            case,
            name,
            f"peak {_mib(traced)} above the data; all of J would be {_mib(j_bytes)}",
            target_label="≤ 2·data + 8·(P² + chunk·q·P)",
            status=status,
            note=(
                f"fresh interpreter, {epochs} LM epochs with `chunk={chunk}`, min_grad 0, "
                "after a one-epoch warm-up fit on 2,000 rows (which loads the compiled "
                "kernels: numba's import and compiler allocate Python objects that "
                "tracemalloc would otherwise count, 28.7 MiB when measured). "
                "tracemalloc counts numpy's allocations made during `train` (the data, "
                f"{_mib(m['data'])}, was allocated before); `train` copies the training set "
                "once and keeps outputs and residuals of the data's size, hence the bound "
                f"2·data + a small multiple of P² + chunk·q·P = {_mib(bound)}"
            ),
        )
    ]


# --------------------------------------------------------------------------- cases
def cases(smoke: bool) -> list[Case]:
    """Every case of the suite; ``smoke`` picks the tiny sizes."""
    out = [Case(f"training.study.{p.key}", partial(study_case, problem=p)) for p in PROBLEMS]
    out.append(Case("training.torch_lm.sinc", torch_lm_case))
    out += [Case(f"training.br_lm.{p.key}", partial(br_lm_case, problem=p)) for p in BR_PROBLEMS]
    out.append(Case("training.cli.csv", cli_case))
    if smoke:
        memory = partial(memory_case, n=5_000, widths=(1, 20, 1), chunk=500, epochs=2)
    else:
        memory = partial(memory_case, n=1_000_000, widths=(1, 20, 1), chunk=10_000, epochs=3)
    out.append(Case("training.memory.lm", memory))
    return out
