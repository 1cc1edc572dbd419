"""The online phase over gRPC (``vtrain.v1.TwoPartyTraining.Run``): frames <-> MpcFrame messages.

The client holds the call; the trainer's handler reads the request stream in a reader thread so that a
silent peer is detected by a timeout instead of holding a session forever."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading

import grpc

from protocol.wire import mpc_pb2

from .errors import MpcAbort, MpcUnavailable, peer_text
from .party import Frame

_END = object()


def to_proto(f: Frame) -> mpc_pb2.MpcFrame:
    return mpc_pb2.MpcFrame(label=f.label, elements=f.elements, blob=f.blob, abort=f.abort)


def from_proto(m: mpc_pb2.MpcFrame) -> Frame:
    return Frame(m.label, bytes(m.elements), bytes(m.blob), m.abort)


class _Reader:
    def __init__(self, iterator, who: str, timeout: float):
        self.q: queue.Queue = queue.Queue(maxsize=64)
        self.who, self.timeout = who, timeout
        threading.Thread(target=self._pump, args=(iterator,), daemon=True).start()

    def _pump(self, iterator) -> None:
        try:
            for m in iterator:
                self.q.put(m)
            self.q.put(_END)
        except grpc.RpcError as e:
            self.q.put(MpcUnavailable(f"the connection to the {self.who} failed: {e.code().name}: "
                                      f"{peer_text(e.details() or '')}"))
        except Exception as e:  # noqa: BLE001 - a broken stream is reported as an abort
            self.q.put(MpcAbort(f"the connection to the {self.who} failed: {peer_text(str(e))}"))

    def next(self) -> mpc_pb2.MpcFrame:
        try:
            m = self.q.get(timeout=self.timeout)
        except queue.Empty:
            raise MpcAbort(f"the {self.who} sent nothing for {self.timeout:.0f} s") from None
        return _delivered(m, self.who)


def _delivered(m, who: str) -> mpc_pb2.MpcFrame:
    """A received item: a frame, or the end of the stream / a failure, raised as an abort."""
    if m is _END:
        raise MpcAbort(f"the {who} closed the session")
    if isinstance(m, MpcAbort):
        raise m
    return m


class _Transport:
    _reader: _Reader

    def _put(self, m) -> None:
        raise NotImplementedError

    def send_proto(self, m: mpc_pb2.MpcFrame) -> None:
        self._put(m)

    def recv_proto(self) -> mpc_pb2.MpcFrame:
        return self._reader.next()

    def send(self, f: Frame) -> None:
        self._put(to_proto(f))

    def recv(self) -> Frame:
        return from_proto(self.recv_proto())


class ClientTransport(_Transport):
    """The client's end: a request queue feeding the call, a reader over the responses."""

    def __init__(self, stub, timeout: float = 600.0, who: str = "trainer"):
        self._out: queue.Queue = queue.Queue()
        self._call = stub.Run(iter(self._out.get, None), timeout=None)
        self._reader = _Reader(self._call, who, timeout)

    def _put(self, m) -> None:
        self._out.put(m)

    def close(self) -> None:
        self._out.put(None)
        self._call.cancel()


class LoopTransport(_Transport):
    """The trainer's end inside an asyncio ``Run`` handler (grpc.aio): the session runs in its own thread and
    exchanges frames with the handler's coroutines through asyncio queues. The request stream is read by a
    task on the server's loop, never by a pool thread: a synchronous handler's pending read blocked a thread
    of the server's pool for good when the client aborted (one thread leaked per aborted session, and the
    process could not exit)."""

    def __init__(self, loop, inbox, outbox, timeout: float = 600.0, who: str = "client"):
        self.loop, self.inbox, self.outbox, self.timeout, self.who = loop, inbox, outbox, timeout, who

    def _put(self, m) -> None:
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, m)

    def recv_proto(self, timeout: float | None = None) -> mpc_pb2.MpcFrame:
        wait = self.timeout if timeout is None else timeout
        fut = asyncio.run_coroutine_threadsafe(self.inbox.get(), self.loop)
        try:
            m = fut.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise MpcAbort(f"the {self.who} sent nothing for {wait:g} s") from None
        except concurrent.futures.CancelledError:
            raise MpcAbort(f"the session with the {self.who} was cancelled") from None
        return _delivered(m, self.who)


async def pump_requests(request_iterator, inbox, who: str = "client", max_bytes: list | None = None) -> None:
    """Feed the request stream into ``inbox`` (an asyncio queue of bounded size), then ``_END`` or an abort;
    a frame larger than ``max_bytes[0]`` (read when the frame arrives: the session raises it once it knows its
    plan) ends the stream with an abort."""
    try:
        async for m in request_iterator:
            if max_bytes is not None and m.ByteSize() > max_bytes[0]:
                await inbox.put(MpcAbort(f"the {who} sent a frame of {m.ByteSize():,} bytes; this session's frames "
                                         f"are at most {max_bytes[0]:,} bytes"))
                return
            await inbox.put(m)
        await inbox.put(_END)
    except grpc.RpcError as e:
        await inbox.put(MpcUnavailable(f"the connection to the {who} failed: {e.code().name}: "
                                       f"{peer_text(e.details() or '')}"))
    except Exception as e:  # noqa: BLE001 - a broken stream is reported as an abort (CancelledError passes)
        await inbox.put(MpcAbort(f"the connection to the {who} failed: {peer_text(str(e))}"))
