"""Signed statements: canonical, domain-separated byte strings signed with Ed25519.

Encoding of a statement (docs/PROTOCOL.md, "Statements")::

    "vtrain/v1/statement" 0x00 || text(kind) || lp(session_id) || for each field of the kind's schema,
    in schema order: text(name) || lp(value)

where integers inside ``value`` are fixed-width big-endian. The kind and the session id lead the
message, so a statement of another kind or session never verifies as this one; the trainer's key is
bound inside the session statement, and every later statement carries the session id.
Parsing is strict: the exact schema, no trailing bytes.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import encoding as enc
from .errors import BindingMismatch, SignatureInvalid, TranscriptFormatError

PROTOCOL_VERSION = "vtrain/2"
MAGIC = b"vtrain/v1/statement\x00"

# field type: "b32" 32 bytes, "b16" 16 bytes, "bytes" any, "u64", "u32", "text"
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "session": (("protocol_version", "text"), ("trainer_key", "b32"), ("client_nonce", "b32"),
                ("server_nonce", "b32"), ("config", "bytes"), ("proof_kind", "text")),
    "data": (("data_root", "b32"), ("num_rows", "u64"), ("num_features", "u32"), ("rows_per_leaf", "u32"),
             ("value_bytes", "u32")),
    "randomness": (("data_root", "b32"), ("training_seed", "b32"), ("audit_commitment", "b32"),
                   ("spot_checks", "u32")),
    "checkpoint": (("step", "u64"), ("state_leaf", "b32"), ("prefix_root", "b32")),
    "final": (("num_steps", "u64"), ("state_root", "b32"), ("model_hash", "b32")),
    "snark": (("vk_hash", "b32"), ("proof_hash", "b32"), ("model_hash", "b32")),
    # the spot-check answer: protocol.evidence.openings_hash(audit_seed, openings)
    "openings": (("audit_seed", "b32"), ("openings_hash", "b32")),
    # a standing statement (session id empty): the public data card of a trainer-owned dataset, with the root of
    # its hiding commitment (protocol/trainer_data.py, docs/PROTOCOL.md section 11)
    "data-card": (("protocol_version", "text"), ("trainer_key", "b32"), ("name", "text"), ("num_rows", "u64"),
                  ("num_features", "u32"), ("feature_names", "bytes"), ("target", "text"), ("models", "text"),
                  ("frac_bits", "u32"), ("standardization", "bytes"), ("leaf_encoding", "text"),
                  ("rows_per_leaf", "u32"), ("data_root", "b32"), ("zk_commitment", "bytes"),
                  ("zk_weight_bits", "u32"), ("max_reveal_ppm", "u32"), ("min_batch", "u32")),
    # not a trainer statement: the client's own record of a full replay, signed with its local key
    # (verifier/attest.py); never verified under a trainer key
    "attestation": (("transcript_digest", "b32"), ("model_hash", "b32"), ("data_root", "b32"),
                    ("num_steps", "u64"), ("result", "text")),
}


def _enc_value(kind: str, name: str, ftype: str, value) -> bytes:
    if ftype in ("b32", "b16"):
        n = 32 if ftype == "b32" else 16
        if not isinstance(value, (bytes, bytearray)) or len(value) != n:
            raise ValueError(f"{kind}.{name} must be {n} bytes")
        return bytes(value)
    if ftype == "bytes":
        return bytes(value)
    if ftype in ("u64", "u32"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{kind}.{name} must be an int, got {type(value).__name__}")
        return enc.u64(value) if ftype == "u64" else enc.u32(value)
    if ftype == "text":
        return str(value).encode("utf-8")
    raise AssertionError(ftype)


def _dec_value(ftype: str, raw: bytes):
    if ftype in ("b32", "b16"):
        n = 32 if ftype == "b32" else 16
        if len(raw) != n:
            raise TranscriptFormatError(f"field must be {n} bytes, got {len(raw)}")
        return raw
    if ftype == "bytes":
        return raw
    if ftype == "u64":
        if len(raw) != 8:
            raise TranscriptFormatError("u64 field must be 8 bytes")
        return struct.unpack(">Q", raw)[0]
    if ftype == "u32":
        if len(raw) != 4:
            raise TranscriptFormatError("u32 field must be 4 bytes")
        return struct.unpack(">I", raw)[0]
    if ftype == "text":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TranscriptFormatError("text field is not UTF-8") from e
    raise AssertionError(ftype)


@dataclass(frozen=True)
class Statement:
    kind: str
    session_id: bytes
    fields: dict

    def encode(self) -> bytes:
        schema = SCHEMAS.get(self.kind)
        if schema is None:
            raise ValueError(f"unknown statement kind {self.kind!r}")
        if set(self.fields) != {n for n, _ in schema}:
            raise ValueError(f"{self.kind} statement needs fields {[n for n, _ in schema]}")
        parts = [MAGIC, enc.text(self.kind), enc.lp(self.session_id)]
        for name, ftype in schema:
            parts.append(enc.text(name))
            parts.append(enc.lp(_enc_value(self.kind, name, ftype, self.fields[name])))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Statement:
        r = enc.Reader(data, "statement", TranscriptFormatError)
        if r.take(len(MAGIC)) != MAGIC:
            raise TranscriptFormatError("not a vtrain statement (bad magic)")
        kind = r.lp().decode("utf-8", errors="replace")
        schema = SCHEMAS.get(kind)
        if schema is None:
            raise TranscriptFormatError(f"unknown statement kind {kind!r}")
        session_id = r.lp()
        fields = {}
        for name, ftype in schema:
            got = r.lp().decode("utf-8", errors="replace")
            if got != name:
                raise TranscriptFormatError(f"{kind} statement: expected field {name!r}, found {got!r}")
            fields[name] = _dec_value(ftype, r.lp())
        if not r.done():
            raise TranscriptFormatError(f"{kind} statement has trailing bytes")
        return cls(kind, session_id, fields)


def sign(key: Ed25519PrivateKey, stmt: Statement) -> tuple[bytes, bytes]:
    """Returns (canonical bytes, signature)."""
    data = stmt.encode()
    return data, key.sign(data)


@functools.lru_cache(maxsize=64)
def _weak_key(public_key: bytes) -> str | None:
    from .keys import weak_public_key

    return weak_public_key(public_key)  # pure-Python point arithmetic: once per key, not once per statement


@functools.lru_cache(maxsize=1 << 14)
def _signature_ok(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Ed25519 verification, remembered: the live client and the audit check the same statements again."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(public_key: bytes, data: bytes, signature: bytes, *, kind: str, session_id: bytes) -> Statement:
    """Verify a signed statement of the expected kind and session; returns the parsed statement.

    Raises SignatureInvalid (bad signature) or BindingMismatch (other kind or session)."""
    weak = _weak_key(bytes(public_key))
    if weak:
        raise SignatureInvalid(f"the trainer key is {weak}: no signature under it is evidence")
    if not _signature_ok(bytes(public_key), bytes(signature), bytes(data)):
        raise SignatureInvalid(f"the {kind} statement's signature does not verify under the trainer key")
    stmt = Statement.decode(data)
    if stmt.kind != kind:
        raise BindingMismatch(f"expected a {kind} statement, got a {stmt.kind} statement")
    if stmt.session_id != session_id:
        raise BindingMismatch(f"the {kind} statement is bound to session {stmt.session_id.hex()}, "
                              f"not {session_id.hex()}")
    return stmt


def expect_fields(stmt: Statement, expected: dict) -> None:
    """Every field in ``expected`` must equal the statement's value."""
    for name, value in expected.items():
        if stmt.fields[name] != value:
            got = stmt.fields[name]
            show = (lambda v: v.hex() if isinstance(v, bytes) else v)
            raise BindingMismatch(f"the {stmt.kind} statement's {name} is {show(got)}, expected {show(value)}",
                                  evidence={"field": name})
