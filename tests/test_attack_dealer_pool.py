"""Anyone who can reach the dealer's port, against a real `vtrain-dealer serve` (loopback, bounded).

The dealer is a network service like the trainer: its `Fetch` streams are open to any peer. Ten `Fetch` calls for
the input material of fresh sessions (a 40,000-row plan each) whose caller never reads the stream hold the
dealer's worker threads; health and every honest party's `Fetch` must still answer promptly (the trainer's rule
for its own service: README "Trainer service limits"), or the dealer must refuse the abuser's extra streams."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import make_key
from test_mpc_e2e import DealerProcess

from mpc.plan import Plan
from protocol.training import TrainConfig
from protocol.wire import mpc_pb2, mpc_pb2_grpc

CFG = TrainConfig(model="linear", epochs=1, batch_size=32, lr_num=20, lr_shift=10)


def test_streams_nobody_reads_do_not_starve_health_or_honest_fetches(tmp_path):
    key, _ = make_key(tmp_path)
    big = Plan.build(20_000, 20_000, 10, CFG).to_bytes()
    small = Plan.build(8, 8, 2, TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=20, lr_shift=10)).to_bytes()
    with DealerProcess(key) as dealer:
        held = []
        try:
            for _ in range(10):  # never read: each stream stops at gRPC's flow-control window
                ch = grpc.insecure_channel(dealer.address)
                call = mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(
                    session_id=os.urandom(16), party=1, phase="inputs", plan=big))
                held.append((ch, call))
            time.sleep(3)
            ch = grpc.insecure_channel(dealer.address)
            t0 = time.monotonic()
            try:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=8)
                chunks = list(mpc_pb2_grpc.DealerStub(ch).Fetch(mpc_pb2.DealerRequest(
                    session_id=os.urandom(16), party=0, phase="inputs", plan=small), timeout=8))
            except grpc.RpcError as e:
                pytest.fail(f"the dealer did not answer an honest party ({e.code().name}) after "
                            f"{time.monotonic() - t0:.1f} s while 10 streams went unread")
            finally:
                ch.close()
            assert chunks
        finally:
            for ch, call in held:
                call.cancel()
                ch.close()
