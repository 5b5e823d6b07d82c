"""jacnet.fitplan: every entry point of the estimators builds one FitPlan and executes it;
the patience rule is decided once; scikit-learn's stall rule and SGD rate live here."""

from __future__ import annotations

import numpy as np
import pytest

from jacnet import fitplan
from jacnet.estimators import MLPClassifier, MLPRegressor
from jacnet.fitplan import FitPlan, SGDRate, SklearnStall, patience
from jacnet.training import train

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _reg(**kw):
    kw = {"hidden_layer_sizes": (4,), "random_state": 0, "max_iter": 5, **kw}
    return MLPRegressor(**kw)


@pytest.fixture
def plans(monkeypatch):
    """The plans the estimators execute, in order."""
    seen: list[FitPlan] = []
    execute = MLPRegressor.execute_plan

    def spy(self, plan):
        seen.append(plan)
        return execute(self, plan)

    monkeypatch.setattr(MLPRegressor, "execute_plan", spy)
    monkeypatch.setattr(MLPClassifier, "execute_plan", spy)
    return seen


# ------------------------------------------------------------------------- patience
def test_patience_is_decided_in_one_order():
    assert patience("lm", 10, max_fail=3) == 3
    assert patience("adam", 10) == 11  # scikit-learn: n_iter_no_change + 1
    assert patience("lm") == patience("lbfgs") == fitplan.FULL_BATCH_PATIENCE == 6
    assert patience("adam") == patience("sgd") == fitplan.MINI_BATCH_PATIENCE == 30


@pytest.mark.parametrize("solver, expected", [("lm", 6), ("lbfgs", 6), ("adam", 30),
                                              ("sgd", 30), ("lm", 4)])
def test_cli_takes_its_default_patience_from_the_plan(monkeypatch, tmp_path, solver, expected):
    from jacnet.cli import main
    from jacnet.cli import train as cli_train

    seen = {}

    def fit_divided(est, X, y, division, wait, progress):
        seen.update(patience=wait, n_iter_no_change=est.n_iter_no_change)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_train, "_fit_divided", fit_divided)
    given = ["--patience", "4"] if expected == 4 else []
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "iris", "--solver", solver, "--out", str(tmp_path / "r"),
              "-q", *given])
    assert seen == {"patience": expected, "n_iter_no_change": expected}


# ------------------------------------------------------------- each entry point's plan
def test_fit_plans_all_rows_with_jacnet_train(plans):
    X, y = _data()
    _reg(solver="adam").fit(X, y)
    (plan,) = plans
    assert plan.data[0].shape == (60, 3) and plan.data[1].shape == (60, 1)
    assert plan.validation is None and plan.test is None and plan.division is None
    assert plan.first and not plan.incremental and plan.trainer is train
    assert isinstance(plan.stall, SklearnStall) and plan.stall.key == "loss"
    assert plan.stall.limit == 11 and plan.options["max_epochs"] == 5
    assert len(plan.callbacks) == 1 and plan.scorer is None  # the loss in the data's units


def test_fit_with_early_stopping_plans_scikit_learns_split(plans):
    X, y = _data(n=95)
    _reg(solver="lm", early_stopping=True, validation_fraction=0.1).fit(X, y)
    (plan,) = plans
    assert plan.validation[0].shape[0] == 10 and plan.data[0].shape[0] == 85  # ceil(9.5)
    assert plan.stall is None and plan.options["early_stopping"]
    assert plan.options["max_fail"] == 11 and plan.scorer is not None
    assert len(plan.callbacks) == 2  # the validation score, the loss in the data's units


def test_partial_fit_plans_one_epoch_continuing_the_model(plans):
    X, y = _data()
    est = _reg(solver="sgd", learning_rate="invscaling")
    est.partial_fit(X, y)
    est.partial_fit(X, y)
    first, second = plans
    assert first.first and first.incremental and not second.first
    assert first.options["max_epochs"] == second.options["max_epochs"] == 1
    assert isinstance(first.solver.schedule, SGDRate)
    assert second.solver.schedule.t0 == 60  # scikit-learn's t_: the samples seen


def test_warm_start_plans_a_continued_fit(plans):
    X, y = _data()
    est = _reg(solver="lm", warm_start=True)
    est.fit(X, y)
    est.fit(X, y)
    assert [p.first for p in plans] == [True, False]
    assert not any(p.incremental for p in plans)


def test_fit_divided_plans_the_callers_rows(plans):
    X, y = _data()
    tr, va, te = np.arange(40), np.arange(40, 50), np.arange(50, 60)
    calls = []
    _reg(solver="adam", verbose=True).fit_divided(
        X, y, tr, va, te, max_fail=3, callbacks=[lambda e, n: calls.append(e["epoch"])])
    (plan,) = plans
    assert plan.data[0].shape[0] == 40 and plan.validation[0].shape[0] == 10
    assert plan.validation[2] is None and plan.test[0].shape[0] == 10
    assert set(plan.division) == {"train", "validation", "test"}
    assert plan.options["max_fail"] == 3 and plan.options["early_stopping"]
    assert plan.options["verbose"] is False  # the caller shows its own progress
    assert plan.stall is None and plan.scorer is None  # early_stopping=False: no score
    assert len(plan.callbacks) == 3 and calls  # test loss, data units, the caller's


def test_fit_divided_of_sgd_adaptive_waits_max_fail_on_the_validation_loss(plans):
    X, y = _data()
    _reg(solver="sgd", learning_rate="adaptive").fit_divided(
        X, y, np.arange(40), np.arange(40, 60), max_fail=4)
    (plan,) = plans
    assert plan.stall.key == "val_loss" and plan.stall.limit == 4
    assert plan.stall.rate is plan.solver.schedule
    assert not plan.options["early_stopping"]  # scikit-learn's rule stops instead


def test_partial_fit_refuses_early_stopping_in_the_plan():
    X, y = _data()
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        _reg(solver="adam", early_stopping=True).partial_fit(X, y)


# ------------------------------------------------------------ entry points agree
@pytest.mark.parametrize("solver", ["lm", "lbfgs", "adam", "sgd"])
def test_fit_equals_fit_divided_on_the_same_rows(solver):
    X, y = _data(n=80)
    rows = np.arange(0, 80, 2)
    fitted = _reg(solver=solver).fit(X[rows], y[rows])
    divided = _reg(solver=solver)
    divided.fit_divided(X, y, rows)
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, divided.coefs_ + divided.intercepts_,
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert fitted.loss_curve_ == divided.loss_curve_


# ------------------------------------------------------------ scikit-learn's rules
def test_sklearn_stall_divides_an_adaptive_rate_before_stopping():
    rate = SGDRate(0.1, "adaptive", 0.5, t0=0, n_samples=10, current=0.1)
    rule = SklearnStall("loss")
    rule.limit, rule.tol, rule.rate = 2, 0.1, rate  # a fall of tol or less is a failure
    for v in (1.0, 1.0, 1.0):
        rule.observe({"loss": v})
    assert rate.current == pytest.approx(0.02) and not rule.fired({})
    assert rule.get_state() == {"best": 1.0, "count": 0}


def test_sgd_rate_counts_time_in_samples():
    rate = SGDRate(0.1, "invscaling", 0.5, t0=30, n_samples=10, current=0.1)
    assert rate.lr_at(2) == pytest.approx(0.1 / (30 + 20 + 1) ** 0.5)
    assert SGDRate(0.1, "constant", 0.5, 0, 10, 0.1).lr_at(5) == 0.1
