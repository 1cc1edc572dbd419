"""Client-side data handling (protocol/dataset.py): strict CSV errors, builtins, standardization, quantization."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.dataset import (
    CLIP,
    Standardization,
    builtin_names,
    fit_standardization,
    load_table,
    parse_csv,
    quantize_table,
    rows_matrix,
)
from protocol.errors import InputError


def _csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_parse_good_csv():
    t = parse_csv(_csv("a, b ,y", "1,2,3", "4.5,-6e1,0"), "y", "f.csv")
    assert t.feature_names == ["a", "b"] and t.target == "y"
    assert t.X.tolist() == [[1.0, 2.0], [4.5, -60.0]] and t.y.tolist() == [3.0, 0.0]
    t = parse_csv(_csv("y,a", "1,2"), "y")  # the target need not be last
    assert t.feature_names == ["a"] and t.X.tolist() == [[2.0]] and t.y.tolist() == [1.0]
    t = parse_csv(_csv("a,b", "1,2", "", "  "), None, require_target=False)  # trailing blank lines ignored
    assert t.X.shape == (1, 2) and t.target == ""


def test_ragged_row_names_the_line():
    with pytest.raises(InputError, match=r"f\.csv: line 3 has 2 fields, the header has 3 \(ragged row\)"):
        parse_csv(_csv("a,b,y", "1,2,3", "4,5", "6,7,8"), "y", "f.csv")
    with pytest.raises(InputError, match="line 2 has 4 fields"):
        parse_csv(_csv("a,b,y", "1,2,3,4"), "y", "f.csv")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_non_finite_rejected(cell):
    with pytest.raises(InputError, match=rf"line 3, column 'b': '{cell}' is not finite"):
        parse_csv(_csv("a,b,y", "1,2,3", f"1,{cell},3"), "y", "f.csv")


@pytest.mark.parametrize("cell", ["abc", "1,5", "0x10", "--1", "1..2"])
def test_non_numeric_rejected(cell):
    text = "a,b,y\n1,2,3\n" + f'1,"{cell}",3\n'
    with pytest.raises(InputError, match=r"line 3, column 'b': .* is not a number"):
        parse_csv(text, "y", "f.csv")


def test_missing_target_lists_the_columns():
    with pytest.raises(InputError, match="target column 'z' not found; columns are: a, b, y"):
        parse_csv(_csv("a,b,y", "1,2,3"), "z", "f.csv")
    with pytest.raises(InputError, match=r"name the target column with --target \(columns: a, b, y\)"):
        parse_csv(_csv("a,b,y", "1,2,3"), None, "f.csv")


def test_zero_rows_and_empty_file():
    with pytest.raises(InputError, match="no data rows after the header"):
        parse_csv(_csv("a,b,y"), "y", "f.csv")
    with pytest.raises(InputError, match="no data rows"):
        parse_csv(_csv("a,b,y", "", ""), "y", "f.csv")
    for empty in ("", "\n", "  \n\n", ",,\n"):
        with pytest.raises(InputError, match="the file is empty"):
            parse_csv(empty, "y", "f.csv")


@pytest.mark.parametrize("header", ["a,a,y", "a, a,y", "a,,y", "a, ,y"])
def test_duplicate_or_empty_header_rejected(header):
    with pytest.raises(InputError, match="empty or duplicate column names"):
        parse_csv(_csv(header, "1,2,3"), "y", "f.csv")


def test_target_only_rejected():
    with pytest.raises(InputError, match="no feature columns"):
        parse_csv(_csv("y", "1"), "y", "f.csv")


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read data file"):
        load_table(str(tmp_path / "missing.csv"), "y")
    p = tmp_path / "bin.csv"
    p.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(InputError, match="not a UTF-8 text"):
        load_table(str(p), "y")
    with pytest.raises(InputError, match="unknown builtin dataset 'nope'; choose one of"):
        load_table("builtin:nope")
    p = tmp_path / "ok.csv"
    p.write_text(_csv("a,y", "1,0", "2,1"))
    t = load_table(str(p), "y")
    assert t.source == str(p) and t.X.shape == (2, 1)


@pytest.mark.parametrize(("name", "shape", "target"), [
    ("breast_cancer", (569, 30), "malignant"), ("diabetes", (442, 10), "progression"),
])
def test_builtin_datasets(name, shape, target):
    assert name in builtin_names()
    t = load_table(f"builtin:{name}")
    assert t.X.shape == shape and t.y.shape == (shape[0],) and t.target == target
    assert len(t.feature_names) == shape[1] and np.all(np.isfinite(t.X))
    if name == "breast_cancer":
        assert set(np.unique(t.y).tolist()) == {0.0, 1.0} and int(t.y.sum()) == 212  # 212 malignant (UCI)


def test_standardization_with_constant_column():
    t = parse_csv(_csv("a,c,y", "1,5,0", "3,5,1", "5,5,1"), "y")
    s = fit_standardization(t, "logistic")
    assert s.mean == [3.0, 5.0] and s.std[1] == 1.0
    assert s.std[0] == pytest.approx(np.std([1, 3, 5]))
    assert any("constant features" in n and "'c'" in n for n in s.notes)
    Z = s.apply(t.X)
    assert np.all(Z[:, 1] == 0) and np.allclose(Z[:, 0].mean(), 0) and np.allclose(Z[:, 0].std(), 1)
    assert s.target_mean == 0.0 and s.target_std == 1.0


def test_standardization_clips_and_checks_shape():
    t = parse_csv(_csv("a,y", *[f"{v},0" for v in [0] * 99 + [1000]]), "y")
    s = fit_standardization(t, "linear")
    assert s.apply(t.X).max() == CLIP == 8.0
    with pytest.raises(InputError, match="expected rows with 1 features"):
        s.apply(np.zeros((2, 3)))


def test_linear_target_standardized():
    t = parse_csv(_csv("a,y", "1,10", "2,20", "3,30"), "y")
    s = fit_standardization(t, "linear")
    assert s.target_mean == 20.0 and s.target_std == pytest.approx(np.std([10, 20, 30]))
    t = parse_csv(_csv("a,y", "1,7", "2,7"), "y")
    assert fit_standardization(t, "linear").target_std == 1.0  # constant target keeps scale 1


@pytest.mark.parametrize(("labels", "sorted_labels"), [
    (("2", "0"), [0, 2]), (("0.5", "0"), [0, 0.5]), (("1", "-1"), [-1, 1]), (("10", "9"), [9, 10]),
    (("yes", "no"), ["no", "yes"]), (("M", "B"), ["B", "M"]), (("true", "false"), ["false", "true"]),
])
def test_logistic_takes_any_two_labels_in_sorted_order(labels, sorted_labels):
    """Labels of any type; class index = position in the sorted list (numbers numerically)."""
    t = parse_csv(_csv("a,y", f"1,{labels[0]}", f"2,{labels[1]}", f"3,{labels[0]}"), "y", "f.csv")
    s = fit_standardization(t, "logistic")
    assert s.labels == sorted_labels and s.target_kind == "binary"
    first = [str(v) for v in sorted_labels].index(labels[0])
    assert quantize_table(t, s, 16)[1].tolist() == [first << 16, (1 - first) << 16, first << 16]
    assert Standardization.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_quantize_table_and_rows_matrix():
    t = parse_csv(_csv("a,b,y", "1,2,1", "3,2,0", "5,2,1"), "y")
    s = fit_standardization(t, "logistic")
    Xq, Yq = quantize_table(t, s, 16)
    assert Xq.dtype == np.int64 and Yq.tolist() == [65536, 0, 65536]
    assert Xq[:, 1].tolist() == [0, 0, 0]
    assert Xq[1, 0] == 0 and Xq[0, 0] == -Xq[2, 0] == -round(65536 * 2 / np.std([1, 3, 5]))
    rows = rows_matrix(Xq, Yq)
    assert rows.shape == (3, 3) and rows.dtype == np.int64 and rows[:, -1].tolist() == Yq.tolist()


def test_standardization_record_round_trip_and_validation():
    s = Standardization([1.0, 2.0], [0.5, 3.0], CLIP, 1.5, 2.0)
    back = Standardization.from_dict(s.to_dict())
    assert back.to_dict() == s.to_dict()
    bad_records = [
        {}, {**s.to_dict(), "std": [0.5]}, {**s.to_dict(), "std": [0.5, 0.0]}, {**s.to_dict(), "mean": ["x", 1]},
        {**s.to_dict(), "clip": float("nan")}, {**s.to_dict(), "target_std": -1.0}, {**s.to_dict(), "mean": None},
    ]
    for rec in bad_records:
        with pytest.raises(InputError, match="malformed standardization record"):
            Standardization.from_dict(rec)
