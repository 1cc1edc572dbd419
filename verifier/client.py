"""The client side of a session: drives the gRPC flow, checks each signed statement as it arrives, and
records the transcript. The final verdict is ``audit.verify_transcript`` applied to that transcript."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import grpc

from protocol import convert
from protocol.dataset import Standardization, Table, quantized_rows
from protocol.errors import VerificationError
from protocol.evidence import RANDOMNESS_FIXED, RANDOMNESS_OS, client_binding, client_record
from protocol.hashing import tagged_hash
from protocol.merkle import MerkleTree, data_leaves
from protocol.prg import seed_commitment
from protocol.snark import groth16, keys_io, snarkjs_io
from protocol.snark import session as snark_session
from protocol.statements import PROTOCOL_VERSION
from protocol.training import TrainConfig
from protocol.transcript import FORMAT
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from . import checks
from .audit import Verdict, rejected_verdict, verify_transcript
from .progress import SILENT, Progress


class SessionAborted(Exception):
    """The trainer answered with a gRPC error or broke the protocol flow before any verdict."""


@dataclass
class ClientSeeds:
    """The client's secrets for one session. The audit seed and the nonce secret always come from the OS
    CSPRNG; the training seed too, unless the user fixed it (``--insecure-fixed-seed``, tests and demos)."""

    training_seed: bytes
    audit_seed: bytes
    nonce_secret: bytes
    randomness: str = RANDOMNESS_OS

    @classmethod
    def fresh(cls) -> ClientSeeds:
        return cls(os.urandom(32), os.urandom(32), os.urandom(32))

    @classmethod
    def fixed_training(cls, master: bytes) -> ClientSeeds:
        """``--insecure-fixed-seed``: the training seed (batch order, initial state) derived from ``master``, so
        a run can be repeated; the audit seed and the nonce secret stay fresh, so the challenge is still
        unpredictable. The verdict says the randomness was fixed by the user."""
        seed = tagged_hash("session-binding", b"client-seed/training", master)
        return cls(seed, os.urandom(32), os.urandom(32), RANDOMNESS_FIXED)


def open_channel(server: str, tls_ca: bytes | None = None, max_bytes: int = 64 * 1024 * 1024) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
    if tls_ca is not None:
        return grpc.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=tls_ca), options=opts)
    return grpc.insecure_channel(server, options=opts)


def run_session(channel: grpc.Channel, table: Table, stdz: Standardization, cfg: TrainConfig, *,
                spot_checks: int, seeds: ClientSeeds, trainer_key: bytes | None = None, server_label: str = "",
                progress=None, rows_per_chunk: int | None = None, timeout: float | None = None,
                proof_kind: str = "spot", max_constraints: int | None = None, status=None,
                accept_key=None, timings: dict | None = None, ui: Progress = SILENT) -> tuple[dict, Verdict]:
    """Returns (transcript, verdict). Raises SessionAborted for transport errors or a refused request.

    ``accept_key(pub)``, if given, is called with the trainer's key before anything is sent (the trust store);
    it raises to stop the session. The verdict is the transcript's own (spot check or SNARK); the caller runs
    the full replay (verify_transcript with the rows). ``ui`` shows the upload, the SNARK setup and the
    trainer's proving as progress bars (verifier/progress.py)."""
    cfg.validate()
    rows = quantized_rows(table, stdz, cfg.frac_bits)
    n, d = rows.shape[0], rows.shape[1] - 1
    meta = {"source": table.source, "feature_names": table.feature_names, "target": table.target,
            "standardization": stdz.to_dict(), "randomness": seeds.randomness}
    if proof_kind == "snark":
        try:
            snark_session.check_size(cfg, n, d, max_constraints or snark_session.DEFAULT_MAX_CONSTRAINTS)
        except ValueError as e:
            raise SessionAborted(str(e)) from None
    elif proof_kind != "spot":
        raise SessionAborted(f"unknown proof kind {proof_kind!r}")
    tr: dict = {"format": FORMAT, "server": server_label, "config": cfg.to_dict(), "proof_kind": proof_kind,
                "client": {"metadata": meta, "nonce_secret": seeds.nonce_secret.hex()},
                "num_rows": n, "num_features": d, "data_root": MerkleTree(data_leaves(rows)).root.hex(),
                "training_seed": seeds.training_seed.hex(), "audit_seed": seeds.audit_seed.hex(),
                "spot_checks": spot_checks, "statements": {}}
    # Everything the client chose, committed before the trainer picks its session id (docs/PROTOCOL.md §5).
    record = {**client_record(tr), "config": tr["config"], "proof_kind": proof_kind}
    tr["client_nonce"] = client_binding(record, seeds.nonce_secret).hex()

    try:
        _flow(tr, channel, rows, cfg, seeds, spot_checks=spot_checks, trainer_key=trainer_key, progress=progress,
              rows_per_chunk=rows_per_chunk, timeout=timeout, status=status or (lambda msg: None),
              accept_key=accept_key, ui=ui)
    except VerificationError as e:
        verdict = rejected_verdict(proof_kind, e)
        tr["verdict"] = verdict.to_dict()
        return tr, verdict
    t0 = time.perf_counter()
    verdict = verify_transcript(tr, compare_recorded=False, live=True)
    if timings is not None:
        timings["spot_check"] = time.perf_counter() - t0
    tr["verdict"] = verdict.to_dict()
    return tr, verdict


def _flow(tr, channel, rows, cfg, seeds, *, spot_checks, trainer_key, progress, rows_per_chunk, timeout, status,
          accept_key, ui=SILENT):
    """The protocol flow; records everything in ``tr`` as it arrives (so a rejection keeps what was seen)."""
    stub = pb_grpc.TrainerStub(channel)
    n, d = tr["num_rows"], tr["num_features"]
    client_nonce = bytes.fromhex(tr["client_nonce"])

    def call(fn, *a, **kw):
        try:
            return fn(*a, timeout=timeout, **kw)
        except grpc.RpcError as e:
            raise SessionAborted(f"{e.code().name}: {e.details()}") from None

    info = call(stub.GetInfo, pb.GetInfoRequest())
    pub = bytes(info.trainer_public_key)
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
    tr.update(session_id=sid.hex(), server_nonce=server_nonce.hex())
    session_signed = convert.signed_from_proto(resp.session_statement)
    tr["statements"]["session"] = [x.hex() for x in session_signed]
    checks.check_session(pub, session_signed, sid, client_nonce=client_nonce, server_nonce=server_nonce, cfg=cfg,
                         proof_kind=kind)

    data_root = bytes.fromhex(tr["data_root"])
    per_chunk = rows_per_chunk or max(1, min(1 << 20, msg_cap // 2) // ((d + 1) * 8))
    with ui.bar("uploading", total=n, unit="row") as bar:
        resp = call(stub.UploadData, _counted(convert.rows_to_chunks(sid, rows, per_chunk), bar))
    data_signed = convert.signed_from_proto(resp.data_statement)
    tr["statements"]["data"] = [x.hex() for x in data_signed]
    checks.check_data(pub, data_signed, sid, data_root=data_root, num_rows=n, num_features=d)

    commitment = seed_commitment(seeds.audit_seed, sid)
    tr["audit_commitment"] = commitment.hex()
    resp = call(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=sid, training_seed=seeds.training_seed, audit_commitment=commitment, spot_checks=spot_checks))
    rand_signed = convert.signed_from_proto(resp.randomness_statement)
    tr["statements"]["randomness"] = [x.hex() for x in rand_signed]
    checks.check_randomness(pub, rand_signed, sid, data_root=data_root, training_seed=seeds.training_seed,
                            audit_commitment=commitment, spot_checks=spot_checks)

    snark_state = None
    if kind == "snark":
        with ui.bar("SNARK setup", unit="s"):
            snark_state = _snark_setup(stub, call, tr, rows, cfg, sid, session_signed[0], seeds, status, msg_cap)
    proving = None

    leaves: list[bytes] = []
    cps: list[list[str]] = []
    final = None
    try:
        for ev in stub.Train(pb.TrainRequest(session_id=sid), timeout=timeout):
            which = ev.WhichOneof("event")
            if which == "leaves":
                if ev.leaves.first_step != len(leaves) or len(ev.leaves.hashes) % 32:
                    raise VerificationError("the trainer's stream of state commitments is out of order or malformed")
                h = bytes(ev.leaves.hashes)
                for i in range(0, len(h), 32):
                    leaves.append(h[i:i + 32])
            elif which == "checkpoint":
                cps.append([bytes(ev.checkpoint.statement).hex(), bytes(ev.checkpoint.signature).hex()])
            elif which == "progress" and ev.progress.phase == "proving":
                status("the trainer is proving" if ev.progress.step == 0 else "the trainer finished its proof")
                proving = _proving_bar(ui, proving, ev.progress.step == 0)
            elif which == "progress" and progress is not None:
                progress(ev.progress.step, ev.progress.total_steps, ev.progress.epoch, ev.progress.loss)
            elif which == "final":
                final = ev.final
    except grpc.RpcError as e:
        raise SessionAborted(f"training failed: {e.code().name}: {e.details()}") from None
    finally:
        _proving_bar(ui, proving, False)
    if final is None:
        raise SessionAborted("the training stream ended without a final statement")
    tr["statements"]["checkpoints"] = cps
    tr["statements"]["final"] = [x.hex() for x in convert.signed_from_proto(final.final_statement)]
    tr["state_leaves"] = b"".join(leaves).hex()
    tr["model"] = [int(v) for v in final.model]
    if final.extras_json:
        tr["model_extras"] = final.extras_json

    try:
        resp = stub.Prove(pb.ProveRequest(session_id=sid, audit_seed=seeds.audit_seed, kind=kind), timeout=timeout)
    except grpc.RpcError as e:
        # the model exists but comes without a proof: keep it, unverified, with the reason (the verdict is then
        # computed from everything else the trainer signed, exactly as the audit recomputes it)
        tr["proof_error"] = f"{e.code().name}: {e.details()}"
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
        snark_state["public"] = snarkjs_io.public_to_json(snark_session.public_inputs(
            tr["model"], theta0, snark_session.session_binding(session_signed[0])))
        tr["proof"] = snark_state
    else:
        tr["proof"] = {"kind": "spot", "openings": [convert.opening_from_proto(op) for op in resp.openings],
                       "statement": [x.hex() for x in convert.signed_from_proto(resp.openings_statement)]}
    try:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
    except grpc.RpcError:
        pass


def _counted(chunks, bar):
    """Pass the upload's chunks through, advancing ``bar`` by the rows each one carries."""
    for chunk in chunks:
        yield chunk
        bar.update(chunk.num_rows)


def _proving_bar(ui: Progress, bar, start: bool):
    """The trainer's proof has no known length: an elapsed-time bar between its start and end events."""
    if bar is not None:
        bar.close()
    return ui.bar("trainer proving", unit="s") if start else None


def _check_limits(lim, n: int, d: int, steps: int) -> None:
    """Refuse early, with the server's own numbers, what the trainer would refuse after the upload."""
    for what, have, cap in (("features", d, lim.max_features), ("rows", n, lim.max_rows),
                            ("training steps", steps, lim.max_steps)):
        if cap and have > cap:
            raise SessionAborted(f"RESOURCE_EXHAUSTED: this session needs {have} {what}, the trainer's limit is {cap}")


def _snark_setup(stub, call, tr, rows, cfg, sid, session_statement, seeds, status, msg_cap) -> dict:
    """Build the session's circuit, run the Groth16 setup with fresh randomness (the toxic waste never leaves
    groth16.setup_random), send the proving key, keep the verifying key."""
    import time

    from protocol.prg import SeedContext
    from protocol.training import Schedule

    sched = Schedule(SeedContext(sid, bytes.fromhex(tr["data_root"]), seeds.training_seed), cfg, *rows[:, :-1].shape)
    t0 = time.perf_counter()
    cs, _, _ = snark_session.build(rows[:, :-1], rows[:, -1], sched, cfg)
    status(f"SNARK setup: {cs.n_constraints} constraints, {cs.n_wires} wires ...")
    pk, vk = groth16.setup_random(cs)
    setup_s = time.perf_counter() - t0
    key = keys_io.pk_to_bytes(pk)
    status(f"SNARK setup done in {setup_s:.1f} s; sending the proving key ({len(key) / 1e6:.1f} MB)")
    resp = call(stub.UploadProvingKey, convert.key_to_chunks(sid, key, max(1 << 16, min(1 << 22, msg_cap // 2))))
    if bytes(resp.vk_hash) != snark_session.vk_hash(vk):
        raise VerificationError("the trainer read a different verifying key from the proving key it received")
    return {"kind": "snark", "vk": snarkjs_io.vk_to_json(vk), "constraints": cs.n_constraints,
            "setup_seconds": round(setup_s, 3), "proving_key_bytes": len(key),
            "theta0": [int(v) for v in sched.initial_state()]}
