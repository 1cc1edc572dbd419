"""The online phase over gRPC (``vtrain.v1.TwoPartyTraining.Run``): frames <-> MpcFrame messages.

The client holds the call; the trainer's handler reads the request stream in a reader thread so that a
silent peer is detected by a timeout instead of holding a session forever."""

from __future__ import annotations

import queue
import threading

import grpc

from protocol.wire import mpc_pb2

from .errors import MpcAbort, MpcUnavailable
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
            self.q.put(MpcUnavailable(f"the connection to the {self.who} failed: {e.code().name}: {e.details()}"))
        except Exception as e:  # noqa: BLE001 - a broken stream is reported as an abort
            self.q.put(MpcAbort(f"the connection to the {self.who} failed: {e}"))

    def next(self) -> mpc_pb2.MpcFrame:
        try:
            m = self.q.get(timeout=self.timeout)
        except queue.Empty:
            raise MpcAbort(f"the {self.who} sent nothing for {self.timeout:.0f} s") from None
        if m is _END:
            raise MpcAbort(f"the {self.who} closed the session")
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
        return from_proto(self._reader.next())


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


class ServerTransport(_Transport):
    """The trainer's end inside a Run handler: requests through a reader, responses through a queue."""

    def __init__(self, request_iterator, out: queue.Queue, timeout: float = 600.0, who: str = "client"):
        self._reader = _Reader(request_iterator, who, timeout)
        self._out = out

    def _put(self, m) -> None:
        self._out.put(m)
