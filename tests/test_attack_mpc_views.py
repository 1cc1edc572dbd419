"""What a party sees of the other's masked inputs, tested where a leak would show: the low bits.

Claim (docs/MPC.md sections 4 and 5.1): the masked inputs e = x + 2^(K-1) + R a party receives are, whatever
the other party's rows x, within 2^-kappa of e's distribution for any other x, because R is uniform on
[0, 2^(K + kappa)). tests/test_mpc_views.py bins them by their leading 4 bits, where x (K bits under a
(K + kappa)-bit mask) has no visible effect, so a dealer handing out masks of 0 (no privacy at all) passes it.
Here they are binned by their lowest 4 bits (e mod 16), which a uniform mask makes uniform whatever x.

Test: chi-square test of homogeneity of e mod 16 between two sessions whose other party holds all-zero rows
or random rows, for each watcher, at alpha = 1e-5 each (a correct implementation fails with probability at
most 2e-5). Negative control: the same statistic on a session whose dealer gives masks of 0 must reject at
p < 1e-9 (with masks of 0, e mod 16 is constant for all-zero rows and spread for random rows).
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


def _low_bits_of_inputs_seen(X, Y, watcher: int, generator=Generator) -> np.ndarray:
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
    values = next(v for label, v in seen if label == "inputs")
    assert len(values) == (N1 if watcher == 0 else N0) * (D + 1)
    return np.bincount([int(v) % 16 for v in values], minlength=16)


def _p_homogeneity(watcher: int, generator=Generator) -> float:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    mine_X, mine_Y = rng.integers(-2**16, 2**16, size=(N0, D)), rng.integers(-2**16, 2**16, size=N0)
    others = [(np.zeros((N1, D), dtype=np.int64), np.zeros(N1, dtype=np.int64)),
              (rng.integers(-2**19, 2**19, size=(N1, D)), rng.integers(-2**19, 2**19, size=N1))]
    counts = []
    for oX, oY in others:
        X = np.vstack([oX, mine_X] if watcher == 1 else [mine_X, oX]).astype(np.int64)
        Y = np.concatenate([oY, mine_Y] if watcher == 1 else [mine_Y, oY]).astype(np.int64)
        counts.append(_low_bits_of_inputs_seen(X, Y, watcher, generator))
    table = np.array(counts)
    return chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue


@pytest.mark.parametrize("watcher", [0, 1])
def test_low_bits_of_the_masked_inputs_do_not_depend_on_the_other_partys_rows(watcher):
    assert _p_homogeneity(watcher) > ALPHA


def test_negative_control_a_dealer_with_zero_masks_is_caught_by_this_statistic():
    assert _p_homogeneity(1, ZeroMasks) < 1e-9
