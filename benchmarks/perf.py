"""Suite "perf": mini-batch training speed against PyTorch eager and scikit-learn.

1. 784-256-256-10 ReLU, softmax + cross-entropy, 60,000 random samples, Adam lr 1e-3,
   batch 128, float32, one epoch: ``jacnet.train`` against a standard PyTorch eager loop
   and scikit-learn's ``MLPClassifier`` (one epoch), and against the roofline: the same
   epoch's GEMMs alone, at their shapes, in numpy's BLAS. The same at batch 32 and in
   float64 against PyTorch; batch 512 without a target.
2. 10-32-32-1 tanh regression, MSE, Adam, batch 32, float32: steps per second against
   PyTorch eager.

jacnet runs twice in every case, interleaved with the peers in the same measurement: with
its compiled kernels (``JACNET_NUMBA=1``, the ``fast`` extra) and on numpy alone
(``JACNET_NUMBA=0``); each row names its path. Before timing, each case checks that jacnet
and the peer agree on the first batch from the same weights (loss and gradient to float32
tolerance). A missed target comes with a measured breakdown of jacnet's epoch on that path
and cProfile's top entries, in the notes.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import jacnet as jn
from jacnet import accel
from jacnet.minibatch import gather_rows

from ._harness import Case, Context, Row, check_close, profile_top

TITLE = "Training performance (mini-batch epochs)"
DESCRIPTION = """\
One epoch of mini-batch training with Adam (lr 1e-3), `jacnet.train(..., max_epochs=1)`
(gathering its shuffled batches, checks and record included), on each of jacnet's two
paths: with its compiled kernels (`pip install "jacnet[fast]"`, numba; `JACNET_NUMBA=1`)
and on numpy alone (`JACNET_NUMBA=0`), both timed in the same run, interleaved with the
peers. The kernels run on the calling thread; BLAS has the run's threads on both paths.
The peers: PyTorch eager (the same initial
weights copied in, the same data; each epoch a `torch.randperm` and each batch gathered by
indexing with its slice, as jacnet and scikit-learn shuffle and gather; `zero_grad`,
forward, loss, `backward`, `Adam.step`) and scikit-learn's `MLPClassifier` (`fit` with
`max_iter=1`, `alpha=0`, the same batch size). The roofline row divides the time of the
epoch's GEMMs alone (numpy's BLAS at the epoch's exact shapes: forward, weight gradients,
input gradients of all but the first layer) by jacnet's epoch: the share of the BLAS limit
jacnet reaches. Each case first checks that jacnet and the peer give the same loss and
gradient on the first batch from the same weights.

Where a target is missed, the row's note gives the measured breakdown of jacnet's epoch
on that row's path (each phase timed alone with jacnet's own functions) and cProfile's
top entries. On the numpy path the work outside the GEMMs is separate passes over memory:
Adam's update is twelve array passes over θ per batch (run piece by piece, each piece in
cache, but still twelve), and each layer's bias, activation and derivative are passes
over the batch's activations. The kernels make Adam (with the epoch's gradient sum) one
pass, each hidden layer's bias with ReLU one pass, each derivative one pass, and
softmax with cross-entropy two row loops around numpy's exp, log and row sums (kept for
their rounding); what remains besides the GEMMs is the row sums, the batch gathering and
the loop's Python work (docs/architecture.md, "Compiled kernels")."""

Array = np.ndarray

# (full, smoke) sizes.
MNIST_WIDTHS = ((784, 256, 256, 10), (20, 16, 16, 4))
MNIST_N = (60_000, 300)
SMALL_WIDTHS = ((10, 32, 32, 1), (10, 32, 32, 1))
SMALL_N = (32 * 512, 32 * 8)
TOL32 = 2e-4
TOL64 = 1e-9


# ------------------------------------------------------------------ shared pieces
def _data(n: int, widths: Sequence[int], dtype: Any, classify: bool) -> tuple[Array, Array, Array]:
    """``(X, labels, T)``: standard normal inputs; random labels one-hot, or a regression."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, widths[0])).astype(dtype)
    if classify:
        labels = rng.integers(0, widths[-1], n)
        return X, labels, np.eye(widths[-1], dtype=dtype)[labels]
    y = np.sin(X[:, :3].sum(axis=1, keepdims=True)) + 0.1 * X[:, 3:4]
    return X, y[:, 0], y.astype(dtype)


def _network(widths: Sequence[int], hidden: str, out: str, dtype: Any) -> jn.Network:
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    layers = [jn.Dense(a, b, hidden) for a, b in pairs[:-1]]
    layers.append(jn.Dense(*pairs[-1], out))
    return jn.Network(layers, seed=0, dtype=dtype)


def _torch_model(torch: ModuleType, net: jn.Network, hidden: str) -> Any:
    """``nn.Sequential`` of Linear layers holding jacnet's weights (``weight = W.T``)."""
    dt = torch.float32 if net.dtype == np.float32 else torch.float64
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[hidden]
    mods: list[Any] = []
    for k, layer in enumerate(net.layers):
        lin = torch.nn.Linear(layer.n_in, layer.n_out, dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
        mods.append(lin)
        if k < len(net.layers) - 1:
            mods.append(act())
    return torch.nn.Sequential(*mods)


def _torch_flat_grad(model: Any) -> Array:
    """The torch gradients in jacnet's theta order: ``W = weight.T`` then ``b``, per layer."""
    parts = []
    for mod in model:
        if hasattr(mod, "weight"):
            parts += [mod.weight.grad.numpy().T.ravel(), mod.bias.grad.numpy().ravel()]
    return np.concatenate(parts)


def _torch_epoch(torch: ModuleType, model: Any, opt: Any, lossf: Any, Xt: Any, yt: Any,
                 bs: int) -> Callable[[], None]:
    """An eager PyTorch epoch: shuffled each time, each batch gathered by its indices (the
    work jacnet's and scikit-learn's epochs do too)."""
    n = Xt.shape[0]
    gen = torch.Generator().manual_seed(1)

    def run() -> None:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            rows = order[start : start + bs]
            opt.zero_grad()
            loss = lossf(model(Xt[rows]), yt[rows])
            loss.backward()
            opt.step()

    return run


#: jacnet's two paths: the row label and the JACNET_NUMBA setting of each.
PATHS = {"numba": ("with numba kernels", "1"), "numpy": ("numpy only", "0")}


def _paths() -> list[str]:
    """The paths this run times: both where numba is installed, else numpy alone."""
    return ["numba", "numpy"] if accel.available() else ["numpy"]


@contextmanager
def _on_path(path: str) -> Iterator[None]:
    """Run jacnet on ``path`` (``JACNET_NUMBA`` set for the block, then restored)."""
    before = os.environ.get(accel.ENV)
    os.environ[accel.ENV] = PATHS[path][1]
    try:
        yield
    finally:
        if before is None:
            del os.environ[accel.ENV]
        else:
            os.environ[accel.ENV] = before


def _jacnet_epoch(net: jn.Network, X: Array, T: Array, loss: str, bs: int,
                  path: str = "numpy") -> Callable[[], None]:
    theta0 = net.get_flat()

    def run() -> None:
        net.set_flat(theta0)  # every repeat trains the same epoch
        with _on_path(path):
            jn.train(net, X, T, solver="adam", loss=loss, lr=1e-3, batch_size=bs,
                     max_epochs=1, seed=0, min_grad=0.0)

    return run


def _skip_note(path: str) -> str:
    return 'numba not installed (pip install "jacnet[fast]")' if path == "numba" else ""


def _gemm_epoch(widths: Sequence[int], n: int, bs: int, dtype: Any) -> Callable[[], None]:
    """The epoch's GEMMs alone: forward, dW, and dX of every layer but the first."""
    rng = np.random.default_rng(4)
    sizes = [min(bs, n - s) for s in range(0, n, bs)]
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    W = [rng.standard_normal((a, b)).astype(dtype) for a, b in pairs]
    A = [rng.standard_normal((bs, a)).astype(dtype) for a, _ in pairs]  # layer inputs
    D = [rng.standard_normal((bs, b)).astype(dtype) for _, b in pairs]  # deltas
    O = [np.empty((bs, b), dtype) for _, b in pairs]
    dW = [np.empty((a, b), dtype) for a, b in pairs]
    G = [np.empty((bs, a), dtype) for a, _ in pairs]

    def run() -> None:
        for m in sizes:
            for k in range(len(pairs)):
                np.matmul(A[k][:m], W[k], out=O[k][:m])
            for k in range(len(pairs) - 1, -1, -1):
                np.dot(A[k][:m].T, D[k][:m], out=dW[k])
                if k:
                    np.matmul(D[k][:m], W[k].T, out=G[k][:m])

    return run


def epoch_flops(widths: Sequence[int], n: int) -> int:
    """``2 N sum(n_in n_out)`` forward, as much for dW, and dX except the first layer."""
    macs = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return 2 * n * (2 * sum(macs) + sum(macs[1:]))


def breakdown(net: jn.Network, X: Array, T: Array, loss: str, bs: int, total: float,
              gemm: float | None) -> str:
    """A measured time breakdown of one ``train`` epoch, phase by phase (one run each), on
    the path ``JACNET_NUMBA`` sets now.

    Phases are timed alone with jacnet's own functions: the shuffle copy, backprop of every
    batch (``Network.backprop`` with buffers: GEMMs, bias, activations, loss; the GEMM
    share from ``gemm``), the optimizer's steps with the gradient sum kept for the record
    (``step``'s ``total``, as the loop runs it); the rest of ``total`` is the loop's
    Python work, the input checks and the record.
    """
    n = X.shape[0]
    theta0 = net.get_flat()
    lossf = jn.get_loss(loss)
    bp = net.backprop(lossf, bs)
    opt = jn.optimizers.Adam(lr=1e-3)
    state = opt.init([net.theta], [net.weight_mask()])
    opt.prepare([net.theta], [bp.grad], state, 1e-3)
    gsum = np.zeros_like(bp.grad)
    order = np.random.default_rng(0).permutation(n)
    Xs, Ts = X[order], T[order]  # the shuffled batches backprop() reads (untimed)
    Xb, Tb = np.empty((bs,) + X.shape[1:], X.dtype), np.empty((bs,) + T.shape[1:], T.dtype)
    starts = range(0, n, bs)

    def clock(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def shuffle() -> None:  # train()'s own gathering of each shuffled batch
        for s in starts:
            gather_rows(order[s : s + bs], (X, T, None), (Xb, Tb, None))

    def backprop() -> None:
        for s in starts:
            bp(Xs[s : s + bs], Ts[s : s + bs])

    def optimizer() -> None:
        for _ in starts:
            opt.step([net.theta], [bp.grad], state, 1e-3, [gsum])

    with np.errstate(all="ignore"):
        phases = {name: clock(fn) for name, fn in
                  (("shuffled batch gathering", shuffle), ("backprop", backprop),
                   ("optimizer with the gradient sum", optimizer))}
    net.set_flat(theta0)
    parts = []
    if gemm is not None:
        parts.append(f"GEMMs {gemm:.3g} s")
        parts.append(f"backprop besides GEMMs {phases['backprop'] - gemm:.3g} s")
    else:
        parts.append(f"backprop {phases['backprop']:.3g} s")
    parts += [f"{k} {v:.3g} s" for k, v in phases.items() if k != "backprop"]
    rest = total - sum(phases.values())
    parts.append(f"the rest (loop, checks, record) {rest:.3g} s")
    return f"breakdown of jacnet's {total:.3g} s epoch: " + ", ".join(parts)


def _check_first_batch(ctx: Context, case: str, net: jn.Network, loss: str, X: Array, T: Array,
                       value: float, grad: Array) -> float:
    ref_v, ref_g = net.loss_and_flat_grad(X, T, loss)
    tol = TOL32 if net.dtype == np.float32 else TOL64
    check_close(f"{case}: first-batch loss", value, ref_v, tol)
    return check_close(f"{case}: first-batch gradient", grad, ref_g, tol)


def _miss_notes(row: Row, ctx: Context, detail: Callable[[], str]) -> Row:
    if row.status == "miss":
        row.note = (row.note + "; " if row.note else "") + detail()
    return row


# ----------------------------------------------------------- 1. MNIST-sized MLP
@dataclass(frozen=True)
class Targets:
    """A case's targets per path (None: reported without one); ``sklearn``: whether
    scikit-learn runs as a peer too."""

    torch: dict[str, float]
    sklearn: dict[str, float] | None = None
    roofline: dict[str, float] | None = None


#: Issue 24: with the kernels ≥ 1.3x PyTorch, ≥ 2x scikit-learn, ≥ 70% of the GEMMs'
#: time; on numpy alone no slower than PyTorch. Batch 32 and float64: ≥ 1.3x PyTorch
#: with the kernels.
MAIN = Targets(torch={"numba": 1.3, "numpy": 1.0}, sklearn={"numba": 2.0},
               roofline={"numba": 0.7})
SECOND = Targets(torch={"numba": 1.3})
REPORTED = Targets(torch={})


def mnist_case(ctx: Context, bs: int, dtype: Any, targets: Targets) -> list[Row]:
    i = 1 if ctx.smoke else 0
    widths, n = MNIST_WIDTHS[i], MNIST_N[i]
    tag = "f32" if dtype == np.float32 else "f64"
    case = f"perf.mlp.b{bs}.{tag}"
    name = (f"one epoch, {'-'.join(map(str, widths))} ReLU, softmax + CE, N={n}, "
            f"batch {bs}, {np.dtype(dtype).name}")
    X, labels, T = _data(n, widths, dtype, classify=True)
    net = _network(widths, "relu", "softmax", dtype)
    paths = _paths()
    fns: dict[str, Callable[[], Any]] = {
        p: _jacnet_epoch(net, X, T, "cross_entropy", bs, p) for p in paths}
    notes: dict[str, str] = {}
    torch = ctx.torch
    if torch is not None:
        model = _torch_model(torch, net, "relu")
        lossf = torch.nn.CrossEntropyLoss()
        Xt, yt = torch.from_numpy(X[:bs]), torch.from_numpy(labels[:bs])
        out = lossf(model(Xt), yt)
        out.backward()
        err = _check_first_batch(ctx, case, net, "cross_entropy", X[:bs], T[:bs],
                                 float(out.item()), _torch_flat_grad(model))
        notes["torch"] = f"first-batch loss and gradient agree to {err:.1e}"
        model.zero_grad()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        fns["torch"] = _torch_epoch(torch, model, opt, lossf, torch.from_numpy(X),
                                    torch.from_numpy(labels), bs)
    sk = _sklearn_classifier(widths, bs, n) if targets.sklearn is not None else None
    if sk is not None:
        err, sk_dtype = _check_sklearn(sk, net, X[:bs], T[:bs], (X[:2000], labels[:2000]))
        notes["sklearn"] = (f"first-batch loss and gradient agree to {err:.1e}; "
                            f"scikit-learn trains in {sk_dtype}")
        fns["sklearn"] = partial(_sklearn_fit, sk, X, labels)
    fns["gemm"] = _gemm_epoch(widths, n, bs, dtype)
    first = _first_call(fns["numba"]) if "numba" in fns else None
    t = ctx.measure(fns)
    if first is not None and first - t["numba"].median > 0.05:  # this case loaded them
        notes["numba"] = (f"the first epoch with numba took {first - t['numba'].median:.2g} s "
                          "more than a timed one (kernels compiled, or loaded from numba's "
                          "cache, on first use; not timed)")
    flops = epoch_flops(widths, n)
    gemm_rate = flops / t["gemm"].median / 1e9
    rows = []
    for path in PATHS:
        label = f"{name}, {PATHS[path][0]}"
        jt = t.get(path)
        detail = _detail(net, X, T, bs, path, t, fns)
        extra = notes.get(path, "") if path == "numba" else ""
        rows.append(_miss_notes(ctx.row(
            case, label, "PyTorch eager", jacnet=jt, peer_time=t.get("torch") if jt else None,
            target=targets.torch.get(path),
            note=_join(notes.get("torch", ctx.torch_note), extra) if jt else _skip_note(path)),
            ctx, detail))
        if targets.sklearn is not None:
            rows.append(_miss_notes(ctx.row(
                case, label, "scikit-learn MLPClassifier", jacnet=jt,
                peer_time=t.get("sklearn") if jt else None, target=targets.sklearn.get(path),
                note=notes.get("sklearn", "scikit-learn not installed") if jt
                else _skip_note(path)), ctx, detail))
        if targets.roofline is not None:
            rate = f", jacnet's epoch at {flops / jt.median / 1e9:.1f} GFLOP/s" if jt else ""
            rows.append(_miss_notes(ctx.row(
                case, label, "roofline: the epoch's GEMMs alone", jacnet=jt,
                peer_time=t["gemm"] if jt else None, target=targets.roofline.get(path),
                kind="fraction",
                note=(f"{flops / 1e9:.3g} GFLOP per epoch, GEMMs alone at {gemm_rate:.1f} "
                      f"GFLOP/s{rate}") if jt else _skip_note(path)), ctx, detail))
    return rows


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _first_call(fn: Callable[[], Any]) -> float:
    """Seconds of ``fn``'s first call (the kernels' compilation or cache load included)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _detail(net: jn.Network, X: Array, T: Array, bs: int, path: str, t: dict[str, Any],
            fns: dict[str, Callable[[], Any]], loss: str = "cross_entropy",
            gemm: bool = True) -> Callable[[], str]:
    """The breakdown and profile of ``path``'s epoch, measured when first asked for."""
    cache: dict[str, str] = {}

    def detail() -> str:
        if "text" not in cache:
            with _on_path(path):
                cache["text"] = (
                    breakdown(net, X, T, loss, bs, t[path].median,
                              t["gemm"].median if gemm else None)
                    + "; " + profile_top(fns[path]))
        return cache["text"]

    return detail


def _sklearn_classifier(widths: Sequence[int], bs: int, n: int) -> Any:
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    return MLPClassifier(hidden_layer_sizes=tuple(widths[1:-1]), activation="relu",
                         solver="adam", alpha=0.0, batch_size=bs, learning_rate_init=1e-3,
                         max_iter=1, shuffle=True, random_state=0, tol=0.0)


def _sklearn_fit(sk: Any, X: Array, labels: Array) -> None:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X, labels)


def _check_sklearn(sk: Any, net: jn.Network, X: Array, T: Array,
                   fit_on: tuple[Array, Array]) -> tuple[float, str]:
    """Set jacnet's weights into a fitted MLPClassifier; compare loss and gradient."""
    _sklearn_fit(sk, *fit_on)
    sk.coefs_ = [layer.W.copy() for layer in net.layers]
    sk.intercepts_ = [layer.b.copy() for layer in net.layers]
    proba = sk.predict_proba(X)
    tol = TOL32 if net.dtype == np.float32 else TOL64
    check_close("perf: scikit-learn forward", proba, net(X), tol)
    n = X.shape[0]
    acts = [X] + [np.empty((n, layer.n_out), X.dtype) for layer in net.layers]
    deltas = [np.empty_like(a) for a in acts[1:]]
    cg = [np.empty_like(layer.W) for layer in net.layers]
    ig = [np.empty_like(layer.b) for layer in net.layers]
    weights: tuple[None, ...] = ()
    if "sample_weight" in inspect.signature(sk._backprop).parameters:
        weights = (None,)  # scikit-learn >= 1.7: _backprop(X, y, sample_weight, ...)
    value, cg, ig = sk._backprop(X, T, *weights, acts, deltas, cg, ig)
    grad = np.concatenate([a.ravel() for pair in zip(cg, ig, strict=True) for a in pair])
    ref_v, ref_g = net.loss_and_flat_grad(X, T, "cross_entropy")
    check_close("perf: scikit-learn first-batch loss", value, ref_v, tol)
    err = check_close("perf: scikit-learn first-batch gradient", grad, ref_g, tol)
    return err, str(sk.coefs_[0].dtype)


# ---------------------------------------------------------- 2. small networks
def small_case(ctx: Context) -> list[Row]:
    i = 1 if ctx.smoke else 0
    widths, n, bs = SMALL_WIDTHS[i], SMALL_N[i], 32
    case = "perf.small.b32.f32"
    steps = -(-n // bs)
    name = f"{'-'.join(map(str, widths))} tanh regression, MSE, batch {bs}, float32, {steps} steps"
    peer = "PyTorch eager"
    torch = ctx.torch
    if torch is None:
        return [ctx.row(case, name, peer, note=ctx.torch_note)]
    X, _, T = _data(n, widths, np.float32, classify=False)
    net = _network(widths, "tanh", "identity", np.float32)
    model = _torch_model(torch, net, "tanh")
    lossf = torch.nn.MSELoss()
    out = lossf(model(torch.from_numpy(X[:bs])), torch.from_numpy(T[:bs]))
    out.backward()
    err = _check_first_batch(ctx, case, net, "mse", X[:bs], T[:bs], float(out.item()),
                             _torch_flat_grad(model))
    model.zero_grad()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    paths = _paths()
    fns: dict[str, Callable[[], Any]] = {
        p: _jacnet_epoch(net, X, T, "mse", bs, p) for p in paths}
    fns["torch"] = _torch_epoch(torch, model, opt, lossf, torch.from_numpy(X),
                                torch.from_numpy(T), bs)
    t = ctx.measure(fns)
    rate = {k: steps / v.median for k, v in t.items()}
    rows = []
    for path in PATHS:
        if path not in t:
            rows.append(ctx.row(case, f"{name}, {PATHS[path][0]}", peer, note=_skip_note(path)))
            continue
        note = (f"first-batch loss and gradient agree to {err:.1e}; steps/s: jacnet "
                f"{rate[path]:.0f}, PyTorch {rate['torch']:.0f}")
        row = ctx.row(case, f"{name}, {PATHS[path][0]}", peer, jacnet=t[path],
                      peer_time=t["torch"], target=3.0, note=note)
        rows.append(_miss_notes(row, ctx, _detail(net, X, T, bs, path, t, fns, "mse",
                                                  gemm=False)))
    return rows


# --------------------------------------------------------------------------- cases
def cases(smoke: bool) -> list[Case]:
    return [
        Case("perf.mlp.b128.f32", partial(mnist_case, bs=128, dtype=np.float32, targets=MAIN)),
        Case("perf.small.b32.f32", small_case),
        Case("perf.mlp.b32.f32", partial(mnist_case, bs=32, dtype=np.float32, targets=SECOND)),
        Case("perf.mlp.b512.f32",
             partial(mnist_case, bs=512, dtype=np.float32, targets=REPORTED)),
        Case("perf.mlp.b128.f64",
             partial(mnist_case, bs=128, dtype=np.float64, targets=SECOND)),
    ]
