"""Suite "uncertainty": predictive uncertainty of small regression networks, against the peers.

A study (issue 20): on the bundled regression sets and Friedman's three functions, over
repeated random 90/10 splits, jacnet's Bayesian regularization (``solver="br"``), an
ensemble of five ``br`` networks and Levenberg-Marquardt with early stopping against a
deep ensemble (torch, Gaussian NLL heads), scikit-learn's MLP with alpha chosen by
cross-validation, a Gaussian process and laplace-torch on the same network: test RMSE,
Gaussian NLL, coverage and width of the 95% interval, and fit time, side by side in one
run. One table per dataset, a summary of ranks, and the claim rows: the ensemble of ``br``
networks against the deep ensemble, and ``br`` against laplace-torch. torch and
laplace-torch are optional peers (the ``bench`` extra): without them their rows are skipped
with a note.
"""

from __future__ import annotations

import gc
import importlib
import math
import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np
from scipy import stats
from sklearn.datasets import make_friedman1, make_friedman2, make_friedman3
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.metrics import make_scorer, mean_squared_error
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

import jacnet as jn
from jacnet.data import builtin
from jacnet.uncertainty import gaussian_nll, interval_scores, mixture, mixture_interval

from ._harness import Case, Context, MismatchError, Row, Timing, console, seconds_text

Array = np.ndarray

TITLE = "Predictive uncertainty: Bayesian regularization and ensembles against the peers"

#: One hidden layer of tanh units, the same for every network method.
HIDDEN = 10
COVERAGE = 0.95
TEST_SIZE = 0.1
N_MEMBERS = 5
#: Rows drawn from each Friedman function (once, seed 0), and its noise std.
FRIEDMAN_ROWS = 500
SMOKE_ROWS = 60


@dataclass(frozen=True)
class Settings:
    """Every method's budget: the study's (``FULL``) and the smoke run's tiny one."""

    splits: int  # repeated 90/10 splits per dataset (linnerud: ``small_splits``)
    small_splits: int
    br_epochs: int  # trainbr's default
    lm_epochs: int
    members: int
    de_lr: float  # deep ensemble: Adam's rate, epochs and batch size
    de_epochs: int
    de_batch: int
    la_epochs: int  # laplace-torch: MSE epochs of Adam (full batch) and marglik steps
    la_steps: int
    sk_alphas: tuple[float, ...]
    sk_folds: int
    sk_max_iter: int
    gp_restarts: int


FULL = Settings(splits=10, small_splits=20, br_epochs=1000, lm_epochs=1000, members=N_MEMBERS,
                de_lr=0.01, de_epochs=40, de_batch=100, la_epochs=1000, la_steps=1000,
                sk_alphas=tuple(10.0 ** np.arange(-4, 3)), sk_folds=5, sk_max_iter=2000,
                gp_restarts=3)
SMOKE = Settings(splits=1, small_splits=1, br_epochs=5, lm_epochs=5, members=2, de_lr=0.01,
                 de_epochs=2, de_batch=100, la_epochs=5, la_steps=5, sk_alphas=(0.01, 1.0),
                 sk_folds=2, sk_max_iter=20, gp_restarts=0)
#: The untimed warm-up fit of every method before a dataset's timed fits.
WARMUP = SMOKE
#: Deep-ensemble settings tried by the settings case: Adam's rate x epochs (batch 100), on
#: the tuning splits of three datasets (more of them for the small one).
DE_GRID = ((0.1, 0.01, 0.001), (40, 200))
TUNING_SETS = ("diabetes", "linnerud", "friedman1")
TUNING_SPLITS = {False: 3, True: 10}

DESCRIPTION = f"""\
**Data.** The regression sets bundled with jacnet (`jacnet.data.BUILTIN`, scikit-learn's
copies): *diabetes* (442 rows, 10 inputs) and *linnerud* (20 rows, 3 inputs, 3 outputs:
weight, waist, pulse); and {FRIEDMAN_ROWS} rows of each of Friedman's functions
(`sklearn.datasets.make_friedman1/2/3`, drawn once with seed 0) with the noise of Friedman
(1991) and Breiman (1996): *friedman1* (10 inputs, 5 of them unused, noise std 1),
*friedman2* (4 inputs, noise std 125) and *friedman3* (4 inputs, noise std 0.1), a signal
to noise ratio of about 3 to 1 for the last two. Each dataset is split {FULL.splits} times
({FULL.small_splits} times for linnerud's 20 rows: 2 test rows a split) at random into 90%
training and 10% test rows (split k: `train_test_split(test_size=0.1, random_state=k)`);
split k also seeds every method.

**Scaling, the same for every method.** Inputs and targets are standardized by the
training rows' mean and standard deviation and every method fits the standardized data;
predictions, standard deviations and intervals are mapped back, and every metric is in the
data's units. (jacnet's `standardize` and the GP's `normalize_y` then find mean 0 and std 1.)

**Methods.** Every network has one hidden layer of {HIDDEN} tanh units and a linear output,
float64: MATLAB's default hidden size for `fitnet` and `trainbr` users and the default
member of `jacnet.Ensemble`, enough for Friedman's functions, and small enough that the
full-covariance methods (`br`'s P x P posterior, laplace-torch's full Hessian) stay cheap
(P = 61 to 121 weights).

- **br**: `jacnet.MLPRegressor(solver="br", max_iter={FULL.br_epochs})` (trainbr's
  epochs), all training rows, no validation split; `predict(return_std=True)`, and the
  interval `predict_interval(coverage=0.95)` (Student-t with N_e - gamma degrees of freedom).
- **br x{N_MEMBERS}**: `jacnet.Ensemble` of {N_MEMBERS} of them (seeds drawn from the split's):
  the mixture's mean and std, and its interval (the exact quantiles of the mixture).
- **lm + early stop**: `solver="lm"`, `early_stopping=True`, `validation_fraction=0.15`
  (MATLAB's validation share), `n_iter_no_change=5` (trainlm's max_fail 6),
  `max_iter={FULL.lm_epochs}`, scikit-learn's default `alpha=1e-4`; std and interval from
  its delta-method posterior (the penalty as the prior, the residual variance as the noise).
- **deep ensemble x{N_MEMBERS}** (Lakshminarayanan, Pritzel & Blundell 2017), in torch: each
  member outputs a mean and a variance (softplus + 1e-6) per target and is trained on the
  Gaussian NLL with Adam, batch {FULL.de_batch}, {FULL.de_epochs} epochs (the paper's UCI
  protocol), rate {FULL.de_lr} (the table "Deep-ensemble settings" shows the grid behind it),
  from its own random initialization and shuffling; no adversarial training (the paper's
  optional extra). Prediction: the mixture's mean and variance (mean of the variances plus
  the variance of the means), the interval its exact quantiles.
- **sklearn MLP (CV alpha)**: `sklearn.neural_network.MLPRegressor(solver="lbfgs",
  max_iter={FULL.sk_max_iter})` (scikit-learn's advice for small data) with `alpha` chosen by
  `GridSearchCV` from 1e-4 to 1e2 (7 values, {FULL.sk_folds}-fold, mean squared error). It has
  no std of its own: its std is the cross-validated RMSE of the chosen alpha, per output
  (homoscedastic, no parameter uncertainty), the interval mean +- 1.96 std.
- **GP**: `GaussianProcessRegressor(ConstantKernel * RBF(one length scale per input) +
  WhiteKernel, normalize_y=True, n_restarts_optimizer={FULL.gp_restarts})`; its std includes
  the fitted white noise; interval mean +- 1.96 std.
- **laplace-torch** (Daxberger et al. 2021) on the same network in torch: trained on the
  mean squared error with Adam (rate 0.01, full batch, {FULL.la_epochs} epochs), then
  `Laplace(net, "regression", subset_of_weights="all", hessian_structure="full")`, `fit`,
  and the prior precision and the noise std fitted together by the marginal likelihood
  ({FULL.la_steps} Adam steps, rate 0.1, from 1 and 1): the regression recipe of the
  library's README (`optimize_prior_precision` alone would leave the noise std at its
  initial value). Std: the GLM predictive's variance plus `sigma_noise`²; interval
  mean +- 1.96 std.

**Metrics**, per split on its test rows, then over the splits: RMSE (per output, averaged
over linnerud's three), the Gaussian negative log-likelihood per test value with the
method's mean and std (for the ensembles, the mixture's moments, as in the deep-ensemble
paper), the share of test values inside the 95% interval (pooled over the splits) and the
interval's mean width (linnerud: over its three outputs, each in its own units), and the
fit time (wall time around `fit` alone; for the ensembles all members, for the CV row the
whole grid search, for laplace-torch the training, the Hessian and the marginal-likelihood
steps). RMSE and NLL are given as mean +- standard error over
the splits, fit times as the median. The summary ranks the methods on each dataset (1 =
best; "coverage error" is the distance of the coverage from 95%) and averages the ranks
over the datasets. Below a table: the warnings the fits and predictions gave, per kind.

**Target (issue 20).** An ensemble of Bayesian-regularized networks beats deep ensembles at
a fraction of the cost: on each dataset, *br x{N_MEMBERS}* has a lower mean NLL than the deep
ensemble, coverage nearer 95%, and a lower median fit time (the rows below: jacnet = br
x{N_MEMBERS}, peer = deep ensemble; a ratio above 1 means br x{N_MEMBERS} fit faster).

The committed run used `--threads 1` (these networks' products are small: one BLAS
thread is what they run best on)."""

#: How this suite times (the run's "mode" line): it does not use Context.measure.
MODE = ("one timed fit per split and method (a study), after one untimed warm-up fit of every "
        "method on the first split; the methods of a split run back to back in the tables' "
        "order; fit times are medians over the splits")


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Dataset:
    """A regression set: ``load()`` gives X (N, d) and Y (N, q)."""

    key: str
    name: str
    load: Callable[[], tuple[Array, Array]]
    small: bool = False  # few rows: more splits

    def n_splits(self, cfg: Settings) -> int:
        return cfg.small_splits if self.small else cfg.splits


def load_builtin(name: str) -> tuple[Array, Array]:
    """One of jacnet's bundled datasets (the CLI's ``--dataset``) as float arrays."""
    frame, targets = builtin(name)
    X = frame.drop(columns=targets).to_numpy(dtype=float)
    return X, frame[targets].to_numpy(dtype=float)


def load_friedman(k: int, noise: float) -> tuple[Array, Array]:
    """``FRIEDMAN_ROWS`` rows of Friedman's function ``k`` with Gaussian noise, seed 0."""
    make = {1: make_friedman1, 2: make_friedman2, 3: make_friedman3}[k]
    X, y = make(FRIEDMAN_ROWS, noise=noise, random_state=0)
    return X, y[:, None]


#: The bundled regression sets: the names of ``jacnet.data.BUILTIN`` with numeric targets.
BUNDLED = ("diabetes", "linnerud")
DATASETS = (
    Dataset("diabetes", "diabetes", partial(load_builtin, "diabetes")),
    Dataset("linnerud", "linnerud", partial(load_builtin, "linnerud"), small=True),
    Dataset("friedman1", "Friedman 1", partial(load_friedman, 1, 1.0)),
    Dataset("friedman2", "Friedman 2", partial(load_friedman, 2, 125.0)),
    Dataset("friedman3", "Friedman 3", partial(load_friedman, 3, 0.1)),
)


@dataclass(frozen=True)
class Split:
    """Standardized training rows ``Z``, ``T`` and test inputs ``Zt``; the test targets
    ``Yt`` in the data's units, with the targets' training mean ``my`` and std ``sy``."""

    Z: Array
    T: Array
    Zt: Array
    Yt: Array
    my: Array
    sy: Array


def make_split(X: Array, Y: Array, seed: int) -> Split:
    """Split ``seed`` of the rows (90/10), standardized by its training rows."""
    Xa, Xb, Ya, Yb = train_test_split(X, Y, test_size=TEST_SIZE, random_state=seed)
    mx, sx = Xa.mean(axis=0), Xa.std(axis=0)
    my, sy = Ya.mean(axis=0), Ya.std(axis=0)
    return Split((Xa - mx) / sx, (Ya - my) / sy, (Xb - mx) / sx, Yb, my, sy)


# ------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Prediction:
    """A method's test predictions in the data's units, each (n_test, q); ``seconds``:
    the fit's wall time."""

    mean: Array
    std: Array
    lower: Array
    upper: Array
    seconds: float


@dataclass(frozen=True)
class Peers:
    """The optional peer libraries (None when missing) and why each is missing."""

    torch: ModuleType | None
    laplace: ModuleType | None
    torch_note: str
    laplace_note: str


def timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    """``fit()`` and its wall time (the garbage collector run before, not timed)."""
    gc.collect()
    t0 = time.perf_counter()
    out = fit()
    return out, time.perf_counter() - t0


def in_units(s: Split, mean: Array, std: Array, lower: Array | None, upper: Array | None,
             seconds: float) -> Prediction:
    """Standardized predictions to the data's units; a missing interval is the Gaussian
    ``mean +- z std``."""
    q = s.Yt.shape[1]
    mean, std = mean.reshape(-1, q), std.reshape(-1, q)
    if lower is None or upper is None:
        z = stats.norm.ppf(0.5 + COVERAGE / 2)
        lower, upper = mean - z * std, mean + z * std
    lower, upper = lower.reshape(-1, q), upper.reshape(-1, q)
    return Prediction(mean * s.sy + s.my, std * s.sy, lower * s.sy + s.my, upper * s.sy + s.my,
                      seconds)


def targets(T: Array) -> Array:
    """(N,) for one output, as the scikit-learn estimators expect it; else (N, q)."""
    return T[:, 0] if T.shape[1] == 1 else T


def jacnet_member(cfg: Settings, solver: str, seed: int | None) -> jn.MLPRegressor:
    options: dict[str, Any] = {"max_iter": cfg.br_epochs}
    if solver == "lm":
        options = {"max_iter": cfg.lm_epochs, "early_stopping": True,
                   "validation_fraction": 0.15, "n_iter_no_change": 5}
    return jn.MLPRegressor(hidden_layer_sizes=(HIDDEN,), activation="tanh", solver=solver,
                           random_state=seed, **options)


def fit_jacnet(s: Split, cfg: Settings, seed: int, peers: Peers, solver: str) -> Prediction:
    """jacnet's ``br`` or ``lm`` (early stopping): its posterior's std and t interval."""
    est = jacnet_member(cfg, solver, seed)
    _, seconds = timed(lambda: est.fit(s.Z, targets(s.T)))
    mean, std = est.predict(s.Zt, return_std=True)
    lower, upper = est.predict_interval(s.Zt, coverage=COVERAGE)
    return in_units(s, mean, std, lower, upper, seconds)


def fit_br_ensemble(s: Split, cfg: Settings, seed: int, peers: Peers) -> Prediction:
    """``jacnet.Ensemble`` of ``br`` networks: the mixture's moments and quantiles."""
    est = jn.Ensemble(jacnet_member(cfg, "br", None), n_members=cfg.members, random_state=seed)
    _, seconds = timed(lambda: est.fit(s.Z, targets(s.T)))
    mean, std = est.predict(s.Zt, return_std=True)
    members = np.stack([m.predict(s.Zt) for m in est.estimators_])
    check_mixture_mean("br ensemble", mean, members)
    lower, upper = est.predict_interval(s.Zt, coverage=COVERAGE)
    return in_units(s, mean, std, lower, upper, seconds)


def check_mixture_mean(what: str, mean: Array, members: Array) -> None:
    """The ensemble's mean (``predict(return_std=True)``'s mixture path) is its members'
    mean (``predict``'s path), to 1e-12 of the largest value, and finite."""
    scale = max(1.0, float(np.abs(members).max()))
    if not (np.all(np.isfinite(mean)) and np.allclose(mean, members.mean(axis=0), rtol=0,
                                                      atol=1e-12 * scale)):
        raise MismatchError(f"{what}: the ensemble's mean is not its members' mean")


def fit_sklearn(s: Split, cfg: Settings, seed: int, peers: Peers) -> Prediction:
    """scikit-learn's MLP, alpha by GridSearchCV; std: the CV RMSE of that alpha, per output."""
    q = s.T.shape[1]
    scoring: dict[str, Any] = {"mse": "neg_mean_squared_error"}
    for k in range(q):  # the per-output CV error of every alpha, kept for the std
        scoring[f"mse{k}"] = make_scorer(partial(_output_mse, k=k), greater_is_better=False)
    net = SkMLPRegressor(hidden_layer_sizes=(HIDDEN,), activation="tanh", solver="lbfgs",
                         max_iter=cfg.sk_max_iter, random_state=seed)
    search = GridSearchCV(net, {"alpha": list(cfg.sk_alphas)}, cv=cfg.sk_folds,
                          scoring=scoring, refit="mse")
    _, seconds = timed(lambda: search.fit(s.Z, targets(s.T)))
    best = search.best_index_
    std = np.sqrt([-search.cv_results_[f"mean_test_mse{k}"][best] for k in range(q)])
    mean = search.predict(s.Zt).reshape(-1, q)
    return in_units(s, mean, np.broadcast_to(std, mean.shape), None, None, seconds)


def _output_mse(y: Array, pred: Array, k: int) -> float:
    return float(mean_squared_error(np.reshape(y, (len(y), -1))[:, k],
                                    np.reshape(pred, (len(pred), -1))[:, k]))


def fit_gp(s: Split, cfg: Settings, seed: int, peers: Peers) -> Prediction:
    """A GP with one RBF length scale per input and a white-noise term (in its std)."""
    d = s.Z.shape[1]
    kernel = ConstantKernel(1.0) * RBF(np.ones(d), length_scale_bounds=(1e-2, 1e3)) \
        + WhiteKernel(0.1, noise_level_bounds=(1e-6, 1e1))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=cfg.gp_restarts,
                                  random_state=seed)
    _, seconds = timed(lambda: gp.fit(s.Z, targets(s.T)))
    mean, std = gp.predict(s.Zt, return_std=True)
    return in_units(s, mean, std, None, None, seconds)


def torch_mlp(torch: ModuleType, d: int, out: int, seed: int) -> Any:
    """The study's network in torch (d-HIDDEN-out, tanh, float64), weights from ``seed``."""
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(d, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, out)).double()


def train_nll_member(torch: ModuleType, Z: Any, T: Any, cfg: Settings, seed: int) -> Any:
    """One deep-ensemble member: mean and variance heads, Gaussian NLL, Adam, shuffled
    mini-batches (Lakshminarayanan et al. 2017, without adversarial training)."""
    q = T.shape[1]
    net = torch_mlp(torch, Z.shape[1], 2 * q, seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.de_lr)
    order = torch.Generator().manual_seed(seed)
    n, bs = Z.shape[0], min(cfg.de_batch, Z.shape[0])
    for _ in range(cfg.de_epochs):
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, bs):
            rows = perm[i:i + bs]
            out = net(Z[rows])
            mean, var = out[:, :q], torch.nn.functional.softplus(out[:, q:]) + 1e-6
            loss = (0.5 * torch.log(var) + 0.5 * (T[rows] - mean) ** 2 / var).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def fit_deep_ensemble(s: Split, cfg: Settings, seed: int, peers: Peers) -> Prediction:
    """Members from seeds ``seed * 100 + m``; the Gaussian mixture's moments and quantiles."""
    torch = peers.torch
    assert torch is not None
    Z, T = torch.from_numpy(s.Z), torch.from_numpy(np.ascontiguousarray(s.T))
    nets, seconds = timed(lambda: [train_nll_member(torch, Z, T, cfg, seed * 100 + m)
                                   for m in range(cfg.members)])
    q = s.T.shape[1]
    with torch.no_grad():
        outs = [net(torch.from_numpy(s.Zt)).numpy() for net in nets]
    means = np.stack([o[:, :q] for o in outs])
    stds = np.sqrt(np.stack([np.logaddexp(0.0, o[:, q:]) + 1e-6 for o in outs]))  # softplus
    mean, var = mixture(means, stds ** 2)
    lower, upper = mixture_interval(means, stds, np.full(len(nets), np.inf), COVERAGE)
    return in_units(s, mean, np.sqrt(var), lower, upper, seconds)


def fit_laplace(s: Split, cfg: Settings, seed: int, peers: Peers) -> Prediction:
    """laplace-torch's full-Hessian Laplace on an MSE-trained network (README's recipe)."""
    torch, laplace = peers.torch, peers.laplace
    assert torch is not None and laplace is not None
    Z, T = torch.from_numpy(s.Z), torch.from_numpy(np.ascontiguousarray(s.T))
    net = torch_mlp(torch, Z.shape[1], T.shape[1], seed)

    def fit() -> Any:
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(cfg.la_epochs):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(Z), T).backward()
            opt.step()
        rows = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Z, T),
                                           batch_size=Z.shape[0])
        la = laplace.Laplace(net, "regression", subset_of_weights="all",
                             hessian_structure="full")
        la.fit(rows)
        log_prior = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        log_sigma = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        hyper = torch.optim.Adam([log_prior, log_sigma], lr=0.1)
        for _ in range(cfg.la_steps):
            hyper.zero_grad()
            (-la.log_marginal_likelihood(log_prior.exp(), log_sigma.exp())).backward()
            hyper.step()
        return la

    la, seconds = timed(fit)
    f_mean, f_var = la(torch.from_numpy(s.Zt), pred_type="glm")
    var = torch.diagonal(f_var, dim1=-2, dim2=-1) + la.sigma_noise.detach() ** 2
    return in_units(s, f_mean.detach().numpy(), np.sqrt(var.detach().numpy()), None, None,
                    seconds)


@dataclass(frozen=True)
class Method:
    """A column of the study: ``needs`` names the optional peer it runs on ("" for none)."""

    key: str
    label: str
    fit: Callable[[Split, Settings, int, Peers], Prediction]
    needs: str = ""


BR, BR_ENS, LM, DEEP, SKLEARN, GP, LAPLACE = (
    "br", "br_ens", "lm", "deep", "sklearn", "gp", "laplace")
METHODS = (
    Method(BR, "jacnet br", partial(fit_jacnet, solver="br")),
    Method(BR_ENS, f"jacnet br x{N_MEMBERS}", fit_br_ensemble),
    Method(LM, "jacnet lm + early stop", partial(fit_jacnet, solver="lm")),
    Method(DEEP, f"deep ensemble x{N_MEMBERS} (torch)", fit_deep_ensemble, needs="torch"),
    Method(SKLEARN, "sklearn MLP (CV alpha)", fit_sklearn),
    Method(GP, "GP (ARD RBF + white)", fit_gp),
    Method(LAPLACE, "laplace-torch (full)", fit_laplace, needs="laplace"),
)
METHOD = {m.key: m for m in METHODS}


# ------------------------------------------------------------------------ scores
@dataclass(frozen=True)
class Scores:
    """One method on one split's test rows, in the data's units."""

    rmse: float  # per output, averaged over the outputs
    nll: float  # mean per test value
    inside: int  # test values inside the 95% interval
    width: float  # mean interval width
    n: int  # test values
    seconds: float


def score(p: Prediction, Y: Array) -> Scores:
    rmse = float(np.mean(np.sqrt(np.mean((p.mean - Y) ** 2, axis=0))))
    inside, width = interval_scores(Y, p.lower, p.upper)
    return Scores(rmse, float(np.mean(gaussian_nll(Y, p.mean, p.std))), int(inside.sum()),
                  float(width.mean()), Y.size, p.seconds)


@dataclass
class Summary:
    """A method over a dataset's splits: mean and standard error of RMSE and NLL, pooled
    coverage, mean width, fit times."""

    rmse: float
    rmse_se: float
    nll: float
    nll_se: float
    coverage: float
    width: float
    seconds: tuple[float, ...]

    @property
    def time(self) -> float:
        return statistics.median(self.seconds)


def _mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.fmean(values), se


def summarize(runs: list[Scores]) -> Summary:
    rmse, rmse_se = _mean_se([r.rmse for r in runs])
    nll, nll_se = _mean_se([r.nll for r in runs])
    return Summary(rmse, rmse_se, nll, nll_se, sum(r.inside for r in runs) / sum(r.n for r in runs),
                   statistics.fmean(r.width for r in runs), tuple(r.seconds for r in runs))


@dataclass
class Study:
    """One dataset's results: every method's scores per split, the methods that did not
    run (and why) and the peers' failures."""

    dataset: Dataset
    n_splits: int
    shape: tuple[int, int, int]  # rows, inputs, outputs
    runs: dict[str, list[Scores]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    #: per method, per kind of warning (its text up to the first digit): the splits that
    #: raised it and its first full text
    warned: dict[str, dict[str, tuple[list[int], str]]] = field(default_factory=dict)

    def summary(self, key: str) -> Summary | None:
        runs = self.runs.get(key)
        return summarize(runs) if runs else None


# ------------------------------------------------------------------------ the study
_LAPLACE: dict[str, tuple[ModuleType | None, str]] = {}


def load_peers(ctx: Context) -> Peers:
    """torch from the run (None with ``--no-torch``), laplace-torch imported on first use
    (a broken install, such as a torchvision built for another torch, reads as missing)."""
    if ctx.torch is None:
        return Peers(None, None, ctx.torch_note, ctx.torch_note)
    if "laplace" not in _LAPLACE:
        try:
            _LAPLACE["laplace"] = (importlib.import_module("laplace"), "")
        except Exception as exc:  # ImportError, or a binary mismatch raised on import
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _LAPLACE["laplace"] = (None, f"laplace-torch not usable ({first}); pip install "
                                   "-e '.[bench]' and see the Makefile's bench target")
    module, note = _LAPLACE["laplace"]
    return Peers(ctx.torch, module, "", note)


def missing(method: Method, peers: Peers) -> str:
    """Why ``method`` cannot run here ("" when it can)."""
    if method.needs == "torch" and peers.torch is None:
        return peers.torch_note
    if method.needs == "laplace" and peers.laplace is None:
        return peers.laplace_note
    return ""


def run_method(study: Study, method: Method, s: Split, cfg: Settings, seed: int,
               peers: Peers) -> None:
    """One timed fit and its scores. A peer library's exception is recorded as its failure
    on this split, jacnet's propagate (a jacnet error is a bug to see); the warnings of the
    fit and the predictions (a ConvergenceWarning at ``max_iter``, too few degrees of
    freedom for the noise) are recorded for the table's notes."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = method.fit(s, cfg, seed, peers)
        for w in caught:
            text = f"{w.category.__name__}: {_line(w.message, 200)}"
            kinds = study.warned.setdefault(method.key, {})
            splits, first = kinds.setdefault(re.split(r"\d", text, maxsplit=1)[0], ([], text))
            if seed not in splits:
                splits.append(seed)
    except MismatchError:
        raise
    except Exception as exc:
        if method.key in (BR, BR_ENS, LM):
            raise
        study.failed.setdefault(method.key, []).append(
            f"split {seed}: {type(exc).__name__}: {_line(exc, 160)}")
        return
    scores = score(pred, s.Yt)
    if method.key in (BR, BR_ENS, LM) and not (math.isfinite(scores.nll)
                                               and math.isfinite(scores.rmse)
                                               and bool(np.all(pred.std > 0))):
        raise MismatchError(f"{study.dataset.key}, split {seed}: {method.label} gave a "
                            f"non-finite RMSE or NLL, or a std that is not positive")
    study.runs.setdefault(method.key, []).append(scores)


def _line(what: object, n: int) -> str:
    """The first line of ``str(what)``, at most ``n`` characters, fit for a table cell."""
    text = str(what).strip()
    return (text.splitlines()[0] if text else "")[:n].replace("|", "/")


def run_study(dataset: Dataset, ctx: Context, peers: Peers) -> Study:
    """Every split and method of one dataset, after an untimed warm-up of every method."""
    cfg = SMOKE if ctx.smoke else FULL
    X, Y = dataset.load()
    if ctx.smoke and X.shape[0] > SMOKE_ROWS:
        X, Y = X[:SMOKE_ROWS], Y[:SMOKE_ROWS]
    study = Study(dataset, dataset.n_splits(cfg), (X.shape[0], X.shape[1], Y.shape[1]))
    methods = []
    for method in METHODS:
        why = missing(method, peers)
        if why:
            study.skipped[method.key] = why
        else:
            methods.append(method)
    first = make_split(X, Y, 0)
    for method in methods:  # warm-up: first calls, lazy imports, torch's caches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                method.fit(first, WARMUP, 0, peers)
            except Exception:  # the timed fits record a peer's failure
                pass
    for seed in range(study.n_splits):
        s = make_split(X, Y, seed)
        for method in methods:
            run_method(study, method, s, cfg, seed, peers)
    return study


# ------------------------------------------------------------------------ tables
def _pm(mean: float, se: float) -> str:
    return f"{mean:.4g}" if not math.isfinite(se) else f"{mean:.4g} ± {se:.2g}"


def study_table(study: Study) -> str:
    """One line per method: RMSE, NLL, coverage, width, fit time."""
    lines = ["| method | RMSE | NLL | coverage of 95% | mean width | fit time (median) |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        s = study.summary(method.key)
        if s is None:
            why = study.skipped.get(method.key) or "failed on every split, see below"
            lines.append(f"| {method.label} | — | — | — | — | — ({why}) |")
            continue
        cells = [_pm(s.rmse, s.rmse_se), _pm(s.nll, s.nll_se), f"{100 * s.coverage:.1f}%",
                 f"{s.width:.4g}", seconds_text(s.time)]
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    notes = []
    for method in METHODS:
        failed = study.failed.get(method.key)
        if failed:
            notes.append(f"- {method.label}: {len(failed)} of {study.n_splits} splits failed, "
                         f"first {failed[0]}")
        for splits, first in study.warned.get(method.key, {}).values():
            notes.append(f"- {method.label}: warned on {len(splits)} of {study.n_splits} "
                         f"splits, first on split {splits[0]}: {first}")
    return "\n".join(lines + ([""] + notes if notes else []))


def ranks(study: Study) -> dict[str, dict[str, float]]:
    """Per metric, each method's rank on this dataset (1 = best, ties share the mean)."""
    keys = [m.key for m in METHODS if study.runs.get(m.key)]
    sums = {k: study.summary(k) for k in keys}
    metric: dict[str, Callable[[Summary], float]] = {
        "RMSE": lambda s: s.rmse, "NLL": lambda s: s.nll,
        "coverage error": lambda s: abs(s.coverage - COVERAGE), "fit time": lambda s: s.time}
    out: dict[str, dict[str, float]] = {}
    for name, value in metric.items():
        r = stats.rankdata([value(s) for s in sums.values() if s is not None])
        out[name] = dict(zip(keys, (float(x) for x in r), strict=True))
    return out


def summary_table(studies: list[Study]) -> str:
    """Mean rank over the datasets per metric, and the datasets where each method ranks
    first on NLL."""
    per = [ranks(s) for s in studies]
    metrics = list(per[0]) if per else []
    lines = ["| method | " + " | ".join(f"mean rank: {m}" for m in metrics)
             + " | best NLL on | datasets |", "|---|" + "---|" * (len(metrics) + 2)]
    for method in METHODS:
        got = [(s, r) for s, r in zip(studies, per, strict=True) if method.key in r["NLL"]]
        if not got:
            lines.append(f"| {method.label} | " + " | ".join("—" for _ in metrics) + " | — | 0 |")
            continue
        cells = [f"{statistics.fmean(r[m][method.key] for _, r in got):.2f}" for m in metrics]
        wins = [s.dataset.key for s, r in got if r["NLL"][method.key] == 1.0]
        lines.append(f"| {method.label} | " + " | ".join(cells)
                     + f" | {', '.join(wins) or '—'} | {len(got)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ rows
def claim_row(ctx: Context, study: Study) -> Row:
    """The target: br x5 against the deep ensemble, lower NLL, coverage nearer 95%, less
    fit time."""
    case = f"uncertainty.{study.dataset.key}"
    name = f"{study.dataset.name}: jacnet br x{N_MEMBERS} against a deep ensemble x{N_MEMBERS}"
    peer = f"deep ensemble (torch, NLL heads, Adam {FULL.de_epochs} epochs)"
    ours, theirs = study.summary(BR_ENS), study.summary(DEEP)
    if ours is None or theirs is None:
        why = study.skipped.get(DEEP) or "; ".join(study.failed.get(DEEP, [])) or "no result"
        return ctx.row(case, name, peer, note=why)
    nll = ours.nll < theirs.nll
    cov = abs(ours.coverage - COVERAGE) <= abs(theirs.coverage - COVERAGE)
    fast = ours.time < theirs.time
    held = [t for t, ok in (("NLL", nll), ("coverage", cov), ("time", fast)) if ok]
    return ctx.row(
        case, name, peer, jacnet=Timing(ours.seconds), peer_time=Timing(theirs.seconds),
        target_label="lower NLL, coverage nearer 95%, less time",
        status="ok" if ctx.smoke else ("pass" if len(held) == 3 else "miss"),
        note=(f"NLL {ours.nll:.4g} against {theirs.nll:.4g}; coverage "
              f"{100 * ours.coverage:.1f}% against {100 * theirs.coverage:.1f}%; RMSE "
              f"{ours.rmse:.4g} against {theirs.rmse:.4g}; holds: {', '.join(held) or 'none'}"))


def laplace_row(ctx: Context, study: Study) -> Row:
    """br against laplace-torch on the same network: both a Laplace posterior of one
    network, their evidence chosen by the marginal likelihood (no target)."""
    case = f"uncertainty.{study.dataset.key}"
    name = f"{study.dataset.name}: jacnet br against laplace-torch, the same network"
    peer = "laplace-torch (MSE fit, full GGN, marglik prior and noise)"
    ours, theirs = study.summary(BR), study.summary(LAPLACE)
    if ours is None or theirs is None:
        why = study.skipped.get(LAPLACE) or "; ".join(study.failed.get(LAPLACE, [])) \
            or "no result"
        return ctx.row(case, name, peer, note=why)
    return ctx.row(
        case, name, peer, jacnet=Timing(ours.seconds), peer_time=Timing(theirs.seconds),
        note=(f"NLL {ours.nll:.4g} against {theirs.nll:.4g}; coverage "
              f"{100 * ours.coverage:.1f}% against {100 * theirs.coverage:.1f}%; RMSE "
              f"{ours.rmse:.4g} against {theirs.rmse:.4g}"))


#: The studies of each run (keyed by its Context) so far, for the summary table.
_STUDIES: dict[int, list[Study]] = {}
SUMMARY_TITLE = "Summary: mean rank over the datasets (1 = best)"


def study_case(ctx: Context, dataset: Dataset) -> list[Row]:
    """One dataset: its table, and the summary over the datasets run so far (kept last)."""
    peers = load_peers(ctx)
    t0 = time.perf_counter()
    study = run_study(dataset, ctx, peers)
    rows, d, q = study.shape
    title = (f"{dataset.name}: {rows} rows, {d} inputs, {q} output{'s' if q > 1 else ''}; "
             f"{study.n_splits} splits 90/10; {d}-{HIDDEN}-{q} tanh")
    table = study_table(study)
    ctx.add_table(title, table)
    console(f"  {title} ({seconds_text(time.perf_counter() - t0)})\n{table}")
    studies = _STUDIES.setdefault(id(ctx), [])
    studies.append(study)
    ctx.tables[:] = [t for t in ctx.tables if t[0] != SUMMARY_TITLE]
    ctx.add_table(SUMMARY_TITLE, summary_table(studies) + "\n\nDatasets: "
                  + ", ".join(s.dataset.key for s in studies) + ".")
    return [claim_row(ctx, study), laplace_row(ctx, study)]


# --------------------------------------------------------------- deep-ensemble settings
def settings_case(ctx: Context) -> list[Row]:
    """The deep ensemble's rate and epochs on tuning splits (seeds 1000 + k, none of them a
    study split): the grid behind the study's setting."""
    case = "uncertainty.deep_ensemble_settings"
    name = f"deep-ensemble settings: Adam's rate and epochs, batch {FULL.de_batch}"
    peers = load_peers(ctx)
    if peers.torch is None:
        return [ctx.row(case, name, "deep ensemble (torch)", note=peers.torch_note)]
    rates, epochs = ((0.01,), (2,)) if ctx.smoke else DE_GRID
    nll: dict[tuple[float, int], list[float]] = {}
    for dataset in (d for d in DATASETS if d.key in TUNING_SETS):
        X, Y = dataset.load()
        if ctx.smoke:
            X, Y = X[:SMOKE_ROWS], Y[:SMOKE_ROWS]
        n = 1 if ctx.smoke else TUNING_SPLITS[dataset.small]
        splits = [make_split(X, Y, 1000 + k) for k in range(n)]
        for rate in rates:
            for n_epochs in epochs:
                cfg = replace(SMOKE if ctx.smoke else FULL, de_lr=rate, de_epochs=n_epochs)
                runs = [score(fit_deep_ensemble(s, cfg, 1000 + k, peers), s.Yt)
                        for k, s in enumerate(splits)]
                nll.setdefault((rate, n_epochs), []).append(statistics.fmean(r.nll for r in runs))
    table, text = settings_table(nll)
    ctx.add_table(f"Deep-ensemble settings (mean NLL over {TUNING_SPLITS[False]} tuning splits, "
                  f"linnerud {TUNING_SPLITS[True]})", table + "\n\n" + text)
    console(table + "\n" + text)
    return [ctx.row(case, name, "the grid's best mean rank", status="ok" if ctx.smoke else "—",
                    note=text)]


def settings_table(nll: dict[tuple[float, int], list[float]]) -> tuple[str, str]:
    """The grid as a table (a cell's NLL per tuning set, and its mean rank over the sets)
    and a sentence naming the best cells and the study's."""
    keys = [d.key for d in DATASETS if d.key in TUNING_SETS]
    cells = list(nll)
    rank = np.mean([stats.rankdata([nll[c][j] for c in cells]) for j in range(len(keys))],
                   axis=0)
    lines = ["| rate | epochs | " + " | ".join(f"{k}: NLL" for k in keys) + " | mean rank |",
             "|---|---|" + "---|" * (len(keys) + 1)]
    for c, r in zip(cells, rank, strict=True):
        lines.append(f"| {c[0]:g} | {c[1]} | " + " | ".join(f"{v:.4g}" for v in nll[c])
                     + f" | {r:.2f} |")
    best = [f"rate {c[0]:g}, {c[1]} epochs" for c, r in zip(cells, rank, strict=True)
            if r == rank.min()]
    ours = (FULL.de_lr, FULL.de_epochs)
    where = (f"mean rank {rank[cells.index(ours)]:.2f}" if ours in cells else "not in the grid")
    text = (f"Best mean rank in this grid ({rank.min():.2f}): {'; '.join(best)}. The study uses "
            f"rate {ours[0]:g}, {ours[1]} epochs ({where}); tuning splits: seeds 1000 and up, "
            "none of them a study split's.")
    return "\n".join(lines), text


# --------------------------------------------------------------------------- cases
def cases(smoke: bool) -> list[Case]:
    """Every case of the suite (``smoke`` picks the tiny sizes inside each)."""
    out = [Case("uncertainty.deep_ensemble_settings", settings_case)]
    out += [Case(f"uncertainty.{d.key}", partial(study_case, dataset=d)) for d in DATASETS]
    return out
