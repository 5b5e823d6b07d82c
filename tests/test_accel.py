"""The switch between numpy and compiled kernels (``jacnet.accel``)."""

import numpy as np
import pytest

from jacnet import accel


def test_env_picks_the_path(monkeypatch):
    monkeypatch.setenv(accel.ENV, "0")
    assert accel.enabled() is False
    monkeypatch.setenv(accel.ENV, "")
    assert accel.enabled() is accel.available()
    monkeypatch.setenv(accel.ENV, "1")
    if accel.available():
        assert accel.enabled() is True
    else:
        with pytest.raises(ImportError, match="jacnet\\[fast\\]"):
            accel.enabled()


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(accel.ENV, "yes")
    with pytest.raises(ValueError, match="JACNET_NUMBA must be 0, 1 or unset"):
        accel.enabled()


def test_fastmath_is_refused():
    with pytest.raises(ValueError, match="fastmath"):
        accel.kernel(fastmath=True)(lambda x: x)


@pytest.mark.skipif(not accel.available(), reason="numba not installed")
def test_kernel_compiles_on_first_call_and_equals_python():
    @accel.kernel()
    def axpy(a, x, y):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = a * x[i] + y[i]
        return out

    assert axpy.compiled is None
    x = np.linspace(0.0, 1.0, 17)
    y = np.cos(x)
    got = axpy(0.3, x, y)
    assert axpy.compiled is not None
    np.testing.assert_array_equal(got, axpy.py_func(0.3, x, y))
    np.testing.assert_array_equal(got, 0.3 * x + y)
