"""Tabular data for the command line: files, built-in datasets, encoding, task, division.

Files are CSV, TSV, Parquet or ``.npz`` (arrays ``X`` and ``y``, or one 1-D array per
column). Feature columns that hold text are one-hot encoded with the category list kept
in the model file, so ``jacnet predict`` encodes new data identically. Columns named
``d<target>/d<feature>`` hold derivative data (missing: not observed). Every problem is a
:class:`DataError` whose message is one line naming the file, column or row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import division

__all__ = [
    "BUILTIN",
    "MAX_CATEGORIES",
    "DataError",
    "FeatureEncoder",
    "builtin",
    "default_targets",
    "derivative_columns",
    "derivative_values",
    "divide",
    "infer_task",
    "read_table",
    "target_values",
]

#: Most distinct values a text feature column may have to be one-hot encoded.
MAX_CATEGORIES = 50
#: Most distinct values of an integer target still read as class labels.
MAX_CLASSES = 20
#: The built-in datasets (scikit-learn's bundled copies; no download).
BUILTIN = ("digits", "iris", "wine", "breast_cancer", "diabetes", "linnerud")

_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv",
             ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


class DataError(ValueError):
    """Unusable input data; the message is one line meant for the user."""


# ------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike[str], text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/``.npz`` file into a DataFrame with string column names.

    A CSV's ``text_columns`` are read as the text written (a model's categorical columns
    and class labels: a file whose codes all look like numbers, "010", would otherwise be
    read as 10). Empty fields and pandas' markers ("NA", "NaN", "null", ...) are missing.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"file not found: {p}")
    if p.is_dir():
        raise DataError(f"{p} is a directory, not a data file")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        suffixes = suffixes[:-1]
    kind = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DataError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; "
                        "use .csv, .tsv, .parquet or .npz")
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty")
    try:
        if kind == "npz":
            frame = _read_npz(p)
        elif kind == "parquet":
            frame = pd.read_parquet(p)
        else:
            sep = "\t" if kind == "tsv" else ","
            frame = pd.read_csv(p, sep=sep, dtype={c: str for c in text_columns})
            _distinct_header(p, sep)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{p} is empty") from None
    except Exception as exc:  # parsers raise many types; the user needs the one line
        raise DataError(f"cannot read {p} as {kind}: {_one_line(exc)}") from None
    frame.columns = [str(c) for c in frame.columns]
    if kind == "csv" and frame.shape[1] == 1 and ";" in frame.columns[0]:
        # Not guessed: such files often write decimal commas too ("1,5"), which would
        # then be read as text categories.
        raise DataError(f"{p} has one column whose name holds ';': a semicolon-separated "
                        "file? Save it with commas (decimal points), or with tabs as .tsv")
    if len(set(frame.columns)) != frame.shape[1]:
        raise DataError(f"{p} has duplicate column names")
    if frame.shape[0] == 0:
        raise DataError(f"{p} has no data rows")
    if frame.shape[1] == 0:
        raise DataError(f"{p} has no columns")
    return frame


def _distinct_header(p: Path, sep: str) -> None:
    """Refuse repeated column names (pandas would rename the second ``a`` to ``a.1``)."""
    header = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str,
                         keep_default_na=False).iloc[0].tolist()
    repeated = sorted({str(c) for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{p} has duplicate column names: {_list(repeated)}")


#: A date (with a four-digit year), a date and time, or a time of day, as CSV files write
#: them: "2021-01-31", "31/01/2021", "2021-01-31T12:30:00Z", "12:30". Month names and
#: fractions ("Jan", "3/4") are left to be categories or numbers.
_DATE_OR_TIME = (r"\s*(?:(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
                 r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
                 r"|\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*")


def _all_dates(values: pd.Series) -> bool:
    """Whether every text value is written as a date or a time (see ``_DATE_OR_TIME``)."""
    return bool(values.str.fullmatch(_DATE_OR_TIME).all())


def _read_npz(p: Path) -> pd.DataFrame:
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if not arrays:
        raise DataError(f"{p} holds no arrays")
    if "X" in arrays:
        X = arrays.pop("X")
        if X.ndim != 2:
            raise DataError(f"{p}: X must be 2-D (samples, features), got shape {X.shape}")
        cols: dict[str, Any] = {f"x{j}": X[:, j] for j in range(X.shape[1])}
        y = arrays.pop("y", None)
        if y is not None:
            if y.ndim == 1:
                cols["y"] = y
            elif y.ndim == 2:
                cols.update({f"y{j}": y[:, j] for j in range(y.shape[1])})
            else:
                raise DataError(f"{p}: y must be 1-D or 2-D, got shape {y.shape}")
        arrays = {}
    else:
        cols = {}
    for k, a in arrays.items():
        if a.ndim != 1:
            raise DataError(f"{p}: array {k!r} must be 1-D to be a column (or name the "
                            f"arrays X and y), got shape {a.shape}")
        cols[k] = a
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise DataError(f"{p}: arrays have different lengths {sorted(lengths)}")
    return pd.DataFrame(cols)


def builtin(name: str) -> tuple[pd.DataFrame, list[str]]:
    """A built-in dataset as ``(frame, target columns)``; class labels use their names."""
    from sklearn import datasets

    if name not in BUILTIN:
        raise DataError(f"unknown dataset {name!r}; built-in datasets: {', '.join(BUILTIN)}")
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    targets = [bunch.target.name] if bunch.target.ndim == 1 else list(bunch.target.columns)
    if name in ("iris", "wine", "breast_cancer"):
        frame[targets[0]] = np.asarray(bunch.target_names)[frame[targets[0]].to_numpy()]
    frame.columns = [str(c) for c in frame.columns]
    return frame, targets


def default_targets(frame: pd.DataFrame, npz: bool = False) -> list[str]:
    """The last column; for an ``.npz`` with ``X`` and ``y`` (``npz``), the columns
    ``y``/``y0, y1, ...`` that its ``y`` became."""
    ys = [c for c in frame.columns if c == "y" or (c[:1] == "y" and c[1:].isdigit())]
    if npz and ys and all(c == "y" or c[:1] in "xy" and c[1:].isdigit() for c in frame.columns):
        return ys
    return [str(frame.columns[-1])]


# ------------------------------------------------------------------------ features
@dataclass
class FeatureEncoder:
    """Feature columns to a float matrix: numbers as they are, text columns one-hot.

    Attributes
    ----------
    columns : list of str
        The feature columns of the data, in order.
    categories : dict of str -> list of str
        For each one-hot encoded column, its categories (the order of its new columns).
    """

    columns: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str]) -> FeatureEncoder:
        """Decide per column: numeric, one-hot (at most ``MAX_CATEGORIES`` values) or error."""
        if not columns:
            raise DataError("no feature columns left (every column is a target or dropped)")
        categories: dict[str, list[str]] = {}
        for col in columns:
            s = frame[col]
            _no_missing(s, col, "feature")
            if _numeric(s) is not None:
                continue
            # the distinct values as text, in order of appearance: every test below holds
            # for all rows when it holds for each distinct value, so it runs once per value
            values = pd.Series(pd.unique(pd.Series(pd.unique(s)).astype(str)))
            if (pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s)
                    or _all_dates(values)):
                raise DataError(f"feature column {col!r} holds dates or times; convert it to "
                                "numbers or leave it out with --drop")
            n = len(values)
            if n > MAX_CATEGORIES:
                raise DataError(
                    f"feature column {col!r} holds text with {n} distinct values (such as "
                    f"{values.iloc[0]!r}); jacnet one-hot encodes text columns of at most "
                    f"{MAX_CATEGORIES} values: encode it as numbers or leave it out with --drop")
            categories[col] = sorted(values.tolist())
        return cls(list(columns), categories)

    @property
    def names(self) -> list[str]:
        """The encoded columns: a numeric column's name, or ``column=category``."""
        out: list[str] = []
        for col in self.columns:
            if col in self.categories:
                out.extend(f"{col}={c}" for c in self.categories[col])
            else:
                out.append(col)
        return out

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The encoded float64 feature frame, columns :attr:`names`, rows as given."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"the data lacks the feature column(s) {_list(missing)} the "
                            "model was trained on")
        parts = []
        for col in self.columns:
            s = frame[col]
            _no_missing(s, col, "feature")
            if col in self.categories:
                known = self.categories[col]
                values = s.astype(str)
                codes = pd.Index(known).get_indexer(values)  # -1: a value not known
                if (codes < 0).any():
                    unseen = sorted(set(values[codes < 0].unique()))
                    raise DataError(f"feature column {col!r} has values not seen in training: "
                                    f"{_list(unseen)} (known: {_list(known)})")
                onehot = np.zeros((len(codes), len(known)))
                onehot[np.arange(len(codes)), codes] = 1.0
                parts.append(pd.DataFrame(onehot, index=frame.index,
                                          columns=[f"{col}={c}" for c in known]))
            else:
                num = _numeric(s)
                if num is None:
                    bad = s[pd.to_numeric(s, errors="coerce").isna()]
                    raise DataError(f"feature column {col!r} holds a non-numeric value "
                                    f"{bad.iloc[0]!r} at row index {bad.index[0]}")
                parts.append(pd.DataFrame({col: num}, index=frame.index))
        return pd.concat(parts, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "categories": dict(self.categories)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureEncoder:
        columns, categories = d["columns"], d.get("categories", {})
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
                and isinstance(categories, dict)
                and all(isinstance(v, list) and k in columns for k, v in categories.items())):
            raise DataError("the model file's feature encoding is malformed")
        return cls(columns, {k: [str(c) for c in v] for k, v in categories.items()})


def _numeric(s: pd.Series) -> np.ndarray | None:
    """The column as float64, or None when some value is not a number."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=np.float64)
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        return None
    # Text: one value that is no number decides, and the distinct values (few in a column
    # of categories) decide it as the rows would, once per value.
    if pd.to_numeric(pd.Series(pd.unique(s)), errors="coerce").isna().any():
        return None
    num = pd.to_numeric(s, errors="coerce")
    return None if num.isna().any() else num.to_numpy(dtype=np.float64)


def _no_missing(s: pd.Series, col: str, what: str) -> None:
    isna = s.isna()
    if isna.any():
        raise DataError(f"{what} column {col!r} has {int(isna.sum())} missing value(s), the "
                        f"first at row index {isna.to_numpy().argmax()}; fill or drop them "
                        "(empty fields and markers such as NA, NaN, null count as missing)")
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        bad = ~np.isfinite(s.to_numpy(dtype=np.float64))
        if bad.any():
            raise DataError(f"{what} column {col!r} has {int(bad.sum())} infinite value(s), "
                            f"the first at row index {bad.argmax()}")


# -------------------------------------------------------------------------- targets
def check_columns(frame: pd.DataFrame, names: list[str], what: str) -> None:
    """A one-line error for names that are not columns of ``frame``."""
    unknown = [c for c in names if c not in frame.columns]
    if unknown:
        raise DataError(f"unknown {what} column {_list(unknown)}; the columns are "
                        f"{_list(list(frame.columns))}")


def infer_task(frame: pd.DataFrame, targets: list[str]) -> str:
    """``"classification"`` for text, boolean or few-valued integer targets, else regression.

    Several targets are regression, or multilabel classification when all are 0/1.
    """
    kinds = []
    for col in targets:
        s = frame[col]
        if pd.api.types.is_float_dtype(s):
            kinds.append("regression")
        elif pd.api.types.is_integer_dtype(s):
            kinds.append("classification" if s.nunique() <= MAX_CLASSES else "regression")
        else:
            kinds.append("classification")
    if len(targets) == 1 or len(set(kinds)) == 1 and kinds[0] == "regression":
        return kinds[0]
    if all(k == "classification" and set(frame[c].unique()) <= {0, 1}
           for k, c in zip(kinds, targets, strict=True)):
        return "classification"
    labels = [c for k, c in zip(kinds, targets, strict=True) if k == "classification"]
    raise DataError(f"several targets {_list(targets)}: {_list(labels)} look like class labels, "
                    "and several class targets must all be 0/1 (multilabel classification); "
                    "pass --task regression to fit them as numbers, or one --target")


def target_values(frame: pd.DataFrame, targets: list[str], task: str,
                  min_classes: int = 2) -> np.ndarray:
    """The targets as an array: (n,) for one target, (n, k) for several.

    Class labels keep their kind (int, bool, str); regression targets are float64. To
    train, a class target needs ``min_classes`` (2) classes; scoring rows of one class is
    fine (``min_classes=1``).
    """
    for col in targets:
        _no_missing(frame[col], col, "target")
    cols = []
    for col in targets:
        s = frame[col]
        if task == "regression":
            num = _numeric(s)
            if num is None or pd.api.types.is_bool_dtype(s):
                raise DataError(f"target {col!r} is not numeric (e.g. {s.iloc[0]!r}); use "
                                "--task classification for class labels")
            cols.append(num)
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
            cols.append(s.to_numpy())
        elif pd.api.types.is_float_dtype(s):
            v = s.to_numpy(dtype=np.float64)
            if not np.array_equal(v, np.round(v)):
                raise DataError(f"target {col!r} holds non-integer numbers; classification "
                                "needs class labels (use --task regression)")
            cols.append(v.astype(np.int64))
        else:
            text = s.astype(str)
            n_values = text.nunique()
            if n_values > MAX_CLASSES and _all_dates(text):  # a few time slots are classes
                raise DataError(f"target {col!r} holds {n_values} dates or times, not "
                                "classes; pick another --target")
            cols.append(text.to_numpy(dtype=str))
    if task == "classification":
        for col, v in zip(targets, cols, strict=True):
            if len(np.unique(v)) < min_classes:
                raise DataError(f"target {col!r} has a single class {str(v[0])!r}; "
                                "classification needs at least two")
            if len(cols) > 1 and not set(np.unique(v).tolist()) <= {0, 1}:
                raise DataError(f"target {col!r} is not 0/1: several class targets must all "
                                "be 0/1 (multilabel classification); use one --target, or "
                                "--task regression")
    return cols[0] if len(cols) == 1 else np.column_stack(cols)


# ---------------------------------------------------------------------- derivatives
def _splits(col: str) -> list[tuple[str, str]]:
    """Every reading of ``col`` as ``d<target>/d<feature>`` (both parts non-empty)."""
    if not col.startswith("d"):
        return []
    return [(col[1:i], col[i + 2:]) for i in range(2, len(col) - 2) if col.startswith("/d", i)]


def derivative_columns(frame: pd.DataFrame, targets: list[str], drop: Sequence[str] = (),
                       strict: bool = True) -> dict[str, tuple[str, str]]:
    """The derivative columns of ``frame``: ``{column: (target, feature)}`` for each column
    named ``d<target>/d<feature>`` (``dy/dx1``: the derivative of target ``y`` with respect
    to the feature ``x1``), neither a target nor in ``drop``.

    ``strict``: a column of that form that names no target, or a target and a column that
    is not a feature (a target, a dropped or a missing column), is a :class:`DataError`
    naming it; else only the columns that name a target are returned (the rest are
    ordinary columns).
    """
    found: dict[str, tuple[str, str]] = {}
    for col in frame.columns:
        pairs = _splits(col)
        if not pairs or col in targets or col in drop:
            continue
        named = [(t, f) for t, f in pairs if t in targets]
        usable = [(t, f) for t, f in named if f in frame.columns and f not in targets
                  and f not in drop]
        if usable:
            found[col] = usable[0]
        elif named and strict:
            t, f = named[0]
            why = ("is a target" if f in targets else "is dropped (--drop)" if f in drop
                   else "is not a column")
            raise DataError(f"derivative column {col!r}: its feature {f!r} {why}; a "
                            f"derivative column is named d<target>/d<feature> (or pass "
                            "--no-derivatives)")
        elif named:
            found[col] = named[0]
        elif strict:
            raise DataError(f"derivative column {col!r}: {pairs[0][0]!r} is not a target "
                            f"(targets: {_list(targets)}); a column named d<target>/d<feature> "
                            "holds derivatives: --drop it, rename it, or pass --no-derivatives "
                            "to read it as a feature")
    return found


def derivative_values(frame: pd.DataFrame, columns: dict[str, tuple[str, str]],
                      targets: list[str], encoder: FeatureEncoder) -> np.ndarray:
    """The derivative data of :func:`derivative_columns`: an array (n, n_targets,
    n_encoded_features) of ``d target / d feature`` with NaN where a column is empty or
    absent (not observed). Each feature must be numeric (not one-hot encoded); the values
    numbers or missing, never infinite."""
    names = encoder.names
    G = np.full((len(frame), len(targets), len(names)), np.nan)
    for col, (target, feature) in columns.items():
        if feature in encoder.categories or feature not in names:
            raise DataError(f"derivative column {col!r}: feature {feature!r} is not a numeric "
                            "feature column (derivatives need a number to differentiate by)")
        s = frame[col]
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna()
        if bad.any():
            raise DataError(f"derivative column {col!r} holds a non-numeric value "
                            f"{s[bad].iloc[0]!r} at row index {s[bad].index[0]}")
        values = num.to_numpy(dtype=np.float64)
        if np.isinf(values).any():
            raise DataError(f"derivative column {col!r} has an infinite value at row index "
                            f"{int(np.isinf(values).argmax())}; leave a derivative empty "
                            "where it is not known")
        G[:, targets.index(target), names.index(feature)] = values
    return G


# ------------------------------------------------------------------------- division
def divide(n: int, val_fraction: float, test_fraction: float, seed: int,
           stratify: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seeded train/validation/test row indices (sorted), stratified by class if possible.

    :func:`jacnet.division.sizes` gives the sizes, :func:`jacnet.division.stratified` the
    rows (a ``RandomState(seed)``); a bad fraction is a :class:`DataError` naming its option.
    """
    try:
        _, n_val, n_test = division.sizes(n, val_fraction, test_fraction,
                                          names=("--val-fraction", "--test-fraction"))
    except (ValueError, TypeError) as exc:
        raise DataError(str(exc)) from None
    return division.stratified(n, n_val, n_test, np.random.RandomState(seed), stratify)


def _list(items: list[Any], limit: int = 8) -> str:
    shown = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
