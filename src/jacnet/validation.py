"""Input validation shared by every public entry point: the one place that checks arrays
and scalar settings.

Errors name the argument, what was expected and what was given: a value of the wrong
kind raises TypeError, a value of the right kind outside its range raises ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["as_matrix", "as_weights", "check_choice", "check_int", "check_real", "finite_as",
           "positive_int"]


def as_matrix(
    A: Any,
    name: str,
    dtype: np.dtype,
    n_cols: int | None = None,
    n_rows: int | None = None,
    allow_1d: bool = False,
) -> np.ndarray:
    """Return ``A`` as a finite, non-empty, C-contiguous 2-D array of ``dtype``.

    ``allow_1d`` accepts a vector as one column (for single-output targets).
    """
    if isinstance(A, np.ndarray):
        arr = A
    else:
        try:
            arr = np.asarray(A)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"{name} must be a numeric array, got {type(A).__name__}: {exc}"
            ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (bool, int or float), got dtype {arr.dtype}"
        )
    if arr.ndim == 1 and allow_1d:
        arr = arr[:, None]
    if arr.ndim != 2:
        expected = "2-D (n_samples, n_features)" + (" or 1-D" if allow_1d else "")
        raise ValueError(f"{name} must be {expected}, got an array of shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows (one per sample), got shape {arr.shape}")
    return finite_as(arr, dtype, name)


def finite_as(arr: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``arr`` (real numbers) as a C-contiguous array of ``dtype``, every entry finite.

    The check comes after the cast: a finite float64 beyond float32's range would become
    inf in a float32 array, and the error says so rather than calling it NaN or inf.
    """
    with np.errstate(over="ignore"):  # an overflow is reported below, naming the argument
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not _all_finite(out):
        bad = int(np.size(out) - np.isfinite(out).sum())
        if out is not arr and _all_finite(arr):
            raise ValueError(f"{name} must be finite in {np.dtype(dtype).name}, got {bad} "
                             "value(s) beyond its range")
        raise ValueError(f"{name} must be finite, got {bad} NaN or inf value(s)")
    return out


def _all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()`` without its boolean array of ``arr``'s size.

    A NaN or inf makes the sum non-finite, so a finite sum proves every entry finite;
    only a non-finite sum (a bad entry, or an overflow of large finite ones) needs the
    entry-by-entry check.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum()
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def as_weights(w: Any, n: int, dtype: np.dtype, name: str = "sample_weight") -> np.ndarray | None:
    """Validate optional per-sample weights: ``None`` or a finite, non-negative ``(n,)`` array."""
    if w is None:
        return None
    arr = np.asarray(w)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if not arr.sum() > 0:
        raise ValueError(f"{name} must not be all zero")
    return arr


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum``; bools are rejected (TypeError)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``options``: not a string is a TypeError,
    another string a ValueError; both messages list the options."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options}, got {type(value).__name__} "
                        f"{value!r}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


positive_int = check_int  # the name most call sites read best with


def check_real(
    value: Any,
    name: str,
    expected: str = "a finite real number",
    ok: Callable[[float], bool] = lambda x: True,
    *,
    finite: bool = True,
) -> float:
    """``value`` as a Python float, a real number (not a bool) for which ``ok`` holds.

    Settings are kept as Python floats on purpose: under NumPy's promotion rules a Python
    float keeps a float32 array float32, a ``np.float64`` scalar would not. NaN is always
    refused; ``finite=False`` lets ``inf`` through to ``ok`` (for "no limit" settings).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None
    if math.isnan(x) or (finite and math.isinf(x)) or not ok(x):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return x
