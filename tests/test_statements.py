"""Signed statements (protocol/statements.py): canonical encoding, strict parsing, binding, signatures."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import flip_bit, load_vectors
from hypothesis import given, settings
from hypothesis import strategies as st
from make_vectors import statement_examples

from protocol import encoding as enc
from protocol.errors import BindingMismatch, SignatureInvalid, TranscriptFormatError
from protocol.keys import public_bytes
from protocol.statements import MAGIC, SCHEMAS, Statement, expect_fields, sign, verify

EXAMPLES = {st_.kind: st_ for st_ in statement_examples()}
SID = statement_examples()[0].session_id
REJECTIONS = (SignatureInvalid, BindingMismatch, TranscriptFormatError)


def test_examples_cover_every_kind():
    assert set(EXAMPLES) == set(SCHEMAS)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_encode_decode_round_trip(kind):
    stmt = EXAMPLES[kind]
    data = stmt.encode()
    assert data.startswith(MAGIC)
    back = Statement.decode(data)
    assert back == stmt and back.encode() == data


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_encoding_follows_the_specification(kind):
    """statement = MAGIC || text(kind) || lp(session_id) || (text(name) || lp(value))* in schema order."""
    stmt = EXAMPLES[kind]
    parts = [MAGIC, enc.text(kind), enc.lp(SID)]
    for name, ftype in SCHEMAS[kind]:
        v = stmt.fields[name]
        raw = {"u64": lambda x: struct.pack(">Q", x), "u32": lambda x: struct.pack(">I", x),
               "text": lambda x: x.encode()}.get(ftype, bytes)(v)
        parts += [enc.text(name), enc.lp(raw)]
    assert stmt.encode() == b"".join(parts)
    assert MAGIC == b"vtrain/v1/statement\x00"


def test_kat_encodings_and_signatures():
    v = load_vectors("statements")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["private_key_seed"]))
    assert public_bytes(key).hex() == v["public_key"]
    pub = bytes.fromhex(v["public_key"])
    assert [e["kind"] for e in v["statements"]] == [s.kind for s in statement_examples()]
    for stmt, want in zip(statement_examples(), v["statements"]):
        data, sig = sign(key, stmt)
        assert data.hex() == want["encoding"] and sig.hex() == want["signature"], stmt.kind
        assert verify(pub, data, sig, kind=stmt.kind, session_id=SID) == stmt


@settings(max_examples=40, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(SCHEMAS)), sid=st.binary(max_size=20), data=st.data())
def test_round_trip_random_values(kind, sid, data):
    fields = {}
    for name, ftype in SCHEMAS[kind]:
        fields[name] = data.draw({
            "b32": st.binary(min_size=32, max_size=32), "b16": st.binary(min_size=16, max_size=16),
            "bytes": st.binary(max_size=40), "u64": st.integers(0, 2**64 - 1), "u32": st.integers(0, 2**32 - 1),
            "text": st.text(max_size=20),
        }[ftype])
    stmt = Statement(kind, sid, fields)
    assert Statement.decode(stmt.encode()) == stmt


# -- binding ----------------------------------------------------------------------------------------------

def test_other_kind_never_verifies_as_this_one(signing_key):
    pub = public_bytes(signing_key)
    for stmt in statement_examples():
        data, sig = sign(signing_key, stmt)
        for other in SCHEMAS:
            if other == stmt.kind:
                continue
            with pytest.raises(BindingMismatch, match=f"expected a {other} statement"):
                verify(pub, data, sig, kind=other, session_id=SID)


def test_other_session_never_verifies_as_this_one(signing_key):
    pub = public_bytes(signing_key)
    for stmt in statement_examples():
        data, sig = sign(signing_key, stmt)
        for sid in (SID[::-1], SID[:-1], SID + b"\x00", b""):
            with pytest.raises(BindingMismatch, match="bound to session"):
                verify(pub, data, sig, kind=stmt.kind, session_id=sid)


def test_wrong_key_rejected(signing_key):
    other = public_bytes(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    for stmt in statement_examples():
        data, sig = sign(signing_key, stmt)
        with pytest.raises(SignatureInvalid):
            verify(other, data, sig, kind=stmt.kind, session_id=SID)
    data, sig = sign(signing_key, EXAMPLES["data"])
    for bad_pub in (b"", bytes(31), bytes(33)):
        with pytest.raises(SignatureInvalid):
            verify(bad_pub, data, sig, kind="data", session_id=SID)
    for bad_sig in (b"", sig[:-1], sig + b"\x00"):
        with pytest.raises(SignatureInvalid):
            verify(public_bytes(signing_key), data, bad_sig, kind="data", session_id=SID)


@settings(max_examples=250, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(SCHEMAS)), frac=st.floats(0, 1, exclude_max=True))
def test_any_flipped_bit_is_rejected(signing_key, kind, frac):
    pub = public_bytes(signing_key)
    data, sig = sign(signing_key, EXAMPLES[kind])
    blob = data + sig
    bit = int(frac * 8 * len(blob))
    bad = flip_bit(blob, bit)
    with pytest.raises(REJECTIONS):
        verify(pub, bad[:len(data)], bad[len(data):], kind=kind, session_id=SID)


def test_every_flipped_bit_of_one_statement_is_rejected(signing_key):
    pub = public_bytes(signing_key)
    data, sig = sign(signing_key, EXAMPLES["final"])
    blob = data + sig
    for bit in range(8 * len(blob)):
        bad = flip_bit(blob, bit)
        with pytest.raises(REJECTIONS):
            verify(pub, bad[:len(data)], bad[len(data):], kind="final", session_id=SID)


def test_expect_fields_fires(signing_key):
    stmt = EXAMPLES["data"]
    expect_fields(stmt, dict(stmt.fields))
    expect_fields(stmt, {})
    for name, wrong in (("data_root", bytes(32)), ("num_rows", 570), ("num_features", 29)):
        with pytest.raises(BindingMismatch, match=f"{name} is") as ei:
            expect_fields(stmt, {**stmt.fields, name: wrong})
        assert ei.value.evidence == {"field": name}


# -- strict parsing ---------------------------------------------------------------------------------------

def _signed_raw(signing_key, data: bytes):
    return data, signing_key.sign(data)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_trailing_bytes_rejected_even_when_signed(signing_key, kind):
    data = EXAMPLES[kind].encode() + b"\x00"
    with pytest.raises(TranscriptFormatError, match="trailing bytes"):
        Statement.decode(data)
    with pytest.raises(TranscriptFormatError, match="trailing bytes"):
        verify(public_bytes(signing_key), *_signed_raw(signing_key, data), kind=kind, session_id=SID)


def test_truncation_rejected_at_every_length():
    data = EXAMPLES["randomness"].encode()
    for cut in range(len(data)):
        with pytest.raises(TranscriptFormatError):
            Statement.decode(data[:cut])


def test_malformed_statements_rejected(signing_key):
    good = EXAMPLES["data"]
    head = MAGIC + enc.text("data") + enc.lp(SID)
    fields = [enc.text("data_root") + enc.lp(bytes(32)), enc.text("num_rows") + enc.lp(enc.u64(5)),
              enc.text("num_features") + enc.lp(enc.u32(2))]
    tail = enc.text("rows_per_leaf") + enc.lp(enc.u32(1)) + enc.text("value_bytes") + enc.lp(enc.u32(8))
    assert Statement.decode(head + b"".join(fields) + tail).fields["num_rows"] == 5
    cases = {
        "bad magic": b"vtrain/v2/statement\x00" + head[len(MAGIC):] + b"".join(fields),
        "unknown kind": MAGIC + enc.text("dataX") + enc.lp(SID) + b"".join(fields),
        "fields reordered": head + fields[1] + fields[0] + fields[2],
        "field missing": head + fields[0] + fields[1],
        "wrong field name": head + fields[0] + enc.text("num_row") + enc.lp(enc.u64(5)) + fields[2],
        "short b32": head + enc.text("data_root") + enc.lp(bytes(31)) + fields[1] + fields[2],
        "u64 as 4 bytes": head + fields[0] + enc.text("num_rows") + enc.lp(enc.u32(5)) + fields[2],
        "u32 as 8 bytes": head + fields[0] + fields[1] + enc.text("num_features") + enc.lp(enc.u64(2)) + tail,
        "length beyond end": head + fields[0] + fields[1] + enc.text("num_features") + enc.u32(99) + b"\x00" * 4,
    }
    for data in cases.values():
        with pytest.raises(TranscriptFormatError):
            Statement.decode(data)
        with pytest.raises(TranscriptFormatError):
            verify(public_bytes(signing_key), *_signed_raw(signing_key, data), kind="data", session_id=SID)
    assert good.encode() != cases["fields reordered"]


def test_text_field_must_be_utf8():
    stmt = EXAMPLES["session"]
    data = stmt.encode().replace(enc.lp(b"spot"), enc.lp(b"\xff\xfe\xfd\xfc"))
    with pytest.raises(TranscriptFormatError, match="UTF-8"):
        Statement.decode(data)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(SCHEMAS)), pos=st.floats(0, 1, exclude_max=True), new=st.integers(0, 255))
def test_decode_is_canonical(kind, pos, new):
    """Whatever bytes decode, they are the unique encoding of what they decode to."""
    data = bytearray(EXAMPLES[kind].encode())
    data[int(pos * len(data))] = new
    try:
        stmt = Statement.decode(bytes(data))
    except TranscriptFormatError:
        return
    assert stmt.encode() == bytes(data)


def test_encode_validates():
    with pytest.raises(ValueError, match="unknown statement kind"):
        Statement("nope", SID, {}).encode()
    with pytest.raises(ValueError, match="needs fields"):
        Statement("data", SID, {"data_root": bytes(32)}).encode()
    with pytest.raises(ValueError, match="needs fields"):
        Statement("data", SID, {**EXAMPLES["data"].fields, "extra": 1}).encode()
    with pytest.raises(ValueError, match="must be 32 bytes"):
        Statement("data", SID, {**EXAMPLES["data"].fields, "data_root": bytes(31)}).encode()
    with pytest.raises(ValueError, match="must be 32 bytes"):
        Statement("data", SID, {**EXAMPLES["data"].fields, "data_root": "00" * 32}).encode()
    for name, bad in (("num_rows", -1), ("num_rows", 2**64), ("num_features", 2**32)):
        with pytest.raises(ValueError, match="out of range"):
            Statement("data", SID, {**EXAMPLES["data"].fields, name: bad}).encode()


def test_encode_rejects_non_integer_values():
    for bad in (569.9, True, "569"):
        with pytest.raises(TypeError):
            Statement("data", SID, {**EXAMPLES["data"].fields, "num_rows": bad}).encode()


SMALL_ORDER_IDENTITY = bytes([1]) + bytes(31)  # the neutral element, a small-order Ed25519 public key


def test_small_order_trainer_key_cannot_verify_anything():
    data = EXAMPLES["final"].encode()
    forged = SMALL_ORDER_IDENTITY + bytes(32)
    with pytest.raises(SignatureInvalid):
        verify(SMALL_ORDER_IDENTITY, data, forged, kind="final", session_id=SID)
