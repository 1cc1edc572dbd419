"""The dealer service: consistent shares for both parties, each (session, party, phase) served once, bad
requests refused with the right status."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from dealer.client import DealerPreprocessing
from dealer.service import build_dealer_server
from mpc import field as F
from mpc.errors import MpcAbort
from mpc.plan import Plan
from protocol.prg import SeedContext
from protocol.training import TrainConfig
from protocol.wire import mpc_pb2, mpc_pb2_grpc

PLAN = Plan.build(12, 8, 2, TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=20, lr_shift=10))


@pytest.fixture(scope="module")
def dealer():
    server, port = build_dealer_server("127.0.0.1", 0)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_both_parties_get_consistent_authenticated_material_once(dealer):
    sid = os.urandom(16)
    pre = [DealerPreprocessing(dealer, sid, i, PLAN) for i in (0, 1)]
    inp = [p.inputs() for p in pre]
    alpha = F.add(inp[0].key.alpha, inp[1].key.alpha)
    R = F.add(inp[0].R.v, inp[1].R.v)
    assert np.array_equal(F.add(inp[0].R.m, inp[1].R.m), F.mul(R, alpha))
    assert np.array_equal(R[:12], F.words_to_elements(inp[0].own))
    assert np.array_equal(R[12:], F.words_to_elements(inp[1].own))
    ctx = SeedContext(sid, bytes(32), bytes(range(32)))
    for p in pre:
        p.start_steps(ctx)
    steps = [p.step(1) for p in pre]
    a, b, c = (F.add(steps[0][f"L1.{k}"].v, steps[1][f"L1.{k}"].v) for k in "abc")
    assert np.array_equal(c, F.mul(a, b))
    bits = F.to_ints(F.add(steps[0]["L1.bits"].v, steps[1]["L1.bits"].v))
    assert set(bits.tolist()) <= {0, 1}
    again = DealerPreprocessing(dealer, sid, 1, PLAN)
    with pytest.raises(MpcAbort, match="ALREADY_EXISTS"):
        again.inputs()
    for p in (*pre, again):
        p.close()


def test_bad_requests_are_refused(dealer):
    with grpc.insecure_channel(dealer) as ch:
        stub = mpc_pb2_grpc.DealerStub(ch)
        for req, code in [(mpc_pb2.DealerRequest(session_id=b"short", party=0, phase="inputs", plan=PLAN.to_bytes()),
                           grpc.StatusCode.INVALID_ARGUMENT),
                          (mpc_pb2.DealerRequest(session_id=os.urandom(16), party=0, phase="inputs", plan=b"{"),
                           grpc.StatusCode.INVALID_ARGUMENT),
                          (mpc_pb2.DealerRequest(session_id=os.urandom(16), party=0, phase="steps",
                                                 plan=PLAN.to_bytes(), data_root=b"x"),
                           grpc.StatusCode.INVALID_ARGUMENT)]:
            with pytest.raises(grpc.RpcError) as e:
                list(stub.Fetch(req, timeout=10))
            assert e.value.code() == code


def test_the_other_party_cannot_fetch_this_partys_steps_material(dealer):
    """The session id, plan, data root and training seed are public between the parties: without the ticket
    that came with party 1's inputs material, its steps material (which would reveal its input masks) is
    refused; with it, served once."""
    sid = os.urandom(16)
    trainer = DealerPreprocessing(dealer, sid, 1, PLAN)
    trainer.inputs()
    ctx = SeedContext(sid, bytes(32), bytes(range(32)))
    thief = DealerPreprocessing(dealer, sid, 1, PLAN)
    thief.start_steps(ctx)
    with pytest.raises(MpcAbort, match="PERMISSION_DENIED"):
        thief.step(1)
    trainer.start_steps(ctx)
    assert trainer.step(1)["V"].size == PLAN.d
    for p in (trainer, thief):
        p.close()


@pytest.mark.parametrize("phase", ["inputs", "steps"])
def test_a_dealer_that_falls_silent_is_given_up_after_the_partys_timeout(phase):
    """The party's silence limit (train-2pc --timeout, serve --receive-timeout) bounds its wait for the dealer, in
    either phase and whatever the size of the material (it used to be a fixed 600 s, or a deadline on the whole
    inputs stream)."""
    import threading
    import time
    from concurrent import futures

    from dealer.service import DealerServicer
    from mpc.errors import MpcUnavailable

    release = threading.Event()

    class Stalling(DealerServicer):
        def Fetch(self, request, context):
            for i, chunk in enumerate(super().Fetch(request, context)):
                if request.phase == phase and i == 1:
                    release.wait(60)  # silent after its first chunk
                yield chunk

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    mpc_pb2_grpc.add_DealerServicer_to_server(Stalling(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        pre = DealerPreprocessing(f"127.0.0.1:{port}", os.urandom(16), 1, PLAN, timeout=2)
        t0 = time.monotonic()
        with pytest.raises(MpcUnavailable, match="sent nothing for 2 s"):
            pre.inputs()
            pre.start_steps(SeedContext(b"\0" * 16, b"\0" * 32, b"\1" * 32))
            for t in range(1, PLAN.num_steps + 1):
                pre.step(t)
        assert time.monotonic() - t0 < 20
        pre.close()
    finally:
        release.set()
        server.stop(0)


def test_text_from_the_other_party_cannot_rewrite_the_terminal():
    """An abort reason or label chosen by the other party is shown with its control characters escaped."""
    from mpc.errors import peer_text
    from mpc.party import Frame, Party

    evil = "ok\n\x1b[1A\x1b[2K\rTRAINED (forged)"
    assert "\n" not in peer_text(evil) and "\x1b" not in peer_text(evil) and "\\x1b[1A" in peer_text(evil)
    assert peer_text("x" * 3000).endswith("...") and len(peer_text("x" * 3000)) == 2003
    for frame in (Frame("s1/F", abort=evil), Frame(evil)):
        with pytest.raises(MpcAbort) as e:
            Party._check_frame(frame, "s1/F")
        assert "\x1b" not in str(e.value) and "\n" not in str(e.value) and "\r" not in str(e.value), str(e.value)


def test_streams_nobody_reads_hold_no_thread_of_the_dealer():
    """Fetch streams whose caller never reads (each stops at gRPC's flow-control window) used to hold the
    synchronous server's threads for good; on grpc.aio they hold none: with 2 generation threads and 6 such
    streams, health and an honest party's fetch still answer at once."""
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    big = Plan.build(20_000, 20_000, 10, TrainConfig(model="linear", epochs=1, batch_size=32, lr_num=20,
                                                       lr_shift=10)).to_bytes()
    server, port = build_dealer_server("127.0.0.1", 0, workers=2)
    server.start()
    held = []
    try:
        for _ in range(6):
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            held.append((ch, mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(
                session_id=os.urandom(16), party=1, phase="inputs", plan=big))))
        time.sleep(3)
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=8)
        pre = DealerPreprocessing(f"127.0.0.1:{port}", os.urandom(16), 0, PLAN, timeout=8)
        assert pre.inputs().own.shape[0] == PLAN.n0
        pre.close()
        ch.close()
    finally:
        for c, call in held:
            call.cancel()
            c.close()
        server.stop(0).wait(10)
