"""The ring Z_N, N = p_1 ... p_5 (five primes just below 2^50), held in residue number system (CRT) form.

An element x is the vector of its residues ``(x mod p_1, ..., x mod p_5)``: numpy ``uint64`` arrays whose LAST
axis has length ``L = 5`` (an array of k elements has shape ``(k, 5)``). By the Chinese remainder theorem
Z_N = F_p1 x ... x F_p5, so every operation is done per residue with machine words: sums fit in 64 bits, and a
product of two residues (up to 100 bits) is reduced exactly with a float64 estimate of its quotient (error below
one) and wrapping 64-bit arithmetic for the remainder (docs/MPC.md section 2). A signed integer v (|v| < N/2) is
``v mod N``. On the wire an element is 5 x 7 bytes (each residue little-endian); a decoder refuses any residue
``>= p_i`` (docs/MPC.md, "Encoding"). Conversion to Python ints (CRT) is only done for the few values whose bits
are needed (truncation openings, outputs, check values).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .errors import MpcAbort

PRIMES = (2**50 - 27, 2**50 - 35, 2**50 - 51, 2**50 - 71, 2**50 - 113)
L = len(PRIMES)
P = math.prod(PRIMES)  # the modulus N (2^249 < N < 2^250)
P_MIN = min(PRIMES)
ELEMENT_BYTES = 32  # five 50-bit residues packed into 250 bits (the top 6 bits zero)
KAPPA = 40  # statistical security of the bounded masks (docs/MPC.md, "Parameters")

_p = np.array(PRIMES, dtype=np.uint64)
_pi = _p.astype(np.int64)
_invp = 1.0 / _p.astype(np.float64)
_crt = [(P // p) * pow(P // p, -1, p) for p in PRIMES]  # x = sum_i x_i * _crt[i] mod N
_MASK50 = np.uint64((1 << 50) - 1)
_TWO64 = np.array([pow(2, 64, p) for p in PRIMES], dtype=np.uint64)


def const(c: int) -> np.ndarray:
    """A Python int as one element (shape (L,))."""
    return np.array([int(c) % p for p in PRIMES], dtype=np.uint64)


def from_ints(values) -> np.ndarray:
    """Integers (Python ints, object or int64 arrays) -> elements, shape ``shape(values) + (L,)``."""
    a = np.asarray(values)
    if a.dtype != object and np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 8 and a.dtype != np.uint64:
        return _mod(np.repeat(a.astype(np.int64)[..., None], L, axis=-1)).astype(np.uint64)
    flat = [int(v) for v in a.ravel()]
    out = np.array([[v % p for p in PRIMES] for v in flat], dtype=np.uint64).reshape(a.shape + (L,))
    return out


def zeros(shape) -> np.ndarray:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return np.zeros(shape + (L,), dtype=np.uint64)


def to_ints(a: np.ndarray) -> np.ndarray:
    """Elements -> Python ints in [0, N) (object array of shape ``a.shape[:-1]``), by the CRT."""
    a = np.asarray(a, dtype=np.uint64)
    rows = a.reshape(-1, L).tolist()
    out = np.empty(len(rows), dtype=object)
    out[:] = [sum(x * c for x, c in zip(r, _crt)) % P for r in rows]
    return out.reshape(a.shape[:-1])


def signed(a: np.ndarray) -> np.ndarray:
    """Elements -> signed ints in (-N/2, N/2) (object array)."""
    half = P // 2
    ints = to_ints(a)
    return np.array([v - P if v > half else v for v in ints.ravel()], dtype=object).reshape(ints.shape)


def is_zero(a: np.ndarray) -> np.ndarray:
    """Per element: is it 0 (all residues 0)."""
    return ~np.asarray(a).any(axis=-1)


# ---- arithmetic (operands broadcast; the last axis is the residue axis) ----
# numpy runs an (n, 5) op (5,) broadcast as n inner loops of length 5, 3-5x slower than one flat loop; so the
# per-residue constants are also kept tiled (p_1..p_5 repeated), and ops on contiguous arrays of up to
# _TILE_MAX residues use them flat.
_TILE_MAX = 1 << 20
_tiles: list = [np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float64)]


def _tile(shape) -> tuple[np.ndarray, np.ndarray] | None:
    """(p, 1/p) repeated to ``shape`` (last axis L), as views of cached arrays; None when too large."""
    size = math.prod(shape)
    if size > _TILE_MAX:
        return None
    if len(_tiles[0]) < size:
        n = max(size, 2 * len(_tiles[0]), 1 << 14) // L
        _tiles[:] = [np.tile(_p, n), np.tile(_invp, n)]
    return _tiles[0][:size].reshape(shape), _tiles[1][:size].reshape(shape)


def _full(x: np.ndarray, shape) -> np.ndarray:
    """x broadcast to ``shape`` as a contiguous array (a per-residue constant by tiling)."""
    if x.shape == shape and x.flags.c_contiguous:
        return x
    if x.shape == (L,):
        return np.tile(x, math.prod(shape) // L).reshape(shape)
    return np.ascontiguousarray(np.broadcast_to(x, shape))


def _mod(x: np.ndarray) -> np.ndarray:
    """x mod p per residue, for uint64 or (non-negative after %) int64 x, with the tiled moduli."""
    t = _tile(x.shape) if x.flags.c_contiguous else None
    pp = _p if t is None else t[0]
    return x % (pp if x.dtype == np.uint64 else pp.view(np.int64))


def _reduce_once(s: np.ndarray) -> np.ndarray:
    """s in [0, 2p) -> s mod p, in place (s - p wraps to a huge value when s < p)."""
    t = _tile(s.shape) if s.flags.c_contiguous else None
    return np.minimum(s, s - (_p if t is None else t[0]), out=s)


def add(a, b) -> np.ndarray:
    return _reduce_once(np.add(a, b, dtype=np.uint64))


def sub(a, b) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint64)
    t = _tile(b.shape) if b.flags.c_contiguous else None
    return _reduce_once(np.add(a, (_p if t is None else t[0]) - b, dtype=np.uint64))


def neg(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.uint64)
    return np.where(a == 0, a, _p - a)


def mul(a, b) -> np.ndarray:
    """Elementwise product: the quotient of a*b by p is estimated in float64 (relative error < 2^-51, so off
    by at most 1 for a, b < p < 2^50); the remainder a*b - q*p is exact in wrapping 64-bit arithmetic."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    shape = a.shape if a.shape == b.shape else np.broadcast_shapes(a.shape, b.shape)
    t = _tile(shape)
    if t is None:
        pp, inv = _p, _invp
    else:
        (pp, inv), a, b = t, _full(a, shape), _full(b, shape)
    q = a.astype(np.float64)
    q *= inv
    q *= b  # float64
    qp = q.astype(np.int64)  # q >= 0: truncation is the floor
    qp -= 1
    qp *= pp.view(np.int64)  # wraps mod 2^64 like the product below
    r = a * b  # a b - (q - 1) p mod 2^64 = (a b mod p) + (Q - q + 1) p, in [0, 3p) for q in {Q - 1, Q, Q + 1}
    r -= qp.view(np.uint64)
    s = r - pp
    np.minimum(r, s, out=r)
    np.subtract(r, pp, out=s)
    return np.minimum(r, s, out=r)


def mul_small(a, c) -> np.ndarray:
    """``a * c`` for small signed integer coefficients c (int64, |c| < 2^12; broadcast over the residue axis)."""
    r = np.asarray(a, dtype=np.uint64).view(np.int64) * np.asarray(c, dtype=np.int64)[..., None]
    return _mod(r).view(np.uint64)


def scalar(c) -> np.ndarray:
    """A multiplier: an int -> const(c); elements pass through."""
    return const(c) if isinstance(c, (int, np.integer)) else np.asarray(c, dtype=np.uint64)


def fsum(a, axis: int = 0) -> np.ndarray:
    """Sum over a non-residue axis (chunks of 2^13 terms, so the uint64 partial sums cannot wrap)."""
    a = np.asarray(a, dtype=np.uint64)
    if not 0 <= axis < a.ndim - 1:
        raise ValueError("fsum: not an element axis")
    n = a.shape[axis]
    if n <= 1 << 13:
        return _mod(a.sum(axis=axis, dtype=np.uint64))
    parts = [a.take(range(i, min(i + (1 << 13), n)), axis=axis).sum(axis=axis, dtype=np.uint64) % _p
             for i in range(0, n, 1 << 13)]
    return fsum(np.stack(parts, axis=0), 0)


def dot(coeffs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """sum_j coeffs_j * values_j over the first axis (both (n, ..., L))."""
    return fsum(mul(coeffs, values), 0)


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Matrix/vector products of element arrays: (m, k)@(k,) -> (m,), (k,)@(k, n) -> (n,), (m, k)@(k, n)."""
    if A.ndim == 3 and B.ndim == 2:
        return fsum(mul(A, B[None, :, :]), 1)
    if A.ndim == 2 and B.ndim == 3:
        return fsum(mul(A[:, None, :], B), 0)
    if A.ndim == 3 and B.ndim == 3:
        return fsum(mul(A[:, :, None, :], B[None, :, :, :]), 1)
    raise ValueError(f"matmul of shapes {A.shape} and {B.shape}")


@functools.cache
def pow2(n: int) -> np.ndarray:
    """Elements 2^0, ..., 2^(n-1), shape (n, L) (cached: treat as read-only)."""
    out = np.array([[pow(2, b, p) for p in PRIMES] for b in range(n)], dtype=np.uint64)
    out.flags.writeable = False
    return out


# ---- encodings ----
def encode(values: np.ndarray) -> bytes:
    """Elements -> 32 bytes each: the 250-bit little-endian integer with bits 50j..50j+49 = residue j."""
    r = np.asarray(values, dtype=np.uint64).reshape(-1, L)
    w = np.empty((len(r), 4), dtype="<u8")
    w[:, 0] = r[:, 0] | (r[:, 1] << np.uint64(50))
    w[:, 1] = (r[:, 1] >> np.uint64(14)) | (r[:, 2] << np.uint64(36))
    w[:, 2] = (r[:, 2] >> np.uint64(28)) | (r[:, 3] << np.uint64(22))
    w[:, 3] = (r[:, 3] >> np.uint64(42)) | (r[:, 4] << np.uint64(8))
    return w.tobytes()


def decode(data: bytes, count: int | None = None) -> np.ndarray:
    if len(data) % ELEMENT_BYTES:
        raise MpcAbort(f"malformed message: element bytes not a multiple of {ELEMENT_BYTES}")
    n = len(data) // ELEMENT_BYTES
    if count is not None and n != count:
        raise MpcAbort(f"malformed message: expected {count} field elements, got {n}")
    w = np.frombuffer(data, dtype="<u8").reshape(n, 4).astype(np.uint64)
    out = np.empty((n, L), dtype=np.uint64)
    out[:, 0] = w[:, 0]
    out[:, 1] = (w[:, 0] >> np.uint64(50)) | (w[:, 1] << np.uint64(14))
    out[:, 2] = (w[:, 1] >> np.uint64(36)) | (w[:, 2] << np.uint64(28))
    out[:, 3] = (w[:, 2] >> np.uint64(22)) | (w[:, 3] << np.uint64(42))
    out[:, 4] = w[:, 3] >> np.uint64(8)
    out &= _MASK50
    t = _tile(out.shape)
    if n and ((w[:, 3] >> np.uint64(58)).any() or (out >= (_p if t is None else t[0])).any()):
        raise MpcAbort("malformed message: a field element is not reduced below its primes")
    return out


def words_to_elements(words: np.ndarray) -> np.ndarray:
    """Non-negative integers given as little-endian 64-bit words (shape (..., W)) -> elements."""
    w = np.asarray(words, dtype=np.uint64)
    acc = w[..., -1:] % _p  # Horner from the most significant word: acc = acc * 2^64 + w_k
    for k in range(w.shape[-1] - 2, -1, -1):
        acc = add(mul(acc, _TWO64), w[..., k:k + 1] % _p)
    return acc


def uniform(stream, count: int) -> np.ndarray:
    """``count`` uniform elements from a keystream (an object with ``read(nbytes)``): residue j of element i is
    the low 50 bits of the little-endian 64-bit word ``L i + j``, rejected when ``>= p_j`` and then replaced, in
    order, by the next words of the stream (rejection sampling: exactly uniform; a word is rejected with
    probability below 2^-43)."""
    w = np.frombuffer(stream.read(8 * L * count), dtype="<u8").reshape(count, L) & _MASK50
    bad = w >= _p
    while bad.any():
        pos = np.argwhere(bad)  # row-major order
        extra = np.frombuffer(stream.read(8 * len(pos)), dtype="<u8") & _MASK50
        w[pos[:, 0], pos[:, 1]] = extra
        bad = w >= _p
    return w


def bounded_words(data: bytes, count: int, bits: int) -> np.ndarray:
    """``count`` integers uniform in ``[0, 2^bits)`` as little-endian 64-bit words (shape (count, W),
    W = ceil(bits / 64); 8 W random bytes each)."""
    W = max(1, -(-bits // 64))
    w = np.frombuffer(data[:8 * W * count], dtype="<u8").reshape(count, W).astype(np.uint64)
    top = bits - 64 * (W - 1)
    if top < 64:
        w[:, -1] &= np.uint64((1 << top) - 1)
    return w


def bounded_bytes(count: int, bits: int) -> int:
    return 8 * max(1, -(-bits // 64)) * count


def words_below(words: np.ndarray, bound: int) -> np.ndarray:
    """Per integer (little-endian words, last axis): is it < bound."""
    w = np.asarray(words, dtype=np.uint64)
    W = w.shape[-1]
    if bound >= 1 << (64 * W):
        return np.ones(w.shape[:-1], dtype=bool)
    lt = np.zeros(w.shape[:-1], dtype=bool)
    eq = np.ones(w.shape[:-1], dtype=bool)
    for k in range(W - 1, -1, -1):
        bk = np.uint64((bound >> (64 * k)) & (2**64 - 1))
        lt |= eq & (w[..., k] < bk)
        eq &= w[..., k] == bk
    return lt


def dot_small(a, c, axis: int) -> np.ndarray:
    """sum over ``axis`` of ``a * c`` for small signed integer coefficients c (int64, ``count * max|c| < 2^12``)."""
    r = (np.asarray(a, dtype=np.uint64).view(np.int64) * np.asarray(c, dtype=np.int64)[..., None]).sum(axis=axis)
    return _mod(r).view(np.uint64)
