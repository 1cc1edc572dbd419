"""Convex bodies and the correlated sampling lemma (GSVV'25 local mitigation over R^n; proof below).

Lemma (correlated sampling).  D = Unif(C), x* in R^n.  Draw y ~ D, u = (y - x*)/||y - x*||, line l = {x* + t u}.
Given l, the signed coordinate of a D-point on l has density rho_l(t) ∝ |t|^(n-1) on the chord
[t_lo, t_hi] = {t : x* + t u in C}.  Points z_i = x* + t_i u with t_i iid ~ rho_l are (1) each
marginally ~ D, (2) collinear with x*, (3) iid given l.

Side masses A+ = t_hi^n, A- = |t_lo|^n enter as 1/(1 + (|t_lo|/t_hi)^n) (overflow-safe at n = 10^4); the inverse
CDF of |t|^(n-1) on [0, b] is b U^(1/n) = b exp(log U / n).  If x* is outside C the chord lies on one
side, 0 < a < b, and t = b (r^n + U (1 - r^n))^(1/n) with r = a/b (computed with logaddexp).

Bodies: :class:`Ball` and :class:`Box` sample exactly; :class:`OracleBody` (membership oracle +
bounding radius) finds chord endpoints by bisection and samples by hit-and-run, which is only
approximately uniform: its output is TV-close to Unif(C) (the TV distance is not computed here and
must be added to the model error delta by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Ball",
    "Box",
    "ConvexBody",
    "CorrelatedSample",
    "OracleBody",
    "correlated_lines_batch",
    "correlated_points",
    "correlated_points_batch",
    "line_points",
    "naive_chord_points",
    "sample_chord_parameters",
]


def _as_point(x, dim: int, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def _as_points(x, dim: int, name: str) -> np.ndarray:
    """One point (dim,) or one point per line (L, dim), finite."""
    x = np.asarray(x, dtype=float)
    if x.shape[-1:] != (dim,) or x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape ({dim},) or (L, {dim}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def _unit_rows(U) -> np.ndarray:
    U = np.atleast_2d(np.asarray(U, dtype=float))
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("directions must be non-zero")
    return U / norms


class ConvexBody:
    """Interface: ``dim``, ``contains(X)``, ``chord(x, U)`` -> (t_lo, t_hi), ``sample(k, rng)``."""

    dim: int

    def contains(self, X) -> np.ndarray:
        raise NotImplementedError

    def chord(self, x, U, t_inside=None) -> tuple[np.ndarray, np.ndarray]:
        """Endpoints t_lo <= t_hi of {t : x + t u in C} per unit row u of U (NaN if the line misses C).
        ``x`` is one point (n,) shared by every line or one point per line (L, n).

        ``t_inside`` (optional, one per row) is a t known to lie in C; oracle bodies need it when x is
        outside C.
        """
        raise NotImplementedError

    def sample(self, k: int, rng) -> np.ndarray:
        raise NotImplementedError


class Ball(ConvexBody):
    """Euclidean ball B(center, radius)."""

    def __init__(self, center, radius: float):
        self.center = np.asarray(center, dtype=float)
        if self.center.ndim != 1 or self.center.size == 0:
            raise ValueError("center must be a non-empty 1-D array")
        if not np.isfinite(radius) or radius <= 0:
            raise ValueError(f"radius must be positive and finite, got {radius!r}")
        self.radius = float(radius)
        self.dim = self.center.size

    def contains(self, X) -> np.ndarray:
        X = np.atleast_2d(X)
        return np.linalg.norm(X - self.center, axis=1) <= self.radius

    def chord(self, x, U, t_inside=None):
        return self._chord(_as_points(x, self.dim, "x"), _unit_rows(U))

    def _chord(self, x, U):
        # |w + t u|^2 = R^2 with w = x - c:  t = (-beta ± sqrt(beta^2 - |u|^2 (|w|^2 - R^2))) / |u|^2,
        # beta = <u, w>; any direction scale; broadcasts x (.., n) against U (.., L, n)
        w = x - self.center
        beta = (U * w).sum(axis=-1)
        uu = np.einsum("...j,...j->...", U, U)
        disc = beta**2 - uu * ((w * w).sum(axis=-1) - self.radius**2)
        root = np.sqrt(np.where(disc >= 0, disc, np.nan))
        return (-beta - root) / uu, (-beta + root) / uu

    def sample(self, k: int, rng) -> np.ndarray:
        rng = np.random.default_rng(rng)
        g = _unit_rows(rng.standard_normal((k, self.dim)))
        r = self.radius * np.exp(np.log1p(-rng.random(k)) / self.dim)  # R U^(1/n), U in (0, 1]
        return self.center + r[:, None] * g


class Box(ConvexBody):
    """Axis-aligned box prod_j [lo_j, hi_j]; ``lo``/``hi`` scalars need ``dim``."""

    def __init__(self, lo, hi, dim: int | None = None):
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if dim is not None:
            lo, hi = np.broadcast_to(lo, (dim,)).copy(), np.broadcast_to(hi, (dim,)).copy()
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
            raise ValueError("lo and hi must be 1-D arrays of equal length (or scalars with dim)")
        if not np.all(np.isfinite(lo) & np.isfinite(hi) & (lo < hi)):
            raise ValueError("need finite lo < hi in every coordinate")
        self.lo, self.hi, self.dim = lo, hi, lo.size

    def contains(self, X) -> np.ndarray:
        X = np.atleast_2d(X)
        return np.all((X >= self.lo) & (X <= self.hi), axis=1)

    def chord(self, x, U, t_inside=None):
        return self._chord(_as_points(x, self.dim, "x"), _unit_rows(U))

    def _chord(self, x, U):
        # slab j: t between a_j = (lo_j - x_j)/u_j and b_j = (hi_j - x_j)/u_j  (u_j = 0: all t or none).
        # Works for any direction scale (t scales by 1/|u|) and broadcasts x (.., n) against U (.., L, n).
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / U
            a = (self.lo - x) * inv
            b = (self.hi - x) * inv
        t_lo, t_hi = np.minimum(a, b).max(axis=-1), np.maximum(a, b).min(axis=-1)
        # u_j = 0 gives -inf/+inf (x_j inside the slab) or +inf/+inf (outside: a miss) by IEEE rules, except
        # 0 * inf = NaN when x_j lies on the slab's boundary: redo those with the exact rule (rare).
        if np.isnan(t_lo).any() or np.isnan(t_hi).any():
            flat = U == 0
            inside_slab = np.broadcast_to((x >= self.lo) & (x <= self.hi), U.shape)
            t_lo = np.where(flat, np.where(inside_slab, -np.inf, np.inf), np.minimum(a, b)).max(axis=-1)
            t_hi = np.where(flat, np.where(inside_slab, np.inf, -np.inf), np.maximum(a, b)).min(axis=-1)
        miss = t_lo > t_hi
        if miss.any():
            t_lo, t_hi = np.where(miss, np.nan, t_lo), np.where(miss, np.nan, t_hi)
        return t_lo, t_hi

    def sample(self, k: int, rng) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return self.lo + (self.hi - self.lo) * rng.random((k, self.dim))


class OracleBody(ConvexBody):
    """Convex body given by a vectorized membership oracle ``contains(X: (k, n)) -> bool[k]``.

    ``interior_point`` must be in C and C within distance ``bounding_radius`` of it.  Chords by
    bisection to absolute tolerance ``tol``; sampling by hit-and-run (``n_steps`` steps per chain,
    one chain per sample started at ``interior_point``): only TV-approximately uniform.
    """

    def __init__(self, contains, interior_point, bounding_radius: float, tol: float = 1e-10,
                 n_steps: int | None = None):
        if not callable(contains):
            raise TypeError("contains must be callable: (k, n) array -> k booleans")
        self._contains = contains
        self.interior_point = np.asarray(interior_point, dtype=float)
        self.dim = self.interior_point.size
        if not np.isfinite(bounding_radius) or bounding_radius <= 0:
            raise ValueError("bounding_radius must be positive and finite")
        self.bounding_radius, self.tol = float(bounding_radius), float(tol)
        self.n_steps = n_steps
        if not self.contains(self.interior_point[None])[0]:
            raise ValueError("interior_point is not inside the body")

    def contains(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        out = np.asarray(self._contains(X), dtype=bool)
        if out.shape != (X.shape[0],):
            raise ValueError(f"membership oracle returned shape {out.shape} for {X.shape[0]} points")
        return out

    def _bisect(self, x, U, t_in, t_out):
        for _ in range(int(np.ceil(np.log2(np.max(np.abs(t_out - t_in)) / self.tol))) + 1):
            mid = 0.5 * (t_in + t_out)
            inside = self.contains(x + mid[:, None] * U)
            t_in, t_out = np.where(inside, mid, t_in), np.where(inside, t_out, mid)
        return t_in

    def chord(self, x, U, t_inside=None):
        x = np.atleast_2d(np.asarray(x, dtype=float))
        U = _unit_rows(U)
        if t_inside is None:
            t_inside = np.zeros(U.shape[0])
            if not np.all(self.contains(x)):
                raise ValueError("x is outside the body: pass t_inside (a t with x + t u in C)")
        t_in = np.asarray(t_inside, dtype=float)
        # every point of C is within 2R of x + t_in u, so t_in ± (2R + margin) is outside
        reach = 2.0 * self.bounding_radius * (1 + 1e-9) + self.tol
        t_hi = self._bisect(x, U, t_in.copy(), t_in + reach)
        t_lo = self._bisect(x, U, t_in.copy(), t_in - reach)
        return t_lo, t_hi

    def sample(self, k: int, rng) -> np.ndarray:
        rng = np.random.default_rng(rng)
        steps = self.n_steps if self.n_steps is not None else max(50, 10 * self.dim)
        X = np.repeat(self.interior_point[None], k, axis=0)
        for _ in range(steps):
            U = _unit_rows(rng.standard_normal((k, self.dim)))
            t_lo, t_hi = self.chord(X, U)
            X = X + (t_lo + (t_hi - t_lo) * rng.random(k))[:, None] * U
        return X


@dataclass(frozen=True)
class CorrelatedSample:
    """points (L, k, n) = x* + t[..., None] * directions[:, None, :]; t (L, k); chords (L, 2)."""

    points: np.ndarray
    t: np.ndarray
    directions: np.ndarray
    chords: np.ndarray


def sample_chord_parameters(t_lo, t_hi, n: int, k: int, rng) -> np.ndarray:
    """k iid draws per line from rho(t) ∝ |t|^(n-1) on [t_lo, t_hi] (arrays of L lines) -> (L, k).

    Handles 0 inside the chord (two sides; the side ratio (|t_lo|/t_hi)^n may overflow to inf, which gives
    the right probability 0) and chords strictly on one side of 0 (log space).
    """
    rng = np.random.default_rng(rng)
    t_lo, t_hi = np.atleast_1d(np.asarray(t_lo, float)), np.atleast_1d(np.asarray(t_hi, float))
    if np.any(~np.isfinite(t_lo) | ~np.isfinite(t_hi) | (t_lo > t_hi)):
        raise ValueError("chords must be finite with t_lo <= t_hi (did the line miss the body?)")
    L = t_lo.size
    U1 = rng.random((L, k))
    np.subtract(1.0, U1, out=U1)  # (0, 1]: never t = 0
    U2 = rng.random((L, k))
    lo, hi = t_lo[:, None], t_hi[:, None]
    # two-sided case: side + w.p. A+/(A+ + A-) = 1 / (1 + (|t_lo| / t_hi)^n)  (overflow -> inf -> 0: fine)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        p_plus = 1.0 / (1.0 + (np.maximum(-lo, 0.0) / np.maximum(hi, 0.0)) ** n)
    p_plus = np.where(np.isnan(p_plus), 0.5, p_plus)  # 0/0: a degenerate chord [0, 0]
    mag = np.log(U1)  # |t| = end * U^(1/n), computed in place
    mag /= n
    np.exp(mag, out=mag)
    two_sided = np.where(U2 < p_plus, hi, lo)
    two_sided *= mag
    contains0 = (lo <= 0) & (hi >= 0)
    if contains0.all():  # x* inside the body (every mitigated query of a fitted body): no one-sided chord
        return two_sided
    # one-sided case, chord [a, b] with 0 < a < b (mirror when b < 0): t = b (r^n + U (1 - r^n))^(1/n)
    a, b = np.where(hi < 0, -hi, lo), np.where(hi < 0, -lo, hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_log_r = n * (np.log(np.maximum(a, 0.0)) - np.log(b))
        log_inner = np.logaddexp(n_log_r, np.log(U1) + np.log(-np.expm1(np.minimum(n_log_r, -1e-300))))
        one = np.clip(b * np.exp(log_inner / n), a, b)
    one = np.where(hi < 0, -one, one)
    return np.where(contains0, two_sided, one)


def _lines_through(body: ConvexBody, x_star, n_lines: int, rng):
    x = _as_point(x_star, body.dim, "x_star")
    if isinstance(n_lines, bool) or not isinstance(n_lines, (int, np.integer)) or n_lines < 1:
        raise ValueError(f"n_lines must be a positive int, got {n_lines!r}")
    y = body.sample(n_lines, rng)
    diff = y - x
    dist = np.linalg.norm(diff, axis=1)
    if np.any(dist == 0):  # probability zero for a continuous D; refuse rather than bias
        raise ValueError("a sample coincided with x_star; redraw with another random_state")
    U = diff / dist[:, None]
    t_lo, t_hi = body.chord(x, U, t_inside=dist)
    return x, U, np.asarray(t_lo, float), np.asarray(t_hi, float)


def correlated_points(body: ConvexBody, x_star, k: int, n_lines: int = 1, random_state=None) -> CorrelatedSample:
    """Correlated sampling lemma: ``n_lines`` random lines through x*, ``k`` points each; every point ~ Unif(body).

    Line: direction towards y ~ Unif(body).  Points: t_i iid ~ |t|^(n-1) on the chord.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rng = np.random.default_rng(random_state)
    x, U, t_lo, t_hi = _lines_through(body, x_star, n_lines, rng)
    t = sample_chord_parameters(t_lo, t_hi, body.dim, k, rng)
    return CorrelatedSample(x + t[:, :, None] * U[:, None, :], t, U, np.stack([t_lo, t_hi], axis=1))


def naive_chord_points(body: ConvexBody, x_star, k: int, n_lines: int = 1, random_state=None) -> CorrelatedSample:
    """NEGATIVE CONTROL (wrong): same lines as :func:`correlated_points` but t uniform on the chord.

    Points are collinear with x* yet NOT distributed like Unif(body) (they over-weight the region
    near x*); used to show the marginal KS tests have power.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rng = np.random.default_rng(random_state)
    x, U, t_lo, t_hi = _lines_through(body, x_star, n_lines, rng)
    t = t_lo[:, None] + (t_hi - t_lo)[:, None] * rng.random((t_lo.size, k))
    return CorrelatedSample(x + t[:, :, None] * U[:, None, :], t, U, np.stack([t_lo, t_hi], axis=1))


def correlated_lines_batch(body: ConvexBody, X_star, k: int, n_lines: int, rng):
    """Lines for many targets at once: -> (D (Q, K, n), s (Q, K, k)); the points are x*_q + s[q, l, i] D[q, l].

    Same lemma per line: y ~ D, u = (y - x*)/||y - x*||, t_i iid ~ |t|^(n-1) on the chord; the Q * K lines
    are drawn in one batch.  Exact bodies (Box, Ball) work with the unnormalised direction D = y - x*: the chord
    parameter s = t / ||y - x*|| has the same |s|^(n-1) law on the rescaled chord, so unit vectors are never
    formed.  Interpolation weights at 0 depend only on ratios of the nodes, so s serves as well as t.
    """
    X = np.asarray(X_star, dtype=float)
    if X.ndim != 2 or X.shape[1] != body.dim:
        raise ValueError(f"X_star must have shape (Q, {body.dim}), got {X.shape}")
    Q, n = X.shape
    D = body.sample(Q * n_lines, rng).reshape(Q, n_lines, n)
    D -= X[:, None, :]  # line (q, l) belongs to target q
    dist = np.sqrt(np.einsum("qlj,qlj->ql", D, D))
    if np.any(dist == 0):  # probability zero for a continuous D; refuse rather than bias
        raise ValueError("a sample coincided with a target; redraw with another random_state")
    if hasattr(body, "_chord"):
        s_lo, s_hi = body._chord(X[:, None, :], D)
        s = sample_chord_parameters(s_lo.ravel(), s_hi.ravel(), n, k, rng).reshape(Q, n_lines, k)
    else:
        U = (D / dist[..., None]).reshape(Q * n_lines, n)
        t_lo, t_hi = body.chord(np.repeat(X, n_lines, axis=0), U, t_inside=dist.ravel())
        s = sample_chord_parameters(t_lo, t_hi, n, k, rng).reshape(Q, n_lines, k) / dist[..., None]
    return D, s


def line_points(X_star, D, s) -> np.ndarray:
    """x*_q + s[q, l, i] D[q, l] -> (Q, K, k, n)."""
    points = s[..., None] * D[:, :, None, :]
    points += np.asarray(X_star, dtype=float)[:, None, None, :]
    return points


def correlated_points_batch(body: ConvexBody, X_star, k: int, n_lines: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """:func:`correlated_points` for many targets at once: -> (points (Q, K, k, n), t (Q, K, k))."""
    D, s = correlated_lines_batch(body, X_star, k, n_lines, rng)
    return line_points(X_star, D, s), s * np.sqrt(np.einsum("qlj,qlj->ql", D, D))[..., None]
