"""Oblivious local mitigation by random self-reducibility (GSVV'25 local mitigation; Reed-Muller local
correction, GLRSW'91).

:class:`LocalPolynomialMitigator` (reals, D = Unif(body)).  For every query x* and each of K lines:
    z_1..z_m, t_1..t_m = CORRELATED_SAMPLE(x*, m)          # every z_i ~ D, collinear with x*
    est = sum_i L_i(0) f(z_i)      (m = d+1, barycentric Lagrange weights at t = 0)
        | ROBUST_POLY_FIT(t, f(z), d)(0)   (m > d+1: best consensus (d+1)-subset, least-squares refit)
    e = median(ests)  (or mean of group medians);   output R_s(e) = s + Delta round((e - s)/Delta)
with s ~ U[0, Delta) a public coin.  With exact answers on > K/2 lines e = f*(x*) whatever f does
elsewhere, so the canonical output equals the simulator Sim = R_s(f*(x*)) (:meth:`simulate`).

What ``fit`` checks, in order, before any prediction (each failure raises :class:`MitigationRefused`):
1. coverage (defenses/coverage.py): the clean rows must look like a uniform sample of the body, because the
   model is queried all over the body and the clean rows can only vouch for it if they are a sample of it;
   :class:`BodyNotCovered` otherwise (Kolmogorov-Smirnov, false refusal probability <= coverage_alpha);
2. accuracy: delta_upper = one-sided Clopper-Pearson bound (at ``confidence``) on the model's error rate
   Pr_D[|f - y| > eps] from the clean rows -- valid for D when 1. holds and the rows were not chosen with
   knowledge of the model;
3. the guarantee (defenses/line_guarantee.py): with p_line = m delta_upper per line, the smallest slack b with
   Pr[Bin(K, p_line) > b] <= max_failure; if none exists the guarantee is vacuous and the model is refused
   (:class:`ModelTooInaccurate`, tolerance = the largest delta that would pass).
Each prediction then comes with its amplification Lambda_(k+b) (:meth:`predict_with_bounds`):
|e(x*) - g(x*)| <= eps * Lambda_(k+b) except with probability <= failure_probability_ per row.

Symbols: d = degree, K = n_lines, m = points_per_line, Delta = grid, s = grid_offset_, delta = error rate,
b = slack_, Lambda = sum_i |L_i(0)| (error amplification of one line's reconstruction).

Batched: a box body with two-point lines (the CLI's case) samples, queries and decodes whole chunks of targets
feature-major (defenses/box_lines.py, same law as the general route); a median over the lines counts a NaN
estimate as a bad line (+inf).  The F_p counterpart is defenses/field_mitigator.py.
"""

from __future__ import annotations

import math
from itertools import combinations, pairwise
from numbers import Integral, Real

import numpy as np
from scipy import stats

from defenses.box_lines import Workspace, box_pairs, keep_freed_memory, off_boundary, pair_estimates
from defenses.correlated_sampling import Box, ConvexBody, correlated_lines_batch, line_points
from defenses.coverage import BodyNotCovered, MitigationRefused, coverage_test
from defenses.line_guarantee import (
    amplification_bound,
    choose_slack,
    failure_probability,
    line_failure_rate,
    median_of_lines,
    tolerated_rate,
)
from defenses.line_nodes import (
    barycentric_weights_at_zero,
    best_nodes,
    best_pair_parameters,
    robust_value_at_zero,
)
from defenses.reed_muller import ABSTAIN

CHUNK_VALUES = 1 << 19  # query coordinates per chunk of rows (K m max(n, 8) per row): ~4 MB of points

__all__ = [
    "ABSTAIN",
    "BodyNotCovered",
    "LocalPolynomialMitigator",
    "MitigationRefused",
    "ModelTooInaccurate",
    "barycentric_weights_at_zero",
    "canonical_round",
    "clopper_pearson_upper",
    "robust_value_at_zero",
]


class ModelTooInaccurate(MitigationRefused):
    """The model's estimated error rate is too high for the mitigator's guarantee to hold."""

    def __init__(self, delta_hat: float, upper_bound: float, tolerance: float, n_samples: int, confidence: float,
                 detail: str = ""):
        self.delta_hat, self.upper_bound, self.tolerance = delta_hat, upper_bound, tolerance
        self.n_samples, self.confidence = n_samples, confidence
        hint = (" (the point estimate is below the tolerance: more clean samples may certify it)"
                if delta_hat < tolerance else "")
        super().__init__(
            f"refusing the model: estimated error rate delta_hat={delta_hat:.4g} on {n_samples} clean samples, "
            f"{confidence:.0%} upper confidence bound {upper_bound:.4g} exceeds the mitigator's tolerance "
            f"{tolerance:.4g}{hint}{detail}")


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided upper bound U with Pr[delta <= U] >= confidence for k errors in n Bernoulli(delta) draws."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    return 1.0 if k == n else float(stats.beta.ppf(confidence, k + 1, n - k))


def canonical_round(e, delta: float, offset: float):
    """Canonical rounding: R_s(e) = s + Delta * round((e - s) / Delta); Pr_s[R_s(a) != R_s(b)] = min(1, |a-b|/Delta)."""
    return offset + delta * np.round((np.asarray(e, dtype=float) - offset) / delta)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _model_values(model, X, name="model"):
    vals = np.asarray(model(X))
    if vals.shape != (X.shape[0],):
        raise ValueError(f"{name} must map (k, n) rows to k values; got shape {vals.shape} for k={X.shape[0]}")
    return vals


class LocalPolynomialMitigator:
    """Local mitigator for f* of degree <= ``degree`` on D = Unif(``body``), black-box ``model``.

    Parameters: model (callable rows -> reals), degree d, body (ConvexBody), n_lines K,
    points_per_line m (None = d + 1), aggregate ('median' | 'mean_of_medians'), n_groups (for
    mean_of_medians), grid Delta (None or > 0; public offset drawn in fit), eps (error threshold for
    regression), task ('regression' | 'classification'), threshold (class boundary for scores),
    confidence (of the error-rate bound), max_failure (per-query failure probability the guarantee must
    reach, else refuse), coverage_alpha (level of the coverage test of the clean rows against Unif(body);
    None skips it -- only for callers that know their clean rows are drawn from Unif(body)), candidates
    (None, or c > d + 1 nodes per line of which the best-conditioned d + 1 are queried; interpolation only;
    see defenses/line_guarantee.py), max_subsets (robust fit), random_state.
    Fitted attributes: n_features_in_, n_points_, coverage_ (CoverageResult or None), delta_hat_,
    delta_upper_, tolerated_error_rate_, line_failure_probability_, slack_, failure_probability_,
    grid_offset_ (None without grid), queries_per_point_, classes_ (classification), seed_.
    """

    def __init__(self, model=None, degree=1, body=None, n_lines=15, points_per_line=None, aggregate="median",
                 n_groups=3, grid=None, eps=0.0, task="regression", threshold=0.0, confidence=0.99,
                 max_failure=0.01, coverage_alpha=0.01, candidates=None, max_subsets=256, random_state=None):
        self.model, self.degree, self.body, self.n_lines = model, degree, body, n_lines
        self.points_per_line, self.aggregate, self.n_groups, self.grid = points_per_line, aggregate, n_groups, grid
        self.eps, self.task, self.threshold, self.confidence = eps, task, threshold, confidence
        self.max_failure, self.coverage_alpha, self.candidates = max_failure, coverage_alpha, candidates
        self.max_subsets, self.random_state = max_subsets, random_state

    # ----------------------------------------------------------------------------------- fit
    def _validate_params(self):
        if not callable(self.model):
            raise TypeError("model must be a callable mapping an (k, n) array to k real values")
        if not isinstance(self.body, ConvexBody):
            raise TypeError("body must be a ConvexBody (Ball, Box or OracleBody): D = Unif(body)")
        d = _check_int("degree", self.degree, 0)
        _check_int("n_lines", self.n_lines, 1)
        m = d + 1 if self.points_per_line is None else _check_int("points_per_line", self.points_per_line, d + 1)
        if self.aggregate not in ("median", "mean_of_medians"):
            raise ValueError(f"aggregate must be 'median' or 'mean_of_medians', got {self.aggregate!r}")
        if self.aggregate == "mean_of_medians":
            _check_int("n_groups", self.n_groups, 1)
            if self.n_groups > self.n_lines:
                raise ValueError(f"n_groups={self.n_groups} exceeds n_lines={self.n_lines}")
        if self.grid is not None and not (isinstance(self.grid, Real) and math.isfinite(self.grid) and self.grid > 0):
            raise ValueError(f"grid must be None or a positive finite Delta, got {self.grid!r}")
        if not (isinstance(self.eps, Real) and math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {self.eps!r}")
        if self.task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {self.task!r}")
        for name in ("confidence", "max_failure"):
            if not (isinstance(getattr(self, name), Real) and 0 < getattr(self, name) < 1):
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        if self.coverage_alpha is not None and not (isinstance(self.coverage_alpha, Real)
                                                    and 0 < self.coverage_alpha < 1):
            raise ValueError(f"coverage_alpha must be None or in (0, 1), got {self.coverage_alpha!r}")
        _check_int("max_subsets", self.max_subsets, 1)
        if self.candidates is not None:
            _check_int("candidates", self.candidates, d + 1)
            if m != d + 1:
                raise ValueError("candidates needs interpolation (points_per_line = degree + 1)")
        return d, m

    def _group_sizes(self) -> list[int]:
        groups = 1 if self.aggregate == "median" else self.n_groups
        return [len(g) for g in np.array_split(np.arange(self.n_lines), groups)]

    def fit(self, X_clean, y_clean):
        """Check the clean rows against Unif(body), the model on them, and the guarantee; refuse
        (MitigationRefused: BodyNotCovered or ModelTooInaccurate) when any fails."""
        d, m = self._validate_params()
        X = self._check_X(X_clean)
        y = np.asarray(y_clean)
        if y.shape != (X.shape[0],) or X.shape[0] == 0:
            raise ValueError(f"y_clean must have shape ({X.shape[0]},) with at least one sample, got {y.shape}")
        self.coverage_ = None
        if self.coverage_alpha is not None:  # does the clean data vouch for D = Unif(body)?
            cov = coverage_test(self.body, X, self.coverage_alpha, random_state=self.random_state)
            if not cov.passed:
                raise BodyNotCovered(cov, type(self.body).__name__.lower())
            self.coverage_ = cov
        scores = _model_values(self.model, X).astype(float)
        classes = None
        if self.task == "classification":
            classes = np.unique(y)
            if classes.size != 2:
                raise ValueError(f"classification needs exactly two labels in y_clean, got {classes}")
            errors = (scores > self.threshold) != (y == classes[1])  # misclassified
        else:
            errors = ~(np.abs(scores - y.astype(float)) <= self.eps)  # NaN counts as an error
        k, n = int(errors.sum()), int(errors.size)
        self.n_features_in_, self.n_points_ = X.shape[1], m
        groups = self._group_sizes()
        c = self.candidates
        self.tolerated_error_rate_ = tolerated_rate(groups, m, d, self.max_failure, c)
        self.delta_hat_ = k / n
        self.delta_upper_ = clopper_pearson_upper(k, n, self.confidence)
        self.line_failure_probability_ = line_failure_rate(self.delta_upper_, m, d, c)
        slack = choose_slack(groups, self.line_failure_probability_, self.max_failure)
        if slack is None:
            worst = failure_probability(groups, self.line_failure_probability_, min(g - g // 2 - 1 for g in groups))
            raise ModelTooInaccurate(
                self.delta_hat_, self.delta_upper_, self.tolerated_error_rate_, n, self.confidence,
                detail=f": at that rate a mitigated value could be wrong with probability up to {worst:.3g} > "
                       f"max_failure {self.max_failure:g} ({self.n_lines} lines of {m} points, {self.aggregate})")
        self.slack_ = slack
        self.failure_probability_ = failure_probability(groups, self.line_failure_probability_, slack)
        if classes is not None:
            self.classes_ = classes
        rng = np.random.default_rng(self.random_state)  # public coins, never depend on the model
        self.grid_offset_ = None if self.grid is None else float(rng.uniform(0.0, self.grid))
        self.seed_ = int(rng.integers(2**63 - 1))
        self.queries_per_point_ = self.n_lines * m
        return self

    def guarantee(self) -> dict:
        """The fitted guarantee in words and numbers (line_guarantee module docstring)."""
        self._check_fitted()
        interp = self.n_points_ == self.degree + 1
        best = f", best-conditioned {self.degree + 1} of {self.candidates} candidate nodes" if self.candidates else ""
        return {"n_lines": self.n_lines, "points_per_line": self.n_points_, "aggregate": self.aggregate,
                "candidates": self.candidates,
                "decoder": ("Lagrange interpolation at t = 0" + best) if interp else "consensus fit (robust, m > d + 1)",
                "eps": float(self.eps), "delta_hat": self.delta_hat_, "delta_upper": self.delta_upper_,
                "confidence": self.confidence, "tolerated_error_rate": self.tolerated_error_rate_,
                "line_failure_probability": self.line_failure_probability_, "slack": self.slack_,
                "failure_probability": self.failure_probability_, "max_failure": self.max_failure,
                "coverage_alpha": self.coverage_alpha,
                "coverage_p_value": None if self.coverage_ is None else self.coverage_.p_value}

    def _check_X(self, X):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.body.dim:
            raise ValueError(f"X must have shape (k, {self.body.dim}), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must be finite")
        return X

    def _check_fitted(self):
        if not hasattr(self, "seed_"):
            raise AttributeError("this mitigator is not fitted yet: call fit(X_clean, y_clean) first")

    # ------------------------------------------------------------------------------- predict
    def _line_estimates(self, t, y, rng):
        """(estimates (L,), Lambda (L,)); Lambda = sum |L_i(0)| for interpolation, NaN for the robust fit."""
        d, m = self.degree, self.n_points_
        if m == 2 and d == 1:  # the line through two points
            return pair_estimates(t[:, 0], t[:, 1], y[:, 0], y[:, 1])
        if m == d + 1:
            w = barycentric_weights_at_zero(t)
            return np.einsum("lm,lm->l", w, y), np.abs(w).sum(axis=1)
        subsets = list(combinations(range(m), d + 1))
        if len(subsets) > self.max_subsets:  # public coins, independent of the answers
            pick = rng.choice(len(subsets), size=self.max_subsets, replace=False)
            subsets = [subsets[i] for i in np.sort(pick)]
        tol = 2.0 * self.eps + 1e-8 * (1.0 + np.abs(y).max(axis=1))
        return robust_value_at_zero(t, y, d, tol, subsets), np.full(t.shape[0], np.nan)

    def _general_lines(self, rows, rng):
        """(est, Lambda), each (K, Q): any body, degree and decoder (correlated_sampling.correlated_lines_batch)."""
        (Q, n), K, m = rows.shape, self.n_lines, self.n_points_
        if self.candidates and self.degree == 1:  # same law as drawing all candidates, fewer draws
            c = self.candidates
            D, s = correlated_lines_batch(self.body, rows, 2, K, rng,
                                          sampler=lambda lo, hi, n_dim, _k, g: best_pair_parameters(lo, hi, n_dim, c, g))
        else:
            D, s = correlated_lines_batch(self.body, rows, self.candidates or m, K, rng)
            if self.candidates:  # public coins only: the best-conditioned (d+1)-subset of the candidates
                s = best_nodes(s, self.degree)
        y = np.asarray(_model_values(self.model, line_points(rows, D, s).reshape(-1, n)), dtype=float)
        est, lam = self._line_estimates(s.reshape(Q * K, m), y.reshape(Q * K, m), rng)
        return est.reshape(Q, K).T, lam.reshape(Q, K).T

    def _box_lines(self, rows, rng, work):
        """(est, Lambda), each (K, Q): a box body, targets off its faces, two-point lines (defenses/box_lines.py, the
        general route's law in fewer passes)."""
        Z, s = box_pairs(self.body, rows, self.n_lines, self.candidates or 2, rng, work)
        y = np.asarray(_model_values(self.model, Z.reshape(rows.shape[1], -1).T), dtype=float)
        y = y.reshape(2, self.n_lines, rows.shape[0])
        return pair_estimates(s[0], s[1], y[0], y[1])

    def _decode(self, out, at, est, lam, progress):
        """Targets ``at``: the median (or mean of group medians) of their lines' estimates and its amplification."""
        groups = self._group_sizes()
        out[0, at], out[1, at] = self._aggregate(est, groups), amplification_bound(lam, groups, self.slack_)
        if progress is not None:
            progress(est.shape[1])

    @staticmethod
    def _aggregate(est, groups):
        """Median of the K line estimates (axis 0), or the mean of the medians of consecutive groups."""
        if len(groups) == 1:
            return median_of_lines(est)
        bounds = np.cumsum([0, *groups])
        return np.mean([median_of_lines(est[a:b]) for a, b in pairwise(bounds)], axis=0)

    def predict_with_bounds(self, X, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """(e(x*), amplification) per row, before canonical rounding: |e - g(x*)| <= eps * amplification
        except with probability <= failure_probability_ (plus 1 - confidence for delta_upper_ itself).

        All lines of a chunk of rows are sampled, queried (one model call) and decoded in batches; with a box
        body and two-point lines the targets off its faces take the batched route, the others the general
        route after them.  The coins (public, independent of the model) come from SFC64 seeded with seed_, so a
        fitted mitigator queries the same points on every call.  ``progress(k)`` (optional) is called with the
        number of rows finished after each batch.
        """
        self._check_fitted()
        X = self._check_X(X)
        rng = np.random.Generator(np.random.SFC64(self.seed_))  # public coins: any good statistical generator
        K, m, n = self.n_lines, self.n_points_, X.shape[1]
        chunk = max(1, CHUNK_VALUES // (K * m * max(n, 8)))
        out = np.empty((2, X.shape[0]))  # e(x*) and the amplification, per target
        rest = []  # targets the batched box route does not take (a coordinate on a face), decoded last
        if isinstance(self.body, Box) and self.degree == 1 and m == 2:
            work = Workspace()
            keep_freed_memory()
            for start in range(0, X.shape[0], chunk):
                rows = X[start:start + chunk]
                batched = off_boundary(self.body, rows)
                if batched.all():
                    self._decode(out, slice(start, start + rows.shape[0]), *self._box_lines(rows, rng, work), progress)
                    continue
                rest.append(start + np.flatnonzero(~batched))
                if batched.any():
                    at = start + np.flatnonzero(batched)
                    self._decode(out, at, *self._box_lines(rows[batched], rng, work), progress)
        else:
            rest = [np.arange(X.shape[0])]
        rest = np.concatenate(rest) if rest else np.zeros(0, dtype=np.intp)
        for start in range(0, rest.size, chunk):
            at = rest[start:start + chunk]
            self._decode(out, at, *self._general_lines(X[at], rng), progress)
        return out[0], out[1]

    def predict_unrounded(self, X, progress=None) -> np.ndarray:
        """Aggregated line estimates e(x*) for each row, before canonical rounding."""
        return self.predict_with_bounds(X, progress)[0]

    def predict(self, X, progress=None) -> np.ndarray:
        """Mitigated values: R_s(e(x*)) with the public offset s when ``grid`` is set, else e(x*)."""
        e = self.predict_unrounded(X, progress)
        return e if self.grid is None else canonical_round(e, self.grid, self.grid_offset_)

    def predict_class(self, X) -> np.ndarray:
        """Thresholded mitigated scores: classes_[1] if value > threshold else classes_[0] (+1/-1 if
        fitted as a regressor)."""
        above = self.predict(X) > self.threshold
        classes = getattr(self, "classes_", np.array([-1, 1]))
        return np.where(above, classes[1], classes[0])

    def simulate(self, f_star, X) -> np.ndarray:
        """The simulator Sim(f*, x*) = R_s(f*(x*)) with the same public offset (canonical rounding); never calls model."""
        self._check_fitted()
        vals = _model_values(f_star, self._check_X(X), "f_star").astype(float)
        return vals if self.grid is None else canonical_round(vals, self.grid, self.grid_offset_)
