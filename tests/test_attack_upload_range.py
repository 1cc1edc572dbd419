"""A client's upload with an out-of-range value placed after the chunks that settle the table's width.

The trainer refuses data values outside [-2^(K-1), 2^(K-1)) (K = the session's weight bits; a value beyond
would overflow the fixed-point step, docs/PROTOCOL.md section 4). It may stop reading values once nothing a
later chunk holds can change that verdict (every w-byte value within the bound, and the width already minimal),
so the attack puts the bad value in the last chunk, after a first chunk that needs all w bytes. Real server
process; each case is refused (INVALID_ARGUMENT naming the range) or, where no w-byte value can be out of range,
accepted.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from procs import ProverProcess, make_key

from protocol import convert
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key, _ = make_key(tmp_path_factory.mktemp("k"))
    with ProverProcess(key, "--max-sessions-per-peer", "20") as srv:
        yield pb_grpc.TrainerStub(grpc.insecure_channel(srv.address))


# (weight bits K, width w, the value that settles w, the value hidden in the last chunk, refused?)
CASES = [
    (24, 4, -2**20, 2**23, True),        # w = 4 holds values beyond K = 24 bits: every chunk must be read
    (24, 4, 2**20, -2**23 - 1, True),
    (24, 4, 2**20, 2**23 - 1, False),    # the largest allowed
    (40, 8, 2**33, 2**39, True),         # w = 8 holds values beyond K = 40 bits
    (40, 8, -2**39, -2**39, False),
    (32, 4, -2**31, 2**31 - 1, False),   # every 4-byte value is within K = 32 bits
]


@pytest.mark.parametrize("K, w, settle, hidden, refused", CASES)
def test_a_value_out_of_range_in_a_later_chunk_is_refused(server, K, w, settle, hidden, refused):
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4, weight_bits=K)
    sid = server.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32)),
                             timeout=5).session_id
    rows = np.random.default_rng(K).integers(-100, 100, size=(64, 3))
    rows[0, 0] = settle  # the first chunk already needs all w bytes
    rows[-1, 1] = hidden  # the last chunk (of 4) carries the value to check
    chunks = list(convert.rows_to_chunks(sid, rows, 16, value_bytes=w))
    assert len(chunks) == 4
    if not refused:
        r = server.UploadData(iter(chunks), timeout=10)
        assert r.data_statement.statement
        return
    with pytest.raises(grpc.RpcError) as e:
        server.UploadData(iter(chunks), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "must lie in" in e.value.details(), e.value.details()
