"""Binding what the verdict rests on: the hash of the spot-check openings (signed by the trainer in the
``openings`` statement) and the client record (committed through the client nonce, which the trainer signs
in the ``session`` statement). See docs/PROTOCOL.md sections 5 and 9.

Both are computed from the transcript's JSON form, so an auditor recomputes them from the file alone; a
value that does not fit its encoding (a float, a boolean, an integer out of range, a sibling that is not
32 bytes of lower-case hex) is a TranscriptFormatError.
"""

from __future__ import annotations

import json
import struct

from . import encoding as enc
from . import opening_rows
from .errors import TranscriptFormatError
from .hashing import tagged_hash

RANDOMNESS_OS = "os"  # training seed, audit seed and nonce secret fresh from os.urandom
RANDOMNESS_FIXED = "fixed-by-user"  # training seed from --insecure-fixed-seed (audit seed still fresh)


_INT = frozenset((int,))


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TranscriptFormatError(f"malformed transcript: {what} must be an integer")
    return v


def _u64(v, what: str) -> bytes:
    v = _int(v, what)
    if not 0 <= v < 2**64:
        raise TranscriptFormatError(f"malformed transcript: {what} is out of range")
    return enc.u64(v)


def _ints(vals, what: str) -> bytes:
    if not isinstance(vals, list):
        raise TranscriptFormatError(f"malformed transcript: {what} must be a list of integers")
    if set(map(type, vals)) <= _INT and (not vals or (enc.I64_MIN <= min(vals) and max(vals) <= enc.I64_MAX)):
        return enc.u32(len(vals)) + struct.pack(f"<{len(vals)}q", *vals)  # the common case, at C speed (= int_vector;
        # bool is not ``int`` by type)
    for v in vals:
        if not enc.I64_MIN <= _int(v, what) <= enc.I64_MAX:
            raise TranscriptFormatError(f"malformed transcript: {what} holds an integer outside int64")
    return enc.int_vector(vals)


def _siblings(hexes, what: str) -> bytes:
    if not isinstance(hexes, list) or not all(isinstance(h, str) and len(h) == 64 for h in hexes):
        raise TranscriptFormatError(f"malformed transcript: {what} must be a list of 64-character hex strings")
    joined = "".join(hexes)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        raise TranscriptFormatError(f"malformed transcript: {what} is not hex") from None
    if joined != raw.hex():
        raise TranscriptFormatError(f"malformed transcript: {what} is not lower-case hex")
    return enc.u32(len(hexes)) + raw


def _proof(p, what: str) -> bytes:
    if not isinstance(p, dict):
        raise TranscriptFormatError(f"malformed transcript: {what} must be an object")
    return _u64(p.get("index"), f"{what}.index") + _siblings(p.get("siblings"), f"{what}.siblings")


def openings_encoding(openings) -> bytes:
    """u32(count) || per opening, in transcript order: u64(step) || int_vector(state_before) ||
    int_vector(state_after) || proof(proof_before) || proof(proof_after) [|| lp(salt_before) || lp(salt_after),
    trainer-owned data only, when the opening carries state salts] || u32(#rows) || per row:
    u64(index) || int_vector(values) || u64(proof_index) || u32(#siblings) || siblings ||
    u32(#leaf_rows) || int_vector(leaf_row) per row of the row's data leaf [|| lp(salt), trainer-owned data only];
    proof(p) = u64(p.index) || u32(#siblings) || siblings (32 raw bytes each)."""
    if not isinstance(openings, list):
        raise TranscriptFormatError("malformed transcript: proof.openings must be a list")
    parts = [enc.u32(len(openings))]
    for k, op in enumerate(openings):
        w = f"opening {k}"
        if not isinstance(op, dict) or not isinstance(op.get("rows"), list | opening_rows.Rows):
            raise TranscriptFormatError(f"malformed transcript: {w} must be an object with a list of rows")
        parts += [_u64(op.get("step"), f"{w}.step"), _ints(op.get("state_before"), f"{w}.state_before"),
                  _ints(op.get("state_after"), f"{w}.state_after"), _proof(op.get("proof_before"), f"{w}.proof_before"),
                  _proof(op.get("proof_after"), f"{w}.proof_after")]
        if "salt_before" in op or "salt_after" in op:  # hiding state leaves (docs/PROTOCOL.md section 12)
            parts += [enc.lp(_hex_bytes(op.get("salt_before"), f"{w}.salt_before")),
                      enc.lp(_hex_bytes(op.get("salt_after"), f"{w}.salt_after"))]
        fast = opening_rows.regular(op["rows"])  # the rows as arrays, when regular (protocol/opening_rows.py)
        if fast is not None:
            parts.append(fast.encoding())
            continue
        parts.append(enc.u32(len(op["rows"])))
        for j, r in enumerate(op["rows"]):
            if not isinstance(r, dict):
                raise TranscriptFormatError(f"malformed transcript: {w} row {j} must be an object")
            parts += [_u64(r.get("index"), f"{w} row {j} index"), _ints(r.get("values"), f"{w} row {j} values"),
                      _u64(r.get("proof_index"), f"{w} row {j} proof_index"),
                      _siblings(r.get("proof"), f"{w} row {j} proof"),
                      _leaf_rows(r.get("leaf_rows"), f"{w} row {j} leaf_rows")]
            if "salt" in r:  # trainer-owned data (docs/PROTOCOL.md section 11): u32(len) || salt
                parts.append(enc.lp(_hex_bytes(r["salt"], f"{w} row {j} salt")))
    return b"".join(parts)


def _hex_bytes(h, what: str) -> bytes:
    if not isinstance(h, str) or len(h) % 2 or h != h.lower():
        raise TranscriptFormatError(f"malformed transcript: {what} must be lower-case hex")
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise TranscriptFormatError(f"malformed transcript: {what} is not hex") from None


def _leaf_rows(rows, what: str) -> bytes:
    """u32(#rows) || int_vector(row) per row: the whole data leaf a row is opened with (vtrain/2 block leaves).
    Signed with the rest of the opening, so an edited leaf can never be blamed on the trainer."""
    if not isinstance(rows, list):
        raise TranscriptFormatError(f"malformed transcript: {what} must be a list of rows")
    return enc.u32(len(rows)) + b"".join(_ints(r, what) for r in rows)


def openings_hash(audit_seed: bytes, openings) -> bytes:
    """H("openings", audit_seed || openings_encoding(openings)): what the trainer's openings statement signs."""
    return tagged_hash("openings", bytes(audit_seed), openings_encoding(openings))


def client_record(tr: dict) -> dict:
    """The client's own choices, committed through the client nonce before the trainer picks anything:
    the metadata (data source, feature names, target, standardization, how the randomness was made), the
    server address it dialled, the rows per data leaf it chose (vtrain/2 block leaves), the width of its values
    (``value_bytes``, protocol/row_encoding.py) and the data's size,
    both seeds and K; for a session on the trainer's own data, the signed data card it chose (which holds the
    dataset's root). Not the client's own data root: the client hashes its rows while sending them, and the
    trainer's data statement binds the root before the training seed is revealed (docs/PROTOCOL.md §5)."""
    try:
        rec = {"metadata": tr["client"]["metadata"], "server": tr["server"],
                "rows_per_leaf": tr["rows_per_leaf"], "value_bytes": tr["value_bytes"],
                "num_rows": tr["num_rows"], "num_features": tr["num_features"],
                "training_seed": tr["training_seed"], "audit_seed": tr["audit_seed"],
                "spot_checks": tr["spot_checks"]}
        if "trainer_data" in tr:
            rec["trainer_data"] = tr["trainer_data"]
        return rec
    except (KeyError, TypeError) as e:
        raise TranscriptFormatError(f"malformed transcript: the client record lacks {e}") from None


def client_binding(record: dict, nonce_secret: bytes) -> bytes:
    """client_nonce = H("session-binding", json.dumps(record, sort_keys=True) || nonce_secret)."""
    try:
        text = json.dumps(record, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TranscriptFormatError(f"malformed transcript: the client record is not JSON ({e})") from None
    return tagged_hash("session-binding", text.encode(), bytes(nonce_secret))
