"""Oblivious local mitigation by random self-reducibility (brief B.4-B.6, B.8; Reed-Muller B.2).

:class:`LocalPolynomialMitigator` (reals, D = Unif(body)).  For every query x* and each of K lines:
    z_1..z_m, t_1..t_m = CORRELATED_SAMPLE(x*, m)          # every z_i ~ D, collinear with x*
    est = sum_i L_i(0) f(z_i)      (m = d+1, barycentric Lagrange weights at t = 0)
        | ROBUST_POLY_FIT(t, f(z), d)(0)   (m > d+1: best consensus (d+1)-subset, least-squares refit)
    e = median(ests)  (or mean of group medians);   output R_s(e) = s + Delta round((e - s)/Delta)
with s ~ U[0, Delta) a public coin.  With exact answers on > K/2 lines e = f*(x*) whatever f does
elsewhere, so the canonical output equals the simulator Sim = R_s(f*(x*)) (:meth:`simulate`).

``fit`` estimates the model's error rate on clean labelled samples and refuses (raises
:class:`ModelTooInaccurate`) when a one-sided Clopper-Pearson upper bound exceeds the tolerance of the
chosen mitigator: 1/(2(d+1)) for m = d+1 points (1/4 for linear), (m-d)/(4m) for a robust fit on m > d+1.

Symbols: d = degree, K = n_lines, m = points_per_line, Delta = grid, s = grid_offset_, delta = error rate.
"""

from __future__ import annotations

import math
from itertools import combinations
from numbers import Integral, Real

import numpy as np
from scipy import stats

from defenses.correlated_sampling import ConvexBody, correlated_points
from defenses.finite_field import check_prime
from defenses.reed_muller import ABSTAIN, basic_correct, curve_correct, line_correct, tolerated_error_rate

__all__ = [
    "ABSTAIN",
    "FieldPolynomialMitigator",
    "LocalPolynomialMitigator",
    "ModelTooInaccurate",
    "barycentric_weights_at_zero",
    "canonical_round",
    "clopper_pearson_upper",
    "robust_value_at_zero",
]


class ModelTooInaccurate(ValueError):
    """The model's estimated error rate is too high for the mitigator's guarantee to hold."""

    def __init__(self, delta_hat: float, upper_bound: float, tolerance: float, n_samples: int, confidence: float):
        self.delta_hat, self.upper_bound, self.tolerance = delta_hat, upper_bound, tolerance
        self.n_samples, self.confidence = n_samples, confidence
        hint = (" (the point estimate is below the tolerance: more clean samples may certify it)"
                if delta_hat < tolerance else "")
        super().__init__(
            f"refusing the model: estimated error rate delta_hat={delta_hat:.4g} on {n_samples} clean samples, "
            f"{confidence:.0%} upper confidence bound {upper_bound:.4g} exceeds the mitigator's tolerance "
            f"{tolerance:.4g}{hint}")


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided upper bound U with Pr[delta <= U] >= confidence for k errors in n Bernoulli(delta) draws."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    return 1.0 if k == n else float(stats.beta.ppf(confidence, k + 1, n - k))


def canonical_round(e, delta: float, offset: float):
    """B.6: R_s(e) = s + Delta * round((e - s) / Delta); Pr_s[R_s(a) != R_s(b)] = min(1, |a-b|/Delta)."""
    return offset + delta * np.round((np.asarray(e, dtype=float) - offset) / delta)


def barycentric_weights_at_zero(t) -> np.ndarray:
    """L_i(0) = prod_{j != i} t_j/(t_j - t_i) per row of t (L, m), via the barycentric form.

    w_i = 1/prod_{j != i}(t_i - t_j);  L_i(0) = (w_i / (0 - t_i)) / sum_j (w_j / (0 - t_j)).  Nodes must
    be distinct and non-zero (the correlated sampler never returns t = 0).
    """
    t = np.atleast_2d(np.asarray(t, dtype=float))
    diff = t[:, :, None] - t[:, None, :]
    idx = np.arange(t.shape[1])
    diff[:, idx, idx] = 1.0
    a = 1.0 / (np.prod(diff, axis=2) * (-t))
    return a / a.sum(axis=1, keepdims=True)


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
    confidence (of the refusal bound), max_subsets (robust fit), random_state.
    Fitted attributes: n_features_in_, n_points_, tolerated_error_rate_, delta_hat_, delta_upper_,
    grid_offset_ (None without grid), queries_per_point_, classes_ (classification), seed_.
    """

    def __init__(self, model=None, degree=1, body=None, n_lines=15, points_per_line=None, aggregate="median",
                 n_groups=3, grid=None, eps=0.0, task="regression", threshold=0.0, confidence=0.99,
                 max_subsets=256, random_state=None):
        self.model, self.degree, self.body, self.n_lines = model, degree, body, n_lines
        self.points_per_line, self.aggregate, self.n_groups, self.grid = points_per_line, aggregate, n_groups, grid
        self.eps, self.task, self.threshold, self.confidence = eps, task, threshold, confidence
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
        if not (isinstance(self.confidence, Real) and 0 < self.confidence < 1):
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        _check_int("max_subsets", self.max_subsets, 1)
        return d, m

    def fit(self, X_clean, y_clean):
        """Check the model on clean labelled samples from D; refuse it if it is too inaccurate."""
        d, m = self._validate_params()
        X = self._check_X(X_clean)
        y = np.asarray(y_clean)
        if y.shape != (X.shape[0],) or X.shape[0] == 0:
            raise ValueError(f"y_clean must have shape ({X.shape[0]},) with at least one sample, got {y.shape}")
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
        self.tolerated_error_rate_ = 1.0 / (2 * (d + 1)) if m == d + 1 else (m - d) / (4.0 * m)
        self.delta_hat_ = k / n
        self.delta_upper_ = clopper_pearson_upper(k, n, self.confidence)
        if self.delta_upper_ > self.tolerated_error_rate_:
            raise ModelTooInaccurate(self.delta_hat_, self.delta_upper_, self.tolerated_error_rate_, n, self.confidence)
        if classes is not None:
            self.classes_ = classes
        rng = np.random.default_rng(self.random_state)  # public coins, never depend on the model
        self.grid_offset_ = None if self.grid is None else float(rng.uniform(0.0, self.grid))
        self.seed_ = int(rng.integers(2**63 - 1))
        self.queries_per_point_ = self.n_lines * m
        return self

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
        d, m = self.degree, self.n_points_
        if m == d + 1:
            return np.einsum("lm,lm->l", barycentric_weights_at_zero(t), y)
        subsets = list(combinations(range(m), d + 1))
        if len(subsets) > self.max_subsets:  # public coins, independent of the answers
            pick = rng.choice(len(subsets), size=self.max_subsets, replace=False)
            subsets = [subsets[i] for i in np.sort(pick)]
        tol = 2.0 * self.eps + 1e-8 * (1.0 + np.abs(y).max(axis=1))
        return robust_value_at_zero(t, y, d, tol, subsets)

    def _aggregate(self, ests):
        if self.aggregate == "median":
            return np.median(ests, axis=1)
        groups = np.array_split(np.arange(ests.shape[1]), self.n_groups)
        return np.mean([np.median(ests[:, g], axis=1) for g in groups], axis=0)

    def predict_unrounded(self, X) -> np.ndarray:
        """Aggregated line estimates e(x*) for each row, before canonical rounding."""
        self._check_fitted()
        X = self._check_X(X)
        rng = np.random.default_rng(self.seed_)
        K, m, n = self.n_lines, self.n_points_, X.shape[1]
        chunk = max(1, (1 << 20) // (K * m * n))
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], chunk):
            rows = X[start:start + chunk]
            samples = [correlated_points(self.body, x, m, n_lines=K, random_state=rng) for x in rows]
            pts = np.concatenate([s.points.reshape(-1, n) for s in samples])
            y = _model_values(self.model, pts).astype(float).reshape(len(rows) * K, m)
            t = np.concatenate([s.t for s in samples])
            out[start:start + len(rows)] = self._aggregate(self._line_estimates(t, y, rng).reshape(len(rows), K))
        return out

    def predict(self, X) -> np.ndarray:
        """Mitigated values: R_s(e(x*)) with the public offset s when ``grid`` is set, else e(x*)."""
        e = self.predict_unrounded(X)
        return e if self.grid is None else canonical_round(e, self.grid, self.grid_offset_)

    def predict_class(self, X) -> np.ndarray:
        """Thresholded mitigated scores: classes_[1] if value > threshold else classes_[0] (+1/-1 if
        fitted as a regressor)."""
        above = self.predict(X) > self.threshold
        classes = getattr(self, "classes_", np.array([-1, 1]))
        return np.where(above, classes[1], classes[0])

    def simulate(self, f_star, X) -> np.ndarray:
        """The simulator Sim(f*, x*) = R_s(f*(x*)) with the same public offset (B.6); never calls model."""
        self._check_fitted()
        vals = _model_values(f_star, self._check_X(X), "f_star").astype(float)
        return vals if self.grid is None else canonical_round(vals, self.grid, self.grid_offset_)


_DECODERS = {"basic": basic_correct, "line": line_correct, "curve": curve_correct}


class FieldPolynomialMitigator:
    """Reed-Muller mitigator over F_p^n (D uniform): same conventions as LocalPolynomialMitigator.

    decoder: 'basic' (d+1 points), 'line' or 'curve' (Berlekamp-Welch on m points, default
    m = min(p - 1, 10(d+1))); n_repeats K trials with plurality.  predict returns ABSTAIN (-1) where no
    trial decoded.  Fitted: n_features_in_, n_points_, tolerated_error_rate_, delta_hat_, delta_upper_, seed_.
    """

    def __init__(self, oracle=None, p=None, degree=1, decoder="line", n_repeats=1, points_per_line=None,
                 confidence=0.99, random_state=None):
        self.oracle, self.p, self.degree, self.decoder = oracle, p, degree, decoder
        self.n_repeats, self.points_per_line = n_repeats, points_per_line
        self.confidence, self.random_state = confidence, random_state

    def fit(self, X_clean, y_clean):
        if not callable(self.oracle):
            raise TypeError("oracle must be callable: (k, n) int array -> k values in F_p")
        p = check_prime(self.p)
        d = _check_int("degree", self.degree, 0)
        _check_int("n_repeats", self.n_repeats, 1)
        if self.decoder not in _DECODERS:
            raise ValueError(f"decoder must be one of {sorted(_DECODERS)}, got {self.decoder!r}")
        if not (isinstance(self.confidence, Real) and 0 < self.confidence < 1):
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        default_m = d + 1 if self.decoder == "basic" else min(p - 1, 10 * (d + 1))
        m = default_m if self.points_per_line is None else _check_int("points_per_line", self.points_per_line, 1)
        if self.decoder == "basic" and m != d + 1:
            raise ValueError("the basic decoder uses exactly d + 1 points per trial")
        X = np.asarray(X_clean)
        y = np.asarray(y_clean)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.integer) or X.shape[0] == 0:
            raise ValueError(f"X_clean must be a non-empty 2-D integer array, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y_clean must have shape ({X.shape[0]},), got {y.shape}")
        vals = _model_values(self.oracle, X, "oracle")
        k = int(np.sum(np.mod(vals, p) != np.mod(y, p)))
        self.n_features_in_, self.n_points_ = X.shape[1], m
        self.tolerated_error_rate_ = tolerated_error_rate(self.decoder, d, m)
        self.delta_hat_ = k / X.shape[0]
        self.delta_upper_ = clopper_pearson_upper(k, X.shape[0], self.confidence)
        if self.delta_upper_ > self.tolerated_error_rate_:
            raise ModelTooInaccurate(self.delta_hat_, self.delta_upper_, self.tolerated_error_rate_,
                                     X.shape[0], self.confidence)
        self.seed_ = int(np.random.default_rng(self.random_state).integers(2**63 - 1))
        return self

    def predict(self, X) -> np.ndarray:
        if not hasattr(self, "seed_"):
            raise AttributeError("this mitigator is not fitted yet: call fit(X_clean, y_clean) first")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_ or not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"X must be an integer array of shape (k, {self.n_features_in_})")
        rng = np.random.default_rng(self.seed_)
        out = np.empty(X.shape[0], dtype=object if self.p >= 2**62 else np.int64)
        for i, x in enumerate(X):
            kw = {} if self.decoder == "basic" else {"m": self.n_points_}
            out[i] = _DECODERS[self.decoder](self.oracle, x, self.p, self.degree, n_repeats=self.n_repeats,
                                             random_state=rng, **kw).value
        return out
