"""Reed-Muller local self-correctors over F_p^n (interpolation corrector: GLRSW,
STOC 1991; lines with Berlekamp-Welch decoding; degree-2 curves: Gemmell, Sudan, IPL 1992).

A black-box ``oracle`` maps an ``(k, n)`` int array of points of F_p^n to ``k`` values in [0, p); it is
assumed to agree with a polynomial f* of total degree <= d except on a fraction ``delta`` of F_p^n.
Every decoder takes the target ``x``, draws its coins from ``random_state``, makes ONE batched oracle
call, and returns a :class:`CorrectionResult` (value or :data:`ABSTAIN`, queries used, tolerated rate).

| decoder | points per trial | decodes degree | tolerated delta (failure per trial < 1/2) |
|---|---|---|---|
| ``basic_correct``  | d+1 on a line x + i v, i = 1..d+1 | d  | 1/(2(d+1))          |
| ``line_correct``   | m on a line, Berlekamp-Welch      | d  | (1 - d/m)/4          |
| ``curve_correct``  | m on x + t v1 + t^2 v2, BW        | 2d | 1/2 - d/m - sqrt(2/m) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from defenses.finite_field import (
    DecodingError,
    berlekamp_welch,
    check_prime,
    field_dtype,
    lagrange_weights_at_zero,
)

__all__ = [
    "ABSTAIN",
    "CorrectionResult",
    "SparsePolynomial",
    "TableOracle",
    "basic_correct",
    "curve_correct",
    "line_correct",
    "plurality",
    "point_index",
    "random_corruption",
    "targeted_line_attack",
    "tolerated_error_rate",
]

ABSTAIN = -1  # not a field element: returned when no trial decoded


@dataclass(frozen=True)
class CorrectionResult:
    """Outcome of one local correction.

    value: plurality of the decoded trials (an int in [0, p)) or ABSTAIN; queries: oracle points used;
    tolerated_error_rate: the delta below which one trial fails w.p. < 1/2; n_decoded: trials that
    decoded; votes: trials agreeing with ``value``.
    """

    value: int
    queries: int
    tolerated_error_rate: float
    n_decoded: int
    votes: int


def tolerated_error_rate(method: str, d: int, m: int | None = None) -> float:
    """Tolerated rate (per-trial failure < 1/2 by union / Markov / Chebyshev bounds): 'basic' 1/(2(d+1)); 'line' (1-d/m)/4; 'curve' 1/2 - d/m - sqrt(2/m)."""
    if method == "basic":
        return 1.0 / (2 * (d + 1))
    if m is None:
        raise ValueError(f"method {method!r} needs the number of points m")
    if method == "line":
        return (1.0 - d / m) / 4.0
    if method == "curve":
        return max(0.0, 0.5 - d / m - math.sqrt(2.0 / m))
    raise ValueError(f"unknown method {method!r}; use 'basic', 'line' or 'curve'")


class SparsePolynomial:
    """f(x) = sum_j coeffs[j] * prod_k x_k^exponents[j, k] mod p, evaluated row-wise on (k, n) arrays."""

    def __init__(self, exponents, coeffs, p: int):
        self.p = check_prime(p)
        self.exponents = np.asarray(exponents, dtype=np.int64)
        self.coeffs = [int(c) % self.p for c in coeffs]
        if self.exponents.ndim != 2 or self.exponents.shape[0] != len(self.coeffs):
            raise ValueError("exponents must be (n_terms, n_vars) with one coefficient per term")
        if np.any(self.exponents < 0):
            raise ValueError("exponents must be non-negative")
        self.n_vars = self.exponents.shape[1]
        self.degree = int(self.exponents.sum(axis=1).max(initial=0))

    @classmethod
    def random(cls, n_vars: int, degree: int, p: int, n_terms: int, random_state=None) -> SparsePolynomial:
        """Random polynomial with ``n_terms`` monomials of total degree <= ``degree`` (one of exactly it)."""
        rng = np.random.default_rng(random_state)
        exps = np.zeros((n_terms, n_vars), dtype=np.int64)
        for j in range(n_terms):
            deg = degree if j == 0 else int(rng.integers(0, degree + 1))
            for var in rng.integers(0, n_vars, size=deg):
                exps[j, var] += 1
        coeffs = rng.integers(1, p, size=n_terms)
        return cls(exps, coeffs, p)

    def __call__(self, points) -> np.ndarray:
        p = self.p
        X = np.asarray(points)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise ValueError(f"points must have shape (k, {self.n_vars}), got {X.shape}")
        X = X.astype(field_dtype(p)) % p
        out = np.zeros(X.shape[0], dtype=X.dtype)
        for exps, c in zip(self.exponents, self.coeffs):
            term = np.full(X.shape[0], c, dtype=X.dtype)
            for var in np.nonzero(exps)[0]:
                for _ in range(int(exps[var])):
                    term = term * X[:, var] % p
            out = (out + term) % p
        return out


def plurality(values) -> tuple[int, int]:
    """Most frequent value (ties -> smallest) and its count; (ABSTAIN, 0) for no values."""
    vals = np.asarray(values)
    if vals.size == 0:
        return ABSTAIN, 0
    uniq, counts = np.unique(vals, return_counts=True)
    k = int(np.argmax(counts))
    return int(uniq[k]), int(counts[k])


def _setup(oracle, x, p, d, n_repeats, random_state):
    if not callable(oracle):
        raise TypeError("oracle must be callable: (k, n) int array -> k values in F_p")
    p = check_prime(p)
    xv = np.asarray(x)
    if xv.ndim != 1 or not np.issubdtype(xv.dtype, np.integer):
        raise ValueError(f"x must be a 1-D integer array (a point of F_p^n), got shape {xv.shape}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
        raise ValueError(f"degree d must be a non-negative int, got {d!r}")
    if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive int, got {n_repeats!r}")
    dt = field_dtype(p)
    return p, xv.astype(dt) % p, np.random.default_rng(random_state), dt


def _query(oracle, pts: np.ndarray, p: int, shape) -> np.ndarray:
    vals = np.asarray(oracle(pts.reshape(-1, pts.shape[-1])))
    if vals.shape != (pts.shape[0] * pts.shape[1],):
        raise ValueError(f"oracle returned shape {vals.shape} for {pts.shape[0] * pts.shape[1]} points")
    return (vals.astype(field_dtype(p)) % p).reshape(shape)


def _random_vectors(rng, p, shape, dt) -> np.ndarray:
    if dt is object:
        return np.array([int(v) for v in rng.integers(0, p, size=shape).ravel()], dtype=object).reshape(shape)
    return rng.integers(0, p, size=shape, dtype=np.int64)


def basic_correct(oracle, x, p: int, d: int, n_repeats: int = 1, random_state=None) -> CorrectionResult:
    """Interpolation corrector (GLRSW'91): per trial query x + i v (i = 1..d+1), output sum_i c_i f(x + i v), c_i = L_i(0).

    Plurality over ``n_repeats`` trials.  Exact when all d+1 queries are correct; each trial errs
    with probability <= (d+1) delta.  Requires p >= d + 2.
    """
    p, xv, rng, dt = _setup(oracle, x, p, d, n_repeats, random_state)
    if p < d + 2:
        raise ValueError(f"need p >= d + 2 = {d + 2} distinct nonzero nodes, got p={p}")
    nodes = list(range(1, d + 2))
    c = np.array(lagrange_weights_at_zero(nodes, p), dtype=dt)
    v = _random_vectors(rng, p, (n_repeats, xv.size), dt)
    t = np.array(nodes, dtype=dt)
    pts = (xv[None, None, :] + t[None, :, None] * v[:, None, :] % p) % p  # (K, d+1, n)
    y = _query(oracle, pts, p, (n_repeats, d + 1))
    ests = (y * c[None, :] % p).sum(axis=1) % p
    value, votes = plurality(ests)
    return CorrectionResult(value, pts.shape[0] * pts.shape[1], tolerated_error_rate("basic", d),
                            n_repeats, votes)


def _bw_trials(t_nodes, y, d_eff, p) -> list[int]:
    out = []
    for row in y:
        try:
            out.append(berlekamp_welch(t_nodes, [int(v) for v in row], d_eff, p)[0])  # P(0)
        except DecodingError:
            continue
    return out


def _check_m(m, p, lowest):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < lowest:
        raise ValueError(f"points per trial m must be an int >= {lowest}, got {m!r}")
    if m > p - 1:
        raise ValueError(f"m={m} exceeds the p - 1 = {p - 1} distinct nonzero nodes of F_p")


def line_correct(oracle, x, p: int, d: int, m: int, n_repeats: int = 1, random_state=None) -> CorrectionResult:
    """Line corrector (GLRSW'91) with Berlekamp-Welch decoding: query x + t v for t = 1..m on a random line, Berlekamp-Welch (degree d), output P(0).

    Unique-decoding radius floor((m - d - 1)/2); by Markov a trial fails w.p. <= 2 delta m/(m - d).
    Trials that fail to decode are dropped; plurality over the rest (ABSTAIN if none decoded).
    """
    p, xv, rng, dt = _setup(oracle, x, p, d, n_repeats, random_state)
    _check_m(m, p, d + 1)
    v = _random_vectors(rng, p, (n_repeats, xv.size), dt)
    t = np.arange(1, m + 1, dtype=np.int64).astype(dt)
    pts = (xv[None, None, :] + t[None, :, None] * v[:, None, :] % p) % p  # (K, m, n)
    y = _query(oracle, pts, p, (n_repeats, m))
    decoded = _bw_trials(list(range(1, m + 1)), y, d, p)
    value, votes = plurality(decoded)
    return CorrectionResult(value, n_repeats * m, tolerated_error_rate("line", d, m), len(decoded), votes)


def curve_correct(oracle, x, p: int, d: int, m: int, n_repeats: int = 1, random_state=None) -> CorrectionResult:
    """Curve corrector (Gemmell-Sudan 1992): query C(t) = x + t v1 + t^2 v2, t = 1..m; f*(C(t)) has degree <= 2d; BW; output P(0).

    Distinct nonzero t give pairwise independent uniform points, so by Chebyshev a trial fails w.p.
    <= delta(1 - delta) m / ((1/2 - delta) m - d)^2.  Needs m >= 2d + 1.
    """
    p, xv, rng, dt = _setup(oracle, x, p, d, n_repeats, random_state)
    _check_m(m, p, 2 * d + 1)
    v = _random_vectors(rng, p, (n_repeats, 2, xv.size), dt)
    t = np.arange(1, m + 1, dtype=np.int64).astype(dt)
    t2 = t * t % p
    pts = (xv[None, None, :] + t[None, :, None] * v[:, None, 0, :] % p
           + t2[None, :, None] * v[:, None, 1, :] % p) % p
    y = _query(oracle, pts, p, (n_repeats, m))
    decoded = _bw_trials(list(range(1, m + 1)), y, 2 * d, p)
    value, votes = plurality(decoded)
    return CorrectionResult(value, n_repeats * m, tolerated_error_rate("curve", d, m), len(decoded), votes)



# ------------------------------------------------------------------ adversaries on small fields (tests, exp4)
def point_index(points, p: int) -> np.ndarray:
    """Row-major index sum_k x_k p^(n-1-k) of points of F_p^n (small p^n only)."""
    X = np.asarray(points, dtype=np.int64) % p
    return X @ (p ** np.arange(X.shape[1] - 1, -1, -1, dtype=np.int64))


class TableOracle:
    """Oracle given by its full value table over F_p^n (index :func:`point_index`)."""

    def __init__(self, table, p: int, n_vars: int):
        self.table, self.p, self.n_vars = np.asarray(table, dtype=np.int64), int(p), int(n_vars)
        if self.table.shape != (self.p**self.n_vars,):
            raise ValueError(f"table must have p^n = {self.p**self.n_vars} entries")

    @classmethod
    def from_polynomial(cls, f: SparsePolynomial) -> TableOracle:
        grid = np.indices((f.p,) * f.n_vars).reshape(f.n_vars, -1).T
        return cls(f(grid), f.p, f.n_vars)

    def __call__(self, points) -> np.ndarray:
        return self.table[point_index(points, self.p)]


def random_corruption(oracle: TableOracle, delta: float, random_state=None) -> TableOracle:
    """Each point independently gets a wrong (non-zero shifted) value with probability ``delta``."""
    rng = np.random.default_rng(random_state)
    size = oracle.table.size
    shift = np.where(rng.random(size) < delta, rng.integers(1, oracle.p, size=size), 0)
    return TableOracle((oracle.table + shift) % oracle.p, oracle.p, oracle.n_vars)


def targeted_line_attack(oracle: TableOracle, x_star, phi: float, n_corrupt: int, random_state=None):
    """Targeted line attack (shows line_correct's Markov bound is tight): on a fraction ``phi`` of the lines through x*, corrupt ``n_corrupt`` of the p - 1 points
    (x* itself untouched).  With n_corrupt = ceil((m - d)/2) and m = p - 1 this defeats every line
    decoder that picks a corrupted line.  Returns (corrupted oracle, global error fraction)."""
    rng = np.random.default_rng(random_state)
    p, n = oracle.p, oracle.n_vars
    x = np.asarray(x_star, dtype=np.int64) % p
    dirs = np.indices((p,) * n).reshape(n, -1).T[1:]
    first = dirs[np.arange(dirs.shape[0]), np.argmax(dirs != 0, axis=1)]
    dirs = dirs[first == 1]  # canonical representative per line: first non-zero coordinate = 1
    chosen = dirs[rng.random(dirs.shape[0]) < phi]
    table = oracle.table.copy()
    for v in chosen:
        t = rng.choice(np.arange(1, p), size=n_corrupt, replace=False)
        idx = point_index(x[None, :] + t[:, None] * v[None, :], p)
        table[idx] = (table[idx] + rng.integers(1, p, size=n_corrupt)) % p
    return TableOracle(table, p, n), chosen.shape[0] * n_corrupt / table.size
