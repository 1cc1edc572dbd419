"""A trainer under hostile clients (real `vtrain-prover serve` processes, loopback, bounded loops).

Each test reproduces one abuse against the server as it was before admission control and shows the fix:
empty sessions holding every slot, stalled streams starving health and GetInfo, calls blocking on a busy
session, memory amplification of uploads and proving keys, and refusals without a retry hint.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol import convert
from protocol.snark import keys_io
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

CFG = TrainConfig(model="linear", epochs=1, batch_size=4)
FAST = ("--upload-start-timeout", "1", "--receive-timeout", "1.5")


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("k"))[0]


def _stub(srv):
    return pb_grpc.TrainerStub(grpc.insecure_channel(srv.address))


def _open(stub, cfg=CFG, kind="spot"):
    return stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32),
                                                  proof_kind=kind), timeout=5).session_id


def _err(fn, *a, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*a, **kw)
    return ei.value


def _retry_hint_ms(e: grpc.RpcError) -> int | None:
    return next((int(v) for k, v in (e.trailing_metadata() or ()) if k == "retry-after-ms"), None)


def _rows(n, d=3, seed=0):
    return np.random.default_rng(seed).integers(-2**16, 2**16, (n, d + 1))


def _settled_rss(pid: int) -> int:
    """RSS once it stops moving (two reads 0.3 s apart within 1 MB; at most 4 s)."""
    last = _rss(pid)
    for _ in range(13):
        time.sleep(0.3)
        now = _rss(pid)
        if abs(now - last) < 1 << 20:
            return now
        last = now
    return last


def _rss(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


class Stall:
    """A client stream that sends ``first`` (maybe nothing) and then goes silent until released (at most 20 s)."""

    def __init__(self, method, first=()):
        self.release = threading.Event()
        self.first = list(first)
        self.future = method.future(self._gen())

    def _gen(self):
        yield from self.first
        self.release.wait(20)

    def code(self, timeout=15):
        try:
            self.future.result(timeout=timeout)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def _health_and_info_prompt(srv, what: str) -> None:
    ch = grpc.insecure_channel(srv.address)
    t0 = time.monotonic()
    h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="vtrain.v1.Trainer"), timeout=1)
    assert h.status == health_pb2.HealthCheckResponse.SERVING, what
    info = pb_grpc.TrainerStub(ch).GetInfo(pb.GetInfoRequest(), timeout=1)
    assert info.protocol_version == "vtrain/2", what
    listed = next(iter(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=1)))
    assert "vtrain.v1.Trainer" in [sv.name for sv in listed.list_services_response.service], what
    assert time.monotonic() - t0 < 2.0, what
    ch.close()


def test_empty_sessions_are_dropped_quickly_and_capped_per_peer(key):
    """Abuse 1: sessions opened with no data took every slot for the 900 s idle timeout."""
    with ProverProcess(key, *FAST, "--max-sessions-per-peer", "3", "--json-logs") as srv:
        stub = _stub(srv)
        for _ in range(3):
            _open(stub)
        e = _err(_open, stub)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "per client" in e.details()
        assert _retry_hint_ms(e) and "retry in" in e.details()
        time.sleep(2.5)  # upload-start timeout 1 s, reaped every 0.5 s
        sid = _open(stub)  # slots are free again
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=5)
        srv.stop()
        lines = [json.loads(line) for line in srv.stderr().splitlines() if line.startswith("{")]
    events = [ln.get("event") for ln in lines]
    assert events.count("session_start") == 4 and events.count("session_end") == 4 and "refused" in events
    ends = [ln for ln in lines if ln.get("event") == "session_end"]
    assert sum("no upload started" in ln["reason"] for ln in ends) == 3 and all(ln["peer"] == "127.0.0.1" for ln in ends)
    refused = next(ln for ln in lines if ln.get("event") == "refused")
    assert refused["method"] == "OpenSession" and refused["status"] == "RESOURCE_EXHAUSTED" and refused["peer"]


def test_stalled_streams_neither_starve_health_nor_live_forever(key):
    """Abuse 2: 8 UploadData streams that never send held all 8 worker threads; health and GetInfo timed out."""
    with ProverProcess(key, *FAST, "--max-streams", "12", "--max-streams-per-peer", "12",
                       "--max-sessions-per-peer", "20") as srv:
        stub = _stub(srv)
        stalls = [Stall(stub.UploadData) for _ in range(12)]  # more than any worker pool
        time.sleep(0.3)
        _health_and_info_prompt(srv, "with 12 silent upload streams")
        over = _err(stub.UploadData, iter([pb.DataChunk()]), timeout=5)  # the 13th: refused at once, with a hint
        assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_hint_ms(over)
        t0 = time.monotonic()
        codes = {s.code() for s in stalls}
        assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}, codes
        assert time.monotonic() - t0 < 6  # ended by the receive timeout (1.5 s), not by the client
        for s in stalls:
            s.release.set()
        _health_and_info_prompt(srv, "after the streams ended")
        assert srv.proc.poll() is None


def test_second_call_on_a_busy_session_fails_precondition_at_once(key):
    """Abuse 3: calls on a session whose upload is stalled waited on its lock (and held server threads)."""
    with ProverProcess(key, "--receive-timeout", "6", "--max-sessions-per-peer", "20") as srv:
        stub = _stub(srv)
        sid = _open(stub)
        stall = Stall(stub.UploadData, list(convert.rows_to_chunks(sid, _rows(64), 16))[:1])
        time.sleep(0.5)
        calls = [
            lambda: stub.CommitRandomness(pb.CommitRandomnessRequest(
                session_id=sid, training_seed=bytes(32), audit_commitment=bytes(32), spot_checks=1), timeout=2),
            lambda: stub.Prove(pb.ProveRequest(session_id=sid, audit_seed=bytes(32), kind="spot"), timeout=2),
            lambda: stub.UploadProvingKey(convert.key_to_chunks(sid, b"x" * 100, 50), timeout=2),
            lambda: list(stub.Train(pb.TrainRequest(session_id=sid), timeout=2)),
            lambda: stub.UploadData(convert.rows_to_chunks(sid, _rows(64), 16), timeout=2),
        ]
        for _ in range(2):  # several rounds of every call: none waits, none piles up
            for call in calls:
                t0 = time.monotonic()
                e = _err(call)
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
                assert "in progress" in e.details() and time.monotonic() - t0 < 1.5
        _health_and_info_prompt(srv, "while the session is busy")
        stall.release.set()
        assert stall.code() == grpc.StatusCode.INVALID_ARGUMENT  # the stream ended early: rows missing


def test_memory_budget_refuses_before_storing_and_a_stalled_upload_frees_its_memory(key):
    """Abuse 4: uploads held ~3.5x their size; nothing capped the total. Now a session reserves its peak
    (2x its rows plus states) before storing a byte; beyond the budget new work gets RESOURCE_EXHAUSTED with a
    retry hint; a stalled upload is ended and its memory released."""
    n, d, R = 400_000, 9, 26  # 32 MB of rows in leaves of 26 rows (2 KiB, as a client may choose): a reservation of ~68 MB
    with ProverProcess(key, "--receive-timeout", "6", "--memory-budget", str(120 << 20), "--max-rows", "1000000",
                       "--max-sessions-per-peer", "20") as srv:
        stub = _stub(srv)
        base = _rss(srv.proc.pid)
        cfg = TrainConfig(model="linear", epochs=1, batch_size=256)
        chunks_a = list(convert.rows_to_chunks(_open(stub, cfg), _rows(n, d), 50_000, R))
        a = Stall(stub.UploadData, chunks_a[:6])  # 24 MB sent, then silent
        grown = _settled_rss(srv.proc.pid) - base
        sid_b = _open(stub, cfg)
        e = _err(stub.UploadData, convert.rows_to_chunks(sid_b, _rows(n, d, 1), 50_000, R), timeout=10)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "memory budget" in e.details(), e.details()
        assert _retry_hint_ms(e) >= 1000
        # refused before its rows were kept: what grew is at most the 4 MB chunk it read and transport buffers
        assert _rss(srv.proc.pid) - base < grown + (16 << 20)
        assert a.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.5)
        assert _rss(srv.proc.pid) - base < 16 << 20, "the stalled upload's rows were not freed"
        rows = _rows(n, d, 1)
        before = _settled_rss(srv.proc.pid)
        r = stub.UploadData(convert.rows_to_chunks(sid_b, rows, 50_000, R), timeout=30)  # the retry is admitted
        assert r.data_statement.statement
        kept = _settled_rss(srv.proc.pid) - before
        print(f"retained after the upload: {kept / rows.nbytes:.2f}x the rows' {rows.nbytes / 1e6:.0f} MB")
        assert kept <= 1.5 * rows.nbytes, f"a session retains {kept / rows.nbytes:.2f}x its data"
        big = _err(stub.UploadData, convert.rows_to_chunks(_open(stub, cfg), _rows(900_000, d), 100_000, R),
                   timeout=10)
        assert big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "whole budget" in big.details()
        assert srv.proc.poll() is None


def test_proving_key_for_another_circuit_is_refused_before_it_is_stored(key):
    """Abuse 4b: a 116 MiB proving key whose sizes do not match the session's circuit was accepted and held."""
    with ProverProcess(key, "--max-sessions-per-peer", "20") as srv:
        stub = _stub(srv)
        sid = _open(stub, kind="snark")
        stub.UploadData(convert.rows_to_chunks(sid, _rows(16), 8), timeout=10)
        stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=os.urandom(32),
                                                         audit_commitment=os.urandom(32), spot_checks=1), timeout=5)
        total = 116 << 20
        header = keys_io.MAGIC + struct.pack(">III", 600_000, 1_000_000, 1 << 20) + struct.pack(">I", 388)
        sent = threading.Event()

        def chunks():
            yield pb.KeyChunk(session_id=sid, total_bytes=total, data=header + bytes((1 << 20) - len(header)))
            for _ in range(115):
                if sent.is_set():
                    return
                yield pb.KeyChunk(session_id=sid, data=bytes(1 << 20))

        base = _rss(srv.proc.pid)
        e = _err(stub.UploadProvingKey, chunks(), timeout=20)
        sent.set()
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "this session's circuit has" in e.details(), e.details()
        assert _rss(srv.proc.pid) - base < 16 << 20


def test_per_peer_stream_limit_and_cli_retries_with_backoff(key, tmp_path):
    """One client address cannot take every upload slot or session slot; a refused CLI session comes back
    after the hint (--retries) or, with --retries 0, exits 2 naming the refusal and the hint."""
    with ProverProcess(key, "--max-streams-per-peer", "2", "--max-sessions-per-peer", "1") as srv:
        stub = _stub(srv)
        holder = _open(stub)
        stub.UploadData(convert.rows_to_chunks(holder, _rows(16), 8), timeout=10)  # holds the only slot
        args = ("train", "--server", srv.address, "--data", "builtin:diabetes", "--model", "linear", "--epochs", "1",
                "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        rc, _doc, err = verifier_json(*args, "--retries", "0")
        assert rc == 2 and "RESOURCE_EXHAUSTED" in err and "retry in" in err, err
        release = threading.Timer(6.0, lambda: stub.CloseSession(pb.CloseSessionRequest(session_id=holder)))
        release.start()
        p = verifier(*args, "--retries", "8")
        release.join()
        assert p.returncode == 0 and "VERIFIED" in p.stdout, p.stderr
        assert "the trainer is busy" in p.stderr and "new session in" in p.stderr
    with ProverProcess(key, "--max-streams-per-peer", "2", "--max-sessions-per-peer", "9") as srv:
        stub = _stub(srv)
        stalls = [Stall(stub.UploadData) for _ in range(2)]
        time.sleep(0.3)
        e = _err(stub.UploadData, iter([pb.DataChunk()]), timeout=5)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "per client" in e.details()
        for s in stalls:
            s.release.set()
