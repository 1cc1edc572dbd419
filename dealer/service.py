"""The Dealer gRPC service: deterministic generation per session, each (session, party, phase) served once.

The session key is ``H("dealer/session", master || session_id || plan)`` with a master secret drawn from the
OS at start-up, so both parties' requests for the same session and plan get consistent shares, and
requests with different plans get unrelated ones (their MAC check then fails). A second request for the
same (session, party, phase) is refused with ALREADY_EXISTS: an honest party refused this way aborts,
because someone else holds its shares. The ``steps`` material of a party goes only to whoever received its
``inputs`` material (a ticket handed out with it): the session id, plan and seeds are known to the other
party, which must not be able to fetch this party's later shares (they would reveal its input masks).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
from collections import Counter, OrderedDict
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from mpc.hashing import mpc_hash
from mpc.plan import Plan
from mpc.preprocessing import Generator, batch_schedule
from protocol.convert import RETRY_AFTER_KEY
from protocol.errors import InputError
from protocol.prg import SeedContext
from protocol.wire import mpc_pb2, mpc_pb2_grpc
from prover.admission import peer_host

log = logging.getLogger("vtrain.dealer")
ADVERSARIES = ("bad-triple",)
MAX_STEPS = 200_000
MAX_SESSIONS = 8  # generators kept (each holds the session's input masks)
MAX_CLAIMS = 100_000  # served (session, party, phase) remembered; then the master secret is replaced


class DealerServicer(mpc_pb2_grpc.DealerServicer):
    def __init__(self, adversary: str | None = None, master: bytes | None = None):
        if adversary not in (None, *ADVERSARIES):
            raise ValueError(f"unknown dealer adversary {adversary!r}; choose one of {', '.join(ADVERSARIES)}")
        self.adversary = adversary
        self._master = master or os.urandom(32)
        self._lock = threading.Lock()
        self._served: OrderedDict[tuple, bool] = OrderedDict()
        self._gens: OrderedDict[bytes, Generator] = OrderedDict()
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()  # the other party's payload of a step

    def _generator(self, key: bytes, plan: Plan) -> Generator:
        with self._lock:
            gen = self._gens.get(key)
            if gen is None:
                gen = self._gens[key] = Generator(key, plan, tamper=self.adversary)
                while len(self._gens) > MAX_SESSIONS:
                    self._gens.popitem(last=False)
            return gen

    def _claim(self, context, sid: bytes, party: int, phase: str, master: bytes) -> None:
        """Record that (sid, party, phase) is served, derived from ``master``; refuse a second request.

        A claim is never forgotten while the material it protects can still be generated: when the record is
        full the master secret is replaced (and every generator dropped), so nobody, whoever floods the dealer
        with other sessions, can have a party's input masks generated again (docs/MPC.md section 5.1).
        Sessions in progress then fail their next fetch or their MAC check: an abort, never a leak."""
        with self._lock:
            if len(self._served) >= MAX_CLAIMS:
                log.warning("%d sessions served: replacing the master secret (sessions in progress will abort)",
                            len(self._served))
                self._master = os.urandom(32)
                self._served.clear()
                self._gens.clear()
                self._cache.clear()
            if not hmac.compare_digest(master, self._master):
                context.abort(grpc.StatusCode.UNAVAILABLE, "the dealer replaced its secret during this session "
                              "(too many sessions served); start a new session")
            if (sid, party, phase) in self._served:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"party {party}'s {phase} material for this session "
                              "was already handed out (someone else requested it)")
            self._served[(sid, party, phase)] = True

    def Fetch(self, request, context):
        sid, party, phase = bytes(request.session_id), request.party, request.phase
        if len(sid) != 16 or party not in (0, 1) or phase not in ("inputs", "steps"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "need a 16-byte session id, party 0 or 1, phase "
                          "'inputs' or 'steps'")
        try:
            plan = Plan.from_bytes(bytes(request.plan))
        except InputError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if plan.num_steps > MAX_STEPS:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"plan too large (at most {MAX_STEPS} steps)")
        ctx = None
        with self._lock:
            master = self._master
        key = mpc_hash("dealer/session", master, sid, plan.to_bytes())
        ticket = mpc_hash("dealer/ticket", key, bytes([party]))
        if phase == "steps":
            try:
                ctx = SeedContext(sid, bytes(request.data_root), bytes(request.training_seed))
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            if not hmac.compare_digest(bytes(request.ticket), ticket):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"party {party}'s steps material goes only to the "
                              "party that received its inputs material (wrong or missing ticket)")
        self._claim(context, sid, party, phase, master)
        gen = self._generator(key, plan)
        log.info("session %s: party %d fetches %s (n=%d, d=%d, T=%d)", sid.hex(), party, phase, plan.n, plan.d,
                 plan.num_steps)
        if phase == "inputs":
            for i, payload in enumerate(gen.input_chunks(party)):
                yield mpc_pb2.DealerChunk(payload=payload, ticket=ticket if i == 0 else b"")
            return
        for t, batch in enumerate(batch_schedule(plan, ctx), 1):
            yield mpc_pb2.DealerChunk(payload=self._step(key, gen, t, batch, party))
        yield mpc_pb2.DealerChunk(payload=gen.output_payload(party))

    def _step(self, key: bytes, gen: Generator, t: int, batch, party: int) -> bytes:
        with self._lock:
            mine = self._cache.pop((key, t, party), None)
        if mine is not None:
            return mine
        p0, p1 = gen.step_payloads(t, batch)
        with self._lock:
            self._cache[(key, t, 1 - party)] = p1 if party == 0 else p0
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
        return p0 if party == 0 else p1


class _Refusal(Exception):
    def __init__(self, code, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class _SyncContext:
    """What ``DealerServicer.Fetch`` sees when the aio server runs it: ``abort`` raises, the server awaits it."""

    def abort(self, code, details: str):
        raise _Refusal(code, details)


_END = object()


@dataclass(frozen=True)
class FetchLimits:
    """What one Fetch may hold: streams in total and per client address (``vtrain-dealer serve
    --max-fetches``/``--max-fetches-per-peer``), and how long a chunk may wait for its caller to read
    (``--send-timeout``). An honest session has at most one Fetch per party open at a time."""

    max_fetches: int = 32
    max_fetches_per_peer: int = 8
    send_timeout: float = 120.0

    def __post_init__(self):
        if min(self.max_fetches, self.max_fetches_per_peer) < 1 or not self.send_timeout > 0:
            raise InputError("--max-fetches and --max-fetches-per-peer must be at least 1, --send-timeout above 0")


class AioDealer(mpc_pb2_grpc.DealerServicer):
    """The dealer on grpc.aio: each Fetch is a coroutine that waits for its client without holding a thread
    (a stream nobody reads used to hold one of the synchronous server's threads for good, so a few such streams
    starved health checks and honest fetches); the material is generated in a bounded pool, one chunk at a time.
    Open Fetch streams are capped in total and per client address (RESOURCE_EXHAUSTED with a retry hint past
    them), and a caller that does not read a chunk within ``send_timeout`` is cut off (DEADLINE_EXCEEDED), so
    memory held for unread streams stays bounded (tests/test_attack_dealer_pool.py)."""

    def __init__(self, inner: DealerServicer, pool: futures.ThreadPoolExecutor, limits: FetchLimits = FetchLimits()):
        self.inner, self.pool, self.limits = inner, pool, limits
        self.open: Counter[str] = Counter()  # touched only on the event loop's thread

    async def Fetch(self, request, context):
        peer, lim = peer_host(context.peer()), self.limits
        total = sum(self.open.values())
        if total >= lim.max_fetches or self.open[peer] >= lim.max_fetches_per_peer:
            why = (f"the dealer is serving {total} material streams (limit {lim.max_fetches})"
                   if total >= lim.max_fetches else f"your address {peer} already has {self.open[peer]} material "
                   f"streams open (limit {lim.max_fetches_per_peer} per client)")
            log.warning("refused a Fetch from %s: %s", peer, why)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why + "; retry later",
                                trailing_metadata=((RETRY_AFTER_KEY, "2000"),))
        self.open[peer] += 1
        try:
            await self._serve(request, context)
        finally:
            self.open[peer] -= 1
            if self.open[peer] <= 0:
                del self.open[peer]

    async def _serve(self, request, context) -> None:
        loop = asyncio.get_running_loop()
        chunks = self.inner.Fetch(request, _SyncContext())
        while True:
            try:
                chunk = await loop.run_in_executor(self.pool, next, chunks, _END)
            except _Refusal as e:
                await context.abort(e.code, e.details)
            if chunk is _END:
                return
            try:
                await asyncio.wait_for(context.write(chunk), self.limits.send_timeout)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the caller read nothing for "
                                    f"{self.limits.send_timeout:g} s; the stream is ended")


class DealerServer:
    """The aio server on its own event-loop thread, with a synchronous ``start()`` / ``stop(grace)``."""

    def __init__(self, address: str, adversary: str | None, tls, workers: int, limits: FetchLimits = FetchLimits()):
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vtrain-dealer")
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="vtrain-dealer-grpc", daemon=True).start()
        self.servicer = DealerServicer(adversary)
        self.limits = limits
        self.port = self._call(self._build(address, tls))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _build(self, address: str, tls) -> int:
        opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 1 << 20)]
        self.server = grpc.aio.server(options=opts)
        mpc_pb2_grpc.add_DealerServicer_to_server(AioDealer(self.servicer, self.pool, self.limits), self.server)
        hs = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(hs, self.server)
        await hs.set("", health_pb2.HealthCheckResponse.SERVING)
        bound = self.server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])])) if tls else \
            self.server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"could not bind {address}")
        return bound

    def start(self) -> None:
        self._call(self.server.start())

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop accepting calls, end running ones after ``grace`` seconds; the event's wait() blocks until the
        server, its pool and its loop are gone."""
        done = threading.Event()

        def finish(_):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            done.set()

        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).add_done_callback(finish)
        return done


def build_dealer_server(host: str = "127.0.0.1", port: int = 0, adversary: str | None = None,
                        tls: tuple[bytes, bytes] | None = None, workers: int = 8,
                        limits: FetchLimits = FetchLimits()) -> tuple[DealerServer, int]:
    """Returns (server, bound_port); the server is not started. ``workers`` threads generate material."""
    server = DealerServer(f"{host}:{port}", adversary, tls, workers, limits)
    return server, server.port
