"""Two-point lines through many targets, for a box body, drawn in one feature-major batch: the fast path of
:meth:`defenses.oblivious.LocalPolynomialMitigator.predict_with_bounds` for a :class:`Box` body, degree 1.

Same law as the general route -- :func:`defenses.correlated_sampling.correlated_lines_batch` followed by
:func:`defenses.line_nodes.best_pair_parameters` (the best-conditioned pair of c iid chord draws; c = 2 is
simply two iid draws, as an unordered pair) -- only computed with fewer passes over memory
(tests/test_box_lines.py checks the law against the general route):

1. Line (k, q): y = lo + w * R with R ~ U[0, 1)^n (w = hi - lo), so y ~ Unif(box); D = y - x*_q.
2. Chord in the parameter s of x* + s D.  For x* inside (lo < x* < hi, so g_lo = lo - x* < 0 < g_hi = hi - x*)
   the slab of feature j is g_lo_j <= s D_j <= g_hi_j; the positive end is 1/max(D_j/g_hi_j, D_j/g_lo_j) and the
   negative end 1/min(D_j/g_hi_j, D_j/g_lo_j) (D_j = 0: both quotients 0, no constraint), so
       r_hi = 1/s_hi = max_j max(D_j/g_hi_j, D_j/g_lo_j) > 0,   r_lo = 1/s_lo = min_j min(D_j/g_hi_j, D_j/g_lo_j) < 0
   (s = 1 is y itself, inside: s_hi >= 1).  Two products and four running extrema per feature, no division.
3. Nodes: c iid draws from rho(s) ∝ |s|^(n-1) on [s_lo, s_hi] and the pair with the smallest Lambda
   (line_nodes.best_pair_parameters, the same argument): side + with probability p = 1/(1 + (|s_lo|/s_hi)^n)
   = 1/(1 + (r_hi/|r_lo|)^n); all c on side + with probability p^c, all on side - with (1-p)^c; a mixed line
   keeps one draw from each side, |s| = end * U^(1/n) with U = exp(-E), E ~ Exp(1); a one-sided line keeps
   the smallest and largest of its c magnitudes: log U_max = -E_0/c, log U_min = log U_max + log(1 - exp(-E_1/(c-1))).
   Both cases use the same two exponentials E_0, E_1 per line (independent of the side draw V).
4. Points z = x* + s D, laid out (n, 2, K, Q): the model gets them as a (2 K Q, n) array in Fortran order
   (column j is feature j, contiguous); row (i, k, q) is point i of line k of target q.

Targets outside the box (one-sided chords: :func:`_outside_chords`, :func:`_one_sided_pair`) are drawn in the
same batch; a target with a coordinate exactly on a face takes the general route.
"""

from __future__ import annotations

import numpy as np

from defenses.correlated_sampling import Box, _int_power

__all__ = ["Workspace", "box_pairs", "keep_freed_memory", "off_boundary", "pair_estimates"]


def off_boundary(body: Box, X) -> np.ndarray:
    """Rows with no coordinate exactly on a face (x_j != lo_j, hi_j): the batched route's precondition."""
    XT = np.asarray(X, dtype=float).T
    return ((XT != body.lo[:, None]) & (XT != body.hi[:, None])).all(axis=0)


class Workspace:
    """Arrays reused from chunk to chunk (one per name, grown when a chunk needs more): the route's memory stays
    put instead of being paged in afresh for every chunk.  Never holds what the model receives."""

    def __init__(self):
        self._flat = {}

    def get(self, name: str, shape) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._flat.get(name)
        if buf is None or buf.size < size:
            buf = self._flat[name] = np.empty(size)
        return buf[:size].reshape(shape)


def keep_freed_memory(block_bytes: int = 24 << 20) -> None:
    """Free one untouched block of ``block_bytes`` (<= 32 MiB): glibc's malloc then serves blocks below that
    size from its heap and keeps up to twice as much freed memory instead of handing it back to the OS
    (dynamic M_MMAP_THRESHOLD / M_TRIM_THRESHOLD; both start at 128 KiB).  Without it, every chunk's arrays of a
    few MB -- ours and the model's own temporaries -- are fresh pages again (measured with the CLI's model,
    d = 10, K = 15: ~36 000 page faults and 10.5 us per mitigated row, against ~0 and 7.4 us).  Costs two system
    calls and touches no page; with another allocator, a no-op."""
    block = np.empty(block_bytes, dtype=np.uint8)
    del block


def _chord_reciprocals(body: Box, XT, n_lines: int, rng, work: Workspace):
    """-> (D (n, K, Q), r_lo (K, Q), r_hi (K, Q)): directions y - x* and the reciprocal chord ends (steps 1, 2),
    one feature at a time (arrays of K Q values stay in cache)."""
    n, Q = XT.shape
    g_lo = body.lo[:, None] - XT  # (n, Q), < 0
    over_hi, over_lo = 1.0 / (body.hi[:, None] - XT), 1.0 / g_lo
    width = body.hi - body.lo
    D = work.get("D", (n, n_lines, Q))
    r_hi, r_lo = np.zeros((n_lines, Q)), np.zeros((n_lines, Q))
    a, b = work.get("a", (n_lines, Q)), work.get("b", (n_lines, Q))
    for j in range(n):
        Dj = rng.random((n_lines, Q), out=D[j])
        Dj *= width[j]
        Dj += g_lo[j]  # y_j - x*_j, y_j = lo_j + width_j U
        np.multiply(Dj, over_hi[j], out=a)
        np.multiply(Dj, over_lo[j], out=b)
        np.maximum(r_hi, a, out=r_hi)
        np.maximum(r_hi, b, out=r_hi)
        np.minimum(r_lo, a, out=r_lo)
        np.minimum(r_lo, b, out=r_lo)
    return D, r_lo, r_hi


def _outside_chords(body: Box, XT, D, outside):
    """(r_hi, 1/s_lo), each (K, Q_out), for the targets ``outside`` the box (step 2 for one-sided chords):
    a feature with x*_j outside its slab has D_j of one sign (y_j is inside) and both ends of its s-interval
    positive, [1/max(P, M), 1/min(P, M)] with P = D_j/g_hi_j, M = D_j/g_lo_j; a feature inside gives
    [1/min(P, M), 1/max(P, M)] as in step 2.  So r_hi = max_j (inside_j ? max : min) and
    1/s_lo = min over the outside features of max(P, M) > 0."""
    x = XT[:, outside][:, None, :]
    g_lo, g_hi = body.lo[:, None, None] - x, body.hi[:, None, None] - x
    Do = D[:, :, outside]
    P, M = Do / g_hi, Do / g_lo
    hi, lo = np.maximum(P, M), np.minimum(P, M)
    in_slab = (g_lo < 0) & (g_hi > 0)
    return np.where(in_slab, hi, lo).max(axis=0), np.where(in_slab, np.inf, hi).min(axis=0)


def _one_sided_pair(r_hi, r_lo, n: int, c: int, rng) -> np.ndarray:
    """(2, K, Q_out): the smallest and largest of c iid draws from rho(s) ∝ s^(n-1) on [s_lo, s_hi], 0 < s_lo:
    s^n is uniform on [s_lo^n, s_hi^n], so s = s_hi (rho + U (1 - rho))^(1/n) with rho = (s_lo/s_hi)^n and U the
    smallest / largest of c uniforms (step 3; the best-conditioned pair of a one-sided line)."""
    E = rng.standard_exponential((2,) + r_hi.shape)
    log_max = E[0] * (-1.0 / c)
    log_u = np.stack([log_max + np.log(-np.expm1(E[1] * (-1.0 / (c - 1)))), log_max])
    rho = _int_power(r_hi / r_lo, n)  # (s_lo / s_hi)^n in [0, 1)
    return np.exp(np.log(rho + np.exp(log_u) * (1.0 - rho)) / n) / r_hi


def _best_pair(r_lo, r_hi, n: int, c: int, rng) -> np.ndarray:
    """(2, K, Q) node parameters s, the best-conditioned pair of c iid chord draws per line (step 3).

    Computed for one-sided lines everywhere (in R^n with x* inside, almost every line: the side a draw falls
    on has probability ~ (s_hi / |s_lo|)^n), then overwritten on the few mixed lines."""
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + _int_power(r_hi / -r_lo, n))  # Pr[side +]; overflow -> inf -> p = 0, correct
    V = rng.random(p.shape)
    all_plus = V < _int_power(p, c)
    all_minus = V >= 1.0 - _int_power(1.0 - p, c)
    E = rng.standard_exponential((2,) + p.shape)
    g = np.empty_like(E)  # log of the magnitude^n, U = |s / end|^n
    np.multiply(E[0], -1.0 / c, out=g[1])  # one-sided: log U_max
    np.multiply(E[1], -1.0 / (c - 1), out=g[0])
    np.expm1(g[0], out=g[0])
    np.negative(g[0], out=g[0])
    np.log(g[0], out=g[0])
    g[0] += g[1]  # log U_min = log U_max + log(1 - exp(-E_1/(c-1)))
    mixed = np.flatnonzero(~(all_plus | all_minus))
    if mixed.size:  # one fresh draw on each side: log U = -E
        flat_g, flat_E = g.reshape(2, -1), E.reshape(2, -1)
        flat_g[:, mixed] = -flat_E[:, mixed]
    g *= 1.0 / n
    np.exp(g, out=g)  # |s| / end = U^(1/n)
    g[0] /= np.where(all_plus, r_hi, r_lo)  # end = 1/r: s_hi on an all-plus line, else s_lo
    g[1] /= np.where(all_minus, r_lo, r_hi)  # s_lo on an all-minus line, else s_hi
    return g


def box_pairs(body: Box, X, n_lines: int, c: int, rng, work: Workspace | None = None):
    """K two-point lines through each row of X (Q, n), no coordinate on a face of ``body`` (:func:`off_boundary`).

    -> (Z (n, 2, K, Q) query points, s (2, K, Q) their parameters on the lines); c >= 2 candidates per
    line of which the best-conditioned pair is kept (c = 2: two iid draws).  Z is a new array (the model may
    keep what it is given); ``work`` carries the other arrays from one call to the next."""
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 2:
        raise ValueError(f"need c >= 2 candidates for a pair, got {c!r}")
    XT = np.ascontiguousarray(np.asarray(X, dtype=float).T)
    D, r_lo, r_hi = _chord_reciprocals(body, XT, n_lines, rng, work or Workspace())
    outside = np.flatnonzero(((XT <= body.lo[:, None]) | (XT >= body.hi[:, None])).any(axis=0))
    if outside.size:
        hi_out, lo_out = _outside_chords(body, XT, D, outside)
        r_lo[:, outside], r_hi[:, outside] = -1.0, 1.0  # placeholders, their nodes are redrawn below
    if not ((r_hi > 0).all() and (r_lo < 0).all()) or (outside.size and not (hi_out > 0).all()):
        raise ValueError("a sample coincided with a target; redraw with another random_state")  # D = 0: prob. 0
    s = _best_pair(r_lo, r_hi, XT.shape[0], int(c), rng)
    if outside.size:
        s[:, :, outside] = _one_sided_pair(hi_out, lo_out, XT.shape[0], int(c), rng)
    Z = np.empty((XT.shape[0],) + s.shape)
    for j in range(XT.shape[0]):  # z = x* + s D, one feature at a time
        np.multiply(s, D[j], out=Z[j])
        Z[j] += XT[j, None, None, :]
    return Z, s


def pair_estimates(t0, t1, y0, y1) -> tuple[np.ndarray, np.ndarray]:
    """The line through (t0, y0), (t1, y1) at t = 0 and its amplification Lambda = |L_0(0)| + |L_1(0)|:
    L_0(0) = t1/(t1 - t0), L_1(0) = -t0/(t1 - t0)."""
    gap = t1 - t0
    est = t1 * y0
    est -= t0 * y1
    est /= gap
    lam = np.abs(t0) + np.abs(t1)
    lam /= np.abs(gap)
    return est, lam
