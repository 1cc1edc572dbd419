"""The proof side of a client session: the SNARK setup before training (client data) and the Prove request
after it, whose answer (spot-check openings or a SNARK proof) is recorded in the transcript."""

from __future__ import annotations

import time

import grpc

from protocol import convert
from protocol.errors import TranscriptFormatError, VerificationError
from protocol.peer_text import peer_text
from protocol.prg import SeedContext
from protocol.snark import groth16, keys_io, snarkjs_io
from protocol.snark import session as snark_session
from protocol.training import Schedule
from protocol.wire import trainer_pb2 as pb

from .connection import LOST, SessionIncomplete, lost_message, too_large


def request_proof(stub, tr: dict, sid: bytes, seeds, kind: str, timeout, snark_state, session_statement: bytes,
                  rows) -> None:
    """Ask for the proof of the finished training (the audit seed goes out here) and record it in ``tr``; a
    refused proof is recorded as ``proof_error``. Closes the session."""
    try:
        resp = stub.Prove(pb.ProveRequest(session_id=sid, audit_seed=seeds.audit_seed, kind=kind), timeout=timeout)
    except grpc.RpcError as e:
        if e.code() in LOST:
            raise SessionIncomplete(lost_message(e, timeout, "while proving"), tr) from None
        # the model exists but comes without a proof: keep it, unverified, with the reason (the verdict is then
        # computed from everything else the trainer signed, exactly as the audit recomputes it)
        tr["proof_error"] = (f"its answer is larger than this session allows: {peer_text(e.details())}" if too_large(e)
                             else f"{e.code().name}: {peer_text(e.details())}")
        return
    if kind == "snark":
        try:
            proof = snarkjs_io.proof_from_bytes(bytes(resp.snark_proof))
        except ValueError as e:
            raise VerificationError(f"the trainer's SNARK proof is malformed: {e}") from None
        snark_state["proof"] = snarkjs_io.proof_to_json(proof)
        snark_state["statement"] = [bytes(resp.snark_statement.statement).hex(),
                                    bytes(resp.snark_statement.signature).hex()]
        theta0 = snark_state.pop("theta0")
        binding = snark_session.session_binding(session_statement)
        if rows is None:
            from .trainer_data_client import private_public

            public = private_public(tr, tr["model"], theta0, binding)
        else:
            public = snark_session.public_inputs(tr["model"], theta0, binding)
        snark_state["public"] = snarkjs_io.public_to_json(public)
        tr["proof"] = snark_state
    else:
        try:
            openings = [convert.opening_from_proto(op) for op in resp.openings]
        except TranscriptFormatError as e:  # packed rows that no honest encoding produces: no proof to record
            tr["proof_error"] = f"its openings are malformed: {e}"
            openings = None
        if openings is not None:
            tr["proof"] = {"kind": "spot", "openings": openings,
                           "statement": [x.hex() for x in convert.signed_from_proto(resp.openings_statement)]}
    try:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
    except grpc.RpcError:
        pass


def setup_snark(stub, call, tr, rows, cfg, sid, session_statement, seeds, status, msg_cap) -> dict:
    """Build the session's circuit, run the Groth16 setup with fresh randomness (the toxic waste never leaves
    groth16.setup_random), send the proving key, keep the verifying key."""
    sched = Schedule(SeedContext(sid, bytes.fromhex(tr["data_root"]), seeds.training_seed), cfg, *rows[:, :-1].shape)
    t0 = time.perf_counter()
    cs, _, _ = snark_session.build(rows[:, :-1], rows[:, -1], sched, cfg)
    status(f"SNARK setup: {cs.n_constraints} constraints, {cs.n_wires} wires ...")
    pk, vk = groth16.setup_random(cs)
    setup_s = time.perf_counter() - t0
    return send_proving_key(stub, call, sid, pk, vk, cs, setup_s, sched, msg_cap, status,
                            f"SNARK setup done in {setup_s:.1f} s")


def send_proving_key(stub, call, sid, pk, vk, cs, setup_s: float, sched, msg_cap: int, status, done: str) -> dict:
    """Send the proving key, check the trainer read the same verifying key from it; the transcript's snark
    record (shared by the client-data and trainer-data setups)."""
    key = keys_io.pk_to_bytes(pk)
    status(f"{done}; sending the proving key ({len(key) / 1e6:.1f} MB)")
    resp = call(stub.UploadProvingKey, convert.key_to_chunks(sid, key, max(1 << 16, min(1 << 22, msg_cap // 2))))
    if bytes(resp.vk_hash) != snark_session.vk_hash(vk):
        raise VerificationError("the trainer read a different verifying key from the proving key it received")
    return {"kind": "snark", "vk": snarkjs_io.vk_to_json(vk), "constraints": cs.n_constraints,
            "setup_seconds": round(setup_s, 3), "proving_key_bytes": len(key),
            "theta0": [int(v) for v in sched.initial_state()]}
