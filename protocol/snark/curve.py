"""BLS12-381 G1 and G2 on plain Python ints: Jacobian arithmetic, checks, encodings, MSM.

Canonical in-memory format (used across protocol/snark): affine int tuples,
G1 point = (x, y), G2 point = ((x_c0, x_c1), (y_c0, y_c1)) with F_p2 = F_p[u]/(u^2 + 1) elements
written (c0, c1) = c0 + c1*u (py_ecc `FQ2.coeffs` order, snarkjs JSON order); infinity is None.
Coordinates of canonical points are in [0, p).

Jacobian (X, Y, Z) represents (X/Z^2, Y/Z^3); Z == 0 is infinity. Formulas for a = 0 from the
Explicit-Formulas Database: dbl-2009-l, madd-2007-bl, add-2007-bl.
G1: y^2 = x^3 + 4 over F_p.  G2: y^2 = x^3 + 4(1 + u) over F_p2.
Compressed encodings (ZCash/IETF format, docs/SNARK.md section 4.1), the square roots they need and the
py_ecc bridge live in `encoding.py`; this module re-exports them lazily (PEP 562 `__getattr__`: encoding.py
imports curve.py, so an eager import here would be circular), so `from protocol.snark.curve import
g1_to_bytes` and `curve.to_pyecc_g1` keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .field import P, R
from .msm import GroupOps, fixed_base, pippenger, scalar_mul

if TYPE_CHECKING:  # static view of the lazy re-exports below
    from .encoding import (
        fp2_sqrt,
        fp_sqrt,
        from_pyecc_g1,
        from_pyecc_g2,
        g1_from_bytes,
        g1_to_bytes,
        g2_from_bytes,
        g2_to_bytes,
        to_pyecc_g1,
        to_pyecc_g2,
    )

__all__ = [
    "B_G1", "B_G2", "G1_GEN", "G1_OPS", "G2_GEN", "G2_OPS", "P", "R", "fixed_base_g1", "fixed_base_g2",
    "fp2_add", "fp2_inv", "fp2_mul", "fp2_neg", "fp2_sqr", "fp2_sqrt", "fp2_sub", "fp_sqrt",
    "from_pyecc_g1", "from_pyecc_g2", "g1_add", "g1_batch_normalize", "g1_double", "g1_from_bytes",
    "g1_from_jacobian", "g1_jac_add", "g1_jac_double", "g1_jac_madd", "g1_mul", "g1_neg", "g1_to_bytes",
    "g2_add", "g2_batch_normalize", "g2_double", "g2_from_bytes", "g2_from_jacobian", "g2_jac_add",
    "g2_jac_double", "g2_jac_madd", "g2_mul", "g2_neg", "g2_to_bytes", "in_subgroup_g1",
    "in_subgroup_g2", "is_on_curve_g1", "is_on_curve_g2", "msm_g1", "msm_g2", "to_pyecc_g1",
    "to_pyecc_g2",
]

B_G1 = 4
B_G2 = (4, 4)
G1_GEN = (
    0x17F1D3A73197D7942695638C4FA9AC0FC3688C4F9774B905A14E3A3F171BAC586C55E83FF97A1AEFFB3AF00ADB22C6BB,
    0x08B3F481E3AAA0F1A09E30ED741D8AE4FCF5E095D5D00AF600DB18CB2C04B3EDD03CC744A2888AE40CAA232946C5E7E1,
)
G2_GEN = (
    (0x024AA2B2F08F0A91260805272DC51051C6E47AD4FA403B02B4510B647AE3D1770BAC0326A805BBEFD48056C8C121BDB8,
     0x13E02B6052719F607DACD3A088274F65596BD0D09920B61AB5DA61BBDC7F5049334CF11213945D57E5AC7D055D042B7E),
    (0x0CE5D527727D6E118CC9CDC6DA2E351AADFD9BAA8CBDD3A76D429A695160D12C923AC9CC3BACA289E193548608B82801,
     0x0606C4A02EA734CC32ACD2B02BC28B99CB3E287E85A763AF267492AB572E99AB3F370D275CEC1DA1AAA9075FF05F79BE),
)

# ----------------------------------------------------------------------------------------- F_p2


def fp2_add(a, b):
    return ((a[0] + b[0]) % P, (a[1] + b[1]) % P)


def fp2_sub(a, b):
    return ((a[0] - b[0]) % P, (a[1] - b[1]) % P)


def fp2_neg(a):
    return (-a[0] % P, -a[1] % P)


def fp2_mul(a, b):
    # Karatsuba: (a0 + a1 u)(b0 + b1 u) = (a0 b0 - a1 b1) + ((a0 + a1)(b0 + b1) - a0 b0 - a1 b1) u
    a0, a1 = a
    b0, b1 = b
    t0 = a0 * b0
    t1 = a1 * b1
    return ((t0 - t1) % P, ((a0 + a1) * (b0 + b1) - t0 - t1) % P)


def fp2_sqr(a):
    a0, a1 = a
    return ((a0 + a1) * (a0 - a1) % P, 2 * a0 * a1 % P)


def fp2_inv(a):
    a0, a1 = a
    n = (a0 * a0 + a1 * a1) % P
    if n == 0:
        raise ZeroDivisionError("inverse of zero in F_p2")
    ni = pow(n, -1, P)
    return (a0 * ni % P, -a1 * ni % P)


# ------------------------------------------------------------------------------------ G1 (Jacobian)

_G1_INF = (1, 1, 0)


def g1_jac_double(pt):
    X1, Y1, Z1 = pt
    A = X1 * X1 % P
    B = Y1 * Y1 % P
    C = B * B % P
    D = 2 * ((X1 + B) ** 2 - A - C) % P
    E = 3 * A % P
    X3 = (E * E - 2 * D) % P
    return (X3, (E * (D - X3) - 8 * C) % P, 2 * Y1 * Z1 % P)


def g1_jac_madd(pt, q):
    """Jacobian pt + affine q (q not infinity)."""
    X1, Y1, Z1 = pt
    if Z1 == 0:
        return (q[0], q[1], 1)
    Z1Z1 = Z1 * Z1 % P
    H = (q[0] * Z1Z1 - X1) % P
    rr = 2 * (q[1] * Z1 * Z1Z1 - Y1) % P
    if H == 0:
        return g1_jac_double(pt) if rr == 0 else _G1_INF
    HH = H * H % P
    I4 = 4 * HH % P
    J = H * I4 % P
    V = X1 * I4 % P
    X3 = (rr * rr - J - 2 * V) % P
    return (X3, (rr * (V - X3) - 2 * Y1 * J) % P, ((Z1 + H) ** 2 - Z1Z1 - HH) % P)


def g1_jac_add(p1, p2):
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    if Z1 == 0:
        return p2
    if Z2 == 0:
        return p1
    Z1Z1 = Z1 * Z1 % P
    Z2Z2 = Z2 * Z2 % P
    U1 = X1 * Z2Z2 % P
    S1 = Y1 * Z2 * Z2Z2 % P
    H = (X2 * Z1Z1 - U1) % P
    rr = 2 * (Y2 * Z1 * Z1Z1 - S1) % P
    if H == 0:
        return g1_jac_double(p1) if rr == 0 else _G1_INF
    I4 = 4 * H * H % P
    J = H * I4 % P
    V = U1 * I4 % P
    X3 = (rr * rr - J - 2 * V) % P
    return (X3, (rr * (V - X3) - 2 * S1 * J) % P, ((Z1 + Z2) ** 2 - Z1Z1 - Z2Z2) * H % P)


def g1_batch_normalize(points) -> list:
    """Jacobian G1 points -> affine tuples (None for infinity) with one inversion (Montgomery trick)."""
    points = list(points)
    zs = [pt[2] for pt in points if pt[2] % P]
    prefix, acc = [], 1
    for z in zs:
        prefix.append(acc)
        acc = acc * z % P
    inv = pow(acc, -1, P)
    invs = [0] * len(zs)
    for i in range(len(zs) - 1, -1, -1):
        invs[i] = inv * prefix[i] % P
        inv = inv * zs[i] % P
    out, n = [], 0
    for X, Y, Z in points:
        if Z % P == 0:
            out.append(None)
            continue
        zi = invs[n]
        n += 1
        zi2 = zi * zi % P
        out.append((X * zi2 % P, Y * zi2 * zi % P))
    return out


def g1_from_jacobian(pt):
    return g1_batch_normalize([pt])[0]


def g1_neg(pt):
    return None if pt is None else (pt[0], -pt[1] % P)


# ------------------------------------------------------------------------------------ G2 (Jacobian)

_ZERO2, _ONE2 = (0, 0), (1, 0)
_G2_INF = (_ONE2, _ONE2, _ZERO2)


def _dbl2(a):
    return (2 * a[0] % P, 2 * a[1] % P)


def g2_jac_double(pt):
    """dbl-2009-l over F_p2, with the F_p2 products written out (no helper calls: ~2x faster)."""
    (x0, x1), (y0, y1), (z0, z1) = pt
    a0, a1 = (x0 + x1) * (x0 - x1) % P, 2 * x0 * x1 % P  # A = X^2
    b0, b1 = (y0 + y1) * (y0 - y1) % P, 2 * y0 * y1 % P  # B = Y^2
    c0, c1 = (b0 + b1) * (b0 - b1) % P, 2 * b0 * b1 % P  # C = B^2
    s0, s1 = x0 + b0, x1 + b1
    d0 = 2 * ((s0 + s1) * (s0 - s1) - a0 - c0) % P  # D = 2((X + B)^2 - A - C)
    d1 = 2 * (2 * s0 * s1 - a1 - c1) % P
    e0, e1 = 3 * a0, 3 * a1  # E = 3A
    X0 = ((e0 + e1) * (e0 - e1) - 2 * d0) % P  # X3 = E^2 - 2D
    X1 = (2 * e0 * e1 - 2 * d1) % P
    t0, t1 = d0 - X0, d1 - X1
    Y0 = (e0 * t0 - e1 * t1 - 8 * c0) % P  # Y3 = E(D - X3) - 8C
    Y1 = (e0 * t1 + e1 * t0 - 8 * c1) % P
    return ((X0, X1), (Y0, Y1), (2 * (y0 * z0 - y1 * z1) % P, 2 * (y0 * z1 + y1 * z0) % P))  # Z3 = 2YZ


def g2_jac_madd(pt, q):
    """Jacobian pt + affine q (q not infinity): madd-2007-bl over F_p2, products written out."""
    (x0, x1), (y0, y1), (z0, z1) = pt
    if z0 == 0 and z1 == 0:
        return (q[0], q[1], _ONE2)
    (qx0, qx1), (qy0, qy1) = q
    zz0, zz1 = (z0 + z1) * (z0 - z1) % P, 2 * z0 * z1 % P  # Z1Z1
    u0, u1 = (qx0 * zz0 - qx1 * zz1) % P, (qx0 * zz1 + qx1 * zz0) % P  # U2 = x2 Z1Z1
    w0, w1 = (z0 * zz0 - z1 * zz1) % P, (z0 * zz1 + z1 * zz0) % P  # Z1^3
    s0, s1 = (qy0 * w0 - qy1 * w1) % P, (qy0 * w1 + qy1 * w0) % P  # S2 = y2 Z1^3
    h0, h1 = (u0 - x0) % P, (u1 - x1) % P  # H = U2 - X1
    r0, r1 = 2 * (s0 - y0) % P, 2 * (s1 - y1) % P  # r = 2(S2 - Y1)
    if h0 == 0 and h1 == 0:
        return g2_jac_double(pt) if r0 == 0 and r1 == 0 else _G2_INF
    hh0, hh1 = (h0 + h1) * (h0 - h1) % P, 2 * h0 * h1 % P  # HH = H^2
    i0, i1 = 4 * hh0, 4 * hh1  # I = 4 HH
    j0, j1 = (h0 * i0 - h1 * i1) % P, (h0 * i1 + h1 * i0) % P  # J = H I
    v0, v1 = (x0 * i0 - x1 * i1) % P, (x0 * i1 + x1 * i0) % P  # V = X1 I
    X0 = ((r0 + r1) * (r0 - r1) - j0 - 2 * v0) % P  # X3 = r^2 - J - 2V
    X1 = (2 * r0 * r1 - j1 - 2 * v1) % P
    t0, t1 = v0 - X0, v1 - X1
    Y0 = (r0 * t0 - r1 * t1 - 2 * (y0 * j0 - y1 * j1)) % P  # Y3 = r(V - X3) - 2 Y1 J
    Y1 = (r0 * t1 + r1 * t0 - 2 * (y0 * j1 + y1 * j0)) % P
    a0, a1 = z0 + h0, z1 + h1
    Z0 = ((a0 + a1) * (a0 - a1) - zz0 - hh0) % P  # Z3 = (Z1 + H)^2 - Z1Z1 - HH
    Z1 = (2 * a0 * a1 - zz1 - hh1) % P
    return ((X0, X1), (Y0, Y1), (Z0, Z1))


def g2_jac_add(p1, p2):
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    if Z1 == _ZERO2:
        return p2
    if Z2 == _ZERO2:
        return p1
    Z1Z1 = fp2_sqr(Z1)
    Z2Z2 = fp2_sqr(Z2)
    U1 = fp2_mul(X1, Z2Z2)
    S1 = fp2_mul(Y1, fp2_mul(Z2, Z2Z2))
    H = fp2_sub(fp2_mul(X2, Z1Z1), U1)
    rr = _dbl2(fp2_sub(fp2_mul(Y2, fp2_mul(Z1, Z1Z1)), S1))
    if H == _ZERO2:
        return g2_jac_double(p1) if rr == _ZERO2 else _G2_INF
    I4 = _dbl2(_dbl2(fp2_sqr(H)))
    J = fp2_mul(H, I4)
    V = fp2_mul(U1, I4)
    X3 = fp2_sub(fp2_sub(fp2_sqr(rr), J), _dbl2(V))
    Y3 = fp2_sub(fp2_mul(rr, fp2_sub(V, X3)), _dbl2(fp2_mul(S1, J)))
    Z3 = fp2_mul(fp2_sub(fp2_sub(fp2_sqr(fp2_add(Z1, Z2)), Z1Z1), Z2Z2), H)
    return (X3, Y3, Z3)


def g2_batch_normalize(points) -> list:
    """Jacobian G2 points -> affine tuples (None for infinity) with one F_p2 inversion."""
    points = list(points)
    zs = [pt[2] for pt in points if pt[2] != _ZERO2]
    prefix, acc = [], _ONE2
    for z in zs:
        prefix.append(acc)
        acc = fp2_mul(acc, z)
    inv = fp2_inv(acc) if zs else _ONE2
    invs = [_ZERO2] * len(zs)
    for i in range(len(zs) - 1, -1, -1):
        invs[i] = fp2_mul(inv, prefix[i])
        inv = fp2_mul(inv, zs[i])
    out, n = [], 0
    for X, Y, Z in points:
        if Z == _ZERO2:
            out.append(None)
            continue
        zi = invs[n]
        n += 1
        zi2 = fp2_sqr(zi)
        out.append((fp2_mul(X, zi2), fp2_mul(Y, fp2_mul(zi2, zi))))
    return out


def g2_from_jacobian(pt):
    return g2_batch_normalize([pt])[0]


def g2_neg(pt):
    return None if pt is None else (pt[0], fp2_neg(pt[1]))


G1_OPS = GroupOps(
    name="G1", inf=_G1_INF, dbl=g1_jac_double, madd=g1_jac_madd, add=g1_jac_add, neg=g1_neg,
    to_jac=lambda q: (q[0], q[1], 1), is_inf=lambda pt: pt[2] == 0, normalize=g1_batch_normalize,
)
G2_OPS = GroupOps(
    name="G2", inf=_G2_INF, dbl=g2_jac_double, madd=g2_jac_madd, add=g2_jac_add, neg=g2_neg,
    to_jac=lambda q: (q[0], q[1], _ONE2), is_inf=lambda pt: pt[2] == _ZERO2,
    normalize=g2_batch_normalize,
)

# ------------------------------------------------------------------------------ affine convenience


def g1_add(a, b):
    """Affine G1 a + b (None = infinity)."""
    if a is None:
        return b
    if b is None:
        return a
    return g1_from_jacobian(g1_jac_madd((a[0], a[1], 1), b))


def g1_double(a):
    return None if a is None else g1_from_jacobian(g1_jac_double((a[0], a[1], 1)))


def g1_mul(a, k: int):
    """k * a for any point on E(F_p), exact (k is NOT reduced mod r; negative k allowed)."""
    return g1_from_jacobian(scalar_mul(G1_OPS, a, k))


def g2_add(a, b):
    """Affine G2 a + b (None = infinity)."""
    if a is None:
        return b
    if b is None:
        return a
    return g2_from_jacobian(g2_jac_madd((a[0], a[1], _ONE2), b))


def g2_double(a):
    return None if a is None else g2_from_jacobian(g2_jac_double((a[0], a[1], _ONE2)))


def g2_mul(a, k: int):
    """k * a for any point on E'(F_p2), exact (k is NOT reduced mod r; negative k allowed)."""
    return g2_from_jacobian(scalar_mul(G2_OPS, a, k))


def msm_g1(points, scalars, window: int | None = None):
    """sum_i k_i P_i over G1 by Pippenger (scalars reduced mod r; points must lie in G1)."""
    return pippenger(G1_OPS, points, scalars, window)


def msm_g2(points, scalars, window: int | None = None):
    """sum_i k_i Q_i over G2 by Pippenger (scalars reduced mod r; points must lie in G2)."""
    return pippenger(G2_OPS, points, scalars, window)


def fixed_base_g1(point, scalars, window: int | None = None) -> list:
    """[k * point for k in scalars] (mod r) through a cached fixed-base window table."""
    return fixed_base(G1_OPS, point, scalars, window)


def fixed_base_g2(point, scalars, window: int | None = None) -> list:
    """[k * point for k in scalars] (mod r) through a cached fixed-base window table."""
    return fixed_base(G2_OPS, point, scalars, window)


# ------------------------------------------------------------------------------ curve / subgroup


def _is_fp(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < P


def _is_fp2(v) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and _is_fp(v[0]) and _is_fp(v[1])


def is_on_curve_g1(pt) -> bool:
    """True iff pt is None or a canonical (x, y), 0 <= x, y < p, with y^2 = x^3 + 4."""
    if pt is None:
        return True
    if not (isinstance(pt, tuple) and len(pt) == 2 and _is_fp(pt[0]) and _is_fp(pt[1])):
        return False
    x, y = pt
    return (y * y - x * x * x - B_G1) % P == 0


def is_on_curve_g2(pt) -> bool:
    """True iff pt is None or canonical ((x0, x1), (y0, y1)) with y^2 = x^3 + 4(1 + u) in F_p2."""
    if pt is None:
        return True
    if not (isinstance(pt, tuple) and len(pt) == 2 and _is_fp2(pt[0]) and _is_fp2(pt[1])):
        return False
    x, y = pt
    return fp2_sqr(y) == fp2_add(fp2_mul(fp2_sqr(x), x), B_G2)


def in_subgroup_g1(pt) -> bool:
    """True iff pt is on the curve and r * pt = infinity (None counts as in G1)."""
    return is_on_curve_g1(pt) and (pt is None or G1_OPS.is_inf(scalar_mul(G1_OPS, pt, R)))


def in_subgroup_g2(pt) -> bool:
    """True iff pt is on the twist and r * pt = infinity (None counts as in G2)."""
    return is_on_curve_g2(pt) and (pt is None or G2_OPS.is_inf(scalar_mul(G2_OPS, pt, R)))


# ------------------------------------------------------------------- re-exports from encoding.py

_ENCODING_NAMES = frozenset({
    "fp2_sqrt", "fp_sqrt", "from_pyecc_g1", "from_pyecc_g2", "g1_from_bytes", "g1_to_bytes",
    "g2_from_bytes", "g2_to_bytes", "to_pyecc_g1", "to_pyecc_g2",
})


def __getattr__(name: str):
    if name in _ENCODING_NAMES:
        from . import encoding

        value = getattr(encoding, name)
        globals()[name] = value  # cache: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ENCODING_NAMES)
