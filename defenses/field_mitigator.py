"""Reed-Muller mitigator over F_p^n (GLRSW'91 local correction; Gemmell-Sudan'92 curves): the finite-field
counterpart of :class:`defenses.oblivious.LocalPolynomialMitigator`, with the decoders of
defenses/reed_muller.py (basic interpolation, Berlekamp-Welch on lines or curves)."""

from __future__ import annotations

from numbers import Real

import numpy as np

from defenses.finite_field import check_prime
from defenses.oblivious import ModelTooInaccurate, _check_int, _model_values, clopper_pearson_upper
from defenses.reed_muller import ABSTAIN, basic_correct, curve_correct, line_correct, tolerated_error_rate

__all__ = ["ABSTAIN", "FieldPolynomialMitigator"]

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
