"""The gRPC servicer (grpc.aio): convert, admit, call the plain handler, map domain errors to status codes.

Calls that wait on the client (UploadData, UploadProvingKey) are coroutines reading one message at a time
with a receive timeout; UploadData checks and hashes chunk k in the work pool while chunk k+1 arrives. CPU
work (finishing an upload, training, proving, parsing a key) runs in the bounded work pool. See
prover/server.py for why the server is asynchronous, prover/admission.py for the limits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import grpc

from protocol import convert
from protocol.errors import FixedPointOverflow, InputError
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from .admission import Overloaded, peer_host
from .session import Denied, LimitExceeded, NoProof, OutOfOrder, SessionManager, UnknownSession
from .trainer import FinalEvent, LeavesEvent, ProgressEvent, SignedEvent

log = logging.getLogger("vtrain.prover")


class ReceiveTimeout(Exception):
    """DEADLINE_EXCEEDED: the client stopped sending mid-stream."""


_STATUS = [
    (UnknownSession, grpc.StatusCode.NOT_FOUND),
    (OutOfOrder, grpc.StatusCode.FAILED_PRECONDITION),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ReceiveTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Denied, grpc.StatusCode.PERMISSION_DENIED),
    (NoProof, grpc.StatusCode.UNIMPLEMENTED),
    (FixedPointOverflow, grpc.StatusCode.OUT_OF_RANGE),
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]
_END = object()


async def _abort(context, method: str, exc: Exception):
    peer = peer_host(context.peer())
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            log.info("refused %s peer=%s status=%s reason=%s", method, peer, code.name, exc,
                     extra={"event": "refused", "method": method, "peer": peer, "status": code.name,
                            "reason": str(exc)})
            meta = ((convert.RETRY_AFTER_KEY, str(int(exc.retry_after * 1000))),) if isinstance(exc, Overloaded) else ()
            await context.abort(code, str(exc), trailing_metadata=meta)
    log.exception("internal error in %s (peer %s)", method, peer)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def _passthrough(exc: Exception) -> bool:
    return isinstance(exc, (grpc.RpcError, asyncio.CancelledError)) or type(exc).__name__ in ("AbortError",
                                                                                               "_AbortedError")


def mapped(fn):
    @functools.wraps(fn)
    async def wrapper(self, request, context):
        try:
            return await fn(self, request, context)
        except Exception as exc:
            if _passthrough(exc):
                raise
            await _abort(context, fn.__name__, exc)

    return wrapper


class TrainerServicer(pb_grpc.TrainerServicer):
    def __init__(self, manager: SessionManager, pool, training_slots: int):
        self.m, self.pool = manager, pool
        # Sessions train `training_slots` at a time (Limits.max_training, at most the work pool's size); the
        # others wait their turn in order, holding no thread and none of training's working memory.
        self.training = asyncio.Semaphore(training_slots)

    async def _work(self, fn, *args):
        """Run CPU work in the bounded work pool."""
        return await asyncio.wrap_future(self.pool.submit(fn, *args))

    async def _recv(self, context):
        """The next client message, None at the end of the stream; ReceiveTimeout if the client is silent."""
        timeout = self.m.limits.receive_timeout_seconds
        try:
            msg = await asyncio.wait_for(context.read(), timeout)
        except TimeoutError:
            raise ReceiveTimeout(f"no message for {timeout:g} s: the stream was ended and what it sent "
                                 f"was dropped") from None
        return None if msg is grpc.aio.EOF else msg

    async def _recv_chunk(self, context):
        """The next DataChunk as (its other fields, a view of its rows), None at the end of the stream.
        UploadData's messages arrive serialized (prover/server.py registers it without a deserializer) so the
        rows are checked, hashed and kept in the buffer gRPC delivered, with no copy."""
        raw = await self._recv(context)
        return None if raw is None else convert.split_data_chunk(raw)

    @mapped
    async def GetInfo(self, request, context):
        info = self.m.info()
        return pb.GetInfoResponse(protocol_version=info["protocol_version"], trainer_public_key=info["public_key"],
                                  models=info["models"], proof_kinds=info["proof_kinds"],
                                  limits=convert.limits_to_proto(info["limits"]),
                                  datasets=[pb.DataCard(name=name, card=convert.signed_to_proto(data, sig))
                                            for name, data, sig in info.get("datasets", [])])

    @mapped
    async def OpenSession(self, request, context):
        s, data, sig = self.m.open_session(convert.config_from_proto(request.config), bytes(request.client_nonce),
                                           request.proof_kind, peer=peer_host(context.peer()))
        return pb.OpenSessionResponse(session_id=s.session_id, server_nonce=s.server_nonce,
                                      session_statement=convert.signed_to_proto(data, sig))

    @mapped
    async def UploadData(self, request_iterator, context):
        with self.m.admission.stream(peer_host(context.peer())):
            c = await self._recv_chunk(context)
            if c is None:
                raise InputError("empty upload: no chunks were sent")
            up = self.m.begin_upload(bytes(c[0].session_id), c[0].num_features, c[0].total_rows,
                                     rows_per_leaf=c[0].rows_per_leaf or 1, value_bytes=c[0].value_bytes)
            t0, pending = time.perf_counter(), None
            try:
                while c is not None:  # check and hash chunk k in the pool while chunk k+1 is received
                    if pending is not None:
                        await pending
                    head, rows = c
                    pending = asyncio.wrap_future(self.pool.submit(
                        up.add, bytes(head.session_id), head.num_features, head.total_rows, head.num_rows, rows))
                    c = await self._recv_chunk(context)
                await pending
                data, sig = await self._work(up.finish)
            finally:
                if pending is not None and not pending.done():
                    await asyncio.wait([pending])
                up.close()
            log.debug("upload of %d rows in %.3f s", up.s.shape[0], time.perf_counter() - t0)
        return pb.UploadDataResponse(data_statement=convert.signed_to_proto(data, sig))

    @mapped
    async def UseTrainerData(self, request, context):
        from .trainer_data import use_trainer_data

        data, sig = await self._work(use_trainer_data, self.m, bytes(request.session_id), request.dataset)
        return pb.UploadDataResponse(data_statement=convert.signed_to_proto(data, sig))

    @mapped
    async def CommitRandomness(self, request, context):
        data, sig = self.m.commit_randomness(bytes(request.session_id), bytes(request.training_seed),
                                             bytes(request.audit_commitment), request.spot_checks)
        return pb.CommitRandomnessResponse(randomness_statement=convert.signed_to_proto(data, sig))

    async def Train(self, request, context):
        gen = self.m.train(bytes(request.session_id))
        fut = None
        timeout = self.m.limits.receive_timeout_seconds
        try:
            self.m.precheck_train(bytes(request.session_id))
            async with self.training:
                while True:
                    fut = self.pool.submit(next, gen, _END)
                    ev = await asyncio.wrap_future(fut)
                    if ev is _END:
                        return
                    try:  # a client that stops reading is ended like one that stops sending
                        await asyncio.wait_for(context.write(_event_to_proto(ev)), timeout)
                    except TimeoutError:
                        raise ReceiveTimeout(f"the client read nothing for {timeout:g} s; training stopped") from None
        except Exception as exc:
            if _passthrough(exc):
                raise
            await _abort(context, "Train", exc)
        finally:
            # a client that went away: close the generator (releasing the session) once its step is done
            if fut is None or fut.done():
                gen.close()
            else:
                fut.add_done_callback(lambda _f: gen.close())

    @mapped
    async def UploadProvingKey(self, request_iterator, context):
        with self.m.admission.stream(peer_host(context.peer())):
            c = await self._recv(context)
            if c is None:
                raise InputError("the proving key upload ended after 0 bytes")
            up = self.m.begin_key_upload(bytes(c.session_id), c.total_bytes, bytes(c.data))
            try:
                while c is not None:
                    up.add(c.data)
                    c = await self._recv(context)
                vk_hash = await self._work(up.finish)
            finally:
                up.close()
        return pb.UploadProvingKeyResponse(vk_hash=vk_hash)

    @mapped
    async def Prove(self, request, context):
        result = await self._work(self.m.prove, bytes(request.session_id), bytes(request.audit_seed), request.kind)
        if isinstance(result, dict):  # snark
            return pb.ProveResponse(snark_proof=result["proof"], snark_statement=convert.signed_to_proto(
                result["statement"], result["signature"]))
        openings, (data, sig) = result
        return pb.ProveResponse(openings=openings, openings_statement=convert.signed_to_proto(data, sig))

    @mapped
    async def CloseSession(self, request, context):
        self.m.close(bytes(request.session_id))
        return pb.CloseSessionResponse()


def _event_to_proto(ev) -> pb.TrainEvent:
    if isinstance(ev, ProgressEvent):
        return pb.TrainEvent(progress=pb.Progress(step=ev.step, total_steps=ev.total_steps, epoch=ev.epoch,
                                                  loss=ev.loss, phase=ev.phase))
    if isinstance(ev, LeavesEvent):
        return pb.TrainEvent(leaves=pb.StateLeaves(first_step=ev.first_step, hashes=ev.hashes))
    if isinstance(ev, SignedEvent):
        return pb.TrainEvent(checkpoint=convert.signed_to_proto(ev.statement, ev.signature))
    if isinstance(ev, FinalEvent):
        return pb.TrainEvent(final=pb.FinalResult(final_statement=convert.signed_to_proto(ev.statement, ev.signature),
                                                  model=[int(v) for v in ev.model], extras_json=ev.extras_json))
    raise AssertionError(type(ev))
