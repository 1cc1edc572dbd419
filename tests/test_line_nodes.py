"""defenses/line_nodes.py: the best-conditioned pair drawn without the candidates it drops has the same law as
drawing all c candidates and keeping the pair with the smallest Lambda (defenses/line_guarantee.py relies on
the kept nodes being c iid draws from the chord law, chosen by public coins).

Two-sample KS tests at KS_LEVEL = 1e-3 each (6 assertions over 3 chord shapes x 2 statistics: family-wise
<= 0.6% if the sampler were right; seeded, hence reproducible).  The negative control (keeping the first two
draws instead of the best pair) is refused at p < 1e-6."""

import numpy as np
import pytest
from scipy import stats

from defenses.correlated_sampling import sample_chord_parameters
from defenses.line_nodes import barycentric_weights_at_zero, best_nodes, best_pair_parameters

KS_LEVEL = 1e-3
N = 4000


def _lam(pair):
    return np.abs(barycentric_weights_at_zero(pair)).sum(axis=1)


@pytest.mark.parametrize("lo,hi,n,c", [(-0.7, 1.3, 4, 4), (-3.0, 0.2, 10, 4), (0.4, 2.0, 3, 6)])
def test_best_pair_has_the_law_of_best_of_c_draws(lo, hi, n, c):
    t_lo, t_hi = np.full(N, lo), np.full(N, hi)
    fast = best_pair_parameters(t_lo, t_hi, n, c, np.random.default_rng(1))
    slow = best_nodes(sample_chord_parameters(t_lo, t_hi, n, c, np.random.default_rng(2)), 1)
    assert fast.shape == (N, 2) and np.all((fast >= lo) & (fast <= hi) & (fast != 0))
    # the kept nodes (sorted within the pair) and the pair's amplification Lambda
    assert stats.ks_2samp(np.sort(fast, axis=1)[:, 0], np.sort(slow, axis=1)[:, 0]).pvalue > KS_LEVEL
    assert stats.ks_2samp(_lam(fast), _lam(slow)).pvalue > KS_LEVEL


def test_keeping_any_two_draws_is_not_the_best_pair():
    """Negative control: the first two of the c draws have a visibly worse Lambda law."""
    t_lo, t_hi = np.full(N, -0.7), np.full(N, 1.3)
    fast = best_pair_parameters(t_lo, t_hi, 4, 4, np.random.default_rng(1))
    first_two = sample_chord_parameters(t_lo, t_hi, 4, 4, np.random.default_rng(3))[:, :2]
    assert stats.ks_2samp(_lam(fast), _lam(first_two)).pvalue < 1e-6


def test_best_pair_rejects_bad_chords_and_counts():
    with pytest.raises(ValueError, match="finite"):
        best_pair_parameters(np.array([np.nan]), np.array([1.0]), 3, 4, 0)
    with pytest.raises(ValueError, match="c >= 2"):
        best_pair_parameters(np.array([-1.0]), np.array([1.0]), 3, 1, 0)
