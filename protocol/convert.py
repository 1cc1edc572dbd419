"""Conversions between protobuf messages and domain objects, in one place (``*_to_proto``/``*_from_proto``)."""

from __future__ import annotations

from itertools import chain

import numpy as np

from . import row_encoding
from .training import TrainConfig
from .wire import trainer_pb2 as pb

# Trailing metadata of a RESOURCE_EXHAUSTED refusal from a busy trainer: decimal milliseconds to wait before
# trying again (docs/PROTOCOL.md section 2).
RETRY_AFTER_KEY = "retry-after-ms"


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
                     max_constraints=lim.max_constraints, max_key_bytes=lim.max_key_bytes,
                     max_sessions_per_peer=lim.max_sessions_per_peer, max_streams_per_peer=lim.max_streams_per_peer,
                     upload_start_seconds=lim.upload_start_seconds,
                     receive_timeout_seconds=lim.receive_timeout_seconds)


def merkle_proof_to_proto(index: int, siblings) -> pb.MerkleProof:
    return pb.MerkleProof(index=index, siblings=list(siblings))


def opening_to_proto(op: dict) -> pb.StepOpening:
    t = op["step"]
    return pb.StepOpening(
        step=t, state_before=_ints(op["state_before"]), state_after=_ints(op["state_after"]),
        proof_before=merkle_proof_to_proto(t - 1, op["proof_before"]),
        proof_after=merkle_proof_to_proto(t, op["proof_after"]),
        rows=[pb.RowOpening(index=i, values=_ints(vals), proof=pb.MerkleProof(index=j, siblings=proof),
                            leaf_rows=_ints(np.asarray(leaf).reshape(-1)), salt=bytes(salt[0]) if salt else b"")
              for i, vals, j, proof, leaf, *salt in op["rows"]],
        salt_before=bytes(op.get("salt_before") or b""), salt_after=bytes(op.get("salt_after") or b""))


def _ints(values) -> list[int]:
    """Python ints for a repeated integer field (numpy's tolist converts a whole array at C speed)."""
    return values.tolist() if isinstance(values, np.ndarray) else [int(v) for v in values]


def opening_from_proto(msg: pb.StepOpening) -> dict:
    """The JSON-ready form used in transcripts and by the checks (hex strings for hashes)."""
    return {
        "step": int(msg.step),
        "state_before": list(msg.state_before),
        "state_after": list(msg.state_after),
        "proof_before": {"index": int(msg.proof_before.index), "siblings": [s.hex() for s in msg.proof_before.siblings]},
        "proof_after": {"index": int(msg.proof_after.index), "siblings": [s.hex() for s in msg.proof_after.siblings]},
        "rows": _rows(msg),
        # trainer-owned data (hiding state leaves): both salts, present when either is
        **({"salt_before": msg.salt_before.hex(), "salt_after": msg.salt_after.hex()}
           if msg.salt_before or msg.salt_after else {}),
    }


def _rows(msg: pb.StepOpening) -> list[dict]:
    """The opened rows: ``rows_packed`` decoded (protocol/packed_rows.py; TranscriptFormatError for bytes the
    encoding never produces, or for an opening that also has ``rows``), else the RowOpening messages."""
    if not msg.rows_packed:
        return rows_from_proto(msg.rows)
    from . import packed_rows
    from .errors import TranscriptFormatError

    where = f"the opening of step {msg.step}: its packed rows"
    if len(msg.rows):
        raise TranscriptFormatError(f"{where} come with row messages besides (at most one of the two is sent)")
    return packed_rows.decode(bytes(msg.rows_packed), where)


def rows_from_proto(rows) -> list[dict]:
    """RowOpening messages -> ``[{index, values, proof, proof_index, leaf_rows[, salt]}]``. At a million rows a
    spot check opens ~16,000 rows of ~20 siblings each: when every sibling is 32 bytes they are hex-encoded in
    one call and sliced, not one call each (tests/test_convert_rows.py: the same lists as row by row)."""
    sibs = [r.proof.siblings for r in rows]
    flat = list(chain.from_iterable(sibs))
    if set(map(len, flat)) <= {32}:
        hx = b"".join(flat).hex()
        hashes = [hx[i:i + 64] for i in range(0, len(hx), 64)]
    else:
        hashes = [s.hex() for s in flat]
    out, at = [], 0
    for r, s in zip(rows, sibs):
        values = list(r.values)
        row = {"index": r.index, "values": values, "proof": hashes[at:at + len(s)], "proof_index": r.proof.index,
               "leaf_rows": _split_rows(list(r.leaf_rows), len(values))}
        if r.salt:  # trainer-owned data (salted leaves)
            row["salt"] = r.salt.hex()
        out.append(row)
        at += len(s)
    return out


def _split_rows(flat: list[int], width: int) -> list[list[int]]:
    """A leaf's rows from the flat wire list (a length that is not a multiple of the row width is kept whole as
    one malformed row, for the check to reject)."""
    if not width or len(flat) % width or len(flat) == width:
        return [flat]
    return [flat[i:i + width] for i in range(0, len(flat), width)]


def rows_to_chunks(session_id: bytes, rows: np.ndarray, rows_per_chunk: int, rows_per_leaf: int = 1,
                   value_bytes: int | None = None):
    """Client side: int64 rows (n, d+1) -> DataChunk messages, values packed to ``value_bytes`` (default: the
    table's canonical width, protocol/row_encoding.py)."""
    n, w = rows.shape
    vb = row_encoding.table_value_bytes(rows) if value_bytes is None else value_bytes
    for start in range(0, n, rows_per_chunk):
        part = row_encoding.pack(rows[start:start + rows_per_chunk], vb)
        yield pb.DataChunk(session_id=session_id, num_features=w - 1, total_rows=n, num_rows=part.shape[0],
                           rows=part.tobytes(), rows_per_leaf=rows_per_leaf, value_bytes=vb)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_ROWS_TAG = bytes([pb.DataChunk.ROWS_FIELD_NUMBER << 3 | 2])  # field 5, wire type 2 (length-delimited)


def chunk_head(session_id: bytes, n: int, d: int, rows_per_leaf: int, value_bytes: int, num_rows: int,
               rows_bytes: int) -> bytes:
    """A serialized DataChunk up to its ``rows`` field's bytes (protobuf's encoding is the concatenation of its
    fields, in any order: the small fields serialized by protobuf, then the ``rows`` field's tag and length)."""
    head = pb.DataChunk(session_id=session_id, num_features=d, total_rows=n, num_rows=num_rows,
                        rows_per_leaf=rows_per_leaf, value_bytes=value_bytes).SerializeToString()
    return head + _ROWS_TAG + _varint(rows_bytes)


def rows_to_wire_chunks(session_id: bytes, rows: np.ndarray, rows_per_chunk: int, rows_per_leaf: int = 1,
                        value_bytes: int | None = None):
    """The serialized DataChunk messages of ``rows_to_chunks``, built with one copy of the rows per chunk. For a
    call made with no request serializer."""
    n, w = rows.shape
    vb = row_encoding.table_value_bytes(rows) if value_bytes is None else value_bytes
    for start in range(0, n, rows_per_chunk):
        part = row_encoding.pack(rows[start:start + rows_per_chunk], vb)
        yield b"".join((chunk_head(session_id, n, w - 1, rows_per_leaf, vb, part.shape[0], part.nbytes),
                        memoryview(part).cast("B")))


def _read_varint(mv: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(mv) and shift < 64:
        b = mv[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated or overlong varint")


def split_data_chunk(msg: bytes) -> tuple[pb.DataChunk, memoryview]:
    """Server side: a serialized DataChunk -> (the message without its ``rows``, parsed by protobuf; a view of
    the ``rows`` bytes inside ``msg``, no copy). The top-level fields are walked only to find ``rows`` (the
    last occurrence wins, as protobuf's own parser has it); everything else is protobuf's to parse and reject.
    Raises ValueError on a malformed message."""
    mv = memoryview(msg).cast("B")
    pos, rows, keep = 0, (0, 0), []
    while pos < len(mv):
        start = pos
        key, pos = _read_varint(mv, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _read_varint(mv, pos)
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _read_varint(mv, pos)
            pos += length
            if key >> 3 == pb.DataChunk.ROWS_FIELD_NUMBER and pos <= len(mv):
                rows = (pos - length, pos)
                continue
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(mv):
            raise ValueError("a field runs past the end of the message")
        keep.append(mv[start:pos])
    try:
        head = pb.DataChunk.FromString(b"".join(keep))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: a malformed message
        raise ValueError(f"malformed DataChunk: {e}") from None
    return head, mv[rows[0]:rows[1]]


def key_to_chunks(session_id: bytes, data: bytes, chunk_bytes: int):
    """Client side: proving-key bytes -> KeyChunk messages."""
    for start in range(0, len(data), chunk_bytes):
        yield pb.KeyChunk(session_id=session_id, total_bytes=len(data), data=data[start:start + chunk_bytes])
