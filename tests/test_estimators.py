"""MLPRegressor and MLPClassifier: scikit-learn interoperability, parameters, fitted
attributes, the model in data units (coefs_, Jacobians), jacnet's extras and bad input.

scikit-learn's own check suite runs in ``test_estimators_sklearn.py``.
"""

from __future__ import annotations

import inspect
import io
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn.neural_network as sknn
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from jacnet import MLPClassifier, MLPRegressor, Network, TrainingRecord
from jacnet.activations import LeakyReLU

#: jacnet's constructor parameters that scikit-learn's estimators do not have
EXTRA_PARAMS = {
    "output_activation", "mu", "mu_dec", "mu_inc", "mu_max", "goal", "min_grad",
    "standardize", "dtype", "early_stopping_metric",
}
FULL_BATCH = ("lbfgs", "lm")

# Most fits here are deliberately short: not converging is expected, not a finding.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """One BLAS thread per xdist worker: on tiny arrays OpenBLAS's thread hand-off costs
    more than the work (scipy's L-BFGS-B runs 20x slower with two threads on two cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ------------------------------------------------------------------------- data
_X_SCALE = np.array([1.0, 10.0, 0.1, 3.0])
_X_SHIFT = np.array([5.0, -2.0, 0.0, 1.0])


def _regression_data(n: int = 40, q: int = 2, seed: int = 0):
    """Inputs with very different column scales and offsets, targets far from N(0, 1),
    so that standardisation matters; ``y`` is 1-D when ``q == 1``."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    X = Z * _X_SCALE + _X_SHIFT
    Y = np.c_[np.sin(Z[:, 0]) + Z[:, 1], Z[:, 2] * Z[:, 3], Z[:, 0] - Z[:, 3]][:, :q] * 50 + 7
    return X, (Y[:, 0] if q == 1 else Y)


def _classification_data(n: int = 60, n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centers = rng.normal(size=(n_classes, 4)) * 2
    Z = centers[y] + rng.normal(size=(n, 4)) * 0.7
    return Z * _X_SCALE + _X_SHIFT, y


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _reg(**kw) -> MLPRegressor:
    return MLPRegressor(**{"hidden_layer_sizes": (5,), "random_state": 0, **kw})


def _clf(**kw) -> MLPClassifier:
    return MLPClassifier(**{"hidden_layer_sizes": (5,), "random_state": 0, **kw})


# ------------------------------------------------------------ scikit-learn tools
def test_estimator_pipeline_matches_manual_scaling():
    X, y = _classification_data()
    pipe = make_pipeline(StandardScaler(), _clf(solver="lbfgs", max_iter=50)).fit(X, y)
    scaler = StandardScaler().fit(X)
    alone = _clf(solver="lbfgs", max_iter=50).fit(scaler.transform(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(X), alone.predict_proba(scaler.transform(X)))
    assert pipe.score(X, y) > 0.9


@pytest.mark.slow  # worker processes, each importing scikit-learn and jacnet: make test-all
def test_estimator_grid_search_parallel_matches_serial():
    X, y = _classification_data()
    grid = {"hidden_layer_sizes": [(3,), (6,)], "alpha": [1e-4, 1.0]}
    est = _clf(solver="lbfgs", max_iter=30)
    parallel = GridSearchCV(est, grid, cv=3, n_jobs=2).fit(X, y)
    serial = GridSearchCV(est, grid, cv=3, n_jobs=1).fit(X, y)
    scores = parallel.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, serial.cv_results_["mean_test_score"])
    assert isinstance(parallel.best_estimator_, MLPClassifier)
    assert parallel.best_estimator_.get_params()["alpha"] == parallel.best_params_["alpha"]
    assert parallel.best_score_ > 0.8


def test_estimator_cross_val_score_regressor_and_classifier():
    X, y = _regression_data(n=60, q=1)
    r2 = cross_val_score(_reg(solver="lm", max_iter=20), X, y, cv=3)
    assert r2.shape == (3,) and (r2 > 0.5).all()
    Xc, yc = _classification_data()
    acc = cross_val_score(_clf(solver="lbfgs", max_iter=50), Xc, yc, cv=3)
    assert acc.shape == (3,) and (acc > 0.8).all()


@pytest.mark.parametrize(
    "activation", ["tanh", ["tanh", "softmax"], LeakyReLU(negative_slope=0.2)],
    ids=["name", "list", "instance"],
)
def test_estimator_clone_is_unfitted_with_same_params(activation):
    X, y = _classification_data()
    est = _clf(hidden_layer_sizes=(4, 3), activation=activation, solver="lm", max_iter=3,
               mu=0.5, dtype="float32").fit(X, y)
    copy = clone(est)
    assert type(copy) is MLPClassifier
    for name in ("network_", "coefs_", "classes_", "n_iter_", "training_record_"):
        assert not hasattr(copy, name), name
    with pytest.raises(NotFittedError):
        copy.predict(X)
    params, copied = est.get_params(), copy.get_params()
    assert params.keys() == copied.keys()
    for name, value in params.items():
        if name == "activation" and not isinstance(value, str):
            assert repr(copied[name]) == repr(value)
        else:
            assert copied[name] == value, name


@pytest.mark.parametrize("solver", ["adam", "lbfgs", "lm"])
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_estimator_pickle_predictions_identical(cls, solver):
    X, y = _regression_data(q=2) if cls is MLPRegressor else _classification_data()
    est = cls(hidden_layer_sizes=(5,), solver=solver, max_iter=10, random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    via_joblib = joblib.load(buffer)
    for other in (loaded, via_joblib):
        np.testing.assert_array_equal(other.predict(X), est.predict(X))
        np.testing.assert_array_equal(other.jacobian(X), est.jacobian(X))
        if cls is MLPClassifier:
            np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
        assert other.get_params() == est.get_params()


def test_estimator_pickle_keeps_theta_bound_to_layers():
    X, y = _regression_data(q=2)
    est = _reg(solver="lm", max_iter=5).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    before = loaded.predict(X)
    loaded.network_.theta[:] = 0  # a zero network predicts the constant y_mean_
    assert np.ptp(loaded.predict(X), axis=0).max() < 1e-9 * np.abs(before).max()
    again = pickle.loads(pickle.dumps(est)).set_params(warm_start=True).fit(X, y)
    # as in scikit-learn, a warm start extends the curve; its new part starts from est's theta
    n = len(est.loss_curve_)
    assert again.loss_curve_[:n] == est.loss_curve_
    assert again.loss_curve_[n] <= est.loss_


# ------------------------------------------------------------------ fixed division
def test_fit_divided_without_validation_equals_fit_on_the_training_rows():
    X, y = _regression_data(n=60, q=2)
    rows = np.arange(0, 60, 3)
    plain = _reg(solver="lm", max_iter=5).fit(X[rows], y[rows])
    divided = _reg(solver="lm", max_iter=5)
    record = divided.fit_divided(X, y, rows)
    np.testing.assert_array_equal(divided.network_.theta, plain.network_.theta)
    np.testing.assert_array_equal(divided.x_mean_, plain.x_mean_)  # training rows' statistics
    assert record is divided.training_record_
    assert record.division["train"].tolist() == rows.tolist()
    assert record.division["validation"].size == record.division["test"].size == 0
    assert divided.loss_curve_ == plain.loss_curve_


def test_fit_divided_stops_on_validation_rows_and_only_logs_the_test_rows():
    X, y = _classification_data(n=90)
    tr, va, te = np.arange(0, 60), np.arange(60, 75), np.arange(75, 90)
    est = _clf(solver="adam", max_iter=300, learning_rate_init=0.05)
    record = est.fit_divided(X, y, tr, va, te, max_fail=4)
    assert record.stop_reason == "validation"
    val = [e["val_loss"] for e in record.epochs]
    assert record.best_epoch == 1 + int(np.argmin(val)) < len(val) - 3
    assert all(np.isfinite(e["test_loss"]) for e in record.epochs)
    # the kept weights are the best epoch's: the validation loss now is the lowest seen
    proba = est.predict_proba(X[va])
    val_now = -np.mean(np.log(proba[np.arange(len(va)), y[va]]))
    assert val_now == pytest.approx(min(val), rel=1e-6, abs=1e-3 * est.alpha)
    # other test targets change no weight: the test rows never steer training
    y_other = y.copy()
    y_other[te] = (y[te] + 1) % 3
    other = _clf(solver="adam", max_iter=300, learning_rate_init=0.05)
    other.fit_divided(X, y_other, tr, va, te, max_fail=4)
    np.testing.assert_array_equal(other.network_.theta, est.network_.theta)


def test_fit_divided_rejects_an_empty_training_part():
    X, y = _regression_data()
    with pytest.raises(ValueError, match="train must name at least one row"):
        _reg().fit_divided(X, y, [])
    with pytest.raises(ValueError, match=r"validation must hold row positions in \[0, 40\)"):
        _reg().fit_divided(X, y, [0, 1], [39, 40])
    with pytest.raises(ValueError, match="max_fail must be an int >= 1"):
        _reg().fit_divided(X, y, [0, 1], max_fail=0)
    with pytest.raises(TypeError, match="max_fail must be an int >= 1"):
        _reg().fit_divided(X, y, [0, 1], max_fail=2.5)
    with pytest.raises(ValueError, match="test must hold integer row positions"):
        _reg().fit_divided(X, y, [0, 1], test=[2.0, 3.5])
    with pytest.raises(ValueError, match="train as a boolean mask must have 40 entries"):
        _reg().fit_divided(X, y, [True, False])


def test_fit_divided_takes_boolean_masks_as_row_positions():
    X, y = _regression_data()
    mask = np.zeros(len(X), dtype=bool)
    mask[:30] = True
    by_mask = _reg().fit_divided(X, y, mask, ~mask)
    by_rows = _reg().fit_divided(X, y, np.arange(30), np.arange(30, len(X)))
    np.testing.assert_array_equal(by_mask.division["train"], np.arange(30))
    np.testing.assert_array_equal(by_mask.column("loss"), by_rows.column("loss"))


# ------------------------------------------------------------------ sample weights
@pytest.mark.parametrize("solver", FULL_BATCH)
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_estimator_integer_sample_weight_equals_repeated_rows(cls, solver):
    X, y = _regression_data(n=30, q=2) if cls is MLPRegressor else _classification_data(n=30)
    w = np.random.default_rng(1).integers(0, 4, size=X.shape[0])
    kw = {"hidden_layer_sizes": (5,), "solver": solver, "random_state": 0, "max_iter": 15,
          "alpha": 0.1}
    weighted = cls(**kw).fit(X, y, sample_weight=w)
    repeated = cls(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    out = "predict" if cls is MLPRegressor else "predict_proba"
    np.testing.assert_allclose(getattr(weighted, out)(X), getattr(repeated, out)(X),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-7)


@pytest.mark.parametrize("solver", ["adam", "lbfgs", "lm"])
def test_estimator_unit_sample_weight_equals_none(solver):
    X, y = _regression_data(q=2)
    plain = _reg(solver=solver, max_iter=10).fit(X, y)
    ones = _reg(solver=solver, max_iter=10).fit(X, y, sample_weight=np.ones(X.shape[0]))
    np.testing.assert_allclose(ones.predict(X), plain.predict(X), rtol=1e-9, atol=1e-9)
    halves = _reg(solver=solver, max_iter=10).fit(X, y, sample_weight=np.r_[np.ones(20),
                                                                             np.zeros(20)])
    assert not np.allclose(halves.predict(X), plain.predict(X), rtol=1e-3)


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "ours, theirs", [(MLPRegressor, sknn.MLPRegressor), (MLPClassifier, sknn.MLPClassifier)],
    ids=["regressor", "classifier"],
)
def test_estimator_params_superset_of_sklearn_with_same_defaults(ours, theirs):
    mine, sk = ours().get_params(), theirs().get_params()
    missing = set(sk) - set(mine)
    assert not missing, f"scikit-learn parameters missing: {sorted(missing)}"
    assert {k: mine[k] for k in sk} == sk
    regression_only = {"derivative_weight"} if ours is MLPRegressor else set()
    assert set(mine) - set(sk) == EXTRA_PARAMS | regression_only


@pytest.mark.parametrize(
    "ours, theirs", [(MLPRegressor, sknn.MLPRegressor), (MLPClassifier, sknn.MLPClassifier)],
    ids=["regressor", "classifier"],
)
def test_estimator_positional_params_match_sklearn(ours, theirs):
    def positional(cls):
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"]

    assert positional(ours) == positional(theirs)


# --------------------------------------------------------------- fitted attributes
def test_regressor_fitted_attributes():
    X, y = _regression_data(n=40, q=3)
    est = MLPRegressor(hidden_layer_sizes=(6, 4), solver="adam", max_iter=7, random_state=0,
                       batch_size=16, n_iter_no_change=100).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(4, 6), (6, 4), (4, 3)]
    assert [b.shape for b in est.intercepts_] == [(6,), (4,), (3,)]
    assert all(c.dtype == np.float64 for c in est.coefs_ + est.intercepts_)
    assert est.n_iter_ == 7 and isinstance(est.n_iter_, int)
    assert isinstance(est.loss_curve_, list) and len(est.loss_curve_) == 7
    assert isinstance(est.loss_, float) and est.loss_ == est.loss_curve_[-1]
    assert isinstance(est.best_loss_, float) and est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.n_layers_ == 4 and est.n_outputs_ == 3 and est.out_activation_ == "identity"
    assert est.t_ == 40 * 7
    assert est.n_features_in_ == 4 and not hasattr(est, "feature_names_in_")
    assert not hasattr(est, "classes_")
    assert isinstance(est.network_, Network) and est.network_.n_in == 4
    assert isinstance(est.training_record_, TrainingRecord)
    assert est.training_record_.n_epochs == est.n_iter_
    assert [e["loss"] for e in est.training_record_.epochs] == est.loss_curve_


def test_classifier_fitted_attributes_with_early_stopping():
    X, y = _classification_data(n=90)
    est = _clf(solver="adam", early_stopping=True, validation_fraction=0.2, max_iter=15,
               learning_rate_init=0.01, n_iter_no_change=100).fit(X, y)
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    assert est.n_outputs_ == 3 and est.out_activation_ == "softmax" and est.n_layers_ == 3
    assert est.best_loss_ is None
    assert isinstance(est.validation_scores_, list) and len(est.validation_scores_) == est.n_iter_
    assert all(0 <= s <= 1 for s in est.validation_scores_)
    assert isinstance(est.best_validation_score_, float)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.t_ == 72 * est.n_iter_  # the training part only: 90 - 18 validation samples
    assert [len(v) for v in est.training_record_.division.values()] == [72]
    assert all(e["val_loss"] is not None for e in est.training_record_.epochs)


def test_estimator_feature_names_in_from_dataframe():
    X, y = _classification_data()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = _clf(solver="lbfgs", max_iter=20).fit(frame, y)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.predict(frame), est.predict(X))
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(pd.DataFrame(X, columns=["a", "b", "x", "d"]))


# ------------------------------------------------------------------------- methods
def test_regressor_partial_fit_one_epoch_per_call():
    X, y = _regression_data(q=2)
    est = _reg(solver="sgd", learning_rate_init=1e-4)
    assert est.partial_fit(X, y) is est
    est.partial_fit(X, y)
    est.partial_fit(X[:10], y[:10])
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert est.t_ == 40 + 40 + 10
    assert est.training_record_.n_epochs == 3
    assert est.predict(X).shape == (40, 2)
    with pytest.raises(ValueError, match="2 outputs"):
        est.partial_fit(X, y[:, 0])


def test_classifier_partial_fit_with_classes_keeps_every_class():
    X, y = _classification_data()
    labels = np.array(["a", "b", "c"])[y]
    est = _clf(solver="adam")
    first = labels != "c"
    est.partial_fit(X[first], labels[first], classes=["a", "b", "c"])
    np.testing.assert_array_equal(est.classes_, ["a", "b", "c"])
    assert est.predict_proba(X).shape == (60, 3) and est.out_activation_ == "softmax"
    for _ in range(3):
        est.partial_fit(X, labels)
    assert est.n_iter_ == 4
    assert set(est.predict(X)) <= {"a", "b", "c"}


@pytest.mark.parametrize("solver", ["adam", "lbfgs", "lm"])
def test_classifier_predict_proba_rows_sum_to_one(solver):
    X, y = _classification_data()
    est = _clf(solver=solver, max_iter=10).fit(X, y)
    P = est.predict_proba(X)
    assert P.shape == (60, 3) and (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(est.predict_log_proba(X), np.log(P), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X), est.classes_[P.argmax(axis=1)])


def test_estimator_score_is_accuracy_and_r2():
    X, y = _classification_data()
    clf = _clf(solver="lbfgs", max_iter=20).fit(X, y)
    w = np.arange(60) % 4
    assert clf.score(X, y) == accuracy_score(y, clf.predict(X))
    assert clf.score(X, y, sample_weight=w) == accuracy_score(y, clf.predict(X), sample_weight=w)
    Xr, yr = _regression_data(q=2)
    reg = _reg(solver="lm", max_iter=10).fit(Xr, yr)
    assert reg.score(Xr, yr) == pytest.approx(r2_score(yr, reg.predict(Xr)), rel=1e-12)


# ------------------------------------------------- the fitted model in data units
_NUMPY_ACTIVATIONS = {
    "identity": lambda T: T,
    "relu": lambda T: np.maximum(T, 0),
    "tanh": np.tanh,
    "logistic": lambda T: 1 / (1 + np.exp(-T)),
    "softmax": lambda T: np.exp(T - T.max(1, keepdims=True))
    / np.exp(T - T.max(1, keepdims=True)).sum(1, keepdims=True),
}


def _manual_forward(est, X, hidden):
    """``y = f_n(... f_1(x W_1 + b_1) ...)`` from coefs_ and intercepts_ alone."""
    A = X
    acts = [*hidden, est.out_activation_]
    for W, b, f in zip(est.coefs_, est.intercepts_, acts, strict=True):
        A = _NUMPY_ACTIVATIONS[f](A @ W + b)
    return A


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("solver", ["adam", "lm"])
def test_regressor_coefs_reproduce_predict(solver, standardize):
    X, y = _regression_data(q=2)
    est = _reg(hidden_layer_sizes=(6, 5), activation=["tanh", "relu"], solver=solver,
               standardize=standardize, max_iter=10).fit(X, y)
    assert (est.x_mean_ is not None) is standardize
    assert (est.y_mean_ is not None) is standardize
    pred = est.predict(X)
    assert _rel_err(_manual_forward(est, X, ["tanh", "relu"]), pred) < 1e-12


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_coefs_reproduce_predict_proba(n_classes, standardize):
    X, y = _classification_data(n_classes=n_classes)
    est = _clf(activation="tanh", solver="lm", standardize=standardize, max_iter=10).fit(X, y)
    assert est.y_mean_ is None  # class targets are never standardised
    out = _manual_forward(est, X, ["tanh"])
    P = est.predict_proba(X)
    assert _rel_err(out, P if n_classes > 2 else P[:, 1:]) < 1e-12


def _fd_input_jacobian(f, X):
    """Central differences of ``f`` (N, m) w.r.t. each input column, (N, m, n_features)."""
    h = 1e-6 * X.std(axis=0)
    cols = []
    for j in range(X.shape[1]):
        E = np.zeros_like(X)
        E[:, j] = h[j]
        cols.append((f(X + E) - f(X - E)) / (2 * h[j]))
    return np.stack(cols, axis=-1)


def _fd_theta_jacobian(est, f, X, h=1e-6):
    """Central differences of ``f`` (N, m) w.r.t. ``network_.theta``, perturbed in place."""
    theta = est.network_.theta
    cols = []
    for p in range(theta.size):
        old = theta[p]
        theta[p] = old + h
        up = f(X)
        theta[p] = old - h
        down = f(X)
        theta[p] = old
        cols.append((up - down) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("standardize", [True, False])
def test_regressor_jacobians_match_finite_differences_in_data_units(standardize):
    X, y = _regression_data(n=12, q=2)
    est = _reg(activation="tanh", solver="lm", standardize=standardize, max_iter=10).fit(X, y)
    Jx = est.input_jacobian(X)
    assert Jx.shape == (12, 2, 4)
    assert _rel_err(Jx, _fd_input_jacobian(est.predict, X)) < 1e-6
    J = est.jacobian(X)
    assert J.shape == (12, 2, est.network_.n_params)
    assert _rel_err(J, _fd_theta_jacobian(est, est.predict, X)) < 1e-6
    np.testing.assert_array_equal(est.predict(X), est.predict(X))  # theta restored


@pytest.mark.parametrize("standardize", [True, False])
def test_classifier_jacobians_match_finite_differences_of_predict_proba(standardize):
    X, y = _classification_data(n=12)
    est = _clf(activation="tanh", solver="lm", standardize=standardize, max_iter=5).fit(X, y)
    assert _rel_err(est.input_jacobian(X), _fd_input_jacobian(est.predict_proba, X)) < 1e-6
    J = est.jacobian(X)
    assert J.shape == (12, 3, est.network_.n_params)
    assert _rel_err(J, _fd_theta_jacobian(est, est.predict_proba, X)) < 1e-6


def test_classifier_binary_jacobian_is_the_positive_class_column():
    X, y = _classification_data(n=12, n_classes=2)
    est = _clf(activation="tanh", solver="lm", max_iter=5).fit(X, y)
    J = est.jacobian(X)
    assert J.shape == (12, 1, est.network_.n_params)
    def positive(Z):
        return est.predict_proba(Z)[:, 1:]

    assert _rel_err(J, _fd_theta_jacobian(est, positive, X)) < 1e-6
    assert _rel_err(est.input_jacobian(X), _fd_input_jacobian(positive, X)) < 1e-6


# ------------------------------------------------------------------ jacnet's extras
def test_regressor_multi_output():
    X, Y = _regression_data(n=60, q=3)
    est = _reg(hidden_layer_sizes=(10,), activation="tanh", solver="lm", max_iter=30).fit(X, Y)
    assert est.n_outputs_ == 3 and est.predict(X).shape == (60, 3)
    assert est.score(X, Y) > 0.9
    assert est.score(X, Y) == pytest.approx(r2_score(Y, est.predict(X)))


def test_regressor_single_output_column_predicts_1d():
    X, y = _regression_data(q=1)
    with pytest.warns(Warning, match="column-vector y"):
        est = _reg(solver="lbfgs", max_iter=5).fit(X, y[:, None])
    assert est.n_outputs_ == 1 and est.predict(X).shape == (40,)


def test_classifier_multilabel_uses_sigmoid_outputs():
    X, _ = _classification_data(n=90)
    Z = (X - _X_SHIFT) / _X_SCALE
    Y = np.c_[Z[:, 0] > 0, Z[:, 1] + Z[:, 2] > 0, Z[:, 3] < 0.5].astype(int)
    est = _clf(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200).fit(X, Y)
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 3
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    P = est.predict_proba(X)
    assert P.shape == (90, 3) and ((P >= 0) & (P <= 1)).all()
    assert not np.allclose(P.sum(axis=1), 1)  # independent labels, not a distribution
    pred = est.predict(X)
    np.testing.assert_array_equal(pred, (P > 0.5).astype(int))
    assert (pred == Y).mean() > 0.9


def test_classifier_string_labels():
    X, y = _classification_data()
    labels = np.array(["dog", "cat", "fish"])[y]
    est = _clf(solver="lbfgs", max_iter=50).fit(X, labels)
    np.testing.assert_array_equal(est.classes_, ["cat", "dog", "fish"])
    pred = est.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= {"cat", "dog", "fish"}
    assert est.score(X, labels) > 0.9


def test_classifier_binary_predict_proba_has_two_columns():
    X, y = _classification_data(n_classes=2)
    est = _clf(solver="lm", max_iter=10).fit(X, np.array([-1, 1])[y])
    assert est.n_outputs_ == 1 and est.out_activation_ == "logistic"
    P = est.predict_proba(X)
    assert P.shape == (60, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X), np.where(P[:, 1] > 0.5, 1, -1))


def test_estimator_activation_list_with_softmax_hidden_layer():
    X, y = _regression_data(q=1)
    est = _reg(hidden_layer_sizes=(6, 5), activation=["tanh", "softmax"], solver="lm",
               max_iter=10).fit(X, y)
    names = [layer.activation.name for layer in est.network_.layers]
    assert names == ["tanh", "softmax", "identity"]
    H = np.tanh(X @ est.coefs_[0] + est.intercepts_[0])
    S = _NUMPY_ACTIVATIONS["softmax"](H @ est.coefs_[1] + est.intercepts_[1])
    np.testing.assert_allclose(S.sum(axis=1), 1, rtol=1e-12)
    assert _rel_err((S @ est.coefs_[2] + est.intercepts_[2]).ravel(), est.predict(X)) < 1e-12
    assert _rel_err(est.input_jacobian(X)[:, 0], _fd_input_jacobian(
        lambda Z: est.predict(Z)[:, None], X)[:, 0]) < 1e-6


def test_estimator_activation_instance():
    X, y = _regression_data(q=1)
    act = LeakyReLU(negative_slope=0.3)
    est = _reg(hidden_layer_sizes=(4, 4), activation=act, solver="lbfgs", max_iter=20).fit(X, y)
    for layer in est.network_.layers[:-1]:
        assert layer.activation.name == "leaky_relu"
        assert layer.activation.get_config()["negative_slope"] == 0.3
    T = X @ est.coefs_[0] + est.intercepts_[0]
    H = np.where(T > 0, T, 0.3 * T)
    T = H @ est.coefs_[1] + est.intercepts_[1]
    H = np.where(T > 0, T, 0.3 * T)
    assert _rel_err((H @ est.coefs_[2] + est.intercepts_[2]).ravel(), est.predict(X)) < 1e-12


def test_regressor_output_activation_bounds_predictions():
    X, _ = _regression_data()
    y = np.tanh((X[:, 0] - 5) + (X[:, 1] + 2) / 10)
    est = _reg(output_activation="tanh", solver="lm", max_iter=20).fit(X, y)
    assert est.out_activation_ == "tanh"
    assert est.y_mean_ is None  # a bounded output is not standardised away
    far = X * 100
    assert (np.abs(est.predict(far)) <= 1).all()
    assert est.score(X, y) > 0.8


@pytest.mark.parametrize("loss", ["squared_error", "huber", "poisson"])
def test_regressor_loss_value_in_sklearn_units(loss):
    """With lbfgs and alpha=0, loss_ is the objective at the final weights: half the mean
    squared error (as scikit-learn), or the mean Huber / Poisson loss, per output."""
    X, Y = _regression_data(q=2)
    if loss == "poisson":
        Y = np.random.default_rng(0).poisson(np.exp(0.3 * (X[:, [0, 3]] - _X_SHIFT[[0, 3]])))
    else:
        Y = Y / 50  # residuals both inside and outside Huber's delta=1
    est = _reg(loss=loss, solver="lbfgs", alpha=0.0, max_iter=30).fit(X, Y)
    pred = est.predict(X)
    R = pred - Y
    if loss == "squared_error":
        per_entry = 0.5 * R**2
    elif loss == "huber":
        per_entry = np.where(np.abs(R) <= 1, 0.5 * R**2, np.abs(R) - 0.5)
    else:
        per_entry = pred - Y * np.log(pred)
    assert est.loss_ == pytest.approx(per_entry.mean(), rel=1e-9)
    assert est.out_activation_ == ("exp" if loss == "poisson" else "identity")
    if loss == "poisson":
        assert (pred > 0).all()
    if loss == "huber":
        assert (np.abs(R) > 1).any() and (np.abs(R) <= 1).any()


@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
@pytest.mark.parametrize("solver", ["adam", "lm"])
def test_estimator_float32_end_to_end(cls, solver):
    X, y = _regression_data(q=2) if cls is MLPRegressor else _classification_data()
    est = cls(hidden_layer_sizes=(5,), solver=solver, dtype="float32", max_iter=10,
              random_state=0).fit(X, y)
    assert est.network_.dtype == np.float32 and est.network_.theta.dtype == np.float32
    assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
    out = est.predict(X) if cls is MLPRegressor else est.predict_proba(X)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert est.jacobian(X).dtype == np.float32
    assert est.input_jacobian(X).dtype == np.float32
    ref = cls(hidden_layer_sizes=(5,), solver=solver, max_iter=10, random_state=0).fit(X, y)
    ref_out = ref.predict(X) if cls is MLPRegressor else ref.predict_proba(X)
    assert _rel_err(out, ref_out) < 0.05  # same fit up to float32 rounding along the way


def test_estimator_warm_start_adam_continues_exactly():
    X, y = _regression_data(q=2)
    kw = {"solver": "adam", "shuffle": False, "n_iter_no_change": 1000,
          "learning_rate_init": 0.01}
    warm = _reg(warm_start=True, max_iter=5, **kw).fit(X, y)
    theta_5 = warm.network_.get_flat()
    warm.fit(X, y)
    assert not np.array_equal(warm.network_.theta, theta_5)
    straight = _reg(max_iter=10, **kw).fit(X, y)
    np.testing.assert_allclose(warm.network_.theta, straight.network_.theta, rtol=1e-12)
    assert warm.t_ == straight.t_ == 400


def test_estimator_warm_start_lm_starts_from_previous_weights():
    X, y = _regression_data(q=2)
    est = _reg(solver="lm", warm_start=True, max_iter=5).fit(X, y)
    first_loss, n_first = est.loss_, est.n_iter_
    est.fit(X, y)
    assert est.loss_curve_[n_first] <= first_loss  # LM keeps only steps that lower the loss
    cold = _reg(solver="lm", warm_start=False, max_iter=5).fit(X, y)
    cold_again = clone(cold).fit(X, y)
    assert cold_again.loss_curve_[0] > first_loss
    with pytest.raises(ValueError, match="same classes"):
        Xc, yc = _classification_data()
        clf = _clf(solver="lm", warm_start=True, max_iter=2).fit(Xc, yc)
        clf.fit(Xc[yc < 2], yc[yc < 2])


@pytest.mark.parametrize("solver", ["adam"])
def test_estimator_warm_start_appends_to_loss_curve_as_sklearn(solver):
    """scikit-learn keeps appending to loss_curve_ (and counting n_iter_, t_) when a
    warm-started model is fitted again; so does jacnet, and with its optimizer state
    carried over the curve is the one of a single fit of twice the epochs."""
    X, y = _regression_data(q=2)
    kw = {"solver": solver, "shuffle": False, "n_iter_no_change": 1000,
          "learning_rate_init": 0.01, "max_iter": 4}
    theirs = sknn.MLPRegressor(hidden_layer_sizes=(5,), warm_start=True, random_state=0, **kw)
    theirs.fit(X, y).fit(X, y)
    ours = _reg(warm_start=True, **kw).fit(X, y).fit(X, y)
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 8
    assert ours.n_iter_ == theirs.n_iter_ == 4  # the epochs of the latest fit
    assert ours.t_ == theirs.t_ == 8 * 40
    assert ours.training_record_.n_epochs == 8
    straight = _reg(**{**kw, "max_iter": 8}).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, straight.loss_curve_, rtol=1e-12)
    cold = _reg(**kw).fit(X, y).fit(X, y)  # without warm_start the curve starts over
    assert len(cold.loss_curve_) == cold.n_iter_ == 4


@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_regressor_lm_loss_in_data_units(q, alpha):
    """With standardised targets (solver="lm"), loss_ and loss_curve_ are still in the
    targets' units: half the mean squared error plus scikit-learn's L2 term (on the
    weights as trained, alpha / (2 n) ||W||²), while training_record_ keeps the
    standardised objective it minimised."""
    X, y = _regression_data(q=q)
    est = _reg(solver="lm", max_iter=8, alpha=alpha).fit(X, y)
    assert est.y_scale_ is not None and (est.y_scale_ > 10).all()
    Wsq = sum(float(np.sum(layer.W**2)) for layer in est.network_.layers)
    expected = 0.5 * np.mean((est.predict(X) - y) ** 2) + 0.5 * alpha / len(X) * Wsq
    assert est.loss_ == pytest.approx(expected, rel=1e-9)
    assert est.loss_curve_[-1] == est.loss_ and est.best_loss_ == min(est.loss_curve_)
    trained = [e["loss"] for e in est.training_record_.epochs]
    assert [e["loss_sklearn"] for e in est.training_record_.epochs] == est.loss_curve_
    assert trained[-1] < 0.1 * est.loss_  # the standardised value, far smaller here
    same = _reg(solver="lm", max_iter=8, alpha=alpha, standardize=False).fit(X, y / 50)
    assert all("loss_sklearn" not in e for e in same.training_record_.epochs)


def test_sgd_invscaling_counts_samples_seen_as_sklearn():
    """scikit-learn's invscaling rate is lr / (t + 1)^power_t with t the samples seen
    (updated at each epoch's end), not the epoch index."""
    X, y = _regression_data(q=1)
    est = _reg(solver="sgd", learning_rate="invscaling", learning_rate_init=0.01,
               power_t=0.25, max_iter=4, n_iter_no_change=1000).fit(X, y)
    lrs = [e["lr"] for e in est.training_record_.epochs]
    np.testing.assert_allclose(lrs, [0.01 / (e * 40 + 1) ** 0.25 for e in range(4)], rtol=1e-12)
    est.partial_fit(X, y)  # continues the count: t_ = 160 samples seen
    assert est.training_record_.epochs[-1]["lr"] == pytest.approx(0.01 / 161**0.25, rel=1e-12)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("n_iter_no_change", [1, 3])
def test_stochastic_stops_after_n_iter_no_change_like_sklearn(solver, n_iter_no_change):
    """A tol no epoch can beat: the first epoch sets the best loss, then both libraries
    stop after n_iter_no_change + 1 epochs without improvement."""
    X, y = _regression_data(q=1)
    kw = {"solver": solver, "tol": 1e6, "n_iter_no_change": n_iter_no_change, "max_iter": 50}
    ours = _reg(**kw).fit(X, y)
    theirs = sknn.MLPRegressor(hidden_layer_sizes=(5,), random_state=0, **kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == n_iter_no_change + 2
    assert ours.training_record_.stop_reason == "no_improvement"


def test_stochastic_no_improvement_is_counted_against_the_best_loss():
    """scikit-learn's rule: an epoch fails when its loss is above (best so far - tol), and
    the best follows every new minimum; steady gains smaller than tol still stop it."""
    X, y = _regression_data(q=1)
    est = _reg(solver="adam", tol=0.6, n_iter_no_change=2, max_iter=1).fit(X, y)
    est._stalls.clear()
    plan = est.plan_fit(X, y[:, None], None, np.random.RandomState(0))
    rule = plan.stall
    stops = []
    for v in (10.0, 9.5, 9.0, 8.5, 8.0):
        rule.observe({"loss": v})
        stops.append(rule.fired({"loss": v}))
    assert stops == [False, False, False, True, True]  # fails: 0, 1, 2, 3 > 2


def test_sgd_adaptive_divides_lr_by_5_until_1e_6_like_sklearn():
    """learning_rate="adaptive": each stall divides the rate by 5; below 1e-6, it stops."""
    X, y = _regression_data(q=1)
    kw = {"solver": "sgd", "learning_rate": "adaptive", "tol": 1e6, "n_iter_no_change": 1,
          "max_iter": 100, "learning_rate_init": 1e-3}
    ours = _reg(**kw).fit(X, y)
    theirs = sknn.MLPRegressor(hidden_layer_sizes=(5,), random_state=0, **kw).fit(X, y)
    # the first epoch sets the best loss; then every 2 failed epochs divide the rate by
    # 5, and the stall after 5 divisions (1e-3 / 5^5 < 1e-6) stops: 1 + 6 * 2 epochs
    assert ours.n_iter_ == theirs.n_iter_ == 13
    lrs = [e["lr"] for e in ours.training_record_.epochs]
    expected = [1e-3 / 5 ** max(0, (e - 1) // 2) for e in range(13)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_lm_goal_stops_training():
    X, y = _regression_data(q=2)
    free = _reg(solver="lm", max_iter=30).fit(X, y)
    # goal is MATLAB's: the mean squared error in the targets' own units
    goal = float(np.mean((free.predict(X) - y) ** 2)) * 1.5
    est = _reg(solver="lm", max_iter=30, goal=goal).fit(X, y)
    assert est.training_record_.stop_reason == "goal"
    mse = est.training_record_.column("mse")
    assert mse[-1] <= goal < min(mse[:-1]) and est.n_iter_ < free.n_iter_
    assert np.isclose(mse[-1], np.mean((est.predict(X) - y) ** 2), rtol=1e-10)


def test_lm_min_grad_stops_training():
    X, y = _regression_data(q=2)
    est = _reg(solver="lm", max_iter=30, min_grad=1e6).fit(X, y)
    assert est.training_record_.stop_reason == "min_grad"
    assert est.n_iter_ <= 1


@pytest.mark.parametrize("mu, mu_dec, mu_inc", [(1e-3, 0.1, 10.0), (0.5, 0.5, 2.0)])
def test_lm_mu_moves_by_mu_dec_and_mu_inc(mu, mu_dec, mu_inc):
    X, y = _regression_data(q=2)
    est = _reg(solver="lm", max_iter=15, mu=mu, mu_dec=mu_dec, mu_inc=mu_inc).fit(X, y)
    mus = np.array([e["mu"] for e in est.training_record_.epochs])
    assert len(mus) == est.n_iter_ > 0
    assert not np.allclose(mus, mu)  # mu did move
    # every mu is mu * mu_dec^a * mu_inc^b; with mu_inc = 1/mu_dec, an integer power of it
    k = np.log(mus / mu) / np.log(mu_inc)
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)


@pytest.mark.parametrize("solver", ["adamw", "rmsprop", "sgd"])
def test_estimator_other_gradient_solvers_lower_the_loss(solver):
    X, y = _classification_data()
    est = _clf(hidden_layer_sizes=(8,), solver=solver, learning_rate_init=0.01, max_iter=60,
               n_iter_no_change=1000).fit(X, y)
    assert est.loss_curve_[-1] < 0.5 * est.loss_curve_[0]
    assert est.score(X, y) > 0.9


def test_estimator_converge_warning_on_max_iter():
    X, y = _regression_data(q=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="maximum iterations"):
            _reg(solver="lm", max_iter=2).fit(X, y)


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinity")])
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_estimator_rejects_non_finite_y(cls, bad, word):
    X, y = _regression_data(q=1)
    y = y.copy() if cls is MLPRegressor else (y > 7).astype(float)
    y[3] = bad
    with pytest.raises(ValueError, match=f"y contains {word}"):
        cls(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)


def test_classifier_partial_fit_rejects_unseen_labels():
    X, y = _classification_data()
    est = _clf().partial_fit(X, y, classes=[0, 1, 2])
    y_new = y.copy()
    y_new[:2] = 7
    with pytest.raises(ValueError, match=r"not seen in the first fit: \[7\].*classes_"):
        est.partial_fit(X, y_new)
    assert est.n_iter_ == 1


@pytest.mark.parametrize("sizes", [0, -3, (5, 0), (4, -1), (2.5,), (True,)])
def test_estimator_rejects_bad_hidden_layer_sizes(sizes):
    X, y = _classification_data()
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        _clf(hidden_layer_sizes=sizes).fit(X, y)


@pytest.mark.parametrize("acts", [["tanh"], ["tanh", "relu", "relu"], []])
def test_estimator_rejects_activation_list_of_wrong_length(acts):
    X, y = _regression_data(q=1)
    with pytest.raises(ValueError, match="activation.*one per hidden layer"):
        _reg(hidden_layer_sizes=(3, 3), activation=acts).fit(X, y)


def test_estimator_rejects_unknown_solver_activation_and_loss():
    X, y = _regression_data(q=1)
    with pytest.raises(ValueError, match="solver"):
        _reg(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="activation 'swish'"):
        _reg(activation="swish").fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        _reg(loss="absolute_error").fit(X, y)


@pytest.mark.parametrize("fraction, early", [(-0.1, False), (1.0, False), (1.5, True),
                                             (0.0, True)])
def test_estimator_rejects_validation_fraction_outside_unit_interval(fraction, early):
    X, y = _classification_data()
    with pytest.raises(ValueError, match="validation_fraction"):
        _clf(validation_fraction=fraction, early_stopping=early).fit(X, y)


def test_estimator_accepts_zero_validation_fraction_without_early_stopping():
    X, y = _classification_data()
    est = _clf(validation_fraction=0.0, solver="lbfgs", max_iter=5).fit(X, y)  # as sklearn
    assert est.n_iter_ == 5


@pytest.mark.parametrize("solver", FULL_BATCH)
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_estimator_partial_fit_unavailable_for_full_batch_solvers(cls, solver):
    """As in scikit-learn, ``partial_fit`` does not exist for full-batch solvers: an
    AttributeError (so ``hasattr`` is False), naming the solver."""
    est = cls(solver=solver)
    assert not hasattr(est, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as err:
        est.partial_fit  # noqa: B018
    assert f"solver='{solver}'" in str(err.value.__cause__)
    assert hasattr(cls(solver="adam"), "partial_fit")


def test_classifier_partial_fit_needs_classes_on_first_call():
    X, y = _classification_data()
    with pytest.raises(ValueError, match="classes must be passed"):
        _clf().partial_fit(X, y)


def test_estimator_rejects_other_bad_settings():
    X, y = _regression_data(q=1)
    with pytest.raises(ValueError, match="dtype"):
        _reg(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match="standardize"):
        _reg(standardize="yes").fit(X, y)
    with pytest.raises(ValueError, match="sample_weight"):
        _reg(solver="lm").fit(X, y, sample_weight=-np.ones(40))
    with pytest.raises(ValueError, match="non-negative"):
        _reg(loss="poisson").fit(X, y - 100)
    with pytest.raises(ValueError, match="early_stopping"):
        _reg(early_stopping=True).partial_fit(X, y)


# ---------------------------------------------------------------- accuracy smoke
@pytest.mark.parametrize("solver, sk_solver, max_iter", [
    ("adam", "adam", 200), ("lbfgs", "lbfgs", 100), ("lm", "lbfgs", 50)])
@pytest.mark.parametrize(
    "load", [load_iris, pytest.param(load_breast_cancer, marks=pytest.mark.slow)],
    ids=["iris", "cancer"])
def test_classifier_accuracy_close_to_sklearn(load, solver, sk_solver, max_iter):
    """Test accuracy, mean over 3 seeds, with the same architecture, budget, seeds and
    learning rate; ``solver="lm"`` against scikit-learn's lbfgs (it has no LM).

    Adam uses learning_rate_init=0.01 for both: at the default 1e-3, 200 epochs leave
    iris underfit and the accuracy of either library swings by 0.05 from seed to seed."""
    X, y = load(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

    def mean_accuracy(cls, solver):
        accs = []
        for seed in range(3):
            est = cls(hidden_layer_sizes=(10,), solver=solver, max_iter=max_iter,
                      random_state=seed, learning_rate_init=0.01 if solver == "adam" else 0.001)
            accs.append(Pipeline([("scale", StandardScaler()), ("mlp", est)])
                        .fit(Xtr, ytr).score(Xte, yte))
        return float(np.mean(accs))

    ours = mean_accuracy(MLPClassifier, solver)
    theirs = mean_accuracy(sknn.MLPClassifier, sk_solver)
    assert ours >= theirs - 0.05, (ours, theirs)
    assert ours > 0.85


@pytest.mark.parametrize("cls, activation, hidden, n_classes", [
    (MLPRegressor, "relu", (5, 3), None), (MLPRegressor, "logistic", (4,), None),
    (MLPClassifier, "tanh", (6,), 2), (MLPClassifier, "logistic", (5, 2), 3),
    (MLPRegressor, "logistic", (), None)])
def test_initial_weights_are_sklearns(cls, activation, hidden, n_classes):
    # With the same random_state the drop-in starts from scikit-learn's weights: an SGD
    # epoch at a learning rate of 1e-300 leaves both at their initial values, which must
    # agree exactly, and equal the documented draw (W then b per layer, uniform on
    # ±sqrt(factor / (fan_in + fan_out)), factor 2 for logistic and 6 otherwise).
    if n_classes is None:
        X, y = _regression_data(q=2)
    else:
        X, y = _classification_data(n_classes=n_classes)
    kw = {"hidden_layer_sizes": hidden, "activation": activation, "solver": "sgd",
          "learning_rate_init": 1e-300, "momentum": 0.0, "max_iter": 1, "random_state": 7}
    sk_cls = sknn.MLPRegressor if cls is MLPRegressor else sknn.MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = cls(**kw).fit(X, y), sk_cls(**kw).fit(X, y)
    rs = np.random.RandomState(7)
    widths = [X.shape[1], *hidden, ours.n_outputs_]
    factor = 2.0 if activation == "logistic" else 6.0
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        bound = np.sqrt(factor / (a + b))
        W, c = rs.uniform(-bound, bound, (a, b)), rs.uniform(-bound, bound, b)
        assert np.array_equal(ours.coefs_[k], W) and np.array_equal(ours.intercepts_[k], c)
        assert np.array_equal(ours.coefs_[k], theirs.coefs_[k])
        assert np.array_equal(ours.intercepts_[k], theirs.intercepts_[k])


# --------------------------------------------- review findings (each one a regression test)
@pytest.mark.parametrize("kw", [
    {"solver": "lbfgs", "tol": 1.0},  # converged before its first iteration
    {"solver": "lm", "mu": 1e11},  # mu above mu_max: trainlm stops before any step
])
def test_a_fit_that_records_no_epoch_leaves_a_complete_estimator(kw):
    X = np.random.default_rng(0).normal(size=(100, 4))
    y = 1e-4 * X[:, 0]
    est = _reg(**kw).fit(X, y)
    assert est.n_iter_ == 0 and est.loss_curve_ == [] and est.best_loss_ == np.inf
    assert len(est.coefs_) == 2 and np.isfinite(est.predict(X)).all()


def test_early_stopping_refuses_a_one_row_validation_set():
    X, y = _regression_data(n=60, q=1)
    with pytest.raises(ValueError, match="validation set is too small"):
        _reg(solver="adam", early_stopping=True, validation_fraction=0.01, max_iter=3).fit(X, y)


@pytest.mark.parametrize("first, second", [
    ({"solver": "adam"}, {"solver": "sgd"}), ({"solver": "sgd"}, {"solver": "rmsprop"}),
    ({"solver": "sgd", "momentum": 0.0}, {"solver": "sgd", "momentum": 0.9}),
])
def test_warm_start_may_change_the_optimizer(first, second):
    """scikit-learn accepts another solver in a warm-started fit; its state starts afresh."""
    X, y = _regression_data(q=1)
    est = _reg(warm_start=True, max_iter=3, **first).fit(X, y)
    coefs = [c.copy() for c in est.coefs_]
    est.set_params(**second).fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 6
    assert not np.array_equal(est.coefs_[0], coefs[0])  # it trained from there


def test_adaptive_with_early_stopping_divides_lr_by_5_like_sklearn():
    """With early stopping, scikit-learn's adaptive rule runs on the validation loss: each
    stall divides the rate by 5, and the stall below 1e-6 stops, as without it."""
    X, y = _regression_data(n=80, q=1)
    kw = {"solver": "sgd", "learning_rate": "adaptive", "tol": 1e6, "n_iter_no_change": 1,
          "max_iter": 100, "learning_rate_init": 1e-3, "early_stopping": True}
    ours = _reg(**kw).fit(X, y)
    theirs = sknn.MLPRegressor(hidden_layer_sizes=(5,), random_state=0, **kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 13
    assert ours.training_record_.stop_reason == "validation"
    lrs = [e["lr"] for e in ours.training_record_.epochs]
    expected = [1e-3 / 5 ** max(0, (e - 1) // 2) for e in range(13)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_best_validation_score_is_the_score_of_the_weights_kept():
    # Early stopping on the validation loss keeps the epoch of the lowest validation loss;
    # here a later epoch has a higher accuracy (0.95 against 0.9), which the returned model
    # does not have.
    X, y = _classification_data(n=200, seed=10)
    est = _clf(hidden_layer_sizes=(8,), solver="adam", learning_rate_init=0.05,
               early_stopping=True, early_stopping_metric="loss", n_iter_no_change=5,
               max_iter=80, random_state=10).fit(X, y)
    rec = est.training_record_
    assert 0 < rec.best_epoch < rec.n_epochs
    assert est.best_validation_score_ == est.validation_scores_[rec.best_epoch - 1]
    assert est.best_validation_score_ < max(est.validation_scores_)
    assert rec.best_val_loss == min(e["val_loss"] for e in rec.epochs)


@pytest.mark.parametrize("n_classes, act", [(3, "sigmoid"), (3, "tanh"), (2, "softmax")])
def test_classifier_refuses_an_output_activation_its_loss_cannot_train(n_classes, act):
    X, y = _classification_data(n_classes=n_classes)
    with pytest.raises(ValueError, match=f"output_activation must .* got '{act}'"):
        _clf(output_activation=act, solver="lbfgs", max_iter=5).fit(X, y)


def test_partial_fit_keeps_the_record_best_epoch_over_all_calls():
    X, y = _regression_data(q=1)
    est = _reg(solver="adam", learning_rate_init=0.01)
    for _ in range(8):
        est.partial_fit(X, y)
    rec = est.training_record_
    losses = [e["loss"] for e in rec.epochs]
    assert rec.n_epochs == 8 and rec.best_epoch == 1 + int(np.argmin(losses))
    assert rec.best_loss == min(losses)


def test_fit_divided_with_warm_start_accepts_validation_rows_lacking_a_class():
    X, y = _classification_data(n=60, n_classes=3)
    labels = np.array(["a", "b", "c"])[y]
    train = np.arange(45)
    val = np.flatnonzero(labels[45:] != "c") + 45  # no "c" among the validation rows
    est = _clf(solver="lbfgs", max_iter=5, warm_start=True)
    est.fit_divided(X, labels, train, val)
    assert list(est.classes_) == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["learning_rate_init", "alpha", "tol", "validation_fraction"])
@pytest.mark.parametrize("value", ["0.1", None])
def test_a_non_number_hyperparameter_is_named(name, value):
    X, y = _regression_data(q=1)
    # scikit-learn's InvalidParameterError: a TypeError and a ValueError, naming the argument
    with pytest.raises(TypeError, match=f"The '{name}' parameter of MLPRegressor must be a "
                                        "float in the range"):
        _reg(**{name: value}).fit(X, y)


def test_classifier_accepts_a_registered_user_output_activation():
    from jacnet.activations import ACTIVATIONS, Softmax, register_activation

    @register_activation
    class TemperedSoftmax(Softmax):
        name = "tempered_softmax_test"

    try:
        X, y = _classification_data()
        est = _clf(output_activation=TemperedSoftmax(), solver="lbfgs", max_iter=5).fit(X, y)
        np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    finally:
        del ACTIVATIONS["tempered_softmax_test"]


def test_warm_start_after_a_full_batch_solver_starts_the_optimizer_afresh():
    """LM moved the weights: Adam's moments from before it would be stale."""
    X, y = _regression_data(q=1)
    est = _reg(solver="adam", warm_start=True, max_iter=3, batch_size=40).fit(X, y)
    assert est._solver.state.step == 3
    est.set_params(solver="lm").fit(X, y)
    est.set_params(solver="adam", max_iter=1).fit(X, y)
    assert est._solver.state.step == 1


def test_fit_divided_is_the_same_fit_whatever_early_stopping_says():
    """fit_divided brings its own validation rows: early_stopping=True must not split the
    training rows again (it changed alpha's scaling, and a rare class crashed the split)."""
    X, y = _classification_data(n=80)
    y = y.copy()
    y[0] = 3  # a class with one sample: a stratified split of it would fail
    train, val = np.arange(70), np.arange(70, 80)
    fits = [_clf(solver="lbfgs", alpha=1.0, max_iter=30, early_stopping=es)
            for es in (False, True)]
    for est in fits:
        est.fit_divided(X, y, train, val)
    for a, b in zip(fits[0].coefs_, fits[1].coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------ declarative parameter checks
def _bad_values(constraints):
    """A value of a foreign type, and one of the right type outside each constraint."""
    from sklearn.utils._param_validation import generate_invalid_param_val, make_constraint

    bad = [object()]
    for constraint in constraints:
        try:
            bad.append(generate_invalid_param_val(make_constraint(constraint)))
        except NotImplementedError:
            pass
    return bad


@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
@pytest.mark.parametrize("name", sorted(MLPRegressor._parameter_constraints))
def test_every_parameter_constraint_rejects_a_bad_value_by_name(cls, name):
    from sklearn.utils._param_validation import InvalidParameterError

    constraints = cls._parameter_constraints.get(name)
    if constraints is None:  # the regressor's loss
        pytest.skip(f"{cls.__name__} has no parameter {name}")
    assert set(cls._parameter_constraints) == set(cls().get_params())
    X, y = _classification_data() if cls is MLPClassifier else _regression_data(q=1)
    for value in _bad_values(constraints):
        with pytest.raises(InvalidParameterError,
                           match=rf"The '{name}' parameter of {cls.__name__} must be"):
            cls(**{"max_iter": 1, name: value}).fit(X, y)


def test_estimator_solver_choices_derive_from_the_solver_registry():
    from jacnet.training import SOLVERS

    (options,) = MLPRegressor._parameter_constraints["solver"]
    assert options.options == set(SOLVERS)


# ------------------------------------------------------------------------- state
def _state_round_trip(est, X):
    tensors, meta = est.to_state()
    assert all(isinstance(t, np.ndarray) for t in tensors.values())
    clone_ = type(est).from_state(tensors, meta)
    assert np.array_equal(clone_.predict(X), est.predict(X))
    assert np.array_equal(clone_.network_.get_flat(), est.network_.get_flat())
    assert clone_.get_params() == est.get_params()
    for a, b in zip(clone_.coefs_ + clone_.intercepts_, est.coefs_ + est.intercepts_,
                    strict=True):
        assert np.array_equal(a, b)
    return clone_


@pytest.mark.parametrize("solver", ["lm", "adam"])
def test_regressor_state_round_trip_predicts_identically(solver):
    X, y = _regression_data(q=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = _reg(solver=solver, max_iter=3).fit(X, y)
    back = _state_round_trip(est, X)
    assert np.array_equal(back.y_scale_, est.y_scale_) or est.y_scale_ is None
    assert back.loss_curve_ == est.loss_curve_ and back.n_iter_ == est.n_iter_


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel"])
def test_classifier_state_round_trip_predicts_identically(target):
    X, y = _classification_data(n=60, n_classes=2 if target == "binary" else 3)
    if target == "multilabel":
        y = np.column_stack([y == 1, y == 2]).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = _clf(solver="lbfgs", max_iter=5).fit(X, y)
    back = _state_round_trip(est, X)
    assert np.array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.classes_.tolist() == est.classes_.tolist()
    assert back.label_binarizer_.y_type_ == est.label_binarizer_.y_type_
