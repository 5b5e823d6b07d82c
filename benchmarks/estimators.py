"""Suite "estimators": jacnet's scikit-learn estimators against scikit-learn's MLP.

On scikit-learn's bundled datasets, with the same architecture, solver, iteration budget,
splits and seeds on both sides, the held-out score of ``jacnet.MLPClassifier`` /
``jacnet.MLPRegressor`` against ``sklearn.neural_network``'s, mean ± sd over seeds, and a
pass when jacnet's mean is not below scikit-learn's beyond the noise of the two means.
``solver="lm"`` (which scikit-learn lacks) is compared with scikit-learn's lbfgs and adam on
the regression sets. Fit wall times are reported for information, with no target.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import sklearn.neural_network as sknn
from sklearn import datasets
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import jacnet as jn

from ._harness import Case, Context, MismatchError, Row, Timing

TITLE = "scikit-learn drop-in: held-out scores against scikit-learn's MLP"

#: Seeds in full and smoke mode; seed k is the split's and both models' random_state.
N_SEEDS = (5, 1)
#: scikit-learn's default budget; smoke mode cuts it to a few epochs.
MAX_ITER = (200, 15)
#: Levenberg-Marquardt's budget (iterations), full and smoke.
LM_MAX_ITER = (100, 5)
HIDDEN = (100,)
#: The small LM network: (100,) has more weights than diabetes/linnerud have targets.
LM_SMALL = (10,)
#: trainlm's division and patience: 15% validation, stop after 6 failures (n_iter_no_change+1).
LM_SETTINGS: dict[str, Any] = {
    "early_stopping": True,
    "validation_fraction": 0.15,
    "n_iter_no_change": 5,
}
#: Pass when mean_jacnet >= mean_sklearn - Z * sqrt(sd_j^2/n + sd_s^2/n).
Z = 2.0

DESCRIPTION = f"""\
Held-out score of `jacnet.MLPClassifier` (accuracy) and `jacnet.MLPRegressor` (R², uniform
average over outputs) against `sklearn.neural_network`'s on scikit-learn's bundled datasets.
Both sides get the same architecture ({HIDDEN} ReLU), the same solver and iteration budget
(`max_iter={MAX_ITER[0]}`, every other parameter at its default: Adam at lr 1e-3, batch
min(200, n), alpha 1e-4, tol 1e-4, n_iter_no_change 10), the same seeds
(random_state 0..{N_SEEDS[0] - 1} for the split and for both models) and the same
preprocessing: `Pipeline(StandardScaler(), estimator)`, and for regression the estimator
wrapped in `TransformedTargetRegressor(transformer=StandardScaler())`. Split:
`train_test_split(test_size=0.25, random_state=seed)`, stratified for classification;
linnerud (20 samples) uses `KFold(5, shuffle=True, random_state=seed)` instead and scores
the 20 pooled out-of-fold predictions. Each row gives mean ± sd over the
{N_SEEDS[0]} seeds. **Rule:** pass when
mean_jacnet ≥ mean_sklearn − {Z:g}·sqrt(sd_jacnet²/{N_SEEDS[0]} + sd_sklearn²/{N_SEEDS[0]})
(jacnet is not below scikit-learn by more than {Z:g} standard errors of the difference).
`solver="lm"` (Levenberg-Marquardt, which scikit-learn lacks) runs at most
{LM_MAX_ITER[0]} iterations with trainlm's early stopping (15% of the training set held out
for validation, stop after 6 validation failures, best weights restored); it is compared
with scikit-learn's lbfgs and adam on the same {HIDDEN} network, and a second, clearly
labelled LM row uses a smaller {LM_SMALL} network (still compared with scikit-learn's
{HIDDEN}). The jacnet/peer columns are fit wall times over the seeds (information only,
no target); "ratio" is scikit-learn's median fit time over jacnet's (above 1: jacnet fits
faster). A rule cannot remove noise: with 5 seeds a small true difference can go either
way, and linnerud's scores swing widely."""

#: How this suite times (the run's "mode" line): it does not use Context.measure.
MODE = ("one timed fit per seed and model (fit wall time, information only), after one "
        "untimed warm-up fit of each model on each dataset; a model's seeds run one after "
        "another; median over the seeds")

Array = np.ndarray


# ------------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable[..., Any]
    task: str  # "clf" or "reg"
    protocol: str = "holdout"  # or "kfold"

    def arrays(self) -> tuple[Array, Array]:
        X, y = self.load(return_X_y=True)
        return np.asarray(X, dtype=np.float64), np.asarray(y)

    def describe(self) -> str:
        X, y = self.arrays()
        if self.task == "clf":
            return f"{self.name} ({X.shape[0]}×{X.shape[1]}, {len(np.unique(y))} classes)"
        q = 1 if y.ndim == 1 else y.shape[1]
        return f"{self.name} ({X.shape[0]}×{X.shape[1]}, {q} output{'s' if q > 1 else ''})"


DATASETS = {
    "iris": Dataset("iris", datasets.load_iris, "clf"),
    "wine": Dataset("wine", datasets.load_wine, "clf"),
    "breast_cancer": Dataset("breast_cancer", datasets.load_breast_cancer, "clf"),
    "digits": Dataset("digits", datasets.load_digits, "clf"),
    "diabetes": Dataset("diabetes", datasets.load_diabetes, "reg"),
    "linnerud": Dataset("linnerud", datasets.load_linnerud, "reg", protocol="kfold"),
}


# -------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Model:
    """One estimator configuration, on either library."""

    lib: str  # "jacnet" or "sklearn"
    solver: str
    hidden: tuple[int, ...] = HIDDEN
    max_iter: int = MAX_ITER[0]
    extra: tuple[tuple[str, Any], ...] = ()

    def label(self) -> str:
        name = "jacnet" if self.lib == "jacnet" else "scikit-learn"
        return f"{name} {self.solver} {self.hidden}"

    def make(self, task: str, seed: int) -> Pipeline:
        module: Any = jn if self.lib == "jacnet" else sknn
        cls = module.MLPClassifier if task == "clf" else module.MLPRegressor
        est = cls(hidden_layer_sizes=self.hidden, solver=self.solver, max_iter=self.max_iter,
                  random_state=seed, **dict(self.extra))
        if task == "reg":
            est = TransformedTargetRegressor(regressor=est, transformer=StandardScaler())
        return make_pipeline(StandardScaler(), est)


@dataclass
class Result:
    """Scores, fit times and iteration counts over the seeds."""

    scores: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    n_iter: list[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0

    def text(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}"


def _n_iter(pipe: Pipeline) -> int:
    est = pipe[-1]
    est = getattr(est, "regressor_", est)
    return int(est.n_iter_)


def _fit_score(model: Model, data: Dataset, seed: int) -> tuple[float, float, int]:
    """``(score, fit seconds, n_iter_)`` of one seed; k-fold sums the folds' fit times."""
    X, y = data.arrays()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if data.protocol == "kfold":
            pred = np.empty_like(y, dtype=np.float64)
            seconds, iters = 0.0, []
            for tr, te in KFold(5, shuffle=True, random_state=seed).split(X):
                pipe = model.make(data.task, seed)
                t0 = time.perf_counter()
                pipe.fit(X[tr], y[tr])
                seconds += time.perf_counter() - t0
                pred[te] = pipe.predict(X[te])
                iters.append(_n_iter(pipe))
            return float(r2_score(y, pred)), seconds, round(statistics.fmean(iters))
        Xtr, Xte, ytr, yte = train_test_split(
            X, y, test_size=0.25, random_state=seed,
            stratify=y if data.task == "clf" else None)
        pipe = model.make(data.task, seed)
        t0 = time.perf_counter()
        pipe.fit(Xtr, ytr)
        seconds = time.perf_counter() - t0
        return float(pipe.score(Xte, yte)), seconds, _n_iter(pipe)


_MEMO: dict[tuple[Model, str, int], Result] = {}


def evaluate(model: Model, data: Dataset, n_seeds: int) -> Result:
    """The model over seeds 0..n_seeds-1 (memoised: rows share scikit-learn's fits)."""
    key = (model, data.name, n_seeds)
    if key not in _MEMO:
        if n_seeds > 1:  # an untimed warm-up fit (first-call costs); not in smoke mode
            _fit_score(model, data, 0)
        res = Result()
        for seed in range(n_seeds):
            score, seconds, it = _fit_score(model, data, seed)
            res.scores.append(score)
            res.times.append(seconds)
            res.n_iter.append(it)
        _MEMO[key] = res
    return _MEMO[key]


def noise(a: Result, b: Result) -> float:
    """``Z`` standard errors of the difference of the two means (unpaired)."""
    n = len(a.scores)
    return Z * math.sqrt(a.sd**2 / n + b.sd**2 / n)


def verdict(ours: Result, theirs: Result) -> str:
    """``"pass"`` when our mean is not below theirs by more than :func:`noise`."""
    return "pass" if ours.mean >= theirs.mean - noise(ours, theirs) else "miss"


# --------------------------------------------------------------------------- cases
def compare(ctx: Context, case: str, data: Dataset, ours: Model, theirs: Model,
            label: str = "") -> Row:
    """One row: ``ours`` (jacnet) against ``theirs`` (scikit-learn) on ``data``."""
    n = N_SEEDS[1 if ctx.smoke else 0]
    a, b = evaluate(ours, data, n), evaluate(theirs, data, n)
    metric = "accuracy" if data.task == "clf" else "R²"
    if not all(math.isfinite(s) for s in a.scores):
        raise MismatchError(f"{case}: jacnet's {metric} is not finite: {a.scores}")
    name = (f"{data.describe()}, {ours.label()}{label}: {metric} **{a.text()}** vs "
            f"{b.text()}")
    delta = a.mean - b.mean
    note = (f"{metric} jacnet − scikit-learn = {delta:+.3f}, allowed ≥ −{noise(a, b):.3f}; "
            f"per seed jacnet {_fmt(a.scores)}, scikit-learn {_fmt(b.scores)}; "
            f"mean n_iter_ jacnet {statistics.fmean(a.n_iter):.0f}, "
            f"scikit-learn {statistics.fmean(b.n_iter):.0f}")
    return ctx.row(
        case, name, theirs.label(),
        jacnet=Timing(tuple(a.times)), peer_time=Timing(tuple(b.times)),
        status="ok" if ctx.smoke else verdict(a, b),
        target_label=f"{metric} ≥ peer − {Z:g}·SE",
        note=note,
    )


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def dataset_case(ctx: Context, data: Dataset) -> list[Row]:
    i = 1 if ctx.smoke else 0
    budget = MAX_ITER[i]
    case = f"estimators.{data.name}"
    adam = {lib: Model(lib, "adam", max_iter=budget) for lib in ("jacnet", "sklearn")}
    rows = [compare(ctx, case, data, adam["jacnet"], adam["sklearn"])]
    if data.task == "clf":
        return rows
    lbfgs = {lib: Model(lib, "lbfgs", max_iter=budget) for lib in ("jacnet", "sklearn")}
    rows.append(compare(ctx, case, data, lbfgs["jacnet"], lbfgs["sklearn"]))
    lm_extra = tuple(LM_SETTINGS.items())
    for hidden, label in ((HIDDEN, ""), (LM_SMALL, " (smaller network)")):
        lm = Model("jacnet", "lm", hidden=hidden, max_iter=LM_MAX_ITER[i], extra=lm_extra)
        rows += [compare(ctx, case, data, lm, peer, label)
                 for peer in (lbfgs["sklearn"], adam["sklearn"])]
    return rows


SMOKE_DATASETS = ("iris", "diabetes")


def cases(smoke: bool) -> list[Case]:
    """One case per dataset (iris and diabetes only in smoke mode)."""
    names = SMOKE_DATASETS if smoke else tuple(DATASETS)
    return [Case(f"estimators.{name}", partial(dataset_case, data=DATASETS[name]))
            for name in names]
