"""Reaching a trainer (the gRPC channel, a preflight that names what is wrong with an address) and the ways a
session ends before any verdict (aborted, refused as busy, lost mid-session)."""

from __future__ import annotations

import random
import socket

import grpc

from protocol import convert
from protocol.peer_text import peer_text


class SessionAborted(Exception):
    """The trainer answered with a gRPC error or broke the protocol flow before any verdict."""


class SessionIncomplete(SessionAborted):
    """The connection was lost (or the trainer fell silent) after the session started: the partial transcript
    (``transcript``, marked ``incomplete``, no verdict) is kept as evidence of what the trainer signed."""

    def __init__(self, message: str, transcript: dict):
        super().__init__(message)
        self.transcript = transcript


# gRPC codes that mean "the trainer went away", not "the trainer refused"
LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class Refused(SessionAborted):
    """RESOURCE_EXHAUSTED with the trainer's retry hint: it is busy, the request itself is fine."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


def aborted(e: grpc.RpcError, prefix: str = "") -> SessionAborted:
    """The SessionAborted for a gRPC error: Refused when the trainer sent a retry hint."""
    msg = f"{prefix}{e.code().name}: {peer_text(e.details())}"
    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        for k, v in (e.trailing_metadata() or ()):
            if k == convert.RETRY_AFTER_KEY:
                try:
                    return Refused(msg, max(0.0, min(float(v) / 1000, 300.0)))
                except ValueError:
                    break
    return SessionAborted(msg)


def method_name(fn) -> str:
    name = getattr(fn, "_method", b"")
    return (name.decode() if isinstance(name, bytes) else str(name)).rsplit("/", 1)[-1] or "call"


def backoff_seconds(attempt: int, hint: float) -> float:
    """Exponential backoff from 0.5 s, at least the trainer's hint, at most 30 s, with 0-50% jitter (so refused
    clients do not come back in step)."""
    return min(30.0, max(hint, 0.5 * 2 ** attempt)) * (1 + random.random() / 2)


def open_channel(server: str, tls_ca: bytes | None = None, max_bytes: int = 64 * 1024 * 1024,
                 max_receive: int | None = None) -> grpc.Channel:
    """``max_receive``: the largest message accepted from the trainer (``checks.receive_cap`` of the session);
    a larger one fails the call with RESOURCE_EXHAUSTED before it is buffered."""
    opts = [("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_receive or max_bytes)]
    if tls_ca is not None:
        return grpc.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=tls_ca), options=opts)
    return grpc.insecure_channel(server, options=opts)


def preflight(server: str, timeout: float) -> None:
    """Tell "malformed address", "unknown host" and "nothing listening" apart before gRPC's reconnect loop
    (which reports all three as the same timeout). Raises SessionAborted with a one-line message."""
    if "://" in server or server.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return  # a gRPC target URI: left to gRPC
    host, sep, port = server.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SessionAborted(f"malformed address {server!r}: expected HOST:PORT with a port in 1..65535 "
                             f"(e.g. 127.0.0.1:50051)")
    try:
        addrs = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise SessionAborted(f"unknown host {host!r} ({getattr(e, 'strerror', None) or e}): check the name "
                             f"in --server") from None
    last = None
    for family, kind, proto, _, addr in addrs:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(max(0.5, min(timeout, 10.0)))
                sock.connect(addr)
                return
        except ConnectionRefusedError:
            last = "refused"
        except OSError as e:
            last = last or (e.strerror or type(e).__name__)
    if last == "refused":
        raise SessionAborted(f"nothing is listening at {server} (connection refused): is `vtrain-prover serve` "
                             f"running there, on that port?")
    raise SessionAborted(f"cannot reach {server}: {last}")


def too_large(e: grpc.RpcError) -> bool:
    """The trainer's answer went past this client's receive limit (gRPC's own RESOURCE_EXHAUSTED)."""
    return e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (e.details() or "")


def lost_message(e: grpc.RpcError, timeout, when: str) -> str:
    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the trainer did not answer within --timeout {timeout:g} s {when}".rstrip()
    return f"the trainer disconnected {when} ({e.code().name}: {peer_text(e.details())})".replace("  ", " ")
