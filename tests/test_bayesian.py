"""Tests of jacnet.bayesian: the solver "br" (trainbr) and the Laplace posterior.

Oracles: scikit-learn's BayesianRidge (a linear network is Bayesian linear regression),
a literal transcription of trainbr's update rules with explicit matrices, and the explicit
predictive-variance and evidence formulas on a materialised J.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import BayesianRidge

import jacnet as jn
from jacnet.bayesian import BayesianRegularization
from jacnet.evidence import Laplace, parameter_groups
from jacnet.objective import Objective
from jacnet.training import SOLVERS


def _linear_data(seed: int, N: int = 200, n_in: int = 3, noise: float = 0.2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, n_in))
    t = X @ rng.normal(size=n_in) + 0.3 + noise * rng.normal(size=N)
    return X, t[:, None]


def _bayesian_ridge(X, t):
    """BayesianRidge on [X, 1] with no intercept and flat hyperpriors, converged tightly."""
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    br = BayesianRidge(fit_intercept=False, tol=1e-15, max_iter=100000, alpha_1=0.0,
                       alpha_2=0.0, lambda_1=0.0, lambda_2=0.0, compute_score=True)
    return br.fit(Xa, t[:, 0])


# ------------------------------------------------------ oracle: BayesianRidge
@pytest.mark.parametrize("seed, loss", [(0, "sse"), (1, "mse"), (2, "sse")])
def test_br_linear_network_is_bayesian_ridge(seed, loss):
    """At convergence a linear network's gamma, alpha, beta, evidence and predictive std
    are BayesianRidge's (noise precision 2 beta, weight precision 2 alpha)."""
    X, t = _linear_data(seed)
    net = jn.Network([jn.Dense(X.shape[1], 1, "identity")], seed=seed)
    rec = jn.train(net, X, t, solver="br", loss=loss, max_epochs=500, min_grad=0.0)
    assert rec.stop_reason == "mu_max"  # F can fall no further: converged
    sk = _bayesian_ridge(X, t)
    assert sk.n_iter_ < 100000  # it converged
    last = rec.epochs[-1]
    P = net.n_params
    gamma_sk = P - sk.lambda_ * np.trace(sk.sigma_)
    errors = {
        "alpha": abs(last["alpha"] / (sk.lambda_ / 2) - 1),
        "beta": abs(last["beta"] / (sk.alpha_ / 2) - 1),
        "gamma": abs(last["gamma"] / gamma_sk - 1),
        "theta": np.max(np.abs(net.get_flat() - np.r_[sk.coef_[:-1], sk.coef_[-1]]))
        / np.max(np.abs(sk.coef_)),
        "log_evidence": abs(last["log_evidence"] / sk.scores_[-1] - 1),
    }
    lap = Laplace(net, X, t, last["alpha"], last["beta"])
    Xt = np.random.default_rng(seed + 10).normal(size=(50, X.shape[1])) * 2
    _, std_sk = sk.predict(np.hstack([Xt, np.ones((50, 1))]), return_std=True)
    errors["std"] = np.max(np.abs(lap.std(Xt)[:, 0] / std_sk - 1))
    errors["effective_n_params"] = abs(lap.effective_n_params / gamma_sk - 1)
    assert max(errors.values()) < 1e-6, errors


# ----------------------------------------------------- oracle: literal trainbr
def _literal_trainbr(net, X, T, epochs, mu=0.005, mu_dec=0.1, mu_inc=10.0, mu_max=1e10):
    """trainbr's update rules written out with explicit matrices and numpy.linalg.inv.

    Each epoch also gives ``margin``: the smallest relative change of F among its trials.
    Once that is at rounding level (a converged run), the accept/reject decision may go
    either way in another computation of the same F."""
    P, Ne = net.n_params, T.size
    I = np.eye(P)

    def errors(theta):
        net.set_flat(theta)
        return (net.forward(X) - T).ravel()

    def jacobian(theta):
        net.set_flat(theta)
        return net.jacobian(X).reshape(-1, P)

    theta = net.get_flat().copy()
    e = errors(theta)
    gamma = P
    beta = (Ne - gamma) / (2 * (e @ e)) if e @ e != 0 else 1.0
    beta = 1.0 if beta <= 0 else beta
    alpha = gamma / (2 * (theta @ theta))
    out = []
    for _ in range(epochs):
        J, e = jacobian(theta), errors(theta)
        F = beta * (e @ e) + alpha * (theta @ theta)
        margin = math.inf
        while mu <= mu_max:
            d = -np.linalg.inv(beta * J.T @ J + (mu + alpha) * I) @ (beta * J.T @ e
                                                                     + alpha * theta)
            e2 = errors(theta + d)
            F2 = beta * (e2 @ e2) + alpha * ((theta + d) @ (theta + d))
            margin = min(margin, abs(F2 - F) / F)
            if F2 < F:
                theta, mu = theta + d, max(mu * mu_dec, 1e-20)
                break
            mu *= mu_inc
        else:
            break
        J, e = jacobian(theta), errors(theta)
        gamma = P - alpha * np.trace(np.linalg.inv(beta * J.T @ J + alpha * I))
        alpha = gamma / (2 * (theta @ theta))
        beta = (Ne - gamma) / (2 * (e @ e))
        out.append({"gamma": gamma, "alpha": alpha, "beta": beta, "mu": mu, "theta": theta,
                    "margin": margin})
    return out


def _random_network(k: int):
    rng = np.random.default_rng(100 + k)
    depth = 1 + k % 3
    sizes = [int(rng.integers(1, 4))] + [int(rng.integers(2, 6)) for _ in range(depth - 1)]
    sizes.append(int(rng.integers(1, 3)))
    acts = [str(rng.choice(["tanh", "identity"])) for _ in range(depth - 1)] + ["identity"]
    layers = [jn.Dense(a, b, f) for a, b, f in zip(sizes[:-1], sizes[1:], acts, strict=True)]
    # k = 9: fewer target values than parameters (the Objective's dual system)
    N = 6 if k == 9 else int(rng.integers(20, 40))
    X = rng.normal(size=(N, sizes[0]))
    T = np.tanh(X @ rng.normal(size=(sizes[0], sizes[-1]))) + 0.1 * rng.normal(size=(N, sizes[-1]))
    return jn.Network(layers, seed=k), X, T


@pytest.mark.parametrize("k", range(10))
def test_br_follows_literal_trainbr_epoch_by_epoch(k):
    net, X, T = _random_network(k)
    theta0 = net.get_flat().copy()
    thetas = []
    rec = jn.train(net, X, T, solver="br", loss="sse", max_epochs=25, min_grad=0.0,
                   callbacks=[lambda entry, n: thetas.append(n.get_flat().copy())])
    net.set_flat(theta0)
    literal = _literal_trainbr(net, X, T, 25)
    # Compared while every accept/reject decision is made by more than rounding: once F
    # changes by rounding errors only (converged; the linear networks within a few epochs)
    # the two computations may decide differently.
    decided = [lit["margin"] > 1e-10 for lit in literal]
    n = decided.index(False) if False in decided else len(literal)
    n = min(n, rec.n_epochs)
    assert n >= 3 and (n == rec.n_epochs == len(literal) or rec.stop_reason == "mu_max")
    worst = 0.0
    for entry, theta, lit in zip(rec.epochs[:n], thetas[:n], literal[:n], strict=True):
        for key in ("gamma", "alpha", "beta", "mu"):
            worst = max(worst, abs(entry[key] - lit[key]) / abs(lit[key]))
        worst = max(worst, np.max(np.abs(theta - lit["theta"])) / np.max(np.abs(lit["theta"])))
    print(f"literal trainbr, network {k}: {n} epochs, worst relative error {worst:.1e}")
    assert worst < 1e-9, worst


def test_br_mse_gives_the_sse_hyperparameters():
    """E_D is the sum of squared errors whatever the loss; only the record's loss differs."""
    net, X, T = _random_network(4)
    theta0 = net.get_flat().copy()
    runs = {}
    for loss in ("sse", "mse"):
        net.set_flat(theta0)
        runs[loss] = jn.train(net, X, T, solver="br", loss=loss, max_epochs=10, min_grad=0.0)
    for a, b in zip(runs["sse"].epochs, runs["mse"].epochs, strict=True):
        assert a["beta"] == pytest.approx(b["beta"], rel=1e-10)
        assert a["loss"] == pytest.approx(b["loss"] * T.size / T.shape[1], rel=1e-10)


# --------------------------------------------- oracle: the explicit posterior
def _explicit_std(net, X, Xt, T, alpha, beta, groups):
    q = net.n_out
    J = net.jacobian(X)  # (N, q, P)
    H = sum(beta[k] * J[:, k].T @ J[:, k] for k in range(q)) + np.diag(alpha[groups])
    Sigma = np.linalg.inv(2 * H)
    Jt = net.jacobian(Xt)
    var = np.einsum("skp,pr,skr->sk", Jt, Sigma, Jt) + 1 / (2 * beta)
    return np.sqrt(var), H


@pytest.mark.parametrize("q, per_output, per_layer", [
    (1, False, False), (3, False, False), (3, True, False), (2, True, True), (1, False, True)])
def test_laplace_std_and_evidence_equal_the_explicit_formulas(q, per_output, per_layer):
    rng = np.random.default_rng(q)
    net = jn.Network([jn.Dense(2, 5, "tanh"), jn.Dense(5, q)], seed=q)
    X, Xt = rng.normal(size=(40, 2)), rng.normal(size=(17, 2))
    T = rng.normal(size=(40, q))
    groups = parameter_groups(net, "per_layer" if per_layer else "single")
    alpha = np.array([0.3, 2.0])[: groups.max() + 1]
    beta = np.array([5.0, 0.7, 11.0])[:q] if per_output else np.full(q, 4.0)
    lap = Laplace(net, X, T, alpha, beta if per_output else beta[0], chunk=7,
                  weight_groups="per_layer" if per_layer else "single")
    std, H = _explicit_std(net, X, Xt, T, alpha, beta, groups)
    assert_allclose(lap.std(Xt), std, rtol=1e-10)
    # the evidence: -F - 1/2 log det H + sum P_l/2 log alpha_l + sum N_k/2 log beta_k
    #               - N_e/2 log pi
    R = net.forward(X) - T
    theta = net.get_flat()
    E_W = np.bincount(groups, theta**2)
    E_D = (R**2).sum(axis=0)
    P_l = np.bincount(groups)
    explicit = (-(beta @ E_D) - alpha @ E_W - 0.5 * np.linalg.slogdet(H)[1]
                + 0.5 * (P_l @ np.log(alpha) + X.shape[0] * np.log(beta).sum())
                - 0.5 * T.size * math.log(math.pi))
    assert lap.log_evidence == pytest.approx(explicit, rel=1e-10)
    gamma = net.n_params - np.trace(np.diag(alpha[groups]) @ np.linalg.inv(H))
    assert lap.effective_n_params == pytest.approx(gamma, rel=1e-10)
    Sigma = lap.covariance_factor @ lap.covariance_factor.T
    assert_allclose(Sigma, np.linalg.inv(2 * H), rtol=1e-9, atol=1e-12)


def test_laplace_from_solver_gives_the_records_evidence():
    net, X, T = _random_network(5)
    solver = BayesianRegularization()
    rec = jn.train(net, X, T, solver=solver, loss="sse", max_epochs=15)
    lap = Laplace.from_solver(solver, net, X, T)
    assert lap.log_evidence == pytest.approx(rec.epochs[-1]["log_evidence"], rel=1e-10)
    assert solver.log_evidence == rec.epochs[-1]["log_evidence"]
    assert lap.std(X).shape == T.shape
    with pytest.raises(ValueError, match="solver has not trained"):
        Laplace.from_solver(BayesianRegularization(), net, X, T)


def test_laplace_with_derivative_data_gives_the_records_evidence():
    """br on values and derivatives: the Laplace posterior built with the same derivative
    data (their Gauss-Newton term in H, their count in N_e) reproduces the run's evidence
    and gamma; without them it does not."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(25, 2))
    T = (np.sin(X[:, 0]) * np.cos(X[:, 1]))[:, None]
    G = np.stack([np.cos(X[:, 0]) * np.cos(X[:, 1]), -np.sin(X[:, 0]) * np.sin(X[:, 1])], 1)
    G[::4, 1] = np.nan
    net = jn.Network([jn.Dense(2, 5, "tanh"), jn.Dense(5, 1)], seed=0)
    solver = BayesianRegularization()
    rec = jn.train(net, X, T, solver=solver, dTdX=G, derivative_weight=0.5, max_epochs=20)
    lap = Laplace.from_solver(solver, net, X, T, dTdX=G, derivative_weight=0.5)
    last = rec.epochs[-1]
    assert lap.log_evidence == pytest.approx(last["log_evidence"], rel=1e-10)
    assert lap.effective_n_params == pytest.approx(
        net.n_params - solver.alpha[0] * np.trace(np.linalg.inv(
            solver.beta[0] * _sobolev_gauss_newton(net, X, G, 0.5)
            + solver.alpha[0] * np.eye(net.n_params))), rel=1e-10)
    assert lap.n_values == T.size + np.count_nonzero(~np.isnan(G))
    values_only = Laplace.from_solver(solver, net, X, T)
    assert values_only.log_evidence != pytest.approx(last["log_evidence"], rel=1e-3)
    two = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match="beta"):  # one noise precision with derivatives
        Laplace(two, X, np.hstack([T, T]), 1.0, [1.0, 2.0], dTdX=np.stack([G, G], axis=1))


def _sobolev_gauss_newton(net, X, G, lam):
    """J^T W J of values and observed derivatives from the materialised residual Jacobian
    (jacnet.sobolev.sobolev_jacobian: rows y, then dy/dx in G's order)."""
    from jacnet.sobolev import sobolev_jacobian

    J = sobolev_jacobian(net, X)  # (N, 1 + n_in, P) for one output
    weight = np.concatenate([np.ones((len(X), 1)), lam**2 * ~np.isnan(G)], axis=1)
    J = J.reshape(-1, net.n_params)
    return J.T @ (weight.reshape(-1, 1) * J)


def test_factor_cholesky_and_its_eigendecomposition_fallback():
    """Factor from H's upper triangle: log det H, R R^T = H^-1, diag(H^-1), tr(G H^-1)
    (G's upper triangle) as numpy's; an H that is not positive definite goes to the
    eigendecomposition with its eigenvalues clipped at the floor, and a step on it is
    refused (a failed trial)."""
    from jacnet.evidence import Curvature, Factor

    rng = np.random.default_rng(0)
    A = rng.normal(size=(9, 5))
    H = A.T @ A + 0.3 * np.eye(5)
    G = rng.normal(size=(5, 5))
    G = G + G.T
    f = Factor(lambda: np.triu(H), 0.3)
    inv = np.linalg.inv(H)
    assert f.logdet() == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    assert_allclose(f.R @ f.R.T, inv, rtol=1e-10, atol=1e-14)
    assert_allclose(f.diag_inverse(), np.diag(inv), rtol=1e-10)
    assert f.trace_inverse() == pytest.approx(np.trace(inv), rel=1e-12)
    assert f.trace_with(np.triu(G)) == pytest.approx(np.trace(G @ inv), rel=1e-10)
    L = f.covariance_factor()
    assert_allclose(L @ L.T, np.linalg.inv(2 * H), rtol=1e-10, atol=1e-14)
    # not positive definite: eigenvalues (2, 1, -1e-3) on a rotation, floor 0.5
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    M = Q @ np.diag([2.0, 1.0, -1e-3]) @ Q.T
    f = Factor(lambda: M.copy(), 0.5)
    clipped = Q @ np.diag([2.0, 1.0, 0.5]) @ Q.T
    assert f.logdet() == pytest.approx(0.0, abs=1e-12)
    assert_allclose(f.R @ f.R.T, np.linalg.inv(clipped), rtol=1e-10, atol=1e-12)
    curv = Curvature(M[None], np.zeros((1, 3)), np.ones(1), np.ones(1) * 10, np.ones(3),
                     np.zeros(3, dtype=np.intp))
    assert curv.step(np.array([1e-6]), np.ones(1), 0.0, np.ones(3)) is None
    assert curv.step(np.array([1e-6]), np.ones(1), 1.0, np.ones(3)) is not None


# ------------------------------------------------------------- beyond trainbr
def test_br_per_output_beta_recovers_each_noise_precision():
    rng = np.random.default_rng(7)
    N, sigma = 2000, np.array([0.05, 0.5])
    X = rng.uniform(-1, 1, size=(N, 2))
    clean = np.column_stack([np.sin(2 * X[:, 0]) * X[:, 1], np.tanh(X[:, 0] - X[:, 1])])
    T = clean + sigma * rng.normal(size=(N, 2))
    net = jn.Network([jn.Dense(2, 8, "tanh"), jn.Dense(8, 2)], seed=0)
    rec = jn.train(net, X, T, solver="br", noise="per_output", max_epochs=200)
    beta = np.array(rec.epochs[-1]["beta"])
    assert_allclose(beta, 1 / (2 * sigma**2), rtol=0.1)
    assert len(rec.epochs[-1]["E_D"]) == 2 and isinstance(rec.epochs[-1]["alpha"], float)


def test_br_per_layer_alpha_has_at_least_the_single_alpha_evidence():
    """Layers of very different scale: one alpha per layer fits the prior better, so the
    evidence of the per-layer model (which holds the single-alpha model as a special
    case) is at least as high at convergence."""
    rng = np.random.default_rng(3)
    N = 300
    X = rng.uniform(-1, 1, size=(N, 2))
    T = 20 * np.tanh(0.1 * X @ np.array([[1.0], [-2.0]])) + 0.05 * rng.normal(size=(N, 1))
    evidence = {}
    for groups in ("single", "per_layer"):
        net = jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 1)], seed=1)
        rec = jn.train(net, X, T, solver="br", weight_groups=groups, max_epochs=300)
        evidence[groups] = rec.epochs[-1]["log_evidence"]
        assert np.isfinite(rec.epochs[-1]["alpha"]).all()
    assert len(rec.epochs[-1]["alpha"]) == 2
    print("log evidence", evidence)
    assert evidence["per_layer"] >= evidence["single"], evidence


def test_br_runs_through_the_objective_seam():
    """An objective whose data sums are the sum of two partitions' (as Dask's) gives the
    one-process result."""
    from jacnet.record import TrainingRecord
    from jacnet.stopping import stop_rules
    from jacnet.training import LoopSettings, Run

    class Halves(Objective):
        def __init__(self, net, X, T, loss, w, alpha, chunk=None):
            super().__init__(net, X, T, loss, w, alpha, chunk)
            h = X.shape[0] // 2
            self.parts = [Objective(net, X[s], T[s], loss, w, alpha, chunk)
                          for s in (slice(None, h), slice(h, None))]

        def data_value(self):
            values = [p.data_value() for p in self.parts]
            return sum(v for v, _ in values), [s for _, s in values]

        def data_system(self, state, chunk):
            a, b = (p.data_system(s, chunk) for p, s in zip(self.parts, state, strict=True))
            return a + b

    net, X, T = _random_network(6)
    theta0 = net.get_flat().copy()
    one = jn.train(net, X, T, solver="br", loss="sse", max_epochs=8, min_grad=0.0)
    theta_one = net.get_flat().copy()
    net.set_flat(theta0)
    loop = LoopSettings(loss="sse", max_epochs=8)
    run = Run(net, BayesianRegularization(), loop, stop_rules(max_epochs=8, min_grad=0.0),
              {"train": (X, T, None)}, TrainingRecord(solver="br"), np.random.default_rng(0),
              objective=Halves, rule_options={"min_grad": 0.0})
    run.execute()
    assert_allclose(net.get_flat(), theta_one, rtol=1e-8, atol=1e-10)
    assert run.record.epochs[-1]["gamma"] == pytest.approx(one.epochs[-1]["gamma"], rel=1e-8)


def test_br_resume_equals_uninterrupted(tmp_path):
    net, X, T = _random_network(2)
    theta0 = net.get_flat().copy()
    full = jn.train(net, X, T, solver="br", max_epochs=10, min_grad=0.0)
    theta_full = net.get_flat().copy()
    ck = tmp_path / "br.ckpt"
    net.set_flat(theta0)
    jn.train(net, X, T, solver="br", max_epochs=4, min_grad=0.0, checkpoint=str(ck),
             checkpoint_every=2)
    net.set_flat(theta0)
    rec = jn.train(net, X, T, solver="br", max_epochs=10, min_grad=0.0, resume=str(ck))
    assert rec.n_epochs == full.n_epochs
    assert_allclose(net.get_flat(), theta_full, rtol=1e-12, atol=1e-14)
    assert rec.epochs[-1]["alpha"] == pytest.approx(full.epochs[-1]["alpha"], rel=1e-12)


def test_br_record_and_registry():
    assert SOLVERS["br"] is BayesianRegularization
    assert BayesianRegularization.regression_only
    net, X, T = _random_network(1)
    rec = jn.train(net, X, T, solver="br", max_epochs=3, mu=0.01)
    keys = {"mu", "gamma", "alpha", "beta", "E_D", "E_W", "log_evidence"}
    assert keys <= set(rec.epochs[-1]) and rec.solver == "br"
    assert rec.stop_reason == "max_epochs"
    assert 0 < rec.epochs[-1]["gamma"] <= net.n_params


# ------------------------------------------------------------------ bad input
def test_br_refuses_a_loss_that_is_not_squared_error():
    net = jn.Network([jn.Dense(2, 3, "softmax")], seed=0)
    X = np.random.default_rng(0).normal(size=(10, 2))
    T = np.eye(3)[np.arange(10) % 3]
    with pytest.raises(ValueError, match="loss must be 'sse' or 'mse'.*cross_entropy"):
        jn.train(net, X, T, solver="br", loss="cross_entropy")


@pytest.mark.parametrize("option, value", [
    ("mu", 0.0), ("mu", -1.0), ("mu_dec", 1.5), ("mu_inc", 0.5), ("mu_max", -1.0),
    ("noise", "each"), ("weight_groups", "per_unit")])
def test_br_refuses_bad_settings_naming_them(option, value):
    with pytest.raises(ValueError, match=option):
        BayesianRegularization(**{option: value})


def test_br_refuses_the_loops_alpha():
    net, X, T = _random_network(0)
    with pytest.raises(ValueError, match="alpha must be 0"):
        jn.train(net, X, T, solver="br", alpha=0.1)


def test_laplace_refuses_bad_precisions():
    net, X, T = _random_network(0)
    for alpha, beta, name in ((0.0, 1.0, "alpha"), (1.0, -2.0, "beta"),
                              (1.0, [1.0, 2.0, 3.0, 4.0], "beta"), ([1.0, 1.0], 1.0, "alpha")):
        with pytest.raises(ValueError, match=name):
            Laplace(net, X, T, alpha, beta)


# targets of pure noise: the evidence's maximum is the constant model (gamma -> 0), which
# the collapse guard keeps with its warning
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", ["duplicated_units", "fewer_values_than_params"])
def test_br_singular_gauss_newton_matrix_stays_finite(case):
    rng = np.random.default_rng(0)
    net = jn.Network([jn.Dense(2, 6, "tanh"), jn.Dense(6, 1)], seed=0)
    N = 40 if case == "duplicated_units" else 5
    X, T = rng.normal(size=(N, 2)), rng.normal(size=(N, 1))
    if case == "duplicated_units":  # units 0-2 equal units 3-5: J^T J has rank deficit
        W1, b1 = net.layers[0].W, net.layers[0].b
        W1[:, 3:], b1[3:] = W1[:, :3], b1[:3]
        net.layers[1].W[3:] = net.layers[1].W[:3]
    rec = jn.train(net, X, T, solver="br", max_epochs=30)
    for entry in rec.epochs:
        for key in ("gamma", "alpha", "beta", "log_evidence", "E_D", "E_W", "loss"):
            assert math.isfinite(entry[key]), (key, entry)
    assert np.isfinite(net.get_flat()).all()
    lap = Laplace(net, X, T, rec.epochs[-1]["alpha"], rec.epochs[-1]["beta"])
    assert np.isfinite(lap.std(X)).all() and math.isfinite(lap.log_evidence)


@pytest.mark.xdist_group("dask")  # beside the other clusters (make test: --dist loadgroup)
def test_br_on_dask_arrays_equals_one_process():
    """Dask's objective (partitions' Gauss-Newton sums reduced) runs br unchanged."""
    pytest.importorskip("distributed")
    import dask.array as da
    from distributed import Client, LocalCluster

    from jacnet import distributed as jd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    T = np.tanh(X @ np.array([[1.0], [-1.0]])) + 0.1 * rng.normal(size=(300, 1))
    net = jn.Network([jn.Dense(2, 5, "tanh"), jn.Dense(5, 1)], seed=0)
    theta0 = net.get_flat().copy()
    one = jn.train(net, X, T, solver="br", loss="mse", max_epochs=15)
    theta_one = net.get_flat().copy()
    net.set_flat(theta0)
    # no dashboard, and the scheduler's HTTP server on a free port (8787 may be taken)
    with (LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                       dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
          as cluster, Client(cluster) as client):
        rec = jd.train(net, da.from_array(X, chunks=100), da.from_array(T, chunks=100),
                       solver="br", loss="mse", max_epochs=15, client=client)
    assert rec.n_epochs == one.n_epochs
    assert_allclose(net.get_flat(), theta_one, rtol=1e-9, atol=1e-11)
    for key in ("gamma", "alpha", "beta", "log_evidence"):
        assert rec.epochs[-1][key] == pytest.approx(one.epochs[-1][key], rel=1e-9)


def test_estimator_br_finds_its_own_weight_decay_and_classifiers_refuse_it():
    """MLPRegressor(solver="br") trains trainbr on standardized data, ignoring ``alpha``
    (the weight precision comes from the data): the same fit whatever alpha is given, a
    record with gamma < P; MLPClassifier refuses it, naming the solver."""
    import warnings

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (120, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1] + 0.05 * rng.normal(size=120)
    fits = []
    for alpha in (1e-4, 10.0):
        est = jn.MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", solver="br",
                              alpha=alpha, max_iter=40, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        fits.append(est)
    np.testing.assert_array_equal(fits[0].network_.theta, fits[1].network_.theta)
    last = fits[0].training_record_.epochs[-1]
    assert 0 < last["gamma"] < fits[0].network_.n_params and last["alpha"] > 0
    assert fits[0].x_mean_ is not None and fits[0].y_mean_ is not None  # standardized
    assert fits[0].score(X, y) > 0.9
    with pytest.raises(ValueError, match="solver='br' fits regression only"):
        jn.MLPClassifier(solver="br").fit(X, y > 0)


@pytest.mark.parametrize("loss", ["sse", "mse"])
def test_br_integer_sample_weights_count_as_repeated_rows(loss):
    """N_e counts the weights (an integer weight is that many rows), as E_D and J^T J do:
    a weighted fit follows the repeated-rows fit, gamma and beta included."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (15, 2))
    T = np.sin(2 * X[:, :1]) + X[:, 1:]
    w = rng.integers(0, 3, 15).astype(float)
    reps = w.astype(int)
    a = jn.Network([jn.Dense(2, 4, "tanh"), jn.Dense(4, 1)], seed=0)
    b = a.copy()
    ra = jn.train(a, X, T, "br", loss=loss, sample_weight=w, max_epochs=10, min_grad=0.0)
    rb = jn.train(b, np.repeat(X, reps, axis=0), np.repeat(T, reps, axis=0), "br", loss=loss,
                  max_epochs=10, min_grad=0.0)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-9, atol=1e-12)
    for ea, eb in zip(ra.epochs, rb.epochs, strict=True):
        assert ea["gamma"] == pytest.approx(eb["gamma"], rel=1e-9)
        assert ea["beta"] == pytest.approx(eb["beta"], rel=1e-9)


# ------------------------------------------------------------- the collapse guard
def _collapsing(n=40, hidden=8, seed=0, noise=False):
    """Noise-free y = sin(3 x1) x2 on [-1, 1]^2 (standardised), or pure noise; with
    fewer rows than about 2P trainbr's start collapses here (gamma -> 0)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    y = rng.normal(size=n) if noise else np.sin(3 * X[:, 0]) * X[:, 1]
    T = ((y - y.mean()) / y.std())[:, None]
    return jn.Network([jn.Dense(2, hidden, "tanh"), jn.Dense(hidden, 1)], seed=seed), X, T


def test_br_collapse_guard_restarts_a_collapsed_run_from_its_start():
    """trainbr's iteration collapses (gamma -> 0, a constant prediction, with a
    ConvergenceWarning); the guard restarts once from the initial weights with MacKay's
    start, says so in the record and ends with a real fit of higher evidence."""
    from sklearn.exceptions import ConvergenceWarning

    net, X, T = _collapsing()
    theta0 = net.get_flat().copy()
    with pytest.warns(ConvergenceWarning, match="collapsed.*restart=False"):
        plain = jn.train(net, X, T, solver="br", max_epochs=100, restart=False)
    assert plain.epochs[-1]["gamma"] < 0.01 * net.n_params
    assert np.abs(net.get_flat()).max() < 1e-6
    assert not any("restart" in e for e in plain.epochs)
    net.set_flat(theta0)
    solver = BayesianRegularization()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        rec = jn.train(net, X, T, solver=solver, max_epochs=100)
    marks = [(e["epoch"], e["restart"]) for e in rec.epochs if "restart" in e]
    k = plain.n_epochs + 1
    assert marks == [(k, "collapse")]
    # the epochs before it are trainbr's own, unchanged
    for a, b in zip(plain.epochs, rec.epochs[: k - 1], strict=True):
        assert a["gamma"] == b["gamma"] and a["loss"] == b["loss"]
    last = rec.epochs[-1]
    assert last["gamma"] > 0.3 * net.n_params
    assert last["log_evidence"] > plain.epochs[-1]["log_evidence"] + 20
    assert solver.log_evidence == last["log_evidence"]
    assert float(np.mean((net.forward(X) - T) ** 2)) < 0.01
    assert rec.n_epochs <= 100


def test_br_collapse_guard_starts_the_restart_from_mackays_values():
    """The restart's first step is trainbr's step from theta0 at alpha = RESTART_ALPHA P /
    (2 E_W(theta0)), beta = N_e / (2 E_D(theta0)): one epoch of a solver given those values."""
    from jacnet.bayesian import RESTART_ALPHA

    net, X, T = _collapsing()
    theta0 = net.get_flat().copy()
    thetas = []
    rec = jn.train(net, X, T, solver="br", max_epochs=100, callbacks=[
        lambda e, n: thetas.append(n.get_flat().copy())])
    k = next(e["epoch"] for e in rec.epochs if e.get("restart") == "collapse")
    net.set_flat(theta0)
    e0 = (net.forward(X) - T).ravel()
    solver = BayesianRegularization()
    solver.alpha = np.array([RESTART_ALPHA * net.n_params / (2 * theta0 @ theta0)])
    solver.beta = np.array([T.size / (2 * e0 @ e0)])
    one = jn.train(net, X, T, solver=solver, max_epochs=1)
    assert_allclose(net.get_flat(), thetas[k - 1], rtol=1e-12, atol=1e-15)
    assert one.epochs[0]["gamma"] == pytest.approx(rec.epochs[k - 1]["gamma"], rel=1e-12)


def test_br_collapse_guard_leaves_a_run_that_does_not_collapse_alone():
    """The guard changes nothing of a run that does not collapse: the same weights and
    record, bit for bit, with the guard on and off."""
    net, X, T = _random_network(4)
    theta0 = net.get_flat().copy()
    runs = []
    for restart in (True, False):
        net.set_flat(theta0)
        rec = jn.train(net, X, T, solver="br", max_epochs=60, restart=restart)
        runs.append((net.get_flat().copy(), rec))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert [e["gamma"] for e in runs[0][1].epochs] == [e["gamma"] for e in runs[1][1].epochs]
    assert not any("restart" in e for e in runs[0][1].epochs)


@pytest.mark.parametrize("max_epochs, reason", [(200, "mu_max"), (40, "max_epochs")])
def test_br_collapse_guard_keeps_the_collapse_when_the_evidence_prefers_it(max_epochs, reason):
    """Pure noise: the restart fits a little of it (gamma about 2.6) but converges (or runs
    out of epochs) at a lower evidence than the constant model, so the collapsed state
    comes back, recorded as an epoch that repeats its values with "restart": "reverted",
    within the epoch budget; the warning says so."""
    from sklearn.exceptions import ConvergenceWarning

    net, X, T = _collapsing(n=30, hidden=3, seed=15, noise=True)
    theta0 = net.get_flat().copy()
    with pytest.warns(ConvergenceWarning, match="collapsed"):
        plain = jn.train(net, X, T, solver="br", max_epochs=max_epochs, restart=False)
    theta_c = net.get_flat().copy()
    net.set_flat(theta0)
    with pytest.warns(ConvergenceWarning, match="lower log evidence"):
        rec = jn.train(net, X, T, solver="br", max_epochs=max_epochs)
    marks = [e["restart"] for e in rec.epochs if "restart" in e]
    assert marks == ["collapse", "reverted"] and rec.n_epochs <= max_epochs
    assert rec.stop_reason == reason
    np.testing.assert_array_equal(net.get_flat(), theta_c)
    last, collapsed = rec.epochs[-1], plain.epochs[-1]
    for key in ("gamma", "alpha", "beta", "E_D", "E_W", "log_evidence", "loss"):
        assert last[key] == collapsed[key], key
    restart_end = rec.epochs[-2]
    assert restart_end["gamma"] > 1 and restart_end["log_evidence"] < last["log_evidence"]


def test_br_collapse_guard_needs_room_in_the_budget():
    """A collapse with fewer than two epochs of the budget left is not restarted (the
    restart keeps the last epoch back for the choice); the warning says why."""
    from sklearn.exceptions import ConvergenceWarning

    net, X, T = _collapsing()
    theta0 = net.get_flat().copy()
    with pytest.warns(ConvergenceWarning):
        plain = jn.train(net, X, T, solver="br", max_epochs=100, restart=False)
    net.set_flat(theta0)
    with pytest.warns(ConvergenceWarning, match="fewer than two epochs"):
        rec = jn.train(net, X, T, solver="br", max_epochs=plain.n_epochs + 1)
    assert rec.n_epochs == plain.n_epochs
    assert not any("restart" in e for e in rec.epochs)


def test_br_collapse_guard_resume_equals_uninterrupted(tmp_path):
    """A run interrupted after the restart (or before it) resumes to the same end: the
    start weights and the collapsed state travel in the solver's checkpointed state."""
    net, X, T = _collapsing(n=30, hidden=3, seed=15, noise=True)
    theta0 = net.get_flat().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = jn.train(net, X, T, solver="br", max_epochs=200)
        theta_full = net.get_flat().copy()
        k = next(e["epoch"] for e in full.epochs if e.get("restart") == "collapse")
        for stop in (k - 2, k - 1, k + 3):  # interrupted (a callback) around it
            ck = tmp_path / f"br{stop}.ckpt"
            net.set_flat(theta0)
            jn.train(net, X, T, solver="br", max_epochs=200, checkpoint=str(ck),
                     checkpoint_every=1, callbacks=[lambda e, n, s=stop: e["epoch"] >= s])
            net.set_flat(np.zeros_like(theta0))  # the checkpoint holds the weights
            rec = jn.train(net, X, T, solver="br", max_epochs=200, resume=str(ck))
            assert rec.n_epochs == full.n_epochs, stop
            assert [e.get("restart") for e in rec.epochs] == [
                e.get("restart") for e in full.epochs]
            np.testing.assert_array_equal(net.get_flat(), theta_full)


def test_br_resumed_at_the_epoch_that_ended_a_collapsed_run_restarts_as_uninterrupted(
        tmp_path):
    """A checkpoint of the very epoch whose min_grad stop ended the collapsed trajectory:
    the resumed run is not over there (the loop asks the solver, Solver.ended) but
    restarts as the uninterrupted run did, to the same record and weights."""
    net, X, T = _collapsing()
    theta0 = net.get_flat().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = jn.train(net, X, T, solver="br", max_epochs=100, min_grad=1e-2)
        theta_full = net.get_flat().copy()
        k = next(e["epoch"] for e in full.epochs if e.get("restart") == "collapse")
        assert full.epochs[k - 2]["grad_norm"] < 1e-2  # epoch k - 1 met the min_grad stop
        ck = tmp_path / "br.ckpt"
        net.set_flat(theta0)
        jn.train(net, X, T, solver="br", max_epochs=100, min_grad=1e-2, checkpoint=str(ck),
                 checkpoint_every=1, callbacks=[lambda e, n: e["epoch"] >= k - 1])
        net.set_flat(np.zeros_like(theta0))
        rec = jn.train(net, X, T, solver="br", max_epochs=100, min_grad=1e-2, resume=str(ck))
    assert rec.n_epochs == full.n_epochs
    assert [e.get("restart") for e in rec.epochs] == [e.get("restart") for e in full.epochs]
    np.testing.assert_array_equal(net.get_flat(), theta_full)


def test_br_refuses_a_restart_that_is_not_a_bool():
    with pytest.raises(TypeError, match="restart must be a bool"):
        BayesianRegularization(restart="yes")
