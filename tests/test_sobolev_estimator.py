"""Derivative data in the estimators and Bayesian regularization: ``MLPRegressor.fit(X, y,
dydx=G)`` (its standardisation scales G by sigma_x / sigma_y, checked bit for bit against
``jacnet.train`` on arrays scaled by hand), ``fit_divided`` and ``partial_fit`` with
``dydx``, ``br`` on values and derivatives, and the errors on bad input. The command line's
derivative columns are tested in tests/test_cli.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.utils import check_random_state

import jacnet as jn
from jacnet import sobolev as sb
from jacnet.losses import Scaled

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_SHIFT, _SCALE = np.array([1.0, -2.0]), np.array([3.0, 0.5])


def _two_outputs(n: int = 30, seed: int = 0):
    """Inputs and targets far from N(0, 1), with the exact derivatives dy/dx (n, 2, 2)."""
    rng = np.random.default_rng(seed)
    Z = rng.uniform(-2, 2, size=(n, 2))
    X = Z * _SCALE + _SHIFT
    y = np.c_[10 * np.sin(Z[:, 0]) * np.cos(Z[:, 1]) + 5, 0.1 * Z[:, 0] * Z[:, 1]]
    G = np.empty((n, 2, 2))
    G[:, 0, 0] = 10 * np.cos(Z[:, 0]) * np.cos(Z[:, 1]) / _SCALE[0]
    G[:, 0, 1] = -10 * np.sin(Z[:, 0]) * np.sin(Z[:, 1]) / _SCALE[1]
    G[:, 1, 0] = 0.1 * Z[:, 1] / _SCALE[0]
    G[:, 1, 1] = 0.1 * Z[:, 0] / _SCALE[1]
    return X, y, G


def _sin_cos(X):
    y = np.sin(X[:, 0]) * np.cos(X[:, 1])
    G = np.stack([np.cos(X[:, 0]) * np.cos(X[:, 1]), -np.sin(X[:, 0]) * np.sin(X[:, 1])], 1)
    return y, G


# ------------------------------------------------------------ the estimator's scaling
def test_estimator_with_standardization_equals_the_engine_on_scaled_data():
    """MLPRegressor(solver="lm") on (X, y, G) gives the weights of ``jacnet.train`` on the
    standardised arrays with G scaled by hand, ``G sigma_x[d] / sigma_y[i]``, bit for bit."""
    X, y, G = _two_outputs()
    G[np.random.default_rng(1).random(G.shape) < 0.3] = np.nan
    kw = dict(hidden_layer_sizes=(8,), activation="tanh", solver="lm", alpha=0.0,
              max_iter=7, random_state=3, derivative_weight=0.7)
    est = jn.MLPRegressor(**kw).fit(X, y, dydx=G)
    # the estimator's first steps, replayed: initial weights, then the loop's seed
    ref = jn.MLPRegressor(**kw)
    sizes, hidden = ref.validated_params()
    ref.n_outputs_ = 2
    rs = check_random_state(3)
    ref.init_model(X, y, sizes, hidden, np.dtype(np.float64), rs, None)
    net, seed = ref.network_.copy(), int(rs.randint(2**31 - 1))
    np.testing.assert_allclose(est.x_scale_, X.std(axis=0), rtol=1e-15)
    np.testing.assert_allclose(est.y_scale_, y.std(axis=0), rtol=1e-15)
    Xs = (X - est.x_mean_) / est.x_scale_
    Ts = (y - est.y_mean_) / est.y_scale_
    Gs = G * est.x_scale_[None, None, :] / est.y_scale_[None, :, None]
    jn.train(net, Xs, Ts, "lm", dTdX=Gs, derivative_weight=0.7, loss=Scaled("mse", 1 / 4),
             alpha=0.0, seed=seed, max_epochs=7, mu=1e-3, min_grad=1e-7, tol=0.0,
             early_stopping=False, max_fail=11)
    np.testing.assert_array_equal(est.network_.theta, net.theta)
    # loss_curve_ with derivatives: the objective as trained
    assert est.loss_curve_[-1] == est.training_record_.epochs[-1]["loss"]


def test_scale_derivatives_keeps_nan_and_divides_by_the_targets_scale():
    X, y, G = _two_outputs()
    G[0, 1, 0] = np.nan
    est = jn.MLPRegressor(hidden_layer_sizes=(3,), solver="lm", max_iter=1).fit(X, y)
    Gs = est.scale_derivatives(G)
    assert np.isnan(Gs[0, 1, 0]) and np.isfinite(np.delete(Gs.ravel(), 2)).all()
    assert Gs[3, 0, 1] == G[3, 0, 1] * est.x_scale_[1] / est.y_scale_[0]
    plain = jn.MLPRegressor(hidden_layer_sizes=(3,), solver="adam", max_iter=1).fit(X, y)
    np.testing.assert_array_equal(plain.scale_derivatives(G), G)  # adam: no scaling


def test_input_jacobian_of_the_fit_approaches_the_given_derivatives():
    """25 samples of sin(x1) cos(x2) with gradients: the fitted model's input Jacobian is
    close to the true gradient on fresh points, far closer than a fit of the values."""
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(-2, 2, size=(25, 2)), rng.uniform(-2, 2, size=(400, 2))
    y, G = _sin_cos(X)
    _, Gt = _sin_cos(Xt)
    err = {}
    for with_derivatives in (False, True):
        est = jn.MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", solver="lm",
                              max_iter=200, random_state=0)
        est.fit(X, y, dydx=G if with_derivatives else None)
        err[with_derivatives] = np.sqrt(np.mean((est.input_jacobian(Xt)[:, 0] - Gt) ** 2))
    assert err[True] < 0.05 and err[True] * 3 < err[False], err


def test_unobserved_derivatives_are_left_out():
    """NaN entries are skipped: all-NaN dydx is the values' fit (to rounding: another
    path computes it), and what a NaN entry replaces does not matter."""
    X, y, G = _two_outputs(20)
    kw = dict(hidden_layer_sizes=(5,), activation="tanh", solver="lbfgs", max_iter=15,
              random_state=0)
    values = jn.MLPRegressor(**kw).fit(X, y)
    unseen = jn.MLPRegressor(**kw).fit(X, y, dydx=np.full(G.shape, np.nan))
    np.testing.assert_allclose(unseen.network_.theta, values.network_.theta, rtol=1e-8,
                               atol=1e-10)
    mask = np.random.default_rng(2).random(G.shape) < 0.5
    fits = []
    for garbage in (1e6, -3.0):
        Gm = np.where(mask, garbage, G)
        Gm[mask] = np.nan
        fits.append(jn.MLPRegressor(**kw).fit(X, y, dydx=Gm).network_.theta)
    np.testing.assert_array_equal(fits[0], fits[1])
    observed = jn.MLPRegressor(**kw).fit(X, y, dydx=np.where(mask, -3.0, G)).network_.theta
    assert not np.allclose(observed, fits[0])


def test_early_stopping_split_takes_the_derivatives_of_the_training_rows():
    X, y, G = _two_outputs(40)
    X[:, 0] = np.arange(40.0)
    G[:, 0, 0] = np.arange(40.0)  # row i carries i in both
    est = jn.MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", standardize=False,
                          early_stopping=True, random_state=0)
    est.fit(X, y, dydx=G)  # runs
    rs = check_random_state(0)
    plan = est.plan_fit(X, y, None, rs, dydx=G)
    assert plan.derivatives is not None and plan.options["derivative_weight"] == 1.0
    assert len(plan.derivatives) == len(plan.data[0]) < 40
    np.testing.assert_array_equal(plan.derivatives[:, 0, 0], plan.data[0][:, 0])


def test_fit_divided_fits_the_training_rows_derivatives():
    X, y, G = _two_outputs(30)
    train = np.arange(0, 30, 2)
    kw = dict(hidden_layer_sizes=(5,), activation="tanh", solver="lm", max_iter=6,
              random_state=1)
    divided = jn.MLPRegressor(**kw)
    divided.fit_divided(X, y, train, test=np.arange(1, 30, 2), dydx=G)
    direct = jn.MLPRegressor(**kw).fit(X[train], y[train], dydx=G[train])
    np.testing.assert_array_equal(divided.network_.theta, direct.network_.theta)


def test_partial_fit_takes_derivatives_with_a_minibatch_solver():
    X, y, G = _two_outputs(32)
    est = jn.MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="adam",
                          learning_rate_init=1e-2, batch_size=8, random_state=0)
    data = sb.SobolevData(est.fit(X, y, dydx=G).scale_derivatives(G), 1.0)
    loss = jn.get_loss("mse")

    def objective():
        return sb.sobolev_loss(est.network_, X, y, loss, None, data)

    before = objective()
    for _ in range(20):
        est.partial_fit(X, y, dydx=G)
    assert objective() < before


def test_br_estimator_with_derivatives_has_finite_precisions():
    X, y, G = _two_outputs(25)
    est = jn.MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", solver="br",
                          max_iter=20, random_state=0).fit(X, y, dydx=G)
    for name in ("alpha_", "beta_", "gamma_", "log_evidence_"):
        assert np.isfinite(getattr(est, name)), name


# ------------------------------------------------------------ Bayesian regularization
def test_br_with_derivatives_runs_and_beats_br_without_at_equal_samples():
    """20 samples of sin(x1) cos(x2): trainbr on the values and their gradients has finite
    gamma, alpha and beta, and a test RMSE lower by a margin than on the values alone."""
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(-2, 2, size=(20, 2)), rng.uniform(-2, 2, size=(500, 2))
    y, G = _sin_cos(X)
    yt, _ = _sin_cos(Xt)
    rmse = {}
    for with_derivatives in (False, True):
        net = jn.Network([jn.Dense(2, 16, "tanh"), jn.Dense(16, 1)], seed=0)
        extra = {"dTdX": G} if with_derivatives else {}
        rec = jn.train(net, X, y[:, None], "br", loss="sse", max_epochs=100, seed=0, **extra)
        last = rec.epochs[-1]
        for key in ("gamma", "alpha", "beta", "log_evidence"):
            assert np.isfinite(last[key]), (key, with_derivatives)
        assert 0 < last["gamma"] <= net.n_params
        rmse[with_derivatives] = float(np.sqrt(np.mean((net.forward(Xt)[:, 0] - yt) ** 2)))
    assert rmse[True] * 5 < rmse[False], rmse


def test_br_counts_the_observed_derivatives_in_N_e():
    """N_e = values + observed derivatives; an integer sample weight counts as repeated
    rows, as for the values."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 2))
    y, G = _sin_cos(X)
    G[1, 0] = G[4, 1] = np.nan
    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    data = sb.SobolevData(sb.check_derivatives(G, net, 6), 1.0)
    plain = jn.SobolevObjective(net, X, y[:, None], jn.get_loss("sse"), None, data=data)
    assert plain.n_weighted == plain.n_values == 6 + 10
    w = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])
    weighted = jn.SobolevObjective(net, X, y[:, None], jn.get_loss("sse"), w, data=data)
    assert weighted.n_weighted == 9 * 3 - 2 - 3
    seen = []

    class Spy(jn.BayesianRegularization):
        def start(self, run):
            super().start(run)
            seen.append(self._data.n_values)

    jn.train(net, X, y[:, None], Spy(), loss="sse", max_epochs=1, dTdX=G, sample_weight=w)
    assert seen == [9 * 3 - 2 - 3]


def test_scaled_loss_keeps_its_factor_with_derivatives():
    """The estimators' half mean (``Scaled(mse, 1/(2q))``): value, gradient and the
    Gauss-Newton scale are the factor times mse's."""
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(7, 2)), rng.normal(size=(7, 1))
    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    data = sb.SobolevData(rng.normal(size=(7, 1, 2)), 0.5)
    base = jn.SobolevObjective(net, X, T, jn.get_loss("mse"), None, data=data)
    half = jn.SobolevObjective(net, X, T, Scaled("mse", 0.5), None, data=data)
    v0, g0 = base.value_and_grad()
    g0 = g0.copy()
    v1, g1 = half.value_and_grad()
    assert v1 == pytest.approx(0.5 * v0, rel=1e-14)
    np.testing.assert_allclose(g1, 0.5 * g0, rtol=1e-13)
    assert half.system(None, None).scale == pytest.approx(0.5 * base.system(None, None).scale)
    bp = sb.SobolevBackprop(net, Scaled("mse", 0.5))
    assert bp(X, T, None, data) == pytest.approx(v1, rel=1e-13)


# ------------------------------------------------------------------ bad input
def test_dydx_of_the_wrong_shape_or_infinite_is_named():
    X, y, G = _two_outputs(10)
    est = jn.MLPRegressor(hidden_layer_sizes=(3,), solver="lm", max_iter=2)
    with pytest.raises(ValueError, match=r"dydx must have shape \(N, n_outputs, n_features\)"):
        est.fit(X, y, dydx=G[:, :, :1])
    with pytest.raises(ValueError, match="dydx must have shape"):
        est.fit(X, y, dydx=G[:5])
    with pytest.raises(ValueError, match="dydx must have shape"):
        est.fit(X, y, dydx=G[:, 0])  # the 2-D form is for one output only
    G[2, 1, 0] = -np.inf
    with pytest.raises(ValueError, match="dydx must hold finite numbers or NaN"):
        est.fit(X, y, dydx=G)
    with pytest.raises(TypeError, match="dydx must hold real numbers"):
        est.fit(X, y, dydx=np.full(G.shape, "a"))
    with pytest.raises(ValueError, match="dydx must have shape"):
        est.fit_divided(X, y, np.arange(8), dydx=G[:8])


def test_one_output_takes_both_shapes_of_dydx():
    X, y, G = _two_outputs(12)
    kw = dict(hidden_layer_sizes=(3,), solver="lm", max_iter=3, random_state=0)
    a = jn.MLPRegressor(**kw).fit(X, y[:, 0], dydx=G[:, 0])
    b = jn.MLPRegressor(**kw).fit(X, y[:, 0], dydx=G[:, :1])
    np.testing.assert_array_equal(a.network_.theta, b.network_.theta)


def test_derivatives_that_cannot_work_are_named(oracle):
    X, y, G = _two_outputs(10)
    labels = (y[:, 0] > 5).astype(int)
    with pytest.raises(ValueError, match="dydx .*regression.*MLPClassifier"):
        jn.MLPClassifier(hidden_layer_sizes=(3,)).fit(X, labels, dydx=G[:, 0])
    with pytest.raises(ValueError, match="dydx .*regression"):
        jn.MLPClassifier(hidden_layer_sizes=(3,)).fit_divided(X, labels, np.arange(10),
                                                              dydx=G[:, 0])
    with pytest.raises(ValueError, match="dydx .*loss='squared_error'.*huber"):
        jn.MLPRegressor(loss="huber", hidden_layer_sizes=(3,)).fit(X, y, dydx=G)
    with pytest.raises(ValueError, match="derivative_weight"):
        jn.MLPRegressor(derivative_weight=-1.0).fit(X, y, dydx=G)
    est = jn.MLPRegressor(hidden_layer_sizes=(3,), activation=oracle.Cube(), solver="lm",
                          max_iter=2)
    with pytest.raises(ValueError, match=r"dydx .*layers\[0\].*Cube"):
        est.fit(X, y, dydx=G)
    assert not hasattr(est, "network_")  # left unfitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)  # everything else keeps working


def test_partial_fit_with_a_full_batch_solver_is_refused():
    X, y, G = _two_outputs(10)
    with pytest.raises(AttributeError, match="partial_fit"):
        jn.MLPRegressor(solver="lm").partial_fit(X, y, dydx=G)


# ------------------------------------------------------------------ the docs
def test_training_md_derivative_data_example():
    """docs/training.md's "Derivative data" block: the input Jacobian it shows is close to
    the true gradient (where it was observed and where not)."""
    from test_docs import block, execute

    ns: dict = {}
    value, _ = execute(block("derivative data"), ns)
    assert value.shape == (2, 1, 2)
    np.testing.assert_allclose(value[:, 0], _sin_cos(ns["X"][:2])[1], atol=0.05)
