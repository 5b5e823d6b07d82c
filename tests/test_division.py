"""jacnet.division: the sizes rule, dividerand's permutation and the stratified split,
each against the code it replaced (written out here as the oracle), and reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import jacnet as jn
from jacnet import division
from jacnet.data import DataError, divide


# ------------------------------------------------------------ the code before, as oracles
def _old_dividerand(n, validation_fraction, test_fraction, rng):
    """training._divide before jacnet.division."""
    perm = rng.permutation(n)
    n_val = max(1, round(n * validation_fraction)) if validation_fraction else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction else 0
    out = {"train": np.sort(perm[n_val + n_test:])}
    if n_val:
        out["validation"] = np.sort(perm[:n_val])
    if n_test:
        out["test"] = np.sort(perm[n_val:n_val + n_test])
    return out


def _old_cli_divide(n, val_fraction, test_fraction, seed, stratify=None):
    """data.divide before jacnet.division."""
    n_val = round(n * val_fraction) if val_fraction else 0
    n_test = round(n * test_fraction) if test_fraction else 0
    n_val, n_test = max(n_val, 1 if val_fraction else 0), max(n_test, 1 if test_fraction else 0)
    rng = np.random.RandomState(seed)

    def split(rows, size):
        if size == 0:
            return rows, rows[:0]
        strat = None if stratify is None else stratify[rows]
        try:
            return train_test_split(rows, test_size=size, random_state=rng, stratify=strat)
        except ValueError:
            return train_test_split(rows, test_size=size, random_state=rng)

    rest, test = split(np.arange(n), n_test)
    train, val = split(rest, n_val)
    return {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}


def _labels(n, k, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


# ------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("n, fraction, rows", [
    (100, 0.15, 15), (10, 0.15, 2), (10, 0.25, 2), (3, 0.01, 1), (7, 0.5, 4), (100, 0.0, 0),
])
def test_part_size_rounds_and_keeps_one_row(n, fraction, rows):
    assert division.part_size(n, fraction) == rows


@pytest.mark.parametrize("n, fraction", [(10, 0.15), (10, 0.25), (60, 0.01), (150, 0.1),
                                         (37, 0.33)])
def test_part_size_ceil_is_scikit_learns_rounding(n, fraction):
    _, held = train_test_split(np.arange(n), test_size=fraction, random_state=0)
    assert division.part_size(n, fraction, "ceil") == len(held) == math.ceil(fraction * n)


def test_sizes_add_up_to_the_rows():
    assert division.sizes(100, 0.15, 0.15) == (70, 15, 15)
    assert division.sizes(5, 0.1, 0.1) == (3, 1, 1)
    assert division.sizes(9, 0.0, 0.0) == (9, 0, 0)


@pytest.mark.parametrize("args, match", [
    ((10, 1.0, 0.0), r"validation_fraction must be in \[0, 1\), got 1.0"),
    ((10, 0.2, -0.1), r"test_fraction must be in \[0, 1\), got -0.1"),
    ((10, 0.6, 0.5), r"validation_fraction \+ test_fraction must be < 1, got 0.6 \+ 0.5"),
    ((2, 0.1, 0.1), r"too few rows \(2\).*validation_fraction=0.1 and test_fraction=0.1"),
    ((1, 0.5, 0.0), r"too few rows \(1\).*train on with validation_fraction=0.5$"),
])
def test_sizes_errors_name_the_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        division.sizes(*args)


def test_sizes_name_the_callers_arguments():
    with pytest.raises(ValueError, match=r"--val-fraction \+ --test-fraction must be < 1"):
        division.sizes(10, 0.5, 0.5, names=("--val-fraction", "--test-fraction"))
    with pytest.raises(TypeError, match="validation_fraction"):
        division.sizes(10, "0.1")


def test_cli_divide_reports_bad_fractions_as_a_data_error():
    with pytest.raises(DataError, match="--val-fraction must be in"):
        divide(10, 1.5, 0.0, 0)
    with pytest.raises(DataError, match=r"too few rows \(2\)"):
        divide(2, 0.3, 0.3, 0)


# ------------------------------------------------------------------------ permutation
@pytest.mark.parametrize("seed", [0, 1, 7, 123])
@pytest.mark.parametrize("n, fv, ft", [(100, 0.15, 0.15), (37, 0.1, 0.0), (20, 0.0, 0.3),
                                       (5, 0.1, 0.1)])
def test_permutation_gives_the_rows_of_the_old_dividerand(seed, n, fv, ft):
    _, n_val, n_test = division.sizes(n, fv, ft)
    new = division.permutation(n, n_val, n_test, np.random.default_rng(seed))
    old = _old_dividerand(n, fv, ft, np.random.default_rng(seed))
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(new[name], old.get(name, np.arange(0)))


def test_permutation_parts_are_disjoint_and_cover_the_rows():
    parts = division.permutation(50, 7, 8, np.random.default_rng(0))
    rows = np.concatenate(list(parts.values()))
    assert sorted(rows.tolist()) == list(range(50))
    assert [len(p) for p in parts.values()] == [35, 7, 8]


@pytest.mark.parametrize("seed", [0, 3])
def test_train_divides_with_the_permutation(seed):
    X = np.random.default_rng(0).normal(size=(40, 2))
    net = jn.Network([jn.Dense(2, 1)], seed=0)
    record = jn.train(net, X, X[:, :1], "lm", max_epochs=1, seed=seed,
                      validation_fraction=0.2, test_fraction=0.1)
    expected = division.permutation(40, 8, 4, np.random.default_rng(seed))
    assert list(record.division) == ["train", "validation", "test"]
    for name, rows in expected.items():
        np.testing.assert_array_equal(record.division[name], rows)


# -------------------------------------------------------------------------- stratified
@pytest.mark.parametrize("seed", [0, 1, 42])
@pytest.mark.parametrize("n, fv, ft, k", [(150, 0.15, 0.15, 3), (200, 0.2, 0.0, None),
                                          (37, 0.1, 0.3, None), (150, 0.0, 0.2, 4),
                                          (60, 0.15, 0.15, 2)])
def test_stratified_gives_the_rows_of_the_old_cli_division(seed, n, fv, ft, k):
    labels = None if k is None else _labels(n, k, seed)
    new = divide(n, fv, ft, seed, labels)
    old = _old_cli_divide(n, fv, ft, seed, labels)
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(new[name], old[name])


def test_stratified_falls_back_to_a_plain_split_for_a_tiny_class():
    labels = np.array([0] * 10 + [1, 2])  # classes 1 and 2 have one row each
    for seed in range(4):
        new = divide(12, 0.15, 0.15, seed, labels)
        old = _old_cli_divide(12, 0.15, 0.15, seed, labels)
        for name in ("train", "validation", "test"):
            np.testing.assert_array_equal(new[name], old[name])


def test_stratified_keeps_the_class_proportions():
    labels = np.repeat([0, 1, 2], [100, 60, 40])
    parts = division.stratified(200, 40, 40, np.random.RandomState(0), labels)
    for name in ("validation", "test"):
        counts = np.bincount(labels[parts[name]], minlength=3)
        np.testing.assert_array_equal(counts, [20, 12, 8])


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("stratify", [False, True])
def test_split_of_positions_gives_the_rows_of_splitting_the_arrays(seed, stratify):
    """The estimators' early-stopping split: scikit-learn's train_test_split of the arrays
    themselves (its MLP's) takes the same rows in the same order."""
    rng = np.random.default_rng(seed)
    X, w = rng.normal(size=(90, 3)), rng.uniform(size=90)
    labels = _labels(90, 3, seed) if stratify else None
    X_tr, X_va, w_tr, w_va = train_test_split(X, w, test_size=0.1, stratify=labels,
                                              random_state=np.random.RandomState(seed))
    n_val = division.part_size(90, 0.1, "ceil")
    rest, held = division.split(np.arange(90), n_val, np.random.RandomState(seed), labels)
    np.testing.assert_array_equal(X[rest], X_tr)
    np.testing.assert_array_equal(X[held], X_va)
    np.testing.assert_array_equal(w[held], w_va)


def test_split_raises_for_a_tiny_class_unless_it_may_fall_back():
    labels = np.array([0] * 10 + [1])
    with pytest.raises(ValueError, match="least populated class"):
        division.split(np.arange(11), 3, np.random.RandomState(0), labels)
    rest, held = division.split(np.arange(11), 3, np.random.RandomState(0), labels,
                                fallback=True)
    assert len(held) == 3 and len(rest) == 8


def test_split_of_size_zero_draws_nothing():
    rs = np.random.RandomState(0)
    rest, held = division.split(np.arange(5), 0, rs)
    assert rest.tolist() == [0, 1, 2, 3, 4] and held.size == 0
    assert rs.randint(1000) == np.random.RandomState(0).randint(1000)


def test_divisions_are_reproducible_and_depend_on_the_seed():
    labels = _labels(100, 3)
    a, b = divide(100, 0.2, 0.2, 11, labels), divide(100, 0.2, 0.2, 11, labels)
    c = divide(100, 0.2, 0.2, 12, labels)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    p = division.permutation(100, 10, 10, np.random.default_rng(4))
    q = division.permutation(100, 10, 10, np.random.default_rng(4))
    assert all(np.array_equal(p[k], q[k]) for k in p)
