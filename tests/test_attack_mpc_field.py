"""Law tests of the two-party ring Z_N (N = p_1 ... p_5, residues on the last axis; docs/MPC.md section 2)
against Python integers, for every layout an implementation may special-case: one element, rows, 3-d arrays,
broadcast operands, a per-residue constant, non-contiguous views (strided slices, transposes), arrays above
any size at which a faster path stops, edge residues (0, p - 1, p - 2) and negative small coefficients.

Every share, MAC and opened value of the protocol goes through these functions: an arithmetic slip in one layout
would make honest parties' MAC checks fail (a false accusation) or, worse, hold only for some layouts.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import field as F
from mpc.field import PRIMES, P

L = len(PRIMES)


def _ints(a: np.ndarray) -> list:
    return [int(v) for v in np.asarray(F.to_ints(a)).ravel()]


@st.composite
def elements(draw, shape):
    """Element arrays of ``shape`` (+ residue axis), residues drawn from the edges and the middle of each prime."""
    n = int(np.prod(shape)) if shape else 1
    kinds = draw(st.lists(st.sampled_from(["zero", "max", "max-1", "rand"]), min_size=n * L, max_size=n * L))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = np.empty(n * L, dtype=np.uint64)
    for k, kind in enumerate(kinds):
        p = PRIMES[k % L]
        out[k] = {"zero": 0, "max": p - 1, "max-1": p - 2}.get(kind, int(rng.integers(0, p)))
    return out.reshape(*shape, L)


SHAPES = st.sampled_from([(), (1,), (7,), (3, 4), (2, 3, 5)])


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_add_sub_mul_neg_match_integers_in_every_layout(data):
    shape = data.draw(SHAPES)
    a = data.draw(elements(shape))
    b = data.draw(elements(shape))
    layouts = [(a, b)]
    if len(shape) >= 1 and shape[0] > 1:
        layouts.append((a[::2], b[::2]))  # strided views
        layouts.append((a, b[:1]))  # broadcast over the first axis
    if len(shape) >= 2:
        layouts.append((a.swapaxes(0, 1), b.swapaxes(0, 1)))  # a transposed, non-contiguous view
    layouts.append((a, b.reshape(-1, L)[0]))  # a per-residue constant (shape (L,))
    for x, y in layouts:
        xi = np.asarray(F.to_ints(x))
        yi = np.asarray(F.to_ints(y))
        xi, yi = np.broadcast_arrays(xi, yi)
        want_add = [(int(u) + int(v)) % P for u, v in zip(xi.ravel(), yi.ravel())]
        want_sub = [(int(u) - int(v)) % P for u, v in zip(xi.ravel(), yi.ravel())]
        want_mul = [(int(u) * int(v)) % P for u, v in zip(xi.ravel(), yi.ravel())]
        assert _ints(F.add(x, y)) == want_add
        assert _ints(F.sub(x, y)) == want_sub
        assert _ints(F.mul(x, y)) == want_mul
        assert _ints(F.neg(x)) == [(-int(u)) % P for u in np.asarray(F.to_ints(x)).ravel()]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_small_coefficients_sums_and_conversions(data):
    n, m = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 6))
    a = data.draw(elements((n, m)))
    c = np.array(data.draw(st.lists(st.integers(-(2**11) + 1, 2**11 - 1), min_size=n * m, max_size=n * m)),
                 dtype=np.int64).reshape(n, m)
    ai = np.asarray(F.to_ints(a))
    assert _ints(F.mul_small(a, c)) == [(int(u) * int(v)) % P for u, v in zip(ai.ravel(), c.ravel())]
    cs = np.clip(c, -((2**12 - 1) // n), (2**12 - 1) // n)  # dot_small's contract: count * max|c| < 2^12
    got = _ints(F.dot_small(a, cs, 0))
    assert got == [sum(int(ai[i, j]) * int(cs[i, j]) for i in range(n)) % P for j in range(m)]
    assert _ints(F.fsum(a, 0)) == [sum(int(ai[i, j]) for i in range(n)) % P for j in range(m)]
    assert _ints(F.dot(a, a)) == [sum(int(ai[i, j]) ** 2 for i in range(n)) % P for j in range(m)]
    vals = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=12))
    assert _ints(F.from_ints(np.array(vals, dtype=np.int64))) == [v % P for v in vals]
    assert _ints(F.from_ints(vals)) == [v % P for v in vals]


def test_large_arrays_agree_with_their_pieces():
    """Above any size at which a tiled fast path stops, the same results as piece by piece (each piece small,
    checked against integers on a sample)."""
    rng = np.random.default_rng(5)
    n = (1 << 20) // L + 3001  # more residues than a 2^20 tile
    a = np.stack([rng.integers(0, p, size=n, dtype=np.uint64) for p in PRIMES], axis=-1)
    b = np.stack([rng.integers(0, p, size=n, dtype=np.uint64) for p in PRIMES], axis=-1)
    a[:7], b[:7] = np.array(PRIMES, dtype=np.uint64) - 1, np.array(PRIMES, dtype=np.uint64) - 1
    for op in (F.add, F.sub, F.mul):
        whole = op(a, b)
        pieces = np.concatenate([op(a[i:i + 4096], b[i:i + 4096]) for i in range(0, n, 4096)])
        assert np.array_equal(whole, pieces), op.__name__
    sample = rng.choice(n, 200, replace=False)
    ai, bi = F.to_ints(a[sample]), F.to_ints(b[sample])
    assert _ints(F.mul(a, b)[sample]) == [(int(u) * int(v)) % P for u, v in zip(ai, bi)]
    c = rng.integers(-2000, 2000, size=n, dtype=np.int64)
    assert _ints(F.mul_small(a, c)[sample]) == [(int(u) * int(v)) % P for u, v in zip(ai, c[sample])]
