"""jacnet.io: estimators in model files, bit-exact round trips with their feature names and
extra data. The file format itself (networks, checksums, bad files) is test_modelfile.py's."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fit_quietly, three_class_data
from sklearn.exceptions import NotFittedError

import jacnet as jn
from jacnet import io as jio

_fit = fit_quietly


@pytest.fixture(scope="module")
def data():
    return three_class_data()


def _assert_same_estimator(a, b, X):
    assert type(a) is type(b)
    assert np.array_equal(a.predict(X), b.predict(X))
    assert np.array_equal(a.network_.get_flat(), b.network_.get_flat())
    assert a.network_.get_flat().dtype == b.network_.get_flat().dtype
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert np.array_equal(ca, cb)
    assert a.get_params() == b.get_params()
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_ and a.n_features_in_ == b.n_features_in_
    assert a.training_record_.to_dict() == b.training_record_.to_dict()


@pytest.mark.parametrize("labels", ["int", "str", "bool", "multilabel"])
def test_io_classifier_round_trip_is_bit_exact(tmp_path, data, labels):
    X, y = data
    y = {"int": y, "str": np.array(["ant", "bee", "cat"], dtype=object)[y], "bool": y == 1,
         "multilabel": np.column_stack([y == 1, y == 2]).astype(int)}[labels]
    est = _fit(jn.MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15,
                                random_state=0, standardize=True), X, y)
    est.save(tmp_path / "m.safetensors")
    loaded = jn.load(tmp_path / "m.safetensors")
    _assert_same_estimator(est, loaded, X)
    assert np.array_equal(est.predict_proba(X), loaded.predict_proba(X))
    assert loaded.classes_.dtype == est.classes_.dtype
    assert loaded.classes_.tolist() == est.classes_.tolist()


def test_io_regressor_round_trip_float32_per_layer_activations(tmp_path, data):
    X, _ = data
    Y = np.column_stack([X.sum(1), X[:, 0] * X[:, 1]])
    act = jn.get_activation("leaky_relu", negative_slope=0.2)
    est = _fit(jn.MLPRegressor(hidden_layer_sizes=(6, 4), activation=["tanh", act],
                               solver="lm", max_iter=4, random_state=1, dtype="float32"), X, Y)
    path = tmp_path / "r.safetensors"
    est.save(str(path))
    loaded = jn.load(path)
    _assert_same_estimator(est, loaded, X)
    assert loaded.network_.dtype == np.float32
    assert loaded.network_.layers[1].activation == act
    assert np.array_equal(loaded.y_scale_, est.y_scale_)


def test_io_feature_names_and_extra_are_kept(tmp_path, data):
    import pandas as pd

    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = _fit(jn.MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
               frame, y.astype(float))
    jio.save_estimator(est, tmp_path / "m.safetensors", extra={"note": [1, "two"]})
    loaded, doc = jio.read_model(tmp_path / "m.safetensors")
    assert loaded.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    assert np.array_equal(loaded.predict(frame), est.predict(frame))
    assert doc["extra"] == {"note": [1, "two"]}
    assert doc["kind"] == "MLPRegressor" and doc["format_version"] == 1


def test_io_load_network_of_an_estimator_file(tmp_path, data):
    X, y = data
    est = _fit(jn.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), X, y)
    est.save(tmp_path / "m.safetensors")
    assert np.array_equal(jn.load_network(tmp_path / "m.safetensors").get_flat(),
                          est.network_.get_flat())


def test_io_unfitted_estimator_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        jn.MLPRegressor().save(tmp_path / "m.safetensors")


def test_io_a_loaded_model_saved_again_keeps_its_extra(tmp_path, data):
    X, y = data
    est = _fit(jn.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y)
    jio.save_estimator(est, tmp_path / "a.safetensors", extra={"data": {"targets": ["y"]}})
    jn.load(tmp_path / "a.safetensors").save(tmp_path / "b.safetensors")
    assert jio.read_model(tmp_path / "b.safetensors")[1]["extra"] == {"data": {"targets": ["y"]}}
    refit = _fit(jn.load(tmp_path / "a.safetensors"), X, y)  # a fresh fit: other data
    refit.save(tmp_path / "c.safetensors")
    assert jio.read_model(tmp_path / "c.safetensors")[1]["extra"] is None
