"""defenses/box_lines.py: the batched two-point lines of a box have the law of the general route
(defenses/correlated_sampling.correlated_lines_batch + defenses/line_nodes.best_pair_parameters), which the
mitigator's guarantee relies on (defenses/line_guarantee.py: the kept nodes are c iid chord draws chosen by
public coins; with c = 2 each of the two points is ~ Unif(box)).

Statistical tests, seeded (reproducible), each "passes" assertion at KS_LEVEL = 1e-3: if the sampler were right
each would fail with probability <= 1e-3; 46 such assertions, family-wise <= 4.6%.  The negative controls (the
uniform-on-the-chord law, exponent n - 1 replaced by 0, inside and outside the box; the first two of c draws
instead of the best pair) are refused at p < 1e-6 by the same statistics, so the tests have power against
exactly the mistakes they guard."""

import numpy as np
import pytest
from scipy import stats

from defenses import box_lines
from defenses.box_lines import box_pairs, off_boundary, pair_estimates
from defenses.correlated_sampling import Box, correlated_lines_batch, line_points
from defenses.line_nodes import best_pair_parameters
from defenses.oblivious import LocalPolynomialMitigator

KS_LEVEL = 1e-3
LINES = 3000
BOX = Box(np.array([-1.0, 0.0, 2.0, -3.0, 0.5]), np.array([1.0, 0.5, 4.0, 3.0, 0.75]))
INTERIOR = {"centre": (BOX.lo + BOX.hi) / 2, "near a corner": BOX.lo + 0.03 * (BOX.hi - BOX.lo)}
TARGETS = {**INTERIOR, "outside, one feature": np.where(np.arange(BOX.dim) == 1, BOX.hi + 0.4, BOX.lo + 0.3),
           "outside, three features": BOX.lo + np.array([-0.2, 1.3, 0.5, -0.05, 2.0]) * (BOX.hi - BOX.lo)}


def _fast(x, c, seed):
    """LINES lines through x (one target, K = LINES): points (LINES, 2, n) and nodes (LINES, 2)."""
    Z, s = box_pairs(BOX, x[None], LINES, c, np.random.default_rng(seed))  # Z (n, 2, K, 1), s (2, K, 1)
    return Z[..., 0].transpose(2, 1, 0), s[..., 0].T


def _general(x, c, seed):
    rng = np.random.default_rng(seed)
    sampler = lambda lo, hi, n, _k, g: best_pair_parameters(lo, hi, n, c, g)
    D, s = correlated_lines_batch(BOX, x[None], 2, LINES, rng, sampler=sampler)
    return line_points(x[None], D, s)[0], s[0]


def _by_node(Z, s):
    """Each pair's points in the order of their parameters s (the unordered pair is what has a law to compare)."""
    order = np.argsort(s, axis=1)
    return np.take_along_axis(Z, order[:, :, None], axis=1), np.take_along_axis(s, order, axis=1)


def _unit(points):
    return (points - BOX.lo) / (BOX.hi - BOX.lo)


def _lam(s):
    return (np.abs(s[:, 0]) + np.abs(s[:, 1])) / np.abs(s[:, 1] - s[:, 0])


@pytest.mark.parametrize("where", sorted(INTERIOR))
def test_two_iid_draws_are_each_uniform_on_the_box(where):
    """c = 2: the unordered pair is two iid draws of the correlated sampling lemma, so a point picked by a fair
    public coin is ~ Unif(box): every coordinate (scaled to [0, 1]) is U(0, 1); and both points lie on the line
    through x*, inside the box."""
    x = INTERIOR[where]
    Z, s = _fast(x, 2, seed=1)
    assert np.all(BOX.contains(Z.reshape(-1, BOX.dim)))
    direction = Z[:, 1] - x
    assert np.allclose((Z[:, 0] - x) * s[:, 1, None], direction * s[:, 0, None], atol=1e-12)  # collinear with x*
    pick = np.random.default_rng(2).integers(0, 2, LINES)
    U = _unit(Z[np.arange(LINES), pick])
    for j in (0, 2, 4):
        assert stats.kstest(U[:, j], "uniform").pvalue > KS_LEVEL, (where, j)


def test_uniform_on_the_chord_is_refused_by_the_same_statistics(monkeypatch):
    """Negative control: the naive node law (uniform on the chord: |s|^0 instead of |s|^(n-1)) over-weights the
    region near x* and fails the coordinate test by far."""
    right = box_lines._best_pair
    monkeypatch.setattr(box_lines, "_best_pair", lambda r_lo, r_hi, n, c, rng: right(r_lo, r_hi, 1, c, rng))
    Z, _ = _fast(INTERIOR["near a corner"], 2, seed=1)
    assert stats.kstest(_unit(Z[:, 0])[:, 0], "uniform").pvalue < 1e-6


def test_one_sided_uniform_on_the_chord_is_refused_by_the_same_statistics(monkeypatch):
    """Negative control for targets outside the box: the naive node law on one-sided chords differs visibly from
    the general route's."""
    right = box_lines._one_sided_pair
    monkeypatch.setattr(box_lines, "_one_sided_pair", lambda r_hi, r_lo, n, c, rng: right(r_hi, r_lo, 1, c, rng))
    x = TARGETS["outside, three features"]
    Zf, _ = _by_node(*_fast(x, 2, seed=3))
    Zg, _ = _by_node(*_general(x, 2, seed=4))
    assert stats.ks_2samp(Zf[:, 0, 0], Zg[:, 0, 0]).pvalue < 1e-6


@pytest.mark.parametrize("where", sorted(TARGETS))
@pytest.mark.parametrize("c", [2, 4])
def test_points_and_amplification_have_the_law_of_the_general_route(where, c):
    """Two-sample KS, batched route against the general route, same target (inside the box, or outside it: one-sided
    chords): each kept point's coordinates (the points of a pair in the order of their parameters) and the pair's
    amplification Lambda."""
    x = TARGETS[where]
    Zf, sf = _by_node(*_fast(x, c, seed=3))
    Zg, sg = _by_node(*_general(x, c, seed=4))
    for i in (0, 1):
        for j in (0, 3):
            assert stats.ks_2samp(Zf[:, i, j], Zg[:, i, j]).pvalue > KS_LEVEL, (where, c, i, j)
    assert stats.ks_2samp(_lam(sf), _lam(sg)).pvalue > KS_LEVEL


def test_first_two_of_four_draws_is_refused_by_the_same_statistics():
    """Negative control: the general route without the best-pair choice (the first two of 4 draws) has a visibly
    worse amplification law than the batched best pair."""
    x = INTERIOR["centre"]
    _, sf = _fast(x, 4, seed=3)
    _, s_two = _fast(x, 2, seed=5)
    assert stats.ks_2samp(_lam(sf), _lam(s_two)).pvalue < 1e-6


def test_exact_model_is_reconstructed_on_both_routes_in_one_chunk():
    """Targets inside and outside the box take the batched route, targets with a coordinate on a face the general
    one; an exact linear model is reconstructed exactly at every target, in the input order."""
    n = BOX.dim
    rng = np.random.default_rng(6)
    w = rng.standard_normal(n)
    f = lambda X: np.asarray(X) @ w + 0.5
    inside = BOX.sample(40, rng)
    outside = inside[:10] + 2.0 * (BOX.hi - BOX.lo)
    boundary = inside[10:15].copy()
    boundary[:, 1] = BOX.hi[1]
    targets = np.vstack([inside[15:25], outside, inside[25:], boundary])
    assert 0 < off_boundary(BOX, targets).sum() < len(targets)
    X_clean = BOX.sample(500, rng)
    for candidates in (None, 4):
        mit = LocalPolynomialMitigator(f, degree=1, body=BOX, n_lines=9, candidates=candidates, random_state=7)
        e, amp = mit.fit(X_clean, f(X_clean)).predict_with_bounds(targets)
        assert np.allclose(e, f(targets), rtol=0, atol=1e-9) and np.all(amp >= 1.0)


def test_pair_estimates_is_the_line_through_two_points():
    t0, t1 = np.array([-0.5, 0.2]), np.array([1.5, 0.9])
    y0, y1 = 3.0 - 2.0 * t0, 3.0 - 2.0 * t1
    est, lam = pair_estimates(t0, t1, y0, y1)
    assert np.allclose(est, 3.0) and np.allclose(lam, [1.0, 1.1 / 0.7])


def test_bad_candidate_count():
    with pytest.raises(ValueError, match="c >= 2"):
        box_pairs(BOX, INTERIOR["centre"][None], 3, 1, 0)
