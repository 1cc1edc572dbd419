"""Exact floor truncation with a range check (Catrina and de Hoogh, "Improved primitives for secure
multiparty integer computation", SCN 2010, sections 3-4; docs/MPC.md, "Exact truncation").

For a layer (shift s, range K, input bound 2^bb; see plan.py) and secret x with |x| < 2^bb:

    x'' = x + 2^(s+K-1) + H 2^(s+K)                0 <= x'' < 2^kk
    r   = rhi 2^(s+K) + sum_i r_i 2^i              r_i shared bits, rhi shared, kk + kappa bits in all
    c   = open(x'' + r)                            no wrap: c < 2^(kk+kappa+1) < p
    LT_s  = [c mod 2^s < r mod 2^s]                bitwise comparison, public c bits vs shared r bits
    LT_sK = [c mod 2^(s+K) < r mod 2^(s+K)] = LT_top + EQ_top * LT_s   (top = bits s..s+K-1)
    floor(x''/2^s)     = floor(c/2^s) - floor(r/2^s) - LT_s
    q = floor(x''/2^(s+K)) = floor(c/2^(s+K)) - rhi - LT_sK
    y = floor(x/2^s) = floor(x''/2^s) - 2^(K-1) - H 2^K;   y in [-2^(K-1), 2^(K-1))  <=>  q = H

The comparison of a public c with shared bits: e_i = c_i XOR r_i = c_i + r_i - 2 c_i r_i (linear); a
prefix-OR from the most significant bit (Sklansky's circuit, log2 rounds) gives f_i = OR_{j >= i} e_j; the
first difference is g_i = f_i - f_{i+1}, and [c < r] = sum_i g_i (1 - c_i), [c = r] = 1 - f_0 (linear).
The range check returns [w] = [(q - H) * b] for a random shared b: w is opened at the end of the step and
is 0 exactly when every value is in range (b = 0 with probability 1/p).
"""

from __future__ import annotations

import numpy as np

from .errors import MpcAbort
from .field import KAPPA, P
from .party import Party
from .plan import Layer, sklansky_levels
from .shares import Shared


class TripleCursor:
    """Hands out a layer's triples in order (the dealer generated count * mults of each)."""

    def __init__(self, mat: dict[str, Shared], prefix: str, count: int, mults: int):
        self.t = {k: mat[f"{prefix}.{k}"].reshape(count, mults) for k in ("a", "b", "c", "a2", "c2")}
        self.pos = 0

    def take(self, k: int) -> dict[str, Shared]:
        """k triples per value (shape (count, k))."""
        out = {n: s[:, self.pos:self.pos + k] for n, s in self.t.items()}
        self.pos += k
        return out


def _mul2d(party: Party, x: Shared, y: Shared | None, tri: dict[str, Shared], label: str) -> Shared:
    shape = x.v.shape
    flat = {k: v.ravel() for k, v in tri.items()}
    z = party.mul(x.ravel(), y.ravel() if y is not None else None, flat, label)
    return z.reshape(*shape)


def _prefix_or(party: Party, segs: list[Shared], cur: TripleCursor, label: str) -> list[Shared]:
    """Prefix-OR (index 0 = most significant) of several (count, n_k) bit matrices, level by level together."""
    segs = [Shared(s.v.copy(), s.m.copy(), s.key) for s in segs]
    levels = [sklansky_levels(s.v.shape[1]) for s in segs]
    for lvl in range(max((len(lv) for lv in levels), default=0)):
        xs, ys, where = [], [], []
        for k, lv in enumerate(levels):
            if lvl < len(lv):
                i_idx = [i for i, _ in lv[lvl]]
                j_idx = [j for _, j in lv[lvl]]
                xs.append(segs[k][:, i_idx])
                ys.append(segs[k][:, j_idx])
                where.append((k, i_idx))
        X = Shared.concat(xs, axis=1)
        Y = Shared.concat(ys, axis=1)
        XY = _mul2d(party, X, Y, cur.take(X.v.shape[1]), f"{label}/or{lvl}")
        OR = X + Y - XY
        pos = 0
        for k, i_idx in where:
            w = len(i_idx)
            segs[k].v[:, i_idx] = OR.v[:, pos:pos + w]
            segs[k].m[:, i_idx] = OR.m[:, pos:pos + w]
            pos += w
    return segs


def _lt_eq(f: Shared, cbits_msb: np.ndarray) -> tuple[Shared, Shared]:
    """From prefix-ORs f (MSB first) and the public bits (MSB first): ([c < r], [c = r])."""
    g = Shared(f.v.copy(), f.m.copy(), f.key)
    g.v[:, 1:] = (f.v[:, 1:] - f.v[:, :-1]) % P
    g.m[:, 1:] = (f.m[:, 1:] - f.m[:, :-1]) % P
    lt = Shared(((g.v * (1 - cbits_msb)) % P).sum(axis=1) % P, ((g.m * (1 - cbits_msb)) % P).sum(axis=1) % P, f.key)
    eq = (-f[:, -1]).add_public(1)
    return lt, eq


def trunc_check(party: Party, x: Shared, layer: Layer, mat: dict[str, Shared], prefix: str,
                label: str) -> tuple[Shared, Shared]:
    """-> ([floor(x / 2^s)], [w]) with w = 0 iff floor(x / 2^s) is in the K-bit range."""
    s, K, n, cnt = layer.s, layer.K, layer.nbits, layer.count
    cur = TripleCursor(mat, prefix, cnt, layer.mults)
    bits = mat[f"{prefix}.bits"].reshape(cnt, n)
    rhi = mat[f"{prefix}.rhi"]
    pw = np.array([1 << i for i in range(n)], dtype=object)
    r = Shared((bits.v @ pw) % P, (bits.m @ pw) % P, x.key) + rhi.scale(1 << n)
    xs = x.add_public((1 << (s + K - 1)) + layer.H * (1 << n))
    c = party.open(xs + r, f"{label}/c")
    limit = 1 << (layer.kk + KAPPA + 1)
    if any(int(v) >= limit for v in c):
        raise MpcAbort(f"an opened truncation value exceeds its bound ({label}): a share was altered")
    cb = np.array([[(int(v) >> i) & 1 for i in range(n)] for v in c], dtype=object).reshape(cnt, n)
    e = Shared((bits.v * (1 - 2 * cb)) % P, (bits.m * (1 - 2 * cb)) % P, x.key).add_public(cb)
    low = e[:, :s][:, ::-1]
    top = e[:, s:][:, ::-1]
    f_low, f_top = _prefix_or(party, [low, top], cur, label)
    lt_s, _ = _lt_eq(f_low, cb[:, :s][:, ::-1])
    lt_top, eq_top = _lt_eq(f_top, cb[:, s:][:, ::-1])
    lt_sk = lt_top + _mul2d(party, eq_top, lt_s, cur.take(1), f"{label}/combine").ravel()
    c_hi_s = np.array([int(v) >> s for v in c], dtype=object)
    c_hi_n = np.array([int(v) >> n for v in c], dtype=object)
    pw_hi = np.array([1 << (i - s) for i in range(s, n)], dtype=object)
    r_hi_s = Shared((bits.v[:, s:] @ pw_hi) % P, (bits.m[:, s:] @ pw_hi) % P, x.key) + rhi.scale(1 << K)
    xs_hi = (-r_hi_s - lt_s).add_public(c_hi_s)
    y = xs_hi.add_public(-((1 << (K - 1)) + layer.H * (1 << K)))
    q = (-rhi - lt_sk).add_public(c_hi_n - layer.H)
    w = _mul2d(party, q, None, cur.take(1), f"{label}/range").ravel()
    return y, w
