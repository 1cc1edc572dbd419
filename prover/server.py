"""Build and run the trainer's gRPC server: Trainer service, health checking, reflection, optional TLS."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protocol.keys import public_bytes
from protocol.wire import trainer_pb2, trainer_pb2_grpc

from .adversaries import get_strategy
from .servicer import TrainerServicer
from .session import Limits, SessionManager

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name


def build_server(key, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None,
                 adversary: str | None = None, tls: tuple[bytes, bytes] | None = None, workers: int = 8):
    """Returns (server, bound_port, manager). The server is not started."""
    limits = limits or Limits()
    get_strategy(adversary)  # fail early on an unknown name
    manager = SessionManager(key, public_bytes(key), limits, strategy_factory=lambda: get_strategy(adversary))
    opts = [("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=opts)
    trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(manager), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    if tls:
        cert, pkey = tls
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(pkey, cert)]))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind {address}")
    return server, bound, manager
