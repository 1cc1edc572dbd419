"""``train``'s table read chunk by chunk (protocol/csv_chunks.py) into one preallocated float64 matrix.

``dataset.load_table`` holds pandas' whole frame and the float64 matrix made from it at once (about 3x the
rows' int64 size at the peak for a 1,000,000 x 20 file); here the peak is the matrix plus one chunk. The same
parser, options and refusals give the same floats; only a target that is not numbers in every chunk (labels,
booleans, a column mixing both) is left to ``load_table``, whose whole-column rules decide what it is.
"""

from __future__ import annotations

import numpy as np

from .csv_chunks import CHUNK_ROWS, read_chunks
from .csv_reader import ReadOptions
from .dataset import Table, _source, default_target, load_table
from .run_ahead import ahead


def load_table_chunked(spec: str, target: str | None = None, options: ReadOptions | None = None,
                       capacity: int = 0, progress=None, chunk_rows: int = CHUNK_ROWS) -> Table:
    """= ``load_table(spec, target, options=options, progress=progress)``; ``capacity``: the expected number of
    rows (e.g. the byte scan's count; the matrix grows if more arrive)."""
    source = _source(spec)
    target = target if target is not None else default_target(spec)
    table, chunks = read_chunks(source, target, options or ReadOptions(), progress=progress, chunk_rows=chunk_rows)
    chunks = prefetched(chunks)
    d = len(table.feature_names)
    X = np.empty((max(capacity, 1), d), dtype=np.float64)
    ys: list[np.ndarray] = []
    n = 0
    for ch in chunks:
        if ch.y is None or ch.y.dtype != np.float64:  # not all numbers: the whole-column rules of load_table
            del X, ys
            return load_table(spec, target, options=options, progress=progress)
        k = ch.X.shape[0]
        if n + k > X.shape[0]:
            grown = np.empty((max(2 * X.shape[0], n + k), d), dtype=np.float64)
            grown[:n] = X[:n]
            X = grown
        X[n:n + k] = ch.X
        ys.append(ch.y)
        n += k
    if n < X.shape[0]:
        X = X[:n].copy() if n < X.shape[0] // 2 else X[:n]  # (a view keeps at most twice the rows)
    return Table(table.feature_names, table.target, X, np.concatenate(ys), source.label, table.notes, table.header)


def prefetched(chunks, depth: int = 2):
    """``chunks`` (a generator) run ahead by a helper thread (protocol/run_ahead.py), at most ``depth`` items:
    pandas' C parser releases the GIL, so the next chunk is parsed on the other core while this thread stores
    the last one. Items and the exception that ends the generator come out in order, as if it ran here; when
    the consumer stops early the helper stops and closes the generator (which closes its file)."""
    return ahead(chunks, depth=depth, name="vtrain-csv-prefetch", finish=chunks.close, join=True)
