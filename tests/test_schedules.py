"""Tests of jacnet.schedules: values recomputed by hand, plateau logic, round trips."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from jacnet.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    InvScaling,
    ReduceOnPlateau,
    Schedule,
    Step,
    get_schedule,
)

# Constructor arguments of one instance per registered schedule.
EXAMPLES: dict[str, dict[str, Any]] = {
    "constant": {"lr": 0.1},
    "invscaling": {"lr": 0.1, "power_t": 0.25},
    "step": {"lr": 0.1, "step_size": 3, "gamma": 0.5},
    "cosine": {"lr": 0.1, "t_max": 8, "lr_min": 0.001},
    "reduce_on_plateau": {"lr": 0.1, "factor": 0.5, "patience": 2},
}


def test_schedule_examples_cover_registry():
    assert set(EXAMPLES) == set(SCHEDULES)


def test_constant_values():
    s = Constant(0.1)
    assert [s.lr_at(e) for e in range(5)] == [0.1] * 5


def test_invscaling_values_match_formula():
    s = InvScaling(0.1, power_t=0.5)
    # lr / (e + 1)^power_t, epoch 0 uses lr itself.
    assert [s.lr_at(e) for e in range(4)] == pytest.approx(
        [0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3), 0.1 / 2], rel=1e-15
    )


def test_step_values_match_formula():
    s = Step(1.0, step_size=3, gamma=0.5)
    assert [s.lr_at(e) for e in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_cosine_values_match_formula():
    lr, lr_min, t_max = 0.1, 0.001, 4
    s = Cosine(lr, t_max=t_max, lr_min=lr_min)
    expected = [
        lr,
        lr_min + (lr - lr_min) * (1 + math.sqrt(0.5)) / 2,
        (lr + lr_min) / 2,
        lr_min + (lr - lr_min) * (1 - math.sqrt(0.5)) / 2,
        lr_min,
    ]
    assert [s.lr_at(e) for e in range(5)] == pytest.approx(expected, rel=1e-14)


def test_cosine_stays_at_lr_min_after_t_max():
    s = Cosine(0.1, t_max=4, lr_min=0.01)
    assert [s.lr_at(e) for e in (4, 5, 8, 100)] == pytest.approx([0.01] * 4, rel=1e-15)


def test_reduce_on_plateau_reduces_after_patience_plus_one_bad_epochs():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=2, threshold=0.0)
    losses = [5.0, 4.0, 4.0, 4.5, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    lrs = []
    for epoch, loss in enumerate(losses):
        lrs.append(s.lr_at(epoch))
        s.observe(epoch, loss)
    # Bad epochs 2, 3, 4: the third reduces from epoch 5 on; 6, 7, 8 again; 9, 10 not yet.
    assert lrs == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    s.observe(11, 3.0)
    assert s.lr_at(12) == 0.125
    assert s.best == 3.0


def test_reduce_on_plateau_ignores_improvements_below_threshold():
    s = ReduceOnPlateau(1.0, factor=0.1, patience=0, threshold=0.1)
    s.observe(0, 10.0)
    s.observe(1, 9.5)  # needs < 10 - 0.1 · 10 = 9
    assert s.lr_at(2) == pytest.approx(0.1)
    assert s.best == 10.0
    s.observe(2, 8.9)
    assert s.best == 8.9
    assert s.lr_at(3) == pytest.approx(0.1)


def test_reduce_on_plateau_threshold_is_relative_to_abs_best():
    s = ReduceOnPlateau(1.0, patience=0, threshold=0.1)
    s.observe(0, -10.0)
    s.observe(1, -10.5)  # needs < -10 - 0.1 · 10 = -11
    assert s.best == -10.0
    s.observe(2, -11.5)
    assert s.best == -11.5


def test_reduce_on_plateau_respects_min_lr():
    s = ReduceOnPlateau(1.0, factor=0.1, patience=0, min_lr=0.05)
    for epoch in range(5):
        s.observe(epoch, 1.0)
    assert s.lr_at(5) == 0.05


def test_reduce_on_plateau_nan_is_never_an_improvement():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=0)
    s.observe(0, float("nan"))
    assert s.best is None
    assert s.lr_at(1) == 0.5
    s.observe(1, 2.0)
    s.observe(2, float("nan"))
    assert s.best == 2.0
    assert s.lr_at(3) == 0.25


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_to_dict_round_trip_continues_identically(name):
    a = get_schedule(name, **EXAMPLES[name])
    losses = [3.0, 2.0, 2.5, 2.5, 2.5, 1.0, 1.5, 1.5, 1.5, 1.5]
    for epoch, loss in enumerate(losses[:5]):
        a.lr_at(epoch)
        a.observe(epoch, loss)
    b = Schedule.from_dict(json.loads(json.dumps(a.to_dict())))
    assert type(b) is type(a)
    assert b.get_config() == a.get_config()
    for epoch, loss in enumerate(losses[5:], start=5):
        assert b.lr_at(epoch) == a.lr_at(epoch)
        a.observe(epoch, loss)
        b.observe(epoch, loss)
    assert b.to_dict() == a.to_dict()


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "reduce_on_plateau"])
def test_stateless_schedule_is_a_pure_function_of_epoch(name):
    s = get_schedule(name, **EXAMPLES[name])
    before = [s.lr_at(e) for e in range(10)]
    for epoch in range(10):
        s.observe(epoch, 1.0)  # the same loss every epoch: a plateau, ignored here
    assert [s.lr_at(e) for e in reversed(range(10))] == before[::-1]
    assert s.to_dict()["state"] == {}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_starts_at_lr(name):
    s = get_schedule(name, **EXAMPLES[name])
    assert s.lr_at(0) == EXAMPLES[name]["lr"]


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_rejects_negative_epoch(name):
    s = get_schedule(name, **EXAMPLES[name])
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        s.lr_at(-1)
    with pytest.raises(TypeError, match="epoch"):
        s.lr_at(1.5)


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("constant", {"lr": -0.1}, "lr"),
        ("constant", {"lr": 0.0}, "lr"),
        ("invscaling", {"lr": 0.1, "power_t": -0.5}, "power_t"),
        ("step", {"lr": 0.1, "step_size": 0}, "step_size"),
        ("step", {"lr": 0.1, "step_size": 2, "gamma": 0.0}, "gamma"),
        ("step", {"lr": 0.1, "step_size": 2, "gamma": 1.5}, "gamma"),
        ("cosine", {"lr": 0.1, "t_max": 0}, "t_max"),
        ("cosine", {"lr": 0.1, "t_max": 5, "lr_min": 0.2}, "lr_min"),
        ("cosine", {"lr": 0.1, "t_max": 5, "lr_min": -0.1}, "lr_min"),
        ("reduce_on_plateau", {"lr": 0.1, "factor": 1.0}, "factor"),
        ("reduce_on_plateau", {"lr": 0.1, "patience": -1}, "patience"),
        ("reduce_on_plateau", {"lr": 0.1, "threshold": -1e-4}, "threshold"),
        ("reduce_on_plateau", {"lr": 0.1, "min_lr": -0.1}, "min_lr"),
        ("reduce_on_plateau", {"lr": float("inf")}, "lr"),
    ],
)
def test_schedule_invalid_arguments_raise_naming_the_argument(name, kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{re.escape(argument)} must be .*, got "):
        get_schedule(name, **kwargs)


def test_schedule_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="step_size must be an int >= 1, got float 2.0"):
        Step(0.1, step_size=2.0)
    with pytest.raises(TypeError, match="lr must be a positive float, got str"):
        Constant("0.1")
    with pytest.raises(TypeError, match="val_loss"):
        ReduceOnPlateau(0.1).observe(0, "1.0")


def test_get_schedule_builds_from_name_and_passes_instances():
    s = get_schedule("cosine", lr=0.01, t_max=10)
    assert isinstance(s, Cosine)
    assert (s.lr, s.t_max, s.lr_min) == (0.01, 10, 0.0)
    assert get_schedule(s) is s
    with pytest.raises(TypeError, match="instance"):
        get_schedule(s, lr=0.1)


def test_get_schedule_unknown_name_lists_valid_names():
    valid = "constant, cosine, invscaling, reduce_on_plateau, step"
    with pytest.raises(
        ValueError, match=re.escape(f"unknown schedule 'linear'; valid names: {valid}")
    ):
        get_schedule("linear", lr=0.1)


def test_schedule_from_dict_rejects_state_for_stateless_schedule():
    d = Constant(0.1).to_dict()
    d["state"] = {"lr_current": 0.5}
    with pytest.raises(ValueError, match="no state"):
        Schedule.from_dict(d)


def test_schedule_subclass_from_dict_rejects_another_schedule():
    with pytest.raises(ValueError, match="Cosine"):
        ReduceOnPlateau.from_dict(Cosine(0.1, t_max=3).to_dict())
