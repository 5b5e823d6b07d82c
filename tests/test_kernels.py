"""The compiled kernels (``jacnet.accel``) against the numpy path, bit for bit.

Every kernel is run alone against the numpy code it replaces, on odd sizes, in float32 and
float64, with the edge values a loop can get wrong (zeros of both signs, NaN, inf); then
whole trainings with every optimizer and several activations run once with
``JACNET_NUMBA=0`` and once with ``1`` in this process, and the weights, the optimizer
state and the record must be equal. A spy counts the kernel calls, so that a test cannot
pass by running numpy twice. The last tests run jacnet as in an environment without numba.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from functools import partial
from typing import Any

import numpy as np
import pytest

import jacnet as jn
from jacnet import accel, activations, losses, optimizers
from jacnet.losses import OutputBuffers

needs_numba = pytest.mark.skipif(not accel.available(), reason="numba not installed")
DTYPES = [np.float32, np.float64]
KERNEL_MODULES = (activations, losses, jn.minibatch, optimizers)


class Spy(accel.Kernel):
    """A kernel that counts its calls from Python (a kernel calling it inside its loop
    compiles with the real one)."""

    def __init__(self, inner: accel.Kernel, name: str, calls: Counter[str]) -> None:
        super().__init__(inner.py_func, **inner.options)
        self.inner, self.name, self.calls = inner, name, calls

    def __call__(self, *args: Any) -> Any:
        self.calls[self.name] += 1
        return self.inner(*args)

    def dispatcher(self) -> Any:
        return self.inner.dispatcher()


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the calls of every kernel of the modules that have some."""
    calls: Counter[str] = Counter()
    for module in KERNEL_MODULES:
        for name, value in list(vars(module).items()):
            if isinstance(value, accel.Kernel):
                monkeypatch.setattr(module, name, Spy(value, name, calls))
    return calls


def both_paths(monkeypatch: pytest.MonkeyPatch, run: Any) -> tuple[Any, Any]:
    """``run()`` with ``JACNET_NUMBA=0``, then with ``1``."""
    out = []
    for setting in ("0", "1"):
        monkeypatch.setenv(accel.ENV, setting)
        out.append(run())
    return out[0], out[1]


def assert_same(a: Any, b: Any) -> None:
    """Equal arrays (NaN where NaN), floats or nested lists/dicts of them."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b), (a, b)


def edge_values(shape: tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    """Normal numbers over several scales with zeros of both signs sprinkled in."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 3, size=shape)
    flat = A.reshape(-1)
    flat[:: 7] = 0.0
    flat[3 :: 11] = -0.0
    return A.astype(dtype)


# ------------------------------------------------------------------ optimizers
RULES: list[tuple[str, dict[str, Any]]] = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.7, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "beta_1": 0.0, "beta_2": 0.5, "epsilon": 1e-3}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.5}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.0}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "rho": 0.5, "momentum": 0.9}),
]
PREPROCESSING = [{}, {"alpha": 0.3}, {"clip_norm": 0.5}, {"alpha": 0.3, "clip_norm": 0.5}]


def run_rule(name: str, config: dict[str, Any], dtype: Any, masked: bool,
             summed: bool) -> tuple[Any, ...]:
    """Seven steps on a (13, 7) matrix and a (7,) vector, lr changing on the way."""
    rng = np.random.default_rng(3)
    params = [edge_values((13, 7), dtype, 1), edge_values((7,), dtype, 2)]
    mask = [np.ones((13, 7), dtype), np.zeros(7, dtype)] if masked else None
    opt = optimizers.get_optimizer(name, **config)
    state = opt.init(params, mask)
    totals = [np.zeros_like(p) for p in params]
    for k in range(7):
        grads = [(rng.normal(size=p.shape) * 10.0 ** (k - 3)).astype(dtype) for p in params]
        lr = opt.prepare(params, grads, state, None if k < 4 else 0.003 * k)
        opt.step(params, grads, state, lr, totals if summed else None)
    return params, state.to_arrays(), totals


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pre", PREPROCESSING, ids=lambda p: "+".join(p) or "plain")
@pytest.mark.parametrize(("name", "config"), RULES,
                         ids=[f"{n}-{'-'.join(map(str, c.values()))}" for n, c in RULES])
def test_optimizer_kernel_equals_the_numpy_rule(monkeypatch, kernel_calls, name, config,
                                                pre, dtype):
    for masked, summed in ((True, True), (False, False)):
        numpy_run, kernel_run = both_paths(
            monkeypatch, partial(run_rule, name, {**config, **pre}, dtype, masked, summed))
        assert_same(kernel_run, numpy_run)
    assert sum(kernel_calls.values()) == 2 * 2 * 7  # two arrays, two variants, seven steps


@needs_numba
def test_optimizer_kernel_keeps_nan_and_inf_where_numpy_does(monkeypatch):
    def run() -> list[np.ndarray]:
        p = np.array([1.0, np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
        g = np.array([np.nan, 1.0, 0.0, 1.0, np.inf, -0.0], np.float32)
        opt = optimizers.AdamW(lr=0.1, alpha=0.5)
        state = opt.init([p], [np.array([1, 1, 0, 1, 1, 0], np.float32)])
        with np.errstate(all="ignore"):
            opt.update([p], [g], state)
        return [p, *state.buffers["m"], *state.buffers["v"]]

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)


@needs_numba
def test_optimizer_arrays_that_do_not_fit_a_kernel_take_the_numpy_path(monkeypatch,
                                                                       kernel_calls):
    """A strided view, or float16, runs numpy's passes (and still updates in place)."""
    monkeypatch.setenv(accel.ENV, "1")
    base = np.ones((4, 6))
    view, half = base[:, ::2], np.ones(3, np.float16)
    for p in (view, half):
        opt = optimizers.Adam(lr=0.1)
        state = opt.init([p])
        opt.update([p], [np.ones_like(p)], state)
        assert (p < 1).all()
    assert not kernel_calls


@needs_numba
def test_optimizer_subclass_with_its_own_rule_does_not_run_the_parents_kernel(
        monkeypatch, kernel_calls):
    class Halved(optimizers.Adam):
        def _apply(self, params, grads, state, lr):
            super()._apply(params, grads, state, lr / 2)

    class Same(optimizers.Adam):
        pass

    monkeypatch.setenv(accel.ENV, "1")
    p, g = np.ones(5), np.full(5, 0.5)
    halved = Halved(lr=0.1)
    halved.update([p], [g], halved.init([p]))
    assert not kernel_calls
    np.testing.assert_allclose(p, 1 - 0.05, rtol=1e-6)  # Adam's first step is lr·sign(g)
    same = Same(lr=0.1)
    same.update([p], [g], same.init([p]))
    assert kernel_calls["_adam_kernel"] == 1


# ------------------------------------------------------------ activation hooks
@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "identity", "elu", "softmax"])
def test_forward_bias_into_kernel_equals_numpy(monkeypatch, kernel_calls, name, dtype):
    act = jn.get_activation(name)
    T = edge_values((9, 13), dtype, 4)
    T[1, :3] = [np.nan, np.inf, -np.inf]
    b = edge_values((13,), dtype, 5)
    b[:2] = [-0.0, 0.0]

    def run() -> tuple[np.ndarray, np.ndarray]:
        buf = T.copy()
        with np.errstate(all="ignore"):
            Y = act.forward_bias_into(buf, b)
        return buf, Y.copy()

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)
    # the zeros' signs too (assert_array_equal takes -0 == 0)
    assert_same(np.signbit(kernel_run[1]), np.signbit(numpy_run[1]))
    assert kernel_calls["_bias_kernel"] == 1


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_vjp_into_kernel_equals_numpy(monkeypatch, kernel_calls, name, dtype):
    act = jn.get_activation(name)
    T = edge_values((11, 6), dtype, 6)
    T[0, 0] = np.nan
    Y = act.forward(T)
    G = edge_values((11, 6), dtype, 7)
    G[2, :2] = [np.inf, np.nan]

    def run() -> np.ndarray:
        buf = G.copy()
        with np.errstate(all="ignore"):
            return act.vjp_into(Y.copy(), Y, buf, np.empty_like(G)).copy()

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)
    assert_same(np.signbit(kernel_run), np.signbit(numpy_run))
    assert kernel_calls["_vjp_kernel"] == 1


# ------------------------------------------------------------------- the loss
@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(128, 10), (7, 3), (33, 17), (1, 1), (5, 2)])
def test_softmax_cross_entropy_kernels_equal_numpy(monkeypatch, kernel_calls, shape,
                                                   weighted, dtype):
    n, q = shape
    rng = np.random.default_rng(n * q)
    Tpre = edge_values(shape, dtype, 8)
    if n > 3:
        Tpre[1] = 0.0
        Tpre[2, -1] = np.nan
        Tpre[3, 0] = 1e4  # exp underflows to 0 elsewhere in the row
    target = rng.random(shape).astype(dtype)
    w = rng.random(n).astype(dtype) if weighted else None
    ce, softmax = losses.get_loss("cross_entropy"), activations.Softmax()

    def run() -> tuple[float, np.ndarray]:
        out = OutputBuffers.empty(n + 3, q, dtype).rows(n)
        with np.errstate(all="ignore"):
            value, delta = ce.fused_into(softmax, Tpre.copy(), target, w, out)
        return value, delta.copy()

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)
    assert kernel_calls["_shift_rows"] == kernel_calls["_softmax_ce_rows"] == 1


# ------------------------------------------------------------ whole trainings
def classification(n: int, sizes: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    T = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    return X, T


TRAININGS = [
    # solver, its settings, hidden activation, output activation and loss
    ("adam", {}, "relu", ("softmax", "cross_entropy")),
    ("adamw", {"weight_decay": 0.1}, "tanh", ("softmax", "cross_entropy")),
    ("sgd", {"momentum": 0.9, "nesterov": True}, "sigmoid", ("identity", "mse")),
    ("sgd", {}, "relu", ("identity", "sse")),
    ("rmsprop", {"momentum": 0.5}, "identity", ("softmax", "cross_entropy")),
    ("adam", {"clip_norm": 0.7}, "elu", ("identity", "mse")),
]


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("solver", "settings", "hidden", "output"), TRAININGS,
                         ids=[f"{s}-{h}-{o[1]}" for s, _, h, o in TRAININGS])
def test_training_with_kernels_equals_training_without(monkeypatch, kernel_calls, solver,
                                                       settings, hidden, output, dtype):
    """Four epochs of shuffled batches (the last one short), weighted samples and an L2
    penalty: the same weights, optimizer state and record on both paths."""
    sizes = (7, 13, 5, 3)
    X, T = classification(61, sizes, dtype)
    w = np.random.default_rng(12).random(61)

    def run() -> tuple[Any, ...]:
        layers = [jn.Dense(a, b, hidden) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
        net = jn.Network([*layers, jn.Dense(sizes[-2], sizes[-1], output[0])], seed=5,
                         dtype=dtype)
        mb = jn.minibatch.MiniBatch(solver, lr=0.01, batch_size=16, **settings)
        rec = jn.train(net, X, T, mb, loss=output[1], sample_weight=w, alpha=1e-3,
                       max_epochs=4, seed=2, min_grad=0.0)
        entries = [{k: v for k, v in e.items() if k != "seconds"} for e in rec.epochs]
        return net.get_flat(), mb.state.to_arrays(), entries

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)
    assert kernel_calls[f"_{mb_kernel(solver)}_kernel"] == 4 * 4  # 4 batches, 4 epochs
    assert kernel_calls["_bias_kernel"] == 4 * 4 * 2  # two hidden layers
    if hidden in ("relu", "tanh", "sigmoid"):
        assert kernel_calls["_vjp_kernel"] == 4 * 4 * 2


def mb_kernel(solver: str) -> str:
    return {"adamw": "adam"}.get(solver, solver)


@needs_numba
def test_estimator_fit_is_the_same_on_both_paths(monkeypatch):
    X, T = classification(90, (6, 4), np.float64)
    y = T.argmax(axis=1)

    def run() -> list[np.ndarray]:
        clf = jn.MLPClassifier(hidden_layer_sizes=(9,), solver="adam", max_iter=5,
                               batch_size=20, random_state=0, dtype=np.float32)
        with pytest.warns(Warning):  # five epochs do not converge
            clf.fit(X, y)
        return [*clf.coefs_, *clf.intercepts_, np.array(clf.loss_curve_)]

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)


# ------------------------------------------------------------ without numba
def test_without_numba_everything_runs_on_numpy(monkeypatch, kernel_calls):
    """``accel.available()`` False, as where numba is not installed: the default path is
    numpy (no kernel runs), ``JACNET_NUMBA=1`` says which extra to install."""
    monkeypatch.setattr(accel, "available", lambda: False)
    monkeypatch.delenv(accel.ENV, raising=False)
    X, T = classification(40, (5, 3), np.float32)
    net = jn.Network([jn.Dense(5, 8, "relu"), jn.Dense(8, 3, "softmax")], seed=0,
                     dtype=np.float32)
    jn.train(net, X, T, "adam", loss="cross_entropy", batch_size=8, max_epochs=2)
    assert not kernel_calls
    monkeypatch.setenv(accel.ENV, "1")
    with pytest.raises(ImportError, match=r'pip install "jacnet\[fast\]"'):
        jn.train(net, X, T, "adam", loss="cross_entropy", batch_size=8, max_epochs=1)


def test_a_python_without_numba_trains_and_never_imports_it(tmp_path):
    """In a fresh interpreter where ``import numba`` fails: jacnet imports, trains with
    every hook, and reports numba as unavailable."""
    code = """
import sys
sys.modules["numba"] = None  # import numba now raises ImportError
import numpy as np, jacnet as jn
from jacnet import accel
assert not accel.available() and not accel.enabled()
X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
T = np.eye(3, dtype=np.float32)[np.arange(30) % 3]
net = jn.Network([jn.Dense(4, 6, "relu"), jn.Dense(6, 3, "softmax")], seed=0,
                 dtype=np.float32)
jn.train(net, X, T, "adam", loss="cross_entropy", batch_size=7, max_epochs=2)
print("trained", np.isfinite(net.theta).all())
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(accel.ENV, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "trained True" in out.stdout


def test_import_and_numpy_path_do_not_load_numba():
    code = """
import sys, numpy as np, jacnet as jn
assert "numba" not in sys.modules, "import jacnet loaded numba"
net = jn.Network([jn.Dense(3, 4, "relu"), jn.Dense(4, 2)], seed=0)
jn.train(net, np.ones((8, 3)), np.ones((8, 2)), "adam", batch_size=4, max_epochs=1)
assert "numba" not in sys.modules, "the numpy path loaded numba"
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), accel.ENV: "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------ the loader
def test_fits_takes_c_contiguous_float32_or_float64_of_one_dtype():
    a = np.zeros((3, 4))
    assert accel.fits(a, np.ones(4))
    assert accel.fits(a.astype(np.float32), np.ones(2, np.float32))
    assert not accel.fits(a, np.ones(4, np.float32))  # two dtypes
    assert not accel.fits(a[:, ::2])  # strided
    assert not accel.fits(a.astype(np.float16))
    assert not accel.fits(a.tolist())


_double = accel.kernel(inline="always")(lambda x: x + x)


def _twice_each(a):
    for i in range(a.shape[0]):
        a[i] = _double(a[i])


@needs_numba
def test_a_kernel_calls_another_kernel_compiled():
    twice = accel.Kernel(_twice_each, cache=False)
    a = np.arange(5.0)
    twice(a)
    np.testing.assert_array_equal(a, 2 * np.arange(5.0))
    assert twice.compiled is not None and _double.compiled is not None


# ------------------------------------------------------------- batch gathering
@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_kernel_copies_the_rows_np_take_copies(monkeypatch, kernel_calls, dtype):
    rng = np.random.default_rng(9)
    X, T, w = edge_values((23, 5), dtype, 10), edge_values((23, 3), dtype, 11), rng.random(23)
    rows = np.array([22, 0, 7, 7, 30, -4])  # out of range: clipped, as np.take's mode="clip"

    def run() -> tuple[Any, ...]:
        bufs = (np.full((8, 5), 9, dtype), np.full((8, 3), 9, dtype), np.full(8, 9.0))
        got = jn.minibatch.gather_rows(rows, (X, T, w), bufs)
        return *got, *bufs

    numpy_run, kernel_run = both_paths(monkeypatch, run)
    assert_same(kernel_run, numpy_run)
    assert_same(np.signbit(kernel_run[0]), np.signbit(numpy_run[0]))
    assert kernel_calls["_gather_kernel"] == 2  # X and T; the weights through np.take
