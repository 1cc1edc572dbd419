"""Correlated sampling lemma (local mitigation of Goldwasser, Shafer, Vafa, Vaikuntanathan, STOC 2025;
statement and proof in defenses/correlated_sampling.py).

KS tests use one point per line (lines are independent), N = 1500 lines, and reject at
KS_LEVEL = 1e-3: each "passes" assertion would fail with probability 1e-3 if the sampler were exact
(about 20 such assertions: family-wise <= 2%; seeded, hence reproducible).  The negative control
asserts p < 1e-6 (the naive sampler is far from uniform, p ~ 0 at these sizes)."""

import numpy as np
import pytest
from scipy import stats

from defenses.correlated_sampling import (
    Ball,
    Box,
    OracleBody,
    correlated_points,
    naive_chord_points,
    sample_chord_parameters,
)

KS_LEVEL = 1e-3
N_LINES = 1500


def _ball_stats(points, ball):
    """(||z - c||/R)^n ~ U[0,1] and (z_1 - c_1 + R)/(2R) ~ Beta((n+1)/2, (n+1)/2) for z ~ Unif(ball)."""
    n = ball.dim
    r = np.linalg.norm(points - ball.center, axis=1) / ball.radius
    p_rad = stats.kstest(r**n, "uniform").pvalue
    u = (points[:, 0] - ball.center[0] + ball.radius) / (2 * ball.radius)
    p_coord = stats.kstest(u, stats.beta((n + 1) / 2, (n + 1) / 2).cdf).pvalue
    return p_rad, p_coord


def _x_star(n, dist, scale=1.0):
    x = np.zeros(n)
    x[0] = dist * scale
    return x


@pytest.mark.parametrize("n", [3, 20, 200])
@pytest.mark.parametrize("where", [0.0, 0.8, 1.5])  # centre, off-centre, outside (radius 1)
def test_ball_marginals_pass_ks(n, where):
    ball = Ball(np.full(n, 0.3), 1.0)
    x = ball.center + _x_star(n, where)
    cs = correlated_points(ball, x, k=3, n_lines=N_LINES, random_state=n * 10 + int(where * 10))
    for i in (0, 2):  # every point of the line is a valid D-sample, not only the first
        p_rad, p_coord = _ball_stats(cs.points[:, i, :], ball)
        assert min(p_rad, p_coord) > KS_LEVEL, (n, where, i, p_rad, p_coord)


@pytest.mark.parametrize("n", [3, 20])
def test_naive_chord_sampler_fails_ks(n):
    ball = Ball(np.zeros(n), 1.0)
    cs = naive_chord_points(ball, _x_star(n, 0.5), k=2, n_lines=N_LINES, random_state=1)
    p_rad, _ = _ball_stats(cs.points[:, 0, :], ball)
    assert p_rad < 1e-6


@pytest.mark.parametrize("n,x_val", [(3, 0.0), (3, 0.9), (50, 0.6), (5, 1.7)])  # 1.7: outside the box
def test_box_coordinates_uniform(n, x_val):
    box = Box(-1.0, 1.0, dim=n)
    x = np.full(n, x_val)
    cs = correlated_points(box, x, k=2, n_lines=N_LINES, random_state=7 + n)
    z = cs.points[:, 1, :]
    coords = range(n) if n <= 5 else (0, n // 2, n - 1)
    for j in coords:
        assert stats.kstest((z[:, j] + 1) / 2, "uniform").pvalue > KS_LEVEL, (n, x_val, j)
    # distance to x*, two-sample KS against iid Unif(box) draws
    ref = box.sample(N_LINES, np.random.default_rng(13))
    assert stats.ks_2samp(np.linalg.norm(z - x, axis=1), np.linalg.norm(ref - x, axis=1)).pvalue > KS_LEVEL


@pytest.mark.parametrize("n,x_val", [(3, 0.0), (50, 0.6)])
def test_naive_chord_sampler_fails_on_box(n, x_val):
    box = Box(-1.0, 1.0, dim=n)
    x = np.full(n, x_val)
    bad = naive_chord_points(box, x, k=2, n_lines=N_LINES, random_state=3).points[:, 1, :]
    ref = box.sample(N_LINES, np.random.default_rng(14))
    assert stats.ks_2samp(np.linalg.norm(bad - x, axis=1), np.linalg.norm(ref - x, axis=1)).pvalue < 1e-6


def test_oracle_body_hit_and_run_is_close_to_uniform():
    """Hit-and-run is only TV-approximate: same KS level, in low dimension with generous mixing."""
    n = 3
    ball = Ball(np.zeros(n), 1.0)
    body = OracleBody(lambda X: np.linalg.norm(X, axis=1) <= 1.0, np.zeros(n), 1.0, n_steps=60)
    cs = correlated_points(body, _x_star(n, 0.5), k=2, n_lines=600, random_state=4)
    assert min(_ball_stats(cs.points[:, 0, :], ball)) > KS_LEVEL


def test_oracle_body_chord_matches_ball_chord():
    rng = np.random.default_rng(5)
    n = 6
    ball = Ball(np.zeros(n), 2.0)
    body = OracleBody(ball.contains, np.zeros(n), 2.0, tol=1e-11)
    x_in, x_out = _x_star(n, 0.7), _x_star(n, 3.0)
    U = rng.standard_normal((20, n))
    lo_b, hi_b = ball.chord(x_in, U)
    lo_o, hi_o = body.chord(x_in, U)
    assert np.allclose(lo_o, lo_b, atol=1e-9) and np.allclose(hi_o, hi_b, atol=1e-9)
    diff = ball.sample(20, rng) - x_out  # directions that hit the ball from outside
    dist = np.linalg.norm(diff, axis=1)
    lo_b, hi_b = ball.chord(x_out, diff)
    lo_o, hi_o = body.chord(x_out, diff, t_inside=dist)
    assert np.all(lo_b > 0) and np.allclose(lo_o, lo_b, atol=1e-9) and np.allclose(hi_o, hi_b, atol=1e-9)
    with pytest.raises(ValueError, match="t_inside"):
        body.chord(x_out, diff)


def test_chord_endpoints_lie_on_the_boundary():
    rng = np.random.default_rng(6)
    n = 4
    ball, box = Ball(np.ones(n), 1.5), Box(np.zeros(n), np.arange(1, n + 1, dtype=float))
    x = np.full(n, 0.5)
    U = rng.standard_normal((50, n))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    lo, hi = ball.chord(x, U)
    for t in (lo, hi):
        assert np.allclose(np.linalg.norm(x + t[:, None] * U - 1.0, axis=1), 1.5)
    lo, hi = box.chord(x, np.vstack([U, np.eye(n)]))  # axis directions exercise u_j = 0
    Uf = np.vstack([U, np.eye(n)])
    for t in (lo, hi):
        z = x + t[:, None] * Uf
        gap = np.minimum(np.abs(z - box.lo), np.abs(z - box.hi)).min(axis=1)
        assert np.all(gap < 1e-12) and np.all((z >= box.lo - 1e-12) & (z <= box.hi + 1e-12))
    miss_lo, _ = Box(-1.0, 1.0, dim=2).chord(np.array([5.0, 5.0]), np.array([[1.0, 0.0]]))
    assert np.isnan(miss_lo[0])


@pytest.mark.parametrize("lo,hi,n", [(-0.7, 1.3, 4), (0.4, 2.0, 3), (-2.0, -0.5, 5), (-1.0, 0.0, 3)])
def test_chord_parameter_law(lo, hi, n):
    """t ~ |t|^(n-1) on [lo, hi]: KS against the exact CDF; t never 0 and inside the chord."""
    t = sample_chord_parameters(np.array([lo]), np.array([hi]), n, 4000, np.random.default_rng(8))[0]
    assert np.all((t >= lo) & (t <= hi) & (t != 0))

    def cdf(s):  # integral of |t|^(n-1) from lo to s, normalised
        F = lambda v: np.sign(v) * np.abs(v) ** n
        return (F(np.clip(s, lo, hi)) - F(lo)) / (F(hi) - F(lo))

    assert stats.kstest(t, cdf).pvalue > KS_LEVEL


def test_collinear_and_never_x_star():
    n = 7
    ball = Ball(np.zeros(n), 1.0)
    x = _x_star(n, 0.4)
    cs = correlated_points(ball, x, k=6, n_lines=300, random_state=9)
    rel = cs.points - x
    along = np.einsum("lkn,ln->lk", rel, cs.directions)
    perp = rel - along[..., None] * cs.directions[:, None, :]
    assert np.abs(perp).max() < 1e-12
    assert np.allclose(along, cs.t, atol=1e-12)
    assert np.all(np.linalg.norm(rel, axis=2) > 0)
    assert np.all((cs.t >= cs.chords[:, :1]) & (cs.t <= cs.chords[:, 1:]))


def test_conditionally_independent_given_line():
    """Map each t_i through its line's conditional CDF: F(t_1), F(t_2) iid U given the line, so their
    correlation over N lines is ~ N(0, 1/N); |r| < 4/sqrt(N) fails w.p. ~6e-5 if independent."""
    n = 5
    ball = Ball(np.zeros(n), 1.0)
    cs = correlated_points(ball, _x_star(n, 0.6), k=2, n_lines=3000, random_state=10)
    lo, hi = cs.chords[:, :1], cs.chords[:, 1:]
    F = lambda v: np.sign(v) * np.abs(v) ** n
    u = (F(cs.t) - F(lo)) / (F(hi) - F(lo))
    r = np.corrcoef(u[:, 0], u[:, 1])[0, 1]
    assert abs(r) < 4 / np.sqrt(3000)
    assert stats.kstest(u.ravel(), "uniform").pvalue > KS_LEVEL


@pytest.mark.parametrize("where", [0.95, 1.2])
def test_stable_at_n_10000(where):
    n = 10_000
    ball = Ball(np.zeros(n), 1.0)
    x = _x_star(n, where)
    cs = correlated_points(ball, x, k=5, n_lines=4, random_state=11)
    assert np.all(np.isfinite(cs.points)) and np.all(cs.t != 0)
    assert np.all(np.linalg.norm(cs.points, axis=2) <= 1.0 + 1e-9)
    box_cs = correlated_points(Box(-1.0, 1.0, dim=n), np.full(n, 0.9), k=5, n_lines=2, random_state=12)
    assert np.all(np.isfinite(box_cs.points)) and np.all(np.abs(box_cs.points) <= 1.0 + 1e-9)


def test_validation():
    ball = Ball(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="shape"):
        correlated_points(ball, np.zeros(4), k=2)
    with pytest.raises(ValueError, match="k must"):
        correlated_points(ball, np.zeros(3), k=0)
    with pytest.raises(ValueError, match="n_lines"):
        correlated_points(ball, np.zeros(3), k=2, n_lines=0)
    with pytest.raises(ValueError, match="radius"):
        Ball(np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        Box(1.0, 0.0, dim=2)
    with pytest.raises(ValueError, match="chords"):
        sample_chord_parameters(np.array([np.nan]), np.array([1.0]), 3, 2, 0)
    with pytest.raises(ValueError, match="interior_point"):
        OracleBody(ball.contains, np.full(3, 5.0), 1.0)
