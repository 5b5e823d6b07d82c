"""gradcheck: backpropagation against central differences, and proof that it can fail."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet.gradcheck import GradCheck


class OffByFactorTanh(jn.Activation):
    """tanh with a Jacobian 10% too large: a deliberately wrong derivative."""

    name = "off_by_factor_tanh"

    def forward(self, T):
        return np.tanh(T)

    def jacobian(self, T, Y):
        return 1.1 * np.einsum("ij,jk->ijk", 1 - Y**2, np.eye(T.shape[1]))


def _data(n_in=3, n_out=2, N=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, n_in)), rng.normal(size=(N, n_out)), rng.uniform(0.5, 2, N)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["sse", "mse", "huber"])
def test_gradcheck_passes_on_correct_networks(dtype, loss, oracle):
    net = jn.Network([jn.Dense(3, 5, "tanh"), jn.Dense(5, 4, "layer_norm"),
                      jn.Dense(4, 2, oracle.Cube())], seed=1, dtype=dtype)
    X, T, w = _data()
    for sample_weight in (None, w):
        result = jn.gradcheck(net, X, T, loss=loss, sample_weight=sample_weight)
        assert isinstance(result, jn.GradCheck)
        assert len(result.errors) == 3
        assert result.passed and bool(result), result.errors
        assert result.max_error < 1e-6


def test_gradcheck_passes_with_fused_softmax_cross_entropy():
    net = jn.Network([jn.Dense(3, 6, "relu"), jn.Dense(6, 4, "softmax")], seed=2)
    X, _, _ = _data(N=5)
    T = np.eye(4)[[0, 1, 2, 3, 0]]
    assert jn.gradcheck(net, X, T, loss="cross_entropy").passed


@pytest.mark.parametrize("position", ["hidden", "output"])
def test_gradcheck_fails_when_the_gradient_is_wrong(position):
    wrong = OffByFactorTanh()
    acts = [wrong, "identity"] if position == "hidden" else ["tanh", wrong]
    net = jn.Network([jn.Dense(3, 5, acts[0]), jn.Dense(5, 2, acts[1])], seed=3)
    X, T, _ = _data()
    result = jn.gradcheck(net, X, T)
    assert not result.passed and not bool(result)
    assert result.max_error > 1e-2
    if position == "hidden":  # the error shows where the wrong derivative sits
        assert result.errors[1] < 1e-6 < 1e-2 < result.errors[0]
    else:
        assert min(result.errors) > 1e-2


def test_gradcheck_tolerance_decides():
    net = jn.Network([jn.Dense(3, 2, OffByFactorTanh())], seed=4)
    X, T, _ = _data()
    result = jn.gradcheck(net, X, T)
    assert not result.passed
    assert jn.gradcheck(net, X, T, tol=1.0).passed  # a 10% error passes a 100% tolerance


def test_gradcheck_leaves_the_network_untouched():
    net = jn.Network([jn.Dense(3, 4, "sigmoid"), jn.Dense(4, 2)], seed=5, dtype=np.float32)
    theta = net.get_flat()
    X, T, _ = _data()
    jn.gradcheck(net, X, T)
    assert net.dtype == np.float32
    np.testing.assert_array_equal(net.get_flat(), theta)


def test_gradcheck_rejects_a_bad_step():
    net = jn.Network([jn.Dense(3, 2)], seed=6)
    X, T, _ = _data()
    with pytest.raises(ValueError, match="eps must be a positive float"):
        jn.gradcheck(net, X, T, eps=0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        jn.gradcheck(net, X, T, loss="nope")


def test_gradcheck_a_nan_error_never_passes():
    for errors in ([1e-9, np.nan], [np.nan, 1e-9]):
        result = GradCheck(errors=errors, tol=1e-6)
        assert not result.passed and np.isnan(result.max_error)
