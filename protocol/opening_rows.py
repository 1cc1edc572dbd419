"""The row openings of one spot-checked step as arrays, when they are regular (docs/PROTOCOL.md sections 4, 9).

A spot check at 1,000,000 rows opens K * B = 16,384 rows, each with its whole data leaf and its inclusion
proof: about a million integers and 300,000 hashes in the transcript's JSON form. The schema check
(protocol/transcript_schema.py) and the openings hash (protocol/evidence.py) each walk that form value by
value. ``regular`` reads a step's rows into numpy arrays in one pass when every row is exactly what an honest
client records (the client's keys only, Python ints of their wire type's range, siblings of 32 bytes as
lower-case hex, leaves of one shape); anything else returns None and the callers take their value-by-value
path, which also names the problem. Whatever ``regular`` accepts, the value-by-value paths accept too and
encode to the same bytes (tests/test_opening_rows.py).
"""

from __future__ import annotations

import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

KEYS = frozenset(("index", "values", "proof", "proof_index", "leaf_rows"))  # the client's rows (no salt)
_INT, _LIST = frozenset((int,)), frozenset((list,))
_U64 = 1 << 64


@dataclass
class Rows:
    index: list[int]  # the rows' indices (u64)
    values: np.ndarray  # (B, w) int64: each row's values
    proof_index: list[int]  # the data leaf each row is in (u64)
    proofs: list[bytes]  # each row's inclusion proof, its 32-byte siblings concatenated
    leaf_rows: np.ndarray  # (B, R, w) int64: each row's whole data leaf
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def encoding(self) -> bytes:
        """u32(#rows) || per row: u64(index) || int_vector(values) || u64(proof_index) || u32(#siblings) ||
        siblings || u32(#leaf_rows) || int_vector(leaf_row) per leaf row: protocol/evidence.py's encoding
        (computed once: the openings hash and the packed file rows, protocol/packed_rows.py, share it)."""
        if self._encoded is None:
            self._encoded = self._encode()
        return self._encoded

    def take_encoding(self) -> bytes:
        """``encoding()`` for its last user (the saved file's packed rows): the cached copy is let go."""
        data, self._encoded = self.encoding(), None
        return data

    def _encode(self) -> bytes:
        B, R, w = self.leaf_rows.shape
        values = self.values.astype("<i8")
        vec = struct.pack(">I", w)
        leaves = np.concatenate([np.broadcast_to(np.frombuffer(vec, np.uint8), (B, R, 4)),
                                 self.leaf_rows.astype("<i8").view(np.uint8).reshape(B, R, 8 * w)], axis=2)
        leaves = leaves.reshape(B, -1)
        nr = struct.pack(">I", R)
        parts = [struct.pack(">I", B)]
        for k in range(B):
            p = self.proofs[k]
            parts += [self.index[k].to_bytes(8, "big"), vec,
                      values[k].tobytes(), self.proof_index[k].to_bytes(8, "big"),
                      (len(p) // 32).to_bytes(4, "big"), p, nr, leaves[k].tobytes()]
        return b"".join(parts)


_memo = threading.local()


@contextmanager
def reading():
    """Within this block ``regular`` reads each rows list once (by identity): the schema check, the openings hash
    and the spot check of one transcript share the arrays. Only for code that does not change the rows while
    in the block (a transcript's verification); the lists are held until the block ends."""
    outer = getattr(_memo, "cache", None)
    _memo.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _memo.cache = outer


def remember(rows: list, arrays: Rows) -> None:
    """Within ``reading()``: ``regular(rows)`` is ``arrays``, which the caller decoded from exactly the bytes
    ``arrays.encoding()`` (protocol/packed_rows.py: a strict parse of a packed rows string or wire field, from
    which ``rows`` was built), so ``_regular(rows)`` would give the same arrays. Outside a block: nothing."""
    cache = getattr(_memo, "cache", None)
    if cache is not None:
        cache[id(rows)] = (rows, arrays)


def regular(rows) -> Rows | None:
    """``rows`` (one opening's "rows" list, JSON form) as arrays, or None when any row is not regular."""
    if isinstance(rows, Rows):  # (a trainer hashing the arrays it sends: prover/proving.py)
        return rows
    cache = getattr(_memo, "cache", None)
    if cache is None:
        return _regular(rows)
    hit = cache.get(id(rows))
    if hit is None or hit[0] is not rows:
        hit = cache[id(rows)] = (rows, _regular(rows))  # (the list is held: its id is not reused meanwhile)
    return hit[1]


def _regular(rows) -> Rows | None:
    if type(rows) is not list or not rows or not all(type(r) is dict and r.keys() == KEYS for r in rows):
        return None
    index = [r["index"] for r in rows]
    proof_index = [r["proof_index"] for r in rows]
    values = [r["values"] for r in rows]
    blocks = [r["leaf_rows"] for r in rows]
    if not (_u64s(index) and _u64s(proof_index) and set(map(type, values)) == _LIST
            and set(map(type, blocks)) == _LIST):
        return None
    leaf_lists = list(chain.from_iterable(blocks))
    if set(map(type, leaf_lists)) != _LIST or not set(map(type, chain.from_iterable(values))) <= _INT \
            or not set(map(type, chain.from_iterable(leaf_lists))) <= _INT:
        return None
    proofs = _joined_hashes([r["proof"] for r in rows])
    if proofs is None:
        return None
    try:  # Python ints only (checked above): int64 unless a value is outside int64; ragged lists raise
        V, L = np.array(values), np.array(blocks)
    except (ValueError, OverflowError):
        return None
    if V.dtype != np.int64 or L.dtype != np.int64 or V.ndim != 2 or L.ndim != 3 or V.shape[1] != L.shape[2] \
            or L.shape[0] != len(rows) or 0 in L.shape:
        return None
    return Rows(index, V, proof_index, proofs, L)


def _u64s(xs: list) -> bool:
    return set(map(type, xs)) <= _INT and 0 <= min(xs) and max(xs) < _U64


def _joined_hashes(lists: list) -> list[bytes] | None:
    """For lists of 64-character lower-case hex strings: the bytes of each list, concatenated; None for anything
    else (one pass over all the strings at C speed)."""
    if not all(type(x) is list for x in lists):
        return None
    items = list(chain.from_iterable(lists))
    if items and (set(map(type, items)) != {str} or set(map(len, items)) != {64}):
        return None
    joined = "".join(items)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    if raw.hex() != joined:  # upper case or spaces
        return None
    out, at = [], 0
    for n in map(len, lists):
        out.append(raw[at:at + 32 * n])
        at += 32 * n
    return out
