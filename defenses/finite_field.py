"""Prime-field F_p arithmetic for Reed-Muller self-correction (Gemmell, Lipton, Rubinfeld, Sudan,
Wigderson, STOC 1991; Gemmell, Sudan, IPL 1992).

Elements are Python ints or numpy arrays holding representatives in [0, p).  For p < 2^31 every
product of two reduced elements is < 2^62, so numpy ``int64`` arithmetic is exact provided each
product is reduced before the next addition; larger primes fall back to ``object`` arrays of Python
ints (same code, slower).  Polynomials are coefficient lists, lowest degree first.

Symbols of the Berlekamp-Welch decoder (as used by Gemmell-Sudan 1992): nodes ``a_i``, received values ``b_i``, degree bound ``d``, error
locator ``E`` (monic, degree ``e``), ``Q = P * E`` of degree ``<= e + d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "INT64_SAFE_PRIME_BOUND",
    "DecodingError",
    "berlekamp_welch",
    "check_prime",
    "field_dtype",
    "inv_mod",
    "lagrange_interpolate",
    "lagrange_weights_at_zero",
    "poly_divmod",
    "poly_eval",
    "poly_trim",
    "solve_mod",
]

INT64_SAFE_PRIME_BOUND = 2**31  # p below this: (p-1)^2 + (p-1) < 2^63, int64 exact


class DecodingError(ArithmeticError):
    """Berlekamp-Welch found no polynomial of degree <= d within the decoding radius.

    Attributes: ``reason`` (str), ``n_points`` (m), ``degree`` (d), ``radius`` (e).
    """

    def __init__(self, reason: str, n_points: int, degree: int, radius: int):
        super().__init__(f"{reason} (m={n_points} points, degree bound d={degree}, radius e={radius})")
        self.reason, self.n_points, self.degree, self.radius = reason, n_points, degree, radius


def _is_probable_prime(p: int) -> bool:
    if p < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for q in small:
        if p % q == 0:
            return p == q
    r, s = p - 1, 0
    while r % 2 == 0:
        r //= 2
        s += 1
    for a in small:  # deterministic for p < 3.3e24
        x = pow(a, r, p)
        if x in (1, p - 1):
            continue
        for _ in range(s - 1):
            x = x * x % p
            if x == p - 1:
                break
        else:
            return False
    return True


def check_prime(p) -> int:
    """Return ``p`` as an int after checking it is a prime (TypeError / ValueError otherwise)."""
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
        raise TypeError(f"field modulus p must be an int, got {type(p).__name__}")
    p = int(p)
    if not _is_probable_prime(p):
        raise ValueError(f"field modulus p={p} is not a prime")
    return p


def field_dtype(p: int):
    """numpy dtype that makes products of two reduced elements exact: int64 if p < 2^31 else object."""
    return np.int64 if p < INT64_SAFE_PRIME_BOUND else object


def inv_mod(a: int, p: int) -> int:
    """Multiplicative inverse of ``a`` mod ``p``; ZeroDivisionError for a = 0 mod p."""
    a = int(a) % p
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in F_p")
    return pow(a, -1, p)


def poly_trim(c: Sequence[int]) -> list[int]:
    """Drop trailing zero coefficients (the zero polynomial becomes [])."""
    c = [int(v) for v in c]
    while c and c[-1] == 0:
        c.pop()
    return c


def poly_eval(coeffs: Sequence[int], x, p: int):
    """Horner evaluation of sum_k coeffs[k] x^k mod p at a scalar or array ``x`` (reduced mod p)."""
    if np.ndim(x) == 0:
        acc, xv = 0, int(x) % p
        for c in reversed(list(coeffs)):
            acc = (acc * xv + int(c)) % p
        return acc
    dt = field_dtype(p)
    xv = np.asarray(x).astype(dt) % p
    acc = np.zeros(xv.shape, dtype=dt)
    for c in reversed(list(coeffs)):
        acc = (acc * xv + int(c) % p) % p
    return acc


def lagrange_weights_at_zero(nodes: Sequence[int], p: int) -> list[int]:
    """c_i = L_i(0) = prod_{j != i} a_j / (a_j - a_i) mod p, so that P(0) = sum_i c_i P(a_i)."""
    a = [int(v) % p for v in nodes]
    if len(set(a)) != len(a):
        raise ValueError("interpolation nodes must be distinct mod p")
    out = []
    for i, ai in enumerate(a):
        num, den = 1, 1
        for j, aj in enumerate(a):
            if j != i:
                num = num * aj % p
                den = den * (aj - ai) % p
        out.append(num * inv_mod(den, p) % p)
    return out


def _poly_mul(f: Sequence[int], g: Sequence[int], p: int) -> list[int]:
    if not f or not g:
        return []
    out = [0] * (len(f) + len(g) - 1)
    for i, fi in enumerate(f):
        for j, gj in enumerate(g):
            out[i + j] = (out[i + j] + fi * gj) % p
    return out


def lagrange_interpolate(nodes: Sequence[int], values: Sequence[int], p: int) -> list[int]:
    """Coefficients (length len(nodes), low first) of the unique interpolant of degree < len(nodes)."""
    a = [int(v) % p for v in nodes]
    if len(set(a)) != len(a) or len(values) != len(a):
        raise ValueError("need distinct nodes mod p and one value per node")
    out = [0] * len(a)
    for i, ai in enumerate(a):
        basis, den = [1], 1
        for j, aj in enumerate(a):
            if j != i:
                basis = _poly_mul(basis, [-aj % p, 1], p)
                den = den * (ai - aj) % p
        scale = int(values[i]) * inv_mod(den, p) % p
        for k, bk in enumerate(basis):
            out[k] = (out[k] + scale * bk) % p
    return out


def poly_divmod(num: Sequence[int], den: Sequence[int], p: int) -> tuple[list[int], list[int]]:
    """Polynomial long division over F_p: returns (quotient, remainder), both trimmed."""
    den = poly_trim([v % p for v in den])
    if not den:
        raise ZeroDivisionError("polynomial division by the zero polynomial")
    rem = poly_trim([v % p for v in num])
    inv_lead = inv_mod(den[-1], p)
    quot = [0] * max(len(rem) - len(den) + 1, 0)
    while len(rem) >= len(den):
        shift = len(rem) - len(den)
        coef = rem[-1] * inv_lead % p
        quot[shift] = coef
        for k, dk in enumerate(den):
            rem[shift + k] = (rem[shift + k] - coef * dk) % p
        rem = poly_trim(rem)
    return poly_trim(quot), rem


def solve_mod(A, b, p: int) -> np.ndarray:
    """One solution of A x = b over F_p (free variables set to 0) by Gauss-Jordan elimination.

    Raises ``ValueError`` if the system is inconsistent.  Row operations are vectorized: with
    p < 2^31 each outer-product entry is < 2^62 and is reduced before the subtraction.
    """
    dt = field_dtype(p)
    A = np.asarray(A, dtype=object)
    b = np.asarray(b, dtype=object)
    if A.ndim != 2 or b.shape != (A.shape[0],):
        raise ValueError(f"shapes do not match: A {A.shape}, b {b.shape}")
    rows, cols = A.shape
    M = np.empty((rows, cols + 1), dtype=dt)
    M[:, :cols] = A % p
    M[:, cols] = b % p
    pivots, r = [], 0
    for c in range(cols):
        if r == rows:
            break
        nz = np.nonzero(M[r:, c])[0]
        if nz.size == 0:
            continue
        k = r + int(nz[0])
        if k != r:
            M[[r, k]] = M[[k, r]]
        M[r] = M[r] * inv_mod(int(M[r, c]), p) % p
        factor = M[:, c].copy()
        factor[r] = 0
        M = (M - np.outer(factor, M[r]) % p) % p  # eliminate column c from every other row
        pivots.append(c)
        r += 1
    if r < rows and np.any(M[r:, cols] != 0):
        raise ValueError("linear system over F_p is inconsistent")
    x = np.zeros(cols, dtype=dt)
    for i, c in enumerate(pivots):
        x[c] = M[i, cols]
    return x


def berlekamp_welch(a: Sequence[int], b: Sequence[int], d: int, p: int, e: int | None = None) -> list[int]:
    """Decode a Reed-Solomon word: the polynomial P, deg P <= d, with P(a_i) = b_i for all but <= e i.

    Berlekamp-Welch, as in Gemmell-Sudan 1992.  Unknowns: monic E(x) = x^e + E_{e-1}x^{e-1} + ... + E_0 and Q(x) = Q_0 + ... + Q_{e+d}
    x^{e+d}; equations Q(a_i) - b_i E(a_i) = 0 (m of them, 2e+d+1 unknowns).  Any solution gives
    P = Q / E when at most e values are wrong.  Accept iff the remainder is 0, deg P <= d and P
    disagrees with at most e of the b_i; otherwise raise :class:`DecodingError`.
    Default e = floor((m - d - 1) / 2), the unique-decoding radius.  Returns P's coefficients
    (low first, length d + 1, zero-padded).
    """
    p = int(p)
    a = [int(v) % p for v in a]
    b = [int(v) % p for v in b]
    m = len(a)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
        raise ValueError(f"degree bound d must be a non-negative int, got {d!r}")
    if len(b) != m:
        raise ValueError(f"got {m} nodes but {len(b)} values")
    if len(set(a)) != m:
        raise ValueError("Berlekamp-Welch nodes a_i must be distinct mod p")
    if m < d + 1:
        raise ValueError(f"need at least d+1={d + 1} points, got {m}")
    e_max = (m - d - 1) // 2
    e = e_max if e is None else int(e)
    if not 0 <= e <= e_max:
        raise ValueError(f"radius e={e} outside [0, floor((m-d-1)/2)={e_max}]")
    # columns: Q_0..Q_{e+d}, then E_0..E_{e-1};  rhs: b_i a_i^e (the monic term moved right)
    A = np.empty((m, e + d + 1 + e), dtype=object)
    rhs = np.empty(m, dtype=object)
    for i, (ai, bi) in enumerate(zip(a, b)):
        powers = [pow(ai, k, p) for k in range(e + d + 1)]
        A[i, : e + d + 1] = powers
        A[i, e + d + 1 :] = [(-bi * powers[k]) % p for k in range(e)]
        rhs[i] = bi * pow(ai, e, p) % p
    try:
        sol = [int(v) for v in solve_mod(A, rhs, p)]
    except ValueError:
        raise DecodingError("no (Q, E) pair: more than e errors", m, d, e) from None
    Q, E = sol[: e + d + 1], sol[e + d + 1 :] + [1]
    P, rem = poly_divmod(Q, E, p)
    if rem:
        raise DecodingError("E does not divide Q", m, d, e)
    if len(P) > d + 1:
        raise DecodingError(f"decoded degree {len(P) - 1} exceeds d", m, d, e)
    n_err = sum(poly_eval(P, ai, p) != bi for ai, bi in zip(a, b))
    if n_err > e:
        raise DecodingError(f"decoded polynomial disagrees with {n_err} > e points", m, d, e)
    return P + [0] * (d + 1 - len(P))
