"""jacnet.validation: the one place that checks arrays and scalar settings.

A value of the wrong kind is a TypeError, a value of the right kind out of range a
ValueError, and every message names the argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from jacnet.validation import as_matrix, as_weights, check_choice, check_int, check_real, finite_as


# ------------------------------------------------------------------------ as_matrix
def test_as_matrix_returns_a_contiguous_array_of_the_dtype():
    A = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # a strided view of ints
    out = as_matrix(A, "X", np.float32)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, A)
    as_list = as_matrix([[1, 2], [3, 4]], "X", np.float64)
    assert as_list.dtype == np.float64 and as_list.shape == (2, 2)
    assert as_matrix([True, False], "T", np.float64, allow_1d=True).shape == (2, 1)


def test_as_matrix_keeps_a_conforming_array_without_a_copy():
    A = np.ones((3, 2))
    assert as_matrix(A, "X", np.float64) is A


@pytest.mark.parametrize("value, exc, match", [
    ([[1.0, 2.0], [3.0]], TypeError, "X must be a numeric array, got list"),
    (np.array([["a", "b"]]), TypeError, "X must hold real numbers .* got dtype <U1"),
    (np.ones((2, 2), dtype=complex), TypeError, "X must hold real numbers"),
    (np.array([[1, 2]], dtype=object), TypeError, "X must hold real numbers"),
    (np.ones(3), ValueError, r"X must be 2-D \(n_samples, n_features\), got an array of "
                             r"shape \(3,\)"),
    (np.ones((2, 2, 2)), ValueError, "X must be 2-D"),
    (np.zeros((0, 3)), ValueError, r"X must be non-empty, got shape \(0, 3\)"),
    (np.zeros((3, 0)), ValueError, "X must be non-empty"),
    (np.array([[1.0, np.nan]]), ValueError, "X must be finite, got 1 NaN or inf value"),
    (np.array([[np.inf, -np.inf]]), ValueError, "X must be finite, got 2 NaN or inf"),
])
def test_as_matrix_refuses_naming_the_argument(value, exc, match):
    with pytest.raises(exc, match=match):
        as_matrix(value, "X", np.float64)


def test_as_matrix_checks_rows_and_columns():
    with pytest.raises(ValueError, match=r"T must have 3 columns, got shape \(2, 2\)"):
        as_matrix(np.ones((2, 2)), "T", np.float64, n_cols=3)
    with pytest.raises(ValueError, match=r"T must have 5 rows \(one per sample\), got shape"):
        as_matrix(np.ones((2, 2)), "T", np.float64, n_rows=5)
    with pytest.raises(ValueError, match="T must be 2-D .* or 1-D"):
        as_matrix(np.ones((2, 2, 2)), "T", np.float64, allow_1d=True)
    with pytest.raises(ValueError, match="X must be 2-D"):  # 1-D only when allowed
        as_matrix(np.ones(2), "X", np.float64, n_cols=1)


# ------------------------------------------------------------------------ finite_as
def test_finite_as_names_float32_overflow_as_such():
    arr = np.array([[1e39, 1.0], [-1e300, 2.0]])  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="W must be finite in float32, got 2 value.s. beyond "
                                         "its range"):
        finite_as(arr, np.float32, "W")
    np.testing.assert_array_equal(finite_as(arr, np.float64, "W"), arr)  # fine in float64


def test_finite_as_calls_a_nan_a_nan_even_after_a_cast():
    arr = np.array([np.nan, 1e39])
    with pytest.raises(ValueError, match=r"x must be finite, got 2 NaN or inf"):
        finite_as(arr, np.float32, "x")


def test_finite_as_sees_a_bad_entry_behind_a_finite_looking_sum():
    # the fast path sums the array: large finite values overflow the sum, NaN poisons it
    huge = np.full(4, 1e308)
    np.testing.assert_array_equal(finite_as(huge, np.float64, "x"), huge)
    with pytest.raises(ValueError, match="got 1 NaN or inf"):
        finite_as(np.array([1e308, 1e308, np.inf]), np.float64, "x")


# ----------------------------------------------------------------------- as_weights
def test_as_weights_none_is_none_and_an_array_is_kept():
    assert as_weights(None, 3, np.float64) is None
    w = as_weights([1, 0, 2], 3, np.float32)
    assert w.dtype == np.float32 and w.tolist() == [1.0, 0.0, 2.0]


def test_as_weights_broadcasts_a_scalar_to_every_sample():
    w = as_weights(2.5, 4, np.float64)
    assert w.shape == (4,) and w.tolist() == [2.5] * 4
    assert as_weights(np.float32(1), 2, np.float64).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("value, exc, match", [
    (["a", "b", "c"], TypeError, "w must hold real numbers, got dtype <U1"),
    (np.ones(4), ValueError, r"w must have shape \(3,\), got \(4,\)"),
    (np.ones((3, 1)), ValueError, r"w must have shape \(3,\), got \(3, 1\)"),
    ([1.0, -1.0, 1.0], ValueError, "w must be finite and non-negative"),
    (-1.0, ValueError, "w must be finite and non-negative"),
    ([1.0, np.nan, 1.0], ValueError, "w must be finite"),
    ([1.0, np.inf, 1.0], ValueError, "w must be finite"),
    (np.zeros(3), ValueError, "w must not be all zero"),
    (0, ValueError, "w must not be all zero"),
])
def test_as_weights_refuses_naming_the_argument(value, exc, match):
    with pytest.raises(exc, match=match):
        as_weights(value, 3, np.float64, name="w")


def test_as_weights_default_name_is_sample_weight():
    with pytest.raises(ValueError, match="sample_weight must not be all zero"):
        as_weights([0, 0], 2, np.float64)


# ------------------------------------------------------------------------ check_int
def test_check_int_returns_a_python_int():
    out = check_int(np.int64(3), "n")
    assert out == 3 and type(out) is int
    assert check_int(0, "n", minimum=0) == 0


@pytest.mark.parametrize("value", [True, 2.0, "3", None, np.float64(2)])
def test_check_int_wrong_kind_is_a_type_error(value):
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got"):
        check_int(value, "batch_size")


@pytest.mark.parametrize("value, minimum", [(0, 1), (-5, 1), (2, 3)])
def test_check_int_below_minimum_is_a_value_error(value, minimum):
    with pytest.raises(ValueError, match=f"n must be an int >= {minimum}, got {value}"):
        check_int(value, "n", minimum=minimum)


# ----------------------------------------------------------------------- check_real
def test_check_real_returns_a_python_float():
    for value in (3, np.float32(0.5), np.int64(2), 1.5):
        out = check_real(value, "lr")
        assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value", [True, "0.1", None, [1.0], 1 + 2j])
def test_check_real_wrong_kind_is_a_type_error(value):
    with pytest.raises(TypeError, match="lr must be a positive number, got"):
        check_real(value, "lr", "a positive number", lambda x: x > 0)


@pytest.mark.parametrize("value", [0.0, -1, math.nan, math.inf, -math.inf])
def test_check_real_out_of_range_is_a_value_error(value):
    with pytest.raises(ValueError, match="lr must be a positive number, got"):
        check_real(value, "lr", "a positive number", lambda x: x > 0)


def test_check_real_finite_false_lets_inf_through_but_never_nan():
    assert check_real(math.inf, "time_limit", finite=False) == math.inf
    assert check_real(-np.inf, "low", finite=False) == -math.inf
    # ok still decides about inf
    with pytest.raises(ValueError, match="time_limit must be positive"):
        check_real(-math.inf, "time_limit", "positive", lambda x: x > 0, finite=False)
    for nan in (math.nan, np.float32("nan")):
        with pytest.raises(ValueError, match="time_limit must be"):
            check_real(nan, "time_limit", finite=False)
    with pytest.raises(ValueError, match="time_limit must be"):
        check_real(math.nan, "time_limit", "anything", lambda x: True, finite=False)


def test_check_real_int_beyond_float_range_is_a_value_error():
    big = 10**400
    with pytest.raises(ValueError, match=f"eps must be a finite real number, got {big}"):
        check_real(big, "eps")
    with pytest.raises(ValueError, match="eps must be"):  # not inf, even where inf is fine
        check_real(-big, "eps", finite=False)


def test_check_choice_keeps_an_option_and_names_the_others():
    assert check_choice("per_layer", "weight_groups", ("single", "per_layer")) == "per_layer"
    with pytest.raises(ValueError, match=r"noise must be one of \('shared', 'per_output'\), "
                                         r"got 'both'"):
        check_choice("both", "noise", ("shared", "per_output"))
    with pytest.raises(TypeError, match="noise must be one of .* got int 3"):
        check_choice(3, "noise", ("shared", "per_output"))


@pytest.mark.parametrize(("setting", "value", "exc"), [
    ("noise", "both", ValueError), ("noise", None, TypeError),
    ("weight_groups", "per_unit", ValueError),
])
def test_br_refuses_a_noise_model_or_weight_grouping_it_does_not_know(setting, value, exc):
    from jacnet.bayesian import BayesianRegularization

    with pytest.raises(exc, match=f"{setting} must be one of"):
        BayesianRegularization(**{setting: value})
