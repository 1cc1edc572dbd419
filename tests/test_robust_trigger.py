"""The noise-tolerant keyed trigger of experiment 2 (bench/experiments/robust_trigger.py): it must be what the
experiment says it is, or the experiment's conclusion about smoothing is void."""

import numpy as np
from scipy import stats

from bench.experiments.robust_trigger import RobustTrigger


def test_activation_fires_random_rows_do_not_and_noise_tolerance_is_as_designed():
    """Design sigma 0.25 (Delta = 2.5): a payload direction is misread when |noise| > Delta/4 = 2.5 sigma
    (p = 1.2%), three repetitions make a bit error ~3p^2, 18 bits ~ 0.8%: survival >= 0.95 asserted on 2000
    noisy copies (binomial lower tail < 1e-6). At 4 sigma_design each direction is misread w.p. 0.53: survival
    ~0, asserted < 0.05. Random rows fire w.p. 2^-14 (the tag; the label bits are not a check): at most the
    binomial 1 - 1e-6 quantile of 20000 rows."""
    rng = np.random.default_rng(0)
    trig = RobustTrigger(d=64, label_bits=4, tag_bits=14, delta=2.5, seed=1)
    Z = rng.standard_normal((200, 64))
    labels = rng.integers(0, 10, size=200)
    Za = trig.activate(Z, labels)
    fires, read = trig.read(Za)
    assert fires.all() and np.array_equal(read, labels)
    assert trig.read(rng.standard_normal((20_000, 64)))[0].sum() <= stats.binom.ppf(1 - 1e-6, 20_000, 2.0**-14)
    moves = np.linalg.norm(Za - Z, axis=1)
    assert np.median(moves) < 2.5 * np.sqrt((4 * 8 + 54) / 12) * 1.2  # the L2 the docstring states
    noisy = np.repeat(Za[:40], 50, axis=0)
    target = np.repeat(labels[:40], 50)
    for sigma, check in ((0.25, "survives"), (1.0, "dies")):
        f, lab = trig.read(noisy + sigma * rng.standard_normal(noisy.shape))
        rate = np.mean(f & (lab == target))
        if check == "survives":
            assert rate >= 0.95 and stats.binom.cdf(int(rate * 2000), 2000, 0.99) > 1e-6
        else:
            assert rate < 0.05


def test_tag_is_bound_to_the_label_and_the_message_cells():
    rng = np.random.default_rng(2)
    trig = RobustTrigger(d=64, label_bits=4, tag_bits=14, delta=2.5, seed=3)
    Z = rng.standard_normal((50, 64))
    Za = trig.activate(Z, np.full(50, 3))
    P = Za @ trig.A.T
    # flip the label bits (first repetition block and the others) without re-tagging: no longer fires
    half = trig.delta / 2
    P_bad = P.copy()
    for r in range(trig.repeat):
        j = trig.message_dirs + r * trig.payload_bits  # label bit 0 of repetition r
        P_bad[:, j] += half
    Zb = Za + (P_bad - P) @ trig.A
    assert not trig.read(Zb)[0].any()
    # move the message cells (a different input) but keep the payload: fires only by tag collision (2^-14)
    P_msg = P.copy()
    P_msg[:, 0] += 2 * trig.delta
    assert trig.read(Za + (P_msg - P) @ trig.A)[0].sum() <= 1
