"""Admission control: who may hold what on the trainer, decided before any byte is stored.

A trainer is a network service: anyone who reaches its port is a client. Every resource a client can hold
is counted here and capped per peer (the client's IP address, as gRPC reports it) and globally:

* session slots (an open session, whatever its state);
* concurrent client streams that wait on the client (UploadData, UploadProvingKey);
* memory: every session reserves, before anything is stored, what it may hold at its peak (its rows, the
  per-step states, a proving key as parsed), against one global budget.

A refusal is ``Overloaded`` (RESOURCE_EXHAUSTED on the wire) and carries a retry hint: the
``retry-after-ms`` trailing metadata entry and "retry in N s" in the message (docs/PROTOCOL.md section 2).
"""

from __future__ import annotations

import threading
from collections import Counter
from urllib.parse import unquote


class Overloaded(Exception):
    """RESOURCE_EXHAUSTED with a retry hint: the request is fine, the trainer is busy; try again later."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(f"{message}; retry in {retry_after:g} s")
        self.retry_after = retry_after


def peer_host(peer: str) -> str:
    """gRPC's peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, ``unix:...``) without the port: the
    unit per-peer limits count (a client opening many connections is still one peer). gRPC URL-encodes the
    brackets of an IPv6 peer (``ipv6:%5B::1%5D:5555``): decoded first, else every connection (a new port) of
    an IPv6 client would count as another client (tests/test_attack_peer_limits.py)."""
    kind, _, rest = unquote(peer or "unknown").partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition("]:")[0].lstrip("[") or rest
    return peer or "unknown"


class Admission:
    """Counters behind the limits (thread-safe). Sessions and memory are released by the session manager when
    a session ends; streams by the servicer when a call ends (``stream`` is a context manager)."""

    def __init__(self, limits):
        self.limits = limits
        self._lock = threading.Lock()
        self.sessions: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self.watchers: Counter[str] = Counter()  # open Health.Watch / reflection streams (prover/watch_limits.py)
        self.reserved = 0  # bytes of the memory budget held by live sessions

    # -- sessions ---------------------------------------------------------------------------------
    def admit_session(self, peer: str) -> None:
        lim = self.limits
        self._take(self.sessions, peer, lim.max_sessions, lim.max_sessions_per_peer, 2.0,
                   lambda n: f"the trainer has {n} open sessions (limit {lim.max_sessions})",
                   lambda n: f"your address {peer} already holds {n} open sessions (limit "
                             f"{lim.max_sessions_per_peer} per client); close finished sessions")

    def release_session(self, peer: str, reserved: int) -> None:
        with self._lock:
            self._give(self.sessions, peer)
            self.reserved -= reserved

    def _take(self, counts: Counter, peer: str, total_limit: int, peer_limit: int, retry_after: float,
              total_msg, peer_msg) -> None:
        """One slot of ``counts`` for ``peer`` within the global and per-client limits, or Overloaded."""
        with self._lock:
            total = sum(counts.values())
            if total >= total_limit:
                raise Overloaded(total_msg(total), retry_after=retry_after)
            if counts[peer] >= peer_limit:
                raise Overloaded(peer_msg(counts[peer]), retry_after=retry_after)
            counts[peer] += 1

    @staticmethod
    def _give(counts: Counter, peer: str) -> None:  # (caller holds the lock)
        counts[peer] -= 1
        if counts[peer] <= 0:
            del counts[peer]

    # -- memory -----------------------------------------------------------------------------------
    def reserve(self, nbytes: int, what: str) -> None:
        """Take ``nbytes`` of the global budget or refuse; the caller adds them to the session's reservation."""
        budget = self.limits.memory_budget_bytes
        if nbytes > budget:
            raise _too_big(f"{what} needs {nbytes:,} bytes of trainer memory, more than its whole budget of "
                           f"{budget:,} bytes")
        with self._lock:
            if self.reserved + nbytes > budget:
                raise Overloaded(f"the trainer's memory budget is taken ({self.reserved:,} of {budget:,} bytes "
                                 f"held by running sessions; {what} needs {nbytes:,})", retry_after=5.0)
            self.reserved += nbytes

    def unreserve(self, nbytes: int) -> None:
        with self._lock:
            self.reserved -= nbytes

    # -- streams ----------------------------------------------------------------------------------
    def stream(self, peer: str) -> _Stream:
        return _Stream(self, peer)

    def _enter_stream(self, peer: str) -> None:
        lim = self.limits
        self._take(self.streams, peer, lim.max_streams, lim.max_streams_per_peer, 1.0,
                   lambda n: f"the trainer is receiving {n} uploads (limit {lim.max_streams})",
                   lambda n: f"your address {peer} already has {n} uploads in progress (limit "
                             f"{lim.max_streams_per_peer} per client)")

    def _exit_stream(self, peer: str) -> None:
        with self._lock:
            self._give(self.streams, peer)

    def enter_watcher(self, peer: str) -> None:
        lim = self.limits
        self._take(self.watchers, peer, lim.max_watchers, lim.max_watchers_per_peer, 5.0,
                   lambda n: f"the trainer has {n} open health-watch/reflection streams (limit {lim.max_watchers}); "
                             "use Health/Check",
                   lambda n: f"your address {peer} already has {n} open health-watch/reflection streams (limit "
                             f"{lim.max_watchers_per_peer} per client); close one or use Health/Check")

    def exit_watcher(self, peer: str) -> None:
        with self._lock:
            self._give(self.watchers, peer)

    def snapshot(self) -> dict:
        with self._lock:
            return {"sessions": sum(self.sessions.values()), "streams": sum(self.streams.values()),
                    "reserved_bytes": self.reserved}


class _Stream:
    def __init__(self, adm: Admission, peer: str):
        self.adm, self.peer = adm, peer

    def __enter__(self):
        self.adm._enter_stream(self.peer)
        return self

    def __exit__(self, *exc):
        self.adm._exit_stream(self.peer)


def _too_big(msg: str) -> Exception:
    from .session_state import LimitExceeded  # a request over a hard limit: retrying cannot help

    return LimitExceeded(msg)
