"""Does the clean data vouch for the sampling body?  Fit D = Unif(body) to clean rows, then test it.

The oblivious mitigator (defenses/oblivious.py) queries the model only at points distributed like
D = Unif(body) (correlated sampling lemma, GSVV'25 local mitigation; see defenses/correlated_sampling.py),
and accepts the model from its error rate on the clean labelled rows.  That error rate speaks for the
points it queries only if the clean rows are themselves a sample of D.  A model that is exact on the data
and wrong on the rest of the body (an empty slab between the two values of a binary feature, say) would
otherwise pass the accuracy check while every line the mitigator draws runs through the wrong region.

:func:`fit_body` fits the body to the rows (box: the uniform distribution's unbiased endpoint estimates
lo = min - range/(N-1), hi = max + range/(N-1); ball: the smallest ball containing the rows, its radius scaled by
((N+1)/N)^(1/n), as for the maximum of N draws of (r/R)^n ~ U(0, 1)).

:func:`coverage_test` tests H0: "the N clean rows are iid ~ Unif(body)" through the coordinates whose law
under H0 is known exactly -- the same statistics that check the correlated sampler
(tests/test_correlated_sampling.py):

    box:  u_ij = (x_ij - lo_j) / (hi_j - lo_j) ~ U(0, 1)                            for each feature j
    ball: (||x - c|| / R)^n ~ U(0, 1)  and  (x_j - c_j + R) / (2R) ~ Beta((n+1)/2, (n+1)/2)  for each j

one-sample Kolmogorov-Smirnov tests, plus one joint statistic, since one-dimensional projections cannot see
how the rows sit together (rows on a curve through the box can have exactly uniform marginals):

    nearest neighbours: split the rows at random into halves R and P, draw fresh points F ~ Unif(body);
    under H0 a row of P and a point of F are iid given R, so their distances to the nearest row of R have
    the same law: two-sample KS of {d(p, R)} against {d(f, R)}.  Rows concentrated on a thin set (a curve,
    clusters, a gap) leave most of the body far from every row: d(f, R) >> d(p, R).

Bonferroni over the T statistics: refuse when some p-value is below alpha / T.  Failure probability: under H0 the test refuses with probability <= alpha (conservative when the
body was fitted to the same rows: fitting pulls the rows towards the body's law).  Power: a statistic whose
empirical CDF is farther than the KS critical value (about sqrt(ln(2T/alpha) / (2N))) from its H0 law is
refused with high probability -- a binary or discrete feature, a gap in the data, bell-shaped instead of flat
marginals, rows on a lower-dimensional set.  Passing does not prove H0: a region of the body the rows
avoid, of D-mass below the tests' resolution (about the KS critical value, ~1.6 sqrt(1/|P| + 1/|F|) for the
nearest-neighbour test), can escape them; a model wrong only there is accepted, and the true error rate under
D is then up to that mass above the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree

from defenses.correlated_sampling import Ball, Box, ConvexBody, OracleBody

__all__ = ["NN_MIN_ROWS", "BodyNotCovered", "CoverageResult", "MitigationRefused", "coverage_test", "fit_body"]

NN_MIN_ROWS = 20  # below this the nearest-neighbour test is skipped (too few rows to split)


class MitigationRefused(ValueError):
    """The mitigator will not serve this model: its guarantee would not hold (the message says why)."""


@dataclass(frozen=True)
class CoverageResult:
    """Outcome of :func:`coverage_test`: the worst statistic and whether H0 survived at level alpha."""

    passed: bool
    alpha: float            # family-wise level (false refusal probability under H0 <= alpha)
    n_tests: int            # T: Bonferroni threshold is alpha / T
    n_rows: int
    worst: str              # the failing feature with the smallest p-value, else the smallest p-value overall
    worst_index: int | None  # feature index of the worst statistic (None for the radial statistic)
    ks_statistic: float
    p_value: float
    failed: tuple[str, ...] = ()  # every statistic below alpha / T

    @property
    def threshold(self) -> float:
        return self.alpha / self.n_tests


class BodyNotCovered(MitigationRefused):
    """The clean rows do not look like a uniform sample of the body: their error rate says nothing about
    the points the mitigator would query."""

    def __init__(self, result: CoverageResult, body_kind: str, feature_name: str | None = None):
        self.result = result
        what = feature_name or result.worst
        super().__init__(
            f"refusing: the clean rows do not look like a uniform sample of the sampling {body_kind} (the mitigator "
            f"queries the model all over it, the clean rows vouch only for where they lie): {what} fails the "
            f"uniformity test (Kolmogorov-Smirnov D = {result.ks_statistic:.3g}, p = {result.p_value:.2g} < "
            f"{result.alpha:g}/{result.n_tests}; a uniform sample would be refused with probability <= "
            f"{result.alpha:g})" + (f"; failing as well: {', '.join(f for f in result.failed if f != result.worst)}"
                                    if len(result.failed) > 1 else ""))


def fit_body(X, kind: str = "box") -> ConvexBody:
    """The body D = Unif(body) fitted to the rows X (N, n) (module docstring). Raises BodyNotCovered-free
    ValueError for fewer than 2 rows or a constant feature (no box has that feature's width)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"need at least 2 clean rows to fit a sampling body, got shape {X.shape}")
    N, n = X.shape
    if kind == "box":
        lo, hi = X.min(axis=0), X.max(axis=0)
        width = hi - lo
        if np.any(width <= 0):
            j = int(np.flatnonzero(width <= 0)[0])
            raise ValueError(f"feature {j} is constant in the clean rows: no uniform body has that shape")
        return Box(lo - width / (N - 1), hi + width / (N - 1))
    if kind == "ball":
        center, r_max = _enclosing_ball(X)
        return Ball(center, r_max * ((N + 1) / N) ** (1.0 / n))
    raise ValueError(f"body must be 'box' or 'ball', got {kind!r}")


def _last(v):  # objective r^2 of v = (c, r^2)
    return v[-1]


def _last_grad(v):
    g = np.zeros_like(v)
    g[-1] = 1.0
    return g


def _inside(v, A):  # r^2 - ||a - c||^2 >= 0 for every working row a
    return v[-1] - ((A - v[:-1]) ** 2).sum(axis=1)


def _inside_jac(v, A):
    return np.hstack([2 * (A - v[:-1]), np.ones((len(A), 1))])


def _enclosing_ball(X) -> tuple[np.ndarray, float]:
    """Smallest ball containing the rows (the maximum-likelihood support of a uniform ball sample): SLSQP on
    min r^2 s.t. ||x_i - c||^2 <= r^2 over a working set of rows, grown by the farthest rows until all fit."""
    from scipy.optimize import minimize

    c = X.mean(axis=0)
    step = 4 * X.shape[1] + 8
    work = np.argsort(((X - c) ** 2).sum(axis=1))[-step:]
    for _ in range(50):
        A = X[work]
        r2 = float(((A - c) ** 2).sum(axis=1).max())
        res = minimize(_last, np.append(c, r2), jac=_last_grad, method="SLSQP",
                       constraints={"type": "ineq", "fun": _inside, "jac": _inside_jac, "args": (A,)},
                       options={"maxiter": 500, "ftol": 1e-14})
        c = res.x[:-1]
        dist2 = ((X - c) ** 2).sum(axis=1)
        outside = np.flatnonzero(dist2 > res.x[-1] * (1 + 1e-9))
        if outside.size == 0:
            break
        work = np.union1d(work, outside[np.argsort(dist2[outside])[-step:]])
    return c, float(np.sqrt(((X - c) ** 2).sum(axis=1).max()))


def _uniform_coordinates(body: ConvexBody, X) -> list[tuple[str, int | None, np.ndarray, object]]:
    """(name, feature index, values, H0 cdf) per statistic."""
    n = body.dim
    if isinstance(body, Box):
        U = (X - body.lo) / (body.hi - body.lo)
        return [(f"feature {j}", j, U[:, j], "uniform") for j in range(n)]
    if isinstance(body, Ball):
        W = (X - body.center) / body.radius
        beta = stats.beta((n + 1) / 2, (n + 1) / 2).cdf
        out = [("radius", None, np.linalg.norm(W, axis=1) ** n, "uniform")]
        return out + [(f"feature {j}", j, (W[:, j] + 1) / 2, beta) for j in range(n)]
    raise TypeError(f"no exact coverage test for {type(body).__name__}")


def _nearest_neighbour_test(body: ConvexBody, X, rng):
    """Two-sample KS of d(p, R) for held-out rows p against d(f, R) for fresh f ~ Unif(body) (module docstring).

    R: a random half of the rows; P: the other half; F: 4 |P| fresh points.  Distances in the body's own
    units (box: each feature divided by its width), so no feature dominates by its scale."""
    N = X.shape[0]
    perm = rng.permutation(N)
    R, P = X[perm[:N // 2]], X[perm[N // 2:]]
    F = body.sample(min(4 * P.shape[0], 20_000), rng)
    scale = (body.hi - body.lo) if isinstance(body, Box) else 1.0
    tree = cKDTree(R / scale)
    return stats.ks_2samp(tree.query(P / scale)[0], tree.query(F / scale)[0])


def coverage_test(body: ConvexBody, X, alpha: float = 0.01, random_state=None) -> CoverageResult:
    """H0: rows X iid ~ Unif(body); Bonferroni over one-sample KS tests and the nearest-neighbour test
    (module docstring; the latter needs N >= NN_MIN_ROWS rows and draws its split and fresh points from
    ``random_state``).

    OracleBody (no exact law): two-sample KS per coordinate against 20 N hit-and-run samples (approximate).
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != body.dim or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, {body.dim}) with N >= 1, got {X.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(body, OracleBody):
        ref = body.sample(20 * X.shape[0], np.random.default_rng(random_state))
        tests = [(f"feature {j}", j, stats.ks_2samp(X[:, j], ref[:, j])) for j in range(body.dim)]
    else:
        tests = [(name, j, stats.kstest(v, cdf)) for name, j, v, cdf in _uniform_coordinates(body, X)]
    if X.shape[0] >= NN_MIN_ROWS:
        rng = np.random.default_rng(random_state)
        tests.append(("nearest-neighbour distances", None, _nearest_neighbour_test(body, X, rng)))
    failed = [t for t in tests if not t[2].pvalue >= alpha / len(tests)]
    # name a failing feature when there is one (a user can act on it), else the smallest p-value overall
    named = [t for t in failed if t[1] is not None] or failed or tests
    name, j, worst = min(named, key=lambda t: t[2].pvalue)
    return CoverageResult(passed=not failed, alpha=float(alpha), n_tests=len(tests),
                          n_rows=int(X.shape[0]), worst=name, worst_index=j, ks_statistic=float(worst.statistic),
                          p_value=float(worst.pvalue), failed=tuple(t[0] for t in failed))
