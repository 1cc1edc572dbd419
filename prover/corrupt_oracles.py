"""Corrupted oracles (adversarial models) for testing the oblivious mitigators.

Every oracle is a *fixed* function: its corruption pattern is chosen by a keyed hash (BLAKE2b with the
attacker's key) of the queried point, so repeated queries agree (a mitigator cannot average noise away).

Finite field F_q^n (Reed-Muller local self-correction: Gemmell, Lipton, Rubinfeld, Sudan, Wigderson,
STOC 1991; Gemmell, Sudan, IPL 1992; the decoders are in ``defenses/reed_muller.py``):
* ``RandomCorruptionOracle`` -- f(x) != f*(x) exactly on {x : PRF_key(x) < delta}: a delta fraction of
  the points, each independently in the random-oracle model.
* ``TargetedLineOracle`` -- the targeted line attack: on a fraction phi of the lines through x* (exactly
  round(phi * #lines) of the (q^n - 1)/(q - 1) lines, chosen by the key) it corrupts exactly
  ceil((m - d)/2) of the q - 1 points other than x*, which defeats Berlekamp-Welch on those lines when
  the decoder reads m = q - 1 points; optionally also x* itself.

Reals (the local mitigation of Goldwasser, Shafer, Vafa, Vaikuntanathan, STOC 2025, arXiv 2411.03279;
``defenses/oblivious.py``): ``RealCorruptOracle`` -- f = f* + offset on the ball ||(x - x*)/scale|| <= radius
and on the pseudo-random set {x : PRF_key(floor(x / cell)) < delta}, whose mass is ~delta under any
distribution that is smooth at scale ``cell``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

__all__ = ["RandomCorruptionOracle", "RealCorruptOracle", "TargetedLineOracle", "prf_uniform"]

_MAX_LINES = 2**20


def prf_uniform(key: bytes, rows: np.ndarray, tag: bytes = b"") -> np.ndarray:
    """Keyed hash of each int row -> float in [0, 1) (53 bits); a pseudo-random function of the row."""
    if not isinstance(key, bytes) or not 1 <= len(key) <= 64:
        raise TypeError("key must be 1..64 bytes")
    raw = np.ascontiguousarray(np.atleast_2d(rows).astype(">i8"))
    out = np.empty(raw.shape[0])
    for i in range(raw.shape[0]):
        h = hashlib.blake2b(tag + raw[i].tobytes(), key=key, digest_size=8).digest()
        out[i] = (int.from_bytes(h, "big") >> 11) * 2.0**-53
    return out


def _field_points(points, q: int, n: int) -> np.ndarray:
    P = np.atleast_2d(np.asarray(points))
    if P.dtype == object:  # defenses.finite_field uses object arrays for large p
        P = P.astype(np.int64)
    if not np.issubdtype(P.dtype, np.integer) or P.ndim != 2 or P.shape[1] != n:
        raise ValueError(f"points must be an integer array of shape (k, {n})")
    return np.mod(P, q).astype(np.int64)


def _nonzero_offsets(key: bytes, P: np.ndarray, q: int, offset: int | None) -> np.ndarray:
    if offset is not None:
        return np.full(P.shape[0], offset, dtype=np.int64)
    return 1 + np.floor(prf_uniform(key, P, b"offset") * (q - 1)).astype(np.int64)


def _check_field(q, offset):
    if not isinstance(q, int) or q < 3:
        raise ValueError(f"q must be a prime >= 3, got {q!r}")
    if offset is not None and (not isinstance(offset, int) or offset % q == 0):
        raise ValueError(f"offset must be an int that is nonzero mod q, got {offset!r}")


class RandomCorruptionOracle:
    """f(x) = f*(x) + c(x) (mod q), c(x) != 0, on the keyed pseudo-random set {PRF(x) < delta}."""

    def __init__(self, f_star, q: int, n: int, delta: float, key: bytes, offset: int | None = None):
        _check_field(q, offset)
        if not 0.0 <= delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta!r}")
        self.f_star, self.q, self.n, self.delta, self.key, self.offset = f_star, q, n, delta, key, offset

    def is_corrupted(self, points) -> np.ndarray:
        P = _field_points(points, self.q, self.n)
        return prf_uniform(self.key, P, b"random") < self.delta

    def __call__(self, points) -> np.ndarray:
        P = _field_points(points, self.q, self.n)
        vals = np.mod(np.asarray(self.f_star(P), dtype=np.int64), self.q)
        bad = self.is_corrupted(P)
        return np.mod(vals + bad * _nonzero_offsets(self.key, P, self.q, self.offset), self.q)


class TargetedLineOracle:
    """Targeted line attack on x*: exactly errors_per_line = ceil((m - d)/2) bad points on attacked lines.

    Attributes after construction: ``attacked_lines_`` (canonical directions, first nonzero entry 1),
    ``corrupted_`` (sorted base-q indices of the corrupted points), ``delta_`` (their fraction of F_q^n).
    """

    def __init__(self, f_star, q: int, n: int, x_star, d: int, phi: float, key: bytes, *,
                 m: int | None = None, corrupt_center: bool = True, offset: int | None = None):
        _check_field(q, offset)
        m = q - 1 if m is None else m
        if not (isinstance(d, int) and 0 <= d and d + 1 <= m <= q - 1):
            raise ValueError(f"need 0 <= d and d + 1 <= m <= q - 1, got d={d!r}, m={m!r}, q={q}")
        if not 0.0 <= phi <= 1.0:
            raise ValueError(f"phi must be in [0, 1], got {phi!r}")
        n_lines = (q**n - 1) // (q - 1)
        if n_lines > _MAX_LINES:
            raise ValueError(f"{n_lines} lines through x* is too many to enumerate (max {_MAX_LINES})")
        self.f_star, self.q, self.n, self.d, self.m, self.phi = f_star, q, n, d, m, phi
        self.key, self.offset = key, offset
        self.x_star = _field_points(np.asarray(x_star).reshape(1, -1), q, n)[0]
        self.errors_per_line = math.ceil((m - d) / 2)
        dirs = self._canonical_directions()
        order = np.argsort(prf_uniform(key, dirs, b"line"), kind="stable")
        self.attacked_lines_ = dirs[np.sort(order[:round(phi * n_lines)])]
        ts = np.arange(1, q, dtype=np.int64)
        pts = []
        for v in self.attacked_lines_:
            rank = prf_uniform(key, np.column_stack([np.broadcast_to(v, (q - 1, n)), ts]), b"t")
            chosen = ts[np.argsort(rank, kind="stable")[:self.errors_per_line]]
            pts.append(np.mod(self.x_star + chosen[:, None] * v, q))
        if corrupt_center:
            pts.append(self.x_star[None, :])
        allp = np.concatenate(pts) if pts else np.zeros((0, n), dtype=np.int64)
        self.corrupted_ = np.unique(self._index(allp))
        self.delta_ = self.corrupted_.size / q**n

    def _canonical_directions(self) -> np.ndarray:
        q, n = self.q, self.n
        blocks = []
        for lead in range(n):
            k = n - lead - 1
            rest = np.indices((q,) * k).reshape(k, -1).T if k else np.zeros((1, 0), dtype=np.int64)
            block = np.zeros((rest.shape[0], n), dtype=np.int64)
            block[:, lead] = 1
            block[:, lead + 1:] = rest
            blocks.append(block)
        return np.concatenate(blocks)

    def _index(self, P: np.ndarray) -> np.ndarray:
        return P @ (self.q ** np.arange(self.n, dtype=np.int64))

    def corrupted_points(self) -> np.ndarray:
        """The exact corrupted set, as points of F_q^n."""
        idx = self.corrupted_
        return np.stack([(idx // self.q**k) % self.q for k in range(self.n)], axis=1)

    def is_corrupted(self, points) -> np.ndarray:
        return np.isin(self._index(_field_points(points, self.q, self.n)), self.corrupted_)

    def __call__(self, points) -> np.ndarray:
        P = _field_points(points, self.q, self.n)
        vals = np.mod(np.asarray(self.f_star(P), dtype=np.int64), self.q)
        bad = self.is_corrupted(P)
        return np.mod(vals + bad * _nonzero_offsets(self.key, P, self.q, self.offset), self.q)


class RealCorruptOracle:
    """f(x) = f*(x) + offset on B(x*, radius) (in ``scale`` units) and on a pseudo-random delta-mass set."""

    def __init__(self, f_star, x_star, radius: float, offset: float, delta: float, key: bytes, *,
                 scale=None, cell: float = 1e-6):
        self.x_star = np.asarray(x_star, dtype=float).ravel()
        self.scale = np.ones_like(self.x_star) if scale is None else np.asarray(scale, dtype=float)
        if self.scale.shape != self.x_star.shape or np.any(self.scale <= 0):
            raise ValueError("scale must be positive, one entry per feature")
        if not (radius >= 0 and math.isfinite(offset) and 0.0 <= delta <= 1.0 and cell > 0):
            raise ValueError("need radius >= 0, finite offset, delta in [0, 1] and cell > 0")
        self.f_star, self.radius, self.offset, self.delta = f_star, float(radius), float(offset), delta
        self.key, self.cell = key, float(cell)

    def in_ball(self, X) -> np.ndarray:
        Z = (np.atleast_2d(np.asarray(X, dtype=float)) - self.x_star) / self.scale
        return np.linalg.norm(Z, axis=1) <= self.radius

    def in_random_set(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        cells = np.floor(X / self.cell)
        if not np.all(np.isfinite(cells)) or np.any(np.abs(cells) >= 2**62):
            raise ValueError("X must be finite and |x / cell| < 2^62")
        return prf_uniform(self.key, cells.astype(np.int64), b"real") < self.delta

    def is_corrupted(self, X) -> np.ndarray:
        return self.in_ball(X) | self.in_random_set(X)

    def __call__(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return np.asarray(self.f_star(X), dtype=float) + self.offset * self.is_corrupted(X)
