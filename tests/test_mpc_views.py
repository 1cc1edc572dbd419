"""What each party sees does not depend on the other party's data.

Claim: every value opened to a party during training is either uniform over F_p (Beaver, matrix-triple
and sacrifice openings, masked by fresh dealer randomness) or a bounded value masked by a dealer mask with
kappa = 40 extra bits (the masked inputs e = x + R and the truncation openings c = x'' + r), whose
distribution is within 2^-40 of the mask's whatever the data. Refuted if the opened values of a class
differ in distribution between two sessions whose other party holds very different data, or if the
F_p-uniform class is not uniform.
Test: values are binned by their leading bits into 16 bins (value * 16 // range); a chi-square
test of homogeneity between the two sessions for each class, and a chi-square goodness-of-fit to uniform for
the F_p classes (the backward openings P = r - M, rho_M as a class of their own, the other F_p openings as
another); each at alpha = 1e-5: 6 tests per party and 2 parties, and the same again with the watching party
holding no rows, so a correct implementation fails this file's tests with probability at most 2.4e-4
(Bonferroni). Randomness comes from the OS (coin tosses), not a seed.
Negative control: a dealer with zero backward-pass masks (P = r - M opens the residuals in the clear) must be
rejected by the same procedure. It is, by the uniformity test of the P class (every such value falls in the
first or last bin: p below 1e-300). Pooled with the thousands of other F_p openings, as this test did before, those 2B
values per step were diluted: p ranged from 1e-11 to 4e-4 between runs, and the control failed about one
run in four.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare
from test_mpc_engine import run_pair

from mpc.field import KAPPA, P
from mpc.plan import Plan
from protocol.training import TrainConfig

ALPHA = 1e-5
CFG = TrainConfig(model="linear", epochs=2, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16, weight_bits=32)


def _views(X, Y, n0, watcher):
    """Run a session recording the opened values seen by party ``watcher``."""
    import mpc.secure_training as st

    seen = []
    orig = st.run_party

    def spy(index, *a, **k):
        if index == watcher:
            k["view"] = seen
        return orig(index, *a, **k)

    st_run = st.run_party
    try:
        import test_mpc_engine as eng

        eng.run_party = spy
        res, _ = run_pair(X, Y, n0, CFG, seed=os.urandom(32))  # fresh dealer randomness per session
    finally:
        eng.run_party = st_run
    assert not isinstance(res[0], Exception), res[0]
    return seen


def _classes(seen, plan):
    uniform, uniform_p, trunc, inputs = [], [], [], []
    L1, L2 = plan.layers()
    for label, vals in seen:
        if label == "inputs":
            inputs += [int(v) * 16 >> plan.input_bits for v in vals]
        elif label.endswith("/c"):
            layer = L1 if "/z/" in label else L2
            trunc += [min(15, int(v) * 16 >> (layer.kk + KAPPA)) for v in vals]
        elif label.endswith("/checks") or label == "output":
            continue  # always 0 when honest / the agreed output
        elif label.endswith("/P"):
            B = plan.batch_size  # r - M, rho_M (uniform), then the layer-1 range checks (0 when honest)
            uniform_p += [int(v) * 16 // P for v in vals[:2 * B]]
        elif label.endswith("/F"):
            d = plan.d  # w - V, rho_V (uniform), then the previous step's check values (0 when honest)
            uniform += [int(v) * 16 // P for v in vals[:2 * d]]
        else:
            uniform += [int(v) * 16 // P for v in vals]
    return {"uniform": np.bincount(uniform, minlength=16), "uniform_P": np.bincount(uniform_p, minlength=16),
            "trunc": np.bincount(trunc, minlength=16),
            "inputs": np.bincount([min(15, v) for v in inputs], minlength=16)}


def _pvalues(watcher, mine: int = 16, theirs: int = 16):
    """The test's p-values: homogeneity between the two sessions per class, then uniformity of the F_p class.
    ``mine``/``theirs``: the rows of the watcher and of the other party (either may be 0)."""
    rng = np.random.default_rng(7)
    d = 2
    n0, n1 = (mine, theirs) if watcher == 0 else (theirs, mine)
    mine_X = rng.integers(-2**16, 2**16, size=(mine, d))
    mine_Y = rng.integers(-2**16, 2**16, size=mine)
    other = [(np.zeros((theirs, d), dtype=np.int64), np.zeros(theirs, dtype=np.int64)),
             (rng.integers(-2**19, 2**19, size=(theirs, d)), rng.integers(-2**19, 2**19, size=theirs))]
    plan = Plan.build(n0, n1, d, CFG)
    counts = []
    for oX, oY in other:
        X = np.vstack([oX, mine_X] if watcher == 1 else [mine_X, oX]).astype(np.int64)
        Y = np.concatenate([oY, mine_Y] if watcher == 1 else [mine_Y, oY]).astype(np.int64)
        counts.append(_classes(_views(X, Y, n0, watcher), plan))
    out = {}
    for cls in ("uniform", "uniform_P", "trunc", "inputs"):
        table = np.array([counts[0][cls], counts[1][cls]])
        table = table[:, table.sum(axis=0) > 0]
        assert table.sum() > 80
        out[cls] = chi2_contingency(table).pvalue
    out["uniformity"] = chisquare(counts[0]["uniform"] + counts[1]["uniform"]).pvalue
    out["uniformity_P"] = chisquare(counts[0]["uniform_P"] + counts[1]["uniform_P"]).pvalue
    return out


@pytest.mark.parametrize("watcher", [1, 0])
def test_opened_values_do_not_depend_on_the_other_partys_data(watcher):
    p = _pvalues(watcher)
    assert min(p.values()) > ALPHA, p


@pytest.mark.parametrize("watcher", [1, 0])
def test_a_party_without_rows_sees_only_uniform_or_masked_values(watcher):
    """The other party holds every row (docs/MPC.md section 1): what the party without rows sees still does not
    depend on those rows (same classes and test as above; 4 more tests per party at ALPHA)."""
    p = _pvalues(watcher, mine=0, theirs=32)
    assert min(p.values()) > ALPHA, p


@pytest.mark.parametrize("mine,theirs", [(16, 16), (0, 32)])
def test_the_views_test_flags_a_leaky_variant(monkeypatch, mine, theirs):
    """Negative control: a dealer whose backward-pass masks M (and so M2, Zp, Zp2) are zero still trains
    correctly, but P = r - M opens the residuals r = z - y in the clear. The same procedure must reject it."""
    from mpc.preprocessing import Generator

    orig = Generator.step_values

    def leaky(self, t, batch):
        vals = orig(self, t, batch)
        for i in (4, 5, 6, 7):  # M, M2, Zp = M R_b, Zp2 = M2 R_b (plan.step_layout order): consistent, all zero
            vals[i] = np.zeros_like(vals[i])
        return vals

    monkeypatch.setattr(Generator, "step_values", leaky)
    p = _pvalues(1, mine, theirs)
    assert min(p.values()) < ALPHA, p
