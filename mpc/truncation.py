"""Exact floor truncation with a range check (Catrina and de Hoogh, "Improved primitives for secure
multiparty integer computation", SCN 2010, sections 3-4; docs/MPC.md, "Exact truncation").

For a layer (shift s, range K, input bound 2^bb; see plan.py) and secret x with |x| < 2^bb:

    x'' = x + 2^(s+K-1) + H 2^(s+K)                0 <= x'' < 2^kk
    r   = rhi 2^(s+K) + sum_i r_i 2^i              r_i shared bits, rhi shared, kk + kappa bits in all
    c   = open(x'' + r)                            no wrap: c < 2^(kk+kappa+1) < p
    LT_s  = [c mod 2^s < r mod 2^s]                comparison of public bits with shared bits
    LT_sK = [c mod 2^(s+K) < r mod 2^(s+K)]
    floor(x''/2^s)     = floor(c/2^s) - floor(r/2^s) - LT_s
    q = floor(x''/2^(s+K)) = floor(c/2^(s+K)) - rhi - LT_sK
    y = floor(x/2^s) = floor(x''/2^s) - 2^(K-1) - H 2^K;   y in [-2^(K-1), 2^(K-1))  <=>  q = H

The comparison is the carry chain from the least significant bit (one product per bit, s + K - 1 rounds;
LT_s and LT_sK come out of the same chain): lt_0 = (1 - c_0) r_0, and lt_i = r_i lt_(i-1) when c_i = 1,
r_i OR lt_(i-1) = r_i + lt_(i-1) - r_i lt_(i-1) when c_i = 0.
The range check returns [w] = [(q - H) * b] for the random b of a triple: w is opened at the end of the
step and is 0 exactly when every value is in range (b = 0 with probability 1/p).
"""

from __future__ import annotations

import numpy as np

from .errors import MpcAbort
from .field import KAPPA, P
from .party import Party
from .plan import Layer
from .shares import Shared


class TripleCursor:
    """Hands out a layer's triples in order (the dealer generated count * mults of each)."""

    def __init__(self, mat: dict[str, Shared], prefix: str, count: int, mults: int):
        self.t = {k: mat[f"{prefix}.{k}"].reshape(count, mults) for k in ("a", "b", "c", "a2", "c2")}
        self.pos = 0

    def take(self) -> dict[str, Shared]:
        """The next triple of every value (shape (count,))."""
        out = {n: s[:, self.pos] for n, s in self.t.items()}
        self.pos += 1
        return out


def _lt_chain(party: Party, bits: Shared, cb: np.ndarray, cur: TripleCursor, s: int, label: str):
    """-> ([c mod 2^s < r mod 2^s], [c mod 2^n < r mod 2^n]) with n = number of bits."""
    n = bits.v.shape[1]
    lt = bits[:, 0].scale(1 - cb[:, 0])
    lt_s = lt if s == 1 else None
    for i in range(1, n):
        ri = bits[:, i]
        prod = party.mul(ri, lt, cur.take(), f"{label}/lt{i}")
        ci = cb[:, i]
        lt = Shared((prod.v * ci + (ri.v + lt.v - prod.v) * (1 - ci)) % P,
                    (prod.m * ci + (ri.m + lt.m - prod.m) * (1 - ci)) % P, lt.key)
        if i == s - 1:
            lt_s = lt
    return lt_s, lt


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
    lt_s, lt_sk = _lt_chain(party, bits, cb, cur, s, label)
    c_hi_s = np.array([int(v) >> s for v in c], dtype=object)
    c_hi_n = np.array([int(v) >> n for v in c], dtype=object)
    pw_hi = np.array([1 << (i - s) for i in range(s, n)], dtype=object)
    r_hi_s = Shared((bits.v[:, s:] @ pw_hi) % P, (bits.m[:, s:] @ pw_hi) % P, x.key) + rhi.scale(1 << K)
    y = (-r_hi_s - lt_s).add_public(c_hi_s - ((1 << (K - 1)) + layer.H * (1 << K)))
    q = (-rhi - lt_sk).add_public(c_hi_n - layer.H)
    w = party.mul(q, None, cur.take(), f"{label}/range")
    return y, w
