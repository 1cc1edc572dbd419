"""The client side of a session: drives the gRPC flow, checks each signed statement as it arrives, and
records the transcript. The final verdict is ``audit.verify_transcript`` applied to that transcript."""

from __future__ import annotations

import os
from dataclasses import dataclass

import grpc
import numpy as np

from protocol import convert
from protocol.dataset import Standardization, Table, quantize_table, rows_matrix
from protocol.errors import VerificationError
from protocol.hashing import tagged_hash
from protocol.merkle import MerkleTree, data_leaves
from protocol.prg import seed_commitment
from protocol.statements import PROTOCOL_VERSION
from protocol.training import TrainConfig
from protocol.transcript import FORMAT, metadata_binding
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from . import checks
from .audit import Verdict, verify_transcript


class SessionAborted(Exception):
    """The trainer answered with a gRPC error or broke the protocol flow before any verdict."""


@dataclass
class ClientSeeds:
    training_seed: bytes
    audit_seed: bytes
    nonce_secret: bytes

    @classmethod
    def fresh(cls) -> ClientSeeds:
        return cls(os.urandom(32), os.urandom(32), os.urandom(32))

    @classmethod
    def from_master(cls, master: bytes) -> ClientSeeds:
        """--seed: reproducible client randomness (for tests and demos; a real client uses fresh seeds)."""
        def part(label: bytes) -> bytes:
            return tagged_hash("session-binding", b"client-seed/" + label, master)
        return cls(part(b"training"), part(b"audit"), part(b"nonce"))


def open_channel(server: str, tls_ca: bytes | None = None, max_bytes: int = 64 * 1024 * 1024) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
    if tls_ca is not None:
        return grpc.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=tls_ca), options=opts)
    return grpc.insecure_channel(server, options=opts)


def run_session(channel: grpc.Channel, table: Table, stdz: Standardization, cfg: TrainConfig, *,
                spot_checks: int, seeds: ClientSeeds, trainer_key: bytes | None = None, server_label: str = "",
                progress=None, rows_per_chunk: int | None = None, timeout: float | None = None) -> tuple[dict, Verdict]:
    """Returns (transcript, verdict). Raises SessionAborted for transport errors or a refused request."""
    cfg.validate()
    Xq, Yq = quantize_table(table, stdz, cfg.frac_bits)
    rows = rows_matrix(Xq, Yq)
    n, d = Xq.shape
    meta = {"source": table.source, "feature_names": table.feature_names, "target": table.target,
            "standardization": stdz.to_dict()}
    client_nonce = metadata_binding(meta, seeds.nonce_secret)
    tr: dict = {"format": FORMAT, "server": server_label, "config": cfg.to_dict(), "proof_kind": "spot",
                "client": {"metadata": meta, "nonce_secret": seeds.nonce_secret.hex()},
                "client_nonce": client_nonce.hex(), "num_rows": n, "num_features": d, "statements": {}}

    try:
        _flow(tr, channel, rows, cfg, n, d, client_nonce, spot_checks, seeds, trainer_key, progress, rows_per_chunk,
              timeout)
    except VerificationError as e:
        verdict = Verdict("rejected", "spot", str(e), e.step)
        tr["verdict"] = verdict.to_dict()
        return tr, verdict
    verdict = verify_transcript(tr, compare_recorded=False)
    tr["verdict"] = verdict.to_dict()
    return tr, verdict


def local_rows(table: Table, stdz: Standardization, frac_bits: int) -> np.ndarray:
    return rows_matrix(*quantize_table(table, stdz, frac_bits))


def _flow(tr, channel, rows, cfg, n, d, client_nonce, spot_checks, seeds, trainer_key, progress, rows_per_chunk,
          timeout):
    stub = pb_grpc.TrainerStub(channel)

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
    tr["trust"] = "pinned" if trainer_key is not None else "first-use"
    if info.protocol_version != PROTOCOL_VERSION:
        raise SessionAborted(f"the trainer speaks {info.protocol_version!r}, this client {PROTOCOL_VERSION!r}")
    _check_limits(info.limits, n, d, cfg.num_steps(n))
    msg_cap = info.limits.max_message_bytes or (4 << 20)

    resp = call(stub.OpenSession, pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=client_nonce,
                                                        proof_kind="spot"))
    sid, server_nonce = bytes(resp.session_id), bytes(resp.server_nonce)
    tr.update(session_id=sid.hex(), server_nonce=server_nonce.hex())
    session_signed = convert.signed_from_proto(resp.session_statement)
    tr["statements"]["session"] = [x.hex() for x in session_signed]
    checks.check_session(pub, session_signed, sid, client_nonce=client_nonce, server_nonce=server_nonce, cfg=cfg,
                         proof_kind="spot")

    data_root = MerkleTree(data_leaves(rows)).root
    tr["data_root"] = data_root.hex()
    per_chunk = rows_per_chunk or max(1, min(1 << 20, msg_cap // 2) // ((d + 1) * 8))
    resp = call(stub.UploadData, convert.rows_to_chunks(sid, rows, per_chunk))
    data_signed = convert.signed_from_proto(resp.data_statement)
    tr["statements"]["data"] = [x.hex() for x in data_signed]
    checks.check_data(pub, data_signed, sid, data_root=data_root, num_rows=n, num_features=d)

    commitment = seed_commitment(seeds.audit_seed, sid)
    tr.update(training_seed=seeds.training_seed.hex(), audit_seed=seeds.audit_seed.hex(),
              audit_commitment=commitment.hex(), spot_checks=spot_checks)
    resp = call(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=sid, training_seed=seeds.training_seed, audit_commitment=commitment, spot_checks=spot_checks))
    rand_signed = convert.signed_from_proto(resp.randomness_statement)
    tr["statements"]["randomness"] = [x.hex() for x in rand_signed]
    checks.check_randomness(pub, rand_signed, sid, data_root=data_root, training_seed=seeds.training_seed,
                            audit_commitment=commitment, spot_checks=spot_checks)

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
            elif which == "progress" and progress is not None:
                progress(ev.progress.step, ev.progress.total_steps, ev.progress.epoch, ev.progress.loss)
            elif which == "final":
                final = ev.final
    except grpc.RpcError as e:
        raise SessionAborted(f"training failed: {e.code().name}: {e.details()}") from None
    if final is None:
        raise SessionAborted("the training stream ended without a final statement")
    tr["statements"]["checkpoints"] = cps
    tr["statements"]["final"] = [x.hex() for x in convert.signed_from_proto(final.final_statement)]
    tr["state_leaves"] = b"".join(leaves).hex()
    tr["model"] = [int(v) for v in final.model]

    resp = call(stub.Prove, pb.ProveRequest(session_id=sid, audit_seed=seeds.audit_seed, kind="spot"))
    tr["proof"] = {"kind": "spot", "openings": [convert.opening_from_proto(op) for op in resp.openings]}
    try:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
    except grpc.RpcError:
        pass


def _check_limits(lim, n: int, d: int, steps: int) -> None:
    """Refuse early, with the server's own numbers, what the trainer would refuse after the upload."""
    for what, have, cap in (("features", d, lim.max_features), ("rows", n, lim.max_rows),
                            ("training steps", steps, lim.max_steps)):
        if cap and have > cap:
            raise SessionAborted(f"RESOURCE_EXHAUSTED: this session needs {have} {what}, the trainer's limit is {cap}")
