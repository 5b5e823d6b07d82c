"""The division of a data set's rows into training, validation and test parts.

One rule gives the sizes (:func:`sizes`): a part of positive fraction ``f`` of ``n`` rows
takes ``round(n·f)`` rows, and at least one (MATLAB's ``dividerand``; the estimators'
early-stopping split takes scikit-learn's ``ceil(n·f)`` instead, as its MLP does), and
the rows left over train, of which there must be one at least. Two strategies choose the
rows:

- :func:`permutation`: ``dividerand``, one permutation drawn from a
  ``numpy.random.Generator``; its first rows validate, the next test, the rest train
  (``jacnet.train``'s ``validation_fraction`` and ``test_fraction``);
- :func:`split` and :func:`stratified`: scikit-learn's ``train_test_split``, stratified by
  class, on a ``RandomState`` (the command line's division: the test rows, then the
  validation rows of the rest; the estimators' early-stopping split, which must stay
  scikit-learn's own for the drop-in).

Every part is an array of row positions; the same seed gives the same rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .validation import check_real

Array = np.ndarray

__all__ = ["part_size", "sizes", "permutation", "split", "stratified"]


def part_size(n: int, fraction: float, rounding: str = "round") -> int:
    """The rows of a part: none for fraction 0, else ``round(n·fraction)`` (``rounding=
    "ceil"``: scikit-learn's ``ceil(n·fraction)``), and one at least."""
    if not fraction:
        return 0
    # dividerand rounds; scikit-learn's train_test_split rounds up (kept for its drop-in)
    rows = math.ceil(fraction * n) if rounding == "ceil" else round(n * fraction)
    return max(rows, 1)


def sizes(n: int, validation: float, test: float = 0.0,
          names: tuple[str, str] = ("validation_fraction", "test_fraction"),
          rounding: str = "round") -> tuple[int, int, int]:
    """``(n_train, n_validation, n_test)`` for ``n`` rows and the two fractions.

    Parameters
    ----------
    n : int
        The rows to divide.
    validation, test : float
        Fractions in [0, 1) whose sum is below 1 (0: no such part).
    names : (str, str)
        The arguments the fractions came from, named by the errors.
    rounding : {"round", "ceil"}
        See :func:`part_size`.

    Raises
    ------
    ValueError
        A fraction outside [0, 1), a sum of 1 or more, or no row left to train on; the
        message names the arguments.
    """
    for name, f in zip(names, (validation, test), strict=True):
        check_real(f, name, "in [0, 1)", lambda v: 0 <= v < 1)
    if validation + test >= 1:
        raise ValueError(f"{names[0]} + {names[1]} must be < 1, got {validation} + {test}")
    n_val, n_test = part_size(n, validation, rounding), part_size(n, test, rounding)
    if n - n_val - n_test < 1:
        given = " and ".join(f"{name}={f}" for name, f in zip(names, (validation, test),
                                                                strict=True) if f)
        raise ValueError(f"too few rows ({n}) to divide into train/validation/test: no row "
                         f"is left to train on with {given}")
    return n - n_val - n_test, n_val, n_test


def permutation(n: int, n_val: int, n_test: int, rng: np.random.Generator) -> dict[str, Array]:
    """trainlm's ``dividerand``: rows of one permutation of ``n`` drawn from ``rng``, the
    first ``n_val`` to validate, the next ``n_test`` to test, the rest to train.

    Returns
    -------
    dict with ``"train"``, ``"validation"``, ``"test"``: sorted int arrays (empty for a
    part of size 0).
    """
    perm = rng.permutation(n)
    return {"train": np.sort(perm[n_val + n_test:]), "validation": np.sort(perm[:n_val]),
            "test": np.sort(perm[n_val:n_val + n_test])}


def split(rows: Array, size: int, random_state: Any, labels: Array | None = None,
          fallback: bool = False) -> tuple[Array, Array]:
    """``rows`` split into ``(rest, held_out)`` with ``size`` rows held out.

    scikit-learn's ``train_test_split`` (so its rows exactly, in its order), stratified by
    ``labels`` (one per entry of ``rows``) when given. ``fallback``: a class too small to
    stratify gives a plain random split instead of scikit-learn's ValueError. ``size`` 0
    holds nothing out and draws nothing from ``random_state``.
    """
    if size == 0:
        return rows, rows[:0]
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(rows, test_size=size, random_state=random_state,
                                      stratify=labels)
    except ValueError:
        if labels is None or not fallback:
            raise
        rest, held = train_test_split(rows, test_size=size, random_state=random_state)
    return rest, held


def stratified(n: int, n_val: int, n_test: int, random_state: Any,
               labels: Array | None = None) -> dict[str, Array]:
    """The command line's division of ``n`` rows: ``n_test`` test rows, then ``n_val``
    validation rows of the rest, each a :func:`split` stratified by ``labels`` (n,) where
    every class allows it (else a plain split), both drawn from ``random_state``.

    Returns
    -------
    dict with ``"train"``, ``"validation"``, ``"test"``: sorted int arrays.
    """

    def of(rows: Array, size: int) -> tuple[Array, Array]:
        return split(rows, size, random_state, None if labels is None else labels[rows],
                     fallback=True)

    rest, test = of(np.arange(n), n_test)
    train, val = of(rest, n_val)
    return {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}
