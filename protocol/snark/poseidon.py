"""Poseidon over the BLS12-381 scalar field F_r, and the hiding sponge commitment to a dataset.

Poseidon: Grassi, Khovratovich, Rechberger, Roy, Schofnegger, "Poseidon: A New Hash Function for
Zero-Knowledge Proof Systems", USENIX Security 2021 (ePrint 2019/458). Instance ``x5_255_3`` of the
reference implementation: S-box x^5 (gcd(5, r - 1) = 1, so it is a permutation of F_r; checked at import),
width t = 3, R_F = 8 full rounds (4 + 4), R_P = 57 partial rounds, 128-bit security. Round constants and
the MDS matrix come from the reference Grain LFSR generator (paper, appendix F; ``grain_constants``):

    state b_0..b_79 = 2 bits field type (1 = F_p) || 4 bits S-box (0 = x^alpha) || 12 bits n = 255
                      || 12 bits t || 10 bits R_F || 10 bits R_P || 30 bits 1
    b_{i+80} = b_{i+62} ^ b_{i+51} ^ b_{i+38} ^ b_{i+23} ^ b_{i+13} ^ b_i; discard the first 160 bits;
    self-shrinking: take bits in pairs, output the second when the first is 1.
    Round constants: t * (R_F + R_P) values, each n = 255 output bits read big-endian, values >= r redrawn.
    MDS: then 2t more n-bit values x_0..x_{t-1}, y_0..y_{t-1} (reduced mod r, no redraw);
    M[i][j] = 1 / (x_i + y_j)  (a Cauchy matrix, the reference's first draw, which passes its checks).

Round i (0 <= i < R_F + R_P): add c[t*i .. t*i + t-1]; S-box on every element (full round: i < 4 or
i >= 4 + R_P) or on element 0 only (partial round); state <- M * state. The test vector of the reference
implementation (tests/vectors/poseidon.json) and the ``poseidon-hash`` package pin this down.

Sponge and commitment (docs/SNARK.md section 8): capacity element state[0], rate elements state[1..2].
``sponge_hash(elems)`` starts from state = (len(elems) * 2^64, 0, 0) (the length tag of a fixed-length
hash), absorbs the elements two at a time by adding them into state[1], state[2] (the last pair padded
with 0) and permuting after each pair, and outputs state[1]. ``commit(rows, blinding, K)`` hashes
[blinding, packed data]: the row-major values (every row's d features, then its target), each a K-bit
signed integer v mapped to v + 2^(K-1) in [0, 2^K), packed ``pack = floor(253 / K)`` to a field element
(value k of a group at bit offset K*k). A uniform blinding element makes the commitment hiding.
"""

from __future__ import annotations

from functools import cache
from math import gcd

from .field import R

__all__ = [
    "ALPHA",
    "FULL_ROUNDS",
    "PARTIAL_ROUNDS",
    "RATE",
    "WIDTH",
    "commit",
    "grain_constants",
    "pack_values",
    "pack_width",
    "params",
    "permute",
    "sponge_hash",
]

ALPHA, WIDTH, RATE, FULL_ROUNDS, PARTIAL_ROUNDS = 5, 3, 2, 8, 57
FIELD_BITS = 255  # n = ceil(log2 r)
LENGTH_TAG = 1 << 64
PACK_BITS = 253  # packed groups stay below 2^253 < r

if gcd(ALPHA, R - 1) != 1:  # pragma: no cover - a property of the field, checked once
    raise AssertionError("x^5 is not a permutation of F_r")


class _Grain:
    """The Grain LFSR in self-shrinking mode, initialised for a Poseidon instance over a prime field."""

    def __init__(self, n: int, t: int, r_f: int, r_p: int, sbox_code: int = 0):
        bits = [0, 1]  # field type 1 = prime field
        for value, width in ((sbox_code, 4), (n, 12), (t, 12), (r_f, 10), (r_p, 10)):
            bits += [(value >> k) & 1 for k in reversed(range(width))]
        self.s = bits + [1] * 30
        for _ in range(160):
            self._clock()

    def _clock(self) -> int:
        s = self.s
        b = s[62] ^ s[51] ^ s[38] ^ s[23] ^ s[13] ^ s[0]
        s.pop(0)
        s.append(b)
        return b

    def bits(self, count: int) -> int:
        out = 0
        got = 0
        while got < count:
            first, second = self._clock(), self._clock()
            if first:
                out = (out << 1) | second
                got += 1
        return out


def grain_constants(t: int = WIDTH, r_f: int = FULL_ROUNDS, r_p: int = PARTIAL_ROUNDS, n: int = FIELD_BITS,
                    sbox_code: int = 0):
    """(round constants, MDS rows) of the reference generator for an x^alpha instance over F_r.

    ``sbox_code`` is the 4-bit S-box field of the LFSR seed: 0 (x^alpha) in the reference implementation;
    Filecoin/Neptune and the ``poseidon-hash`` package write 1 for alpha = 5 (other constants; tests only)."""
    g = _Grain(n, t, r_f, r_p, sbox_code)
    rc = []
    while len(rc) < t * (r_f + r_p):
        v = g.bits(n)
        if v < R:
            rc.append(v)
    xy = [g.bits(n) % R for _ in range(2 * t)]
    xs, ys = xy[:t], xy[t:]
    if len(set(xy)) != 2 * t or any((x + y) % R == 0 for x in xs for y in ys):  # pragma: no cover
        raise AssertionError("degenerate MDS draw; the reference would redraw")
    mds = [[pow(x + y, -1, R) for y in ys] for x in xs]
    return tuple(rc), tuple(tuple(row) for row in mds)


@cache
def params():
    """The x5_255_3 constants (computed once, about 0.2 s)."""
    return grain_constants()


def permute(state) -> list[int]:
    """The Poseidon permutation of a width-3 state (ints in [0, r))."""
    rc, mds = params()
    s = [int(v) % R for v in state]
    if len(s) != WIDTH:
        raise ValueError(f"Poseidon state must have {WIDTH} elements, got {len(s)}")
    half = FULL_ROUNDS // 2
    for i in range(FULL_ROUNDS + PARTIAL_ROUNDS):
        s = [(v + rc[WIDTH * i + k]) % R for k, v in enumerate(s)]
        if i < half or i >= half + PARTIAL_ROUNDS:
            s = [pow(v, ALPHA, R) for v in s]
        else:
            s[0] = pow(s[0], ALPHA, R)
        s = [sum(m * v for m, v in zip(row, s)) % R for row in mds]
    return s


def sponge_hash(elems) -> int:
    """Fixed-length sponge: capacity tag len * 2^64, rate 2, zero padding, output state[1]."""
    elems = [int(e) for e in elems]
    if any(not 0 <= e < R for e in elems):
        raise ValueError("sponge inputs must be field elements in [0, r)")
    state = [len(elems) * LENGTH_TAG % R, 0, 0]
    for i in range(0, max(len(elems), 1), RATE):
        chunk = elems[i:i + RATE] + [0] * (RATE - len(elems[i:i + RATE]))
        state = permute([state[0], (state[1] + chunk[0]) % R, (state[2] + chunk[1]) % R])
    return state[1]


def pack_width(value_bits: int) -> int:
    """How many value_bits-bit values go into one field element."""
    if not 2 <= value_bits <= PACK_BITS:
        raise ValueError(f"value width must be in 2..{PACK_BITS} bits, got {value_bits}")
    return PACK_BITS // value_bits


def pack_values(values, value_bits: int) -> list[int]:
    """Signed value_bits-bit integers -> field elements, pack_width(value_bits) per element."""
    per, half = pack_width(value_bits), 1 << (value_bits - 1)
    out = []
    vals = [int(v) for v in values]
    for i in range(0, len(vals), per):
        acc = 0
        for k, v in enumerate(vals[i:i + per]):
            if not -half <= v < half:
                raise ValueError(f"value {v} is outside the {value_bits}-bit range [-2^{value_bits - 1}, "
                                 f"2^{value_bits - 1})")
            acc += (v + half) << (value_bits * k)
        out.append(acc)
    return out


def flatten_rows(X, Y) -> list[int]:
    """Row-major: X[0][0..d-1], Y[0], X[1][0..d-1], Y[1], ..."""
    out = []
    for row, y in zip(X, Y, strict=True):
        out.extend(int(v) for v in row)
        out.append(int(y))
    return out


def commit(X, Y, blinding: int, value_bits: int) -> int:
    """The hiding Poseidon commitment to a dataset: sponge_hash([blinding] + pack_values(rows))."""
    if isinstance(blinding, bool) or not isinstance(blinding, int) or not 0 <= blinding < R:
        raise ValueError("the blinding element must be an int in [0, r)")
    return sponge_hash([blinding] + pack_values(flatten_rows(X, Y), value_bits))
