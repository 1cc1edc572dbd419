"""Attack on the dealer's "each (session, party, phase) served once" rule (dealer/service.py, docs/MPC.md 5.1).

The dealer regenerates a session's material deterministically from (master secret, session id, plan), so the
only thing that stops a second copy of a party's input material is the record of what was served. A party
that knows the other's session id and plan (both public between the parties), e.g. a cheating trainer after
its session, floods the dealer with requests for fresh sessions (one "inputs" request of a one-row plan costs
~5 ms on loopback, so 100,000 take minutes) until the record of the client's claim is evicted, then asks for
the client's input material itself: it holds the client's input masks R, and with the masked inputs
e = x + 2^(K-1) + R it received in the session, the client's rows x in the clear.

The flood is applied to the servicer's record directly (what 100,001 Fetch calls for fresh sessions do to it);
the victim's and the thief's fetches go through a real gRPC server.
"""

from __future__ import annotations

import os
from concurrent import futures

import grpc
import numpy as np
import pytest

from dealer.client import DealerPreprocessing
from dealer.service import DealerServicer
from mpc.errors import MpcAbort
from mpc.plan import Plan
from protocol.training import TrainConfig
from protocol.wire import mpc_pb2_grpc

PLAN = Plan.build(12, 8, 2, TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=20, lr_shift=10))


@pytest.fixture
def dealer():
    servicer = DealerServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    mpc_pb2_grpc.add_DealerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


class _Refused(Exception):
    pass


class _Context:
    """What ``_claim`` needs of a gRPC context: ``abort`` raises, as grpc's does."""

    def abort(self, code, details):
        raise _Refused(f"{code}: {details}")


def test_a_flood_of_other_sessions_does_not_let_anyone_fetch_the_clients_masks_again(dealer):
    servicer, address = dealer
    sid = os.urandom(16)
    client = DealerPreprocessing(address, sid, 0, PLAN)
    masks = client.inputs().own  # the client's input masks, handed out once
    for _ in range(100_001):  # what 100,001 "inputs" requests for fresh sessions leave in the record
        try:
            servicer._claim(_Context(), os.urandom(16), 0, "inputs", servicer._master)
        except _Refused:
            break  # a dealer that refuses new sessions once its record is full: no claim was forgotten
    thief = DealerPreprocessing(address, sid, 0, PLAN)
    try:
        stolen = thief.inputs().own
    except MpcAbort as e:  # refused (ALREADY_EXISTS, or busy): the masks stay with the client
        assert "ALREADY_EXISTS" in str(e) or "RESOURCE_EXHAUSTED" in str(e), e
        return
    finally:
        client.close()
        thief.close()
    # served again: only harmless if the material is unrelated (e.g. the dealer's secret was rotated)
    assert not np.array_equal(stolen, masks), "the client's input masks were handed out a second time"
