"""Conversions between protobuf messages and domain objects, in one place (``*_to_proto``/``*_from_proto``)."""

from __future__ import annotations

import numpy as np

from .training import TrainConfig
from .wire import trainer_pb2 as pb


def config_to_proto(cfg: TrainConfig) -> pb.TrainingConfig:
    return pb.TrainingConfig(**cfg.to_dict())


def config_from_proto(msg: pb.TrainingConfig) -> TrainConfig:
    return TrainConfig(model=msg.model, epochs=msg.epochs, batch_size=msg.batch_size, lr_num=msg.lr_num,
                       lr_shift=msg.lr_shift, l2_num=msg.l2_num, frac_bits=msg.frac_bits,
                       weight_bits=msg.weight_bits, checkpoint_interval=msg.checkpoint_interval,
                       num_classes=msg.num_classes)


def signed_to_proto(data: bytes, sig: bytes) -> pb.SignedStatement:
    return pb.SignedStatement(statement=data, signature=sig)


def signed_from_proto(msg: pb.SignedStatement) -> tuple[bytes, bytes]:
    return bytes(msg.statement), bytes(msg.signature)


def limits_to_proto(lim) -> pb.Limits:
    return pb.Limits(max_message_bytes=lim.max_message_bytes, max_rows=lim.max_rows, max_features=lim.max_features,
                     max_steps=lim.max_steps, max_sessions=lim.max_sessions,
                     idle_timeout_seconds=lim.idle_timeout_seconds, max_spot_checks=lim.max_spot_checks,
                     max_constraints=lim.max_constraints, max_key_bytes=lim.max_key_bytes)


def merkle_proof_to_proto(index: int, siblings) -> pb.MerkleProof:
    return pb.MerkleProof(index=index, siblings=list(siblings))


def opening_to_proto(op: dict) -> pb.StepOpening:
    t = op["step"]
    return pb.StepOpening(
        step=t, state_before=[int(v) for v in op["state_before"]], state_after=[int(v) for v in op["state_after"]],
        proof_before=merkle_proof_to_proto(t - 1, op["proof_before"]),
        proof_after=merkle_proof_to_proto(t, op["proof_after"]),
        rows=[pb.RowOpening(index=i, values=[int(v) for v in vals], proof=merkle_proof_to_proto(i, proof))
              for i, vals, proof in op["rows"]])


def opening_from_proto(msg: pb.StepOpening) -> dict:
    """The JSON-ready form used in transcripts and by the checks (hex strings for hashes)."""
    return {
        "step": int(msg.step),
        "state_before": [int(v) for v in msg.state_before],
        "state_after": [int(v) for v in msg.state_after],
        "proof_before": {"index": int(msg.proof_before.index), "siblings": [bytes(s).hex() for s in msg.proof_before.siblings]},
        "proof_after": {"index": int(msg.proof_after.index), "siblings": [bytes(s).hex() for s in msg.proof_after.siblings]},
        "rows": [{"index": int(r.index), "values": [int(v) for v in r.values],
                  "proof": [bytes(s).hex() for s in r.proof.siblings], "proof_index": int(r.proof.index)}
                 for r in msg.rows],
    }


def rows_to_chunks(session_id: bytes, rows: np.ndarray, rows_per_chunk: int):
    """Client side: int64 rows (n, d+1) -> DataChunk messages."""
    n, w = rows.shape
    raw = np.ascontiguousarray(rows, dtype="<i8")
    for start in range(0, n, rows_per_chunk):
        part = raw[start:start + rows_per_chunk]
        yield pb.DataChunk(session_id=session_id, num_features=w - 1, total_rows=n, num_rows=part.shape[0],
                           rows=part.tobytes())


def key_to_chunks(session_id: bytes, data: bytes, chunk_bytes: int):
    """Client side: proving-key bytes -> KeyChunk messages."""
    for start in range(0, len(data), chunk_bytes):
        yield pb.KeyChunk(session_id=session_id, total_bytes=len(data), data=data[start:start + chunk_bytes])
