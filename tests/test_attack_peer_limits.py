"""Attack on the per-client limits (docs/PROTOCOL.md section 2, README "Trainer service limits"): a client that
opens many connections is still one client.

gRPC reports an IPv6 peer URL-encoded (``ipv6:%5B::1%5D:43410``), unlike the ``ipv6:[::1]:43410`` of its docs.
Keyed on the raw string, every new connection of an IPv6 client (a new source port) was a new "client", so one
address over IPv6 could hold every session slot by opening one channel per session. Real server process,
loopback, bounded loops.
"""

from __future__ import annotations

import os

import grpc
import pytest
from procs import ProverProcess, make_key

from protocol import convert
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

CFG = convert.config_to_proto(TrainConfig(model="linear", epochs=1, batch_size=4))


def _open(channel) -> bytes:
    return pb_grpc.TrainerStub(channel).OpenSession(
        pb.OpenSessionRequest(config=CFG, client_nonce=os.urandom(32)), timeout=5).session_id


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("host", ["[::1]", "127.0.0.1"])
def test_one_address_with_many_connections_is_one_client(tmp_path, host):
    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--max-sessions-per-peer", "3", "--max-sessions", "20", listen="localhost:0") as srv:
        address = f"{host}:{srv.address.rsplit(':', 1)[1]}"
        channels = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(6)]  # six connections, six source ports, one address
        try:
            opened, refused = 0, []
            for ch in channels:
                try:
                    _open(ch)
                    opened += 1
                except grpc.RpcError as e:
                    refused.append((e.code(), e.details()))
        finally:
            for ch in channels:
                ch.close()
    assert opened == 3, f"{opened} sessions from one address over {len(channels)} connections (limit 3 per client)"
    assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "per client" in msg for code, msg in refused), refused
