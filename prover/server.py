"""Build and run the trainer's gRPC server: Trainer service, health checking, reflection, optional TLS.

Why grpc.aio (issue: health and GetInfo must answer whatever other clients do): in the synchronous server
every call, from the moment its headers arrive, holds a thread of one shared pool while it waits for its
request messages; a client that opens more calls than there are threads (UploadData streams that send
nothing, half-sent unary calls, idle reflection streams or Health/Watch) starves everyone, health included.
Here every call is a coroutine on one event loop: a call waiting on the network holds no thread. Health
(``grpc_health``'s aio servicer), reflection (aio) and GetInfo answer on the loop directly and never queue
behind client work. CPU work (finishing an upload, training, proving, parsing a proving key) runs in a
separate, bounded pool (``workers`` threads) that only admitted sessions reach (prover/admission.py).

``TrainerServer`` runs the aio server on its own event-loop thread and offers the synchronous
``start()`` / ``stop(grace)`` the CLI, tests and benchmarks use.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from protocol.keys import public_bytes
from protocol.wire import trainer_pb2, trainer_pb2_grpc

from . import memory
from .adversaries import get_strategy
from .servicer import TrainerServicer
from .session import Limits, SessionManager
from .watch_limits import WatcherLimit

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name
REAP_SECONDS = 0.5  # how often expired sessions are dropped (and their memory released) without any traffic


class _Handlers:
    """Stands in for the server while the generated ``add_TrainerServicer_to_server`` registers the Trainer's
    method handlers, so that one of them can be changed before the real server gets them."""

    def __init__(self):
        self.name, self.handlers = "", {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the same handlers also arrive below, by name

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        self.name, self.handlers = service_name, dict(method_handlers)


class _Stopped:
    def __init__(self, fut):
        self._fut = fut

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self._fut.result(timeout)
        except futures.TimeoutError:
            return False
        return True


class TrainerServer:
    def __init__(self, manager: SessionManager, limits: Limits, address: str, tls, workers: int):
        self.manager, self.limits, self.workers = manager, limits, workers
        memory.configure()
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vtrain-work")
        # synchronous handlers of services other modules add (add_generic_rpc_handlers) run here, apart from
        # the Trainer's work pool and from the event loop that serves health, reflection and GetInfo
        self.sync_pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="vtrain-sync")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vtrain-grpc", daemon=True)
        self._thread.start()
        self._reaper = None
        self.port = self._call(self._build(address, tls))

    def _call(self, coro, timeout: float | None = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _build(self, address: str, tls) -> int:
        opts = [("grpc.max_receive_message_length", self.limits.max_message_bytes),
                ("grpc.max_send_message_length", self.limits.max_message_bytes)]
        # Health/Watch and reflection streams are counted per client (prover/watch_limits.py)
        self.server = grpc.aio.server(migration_thread_pool=self.sync_pool, options=opts,
                                      interceptors=[WatcherLimit(self.manager.admission)])
        reg = _Handlers()  # the generated handlers, UploadData's taking its messages serialized (zero-copy rows)
        servicer = TrainerServicer(self.manager, self.pool, max(1, min(self.workers, self.limits.max_training)))
        trainer_pb2_grpc.add_TrainerServicer_to_server(servicer, reg)
        reg.handlers["UploadData"] = reg.handlers["UploadData"]._replace(request_deserializer=None)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(reg.name, reg.handlers),))
        self.server.add_registered_method_handlers(reg.name, reg.handlers)
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection((SERVICE_NAME, "grpc.health.v1.Health", reflection.SERVICE_NAME),
                                            self.server)
        if tls:
            cert, pkey = tls
            bound = self.server.add_secure_port(address, grpc.ssl_server_credentials([(pkey, cert)]))
        else:
            bound = self.server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"could not bind {address}")
        return bound

    async def _apply(self, fn, *args):
        return fn(*args)

    def add_generic_rpc_handlers(self, handlers) -> None:
        """Add another service before start (grpc.Server's method, so generated ``add_*_to_server`` works)."""
        self._call(self._apply(self.server.add_generic_rpc_handlers, handlers))

    def add_registered_method_handlers(self, service_name, method_handlers) -> None:
        self._call(self._apply(self.server.add_registered_method_handlers, service_name, method_handlers))

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_SECONDS)
            self.manager.expire()

    async def _start(self) -> None:
        await self.server.start()
        self._reaper = asyncio.ensure_future(self._reap())

    def start(self) -> None:
        self._call(self._start())

    async def _stop(self, grace) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.server.stop(grace)

    def stop(self, grace: float | None = None) -> _Stopped:
        """Stop accepting calls, end running ones after ``grace`` seconds; returns an object whose wait()
        blocks until the server, its pool and its loop are gone."""
        done = futures.Future()

        def finish(fut):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.sync_pool.shutdown(wait=False, cancel_futures=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            done.set_result(None)

        asyncio.run_coroutine_threadsafe(self._stop(grace), self.loop).add_done_callback(finish)
        return _Stopped(done)


def build_server(key, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None,
                 adversary: str | None = None, tls: tuple[bytes, bytes] | None = None, workers: int = 4):
    """Returns (server, bound_port, manager). The server is not started."""
    limits = limits or Limits()
    get_strategy(adversary)  # fail early on an unknown name
    manager = SessionManager(key, public_bytes(key), limits, strategy_factory=lambda: get_strategy(adversary))
    server = TrainerServer(manager, limits, f"{host}:{port}", tls, workers)
    return server, server.port, manager
