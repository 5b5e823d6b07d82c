"""Tests of jacnet.batch: the buffered mini-batch backprop equals the general path."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet.batch import BatchBackprop
from jacnet.losses import Scaled
from jacnet.optimizers import get_optimizer

HIDDEN = ["relu", "tanh", "sigmoid", "identity", "elu", "softmax"]
OUTPUTS = [
    ("softmax", "cross_entropy"),
    ("identity", "mse"),
    ("identity", "sse"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "huber"),
    ("tanh", "mse"),
]


def _targets(loss: str, n: int, q: int, dtype, rng) -> np.ndarray:
    if loss == "cross_entropy":
        return np.eye(q, dtype=dtype)[rng.integers(0, q, n)]
    return rng.uniform(0.05, 1.0, (n, q)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output, loss", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_batch_backprop_equals_the_general_path_bit_for_bit(hidden, output, loss, dtype):
    # The fast path's in-place buffers and fused outputs follow the general path's order
    # of operations, so loss and gradient are identical, for full and partial batches,
    # with and without sample weights, plain or Scaled losses.
    rng = np.random.default_rng(0)
    for scaled in (False, True):
        net = jn.Network(
            [jn.Dense(5, 7, hidden), jn.Dense(7, 6, hidden), jn.Dense(6, 3, output)],
            seed=1, dtype=dtype,
        )
        loss_fn = Scaled(jn.get_loss(loss), 0.5) if scaled else jn.get_loss(loss)
        bp = BatchBackprop(net, loss_fn, 9)
        for n in (9, 4, 9):
            for w in (None, rng.uniform(0.1, 2.0, n).astype(dtype)):
                X = rng.standard_normal((n, 5)).astype(dtype)
                T = _targets(loss, n, 3, dtype, rng)
                value, grad = net._loss_and_flat_grad(X, T, loss_fn, w)
                assert bp(X, T, w) == value
                assert bp.grad.dtype == dtype
                np.testing.assert_array_equal(bp.grad, grad)


def test_batch_backprop_sees_in_place_parameter_updates():
    rng = np.random.default_rng(1)
    net = jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 2)], seed=0)
    bp = BatchBackprop(net, jn.get_loss("mse"), 8)
    X, T = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    bp(X, T)
    net.theta[...] += 0.1
    value = bp(X, T)
    assert value == net.loss(X, T, "mse")
    np.testing.assert_array_equal(bp.grad, net.loss_and_flat_grad(X, T, "mse")[1])


def test_batch_backprop_writes_into_the_given_gradient_and_nothing_else_aliases():
    rng = np.random.default_rng(2)
    net = jn.Network([jn.Dense(3, 4, "relu"), jn.Dense(4, 3, "softmax")], seed=0)
    grad = np.empty(net.n_params)
    bp = BatchBackprop(net, jn.get_loss("cross_entropy"), 5, grad)
    X = rng.standard_normal((5, 3))
    T = np.eye(3)[[0, 1, 2, 0, 1]]
    X0, T0 = X.copy(), T.copy()
    bp(X, T)
    assert bp.grad is grad
    np.testing.assert_array_equal(X, X0)  # inputs are read, never written
    np.testing.assert_array_equal(T, T0)


def test_batch_backprop_float32_has_no_silent_upcast():
    rng = np.random.default_rng(3)
    net = jn.Network([jn.Dense(4, 8, "relu"), jn.Dense(8, 8, "tanh"), jn.Dense(8, 3, "softmax")],
                     seed=0, dtype=np.float32)
    bp = BatchBackprop(net, jn.get_loss("cross_entropy"), 6)
    X = rng.standard_normal((6, 4)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    bp(X, T, rng.uniform(0.5, 1.0, 6).astype(np.float32))
    buffers = [*bp._T, *bp._G, *bp._tmp, bp._D, bp._R, *bp._col, bp.grad]
    assert all(a.dtype == np.float32 for a in buffers)


def test_train_uses_the_fast_path_with_the_general_paths_result():
    # One epoch of train() equals the same loop written with the public general path.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 4))
    T = np.eye(3)[rng.integers(0, 3, 50)]
    net = jn.Network([jn.Dense(4, 6, "relu"), jn.Dense(6, 3, "softmax")], seed=0)
    twin = net.copy()
    jn.train(net, X, T, solver="adam", loss="cross_entropy", lr=0.01, batch_size=16,
             max_epochs=1, shuffle=False, min_grad=0.0)
    opt = get_optimizer("adam", lr=0.01)
    state = opt.init([twin.theta], decay_mask=[twin.weight_mask()])
    for start in range(0, 50, 16):
        _, g = twin.loss_and_flat_grad(X[start:start + 16], T[start:start + 16], "cross_entropy")
        opt.update([twin.theta], [g], state)
    np.testing.assert_array_equal(net.theta, twin.theta)
