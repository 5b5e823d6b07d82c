"""Shared test setup: JAX as an independent float64 oracle on the CPU.

The oracle re-implements every activation, the network's forward pass and every loss in
``jax.numpy`` without calling jacnet, so that ``jax.jacrev`` / ``jax.grad`` of it is a
derivative computed by code that shares nothing with the seed's backpropagation.

JAX compiles once per array shape, and on a small CPU a compile costs seconds. So the
oracle works on fixed shapes and masks the padding: an activation of width ``m <= 8`` runs
on rows of 8 with a mask that is 1 on the first ``m`` entries, and every network (depth
<= 5, widths <= 40) is embedded in one universal 5-layer, 40-wide network that takes 6
samples at a time (unused layers pass their input through, unused units are masked to 0,
padding samples repeat real ones and are dropped, or get weight 0 in a loss). The
activation and the loss are picked by ``lax.switch`` and the layers run in a ``lax.scan``,
so each oracle function compiles once per test process.
"""

from __future__ import annotations

import json
import os

os.environ["JAX_PLATFORMS"] = "cpu"  # before jax is imported anywhere

from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402
from jax import lax  # noqa: E402

import jacnet as jn  # noqa: E402

jax.config.update("jax_enable_x64", True)

# The first call of a JAX oracle compiles it (seconds): no per-example deadline.
settings.register_profile("jacnet", deadline=None)
settings.load_profile("jacnet")


# ------------------------------------------------------------------ user activations
class Cube(jn.Activation):
    """The user activation of DESIGN.md: only ``forward`` and ``jacobian``."""

    name = "cube"

    def forward(self, T):
        return T**3

    def jacobian(self, T, Y):
        return np.einsum("ij,jk->ijk", 3 * T**2, np.eye(T.shape[1]))


class Unfused(jn.Activation):
    """Wraps an activation with only ``forward`` and ``jacobian``: the general path.

    A loss's fused path checks the activation's exact type, so wrapping turns it off,
    and the default ``vjp`` (through the full Jacobian) replaces the closed form.
    """

    def __init__(self, inner: jn.Activation) -> None:
        self.inner = inner

    def forward(self, T):
        return self.inner.forward(T)

    def jacobian(self, T, Y):
        return self.inner.jacobian(T, Y)


# ------------------------------------------------- the activations, in JAX, one row
# Each takes a row ``t`` (M,), a mask (M,) that is 1 on the first m entries and a scalar
# parameter ``p``; it returns f(t[:m]) padded with zeros.
def _elementwise(g):
    return lambda t, mask, p: g(t, p) * mask


def _softmax(t, mask, p):
    top = lax.stop_gradient(jnp.max(jnp.where(mask > 0, t, -jnp.inf)))
    e = jnp.exp(t - top) * mask
    return e / jnp.sum(e)


def _log_softmax(t, mask, p):
    top = lax.stop_gradient(jnp.max(jnp.where(mask > 0, t, -jnp.inf)))
    return (t - top - jnp.log(jnp.sum(jnp.exp(t - top) * mask))) * mask


def _sparsemax(t, mask, p):
    """Projection onto the simplex by sorting (Martins & Astudillo, 2016)."""
    z = jnp.sort(jnp.where(mask > 0, t, -1e9))[::-1]  # padding sorts last, never in support
    k = jnp.arange(1, t.shape[0] + 1, dtype=t.dtype)
    cums = jnp.cumsum(z)
    k_max = jnp.sum(1 + k * z > cums)
    tau = (cums[k_max - 1] - 1) / k_max
    return jnp.maximum(t - tau, 0.0) * mask


def _l2_normalize(t, mask, p):
    tm = t * mask
    return tm / jnp.maximum(jnp.sqrt(jnp.sum(tm * tm)), p)


def _layer_norm(t, mask, p):
    m = jnp.sum(mask)
    mu = jnp.sum(t * mask) / m
    var = jnp.sum(mask * (t - mu) ** 2) / m  # biased, as PyTorch
    return mask * (t - mu) / jnp.sqrt(var + p)


#: name -> (row function, name of the config entry that is the scalar parameter)
JAX_ACTIVATIONS: dict[str, tuple[Any, str | None]] = {
    "identity": (_elementwise(lambda t, p: t), None),
    "sigmoid": (_elementwise(lambda t, p: jax.nn.sigmoid(t)), None),
    "tanh": (_elementwise(lambda t, p: jnp.tanh(t)), None),
    "relu": (_elementwise(lambda t, p: jnp.maximum(t, 0.0)), None),
    "leaky_relu": (_elementwise(lambda t, p: jnp.where(t > 0, t, p * t)), "negative_slope"),
    "elu": (
        _elementwise(lambda t, p: jnp.where(t > 0, t, p * jnp.expm1(jnp.minimum(t, 0.0)))),
        "alpha",
    ),
    "softplus": (_elementwise(lambda t, p: jax.nn.softplus(t)), None),
    "gelu": (_elementwise(lambda t, p: jax.nn.gelu(t, approximate=False)), None),
    "silu": (_elementwise(lambda t, p: t * jax.nn.sigmoid(t)), None),
    "exp": (_elementwise(lambda t, p: jnp.exp(t)), None),
    "softmax": (_softmax, None),
    "log_softmax": (_log_softmax, None),
    "sparsemax": (_sparsemax, None),
    "l2_normalize": (_l2_normalize, "eps"),
    "layer_norm": (_layer_norm, "eps"),
    "cube": (_elementwise(lambda t, p: t**3), None),
}
_KIND_INDEX = {name: i for i, name in enumerate(JAX_ACTIVATIONS)}
_KIND_FNS = [fn for fn, _ in JAX_ACTIVATIONS.values()]


def activation_kind(act: jn.Activation) -> tuple[int, float]:
    """``(branch index, scalar parameter)`` of the oracle's version of ``act``."""
    if isinstance(act, Unfused):
        act = act.inner
    name = "cube" if isinstance(act, Cube) else act.name
    if name not in JAX_ACTIVATIONS:
        raise KeyError(f"no JAX reference for activation {name!r}: add it to tests/conftest.py")
    param = JAX_ACTIVATIONS[name][1]
    return _KIND_INDEX[name], float(act.get_config()[param]) if param else 0.0


def _row(t, mask, kind, p):
    return lax.switch(kind, _KIND_FNS, t, mask, p)


_ROWS_A, _WIDTH_A = 8, 8  # the activation oracle's fixed block of rows x width


def _row_and_jacobian(t, mask, kind, p):
    return _row(t, mask, kind, p), jax.jacrev(_row)(t, mask, kind, p)


_act_oracle = jax.jit(jax.vmap(_row_and_jacobian, in_axes=(0, None, None, None)))


def jax_activation(act: jn.Activation, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JAX's ``(Y, J)`` of ``act`` at ``T`` (N, m <= 8): forward and ``jacrev`` per row."""
    N, m = T.shape
    assert m <= _WIDTH_A, f"the activation oracle takes m <= {_WIDTH_A}, got {m}"
    kind, p = activation_kind(act)
    mask = np.zeros(_WIDTH_A)
    mask[:m] = 1
    Y = np.empty((N, m))
    J = np.empty((N, m, m))
    for start in range(0, N, _ROWS_A):
        block = np.zeros((_ROWS_A, _WIDTH_A))
        rows = T[start : start + _ROWS_A].astype(np.float64)
        block[: len(rows), :m] = rows
        block[len(rows) :, :m] = rows[0]  # padding rows repeat a real row
        n = len(rows)
        Yb, Jb = _act_oracle(block, mask, kind, p)
        Y[start : start + n] = np.asarray(Yb)[:n, :m]
        J[start : start + n] = np.asarray(Jb)[:n, :m, :m]
    return Y, J


# ------------------------------------------------------------------ losses, in JAX
def _mean_scale(w):
    return (w / jnp.sum(w))[:, None]


def _sse(Y, T, w, om, p):
    return jnp.sum(w[:, None] * om * (Y - T) ** 2)


def _mse(Y, T, w, om, p):
    return jnp.sum(_mean_scale(w) * om * (Y - T) ** 2)


def _cross_entropy(Y, T, w, om, p):
    return -jnp.sum(_mean_scale(w) * om * T * jnp.log(jnp.where(om > 0, Y, 1.0)))


def _binary_cross_entropy(Y, T, w, om, p):
    Yc = jnp.where(om > 0, Y, 0.5)
    return -jnp.sum(_mean_scale(w) * om * (T * jnp.log(Yc) + (1 - T) * jnp.log1p(-Yc)))


def _huber(Y, T, w, om, p):
    R = Y - T
    A = jnp.abs(R)
    return jnp.sum(_mean_scale(w) * om * jnp.where(A <= p, 0.5 * R * R, p * (A - 0.5 * p)))


def _poisson(Y, T, w, om, p):
    return jnp.sum(_mean_scale(w) * om * (Y - T * jnp.log(jnp.where(om > 0, Y, 1.0))))


#: name -> (loss(Y, T, w, out_mask, p), name of the config entry that is p)
JAX_LOSSES: dict[str, tuple[Any, str | None]] = {
    "sse": (_sse, None),
    "mse": (_mse, None),
    "cross_entropy": (_cross_entropy, None),
    "binary_cross_entropy": (_binary_cross_entropy, None),
    "huber": (_huber, "delta"),
    "poisson": (_poisson, None),
}
_LOSS_INDEX = {name: i for i, name in enumerate(JAX_LOSSES)}
_LOSS_FNS = [fn for fn, _ in JAX_LOSSES.values()]


def loss_kind(loss: jn.Loss) -> tuple[int, float]:
    if loss.name not in JAX_LOSSES:
        raise KeyError(f"no JAX reference for loss {loss.name!r}: add it to tests/conftest.py")
    param = JAX_LOSSES[loss.name][1]
    return _LOSS_INDEX[loss.name], float(loss.get_config()[param]) if param else 0.0


def _loss(Y, T, w, om, kind, p):
    return lax.switch(kind, _LOSS_FNS, Y, T, w, om, p)


_loss_value_and_grad = jax.jit(jax.value_and_grad(_loss))
_ROWS_L, _WIDTH_L = 8, 40  # the loss oracle's fixed block: samples x outputs


def jax_loss(loss: jn.Loss, Y: Any, T: Any, w: Any = None) -> tuple[float, np.ndarray]:
    """JAX's ``(J, dJ/dY)`` of ``loss`` at ``Y``, ``T`` (N <= 8, m <= 40).

    ``w=None`` means weight 1 per sample. Padding samples get weight 0, padding outputs
    are masked out.
    """
    kind, p = loss_kind(loss)
    Y = np.asarray(Y, np.float64)
    N, m = Y.shape
    assert N <= _ROWS_L and m <= _WIDTH_L, (N, m)
    Yp = np.full((_ROWS_L, _WIDTH_L), 0.5)
    Tp = np.zeros((_ROWS_L, _WIDTH_L))
    Yp[:N, :m] = Y
    Tp[:N, :m] = np.asarray(T, np.float64).reshape(N, m)
    wp = np.zeros(_ROWS_L)
    wp[:N] = 1.0 if w is None else np.asarray(w, np.float64)
    om = np.zeros(_WIDTH_L)
    om[:m] = 1
    value, g = _loss_value_and_grad(Yp, Tp, wp, om, kind, p)
    return float(value), np.asarray(g)[:N, :m]


# -------------------------------------------------------- the network, in JAX
DEPTH, WIDTH, ROWS = 5, 40, 6  # the universal network that embeds every tested one


def _net_forward(Ws, bs, X, kinds, masks, params):
    """``y_k = f_k(y_{k-1} W_k + b_k)``, k = 1..DEPTH; a scan compiles one layer only."""

    def layer(Y, args):
        W, b, kind, mask, p = args
        return jax.vmap(_row, in_axes=(0, None, None, None))(Y @ W + b, mask, kind, p), None

    return lax.scan(layer, X, (Ws, bs, kinds, masks, params))[0]


@jax.jit
def _net_jacobians(Ws, bs, X, kinds, masks, params):
    Y = _net_forward(Ws, bs, X, kinds, masks, params)
    return (Y,) + jax.jacrev(_net_forward, argnums=(0, 1, 2))(Ws, bs, X, kinds, masks, params)


def _embed(net: jn.Network):
    """The universal network's parameters, activations and masks for ``net``."""
    depth = len(net.layers)
    assert depth <= DEPTH, depth
    assert max(max(la.n_in, la.n_out) for la in net.layers) <= WIDTH
    Ws = np.zeros((DEPTH, WIDTH, WIDTH))
    bs = np.zeros((DEPTH, WIDTH))
    kinds = np.full(DEPTH, _KIND_INDEX["identity"])
    params = np.zeros(DEPTH)
    masks = np.ones((DEPTH, WIDTH))
    theta = net.get_flat().astype(np.float64)
    pos = 0
    for k, layer in enumerate(net.layers):  # theta = [W_1.ravel() (C order), b_1, W_2, ...]
        n_in, n_out = layer.n_in, layer.n_out
        Ws[k, :n_in, :n_out] = theta[pos : pos + n_in * n_out].reshape(n_in, n_out)
        pos += n_in * n_out
        bs[k, :n_out] = theta[pos : pos + n_out]
        pos += n_out
        kinds[k], params[k] = activation_kind(layer.activation)
        masks[k] = 0
        masks[k, :n_out] = 1
    for k in range(depth, DEPTH):  # pass-through layers after the real output
        Ws[k] = np.eye(WIDTH)
    return Ws, bs, kinds, masks, params


def _gather(net: jn.Network, JW: np.ndarray, Jb: np.ndarray) -> np.ndarray:
    """Collect d/d(real parameters) in theta order from the universal (W, b) Jacobians."""
    blocks = []
    lead = JW.shape[: JW.ndim - 3]
    for k, layer in enumerate(net.layers):
        n_in, n_out = layer.n_in, layer.n_out
        blocks.append(JW[..., k, :n_in, :n_out].reshape(lead + (n_in * n_out,)))
        blocks.append(Jb[..., k, :n_out])
    return np.concatenate(blocks, axis=-1)


def jax_network(
    net: jn.Network, X: np.ndarray, T: Any = None, w: Any = None, loss: Any = None
) -> SimpleNamespace:
    """JAX's forward ``Y``, ``J = dy/dtheta`` (N, q, P), ``Jx = dy/dx`` (N, q, n_in).

    ``.loss(loss, T, w)`` gives ``(value, dJ/dtheta)``; with ``loss`` given here they are
    also stored as ``.value`` and ``.grad``.
    """
    X = np.asarray(X, np.float64)
    q = net.n_out
    Ws, bs, kinds, masks, params = _embed(net)
    Ys, Js, Jxs = [], [], []
    for start in range(0, X.shape[0], ROWS):  # samples are independent: blocks of ROWS
        Xb = X[start : start + ROWS]
        n = Xb.shape[0]
        Xp = np.zeros((ROWS, WIDTH))
        Xp[:, : net.n_in] = Xb[np.arange(ROWS) % n]  # padding rows repeat real rows
        Y, JW, Jb, JX = (np.asarray(a) for a in _net_jacobians(Ws, bs, Xp, kinds, masks, params))
        idx = np.arange(n)
        Ys.append(Y[:n, :q])
        Js.append(_gather(net, JW[:n, :q], Jb[:n, :q]))
        Jxs.append(JX[idx, :q, idx, : net.n_in])
    out = SimpleNamespace(Y=np.concatenate(Ys), J=np.concatenate(Js), Jx=np.concatenate(Jxs))
    out.loss = lambda loss, T, w=None: _network_loss(out, loss, T, w)
    if loss is not None:
        out.value, out.grad = out.loss(loss, T, w)
    return out


def _network_loss(ref: SimpleNamespace, loss: Any, T: Any, w: Any) -> tuple[float, np.ndarray]:
    """The loss's value and ``dJ/dtheta`` at the network's JAX outputs.

    By the chain rule at the output, ``dJ/dtheta = sum_{s,i} dJ/dy_{s,i} dy_{s,i}/dtheta``,
    both factors by JAX (``jax.grad`` of the loss, ``jax.jacrev`` of the network).
    """
    value, dY = jax_loss(jn.get_loss(loss), ref.Y, T, w)
    return value, np.einsum("si,sip->p", dY, ref.J)


# ------------------------------------------------------------------- error report
#: below this size a reference counts as zero: its rounding noise is not an error
REL_FLOOR = 1e-2


def rel_err(a: Any, b: Any) -> float:
    """Norm-wise relative error ``max|a - b| / max(max|b|, REL_FLOOR)`` (``b`` the reference).

    The floor matters only for references that vanish, such as the Jacobian of a
    one-unit softmax: JAX returns rounding noise (1e-16) where jacnet returns 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), REL_FLOOR)


class ErrorLog:
    """The largest relative error seen against each oracle, for the end-of-run summary."""

    def __init__(self) -> None:
        self.max: dict[str, tuple[float, str]] = {}

    def record(self, oracle: str, err: float, where: str) -> float:
        if oracle not in self.max or err > self.max[oracle][0]:
            self.max[oracle] = (err, where)
        return err


ERRORS = ErrorLog()


def check_close(oracle: str, actual: Any, reference: Any, tol: float, where: str) -> float:
    """Assert ``rel_err(actual, reference) <= tol`` and log the error under ``oracle``."""
    err = ERRORS.record(oracle, rel_err(actual, reference), where)
    assert err <= tol, f"{oracle}: relative error {err:.3e} > {tol:.0e} at {where}"
    return err


@pytest.fixture(scope="session")
def oracle() -> SimpleNamespace:
    """The JAX oracle, the user activations and the error helpers, for the tests."""
    return SimpleNamespace(
        activation=jax_activation,
        loss=jax_loss,
        network=jax_network,
        activation_names=frozenset(JAX_ACTIVATIONS),
        loss_names=frozenset(JAX_LOSSES),
        Cube=Cube,
        Unfused=Unfused,
        rel_err=rel_err,
        check=check_close,
        record=ERRORS.record,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, hand this worker's maxima to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["jacnet_max_errors"] = json.dumps(ERRORS.max)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller, merge a worker's maxima."""
    data = getattr(node, "workeroutput", {}).get("jacnet_max_errors")
    if data:
        for name, (err, where) in json.loads(data).items():
            ERRORS.record(name, err, where)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the largest relative error seen against each oracle in this run."""
    if not ERRORS.max:
        return
    terminalreporter.section("max relative errors (jacnet vs oracle)")
    for name, (err, where) in sorted(ERRORS.max.items()):
        terminalreporter.write_line(f"{name:<36} {err:.2e}   at {where}")


@pytest.fixture(params=["syrk", "kronecker"])
def gn_form(request, monkeypatch) -> str:
    """Both ways ``jacnet.gauss_newton`` builds a Gauss-Newton system, forced in turn: BLAS
    syrk on chunks of J, and the Kronecker form (``_kronecker_sums``), which otherwise
    runs only where its cost model expects it to be faster (``_kronecker_pays``)."""
    import jacnet.gauss_newton as gn

    form = request.param
    monkeypatch.setattr(gn, "_kronecker_pays", lambda *args: form == "kronecker")
    return form


@pytest.fixture
def unprivileged(tmp_path_factory) -> SimpleNamespace:
    """What a user without root's right to write any file sees: ``folder``, a new folder
    that every user may write (in the system's temporary folder, which every user can
    reach), and ``run(fn)``, which calls ``fn() -> int`` as such a user and returns its
    result: in this process when it is not root, else in a forked child that drops to
    uid/gid 65534 (the child returns 1 if ``fn`` raises)."""
    import shutil
    import signal
    import tempfile
    import time
    import warnings
    from pathlib import Path

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork to drop root's rights")
    folder = Path(tempfile.mkdtemp(prefix="jacnet-test-"))
    folder.chmod(0o777)

    def run(fn: Any) -> int:
        if os.geteuid() != 0:
            return int(fn())
        # JAX warns that a fork of its threaded process may deadlock: the child here only
        # makes file system calls and leaves by os._exit, never touching JAX or a lock
        # another thread could hold. Should it hang all the same, it is killed after 60 s
        # and the test fails instead of stalling the suite.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                code = int(fn())
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the unprivileged child did not finish in 60 s")
            time.sleep(0.01)
        return os.waitstatus_to_exitcode(done[1])

    yield SimpleNamespace(folder=folder, run=run)
    shutil.rmtree(folder)
