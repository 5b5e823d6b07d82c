"""Per-output Jacobians (jacnet.jacobian): the fill of J chunk by chunk, its threads, the
identity output's shortcut and ``Network.jacobian(out=...)``. The derivatives themselves
are checked against JAX, finite differences and the seed's formulas written literally in
test_network.py, on every network of its random suite."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet import accel


def test_jacobian_threads_fill_the_same_chunks_bit_identically(monkeypatch, oracle):
    """With more than one BLAS thread, chunks of J are filled by that many threads:
    the same chunks, so the same bits as one thread; BLAS is held to one thread meanwhile
    and given back its setting after."""
    from threadpoolctl import threadpool_limits

    import jacnet.jacobian as jac

    net = jn.Network([jn.Dense(3, 9, "tanh"), jn.Dense(9, 6, "softmax"),
                      jn.Dense(6, 2, "identity")], seed=4)
    X = np.random.default_rng(4).normal(size=(23, 3))
    monkeypatch.setattr(jac, "_PARALLEL_ELEMENTS", 1)  # so this small case goes parallel
    threads = []
    fill = jac.fill_jacobian

    def spy(layers, Xc, J, cache=None, first=None):
        threads.append((Xc.shape[0], jac._blas_threads()))
        return fill(layers, Xc, J, cache, first)

    monkeypatch.setattr(jac, "fill_jacobian", spy)
    with threadpool_limits(1):
        serial = net.jacobian(X, chunk=5)
    assert [t for _, t in threads] == [1] * 5
    threads.clear()
    with threadpool_limits(2):
        parallel = net.jacobian(X, chunk=5)
        assert jac._blas_threads() == 2  # the fillers' limit was lifted
    assert sorted(n for n, _ in threads) == [3, 5, 5, 5, 5]
    assert {t for _, t in threads} == {1}  # each filler ran with BLAS on one thread
    np.testing.assert_array_equal(parallel, serial)
    oracle.check("threaded jacobian vs JAX", parallel, oracle.network(net, X).J, 1e-10,
                 "2 threads, chunk=5")
    # While another thread's threaded fill holds the BLAS setting, a call fills serially
    # and leaves the setting alone.
    threads.clear()
    with threadpool_limits(2):
        with jac._THREADED_FILL:
            np.testing.assert_array_equal(net.jacobian(X, chunk=5), serial)
        assert jac._blas_threads() == 2
    assert [t for _, t in threads] == [2] * 5

    def broken(layers, Xc, J, cache=None, first=None):
        raise FloatingPointError("from a filler thread")

    monkeypatch.setattr(jac, "fill_jacobian", broken)
    with threadpool_limits(2), pytest.raises(FloatingPointError, match="from a filler"):
        net.jacobian(X, chunk=5)


class _PlainIdentity(jn.Elementwise):
    """The identity through the general elementwise vjp (a new array, not the rows)."""

    name = "plain_identity_for_tests"

    def forward(self, T):
        return T.copy()

    def derivative(self, T, Y):
        return np.ones_like(T)


@pytest.mark.usefixtures("gn_form")
@pytest.mark.parametrize("q", [1, 3])
def test_identity_output_shortcut_equals_the_general_path_bit_for_bit(q):
    """An identity output hands the identity rows on unchanged; the fill then copies the
    layer inputs into J and takes E W^T as W^T instead of a product. Same bits as the
    general multiply and gemm path."""
    rng = np.random.default_rng(q)
    X = rng.normal(size=(40, 4))
    fast = jn.Network([jn.Dense(4, 7, "tanh"), jn.Dense(7, q, "identity")], seed=2)
    general = jn.Network([jn.Dense(4, 7, "tanh"), jn.Dense(7, q, _PlainIdentity())], seed=2)
    np.testing.assert_array_equal(fast.get_flat(), general.get_flat())
    np.testing.assert_array_equal(fast.jacobian(X), general.jacobian(X))
    np.testing.assert_array_equal(fast.jacobian(X, chunk=7), general.jacobian(X))
    np.testing.assert_array_equal(fast.input_jacobian(X), general.input_jacobian(X))
    R = rng.normal(size=(40, q))
    for a, b in zip(fast.gauss_newton(X, R), general.gauss_newton(X, R), strict=True):
        np.testing.assert_array_equal(a, b)


def test_jacobian_into_out_equals_a_fresh_jacobian_and_checks_out():
    net = jn.Network([jn.Dense(3, 5, "tanh"), jn.Dense(5, 2, "softmax")], seed=4)
    X = np.random.default_rng(0).normal(size=(7, 3))
    fresh = net.jacobian(X)
    out = np.full((7, 2, net.n_params), np.nan)
    for chunk in (None, 3):
        got = net.jacobian(X, chunk=chunk, out=out)
        assert got is out
        np.testing.assert_array_equal(out, fresh)
    with pytest.raises(TypeError, match="out must be a numpy ndarray, got list"):
        net.jacobian(X, out=out.tolist())
    with pytest.raises(ValueError, match=r"out must have shape \(7, 2, 32\) and dtype float64"):
        net.jacobian(X, out=np.empty((6, 2, net.n_params)))
    with pytest.raises(ValueError, match="dtype float64, got .* float32"):
        net.jacobian(X, out=np.empty((7, 2, net.n_params), np.float32))
    with pytest.raises(ValueError, match="C-contiguous and writeable"):
        net.jacobian(X, out=np.empty((7, 2, 2 * net.n_params))[:, :, ::2])
    frozen = np.empty_like(out)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="C-contiguous and writeable"):
        net.jacobian(X, out=frozen)


class _CubeF64(jn.Elementwise):
    """A user activation whose derivative comes back in float64 (cast by the network)."""

    name = "cube_f64_for_tests"

    def forward(self, T):
        return T**3

    def derivative(self, T, Y):
        return 3.0 * np.asarray(T, dtype=np.float64) ** 2


@pytest.mark.skipif(not accel.available(), reason="numba not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("out", ["identity", "softmax", "tanh"])
def test_compiled_fill_equals_numpy_bit_for_bit(monkeypatch, dtype, out):
    """The compiled fill (JACNET_NUMBA=1) writes the numpy path's bits, signed zeros
    included: each entry is the same single product, copy or zero; on F-ordered and sliced
    inputs, one and several outputs, a user activation, chunked, and in Gauss-Newton's
    sums. The kernel run as plain Python (what numba compiles) gives the same bits."""
    import jacnet.jacobian as jac

    monkeypatch.setattr(jac, "_COMPILED_ELEMENTS", 1)  # so these small chunks compile
    kernel, calls = jac._fill_rows, []

    def spy(J, *args):
        plain = np.full_like(J, np.nan)
        kernel.py_func(plain, *args)
        kernel(J, *args)
        np.testing.assert_array_equal(plain.view(bits), J.view(bits))
        calls.append(J.shape)

    monkeypatch.setattr(jac, "_fill_rows", spy)
    q = 1 if out == "tanh" else 3
    net = jn.Network([jn.Dense(4, 6, "relu"), jn.Dense(6, 5, _CubeF64()),
                      jn.Dense(5, q, out)], seed=3, dtype=dtype)
    rng = np.random.default_rng(5)
    X = np.asfortranarray(rng.normal(size=(31, 8)).astype(dtype))[:, ::2]
    R = rng.normal(size=(31, q)).astype(dtype)

    def both(fn):
        got = {}
        for flag in ("0", "1"):
            monkeypatch.setenv("JACNET_NUMBA", flag)
            got[flag] = fn()
        return got["0"], got["1"]

    bits = np.uint64 if dtype == np.float64 else np.uint32
    full = both(lambda: net.jacobian(X))
    for a, b in [full, both(lambda: net.jacobian(X, chunk=4)),
                 *zip(*both(lambda: net.gauss_newton(X, R)), strict=True)]:
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a.view(bits), b.view(bits))
    assert len(calls) >= 1 + 8  # the kernel ran: one fill, then eight chunks
    # ReLU's zeros times negative inputs: J holds -0.0, which the bit comparison checks
    assert (np.signbit(full[1]) & (full[1] == 0)).any()


def test_small_chunks_stay_in_numpy_with_compiled_kernels_on(monkeypatch):
    """A chunk under ``_COMPILED_ELEMENTS`` elements never calls the kernel (its first call
    would load numba, which costs far more than it saves there); a larger one does."""
    import jacnet.jacobian as jac

    monkeypatch.setenv("JACNET_NUMBA", "1" if accel.available() else "0")
    calls = []
    monkeypatch.setattr(jac, "_fill_rows", lambda J, *args: calls.append(J.size))
    net = jn.Network([jn.Dense(2, 8, "tanh"), jn.Dense(8, 1)], seed=0)
    net.jacobian(np.ones((50, 2)))
    assert calls == []
    if accel.available():
        n = jac._COMPILED_ELEMENTS // net.n_params + 1
        net.jacobian(np.ones((n, 2)), chunk=n)
        assert calls == [n * net.n_params]
