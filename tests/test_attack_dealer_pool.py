"""Anyone who can reach the dealer's port, against a real `vtrain-dealer serve` (loopback, bounded).

The dealer is a network service like the trainer: its `Fetch` streams are open to any peer. Ten `Fetch` calls for
the input material of fresh sessions (a 40,000-row plan each) whose caller never reads the stream hold the
dealer's worker threads; health and every honest party's `Fetch` must still answer promptly (the trainer's rule
for its own service: README "Trainer service limits"), or the dealer must refuse the abuser's extra streams."""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import BIN, make_key
from test_mpc_e2e import DealerProcess

from mpc.plan import Plan
from protocol.training import TrainConfig
from protocol.wire import mpc_pb2, mpc_pb2_grpc

CFG = TrainConfig(model="linear", epochs=1, batch_size=32, lr_num=20, lr_shift=10)


SMALL = Plan.build(8, 8, 2, TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=20, lr_shift=10)).to_bytes()


def _fetch(address: str, plan: bytes, party: int):
    ch = grpc.insecure_channel(address)
    return ch, mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(session_id=os.urandom(16), party=party,
                                                                       phase="inputs", plan=plan))


@contextmanager
def _unread(address: str, count: int):
    """``count`` Fetch streams of a 40,000-row plan that nobody reads (each stops at gRPC's flow-control
    window), cancelled at the end."""
    big = Plan.build(20_000, 20_000, 10, CFG).to_bytes()
    held = [_fetch(address, big, 1) for _ in range(count)]
    try:
        yield held
    finally:
        for ch, call in held:
            call.cancel()
            ch.close()


def test_streams_nobody_reads_do_not_starve_health_or_honest_fetches(tmp_path):
    key, _ = make_key(tmp_path)
    with DealerProcess(key, "--max-fetches-per-peer", "16") as dealer, _unread(dealer.address, 10):
        time.sleep(3)  # loopback: one address for all, so the per-peer cap is raised above the 10 abusers
        ch = grpc.insecure_channel(dealer.address)
        t0 = time.monotonic()
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=8)
            chunks = list(mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(
                session_id=os.urandom(16), party=0, phase="inputs", plan=SMALL), timeout=8))
        except grpc.RpcError as e:
            pytest.fail(f"the dealer did not answer an honest party ({e.code().name}) after "
                        f"{time.monotonic() - t0:.1f} s while 10 streams went unread")
        finally:
            ch.close()
        assert chunks


def test_streams_past_the_per_peer_cap_are_refused_with_a_retry_hint_and_unread_ones_are_cut_off(tmp_path):
    """The caps bound what unread streams can hold: a third stream from one address is refused at once with
    RESOURCE_EXHAUSTED and a retry hint; a stream whose caller reads nothing is ended after --send-timeout,
    which frees its slot for an honest fetch."""
    key, _ = make_key(tmp_path)
    with DealerProcess(key, "--max-fetches-per-peer", "2", "--send-timeout", "3") as dealer, \
            _unread(dealer.address, 2) as held:
        time.sleep(1.5)  # both streams are open and stuck at the flow-control window
        ch, call = _fetch(dealer.address, SMALL, 1)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        ch.close()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
        assert "limit 2 per client" in err.value.details()
        assert ("retry-after-ms", "2000") in tuple(err.value.trailing_metadata() or ())
        time.sleep(6)  # past --send-timeout 3 with nothing read
        ended = []
        for _ch, c in held:  # the dealer ends them: reading now gives the buffered chunks, then the status
            try:
                for _ in c:
                    pass
            except grpc.RpcError as e:
                ended.append(e.code())
                assert "read nothing for 3 s" in e.details(), e.details()
        assert ended == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2, ended
        ch = grpc.insecure_channel(dealer.address)
        try:
            chunks = list(mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(
                session_id=os.urandom(16), party=0, phase="inputs", plan=SMALL), timeout=15))
        finally:
            ch.close()
        assert chunks


@pytest.mark.parametrize("flag, value", [("--max-fetches", "0"), ("--max-fetches-per-peer", "0"),
                                         ("--send-timeout", "0")])
def test_limits_that_would_refuse_every_fetch_are_a_usage_error(flag, value):
    res = subprocess.run([str(BIN / "vtrain-dealer"), "serve", "--listen", "127.0.0.1:0", flag, value],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "must be at least 1, --send-timeout above 0" in res.stderr, res
    assert "Traceback" not in res.stderr and "listening on" not in res.stdout
