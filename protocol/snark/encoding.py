"""BLS12-381 point encodings: ZCash/IETF compressed bytes and the py_ecc bridge.

Split out of `curve.py`, which re-exports every public name here (`from protocol.snark.curve import
g1_to_bytes` keeps working). Points are the canonical affine int tuples of `curve.py` (G1 (x, y), G2
((x0, x1), (y0, y1)) with F_p2 elements (c0, c1) = c0 + c1*u, infinity None).

Compressed form (the ZCash format: draft-irtf-cfrg-pairing-friendly-curves-11 Appendix C; docs/SNARK.md
section 4.1): big-endian, flags in the three most significant bits of byte 0:
C = 0x80 (always set: compressed), I = 0x40 (infinity; every other bit zero), S = 0x20 (y is the
lexicographically larger of {y, p - y}, i.e. 2y > p). G1: 48 bytes, x | flags. G2: 96 bytes, x.c1 first
(carrying the flags), then x.c0; S is decided on y.c1 if y.c1 != 0, else on y.c0. Decoding validates the
flags, every coordinate < p, the curve equation and (by default) membership of the order-r subgroup.
Byte-identical to py_ecc's `compress_G1/G2` and arkworks' `to_compressed_bytes`.
"""

from __future__ import annotations

from .curve import (
    B_G1,
    B_G2,
    fp2_add,
    fp2_mul,
    fp2_neg,
    fp2_sqr,
    in_subgroup_g1,
    in_subgroup_g2,
    is_on_curve_g1,
    is_on_curve_g2,
)
from .field import P

__all__ = [
    "fp2_sqrt", "fp_sqrt", "from_pyecc_g1", "from_pyecc_g2", "g1_from_bytes", "g1_to_bytes",
    "g2_from_bytes", "g2_to_bytes", "to_pyecc_g1", "to_pyecc_g2",
]

# ------------------------------------------------------------------------- square roots (F_p, F_p2)


def fp_sqrt(a: int) -> int | None:
    """A square root of a in F_p (p = 3 mod 4: a^((p+1)/4)), or None if a is a non-residue."""
    a %= P
    s = pow(a, (P + 1) // 4, P)
    return s if s * s % P == a else None


def fp2_sqrt(a):
    """A square root of a in F_p2, or None if a is a non-residue (complex method, p = 3 mod 4)."""
    a0, a1 = a[0] % P, a[1] % P
    if a1 == 0:
        s = fp_sqrt(a0)
        if s is not None:
            return (s, 0)
        s = fp_sqrt(-a0)  # -1 is a non-residue, so -a0 is a residue and sqrt(a0) = sqrt(-a0) u
        return (0, s)
    alpha = fp_sqrt(a0 * a0 + a1 * a1)
    if alpha is None:
        return None
    half = (P + 1) // 2
    x0 = fp_sqrt((a0 + alpha) * half)
    if x0 is None:
        x0 = fp_sqrt((a0 - alpha) * half)
        if x0 is None:
            return None
    x = (x0, a1 * pow(2 * x0, -1, P) % P)
    return x if fp2_sqr(x) == (a0, a1) else None


# ------------------------------------------------------------------------ ZCash compressed bytes

_FLAG_C, _FLAG_I, _FLAG_S = 0x80, 0x40, 0x20
_MASK381 = (1 << 381) - 1


def _larger(v: int) -> bool:
    """v is the lexicographically larger of {v, p - v}, i.e. v > (p - 1)/2."""
    return 2 * v > P


def g1_to_bytes(pt) -> bytes:
    """48-byte compressed encoding: x big-endian with flags C (0x80), I (0x40), S (0x20) in byte 0."""
    if pt is None:
        return bytes([_FLAG_C | _FLAG_I]) + bytes(47)
    if not is_on_curve_g1(pt):
        raise ValueError("g1_to_bytes: point is not a canonical point on the G1 curve")
    x, y = pt
    out = bytearray(x.to_bytes(48, "big"))
    out[0] |= _FLAG_C | (_FLAG_S if _larger(y) else 0)
    return bytes(out)


def g2_to_bytes(pt) -> bytes:
    """96-byte compressed encoding: flags|x.c1 (48 B) then x.c0 (48 B); S decided on y.c1, else y.c0."""
    if pt is None:
        return bytes([_FLAG_C | _FLAG_I]) + bytes(95)
    if not is_on_curve_g2(pt):
        raise ValueError("g2_to_bytes: point is not a canonical point on the G2 twist")
    (x0, x1), (y0, y1) = pt
    out = bytearray(x1.to_bytes(48, "big") + x0.to_bytes(48, "big"))
    out[0] |= _FLAG_C | (_FLAG_S if _larger(y1 if y1 else y0) else 0)
    return bytes(out)


def _parse_flags(data, size: int, group: str) -> tuple[bool, int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{group} encoding must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) != size:
        raise ValueError(f"{group} encoding must be {size} bytes, got {len(data)}")
    flags = data[0] & 0xE0
    if not flags & _FLAG_C:
        raise ValueError(f"{group} encoding: compression flag 0x80 not set (only compressed form accepted)")
    body = int.from_bytes(data, "big") & ((1 << (8 * size - 3)) - 1)
    if flags & _FLAG_I:
        if flags & _FLAG_S or body:
            raise ValueError(f"{group} encoding: infinity flag set but sign flag or other bits nonzero")
        return True, 0
    return False, flags & _FLAG_S


def g1_from_bytes(data, subgroup_check: bool = True):
    """Decode 48 compressed bytes; validates flags, x < p, the curve equation and (default) G1 membership."""
    inf, sign = _parse_flags(data, 48, "G1")
    if inf:
        return None
    x = int.from_bytes(bytes(data), "big") & _MASK381
    if x >= P:
        raise ValueError("G1 encoding: x coordinate is not < p")
    y = fp_sqrt(x * x * x + B_G1)
    if y is None:
        raise ValueError("G1 encoding: x^3 + 4 is not a square, the point is not on the curve")
    if _larger(y) != bool(sign):
        y = P - y
    pt = (x, y)
    if subgroup_check and not in_subgroup_g1(pt):
        raise ValueError("G1 encoding: point is on the curve but not in the order-r subgroup")
    return pt


def g2_from_bytes(data, subgroup_check: bool = True):
    """Decode 96 compressed bytes; validates flags, x.c0/x.c1 < p, the twist equation and G2 membership."""
    inf, sign = _parse_flags(data, 96, "G2")
    if inf:
        return None
    data = bytes(data)
    x1 = int.from_bytes(data[:48], "big") & _MASK381
    x0 = int.from_bytes(data[48:], "big")
    if x1 >= P or x0 >= P:
        raise ValueError("G2 encoding: a coordinate of x (c0 or c1) is not < p")
    x = (x0, x1)
    y = fp2_sqrt(fp2_add(fp2_mul(fp2_sqr(x), x), B_G2))
    if y is None:
        raise ValueError("G2 encoding: x^3 + 4(1+u) is not a square, the point is not on the twist")
    if _larger(y[1] if y[1] else y[0]) != bool(sign):
        y = fp2_neg(y)
    pt = (x, y)
    if subgroup_check and not in_subgroup_g2(pt):
        raise ValueError("G2 encoding: point is on the twist but not in the order-r subgroup")
    return pt


# --------------------------------------------------------------------------------- py_ecc bridge


def to_pyecc_g1(pt):
    """Affine int tuple -> py_ecc optimized_bls12_381 projective point (Z1 for None)."""
    from py_ecc.optimized_bls12_381 import FQ, Z1

    return Z1 if pt is None else (FQ(pt[0]), FQ(pt[1]), FQ.one())


def from_pyecc_g1(pt):
    """py_ecc projective G1 point -> affine int tuple (None for infinity)."""
    from py_ecc.optimized_bls12_381 import is_inf, normalize

    if is_inf(pt):
        return None
    x, y = normalize(pt)
    return (int(x.n), int(y.n))


def to_pyecc_g2(pt):
    """Affine int tuple -> py_ecc projective G2 point (Z2 for None)."""
    from py_ecc.optimized_bls12_381 import FQ2, Z2

    return Z2 if pt is None else (FQ2(list(pt[0])), FQ2(list(pt[1])), FQ2.one())


def from_pyecc_g2(pt):
    """py_ecc projective G2 point -> affine int tuple (None for infinity)."""
    from py_ecc.optimized_bls12_381 import is_inf, normalize

    if is_inf(pt):
        return None
    x, y = normalize(pt)
    return (tuple(int(c) for c in x.coeffs), tuple(int(c) for c in y.coeffs))
