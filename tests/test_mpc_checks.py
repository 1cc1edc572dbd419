"""The one-round MAC check (docs/MPC.md section 5.2) and what each named deviation is caught by (section 10).

Party 1's seed rides on the opening before the check, party 0 commits to sigma_0 and sees sigma_1, and opens
sigma_0 at the start of its next frame; party 1 checks that opening before it sends anything. Each test makes
one party deviate and asserts the honest party aborts with the documented reason and outputs nothing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_mpc_engine import CFG, data, run_pair

from mpc import field
from mpc.cheating import Honest, get_hooks
from mpc.errors import MpcAbort
from protocol.training import TrainConfig

CAUGHT_BY = {"bad-share": "MAC check failed", "bad-triple": "MAC check failed", "bad-truncation": "MAC check failed",
             "skip-step": "MAC check failed", "early-output": "out of step"}


@pytest.mark.parametrize("name", sorted(CAUGHT_BY))
def test_each_trainer_deviation_is_caught_by_the_documented_check(name):
    X, Y = data(32, 2, seed=3)
    res, _ = run_pair(X, Y, 16, CFG, hooks1=get_hooks(name))
    assert isinstance(res[0], MpcAbort), res[0]
    assert CAUGHT_BY[name] in str(res[0]), str(res[0])


class WrongOutputShare(Honest):
    """Adds 1 to its share of the first parameter when the model is opened (after every step's check)."""

    def outgoing(self, label, shares):
        if label == "output":
            shares = shares.copy()
            shares[0] = field.add(shares[0], field.const(1))
        return shares


@pytest.mark.parametrize("cheater", [0, 1])
def test_a_wrong_share_in_the_output_opening_is_caught_by_the_closing_check(cheater):
    """The last check covers the output opening; party 1 learns its outcome only in round mac-close."""
    X, Y = data(32, 2, seed=7)
    hooks = {"hooks0" if cheater == 0 else "hooks1": WrongOutputShare()}
    res, _ = run_pair(X, Y, 16, CFG, **hooks)
    honest = res[1 - cheater]
    assert isinstance(honest, MpcAbort) and "MAC check failed" in str(honest), honest


class LyingSigma(Honest):
    """Party 0 opens a sigma_0 other than the one it committed to (to make a failing check pass)."""

    def before_inputs(self, party):
        inner = party._mac_round

        def patched(*args):
            inner(*args)
            if party._sigma_open is not None:
                k = field.ELEMENT_BYTES
                sigma = field.add(field.decode(party._sigma_open[:k], 1), field.const(1))
                party._sigma_open = field.encode(sigma) + party._sigma_open[k:]

        party._mac_round = patched


def test_an_opening_of_sigma_that_does_not_match_its_commitment_makes_party_1_abort():
    X, Y = data(32, 2, seed=8)
    res, _ = run_pair(X, Y, 16, CFG, hooks0=LyingSigma())
    assert isinstance(res[1], MpcAbort) and "does not match its commitment" in str(res[1]), res[1]


class RegrindSeed(Honest):
    """Party 0 reveals a MAC-check seed u0 other than the one it committed to with the opening (what a party 0
    grinding u0 after seeing u1, to make the coefficients cancel its error, would have to do)."""

    def before_inputs(self, party):
        inner = party._mac_round
        party._mac_round = lambda mine, theirs: inner(os.urandom(32), theirs)


def test_a_mac_check_seed_that_does_not_match_its_commitment_makes_party_1_abort():
    X, Y = data(32, 2, seed=10)
    res, _ = run_pair(X, Y, 16, CFG, hooks0=RegrindSeed())
    assert isinstance(res[1], MpcAbort) and "MAC-check seed does not match its commitment" in str(res[1]), res[1]
    assert isinstance(res[0], MpcAbort), res[0]


@pytest.mark.parametrize("weight_bits", [32, 48])
def test_honest_runs_take_one_round_per_mac_check(weight_bits):
    cfg = TrainConfig(model="linear", epochs=2, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16,
                      weight_bits=weight_bits)
    X, Y = data(32, 2, seed=9)
    res, _ = run_pair(X, Y, 16, cfg)
    T = cfg.num_steps(32)
    from mpc.plan import Plan

    plan = Plan.build(16, 16, 2, cfg)
    L1, L2 = plan.layers()
    assert plan.defer_range1 == (weight_bits == 32)  # K = 48: layer 2's bound for an unchecked z is too wide
    # per step: F, mac, P, mac; per layer its c; layer 1's fold until LT_s is known (its low blocks: f = 16
    # bits in blocks of 4 -> 4 blocks, 2 rounds), then, unless deferred onto later openings, the rest of its
    # fold, the join and the zero test; layer 2's whole fold (4 rounds) and its zero test
    low_rounds = (L1.low_blocks - 1).bit_length()
    l1 = low_rounds if plan.defer_range1 else len(L1.fold_rounds()) + 1
    per_step = 4 + 2 + l1 + len(L2.fold_rounds()) + 1
    # before the steps: inputs, coin; after: checks, mac, output, mac, mac-close
    assert res[0].rounds == res[1].rounds == 2 + T * per_step + 5
    if weight_bits == 32:  # the defaults: 13 rounds per step (16 with layer 1's range check in rounds of its own)
        assert per_step == 13


class OutOfRangeInput(Honest):
    """Sends one masked input just past the bound 2^(K+kappa) + 2^K (a value |x| >= 2^(K-1) that would
    overflow the truncation bounds), or, with ``short``, a masked-input message one byte short."""

    def __init__(self, short: bool = False):
        self.short = short

    def before_inputs(self, party):
        inner = party.exchange_bytes

        def patched(label, data, blob=b""):
            if label == "inputs":
                words = np.frombuffer(data, dtype="<u8").copy()
                words[0], words[1] = 1 << 32, 1 << 8  # the integer 2^72 + 2^32 = 2^(K+kappa) + 2^K
                data = words.tobytes()[:-1] if self.short else words.tobytes()
            return inner(label, data, blob)

        party.exchange_bytes = patched


@pytest.mark.parametrize("short", [False, True])
def test_masked_inputs_out_of_range_or_malformed_make_the_other_party_abort(short):
    X, Y = data(32, 2, seed=11)
    res, _ = run_pair(X, Y, 16, CFG, hooks1=OutOfRangeInput(short))
    want = "malformed message" if short else "masked inputs are outside the allowed range"
    assert isinstance(res[0], MpcAbort) and want in str(res[0]), res[0]


class TamperAt(Honest):
    """Adds 1 to its share of one opened value: element ``index`` of its frame in round ``label``."""

    def __init__(self, label: str, index: int):
        self.label, self.index = label, index

    def outgoing(self, label, shares):
        if label == self.label:
            shares = shares.copy()
            shares[self.index] = field.add(shares[self.index], field.const(1))
        return shares


@pytest.mark.parametrize("label,index", [
    ("s1/P", -1),          # layer 1's fold, riding on P after LT_s is known
    ("s1/theta/c", -1),    # layer 1's join product, riding on layer 2's first opening
    ("s1/theta/lt0", -1),  # layer 1's zero test, riding on layer 2's first fold round
    ("s2/F", 2 * 2),       # its share of w1 (layer 1's range value of step 1), opened with step 2's F
])
@pytest.mark.parametrize("cheater", [0, 1])
def test_a_tampered_deferred_range_check_is_caught_by_a_mac_check_not_taken_for_an_overflow(label, index, cheater):
    """Layer 1's range check rides on later openings (docs/MPC.md section 8); a party that alters any of those
    values, or its share of w1, could hide an overflow or fake one: the MAC check on the next F round (which
    precedes both the decision on w1 and the next truncation opening) catches it."""
    X, Y = data(32, 2, seed=12)
    hooks = TamperAt(label, index)
    res, _ = run_pair(X, Y, 16, CFG, hooks0=hooks if cheater == 0 else None, hooks1=hooks if cheater == 1 else None)
    honest = res[1 - cheater]
    assert isinstance(honest, MpcAbort) and "MAC check failed" in str(honest), honest


class ExtraRows(Honest):
    """Declares its row count (possibly 0) but sends two more masked rows."""

    def inputs(self, masked):
        return masked + os.urandom(2 * 16 * 3)  # 2 rows of d + 1 = 3 values, 16 bytes each


@pytest.mark.parametrize("liar", [0, 1])
def test_a_party_declaring_no_rows_that_sends_masked_rows_makes_the_other_abort(liar):
    """The one party holding every row is the honest one; the other declared 0 rows (docs/MPC.md section 4)."""
    X, Y = data(32, 2, seed=13)
    n0 = 0 if liar == 0 else 32
    res, _ = run_pair(X, Y, n0, CFG, **{f"hooks{liar}": ExtraRows()})
    honest = res[1 - liar]
    assert isinstance(honest, MpcAbort), honest
    assert "the other party declared 0 rows but sent masked inputs for 2 rows" in str(honest), honest


@pytest.mark.parametrize("victim", [0, 1])
def test_a_party_whose_dealer_input_material_fails_tells_the_other_why(monkeypatch, victim):
    """A failure fetching the input material (before any frame is sent) still sends the abort frame: the other
    party stops at once with the reason, not after its timeout or as "the other party closed the session"."""
    import time

    from mpc.preprocessing import LocalPreprocessing

    orig = LocalPreprocessing.inputs

    def failing(self):
        if self.party == victim:
            raise MpcAbort("the dealer's input material has the wrong length (test)")
        return orig(self)

    monkeypatch.setattr(LocalPreprocessing, "inputs", failing)
    X, Y = data(32, 2, seed=14)
    t0 = time.monotonic()
    res, _ = run_pair(X, Y, 16, CFG)
    assert time.monotonic() - t0 < 30  # the channel's timeout is 60 s
    other = res[1 - victim]
    assert isinstance(res[victim], MpcAbort) and isinstance(other, MpcAbort), res
    assert "the other party aborted: the dealer's input material has the wrong length" in str(other), other
