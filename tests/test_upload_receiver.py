"""prover/upload.py DataReceiver: the checks a chunk's values still need once earlier chunks settled the width.

The receiver stops reading values (min/max) only when no value can change the verdict: every w-byte value lies
within the session's bound and a value already received needs all w bytes. An attacker's later chunk must
still be refused wherever a check can fire."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import InputError
from protocol.merkle import data_root
from protocol.row_encoding import pack, table_value_bytes
from prover.upload import DataReceiver


def _receive(chunks: list[np.ndarray], w: int, bound: int, R: int = 3):
    n, d = sum(c.shape[0] for c in chunks), chunks[0].shape[1] - 1
    rx = DataReceiver(n, d, R, bound, w)
    for c in chunks:
        rx.add(d, c.shape[0], pack(c, w).tobytes())
    return rx.finish()


def test_settled_chunks_are_still_hashed_and_kept():
    rng = np.random.default_rng(1)
    rows = rng.integers(-(1 << 31), 1 << 31, size=(40, 5), dtype=np.int64)
    rows[0, 0] = -(1 << 20)  # the first chunk already needs 4 bytes
    tree, stored = _receive([rows[:7], rows[7:20], rows[20:]], 4, 1 << 31)
    assert tree.root == data_root(rows, 3, 4)
    X, Y = stored.arrays()
    assert np.array_equal(X, rows[:, :-1]) and np.array_equal(Y, rows[:, -1])


def test_a_value_beyond_a_smaller_bound_is_refused_in_any_chunk():
    """weight_bits 24: 4-byte values can exceed the bound 2^23, so every chunk is still read."""
    rows = np.zeros((20, 4), dtype=np.int64)
    rows[0, 0] = -(1 << 22)  # needs 4 bytes (settles the width), within the bound
    rows[15, 2] = 1 << 23  # a later chunk: outside [-2^23, 2^23)
    with pytest.raises(InputError, match="must lie in"):
        _receive([rows[:5], rows[5:]], 4, 1 << 23)


def test_eight_byte_values_are_always_range_checked():
    rows = np.zeros((10, 3), dtype=np.int64)
    rows[0, 0] = 1 << 40  # needs 8 bytes
    rows[9, 1] = -(1 << 50)  # a later chunk, beyond the 32-bit weights' bound
    with pytest.raises(InputError, match="must lie in"):
        _receive([rows[:4], rows[4:]], 8, 1 << 31)


def test_a_width_wider_than_the_values_is_still_refused_at_the_end():
    rows = np.full((12, 3), 5, dtype=np.int64)
    rows[11, 0] = 300  # needs 2 bytes; sent as 4: not minimal
    with pytest.raises(InputError, match="smallest width"):
        _receive([rows[:6], rows[6:]], 4, 1 << 31)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_table_value_bytes_is_the_minimal_width_whatever_the_dtype(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    for lo, hi in ((0, 0), (-1, 0), (0, 127), (-128, 127), (-129, 5), (3, 128), (-40000, 7), (1, 1 << 20),
                   (-(1 << 31), 0), (0, (1 << 31) - 1), (-(1 << 40), 1), (info.min, info.max)):
        if lo < info.min or hi > info.max:
            continue
        rows = rng.integers(max(lo, -3), min(hi, 3) + 1, size=(6, 4)).astype(dtype)
        rows[0, 0], rows[5, 3] = lo, hi
        want = next(w for w in (1, 2, 4, 8) if -(1 << (8 * w - 1)) <= lo and hi < 1 << (8 * w - 1))
        assert table_value_bytes(rows) == want, (dtype, lo, hi)


def test_the_trim_threshold_is_raised_only_while_an_upload_is_received(monkeypatch):
    """prover/memory.py: the first upload raises glibc's automatic trim threshold, the last one to end lowers it
    again (freed memory does not linger between trims outside uploads); unconfigured processes are left alone."""
    from prover import memory

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))

    monkeypatch.setattr(memory, "_LIBC", Libc())
    monkeypatch.setattr(memory, "_state", {"configured": False, "uploads": 0})
    memory.receiving(True)
    memory.receiving(False)
    assert calls == []
    memory.configure()
    calls.clear()
    memory.receiving(True)
    memory.receiving(True)
    memory.receiving(False)
    assert calls == [(memory._M_TRIM_THRESHOLD, memory.UPLOAD_TRIM_THRESHOLD)]
    memory.receiving(False)
    assert calls[-1] == (memory._M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD) and len(calls) == 2
