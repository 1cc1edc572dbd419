"""What a party sees of the other's masked values, tested where a leak would show: the low bits.

Claim (docs/MPC.md sections 4 and 5.1): the masked inputs e = x + 2^(K-1) + R a party receives are, whatever
the other party's rows x, within 2^-kappa of e's distribution for any other x, because R is uniform on
[0, 2^(K + kappa)). tests/test_mpc_views.py bins them by their leading 4 bits, where x (K bits under a
(K + kappa)-bit mask) has no visible effect, so a dealer handing out masks of 0 (no privacy at all) passes it.
Here they are binned by their lowest 4 bits (e mod 16), which a uniform mask makes uniform whatever x.

The same holds for the truncation openings c = x'' + r (docs/MPC.md section 6), r uniform with kappa bits
more than x'': the layer-1 openings (one per batch row, x'' from the row's prediction) binned by c mod 16 as
well.

Test: chi-square test of homogeneity of the low 4 bits between two sessions whose other party holds all-zero
rows or random rows, for each watcher and each class (masked inputs, truncation openings), at alpha = 1e-5 each
(a correct implementation fails one of the four with probability at most 4e-5). Negative controls: the same
statistic on sessions whose dealer gives input masks of 0, or truncation masks r of 0, must reject at the same
alpha (the other party's zero rows then show as constant low bits; observed p between 1e-20 and 1e-11).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import test_mpc_engine as eng
from scipy.stats import chi2_contingency

from mpc.preprocessing import Generator
from mpc.secure_training import run_party

ALPHA = 1e-5
N0 = N1 = 48
D = 2


class ZeroMasks(Generator):
    """A leaking dealer: every input mask is 0 (the masked inputs are then the inputs, shifted)."""

    @property
    def R_words(self) -> np.ndarray:
        return np.zeros_like(super().R_words)


class ZeroTruncationMasks(Generator):
    """A leaking dealer: the truncation masks r (bits and rhi of both layers) are 0, so c = x'' in the clear."""

    def step_values(self, t, batch):
        out = super().step_values(t, batch)
        for k, (name, _n) in enumerate(self.plan.step_layout()):
            if name.endswith((".bits", ".mono", ".rhi")):  # the monomials of zero bits are zero
                out[k] = np.zeros_like(out[k])
        return out


def _low_bits_seen(X, Y, watcher: int, generator=Generator, which: str = "inputs") -> np.ndarray:
    seen = []

    def spy(index, *a, **k):
        if index == watcher:
            k["view"] = seen
        return run_party(index, *a, **k)

    saved = eng.run_party, eng.Generator
    eng.run_party, eng.Generator = spy, generator
    try:
        res, _ = eng.run_pair(X, Y, N0, eng.CFG, seed=os.urandom(32))
    finally:
        eng.run_party, eng.Generator = saved
    assert not isinstance(res[0], Exception), res[0]
    if which == "inputs":
        values = next(v for label, v in seen if label == "inputs")
        assert len(values) == (N1 if watcher == 0 else N0) * (D + 1)
    else:
        values = [x for label, v in seen if label.endswith("/z/c") for x in v]  # layer 1: one per batch row
        assert len(values) >= 96
    return np.bincount([int(v) % 16 for v in values], minlength=16)


def _p_homogeneity(watcher: int, generator=Generator, which: str = "inputs") -> float:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    mine_X, mine_Y = rng.integers(-2**16, 2**16, size=(N0, D)), rng.integers(-2**16, 2**16, size=N0)
    others = [(np.zeros((N1, D), dtype=np.int64), np.zeros(N1, dtype=np.int64)),
              (rng.integers(-2**19, 2**19, size=(N1, D)), rng.integers(-2**19, 2**19, size=N1))]
    counts = []
    for oX, oY in others:
        X = np.vstack([oX, mine_X] if watcher == 1 else [mine_X, oX]).astype(np.int64)
        Y = np.concatenate([oY, mine_Y] if watcher == 1 else [mine_Y, oY]).astype(np.int64)
        counts.append(_low_bits_seen(X, Y, watcher, generator, which))
    table = np.array(counts)
    return chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue


@pytest.mark.parametrize("which", ["inputs", "truncation"])
@pytest.mark.parametrize("watcher", [0, 1])
def test_low_bits_of_masked_values_do_not_depend_on_the_other_partys_rows(watcher, which):
    assert _p_homogeneity(watcher, which=which) > ALPHA


@pytest.mark.parametrize("dealer, which", [(ZeroMasks, "inputs"), (ZeroTruncationMasks, "truncation")])
def test_negative_control_a_dealer_with_zero_masks_is_caught_by_this_statistic(dealer, which):
    assert _p_homogeneity(1, dealer, which) < ALPHA  # the statistic, at the alpha used above, sees the leak
