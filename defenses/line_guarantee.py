"""What the median of K line estimates guarantees, from an error-rate bound and the lines' own coefficients.

Setting (GSVV'25 local mitigation over R^n, reconstruction in the module docstring of defenses/oblivious.py):
each of K lines through x* carries m query points z_i, each marginally ~ D.  A query is *good* when
|f(z_i) - g(z_i)| <= eps for the degree-d function g (the ground truth); Pr_D[not good] <= delta.

Per-line failure.  Interpolation (m = d + 1): the line is bad if any of its m queries is, so
p_line <= m delta (union bound; lines are iid, so the number of bad lines is <= Bin(K, p_line)).
Robust fit (m > d + 1, consensus decoding of up to (m - d - 1)/2 wrong values): Markov on the number of bad
points, p_line <= 2 delta m / (m - d) (Reed-Solomon radius on a line; cf. GLRSW'91 and the line decoder in
defenses/reed_muller.py).

Choosing the nodes by public coins (``candidates`` c > d + 1, interpolation only): draw c nodes on the line,
interpolate through the (d+1)-subset with the smallest Lambda (a function of the nodes, i.e. of public coins)
and query only those d + 1 points.  A chosen point is one of c points each ~ D, so the line is bad w.p.
<= c delta (union bound over the candidates); the amplification drops (8-D box, 15 lines: the bound's
Lambda from ~35 with c = 2 to ~12 with c = 4 and ~9 with c = 6) at the price of a c/(d+1) times lower
tolerated error rate.

Amplification.  A good interpolating line has |est - g(x*)| <= Lambda eps with Lambda = sum_i |L_i(0)|
(Lagrange weights at t = 0).  Lambda is a function of the line's nodes t only -- public coins, known before
any query -- so it is computed per line.

Median (K odd or even, numpy's median).  Let k = floor(K/2) + 1.  If at least k of the K estimates lie in an
interval I, the median lies in I.  Sort the K lines by Lambda; with at most b bad lines, at least k good lines
are among the k + b smallest Lambda, so

    |median - g(x*)| <= eps * Lambda_(k+b)        unless more than b lines are bad:
    Pr[failure] <= Pr[Bin(K, p_line) > b]          (b = the "slack", chosen once in fit, b <= K - k).

Mean of medians over groups: each group median obeys the bound with its own k_j, and the mean is within the
largest of them; failure <= sum_j Pr[Bin(K_j, p_line) > b].  The guarantee is *vacuous* (the mitigator
refuses) when even b = K - k leaves a failure probability above the target: near delta = 1/4 with m = 2
points, p_line -> 1/2 and the median of K lines fails with probability ~1/2 whatever K is.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

__all__ = ["amplification_bound", "choose_slack", "failure_probability", "line_failure_rate", "median_of_lines",
           "tolerated_rate"]


def _per_delta(m: int, d: int, candidates: int | None = None) -> float:
    if candidates is not None:
        return float(candidates)
    return float(m) if m == d + 1 else 2.0 * m / (m - d)


def line_failure_rate(delta: float, m: int, d: int, candidates: int | None = None) -> float:
    """p_line from the per-query error rate delta (module docstring)."""
    return float(min(1.0, _per_delta(m, d, candidates) * delta))


def _needed(group_sizes) -> list[int]:
    return [g // 2 + 1 for g in group_sizes]


def failure_probability(group_sizes, p_line: float, slack: int) -> float:
    """Pr[some group has more than ``slack`` bad lines] <= sum_j Pr[Bin(K_j, p_line) > slack]."""
    return float(min(1.0, sum(stats.binom.sf(slack, g, p_line) for g in group_sizes)))


def choose_slack(group_sizes, p_line: float, max_failure: float) -> int | None:
    """The smallest b with failure_probability <= max_failure, or None if no admissible b achieves it."""
    b_max = min(g - k for g, k in zip(group_sizes, _needed(group_sizes)))
    for b in range(b_max + 1):
        if failure_probability(group_sizes, p_line, b) <= max_failure:
            return b
    return None


def tolerated_rate(group_sizes, m: int, d: int, max_failure: float, candidates: int | None = None) -> float:
    """The largest per-query error rate delta for which some slack b meets ``max_failure``."""
    b_max = min(g - k for g, k in zip(group_sizes, _needed(group_sizes)))
    per_delta = _per_delta(m, d, candidates)  # p_line = per_delta * delta, capped at 1

    def excess(delta):
        return failure_probability(group_sizes, min(1.0, per_delta * delta), b_max) - max_failure

    if excess(0.0) > 0:
        return 0.0
    hi = 1.0 / per_delta
    if excess(hi) <= 0:
        return float(hi)
    return float(optimize.brentq(excess, 0.0, hi, xtol=1e-10))


def median_of_lines(est: np.ndarray) -> np.ndarray:
    """numpy's median over the lines (axis 0 of (K, Q)), with a NaN estimate counted as +inf: a line whose
    model answers are NaN is a bad line like any other, and the argument above (>= k estimates in I puts
    the median in I) holds on the extended reals, whereas a NaN would poison the median of every target one
    bad line touches.  ``est`` is modified in place."""
    est[np.isnan(est)] = np.inf
    K = est.shape[0]
    if K % 2:
        return np.partition(est, K // 2, axis=0)[K // 2]
    part = np.partition(est, [K // 2 - 1, K // 2], axis=0)
    return 0.5 * (part[K // 2 - 1] + part[K // 2])


def amplification_bound(lam: np.ndarray, group_sizes, slack: int) -> np.ndarray:
    """Per target: max over groups of the (k_j + b)-th smallest Lambda in the group. lam: (K, Q) -> (Q,)."""
    lam = np.asarray(lam, dtype=float)
    out = np.zeros(lam.shape[1])
    start = 0
    for g, k in zip(group_sizes, _needed(group_sizes)):
        np.maximum(out, np.partition(lam[start:start + g], k + slack - 1, axis=0)[k + slack - 1], out=out)
        start += g
    return out
