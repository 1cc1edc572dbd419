"""Transcript files (protocol/transcript.py): canonical JSON only, strict typed accessors."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import transcript as tx
from protocol.errors import TranscriptFormatError

SAMPLE = {
    "format": tx.FORMAT,
    "session_id": "00" * 16,
    "num_rows": 569,
    "spot_checks": 8,
    "flag": True,
    "ratio": 0.25,
    "model": [1, -2, 3],
    "statements": {"data": ["ab" * 4, "cd" * 64], "checkpoints": [["01", "02"], ["03", "04"]]},
    "client": {"metadata": {"source": "builtin:diabetes", "feature_names": ["a", "é"]}},
    "state_leaves": "11" * 64,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def test_dumps_is_the_documented_form():
    text = tx.dumps(SAMPLE)
    assert text == json.dumps(SAMPLE, sort_keys=True, indent=1, ensure_ascii=True) + "\n"
    assert text.isascii() and text.endswith("}\n")


def test_round_trip():
    text = tx.dumps(SAMPLE)
    assert tx.loads(text) == SAMPLE
    assert tx.dumps(tx.loads(text)) == text


@settings(max_examples=100, deadline=None, derandomize=True)
@given(obj=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_round_trip_property(obj):
    text = tx.dumps(obj)
    assert tx.loads(text) == obj
    assert tx.dumps(tx.loads(text)) == text


@settings(max_examples=200, deadline=None, derandomize=True)
@given(obj=st.dictionaries(st.text(max_size=6), json_values, max_size=5), data=st.data())
def test_piecewise_canonical_check_is_dumps_equality(obj, data):
    """load's canonical check compares the encoder's pieces with the text (no second full copy): it accepts
    exactly dumps(obj), and refuses any one-character insertion, deletion or change and any truncation."""
    text = tx.dumps(obj)
    assert tx.is_canonical(obj, text)
    i = data.draw(st.integers(0, len(text)))
    c = data.draw(st.sampled_from([" ", "\n", "0", '"', "a", "}"]))
    for edited in (text[:i] + c + text[i:], text[:i] + text[i + 1:], text[:i] + c + text[i + 1:], text[:i]):
        assert tx.is_canonical(obj, edited) == (edited == text)


def _variants(text: str) -> dict[str, str]:
    compact = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    unsorted = json.dumps(dict(reversed(list(json.loads(text).items()))), indent=1, ensure_ascii=True) + "\n"
    return {
        "extra space after colon": text.replace('": ', '":  ', 1),
        "extra space at end of line": text.replace(",\n", ", \n", 1),
        "indent 2": json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=True) + "\n",
        "compact": compact,
        "keys reordered": unsorted,
        "no final newline": text[:-1],
        "two final newlines": text + "\n",
        "CRLF": text.replace("\n", "\r\n"),
        "leading space": " " + text,
        "non-ASCII unescaped": text.replace("\\u00e9", "é"),
        "float written differently": text.replace("0.25", "0.250"),
        "duplicate key": text.replace('{\n "client"', '{\n "client": 1,\n "client"', 1),
        "uppercase unicode escape": text.replace("\\u00e9", "\\u00E9"),
    }


def test_non_canonical_changes_rejected():
    text = tx.dumps(SAMPLE)
    for name, bad in _variants(text).items():
        assert bad != text, name
        with pytest.raises(TranscriptFormatError, match="canonical|valid JSON|JSON object"):
            tx.loads(bad)
    # 569 -> 569.0 is canonical JSON of a changed value: the typed accessor refuses it
    changed = tx.loads(text.replace("569", "569.0"))
    with pytest.raises(TranscriptFormatError, match="wrong type"):
        tx.get(changed, "num_rows", int)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_rejected(bad):
    text = tx.dumps({"x": 1.5}).replace("1.5", bad)
    with pytest.raises(TranscriptFormatError, match="not valid JSON"):
        tx.loads(text)
    with pytest.raises(ValueError):
        tx.dumps({"x": float(bad.lower().replace("infinity", "inf"))})


@pytest.mark.parametrize("bad", ["", "{", "[1, 2]\n", "1\n", '"x"\n', "null\n", "{}{}\n", "[" * 100000 + "]" * 100000])
def test_not_an_object_or_not_json(bad):
    with pytest.raises(TranscriptFormatError):
        tx.loads(bad)


def test_save_and_load(tmp_path):
    path = tmp_path / "t.json"
    digest = tx.save(str(path), SAMPLE)
    raw = path.read_bytes()
    assert digest == hashlib.sha256(raw).hexdigest()
    obj, digest2 = tx.load(str(path))
    assert obj == {**SAMPLE, "integrity": tx.integrity(SAMPLE)} and digest2 == digest


def test_integrity_digest_catches_a_consistent_looking_edit(tmp_path):
    """An edit that keeps the file canonical (a changed informational value) is refused as damaged."""
    path = tmp_path / "t.json"
    tx.save(str(path), SAMPLE)
    obj = json.loads(path.read_text())
    obj["format"] = tx.FORMAT
    obj["server"] = "somewhere-else:1"  # a field no signature covers
    path.write_text(tx.dumps(obj))
    with pytest.raises(TranscriptFormatError, match="damaged or was edited"):
        tx.load(str(path))


def test_load_errors(tmp_path):
    with pytest.raises(TranscriptFormatError, match="cannot read"):
        tx.load(str(tmp_path / "missing.json"))
    p = tmp_path / "latin1.json"
    p.write_bytes(tx.dumps({"format": tx.FORMAT}).encode().replace(b"}", b"\xe9}"))
    with pytest.raises(TranscriptFormatError, match="non-ASCII"):
        tx.load(str(p))
    p = tmp_path / "other.json"
    p.write_text(tx.dumps({"format": "something-else/1"}))
    with pytest.raises(TranscriptFormatError, match="is not a vtrain-transcript/3 file"):
        tx.load(str(p))
    obj, _ = tx.load(str(p), what="model file")  # the format check is only for transcripts
    assert obj["format"] == "something-else/1"


# -- typed accessors ----------------------------------------------------------------------------------------

def test_get():
    assert tx.get(SAMPLE, "num_rows", int) == 569
    assert tx.get(SAMPLE, "client.metadata.source", str) == "builtin:diabetes"
    assert tx.get(SAMPLE, "statements", dict)["data"][0] == "abababab"
    for path in ("nope", "client.nope", "client.metadata.source.deeper", "num_rows.x"):
        with pytest.raises(TranscriptFormatError, match="is missing"):
            tx.get(SAMPLE, path)
    for path, kind in (("num_rows", str), ("flag", int), ("session_id", int), ("model", dict), ("ratio", int)):
        with pytest.raises(TranscriptFormatError, match="wrong type"):
            tx.get(SAMPLE, path, kind)


def test_get_hex():
    assert tx.get_hex(SAMPLE, "session_id", 16) == bytes(16)
    assert tx.get_hex(SAMPLE, "state_leaves") == b"\x11" * 64
    with pytest.raises(TranscriptFormatError, match="must be 32 bytes, got 16"):
        tx.get_hex(SAMPLE, "session_id", 32)
    for bad in ("0g", "abc", "zz"):
        with pytest.raises(TranscriptFormatError, match="not hex"):
            tx.get_hex({"x": bad}, "x")
    with pytest.raises(TranscriptFormatError, match="wrong type"):
        tx.get_hex({"x": 12}, "x")
    with pytest.raises(TranscriptFormatError, match="is missing"):
        tx.get_hex({}, "x")


@pytest.mark.parametrize("bad", ["AB" * 16, "ab " * 16, " " + "ab" * 16])
def test_get_hex_is_strict_lowercase(bad):
    with pytest.raises(TranscriptFormatError):
        tx.get_hex({"x": bad}, "x", 16)


def test_signed_accessors():
    assert tx.get_signed(SAMPLE, "statements.data") == (b"\xab" * 4, b"\xcd" * 64)
    assert tx.get_signed_list(SAMPLE, "statements.checkpoints") == [(b"\x01", b"\x02"), (b"\x03", b"\x04")]
    for bad in (["ab"], ["ab", "cd", "ef"], ["ab", 5], "abcd", ["xx", "cd"]):
        with pytest.raises(TranscriptFormatError):
            tx.get_signed({"s": bad}, "s")
    for bad in ([["ab"]], [["ab", "cd"], ["ab", "zz"]], "ab", [["ab", "cd", "ef"]]):
        with pytest.raises(TranscriptFormatError):
            tx.get_signed_list({"s": bad}, "s")


@pytest.mark.parametrize("bad", [[5], [{"ab": 1, "cd": 2}], [None]])
def test_signed_list_elements_must_be_pairs(bad):
    with pytest.raises(TranscriptFormatError):
        tx.get_signed_list({"s": bad}, "s")


def test_get_int_list():
    assert tx.get_int_list(SAMPLE, "model") == [1, -2, 3]
    assert tx.get_int_list({"m": []}, "m") == []
    for bad in ([1, 2.0], [True], ["1"], [1, None], "123", {"a": 1}):
        with pytest.raises(TranscriptFormatError):
            tx.get_int_list({"m": bad}, "m")


def test_split_leaves():
    leaves = tx.split_leaves("11" * 32 + "22" * 32)
    assert leaves == [b"\x11" * 32, b"\x22" * 32]
    for bad in ("", "11" * 31, "11" * 33, "zz" * 32):
        with pytest.raises(TranscriptFormatError, match="state leaves"):
            tx.split_leaves(bad)


def test_metadata_binding():
    meta = {"source": "x", "feature_names": ["a"]}
    a = tx.metadata_binding(meta, bytes(32))
    assert len(a) == 32
    assert a == tx.metadata_binding(dict(reversed(list(meta.items()))), bytes(32))  # key order irrelevant
    assert a != tx.metadata_binding(meta, bytes([1]) + bytes(31))
    assert a != tx.metadata_binding({**meta, "source": "y"}, bytes(32))
