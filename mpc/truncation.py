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

The comparison is the carry chain from the least significant bit (LT_s and LT_sK come out of the same
chain): with lt_(-1) = 0, lt_i = r_i lt_(i-1) when c_i = 1 and r_i + lt_(i-1) - r_i lt_(i-1) when c_i = 0.
Each step is affine in lt_(i-1), so a block of w <= 4 bits is lt_out = A + B lt_in with A, B multilinear
in the block's bits; the dealer supplies the products of every subset of a block's bits, making A and B
linear in shared values. Affine maps compose associatively, so the blocks are folded as a tree (two products
per composition, one when the left item is a value), in about log2(blocks) + 1 rounds.
The range check returns [w] = [(q - H) * b] for the random b of a triple: w is opened at the end of the
step and is 0 exactly when every value is in range (b = 0 with probability 1/p).
"""

from __future__ import annotations

import functools

import numpy as np

from . import field as F
from .errors import MpcAbort
from .field import KAPPA
from .party import Party
from .plan import Layer, fold_pairs
from .shares import Shared


class TripleCursor:
    """Hands out a layer's triples in order (the dealer generated count * mults of each, value-major)."""

    def __init__(self, mat: dict[str, Shared], prefix: str, count: int, mults: int):
        self.t = {k: mat[f"{prefix}.{k}"].reshape(count, mults) for k in ("a", "b", "c", "a2", "c2")}
        self.pos = 0

    def take(self, k: int = 1) -> dict[str, Shared]:
        """The next k triples of every value, flattened value-major (shape (count * k,))."""
        out = {n: s[:, self.pos:self.pos + k].ravel() for n, s in self.t.items()}
        self.pos += k
        return out


def _columns(cols: list[Shared]) -> Shared:
    """Columns of shape (count,) -> one (count * k,) sharing, value-major (as TripleCursor.take)."""
    return Shared.of(np.stack([c.s for c in cols], axis=2).reshape(2, -1, F.L), cols[0].key)


@functools.cache
def _block_table(w: int) -> tuple:
    """For every pattern of w public bits c: the coefficients, over the 2^w subsets S of the block's shared bits
    (monomial prod_{j in S} r_j; S = 0 is the constant 1), of A and B with lt_out = A + B lt_in."""
    out = []
    for cpat in range(1 << w):
        A, B = {}, {0: 1}
        for j in range(w):
            bit = 1 << j
            if cpat >> j & 1:  # lt_j = r_j lt_(j-1)
                A = {m | bit: v for m, v in A.items()}
                B = {m | bit: v for m, v in B.items()}
            else:  # lt_j = r_j + (1 - r_j) lt_(j-1)
                A2 = dict(A)
                for m, v in A.items():
                    A2[m | bit] = A2.get(m | bit, 0) - v
                A2[bit] = A2.get(bit, 0) + 1
                B2 = dict(B)
                for m, v in B.items():
                    B2[m | bit] = B2.get(m | bit, 0) - v
                A, B = A2, B2
        out.append(([A.get(m, 0) for m in range(1 << w)], [B.get(m, 0) for m in range(1 << w)]))
    return tuple(out)


@functools.cache
def _layout(layer: Layer) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Gather indices into the columns [1, bits (nbits), monomials] giving, per block, the 16 (= 2^BLOCK_BITS)
    monomials of its bits in subset order (narrower blocks padded with the constant column and zero
    coefficients); and per block the A and B coefficient tables (2^w patterns x 16) as int64."""
    width = 1 << max(w for _, w in layer.blocks)
    idx, tabA, tabB, mpos = [], [], [], 1 + layer.nbits
    for lo, w in layer.blocks:
        cols = [0]
        for mask in range(1, 1 << w):
            if mask & (mask - 1) == 0:
                cols.append(1 + lo + mask.bit_length() - 1)
            else:
                cols.append(mpos)
                mpos += 1
        idx.append(cols + [0] * (width - len(cols)))
        table = _block_table(w)
        pad = [0] * (width - (1 << w))
        tabA.append(np.array([list(a) + pad for a, _ in table], dtype=np.int64))
        tabB.append(np.array([list(b) + pad for _, b in table], dtype=np.int64))
    return np.array(idx), tabA, tabB


def _block_maps(bits: Shared, mono: Shared, cb: np.ndarray, layer: Layer) -> list[tuple[Shared, Shared]]:
    """For every block: (A, B) with lt_out = A + B lt_in, linear in the block's bits and the dealer's monomials,
    coefficients fixed by the public bits of c (all blocks in one vectorised product)."""
    cnt = len(bits)
    idx, tabA, tabB = _layout(layer)
    # the constant 1 as a sharing: party 0 holds the value, each party alpha_i (docs/MPC.md section 3)
    one = np.broadcast_to(np.stack([F.const(1 - bits.key.party), bits.key.alpha])[:, None, None, :], (2, cnt, 1, F.L))
    allv = np.concatenate([one, bits.s, mono.s], axis=2)[:, :, idx]  # (2, cnt, blocks, 16, L)
    cA = np.empty(allv.shape[1:-1], dtype=np.int64)
    cB = np.empty(allv.shape[1:-1], dtype=np.int64)
    for bi, (lo, w) in enumerate(layer.blocks):
        pats = (cb[:, lo:lo + w] << np.arange(w)).sum(axis=1)
        cA[:, bi], cB[:, bi] = tabA[bi][pats], tabB[bi][pats]
    A, B = F.dot_small(allv, cA, 3), F.dot_small(allv, cB, 3)  # coefficients in {-1, 0, 1}
    key = bits.key
    return [(Shared.of(A[:, :, b], key), Shared.of(B[:, :, b], key)) for b in range(len(layer.blocks))]


def _fold_requests(seqs: list[list]) -> tuple[list, list, list]:
    """One fold round over the sequences (plan.fold_pairs): the products to compute (xs[k] * ys[k]: per pair
    ``B2 A1``, then ``B2 B1`` when the left item is a map) and, per sequence, how to rebuild it."""
    xs, ys, plans = [], [], []
    for seq in seqs:
        plan = []
        for i, j in fold_pairs(len(seq)):
            (A1, B1), (A2, B2) = seq[i], seq[j]
            plan.append((A2, len(xs), None if B1 is None else len(xs) + 1))
            xs.append(B2)
            ys.append(A1)
            if B1 is not None:
                xs.append(B2)
                ys.append(B1)
        plans.append((plan, seq[-1] if len(seq) % 2 else None))
    return xs, ys, plans


def _folded(plans: list, prod: Shared, k: int) -> list[list]:
    prod = prod.reshape(-1, k)
    out = []
    for plan, carry in plans:
        seq = [(A2 + prod[:, ia], None if ib is None else prod[:, ib]) for A2, ia, ib in plan]
        out.append(seq + ([carry] if carry is not None else []))
    return out


def _range_tail(high: list, lt_s: Shared | None, cur: TripleCursor, label: str, rnd: int, rhi: Shared,
                c_hi_n: np.ndarray):
    """The rest of the comparison once LT_s is known, as a chain of products (Party.run / Party.ride): the
    remaining rounds of the high blocks' fold, LT_n = A_hi + B_hi LT_s, q = floor(c/2^n) - rhi - LT_n, and
    the zero test w = (q - H) b. Yields (x, y, triples, label), is sent each product; returns [w]."""
    while len(high) > 1:
        xs, ys, plans = _fold_requests([high])
        k = len(xs)
        prod = yield _columns(xs), _columns(ys), cur.take(k), f"{label}/lt{rnd}"
        (high,) = _folded(plans, prod, k)
        rnd += 1
    A_hi, B_hi = high[0]
    lt_n = A_hi if lt_s is None else A_hi + (yield B_hi, lt_s, cur.take(), f"{label}/lt{rnd}")
    q = (-rhi - lt_n).add_public(c_hi_n)
    return (yield q, None, cur.take(), f"{label}/range")


def _low_bits(c: np.ndarray, n: int) -> np.ndarray:
    """Bits 0..n-1 of each integer of c (object array), as an int64 array (len(c), n)."""
    if n <= 64:
        low = np.array([int(v) & ((1 << n) - 1) for v in c], dtype=np.uint64)
        return ((low[:, None] >> np.arange(n, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)
    return np.array([[(int(v) >> i) & 1 for i in range(n)] for v in c], dtype=np.int64)


def trunc_check(party: Party, x: Shared, layer: Layer, mat: dict[str, Shared], prefix: str,
                label: str, defer: bool = False):
    """-> ([floor(x / 2^s)], [w]) with w = 0 iff floor(x / 2^s) is in the K-bit range. ``defer``: the range
    check's products after LT_s ride on the following openings (Party.ride) and the rider is returned in
    place of [w] (its ``result`` is [w] once a few more openings have happened)."""
    s, K, n, cnt = layer.s, layer.K, layer.nbits, layer.count
    cur = TripleCursor(mat, prefix, cnt, layer.mults)
    bits = mat[f"{prefix}.bits"].reshape(cnt, n)
    rhi = mat[f"{prefix}.rhi"]
    pw = F.pow2(n)
    r = bits.rmul_public(pw) + rhi.scale(1 << n)
    xs = x.add_public((1 << (s + K - 1)) + layer.H * (1 << n))
    # c is masked only statistically (r has kappa bits more than x''), which holds for a correct x'' only: an
    # undetected error in an earlier opening (e.g. F off by delta adds R_b delta to a) could push x'' far
    # outside its bound and let c reveal it. So every value opened so far is MAC-checked first.
    party.mac_check()  # a no-op in the protocol's flow: the check rode on the last opening (secure_step)
    c = F.to_ints(party.open(xs + r, f"{label}/c"))  # as integers in [0, N) (CRT)
    limit = 1 << (layer.kk + KAPPA + 1)
    if any(int(v) >= limit for v in c):
        raise MpcAbort(f"an opened truncation value exceeds its bound ({label}): a share was altered")
    cb = _low_bits(c, n).reshape(cnt, n)
    mono = mat[f"{prefix}.mono"].reshape(cnt, layer.monomials)
    maps = _block_maps(bits, mono, cb, layer)
    # the low blocks (bits 0..s-1; the first has lt_in = 0, a value) give LT_s, the high blocks with them LT_n;
    # both sequences are folded in parallel (docs/MPC.md section 6) until LT_s is known: y needs no more
    nlow = layer.low_blocks
    low = [(maps[0][0], None)] + list(maps[1:nlow]) if nlow else []
    high = list(maps[nlow:])
    if not nlow:
        high[0] = (high[0][0], None)
    rnd = 0
    while len(low) > 1:
        xs_, ys_, plans = _fold_requests([low, high])
        k = len(xs_)
        low, high = _folded(plans, party.mul(_columns(xs_), _columns(ys_), cur.take(k), f"{label}/lt{rnd}"), k)
        rnd += 1
    lt_s = low[0][0] if low else None
    c_hi_s = F.from_ints([(int(v) >> s) - ((1 << (K - 1)) + layer.H * (1 << K)) for v in c])
    c_hi_n = F.from_ints([(int(v) >> n) - layer.H for v in c])
    r_hi_s = bits[:, s:].rmul_public(F.pow2(n - s)) + rhi.scale(1 << K)
    y = (-r_hi_s).add_public(c_hi_s) if lt_s is None else (-r_hi_s - lt_s).add_public(c_hi_s)
    tail = _range_tail(high, lt_s, cur, label, rnd, rhi, c_hi_n)
    return y, (party.ride(tail) if defer else party.run(tail))
