"""Tests of jacnet.stopping: each rule fires with its own reason, once, from its own
counters; the counters go through a checkpoint; train builds and asks the rules."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import jacnet as jn
from jacnet.checkpoint import load_run
from jacnet.record import STOP_REASONS, TrainingRecord
from jacnet.stopping import (
    Goal,
    MaxEpochs,
    MinGrad,
    NoImprovement,
    StopRule,
    TimeLimit,
    ValidationFail,
    stop_rules,
)


def entry(epoch=1, loss=1.0, val_loss=None, grad_norm=1.0, seconds=0.0):
    return {"epoch": epoch, "loss": loss, "val_loss": val_loss, "grad_norm": grad_norm,
            "seconds": seconds}


def fired_at(rule: StopRule, entries) -> list[bool]:
    out = []
    for e in entries:
        rule.observe(e)
        out.append(rule.fired(e))
    return out


@pytest.mark.parametrize("cls", [Goal, MinGrad, ValidationFail, NoImprovement, TimeLimit,
                                 MaxEpochs])
def test_rule_reason_is_a_documented_stop_reason(cls):
    assert cls.reason in STOP_REASONS


def test_goal_fires_at_or_below_the_goal_and_never_with_goal_zero():
    assert fired_at(Goal(0.5), [entry(loss=v) for v in (1.0, 0.6, 0.5, 0.1)]) == [
        False, False, True, True]
    assert not any(fired_at(Goal(0.0), [entry(loss=v) for v in (1.0, 0.0, -1.0)]))


def test_goal_at_start_asks_the_solver_only_for_a_fresh_run():
    asked = []

    def run(n_epochs, value):
        solver = SimpleNamespace(start_loss=lambda: asked.append(1) or value)
        return SimpleNamespace(record=TrainingRecord(epochs=[{}] * n_epochs), solver=solver)

    assert Goal(0.5).start(run(0, 0.4)) and not Goal(0.5).start(run(0, 0.6))
    assert not Goal(0.5).start(run(0, None))  # a solver with no loss before its first step
    asked.clear()
    assert not Goal(0.5).start(run(3, 0.1)) and not asked
    assert not Goal(0.0).start(run(0, 0.0)) and not asked


def test_min_grad_fires_below_the_threshold():
    assert fired_at(MinGrad(1e-3), [entry(grad_norm=g) for g in (1.0, 1e-3, 9e-4)]) == [
        False, False, True]


def test_validation_fail_counts_failures_against_the_best_with_tol():
    rule = ValidationFail(max_fail=2, tol=0.1)
    run = SimpleNamespace(initial_val_loss=1.0)
    assert not rule.start(run) and rule.best == 1.0  # the initial weights: epoch 0
    vals = [0.95, 0.8, 0.85, 0.79, 0.78]  # gains of 0.05 (a failure, but a new best), ...
    assert fired_at(rule, [entry(val_loss=v) for v in vals]) == [
        False, False, False, True, True]
    assert rule.best == 0.78 and rule.fails == 3


def test_validation_fail_counts_a_nan_as_a_failure_and_keeps_the_best():
    rule = ValidationFail(max_fail=2)
    assert fired_at(rule, [entry(val_loss=v) for v in (1.0, math.nan, math.nan)]) == [
        False, False, True]
    assert rule.best == 1.0


def test_no_improvement_watches_the_training_loss():
    rule = NoImprovement(3, tol=0.0)
    losses = [1.0, 1.0, 0.9, 0.95, 0.9, 0.91]
    assert fired_at(rule, [entry(loss=v) for v in losses]) == [
        False, False, False, False, False, True]


def test_time_limit_and_max_epochs():
    assert fired_at(TimeLimit(1.0), [entry(seconds=s) for s in (0.5, 1.0)]) == [False, True]
    assert fired_at(MaxEpochs(2), [entry(epoch=e) for e in (1, 2)]) == [False, True]
    record = SimpleNamespace(record=TrainingRecord(epochs=[{}] * 2))
    assert MaxEpochs(2).start(record) and not MaxEpochs(3).start(record)
    assert MaxEpochs(0).start(SimpleNamespace(record=TrainingRecord()))


@pytest.mark.parametrize("rule", [ValidationFail(3, 0.01), NoImprovement(4, 0.1)])
def test_rule_state_round_trips(rule):
    fired_at(rule, [entry(loss=v, val_loss=v) for v in (1.0, 0.5, 0.7)])
    fresh = type(rule)(3 if isinstance(rule, ValidationFail) else 4)
    fresh.set_state(rule.get_state())
    assert (fresh.best, fresh.fails) == (rule.best, rule.fails) == (0.5, 1)


def test_stop_rules_builds_the_rules_that_apply():
    names = [type(r).__name__ for r in stop_rules(validation=True)]
    assert names == ["Goal", "MinGrad", "ValidationFail", "MaxEpochs"]
    names = [type(r).__name__ for r in stop_rules(validation=True, early_stopping=False)]
    assert names == ["Goal", "MinGrad", "MaxEpochs"]
    names = [type(r).__name__ for r in stop_rules(n_iter_no_change=3, time_limit=5.0)]
    assert names == ["Goal", "MinGrad", "NoImprovement", "TimeLimit", "MaxEpochs"]


@pytest.mark.parametrize("options, error, name", [
    ({"max_fail": 0}, ValueError, "max_fail"),  # checked though no validation data
    ({"tol": -1.0}, ValueError, "tol"),
    ({"n_iter_no_change": 1.5}, TypeError, "n_iter_no_change"),
    ({"time_limit": 0.0}, ValueError, "time_limit"),
    ({"goal": "x"}, TypeError, "goal"),
    ({"max_epochs": -1}, ValueError, "max_epochs"),
])
def test_stop_rules_checks_every_setting_by_name(options, error, name):
    with pytest.raises(error, match=name):
        stop_rules(**options)


# ----------------------------------------------------------------------------- in train
def regression(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 3))
    return X, np.stack([np.sin(X.sum(1)), X[:, 0] * X[:, 1]], axis=1)


def small_net(seed=0):
    return jn.Network([jn.Dense(3, 6, "tanh"), jn.Dense(6, 2)], seed=seed)


class StopAtLoss(StopRule):
    """A user rule: stop once the training loss falls below ``level``."""

    reason = "goal"

    def __init__(self, level):
        self.level = level
        self.seen = 0

    def observe(self, entry):
        self.seen += 1

    def fired(self, entry):
        return entry["loss"] < self.level


def test_train_asks_a_given_rule_before_the_built_in_ones():
    X, T = regression()
    free = jn.train(small_net(), X, T, solver="lm", max_epochs=30)
    level = free.epochs[4]["loss"] * 1.0000001  # epoch 5's loss
    rule = StopAtLoss(level)
    rec = jn.train(small_net(), X, T, solver="lm", max_epochs=30, stop=[rule])
    assert rec.stop_reason == "goal" and rec.n_epochs == 5 and rule.seen == 5


def test_train_min_grad_stops_lm_once_with_its_epoch_recorded():
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver="lm", min_grad=1e6, max_epochs=10)
    assert rec.stop_reason == "min_grad" and rec.n_epochs == 1


def test_train_checkpoint_holds_the_rules_counters(tmp_path):
    X, T = regression()
    ck = tmp_path / "ck.npz"
    jn.train(small_net(), X, T, solver="adam", lr=0.02, batch_size=16, seed=0, max_epochs=6,
             validation_fraction=0.25, max_fail=50, tol=1.0, checkpoint=str(ck),
             checkpoint_every=6)
    saved = load_run(ck)
    # tol=1: no epoch gains that much, so every epoch failed; the best is the lowest val loss
    vals = [e["val_loss"] for e in saved.record.epochs]
    state = saved.rules["ValidationFail"]
    assert state["fails"] == 6 and state["best"] <= min(vals)  # the initial weights may win
    assert saved.best_score == state["best"]


@pytest.mark.parametrize("solver", ["adam", "lm", "lbfgs"])
def test_train_gives_max_epochs_once_the_budget_is_used(solver):
    X, T = regression()
    rec = jn.train(small_net(), X, T, solver=solver, max_epochs=3, min_grad=0.0)
    assert rec.stop_reason == "max_epochs" and rec.n_epochs == 3
    rec = jn.train(small_net(), X, T, solver=solver, max_epochs=0)
    assert rec.stop_reason == "max_epochs" and rec.n_epochs == 0
