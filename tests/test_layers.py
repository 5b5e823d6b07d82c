"""The dense layer: T = X W + b into fresh arrays or a caller's buffer, and the checks
on what a user activation returns."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet.layers import blas_matmul, checked_forward, checked_vjp, forward_cache


def _net(dtype=np.float64) -> jn.Network:
    return jn.Network(
        [jn.Dense(4, 6, "relu"), jn.Dense(6, 5, "elu"), jn.Dense(5, 3, "softmax")],
        seed=0, dtype=dtype,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_pre_activation_into_a_buffer_equals_the_fresh_one(dtype):
    layer = _net(dtype).layers[0]
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(dtype)
    buf = np.empty((9, 6), dtype)[:7]
    T = layer.pre_activation(X, out=buf)
    assert T is buf
    np.testing.assert_array_equal(T, layer.pre_activation(X))
    np.testing.assert_array_equal(T, X @ layer.W + layer.b)
    with pytest.raises(ValueError, match="out or product, not both"):
        layer.pre_activation(X, blas_matmul, out=buf)


def test_forward_cache_with_buffers_equals_the_fresh_cache():
    """With buffers the T of a layer whose vjp needs only Y holds Y (written over it);
    the others keep T, and every Y is the fresh cache's."""
    net = _net()
    X = np.random.default_rng(1).normal(size=(5, 4))
    fresh = forward_cache(net.layers, X)
    bufs = [np.empty((5, la.n_out)) for la in net.layers]
    buffered = forward_cache(net.layers, X, out=bufs)
    for layer, buf, (Xf, Tf, Yf), (Xb, Tb, Yb) in zip(net.layers, bufs, fresh, buffered,
                                                      strict=True):
        assert Tb is buf
        np.testing.assert_array_equal(Xb, Xf)
        np.testing.assert_array_equal(Yb, Yf)
        np.testing.assert_array_equal(Tb, Tf if layer.activation.vjp_needs_T else Yf)
    assert buffered[0][1] is buffered[0][2]  # relu: Y over T
    np.testing.assert_array_equal(fresh[-1][2], net.forward(X))


class _WrongShape(jn.Activation):
    name = "wrong_shape_hooks"

    def forward(self, T):
        return T.copy()

    def jacobian(self, T, Y):
        return np.broadcast_to(np.eye(T.shape[1]), T.shape + (T.shape[1],)).copy()

    def forward_into(self, T):
        return T[:, :1]

    def vjp_into(self, T, Y, G, tmp):
        return G[:1]


def test_checked_hooks_name_the_hook_that_returned_a_wrong_shape():
    act = _WrongShape()
    T = np.ones((3, 2))
    assert checked_forward(act, T).shape == (3, 2)
    with pytest.raises(ValueError, match=r"_WrongShape.forward_into must return .*\(3, 2\)"):
        checked_forward(act, T, in_place=True)
    np.testing.assert_array_equal(checked_vjp(act, T, T, T), T)
    with pytest.raises(ValueError, match=r"_WrongShape.vjp_into must return .*\(3, 2\)"):
        checked_vjp(act, T, T, T.copy(), np.empty_like(T))


def test_checked_hooks_keep_the_networks_dtype():
    class Wide(jn.Activation):
        def forward(self, T):
            return T.astype(np.float64)

        def jacobian(self, T, Y):
            return np.broadcast_to(np.eye(T.shape[1]), T.shape + (T.shape[1],)).copy()

    T = np.ones((2, 3), np.float32)
    assert checked_forward(Wide(), T, in_place=True).dtype == np.float32
    assert checked_vjp(Wide(), T, T, T.copy(), np.empty_like(T)).dtype == np.float32
