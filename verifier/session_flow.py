"""The protocol flow of one client session (docs/PROTOCOL.md §5): GetInfo, OpenSession, the data, the
randomness, training and the proof, each signed statement checked as it arrives and everything recorded in the
transcript as it arrives (so a rejection keeps what was seen)."""

from __future__ import annotations

import grpc

from protocol import convert
from protocol.errors import TranscriptFormatError, VerificationError
from protocol.prg import seed_commitment
from protocol.statements import PROTOCOL_VERSION, Statement
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from . import checks
from .connection import LOST, Refused, SessionAborted, SessionIncomplete, aborted, lost_message, method_name
from .progress import SILENT
from .proof_request import request_proof, setup_snark
from .train_stream import receive_training
from .upload import upload_rows


def flow(tr, channel, rows, cfg, seeds, *, spot_checks, trainer_key, progress, rows_per_chunk, timeout, status,
          accept_key, ui=SILENT, replay_ahead=None):
    """The protocol flow; records everything in ``tr`` as it arrives (so a rejection keeps what was seen)."""
    stub = pb_grpc.TrainerStub(channel)
    n, d = tr["num_rows"], tr["num_features"]
    client_nonce = bytes.fromhex(tr["client_nonce"])

    def call(fn, *a, **kw):
        try:
            return fn(*a, timeout=timeout, **kw)
        except grpc.RpcError as e:
            if e.code() in LOST and "session_id" in tr:
                raise SessionIncomplete(lost_message(e, timeout, "mid-session"), tr) from None
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # name the call that ran out of time
                raise aborted(e, f"{method_name(fn)}: ") from None
            raise aborted(e) from None

    info = call(stub.GetInfo, pb.GetInfoRequest())
    pub = bytes(info.trainer_public_key)
    if len(pub) != 32:
        raise SessionAborted(f"the trainer's GetInfo answer is malformed (a public key of {len(pub)} bytes, not 32)")
    tr["trainer_key"] = pub.hex()
    if trainer_key is not None and pub != trainer_key:
        raise VerificationError(f"the server's trainer key {pub.hex()} is not the pinned key {trainer_key.hex()}")
    if accept_key is not None:
        accept_key(pub)
    if info.protocol_version != PROTOCOL_VERSION:
        raise SessionAborted(f"the trainer speaks {info.protocol_version!r}, this client {PROTOCOL_VERSION!r}")
    _check_limits(info.limits, n, d, cfg.num_steps(n))
    kind = tr["proof_kind"]
    if kind not in info.proof_kinds:
        raise SessionAborted(f"the trainer offers proof kinds {list(info.proof_kinds)}, not {kind!r}")
    msg_cap = info.limits.max_message_bytes or (4 << 20)

    resp = call(stub.OpenSession, pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=client_nonce,
                                                        proof_kind=kind))
    sid, server_nonce = bytes(resp.session_id), bytes(resp.server_nonce)
    if len(sid) != 16 or len(server_nonce) != 32:
        raise SessionAborted(f"the trainer's OpenSession answer is malformed (a session id of {len(sid)} bytes and "
                             f"a server nonce of {len(server_nonce)}; the protocol has 16 and 32)")
    tr.update(session_id=sid.hex(), server_nonce=server_nonce.hex())
    session_signed = convert.signed_from_proto(resp.session_statement)
    tr["statements"]["session"] = [x.hex() for x in session_signed]
    checks.check_session(pub, session_signed, sid, client_nonce=client_nonce, server_nonce=server_nonce, cfg=cfg,
                         proof_kind=kind)

    try:
        if rows is None:  # the trainer's own dataset (docs/PROTOCOL.md section 12)
            resp = call(stub.UseTrainerData, pb.UseTrainerDataRequest(session_id=sid, dataset=tr["trainer_data"]["name"]))
            data_signed = convert.signed_from_proto(resp.data_statement)
            tr["statements"]["data"] = [x.hex() for x in data_signed]
        else:
            with ui.bar("uploading", total=n, unit="row") as bar:
                data_signed = upload_rows(channel, call, sid, rows, msg_cap, rows_per_chunk, tr["rows_per_leaf"], tr,
                                          bar, tr["value_bytes"])
    except Refused:
        try:  # give the slot back before trying again
            stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
        except grpc.RpcError:
            pass
        raise
    data_root = bytes.fromhex(tr["data_root"])
    signed_root = _signed_root(data_signed, data_root)
    checks.check_data(pub, data_signed, sid, data_root=signed_root, num_rows=n, num_features=d,
                      rows_per_leaf=tr["rows_per_leaf"], value_bytes=tr["value_bytes"])
    if signed_root != data_root and rows is None:
        raise VerificationError(f"the trainer's signed data_root {signed_root.hex()} is not the root of the data card "
                                f"this client chose ({data_root.hex()})")
    if signed_root != data_root:
        raise VerificationError(
            f"the trainer's signed data root {signed_root.hex()} is not the root of the rows "
            f"this client sent ({data_root.hex()}): it committed to other data. The root is not part of the "
            f"client's committed record (docs/PROTOCOL.md §5), so a third party cannot attribute this to the "
            f"trainer; the recording client can")

    commitment = seed_commitment(seeds.audit_seed, sid)
    tr["audit_commitment"] = commitment.hex()
    resp = call(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=sid, training_seed=seeds.training_seed, audit_commitment=commitment, spot_checks=spot_checks))
    rand_signed = convert.signed_from_proto(resp.randomness_statement)
    tr["statements"]["randomness"] = [x.hex() for x in rand_signed]
    checks.check_randomness(pub, rand_signed, sid, data_root=data_root, training_seed=seeds.training_seed,
                            audit_commitment=commitment, spot_checks=spot_checks)
    if replay_ahead is not None and rows is not None:  # the schedule is fixed now: replay while the trainer trains
        replay_ahead.start(rows, sid, data_root, seeds.training_seed, cfg, n, d)

    snark_state = None
    if kind == "snark":
        with ui.bar("SNARK setup", unit="s"):
            if rows is None:  # the trainer's own data: the zero-knowledge circuit
                from .trainer_data_client import snark_setup

                snark_state = snark_setup(stub, call, tr, cfg, sid, seeds, status, msg_cap)
            else:
                snark_state = setup_snark(stub, call, tr, rows, cfg, sid, session_signed[0], seeds, status, msg_cap)

    T = cfg.num_steps(n)
    final, stream_error = receive_training(stub, tr, sid, T, cfg, timeout, progress, status, ui)
    if stream_error is not None:
        tr["stream_error"] = stream_error
        raise VerificationError(checks.incomplete_reason(stream_error))
    if final is None:
        raise VerificationError(checks.incomplete_reason(None))
    tr["statements"]["final"] = [x.hex() for x in convert.signed_from_proto(final.final_statement)]
    tr["model"] = [int(v) for v in final.model]
    if final.extras_json:
        tr["model_extras"] = final.extras_json
    try:
        checks.check_final_shape(tr["model"], final.extras_json, d, T, cfg.num_params(d))
    except VerificationError:
        return  # no need for openings: the verdict (verify_transcript) rejects the model's shape
    request_proof(stub, tr, sid, seeds, kind, timeout, snark_state, session_signed[0], rows)


def _signed_root(signed, default: bytes) -> bytes:
    """The data root a (signature-checked) data statement carries; ``default`` if it carries none."""
    try:
        return bytes(Statement.decode(signed[0]).fields.get("data_root", default))
    except (TranscriptFormatError, ValueError, TypeError):
        return default


def _check_limits(lim, n: int, d: int, steps: int) -> None:
    """Refuse early, with the server's own numbers, what the trainer would refuse after the upload."""
    for what, have, cap in (("features", d, lim.max_features), ("rows", n, lim.max_rows),
                            ("training steps", steps, lim.max_steps)):
        if cap and have > cap:
            raise SessionAborted(f"RESOURCE_EXHAUSTED: this session needs {have} {what}, the trainer's limit is {cap}")
