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


class Overloaded(Exception):
    """RESOURCE_EXHAUSTED with a retry hint: the request is fine, the trainer is busy; try again later."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(f"{message}; retry in {retry_after:g} s")
        self.retry_after = retry_after


def peer_host(peer: str) -> str:
    """gRPC's peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, ``unix:...``) without the port: the
    unit per-peer limits count (a client opening many connections is still one peer)."""
    kind, _, rest = (peer or "unknown").partition(":")
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
        self.reserved = 0  # bytes of the memory budget held by live sessions

    # -- sessions ---------------------------------------------------------------------------------
    def admit_session(self, peer: str) -> None:
        lim = self.limits
        with self._lock:
            total = sum(self.sessions.values())
            if total >= lim.max_sessions:
                raise Overloaded(f"the trainer has {total} open sessions (limit {lim.max_sessions})",
                                 retry_after=2.0)
            if self.sessions[peer] >= lim.max_sessions_per_peer:
                raise Overloaded(f"your address {peer} already holds {self.sessions[peer]} open sessions (limit "
                                 f"{lim.max_sessions_per_peer} per client); close finished sessions",
                                 retry_after=2.0)
            self.sessions[peer] += 1

    def release_session(self, peer: str, reserved: int) -> None:
        with self._lock:
            self.sessions[peer] -= 1
            if self.sessions[peer] <= 0:
                del self.sessions[peer]
            self.reserved -= reserved

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
        with self._lock:
            total = sum(self.streams.values())
            if total >= lim.max_streams:
                raise Overloaded(f"the trainer is receiving {total} uploads (limit {lim.max_streams})",
                                 retry_after=1.0)
            if self.streams[peer] >= lim.max_streams_per_peer:
                raise Overloaded(f"your address {peer} already has {self.streams[peer]} uploads in progress (limit "
                                 f"{lim.max_streams_per_peer} per client)", retry_after=1.0)
            self.streams[peer] += 1

    def _exit_stream(self, peer: str) -> None:
        with self._lock:
            self.streams[peer] -= 1
            if self.streams[peer] <= 0:
                del self.streams[peer]

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
