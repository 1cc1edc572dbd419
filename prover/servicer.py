"""Thin gRPC servicer: convert, call the plain handler, map domain errors to status codes."""

from __future__ import annotations

import functools
import logging

import grpc

from protocol import convert
from protocol.errors import FixedPointOverflow, InputError
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from .session import Denied, LimitExceeded, NoProof, OutOfOrder, SessionManager, UnknownSession
from .trainer import FinalEvent, LeavesEvent, ProgressEvent, SignedEvent

log = logging.getLogger("vtrain.prover")

_STATUS = [
    (UnknownSession, grpc.StatusCode.NOT_FOUND),
    (OutOfOrder, grpc.StatusCode.FAILED_PRECONDITION),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Denied, grpc.StatusCode.PERMISSION_DENIED),
    (NoProof, grpc.StatusCode.UNIMPLEMENTED),
    (FixedPointOverflow, grpc.StatusCode.OUT_OF_RANGE),
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def _abort(context, exc: Exception):
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            log.info("%s: %s", code.name, exc)
            context.abort(code, str(exc))
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def mapped(fn):
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortedError":
                raise
            _abort(context, exc)

    return wrapper


def mapped_stream(fn):
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortedError":
                raise
            _abort(context, exc)

    return wrapper


class TrainerServicer(pb_grpc.TrainerServicer):
    def __init__(self, manager: SessionManager):
        self.m = manager

    @mapped
    def GetInfo(self, request, context):
        info = self.m.info()
        return pb.GetInfoResponse(protocol_version=info["protocol_version"], trainer_public_key=info["public_key"],
                                  models=info["models"], proof_kinds=info["proof_kinds"],
                                  limits=convert.limits_to_proto(info["limits"]))

    @mapped
    def OpenSession(self, request, context):
        s, data, sig = self.m.open_session(convert.config_from_proto(request.config), bytes(request.client_nonce),
                                           request.proof_kind)
        log.info("session %s opened (%s, %d epochs)", s.session_id.hex(), s.cfg.model, s.cfg.epochs)
        return pb.OpenSessionResponse(session_id=s.session_id, server_nonce=s.server_nonce,
                                      session_statement=convert.signed_to_proto(data, sig))

    @mapped
    def UploadData(self, request_iterator, context):
        chunks = ((bytes(c.session_id), c.num_features, c.total_rows, c.num_rows, bytes(c.rows))
                  for c in request_iterator)
        data, sig = self.m.upload(chunks)
        return pb.UploadDataResponse(data_statement=convert.signed_to_proto(data, sig))

    @mapped
    def CommitRandomness(self, request, context):
        data, sig = self.m.commit_randomness(bytes(request.session_id), bytes(request.training_seed),
                                             bytes(request.audit_commitment), request.spot_checks)
        return pb.CommitRandomnessResponse(randomness_statement=convert.signed_to_proto(data, sig))

    @mapped_stream
    def Train(self, request, context):
        for ev in self.m.train(bytes(request.session_id)):
            if isinstance(ev, ProgressEvent):
                yield pb.TrainEvent(progress=pb.Progress(step=ev.step, total_steps=ev.total_steps, epoch=ev.epoch,
                                                         loss=ev.loss, phase=ev.phase))
            elif isinstance(ev, LeavesEvent):
                yield pb.TrainEvent(leaves=pb.StateLeaves(first_step=ev.first_step, hashes=ev.hashes))
            elif isinstance(ev, SignedEvent):
                yield pb.TrainEvent(checkpoint=convert.signed_to_proto(ev.statement, ev.signature))
            elif isinstance(ev, FinalEvent):
                yield pb.TrainEvent(final=pb.FinalResult(final_statement=convert.signed_to_proto(ev.statement, ev.signature),
                                                         model=[int(v) for v in ev.model], extras_json=ev.extras_json))

    @mapped
    def UploadProvingKey(self, request_iterator, context):
        chunks = ((bytes(c.session_id), c.total_bytes, bytes(c.data)) for c in request_iterator)
        return pb.UploadProvingKeyResponse(vk_hash=self.m.upload_proving_key(chunks))

    @mapped
    def Prove(self, request, context):
        result = self.m.prove(bytes(request.session_id), bytes(request.audit_seed), request.kind)
        if isinstance(result, dict):  # snark
            return pb.ProveResponse(snark_proof=result["proof"], snark_statement=convert.signed_to_proto(
                result["statement"], result["signature"]))
        openings, (data, sig) = result
        return pb.ProveResponse(openings=[convert.opening_to_proto(op) for op in openings],
                                openings_statement=convert.signed_to_proto(data, sig))

    @mapped
    def CloseSession(self, request, context):
        self.m.close(bytes(request.session_id))
        return pb.CloseSessionResponse()
