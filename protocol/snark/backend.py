"""Curve backends for Groth16: one interface, a pure-Python and an arkworks implementation.

Every method takes and returns the canonical affine int tuples of `curve.py` (G1 (x, y),
G2 ((x0, x1), (y0, y1)), infinity None); scalars are Python ints, reduced mod r by the backend
(negative ints allowed). MSM / fixed-base / mul assume points of the prime-order subgroups.

* `PureBackend`: own int Jacobian arithmetic (curve.py, msm.py); py_ecc only for the Miller loop and
  the final exponentiation.
* `ArkworksBackend`: py_arkworks_bls12381; points cross the boundary as big-endian xy bytes
  (`from_xy_bytes_unchecked_be` still checks the curve equation).

`get_backend()` returns the fastest available backend; `get_backend("pure")` the reference one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cache

from . import curve
from .field import P, R
from .msm import fixed_base_window

__all__ = [
    "ArkworksBackend", "Backend", "PureBackend", "available_backends", "get_backend",
]


def _check_scalar(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"scalars must be ints, got {type(k).__name__}")
    return k % R


def _check_lengths(points, scalars) -> tuple[list, list]:
    points, scalars = list(points), list(scalars)
    if len(points) != len(scalars):
        raise ValueError(f"MSM needs equal lengths, got {len(points)} points and {len(scalars)} scalars")
    return points, [_check_scalar(k) for k in scalars]


def _check_point(pt, group: str) -> None:
    ok = curve.is_on_curve_g1(pt) if group == "G1" else curve.is_on_curve_g2(pt)
    if not ok:
        raise ValueError(f"{group} point is not a canonical affine point on the curve: {pt!r}")


class Backend(ABC):
    """Group operations and pairing-product checks over BLS12-381 on canonical affine tuples."""

    name: str = "abstract"

    @abstractmethod
    def msm_g1(self, points: list, scalars: list):
        """sum_i scalars[i] * points[i] in G1 (equal lengths required; empty -> None)."""

    @abstractmethod
    def msm_g2(self, points: list, scalars: list):
        """sum_i scalars[i] * points[i] in G2 (equal lengths required; empty -> None)."""

    @abstractmethod
    def mul_g1(self, point, k: int):
        """k * point in G1, k reduced mod r."""

    @abstractmethod
    def mul_g2(self, point, k: int):
        """k * point in G2, k reduced mod r."""

    def add_g1(self, a, b):
        """a + b in G1."""
        _check_point(a, "G1")
        _check_point(b, "G1")
        return curve.g1_add(a, b)

    def add_g2(self, a, b):
        """a + b in G2."""
        _check_point(a, "G2")
        _check_point(b, "G2")
        return curve.g2_add(a, b)

    def neg_g1(self, a):
        """-a in G1."""
        _check_point(a, "G1")
        return curve.g1_neg(a)

    def neg_g2(self, a):
        """-a in G2."""
        _check_point(a, "G2")
        return curve.g2_neg(a)

    @abstractmethod
    def fixed_base_g1(self, point, scalars: list) -> list:
        """[k * point for k in scalars] in G1 (batched; used by the setup)."""

    @abstractmethod
    def fixed_base_g2(self, point, scalars: list) -> list:
        """[k * point for k in scalars] in G2 (batched; used by the setup)."""

    @abstractmethod
    def pairing_check(self, pairs: list) -> bool:
        """True iff prod_i e(g1_i, g2_i) == 1 for pairs [(g1_i, g2_i)]; pairs with an infinity are skipped."""

    @abstractmethod
    def in_subgroup_g1(self, point) -> bool:
        """True iff point is a canonical point on the curve of order dividing r (None -> True)."""

    @abstractmethod
    def in_subgroup_g2(self, point) -> bool:
        """True iff point is a canonical point on the twist of order dividing r (None -> True)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _pairs(pairs) -> list:
    """Validated (g1, g2) pairs without the ones containing infinity (their pairing is 1)."""
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"pairing_check: pair {i} must be a (g1, g2) tuple")
        g1, g2 = pair
        _check_point(g1, "G1")
        _check_point(g2, "G2")
        if g1 is not None and g2 is not None:
            out.append((g1, g2))
    return out


class PureBackend(Backend):
    """Reference backend: int arithmetic from curve.py, py_ecc Miller loop + final exponentiation."""

    name = "pure"

    def msm_g1(self, points, scalars):
        points, scalars = _check_lengths(points, scalars)
        for pt in points:
            _check_point(pt, "G1")
        return curve.msm_g1(points, scalars)

    def msm_g2(self, points, scalars):
        points, scalars = _check_lengths(points, scalars)
        for pt in points:
            _check_point(pt, "G2")
        return curve.msm_g2(points, scalars)

    def mul_g1(self, point, k):
        _check_point(point, "G1")
        k = _check_scalar(k)
        return curve.g1_mul(point, k - R if k > R // 2 else k)

    def mul_g2(self, point, k):
        _check_point(point, "G2")
        k = _check_scalar(k)
        return curve.g2_mul(point, k - R if k > R // 2 else k)

    def fixed_base_g1(self, point, scalars):
        _check_point(point, "G1")
        return curve.fixed_base_g1(point, [_check_scalar(k) for k in scalars])

    def fixed_base_g2(self, point, scalars):
        _check_point(point, "G2")
        return curve.fixed_base_g2(point, [_check_scalar(k) for k in scalars])

    def pairing_check(self, pairs):
        from py_ecc.optimized_bls12_381 import FQ12, final_exponentiate
        from py_ecc.optimized_bls12_381.optimized_pairing import miller_loop

        # product of Miller loops, ONE final exponentiation (docs/SNARK.md section 4.1, pairing products)
        f = FQ12.one()
        for g1, g2 in _pairs(pairs):
            f = f * miller_loop(curve.to_pyecc_g2(g2), curve.to_pyecc_g1(g1), final_exponentiate=False)
        return final_exponentiate(f) == FQ12.one()

    def in_subgroup_g1(self, point):
        return curve.in_subgroup_g1(point)

    def in_subgroup_g2(self, point):
        return curve.in_subgroup_g2(point)


class ArkworksBackend(Backend):
    """Fast backend on py_arkworks_bls12381 (Rust); conversion at the boundary via xy bytes."""

    name = "arkworks"

    def __init__(self) -> None:
        import py_arkworks_bls12381 as ark

        self._ark = ark
        self._tables: dict = {}  # (arkworks base point, window) -> fixed-base table, at most 4 kept

    # ---- conversions (canonical affine tuple <-> arkworks point)
    def _g1(self, pt):
        if pt is None:
            return self._ark.G1Point.identity()
        try:
            x, y = pt
            if not (0 <= x < P and 0 <= y < P):
                raise ValueError("coordinate out of range")
            return self._ark.G1Point.from_xy_bytes_unchecked_be(x.to_bytes(48, "big") + y.to_bytes(48, "big"))
        except Exception as exc:  # arkworks raises its own error types (on-curve check)
            raise ValueError(f"G1 point is not a canonical affine point on the curve: {pt!r}") from exc

    def _g2(self, pt):
        if pt is None:
            return self._ark.G2Point.identity()
        try:
            (x0, x1), (y0, y1) = pt
            if not all(0 <= v < P for v in (x0, x1, y0, y1)):
                raise ValueError("coordinate out of range")
            data = b"".join(v.to_bytes(48, "big") for v in (x0, x1, y0, y1))
            return self._ark.G2Point.from_xy_bytes_unchecked_be(data)
        except Exception as exc:
            raise ValueError(f"G2 point is not a canonical affine point on the curve: {pt!r}") from exc

    def _scalars(self, scalars) -> list:
        """ints -> arkworks Scalars; from_le_bytes of the reduced value is ~30x faster than Scalar(int)."""
        from_le = self._ark.Scalar.from_le_bytes
        return [from_le((_check_scalar(k)).to_bytes(32, "little")) for k in scalars]

    @staticmethod
    def _from_g1(a):
        b = a.to_xy_bytes_be()
        if not any(b):  # arkworks writes the identity as all-zero bytes
            return None
        return (int.from_bytes(b[:48], "big"), int.from_bytes(b[48:], "big"))

    @staticmethod
    def _from_g2(a):
        b = a.to_xy_bytes_be()
        if not any(b):
            return None
        x0, x1, y0, y1 = (int.from_bytes(b[i:i + 48], "big") for i in range(0, 192, 48))
        return ((x0, x1), (y0, y1))

    def _g1_checked(self, pt):
        _check_point(pt, "G1")
        return self._g1(pt)

    def _g2_checked(self, pt):
        _check_point(pt, "G2")
        return self._g2(pt)

    # ---- interface
    def msm_g1(self, points, scalars):
        points, scalars = _check_lengths(points, scalars)
        pts = [self._g1(p) for p in points]
        ks = self._scalars(scalars)
        assert len(pts) == len(ks)  # arkworks silently truncates mismatched lists
        return self._from_g1(self._ark.G1Point.multiexp_unchecked(pts, ks))

    def msm_g2(self, points, scalars):
        points, scalars = _check_lengths(points, scalars)
        pts = [self._g2(p) for p in points]
        ks = self._scalars(scalars)
        assert len(pts) == len(ks)  # arkworks silently truncates mismatched lists
        return self._from_g2(self._ark.G2Point.multiexp_unchecked(pts, ks))

    def mul_g1(self, point, k):
        return self._from_g1(self._g1_checked(point) * self._scalars([k])[0])

    def mul_g2(self, point, k):
        return self._from_g2(self._g2_checked(point) * self._scalars([k])[0])

    def _fixed_base(self, base, identity, scalars) -> list:
        """Window table of arkworks points (docs/SNARK.md section 4.1): k*G = sum_w T[w][digit_w(k)],
        ~255/c adds each.

        Python-side additions (~1-2 us) beat one `P * Scalar` call (~150-500 us) by an order of magnitude.
        """
        c = fixed_base_window(len(scalars))
        key = (base, c)
        table = self._tables.get(key)
        if table is None:
            table = []
            row_base = base
            for _ in range(-(-R.bit_length() // c)):
                row = [row_base]
                for _ in range((1 << c) - 2):
                    row.append(row[-1] + row_base)
                table.append(row)
                row_base = row[-1] + row_base
            if len(self._tables) >= 4:
                self._tables.pop(next(iter(self._tables)))
            self._tables[key] = table
        mask = (1 << c) - 1
        out = []
        for k in scalars:
            acc = identity
            w = 0
            while k:
                d = k & mask
                if d:
                    acc = acc + table[w][d - 1]
                k >>= c
                w += 1
            out.append(acc)
        return out

    def fixed_base_g1(self, point, scalars):
        base = self._g1_checked(point)
        scalars = [_check_scalar(k) for k in scalars]
        if point is None:
            return [None] * len(scalars)
        return [self._from_g1(a) for a in self._fixed_base(base, self._ark.G1Point.identity(), scalars)]

    def fixed_base_g2(self, point, scalars):
        base = self._g2_checked(point)
        scalars = [_check_scalar(k) for k in scalars]
        if point is None:
            return [None] * len(scalars)
        return [self._from_g2(a) for a in self._fixed_base(base, self._ark.G2Point.identity(), scalars)]

    def pairing_check(self, pairs):
        pairs = _pairs(pairs)
        if not pairs:
            return True
        g1s = [self._g1(a) for a, _ in pairs]
        g2s = [self._g2(b) for _, b in pairs]
        return bool(self._ark.GT.pairing_check(g1s, g2s))

    def in_subgroup_g1(self, point):
        if point is None:
            return True
        if not curve.is_on_curve_g1(point):
            return False
        return bool(self._g1(point).is_in_subgroup())

    def in_subgroup_g2(self, point):
        if point is None:
            return True
        if not curve.is_on_curve_g2(point):
            return False
        return bool(self._g2(point).is_in_subgroup())


def available_backends() -> list[str]:
    """Names of the backends that can be constructed here ("pure" always, "arkworks" if importable)."""
    names = ["pure"]
    try:
        import py_arkworks_bls12381  # noqa: F401
    except ImportError:
        return names
    return names + ["arkworks"]


@cache
def get_backend(name: str | None = None) -> Backend:
    """Backend by name: None / "auto" / "fast" -> arkworks if importable, else pure; "pure"; "arkworks"."""
    if name not in (None, "auto", "fast", "pure", "arkworks"):
        raise ValueError(f"unknown backend {name!r}; choose from None, 'auto', 'fast', 'pure', 'arkworks'")
    if name == "pure":
        return PureBackend()
    if name == "arkworks" or "arkworks" in available_backends():
        return ArkworksBackend()  # raises ImportError for "arkworks" when the package is missing
    return PureBackend()
