"""Tables read chunk by chunk: the same parser, options and refusals as ``protocol.csv_reader`` (so every
value is the same float), with memory bounded by one chunk instead of the whole table.

:func:`read_chunks` yields the chosen columns ``CHUNK_ROWS`` rows at a time; :func:`read_quantized_rows`
standardizes and quantizes each chunk (``protocol.dataset``) straight into one preallocated rows array of the
size the caller already knows (the audit: the row count its transcript records) and computes the data
commitment (``protocol.merkle.DataCommitter``) as the rows arrive: the peak is the rows plus one chunk.

The rows are stored as int32 when every value fits (features are clipped to ``clip * 2^f``, so for the
usual ``f`` they do): the same integers as the int64 layout the commitment hashes, at half the memory; a
value beyond int32 switches the array to int64 (one copy). ``protocol.training.FastStepper(lean=True)``
reads either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .csv_reader import (
    ReadOptions,
    _feature_indices,
    _pandas_source,
    _refuse_missing,
    _Source,
    _target_index,
    frame_columns,
    pandas_options,
    parse_errors,
    read_header,
)
from .errors import InputError
from .row_encoding import holding, minimal_value_bytes, value_range

CHUNK_ROWS = 1 << 16  # about 5 MB of float64 for 9 columns


@dataclass
class Chunk:
    first: int  # the number of the chunk's first row among the kept rows (0-based)
    X: np.ndarray  # float64 (k, d)
    y: np.ndarray | None  # float64, or an object array of label texts (text_target)


@dataclass
class ChunkedTable:
    """The header facts known before the body is read, and the rows dropped so far (``drop_missing``)."""

    feature_names: list[str]
    target: str
    header: list[str]
    delimiter: str
    feature_columns: list[int]
    target_column: int | None
    dropped: int = 0
    rows: int = 0  # data rows read so far (kept and dropped)
    notes: list[str] = field(default_factory=list)


def read_chunks(source: _Source, target: str | None, opts: ReadOptions, require_target: bool = True,
                text_target: bool = False, chunk_rows: int = CHUNK_ROWS, progress=None):
    """-> (ChunkedTable, iterator of Chunk). The header, the target and the feature selection are checked at
    once (before any row is read); each chunk is checked as ``read_columns`` checks the whole table, errors
    naming the file's line. ``text_target``: read the target as label texts (stripped), as ``read_columns``
    keeps a target column that is not all numbers; otherwise numbers, or texts for a chunk holding text.
    Empty cells are refused, or (``opts.drop_missing``) the rows dropped and counted in ``table.dropped``."""
    opts = opts.validated()
    header, delim = read_header(source, opts)
    tcol = _target_index(header, target, source.label, require_target, opts)
    fcols = _feature_indices(header, tcol, opts, source.label)
    table = ChunkedTable([header[c] for c in fcols], header[tcol] if tcol is not None else "", header, delim, fcols,
                         tcol)
    return table, _chunks(source, opts, table, tcol, fcols, text_target, chunk_rows, progress)


def _chunks(source, opts, table: ChunkedTable, tcol, fcols, text_target, chunk_rows, progress):
    import pandas as pd

    header, delim = table.header, table.delimiter
    dtype = {header[tcol]: str} if text_target and tcol is not None else None
    src = _pandas_source(source, progress)
    kept = 0
    try:
        with parse_errors(source, delim, len(header)):
            reader = pd.read_csv(src, dtype=dtype, chunksize=chunk_rows, **_options(source, delim, header))
            with reader:
                for df in reader:
                    if not df.shape[0]:
                        continue
                    offset = table.rows
                    table.rows += df.shape[0]
                    X, y, missing = frame_columns(df, source, delim, header, tcol, fcols, offset,
                                                  text_target=text_target)
                    del df
                    if missing.any():
                        if not opts.drop_missing:
                            _refuse_missing(source, delim, header, offset + int(np.flatnonzero(missing)[0]),
                                            [tcol] + fcols if tcol is not None else fcols)
                        table.dropped += int(missing.sum())
                        X, y = X[~missing], (y[~missing] if y is not None else None)
                    if X.shape[0]:
                        yield Chunk(kept, X, y)
                        kept += X.shape[0]
    finally:
        if not isinstance(src, str):
            src.close()
        if progress is not None and source.path is None:
            progress(len(source.text), len(source.text))
    if table.rows == 0:
        raise InputError(f"{source.label}: no data rows after the header")
    if table.dropped:
        table.notes.append(f"dropped {table.dropped} of {table.rows} rows with empty cells (--drop-missing)")
        if not kept:
            raise InputError(f"{source.label}: every row has an empty cell; nothing is left after --drop-missing")


def _options(source: _Source, delim: str, header: list[str]) -> dict:
    """``pandas_options``; for a file with no space or tab byte after its first line, without
    ``skipinitialspace``: pandas' tokenizer then has nothing to skip (it skips only spaces and tabs after a
    delimiter, and the first line is the header, which ``names`` replaces), so every token and every value is
    the same, and the parse takes about a third less time (tests/test_csv_chunks.py compares both)."""
    opts = pandas_options(delim, header)
    if source.path is not None and opts.get("skipinitialspace") and not _has_blanks(source.path):
        opts["skipinitialspace"] = False
    return opts


def _has_blanks(path: str, block: int = 1 << 23) -> bool:
    """Whether the file holds a space or a tab byte after its first line (a scan at memchr speed)."""
    try:
        with open(path, "rb") as fh:
            fh.readline()
            while data := fh.read(block):
                if b" " in data or b"\t" in data:
                    return True
    except OSError:
        return True  # (pandas then says why it cannot read the file)
    return False


@dataclass
class QuantizedRows:
    rows: np.ndarray  # (num_rows, d + 1): features then target; int32 when every value fits, else int64
    data_root: bytes | None  # the data commitment of the rows (at ``value_bytes`` per value), when rows_per_leaf
    table: ChunkedTable  # was given; None when a value does not fit that width (then it is not the committed data)
    width: int = 8  # the rows' canonical width (protocol/row_encoding.py): to compare with the committed one


def read_quantized_rows(spec: str, target: str | None, opts: ReadOptions, stdz, frac_bits: int, num_rows: int,
                        rows_per_leaf: int | None = None, progress=None, compact: bool = True, on_header=None,
                        chunk_rows: int = CHUNK_ROWS, expected_roots=(), value_bytes: int = 8) -> QuantizedRows:
    """Read the table ``spec`` (a path or ``builtin:NAME``) in chunks and quantize it with the given
    standardization (``protocol.dataset.Standardization``; text labels when its labels are text) into a
    preallocated ``num_rows`` x (d + 1) array: the same integers as
    ``dataset.quantized_rows(load_table(...), stdz, frac_bits)``. A table with another number of rows is an
    InputError that says both counts (the file is still read to the end, to count them). ``rows_per_leaf``:
    also compute the data root, with values of ``value_bytes`` bytes (the session's). ``compact``: int32 storage when the values fit (see the module docstring).
    ``on_header(table)``: called with the ChunkedTable before any row is read (to refuse the wrong file
    early).

    ``expected_roots`` (with ``rows_per_leaf``): the data roots the rows are expected to have (an audit knows
    the committed one). Then a plain numeric table is first read by numpy (:func:`_plain_chunks`, no pandas
    in memory); those rows are returned only when their root is an expected one, which pins every integer, so
    how the text was parsed cannot matter. Anything else (a different root, a row count, a table numpy does not
    read) is read again by the pandas path above, whose answer (rows or the refusal naming the line) is the
    one returned."""
    from .dataset import _source

    text_target = stdz.labels is not None and isinstance(stdz.labels[0], str)
    source = _source(spec)
    table, chunks = read_chunks(source, target, opts, text_target=text_target, chunk_rows=chunk_rows,
                                progress=progress)
    if on_header is not None:
        on_header(table)
    d = len(table.feature_names)
    if d != len(stdz.mean):
        raise InputError(f"{spec}: {d} feature columns, the standardization has {len(stdz.mean)}")
    if expected_roots and rows_per_leaf and not text_target:
        try:
            q = _fill(_plain_chunks(source, table, progress), table, stdz, frac_bits, num_rows, rows_per_leaf,
                      compact, spec, value_bytes)
            if q.data_root in expected_roots:
                return q
            del q
        except (_NotPlain, RowCountMismatch):
            pass
    return _fill(chunks, table, stdz, frac_bits, num_rows, rows_per_leaf, compact, spec, value_bytes)


def _fill(chunks, table: ChunkedTable, stdz, frac_bits: int, num_rows: int, rows_per_leaf: int | None,
          compact: bool, spec: str, value_bytes: int = 8) -> QuantizedRows:
    from .dataset import Table, target_values
    from .fixedpoint import quantize
    from .merkle import DataCommitter

    d = len(table.feature_names)
    rows = np.empty((num_rows, d + 1), dtype=np.int32 if compact else np.int64)

    committer = DataCommitter(d, rows_per_leaf, value_bytes=value_bytes) if rows_per_leaf else None
    w_lo, w_hi = value_range(value_bytes)
    lo = hi = 0
    filled = 0
    for ch in chunks:
        k = ch.X.shape[0]
        if filled + k > num_rows:  # more rows than expected: keep counting, store nothing more
            filled += k
            continue
        q = np.empty((k, d + 1), dtype=np.int64)
        q[:, :-1] = quantize(stdz.apply(ch.X), frac_bits)
        q[:, -1] = target_values(Table(table.feature_names, table.target, ch.X, ch.y, spec), stdz, frac_bits)
        q_lo, q_hi = int(q.min(initial=0)), int(q.max(initial=0))
        lo, hi = min(lo, q_lo), max(hi, q_hi)
        if committer is not None and (q_lo < w_lo or q_hi >= w_hi):
            committer = None  # wider than the committed width: not the committed data (no root)
        if committer is not None:
            committer.add(q)
        rows = holding(rows, q_lo, q_hi)  # a value beyond int32: one copy, then int64 for the rest
        rows[filled:filled + k] = q
        filled += k
    if filled != num_rows:
        raise RowCountMismatch(filled, num_rows)
    root = None
    if committer is not None:
        committer.finish()
        root = committer.root()
    return QuantizedRows(rows, root, table, minimal_value_bytes(lo, hi))


class _NotPlain(Exception):
    """numpy's reader stopped at something only the pandas path reads (or refuses) as the project does."""


def _plain_chunks(source: _Source, table: ChunkedTable, progress=None, block_bytes: int = 1 << 18):
    """Chunks of a plain numeric table (every column a number, no empty cell) by ``numpy.loadtxt`` over
    blocks of whole lines; raises _NotPlain at anything else (text, an empty cell, a short or long row, a
    non-finite value, undecodable bytes). Only used when the result is checked against a known data root."""
    import io
    import os

    fh = open(source.path, "rb") if source.path is not None else io.BytesIO(source.text.encode())  # noqa: SIM115
    with fh:
        total = os.fstat(fh.fileno()).st_size if source.path is not None else len(source.text)
        fh.readline()  # the header (read and checked by read_header)
        carry, first = b"", 0
        while True:
            block = fh.read(block_bytes)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            data, carry = data[:cut], data[cut:]
            if data.strip():
                try:
                    a = np.loadtxt(io.StringIO(data.decode("utf-8")), delimiter=table.delimiter, comments=None,
                                   quotechar='"', ndmin=2, dtype=np.float64)
                except (ValueError, UnicodeDecodeError):
                    raise _NotPlain from None
                if a.shape[1] != len(table.header) or not np.isfinite(a).all():
                    raise _NotPlain
                y = a[:, table.target_column] if table.target_column is not None else None
                yield Chunk(first, a[:, table.feature_columns], y)
                first += a.shape[0]
            if progress is not None:
                progress(fh.tell(), total)
            if not block:
                return


class RowCountMismatch(InputError):
    def __init__(self, got: int, expected: int):
        super().__init__(f"the data has {got} rows, expected {expected}")
        self.got, self.expected = got, expected
