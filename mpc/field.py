"""The prime field F_p, p = 2^255 - 19, and the wire encoding of its elements.

Elements are Python ints in ``[0, p)`` held in numpy object arrays (vectorised with Python big-int
arithmetic). A signed integer v with |v| < p/2 is represented by ``v mod p``. On the wire an element is
32 bytes little-endian; a decoder refuses any value ``>= p`` (docs/MPC.md, "Encoding").
"""

from __future__ import annotations

from itertools import repeat

import numpy as np

from .errors import MpcAbort

P = 2**255 - 19
ELEMENT_BYTES = 32
KAPPA = 40  # statistical security of the bounded masks (docs/MPC.md, "Parameters")


def arr(values) -> np.ndarray:
    """An object array of field elements (ints reduced mod p)."""
    a = np.array([int(v) % P for v in np.asarray(values, dtype=object).ravel()], dtype=object)
    return a.reshape(np.shape(values)) if np.ndim(values) else a


def signed(values: np.ndarray) -> np.ndarray:
    """Field elements -> signed ints in (-p/2, p/2) (object array)."""
    half = P // 2
    return np.array([v - P if v > half else v for v in np.asarray(values, dtype=object).ravel()],
                    dtype=object).reshape(np.shape(values))


def encode(values: np.ndarray) -> bytes:
    flat = np.asarray(values, dtype=object).ravel()
    return b"".join(map(int.to_bytes, map(int, flat), repeat(ELEMENT_BYTES), repeat("little")))


def _ints(data: bytes, width: int) -> list[int]:
    """Little-endian integers of ``width`` bytes each (numpy splits the buffer into bytes objects: about three
    times faster than slicing in Python; decoding the dealer's material is a large part of a party's time)."""
    if not data:
        return []
    return list(map(int.from_bytes, np.frombuffer(data, dtype=f"V{width}").tolist(), repeat("little")))


def _objects(values: list[int]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def decode(data: bytes, count: int | None = None) -> np.ndarray:
    if len(data) % ELEMENT_BYTES:
        raise MpcAbort("malformed message: element bytes not a multiple of 32")
    n = len(data) // ELEMENT_BYTES
    if count is not None and n != count:
        raise MpcAbort(f"malformed message: expected {count} field elements, got {n}")
    vals = _ints(data, ELEMENT_BYTES)
    if vals and max(vals) >= P:
        raise MpcAbort("malformed message: a field element is not reduced below p")
    return _objects(vals)


def from_uniform_bytes(data: bytes, count: int) -> np.ndarray:
    """``count`` elements from 32 random bytes each, reduced mod p (statistical distance < 2^-250)."""
    return _objects(_ints(data[:32 * count], 32)) % P


def from_bounded_bytes(data: bytes, count: int, bits: int) -> np.ndarray:
    """``count`` integers uniform in ``[0, 2^bits)`` (bits <= 256) from 32 random bytes each."""
    return _objects(_ints(data[:32 * count], 32)) & ((1 << bits) - 1)
