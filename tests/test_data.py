"""jacnet.data: reading tables, encoding features, inferring the task, dividing the rows.

Every problem is a one-line :class:`DataError` naming the file, column or row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jacnet.data import (
    MAX_CATEGORIES,
    DataError,
    FeatureEncoder,
    default_targets,
    divide,
    infer_task,
    read_table,
    target_values,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.5, 2.0, -3.25, 4.0], "color": ["red", "blue", "red", "green"],
                         "n": [1, 2, 3, 4], "y": ["no", "yes", "yes", "no"]})


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


# -------------------------------------------------------------------------- reading
@pytest.mark.parametrize("suffix, write", [
    (".csv", lambda f, p: f.to_csv(p, index=False)),
    (".tsv", lambda f, p: f.to_csv(p, sep="\t", index=False)),
    (".parquet", lambda f, p: f.to_parquet(p, index=False)),
])
def test_read_table_reads_csv_tsv_and_parquet(tmp_path, frame, suffix, write):
    path = tmp_path / f"data{suffix}"
    write(frame, path)
    got = read_table(path)
    assert list(got.columns) == ["a", "color", "n", "y"]
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    assert got["a"].tolist() == [1.5, 2.0, -3.25, 4.0]


def test_read_table_reads_npz_as_x_and_y_or_as_columns(tmp_path):
    X = np.arange(6.0).reshape(3, 2)
    np.savez(tmp_path / "xy.npz", X=X, y=np.array([0, 1, 0]))
    got = read_table(tmp_path / "xy.npz")
    assert list(got.columns) == ["x0", "x1", "y"]
    np.testing.assert_array_equal(got[["x0", "x1"]].to_numpy(), X)
    assert default_targets(got, npz=True) == ["y"]
    np.savez(tmp_path / "xy2.npz", X=X, y=np.ones((3, 2)))
    assert list(read_table(tmp_path / "xy2.npz").columns) == ["x0", "x1", "y0", "y1"]
    np.savez(tmp_path / "cols.npz", height=np.ones(3), label=np.array(["a", "b", "c"]))
    cols = read_table(tmp_path / "cols.npz")
    assert list(cols.columns) == ["height", "label"] and cols["label"].tolist() == ["a", "b", "c"]


def test_read_table_reads_text_columns_as_written(tmp_path):
    (tmp_path / "codes.csv").write_text("code,x\n010,1\n002,2\n")
    assert read_table(tmp_path / "codes.csv")["code"].tolist() == [10, 2]
    assert read_table(tmp_path / "codes.csv", ["code"])["code"].tolist() == ["010", "002"]


def test_read_table_refuses_duplicate_headers(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match="dup.csv has duplicate column names: 'a'") as err:
        read_table(tmp_path / "dup.csv")
    _one_line(err)
    (tmp_path / "dup.tsv").write_text("x\tx\n1\t2\n")
    with pytest.raises(DataError, match="duplicate column names: 'x'"):
        read_table(tmp_path / "dup.tsv")


@pytest.mark.parametrize("name, content, match", [
    ("empty.csv", "", "is empty"),
    ("header.csv", "a,b\n", "has no data rows"),
    ("data.xlsx", "a,b\n1,2\n", r"unsupported file type '.xlsx'"),
    ("semi.csv", "a;b\n1;2\n", "semicolon-separated"),
    ("bad.parquet", "not parquet", "cannot read .*bad.parquet as parquet"),
])
def test_read_table_errors_are_one_line(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=match) as err:
        read_table(tmp_path / name)
    _one_line(err)


def test_read_table_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path)


def test_read_table_npz_arrays_of_different_lengths(tmp_path):
    np.savez(tmp_path / "bad.npz", a=np.ones(3), b=np.ones(4))
    with pytest.raises(DataError, match=r"different lengths \[3, 4\]"):
        read_table(tmp_path / "bad.npz")


def test_default_target_is_the_last_column(frame):
    assert default_targets(frame) == ["y"]
    assert default_targets(frame[["y", "a"]]) == ["a"]


# ------------------------------------------------------------------------- features
def test_feature_encoder_one_hot_encodes_text_and_keeps_numbers(frame):
    enc = FeatureEncoder.fit(frame, ["a", "color", "n"])
    assert enc.categories == {"color": ["blue", "green", "red"]}
    assert enc.names == ["a", "color=blue", "color=green", "color=red", "n"]
    out = enc.transform(frame)
    assert list(out.columns) == enc.names and (out.dtypes == np.float64).all()
    np.testing.assert_array_equal(out["a"], frame["a"])
    np.testing.assert_array_equal(out[["color=blue", "color=green", "color=red"]].to_numpy(),
                                  [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_feature_encoder_round_trip_encodes_new_rows_identically(frame):
    enc = FeatureEncoder.fit(frame, ["a", "color", "n"])
    back = FeatureEncoder.from_dict(enc.to_dict())
    assert back == enc
    new = pd.DataFrame({"n": [7], "color": ["green"], "a": [0.5], "extra": ["ignored"]})
    pd.testing.assert_frame_equal(back.transform(new), enc.transform(new))
    assert back.transform(new).iloc[0].tolist() == [0.5, 0.0, 1.0, 0.0, 7.0]


def test_feature_encoder_refuses_an_unseen_category(frame):
    enc = FeatureEncoder.from_dict(FeatureEncoder.fit(frame, ["a", "color"]).to_dict())
    new = pd.DataFrame({"a": [1.0, 2.0], "color": ["red", "purple"]})
    with pytest.raises(DataError, match="feature column 'color' has values not seen in "
                                        r"training: 'purple' \(known: 'blue', 'green', 'red'\)"):
        enc.transform(new)


def test_feature_encoder_refuses_missing_columns_and_values(frame):
    enc = FeatureEncoder.fit(frame, ["a", "color"])
    with pytest.raises(DataError, match="lacks the feature column.s. 'color'"):
        enc.transform(frame[["a"]])
    holes = frame.assign(a=[1.0, np.nan, 2.0, 3.0])
    with pytest.raises(DataError, match="feature column 'a' has 1 missing value.s., the first "
                                        "at row index 1"):
        FeatureEncoder.fit(holes, ["a"])
    with pytest.raises(DataError, match="no feature columns left"):
        FeatureEncoder.fit(frame, [])


def test_feature_encoder_refuses_too_many_categories_and_dates():
    many = pd.DataFrame({"id": [f"u{i}" for i in range(MAX_CATEGORIES + 1)]})
    with pytest.raises(DataError, match=f"{MAX_CATEGORIES + 1} distinct values"):
        FeatureEncoder.fit(many, ["id"])
    dates = pd.DataFrame({"day": ["2021-01-31", "2021-02-01"]})
    with pytest.raises(DataError, match="holds dates or times"):
        FeatureEncoder.fit(dates, ["day"])


def test_feature_encoder_from_dict_refuses_a_malformed_encoding():
    for bad in ({"columns": "a"}, {"columns": ["a"], "categories": {"b": ["x"]}},
                {"columns": ["a"], "categories": {"a": "x"}}):
        with pytest.raises(DataError, match="feature encoding is malformed"):
            FeatureEncoder.from_dict(bad)


# -------------------------------------------------------------------------- targets
@pytest.mark.parametrize("values, task", [
    ([0.5, 1.5, 2.0, 3.0], "regression"),  # float
    ([1, 2, 1, 3], "classification"),  # a few ints: labels
    (list(range(30)), "regression"),  # many ints: numbers
    (["cat", "dog", "cat", "eel"], "classification"),  # text
    ([True, False, True, True], "classification"),  # boolean
])
def test_infer_task_by_the_kind_of_target(values, task):
    assert infer_task(pd.DataFrame({"t": values}), ["t"]) == task


def test_infer_task_of_several_targets():
    f = pd.DataFrame({"u": [0.5, 1.0], "v": [2.0, 3.0], "p": [0, 1], "q": [1, 1], "s": ["a", "b"]})
    assert infer_task(f, ["u", "v"]) == "regression"
    assert infer_task(f, ["p", "q"]) == "classification"  # all 0/1: multilabel
    with pytest.raises(DataError, match="several targets 'u', 's': 's' look like class labels"):
        infer_task(f, ["u", "s"])


def test_target_values_keep_label_kinds_and_make_numbers_float(frame):
    labels = target_values(frame, ["y"], "classification")
    assert labels.tolist() == ["no", "yes", "yes", "no"]
    numbers = target_values(frame, ["n"], "regression")
    assert numbers.dtype == np.float64 and numbers.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert target_values(frame, ["a", "n"], "regression").shape == (4, 2)
    with pytest.raises(DataError, match="target 'y' is not numeric"):
        target_values(frame, ["y"], "regression")
    with pytest.raises(DataError, match="target 'a' holds non-integer numbers"):
        target_values(frame, ["a"], "classification")
    with pytest.raises(DataError, match="has a single class 'no'"):
        target_values(frame.iloc[[0, 3]], ["y"], "classification")


# ------------------------------------------------------------------------- division
def test_divide_proportions_and_disjoint_cover():
    parts = divide(100, 0.2, 0.1, seed=0)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [70, 20, 10]
    rows = np.concatenate(list(parts.values()))
    np.testing.assert_array_equal(np.sort(rows), np.arange(100))  # each row once
    for idx in parts.values():
        assert (np.diff(idx) > 0).all()  # sorted


def test_divide_is_reproducible_with_a_seed():
    a, b = divide(50, 0.3, 0.2, seed=7), divide(50, 0.3, 0.2, seed=7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = divide(50, 0.3, 0.2, seed=8)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_divide_stratifies_by_class():
    labels = np.array([0] * 80 + [1] * 20)
    parts = divide(100, 0.2, 0.1, seed=3, stratify=labels)
    for key, n in (("train", 70), ("validation", 20), ("test", 10)):
        assert len(parts[key]) == n
        assert labels[parts[key]].mean() == pytest.approx(0.2)  # the class ratio everywhere


def test_divide_falls_back_to_a_plain_split_when_a_class_is_too_small():
    labels = np.array([0] * 19 + [1])  # one sample of class 1: cannot be stratified
    parts = divide(20, 0.25, 0.0, seed=0, stratify=labels)
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (15, 5, 0)


def test_divide_without_validation_or_test():
    parts = divide(10, 0.0, 0.0, seed=0)
    np.testing.assert_array_equal(parts["train"], np.arange(10))
    assert len(parts["validation"]) == 0 and len(parts["test"]) == 0
    assert len(divide(10, 0.01, 0.0, seed=0)["validation"]) == 1  # a fraction gives one row


@pytest.mark.parametrize("n, val, test, match", [
    (10, 1.0, 0.0, r"--val-fraction must be in \[0, 1\), got 1.0"),
    (10, 0.0, -0.1, "--test-fraction must be in"),
    (10, 0.6, 0.4, r"--val-fraction \+ --test-fraction must be < 1"),
    (2, 0.5, 0.4, r"too few rows \(2\)"),
])
def test_divide_refuses_impossible_fractions(n, val, test, match):
    with pytest.raises(DataError, match=match):
        divide(n, val, test, seed=0)
