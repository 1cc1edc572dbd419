"""Reed-Muller local correctors (interpolation and lines: Gemmell, Lipton, Rubinfeld, Sudan, Wigderson, STOC
1991; curves with Berlekamp-Welch: Gemmell, Sudan, IPL 1992) and the targeted line attack.

Statistical tests use T seeded trials and assert success counts >= the binomial quantile
binom.ppf(ALPHA, T, bound): if the decoder met its bound, the assertion would fail with probability
<= ALPHA = 1e-4 per test.  Setting of bench/experiments/exp4_reed_muller.py (exp4): q = 31, n = 3, d = 4,
m = 30."""

import math

import numpy as np
import pytest
from scipy import stats

from defenses.reed_muller import (
    ABSTAIN,
    SparsePolynomial,
    TableOracle,
    basic_correct,
    curve_correct,
    line_correct,
    plurality,
    point_index,
    random_corruption,
    targeted_line_attack,
    tolerated_error_rate,
)

ALPHA = 1e-4
Q, N, D, M = 31, 3, 4, 30
P31 = 2**31 - 1


@pytest.fixture(scope="module")
def table_oracle():
    f = SparsePolynomial.random(N, D, Q, n_terms=12, random_state=0)
    return f, TableOracle.from_polynomial(f)


def test_sparse_polynomial_evaluation():
    f = SparsePolynomial([[2, 0, 1], [0, 0, 0], [0, 3, 0]], [5, 7, 1], 31)
    X = np.array([[1, 2, 3], [30, 0, 5], [4, 4, 4]])
    want = [(5 * x**2 * z + 7 + y**3) % 31 for x, y, z in X]
    assert list(f(X)) == want and f.degree == 3
    big = SparsePolynomial([[1, 1]], [3], 2**61 - 1)
    assert int(big(np.array([[2**40, 2**40]], dtype=object))[0]) == 3 * 2**80 % (2**61 - 1)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((2, 2), dtype=np.int64))


def test_tolerated_rates_match_the_module_table():
    assert tolerated_error_rate("basic", 4) == pytest.approx(1 / 10)
    assert tolerated_error_rate("line", 4, 30) == pytest.approx((1 - 4 / 30) / 4)
    assert tolerated_error_rate("curve", 4, 30) == pytest.approx(0.5 - 4 / 30 - math.sqrt(2 / 30))
    with pytest.raises(ValueError):
        tolerated_error_rate("line", 4)
    with pytest.raises(ValueError):
        tolerated_error_rate("plane", 4, 30)


def test_plurality_ties_and_empty():
    assert plurality([3, 1, 3, 1]) == (1, 2)
    assert plurality([]) == (ABSTAIN, 0)


@pytest.mark.parametrize("p,n", [(31, 3), (P31, 20), (2**61 - 1, 4)])
def test_decoders_exact_on_exact_oracle(p, n):
    f = SparsePolynomial.random(n, D, p, n_terms=8, random_state=1)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = np.array([int(v) for v in rng.integers(0, min(p, 2**62), size=n)], dtype=object if p > 2**62 else None)
        truth = int(f(x[None])[0])
        r_b = basic_correct(f, x, p, D, n_repeats=3, random_state=rng)
        r_l = line_correct(f, x, p, D, M, random_state=rng)
        r_c = curve_correct(f, x, p, D, M, random_state=rng)
        assert (r_b.value, r_l.value, r_c.value) == (truth,) * 3
        assert (r_b.queries, r_l.queries, r_c.queries) == (3 * (D + 1), M, M)
        assert r_b.votes == 3 and r_l.n_decoded == 1


def test_oracle_sees_only_queried_points_and_counts_match(table_oracle):
    _, T = table_oracle
    seen = []

    def spy(points):
        seen.append(np.asarray(points).shape)
        return T(points)

    res = line_correct(spy, np.array([1, 2, 3]), Q, D, M, n_repeats=4, random_state=0)
    assert seen == [(4 * M, N)] and res.queries == 4 * M  # one batched call


def _success_count(decoder, oracle_for_trial, truth_of, T, rng, **kw):
    ok = 0
    for _ in range(T):
        oracle, x = oracle_for_trial(rng)
        ok += decoder(oracle, x, Q, D, random_state=rng, **kw).value == truth_of(x)
    return ok


@pytest.mark.parametrize("name,delta,bound", [
    ("basic", 1 / 15, 1 - 5 / 15),                                    # (d+1) delta union bound: 2/3
    ("line", 0.15, 1 - 2 * 0.15 * M / (M - D)),                        # Markov: 0.654
    ("curve", 0.15, 1 - 0.15 * 0.85 * M / ((0.5 - 0.15) * M - D) ** 2),  # Chebyshev: 0.909
])
def test_random_corruption_meets_bound(table_oracle, name, delta, bound):
    """Fresh independent corruption per trial (exp4's random rows); T = 150 trials; false failure <= 1e-4."""
    f, clean = table_oracle
    decoder = {"basic": basic_correct, "line": line_correct, "curve": curve_correct}[name]
    kw = {} if name == "basic" else {"m": M}
    T = 150

    def trial(rng):
        return random_corruption(clean, delta, rng), rng.integers(0, Q, size=N)

    ok = _success_count(decoder, trial, lambda x: int(f(x[None])[0]), T, np.random.default_rng(5), **kw)
    assert ok >= stats.binom.ppf(ALPHA, T, bound), (name, ok / T, bound)


def test_basic_plurality_amplifies(table_oracle):
    """K = 15 at delta = 0.02: success >= 1 - exp(-2K(1/2 - (d+1)delta)^2) = 0.9985 per x*."""
    f, clean = table_oracle
    rng = np.random.default_rng(6)
    T, K, delta = 60, 15, 0.02
    bound = 1 - math.exp(-2 * K * (0.5 - (D + 1) * delta) ** 2)
    bad = random_corruption(clean, delta, rng)
    ok = sum(basic_correct(bad, x, Q, D, n_repeats=K, random_state=rng).value == f(x[None])[0]
             for x in rng.integers(0, Q, size=(T, N)))
    assert ok >= stats.binom.ppf(ALPHA, T, bound)


def test_targeted_line_attack_defeats_lines_not_curves(table_oracle):
    """Targeted line attack (exp4), phi = 0.6: corrupt ceil((m-d)/2) = 13 points on 60% of the lines
    through x*.

    The line decoder then fails on every chosen line: success ~ 1 - phi = 0.4.  The curve decoder's
    points are pairwise independent and uniform (delta ~ 0.26 globally) and succeeds w.p. ~ 0.87
    (exp4's reference measurement: 0.873).  With T = 300: Pr[line >= 150 | p = 0.42] < 1e-4 and
    Pr[curve < 150 | p = 0.8] < 1e-20."""
    f, clean = table_oracle
    rng = np.random.default_rng(7)
    x = rng.integers(0, Q, size=N)
    attacked, delta = targeted_line_attack(clean, x, phi=0.6, n_corrupt=math.ceil((M - D) / 2), random_state=rng)
    assert 0.22 < delta < 0.30
    assert attacked(x[None])[0] == f(x[None])[0]  # x* itself is left correct: a naive query is fine
    truth, T = int(f(x[None])[0]), 300
    line_ok = sum(line_correct(attacked, x, Q, D, M, random_state=rng).value == truth for _ in range(T))
    curve_ok = sum(curve_correct(attacked, x, Q, D, M, random_state=rng).value == truth for _ in range(T))
    assert line_ok < T / 2 < curve_ok, (line_ok / T, curve_ok / T)
    assert line_ok <= stats.binom.isf(ALPHA, T, 0.42)


def test_line_decoder_abstains_when_every_line_is_attacked(table_oracle):
    _, clean = table_oracle
    x = np.array([4, 5, 6])
    attacked, _ = targeted_line_attack(clean, x, phi=1.0, n_corrupt=13, random_state=1)
    res = line_correct(attacked, x, Q, D, M, n_repeats=5, random_state=2)
    assert res.n_decoded <= 5 and (res.value == ABSTAIN) == (res.n_decoded == 0)


def test_point_index_round_trip():
    grid = np.indices((5, 5)).reshape(2, -1).T
    assert list(point_index(grid, 5)) == list(range(25))


def test_decoder_validation(table_oracle):
    _, T = table_oracle
    x = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="p - 1"):
        line_correct(T, x, Q, D, 31)
    with pytest.raises(ValueError, match=">= 9"):
        curve_correct(T, x, Q, D, 8)
    with pytest.raises(ValueError, match="1-D integer"):
        basic_correct(T, np.array([0.5, 1.0, 2.0]), Q, D)
    with pytest.raises(TypeError):
        basic_correct("not callable", x, Q, D)
    with pytest.raises(ValueError, match="p >= d"):
        basic_correct(T, x, 5, 4)
    with pytest.raises(ValueError, match="n_repeats"):
        basic_correct(T, x, Q, D, n_repeats=0)
    with pytest.raises(ValueError, match="oracle returned"):
        basic_correct(lambda z: np.zeros(3), x, Q, D)
