"""A client that stops reading its Train stream (README "Trainer service limits": a Train stream the client
stops reading is ended like a silent upload). Without that, the session's training would hold a work thread
and the training slot for as long as the client likes, blocked in a write. (The session itself, with its rows,
then stays until the idle timeout or CloseSession, as any session idle after its upload.)

Real server process, loopback. The client turns off gRPC's BDP probing so its flow-control window stays at
the HTTP/2 default (64 KiB): the server's writes then block once ~64 KiB of state leaves (32 bytes per step)
are unread, and 20,000 steps send 640 kB.
"""

from __future__ import annotations

import json
import os
import time

import grpc
import numpy as np
from procs import ProverProcess, make_key

from protocol import convert
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

CFG = TrainConfig(model="linear", epochs=1, batch_size=1, checkpoint_interval=100_000)


def test_a_train_stream_the_client_stops_reading_is_ended_and_the_slot_freed(tmp_path):
    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--receive-timeout", "2", "--json-logs", "--max-training", "1") as srv:
        ch = grpc.insecure_channel(srv.address, options=[("grpc.http2.bdp_probe", 0)])
        stub = pb_grpc.TrainerStub(ch)
        sid = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(CFG), client_nonce=os.urandom(32)),
                               timeout=5).session_id
        rows = np.random.default_rng(0).integers(-2**10, 2**10, (20_000, 3))
        stub.UploadData(convert.rows_to_chunks(sid, rows, 5000), timeout=30)
        stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=os.urandom(32),
                                                         audit_commitment=os.urandom(32), spot_checks=1), timeout=5)
        stream = stub.Train(pb.TrainRequest(session_id=sid), timeout=60)
        next(stream)  # one event, then the client reads nothing
        t0 = time.monotonic()
        time.sleep(6)  # > receive timeout (2 s) + the training itself
        code, details, got = None, "", 0
        try:
            for _ in stream:  # what was buffered before the server gave up, then the status
                got += 1
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "read nothing" in details, (code, details, got)
        assert time.monotonic() - t0 < 20
        # the training slot is free again: a second session trains at once (only one may train at a time)
        sid2 = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(
            TrainConfig(model="linear", epochs=1, batch_size=4)), client_nonce=os.urandom(32)), timeout=5).session_id
        stub.UploadData(convert.rows_to_chunks(sid2, rows[:64], 64), timeout=10)
        stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid2, training_seed=os.urandom(32),
                                                         audit_commitment=os.urandom(32), spot_checks=1), timeout=5)
        events = list(stub.Train(pb.TrainRequest(session_id=sid2), timeout=10))
        assert events and events[-1].HasField("final")
        ch.close()
        srv.stop()
        lines = [json.loads(ln) for ln in srv.stderr().splitlines() if ln.startswith("{")]
    refused = [ln for ln in lines if ln.get("event") == "refused" and ln.get("method") == "Train"]
    assert len(refused) == 1 and refused[0]["status"] == "DEADLINE_EXCEEDED", refused
