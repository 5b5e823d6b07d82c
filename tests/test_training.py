"""Tests of jacnet.training: real data, determinism, resume, faults, early stopping, bad
input and the training record."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jacnet as jn
from jacnet.record import STOP_REASONS, TrainingRecord

EPOCH_KEYS = {"epoch", "loss", "val_loss", "test_loss", "grad_norm", "seconds"}


def regression(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 3))
    T = np.stack([np.sin(X.sum(1)), X[:, 0] * X[:, 1]], axis=1)
    return X, T


def small_net(seed: int = 0, hidden: str = "tanh", out: Any = "identity") -> jn.Network:
    return jn.Network([jn.Dense(3, 6, hidden), jn.Dense(6, 2, out)], seed=seed)


class NanAbove(jn.Elementwise):
    """The identity, except NaN where ``|t| > threshold``: a fault injected from inside."""

    name = "nan_above"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def forward(self, T):
        return np.where(np.abs(T) > self.threshold, np.nan, T)

    def derivative(self, T, Y):
        return np.ones_like(T)


# ------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    d = load_digits()
    X, Y = d.data / 16.0, np.eye(10)[d.target]
    return tuple(train_test_split(X, Y, test_size=0.25, random_state=0, stratify=d.target))


@pytest.mark.parametrize(
    "solver, options",
    [
        ("adam", {"lr": 3e-3}),
        ("sgd", {"lr": 0.05, "optimizer_options": {"momentum": 0.9, "nesterov": True}}),
    ],
)
def test_train_digits_above_95_percent(digits, solver, options):
    Xtr, Xte, Ytr, Yte = digits
    net = jn.Network([jn.Dense(64, 64, "relu"), jn.Dense(64, 10, "softmax")], seed=0)
    rec = jn.train(net, Xtr, Ytr, solver=solver, loss="cross_entropy", max_epochs=30,
                   batch_size=32, seed=0, **options)
    accuracy = (net(Xte).argmax(1) == Yte.argmax(1)).mean()
    assert accuracy > 0.95
    assert rec.stop_reason == "max_epochs" and rec.n_epochs == 30


# ---------------------------------------------------------------------- determinism
DETERMINISM = {
    "sgd": {"solver": "sgd", "lr": 0.05, "batch_size": 16,
            "optimizer_options": {"momentum": 0.9}},
    "adam": {"solver": "adam", "lr": 0.01, "batch_size": 16},
    "lbfgs": {"solver": "lbfgs"},
    "lm": {"solver": "lm"},
}


def run_seeded(options: dict[str, Any], seed: int | None) -> tuple[np.ndarray, TrainingRecord]:
    X, T = regression()
    net = small_net()
    rec = jn.train(net, X, T, max_epochs=8, seed=seed, validation_fraction=0.2,
                   max_fail=100, **options)
    return net.get_flat(), rec


def history(rec: TrainingRecord) -> list[tuple]:
    return [(e["loss"], e["val_loss"], e["grad_norm"]) for e in rec.epochs]


@pytest.mark.parametrize("name", sorted(DETERMINISM))
def test_train_same_seed_is_bit_identical(name):
    theta_a, rec_a = run_seeded(DETERMINISM[name], seed=7)
    theta_b, rec_b = run_seeded(DETERMINISM[name], seed=7)
    np.testing.assert_array_equal(theta_a, theta_b)
    assert history(rec_a) == history(rec_b)
    assert rec_a.n_epochs == 8
    theta_c, rec_c = run_seeded(DETERMINISM[name], seed=8)
    assert not np.array_equal(theta_a, theta_c)
    assert not np.array_equal(rec_a.division["validation"], rec_c.division["validation"])


def test_minibatch_epochs_gather_batches_without_a_copy_of_the_data():
    """Each shuffled batch is gathered into one reused buffer: an epoch allocates nothing
    of the data's size, and the batches are exactly the rows of a seeded permutation."""
    import tracemalloc

    rng = np.random.default_rng(3)
    X = rng.normal(size=(20000, 40))
    T = rng.normal(size=(20000, 1))
    net = jn.Network([jn.Dense(40, 4, "tanh"), jn.Dense(4, 1)], seed=0)
    tracemalloc.start()
    try:
        jn.train(net, X, T, solver="adam", batch_size=500, max_epochs=2, seed=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 4, (peak, X.nbytes)
    # the same epochs with the batches taken by hand, in the permutation's order
    net_ref = jn.Network([jn.Dense(40, 4, "tanh"), jn.Dense(4, 1)], seed=0)
    opt = jn.get_optimizer("adam")
    state = opt.init([net_ref.theta])
    gen = np.random.default_rng(5)
    for _ in range(2):
        order = gen.permutation(X.shape[0])
        for start in range(0, X.shape[0], 500):
            rows = order[start : start + 500]
            _, grad = net_ref.loss_and_flat_grad(X[rows], T[rows], "mse")
            opt.update([net_ref.theta], [grad], state)
    np.testing.assert_allclose(net.get_flat(), net_ref.get_flat(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [7, None])
def test_train_leaves_the_global_random_state_alone(seed):
    # The legacy global state is the very thing under test.
    np.random.seed(12345)  # noqa: NPY002
    before = np.random.get_state()  # noqa: NPY002
    for options in DETERMINISM.values():
        run_seeded(options, seed)
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


# -------------------------------------------------------------------------- resume
RESUME = {
    "adam-cosine": {"solver": "adam", "lr": 0.01, "batch_size": 16, "schedule": "cosine",
                    "schedule_options": {"t_max": 10, "lr_min": 1e-4}},
    "adam-step": {"solver": "adam", "lr": 0.01, "batch_size": 16, "schedule": "step",
                  "schedule_options": {"step_size": 4, "gamma": 0.5}},
    "sgd-momentum": {"solver": "sgd", "lr": 0.05, "batch_size": 16,
                     "optimizer_options": {"momentum": 0.9}},
    "sgd-plateau": {"solver": "sgd", "lr": 0.05, "batch_size": 16,
                    "schedule": "reduce_on_plateau",
                    "schedule_options": {"patience": 0, "factor": 0.5}},
    "lm": {"solver": "lm"},
}


@pytest.mark.parametrize("validation_fraction", [0.0, 0.2])
@pytest.mark.parametrize("name", sorted(RESUME))
def test_train_resume_equals_uninterrupted(tmp_path, name, validation_fraction):
    X, T = regression()
    options = {**RESUME[name], "seed": 3, "validation_fraction": validation_fraction,
               "max_fail": 100}
    full = small_net()
    rec_full = jn.train(full, X, T, max_epochs=10, **options)
    ck = tmp_path / "ck.npz"
    first = small_net()
    jn.train(first, X, T, max_epochs=6, checkpoint=str(ck), checkpoint_every=3, **options)
    resumed = small_net(seed=99)  # a fresh object: everything must come from the file
    rec = jn.train(resumed, X, T, max_epochs=10, resume=str(ck), checkpoint=str(ck),
                   checkpoint_every=3, **options)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert rec.n_epochs == 10 and [e["epoch"] for e in rec.epochs] == list(range(1, 11))
    assert history(rec) == history(rec_full)
    assert rec.stop_reason == rec_full.stop_reason == "max_epochs"
    assert rec.best_epoch == rec_full.best_epoch
    for key in rec_full.division:
        np.testing.assert_array_equal(rec.division[key], rec_full.division[key])


def test_train_resume_after_a_retried_epoch_equals_uninterrupted(tmp_path):
    # NaN in epoch 2 forces a retry at half the step: the retried epoch keeps its index,
    # so the schedule and the resume point agree with the uninterrupted run.
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (60, 3))
    T = X @ np.array([[1.0], [2.0], [-1.0]]) + 0.5

    def make() -> jn.Network:
        return jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 1, NanAbove(4.0))], seed=0)

    options = {"solver": "adam", "lr": 2.0, "batch_size": 10, "seed": 0, "schedule": "cosine",
               "schedule_options": {"t_max": 10}}
    full = make()
    rec_full = jn.train(full, X, T, max_epochs=10, **options)
    assert rec_full.n_epochs == 10 and rec_full.stop_reason == "max_epochs"
    assert rec_full.epochs[-1]["lr"] < options["lr"] * 0.5  # a retry halved the step
    ck = tmp_path / "ck.npz"
    jn.train(make(), X, T, max_epochs=6, checkpoint=str(ck), checkpoint_every=3, **options)
    resumed = make()
    rec = jn.train(resumed, X, T, max_epochs=10, resume=str(ck), **options)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert history(rec) == history(rec_full)
    assert rec.column("lr").tolist() == rec_full.column("lr").tolist()


def test_train_resume_lbfgs_continues_the_record(tmp_path):
    X, T = regression()
    ck = tmp_path / "ck.npz"
    first = small_net()
    rec6 = jn.train(first, X, T, solver="lbfgs", max_epochs=6, checkpoint=str(ck),
                    checkpoint_every=3)
    net = small_net(seed=5)
    rec = jn.train(net, X, T, solver="lbfgs", max_epochs=10, resume=str(ck))
    assert rec.n_epochs == 10 and history(rec)[:6] == history(rec6)
    assert rec.epochs[-1]["loss"] < rec6.epochs[-1]["loss"]


def test_train_resume_with_another_solver_is_refused(tmp_path):
    X, T = regression()
    ck = tmp_path / "ck.npz"
    jn.train(small_net(), X, T, solver="lm", max_epochs=3, checkpoint=str(ck), checkpoint_every=3)
    net = small_net()
    theta0 = net.get_flat()
    with pytest.raises(ValueError, match="solver"):
        jn.train(net, X, T, solver="adam", max_epochs=6, resume=str(ck))
    np.testing.assert_array_equal(net.theta, theta0)


# -------------------------------------------------------------------------- faults
def minibatch_only(solver: str, **settings: Any) -> dict[str, Any]:
    """``settings`` for a mini-batch solver; none for the full-batch ones, which refuse
    settings that are not theirs."""
    return settings if solver in jn.training.STOCHASTIC else {}


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("hidden", ["tanh", "relu"])
def test_train_huge_learning_rate_keeps_weights_finite(solver, hidden):
    X, T = regression()
    net = small_net(hidden=hidden)
    with np.errstate(all="ignore"):
        rec = jn.train(net, X, T, solver=solver, lr=1e3, max_epochs=30, seed=0)
    assert np.isfinite(net.theta).all()
    assert rec.stop_reason in STOP_REASONS
    assert all(math.isfinite(e["loss"]) for e in rec.epochs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_train_recovers_from_nan_by_halving_the_step(solver):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (60, 3))
    T = X @ np.array([[1.0], [2.0], [-1.0]]) + 0.5
    net = jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 1, NanAbove(4.0))], seed=0)
    rec = jn.train(net, X, T, solver=solver, loss="mse", lr=2.0, batch_size=10, seed=0,
                   max_epochs=40)
    assert rec.stop_reason == "max_epochs" and rec.n_epochs == 40
    lrs = rec.column("lr")
    assert lrs[-1] <= 1.0 and set(lrs) <= {2.0 * 0.5**k for k in range(40)}  # halvings only
    assert np.isfinite(net.theta).all() and math.isfinite(net.loss(X, T, "mse"))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lm", "lbfgs"])
def test_train_nan_from_the_start_stops_non_finite_with_theta_untouched(solver):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (30, 3))
    T = X.sum(1, keepdims=True)
    net = jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 1, NanAbove(1e-3))], seed=0)
    theta0 = net.get_flat()
    with np.errstate(all="ignore"):
        rec = jn.train(net, X, T, solver=solver, max_epochs=20,
                       **minibatch_only(solver, lr=0.1, max_retries=3))
    assert rec.stop_reason == "non_finite" and rec.n_epochs == 0
    np.testing.assert_array_equal(net.theta, theta0)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lm", "lbfgs"])
def test_train_overflowing_sse_stops_non_finite_with_finite_theta(solver):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (30, 3)) * 1e200  # finite inputs, an sse of inf
    T = rng.normal(size=(30, 1))
    net = jn.Network([jn.Dense(3, 1)], seed=0)
    theta0 = net.get_flat()
    with np.errstate(all="ignore"):
        rec = jn.train(net, X, T, solver=solver, loss="sse", max_epochs=20,
                       **minibatch_only(solver, lr=0.1))
    assert rec.stop_reason == "non_finite"
    np.testing.assert_array_equal(net.theta, theta0)


def noisy_sine(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 1))
    return X, np.sin(3 * X) + 0.3 * rng.normal(size=X.shape)


@pytest.mark.parametrize(
    "options",
    [{"solver": "lm"}, {"solver": "adam", "lr": 0.05, "batch_size": 8}, {"solver": "lbfgs"}],
    ids=["lm", "adam", "lbfgs"],
)
def test_train_early_stopping_restores_the_best_weights(options):
    X, T = noisy_sine()
    net = jn.Network([jn.Dense(1, 20, "tanh"), jn.Dense(20, 1)], seed=0)
    rec = jn.train(net, X, T, loss="mse", validation_fraction=0.25, max_fail=4, max_epochs=300,
                   seed=1, **options)
    assert rec.stop_reason == "validation"
    assert rec.n_epochs - rec.best_epoch == 4 and rec.best_epoch >= 1
    val = rec.column("val_loss")
    assert val[rec.best_epoch - 1] == val.min()
    vi = rec.division["validation"]
    assert net.loss(X[vi], T[vi], "mse") == pytest.approx(val[rec.best_epoch - 1], rel=1e-12)
    assert rec.best_val_loss == val[rec.best_epoch - 1]
    assert net.loss(X[vi], T[vi], "mse") < val[-1]  # not the last epoch's weights


def test_train_without_restore_best_keeps_the_last_weights():
    X, T = noisy_sine()
    net = jn.Network([jn.Dense(1, 20, "tanh"), jn.Dense(20, 1)], seed=0)
    rec = jn.train(net, X, T, solver="lm", validation_fraction=0.25, max_fail=4, seed=1,
                   restore_best=False)
    vi = rec.division["validation"]
    assert net.loss(X[vi], T[vi], "mse") == pytest.approx(rec.epochs[-1]["val_loss"], rel=1e-12)


def test_train_time_limit_stops_with_time_limit():
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver="sgd", lr=1e-3, batch_size=4, max_epochs=10**6,
                   time_limit=0.2)
    assert rec.stop_reason == "time_limit"
    assert 0.2 <= rec.seconds < 30 and rec.n_epochs < 10**6  # 30: slow shared machines


@pytest.mark.parametrize("solver", ["adam", "lm", "lbfgs"])
def test_train_callback_returning_true_stops_with_callback(solver):
    X, T = regression()
    seen: list[int] = []

    def stop_at_three(entry, net):
        assert isinstance(net, jn.Network)
        seen.append(entry["epoch"])
        return entry["epoch"] == 3

    rec = jn.train(small_net(), X, T, solver=solver, max_epochs=50, callbacks=[stop_at_three])
    assert rec.stop_reason == "callback" and rec.n_epochs == 3 and seen == [1, 2, 3]


def test_train_n_iter_no_change_stops_with_no_improvement():
    # tol larger than any possible gain: only epoch 1 improves (on the initial inf) by
    # more than tol, so the count stops it; the best epoch is still the lowest loss.
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver="adam", lr=0.01, max_epochs=100,
                   n_iter_no_change=5, tol=1e3)
    assert rec.stop_reason == "no_improvement" and rec.n_epochs == 6
    losses = [e["loss"] for e in rec.epochs]
    assert losses[-1] < losses[0]  # adam still lowered the loss
    assert rec.best_epoch == 1 + int(np.argmin(losses)) and rec.best_loss == min(losses)


def test_train_goal_stops_the_gradient_solvers():
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver="adam", lr=0.01, max_epochs=500, goal=0.01, seed=0)
    assert rec.stop_reason == "goal" and rec.epochs[-1]["loss"] <= 0.01
    assert all(e["loss"] > 0.01 for e in rec.epochs[:-1])


# ----------------------------------------------------------------------- bad input
BAD = [
    ({"solver": "adam", "lr": -0.1}, ValueError, "lr"),
    ({"solver": "adam", "lr": 0.0}, ValueError, "lr"),
    ({"solver": "adam", "batch_size": 0}, ValueError, "batch_size"),
    ({"solver": "adam", "batch_size": 2.5}, TypeError, "batch_size"),
    ({"validation_fraction": 1.5}, ValueError, "validation_fraction"),
    ({"validation_fraction": -0.1}, ValueError, "validation_fraction"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"test_fraction": 1.0}, ValueError, "test_fraction"),
    ({"validation_fraction": 0.5, "test_fraction": 0.5}, ValueError, "test_fraction"),
    ({"validation_fraction": 0.6, "test_fraction": 0.7}, ValueError, "test_fraction"),
    ({"solver": "newton"}, ValueError, "solver"),
    ({"solver": "adam", "schedule": "exponential"}, ValueError, "schedule"),
    ({"loss": "hinge"}, ValueError, "loss"),
    ({"goal": -1e-3}, ValueError, "goal"),
    ({"mu_dec": 1.0}, ValueError, "mu_dec"),
    ({"mu_dec": 2.0}, ValueError, "mu_dec"),
    ({"mu_inc": 1.0}, ValueError, "mu_inc"),
    ({"mu_inc": 0.5}, ValueError, "mu_inc"),
    ({"mu": float("nan")}, ValueError, "mu"),
    ({"max_epochs": -1}, ValueError, "max_epochs"),
    ({"max_fail": 0}, ValueError, "max_fail"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"min_grad": "small"}, TypeError, "min_grad"),
    ({"learning_rate": 0.1}, TypeError, "learning_rate"),
]


@pytest.mark.parametrize(
    "options, error, name", BAD, ids=[",".join(f"{k}={v}" for k, v in o.items()) for o, *_ in BAD]
)
def test_train_bad_setting_raises_before_any_work(tmp_path, options, error, name):
    X, T = regression()
    net = small_net()
    theta0 = net.get_flat()
    calls: list[int] = []
    ck = tmp_path / "ck.npz"
    with pytest.raises(error, match=name):
        jn.train(net, X, T, callbacks=[lambda e, n: calls.append(1)],
                 **{"max_epochs": 5, "checkpoint": str(ck), "checkpoint_every": 1, **options})
    np.testing.assert_array_equal(net.theta, theta0)
    assert not calls and not ck.exists()


def test_train_bad_setting_in_a_solver_object_raises():
    X, T = regression()
    net = small_net()
    with pytest.raises(ValueError, match="mu_inc"):
        jn.train(net, X, T, jn.LevenbergMarquardt(mu_inc=0.9))
    # a solver object brings its own settings; loop options still come as keywords
    rec = jn.train(net, X, T, jn.LevenbergMarquardt(mu_inc=10.0), max_epochs=2)
    assert rec.n_epochs == 2


# -------------------------------------------------------------------------- record
def test_record_division_is_a_partition_with_trainlm_fractions():
    X, T = regression(200)
    rec = jn.train(small_net(), X, T, solver="lm", max_epochs=2, seed=0,
                   validation_fraction=0.15, test_fraction=0.15)
    d = rec.division
    assert set(d) == {"train", "validation", "test"}
    assert (len(d["train"]), len(d["validation"]), len(d["test"])) == (140, 30, 30)
    together = np.concatenate([d["train"], d["validation"], d["test"]])
    np.testing.assert_array_equal(np.sort(together), np.arange(200))
    assert all(e["val_loss"] is not None and e["test_loss"] is not None for e in rec.epochs)
    # the reported set losses are the network's losses on those indices
    net = small_net()
    rec = jn.train(net, X, T, solver="lm", max_epochs=1, seed=0, validation_fraction=0.15,
                   test_fraction=0.15, restore_best=False)
    for key, name in (("val_loss", "validation"), ("test_loss", "test"), ("loss", "train")):
        idx = rec.division[name]
        assert rec.epochs[0][key] == pytest.approx(net.loss(X[idx], T[idx], "mse"), rel=1e-12)


def test_record_without_division_trains_on_everything():
    X, T = regression(50)
    rec = jn.train(small_net(), X, T, solver="adam", max_epochs=2)
    assert set(rec.division) == {"train"}
    np.testing.assert_array_equal(rec.division["train"], np.arange(50))
    assert all(e["val_loss"] is None and e["test_loss"] is None for e in rec.epochs)


@pytest.mark.parametrize(
    "solver, extra", [("adam", {"lr"}), ("sgd", {"lr"}), ("lm", {"mu"}), ("lbfgs", set())]
)
def test_record_epochs_have_the_documented_keys(solver, extra):
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver=solver, max_epochs=3, validation_fraction=0.2,
                   seed=0)
    assert rec.n_epochs == 3 and rec.solver == solver
    for k, entry in enumerate(rec.epochs, start=1):
        assert set(entry) == EPOCH_KEYS | extra
        assert entry["epoch"] == k
        assert all(math.isfinite(entry[key]) for key in EPOCH_KEYS - {"test_loss"} | extra)
    assert np.all(np.diff(rec.column("seconds")) >= 0)
    assert rec.stop_reason in STOP_REASONS


def test_record_json_round_trip():
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver="lm", max_epochs=30, validation_fraction=0.2,
                   test_fraction=0.1, max_fail=2, seed=0)
    text = json.dumps(rec.to_dict(), allow_nan=False)  # strict JSON
    assert json.loads(rec.to_json()) == json.loads(text)
    back = TrainingRecord.from_dict(json.loads(text))
    assert back.to_dict() == rec.to_dict()
    assert (back.solver, back.stop_reason, back.best_epoch) == (
        rec.solver, rec.stop_reason, rec.best_epoch)
    assert back.best_loss == rec.best_loss and back.best_val_loss == rec.best_val_loss
    assert back.epochs == rec.epochs and back.seconds == rec.seconds
    for key, idx in rec.division.items():
        assert back.division[key].dtype.kind == "i"
        np.testing.assert_array_equal(back.division[key], idx)
    assert json.loads(text)["stop_message"] == STOP_REASONS[rec.stop_reason]
    empty = TrainingRecord.from_dict(json.loads(TrainingRecord().to_json()))
    assert empty.best_loss == math.inf and empty.n_epochs == 0


def test_early_stopping_keeps_the_lowest_validation_loss_whatever_tol():
    """tol decides what counts as a failure, not which weights are best: an epoch that
    lowers the validation loss by less than tol is still the new best (scikit-learn's
    rule), and those are the weights restored."""
    X, T = regression(200)
    net = small_net()
    rec = jn.train(net, X, T, solver="adam", loss="mse", lr=3e-3, max_epochs=80, seed=0,
                   batch_size=16, validation_fraction=0.25, max_fail=10, tol=1e-2)
    vals = [e["val_loss"] for e in rec.epochs]
    assert rec.stop_reason == "validation"  # 10 epochs without a gain of 1e-2
    assert rec.best_epoch == 1 + int(np.argmin(vals)) and rec.best_val_loss == min(vals)
    # only improvements > tol reset the count: the best came less than max_fail epochs
    # before the stop, but the last gain of more than tol came exactly max_fail before it
    assert rec.n_epochs - rec.best_epoch < 10
    idx = rec.division["validation"]
    assert net.loss(X[idx], T[idx], "mse") == pytest.approx(min(vals), rel=1e-12)


class HalvingCosine(jn.schedules.Cosine):
    """A user subclass that keeps its parent's name: resume must rebuild it, not Cosine."""

    def lr_at(self, epoch):
        return 0.5 * super().lr_at(epoch)


def test_train_resume_rebuilds_a_user_schedule_as_its_own_class(tmp_path):
    X, T = regression()
    options = {"solver": "adam", "lr": 0.01, "batch_size": 16, "seed": 3}
    full = small_net()
    jn.train(full, X, T, max_epochs=8, schedule=HalvingCosine(0.01, t_max=8), **options)
    ck = tmp_path / "ck.npz"
    jn.train(small_net(), X, T, max_epochs=4, checkpoint=str(ck), checkpoint_every=2,
             schedule=HalvingCosine(0.01, t_max=8), **options)
    resumed = small_net(seed=99)
    rec = jn.train(resumed, X, T, max_epochs=8, resume=str(ck),
                   schedule=HalvingCosine(0.01, t_max=8), **options)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert rec.n_epochs == 8


def test_train_resume_from_the_epoch_that_ended_the_run_is_that_run(tmp_path):
    X, T = regression()
    options = {"goal": 1e-3, "seed": 0, "max_epochs": 200}
    full = small_net()
    rec_full = jn.train(full, X, T, solver="lm", **options)
    assert rec_full.stop_reason == "goal"
    ck = tmp_path / "ck.npz"
    _lm_checkpoint(ck, X, T, **options)
    resumed = small_net(seed=99)
    rec = jn.train(resumed, X, T, solver="lm", resume=str(ck), **options)
    assert rec.stop_reason == "goal" and rec.n_epochs == rec_full.n_epochs
    np.testing.assert_array_equal(resumed.theta, full.theta)


def _lm_checkpoint(path, X, T, **options):
    """An LM run of a fresh small_net that checkpoints every epoch into ``path``."""
    return jn.train(small_net(), X, T, solver="lm", checkpoint=str(path), checkpoint_every=1,
                    **options)


def _assert_resume_fails_leaving_the_network(ck, X, T, error, match=None):
    net = small_net(seed=5)
    before = net.get_flat()
    with pytest.raises(error, match=match):
        jn.train(net, X, T, solver="lm", max_epochs=4, resume=str(ck))
    np.testing.assert_array_equal(net.theta, before)


def test_train_resume_on_other_data_is_refused_and_leaves_the_network(tmp_path):
    X, T = regression()
    ck = tmp_path / "ck.npz"
    _lm_checkpoint(ck, X, T, max_epochs=2)
    _assert_resume_fails_leaving_the_network(
        ck, X[:50], T[:50], ValueError, "resume: the checkpoint divided 80 rows .* has 50")


def test_train_resume_needs_the_validation_data_its_run_had(tmp_path):
    """A run trained with ``validation_data`` resumes with it, equal to the uninterrupted
    run; without it (its validation failures would count as training-loss stalls), or with
    a set of other size, or with one its run never had, the resume is refused by name and
    the network is left as given."""
    X, T = regression()
    Xv, Tv = regression(30, seed=1)
    options = {"solver": "adam", "lr": 0.02, "batch_size": 16, "seed": 3, "max_fail": 3}
    full = small_net()
    rec_full = jn.train(full, X, T, max_epochs=12, validation_data=(Xv, Tv), **options)
    ck = tmp_path / "ck.npz"
    jn.train(small_net(), X, T, max_epochs=6, validation_data=(Xv, Tv), checkpoint=str(ck),
             checkpoint_every=3, **options)
    for given, match in [(None, "had validation_data of 30 rows; .* \\(got none\\)"),
                         ((Xv[:20], Tv[:20]), "of 30 rows; .* \\(got 20 rows\\)")]:
        net = small_net(seed=5)
        before = net.get_flat()
        with pytest.raises(ValueError, match=match):
            jn.train(net, X, T, max_epochs=12, validation_data=given, resume=str(ck), **options)
        np.testing.assert_array_equal(net.theta, before)
    resumed = small_net(seed=99)
    rec = jn.train(resumed, X, T, max_epochs=12, validation_data=(Xv, Tv), resume=str(ck),
                   **options)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert history(rec) == history(rec_full) and rec.stop_reason == rec_full.stop_reason
    jn.train(small_net(), X, T, max_epochs=3, checkpoint=str(ck), checkpoint_every=3, **options)
    with pytest.raises(ValueError, match="had no validation_data; .* \\(got 30 rows\\)"):
        jn.train(small_net(), X, T, max_epochs=6, validation_data=(Xv, Tv), resume=str(ck),
                 **options)


def test_train_resume_with_a_lower_goal_trains_on_as_an_uninterrupted_run(tmp_path):
    X, T = regression()
    ck = tmp_path / "ck.npz"
    first = _lm_checkpoint(ck, X, T, goal=1e-2, max_epochs=200, seed=0)
    assert first.stop_reason == "goal"
    full = small_net()
    rec_full = jn.train(full, X, T, solver="lm", goal=1e-4, max_epochs=200, seed=0)
    resumed = small_net(seed=99)
    rec = jn.train(resumed, X, T, solver="lm", goal=1e-4, max_epochs=200, seed=0,
                   resume=str(ck))
    assert rec.stop_reason == rec_full.stop_reason == "goal"
    assert rec.n_epochs == rec_full.n_epochs > first.n_epochs
    np.testing.assert_array_equal(resumed.theta, full.theta)


def test_train_failed_resume_leaves_the_network_as_given(tmp_path):
    from jacnet.checkpoint import load_checkpoint, save_checkpoint

    X, T = regression()
    ck = tmp_path / "ck.npz"
    _lm_checkpoint(ck, X, T, max_epochs=2)
    arrays, meta = load_checkpoint(ck)
    del meta["best_score"]
    meta.pop("format", None)
    save_checkpoint(tmp_path / "bad.npz", arrays, meta)
    _assert_resume_fails_leaving_the_network(tmp_path / "bad.npz", X, T, KeyError)


@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_goal_met_by_the_initial_weights_stops_before_any_step(solver):
    X, T = regression()
    net = small_net()
    before = net.get_flat()
    initial = net.loss(X, T, "mse")
    rec = jn.train(net, X, T, solver=solver, loss="mse", goal=10 * initial, max_epochs=50)
    assert rec.stop_reason == "goal" and rec.n_epochs == 0  # trainlm's check at epoch 0
    np.testing.assert_array_equal(net.theta, before)


def test_lm_goal_check_at_start_is_the_first_steps_loss(monkeypatch):
    """trainlm's check at epoch 0 evaluates the loss once; LM's first step reuses that
    value (LevenbergMarquardt.value) instead of evaluating the same weights again."""
    from jacnet.solvers import Objective

    X, T = regression()
    calls = []
    value = Objective.value
    monkeypatch.setattr(Objective, "value", lambda self: calls.append(1) or value(self))
    net = small_net()
    jn.train(net, X, T, solver="lm", loss="mse", goal=1e-12, max_epochs=1)
    with_goal = len(calls)
    calls.clear()
    jn.train(small_net(), X, T, solver="lm", loss="mse", max_epochs=1)
    assert with_goal == len(calls) >= 2  # the start's value, then each trial's
