"""The canonical width of data values on the wire and in data leaves (``value_bytes``, docs/PROTOCOL.md section 4).

A table's rows are int64 fixed-point values, but quantized data rarely needs 64 bits: standardized features with
16 fractional bits fit in 32. Each value is therefore sent and hashed as a little-endian two's-complement integer
of ``w`` bytes, w in (1, 2, 4, 8), where w is the SMALLEST width holding every value of the whole table. Because
w is a function of the rows, a table has exactly one encoding and one data root; w is declared in the first
upload chunk, committed in the client's record and signed in the trainer's data statement. Both sides enforce
the rule: the client computes w from its rows, the trainer refuses an upload whose values would fit a narrower
width (docs/PROTOCOL.md section 2), the verifier refuses an opened leaf value outside w bytes (it would wrap)
and, with the data at hand, a w that is not the rows' own.
"""

from __future__ import annotations

import numpy as np

VALUE_BYTES = (1, 2, 4, 8)
_STRUCT = {1: "b", 2: "h", 4: "i", 8: "q"}


def check_value_bytes(w) -> int:
    if isinstance(w, bool) or w not in VALUE_BYTES:
        raise ValueError(f"value_bytes must be one of {VALUE_BYTES}, got {w!r}")
    return int(w)


def value_range(w: int) -> tuple[int, int]:
    """[lo, hi): the values a w-byte signed integer holds."""
    half = 1 << (8 * w - 1)
    return -half, half


def fits(values, w: int) -> bool:
    """Every value (Python ints) is a w-byte signed integer (no wrapping)."""
    lo, hi = value_range(w)
    if len(values) and set(map(type, values)) <= _INT:  # plain ints (the recorded form): min/max at C speed
        return lo <= min(values) and max(values) < hi
    return all(lo <= int(v) < hi for v in values)


_INT = frozenset((int,))


def minimal_value_bytes(lo: int, hi: int) -> int:
    """The smallest width holding every value in [lo, hi] (the table's minimum and maximum)."""
    for w in VALUE_BYTES:
        a, b = value_range(w)
        if a <= int(lo) and int(hi) < b:
            return w
    raise ValueError(f"values {lo}..{hi} do not fit in 64 bits")


def table_value_bytes(rows: np.ndarray) -> int:
    """The canonical width of an integer table (features then target). The minimum is read first: when it
    already needs every byte of the array's dtype (as negative standardized features with 16 fractional bits
    do in int32), no value can need more and the maximum is not read."""
    if rows.size == 0:
        return 1
    lo = int(rows.min())
    w = minimal_value_bytes(lo, 0)
    if w >= rows.dtype.itemsize:
        return w
    return minimal_value_bytes(lo, int(rows.max()))


def holding(rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``rows``, widened to int64 (one copy) if its integer dtype cannot hold every value in [lo, hi]."""
    info = np.iinfo(rows.dtype)
    if rows.dtype != np.int64 and (lo < info.min or hi > info.max):
        return rows.astype(np.int64)
    return rows


def value_dtype(w: int) -> np.dtype:
    return np.dtype(f"<i{check_value_bytes(w)}")


def struct_code(w: int) -> str:
    return _STRUCT[check_value_bytes(w)]


def pack(rows: np.ndarray, w: int) -> np.ndarray:
    """``rows`` as w-byte little-endian values (C order); ValueError if a value does not fit (never wraps). An
    array already in that dtype is returned as is (contiguous)."""
    dt = value_dtype(w)
    a = np.asarray(rows)
    if a.dtype == dt:
        return np.ascontiguousarray(a)
    if w < 8 and a.size:
        lo, hi = value_range(w)
        if int(a.min()) < lo or int(a.max()) >= hi:
            raise ValueError(f"a value does not fit in {w} bytes")
    return np.ascontiguousarray(a, dtype=dt)


def unpack(raw, w: int) -> np.ndarray:
    """The int64 values of w-byte little-endian ``raw`` (sign-extended: exact)."""
    part = np.frombuffer(raw, dtype=value_dtype(w))
    return part if w == 8 else part.astype(np.int64)
