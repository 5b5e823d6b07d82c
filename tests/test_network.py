"""The network: backpropagation, per-output Jacobians, input Jacobian, Gauss-Newton.

Three oracles: the seed's formulas written literally (one sample, full f' matrices),
JAX (``jax.jacrev`` of an independent forward pass, conftest.py) and central finite
differences. Then the API contract of DESIGN.md, bad input and statelessness.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import jacnet as jn
from jacnet import gauss_newton as _gn
from jacnet import jacobian as _jac

BUILTINS = sorted(
    name for name, cls in jn.ACTIVATIONS.items() if cls.__module__ == "jacnet.activations"
)
ALL_ACTIVATIONS = BUILTINS + ["cube"]
NON_ELEMENTWISE_HIDDEN = {"softmax", "sparsemax", "l2_normalize", "layer_norm"}
KINKED = {"relu", "leaky_relu", "elu", "sparsemax"}

# Every activation sits in a hidden layer and at the output within the first 17 networks
# (the coverage test checks it); make test runs 50, make test-all 150 (JACNET_TEST_NETWORKS).
N_NETWORKS = int(os.environ.get("JACNET_TEST_NETWORKS", "50"))
MAX_PARAMS = 1500  # keeps the full finite-difference Jacobian cheap
FD_STEP = 1e-6


# ------------------------------------------------------------------ helpers
def make_activation(name: str, oracle) -> jn.Activation:
    return oracle.Cube() if name == "cube" else jn.get_activation(name)


def network_specs() -> list[dict]:
    """The random networks: seeded, depth 1-5, widths 1-40, every activation everywhere.

    The output activation cycles through the registry (plus Cube); hidden activations
    cycle through a shuffled copy, so every activation also sits in a hidden layer.
    """
    specs = []
    order = np.random.default_rng(0).permutation(ALL_ACTIVATIONS)
    pointer = 0
    for i in range(N_NETWORKS):
        rng = np.random.default_rng(7000 + i)
        depth = 1 + i % 5
        hidden = [str(order[(pointer + j) % len(order)]) for j in range(depth - 1)]
        pointer += depth - 1
        acts = hidden + [ALL_ACTIVATIONS[i % len(ALL_ACTIVATIONS)]]
        while True:
            widths = [int(w) for w in rng.integers(1, 41, size=depth + 1)]
            if i % 9 == 4:
                widths[int(rng.integers(0, depth + 1))] = 1
            if sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True)) <= MAX_PARAMS:
                break
        specs.append({"index": i, "acts": acts, "widths": widths, "N": 3 + i % 4})
    return specs


SPECS = network_specs()


def spec_id(spec: dict) -> str:
    widths = ".".join(map(str, spec["widths"]))
    return f"net{spec['index']:02d}-" + "-".join(spec["acts"]) + f"-w{widths}"


def losses_for(output: str) -> list[str]:
    """The losses that make sense for an output activation."""
    losses = ["sse", "mse", "huber"]
    if output == "softmax":
        losses.append("cross_entropy")  # the fused path
    if output in {"sigmoid", "logistic"}:
        losses += ["binary_cross_entropy", "cross_entropy"]  # fused, general
    if output == "exp":
        losses.append("poisson")  # the fused path
    if output == "softplus":
        losses.append("poisson")  # general path
    return losses


def targets_for(loss: str, output: str, shape: tuple[int, int], rng) -> np.ndarray:
    if loss == "cross_entropy" and output == "softmax":
        return rng.dirichlet(np.ones(shape[1]), size=shape[0])
    if loss in {"cross_entropy", "binary_cross_entropy"}:
        return rng.uniform(0, 1, size=shape)
    if loss == "poisson":
        return rng.poisson(2.0, size=shape).astype(float)
    return rng.normal(0, 2.0, size=shape)  # wide: huber sees both regimes


def kink_distance(net: jn.Network, X: np.ndarray) -> float:
    """How far the pre-activations of kinked layers are from their kinks."""
    dist = np.inf
    for layer in net.layers:
        T, Y = layer.forward(X)
        name = getattr(layer.activation, "name", "")
        if name in {"relu", "leaky_relu", "elu"}:
            dist = min(dist, float(np.abs(T).min()))
        elif name == "sparsemax":
            top = np.argmax(Y, axis=1)
            rows = np.arange(T.shape[0])
            tau = T[rows, top] - Y[rows, top]
            dist = min(dist, float(np.abs(T - tau[:, None]).min()))
        X = Y
    return dist


def build(spec: dict, oracle) -> tuple[jn.Network, np.ndarray, np.random.Generator]:
    """The network of ``spec`` with random biases, and inputs away from every kink."""
    rng = np.random.default_rng(9000 + spec["index"])
    widths = spec["widths"]
    layers = [
        jn.Dense(widths[k], widths[k + 1], make_activation(a, oracle))
        for k, a in enumerate(spec["acts"])
    ]
    net = jn.Network(layers, seed=spec["index"])
    for layer in net.layers:
        layer.b = rng.normal(0.0, 0.3, size=layer.n_out)
    while True:
        X = rng.normal(size=(spec["N"], widths[0]))
        if kink_distance(net, X) > 1e-4:
            return net, X, rng


def fd_param_jacobian(net: jn.Network, X: np.ndarray, cols: np.ndarray | None = None,
                      h: float = FD_STEP) -> np.ndarray:
    """Central differences of the outputs in the parameters ``cols`` (default: every one),
    shape (N, n_out, len(cols))."""
    theta = net.get_flat()
    cols = np.arange(theta.size) if cols is None else cols
    J = np.empty((X.shape[0], net.n_out, len(cols)))
    for n, p in enumerate(cols):
        net.theta[p] = theta[p] + h
        up = net.forward(X)
        net.theta[p] = theta[p] - h
        down = net.forward(X)
        net.theta[p] = theta[p]
        J[:, :, n] = (up - down) / (2 * h)
    return J


def fd_columns(net: jn.Network, seed: int, n_random: int = 48) -> np.ndarray:
    """The parameters that finite differences check on a large network: the first and
    last weight and bias of every layer, and ``n_random`` more drawn at random (2 forward
    passes each; every parameter when there are few)."""
    P = net.n_params
    ends = [i for w0, b0, end in _jac.param_offsets(net.layers) for i in (w0, b0 - 1, b0, end - 1)]
    drawn = np.random.default_rng(seed).choice(P, size=min(P, n_random), replace=False)
    return np.unique(np.concatenate([ends, drawn]))


def fd_input_jacobian(net: jn.Network, X: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    N, n_in = X.shape
    J = np.empty((N, net.n_out, n_in))
    for j in range(n_in):
        E = np.zeros_like(X)
        E[:, j] = h
        J[:, :, j] = (net.forward(X + E) - net.forward(X - E)) / (2 * h)
    return J


def fd_loss_grad(net, X, T, loss, w, idx, h: float = 10 * FD_STEP) -> np.ndarray:
    """Central differences of ``net.loss`` (the value path, fused where there is one)."""
    theta = net.get_flat()
    g = np.empty(len(idx))
    for n, p in enumerate(idx):
        net.theta[p] = theta[p] + h
        up = net.loss(X, T, loss, w)
        net.theta[p] = theta[p] - h
        down = net.loss(X, T, loss, w)
        net.theta[p] = theta[p]
        g[n] = (up - down) / (2 * h)
    return g


def gauss_newton_reference(J: np.ndarray, R: np.ndarray, w: np.ndarray) -> tuple:
    """``J^T W J`` and ``J^T W r`` from a full Jacobian; ``w`` is (N,) or (N, q)."""
    N, q, P = J.shape
    W = np.broadcast_to(w[:, None] if w.ndim == 1 else w, (N, q)).reshape(N * q)
    A = J.reshape(N * q, P)
    return A.T @ (W[:, None] * A), A.T @ (W * R.reshape(N * q))


# ----------------------------------------------- (a) random networks vs JAX and FD
def test_network_random_suite_covers_every_activation_everywhere():
    hidden = {a for s in SPECS for a in s["acts"][:-1]}
    output = {s["acts"][-1] for s in SPECS}
    assert set(ALL_ACTIVATIONS) <= hidden
    assert set(ALL_ACTIVATIONS) <= output
    assert NON_ELEMENTWISE_HIDDEN <= hidden
    assert {len(s["acts"]) for s in SPECS} == {1, 2, 3, 4, 5}
    widths = [w for s in SPECS for w in s["widths"]]
    assert min(widths) == 1 and max(widths) >= 38
    assert len(SPECS) >= 17
    used_losses = {loss for s in SPECS for loss in losses_for(s["acts"][-1])}
    assert set(jn.LOSSES) <= used_losses


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_network_derivatives_match_jax_and_finite_differences(spec, oracle):
    net, X, rng = build(spec, oracle)
    where = spec_id(spec)
    N, q, P = X.shape[0], net.n_out, net.n_params
    ref = oracle.network(net, X)

    # forward, per-output Jacobian (seed 1-6, R-b, R-w) and input Jacobian
    oracle.check("network forward vs JAX", net.forward(X), ref.Y, 1e-12, where)
    J = net.jacobian(X)
    assert J.shape == (N, q, P)
    oracle.check("network jacobian vs JAX", J, ref.J, 1e-10, where)
    oracle.check("network jacobian(chunk=2) vs JAX", net.jacobian(X, chunk=2), ref.J, 1e-10,
                 where)
    cols = fd_columns(net, spec["index"])
    J_fd = fd_param_jacobian(net, X, cols)
    oracle.check("network jacobian vs FD", J[:, :, cols], J_fd, 1e-6, where)
    Jx = net.input_jacobian(X)
    assert Jx.shape == (N, q, net.n_in)
    oracle.check("network input_jacobian vs JAX", Jx, ref.Jx, 1e-10, where)
    oracle.check("network input_jacobian vs JAX", net.input_jacobian(X, chunk=1), ref.Jx,
                 1e-10, where)
    oracle.check("network input_jacobian vs FD", Jx, fd_input_jacobian(net, X), 1e-6, where)

    # streaming Gauss-Newton: one chunk, several chunks, per-sample and per-output weights
    R = rng.normal(size=(N, q))
    for w, chunk in [(None, None), (rng.uniform(0.2, 2.0, N), 2),
                     (rng.uniform(0.2, 2.0, (N, q)), 1)]:
        JtJ, Jtr = net.gauss_newton(X, R, weights=w, chunk=chunk)
        assert JtJ.shape == (P, P) and Jtr.shape == (P,)
        assert np.array_equal(JtJ, JtJ.T)
        w_ref = np.ones(N) if w is None else w
        JtJ_ref, Jtr_ref = gauss_newton_reference(ref.J, R, w_ref)
        label = f"{where} chunk={chunk} weights={None if w is None else w.shape}"
        oracle.check("gauss_newton JtWJ vs JAX", JtJ, JtJ_ref, 1e-10, label)
        oracle.check("gauss_newton JtWr vs JAX", Jtr, Jtr_ref, 1e-10, label)
        # the Kronecker form, whichever form the call above took (q = 1 included)
        JtJ_k, Jtr_k = _gn._kronecker_sums(net.layers, X, _gn._Terms(R, w), _gn._Stream(chunk))
        assert np.array_equal(JtJ_k, JtJ_k.T) and JtJ_k.flags.f_contiguous
        oracle.check("gauss_newton (Kronecker form) JtWJ vs JAX", JtJ_k, JtJ_ref, 1e-10, label)
        oracle.check("gauss_newton (Kronecker form) JtWr vs JAX", Jtr_k, Jtr_ref, 1e-10, label)
        if chunk == 2:
            JtJ_fd, Jtr_fd = gauss_newton_reference(J_fd, R, w_ref)  # on the FD columns
            oracle.check("gauss_newton JtWJ vs FD", JtJ[np.ix_(cols, cols)], JtJ_fd, 1e-6, label)
            oracle.check("gauss_newton JtWr vs FD", Jtr[cols], Jtr_fd, 1e-6, label)
            oracle.check("gauss_newton (Kronecker form) JtWJ vs FD",
                         JtJ_k[np.ix_(cols, cols)], JtJ_fd, 1e-6, label)
            oracle.check("gauss_newton (Kronecker form) JtWr vs FD", Jtr_k[cols], Jtr_fd, 1e-6,
                         label)

    # loss gradients by backpropagation (seed L1-L4), with and without sample weights
    output = spec["acts"][-1]
    idx = np.unique(np.concatenate([rng.choice(P, size=min(P, 30), replace=False), [0, P - 1]]))
    for loss in losses_for(output):
        T = targets_for(loss, output, (N, q), rng)
        for w in (None, rng.uniform(0.2, 2.0, N)):
            label = f"{where} {loss}" + (" weighted" if w is not None else "")
            value, grads = net.loss_and_grad(X, T, loss, sample_weight=w)
            flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
            ref_value, ref_grad = ref.loss(loss, T, w)
            oracle.check("network loss value vs JAX", value, ref_value, 1e-12, label)
            oracle.check("network loss_and_grad vs JAX", flat, ref_grad, 1e-10, label)
            oracle.check("network loss_and_grad vs FD", flat[idx],
                         fd_loss_grad(net, X, T, loss, w, idx), 1e-6, label)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_matmul_in_every_memory_layout(dtype):
    """layers.blas_matmul (scipy's gemm with trans flags, no copies) equals A @ B for
    C-, F- and non-contiguous operands, outer products and empty inner dimensions, and
    returns a C-contiguous array of the operands' dtype; mixed dtypes fall back to numpy."""
    from jacnet.layers import blas_matmul as matmul

    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for n, k, m in [(50, 1, 7), (7, 4, 6), (1, 3, 1), (4, 0, 2), (33, 17, 9)]:
        A = rng.normal(size=(n, 2 * k)).astype(dtype)
        B = rng.normal(size=(k, m)).astype(dtype)
        for a in (A[:, :k].copy(), np.asfortranarray(A[:, :k]), A[:, ::2]):
            for b in (B, np.asfortranarray(B), np.ascontiguousarray(B.T).T):
                out = matmul(a, b)
                assert out.dtype == dtype and out.shape == (n, m) and out.flags.c_contiguous
                np.testing.assert_allclose(out, a @ b, rtol=tol, atol=tol)
                bias = rng.normal(size=m).astype(dtype)  # added by gemm itself (beta = 1)
                out = matmul(a, b, bias)
                assert out.dtype == dtype and out.shape == (n, m) and out.flags.c_contiguous
                np.testing.assert_allclose(out, a @ b + bias, rtol=tol, atol=tol)
    mixed = matmul(np.ones((3, 2), np.float32), np.ones((2, 4)))
    assert mixed.dtype == np.float64 and np.all(mixed == 2.0)
    mixed = matmul(np.ones((3, 2), np.float32), np.ones((2, 4)), np.ones(4))
    assert mixed.dtype == np.float64 and np.all(mixed == 3.0)


# ------------------------------------------------ (b) the seed, written literally
def _offsets(widths: list[int]) -> list[tuple[int, int, int]]:
    """(start of W_k, start of b_k, end) in theta = [W_1.ravel(), b_1, W_2.ravel(), ...]."""
    out, pos = [], 0
    for r, m in zip(widths[:-1], widths[1:], strict=True):
        out.append((pos, pos + r * m, pos + r * m + m))
        pos += r * m + m
    return out


def _three_layer_network():
    """tanh -> softmax (hidden, non-elementwise) -> l2_normalize (output, non-elementwise)."""
    widths = [4, 5, 6, 3]
    net = jn.Network(
        [jn.Dense(4, 5, "tanh"), jn.Dense(5, 6, "softmax"), jn.Dense(6, 3, "l2_normalize")],
        seed=3,
    )
    rng = np.random.default_rng(4)
    for layer in net.layers:
        layer.W = rng.normal(0, 1.0, size=layer.W.shape)
        layer.b = rng.normal(0, 0.5, size=layer.b.shape)
    return net, widths, rng


def _literal_forward(net, x):
    """y_k = f_k(y_{k-1} w_k + b_k) for one sample (row vectors), and the full f'_k."""
    (W1, b1), (W2, b2), (W3, b3) = [(la.W, la.b) for la in net.layers]
    y0 = x
    t1 = y0 @ W1 + b1
    y1 = np.tanh(t1)
    t2 = y1 @ W2 + b2
    y2 = np.exp(t2) / np.exp(t2).sum()
    t3 = y2 @ W3 + b3
    y3 = t3 / np.linalg.norm(t3)
    fprime_1 = np.diag(1 - y1**2)  # elementwise: diagonal
    fprime_2 = np.diag(y2) - np.outer(y2, y2)  # softmax: full
    fprime_3 = (np.eye(3) - np.outer(y3, y3)) / np.linalg.norm(t3)  # l2 normalize: full
    return (y0, y1, y2, y3), (fprime_1, fprime_2, fprime_3), (W1, W2, W3)


def test_network_seed_formulas_1_to_6_written_literally(oracle):
    net, widths, rng = _three_layer_network()
    x = rng.normal(size=4)
    (y0, y1, y2, y3), (fprime_1, fprime_2, fprime_3), (W1, W2, W3) = _literal_forward(net, x)
    np.testing.assert_allclose(net.forward(x[None])[0], y3, rtol=1e-14)
    J = net.jacobian(x[None])[0]  # (n_out, P)
    (oW1, ob1, e1), (oW2, ob2, e2), (oW3, ob3, e3) = _offsets(widths)
    for i in range(3):
        f_n_i = fprime_3[i]  # the row f'_{n,i}
        d_b3 = f_n_i  # seed 1
        d_W3 = np.outer(y2, f_n_i)  # seed 2: y_{n-1}^T f'_{n,i}
        d_b2 = f_n_i @ W3.T @ fprime_2  # seed 3
        d_W2 = np.outer(y1, f_n_i @ W3.T @ fprime_2)  # seed 4
        d_b1 = f_n_i @ W3.T @ fprime_2 @ W2.T @ fprime_1  # seed 5
        d_W1 = np.outer(y0, f_n_i @ W3.T @ fprime_2 @ W2.T @ fprime_1)  # seed 6
        where = f"output {i}"
        oracle.check("seed 1 (db_n)", J[i, ob3:e3], d_b3, 1e-13, where)
        oracle.check("seed 2 (dW_n)", J[i, oW3:ob3], d_W3.ravel(), 1e-13, where)
        oracle.check("seed 3 (db_n-1)", J[i, ob2:e2], d_b2, 1e-13, where)
        oracle.check("seed 4 (dW_n-1)", J[i, oW2:ob2], d_W2.ravel(), 1e-13, where)
        oracle.check("seed 5 (db_n-2)", J[i, ob1:e1], d_b1, 1e-13, where)
        oracle.check("seed 6 (dW_n-2)", J[i, oW1:ob1], d_W1.ravel(), 1e-13, where)


def test_network_seed_loss_formulas_L1_to_L4_written_literally(oracle):
    net, widths, rng = _three_layer_network()
    x, y = rng.normal(size=4), rng.normal(size=3)
    (y0, y1, y2, y3), (fprime_1, fprime_2, fprime_3), (W1, W2, W3) = _literal_forward(net, x)
    J_value = np.sum((y3 - y) ** 2)  # the seed's J
    L1 = 2 * (y3 - y) @ fprime_3  # dJ/db_n
    L2 = np.outer(y2, 2 * (y3 - y) @ fprime_3)  # dJ/dW_n
    L3 = 2 * (y3 - y) @ fprime_3 @ W3.T @ fprime_2  # dJ/db_n-1
    L4 = np.outer(y1, 2 * (y3 - y) @ fprime_3 @ W3.T @ fprime_2)  # dJ/dW_n-1
    Rb = L3 @ W2.T @ fprime_1  # R-b one step further: dJ/db_n-2
    Rw = np.outer(y0, Rb)  # R-w: dJ/dW_n-2
    value, grads = net.loss_and_grad(x[None], y[None], loss="sse")
    assert value == pytest.approx(J_value, rel=1e-14)
    (dW1, db1), (dW2, db2), (dW3, db3) = grads
    oracle.check("seed L1 (dJ/db_n)", db3, L1, 1e-13, "sse")
    oracle.check("seed L2 (dJ/dW_n)", dW3, L2, 1e-13, "sse")
    oracle.check("seed L3 (dJ/db_n-1)", db2, L3, 1e-13, "sse")
    oracle.check("seed L4 (dJ/dW_n-1)", dW2, L4, 1e-13, "sse")
    oracle.check("seed R-b (dJ/db_n-2)", db1, Rb, 1e-13, "sse")
    oracle.check("seed R-w (dJ/dW_n-2)", dW1, Rw, 1e-13, "sse")
    # the same numbers through the flat layout
    _, flat = net.loss_and_flat_grad(x[None], y[None], "sse")
    (oW1, ob1, e1), (oW2, ob2, e2), (oW3, ob3, e3) = _offsets(widths)
    np.testing.assert_array_equal(flat[oW2:ob2], dW2.ravel())
    np.testing.assert_array_equal(flat[ob3:e3], db3)


def test_network_batched_gradient_is_y_transpose_delta(oracle):
    """Over a batch, dJ/dW_k = Y_{k-1}^T Delta_k: the per-sample outer products summed."""
    net, widths, rng = _three_layer_network()
    X, T = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    deltas = {k: [] for k in range(3)}
    inputs = {k: [] for k in range(3)}
    for x, y in zip(X, T, strict=True):
        (y0, y1, y2, y3), (f1, f2, f3), (W1, W2, W3) = _literal_forward(net, x)
        d3 = 2 * (y3 - y) @ f3
        d2 = d3 @ W3.T @ f2
        d1 = d2 @ W2.T @ f1
        for k, (d, yin) in enumerate([(d1, y0), (d2, y1), (d3, y2)]):
            deltas[k].append(d)
            inputs[k].append(yin)
    _, grads = net.loss_and_grad(X, T, "sse")
    for k, (dW, db) in enumerate(grads):
        Yk, Dk = np.array(inputs[k]), np.array(deltas[k])
        oracle.check("seed batched dJ/dW_k = Y^T Delta", dW, Yk.T @ Dk, 1e-13, f"layer {k}")
        oracle.check("seed batched dJ/dW_k = Y^T Delta", db, Dk.sum(axis=0), 1e-13,
                     f"layer {k}")
        per_sample = sum(np.outer(yk, dk) for yk, dk in zip(Yk, Dk, strict=True))
        np.testing.assert_allclose(dW, per_sample, rtol=1e-12, atol=1e-14)


def test_network_recursion_rb_rw_literal_for_five_layers(oracle):
    """R-b and R-w carried through five layers with full f' matrices from ``jacobian()``."""
    acts = ["layer_norm", "sparsemax", "gelu", oracle.Cube(), "softmax"]
    widths = [3, 6, 5, 4, 5, 4]
    net = jn.Network([jn.Dense(widths[k], widths[k + 1], a) for k, a in enumerate(acts)], seed=8)
    rng = np.random.default_rng(8)
    for layer in net.layers:
        layer.b = rng.normal(0, 0.3, size=layer.n_out)
    X = rng.normal(size=(3, 3))
    J = net.jacobian(X)
    offsets = _offsets(widths)
    for s in range(X.shape[0]):
        ys, fprimes = [X[s]], []
        for layer in net.layers:
            t = ys[-1] @ layer.W + layer.b
            y = layer.activation.forward(t[None])[0]
            fprimes.append(layer.activation.jacobian(t[None], y[None])[0])
            ys.append(y)
        for i in range(net.n_out):
            D = fprimes[-1][i]  # seed 1: dy_{n,i}/db_n = f'_{n,i}
            for k in range(len(net.layers) - 1, -1, -1):
                w0, b0, end = offsets[k]
                where = f"sample {s} output {i} layer {k}"
                oracle.check("seed R-b (5 layers)", J[s, i, b0:end], D, 1e-12, where)
                oracle.check("seed R-w (5 layers)", J[s, i, w0:b0], np.outer(ys[k], D).ravel(),
                             1e-12, where)
                if k:
                    D = D @ net.layers[k].W.T @ fprimes[k - 1]  # seed R-b


# ------------------------------------------------ (c) fused paths == general path
@pytest.mark.parametrize(
    "output, loss",
    [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("exp", "poisson")],
)
def test_network_fused_loss_equals_general_path(output, loss, oracle):
    act = jn.get_activation(output)
    loss_fn = jn.get_loss(loss)
    rng = np.random.default_rng(11)
    T = targets_for(loss, output, (6, 4), rng)
    X = rng.normal(size=(6, 3))
    assert loss_fn.fused(act, X[:, :1], X[:, :1], X[:, :1]) is not None  # it is a fast path
    assert loss_fn.fused(oracle.Unfused(act), X[:, :1], X[:, :1], X[:, :1]) is None
    fused = jn.Network([jn.Dense(3, 5, "tanh"), jn.Dense(5, 4, act)], seed=1)
    general = jn.Network([jn.Dense(3, 5, "tanh"), jn.Dense(5, 4, oracle.Unfused(act))], seed=1)
    np.testing.assert_array_equal(fused.get_flat(), general.get_flat())
    for w in (None, rng.uniform(0.1, 3.0, 6)):
        for targets in (T, np.eye(4)[rng.integers(0, 4, 6)]):
            v_f, g_f = fused.loss_and_flat_grad(X, targets, loss, w)
            v_g, g_g = general.loss_and_flat_grad(X, targets, loss, w)
            assert v_f == pytest.approx(v_g, rel=1e-12)
            assert fused.loss(X, targets, loss, w) == pytest.approx(v_g, rel=1e-12)
            oracle.check("fused vs general path", g_f, g_g, 1e-12, f"{output}+{loss}")


# -------------------------------------------------------- (d) API contract
def _small_net(dtype=np.float64, seed=0):
    return jn.Network([jn.Dense(4, 16, "tanh"), jn.Dense(16, 3, "softmax")], seed=seed,
                      dtype=dtype)


def test_network_shapes_follow_the_api_contract():
    net = _small_net()
    X = np.random.default_rng(0).normal(size=(5, 4))
    T = np.eye(3)[[0, 1, 2, 0, 1]]
    P = 4 * 16 + 16 + 16 * 3 + 3
    assert net.n_params == P == net.get_flat().shape[0]
    assert (net.n_in, net.n_out) == (4, 3)
    assert net.forward(X).shape == (5, 3)
    np.testing.assert_array_equal(net(X), net.forward(X))
    loss, grads = net.loss_and_grad(X, T, loss="sse")
    assert isinstance(loss, float)
    assert [(dW.shape, db.shape) for dW, db in grads] == [((4, 16), (16,)), ((16, 3), (3,))]
    assert net.jacobian(X).shape == (5, 3, P)
    assert net.input_jacobian(X).shape == (5, 3, 4)
    JtJ, Jtr = net.gauss_newton(X, T)
    assert JtJ.shape == (P, P) and Jtr.shape == (P,)
    assert [(la.W.shape, la.b.shape) for la in net.layers] == [((4, 16), (16,)), ((16, 3), (3,))]


def test_network_single_output_accepts_vector_targets():
    net = jn.Network([jn.Dense(2, 1)], seed=0)
    X = np.random.default_rng(0).normal(size=(4, 2))
    t = np.arange(4.0)
    assert net.loss_and_grad(X, t)[0] == net.loss_and_grad(X, t[:, None])[0]


def test_network_layer_weights_are_views_into_theta():
    net = _small_net()
    rng = np.random.default_rng(1)
    W = rng.normal(size=(16, 3))
    net.layers[1].W = W
    theta = net.get_flat()
    np.testing.assert_array_equal(theta[4 * 16 + 16 : 4 * 16 + 16 + 48], W.ravel())
    net.layers[0].b = np.arange(16.0)
    np.testing.assert_array_equal(net.get_flat()[64:80], np.arange(16.0))
    net.layers[0].W[2, 5] = 7.5  # in-place writes reach theta too
    assert net.get_flat()[2 * 16 + 5] == 7.5
    assert net.layers[1].W is not W  # assignment copies in
    with pytest.raises(ValueError, match=r"W must have shape \(16, 3\)"):
        net.layers[1].W = np.zeros((3, 16))
    with pytest.raises(ValueError, match="b must be finite, got 1 NaN"):
        net.layers[1].b = np.array([0.0, np.nan, 1.0])


def test_network_get_flat_set_flat_round_trip():
    net = _small_net()
    theta = net.get_flat()
    theta[0] += 1.0  # get_flat is a copy
    assert net.get_flat()[0] == theta[0] - 1.0
    new = np.random.default_rng(2).normal(size=net.n_params)
    net.set_flat(new)
    np.testing.assert_array_equal(net.get_flat(), new)
    np.testing.assert_array_equal(net.layers[0].W.ravel(), new[:64])
    np.testing.assert_array_equal(net.layers[1].b, new[-3:])
    net.set_flat(net.get_flat())
    np.testing.assert_array_equal(net.get_flat(), new)
    split = net.split_flat(new)
    np.testing.assert_array_equal(split[1][0], net.layers[1].W)


@pytest.mark.usefixtures("gn_form")
def test_network_float32_end_to_end():
    net32 = _small_net(np.float32)
    net64 = _small_net(np.float64)
    net32.set_flat(net64.get_flat())
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    w = rng.uniform(0.5, 2, 6)
    assert net32.get_flat().dtype == np.float32
    assert all(la.W.dtype == np.float32 and la.b.dtype == np.float32 for la in net32.layers)
    assert net32.forward(X).dtype == np.float32  # float64 input, float32 network
    for loss in ("sse", "cross_entropy"):
        v32, g32 = net32.loss_and_grad(X, T, loss, w)
        v64, g64 = net64.loss_and_grad(X, T, loss, w)
        assert v32 == pytest.approx(v64, rel=1e-5)
        for (dW32, db32), (dW64, _) in zip(g32, g64, strict=True):
            assert dW32.dtype == np.float32 and db32.dtype == np.float32
            np.testing.assert_allclose(dW32, dW64, rtol=1e-4, atol=1e-5)
    J32 = net32.jacobian(X)
    assert J32.dtype == np.float32
    np.testing.assert_allclose(J32, net64.jacobian(X), rtol=1e-4, atol=1e-5)
    assert net32.input_jacobian(X).dtype == np.float32
    JtJ, Jtr = net32.gauss_newton(X, T, weights=w, chunk=2)
    assert JtJ.dtype == np.float32 and Jtr.dtype == np.float32


def test_network_float32_with_the_design_user_activation(oracle):
    """The DESIGN.md Cube builds a float64 Jacobian; a float32 network stays float32."""
    net = jn.Network([jn.Dense(3, 4, oracle.Cube()), jn.Dense(4, 2, "tanh")], seed=0,
                     dtype=np.float32)
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    _, grads = net.loss_and_grad(X, np.zeros((5, 2), np.float32))
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in grads)
    assert net.jacobian(X).dtype == np.float32


def test_network_seed_reproducibility_and_global_state():
    state = np.random.get_state()  # noqa: NPY002 (the legacy global state is the subject)
    a, b, c = _small_net(seed=0), _small_net(seed=0), _small_net(seed=1)
    np.testing.assert_array_equal(a.get_flat(), b.get_flat())
    assert not np.array_equal(a.get_flat(), c.get_flat())
    d = _small_net(seed=np.random.default_rng(0))
    np.testing.assert_array_equal(a.get_flat(), d.get_flat())
    _small_net(seed=None)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and state[2:] == after[2:]
    np.testing.assert_array_equal(state[1], after[1])  # global np.random untouched


@pytest.mark.parametrize("activation, he", [("relu", True), ("leaky_relu", True),
                                            ("elu", True), ("tanh", False),
                                            ("sigmoid", False), ("softmax", False)])
def test_network_init_scale_is_he_for_rectifiers_glorot_otherwise(activation, he):
    n_in, n_out = 400, 300
    net = jn.Network([jn.Dense(n_in, n_out, activation)], seed=5)
    W = net.layers[0].W
    if he:
        expected_std = np.sqrt(2.0 / n_in)  # He normal
    else:
        limit = np.sqrt(6.0 / (n_in + n_out))  # Glorot uniform
        expected_std = limit / np.sqrt(3.0)
        assert np.abs(W).max() <= limit
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(W.mean()) < 0.05 * expected_std
    np.testing.assert_array_equal(net.layers[0].b, 0.0)


# ---------------------------------------------------------- (e) bad input
def _bad_input_cases(net: jn.Network):
    X = np.random.default_rng(0).normal(size=(3, 4))
    T = np.eye(3)
    nan_X = X.copy()
    nan_X[1, 2] = np.nan
    inf_T = T.copy()
    inf_T[0, 0] = np.inf
    return [
        ("X wrong width", lambda: net.forward(np.ones((3, 5))), ValueError,
         r"X must have 4 columns, got shape \(3, 5\)"),
        ("X NaN", lambda: net.loss_and_grad(nan_X, T), ValueError,
         r"X must be finite, got 1 NaN or inf"),
        ("X inf", lambda: net.jacobian(np.full((2, 4), np.inf)), ValueError, "X must be finite"),
        ("T NaN", lambda: net.loss_and_grad(X, T * np.nan), ValueError, "T must be finite"),
        ("T inf", lambda: net.loss_and_grad(X, inf_T), ValueError, "T must be finite"),
        ("T columns", lambda: net.loss_and_grad(X, np.ones((3, 2))), ValueError,
         "T must have 3 columns"),
        ("T rows", lambda: net.loss_and_grad(X, np.ones((4, 3))), ValueError,
         r"T must have 3 rows \(one per sample\)"),
        ("T 1-D for several outputs", lambda: net.loss_and_grad(X, np.ones(3)), ValueError,
         "T must be 2-D"),
        ("X object", lambda: net.forward(np.array([[1, 2, 3, 4]], dtype=object)), TypeError,
         "X must hold real numbers"),
        ("X strings", lambda: net.forward(np.array([["a", "b", "c", "d"]])), TypeError,
         "X must hold real numbers"),
        ("X ragged", lambda: net.forward([[1.0, 2.0], [3.0]]), TypeError,
         "X must be a numeric array"),
        ("X complex", lambda: net.forward(np.ones((2, 4), dtype=complex)), TypeError,
         "X must hold real numbers"),
        ("T strings", lambda: net.loss_and_grad(X, np.array([["a"] * 3] * 3)), TypeError,
         "T must hold real numbers"),
        ("X empty", lambda: net.forward(np.zeros((0, 4))), ValueError, "X must be non-empty"),
        ("T empty", lambda: net.loss_and_grad(X, np.zeros((3, 0))), ValueError,
         "T must be non-empty"),
        ("X 1-D", lambda: net.forward(np.ones(4)), ValueError,
         r"X must be 2-D \(n_samples, n_features\)"),
        ("X 3-D", lambda: net.jacobian(np.ones((2, 4, 1))), ValueError, "X must be 2-D"),
        ("unknown activation", lambda: jn.Dense(2, 3, "tanhh"), ValueError,
         "unknown activation 'tanhh'; valid names: .*tanh"),
        ("activation type", lambda: jn.Dense(2, 3, 5), TypeError, "activation must be"),
        ("unknown loss", lambda: net.loss_and_grad(X, T, loss="l2"), ValueError,
         "unknown loss 'l2'; valid names: .*sse"),
        ("loss type", lambda: net.loss_and_grad(X, T, loss=2), TypeError, "loss must be"),
        ("width mismatch", lambda: jn.Network([jn.Dense(2, 3), jn.Dense(4, 1)]), ValueError,
         r"layers\[1\]\.n_in must equal layers\[0\]\.n_out = 3, got 4"),
        ("non-Dense layer", lambda: jn.Network([jn.Dense(2, 3), "tanh"]), TypeError,
         r"layers\[1\] must be a jacnet.Dense, got str"),
        ("no layers", lambda: jn.Network([]), ValueError, "layers must hold at least one"),
        ("layer twice", lambda: jn.Network([jn.Dense(3, 3)] * 2), ValueError,
         "layers must be distinct"),
        ("n_in zero", lambda: jn.Dense(0, 3), ValueError, "n_in must be an int >= 1"),
        ("n_out float", lambda: jn.Dense(2, 3.5), TypeError, "n_out must be an int"),
        ("dtype int", lambda: jn.Network([jn.Dense(2, 3)], dtype=np.int32), ValueError,
         "dtype must be float32 or float64, got int32"),
        ("dtype half", lambda: jn.Network([jn.Dense(2, 3)], dtype=np.float16), ValueError,
         "dtype must be float32 or float64"),
        ("chunk zero", lambda: net.jacobian(X, chunk=0), ValueError,
         "chunk must be a positive int or None, got 0"),
        ("chunk float", lambda: net.input_jacobian(X, chunk=1.5), ValueError, "chunk must be"),
        ("chunk bool", lambda: net.jacobian(X, chunk=True), ValueError, "chunk must be"),
        ("chunk negative", lambda: net.gauss_newton(X, T, chunk=-2), ValueError,
         "chunk must be"),
        ("weights shape", lambda: net.loss_and_grad(X, T, sample_weight=np.ones(4)),
         ValueError, r"sample_weight must have shape \(3,\), got \(4,\)"),
        ("weights negative", lambda: net.loss_and_grad(X, T, sample_weight=[1, -1, 1]),
         ValueError, "sample_weight must be finite and non-negative"),
        ("weights NaN", lambda: net.loss_and_grad(X, T, sample_weight=[1, np.nan, 1]),
         ValueError, "sample_weight must be finite"),
        ("weights zero", lambda: net.loss_and_grad(X, T, sample_weight=np.zeros(3)),
         ValueError, "sample_weight must not be all zero"),
        ("weights strings", lambda: net.loss_and_grad(X, T, sample_weight=["a", "b", "c"]),
         TypeError, "sample_weight must hold real numbers"),
        ("GN weights negative", lambda: net.gauss_newton(X, T, weights=[1.0, -2.0, 1.0]),
         ValueError, "weights must be finite and non-negative"),
        ("GN residual shape", lambda: net.gauss_newton(X, np.ones((3, 2))), ValueError,
         "R must have 3 columns"),
        ("set_flat length", lambda: net.set_flat(np.zeros(5)), ValueError,
         rf"theta must have shape \({net.n_params},\)"),
        ("set_flat NaN", lambda: net.set_flat(np.full(net.n_params, np.nan)), ValueError,
         "theta must be finite, got"),
    ]


BAD_INPUT = _bad_input_cases(_small_net())


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_network_bad_input_raises_naming_the_argument(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


def test_network_bad_input_leaves_the_network_unchanged():
    net = _small_net()
    theta = net.get_flat()
    for _, call, exc, _ in _bad_input_cases(net):
        with pytest.raises(exc):
            call()
    np.testing.assert_array_equal(net.get_flat(), theta)


# ------------------------------------------------------- (f) no hidden state
def _state(net: jn.Network) -> list:
    """Every attribute of the network, its layers and activations: names, ids, sizes."""
    out = []
    for obj in [net] + net.layers + [la.activation for la in net.layers]:
        for name, value in sorted(vars(obj).items()):
            out.append((type(obj).__name__, name, id(value), np.size(value)
                        if isinstance(value, np.ndarray) else len(value)
                        if isinstance(value, (list, tuple, dict)) else None))
    return out


def test_network_loss_and_grad_is_repeatable_and_keeps_no_state():
    net = jn.Network([jn.Dense(4, 8, "layer_norm"), jn.Dense(8, 6, "relu"),
                      jn.Dense(6, 3, "softmax")], seed=2)
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(10, 4)), np.eye(3)[rng.integers(0, 3, 10)]
    before = _state(net)
    theta = net.get_flat()
    v1, g1 = net.loss_and_grad(X, T, "cross_entropy")
    kept = [(dW.copy(), db.copy()) for dW, db in g1]
    for _ in range(3):
        v2, g2 = net.loss_and_grad(X, T, "cross_entropy")
        net.jacobian(X, chunk=3)
        net.gauss_newton(X, T)
        assert v2 == v1
        for (dW1, db1), (dW2, db2) in zip(kept, g2, strict=True):
            np.testing.assert_array_equal(dW1, dW2)
            np.testing.assert_array_equal(db1, db2)
    for (dW1, db1), (dWk, dbk) in zip(g1, kept, strict=True):  # g1 was not overwritten
        np.testing.assert_array_equal(dW1, dWk)
        np.testing.assert_array_equal(db1, dbk)
    assert _state(net) == before
    np.testing.assert_array_equal(net.get_flat(), theta)


def test_network_copy_is_independent():
    net = _small_net()
    twin = net.copy()
    np.testing.assert_array_equal(twin.get_flat(), net.get_flat())
    twin.layers[0].W = np.zeros((4, 16))
    assert np.abs(net.layers[0].W).sum() > 0


def test_deepcopy_and_pickle_keep_layers_bound_to_theta():
    import copy
    import pickle

    net = jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 2)], seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(other.forward(X), net.forward(X))
        other.theta[:] = 0
        assert not other.layers[0].W.any() and not other.layers[1].b.any()
        assert not other.forward(X).any()
    assert net.layers[0].W.any()  # the original is untouched


def test_each_training_path_keeps_to_one_blas_library(monkeypatch):
    """Mini-batch training (backprop in numpy's BLAS) never calls scipy's gemm: its
    per-epoch evaluations mixed in scipy's doubled the time of `make run` on two threads.
    Levenberg-Marquardt's forward passes do use it, like its syrk."""
    import jacnet.layers as layers

    calls = {"n": 0}

    def counted(gemm):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            return gemm(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(layers, "_GEMM", {k: counted(f) for k, f in layers._GEMM.items()})
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(60, 3)), rng.normal(size=(60, 1))
    Xv, Tv = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))

    def net():
        return jn.Network([jn.Dense(3, 8, "tanh"), jn.Dense(8, 1, "identity")], seed=0)

    jn.train(net(), X, T, solver="adam", batch_size=16, max_epochs=3, seed=0,
             validation_data=(Xv, Tv))
    assert calls["n"] == 0
    jn.train(net(), X, T, solver="lm", max_epochs=3, seed=0)
    assert calls["n"] > 0


def test_a_layer_of_one_network_cannot_join_another():
    layers = [jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)]
    a = jn.Network(layers, seed=0)
    with pytest.raises(ValueError, match=r"layers\[0\] already belongs to another Network"):
        jn.Network(layers, seed=1)
    b = jn.Network([a.layers[0].__class__(2, 3, "tanh"), jn.Dense(3, 1)], seed=1)
    X = np.ones((1, 2))
    before = a.forward(X)
    b.set_flat(np.zeros(b.n_params))
    np.testing.assert_array_equal(a.forward(X), before)  # a still computes with its own theta
    c = a.copy()  # the documented way to a second network with the same weights
    np.testing.assert_array_equal(c.forward(X), before)


class WideTanh(jn.Elementwise):
    """LeCun's scaled tanh written with float64 constants: it computes in float64."""

    name = "wide_tanh"

    def forward(self, T):
        return np.float64(1.7159) * np.tanh(np.float64(2 / 3) * T)

    def derivative(self, T, Y):
        return np.float64(1.7159 * 2 / 3) * (1 - np.tanh(np.float64(2 / 3) * T) ** 2)


def test_a_user_activation_computing_in_float64_keeps_a_float32_network_float32():
    net = jn.Network([jn.Dense(3, 4, WideTanh()), jn.Dense(4, 2)], seed=0, dtype=np.float32)
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    T = np.zeros((5, 2), np.float32)
    assert net.forward(X).dtype == np.float32
    loss, grads = net.loss_and_grad(X, T)
    assert all(dW.dtype == db.dtype == np.float32 for dW, db in grads)
    assert net.jacobian(X).dtype == np.float32 and net.input_jacobian(X).dtype == np.float32
    ref = jn.Network([jn.Dense(3, 4, WideTanh()), jn.Dense(4, 2)], seed=0)  # float64
    ref.set_flat(net.get_flat())
    np.testing.assert_allclose(net.forward(X), ref.forward(X), rtol=1e-5, atol=1e-6)


def test_float32_parameters_and_inputs_beyond_its_range_are_named():
    net = jn.Network([jn.Dense(2, 1)], seed=0, dtype=np.float32)
    with pytest.raises(ValueError, match="theta must be finite in float32, got 1 value"):
        net.set_flat(np.array([1e300, 0.0, 0.0]))
    with pytest.raises(ValueError, match="W must be finite in float32"):
        net.layers[0].W = np.array([[1e39], [0.0]])
    with pytest.raises(ValueError, match="X must be finite in float32, got 2 value"):
        net.forward(np.full((1, 2), 1e39))
    assert np.isfinite(net.get_flat()).all()


def test_layers_are_free_again_after_a_failed_network_a_copy_or_their_network_s_end():
    import copy
    import gc

    layers = [jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)]
    with pytest.raises(TypeError):
        jn.Network(layers, seed="not a seed")
    a = jn.Network(layers, seed=0)  # the failed network never bound them
    b = jn.Network(copy.deepcopy(a.layers), seed=1)  # deep copies own their arrays
    b.set_flat(np.zeros(b.n_params))
    assert np.abs(a.get_flat()).sum() > 0 and a.layers[0].bound and b.layers[0].bound
    del a
    gc.collect()
    c = jn.Network(layers, seed=2)  # the network that held them is gone
    assert c.layers[0].W.base is not None and np.shares_memory(c.layers[0].W, c.theta)
    d = copy.deepcopy(c)  # a copied network binds its own copies, the original keeps its
    d.set_flat(np.zeros(d.n_params))
    assert np.abs(c.get_flat()).sum() > 0 and np.shares_memory(d.layers[0].W, d.theta)


class Float64Vjp(jn.Activation):
    """tanh with a hand-written vjp that computes in float64."""

    name = "float64_vjp"

    def forward(self, T):
        return np.tanh(T)

    def jacobian(self, T, Y):
        return np.eye(T.shape[1])[None] * (1 - Y * Y)[:, None, :]

    def vjp(self, T, Y, G):
        return G.astype(np.float64) * (1 - Y.astype(np.float64) ** 2)[(slice(None),)
                                                                      + (None,) * (G.ndim - 2)]


def test_a_user_vjp_computing_in_float64_keeps_a_float32_network_float32():
    net = jn.Network([jn.Dense(3, 4, Float64Vjp()), jn.Dense(4, 2, Float64Vjp())], seed=0,
                     dtype=np.float32)
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    _, grads = net.loss_and_grad(X, np.zeros((5, 2), np.float32))
    assert all(dW.dtype == np.float32 for dW, _ in grads)
    assert net.jacobian(X).dtype == np.float32
    rec = jn.train(net, X, np.zeros((5, 2)), solver="adam", batch_size=2, max_epochs=2)
    assert rec.n_epochs == 2 and net.theta.dtype == np.float32


def test_activation_parameters_must_be_finite_reals():
    for name, kw in [("l2_normalize", {"eps": np.inf}), ("l2_normalize", {"eps": 0.0}),
                     ("layer_norm", {"eps": np.nan}), ("leaky_relu", {"negative_slope": np.inf})]:
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be a"):
            jn.get_activation(name, **kw)
    # a value of the wrong kind is a TypeError, as for every other setting in jacnet
    for name, kw in [("l2_normalize", {"eps": True}), ("elu", {"alpha": "1"})]:
        with pytest.raises(TypeError, match=f"{next(iter(kw))} must be a"):
            jn.get_activation(name, **kw)


def test_copy_copy_gives_an_independent_network_and_layer():
    import copy
    import gc

    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    X = np.ones((1, 2))
    before = net.forward(X)
    c = copy.copy(net)
    c.set_flat(np.zeros(c.n_params))
    del c
    gc.collect()
    assert net.layers[0].bound  # still this network's
    with pytest.raises(ValueError, match="already belongs"):
        jn.Network(net.layers, seed=1)
    layer = copy.copy(net.layers[0])
    layer.W = np.full((2, 3), 7.0)
    assert not layer.bound and not np.shares_memory(layer.W, net.theta)
    np.testing.assert_array_equal(net.forward(X), before)


def test_activation_parameter_beyond_float_range_is_a_value_error():
    with pytest.raises(ValueError, match="negative_slope must be a finite float"):
        jn.get_activation("leaky_relu", negative_slope=10**400)


# ----------------------- one backprop: buffers reused from batch to batch (was test_batch)
BUFFERED_HIDDEN = ["relu", "tanh", "sigmoid", "identity", "elu", "softmax"]
BUFFERED_OUTPUTS = [
    ("softmax", "cross_entropy"),
    ("identity", "mse"),
    ("identity", "sse"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "huber"),
    ("tanh", "mse"),
]


def _batch_targets(loss: str, n: int, q: int, dtype, rng) -> np.ndarray:
    if loss == "cross_entropy":
        return np.eye(q, dtype=dtype)[rng.integers(0, q, n)]
    return rng.uniform(0.05, 1.0, (n, q)).astype(dtype)


def _assert_buffered_equals_plain(net: jn.Network, loss: str, dtype, rng) -> None:
    """Full and partial batches, with and without sample weights, plain or Scaled loss:
    the buffered backprop gives the general path's loss and gradient bit for bit."""
    from jacnet.losses import Scaled

    q = net.n_out
    for scaled in (False, True):
        loss_fn = Scaled(jn.get_loss(loss), 0.5) if scaled else jn.get_loss(loss)
        bp = net.backprop(loss_fn, 9)
        for n in (9, 4, 9):
            for w in (None, rng.uniform(0.1, 2.0, n).astype(dtype)):
                X = rng.standard_normal((n, net.n_in)).astype(dtype)
                T = _batch_targets(loss, n, q, dtype, rng)
                value, grad = net.loss_and_flat_grad(X, T, loss_fn, w)
                np.testing.assert_array_equal(bp(X, T, w), value)  # NaN == NaN here
                assert bp.grad.dtype == dtype
                np.testing.assert_array_equal(bp.grad, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output, loss", BUFFERED_OUTPUTS)
@pytest.mark.parametrize("hidden", BUFFERED_HIDDEN)
def test_batch_backprop_equals_the_general_path_bit_for_bit(hidden, output, loss, dtype):
    # The buffers' in-place hooks and fused outputs follow the general path's order of
    # operations, so loss and gradient are identical.
    net = jn.Network(
        [jn.Dense(5, 7, hidden), jn.Dense(7, 6, hidden), jn.Dense(6, 3, output)],
        seed=1, dtype=dtype,
    )
    _assert_buffered_equals_plain(net, loss, dtype, np.random.default_rng(0))


@pytest.mark.parametrize("output", sorted(jn.ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(jn.LOSSES))
def test_backprop_buffered_equals_plain_for_every_loss_and_output(loss, output):
    # Every registered loss with every registered activation at the output (fused pairs,
    # fused_into pairs and the general path), behind hidden layers with in-place hooks.
    for dtype in (np.float32, np.float64):
        net = jn.Network(
            [jn.Dense(4, 6, "relu"), jn.Dense(6, 5, "tanh"), jn.Dense(5, 3, output)],
            seed=2, dtype=dtype,
        )
        _assert_buffered_equals_plain(net, loss, dtype, np.random.default_rng(3))


def test_backprop_is_what_loss_and_grad_runs():
    rng = np.random.default_rng(4)
    net = jn.Network([jn.Dense(3, 4, "relu"), jn.Dense(4, 2, "sigmoid")], seed=0)
    X, T = rng.standard_normal((6, 3)), rng.uniform(0, 1, (6, 2))
    bp = net.backprop("binary_cross_entropy")
    value = bp(X, T)
    v, grads = net.loss_and_grad(X, T, "binary_cross_entropy")
    assert value == v
    for (dW, db), (gW, gb) in zip(net.split_flat(bp.grad), grads, strict=True):
        np.testing.assert_array_equal(dW, gW)
        np.testing.assert_array_equal(db, gb)


def test_backprop_checks_its_settings():
    net = jn.Network([jn.Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match="n_max must be an int >= 1"):
        net.backprop("mse", 0)
    with pytest.raises(TypeError, match="n_max must be an int"):
        net.backprop("mse", 2.5)
    with pytest.raises(ValueError, match=r"grad must be .* shape \(8,\)"):
        net.backprop("mse", grad=np.empty(7))
    with pytest.raises(ValueError, match="grad must be .* dtype float64"):
        net.backprop("mse", grad=np.empty(8, np.float32))
    bp = net.backprop("mse", 4)
    with pytest.raises(ValueError, match="at most n_max = 4 rows, got 5"):
        bp(np.ones((5, 3)), np.ones((5, 2)))


def test_batch_backprop_sees_in_place_parameter_updates():
    rng = np.random.default_rng(1)
    net = jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 2)], seed=0)
    bp = net.backprop("mse", 8)
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
    bp = net.backprop("cross_entropy", 5, grad)
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
    bp = net.backprop("cross_entropy", 6)
    X = rng.standard_normal((6, 4)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    bp(X, T, rng.uniform(0.5, 1.0, 6).astype(np.float32))
    buffers = [*bp._T, *bp._G, *bp._tmp, *bp._out, bp.grad]
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
    opt = jn.get_optimizer("adam", lr=0.01)
    state = opt.init([twin.theta], decay_mask=[twin.weight_mask()])
    for start in range(0, 50, 16):
        _, g = twin.loss_and_flat_grad(X[start:start + 16], T[start:start + 16], "cross_entropy")
        opt.update([twin.theta], [g], state)
    np.testing.assert_array_equal(net.theta, twin.theta)
