"""Client-side data handling (protocol/dataset.py): strict CSV errors, builtins, standardization, quantization."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.csv_reader import ReadOptions, detect_delimiter, split_names
from protocol.dataset import (
    CLIP,
    Standardization,
    Table,
    builtin_names,
    class_indices,
    class_labels,
    fit_standardization,
    load_table,
    parse_csv,
    quantize_table,
    quantized_rows,
    resolve_model,
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


def test_quantized_rows_in_chunks_are_the_whole_table_s():
    """quantized_rows works chunk by chunk (bounded memory for the audit): the same integers at any chunk."""
    rng = np.random.default_rng(3)
    t = Table(X=rng.normal(size=(37, 3)) * 5, y=rng.normal(size=37), feature_names=["a", "b", "c"], target="y")
    s = fit_standardization(t, "linear")
    whole = rows_matrix(*quantize_table(t, s, 16))
    for chunk in (1, 5, 36, 37, 1 << 16):
        got = quantized_rows(t, s, 16, chunk=chunk)
        assert got.dtype == np.int64 and got.flags.c_contiguous and np.array_equal(got, whole)


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


# -- tables as users have them (protocol/csv_reader.py) ----------------------------------------------------

@pytest.mark.parametrize(("line", "want"), [
    ("a,b,c", ","), ("a;b;c", ";"), ("a\tb\tc", "\t"), ('"x,y";b;c', ";"), ("single", ","), ("a;b,c;d", ";"),
])
def test_delimiter_detection(line, want):
    assert detect_delimiter(line) == want


@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_delimiters_bom_quotes_and_trimmed_names(delim):
    text = "\ufeff" + delim.join(['" a "', "b", " y "]) + "\n" + delim.join(['"1.5"', "2", "x"]) + "\n"
    text += delim.join(["3", '"4"', '"z"']) + "\n"
    t = parse_csv(text, "y", "f.csv")
    assert t.feature_names == ["a", "b"] and t.X.tolist() == [[1.5, 2.0], [3.0, 4.0]] and t.y.tolist() == ["x", "z"]
    forced = parse_csv(text.replace(delim, "|"), "y", "f.csv", options=ReadOptions(delimiter="|"))
    assert forced.X.tolist() == t.X.tolist()


def test_wrong_delimiter_hint():
    with pytest.raises(InputError, match="not found; columns are: a;b;y .*try --delimiter"):
        parse_csv(_csv("a;b;y", "1;2;3"), "y", "f.csv", options=ReadOptions(delimiter=","))


def test_features_and_drop_select_columns():
    text = _csv("a,b,c,y", "1,2,3,0", "4,5,6,1")
    t = parse_csv(text, "y", options=ReadOptions(features=("c", "a")))
    assert t.feature_names == ["c", "a"] and t.X.tolist() == [[3.0, 1.0], [6.0, 4.0]]
    assert t.columns == ["a", "b", "c", "y"]
    t = parse_csv(text, "y", options=ReadOptions(drop=("b",)))
    assert t.feature_names == ["a", "c"]
    for opts, msg in [(ReadOptions(features=("q",)), "no column named 'q'"), (ReadOptions(drop=("y",)), "target column"),
                      (ReadOptions(features=("a", "a")), "twice"), (ReadOptions(drop=("a", "b", "c")), "no feature")]:
        with pytest.raises(InputError, match=msg):
            parse_csv(text, "y", "f.csv", options=opts)
    assert split_names(" a, b ,,c") == ("a", "b", "c") and split_names(None) is None


def test_text_feature_column_is_refused_by_name_with_drop_hint():
    text = _csv("a,site,y", "1,north,0", "2,south,1")
    with pytest.raises(InputError, match=r"line 2, column 'site': 'north' is not a number.*--drop site"):
        parse_csv(text, "y", "f.csv")
    assert parse_csv(text, "y", options=ReadOptions(drop=("site",))).feature_names == ["a"]
    with pytest.raises(InputError, match=r"line 3, column 'b': 'true' is not a number"):
        parse_csv(_csv("a,b,y", "1,2,0", "1,true,1"), "y", "f.csv")


def test_empty_cells_refused_or_dropped_and_counted():
    text = _csv("a,b,y", "1,2,0", "3,,1", "", "5,6,", "7,8,1", "9,10")
    with pytest.raises(InputError, match=r"line 3, column 'b': empty cell \(pass --drop-missing"):
        parse_csv(text, "y", "f.csv")
    t = parse_csv(text, "y", "f.csv", options=ReadOptions(drop_missing=True))
    assert t.X.tolist() == [[1.0, 2.0], [7.0, 8.0]] and t.y.tolist() == [0.0, 1.0]
    assert t.notes == ["dropped 3 of 5 rows with empty cells (--drop-missing)"]
    # an empty cell in a column that is not used does not matter
    assert parse_csv(_csv("a,b,y", "1,,0", "2,,1"), "y", options=ReadOptions(drop=("b",))).X.shape == (2, 1)
    with pytest.raises(InputError, match="every row has an empty cell"):
        parse_csv(_csv("a,y", ",0"), "y", "f.csv", options=ReadOptions(drop_missing=True))


def test_long_rows_are_refused_even_with_drop_missing():
    for text, line in ((_csv("a,y", "1,0,9", "2,1"), 2), (_csv("a,y", "1,0", "2,1,9"), 3)):
        with pytest.raises(InputError, match=f"line {line} has 3 fields, the header has 2"):
            parse_csv(text, "y", "f.csv", options=ReadOptions(drop_missing=True))


@pytest.mark.parametrize(("cells", "labels"), [
    (["b", "a", "c", "a"], ["a", "b", "c"]), (["10", "9", "1e1", "-1"], [-1, 9, 10]),
    (["2.5", "1", "2.5", "1"], [1, 2.5]), (["x", "1", "2"], ["1", "2", "x"]), (["B", "b", "a"], ["B", "a", "b"]),
])
def test_class_labels_sorted_and_indices(cells, labels):
    t = parse_csv(_csv("a,y", *[f"{i},{c}" for i, c in enumerate(cells)]), "y")
    assert class_labels(t.y) == labels
    idx = class_indices(t.y, labels)
    if isinstance(labels[0], str):
        assert [labels[i] for i in idx] == cells
    else:
        assert [float(labels[i]) for i in idx] == [float(c) for c in cells]
    with pytest.raises(InputError, match="not one of the model's labels"):
        class_indices(np.array(["zzz"], dtype=object), labels)


def test_resolve_model_picks_softmax_for_more_than_two_classes():
    three = parse_csv(_csv("a,y", "1,x", "2,y", "3,z"), "y")
    two = parse_csv(_csv("a,y", "1,yes", "2,no"), "y")
    assert resolve_model("logistic", two) == ("logistic", 0, None)
    model, C, note = resolve_model("logistic", three)
    assert (model, C) == ("softmax", 3) and "3 classes" in note
    assert resolve_model("softmax", two)[:2] == ("softmax", 2)
    with pytest.raises(InputError, match="single class"):
        resolve_model("logistic", parse_csv(_csv("a,y", "1,x", "2,x"), "y"))
    with pytest.raises(InputError, match="needs a numeric target"):
        fit_standardization(two, "linear")
    s = fit_standardization(three, "softmax")
    assert s.labels == ["x", "y", "z"] and quantize_table(three, s, 16)[1].tolist() == [0, 1, 2]


def test_iris_is_bundled_with_text_labels():
    t = load_table("builtin:iris")
    assert t.X.shape == (150, 4) and class_labels(t.y) == ["setosa", "versicolor", "virginica"]
    assert all((t.y == lab).sum() == 50 for lab in class_labels(t.y))
