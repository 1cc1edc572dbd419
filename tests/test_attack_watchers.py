"""Idle Health/Watch and reflection streams are bounded (prover/watch_limits.py; real `vtrain-prover serve`).

The attack (found on a landed main): Health/Watch and reflection streams were unbounded, so one address could
hold thousands of idle streams (10,000 grew the trainer by 223 MB, outside its memory budget). Now each client
address may hold --max-watchers-per-peer of them and all clients --max-watchers; the next one is refused with
RESOURCE_EXHAUSTED and a retry hint, Health/Check keeps answering, and a closed stream frees its slot.
"""

from __future__ import annotations

import queue
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from procs import ProverProcess, make_key


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("k"))[0]


def _watch(channel):
    """An open Health/Watch stream that has delivered its first status (so the server holds it)."""
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    first = next(call)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    return call


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        next(call)
    return ei.value


def _reflection(channel):
    """An open reflection stream that has answered one request; returns (call, request queue)."""
    q: queue.Queue = queue.Queue()

    def requests():
        while (item := q.get()) is not None:
            yield item

    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(requests(), timeout=60)
    q.put(reflection_pb2.ServerReflectionRequest(list_services=""))
    return call, q


def test_watch_streams_are_bounded_per_client_and_freed_on_close(key):
    with ProverProcess(key, "--max-watchers-per-peer", "3", "--max-watchers", "100") as srv:
        chans = [grpc.insecure_channel(srv.address) for _ in range(5)]  # other connections: still one client
        try:
            held = [_watch(chans[i]) for i in range(3)]
            e = _refused(health_pb2_grpc.HealthStub(chans[3]).Watch(health_pb2.HealthCheckRequest(), timeout=10))
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "per client" in e.details() and "Health/Check" in e.details()
            assert any(k == "retry-after-ms" for k, _ in (e.trailing_metadata() or ()))
            # reflection streams count against the same limit
            call, q = _reflection(chans[4])
            try:
                assert _refused(call).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                q.put(None)
            # unary health keeps answering, promptly
            t0 = time.monotonic()
            resp = health_pb2_grpc.HealthStub(chans[4]).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING and time.monotonic() - t0 < 5
            # closing one frees its slot (the server sees the cancellation shortly after)
            held.pop().cancel()
            deadline = time.monotonic() + 20
            while True:
                try:
                    held.append(_watch(chans[3]))
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                    time.sleep(0.2)
            for c in held:
                c.cancel()
        finally:
            for c in chans:
                c.close()


def test_reflection_works_within_the_limit_and_the_global_limit_holds(key):
    with ProverProcess(key, "--max-watchers-per-peer", "8", "--max-watchers", "2") as srv:
        ch = grpc.insecure_channel(srv.address)
        try:
            call, q = _reflection(ch)
            names = {s.name for s in next(call).list_services_response.service}
            assert "vtrain.v1.Trainer" in names and "grpc.health.v1.Health" in names
            w = _watch(ch)
            e = _refused(health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=10))
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "open health-watch" in e.details()
            assert "(limit 2)" in e.details()
            q.put(None)
            w.cancel()
        finally:
            ch.close()


def test_many_watch_attempts_leave_the_server_serving(key):
    """A client retrying Watch in a loop only ever holds its quota (bounded loop, 200 attempts)."""
    with ProverProcess(key, "--max-watchers-per-peer", "2") as srv:
        ch = grpc.insecure_channel(srv.address)
        held, refused = [], 0
        try:
            for _ in range(200):
                try:
                    held.append(_watch(ch))
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused += 1
            assert len(held) == 2 and refused == 198
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            for c in held:
                c.cancel()
            ch.close()
