"""Tests of jacnet.optimizers: each rule against its paper's formula written literally."""

from __future__ import annotations

import io
import math
import re
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jacnet.optimizers import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    OptimizerState,
    RMSprop,
    get_optimizer,
)

# (name, constructor arguments): every rule and its variants.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "beta_1": 0.0, "beta_2": 0.5, "epsilon": 1e-3}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.5}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "rho": 0.5, "momentum": 0.9}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]

# Gradient preprocessing variants; "l2" cases also pass a mask that spares the bias.
PENALTIES: dict[str, dict[str, Any]] = {
    "plain": {},
    "l2": {"alpha": 0.3},
    "clip": {"clip_norm": 0.5},
    "l2+clip": {"alpha": 0.3, "clip_norm": 0.5},
}


def make_problem(
    dtype: type = np.float64, seed: int = 0, n_steps: int = 3
) -> tuple[list[np.ndarray], list[np.ndarray | None], list[list[np.ndarray]]]:
    """A weight matrix ``(3, 4)`` and a bias ``(4,)``, their decay mask, ``n_steps`` gradients."""
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = [
        rng.normal(size=(3, 4)).astype(dtype),
        rng.normal(size=4).astype(dtype),
    ]
    mask: list[np.ndarray | None] = [np.ones((3, 4), dtype), np.zeros(4, dtype)]
    grads: list[list[np.ndarray]] = [
        [rng.normal(size=p.shape).astype(dtype) for p in params] for _ in range(n_steps)
    ]
    return params, mask, grads


def reference_run(opt: Optimizer, params, grads_seq, masks, lrs):
    """The papers' updates, written literally with fresh arrays; returns params per step."""
    c = opt.get_config()
    alpha, clip = c["alpha"], c["clip_norm"]
    masks = [np.ones_like(p) if m is None else m for p, m in zip(params, masks, strict=True)]
    theta = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]  # first moment / velocity / square average
    v = [np.zeros_like(p) for p in params]  # second moment / momentum buffer
    history = []
    for t, (raw, lr) in enumerate(zip(grads_seq, lrs, strict=True), start=1):
        lr = c["lr"] if lr is None else lr
        g = [gi + alpha * mk * th for gi, mk, th in zip(raw, masks, theta, strict=True)]
        if clip is not None:
            norm = np.sqrt(sum(np.sum(gi**2) for gi in g))
            if norm > clip:
                g = [gi * clip / norm for gi in g]
        new = []
        for i, (th, gi) in enumerate(zip(theta, g, strict=True)):
            if opt.name == "sgd":
                mu = c["momentum"]
                if mu == 0:
                    new.append(th - lr * gi)
                    continue
                m[i] = mu * m[i] + gi
                d = gi + mu * m[i] if c["nesterov"] else m[i]
                new.append(th - lr * d)
            elif opt.name in ("adam", "adamw"):
                b1, b2, eps = c["beta_1"], c["beta_2"], c["epsilon"]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi**2
                m_hat = m[i] / (1 - b1**t)
                v_hat = v[i] / (1 - b2**t)
                step = lr * m_hat / (np.sqrt(v_hat) + eps)
                decay = lr * c["weight_decay"] * masks[i] * th if opt.name == "adamw" else 0.0
                new.append(th - decay - step)
            elif opt.name == "rmsprop":
                rho, eps, mu = c["rho"], c["epsilon"], c["momentum"]
                m[i] = rho * m[i] + (1 - rho) * gi**2
                u = gi / (np.sqrt(m[i]) + eps)
                if mu > 0:
                    v[i] = mu * v[i] + u
                    u = v[i]
                new.append(th - lr * u)
            else:
                raise AssertionError(f"no reference for {opt.name}")
        theta = new
        history.append([th.copy() for th in theta])
    return history


def test_optimizer_cases_cover_registry():
    assert {name for name, _ in CASES} == set(OPTIMIZERS)


@pytest.mark.parametrize("penalty", list(PENALTIES))
@pytest.mark.parametrize(("name", "config"), CASES, ids=CASE_IDS)
def test_optimizer_matches_paper_formula_three_steps(name, config, penalty):
    opt = get_optimizer(name, **config, **PENALTIES[penalty])
    params, mask, grads_seq = make_problem()
    masks = mask if "l2" in penalty else [None, None]
    lrs = [None, 0.5 * opt.lr, None]  # the middle step exercises the lr override
    expected = reference_run(opt, params, grads_seq, masks, lrs)
    state = opt.init(params, decay_mask=masks)
    for t, (grads, lr, want) in enumerate(zip(grads_seq, lrs, expected, strict=True), start=1):
        opt.update(params, grads, state, lr=lr)
        assert state.step == t
        for got, exp in zip(params, want, strict=True):
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_l2_mask_leaves_biases_untouched(name):
    opt = get_optimizer(name, alpha=0.5)
    params, mask, _ = make_problem()
    W0, b0 = params[0].copy(), params[1].copy()
    state = opt.init(params, decay_mask=mask)
    zero = [np.zeros_like(p) for p in params]
    for _ in range(3):
        opt.update(params, zero, state)
    np.testing.assert_array_equal(params[1], b0)
    # The penalty alone pulls every weight towards zero.
    assert np.all(np.abs(params[0]) < np.abs(W0))


def test_optimizer_l2_without_mask_penalises_everything():
    opt = SGD(lr=0.1, alpha=0.5)
    params, _, _ = make_problem()
    b0 = params[1].copy()
    state = opt.init(params)
    opt.update(params, [np.zeros_like(p) for p in params], state)
    np.testing.assert_allclose(params[1], b0 - 0.1 * 0.5 * b0, rtol=1e-15)


@pytest.mark.parametrize("grad_norm", [1.001, 1.5, 100.0])
def test_optimizer_clip_norm_scales_the_global_norm(grad_norm):
    opt = SGD(lr=1.0, clip_norm=1.0)
    params, _, grads_seq = make_problem()
    before = [p.copy() for p in params]
    norm = np.sqrt(sum(np.sum(g**2) for g in grads_seq[0]))
    grads = [g * grad_norm / norm for g in grads_seq[0]]
    opt.update(params, grads, opt.init(params))
    # The step is the gradient's direction with length clip_norm, over both arrays together.
    for p, p0, g in zip(params, before, grads, strict=True):
        np.testing.assert_allclose(p0 - p, g / grad_norm, rtol=1e-12)


def test_optimizer_clip_norm_leaves_small_gradients_alone():
    params, _, grads_seq = make_problem()
    clipped, plain = [p.copy() for p in params], [p.copy() for p in params]
    SGD(lr=0.1, clip_norm=1e6).update(clipped, grads_seq[0], SGD(lr=0.1).init(clipped))
    SGD(lr=0.1).update(plain, grads_seq[0], SGD(lr=0.1).init(plain))
    for a, b in zip(clipped, plain, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "config"), CASES, ids=CASE_IDS)
def test_optimizer_lr_override_equals_constructor_lr(name, config):
    params, _, grads_seq = make_problem()
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    opt_a = get_optimizer(name, **config)
    opt_b = get_optimizer(name, **{**config, "lr": 0.003})
    state_a, state_b = opt_a.init(a), opt_b.init(b)
    for grads in grads_seq:
        opt_a.update(a, grads, state_a, lr=0.003)
        opt_b.update(b, grads, state_b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("name", "config"), CASES, ids=CASE_IDS)
def test_optimizer_updates_in_place_and_leaves_grads_alone(name, config):
    opt = get_optimizer(name, **config, alpha=0.1, clip_norm=0.5)
    # The training loop hands out views of one flat vector: writes must land in it.
    flat = np.random.default_rng(1).normal(size=16)
    params = [flat[:12].reshape(3, 4), flat[12:]]
    ids = [id(p) for p in params]
    _, mask, grads_seq = make_problem()
    state = opt.init(params, decay_mask=mask)
    before = flat.copy()
    for grads in grads_seq:
        kept = [g.copy() for g in grads]
        opt.update(params, grads, state)
        for g, k in zip(grads, kept, strict=True):
            np.testing.assert_array_equal(g, k)
    assert [id(p) for p in params] == ids
    assert all(np.shares_memory(p, flat) for p in params)
    assert not np.array_equal(flat, before)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_update_allocates_no_parameter_sized_array(name):
    opt = get_optimizer(name, alpha=0.1, clip_norm=0.5)
    n = 250_000  # 2 MB in float64
    rng = np.random.default_rng(0)
    params, grads = [rng.normal(size=n)], [rng.normal(size=n)]
    state = opt.init(params)
    opt.update(params, grads, state)  # warm-up
    tracemalloc.start()
    try:
        opt.update(params, grads, state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * 8 // 10


@pytest.mark.parametrize(("name", "config"), CASES, ids=CASE_IDS)
def test_optimizer_float32_stays_float32(name, config):
    opt = get_optimizer(name, **config, alpha=0.1, clip_norm=0.5)
    p32, mask32, grads32 = make_problem(np.float32)
    p64, mask64, grads64 = make_problem(np.float64)
    s32, s64 = opt.init(p32, decay_mask=mask32), opt.init(p64, decay_mask=mask64)
    for g32, g64 in zip(grads32, grads64, strict=True):
        opt.update(p32, g32, s32)
        opt.update(p64, g64, s64)
    assert all(p.dtype == np.float32 for p in p32)
    assert all(a.dtype == np.float32 for k, a in s32.to_arrays().items() if "." in k)
    for a, b in zip(p32, p64, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "config"), CASES, ids=CASE_IDS)
def test_optimizer_state_round_trip_is_bit_identical(name, config):
    opt = get_optimizer(name, **config, alpha=0.1, clip_norm=0.5)
    params, mask, grads_seq = make_problem(n_steps=6)
    state = opt.init(params, decay_mask=[mask[0], None])
    for grads in grads_seq[:3]:
        opt.update(params, grads, state)
    # Through an .npz file, as a checkpoint would go.
    buf = io.BytesIO()
    np.savez(buf, **state.to_arrays())
    buf.seek(0)
    with np.load(buf) as f:
        restored = Optimizer.state_from_arrays(dict(f))
    assert restored.step == 3
    resumed = [p.copy() for p in params]
    for grads in grads_seq[3:]:
        opt.update(params, grads, state)
        opt.update(resumed, grads, restored)
    for a, b in zip(params, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert restored.step == state.step == 6


def test_optimizer_state_to_arrays_copies():
    opt = Adam()
    params, _, grads_seq = make_problem()
    state = opt.init(params)
    saved = state.to_arrays()
    opt.update(params, grads_seq[0], state)
    assert saved["step"] == 0
    assert not saved["m.0"].any()


def test_optimizer_state_from_arrays_rejects_bad_keys():
    with pytest.raises(ValueError, match="n_arrays"):
        OptimizerState.from_arrays({"step": np.array(0)})
    with pytest.raises(ValueError, match="m.5"):
        OptimizerState.from_arrays(
            {"step": np.array(0), "n_arrays": np.array(1), "m.0": np.zeros(2), "m.5": np.zeros(2)}
        )


def test_optimizer_state_of_another_optimizer_is_rejected():
    params, _, grads_seq = make_problem()
    state = SGD().init(params)
    restored = OptimizerState.from_arrays(state.to_arrays())
    with pytest.raises(ValueError, match="buffers"):
        Adam().update(params, grads_seq[0], restored)


# (name, minimiser settings): each optimizer on f(θ) = ½ (θ - θ*)ᵀ A (θ - θ*).
QUADRATIC_RUNS = [
    ("sgd", {"lr": 0.05}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.0}),
    ("rmsprop", {"lr": 0.001, "momentum": 0.5}),
]


@pytest.mark.parametrize(("name", "config"), QUADRATIC_RUNS)
def test_optimizer_minimises_a_quadratic(name, config):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    A = Q @ np.diag([1.0, 2.0, 3.0, 5.0, 10.0]) @ Q.T
    theta_star = rng.normal(size=5)
    theta = np.zeros(5)
    opt = get_optimizer(name, **config)
    state = opt.init([theta])
    for _ in range(3000):
        opt.update([theta], [A @ (theta - theta_star)], state)
    assert np.linalg.norm(theta - theta_star) < 1e-3 * np.linalg.norm(theta_star)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_scikit_learn_at_constant_lr(nesterov):
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    params, _, grads_seq = make_problem()
    ours = [p.copy() for p in params]
    theirs = [p.copy() for p in params]
    sk_opt = sk.SGDOptimizer(theirs, learning_rate_init=0.1, momentum=0.9, nesterov=nesterov)
    opt = SGD(lr=0.1, momentum=0.9, nesterov=nesterov)
    state = opt.init(ours)
    for grads in grads_seq:
        opt.update(ours, grads, state)
        sk_opt.update_params(theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adam_matches_scikit_learn_with_its_epsilon_placement():
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    params, _, grads_seq = make_problem()
    ours = [p.copy() for p in params]
    theirs = [p.copy() for p in params]
    sk_opt = sk.AdamOptimizer(theirs, learning_rate_init=0.01, epsilon=1e-8)
    opt = Adam(lr=0.01)
    state = opt.init(ours)
    for t, grads in enumerate(grads_seq, start=1):
        # scikit-learn adds ε to √v, we add it to √v̂ = √v / √(1 - β2^t): rescale ours.
        opt.epsilon = 1e-8 / math.sqrt(1 - 0.999**t)
        opt.update(ours, grads, state)
        sk_opt.update_params(theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@given(
    shapes=st.lists(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), max_size=3),
    dtype=st.sampled_from([np.float32, np.float64]),
    name=st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    data=st.data(),
)
@settings(max_examples=30, deadline=None)
def test_optimizer_update_keeps_shapes_dtype_and_zero_grad_fixed_point(shapes, dtype, name, data):
    values = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    params = [data.draw(hnp.arrays(dtype, shape, elements=values)) for shape in shapes]
    grads = [data.draw(hnp.arrays(dtype, shape, elements=values)) for shape in shapes]
    config = {"weight_decay": 0.0} if name == "adamw" else {}
    opt = get_optimizer(name, **config)
    # Zero gradient from a fresh state: nothing moves.
    still = [p.copy() for p in params]
    state = opt.init(still)
    opt.update(still, [np.zeros_like(p) for p in params], state)
    for a, b in zip(still, params, strict=True):
        np.testing.assert_array_equal(a, b)
    # Any gradient: shapes and dtypes survive.
    opt.update(still, grads, state)
    assert [(p.shape, p.dtype) for p in still] == [(p.shape, p.dtype) for p in params]


@pytest.mark.parametrize(
    ("cls", "kwargs", "argument"),
    [
        (SGD, {"lr": -0.1}, "lr"),
        (SGD, {"lr": 0.0}, "lr"),
        (Adam, {"lr": float("nan")}, "lr"),
        (Adam, {"beta_1": 1.0}, "beta_1"),
        (Adam, {"beta_2": -0.1}, "beta_2"),
        (Adam, {"epsilon": 0.0}, "epsilon"),
        (SGD, {"momentum": -0.5}, "momentum"),
        (SGD, {"nesterov": True}, "nesterov"),
        (RMSprop, {"momentum": -0.1}, "momentum"),
        (RMSprop, {"rho": 1.0}, "rho"),
        (AdamW, {"weight_decay": -0.01}, "weight_decay"),
        (SGD, {"alpha": -1.0}, "alpha"),
        (Adam, {"clip_norm": 0.0}, "clip_norm"),
        (RMSprop, {"clip_norm": -1.0}, "clip_norm"),
    ],
)
def test_optimizer_invalid_arguments_raise_naming_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{re.escape(argument)}[ =]"):
        cls(**kwargs)


def test_optimizer_error_message_gives_expected_and_actual():
    with pytest.raises(ValueError, match=re.escape("lr must be a positive float, got -0.1")):
        SGD(lr=-0.1)
    with pytest.raises(TypeError, match="lr must be a positive float, got str"):
        Adam(lr="0.1")


def test_optimizer_update_rejects_mismatched_inputs():
    opt = Adam()
    params, _, grads_seq = make_problem()
    state = opt.init(params)
    with pytest.raises(ValueError, match="2 arrays"):
        opt.update(params, grads_seq[0][:1], state)
    with pytest.raises(ValueError, match=r"grads\[1\] must have shape"):
        opt.update(params, [grads_seq[0][0], np.zeros(5)], state)
    with pytest.raises(TypeError, match=r"grads\[0\] must have dtype float64"):
        opt.update(params, [grads_seq[0][0].astype(np.float32), grads_seq[0][1]], state)
    with pytest.raises(ValueError, match="lr must be a non-negative float"):
        opt.update(params, grads_seq[0], state, lr=-1.0)
    assert state.step == 0


def test_optimizer_init_rejects_bad_params_and_masks():
    with pytest.raises(TypeError, match=r"params\[0\] must be a float ndarray"):
        SGD().init([np.arange(3)])
    params, mask, _ = make_problem()
    with pytest.raises(ValueError, match=r"decay_mask\[1\] must have shape"):
        SGD().init(params, decay_mask=[mask[0], np.zeros(5)])
    with pytest.raises(ValueError, match=r"decay_mask\[0\] must hold only"):
        SGD().init(params, decay_mask=[0.5 * mask[0], None])
    with pytest.raises(ValueError, match="decay_mask must have 2 entries"):
        SGD().init(params, decay_mask=[None])


def test_get_optimizer_builds_from_name_and_passes_instances():
    opt = get_optimizer("sgd", lr=0.5, momentum=0.9)
    assert isinstance(opt, SGD)
    assert (opt.lr, opt.momentum) == (0.5, 0.9)
    assert get_optimizer(opt) is opt
    with pytest.raises(TypeError, match="instance"):
        get_optimizer(opt, lr=0.1)


def test_get_optimizer_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: adam, adamw, rmsprop, sgd"):
        get_optimizer("adagrad")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_config_rebuilds_an_equal_optimizer(name):
    opt = OPTIMIZERS[name]()
    assert OPTIMIZERS[name](**opt.get_config()).get_config() == opt.get_config()
    assert repr(opt).startswith(type(opt).__name__ + "(lr=")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_step_after_one_check_equals_update(name):
    # The training loop checks once per epoch (prepare) and then calls step.
    rng = np.random.default_rng(4)
    opt = get_optimizer(name, alpha=0.1, clip_norm=2.0)
    a, b = [rng.normal(size=20)], [rng.normal(size=20)]
    b[0][...] = a[0]
    sa, sb = opt.init(a), opt.init(b)
    grads = [rng.normal(size=20)]
    lr = opt.prepare(b, grads, sb, 0.01)
    for _ in range(3):
        opt.update(a, grads, sa, lr=0.01)
        opt.step(b, grads, sb, lr)
    np.testing.assert_array_equal(a[0], b[0])
    assert sa.step == sb.step == 3


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_in_cache_sized_pieces_equals_the_whole_array_update(name, monkeypatch):
    """Adam runs its passes piece by piece over contiguous arrays; the split changes no bit,
    and a non-contiguous parameter (one piece, no flat copy) is still updated in place."""
    import jacnet.optimizers as optimizers

    rng = np.random.default_rng(0)
    base = rng.normal(size=(37, 29)).astype(np.float32)
    grads = [rng.normal(size=base.shape).astype(np.float32) for _ in range(4)]

    def run(piece_bytes: int, params: list[np.ndarray]) -> list[np.ndarray]:
        monkeypatch.setattr(optimizers, "_PIECE_BYTES", piece_bytes)
        opt = get_optimizer(name, lr=0.01)
        state = opt.init(params)
        for g in grads:
            opt.update(params, [g[: p.shape[0], : p.shape[1]] for p in params], state)
        return params

    whole = run(1 << 30, [base.copy()])
    pieces = run(4 * 50, [base.copy()])  # 50 float32 entries a piece: 22 pieces
    np.testing.assert_array_equal(pieces[0], whole[0])
    holder = np.zeros((37, 58), dtype=np.float32)
    strided = holder[:, ::2]  # not contiguous: updated whole, through the view
    strided[...] = base
    run(4 * 50, [strided])
    np.testing.assert_array_equal(holder[:, ::2], whole[0])
    assert not holder[:, 1::2].any()
