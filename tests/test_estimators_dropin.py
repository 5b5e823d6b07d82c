"""The estimators as a drop-in for scikit-learn's MLP: one test per finding of issue 21.

Each test names its point of the issue (1-12, then the three differences by choice). The
whole of scikit-learn's own MLP test file runs in ``test_sklearn_mlp_suite.py``; these
tests say the same things in jacnet's terms, so that a failure names what broke.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import (
    check_classifiers_multilabel_output_format_predict_proba,
)

from jacnet import MLPClassifier, MLPRegressor

# Short fits that do not converge are expected here unless a test says otherwise.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]


def _labels(n: int = 60, seed: int = 0):
    X, y = _data(n, seed)
    return X, (y > np.median(y)).astype(int)


# 1 -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_dropin_n_iter_no_change_inf_never_stops(solver):
    """``n_iter_no_change=np.inf`` is scikit-learn's "never stop for want of improvement"."""
    X, y = _labels()
    est = MLPClassifier(hidden_layer_sizes=(4,), solver=solver, tol=1e9, max_iter=25,
                        n_iter_no_change=np.inf, random_state=0, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert est.n_iter_ == 25 and est.training_record_.stop_reason == "max_epochs"
    assert est._no_improvement_count == est.n_iter_ - 1  # every epoch failed to improve
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)  # a warm start continues, still without a stop
    assert est.n_iter_ == 25


# 2 -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_dropin_lbfgs_out_of_max_fun_warns(cls):
    X, y = _labels() if cls is MLPClassifier else _data()
    est = cls(hidden_layer_sizes=(20,), solver="lbfgs", max_fun=10, max_iter=150,
              random_state=1)
    with pytest.warns(ConvergenceWarning, match="max_fun"):
        est.fit(X, y)
    assert est.training_record_.stop_reason == "max_fun" and est.n_iter_ <= 10


# 3 -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("solver", ["lbfgs", "lm", "adam"])
def test_dropin_sparse_input_fits_and_predicts_as_dense(fmt, solver):
    X, y = _labels()
    X[np.abs(X) < 0.5] = 0.0
    kw = {"hidden_layer_sizes": (6,), "solver": solver, "max_iter": 20, "random_state": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        sparse = MLPClassifier(**kw).fit(getattr(sp, f"{fmt}_matrix")(X), y)
    np.testing.assert_array_equal(sparse.network_.theta, dense.network_.theta)
    np.testing.assert_array_equal(sparse.predict_proba(sp.csr_matrix(X)),
                                  dense.predict_proba(X))
    assert sparse.input_jacobian(sp.csc_array(X[:3])).shape == (3, 1, 3)


# 4 -------------------------------------------------------------------------------
def test_dropin_diverging_fit_with_early_stopping_scores_nan():
    """scikit-learn's issue 29504: a diverging fit's validation score is NaN, no crash."""
    X, y = load_iris(return_X_y=True)
    est = MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                       learning_rate_init=1, max_iter=20, early_stopping=True,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert isinstance(est.validation_scores_[-1], float)
    assert np.isnan(est.validation_scores_[-1])
    assert np.isfinite(est.predict(X)).all()  # the weights of the best score are kept


# 5 -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_dropin_overflowing_fit_raises_scikit_learns_value_error(solver):
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor(solver=solver).fit(X, y)


def test_dropin_diverged_fit_divided_only_warns():
    """``fit_divided`` (the command line's entry) keeps a diverged run's last finite
    weights with a RuntimeWarning, so that its caller can write the record; ``fit`` on the
    same data raises scikit-learn's ValueError, the weights it kept overflowing."""
    X, y = _data()
    kw = {"hidden_layer_sizes": (16,), "solver": "sgd", "learning_rate_init": 1000,
          "max_iter": 5, "random_state": 0}
    with pytest.warns(RuntimeWarning, match="last finite"):
        record = MLPRegressor(**kw).fit_divided(X, y, np.arange(60))
    assert record.stop_reason == "non_finite"
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            MLPRegressor(**kw).fit(X, y)


# 6 -------------------------------------------------------------------------------
def test_dropin_partial_fit_with_other_classes_raises():
    X, y = [[3, 2]], [0]
    clf = MLPClassifier(solver="sgd").partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y, classes=[1, 0])  # the same classes, in any order
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        clf.partial_fit(X, y, classes=[1, 2])


# 7 -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
@pytest.mark.parametrize("solver", ["adam", "lbfgs", "lm"])
def test_dropin_float32_input_trains_and_predicts_in_float32(cls, solver):
    X, y = _labels() if cls is MLPClassifier else _data()
    X32 = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0)
        est.fit(X32, y)
        explicit = cls(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0,
                       dtype="float64").fit(X32, y)
    assert est.network_.dtype == np.float32
    assert all(a.dtype == np.float32 for a in est.coefs_ + est.intercepts_)
    out = est.predict(X32) if cls is MLPRegressor else est.predict_proba(X32)
    assert out.dtype == np.float32
    assert explicit.network_.dtype == np.float64  # dtype given: it wins over the input's
    assert all(a.dtype == np.float64 for a in explicit.coefs_)


# 8 -------------------------------------------------------------------------------
def test_dropin_verbose_prints_scikit_learns_iteration_lines(capsys):
    X, y = _labels()
    est = MLPClassifier(hidden_layer_sizes=(3,), solver="sgd", max_iter=3, verbose=True,
                        early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    iterations = [line for line in lines if line.startswith("Iteration ")]
    assert len(iterations) == est.n_iter_ == 3
    assert iterations[0] == f"Iteration 1, loss = {est.loss_curve_[0]:.8f}"
    assert sum(line.startswith("Validation score: ") for line in lines) == 3
    assert "epoch" not in err.lower()  # no progress bar: that is the command line's


# 9 -------------------------------------------------------------------------------
def test_dropin_coefs_are_live_views_without_standardisation():
    X, y = _data()
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=30,
                       random_state=0).fit(X, y)
    before = est.predict(X)
    est.coefs_[0][0, 0] += 1.0  # a write into the array
    assert not np.allclose(est.predict(X), before)
    est.coefs_[1] = np.zeros((4, 1))  # an item of the list
    np.testing.assert_allclose(est.predict(X), est.intercepts_[1][0])
    est.intercepts_ = [np.zeros(4), np.array([2.5])]  # the whole list
    np.testing.assert_allclose(est.predict(X), 2.5)
    assert est.network_.layers[1].b[0] == 2.5
    assert pickle.loads(pickle.dumps(est.coefs_))[1].shape == (4, 1)  # a plain list
    with pytest.raises(ValueError, match="shapes"):
        est.coefs_ = [np.zeros((3, 4))]


def test_dropin_coefs_with_standardisation_are_set_in_data_units():
    """With standardisation (``solver="lm"``) ``coefs_`` are folded, read-only copies;
    setting them unfolds them into the network, so the model is what was set."""
    X, y = _data()
    X = X * [1.0, 10.0, 100.0] + 5
    y = 50 * y + 7
    lm = MLPRegressor(hidden_layer_sizes=(4,), solver="lm", max_iter=5,
                      random_state=0).fit(X, y)
    other = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5, random_state=1,
                         activation="relu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        other.fit(X, y)
    assert lm.x_mean_ is not None and lm.y_mean_ is not None
    with pytest.raises(ValueError, match="read-only"):
        lm.coefs_[0][0, 0] = 1.0
    lm.coefs_ = other.coefs_
    lm.intercepts_[0] = other.intercepts_[0]
    lm.intercepts_[1] = other.intercepts_[1]
    np.testing.assert_allclose(lm.predict(X), other.predict(X), rtol=1e-10)
    for a, b in zip(lm.coefs_ + lm.intercepts_, other.coefs_ + other.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# 10 ------------------------------------------------------------------------------
def test_dropin_multilabel_probabilities_stay_inside_zero_and_one():
    """The logistic output rounds to exactly 1.0 in float64 once a fit separates the
    labels well; scikit-learn's check wants 0 < p < 1."""
    X, Y = make_multilabel_classification(n_samples=100, n_features=5, n_classes=3,
                                          random_state=0)
    est = MLPClassifier(solver="lbfgs", random_state=0, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
        P = est.predict_proba(X)
        check_classifiers_multilabel_output_format_predict_proba("MLPClassifier", est)
    assert ((P > 0) & (P < 1)).all()
    np.testing.assert_array_equal(est.predict(X), (P > 0.5).astype(int))


# 11: tests/test_estimators_sklearn.py::test_expected_failed_checks_is_exported_...


# 12 ------------------------------------------------------------------------------
def test_dropin_goal_is_the_mean_squared_error_in_the_targets_units():
    """MATLAB's goal: LM stops at the first epoch whose MSE, in the units of ``y``, is at
    most ``goal`` (here y has standard deviation 0.3, which standardisation divides out)."""
    X, y = _data(n=80)
    y = 0.3 * y / y.std() + 2.0
    goal = 2e-3
    est = MLPRegressor(hidden_layer_sizes=(6,), solver="lm", max_iter=100, goal=goal,
                       random_state=0)
    mse: list[float] = []
    est.fit_divided(X, y, np.arange(80),
                    callbacks=[lambda e, net: mse.append(np.mean((est.predict(X) - y) ** 2))])
    assert est.training_record_.stop_reason == "goal"
    assert mse[-1] <= goal < min(mse[:-1])
    np.testing.assert_allclose(est.training_record_.column("mse"), mse, rtol=1e-10)


# the three differences by choice ---------------------------------------------------
def test_dropin_warm_start_with_other_classes_speaks_scikit_learns_words():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=2, solver="lbfgs", warm_start=True,
                        random_state=42, tol=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    y_alt = np.array([0] * 50 + [1] * 50 + [3] * 50)
    with pytest.raises(ValueError, match=r"warm_start can only be used where `y` has the same "
                       r"classes as in the previous call to fit\. Previously got \[0 1 2\], "
                       r"`y` has \[0 1 3\]"):
        clf.fit(X, y_alt)


def test_dropin_early_stopping_split_too_small_speaks_scikit_learns_words():
    with pytest.raises(ValueError, match=r"Classes with too few members are: \['True'\]"):
        MLPClassifier(early_stopping=True).fit([[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1])


def test_dropin_early_stopping_watches_the_validation_score_by_default():
    """scikit-learn's rule: a validation score that never rises (one class: accuracy 1)
    stops after n_iter_no_change + 1 epochs without improvement, quietly; jacnet's rule on
    the validation loss stays available as ``early_stopping_metric="loss"``."""
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(10, 2), columns=["a", "b"])
    y = pd.Series(np.full(10, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # ConvergenceWarning is one
        est = MLPClassifier(early_stopping=True, validation_fraction=0.2).fit(X, y)
    assert est.n_iter_ == est.n_iter_no_change + 2
    assert est.training_record_.stop_reason == "validation"
    assert est.best_validation_score_ == 1.0
    with pytest.warns(ConvergenceWarning):
        by_loss = MLPClassifier(early_stopping=True, validation_fraction=0.2,
                                early_stopping_metric="loss").fit(X, y)
    assert by_loss.n_iter_ == by_loss.max_iter  # the loss keeps falling


def test_dropin_early_stopping_keeps_the_weights_of_the_best_score():
    X, y = _labels(n=200)
    est = MLPClassifier(hidden_layer_sizes=(8,), solver="adam", learning_rate_init=0.05,
                        early_stopping=True, n_iter_no_change=5, max_iter=80,
                        random_state=10).fit(X, y)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.training_record_.stop_reason == "validation"
    best = int(np.argmax(est.validation_scores_))
    assert len(est.validation_scores_) == best + 1 + est.n_iter_no_change + 1
