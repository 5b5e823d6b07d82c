"""Tests of jacnet.minibatch: the mini-batch solvers' epoch (checks once per epoch, the one
L2 penalty value) and their gathering of shuffled batches."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet.losses import get_loss
from jacnet.minibatch import gather_rows
from jacnet.solvers import Objective


def sin_data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    X = np.linspace(-np.pi, np.pi, n)[:, None]
    return X, np.sin(X)


def sin_net(seed: int = 0) -> jn.Network:
    return jn.Network([jn.Dense(1, 5, "tanh"), jn.Dense(5, 1)], seed=seed)


def test_gather_rows_fills_the_head_of_each_buffer():
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    bufs = (np.empty((4, 3)), np.empty((4, 2)), None)
    rows = np.array([7, 2, 5])
    Xb, Tb, wb = gather_rows(rows, (X, T, None), bufs)
    np.testing.assert_array_equal(Xb, X[rows])
    np.testing.assert_array_equal(Tb, T[rows])
    assert wb is None and np.shares_memory(Xb, bufs[0]) and np.shares_memory(Tb, bufs[1])


def test_minibatch_checks_the_update_arguments_once_per_epoch(monkeypatch):
    from jacnet.optimizers import Optimizer

    X, T = sin_data()
    calls = []
    prepare = Optimizer.prepare
    monkeypatch.setattr(Optimizer, "prepare",
                        lambda self, *a: calls.append(1) or prepare(self, *a))
    jn.train(sin_net(), X, T, "sgd", batch_size=4, max_epochs=3)
    assert len(calls) == 3


def test_minibatch_recorded_loss_adds_the_one_l2_penalty():
    from jacnet.optimizers import l2_penalty

    X, T = sin_data()
    net = sin_net()
    rec = jn.train(net, X, T, "sgd", lr=1e-12, batch_size=X.shape[0], shuffle=False,
                   alpha=0.3, max_epochs=1)
    before = sin_net()
    expected = before.loss(X, T, "mse") + l2_penalty(before.theta, before.weight_mask(), 0.3)
    assert rec.epochs[0]["loss"] == pytest.approx(expected, rel=1e-9)
    obj = Objective(before, X, T, get_loss("mse"), None, alpha=0.3)
    assert obj.penalty(before.theta) == l2_penalty(before.theta, before.weight_mask(), 0.3)
