"""A party's side of the dealer: the :class:`mpc.preprocessing.Preprocessing` interface over gRPC."""

from __future__ import annotations

import queue
import threading

import grpc

from mpc.errors import MpcAbort, MpcUnavailable, peer_text
from mpc.plan import Plan
from mpc.preprocessing import InputMaterial, OutputMaterial, decode_inputs, decode_output, decode_step
from protocol.prg import SeedContext
from protocol.wire import mpc_pb2, mpc_pb2_grpc

PREFETCH = 8  # steps of raw material held ahead (under 1 MB each at d = 10, B = 32)


def dealer_channel(address: str, tls_ca: bytes | None = None) -> grpc.Channel:
    opts = [("grpc.max_receive_message_length", 64 << 20)]
    if tls_ca is not None:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=tls_ca), options=opts)
    return grpc.insecure_channel(address, options=opts)


class DealerPreprocessing:
    def __init__(self, address: str, session_id: bytes, party: int, plan: Plan, tls_ca: bytes | None = None,
                 timeout: float = 600.0):
        self.address, self.sid, self.party, self.plan = address, session_id, party, plan
        self.channel = dealer_channel(address, tls_ca)
        self.stub = mpc_pb2_grpc.DealerStub(self.channel)
        self.timeout = timeout
        self._key = None
        self._steps = None
        self._ticket = b""
        self.bytes_received = 0

    def _fetch(self, phase: str, ctx: SeedContext | None = None):
        req = mpc_pb2.DealerRequest(session_id=self.sid, party=self.party, phase=phase, plan=self.plan.to_bytes())
        if ctx is not None:
            req.data_root, req.training_seed, req.ticket = ctx.data_root, ctx.training_seed, self._ticket
        # no deadline: a session may be long; a dealer silent for ``timeout`` seconds is caught by the readers
        # (``_silence_bounded``, ``_next``), whatever the size of the material
        return self.stub.Fetch(req)

    def _silence_bounded(self, call):
        """The call's payloads, read by a thread; a gap of ``timeout`` seconds ends the call (MpcUnavailable)."""
        got: queue.Queue = queue.Queue()  # unbounded: the material is consumed whole, and a cancelled reader ends

        def pump():
            try:
                for p in self._payloads(call):
                    got.put(p)
                got.put(None)
            except MpcAbort as e:
                got.put(e)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                item = got.get(timeout=self.timeout)
            except queue.Empty:
                call.cancel()
                raise MpcUnavailable(f"the dealer at {self.address} sent nothing for {self.timeout:g} s") from None
            if isinstance(item, MpcAbort):
                raise item
            if item is None:
                return
            yield item

    def _payloads(self, stream):
        try:
            for chunk in stream:
                self.bytes_received += len(chunk.payload)
                if chunk.ticket:
                    self._ticket = bytes(chunk.ticket)
                yield chunk.payload
        except grpc.RpcError as e:
            error = MpcUnavailable if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                else MpcAbort
            raise error(f"the dealer at {self.address} failed: {e.code().name}: {peer_text(e.details() or '')}") from None

    def inputs(self) -> InputMaterial:
        mat = decode_inputs(self.plan, self.party, self._silence_bounded(self._fetch("inputs")))
        self._key = mat.key
        return mat

    def start_steps(self, ctx: SeedContext) -> None:
        """Start receiving step material; a thread keeps up to PREFETCH steps ahead, received and decoded, so the
        dealer generates and this process decodes the next steps while the parties wait for each other."""
        self._steps = queue.Queue(maxsize=PREFETCH)
        self._call = self._fetch("steps", ctx)
        payloads = self._payloads(self._call)
        T = self.plan.num_steps

        def pump():
            try:
                for t, p in enumerate(payloads, 1):
                    self._steps.put(decode_step(self.plan, self._key, p, t) if t <= T else
                                    decode_output(self.plan, self._key, p))
                self._steps.put(None)
            except MpcAbort as e:
                self._steps.put(e)

        threading.Thread(target=pump, daemon=True).start()

    def _next(self):
        try:
            data = self._steps.get(timeout=self.timeout)
        except queue.Empty:
            self._call.cancel()
            raise MpcUnavailable(f"the dealer at {self.address} sent nothing for {self.timeout:g} s") from None
        if isinstance(data, MpcAbort):
            raise data
        if data is None:
            raise MpcAbort(f"the dealer at {self.address} ended its stream early")
        return data

    def step(self, t: int):
        return self._next()

    def output(self) -> OutputMaterial:
        return self._next()

    def close(self) -> None:
        self.channel.close()
