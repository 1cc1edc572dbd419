"""Nodes on a line and their interpolation weights at t = 0 (the oblivious mitigator's reconstruction,
defenses/oblivious.py; why choosing nodes by public coins keeps the guarantee: defenses/line_guarantee.py).

- :func:`barycentric_weights_at_zero`: Lagrange weights L_i(0) per line; Lambda = sum_i |L_i(0)| is the line's
  error amplification.
- :func:`best_nodes`: of c drawn nodes, the d + 1 with the smallest Lambda.
- :func:`best_pair_parameters`: the same for d = 1, drawing only what it keeps (same law, a fraction of the
  random numbers).
- :func:`robust_value_at_zero`: m > d + 1 nodes, consensus fit (the robust decoder of the mitigator).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from defenses.correlated_sampling import (
    _int_power,
    check_chords,
    sample_chord_parameters,
)

__all__ = ["barycentric_weights_at_zero", "best_nodes", "best_pair_parameters", "robust_value_at_zero"]


def barycentric_weights_at_zero(t) -> np.ndarray:
    """L_i(0) = prod_{j != i} t_j/(t_j - t_i) per row of t (L, m), via the barycentric form.

    w_i = 1/prod_{j != i}(t_i - t_j);  L_i(0) = (w_i / (0 - t_i)) / sum_j (w_j / (0 - t_j)).  Nodes must
    be distinct and non-zero (the correlated sampler never returns t = 0).
    """
    t = np.atleast_2d(np.asarray(t, dtype=float))
    if t.shape[1] == 2:  # the line through two points: L_1(0) = t_2/(t_2 - t_1), L_2(0) = -t_1/(t_2 - t_1)
        return np.stack([t[:, 1], -t[:, 0]], axis=1) / (t[:, 1] - t[:, 0])[:, None]
    diff = t[:, :, None] - t[:, None, :]
    idx = np.arange(t.shape[1])
    diff[:, idx, idx] = 1.0
    a = 1.0 / (np.prod(diff, axis=2) * (-t))
    return a / a.sum(axis=1, keepdims=True)


def _chord_magnitudes(shape, n: int, rng) -> np.ndarray:
    """U^(1/n) = exp(-E/n) with E ~ Exp(1) (U = exp(-E) ~ U(0, 1]): |t| / end for the |t|^(n-1) law on [0, end]."""
    mag = rng.standard_exponential(shape)
    mag *= -1.0 / n
    return np.exp(mag, out=mag)


def best_pair_parameters(t_lo, t_hi, n: int, c: int, rng) -> np.ndarray:
    """Per line, the best-conditioned pair of c iid draws of :func:`sample_chord_parameters` -> (L, 2),
    without drawing the c - 2 draws that are not kept.

    Best-conditioned: the smallest Lambda = (|t_i| + |t_j|) / |t_i - t_j| (the line's error amplification at
    t = 0).  Any pair of opposite signs has Lambda = 1, the minimum; a pair on one side has Lambda =
    (1 + r) / (1 - r) with r = min/max of the magnitudes, smallest for the smallest and largest draw.  A draw's
    side and magnitude are independent, so: one uniform decides "all c on side +" (prob. p^c), "all on side -"
    ((1-p)^c) or "mixed"; a mixed line keeps one draw from each side (fresh magnitudes: which ones are kept
    does not depend on magnitudes), a one-sided line draws its c magnitudes and keeps the smallest and largest.
    The law of the output is that of drawing all c and keeping the pair with the smallest Lambda.
    Chords not containing 0 (x* outside the body) take the general route.
    """
    rng = np.random.default_rng(rng)
    t_lo, t_hi = check_chords(t_lo, t_hi)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 2:
        raise ValueError(f"need c >= 2 candidates for a pair, got {c!r}")
    out, inside = None, (t_lo <= 0) & (t_hi >= 0)
    if not inside.all():
        out = np.empty((t_lo.size, 2))
        out[~inside] = best_nodes(sample_chord_parameters(t_lo[~inside], t_hi[~inside], n, c, rng), 1)
        t_lo, t_hi = t_lo[inside], t_hi[inside]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # t_lo <= 0 <= t_hi from here on
        p = 1.0 / (1.0 + _int_power(t_lo / -t_hi, int(n)))  # _plus_side_probability, one side each
    if np.isnan(p).any():  # 0/0: a degenerate chord [0, 0]
        p[np.isnan(p)] = 0.5
    V = rng.random(t_lo.size)
    all_plus = V < _int_power(p, c)
    one_side = all_plus | (V >= 1.0 - _int_power(1.0 - p, c))
    pair = _chord_magnitudes((t_lo.size, 2), n, rng)
    pair[:, 0] *= t_lo  # mixed: one draw from each side
    pair[:, 1] *= t_hi
    if one_side.any():
        idx = np.flatnonzero(one_side)
        # smallest and largest of c iid U(0, 1] without drawing c: the largest is M = exp(-E1 / c); given M
        # the other c - 1 are iid U(0, M), their smallest is M (1 - exp(-E2 / (c - 1))); magnitudes = U^(1/n)
        E = rng.standard_exponential((2, idx.size))
        log_max = E[0] * (-1.0 / c)
        log_min = log_max + np.log(-np.expm1(E[1] * (-1.0 / (c - 1))))
        end = np.where(all_plus[idx], t_hi[idx], t_lo[idx])
        pair[idx, 0] = end * np.exp(log_min / n)
        pair[idx, 1] = end * np.exp(log_max / n)
    if out is None:
        return pair
    out[inside] = pair
    return out


def best_nodes(s: np.ndarray, d: int) -> np.ndarray:
    """Per line (.., c nodes), the d + 1 nodes whose Lagrange weights at 0 have the smallest sum |L_i(0)|."""
    c = s.shape[-1]
    flat = s.reshape(-1, c)
    if d == 1:  # pairs: sum |L_i(0)| = (|s_i| + |s_j|) / |s_i - s_j|, all c x c at once
        a = np.abs(flat)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = (a[:, :, None] + a[:, None, :]) / np.abs(flat[:, :, None] - flat[:, None, :])
        lam[:, np.arange(c), np.arange(c)] = np.inf
        best = np.argmin(np.nan_to_num(lam, nan=np.inf).reshape(len(flat), c * c), axis=1)
        pick = np.stack([best // c, best % c], axis=1)
        return np.take_along_axis(flat, pick, axis=1).reshape(*s.shape[:-1], 2)
    subsets = np.array(list(combinations(range(c), d + 1)))
    lam = np.stack([np.abs(barycentric_weights_at_zero(flat[:, sub])).sum(axis=1) for sub in subsets], axis=1)
    pick = subsets[np.argmin(lam, axis=1)]
    return np.take_along_axis(flat, pick, axis=1).reshape(*s.shape[:-1], d + 1)


def robust_value_at_zero(t, y, d: int, inlier_tol, subsets) -> np.ndarray:
    """Consensus fit per line: the (d+1)-subset whose interpolant has the most inliers
    (|residual| <= inlier_tol), then a least-squares refit on its inliers; returns p(0) per line."""
    t, y = np.atleast_2d(t), np.atleast_2d(y)
    scale = np.abs(t).max(axis=1, keepdims=True)
    ts = t / scale  # conditioning: nodes in [-1, 1]
    S = np.asarray(subsets)  # (n_sub, d+1) column indices
    V = ts[:, S][..., None] ** np.arange(d + 1)  # (L, n_sub, d+1, d+1)
    coef = np.linalg.solve(V, y[:, S][..., None])[..., 0]  # (L, n_sub, d+1)
    pred = np.einsum("lsk,lmk->lsm", coef, ts[..., None] ** np.arange(d + 1))
    inliers = np.abs(pred - y[:, None, :]) <= np.asarray(inlier_tol, dtype=float).reshape(-1, 1, 1)
    best = np.argmax(inliers.sum(axis=2), axis=1)
    out = np.empty(t.shape[0])
    for ell in range(t.shape[0]):
        mask = inliers[ell, best[ell]]
        A = ts[ell, mask, None] ** np.arange(d + 1)
        out[ell] = np.linalg.lstsq(A, y[ell, mask], rcond=None)[0][0]
    return out
