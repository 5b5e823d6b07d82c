"""Derivative fitting (``jacnet.sobolev``): the activations' second-order terms, the exact
Jacobian of the derivative residuals and its Gauss-Newton sums, against JAX
(``jax.jacrev`` of ``jax.jacfwd``, float64) and central differences; training with
derivative data; the errors on bad input.

The JAX oracle of the networks embeds each tested network in one universal 3-layer,
6-wide network (as ``tests/conftest.py`` does with a larger one), so that
``jacrev(jacfwd(net))`` compiles once per test process.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import JAX_ACTIVATIONS, activation_kind
from jax import lax

import jacnet as jn
from jacnet import sobolev as sb

ALL = [name for name, _ in jn.ACTIVATIONS.items() if name != "logistic"]  # 15 built-ins
_FNS = [fn for fn, _ in JAX_ACTIVATIONS.values()]
FD_STEP = 1e-6


def _row(t, mask, kind, p):
    return lax.switch(kind, _FNS, t, mask, p)


# ------------------------------------------------ activations: the third-order tensor
_WIDTH_A = 6
# f''[s, i, j, l] = d^2 f_i / dt_j dt_l of every row, by forward over reverse mode
_third = jax.jit(jax.vmap(jax.jacfwd(jax.jacrev(_row)), in_axes=(0, None, None, None)))
_first = jax.jit(jax.vmap(jax.jacrev(_row), in_axes=(0, None, None, None)))

ACTIVATION_CASES = [*ALL, "leaky_relu(0.2)", "elu(0.5)", "layer_norm(eps=0.1)",
                    "l2_normalize(eps=0.5)"]


def make(spec: str) -> jn.Activation:
    if "(" not in spec:
        return jn.get_activation(spec)
    name, arg = spec[:-1].split("(")
    key, _, value = arg.rpartition("=")
    keys = {"leaky_relu": "negative_slope", "elu": "alpha"}
    return jn.get_activation(name, **{key or keys[name]: float(value)})


def jax_tensors(act: jn.Activation, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JAX's f' (N, m, m) and f'' (N, m, m, m) of ``act`` at ``T`` (N, m <= 6)."""
    N, m = T.shape
    kind, p = activation_kind(act)
    mask = np.zeros(_WIDTH_A)
    mask[:m] = 1
    block = np.zeros((N, _WIDTH_A))
    block[:, :m] = T
    J = np.asarray(_first(block, mask, kind, p))[:, :m, :m]
    H = np.asarray(_third(block, mask, kind, p))[:, :m, :m, :m]
    return J, H


def away_from_kinks(act: jn.Activation, T: np.ndarray) -> bool:
    name = act.name
    if name in {"relu", "leaky_relu", "elu"}:
        return float(np.abs(T).min()) > 1e-3
    if name == "sparsemax":
        Y = act.forward(T)
        top = np.argmax(Y, axis=1)
        rows = np.arange(T.shape[0])
        tau = T[rows, top] - Y[rows, top]
        return float(np.abs(T - tau[:, None]).min()) > 1e-3
    return True


@pytest.mark.parametrize("spec", ACTIVATION_CASES)
@pytest.mark.parametrize("m", [1, 2, 5])
def test_activation_hvp_equals_the_third_order_contraction(spec, m, oracle):
    """``hvp(T, Y, V, U)[l] = sum_ij U_i V_j f''[i, j, l]`` with f'' by JAX, for V, U of
    shape (N, m) and (N, R, m); ``jvp(T, Y, V) = V . f'^T``."""
    act = make(spec)
    rng = np.random.default_rng(m * 100 + len(spec))
    while True:
        T = rng.normal(0, 1.5, size=(7, m))
        if spec.startswith("l2_normalize(eps"):
            T[0] *= 0.05  # one row within eps, where f is linear
        if away_from_kinks(act, T):
            break
    Y = act.forward(T)
    J, H = jax_tensors(act, T)
    for shape in [(7, m), (7, 3, m)]:
        V, U = rng.normal(size=shape), rng.normal(size=shape)
        Vr, Ur = (V, U) if V.ndim == 3 else (V[:, None], U[:, None])
        ref = np.einsum("sri,srj,sijl->srl", Ur, Vr, H).reshape(shape)
        oracle.check("activation hvp vs JAX f''", act.hvp(T, Y, V, U), ref, 1e-10,
                     f"{spec} {shape}")
        oracle.check("activation jvp vs JAX f'", act.jvp(T, Y, V),
                     np.einsum("sij,srj->sri", J, Vr).reshape(shape), 1e-10, f"{spec} {shape}")


def test_activation_hvp_default_names_the_class(oracle):
    act = oracle.Cube()
    T = np.ones((2, 3))
    with pytest.raises(NotImplementedError, match="Cube.*hvp"):
        act.hvp(T, act.forward(T), T, T)


def test_activation_subclass_with_a_new_formula_loses_its_parents_hvp():
    class SteepTanh(jn.activations.Tanh):
        def derivative(self, T, Y):
            return 2 * (1 - Y * Y)

    class Square(jn.Elementwise):  # a user activation with its second derivative
        name = "square_test"

        def forward(self, T):
            return T * T

        def derivative(self, T, Y):
            return 2 * T

        def second_derivative(self, T, Y):
            return np.full_like(T, 2.0)

    T = np.linspace(-1, 1, 6).reshape(2, 3)
    with pytest.raises(NotImplementedError, match="SteepTanh"):
        SteepTanh().hvp(T, np.tanh(T), T, T)
    np.testing.assert_array_equal(SteepTanh().jvp(T, np.tanh(T), T), T * 2 * (1 - np.tanh(T) ** 2))
    np.testing.assert_array_equal(Square().hvp(T, T * T, T, 2 * T), 2 * T * T * 2)


# ----------------------------------------------------------- networks: the oracle
DEPTH, WIDTH, ROWS = 3, 6, 4  # the universal network of the oracle


def _net(Ws, bs, x, kinds, masks, params):
    def layer(y, args):
        W, b, kind, mask, p = args
        return _row(y @ W + b, mask, kind, p), None

    return lax.scan(layer, x, (Ws, bs, kinds, masks, params))[0]


def _residuals(Ws, bs, x, kinds, masks, params):
    """``[y ; dy/dx]`` of one sample, (WIDTH + WIDTH * WIDTH,): dy/dx by forward mode."""
    y = _net(Ws, bs, x, kinds, masks, params)
    dydx = jax.jacfwd(_net, argnums=2)(Ws, bs, x, kinds, masks, params)  # [i, d]
    return jnp.concatenate([y, dydx.ravel()])


@jax.jit
def _network_oracle(Ws, bs, X, kinds, masks, params):
    one = lambda x: (_residuals(Ws, bs, x, kinds, masks, params),  # noqa: E731
                     jax.jacrev(_residuals, argnums=(0, 1))(Ws, bs, x, kinds, masks, params))
    return jax.vmap(one)(X)


def jax_sobolev(net: jn.Network, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JAX's residuals ``[y ; dy/dx]`` (N, q (1 + n_in)) and their Jacobian (N, q (1 + n_in),
    P), rows in ``sobolev_jacobian``'s order."""
    Ws = np.zeros((DEPTH, WIDTH, WIDTH))
    bs = np.zeros((DEPTH, WIDTH))
    kinds = np.full(DEPTH, activation_kind(jn.get_activation("identity"))[0])
    params, masks = np.zeros(DEPTH), np.ones((DEPTH, WIDTH))
    for k, layer in enumerate(net.layers):
        Ws[k, : layer.n_in, : layer.n_out] = layer.W
        bs[k, : layer.n_out] = layer.b
        kinds[k], params[k] = activation_kind(layer.activation)
        masks[k] = 0
        masks[k, : layer.n_out] = 1
    for k in range(len(net.layers), DEPTH):
        Ws[k] = np.eye(WIDTH)
    q, n_in = net.n_out, net.n_in
    idx = np.concatenate([np.arange(q), WIDTH + (np.arange(q)[:, None] * WIDTH
                                                 + np.arange(n_in)).ravel()])
    rs, Js = [], []
    for start in range(0, X.shape[0], ROWS):
        Xb = X[start : start + ROWS]
        n = Xb.shape[0]
        Xp = np.zeros((ROWS, WIDTH))
        Xp[:, :n_in] = Xb[np.arange(ROWS) % n]
        r, (JW, Jb) = _network_oracle(Ws, bs, Xp, kinds, masks, params)
        JW, Jb = np.asarray(JW)[:n][:, idx], np.asarray(Jb)[:n][:, idx]
        blocks = []
        for k, layer in enumerate(net.layers):
            blocks.append(JW[:, :, k, : layer.n_in, : layer.n_out].reshape(n, len(idx), -1))
            blocks.append(Jb[:, :, k, : layer.n_out])
        rs.append(np.asarray(r)[:n][:, idx])
        Js.append(np.concatenate(blocks, axis=-1))
    return np.concatenate(rs), np.concatenate(Js)


def network_specs(n: int = 42) -> list[dict]:
    """``n`` networks of 1 to 3 layers, widths <= 6, 1 to 3 inputs and outputs, every
    built-in activation in hidden and output positions."""
    specs = []
    for i in range(n):
        depth = 1 + i % 3
        c = i - i // 3 - 1  # counts the networks with hidden layers (depth 2 and 3)
        acts = [ALL[(c + 7 * k) % len(ALL)] for k in range(depth - 1)]
        acts.append(ALL[(7 * i + 3) % len(ALL)])
        widths = [1 + i % 3] + [2 + (i + k) % 5 for k in range(depth - 1)] + [1 + (i // 3) % 3]
        specs.append({"index": i, "acts": acts, "widths": widths})
    return specs


SPECS = network_specs()


def spec_id(spec: dict) -> str:
    return f"net{spec['index']:02d}-" + "-".join(spec["acts"]) + "-w" + ".".join(
        map(str, spec["widths"]))


def kink_distance(net: jn.Network, X: np.ndarray) -> float:
    dist, Y = np.inf, X
    for layer in net.layers:
        T, Y = layer.forward(Y)
        if not away_from_kinks(layer.activation, T):
            dist = 0.0
    return dist


def build(spec: dict) -> tuple[jn.Network, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(7000 + spec["index"])
    w = spec["widths"]
    net = jn.Network([jn.Dense(w[k], w[k + 1], a) for k, a in enumerate(spec["acts"])],
                     seed=spec["index"])
    for layer in net.layers:
        layer.b = rng.normal(0.0, 0.3, size=layer.n_out)
    while True:
        X = rng.normal(size=(7, w[0]))
        if kink_distance(net, X) > 0:
            return net, X, rng


def test_network_specs_cover_every_activation_in_hidden_and_output_positions():
    assert len(SPECS) >= 40
    assert {a for s in SPECS for a in s["acts"][:-1]} == set(ALL)
    assert {s["acts"][-1] for s in SPECS} == set(ALL)


def fd_jacobian(net: jn.Network, X: np.ndarray) -> np.ndarray:
    """Central differences of ``[y ; dy/dx]`` in every parameter (dy/dx by the network's
    own ``input_jacobian``), (N, q (1 + n_in), P)."""
    theta = net.get_flat()

    def residuals() -> np.ndarray:
        return np.concatenate([net.forward(X), net.input_jacobian(X).reshape(len(X), -1)], 1)

    cols = []
    for p in range(theta.size):
        net.theta[p] = theta[p] + FD_STEP
        up = residuals()
        net.theta[p] = theta[p] - FD_STEP
        down = residuals()
        net.theta[p] = theta[p]
        cols.append((up - down) / (2 * FD_STEP))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_sobolev_jacobian_and_sums_match_jax_and_finite_differences(spec, oracle):
    net, X, rng = build(spec)
    where = spec_id(spec)
    r_ref, J_ref = jax_sobolev(net, X)
    N, q, n_in = X.shape[0], net.n_out, net.n_in
    tangents = sb.tangent_forward(net.layers, jn.layers.forward_cache(net.layers, X))
    oracle.check("sobolev dy/dx (tangents) vs JAX", tangents.dydx.reshape(N, -1), r_ref[:, q:],
                 1e-10, where)
    for chunk in (None, 2):
        J = jn.sobolev_jacobian(net, X, chunk=chunk)
        oracle.check("sobolev Jacobian vs JAX", J, J_ref, 1e-10, f"{where} chunk={chunk}")
    oracle.check("sobolev Jacobian vs FD", J, fd_jacobian(net, X), 1e-6, where)

    # the Gauss-Newton sums, the value and the gradient, with unobserved derivatives
    T = rng.normal(size=(N, q))
    G = rng.normal(size=(N, q, n_in))
    G[rng.random(G.shape) < 0.3] = np.nan
    w = rng.uniform(0.5, 2.0, size=N)
    lam = 0.7
    seen = ~np.isnan(G)
    e = np.concatenate([r_ref[:, :q] - T, np.where(seen, r_ref[:, q:].reshape(G.shape)
                                                   - np.nan_to_num(G), 0).reshape(N, -1)], 1)
    H = w[:, None] * np.concatenate([np.ones((N, q)), lam**2 * seen.reshape(N, -1)], 1)
    A = J_ref.reshape(N * e.shape[1], -1)
    JtHJ, JtHe = A.T @ (H.reshape(-1, 1) * A), A.T @ (H * e).ravel()
    for loss, norm in (("sse", 1.0), ("mse", w.sum())):
        obj = jn.SobolevObjective(net, X, T, jn.get_loss(loss), w, 0.0, chunk=3,
                                  data=sb.SobolevData(G, lam))
        value, grad = obj.value_and_grad()
        oracle.check("sobolev loss vs JAX", value, np.vdot(H * e, e) / norm, 1e-10, where)
        oracle.check("sobolev gradient vs JAX", grad, 2 / norm * JtHe, 1e-10, f"{where} {loss}")
        for form in ("primal", "dual"):
            obj.n_values = 10**9 if form == "primal" else 0  # force the form
            system = obj.system(None, chunk=2)
            if isinstance(system, jn.gauss_newton.DualSystem):
                M = system.A.T @ system.A
            else:
                M = np.triu(system.JtHJ) + np.triu(system.JtHJ, 1).T
            oracle.check("sobolev J^T H J vs JAX", M, JtHJ, 1e-10, f"{where} {loss} {form}")
            oracle.check("sobolev J^T H e vs JAX", system.Jtg, JtHe, 1e-10, f"{where} {form}")
            assert system.scale == 2 / norm
        check_penalized_dual(obj, JtHJ, JtHe, norm, f"{where} {loss}", oracle)


def check_penalized_dual(obj, JtHJ, JtHe, norm, where, oracle):
    """With a penalty, the residual-space system: its rows, its gradient (the penalty's
    term included) against JAX's sums, and its step ``d`` for ``(J^T H J + c diag(m) +
    mu I) d = -b``: a backward error at the rounding level for every mu (a tiny mu leaves
    the unpenalised biases' block ill-conditioned, so the forward error may grow), and
    the dense solve's ``d`` where mu keeps the matrix well-conditioned."""
    obj.alpha, obj.mask = 0.3, obj.net.weight_mask()
    obj.n_values = 0  # force the residual space
    system = obj.system(None, chunk=2)
    assert isinstance(system, jn.gauss_newton.PenalizedDualSystem)
    c = 0.3 / system.scale
    b = JtHe + c * obj.mask * obj.net.theta
    oracle.check("penalized dual A^T A vs JAX", system.A.T @ system.A, JtHJ, 1e-10, where)
    oracle.check("penalized dual gradient vs JAX", system.Jtg, b, 1e-10, where)
    for mu in (1e-9, 1e-2, 10.0):
        M = JtHJ + np.diag(c * obj.mask + mu)
        d = system.solve(mu)
        backward = np.linalg.norm(M @ d + b) / (np.linalg.norm(M, 2) * np.linalg.norm(d)
                                                + np.linalg.norm(b))
        oracle.record("penalized dual step, backward error", backward, f"{where} mu={mu}")
        assert backward <= 1e-12, (where, mu, backward)
        if mu >= 1e-2:
            oracle.check("penalized dual step vs dense solve", d, np.linalg.solve(M, -b),
                         1e-10, f"{where} mu={mu}")
    obj.alpha, obj.mask = 0.0, None


def test_sobolev_backprop_of_a_batch_equals_the_objective():
    net, X, rng = build(SPECS[5])
    T = rng.normal(size=(len(X), net.n_out))
    data = sb.SobolevData(rng.normal(size=(len(X), net.n_out, net.n_in)), 0.3)
    obj = jn.SobolevObjective(net, X, T, jn.get_loss("mse"), None, data=data)
    value, grad = obj.value_and_grad()
    bp = sb.SobolevBackprop(net, jn.get_loss("mse"))
    assert bp(X, T, None, data) == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(bp.grad, grad, rtol=1e-12, atol=1e-14)


def _small_objective(alpha: float, n: int = 6) -> jn.SobolevObjective:
    """sin(x1) cos(x2) on n samples, a 2-8-8-1 network (P = 105): n (1 + 2) < P rows."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-2, 2, size=(n, 2))
    y, G = _sin_cos(X)
    G[1, 0] = np.nan
    net = jn.Network([jn.Dense(2, 8, "tanh"), jn.Dense(8, 8, "tanh"), jn.Dense(8, 1)], seed=1)
    return jn.SobolevObjective(net, X, y, jn.get_loss("mse"), None, alpha,
                               data=sb.SobolevData(G[:, None, :], 0.8))


def test_system_form_follows_the_rows_and_the_penalty():
    """Fewer weighted residuals than parameters: the dual form (with a penalty, the
    residual-space :class:`PenalizedDualSystem`); more: the primal form."""
    assert type(_small_objective(0.0).system(None)) is jn.gauss_newton.DualSystem
    assert type(_small_objective(0.1).system(None)) is jn.gauss_newton.PenalizedDualSystem
    assert type(_small_objective(0.1, n=40).system(None)) is jn.gauss_newton.PrimalSystem
    assert type(_small_objective(0.0, n=40).system(None)) is jn.gauss_newton.PrimalSystem


def test_dual_step_solves_the_dense_damped_system():
    """The dual form's step (its A A^T formed once, by syrk, for every mu) solves
    (A^T A + mu I) d = -A^T r."""
    system = _small_objective(0.0).system(None)
    assert type(system) is jn.gauss_newton.DualSystem
    M = system.A.T @ system.A
    for mu in (1e-2, 1.0, 10.0):
        d = np.linalg.solve(M + mu * np.eye(len(M)), -system.Jtg)
        np.testing.assert_allclose(system.solve(mu), d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("n", [6, 40])
def test_system_reuses_the_forward_pass_of_the_value(alpha, n):
    """The system from :meth:`value`'s state (its forward pass and tangents) is the system
    built afresh, bit for bit."""
    obj = _small_objective(alpha, n)
    _, state = obj.value()
    assert state is not None
    a, b = obj.system(state), obj.system(None)
    for name in ("A", "r", "Jtg", "JtHJ"):
        if hasattr(a, name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_lm_with_a_penalty_steps_alike_in_the_residual_space_and_the_primal_form():
    """Ten LM iterations with the penalty: the residual-space system and the primal one
    (forced) give the same weights and mu."""
    runs = []
    for form in ("dual", "primal"):
        obj = _small_objective(0.05)
        if form == "primal":
            obj.n_values = 10**9
        lm = jn.solvers.LevenbergMarquardt().bind(obj)
        steps = [lm.step() for _ in range(10)]
        runs.append((obj.net.theta.copy(), [s.mu for s in steps], steps[-1].loss))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-7, atol=1e-9)
    assert runs[0][1] == runs[1][1] and runs[0][2] == pytest.approx(runs[1][2], rel=1e-9)


def test_mse_divides_by_the_samples_and_skips_unobserved_derivatives():
    """mse = (sum of squared value residuals + lam^2 sum of the observed derivative
    residuals) / N, written out by hand."""
    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    G = rng.normal(size=(5, 2))
    G[1, 0] = G[3, 1] = np.nan
    lam = 2.0
    D = net.input_jacobian(X)[:, 0, :] - G
    expected = (np.sum((net.forward(X) - T) ** 2) + lam**2 * np.nansum(D**2)) / 5
    obj = jn.SobolevObjective(net, X, T, jn.get_loss("mse"), None,
                              data=sb.SobolevData(sb.check_derivatives(G, net, 5), lam))
    assert obj.value()[0] == pytest.approx(expected, rel=1e-13)
    assert obj.n_values == 5 + 8


# ------------------------------------------------------------------ training
def _sin_cos(X):
    y = np.sin(X[:, 0]) * np.cos(X[:, 1])
    G = np.stack([np.cos(X[:, 0]) * np.cos(X[:, 1]), -np.sin(X[:, 0]) * np.sin(X[:, 1])], 1)
    return y[:, None], G


def test_lm_with_derivatives_reaches_a_lower_test_rmse_from_the_same_samples():
    """20 samples of sin(x1) cos(x2) with their exact gradients: LM's test RMSE is lower,
    by a margin (more than 3x in every seed), than from the 20 values alone."""
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(-2, 2, size=(20, 2)), rng.uniform(-2, 2, size=(500, 2))
    y, G = _sin_cos(X)
    yt, _ = _sin_cos(Xt)
    for seed in range(3):
        rmse = {}
        for with_derivatives in (False, True):
            net = jn.Network([jn.Dense(2, 16, "tanh"), jn.Dense(16, 1)], seed=seed)
            extra = {"dTdX": G} if with_derivatives else {}
            jn.train(net, X, y, "lm", loss="sse", max_epochs=200, seed=seed, **extra)
            rmse[with_derivatives] = float(np.sqrt(np.mean((net.forward(Xt) - yt) ** 2)))
        assert rmse[True] * 3 < rmse[False], rmse


@pytest.mark.parametrize("solver, options", [
    ("lbfgs", {}), ("adam", {"lr": 1e-2, "batch_size": 8}), ("sgd", {"lr": 1e-2}),
    ("lm", {"alpha": 1e-3, "validation_fraction": 0.25})])
def test_every_solver_lowers_the_derivative_objective(solver, options):
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(24, 2))
    y, G = _sin_cos(X)
    G[::3, 1] = np.nan
    net = jn.Network([jn.Dense(2, 8, "softplus"), jn.Dense(8, 1)], seed=0)
    data = sb.SobolevData(G[:, None, :], 0.5)
    before = sb.sobolev_loss(net, X, y, jn.get_loss("mse"), None, data)
    rec = jn.train(net, X, y, solver, dTdX=G, derivative_weight=0.5, max_epochs=30,
                   seed=0, **options)
    assert rec.epochs and np.isfinite(rec.epochs[-1]["loss"])
    assert sb.sobolev_loss(net, X, y, jn.get_loss("mse"), None, data) < before
    if "validation_fraction" in options:  # the validation rows' loss has their derivatives
        assert rec.epochs[0]["val_loss"] is not None


def test_derivative_weight_zero_is_the_values_objective():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 2))
    y, G = _sin_cos(X)
    nets = [jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 1)], seed=0) for _ in range(2)]
    jn.train(nets[0], X, y, "lbfgs", max_epochs=5)
    jn.train(nets[1], X, y, "lbfgs", max_epochs=5, dTdX=G, derivative_weight=0.0)
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ bad input
def _data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 2))
    y, G = _sin_cos(X)
    return jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0), X, y, G


def test_wrong_shape_of_dTdX_is_named():
    net, X, y, G = _data()
    with pytest.raises(ValueError, match=r"dTdX must have shape \(N, n_out, n_in\)"):
        jn.train(net, X, y, dTdX=G[:, :1])
    with pytest.raises(ValueError, match="dTdX must have shape"):
        jn.train(net, X, y, dTdX=G[:4])
    with pytest.raises(TypeError, match="dTdX must hold real numbers"):
        jn.train(net, X, y, dTdX=np.full(G.shape, "a"))


def test_infinite_dTdX_is_refused_and_nan_is_unobserved():
    net, X, y, G = _data()
    G[0, 1] = np.inf
    with pytest.raises(ValueError, match="dTdX must hold finite numbers or NaN"):
        jn.train(net, X, y, dTdX=G)
    G[0, 1] = np.nan
    rec = jn.train(net, X, y, dTdX=G, max_epochs=2)
    assert np.isfinite(rec.epochs[-1]["loss"])


def test_activation_without_second_order_term_is_named(oracle):
    _, X, y, G = _data()
    net = jn.Network([jn.Dense(2, 3, oracle.Cube()), jn.Dense(3, 1)], seed=0)
    with pytest.raises(ValueError, match=r"dTdX .*layers\[0\].*Cube"):
        jn.train(net, X, y, dTdX=G)
    jn.train(net, X, y, max_epochs=1)  # everything else keeps working


@pytest.mark.parametrize("options, message", [
    ({"loss": "huber"}, "dTdX needs a sum-of-squares loss"),
    ({"solver": "br", "noise": "per_output"}, "dTdX with solver 'br' needs noise='shared'"),
    ({"derivative_weight": -1.0}, "derivative_weight"),
])
def test_derivative_options_that_cannot_work_are_named(options, message):
    net, X, y, G = _data()
    if options.get("noise") == "per_output":  # several outputs: one beta each
        net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 2)], seed=0)
        y, G = np.c_[y, y], np.stack([G, G], 1)
    with pytest.raises(ValueError, match=message):
        jn.train(net, X, y, dTdX=G, **options)


def test_one_output_accepts_both_shapes_of_dTdX():
    net, X, y, G = _data()
    other = net.copy()
    jn.train(net, X, y, "lm", dTdX=G, max_epochs=3)
    jn.train(other, X, y, "lm", dTdX=G[:, None, :], max_epochs=3)
    np.testing.assert_array_equal(net.theta, other.theta)
