"""Canonical byte encodings used inside signed statements and hashes.

Integers are fixed-width big-endian (``u8``, ``u32``, ``u64``) or signed 64-bit two's complement
(``i64``); byte strings and text are length-prefixed with a ``u32``; integer vectors are a ``u32`` count
followed by little-endian ``i64`` values (the same layout numpy's ``<i8`` gives, so hashing a state is one
``tobytes()``). Protobuf bytes are never signed or hashed directly: protobuf encoding is not canonical.
"""

from __future__ import annotations

import struct

import numpy as np

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def u8(v: int) -> bytes:
    return struct.pack(">B", v)


def u32(v: int) -> bytes:
    if not 0 <= v < 2**32:
        raise ValueError(f"u32 out of range: {v}")
    return struct.pack(">I", v)


def u64(v: int) -> bytes:
    if not 0 <= v < 2**64:
        raise ValueError(f"u64 out of range: {v}")
    return struct.pack(">Q", v)


def i64(v: int) -> bytes:
    if not I64_MIN <= v <= I64_MAX:
        raise ValueError(f"i64 out of range: {v}")
    return struct.pack(">q", v)


def lp(b: bytes) -> bytes:
    """Length-prefixed bytes."""
    return u32(len(b)) + bytes(b)


def text(s: str) -> bytes:
    return lp(s.encode("utf-8"))


def int_vector(values) -> bytes:
    """u32 count || little-endian int64 values."""
    arr = np.ascontiguousarray(values, dtype="<i8")
    if arr.ndim != 1:
        raise ValueError("int_vector expects a 1-D sequence")
    return u32(arr.size) + arr.tobytes()


class Reader:
    """Strict sequential reader of the encodings above; a read past the end raises ``error(f"{what} is
    truncated")`` (callers pass their own format-error class)."""

    def __init__(self, data: bytes, what: str, error: type[Exception]):
        self.data, self.pos, self.what, self.error = memoryview(bytes(data)), 0, what, error

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.error(f"{self.what} is truncated")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def lp(self) -> bytes:
        return self.take(self.u32())

    def done(self) -> bool:
        return self.pos == len(self.data)
