"""Tests of jacnet.solvers and the full-batch solvers of ``train``: Levenberg-Marquardt
against its system written out by hand with numpy, L-BFGS against lstsq and scipy. The
system itself (its types, its solve, the objective that builds it) is tested in
test_gauss_newton.py and test_objective.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import flat_jacobian, sin_data, sin_net
from scipy import optimize

import jacnet as jn
from jacnet.gauss_newton import DualSystem
from jacnet.losses import get_loss
from jacnet.objective import Objective
from jacnet.solvers import LevenbergMarquardt

# Every test here runs with both forms of the Gauss-Newton system (conftest.gn_form).
pytestmark = pytest.mark.usefixtures("gn_form")

MU_MIN = 1e-20  # trainlm's floor on mu, as in solvers.py





def loss_at(net: jn.Network, theta: np.ndarray, X, T, loss: str, w=None) -> float:
    probe = net.copy()
    probe.theta[...] = theta
    return probe.loss(X, T, loss, w)


def lm_for(net, X, T, loss="mse", w=None, alpha=0.0, **kw) -> LevenbergMarquardt:
    return LevenbergMarquardt(**kw).bind(Objective(net, X, T, get_loss(loss), w, alpha))


def one_step(net, X, T, loss="mse", w=None, mu=1e-2) -> np.ndarray:
    """The step d that one LM iteration takes from the network's theta (net untouched)."""
    probe = net.copy()
    theta0 = probe.get_flat()
    step = lm_for(probe, X, T, loss, w, mu=mu).step()
    assert step.accepted and step.trials == 1
    return probe.theta - theta0


# ------------------------------------------------------------------ Levenberg-Marquardt
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lm_sin_reaches_goal(seed):
    X, T = sin_data(60)
    net = sin_net(seed)
    rec = jn.train(net, X, T, solver="lm", loss="mse", goal=0.002, max_epochs=400)
    assert rec.stop_reason == "goal"
    assert rec.epochs[-1]["loss"] <= 0.002
    assert net.loss(X, T, "mse") == pytest.approx(rec.epochs[-1]["loss"], rel=1e-12)
    assert all(e["loss"] > 0.002 for e in rec.epochs[:-1])


def test_lm_step_solves_damped_normal_equations_and_updates_mu():
    # Each iteration, by hand: trial k solves (J^T J + mu_k I) d = -J^T e with
    # mu_k = mu0 * mu_inc^k; failed trials do not lower the loss; the accepted one does and
    # leaves mu_k * mu_dec.
    X, T = sin_data(40)
    net = sin_net(0)
    lm = lm_for(net, X, T, "mse", mu=1e-6, mu_dec=0.1, mu_inc=10.0)
    P, N = net.n_params, X.shape[0]
    seen_failure = seen_first_try = False
    for _ in range(12):
        theta0, mu0 = net.get_flat(), lm.mu
        J = flat_jacobian(net, X)
        e = (net(X) - T).ravel()
        loss0 = net.loss(X, T, "mse")
        step = lm.step()
        assert step.accepted
        mu = mu0
        for _ in range(step.trials - 1):  # the failed trials, in order
            d_fail = np.linalg.solve(J.T @ J + mu * np.eye(P), -J.T @ e)
            assert not loss_at(net, theta0 + d_fail, X, T, "mse") < loss0
            mu *= 10.0
            seen_failure = True
        seen_first_try |= step.trials == 1
        d = np.linalg.solve(J.T @ J + mu * np.eye(P), -J.T @ e)
        np.testing.assert_allclose(net.theta - theta0, d, rtol=1e-8, atol=1e-12)
        assert lm.mu == step.mu == max(mu * 0.1, MU_MIN)
        assert step.loss == pytest.approx(net.loss(X, T, "mse"), rel=1e-12)
        assert step.loss < loss0
        # the reported gradient is the one at the start point: d mse/d theta = 2/N J^T e
        assert step.grad_norm == pytest.approx(np.linalg.norm(2 / N * J.T @ e), rel=1e-10)
    assert seen_failure and seen_first_try


def test_lm_rejected_iteration_restores_theta_and_raises_mu_past_mu_max():
    X, T = sin_data(20)
    net = sin_net(1)
    lm = lm_for(net, X, T, "mse", mu=1e-3, mu_inc=10.0, mu_max=1e-3)
    lm.obj.value = lambda: (1.0, (net(X), None))  # a loss that no step can lower
    theta0 = net.get_flat()
    step = lm.step()
    assert not step.accepted and step.trials == 1
    assert lm.mu == pytest.approx(1e-2)
    np.testing.assert_array_equal(net.theta, theta0)


@pytest.mark.parametrize("weighted", [False, True])
def test_lm_overparameterised_step_equals_primal_by_hand(weighted):
    # N * n_out = 4 < P = 16: LM solves the dual system; the step must equal the primal one.
    X = np.array([[-2.0], [-0.5], [0.7], [1.9]])
    T = np.sin(X)
    w = np.array([1.0, 3.0, 0.5, 2.0]) if weighted else None
    net = sin_net(2)
    lm = lm_for(net.copy(), X, T, "sse", w)
    assert isinstance(lm.obj.system(lm.obj.value()[1]), DualSystem)  # the dual form was chosen
    J = flat_jacobian(net, X)
    Wd = np.diag(np.ones(4) if w is None else w)
    e = (net(X) - T).ravel()
    d = np.linalg.solve(J.T @ Wd @ J + 1e-2 * np.eye(net.n_params), -J.T @ Wd @ e)
    np.testing.assert_allclose(one_step(net, X, T, "sse", w), d, rtol=1e-7, atol=1e-12)


def test_lm_step_is_the_same_for_sse_mse_and_unit_weights():
    # trainlm's mu: the system is (J^T J + mu I) d = -J^T e, not divided by N.
    X, T = sin_data(30)
    net = sin_net(3)
    d = one_step(net, X, T, "sse")
    np.testing.assert_allclose(one_step(net, X, T, "mse"), d, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(one_step(net, X, T, "mse", np.ones(30)), d, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(one_step(net, X, T, "sse", np.ones(30)), d, rtol=1e-10, atol=1e-14)


def test_lm_weighted_step_matches_duplicated_samples_and_hand_system():
    X, T = sin_data(30)
    net = sin_net(4)
    w = np.ones(30)
    w[[0, 7, 19]] = [2.0, 3.0, 2.0]
    rows = np.repeat(np.arange(30), w.astype(int))
    d_dup = one_step(net, X[rows], T[rows], "sse")
    for loss in ("sse", "mse"):
        np.testing.assert_allclose(one_step(net, X, T, loss, w), d_dup, rtol=1e-9, atol=1e-13)
    J = flat_jacobian(net, X)
    e = (net(X) - T).ravel()
    d = np.linalg.solve(J.T @ (w[:, None] * J) + 1e-2 * np.eye(net.n_params), -J.T @ (w * e))
    np.testing.assert_allclose(d_dup, d, rtol=1e-8, atol=1e-13)


def test_lm_alpha_enters_the_system():
    # mse + alpha/2 ||W||^2 divided by scale = 2/N: c = alpha N / 2 on the weights' diagonal.
    X, T = sin_data(25)
    N, alpha, mu = 25, 0.3, 1e-2
    net = sin_net(5)
    M = net.weight_mask()
    theta0 = net.get_flat()
    J = flat_jacobian(net, X)
    e = (net(X) - T).ravel()
    c = alpha * N / 2
    d = np.linalg.solve(J.T @ J + np.diag(c * M) + mu * np.eye(net.n_params),
                        -(J.T @ e + c * M * theta0))
    lm = lm_for(net, X, T, "mse", alpha=alpha, mu=mu)
    step = lm.step()
    assert step.accepted and step.trials == 1
    # atol: the step's entries are O(1); those near 1e-13 are the solve's rounding, which
    # J.T @ J here and the system's own summation order round differently
    np.testing.assert_allclose(net.theta - theta0, d, rtol=1e-8, atol=1e-12)
    _, g = sin_net(5).loss_and_flat_grad(X, T, "mse")
    assert step.grad_norm == pytest.approx(np.linalg.norm(g + alpha * M * theta0), rel=1e-10)
    penalty = 0.5 * alpha * float(np.sum((M * net.theta) ** 2))
    assert step.loss == pytest.approx(net.loss(X, T, "mse") + penalty, rel=1e-12)
    assert np.any(M == 0)  # biases are spared: the test above would catch a full diagonal


def blobs(n_per: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = np.concatenate([c + 0.7 * rng.normal(size=(n_per, 2)) for c in centres])
    T = np.repeat(np.eye(3), n_per, axis=0)
    return X, T


def test_lm_cross_entropy_step_is_generalised_gauss_newton_at_the_logits():
    # GGN split at the softmax's logits z: (sum_s J_z^T (diag y - y y^T) J_z + mu I) d
    # = -sum_s J_z^T (y - t), both unnormalised; J_z from a twin net with identity output.
    X, T = blobs(10)
    net = jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 3, "softmax")], seed=0)
    logits = jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 3)], seed=0)
    logits.set_flat(net.theta)
    Jz = logits.jacobian(X)  # (N, 3, P)
    Y = net(X)
    S = np.einsum("si,ij->sij", Y, np.eye(3)) - np.einsum("si,sj->sij", Y, Y)
    G = np.einsum("sip,sij,sjq->pq", Jz, S, Jz)
    g = np.einsum("sip,si->p", Jz, Y - T)
    d = np.linalg.solve(G + 1.0 * np.eye(net.n_params), -g)
    np.testing.assert_allclose(one_step(net, X, T, "cross_entropy", mu=1.0), d, rtol=1e-7,
                               atol=1e-12)


def test_lm_cross_entropy_softmax_trains_monotonically():
    X, T = blobs(30)
    net = jn.Network([jn.Dense(2, 6, "tanh"), jn.Dense(6, 3, "softmax")], seed=1)
    loss0 = net.loss(X, T, "cross_entropy")
    rec = jn.train(net, X, T, solver="lm", loss="cross_entropy", max_epochs=40)
    losses = rec.column("loss")
    assert rec.n_epochs >= 10
    # Every accepted step lowers the loss; a final min_grad entry records the same theta.
    steps = losses[:-1] if rec.stop_reason == "min_grad" else losses
    assert np.all(np.diff(steps) < 0) and losses[0] < loss0
    assert losses[-1] < 0.2 * loss0
    assert (net(X).argmax(1) == T.argmax(1)).mean() > 0.95


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_lm_in_row_chunks_equals_lm_in_one_pass(loss):
    # chunk bounds every pass over the samples (the loss value's forward pass included):
    # the same epochs, losses and theta as one pass over all rows, up to rounding.
    X, T = blobs(30)
    if loss == "mse":
        T = T @ np.array([[1.0], [-2.0], [0.5]]) + X[:, :1]
    out = "softmax" if loss == "cross_entropy" else "identity"
    net = jn.Network([jn.Dense(2, 6, "tanh"), jn.Dense(6, T.shape[1], out)], seed=1)
    whole, chunked = net.copy(), net.copy()
    w = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    value, Y, _ = whole.evaluate(X, T, get_loss(loss), w)
    value_c, Y_c, _ = chunked.evaluate(X, T, get_loss(loss), w, chunk=7)
    np.testing.assert_allclose(Y_c, Y, rtol=1e-14, atol=1e-15)
    assert value_c == pytest.approx(value, rel=1e-14)
    r1 = jn.train(whole, X, T, solver="lm", loss=loss, sample_weight=w, max_epochs=8)
    r2 = jn.train(chunked, X, T, solver="lm", loss=loss, sample_weight=w, max_epochs=8, chunk=7)
    assert (r2.n_epochs, r2.stop_reason) == (r1.n_epochs, r1.stop_reason)
    np.testing.assert_allclose(r2.column("loss"), r1.column("loss"), rtol=1e-9)
    # theta only to 1e-5: the Gauss-Newton sums run in another order, and LM's near-
    # singular steps (cross-entropy's flat directions) amplify rounding in theta, not loss
    np.testing.assert_allclose(chunked.theta, whole.theta, rtol=1e-5, atol=1e-8)


def linear_problem(seed: int = 0, n: int = 50, n_in: int = 4, n_out: int = 2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    T = X @ rng.normal(size=(n_in, n_out)) + 0.3 + 0.1 * rng.normal(size=(n, n_out))
    A = np.hstack([X, np.ones((n, 1))])
    sol = np.linalg.lstsq(A, T, rcond=None)[0]
    theta = np.concatenate([sol[:n_in].ravel(), sol[n_in]])  # [W.ravel(), b]
    return X, T, theta


def test_lm_at_the_minimum_stops_with_mu_max():
    X, T, theta_ls = linear_problem()
    net = jn.Network([jn.Dense(4, 2)], seed=0)
    net.set_flat(theta_ls)
    rec = jn.train(net, X, T, solver="lm", loss="mse", min_grad=0.0, max_epochs=50)
    assert rec.stop_reason == "mu_max" and rec.n_epochs <= 2  # rounding may allow a step
    np.testing.assert_allclose(net.theta, theta_ls, rtol=0, atol=1e-13)


def test_lm_tiny_mu_max_stops_with_mu_max():
    X, T = sin_data(20)
    net = sin_net(0)
    theta0 = net.get_flat()
    rec = jn.train(net, X, T, solver="lm", mu=1e-3, mu_max=1e-4, min_grad=0.0, max_epochs=50)
    assert rec.stop_reason == "mu_max" and rec.n_epochs == 0
    np.testing.assert_array_equal(net.theta, theta0)


def test_lm_min_grad_stops_once_the_gradient_is_small():
    # Linear least squares: the first LM step almost solves it, the next gradient is tiny.
    X, T, theta_ls = linear_problem(1)
    net = jn.Network([jn.Dense(4, 2)], seed=0)
    rec = jn.train(net, X, T, solver="lm", loss="mse", min_grad=1e-6, max_epochs=50)
    assert rec.stop_reason == "min_grad"
    g = rec.column("grad_norm")
    assert g[-1] < 1e-6 and np.all(g[:-1] >= 1e-6)
    np.testing.assert_allclose(net.theta, theta_ls, atol=1e-6)


# ----------------------------------------------------------------------------- L-BFGS
def scipy_lbfgs(X, T, theta0, **options) -> optimize.OptimizeResult:
    probe = jn.Network([jn.Dense(X.shape[1], T.shape[1])], seed=0)

    def fun(theta):
        probe.theta[...] = theta
        return probe.loss_and_flat_grad(X, T, "mse")

    return optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", options=options)


def test_lbfgs_linear_least_squares_matches_lstsq_and_scipy():
    # A linear layer with mse is linear least squares on [X, 1]. tol=0 keeps scipy's own
    # ftol (2.2e-9 relative), which stops short of 1e-6; a tiny tol runs to the solution.
    X, T, theta_ls = linear_problem(2)
    net = jn.Network([jn.Dense(4, 2, "identity")], seed=0)
    theta0 = net.get_flat()
    rec = jn.train(net, X, T, solver="lbfgs", loss="mse", max_epochs=500, min_grad=1e-12,
                   tol=1e-15)
    assert rec.stop_reason in ("converged", "min_grad")
    np.testing.assert_allclose(net.theta, theta_ls, atol=1e-9)
    res = scipy_lbfgs(X, T, theta0, maxiter=500, gtol=1e-12, ftol=1e-15)
    np.testing.assert_allclose(net.theta, res.x, atol=1e-12)
    assert rec.n_epochs == res.nit


def test_lbfgs_default_tol_follows_scipy_default():
    X, T, theta_ls = linear_problem(2)
    net = jn.Network([jn.Dense(4, 2, "identity")], seed=0)
    theta0 = net.get_flat()
    rec = jn.train(net, X, T, solver="lbfgs", loss="mse", max_epochs=500, min_grad=1e-12, tol=0)
    res = scipy_lbfgs(X, T, theta0, maxiter=500, gtol=1e-12)
    assert rec.stop_reason == "converged"
    np.testing.assert_allclose(net.theta, res.x, atol=1e-12)
    np.testing.assert_allclose(net.theta, theta_ls, atol=1e-5)
    assert rec.column("loss")[-1] == pytest.approx(res.fun, rel=1e-12)


def test_lbfgs_records_every_iteration_with_the_true_gradient_norm():
    X, T = sin_data(30)
    net = sin_net(0)
    rec = jn.train(net, X, T, solver="lbfgs", loss="mse", max_epochs=15)
    assert rec.stop_reason == "max_epochs" and rec.n_epochs == 15
    _, g = net.loss_and_flat_grad(X, T, "mse")
    assert rec.epochs[-1]["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-10)
    assert rec.epochs[-1]["loss"] == pytest.approx(net.loss(X, T, "mse"), rel=1e-12)
    assert all(math.isfinite(e["loss"]) for e in rec.epochs)


# ------------------------------------------------- the solver protocol and options
def test_solver_registry_names_every_solver():
    from jacnet.minibatch import MiniBatch
    from jacnet.training import SOLVERS, STOCHASTIC

    assert set(SOLVERS) == {"sgd", "adam", "adamw", "rmsprop", "lbfgs", "lm", "br"}
    assert set(STOCHASTIC) == set(jn.OPTIMIZERS)
    assert all(issubclass(SOLVERS[n], MiniBatch) for n in STOCHASTIC)
    assert jn.SOLVERS is SOLVERS


def test_solver_settings_come_from_the_constructor():
    from jacnet.training import SOLVERS

    assert LevenbergMarquardt.settings() == ("mu", "mu_dec", "mu_inc", "mu_max", "chunk")
    assert SOLVERS["lbfgs"].settings() == ("max_fun",)
    sgd = SOLVERS["sgd"].settings()
    assert {"lr", "batch_size", "schedule", "max_retries", "momentum", "nesterov"} <= set(sgd)
    assert "rule" not in sgd and "alpha" not in sgd  # alpha is the loop's
    assert {"beta_1", "beta_2", "epsilon"} <= set(SOLVERS["adam"].settings())


@pytest.mark.parametrize("solver, option, owners", [
    ("lm", "lr", "sgd, adam, adamw, rmsprop"),
    ("lbfgs", "batch_size", "sgd, adam, adamw, rmsprop"),
    ("adam", "mu", "lm"),
    ("sgd", "max_fun", "lbfgs"),
    ("adam", "momentum", "sgd, rmsprop"),
])
def test_train_refuses_a_setting_of_another_solver_by_name(solver, option, owners):
    X, T = sin_data()
    with pytest.raises(TypeError, match=f"'{option}' is a setting of {owners}"):
        jn.train(sin_net(), X, T, solver=solver, max_epochs=1, **{option: 1})


def test_train_refuses_an_unknown_option_listing_the_valid_ones():
    X, T = sin_data()
    with pytest.raises(TypeError, match="learning_rate.*valid options: .*max_epochs.*goal.*mu"):
        jn.train(sin_net(), X, T, solver="lm", learning_rate=0.1)


def test_train_refuses_solver_settings_with_a_solver_object():
    X, T = sin_data()
    with pytest.raises(TypeError, match="mu.*solver instance"):
        jn.train(sin_net(), X, T, LevenbergMarquardt(), mu=0.1)


def test_solver_object_equals_the_named_solver():
    from jacnet.minibatch import MiniBatch

    X, T = sin_data()
    a, b, c = sin_net(), sin_net(), sin_net()
    opts = {"max_epochs": 4, "seed": 1}
    jn.train(a, X, T, "adam", lr=0.01, batch_size=8, beta_1=0.8, **opts)
    jn.train(b, X, T, MiniBatch("adam", lr=0.01, batch_size=8, beta_1=0.8), **opts)
    jn.train(c, X, T, "adam", lr=0.01, batch_size=8, optimizer_options={"beta_1": 0.8}, **opts)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta, c.theta)


@pytest.mark.parametrize("make", [
    lambda: jn.MiniBatch("adam", lr=0.01, batch_size=8, shuffle=False),
    lambda: LevenbergMarquardt(),
], ids=["adam", "lm"])
def test_solver_object_trained_twice_continues_its_state(make):
    """Adam's moments and LM's mu stay in the object: two calls of 3 epochs are one of 6."""
    X, T = sin_data()
    once, twice = sin_net(), sin_net()
    jn.train(once, X, T, make(), max_epochs=6, min_grad=0.0)
    solver = make()
    jn.train(twice, X, T, solver, max_epochs=3, min_grad=0.0)
    jn.train(twice, X, T, solver, max_epochs=3, min_grad=0.0)
    np.testing.assert_array_equal(twice.theta, once.theta)
    fresh = make()
    fresh.continue_from(solver)  # what an estimator's warm start does
    assert getattr(fresh, "mu", None) == getattr(solver, "mu", None)
    assert getattr(fresh, "state", None) is getattr(solver, "state", None)


def test_solver_releases_the_data_after_a_run():
    X, T = sin_data()
    lm = LevenbergMarquardt()
    jn.train(sin_net(), X, T, lm, max_epochs=2)
    assert lm.obj is None  # an estimator that keeps its solver does not keep the data
    adam = jn.MiniBatch("adam")
    jn.train(sin_net(), X, T, adam, max_epochs=2)
    assert not hasattr(adam, "_backprop") and adam.state is not None


def test_lm_epoch_gives_mu_and_its_own_stop_reason():
    X, T = sin_data()
    rec = jn.train(sin_net(), X, T, "lm", mu=1e11, max_epochs=5)  # mu above mu_max at once
    assert rec.stop_reason == "mu_max" and rec.n_epochs == 0
    rec = jn.train(sin_net(), X, T, "lm", max_epochs=2)
    assert all("mu" in e for e in rec.epochs)


def test_lm_outputs_on_are_its_accepted_trials_outputs_at_those_weights_only():
    """``outputs_on(X)``: the outputs of LM's last evaluation, on its own rows and at the
    weights evaluated; None for other rows, other weights, and once released."""
    X, T = sin_data(30)
    net = sin_net(2)
    lm = lm_for(net, X, T)
    assert lm.outputs_on(X) is None  # nothing evaluated yet
    lm.value()
    np.testing.assert_allclose(lm.outputs_on(X), net(X), rtol=1e-13, atol=1e-15)
    for _ in range(3):
        assert lm.step().accepted
        Y = lm.outputs_on(X)
        assert Y is lm.value()[1][0]  # no evaluation of its own
        np.testing.assert_allclose(Y, net(X), rtol=1e-13, atol=1e-15)
    assert lm.outputs_on(X.copy()) is None  # not its rows
    theta = net.get_flat()
    net.theta[0] += 1.0
    assert lm.outputs_on(X) is None  # not its weights
    net.theta[...] = theta
    assert lm.outputs_on(X) is not None
    assert lm.obj.outputs(None) is None  # an objective whose state holds no outputs
    lm.release()
    assert lm.outputs_on(X) is None
    assert jn.LBFGS().outputs_on(X) is None  # a solver that holds none


def test_lm_estimator_measures_in_data_units_reuse_lms_outputs(monkeypatch):
    """An LM fit with a goal runs no forward pass of its own per epoch for the goal's mean
    squared error and scikit-learn's loss: both come from LM's accepted trial (and agree
    with the fitted model's predictions). The one forward pass is the goal's test of the
    initial weights, before LM has evaluated them."""
    X, T = sin_data(50)
    y = 3.0 * T.ravel() + 1.0  # standardised inside the model: the data's units differ
    calls = []
    forward = jn.Network.forward
    monkeypatch.setattr(jn.Network, "forward", lambda self, X: calls.append(1) or forward(self, X))
    est = jn.MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", solver="lm", goal=1e-9,
                          max_iter=6, random_state=0)
    with pytest.warns(Warning):  # the goal is out of reach in 6 epochs
        est.fit(X, y)
    assert calls == [1] and est.n_iter_ == 6
    record = est.training_record_.epochs[-1]
    mse = float(np.mean((est.predict(X) - y) ** 2))
    assert record["mse"] == pytest.approx(mse, rel=1e-12)
    assert est.loss_curve_[-1] == record["loss_sklearn"]
