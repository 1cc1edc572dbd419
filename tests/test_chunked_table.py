"""train's chunked table load (protocol/chunked_table.py) is load_table, and compact quantized rows are the same
integers at half the memory."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.chunked_table import load_table_chunked
from protocol.csv_reader import ReadOptions
from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.errors import InputError


def _same(a, b):
    assert a.feature_names == b.feature_names and a.target == b.target and a.source == b.source
    assert a.columns == b.columns and a.notes == b.notes
    assert a.X.dtype == b.X.dtype and np.array_equal(a.X, b.X)
    assert a.y.dtype == b.y.dtype and list(a.y) == list(b.y)


@pytest.mark.parametrize("capacity", [0, 5, 10_000])
def test_numeric_tables_equal_load_table_whatever_the_capacity(tmp_path, capacity):
    rng = np.random.default_rng(3)
    rows = [",".join(f"{v:.4f}" for v in rng.normal(size=3)) + f",{i % 2}" for i in range(300)]
    rows[17] = rows[17].replace(rows[17].split(",")[1], "", 1)  # an empty cell, dropped with --drop-missing
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,y\n" + "\n".join(rows) + "\n")
    opts = ReadOptions(drop_missing=True)
    t = load_table_chunked(str(path), "y", opts, capacity, chunk_rows=64)
    _same(t, load_table(str(path), "y", options=opts))
    assert t.X.shape == (299, 3) and t.notes


@pytest.mark.parametrize("spec,target", [("builtin:iris", None), ("builtin:breast_cancer", None),
                                         ("builtin:diabetes", None)])
def test_label_and_numeric_targets_equal_load_table(spec, target):
    _same(load_table_chunked(spec, target, None, 10), load_table(spec, target))


def test_compact_rows_are_the_same_integers():
    t = load_table("builtin:breast_cancer")
    stdz = fit_standardization(t, "logistic")
    wide, narrow = quantized_rows(t, stdz, 16), quantized_rows(t, stdz, 16, compact=True)
    assert narrow.dtype == np.int32 and np.array_equal(wide, narrow)
    big = quantized_rows(t, stdz, 28, compact=True)  # 8 * 2^28 does not fit int32: int64, same integers
    assert big.dtype == np.int64 and np.array_equal(big, quantized_rows(t, stdz, 28))


@pytest.mark.parametrize("n,d,chunk", [(1, 1, 1), (5, 2, 2), (1000, 3, 7), (70_000, 30, 1 << 16), (100_001, 5, 999)])
def test_column_std_is_numpys_bit_for_bit(n, d, chunk):
    from protocol.dataset import column_std

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 1e4, size=d) + rng.normal(size=d) * 100
    assert np.array_equal(column_std(X, X.mean(axis=0), chunk), X.std(axis=0))
    B = rng.integers(0, 2, (n, d)).astype(float)
    assert np.array_equal(column_std(B, B.mean(axis=0), chunk), B.std(axis=0))


def test_prefetched_keeps_order_errors_and_closes_early():
    from protocol.chunked_table import prefetched

    closed = []

    def gen(n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise InputError(f"bad line {i}")
                yield i
        finally:
            closed.append(n)

    assert list(prefetched(gen(50))) == list(range(50))
    it = prefetched(gen(20, fail_at=7))
    assert [next(it) for _ in range(7)] == list(range(7))
    with pytest.raises(InputError, match="bad line 7"):
        next(it)
    it = prefetched(gen(1000))
    assert next(it) == 0
    it.close()  # the consumer stops early: the helper stops and closes the generator
    assert closed == [50, 20, 1000]
