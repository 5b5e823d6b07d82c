"""Gauss-Newton (jacnet.gauss_newton): the streamed sums J^T W J and J^T W r in both forms
(syrk on chunks of J, the Kronecker structure of J) and the cost model between them, the
in-place mirror, the workspace, and Levenberg-Marquardt's system types (primal and dual,
their solve and their sum over partitions). The sums against JAX and finite differences on
every network of the random suite: test_network.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import jacnet as jn
import jacnet.gauss_newton as gn
from jacnet.gauss_newton import DualSystem, PrimalSystem
from jacnet.losses import get_loss


def gauss_newton_reference(J: np.ndarray, R: np.ndarray, w: np.ndarray) -> tuple:
    """``J^T W J`` and ``J^T W r`` from a full Jacobian; ``w`` is (N,) or (N, q)."""
    N, q, P = J.shape
    W = np.broadcast_to(w[:, None] if w.ndim == 1 else w, (N, q)).reshape(N * q)
    A = J.reshape(N * q, P)
    return A.T @ (W[:, None] * A), A.T @ (W * R.reshape(N * q))


def kronecker(layers, X, R, w=None, chunk=None):
    """The Kronecker form alone, whatever the cost model says (J^T W J mirrored)."""
    return gn._kronecker_sums(layers, X, gn._Terms(R, w), gn._Stream(chunk))


# ------------------------------------------------------------------ the streamed sums
def test_gauss_newton_streams_chunks_never_the_full_jacobian(monkeypatch, oracle, gn_form):
    """J^T W J is accumulated chunk by chunk: no array of N x n_out x P is ever filled
    (syrk form), or none at all (Kronecker form); the recursion runs once per chunk."""
    import jacnet.jacobian as jac

    net = jn.Network([jn.Dense(3, 7, "gelu"), jn.Dense(7, 4, "softmax")], seed=12)
    rng = np.random.default_rng(12)
    X, R, w = rng.normal(size=(10, 3)), rng.normal(size=(10, 4)), rng.uniform(0.5, 2, 10)
    ref = oracle.network(net, X)
    filled, fills = [], []
    rows, fill = jac.bias_rows, jac.fill_jacobian

    def spy(layers, cache, *args, **kwargs):
        filled.append(cache[-1][2].shape)  # the chunk's output (n, q)
        return rows(layers, cache, *args, **kwargs)

    monkeypatch.setattr(jac, "bias_rows", spy)
    monkeypatch.setattr(jac, "fill_jacobian", lambda *a, **k: fills.append(1) or fill(*a, **k))
    JtJ, Jtr = net.gauss_newton(X, R, weights=w, chunk=3)
    assert [shape[0] for shape in filled] == [3, 3, 3, 1]
    assert len(fills) == (4 if gn_form == "syrk" else 0)
    JtJ_ref, Jtr_ref = gauss_newton_reference(ref.J, R, w)
    oracle.check("gauss_newton JtWJ vs JAX", JtJ, JtJ_ref, 1e-10, "streamed, chunk=3")
    oracle.check("gauss_newton JtWr vs JAX", Jtr, Jtr_ref, 1e-10, "streamed, chunk=3")
    # without a chunk, the chunk follows the element budget: here 4 samples' worth
    filled.clear()
    widest = (net.n_out * net.n_params if gn_form == "syrk"  # a chunk of J, or the widest
              else max(u + v for *_, u, v in gn._kronecker_blocks(net.layers)))  # U and V
    monkeypatch.setattr(jac, "_CHUNK_ELEMENTS", 4 * widest)
    JtJ_default, _ = net.gauss_newton(X, R, weights=w)
    assert [shape[0] for shape in filled] == [4, 4, 2]
    np.testing.assert_allclose(JtJ_default, JtJ, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.usefixtures("gn_form")
def test_gauss_newton_without_mirror_holds_the_upper_triangle(chunk):
    """``mirror=False`` (Levenberg-Marquardt's system): the same upper triangle, zeros
    strictly below it, in Fortran order."""
    net = jn.Network([jn.Dense(3, 6, "tanh"), jn.Dense(6, 2, "identity")], seed=1)
    rng = np.random.default_rng(0)
    X, R = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    full, g_full = gn.normal_equations(net.layers, X, R, chunk=chunk)
    upper, g_upper = gn.normal_equations(net.layers, X, R, chunk=chunk, mirror=False)
    assert upper.flags.f_contiguous
    np.testing.assert_array_equal(upper, np.triu(full))
    np.testing.assert_array_equal(g_upper, g_full)
    assert not np.tril(upper, -1).any() and np.triu(full, 1).any()


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("P", [1, 2, 127, 128, 129, 300])
def test_mirror_upper_copies_the_upper_triangle_block_by_block(P, order):
    """gauss_newton's in-place mirror, across block edges (block 128); bit-exact (the
    diagonal blocks double their diagonal and halve it back)."""
    C = np.array(np.triu(np.random.default_rng(P).normal(size=(P, P))), order=order)
    C[0, 0] = 5e-324  # a subnormal diagonal survives the doubling and halving
    expected = np.triu(C) + np.triu(C, 1).T
    out = gn._mirror_upper(C)
    assert out is C
    np.testing.assert_array_equal(C, expected)
    with pytest.raises(ValueError, match="contiguous"):  # its diagonal view would be a copy
        gn._mirror_upper(np.zeros((2 * P + 2, 2 * P + 2))[::2, ::2])


def test_workspace_reuses_its_memory_and_grows_on_demand():
    ws = gn.Workspace()
    a = ws.array((3, 1, 4), np.dtype(np.float64))
    b = ws.array((2, 1, 4), np.dtype(np.float64))
    assert a.shape == (3, 1, 4) and b.shape == (2, 1, 4) and b.flags.c_contiguous
    assert np.shares_memory(a, b)  # a smaller request reuses the held buffer
    c = ws.array((5, 2, 4), np.dtype(np.float64))
    assert not np.shares_memory(a, c) and c.shape == (5, 2, 4)  # a larger one grows it
    d = ws.array((2, 2), np.dtype(np.float32))
    assert d.dtype == np.float32 and not np.shares_memory(c, d)  # another dtype: new memory


@pytest.mark.usefixtures("gn_form")
def test_gauss_newton_with_a_workspace_matches_fresh_buffers():
    """Successive systems through one workspace (different chunks, sizes and data) equal
    those built with a fresh buffer each: nothing of an earlier call leaks into a later."""
    rng = np.random.default_rng(3)
    net = jn.Network([jn.Dense(3, 6, "tanh"), jn.Dense(6, 2, "identity")], seed=1)
    ws = gn.Workspace()
    for N, chunk in [(40, None), (40, 7), (25, None), (60, 11)]:
        X = rng.normal(size=(N, 3))
        R = rng.normal(size=(N, 2))
        w = rng.uniform(0.5, 2.0, size=N)
        fresh = gn.normal_equations(net.layers, X, R, w, chunk=chunk)
        reused = gn.normal_equations(net.layers, X, R, w, chunk=chunk, workspace=ws)
        np.testing.assert_array_equal(reused[0], fresh[0])
        np.testing.assert_array_equal(reused[1], fresh[1])


@pytest.mark.usefixtures("gn_form")
def test_gauss_newton_refuses_all_zero_weights_in_either_shape():
    net = jn.Network([jn.Dense(2, 2)], seed=0)
    X, R = np.ones((3, 2)), np.ones((3, 2))
    for w in (np.zeros(3), np.zeros((3, 2))):
        with pytest.raises(ValueError, match="weights must not be all zero"):
            net.gauss_newton(X, R, weights=w)


# ------------------------------------------------------------------ the Kronecker form
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", [None, 7])
def test_kronecker_form_equals_syrk_form_for_every_system_lm_builds(monkeypatch, dtype, chunk):
    """The two forms of the Gauss-Newton system agree on what Levenberg-Marquardt asks of
    them: the logit models of the three fused pairs (with sample weights), a sum of squares
    with per-output weights, and Huber's weighted J^T H J with J^T g left unweighted."""
    rng = np.random.default_rng(5)
    N = 30
    X = rng.normal(size=(N, 4)).astype(dtype)
    cases = [("softmax", "cross_entropy", 3), ("sigmoid", "binary_cross_entropy", 2),
             ("exp", "poisson", 2), ("identity", "sse", 3), ("identity", "huber", 2),
             # one output (the cost model leaves it to syrk; forced here all the same)
             ("sigmoid", "binary_cross_entropy", 1), ("identity", "sse", 1),
             ("identity", "huber", 1)]
    tol = 1e-11 if dtype == np.float64 else 2e-4
    for out, loss, q in cases:
        net = jn.Network([jn.Dense(4, 6, "tanh"), jn.Dense(6, 5, "relu"),
                          jn.Dense(5, q, out)], seed=3, dtype=dtype)
        if loss == "cross_entropy":
            T = np.eye(q)[rng.integers(0, q, N)]
        elif loss in ("binary_cross_entropy", "poisson"):
            T = rng.integers(0, 3 if loss == "poisson" else 2, (N, q)).astype(float)
        else:
            T = rng.normal(size=(N, q))
        T = T.astype(dtype)
        Y = net(X)
        for w in (None, rng.uniform(0.2, 2.0, N).astype(dtype)):
            systems = {}
            for form in ("syrk", "kronecker"):
                monkeypatch.setattr(gn, "_kronecker_pays", lambda *args, f=form:
                                    f == "kronecker")
                system = gn.primal_system(net.layers, X, T, get_loss(loss), w, Y, chunk=chunk)
                systems[form] = system.JtHJ, system.Jtg
            (M_s, g_s), (M_k, g_k) = systems["syrk"], systems["kronecker"]
            where = (out, loss, None if w is None else "weighted")
            assert M_k.dtype == g_k.dtype == dtype, where
            scale = np.abs(M_s).max()
            np.testing.assert_allclose(M_k, M_s, rtol=tol, atol=tol * scale, err_msg=str(where))
            np.testing.assert_allclose(g_k, g_s, rtol=tol, atol=tol * np.abs(g_s).max(),
                                       err_msg=str(where))


def test_gauss_newton_takes_the_kronecker_form_where_it_pays(monkeypatch):
    """gauss_newton._kronecker_pays on networks of its fit: several outputs and layers of some
    width take the Kronecker form; one output, a wide layer fed by few inputs, a tiny
    network or few samples (placing the blocks is paid once per call) take syrk on J."""
    taken = []
    kron = gn._kronecker_sums
    monkeypatch.setattr(gn, "_kronecker_sums",
                        lambda *a, **k: taken.append("kronecker") or kron(*a, **k))
    rng = np.random.default_rng(0)
    for widths, N, form in [((13, 32, 32, 3), 2000, "kronecker"), ((64, 16, 10), 300, "kronecker"),
                            ((8, 64, 64, 2), 500, "kronecker"), ((13, 32, 32, 3), 20, "syrk"),
                            ((8, 64, 64, 1), 500, "syrk"), ((4, 100, 3), 500, "syrk"),
                            ((4, 10, 3), 500, "syrk"), ((1, 20, 1), 1000, "syrk"),
                            ((10, 32, 32, 1), 2000, "syrk")]:
        pairs = zip(widths[:-1], widths[1:], strict=True)
        net = jn.Network([jn.Dense(a, b, "tanh") for a, b in pairs], seed=0)
        taken.clear()
        net.gauss_newton(rng.normal(size=(N, widths[0])), np.ones((N, widths[-1])))
        assert (taken == ["kronecker"]) == (form == "kronecker"), (widths, N)


@pytest.mark.parametrize("widths", [(60, 50), (40, 40, 40), (30, 30, 30, 30), (20, 50, 50, 1),
                                    (30, 60, 1)])
def test_kronecker_form_holds_its_memory_bound(monkeypatch, widths):
    """The Kronecker form's peak stays within 1.5 P^2 entries besides its chunk buffers:
    J^T J, the block sums, and one column stripe at a time while the blocks are placed
    (a review measured 1.6-1.8 P^2 when each diagonal block was expanded whole)."""
    import tracemalloc

    monkeypatch.setattr(gn, "_kronecker_pays", lambda *args: True)
    pairs = zip(widths[:-1], widths[1:], strict=True)
    net = jn.Network([jn.Dense(a, b, "tanh") for a, b in pairs], seed=0)
    rng = np.random.default_rng(0)
    X, R = rng.normal(size=(20, widths[0])), rng.normal(size=(20, widths[-1]))
    tracemalloc.start()
    try:
        gn.normal_equations(net.layers, X, R)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / (8 * net.n_params**2) <= 1.5, peak / (8 * net.n_params**2)


def test_kronecker_form_that_overflows_where_j_does_not_gives_way_to_syrk(monkeypatch):
    """An input so large that it saturates its tanh (3e19 in float32): the Kronecker form's
    x * x overflows to inf * 0 = NaN where J's rows x * d are 0. gauss_newton then returns
    syrk's finite system, with no overflow warning; a NaN input stays NaN in both forms."""
    import warnings

    net = jn.Network([jn.Dense(3, 8, "tanh"), jn.Dense(8, 8, "tanh"), jn.Dense(8, 3)], seed=0,
                     dtype=np.float32)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    X[5, 0] = 3e19
    R = rng.normal(size=(200, 3)).astype(np.float32)
    with np.errstate(all="ignore"):
        raw = kronecker(net.layers, X, R)[0]
    assert np.isnan(raw).any()  # the case this guards against
    systems = {}
    for form in (False, True):
        monkeypatch.setattr(gn, "_kronecker_pays", lambda *args, f=form: f)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            systems[form] = gn.normal_equations(net.layers, X, R)
    for got, want in zip(systems[True], systems[False], strict=True):
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, want)
    X[7, 1] = np.nan
    for form in (False, True):
        monkeypatch.setattr(gn, "_kronecker_pays", lambda *args, f=form: f)
        systems[form] = gn.normal_equations(net.layers, X, R)
    np.testing.assert_array_equal(np.isnan(systems[True][0]), np.isnan(systems[False][0]))
    assert np.isnan(systems[True][0]).any()


def test_kronecker_form_takes_no_rows_one_dimensional_residuals_and_small_chunks():
    """What syrk on J accepts, the Kronecker form does too: no rows (zeros), a residual of
    shape (N,) for one output; and a chunk of a few samples keeps syrk (its loops run per
    chunk)."""
    net = jn.Network([jn.Dense(6, 5, "tanh"), jn.Dense(5, 1)], seed=0)
    JtJ, Jtr = kronecker(net.layers, np.zeros((0, 6)), np.zeros((0, 1)))
    assert JtJ.shape == (net.n_params,) * 2 and not JtJ.any() and not Jtr.any()
    rng = np.random.default_rng(1)
    X, r = rng.normal(size=(9, 6)), rng.normal(size=9)
    syrk = gn.normal_equations(net.layers, X, r[:, None])
    kron = kronecker(net.layers, X, r)
    for got, want in zip(kron, syrk, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    big = jn.Network([jn.Dense(13, 32, "tanh"), jn.Dense(32, 32, "tanh"), jn.Dense(32, 3)])
    assert gn._kronecker_pays(big.layers, 3, 1000)
    assert gn._kronecker_pays(big.layers, 3, 1000, chunk=500)
    assert not gn._kronecker_pays(big.layers, 3, 1000, chunk=3)


# ------------------------------------------------------- Levenberg-Marquardt's system
def test_dual_solve_equals_primal_solve():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 11))
    r = rng.normal(size=4)
    d_dual = DualSystem(A, r, A.T @ r, 1.0).solve(0.37)
    d_primal = PrimalSystem(A.T @ A, A.T @ r, 1.0).solve(0.37)
    np.testing.assert_allclose(d_dual, d_primal, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        d_primal, np.linalg.solve(A.T @ A + 0.37 * np.eye(11), -A.T @ r), rtol=1e-10
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_cholesky_solve_of_the_shifted_system(dtype, order):
    """LM's solve through LAPACK potrf/potrs: (M + mu I) x = rhs for either memory order,
    and LinAlgError (which makes LM raise mu) when M + mu I is not positive definite."""
    from scipy import linalg

    from jacnet.gauss_newton import cho_solve_shifted

    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 8))
    M = (A.T @ A).astype(dtype)
    rhs = rng.normal(size=8).astype(dtype)
    expected = np.linalg.solve(M.astype(np.float64) + 0.5 * np.eye(8), rhs)
    x = cho_solve_shifted(np.array(M, order=order), 0.5, rhs)
    assert x.dtype == dtype
    np.testing.assert_allclose(x, expected, rtol=1e-4 if dtype == np.float32 else 1e-10)
    indefinite = np.array(np.diag([1.0, -2.0, 3.0]), dtype=dtype, order=order)
    with pytest.raises(linalg.LinAlgError, match="not positive definite"):
        cho_solve_shifted(indefinite, 0.5, np.ones(3, dtype=dtype))
    # Only the upper triangle is read: what lies strictly below it does not matter.
    upper = np.array(np.triu(M) + np.tril(np.full_like(M, np.nan), -1), order=order)
    np.testing.assert_array_equal(cho_solve_shifted(upper, 0.5, rhs), x)
    with pytest.raises(ValueError, match="contiguous"):
        cho_solve_shifted(np.eye(6, dtype=dtype)[::2, ::2], 0.5, np.ones(3, dtype=dtype))


# A confidently wrong output: softmax below eps, a sigmoid rounded to 1, an exp output
# underflowed. The Gauss-Newton system comes from the logits, so its gradient is exact.
# A hidden layer makes N q < P, so the dual form is taken wherever it loses nothing.
SATURATED = {
    "softmax": ("softmax", "cross_entropy", 30.0, lambda n: np.tile([0.0, 1.0], (n, 1))),
    "sigmoid": ("sigmoid", "binary_cross_entropy", 30.0, lambda n: np.zeros((n, 1))),
    "exp": ("exp", "poisson", -150.0, lambda n: np.full((n, 1), 5.0)),
}


@pytest.mark.usefixtures("gn_form")
@pytest.mark.parametrize("case", sorted(SATURATED))
def test_lm_system_gradient_is_exact_for_saturated_outputs(case):
    act, loss, w, targets = SATURATED[case]
    X = np.linspace(0.5, 1.5, 10)[:, None]
    T = targets(10)
    q = T.shape[1]
    net = jn.Network([jn.Dense(1, 8, "tanh"), jn.Dense(8, q, act)], seed=0)
    net.layers[0].W = np.ones((1, 8))
    net.layers[1].W = np.tile([w, -w][:q], (8, 1))
    assert 10 * q < net.n_params  # the dual form's condition
    value, grad = net.loss_and_flat_grad(X, T, loss)  # the fused, exact gradient
    Y = net.forward(X)
    model = get_loss(loss).logit_model(net.layers[-1].activation, Y, T, None)
    for dual in (False, True):
        build = gn.gauss_newton_system if dual else gn.primal_system
        system = build(net.layers, X, T, get_loss(loss), None, Y)
        is_dual = isinstance(system, DualSystem)
        assert is_dual == (dual and model.dual_r is not None)
        assert np.isfinite(system.Jtg).all() and (is_dual or np.isfinite(system.JtHJ).all())
        np.testing.assert_allclose(system.scale * system.Jtg, grad, rtol=1e-10, atol=1e-300)
    if case == "softmax":  # tiny but positive outputs: the dual form is exact and taken
        assert model.dual_r is not None
    rec = jn.train(net, X, T, solver="lm", loss=loss, max_epochs=30)
    assert rec.epochs[-1]["loss"] < 0.5 * value  # LM trains instead of stopping at once


def _small_problem(N: int, seed: int = 0):
    """A 2-4-2 network (P = 22) on N samples with targets and sample weights."""
    rng = np.random.default_rng(seed)
    net = jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 2)], seed=seed)
    X, T = rng.normal(size=(N, 2)), rng.normal(size=(N, 2))
    return net, X, T, rng.uniform(0.5, 2.0, N)


@pytest.mark.usefixtures("gn_form")
@pytest.mark.parametrize("loss", ["sse", "mse", "huber"])
def test_system_types_solve_the_dense_damped_system(loss):
    """Primal and dual ``solve(mu)`` both give d of (J^T H J + mu I) d = -J^T g, written
    out with numpy from the full Jacobian and the loss's own terms; ``grad_norm`` is the
    norm of the loss's gradient."""
    net, X, T, w = _small_problem(5)  # N q = 10 < P = 22: the dual form is taken
    Y, f = net(X), get_loss(loss)
    T = Y + 0.3 * T  # within Huber's quadratic part (H > 0), which the dual form needs
    H, g, scale = f.gauss_newton_terms(Y, T, w)
    J = net.jacobian(X).reshape(-1, net.n_params)
    M, Jtg = J.T @ (H.reshape(-1, 1) * J), J.T @ g.ravel()
    dual = gn.gauss_newton_system(net.layers, X, T, f, w, Y)
    primal = gn.primal_system(net.layers, X, T, f, w, Y)
    assert isinstance(dual, DualSystem) and isinstance(primal, PrimalSystem)
    _, grad = net.loss_and_flat_grad(X, T, loss, w)
    for mu in (1e-3, 0.7):
        d = np.linalg.solve(M + mu * np.eye(net.n_params), -Jtg)
        for system in (primal, dual):
            np.testing.assert_allclose(system.solve(mu), d, rtol=1e-8, atol=1e-12)
            assert system.grad_norm == pytest.approx(np.linalg.norm(grad), rel=1e-10)
            assert system.scale == scale
    np.testing.assert_allclose(primal.JtHJ, np.triu(M), rtol=1e-12, atol=1e-12)


def test_system_types_return_none_where_not_positive_definite():
    """A system that is not positive definite at this mu solves to None (LM then raises
    mu), and the solve leaves the system as it was (it may be tried at another mu)."""
    M = np.asfortranarray(np.diag([1.0, -2.0, 3.0]))
    primal = PrimalSystem(M, np.ones(3), 1.0)
    assert primal.solve(0.5) is None
    np.testing.assert_array_equal(primal.JtHJ, np.diag([1.0, -2.0, 3.0]))
    assert primal.solve(2.5) is not None  # positive definite once mu lifts the -2
    A = np.ones((2, 3))
    dual = DualSystem(A, np.ones(2), A.T @ np.ones(2), 1.0)
    assert dual.solve(-1.0) is None  # A A^T has a zero eigenvalue: -1 makes it negative
    assert dual.solve(1.0) is not None


@pytest.mark.usefixtures("gn_form")
def test_partitions_systems_add_up_to_the_system_of_the_concatenated_data():
    """The sums over samples are plain sums: two partitions' primal systems added equal
    the system of all rows (and their dual systems, stacked, solve to the same step); the
    sum makes new arrays. A mean loss's scale depends on the whole data set, so systems
    of different scale refuse to add until the whole's scale is set."""
    net, X, T, w = _small_problem(30, seed=1)
    f = get_loss("sse")
    parts = [slice(0, 18), slice(18, 30)]

    def primal(rows, loss=f):
        return gn.primal_system(net.layers, X[rows], T[rows], loss, w[rows], net(X[rows]))

    whole, (a, b) = primal(slice(None)), [primal(rows) for rows in parts]
    a_before = a.JtHJ.copy()
    total = a + b
    np.testing.assert_array_equal(a.JtHJ, a_before)  # the operands stay as they were
    np.testing.assert_allclose(total.JtHJ, whole.JtHJ, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(total.Jtg, whole.Jtg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(total.solve(0.1), whole.solve(0.1), rtol=1e-9, atol=1e-12)
    mse = get_loss("mse")
    whole, (a, b) = primal(slice(None), mse), [primal(rows, mse) for rows in parts]
    with pytest.raises(ValueError, match="share its scale"):
        a + b  # noqa: B018
    total = dataclasses.replace(a, scale=whole.scale) + dataclasses.replace(b, scale=whole.scale)
    np.testing.assert_allclose(total.solve(0.1), whole.solve(0.1), rtol=1e-9, atol=1e-12)
    few = [slice(0, 3), slice(3, 5)]  # N q = 10 < P = 22: dual systems
    duals = [gn.gauss_newton_system(net.layers, X[r], T[r], f, w[r], net(X[r])) for r in few]
    whole = gn.gauss_newton_system(net.layers, X[:5], T[:5], f, w[:5], net(X[:5]))
    assert all(isinstance(d, DualSystem) for d in [*duals, whole])
    total = duals[0] + duals[1]
    assert total.A.shape == whole.A.shape
    np.testing.assert_allclose(total.solve(0.1), whole.solve(0.1), rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError):
        duals[0] + primal(slice(None))  # noqa: B018
