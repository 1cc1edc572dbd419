"""Admission control and the client's retry rule, without a server (prover/admission.py, verifier/connection.py)."""

from __future__ import annotations

import grpc
import pytest

from prover.admission import Admission, Overloaded, peer_host
from prover.session import LimitExceeded, Limits
from verifier.client import Refused, SessionAborted, aborted, backoff_seconds


@pytest.mark.parametrize("peer, host", [("ipv4:127.0.0.1:5555", "127.0.0.1"), ("ipv6:[::1]:40000", "::1"),
                                        ("ipv6:[2001:db8::7]:1", "2001:db8::7"), ("unix:/tmp/s", "unix:/tmp/s"),
                                        ("ipv6:%5B::1%5D:43410", "::1"),  # as grpc (aio) reports it
                                        ("ipv6:%5B2001:db8::7%5D:1", "2001:db8::7"),
                                        ("", "unknown")])
def test_peer_host_drops_the_port(peer, host):
    assert peer_host(peer) == host


def test_session_and_stream_slots_per_peer_and_global():
    adm = Admission(Limits(max_sessions=3, max_sessions_per_peer=2, max_streams=2, max_streams_per_peer=1))
    adm.admit_session("a")
    adm.admit_session("a")
    with pytest.raises(Overloaded, match="per client"):
        adm.admit_session("a")
    adm.admit_session("b")
    with pytest.raises(Overloaded, match="open sessions") as ei:
        adm.admit_session("c")
    assert ei.value.retry_after > 0 and "retry in" in str(ei.value)
    adm.release_session("a", 0)
    adm.admit_session("c")
    with adm.stream("a"):
        with pytest.raises(Overloaded, match="per client"):
            adm.stream("a").__enter__()
        with adm.stream("b"), pytest.raises(Overloaded, match="uploads"):
            adm.stream("c").__enter__()
    assert adm.snapshot()["streams"] == 0


def test_memory_budget_reservations():
    adm = Admission(Limits(memory_budget_bytes=1000))
    adm.reserve(600, "x")
    with pytest.raises(Overloaded, match="memory budget"):
        adm.reserve(500, "y")
    with pytest.raises(LimitExceeded, match="whole budget"):  # can never fit: no retry hint
        adm.reserve(1001, "z")
    adm.unreserve(600)
    adm.reserve(1000, "y")
    assert adm.snapshot()["reserved_bytes"] == 1000


class _Err(grpc.RpcError):
    def __init__(self, code, details, meta=()):
        self._c, self._d, self._m = code, details, meta

    def code(self):
        return self._c

    def details(self):
        return self._d

    def trailing_metadata(self):
        return self._m


def test_client_retries_only_refusals_with_a_hint():
    r = aborted(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "2500"),)))
    assert isinstance(r, Refused) and r.retry_after == 2.5
    hard = aborted(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED, "1e9 rows exceed the limit"))
    assert type(hard) is SessionAborted  # no hint: retrying cannot help
    assert type(aborted(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", (("retry-after-ms", "soon"),)))) is SessionAborted
    assert type(aborted(_Err(grpc.StatusCode.INVALID_ARGUMENT, "x", (("retry-after-ms", "5"),)))) is SessionAborted


def test_backoff_is_exponential_at_least_the_hint_and_capped():
    for attempt in range(12):
        for hint in (0.0, 2.0, 100.0):
            b = backoff_seconds(attempt, hint)
            assert min(hint, 30.0) <= b <= 45.0
            assert b >= min(30.0, 0.5 * 2 ** attempt)


@pytest.mark.parametrize("slots", [1, 2])
def test_sessions_train_at_most_max_training_at_once(monkeypatch, slots):
    """Limits.max_training bounds the sessions training at once (each holds a float64 copy of its rows while
    it trains); the others wait their turn and still verify. Four sessions start together, each training
    holds its slot for 1 s: with 4 work threads they would all overlap."""
    import threading
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import prover.session as session_mod
    from protocol.dataset import fit_standardization, load_table
    from protocol.training import TrainConfig
    from prover.server import build_server
    from verifier.client import ClientSeeds, open_channel, run_session

    real, lock, active, peak = session_mod.run_training, threading.Lock(), [0], [0]

    def held(**kw):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(1.0)
            yield from real(**kw)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(session_mod, "run_training", held)
    server, port, _ = build_server(Ed25519PrivateKey.generate(), limits=Limits(max_training=slots), workers=4)
    server.start()
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=32)
    table = load_table("builtin:breast_cancer")
    verdicts = []
    start = threading.Barrier(4, timeout=60)  # all four ask at once: without the limit their training overlaps

    def one():
        ch = open_channel(f"127.0.0.1:{port}")
        try:
            start.wait()
            verdicts.append(run_session(ch, table, fit_standardization(table, "logistic"), cfg, spot_checks=4,
                                        seeds=ClientSeeds.fresh(), timeout=120)[1].status)
        finally:
            ch.close()

    try:
        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    finally:
        server.stop(None)
    assert verdicts == ["spot-checked"] * 4
    assert 1 <= peak[0] <= slots  # (4 with the work pool alone)
