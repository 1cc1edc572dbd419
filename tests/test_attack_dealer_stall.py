"""A dealer that stops sending mid-session (docs/MPC.md section 5.1; README "Trainer service limits").

The dealer serves each party's input material, then sends the first steps' material and falls silent. A trainer
that does not pin its dealers (`serve` without `--dealer`) takes the client's choice, so such a dealer is an
attacker's tool: each session it stalls holds one of the trainer's session slots. The client must give up
within its `--timeout` (exit 2 naming the dealer, no model), and the trainer must end its side within its
`--receive-timeout`, as it does for a silent client, not after a fixed 600 s."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest
from procs import ProverProcess
from test_mpc_e2e import _train, setup  # noqa: F401 - the module fixture (dealer, key, data)

from dealer.service import DealerServicer
from protocol.wire import mpc_pb2_grpc

STALL = 20  # seconds; the client has --timeout 5


class StallingDealer(DealerServicer):
    """Serves the input material and the first two steps, then sends nothing for STALL seconds (or until released)
    and ends the stream."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def Fetch(self, request, context):
        for i, chunk in enumerate(super().Fetch(request, context)):
            if request.phase == "steps" and i == 2:
                self.release.wait(STALL)
                return
            yield chunk


@pytest.fixture
def stalling_dealer():
    servicer = StallingDealer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    mpc_pb2_grpc.add_DealerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    class Address:
        address = f"127.0.0.1:{port}"

    yield Address
    servicer.release.set()
    server.stop(0)


def test_a_dealer_that_falls_silent_ends_both_sides_within_their_timeouts(setup, stalling_dealer):  # noqa: F811
    tmp, key, a, b, _ = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--receive-timeout", "3") as prover:
        t0 = time.monotonic()
        try:
            p, doc, out = _train(tmp, prover, stalling_dealer, a, "--timeout", "5")
        finally:
            waited = time.monotonic() - t0
        assert not out.exists()
        assert p.returncode == 2 and "dealer" in doc.get("error", ""), (p.returncode, doc, p.stderr[-500:])
        assert waited < STALL - 5, f"the client waited {waited:.0f} s on a silent dealer with --timeout 5"
        prover.stop()
        log = prover.stderr()
    assert "two-party session" in log and "aborted" in log and "crashed" not in log, log[-2000:]
