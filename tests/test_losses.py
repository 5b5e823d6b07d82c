"""Losses: value and dJ/dY against JAX and finite differences; documented weighting;
the fused output paths against the general path and at extreme logits."""

from __future__ import annotations

import numpy as np
import pytest

import jacnet as jn
from jacnet import losses as L

LOSS_NAMES = sorted(jn.LOSSES)
#: the output activation each fused path is written for
FUSED = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}
N, M = 5, 3


def sample(loss: str, seed: int, shape: tuple[int, int] = (N, M)):
    """Outputs ``Y`` in the loss's domain and matching targets ``T``."""
    rng = np.random.default_rng(seed)
    domains = {
        "sse": lambda: (rng.normal(size=shape), rng.normal(0, 1.5, size=shape)),
        "mse": lambda: (rng.normal(size=shape), rng.normal(0, 1.5, size=shape)),
        "huber": lambda: (rng.normal(size=shape), rng.normal(0, 1.5, size=shape)),
        "cross_entropy": lambda: (rng.uniform(0.05, 1.0, size=shape),
                                  rng.dirichlet(np.ones(shape[1]), size=shape[0])),
        "binary_cross_entropy": lambda: (rng.uniform(0.05, 0.95, size=shape),
                                         rng.uniform(0, 1, size=shape)),
        "poisson": lambda: (rng.uniform(0.2, 3.0, size=shape),
                            rng.poisson(2.0, size=shape).astype(float)),
    }
    return domains[loss]()


def weights(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 3.0, size=n)


def fd_grad(loss: jn.Loss, Y, T, w, h: float = 1e-6) -> np.ndarray:
    """Central differences of ``loss.value`` in every output."""
    g = np.empty_like(Y)
    for idx in np.ndindex(*Y.shape):
        E = np.zeros_like(Y)
        E[idx] = h
        g[idx] = (loss.value(Y + E, T, w) - loss.value(Y - E, T, w)) / (2 * h)
    return g


# -------------------------------------------------------------- the registry
def test_loss_registry_has_a_jax_reference_and_a_domain_for_every_loss(oracle):
    assert set(LOSS_NAMES) <= oracle.loss_names, "add a JAX reference to tests/conftest.py"
    for name in LOSS_NAMES:
        sample(name, 0)  # KeyError: add the loss's domain to sample()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_fused_paths_are_exactly_the_tested_ones(name):
    """A fused path exists only for the pairs in FUSED, each tested below."""
    loss = jn.get_loss(name)
    Z = np.random.default_rng(0).normal(size=(N, M))
    for act_name in jn.ACTIVATIONS:
        act = jn.get_activation(act_name)
        fused = loss.fused(act, Z, act.forward(Z), np.abs(Z))
        assert (fused is not None) == (FUSED.get(name) == act.name), (name, act_name)


# ------------------------------------------------------- value, grad vs JAX, FD
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_value_and_grad_match_jax(name, weighted, oracle):
    loss = jn.get_loss(name)
    for seed in range(3):
        Y, T = sample(name, seed)
        w = weights(seed) if weighted else None
        value, dY = loss.value_and_grad(Y, T, w)
        assert isinstance(value, float) and dY.shape == Y.shape
        ref_value, ref_dY = oracle.loss(loss, Y, T, w)
        where = f"{name} weighted={weighted} seed={seed}"
        oracle.check("loss value vs JAX", value, ref_value, 1e-13, where)
        oracle.check("loss dJ/dY vs JAX", dY, ref_dY, 1e-12, where)
        assert loss.value(Y, T, w) == value


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_grad_matches_finite_differences(name, weighted, oracle):
    loss = jn.get_loss(name)
    for seed in range(3):
        Y, T = sample(name, 10 + seed)
        w = weights(seed) if weighted else None
        oracle.check("loss dJ/dY vs FD", loss.value_and_grad(Y, T, w)[1], fd_grad(loss, Y, T, w),
                     1e-6, f"{name} weighted={weighted} seed={seed}")


def test_loss_jax_check_can_fail(oracle):
    """A gradient off by the factor 2 of the square is caught."""
    Y, T = sample("sse", 0)
    _, ref = oracle.loss(jn.get_loss("sse"), Y, T)
    assert oracle.rel_err(Y - T, ref) > 0.4


# ------------------------------------------------------------ sse is the seed's J
def test_sse_is_exactly_the_seeds_sum_of_squares():
    rng = np.random.default_rng(1)
    Y = rng.integers(-9, 10, size=(6, 4)).astype(float)  # integers: every sum is exact
    T = rng.integers(-9, 10, size=(6, 4)).astype(float)
    J = sum((Y[s, i] - T[s, i]) ** 2 for s in range(6) for i in range(4))
    value, dY = jn.get_loss("sse").value_and_grad(Y, T)
    assert value == J
    np.testing.assert_array_equal(dY, 2 * (Y - T))
    Yf, Tf = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    Jf = sum((Yf[s, i] - Tf[s, i]) ** 2 for s in range(6) for i in range(4))
    assert jn.get_loss("sse").value(Yf, Tf) == pytest.approx(Jf, rel=1e-14)


def test_sse_weighted_is_the_weighted_sum_of_per_sample_J():
    rng = np.random.default_rng(2)
    Y = rng.integers(-5, 6, size=(4, 3)).astype(float)
    T = rng.integers(-5, 6, size=(4, 3)).astype(float)
    w = np.array([1.0, 2.0, 0.5, 4.0])
    per_sample = ((Y - T) ** 2).sum(axis=1)
    value, dY = jn.get_loss("sse").value_and_grad(Y, T, w)
    assert value == float(w @ per_sample)
    np.testing.assert_array_equal(dY, 2 * w[:, None] * (Y - T))


def test_mse_is_sse_over_n():
    for seed in range(3):
        Y, T = sample("mse", seed, shape=(4 + seed, 3))
        n = Y.shape[0]
        sse, g_sse = jn.get_loss("sse").value_and_grad(Y, T)
        mse, g_mse = jn.get_loss("mse").value_and_grad(Y, T)
        assert mse == pytest.approx(sse / n, rel=1e-15)
        np.testing.assert_allclose(g_mse, g_sse / n, rtol=1e-15)
    Y = np.arange(8.0).reshape(4, 2)
    assert jn.get_loss("mse").value(Y, 0 * Y) == jn.get_loss("sse").value(Y, 0 * Y) / 4


# --------------------------------------------------------------- weights
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_unit_weights_equal_no_weights(name):
    loss = jn.get_loss(name)
    Y, T = sample(name, 3)
    v0, g0 = loss.value_and_grad(Y, T)
    v1, g1 = loss.value_and_grad(Y, T, np.ones(N))
    assert v1 == pytest.approx(v0, rel=1e-14)
    np.testing.assert_allclose(g1, g0, rtol=1e-14)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_integer_weights_repeat_samples(name):
    loss = jn.get_loss(name)
    Y, T = sample(name, 4)
    counts = np.array([1, 3, 0, 2, 1])
    v_w, g_w = loss.value_and_grad(Y, T, counts.astype(float))
    Yr, Tr = np.repeat(Y, counts, axis=0), np.repeat(T, counts, axis=0)
    v_r, g_r = loss.value_and_grad(Yr, Tr)
    assert v_w == pytest.approx(v_r, rel=1e-13)
    # the gradient of a repeated sample is the sum over its copies
    summed = np.zeros_like(Y)
    np.add.at(summed, np.repeat(np.arange(N), counts), g_r)
    np.testing.assert_allclose(g_w, summed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_weight_scale_as_documented(name):
    """sse sums ``w_s J_s``: it scales with w. The others are weighted means: invariant."""
    loss = jn.get_loss(name)
    Y, T = sample(name, 5)
    w = weights(5)
    v1, g1 = loss.value_and_grad(Y, T, w)
    v3, g3 = loss.value_and_grad(Y, T, 3.0 * w)
    factor = 3.0 if name == "sse" else 1.0
    assert v3 == pytest.approx(factor * v1, rel=1e-13)
    np.testing.assert_allclose(g3, factor * g1, rtol=1e-13)


@pytest.mark.parametrize("name", sorted(set(LOSS_NAMES) - {"sse"}))
def test_loss_mean_is_the_weighted_mean_of_per_sample_losses(name):
    loss = jn.get_loss(name)
    Y, T = sample(name, 6)
    w = weights(6)
    per_sample = np.array([loss.value(Y[s : s + 1], T[s : s + 1]) for s in range(N)])
    assert loss.value(Y, T, w) == pytest.approx(w @ per_sample / w.sum(), rel=1e-13)
    assert loss.value(Y, T) == pytest.approx(per_sample.mean(), rel=1e-13)


# ------------------------------------------------------------------ huber
def test_huber_quadratic_and_linear_regimes():
    loss = jn.get_loss("huber")  # delta = 1
    T = np.zeros((2, 3))
    small = np.array([[0.5, -0.25, 0.9], [0.0, -1.0, 0.1]])  # |r| <= 1
    large = np.array([[3.0, -2.0, 1.5], [-10.0, 4.0, 1.25]])  # |r| > 1
    v, g = loss.value_and_grad(small, T)
    assert v == pytest.approx((0.5 * small**2).sum(axis=1).mean(), rel=1e-15)
    np.testing.assert_allclose(g, small / 2, rtol=1e-15)
    v, g = loss.value_and_grad(large, T)
    assert v == pytest.approx((np.abs(large) - 0.5).sum(axis=1).mean(), rel=1e-15)
    np.testing.assert_allclose(g, np.sign(large) / 2, rtol=1e-15)
    mixed = np.concatenate([small[:1], large[:1]])
    expected = np.where(np.abs(mixed) <= 1, 0.5 * mixed**2, np.abs(mixed) - 0.5)
    assert loss.value(mixed, T) == pytest.approx(expected.sum(axis=1).mean(), rel=1e-15)


def test_huber_delta_and_continuity(oracle):
    loss = L.Huber(delta=0.5)
    assert loss.get_config() == {"delta": 0.5}
    r = np.array([[0.5 - 1e-9, 0.5 + 1e-9, -0.5 - 1e-9]])
    v, g = loss.value_and_grad(r, np.zeros_like(r))
    assert v == pytest.approx(3 * 0.125, abs=1e-8)  # both pieces meet at |r| = delta
    np.testing.assert_allclose(g, [[0.5, 0.5, -0.5]], atol=1e-8)
    Y, T = sample("huber", 7)
    ref_v, ref_g = oracle.loss(loss, Y, T)
    oracle.check("loss value vs JAX", loss.value(Y, T), ref_v, 1e-13, "huber(delta=0.5)")
    oracle.check("loss dJ/dY vs JAX", loss.value_and_grad(Y, T)[1], ref_g, 1e-12,
                 "huber(delta=0.5)")
    with pytest.raises(ValueError, match="delta must be a positive float"):
        L.Huber(delta=0.0)


# ---------------------------------------------------------------- fused paths
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", sorted(FUSED))
def test_loss_fused_path_matches_jax_and_general_path(name, weighted, oracle):
    """``fused`` returns ``(J, dJ/dY . f')``: JAX's chain and the general path agree."""
    loss = jn.get_loss(name)
    act = jn.get_activation(FUSED[name])
    rng = np.random.default_rng(8)
    for trial in range(3):
        Z = rng.normal(0, 2.0, size=(N, 4))
        _, T = sample(name, 20 + trial, shape=(N, 4))
        w = weights(trial) if weighted else None
        Y = act.forward(Z)
        value, delta = loss.fused(act, Z, Y, T, w)
        # general path: the loss's own gradient through the activation's vjp
        v_gen, dY = loss.value_and_grad(Y, T, w)
        assert value == pytest.approx(v_gen, rel=1e-12)
        oracle.check("fused vs general path", delta, act.vjp(Z, Y, dY), 1e-12, name)
        # JAX: dJ/dz = dJ/dy . f'(z)
        Y_jax, J_jax = oracle.activation(act, Z)
        ref_v, ref_dY = oracle.loss(loss, Y_jax, T, w)
        oracle.check("fused value vs JAX", value, ref_v, 1e-13, f"{name} {weighted}")
        oracle.check("fused delta vs JAX", delta, np.einsum("si,sij->sj", ref_dY, J_jax),
                     1e-12, f"{name} {weighted}")


def _one_layer(act: str, logits: np.ndarray):
    """A network whose output pre-activations equal ``logits`` for the input I."""
    n, m = logits.shape
    net = jn.Network([jn.Dense(n, m, act)], seed=0)
    net.layers[0].W = logits
    net.layers[0].b = np.zeros(m)
    return net, np.eye(n)


def test_fused_softmax_cross_entropy_is_stable_at_large_logits(oracle):
    logits = np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 5e2], [0.0, 0.0, 1e3]])
    T = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    net, X = _one_layer("softmax", logits)
    value, grads = net.loss_and_grad(X, T, "cross_entropy")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    exact = -(T * log_y).sum(axis=1).mean()  # 1e3-sized, by the log-sum-exp identity
    assert np.isfinite(value) and value == pytest.approx(exact, rel=1e-13)
    assert value > 500
    Y = np.exp(log_y)
    np.testing.assert_allclose(grads[0][1], ((Y * T.sum(1, keepdims=True) - T) / 3).sum(0),
                               rtol=1e-12, atol=1e-15)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    # the general path cannot represent log(0): it is finite only because of clipping
    general, _ = _one_layer(oracle.Unfused(jn.get_activation("softmax")), logits)
    assert general.loss(X, T, "cross_entropy") < 0.1 * value


def test_fused_sigmoid_binary_cross_entropy_is_stable_at_large_logits(oracle):
    logits = np.array([[1e3, -1e3], [-1e3, 1e3], [30.0, -800.0]])
    T = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.25]])
    net, X = _one_layer("sigmoid", logits)
    value, grads = net.loss_and_grad(X, T, "binary_cross_entropy")
    # -[t log s(z) + (1 - t) log(1 - s(z))] = t softplus(-z) + (1 - t) softplus(z)
    exact = (T * np.logaddexp(0, -logits) + (1 - T) * np.logaddexp(0, logits)).sum(1).mean()
    assert np.isfinite(value) and value == pytest.approx(exact, rel=1e-13)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    general, _ = _one_layer(oracle.Unfused(jn.get_activation("sigmoid")), logits)
    assert general.loss(X, T, "binary_cross_entropy") < 0.1 * value


def test_fused_exp_poisson_is_exact_where_exp_underflows(oracle):
    logits = np.array([[-1e3, 0.5], [2.0, -800.0]])
    T = np.array([[3.0, 1.0], [0.0, 2.0]])
    net, X = _one_layer("exp", logits)
    value = net.loss(X, T, "poisson")
    exact = (np.exp(logits) - T * logits).sum(1).mean()  # log y = z, even when y = 0
    assert value == pytest.approx(exact, rel=1e-13)
    general, _ = _one_layer(oracle.Unfused(jn.get_activation("exp")), logits)
    assert general.loss(X, T, "poisson") < 0.9 * value


# ------------------------------------------------------------- dtypes, errors
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_float32_stays_float32(name):
    loss = jn.get_loss(name)
    Y, T = sample(name, 9)
    w = weights(9).astype(np.float32)
    value, dY = loss.value_and_grad(Y.astype(np.float32), T.astype(np.float32), w)
    assert dY.dtype == np.float32
    assert value == pytest.approx(loss.value(Y, T, w.astype(np.float64)), rel=1e-5)


def test_get_loss_errors_and_instances():
    with pytest.raises(ValueError, match="unknown loss 'l1'") as info:
        jn.get_loss("l1")
    for name in jn.LOSSES:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="loss must be a str or a jacnet Loss"):
        jn.get_loss(None)
    huber = L.Huber(delta=2.0)
    assert jn.get_loss(huber) is huber
    assert isinstance(jn.get_loss("sse"), L.SSE)


def test_scaled_loss_scales_value_gradient_and_fused_path():
    base = jn.get_loss("cross_entropy")
    half = L.Scaled(base, 0.5)
    assert half.name == "cross_entropy"
    Y, T = sample("cross_entropy", 10)
    v, g = half.value_and_grad(Y, T)
    v0, g0 = base.value_and_grad(Y, T)
    assert v == 0.5 * v0
    np.testing.assert_array_equal(g, 0.5 * g0)
    act = jn.get_activation("softmax")
    Z = np.random.default_rng(0).normal(size=(N, M))
    fv, fd = half.fused(act, Z, act.forward(Z), T)
    bv, bd = base.fused(act, Z, act.forward(Z), T)
    assert fv == 0.5 * bv
    np.testing.assert_array_equal(fd, 0.5 * bd)
    with pytest.raises(ValueError, match="factor must be a positive float"):
        L.Scaled("sse", 0.0)


# ------------------------------------------------- fused_into: the buffered form
#: the pairs whose fused path also runs in the mini-batch backprop's buffers
FUSED_INTO = {"cross_entropy": "softmax", "sse": "identity", "mse": "identity"}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_fused_into_equals_the_general_path_bit_for_bit(name, weighted):
    """In the buffers (and over ``Tpre``) ``fused_into`` gives the numbers of the general
    path (``forward``, then ``fused`` or ``value_and_grad`` and ``vjp``), bit for bit, for
    the pairs in FUSED_INTO, plain or Scaled; for every other pair it declines (None)."""
    rng = np.random.default_rng(9)
    for act_name in sorted(jn.ACTIVATIONS):
        act = jn.get_activation(act_name)
        for loss in (jn.get_loss(name), L.Scaled(name, 0.5)):
            for dtype in (np.float32, np.float64):
                Z = rng.normal(0, 2.0, size=(N, M)).astype(dtype)
                T = sample(name, 3, shape=(N, M))[1].astype(dtype)
                w = weights(4).astype(dtype) if weighted else None
                out = L.OutputBuffers.empty(N + 2, M, np.dtype(dtype)).rows(N)
                got = loss.fused_into(act, Z.copy(), T, w, out)
                if FUSED_INTO.get(name) != act.name:
                    assert got is None, (name, act_name)
                    continue
                Y = act.forward(Z)
                want = loss.fused(act, Z, Y, T, w)
                if want is None:
                    value, dY = loss.value_and_grad(Y, T, w)
                    want = value, act.vjp(Z, Y, dY)
                assert got[0] == want[0]
                assert got[1].dtype == dtype
                assert any(got[1] is a for a in out)  # delta lives in the buffers
                np.testing.assert_array_equal(got[1], want[1])


def test_loss_subclass_changing_the_formula_drops_the_parents_fused_into():
    class Doubled(L.MSE):
        def value_and_grad(self, Y, T, w=None):
            value, dY = super().value_and_grad(Y, T, w)
            return 2 * value, 2 * dY

    class Renamed(L.MSE):
        pass

    assert Doubled.fused_into is jn.Loss.fused_into
    assert Renamed.fused_into is L.SSE.fused_into
    Z = np.ones((3, 2))
    out = L.OutputBuffers.empty(3, 2, Z.dtype)
    assert Doubled().fused_into(jn.get_activation("identity"), Z, Z, None, out) is None
