"""Randomized smoothing: PREDICT and CERTIFY of Cohen, Rosenfeld and Kolter (ICML 2019).

The smoothed classifier of a black-box base classifier f is

    g(x) = argmax_c P_{eps ~ N(0, sigma^2 I)}[ f(x + eps) = c ].

Theorem 1 (CRK'19): if P[f(x + eps) = cA] >= pABar > 1/2 then g(x + delta) = cA for every
||delta||_2 < R = sigma * Phi^{-1}(pABar).

Symbol table (paper -> code):
    f                      base_predict (2-D array of rows -> 1-D integer labels)
    g                      SmoothedClassifier
    sigma, n0, n, alpha    sigma, n0, n, alpha
    cA, cB                 cA, cB (class *indices* 0..num_classes-1; mapped to ``labels`` on output)
    nA, nB                 nA, nB
    underline{pA}          pABar
    R                      radius
    ABSTAIN                abstain value (``ABSTAIN`` = -1, or 0 when -1 is a class label; see below)

Choices (Cohen, Rosenfeld, Kolter, ICML 2019: the PREDICT/CERTIFY pseudocode of section 3.2):
* CERTIFY certifies only if pABar > 1/2 (the paper's box); at pABar <= 1/2 it abstains with radius 0.
* The selection sample (n0 draws) and the estimation sample (n draws) use disjoint noise.
* PREDICT's test is the two-sided exact binomial test ``scipy.stats.binomtest(nA, nA + nB, 0.5).pvalue``.
* Abstention: with ``labels=None`` classes are 0..C-1 and the abstain value is ``ABSTAIN = -1``. With
  explicit ``labels`` the abstain value is -1 unless -1 is a label (the +-1 labels of binary classification), then 0 (the
  value of sgn "no decision"); if both are labels, pass ``abstain_value=``. It is never a class label.

Conservative rounding (a radius is never overstated by floating point):
1. pABar. The exact one-sided Clopper-Pearson bound p* solves P[Bin(n, p) >= nA] = alpha, i.e.
   I_p(nA, n - nA + 1) = alpha (regularized incomplete beta, strictly increasing in p). We start from
   ``beta.ppf`` and step the value down (4 ulp, then x4 each round) until ``betainc(nA, n-nA+1, p)``
   <= alpha * (1 - 1e-9). Since SciPy's betainc (Boost ibeta) is accurate to far better than 1e-9
   relative, the exact I_p is <= alpha, so p <= p* by monotonicity.
2. radius. z = ndtri(pABar) is stepped down the same way until Phi(z) <= pABar holds with relative
   slack 1e-12, checked as erf(z/sqrt 2)/2 <= pABar - 1/2 for z < 1 and as erfc(z/sqrt 2)/2 >=
   1 - pABar for z >= 1 (both differences are exact by Sterbenz's lemma since pABar is in (1/2, 1);
   erf/erfc are relatively accurate to ~1e-15). Then R = nextafter(sigma * z, 0) <= sigma * z exactly.
   So R <= sigma * Phi^{-1}(pABar) <= sigma * Phi^{-1}(p*). The loss is a few ulps in practice.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import special, stats

ABSTAIN = -1

_BETAINC_SLACK = 1e-9     # assumed bound on betainc's relative error (Boost: ~1e-13 in practice)
_PHI_SLACK = 1e-12        # assumed bound on erf/erfc relative error incl. argument rounding
_MAX_STEPS = 40           # each round multiplies the downward step by 4; 40 rounds reach > 1e24 ulp
_SEGMENT_LOOP_MAX = 16    # a batch spanning at most this many inputs adds x per slice (else gathers)


# ---------------------------------------------------------------------------------------------------
# Deterministic core: bounds and the two algorithm boxes given the counts.
# ---------------------------------------------------------------------------------------------------

def lower_confidence_bound(nA, n, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from nA successes in n trials, rounded down.

    pABar = B^{-1}(alpha; nA, n - nA + 1) (Beta quantile), 0 when nA = 0; the returned float never
    exceeds the exact bound (module docstring, item 1). Vectorized over nA and n.
    """
    alpha = _check_alpha(alpha)
    nA, n = np.broadcast_arrays(np.asarray(nA), np.asarray(n))
    if nA.dtype.kind not in "iu" or n.dtype.kind not in "iu":
        raise TypeError("nA and n must be integer counts")
    if np.any(n < 1) or np.any(nA < 0) or np.any(nA > n):
        raise ValueError("need 0 <= nA <= n and n >= 1")
    nA, n = nA.astype(np.float64), n.astype(np.float64)
    pABar = np.zeros(nA.shape)
    pos = nA > 0
    a, b = nA[pos], n[pos] - nA[pos] + 1
    p = stats.beta.ppf(alpha, a, b)                    # pA* = B^{-1}(alpha; nA, n - nA + 1)
    pABar[pos] = _step_down_until(p, lambda q, i: special.betainc(a[i], b[i], q)
                                  <= alpha * (1 - _BETAINC_SLACK))
    return pABar


def certified_radius(pABar, sigma: float) -> np.ndarray:
    """R = sigma * Phi^{-1}(pABar) rounded down (module docstring, item 2); needs 1/2 < pABar < 1."""
    sigma = _check_sigma(sigma)
    shape = np.shape(pABar)
    pABar = np.asarray(pABar, dtype=np.float64).ravel()
    if not np.all((pABar > 0.5) & (pABar < 1.0)):
        raise ValueError("certified_radius needs 1/2 < pABar < 1 (abstain otherwise)")
    d_lo, d_hi = pABar - 0.5, 1.0 - pABar              # exact (Sterbenz)
    z = special.ndtri(pABar)                           # z = Phi^{-1}(pABar)

    def phi_below(q, i):                               # Phi(q) <= pABar, checked where it is accurate
        x = q / np.sqrt(2.0)
        small = special.erf(x) / 2 <= d_lo[i] * (1 - _PHI_SLACK)
        large = special.erfc(x) / 2 >= d_hi[i] * (1 + _PHI_SLACK)
        return np.where(q < 1.0, small, large) & (q >= 0)

    z = np.maximum(_step_down_until(z, phi_below), 0.0)
    return np.nextafter(sigma * z, 0.0).reshape(shape)  # R = sigma * z, rounded toward 0


def certify_from_counts(counts0, counts, sigma: float, alpha: float):
    """CERTIFY after sampling (the paper's box, one line per step).

    Returns (cA, radius, pABar, nA, certified): class indices, radii (0 where abstaining), bounds.
    """
    counts0, counts = _check_counts(counts0, "counts0"), _check_counts(counts, "counts")
    if counts0.shape != counts.shape:
        raise ValueError(f"counts0 {counts0.shape} and counts {counts.shape} must have the same shape")
    rows = np.arange(counts.shape[0])
    cA = counts0.argmax(axis=1)                          # cA <- top index in counts0 (selection)
    n = counts.sum(axis=1)                               # n estimation draws (independent of counts0)
    nA = counts[rows, cA]                                # nA <- counts[cA]
    pABar = lower_confidence_bound(nA, n, alpha)         # pABar <- LowerConfBound(nA, n, 1 - alpha)
    certified = pABar > 0.5                              # if pABar > 1/2 ...
    radius = np.zeros(len(rows))
    radius[certified] = certified_radius(pABar[certified], sigma)   # ... return (cA, sigma Phi^-1(pABar))
    return cA, radius, pABar, nA, certified              # else ABSTAIN


def predict_from_counts(counts, alpha: float):
    """PREDICT after sampling: returns (cA, nA, nB, pvalue, decided); abstain where not decided."""
    counts = _check_counts(counts, "counts")
    alpha = _check_alpha(alpha)
    if counts.shape[1] < 2:
        raise ValueError("PREDICT needs at least two classes")
    rows = np.arange(counts.shape[0])
    top2 = np.argsort(-counts, axis=1, kind="stable")[:, :2]    # cA, cB <- top two indices in counts
    cA, cB = top2[:, 0], top2[:, 1]
    nA, nB = counts[rows, cA], counts[rows, cB]                  # nA, nB <- counts[cA], counts[cB]
    cache: dict[tuple[int, int], float] = {}
    for a, b in zip(nA.tolist(), nB.tolist()):                   # BinomPValue(nA, nA + nB, 0.5)
        if (a, b) not in cache:
            cache[(a, b)] = stats.binomtest(a, a + b, 0.5).pvalue if a + b > 0 else 1.0
    pvalue = np.array([cache[(a, b)] for a, b in zip(nA.tolist(), nB.tolist())])
    decided = pvalue <= alpha                                    # if pvalue <= alpha return cA else ABSTAIN
    return cA, nA, nB, pvalue, decided


# ---------------------------------------------------------------------------------------------------
# Results (JSON-friendly via to_dict).
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Certification:
    labels: np.ndarray      # (m,) original label values; abstain_value where CERTIFY abstained
    radii: np.ndarray       # (m,) certified L2 radius; 0.0 where abstained
    pABar: np.ndarray       # (m,) conservative Clopper-Pearson lower bound on P[f(x+eps) = cA]
    nA: np.ndarray          # (m,) count of cA in the estimation sample
    counts0: np.ndarray     # (m, C) selection-sample counts (class indices)
    counts: np.ndarray      # (m, C) estimation-sample counts (class indices)
    abstain_value: int

    @property
    def abstained(self) -> np.ndarray:
        return self.labels == self.abstain_value

    def to_dict(self) -> dict:
        return _to_dict(self)


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray      # (m,) original label values; abstain_value where PREDICT abstained
    nA: np.ndarray
    nB: np.ndarray
    pvalues: np.ndarray     # two-sided binomial test p-values
    counts: np.ndarray      # (m, C)
    abstain_value: int

    @property
    def abstained(self) -> np.ndarray:
        return self.labels == self.abstain_value

    def to_dict(self) -> dict:
        return _to_dict(self)


def _to_dict(result) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(result).items()}


class _Config(NamedTuple):
    sigma: float
    num_classes: int
    batch_size: int
    labels: np.ndarray       # class index -> output label value
    sorted_labels: np.ndarray
    sorted_to_index: np.ndarray
    identity: bool           # labels are 0..C-1
    abstain_value: int


# ---------------------------------------------------------------------------------------------------
# The smoothed classifier (random wrapper around the deterministic core).
# ---------------------------------------------------------------------------------------------------

class SmoothedClassifier:
    """Gaussian randomized smoothing of a black-box batch classifier (scikit-learn conventions).

    base_predict: callable, 2-D float array (rows, d) -> 1-D integer labels (rows,). It receives a
        reused buffer of at most ``batch_size`` rows; it must not keep a reference to it.
    num_classes: number of classes C >= 2.
    sigma: noise level, > 0.
    batch_size: largest number of noisy rows passed to base_predict per call (bounds memory).
    labels: None (base labels are 0..C-1) or C distinct integer label values, e.g. (-1, 1).
    abstain_value: None (automatic: -1, or 0 if -1 is a label) or an int that is not a label.
    """

    def __init__(self, base_predict: Callable, num_classes: int, sigma: float, batch_size: int = 10_000,
                 labels=None, abstain_value: int | None = None):
        self.base_predict = base_predict
        self.num_classes = num_classes
        self.sigma = sigma
        self.batch_size = batch_size
        self.labels = labels
        self.abstain_value = abstain_value

    def predict(self, X, n: int, alpha: float, random_state=None) -> Prediction:
        """PREDICT for every row of X: the class, or the abstain value; wrong w.p. <= alpha per row."""
        cfg = self._config()
        X, n, alpha = _check_rows(X), _check_count(n, "n"), _check_alpha(alpha)
        rng = np.random.default_rng(random_state)
        counts = self._sample_under_noise(X, n, rng, cfg)     # counts <- SampleUnderNoise(f, x, n, sigma)
        cA, nA, nB, pvalue, decided = predict_from_counts(counts, alpha)
        out = np.where(decided, cfg.labels[cA], cfg.abstain_value)
        self.abstain_value_ = cfg.abstain_value
        return Prediction(out, nA, nB, pvalue, counts, cfg.abstain_value)

    def certify(self, X, n0: int, n: int, alpha: float, random_state=None) -> Certification:
        """CERTIFY for every row of X: w.p. >= 1 - alpha per row, g(x + delta) = label for ||delta|| < R."""
        cfg = self._config()
        X, n0, n = _check_rows(X), _check_count(n0, "n0"), _check_count(n, "n")
        alpha = _check_alpha(alpha)
        rng = np.random.default_rng(random_state)
        counts0 = self._sample_under_noise(X, n0, rng, cfg)   # counts0 <- SampleUnderNoise(f, x, n0, sigma)
        counts = self._sample_under_noise(X, n, rng, cfg)     # counts <- SampleUnderNoise(f, x, n, sigma), fresh
        cA, radius, pABar, nA, certified = certify_from_counts(counts0, counts, cfg.sigma, alpha)
        out = np.where(certified, cfg.labels[cA], cfg.abstain_value)
        self.abstain_value_ = cfg.abstain_value
        return Certification(out, radius, pABar, nA, counts0, counts, cfg.abstain_value)

    def sample_counts(self, X, num: int, random_state=None) -> np.ndarray:
        """counts[i, c] = #{j <= num : f(X[i] + eps_j) = class c}, eps_j ~ N(0, sigma^2 I)."""
        cfg = self._config()
        X, num = _check_rows(X), _check_count(num, "num")
        return self._sample_under_noise(X, num, np.random.default_rng(random_state), cfg)

    # -- internals -------------------------------------------------------------------------------

    def _sample_under_noise(self, X: np.ndarray, num: int, rng: np.random.Generator,
                            cfg: _Config) -> np.ndarray:
        """Stream the m * num noisy rows (input-major) through f in batches of <= batch_size rows."""
        m, d = X.shape
        C = cfg.num_classes
        counts = np.zeros(m * C, dtype=np.int64)
        total = m * num
        buf = np.empty((min(cfg.batch_size, total), d))
        for start in range(0, total, buf.shape[0]):
            stop = min(start + buf.shape[0], total)
            noisy = buf[: stop - start]
            rng.standard_normal(out=noisy)                          # eps ~ N(0, I)
            noisy *= cfg.sigma                                      # eps ~ N(0, sigma^2 I)
            first, last = start // num, (stop - 1) // num           # inputs covered by this batch
            if last - first < _SEGMENT_LOOP_MAX:
                for i in range(first, last + 1):                    # x + eps, one slice per input
                    noisy[max(i * num, start) - start: min((i + 1) * num, stop) - start] += X[i]
            else:
                noisy += X[np.arange(start, stop) // num]
            idx = self._class_index(self.base_predict(noisy), stop - start, cfg)
            if first == last:
                counts[first * C:(first + 1) * C] += np.bincount(idx, minlength=C)
            else:
                local = np.arange(start, stop) // num - first
                counts[first * C:(last + 1) * C] += np.bincount(local * C + idx, minlength=(last - first + 1) * C)
        return counts.reshape(m, C)

    @staticmethod
    def _class_index(out, rows: int, cfg: _Config) -> np.ndarray:
        """Map base_predict's labels to class indices 0..C-1; reject anything else."""
        out = np.asarray(out)
        if out.shape != (rows,):
            raise ValueError(f"base_predict must return shape ({rows},) for {rows} rows, got {out.shape}")
        if out.dtype.kind == "f":
            if not np.all(np.isfinite(out) & (out == np.round(out))):
                raise ValueError("base_predict returned non-integer labels")
        elif out.dtype.kind not in "iub":
            raise ValueError(f"base_predict must return integer labels, got dtype {out.dtype}")
        if cfg.identity:
            idx = out.astype(np.intp, copy=False)
            if rows and (idx.min() < 0 or idx.max() >= cfg.num_classes):
                bad = out[(idx < 0) | (idx >= cfg.num_classes)][0]
                raise ValueError(f"base_predict returned label {bad!r}, outside 0..{cfg.num_classes - 1}; "
                                 "pass labels=(...) if the model uses other label values")
            return idx
        pos = np.minimum(np.searchsorted(cfg.sorted_labels, out), cfg.num_classes - 1)
        ok = cfg.sorted_labels[pos] == out
        if not np.all(ok):
            raise ValueError(f"base_predict returned label {out[~ok][0]!r}, not in labels "
                             f"{cfg.labels.tolist()}")
        return cfg.sorted_to_index[pos]

    def _config(self) -> _Config:
        """Validate the constructor parameters (scikit-learn style: in methods, not in __init__)."""
        if not callable(self.base_predict):
            raise TypeError("base_predict must be callable: 2-D array of rows -> 1-D integer labels")
        C = _check_int(self.num_classes, "num_classes", 2)
        batch_size = _check_int(self.batch_size, "batch_size", 1)
        sigma = _check_sigma(self.sigma)
        if self.labels is None:
            labels = np.arange(C)
        else:
            labels = np.asarray(self.labels)
            if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != C:
                raise ValueError(f"labels must be {C} integers (one per class), got {self.labels!r}")
            if len(np.unique(labels)) != C:
                raise ValueError(f"labels must be distinct, got {self.labels!r}")
            labels = labels.astype(np.int64)
        label_set = set(labels.tolist())
        if self.abstain_value is not None:
            abstain = _check_int(self.abstain_value, "abstain_value", None)
            if abstain in label_set:
                raise ValueError(f"abstain_value={abstain} is a class label; choose a value outside {labels}")
        elif ABSTAIN not in label_set:
            abstain = ABSTAIN
        elif 0 not in label_set:
            abstain = 0
        else:
            raise ValueError("labels contain both -1 and 0; pass abstain_value= (an int that is not a label)")
        order = np.argsort(labels, kind="stable")
        return _Config(sigma, C, batch_size, labels, labels[order], order,
                       bool(np.array_equal(labels, np.arange(C))), abstain)


# ---------------------------------------------------------------------------------------------------
# Validation helpers and the conservative step-down loop.
# ---------------------------------------------------------------------------------------------------

def _step_down_until(x: np.ndarray, ok: Callable) -> np.ndarray:
    """Largest tried value <= x with ok(value, indices) true: steps of 4 ulp, growing x4 per round."""
    x = np.array(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ArithmeticError("non-finite value in a confidence bound / radius computation")
    y = x.copy()
    todo = np.arange(x.size)
    step = 4.0
    for _ in range(_MAX_STEPS):
        y[todo] = x[todo] - step * np.spacing(np.abs(x[todo]))
        todo = todo[~np.asarray(ok(y[todo], todo), dtype=bool)]
        if todo.size == 0:
            return y
        step *= 4.0
    raise ArithmeticError("could not certify a conservative rounding (this indicates a SciPy accuracy bug)")


def _check_int(v, name: str, minimum: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {v!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def _check_count(v, name: str) -> int:
    return _check_int(v, name, 1)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a real number in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite real number > 0, got {sigma!r}")
    return float(sigma)


def _check_rows(X) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric 2-D array (n_inputs, n_features): {exc}") from None
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 2-D array (n_inputs, n_features), got shape {X.shape}; "
                         "use x.reshape(1, -1) for a single input")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(f"X has NaN or infinite entries in rows {np.flatnonzero(bad)[:10].tolist()}")
    return X


def _check_counts(counts, name: str) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.dtype.kind not in "iu" or np.any(counts < 0):
        raise ValueError(f"{name} must be a 2-D array of non-negative integer counts (inputs, classes)")
    if np.any(counts.sum(axis=1) < 1):
        raise ValueError(f"every row of {name} needs at least one draw")
    return counts
