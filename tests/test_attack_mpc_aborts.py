"""Attacks that fire the two-party engine's malformed-message aborts (docs/MPC.md sections 3, 4 and 5.1), in process.

Each test plays the misbehaving party (or dealer) at the message level and asserts that the honest party
aborts with the named reason (never a model):

* a party whose masked inputs are one value short or one value over what the plan says (a party lying about
  its row count sends exactly this): "expected N masked inputs of 16 bytes";
* a field element with a residue at or above its prime, sent by the other party in an opening or by the dealer
  in a step's material: "a field element is not reduced below its primes";
* a dealer whose input material for a party has the wrong length: "the dealer's input material has the wrong
  length";
* the trainer's handler whose pending read is cancelled (its event loop shutting its tasks down): "the session
  with the client was cancelled", at once, not after the receive timeout.

The same attacks against real processes are in tests/test_attack_mpc_wire.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from test_attack_mpc import Rewrite
from test_mpc_engine import CFG, data

from mpc.errors import MpcAbort, MpcOverflow
from mpc.party import Frame, QueueChannel
from mpc.plan import Plan
from mpc.preprocessing import Generator, LocalPreprocessing
from mpc.secure_training import run_party
from mpc.transport import LoopTransport


def unreduced(elements: bytes) -> bytes:
    """The first element's first residue set to 2^50 - 1 (every prime is below 2^50; docs/MPC.md section 2)."""
    return b"\xff" * 7 + bytes([elements[7] | 0x03]) + elements[8:]


class Tamper(Rewrite):
    """One party's channel end that rewrites whole outgoing frames with the given label (``Rewrite`` rewrites
    their blob only)."""

    def send(self, frame: Frame) -> None:
        QueueChannel.send(self, self.rewrite(frame) if frame.label == self.label else frame)


def _pair(n0: int = 16, n: int = 32, d: int = 2, *, gen_cls=Generator, tamper=None, seed: int = 21,
          timeout: float = 60, wrap=None):
    """Both parties in threads with an in-process dealer; ``tamper`` = (party, label, rewrite) or, with ``wrap``
    (a function of the channel end), (party, None, None); ``timeout``: how long a party waits for the other's next
    message. -> results."""
    sys.setswitchinterval(1e-4)
    X, Y = data(n, d, seed=seed)
    plan = Plan.build(n0, n - n0, d, CFG)
    gen = gen_cls(os.urandom(32), plan)
    ends = list(QueueChannel.pair(timeout=timeout))
    if tamper is not None:
        ends[tamper[0]] = wrap(ends[tamper[0]]) if wrap else Tamper(ends[tamper[0]], tamper[1], tamper[2])
    sid, res = os.urandom(16), {}

    def go(i):
        rows = slice(0, n0) if i == 0 else slice(n0, None)
        try:
            res[i] = run_party(i, ends[i], LocalPreprocessing(gen, i), plan, X[rows], Y[rows], sid)
        except (MpcAbort, MpcOverflow) as e:
            res[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return res


def _aborted(res, party: int, reason: str) -> None:
    got = res.get(party)
    assert isinstance(got, MpcAbort) and reason in str(got), got
    other = res.get(1 - party)
    assert isinstance(other, MpcAbort | MpcOverflow), other  # the cheater gets no model either


@pytest.mark.parametrize("cheater", [0, 1])
@pytest.mark.parametrize("delta", [-16, 16])
def test_masked_inputs_of_the_wrong_count_abort_the_other_party(cheater, delta):
    """One value short (a party holding one row fewer than it announced sends d + 1 values fewer) or one over."""
    def rewrite(f: Frame) -> Frame:
        body = f.elements[:delta] if delta < 0 else f.elements + f.elements[:delta]
        return Frame(f.label, body, f.blob, f.abort)

    res = _pair(tamper=(cheater, "inputs", rewrite))
    _aborted(res, 1 - cheater, "masked inputs")  # "expected 48 masked inputs of 16 bytes": 16 rows, d + 1 = 3
    assert "malformed message" in str(res[1 - cheater])


@pytest.mark.parametrize("cheater", [0, 1])
def test_an_unreduced_element_in_an_opening_aborts_the_other_party(cheater):
    """Step 1's first opening with a residue >= its prime: decoded as is it would not be the value the MAC covers,
    and reduced silently it would be another party's choice of representative; either way the decoder refuses."""
    res = _pair(tamper=(cheater, "s1/F", lambda f: Frame(f.label, unreduced(f.elements), f.blob, f.abort)))
    _aborted(res, 1 - cheater, "not reduced below its primes")


class UnreducedStep(Generator):
    """A dealer whose step-1 material for party 1 (v_1 || m_1, docs/MPC.md section 5.1) starts with an unreduced
    element."""

    def step_payloads(self, t, batch):
        p0, p1 = super().step_payloads(t, batch)
        return (p0, unreduced(p1)) if t == 1 else (p0, p1)


def test_an_unreduced_element_from_the_dealer_aborts_the_party_that_receives_it():
    res = _pair(gen_cls=UnreducedStep)
    _aborted(res, 1, "not reduced below its primes")


def _short_inputs(victim: int, cut: int):
    class ShortInputs(Generator):
        """A dealer whose first input-material chunk for ``victim`` is ``cut`` bytes short (negative: longer)."""

        def input_chunks(self, party):
            for i, chunk in enumerate(super().input_chunks(party)):
                if party == victim and i == 1:
                    chunk = chunk[:-cut] if cut > 0 else chunk + bytes(-cut)
                yield chunk

    return ShortInputs


@pytest.mark.parametrize("victim", [0, 1])
@pytest.mark.parametrize("cut", [16, 1, -16])
def test_input_material_of_the_wrong_length_aborts_the_party_that_receives_it(victim, cut):
    """Chunk 0 is the MAC key share (and party 0's share key); chunk 1 holds the first rows' material: one mask
    short, one byte short or one mask over."""
    # the victim stops before its first message, so the other party learns of it by silence (3 s here) or, over
    # gRPC, by the call ending (tests/test_attack_mpc_wire.py)
    res = _pair(gen_cls=_short_inputs(victim, cut), timeout=3)
    _aborted(res, victim, "the dealer's input material has the wrong length")


def test_a_cancelled_read_ends_the_trainers_session_at_once():
    """The trainer's session thread waits on a read run by the server's event loop (mpc.transport.LoopTransport):
    when the loop cancels that read (its tasks cancelled at shutdown), the session ends with a clear reason at
    once, rather than after the receive timeout (here 60 s) or with a traceback."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        tr = LoopTransport(loop, asyncio.Queue(), asyncio.Queue(), timeout=60)
        got: dict = {}

        def read():
            t0 = time.monotonic()
            try:
                got["frame"] = tr.recv_proto()
            except MpcAbort as e:
                got["error"] = e
            got["seconds"] = time.monotonic() - t0

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        async def pending() -> int:
            return len(asyncio.all_tasks()) - 1  # the read's task, not this one

        for _ in range(200):  # until the read is waiting on the loop (bounded: 10 s)
            if asyncio.run_coroutine_threadsafe(pending(), loop).result(5):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the read never started")

        async def cancel_all() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        reader.join(30)
        assert "error" in got, got
        assert "the session with the client was cancelled" in str(got["error"]), got
        assert got["seconds"] < 30, got  # the cancellation, not the 60 s timeout
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)


# ---- the other malformed-message aborts of docs/MPC.md section 9, each fired by the party it names ----

class AfterMac(QueueChannel):
    """Party 0's end that rewrites the first frame it sends after a ``mac`` round (whose blob opens sigma_0)."""

    def __init__(self, end: QueueChannel, rewrite):
        super().__init__(end.inbox, end.outbox, end.timeout)
        self.rewrite, self.armed = rewrite, False

    def send(self, frame: Frame) -> None:
        if self.armed and frame.label != "mac":
            frame, self.armed = self.rewrite(frame), False
        elif frame.label == "mac":
            self.armed = True
        super().send(frame)


def _blob(fn):
    return lambda f: Frame(f.label, f.elements, fn(f.blob), f.abort)


def _elements(fn):
    return lambda f: Frame(f.label, fn(f.elements), f.blob, f.abort)


def _flip_first(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


@pytest.mark.parametrize(("cheater", "label", "rewrite", "reason"), [
    (1, "s1/F", _elements(lambda e: e[:-1]), "element bytes not a multiple of 32"),
    (0, "s1/F", _elements(lambda e: e[:-32]), "field elements, got"),
    (1, "s1/z/c", _blob(lambda b: b + b"x"), "unexpected bytes with an opening"),
    (1, "s1/F", _blob(lambda b: b[:31]), "malformed MAC-check seed"),  # party 1's seed u1 rides on s1/F
    (0, "s1/F", _blob(lambda b: b[:31]), "malformed MAC-check seed"),  # party 0's commitment to u0
    (0, "mac", _blob(lambda b: b[:63]), "malformed MAC-check message"),  # u0 || commitment to sigma_0
    (1, "mac", _blob(lambda b: b[:31]), "malformed MAC-check message"),  # sigma_1
    (0, "mac", _blob(_flip_first), "MAC-check seed does not match its commitment"),  # another u0 than committed
])
def test_each_malformed_round_aborts_the_other_party(cheater, label, rewrite, reason):
    res = _pair(tamper=(cheater, label, rewrite), timeout=20)
    _aborted(res, 1 - cheater, reason)


@pytest.mark.parametrize(("rewrite", "reason"), [
    (_blob(lambda b: b[:40]), "malformed MAC-check opening"),  # sigma_0 || nonce cut short
    (_blob(_flip_first), "MAC-check opening does not match its commitment"),  # another sigma_0 than committed
])
def test_party_0_opening_another_sigma_than_it_committed_to_aborts_party_1(rewrite, reason):
    """Party 0 commits to sigma_0 in round ``mac`` and opens it at the start of its next frame; party 1 decides
    only then (docs/MPC.md section 5.2): an opening that is short or not the committed value is caught."""
    ends = {}

    def wrap(end):
        ends["0"] = AfterMac(end, rewrite)
        return ends["0"]

    res = _pair(tamper=(0, None, None), wrap=wrap, timeout=20)
    _aborted(res, 1, reason)


class NoShareKey(Generator):
    def input_chunks(self, party):
        for i, chunk in enumerate(super().input_chunks(party)):
            yield chunk[:32] if party == 0 and i == 0 else chunk  # the MAC key share without the share key


class EndsEarly(Generator):
    def input_chunks(self, party):
        chunks = list(super().input_chunks(party))
        yield from (chunks[:-1] if party == 1 else chunks)


class StepSharesForParty0(Generator):
    def step_payloads(self, t, batch):
        p0, p1 = super().step_payloads(t, batch)
        return (b"\x00" * 32, p1) if t == 1 else (p0, p1)


@pytest.mark.parametrize(("gen_cls", "victim", "reason", "timeout"), [
    (NoShareKey, 0, "no share key", 3),  # the victim stops before its first message: the other waits 3 s
    (EndsEarly, 1, "input material ended early", 3),
    (StepSharesForParty0, 0, "step shares it expands itself", 20),  # at step 1: the victim tells the other
])
def test_malformed_dealer_material_aborts_the_party_that_receives_it(gen_cls, victim, reason, timeout):
    res = _pair(gen_cls=gen_cls, timeout=timeout)
    _aborted(res, victim, reason)
