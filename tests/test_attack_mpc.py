"""Attacks on the two-party protocol's abort checks that no other test makes fire (docs/MPC.md sections 4, 5.1,
6 and 9): each check is removed in turn by a mutation and these tests fail.

* The coin toss (section 4): a party that, after seeing the other's seed, reveals another one than it
  committed to (to steer the training seed and with it the batch order and the sacrifice coefficients) is
  caught; so is a commitment of the wrong length.
* The dealer's input masks (section 5.1): a mask outside [0, 2^(K + kappa)) makes the party holding it abort
  naming the dealer, before its masked inputs leave it (a large mask would otherwise make the *other* party
  blame this one for out-of-range inputs).
* An opened truncation value beyond its bound (section 6): a party that adds a large error to its share of c
  is stopped before the bits of c are used.

In process (two threads, an in-process dealer), as tests/test_mpc_engine.py; the honest control runs the same
harness to the end.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from test_mpc_engine import CFG, data, plain

from mpc.cheating import Honest
from mpc.errors import MpcAbort
from mpc.field import P, add, const
from mpc.party import Frame, QueueChannel
from mpc.plan import Plan
from mpc.preprocessing import Generator, LocalPreprocessing
from mpc.secure_training import run_party


class Rewrite(QueueChannel):
    """One party's channel end that rewrites the blob of its outgoing frames with a given label."""

    def __init__(self, end: QueueChannel, label: str, rewrite):
        super().__init__(end.inbox, end.outbox, end.timeout)
        self.label, self.rewrite = label, rewrite

    def send(self, frame: Frame) -> None:
        if frame.label == self.label:
            frame = Frame(frame.label, frame.elements, self.rewrite(frame.blob), frame.abort)
        super().send(frame)


def _run(X, Y, n0, *, gen_cls=Generator, wrap=None, hooks=None):
    """Both parties in threads; ``wrap`` = (party, label, rewrite) tampers that party's frames; ``hooks`` =
    (party, hooks) a cheating strategy."""
    sys.setswitchinterval(1e-4)
    plan = Plan.build(n0, X.shape[0] - n0, X.shape[1], CFG)
    gen = gen_cls(os.urandom(32), plan)
    ends = list(QueueChannel.pair(timeout=60))
    if wrap is not None:
        ends[wrap[0]] = Rewrite(ends[wrap[0]], wrap[1], wrap[2])
    sid, res = os.urandom(16), {}

    def go(i):
        rows = slice(0, n0) if i == 0 else slice(n0, None)
        h = hooks[1] if hooks is not None and hooks[0] == i else None
        try:
            res[i] = run_party(i, ends[i], LocalPreprocessing(gen, i), plan, X[rows], Y[rows], sid, hooks=h)
        except MpcAbort as e:
            res[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return res, sid


def test_honest_control_runs_to_the_end():
    X, Y = data(32, 2, seed=11)
    res, sid = _run(X, Y, 16)
    assert not isinstance(res[0], Exception), res[0]
    assert res[0].theta == res[1].theta == plain(X, Y, CFG, sid, res[0])


@pytest.mark.parametrize("cheater", [1, 0])
def test_a_coin_other_than_the_committed_one_aborts_the_other_party(cheater):
    """The trainer (party 1) sees the client's coin before it sends its own: without the commitment it could
    choose the joint seed. Any other revealed coin aborts the honest party, whichever side cheats."""
    X, Y = data(32, 2, seed=12)
    chosen = os.urandom(32)
    res, _ = _run(X, Y, 16, wrap=(cheater, "coin", lambda blob: chosen))
    honest = res[1 - cheater]
    assert isinstance(honest, MpcAbort) and "coin-toss seed does not match its commitment" in str(honest), honest


def test_a_malformed_coin_commitment_aborts_the_other_party():
    X, Y = data(32, 2, seed=13)
    res, _ = _run(X, Y, 16, wrap=(1, "inputs", lambda blob: blob[:31]))  # the commitment rides with the inputs
    assert isinstance(res[0], MpcAbort) and "coin-toss" in str(res[0]), res[0]


class BigMask(Generator):
    """A dealer that gives party 0 one input mask of 2^(K + kappa), just outside the allowed range."""

    @property
    def R_words(self) -> np.ndarray:
        w = super().R_words.copy()
        bit = self.plan.input_bits
        w[0, 0] = [0, 0]
        w[0, 0, bit // 64] = np.uint64(1 << (bit % 64))
        return w


def test_an_input_mask_out_of_range_aborts_the_party_that_holds_it_naming_the_dealer():
    X, Y = data(32, 2, seed=14)
    res, _ = _run(X, Y, 16, gen_cls=BigMask)
    assert isinstance(res[0], MpcAbort) and "dealer's input masks are outside" in str(res[0]), res[0]
    assert isinstance(res[1], MpcAbort)  # told by party 0, or out of step: never a model


class HugeTruncationError(Honest):
    """Adds N/2 to its share of the first truncation opening of step 1 (c = x'' + r far outside its bound)."""

    def outgoing(self, label, shares):
        if label == "s1/z/c":
            shares = shares.copy()
            shares[0] = add(shares[0], const(P // 2))
        return shares


def test_an_opened_truncation_value_beyond_its_bound_aborts_before_its_bits_are_used():
    X, Y = data(32, 2, seed=15)
    res, _ = _run(X, Y, 16, hooks=(1, HugeTruncationError()))
    assert isinstance(res[0], MpcAbort) and "exceeds its bound (s1/z)" in str(res[0]), res[0]


def test_the_dealers_uniform_values_are_fresh_per_array_and_per_step():
    """Values the protocol needs independent (a triple's a and its sacrifice partner a2, the masks V and V2, M and
    M2, one step's and the next step's) never come out equal: a keystream reused across arrays or steps (say,
    after a change to how the dealer draws them) would make the sacrifice blind (a2 = a) or the masks repeat, and
    an opened x - a would then reveal x - x' of two secrets."""
    from mpc.field import to_ints

    plan = Plan.build(16, 16, 2, CFG)
    gen = Generator(os.urandom(32), plan)
    batch = np.arange(CFG.batch_size)
    names = [name for name, _ in plan.step_layout()]
    uniform = {"V", "V2", "M", "M2", "L1.a", "L1.b", "L1.a2", "L2.a", "L2.b", "L2.a2"}
    seen: dict[tuple, str] = {}
    for t in (1, 2):
        for name, values in zip(names, gen.step_values(t, batch)):
            if name in uniform:
                for v in to_ints(values.reshape(-1, values.shape[-1])):
                    assert seen.setdefault((int(v),), f"{name}@{t}") == f"{name}@{t}", \
                        f"the value {v} of {name} at step {t} was also drawn for {seen[(int(v),)]}"
