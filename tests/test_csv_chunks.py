"""The chunked table reader (protocol/csv_chunks.py): the same rows, the same refusals (naming the same
line) as the whole-table reader, whatever the chunk size; the data root computed on the way."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.csv_chunks import RowCountMismatch, read_chunks, read_quantized_rows
from protocol.csv_reader import ReadOptions, _Source
from protocol.dataset import Standardization, fit_standardization, load_table, parse_csv, quantized_rows
from protocol.errors import InputError
from protocol.merkle import data_root


def _write(tmp_path, text: str, name: str = "t.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _table_text(n: int, labels=None, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 100.0, 1e-3]
    y = (X @ [1.0, 0.01, 50.0]).round(6) if labels is None else rng.choice(labels, size=n)
    lines = ["a,b,c,y"] + [f"{a!r},{b:.3f},{c:.9e},{t}" for (a, b, c), t in zip(X.tolist(), y.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("labels", "model"), [(None, "linear"), (["no", "yes"], "logistic"), ([3, 7, 11], "softmax"),
                                               (["x", "1", "2.50"], "softmax")])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_chunked_rows_are_the_whole_table_s(tmp_path, labels, model, chunk_rows):
    path = _write(tmp_path, _table_text(300, labels))
    table = load_table(path, "y")
    stdz = fit_standardization(table, model)
    want = quantized_rows(table, stdz, 16)
    seen = []
    q = read_quantized_rows(path, "y", ReadOptions(), stdz, 16, 300, rows_per_leaf=5, chunk_rows=chunk_rows,
                            on_header=seen.append)
    assert q.rows.dtype == np.int32 and np.array_equal(q.rows, want)
    assert q.data_root == data_root(want, 5)
    assert seen[0].feature_names == ["a", "b", "c"] and seen[0].target == "y"
    q64 = read_quantized_rows(path, "y", ReadOptions(), stdz, 16, 300, compact=False, chunk_rows=chunk_rows)
    assert q64.rows.dtype == np.int64 and np.array_equal(q64.rows, want) and q64.data_root is None


def test_builtin_tables_and_text_labels_that_look_like_numbers(tmp_path):
    for spec in ("builtin:iris", "builtin:breast_cancer"):
        t = load_table(spec)
        stdz = fit_standardization(t, "softmax" if spec.endswith("iris") else "logistic")
        q = read_quantized_rows(spec, t.target, ReadOptions(), stdz, 16, t.X.shape[0], chunk_rows=16)
        assert np.array_equal(q.rows, quantized_rows(t, stdz, 16))
    # text labels: a chunk that holds only "1" and "2.50" must still be read as those texts, not as numbers
    path = _write(tmp_path, "a,y\n1,x\n2,1\n3,2.50\n4,1\n")
    t = load_table(path, "y")
    stdz = fit_standardization(t, "softmax")
    assert stdz.labels == ["1", "2.50", "x"]
    q = read_quantized_rows(path, "y", ReadOptions(), stdz, 16, 4, chunk_rows=2)
    assert q.rows[:, -1].tolist() == [2, 0, 1, 0]


def test_values_beyond_int32_switch_the_rows_to_int64(tmp_path):
    path = _write(tmp_path, "a,y\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(299)) + "1,1e6\n")
    t = load_table(path, "y")
    stdz = fit_standardization(t, "linear")
    want = quantized_rows(t, stdz, 28)  # the outlier's standardized target is about 17: 17 * 2^28 > 2^31
    assert np.abs(want[:-1]).max() < 2**31 <= np.abs(want).max()
    q = read_quantized_rows(path, "y", ReadOptions(), stdz, 28, 300, rows_per_leaf=3, chunk_rows=8)
    assert q.rows.dtype == np.int64 and np.array_equal(q.rows, want) and q.data_root == data_root(want, 3)


def test_row_count_mismatch_counts_the_whole_file(tmp_path):
    path = _write(tmp_path, _table_text(40))
    stdz = fit_standardization(load_table(path, "y"), "linear")
    for expected in (39, 41):
        with pytest.raises(RowCountMismatch) as e:
            read_quantized_rows(path, "y", ReadOptions(), stdz, 16, expected, chunk_rows=8)
        assert (e.value.got, e.value.expected) == (40, expected)


def _chunked(text: str, opts: ReadOptions | None = None, chunk_rows: int = 2, target="y"):
    table, chunks = read_chunks(_Source(None, text, "f.csv"), target, opts or ReadOptions(), chunk_rows=chunk_rows)
    got = list(chunks)
    return table, got


@pytest.mark.parametrize("text", [
    "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,2,3\n4,5\n6,7,8\n",  # ragged row (short) in the third chunk
    "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,2,3,4\n",  # long row
    "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,inf,3\n",  # not finite
    "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,abc,3\n",  # text in a feature column
    "a,b,y\n1,2,3\n4,5,6\n\n7,8,9\n1,2,nan\n",  # not finite target, after a blank line
    "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,,3\n",  # empty cell
])
def test_chunks_refuse_what_the_whole_reader_refuses_naming_the_same_line(text):
    with pytest.raises(InputError) as whole:
        parse_csv(text, "y", "f.csv")
    for chunk_rows in (1, 2, 3, 100):
        with pytest.raises(InputError) as chunked:
            _chunked(text, chunk_rows=chunk_rows)
        assert str(chunked.value) == str(whole.value), chunk_rows


def test_drop_missing_counts_like_the_whole_reader():
    text = "a,b,y\n1,2,0\n3,,1\n\n5,6,\n7,8,1\n9,10\n"
    t = parse_csv(text, "y", "f.csv", options=ReadOptions(drop_missing=True))
    table, chunks = _chunked(text, ReadOptions(drop_missing=True))
    assert np.concatenate([c.X for c in chunks]).tolist() == t.X.tolist()
    assert [c.first for c in chunks] == [0, 1]
    assert table.notes == t.notes == ["dropped 3 of 5 rows with empty cells (--drop-missing)"]
    with pytest.raises(InputError, match="every row has an empty cell"):
        _chunked("a,y\n,0\n1,\n", ReadOptions(drop_missing=True))
    with pytest.raises(InputError, match="no data rows after the header"):
        _chunked("a,y\n")


def test_header_errors_come_before_any_row_is_read(tmp_path):
    with pytest.raises(InputError, match="target column 'z' not found"):
        read_chunks(_Source(None, "a,y\n1,2\n", "f.csv"), "z", ReadOptions())
    with pytest.raises(InputError, match="cannot read data file"):
        read_quantized_rows(str(tmp_path / "missing.csv"), "y", ReadOptions(), Standardization([0.0], [1.0]), 16, 1)


def test_numpy_fast_path_only_when_the_root_is_the_expected_one(tmp_path, monkeypatch):
    """An audit knows the committed root: a plain numeric table is read by numpy (no pandas), and its rows are
    kept only when their root is the committed one; anything else is read again by the pandas path, whose
    rows or refusal are the answer."""
    import protocol.csv_chunks as cc

    plain = []
    real = cc._plain_chunks
    monkeypatch.setattr(cc, "_plain_chunks", lambda *a, **k: (plain.append(1), (yield from real(*a, **k)))[1])
    text = "y,a,b\n" + "".join(f"{i % 3},{i * 0.37:.4f},{(i * 7) % 11}\n" for i in range(200))
    path = _write(tmp_path, text)
    t = load_table(path, "y")
    stdz = fit_standardization(t, "softmax")
    want = quantized_rows(t, stdz, 16)
    root = data_root(want, 4)
    q = read_quantized_rows(path, "y", ReadOptions(), stdz, 16, 200, rows_per_leaf=4, expected_roots={root})
    assert plain and np.array_equal(q.rows, want) and q.data_root == root  # the target first: columns in place
    # a root that is not expected: read again by pandas (same rows here), the caller then refuses the root
    q = read_quantized_rows(path, "y", ReadOptions(), stdz, 16, 200, rows_per_leaf=4, expected_roots={bytes(32)})
    assert np.array_equal(q.rows, want)
    # tables numpy does not read as the project does: quoted cells, a dropped text column, blank lines,
    # an empty cell with --drop-missing: the pandas path reads them, the same rows
    variants = {"quoted": text.replace(",0.3700,", ',"0.3700",'), "blank": text.replace("\n5,", "\n\n  \n5,"),
                "text column": "s," + text.replace("\n", "\nq,").removesuffix("q,")}
    for name, body in variants.items():
        p = _write(tmp_path, body, f"{name}.csv")
        opts = ReadOptions(drop=("s",)) if name == "text column" else ReadOptions()
        q = read_quantized_rows(p, "y", opts, stdz, 16, 200, rows_per_leaf=4, expected_roots={root})
        assert np.array_equal(q.rows, want) and q.data_root == root, name
    p = _write(tmp_path, text + "1,,3\n", "missing.csv")
    q = read_quantized_rows(p, "y", ReadOptions(drop_missing=True), stdz, 16, 200, rows_per_leaf=4,
                            expected_roots={root})
    assert np.array_equal(q.rows, want) and q.table.dropped == 1
    for body, words in ((text + "1,inf,3\n", "'inf' is not finite"), (text + "1,2,3,4\n", "line 202 has 4 fields"),
                        (text.replace(",0.3700,", ",x,"), "is not a number")):
        with pytest.raises(InputError, match=words):
            read_quantized_rows(_write(tmp_path, body, "bad.csv"), "y", ReadOptions(), stdz, 16, 200, rows_per_leaf=4,
                                expected_roots={root})


def _read_all(path, opts=None):
    try:
        table, chunks = read_chunks(_Source(path, None, path), "y", opts or ReadOptions(), chunk_rows=3)
        got = [(c.first, c.X.tolist(), None if c.y is None else c.y.tolist()) for c in chunks]
        return got, table.dropped, table.notes
    except InputError as e:
        return "error", str(e)


@pytest.mark.parametrize("body", [
    _table_text(40, seed=3).split("\n", 1)[1],
    '1,"2",3,4\n"-5.5e3",6,7,"8"\n',  # quoted numbers
    "1,2,3,4\r\n5,,7,8\r\n9,10,11,12\r\n",  # CRLF, an empty cell
    "1,2,3,yes\n4,5,6,no\n7,8,9,yes\n",  # text labels
    "1,2,3,4\n5,x,7,8\n",  # text in a feature: refused, naming the line
    "1,2,inf,4\n",  # not finite
    "1,2,3\n",  # a short row
])
def test_files_without_blanks_read_the_same_without_skipinitialspace(tmp_path, monkeypatch, body):
    """The fast option (protocol/csv_chunks.py ``_options``) changes nothing for a file it is used on."""
    import protocol.csv_chunks as cc

    path = _write(tmp_path, "a b,b,c,y\n" + body)  # a space in the header only: still the fast option
    assert not cc._has_blanks(path) and cc._options(_Source(path, None, path), ",", ["a b", "b", "c", "y"])[
        "skipinitialspace"] is False
    fast = _read_all(path), _read_all(path, ReadOptions(drop_missing=True))
    monkeypatch.setattr(cc, "_has_blanks", lambda p: True)
    assert (_read_all(path), _read_all(path, ReadOptions(drop_missing=True))) == fast


def test_files_with_blanks_keep_skipinitialspace(tmp_path):
    import protocol.csv_chunks as cc

    for body in ("1, 2,3,4\n", "1,2,3,4\n5,\t6,7,8\n"):
        path = _write(tmp_path, "a,b,c,y\n" + body)
        assert cc._has_blanks(path) and cc._options(_Source(path, None, path), ",", ["a"] * 4)["skipinitialspace"]
    got, _, _ = _read_all(_write(tmp_path, "a,b,c,y\n1, 2,3, 4\n5, ,7,8\n", "s.csv"), ReadOptions(drop_missing=True))
    assert got == [(0, [[1.0, 2.0, 3.0]], [4.0])]  # " " is an empty cell, as before
