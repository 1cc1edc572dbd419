"""Bad input gets the documented gRPC status (or exit 2) and a clear message; the server keeps serving."""

from __future__ import annotations

import os
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import ProverProcess, make_key, verifier_json

from protocol import convert
from protocol.prg import seed_commitment
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

LIMITS = ("--max-features", "40", "--max-rows", "5000", "--max-message-bytes", "200000", "--max-sessions", "60",
          "--max-steps", "2000", "--max-data-bytes", "100000", "--max-sessions-per-peer", "60")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key, _ = make_key(tmp_path_factory.mktemp("k"))
    with ProverProcess(key, *LIMITS) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the bad-input tests"


@pytest.fixture
def stub(server):
    ch = grpc.insecure_channel(server.address)
    yield pb_grpc.TrainerStub(ch)
    ch.close()


CFG = TrainConfig(model="linear", epochs=1, batch_size=4)


def _open(stub, cfg=CFG):
    r = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32),
                                               proof_kind="spot"))
    return r.session_id


def _rows(n=16, d=3, seed=0):
    return np.random.default_rng(seed).integers(-2**16, 2**16, (n, d + 1))


def _code(fn, *a):
    with pytest.raises(grpc.RpcError) as ei:
        fn(*a)
    return ei.value.code(), ei.value.details()


def _close(stub, sid):
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


def test_out_of_order_calls_fail_precondition(stub):
    sid = _open(stub)
    code, msg = _code(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=sid, training_seed=bytes(32), audit_commitment=bytes(32), spot_checks=1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "UploadData" in msg
    code, msg = _code(lambda r: list(stub.Train(r)), pb.TrainRequest(session_id=sid))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = _code(stub.Prove, pb.ProveRequest(session_id=sid, audit_seed=bytes(32), kind="spot"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    stub.UploadData(convert.rows_to_chunks(sid, _rows(), 8))
    code, _ = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(), 8))  # twice
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    _close(stub, sid)


def test_unknown_session_not_found(stub):
    code, msg = _code(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=b"x" * 16, training_seed=bytes(32), audit_commitment=bytes(32), spot_checks=1))
    assert code == grpc.StatusCode.NOT_FOUND and "unknown session" in msg
    code, _ = _code(stub.UploadData, convert.rows_to_chunks(b"y" * 16, _rows(), 8))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("mutate, code, words", [
    (lambda c: c.__setitem__("batch_size", 3), grpc.StatusCode.INVALID_ARGUMENT, "power of two"),
    (lambda c: c.__setitem__("model", "tree"), grpc.StatusCode.INVALID_ARGUMENT, "model must be"),
    (lambda c: c.__setitem__("epochs", 0), grpc.StatusCode.INVALID_ARGUMENT, "epochs"),
    (lambda c: c.__setitem__("lr_num", 0), grpc.StatusCode.INVALID_ARGUMENT, "learning rate"),
])
def test_bad_config_invalid_argument(stub, mutate, code, words):
    d = CFG.to_dict()
    mutate(d)
    got, msg = _code(stub.OpenSession, pb.OpenSessionRequest(config=pb.TrainingConfig(**d), client_nonce=os.urandom(32)))
    assert got == code and words in msg


def test_bad_nonce_and_proof_kind(stub):
    code, msg = _code(stub.OpenSession, pb.OpenSessionRequest(config=convert.config_to_proto(CFG), client_nonce=b"1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nonce" in msg
    code, msg = _code(stub.OpenSession, pb.OpenSessionRequest(config=convert.config_to_proto(CFG),
                                                              client_nonce=os.urandom(32), proof_kind="magic"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not offered" in msg


def test_upload_errors(stub):
    sid = _open(stub)
    bad = pb.DataChunk(session_id=sid, num_features=3, total_rows=4, num_rows=4, rows=b"\0" * 10)
    code, msg = _code(stub.UploadData, iter([bad]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in msg
    sid = _open(stub)
    zero = pb.DataChunk(session_id=sid, num_features=3, total_rows=0, num_rows=0, rows=b"")
    code, msg = _code(stub.UploadData, iter([zero]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "zero rows" in msg
    sid = _open(stub)
    code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(d=50), 4))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in msg
    sid = _open(stub)
    code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(n=6000, d=1), 1000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rows" in msg
    sid = _open(stub)
    code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(n=4000, d=3), 1000))  # 128 kB > 100 kB
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "data limit" in msg
    sid = _open(stub)
    big = _rows(n=16)
    big[0, 0] = 2**40
    code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, big, 8))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "fixed point" in msg
    sid = _open(stub, TrainConfig(model="linear", epochs=1000, batch_size=1))
    code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(n=100), 50))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "steps" in msg
    sid = _open(stub)
    chunks = list(convert.rows_to_chunks(sid, _rows(n=16), 8))
    code, msg = _code(stub.UploadData, iter(chunks[:1]))  # ends early
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "declared" in msg


def test_oversized_message_resource_exhausted(stub):
    sid = _open(stub)
    code, _ = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(n=4000, d=9), 4000))  # 320 kB > 200 kB
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_wrong_audit_seed_permission_denied_then_session_still_usable(stub):
    sid = _open(stub)
    stub.UploadData(convert.rows_to_chunks(sid, _rows(n=32), 16))
    audit = os.urandom(32)
    stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=os.urandom(32),
                                                     audit_commitment=seed_commitment(audit, sid), spot_checks=2))
    events = list(stub.Train(pb.TrainRequest(session_id=sid)))
    assert events[-1].WhichOneof("event") == "final"
    code, msg = _code(stub.Prove, pb.ProveRequest(session_id=sid, audit_seed=os.urandom(32), kind="spot"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "commitment" in msg
    resp = stub.Prove(pb.ProveRequest(session_id=sid, audit_seed=audit, kind="spot"))
    assert len(resp.openings) == 2


def test_session_limit_resource_exhausted(tmp_path):
    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--max-sessions", "2") as srv:
        stub = pb_grpc.TrainerStub(grpc.insecure_channel(srv.address))
        first = _open(stub)
        _open(stub)
        code, msg = _code(_open, stub)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "open sessions" in msg
        _close(stub, first)
        assert _open(stub)  # a closed session frees its slot


def test_server_keeps_serving(server, tmp_path):
    ch = grpc.insecure_channel(server.address)
    h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="vtrain.v1.Trainer"))
    assert h.status == health_pb2.HealthCheckResponse.SERVING
    rc, doc, err = verifier_json("train", "--server", server.address, "--data", "builtin:diabetes", "--model", "linear",
                                 "--epochs", "1", "--lr", "0.05", "--out", str(tmp_path / "t.json"),
                                 "--model-out", str(tmp_path / "m.json"))
    assert rc == 0 and doc["status"] == "verified", err


def test_idle_session_expires(tmp_path):
    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--idle-timeout", "1") as srv:
        ch = grpc.insecure_channel(srv.address)
        stub = pb_grpc.TrainerStub(ch)
        sid = _open(stub)
        time.sleep(2.2)
        code, msg = _code(stub.UploadData, convert.rows_to_chunks(sid, _rows(), 8))
        assert code == grpc.StatusCode.NOT_FOUND and "expired" in msg


@pytest.mark.parametrize("content, words", [
    ("a,b,y\n1,2,3\n4,5\n", "line 3"),
    ("a,b,y\n1,nan,3\n4,5,6\n", "not finite"),
    ("a,b,y\n1,inf,3\n", "not finite"),
    ("a,b,y\n1,x,3\n", "not a number"),
    ("a,b,y\n", "no data rows"),
    ("", "empty"),
])
def test_cli_rejects_bad_csv_with_exit_2(server, tmp_path, content, words):
    f = tmp_path / "d.csv"
    f.write_text(content)
    rc, _doc, err = verifier_json("train", "--server", server.address, "--data", str(f), "--target", "y",
                                 "--model", "linear", "--out", str(tmp_path / "t.json"), "--model-out",
                                 str(tmp_path / "m.json"))
    assert rc == 2 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "t.json").exists()


def test_cli_missing_target_lists_columns(server, tmp_path):
    rc, _, err = verifier_json("train", "--server", server.address, "--data", "builtin:diabetes", "--target", "nope",
                               "--model", "linear", "--out", str(tmp_path / "t"), "--model-out", str(tmp_path / "m"))
    assert rc == 2 and "not found" in err and "progression" in err


def test_cli_dimension_over_server_limit(server, tmp_path):
    # digits has 64 features > --max-features 40
    rc, _, err = verifier_json("train", "--server", server.address, "--data", "builtin:digits", "--model", "linear",
                               "--out", str(tmp_path / "t"), "--model-out", str(tmp_path / "m"))
    assert rc == 2 and "64 features, the trainer's limit is 40" in err and "--max-features 64" in err, err


def test_cli_connection_error(tmp_path):
    rc, doc, err = verifier_json("train", "--server", "127.0.0.1:1", "--data", "builtin:diabetes", "--model", "linear",
                                 "--out", str(tmp_path / "t"), "--model-out", str(tmp_path / "m"), "--timeout", "2")
    assert rc == 2 and "nothing is listening at 127.0.0.1:1" in err and doc["status"] == "error"


def test_cli_usage_errors(server, tmp_path):
    rc, _, err = verifier_json("train", "--server", server.address, "--data", "builtin:diabetes", "--model", "linear",
                               "--batch-size", "24", "--out", str(tmp_path / "t"), "--model-out", str(tmp_path / "m"))
    assert rc == 2 and "power of two" in err
    rc, _, err = verifier_json("audit", str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read" in err


def test_fixed_point_overflow_is_reported_not_wrapped(server, tmp_path):
    """A learning rate that blows the weights up: the trainer stops with OUT_OF_RANGE naming the step and the
    bound; the client exits 2 with that message; the server keeps serving."""
    rc, doc, err = verifier_json("train", "--server", server.address, "--data", "builtin:diabetes", "--model", "linear",
                                 "--lr", "50", "--weight-bits", "24", "--epochs", "1", "--out", str(tmp_path / "t"),
                                 "--model-out", str(tmp_path / "m"))
    assert rc == 2 and "OUT_OF_RANGE" in err and "at step" in err and "2^23" in err, err
    assert doc["status"] == "error" and not (tmp_path / "t").exists()


def test_proving_key_upload_errors(stub):
    """UploadProvingKey belongs to snark sessions after CommitRandomness; a malformed key is INVALID_ARGUMENT."""
    sid = _open(stub)  # a spot session
    stub.UploadData(convert.rows_to_chunks(sid, _rows(n=16), 8))
    stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=os.urandom(32),
                                                     audit_commitment=os.urandom(32), spot_checks=1))
    code, msg = _code(stub.UploadProvingKey, convert.key_to_chunks(sid, b"x" * 100, 50))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "snark" in msg
    r = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(CFG), client_nonce=os.urandom(32),
                                               proof_kind="snark"))
    sid = r.session_id
    code, msg = _code(stub.UploadProvingKey, convert.key_to_chunks(sid, b"x" * 100, 50))  # before the data
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    stub.UploadData(convert.rows_to_chunks(sid, _rows(n=16), 8))
    stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=os.urandom(32),
                                                     audit_commitment=os.urandom(32), spot_checks=1))
    code, msg = _code(stub.UploadProvingKey, convert.key_to_chunks(sid, b"x" * 100, 50))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "proving key" in msg
    code, msg = _code(lambda r: list(stub.Train(r)), pb.TrainRequest(session_id=sid))  # no key yet
    assert code == grpc.StatusCode.FAILED_PRECONDITION
