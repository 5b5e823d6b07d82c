"""The training objective (jacnet.objective): its value, gradient and Gauss-Newton system
with the L2 penalty, and the forward pass that the system reuses."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import flat_jacobian, sin_data, sin_net

import jacnet as jn
from jacnet.losses import get_loss
from jacnet.objective import Objective
from jacnet.solvers import LevenbergMarquardt

# Every test here runs with both forms of the Gauss-Newton system (conftest.gn_form).
pytestmark = pytest.mark.usefixtures("gn_form")


def test_objective_value_and_grad_include_the_l2_penalty_on_weights_only():
    X, T = sin_data(15)
    net = sin_net(6)
    obj = Objective(net, X, T, get_loss("sse"), None, alpha=0.5)
    value, grad = obj.value_and_grad()
    M = net.weight_mask()
    v0, g0 = net.loss_and_flat_grad(X, T, "sse")
    assert value == pytest.approx(v0 + 0.25 * float(np.sum((M * net.theta) ** 2)), rel=1e-13)
    np.testing.assert_allclose(grad, g0 + 0.5 * M * net.theta, rtol=1e-13)
    assert obj.value()[0] == pytest.approx(value, rel=1e-13)


def test_lm_system_holds_the_upper_triangle_that_the_solve_reads():
    """The objective's primal system is left unmirrored: J^T J's upper triangle (with the
    penalty's diagonal), zeros strictly below; the steps above check what LM makes of it."""
    X, T = sin_data(25)
    net = sin_net(5)
    obj = Objective(net, X, T, get_loss("mse"), None, alpha=0.3)
    JtHJ = obj.system(obj.value()[1]).JtHJ
    J = flat_jacobian(net, X)
    expected = J.T @ J + np.diag(0.3 * 25 / 2 * net.weight_mask())
    np.testing.assert_allclose(JtHJ, np.triu(expected), rtol=1e-12, atol=1e-12)
    assert not np.tril(JtHJ, -1).any()


def _few_rows(case: str) -> Objective:
    """N q < P: 5 samples of sin on a 1-5-1 net (P = 16), or 4 samples of 3 classes on
    a 2-6-3 softmax net (P = 39, cross-entropy: the fused pair's dual form), with sample
    weights and an L2 penalty."""
    rng = np.random.default_rng(5)
    if case == "mse":
        X, T = sin_data(5)
        net, loss = sin_net(2), "mse"
    else:
        X, T = rng.normal(size=(4, 2)), np.eye(3)[[0, 1, 2, 1]]
        net = jn.Network([jn.Dense(2, 6, "tanh"), jn.Dense(6, 3, "softmax")], seed=2)
        loss = "cross_entropy"
    return Objective(net, X, T, get_loss(loss), rng.uniform(0.5, 2, len(X)), alpha=0.4)


def _primal(obj: Objective) -> None:
    """Make ``obj`` build the primal system however few its rows (the reference)."""
    import jacnet.gauss_newton as gn

    def data_system(state, chunk):
        Y, cache = state
        return gn.primal_system(obj.net.layers, obj.X, obj.T, obj.loss, obj.w, Y, chunk=chunk,
                                cache=cache)

    obj.data_system = data_system


@pytest.mark.parametrize("case", ["mse", "softmax"])
def test_lm_system_with_a_penalty_and_few_rows_stays_in_the_residual_space(case):
    """Fewer residuals than parameters and a penalty: no P x P matrix (the dual form with
    the penalty, PenalizedDualSystem). Its gradient is the penalised loss's gradient, and
    its step solves (J^T H J + c diag(m) + mu I) d = -b as the primal system's does."""
    import jacnet.gauss_newton as gn

    obj = _few_rows(case)
    system = obj.system(obj.value()[1])
    assert type(system) is gn.PenalizedDualSystem
    _, grad = obj.value_and_grad()
    np.testing.assert_allclose(system.scale * system.Jtg, grad, rtol=1e-10, atol=1e-14)
    ref = _few_rows(case)
    _primal(ref)
    primal = ref.system(ref.value()[1])
    assert type(primal) is gn.PrimalSystem
    M = np.triu(primal.JtHJ) + np.triu(primal.JtHJ, 1).T
    for mu in (1e-3, 0.1, 10.0):
        d = np.linalg.solve(M + mu * np.eye(len(M)), -primal.Jtg)
        np.testing.assert_allclose(system.solve(mu), d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["mse", "softmax"])
def test_lm_with_a_penalty_and_few_rows_steps_as_the_primal_form(case):
    """Ten LM iterations in the residual space and in the primal form: the same weights,
    mu and loss."""
    runs = []
    for primal in (False, True):
        obj = _few_rows(case)
        if primal:
            _primal(obj)
        lm = LevenbergMarquardt().bind(obj)
        steps = [lm.step() for _ in range(10)]
        runs.append((obj.net.get_flat(), [s.mu for s in steps], steps[-1].loss))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-7, atol=1e-9)
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == pytest.approx(runs[1][2], rel=1e-9)
    assert runs[0][2] < _few_rows(case).value()[0]  # and it trained


@pytest.mark.parametrize(("n", "alpha", "form"), [
    (12, 0.0, "DualSystem"), (12, 0.3, "PenalizedDualSystem"),  # 12 < 0.8 P
    (14, 0.0, "DualSystem"), (14, 0.3, "PrimalSystem"),  # 0.8 P <= 14 < P
    (16, 0.0, "PrimalSystem"), (16, 0.3, "PrimalSystem"),
])
def test_lm_system_form_follows_the_rows_and_the_penalty(n, alpha, form):
    """The residual-space form below P rows, below 0.8 P with a penalty (whose step also
    solves the free biases' block: measured slower from about there on); P = 16 here."""
    import jacnet.gauss_newton as gn

    X, T = sin_data(n)
    obj = Objective(sin_net(1), X, T, get_loss("mse"), None, alpha=alpha)
    assert obj.net.n_params == 16
    assert type(obj.system(obj.value()[1])).__name__ == form
    assert gn.dual_pays(n, 16, alpha > 0) == (form != "PrimalSystem")


def test_lm_system_reuses_the_accepted_trials_forward_pass(monkeypatch):
    """When one chunk holds every row, the Gauss-Newton system takes the forward cache of
    the loss evaluation at the same theta instead of running the forward pass again; the
    steps are bit-identical to recomputing it."""
    import jacnet.gauss_newton as gn
    import jacnet.jacobian as jac

    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (200, 2))
    T = np.sin(3 * X[:, :1]) * X[:, 1:]

    def run(reuse: bool) -> tuple[np.ndarray, list[bool]]:
        net = jn.Network([jn.Dense(2, 7, "tanh"), jn.Dense(7, 1)], seed=3)
        obj = Objective(net, X, T, get_loss("mse"), None)
        if not reuse:  # a state without the cache: the system runs its own forward pass
            data_value = obj.data_value

            def without_cache():
                value, (Y, _) = data_value()
                return value, (Y, None)

            monkeypatch.setattr(obj, "data_value", without_cache)
        given: list[bool] = []
        forward = jac.forward_cache
        system = gn._sums

        def spy(*args, **kwargs):  # did the system run a forward pass of its own?
            calls = []
            for module in (jac, gn):  # the syrk form's fill, the Kronecker form's rows
                monkeypatch.setattr(module, "forward_cache",
                                    lambda *a, **k: calls.append(1) or forward(*a, **k))
            try:
                return system(*args, **kwargs)
            finally:
                for module in (jac, gn):
                    monkeypatch.setattr(module, "forward_cache", forward)
                given.append(not calls)

        monkeypatch.setattr(gn, "_sums", spy)
        lm = LevenbergMarquardt().bind(obj)
        for _ in range(6):
            lm.step()
        monkeypatch.setattr(gn, "_sums", system)
        return net.get_flat(), given

    theta_reuse, given_reuse = run(True)
    theta_fresh, given_fresh = run(False)
    assert given_reuse == [True] * 6 and given_fresh == [False] * 6
    np.testing.assert_array_equal(theta_reuse, theta_fresh)
