"""Tests for defenses/smoothing.py (randomized smoothing: Cohen, Rosenfeld, Kolter, ICML 2019, Theorem 1 and
the PREDICT/CERTIFY pseudocode of section 3.2).

Every statistical test is seeded and states its failure probability (for a correct implementation).
Exact checks of the conservative rounding use Python's `decimal` at 80 digits (mpmath is not installed).
"""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from defenses.smoothing import (
    ABSTAIN,
    SmoothedClassifier,
    certified_radius,
    certify_from_counts,
    lower_confidence_bound,
    predict_from_counts,
)

PREC = 80


# --- exact (high-precision) references ---------------------------------------------------------------

def _dec_pi() -> Decimal:
    """pi to the current precision (recipe from the `decimal` documentation)."""
    with localcontext() as ctx:
        ctx.prec += 2
        three = Decimal(3)
        lasts, t, s, n, na, d, da = 0, three, 3, 1, 0, 0, 24
        while s != lasts:
            lasts = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def _dec_upper_tail_normal(z: Decimal) -> Decimal:
    """Q(z) = 1 - Phi(z) = erfc(z / sqrt 2) / 2 for z >= 0, via erf(x) = 2/sqrt(pi) e^{-x^2} sum 2^k x^(2k+1)/(2k+1)!!."""
    with localcontext() as ctx:
        ctx.prec = PREC
        x = z / Decimal(2).sqrt()
        term, total, k = x, x, 0
        while term > Decimal(10) ** (-PREC - 5) * total:
            term = term * 2 * x * x / (2 * k + 3)
            total += term
            k += 1
        erf = 2 / _dec_pi().sqrt() * (-x * x).exp() * total
        return (1 - erf) / 2


def _dec_binom_upper_tail(k: int, n: int, p: float) -> Decimal:
    """P[Bin(n, p) >= k] for the exact binary value of the float p."""
    with localcontext() as ctx:
        ctx.prec = PREC
        p_d = Decimal(p)
        q_d = 1 - p_d
        term = Decimal(comb(n, k)) * p_d ** k * q_d ** (n - k)
        total = term
        for j in range(k, n):
            term = term * (n - j) / (j + 1) * p_d / q_d
            total += term
        return total


# --- base classifiers --------------------------------------------------------------------------------

def _linear_pm1(w, b):
    """sgn(<w, x> + b) with labels in {-1, +1} (sgn(0) := +1)."""
    return lambda Z: np.where(Z @ w + b >= 0, 1, -1)


class _Recorder:
    """Base model that records the sizes (and optionally the rows) of every call."""

    def __init__(self, inner, keep_rows=False):
        self.inner, self.keep_rows, self.sizes, self.rows = inner, keep_rows, [], []

    def __call__(self, Z):
        self.sizes.append(Z.shape[0])
        if self.keep_rows:
            self.rows.append(Z.copy())
        return self.inner(Z)


# --- Clopper-Pearson lower bound ---------------------------------------------------------------------

@pytest.mark.parametrize("n,p", [(20, 0.3), (200, 0.05), (200, 0.9), (2000, 0.5), (1000, 0.999)])
def test_clopper_pearson_coverage_by_simulation(n, p):
    """bound <= true p in >= 1 - alpha of runs.

    Each run fails w.p. <= alpha = 0.05 (independently), so #failures is stochastically <= Bin(R, alpha);
    the threshold is its 1 - 1e-6 quantile: failure probability <= 1e-6 per case.
    """
    alpha, runs = 0.05, 20_000
    k = np.random.default_rng(1000 + n).binomial(n, p, size=runs)
    threshold = stats.binom.ppf(1 - 1e-6, runs, alpha)
    assert np.sum(lower_confidence_bound(k, n, alpha) > p) <= threshold
    # Negative control: the point estimate k/n is not a confidence bound; the same check rejects it.
    assert np.sum(k / n > p) > threshold


def test_lower_bound_is_conservative_exactly():
    """Exact binomial tail at the returned float: P[Bin(n, pABar) >= nA] <= alpha, so pABar <= the exact
    Clopper-Pearson bound (the tail is increasing in p); and pABar loses < 1e-8 relative to beta.ppf (slack 1e-9, step growth x4)."""
    for n in (1, 7, 100, 1000):
        for nA in sorted({1, max(1, n // 3), max(1, n // 2 + 1), max(1, n - 1), n}):
            for alpha in (0.05, 1e-3, 1e-9):
                pABar = float(lower_confidence_bound(nA, n, alpha))
                assert _dec_binom_upper_tail(nA, n, pABar) <= Decimal(alpha), (nA, n, alpha)
                assert pABar >= stats.beta.ppf(alpha, nA, n - nA + 1) * (1 - 1e-8)
    assert float(lower_confidence_bound(0, 10, 0.01)) == 0.0


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(n=st.integers(1, 300), frac=st.floats(0, 1), alpha=st.floats(1e-12, 0.5))
def test_lower_bound_property_exact_and_monotone(n, frac, alpha):
    """Property (hypothesis, derandomized): exact tail at pABar <= alpha; pABar nondecreasing in nA."""
    nA = round(frac * n)
    pABar = float(lower_confidence_bound(nA, n, alpha))
    if nA > 0:
        assert _dec_binom_upper_tail(nA, n, pABar) <= Decimal(alpha)
    if nA < n:
        assert pABar < float(lower_confidence_bound(nA + 1, n, alpha))


def test_lower_bound_bad_counts():
    with pytest.raises(ValueError, match="0 <= nA <= n"):
        lower_confidence_bound(11, 10, 0.01)
    with pytest.raises(TypeError, match="integer"):
        lower_confidence_bound(1.5, 10, 0.01)


# --- conservative radius -----------------------------------------------------------------------------

@pytest.mark.parametrize("pABar", [0.5 + 2.0**-53, 0.5000001, 0.6, 0.9, 0.99, 0.999999, 1 - 2.0**-40])
@pytest.mark.parametrize("sigma", [0.12, 1.0, 3.7])
def test_radius_never_exceeds_exact(pABar, sigma):
    """R <= sigma Phi^{-1}(pABar) exactly  <=>  Q(R / sigma) >= 1 - pABar (80-digit arithmetic)."""
    R = float(certified_radius(pABar, sigma))
    with localcontext() as ctx:
        ctx.prec = PREC
        assert _dec_upper_tail_normal(Decimal(R) / Decimal(sigma)) >= 1 - Decimal(pABar)
    assert R >= sigma * special.ndtri(pABar) * (1 - 1e-9)          # and not needlessly loose


def test_radius_never_exceeds_exact_on_random_grid():
    """300 seeded pABar values (bulk, near 1, near 1/2) x sigmas: no radius is above the 80-digit value.
    (For reference, when this was written: plain sigma*ndtri(p) overstated 198/300 of these, and
    nextafter(sigma*ndtri(p), 0) alone still overstated 26/300.)"""
    rng = np.random.default_rng(0)
    ps = np.concatenate([0.5 + rng.random(100) * 0.5, 1 - 10 ** -rng.uniform(1, 12, 100),
                         0.5 + 10 ** -rng.uniform(1, 15, 100)])
    sigmas = rng.choice([0.12, 0.25, 0.5, 1.0, 3.7], size=ps.size)
    radii = [float(certified_radius(p, s)) for p, s in zip(ps, sigmas)]
    with localcontext() as ctx:
        ctx.prec = PREC
        over = [_dec_upper_tail_normal(Decimal(float(R)) / Decimal(float(s))) < 1 - Decimal(float(p))
                for p, s, R in zip(ps, sigmas, radii)]
    assert not any(over)
    assert np.array_equal(certified_radius(ps, 0.5), [float(certified_radius(p, 0.5)) for p in ps])


def test_radius_rejects_uncertifiable_p():
    for p in (0.5, 0.2, 1.0):
        with pytest.raises(ValueError, match="1/2 < pABar < 1"):
            certified_radius(p, 1.0)


# --- CERTIFY -----------------------------------------------------------------------------------------

def test_constant_classifier_radius():
    """f == class 2: nA = n, pABar = alpha^(1/n) (Beta(alpha; n, 1)), R = sigma Phi^{-1}(alpha^(1/n)).
    Deterministic (counts do not depend on the noise). Checked exactly at 80 digits."""
    n, alpha, sigma = 100_000, 1e-3, 0.5
    smooth = SmoothedClassifier(lambda Z: np.full(len(Z), 2), 4, sigma)
    res = smooth.certify(np.zeros((2, 10)), n0=100, n=n, alpha=alpha, random_state=0)
    assert res.labels.tolist() == [2, 2] and res.nA.tolist() == [n, n]
    with localcontext() as ctx:
        ctx.prec = PREC
        p_exact = (Decimal(alpha).ln() / n).exp()                     # alpha^(1/n)
        for pABar, R in zip(res.pABar, res.radii):
            assert Decimal(float(pABar)) <= p_exact                     # conservative
            assert float(pABar) >= float(p_exact) * (1 - 1e-12)         # ... by a tiny step only
            assert _dec_upper_tail_normal(Decimal(float(R)) / Decimal(sigma)) >= 1 - p_exact
    expected = sigma * special.ndtri(alpha ** (1 / n))
    assert np.allclose(res.radii, expected, rtol=1e-8) and abs(expected - 3.81 * sigma) < 0.01 * sigma
    assert np.all(res.radii <= expected * (1 + 1e-15))


def test_linear_classifier_radius_below_true_distance():
    """f = sgn(<w,x> + b) (labels +-1): g = f and the exact radius is |<w,x>+b| / ||w||.

    Each input is over-certified (R > distance or wrong label) w.p. <= alpha = 1e-6; with 100 inputs the
    test fails w.p. <= 1e-4. The tightness check (radius >= 0.6 distance on average for inputs within
    2 sigma) holds with overwhelming probability for n = 10,000 (pABar - pA ~ 1e-2 at most).
    """
    rng = np.random.default_rng(7)
    d, sigma, alpha = 5, 0.5, 1e-6
    w, b = rng.normal(size=d), 0.3
    X = rng.normal(size=(100, d))
    smooth = SmoothedClassifier(_linear_pm1(w, b), 2, sigma, labels=(-1, 1))
    res = smooth.certify(X, n0=100, n=10_000, alpha=alpha, random_state=8)
    dist = np.abs(X @ w + b) / np.linalg.norm(w)
    truth = np.where(X @ w + b >= 0, 1, -1)
    cert = ~res.abstained
    assert np.all(res.radii <= dist)
    assert np.all(res.labels[cert] == truth[cert])
    near = cert & (dist < 2 * sigma)
    assert near.sum() >= 20 and np.mean(res.radii[near] / dist[near]) > 0.6


def test_radius_monotone_in_nA():
    """Deterministic core: pABar and R are nondecreasing in nA (strictly where certified); abstain iff
    pABar <= 1/2 (the paper's box)."""
    n = 1000
    nA = np.arange(n + 1)
    counts = np.stack([nA, n - nA], axis=1)
    counts0 = np.tile([[10, 0]], (n + 1, 1))                       # selection always picks class 0
    cA, radius, pABar, nA_out, certified = certify_from_counts(counts0, counts, sigma=1.0, alpha=1e-3)
    assert np.all(cA == 0) and np.array_equal(nA_out, nA)
    assert np.all(np.diff(pABar) > 0) and np.all(np.diff(radius) >= 0)
    assert np.all(np.diff(radius[certified]) > 0)
    assert np.array_equal(certified, pABar > 0.5) and np.all(radius[~certified] == 0)
    assert certified[-1] and not certified[n // 2 + 10]


def test_selection_and_estimation_samples_are_independent():
    """The n0 selection rows and the n estimation rows are different noise draws."""
    rec = _Recorder(lambda Z: (Z[:, 0] > 0).astype(int), keep_rows=True)
    SmoothedClassifier(rec, 2, 1.0).certify(np.zeros((2, 3)), n0=5, n=20, alpha=0.01, random_state=3)
    assert rec.sizes == [10, 40]
    sel = {row.tobytes() for row in rec.rows[0]}
    assert not any(row.tobytes() in sel for row in rec.rows[1])


# --- PREDICT -----------------------------------------------------------------------------------------

def test_predict_abstains_on_fifty_fifty_classifier():
    """f(x) = [x_0 > 0] at x_0 = 0 is exactly 50/50. Each input returns a class w.p. <= alpha = 0.01;
    #non-abstentions <= Bin(100, 0.01), and P[Bin(100, 0.01) > 6] < 1e-4: failure probability < 1e-4."""
    X = np.zeros((100, 3))
    X[:, 1:] = np.random.default_rng(11).normal(size=(100, 2))
    res = SmoothedClassifier(lambda Z: (Z[:, 0] > 0).astype(int), 2, 1.0).predict(
        X, n=1000, alpha=0.01, random_state=12)
    assert stats.binom.sf(6, 100, 0.01) < 1e-4
    assert np.sum(~res.abstained) <= 6
    assert res.abstain_value == ABSTAIN and set(res.labels.tolist()) <= {ABSTAIN, 0, 1}


def test_predict_decides_when_clear():
    """x_0 = 2 sigma: P[f = 1] = Phi(2) = 0.977; with n = 1000 the p-value is < 1e-200, so PREDICT
    returns 1 on all 20 inputs (failure probability < 1e-100)."""
    X = np.tile([2.0, 0.0], (20, 1))
    res = SmoothedClassifier(lambda Z: (Z[:, 0] > 0).astype(int), 2, 1.0).predict(
        X, n=1000, alpha=1e-3, random_state=13)
    assert res.labels.tolist() == [1] * 20


def test_predict_from_counts_matches_binomial_test():
    counts = np.array([[500, 500, 0], [0, 520, 480], [30, 0, 70], [3, 1, 0]])
    cA, nA, nB, pvalue, decided = predict_from_counts(counts, alpha=0.01)
    assert cA.tolist() == [0, 1, 2, 0] and nA.tolist() == [500, 520, 70, 3] and nB.tolist() == [500, 480, 30, 1]
    ref = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(nA, nB), nA + nB, 0.5))
    assert np.allclose(pvalue, ref, rtol=1e-10)
    assert decided.tolist() == [False, False, True, False]


# --- sampling: bounded memory, determinism -----------------------------------------------------------

def test_bounded_memory_with_large_n():
    """n = 100,000: base_predict never sees more than batch_size rows; every draw is made exactly once."""
    rec = _Recorder(lambda Z: (Z[:, 0] > 0).astype(int))
    smooth = SmoothedClassifier(rec, 2, 0.25, batch_size=4096)
    res = smooth.certify(np.zeros((3, 4)), n0=100, n=100_000, alpha=1e-3, random_state=0)
    assert max(rec.sizes) <= 4096 and sum(rec.sizes) == 3 * (100 + 100_000)
    assert res.counts.sum(axis=1).tolist() == [100_000] * 3 and res.counts0.sum(axis=1).tolist() == [100] * 3


@pytest.mark.parametrize("batch_size", [1, 7, 100, 10_000])
def test_counts_do_not_depend_on_batch_size(batch_size):
    """Noise is one input-major stream, so batching (including batches spanning many inputs) is invisible."""
    w = np.array([1.0, -1.0, 0.5])
    X = np.random.default_rng(5).normal(size=(40, 3))
    ref = SmoothedClassifier(lambda Z: (Z @ w > 0).astype(int), 2, 0.5).sample_counts(X, 30, random_state=6)
    got = SmoothedClassifier(lambda Z: (Z @ w > 0).astype(int), 2, 0.5, batch_size=batch_size).sample_counts(
        X, 30, random_state=6)
    assert np.array_equal(ref, got)


def test_random_state_generator_and_int_agree():
    smooth = SmoothedClassifier(lambda Z: (Z[:, 0] > 0).astype(int), 2, 1.0)
    X = np.zeros((2, 2))
    a = smooth.certify(X, 10, 200, 0.01, random_state=4)
    b = smooth.certify(X, 10, 200, 0.01, random_state=np.random.default_rng(4))
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.counts0, b.counts0)


# --- +-1 labels and abstain value ---------------------------------------------------------------------

def test_pm1_labels_abstain_is_zero_and_minus_one_is_a_class():
    """labels=(-1, 1): outputs are -1/+1, abstention is 0, and a certified -1 is not an abstention."""
    smooth = SmoothedClassifier(lambda Z: np.full(len(Z), -1), 2, 1.0, labels=(-1, 1))
    res = smooth.certify(np.zeros((2, 3)), 10, 1000, 1e-3, random_state=0)
    assert res.abstain_value == 0 and smooth.abstain_value_ == 0
    assert res.labels.tolist() == [-1, -1] and not res.abstained.any() and np.all(res.radii > 0)
    half = SmoothedClassifier(lambda Z: np.where(Z[:, 0] > 0, 1, -1), 2, 1.0, labels=(-1, 1))
    p = half.predict(np.zeros((3, 2)), 50, 1e-6, random_state=0)   # |nA - nB| <= 50: p-value > 1e-6
    assert p.labels.tolist() == [0, 0, 0]
    c = half.certify(np.array([[0.0, 0.0], [3.0, 0.0], [-3.0, 0.0]]), 100, 2000, 1e-3, random_state=1)
    assert c.labels.tolist() == [0, 1, -1] and c.radii[0] == 0.0 and c.radii[1] > 0 and c.radii[2] > 0
    json.loads(json.dumps(c.to_dict()))


def test_abstain_value_rules():
    f = lambda Z: np.zeros(len(Z), dtype=int)
    X = np.zeros((1, 2))
    with pytest.raises(ValueError, match="both -1 and 0"):
        SmoothedClassifier(f, 3, 1.0, labels=(-1, 0, 1)).certify(X, 1, 10, 0.1)
    res = SmoothedClassifier(f, 3, 1.0, labels=(-1, 0, 1), abstain_value=2).certify(X, 1, 10, 0.1)
    assert res.abstain_value == 2 and res.labels.tolist() == [0]
    with pytest.raises(ValueError, match="is a class label"):
        SmoothedClassifier(f, 2, 1.0, abstain_value=1).certify(X, 1, 10, 0.1)


# --- bad input ---------------------------------------------------------------------------------------

_OK = {"n0": 10, "n": 100, "alpha": 0.01}


def _clf(**kw):
    args = {"base_predict": lambda Z: (Z[:, 0] > 0).astype(int), "num_classes": 2, "sigma": 1.0}
    args.update(kw)
    return SmoothedClassifier(**args)


@pytest.mark.parametrize("X,match", [
    (np.array([[0.0, np.nan], [1.0, 1.0]]), "NaN or infinite entries in rows \\[0\\]"),
    (np.array([[0.0, 1.0], [np.inf, 1.0]]), "NaN or infinite entries in rows \\[1\\]"),
    (np.zeros(3), "2-D array"),
    (np.zeros((2, 2, 2)), "2-D array"),
    (np.zeros((0, 2)), "non-empty"),
    ([["a", "b"]], "numeric"),
])
def test_bad_X(X, match):
    with pytest.raises(ValueError, match=match):
        _clf().certify(X, **_OK)
    with pytest.raises(ValueError, match=match):
        _clf().predict(X, 100, 0.01)


@pytest.mark.parametrize("kw,match", [
    ({"n0": 0}, "n0 must be >= 1"), ({"n": 0}, "n must be >= 1"), ({"n": -5}, "n must be >= 1"),
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"alpha": -0.1}, "alpha"),
    ({"alpha": float("nan")}, "alpha"), ({"alpha": 2}, "alpha"),
])
def test_bad_certify_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _clf().certify(np.zeros((1, 2)), **{**_OK, **kw})


@pytest.mark.parametrize("kw,match", [
    ({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"sigma": float("nan")}, "sigma"),
    ({"sigma": float("inf")}, "sigma"), ({"num_classes": 1}, "num_classes"), ({"batch_size": 0}, "batch_size"),
    ({"labels": (0, 1, 2)}, "labels must be 2 integers"), ({"labels": (1, 1)}, "distinct"),
    ({"labels": (0.5, 1.5)}, "labels must be 2 integers"),
])
def test_bad_constructor_parameters_raise_in_methods(kw, match):
    clf = _clf(**kw)                                                # __init__ only stores
    with pytest.raises(ValueError, match=match):
        clf.certify(np.zeros((1, 2)), **_OK)


def test_type_errors():
    with pytest.raises(TypeError, match="callable"):
        _clf(base_predict=None).certify(np.zeros((1, 2)), **_OK)
    with pytest.raises(TypeError, match="n must be an int"):
        _clf().certify(np.zeros((1, 2)), 10, 100.0, 0.01)


@pytest.mark.parametrize("base,kw,match", [
    (lambda Z: np.full(len(Z), 2), {}, "outside 0..1"),
    (lambda Z: np.full(len(Z), -1), {}, "outside 0..1"),
    (lambda Z: np.zeros(len(Z) + 1, dtype=int), {}, "must return shape"),
    (lambda Z: np.full(len(Z), 0.5), {}, "non-integer"),
    (lambda Z: np.full(len(Z), "a"), {}, "integer labels"),
    (lambda Z: np.zeros(len(Z), dtype=int), {"labels": (-1, 1)}, "not in labels"),
])
def test_bad_base_model_output(base, kw, match):
    with pytest.raises(ValueError, match=match):
        _clf(base_predict=base, **kw).certify(np.zeros((2, 2)), **_OK)


def test_float_labels_from_sign_are_accepted():
    res = _clf(base_predict=lambda Z: np.sign(Z[:, 0] + 10.0), labels=(-1, 1)).certify(np.zeros((1, 2)), **_OK)
    assert res.labels.tolist() == [1]


# --- certified accuracy table and plot ---------------------------------------------------------------

def test_certified_accuracy_table_hand_example():
    from defenses.certified_accuracy import certified_accuracy_table

    y_pred = [1, 0, ABSTAIN, 1, 2]
    radii = [0.5, 1.0, 0.0, 0.2, 2.0]
    y_true = [1, 0, 1, 0, 2]                 # row 3 wrong, row 2 abstained
    rows = certified_accuracy_table(y_pred, radii, y_true, [0.0, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [r["certified_accuracy"] for r in rows] == [0.6, 0.6, 0.6, 0.4, 0.2, 0.2, 0.0]
    assert rows[3] == {"radius": 1.0, "certified_accuracy": 0.4}
    pm1 = certified_accuracy_table([-1, 0, 1], [1.0, 0.0, 1.0], [-1, 1, -1], [0.0], abstain_value=0)
    assert pm1 == [{"radius": 0.0, "certified_accuracy": 1 / 3}]
    with pytest.raises(ValueError, match="abstain value"):
        certified_accuracy_table([-1, 1], [1.0, 1.0], [-1, 1], [0.0])     # -1 is a class here: say so
    with pytest.raises(ValueError, match="same length"):
        certified_accuracy_table([1, 0], [0.5], [1, 0], [0.0])
    with pytest.raises(ValueError, match="radii must be finite"):
        certified_accuracy_table([1], [np.nan], [1], [0.0])
    with pytest.raises(ValueError, match="radii_grid"):
        certified_accuracy_table([1], [1.0], [1], [-1.0])


def test_plot_certified_accuracy_writes_png(tmp_path):
    from defenses.certified_accuracy import plot_certified_accuracy

    rng = np.random.default_rng(0)
    curves = {s: (rng.random(50) * s * 4, rng.integers(0, 2, 50), rng.integers(0, 2, 50)) for s in (0.25, 0.5)}
    out = tmp_path / "cert.png"
    plot_certified_accuracy(curves, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.png"]          # no temp file left behind
    with pytest.raises(ValueError, match="at least one sigma"):
        plot_certified_accuracy({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
