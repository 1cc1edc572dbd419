"""Group-generic scalar multiplication: windowed scalar mul, Pippenger MSM, fixed-base tables.

The algorithms only see a `GroupOps` bundle (Jacobian double / mixed add / add, affine negation,
batch normalisation), so G1 and G2 share one implementation; `curve.py` builds the two bundles and
exposes `msm_g1`, `fixed_base_g2`, ... on top. Affine points are the canonical tuples of `curve.py`,
the point at infinity is None.

MSM and fixed-base multiplication reduce scalars mod r and use -k P = (r - k) P, so they are only
meaningful for points of the order-r subgroups. `scalar_mul` is exact for every point on the curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .field import R

_HALF_R = R // 2
_SCALAR_BITS = R.bit_length()  # 255


@dataclass(frozen=True)
class GroupOps:
    """Arithmetic of one group in Jacobian coordinates; `inf` is the Jacobian point at infinity."""

    name: str
    inf: Any
    dbl: Callable[[Any], Any]  # jacobian -> jacobian
    madd: Callable[[Any, Any], Any]  # (jacobian, affine non-infinity) -> jacobian
    add: Callable[[Any, Any], Any]  # (jacobian, jacobian) -> jacobian
    neg: Callable[[Any], Any]  # affine non-infinity -> affine
    to_jac: Callable[[Any], Any]  # affine non-infinity -> jacobian
    is_inf: Callable[[Any], bool]  # jacobian -> bool
    normalize: Callable[[list], list]  # list of jacobian -> list of affine-or-None (one inversion)


def _check_scalar(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"scalars must be ints, got {type(k).__name__}")
    return k


def signed_digits(k: int, c: int) -> list[int]:
    """Digits d_w in [-2^(c-1), 2^(c-1)] with k = sum_w d_w 2^(cw), least significant first (k >= 0)."""
    mask = (1 << c) - 1
    half = 1 << (c - 1)
    full = 1 << c
    out = []
    while k:
        d = k & mask
        k >>= c
        if d > half:
            d -= full
            k += 1
        out.append(d)
    return out


def scalar_mul(ops: GroupOps, point, k: int):
    """k * point for any point on the curve (no reduction mod r); returns Jacobian. Negative k allowed."""
    _check_scalar(k)
    if point is None or k == 0:
        return ops.inf
    if k < 0:
        point, k = ops.neg(point), -k
    c = 4
    # affine multiples 1..2^(c-1) of the point
    jac = [ops.to_jac(point)]
    for _ in range((1 << (c - 1)) - 1):
        jac.append(ops.madd(jac[-1], point))
    table = ops.normalize(jac)
    acc = ops.inf
    for d in reversed(signed_digits(k, c)):
        for _ in range(c):
            acc = ops.dbl(acc)
        if d:
            q = table[abs(d) - 1]
            if q is not None:
                acc = ops.madd(acc, q if d > 0 else ops.neg(q))
    return acc


def _window_for(n: int) -> int:
    # ~ceil(255/c) * (N + 2^c) additions: best c ~ log2(N) - 2, N = 1024 -> 8 (docs/SNARK.md section 4.1)
    return max(2, min(16, n.bit_length() - 3))


def pippenger(ops: GroupOps, points, scalars, window: int | None = None):
    """sum_i scalars[i] * points[i] by the signed-digit bucket method; returns affine or None.

    Pippenger (FOCS 1976) in the bucket form of Bernstein, Doumen, Lange, Oosterwijk, "Faster batch forgery
    identification" (INDOCRYPT 2012, ePrint 2012/549 p. 15); details in docs/SNARK.md section 4.1.
    """
    points = list(points)
    scalars = list(scalars)
    if len(points) != len(scalars):
        raise ValueError(f"MSM needs equal lengths, got {len(points)} points and {len(scalars)} scalars")
    pts, ks = [], []
    ones = ops.inf
    madd, add, dbl = ops.madd, ops.add, ops.dbl
    for p, k in zip(points, scalars):
        k = _check_scalar(k) % R
        if k == 0 or p is None:
            continue
        if k > _HALF_R:  # -k P = (r - k)(-P): halves "negative" scalars
            k, p = R - k, ops.neg(p)
        if k == 1:
            ones = madd(ones, p)
            continue
        pts.append(p)
        ks.append(k)
    if not pts:
        return ops.normalize([ones])[0]
    c = window if window is not None else _window_for(len(pts))
    if not isinstance(c, int) or not 1 <= c <= 24:
        raise ValueError(f"window must be an int in [1, 24], got {c!r}")
    digits = [signed_digits(k, c) for k in ks]
    n_win = max(len(d) for d in digits)
    negs = [ops.neg(p) for p in pts]
    n_buckets = 1 << (c - 1) if c > 1 else 1
    total = ops.inf
    for w in range(n_win - 1, -1, -1):
        if not ops.is_inf(total):
            for _ in range(c):
                total = dbl(total)
        buckets: list = [None] * (n_buckets + 1)
        for i, ds in enumerate(digits):
            if w >= len(ds):
                continue
            d = ds[w]
            if d:
                q = pts[i] if d > 0 else negs[i]
                j = d if d > 0 else -d
                b = buckets[j]
                buckets[j] = ops.to_jac(q) if b is None else madd(b, q)
        # sum_j j * B[j] by running sums, from the top bucket down
        run = acc = ops.inf
        started = False
        for j in range(n_buckets, 0, -1):
            b = buckets[j]
            if b is not None:
                run = b if not started else add(run, b)
                started = True
            if started:
                acc = add(acc, run)
        total = add(total, acc)
    return ops.normalize([add(total, ones)])[0]


def fixed_base_window(n: int) -> int:
    """Window width for n multiplications of one base (docs/SNARK.md section 4.1)."""
    # minimise (2^c + n) * ceil(255 / c) additions: table rows plus one madd per digit
    return min(range(2, 11), key=lambda c: ((1 << c) + n) * (-(-_SCALAR_BITS // c)))


@lru_cache(maxsize=8)
def _fixed_base_table(ops: GroupOps, point, c: int) -> tuple:
    """T[w][j-1] = j * 2^(cw) * point (affine), j = 1..2^c-1, w = 0..ceil(255/c)-1; one inversion."""
    n_win = -(-_SCALAR_BITS // c)
    jac = []
    base = ops.to_jac(point)
    for _ in range(n_win):
        row = [base]
        for _ in range((1 << c) - 2):
            row.append(ops.add(row[-1], base))
        jac.extend(row)
        base = ops.add(row[-1], base)  # 2^c * previous base
    flat = ops.normalize(jac)
    width = (1 << c) - 1
    return tuple(tuple(flat[w * width:(w + 1) * width]) for w in range(n_win))


def fixed_base(ops: GroupOps, point, scalars, window: int | None = None) -> list:
    """[k * point for k in scalars] (k reduced mod r) via a precomputed window table (docs/SNARK.md 4.1)."""
    scalars = [_check_scalar(k) % R for k in scalars]
    if point is None or not scalars:
        return [None] * len(scalars)
    c = window if window is not None else fixed_base_window(len(scalars))
    if not isinstance(c, int) or not 1 <= c <= 16:
        raise ValueError(f"window must be an int in [1, 16], got {c!r}")
    table = _fixed_base_table(ops, point, c)
    mask = (1 << c) - 1
    madd = ops.madd
    out = []
    for k in scalars:
        acc = ops.inf
        w = 0
        while k:
            d = k & mask
            if d:
                q = table[w][d - 1]
                if q is not None:
                    acc = madd(acc, q)
            k >>= c
            w += 1
        out.append(acc)
    return ops.normalize(out)
