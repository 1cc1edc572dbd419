"""Attacks on the transcript's canonical form (protocol/transcript.py: is_canonical checked piece by piece, the
state leaves decoded while the file is read; protocol/canonical_json.py as the writer): someone editing a saved
transcript who also recomputes its integrity digest (it is not a signature). Every edit that changes a byte but
not a value must be refused as "not in canonical form" (or not valid JSON / malformed), never loaded."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import canonical_json, transcript
from protocol.errors import TranscriptFormatError
from protocol.hashing import tag_bytes

_INTEGRITY = ' "integrity": "'


def forge(text: str) -> str:
    """``text`` with its integrity line recomputed as the loader computes it (the file minus that line)."""
    lines = text.splitlines(keepends=True)
    body = hashlib.sha256(tag_bytes("transcript"))
    for ln in lines:
        if not ln.startswith(_INTEGRITY):
            body.update(ln.encode())
    digest = body.hexdigest()
    return "".join(f'{_INTEGRITY}{digest}"' + (",\n" if ln.rstrip().endswith(",") else "\n")
                   if ln.startswith(_INTEGRITY) else ln for ln in lines)


def _doc(leaves_steps: int) -> dict:
    return {"format": transcript.FORMAT, "a_list": [1, -2, 3], "b": {"k": "v", "n": 7, "x": [[1, 2], [3]]},
            "num_rows": 10, "s": "text", "state_leaves": (b"\xab\x01" * 16 * leaves_steps).hex(), "z": 0}


@pytest.fixture(params=[3, 1 << 14], ids=["small", "streamed"])
def saved(request, tmp_path):
    obj = _doc(request.param)
    text = transcript.saved_text(obj)
    path = tmp_path / "t.json"
    path.write_text(text)
    loaded, _ = transcript.load(str(path))
    assert loaded["num_rows"] == 10
    assert forge(text) == text  # the forger's digest is the writer's
    return tmp_path, text


def _load(tmp_path, text: str):
    p = tmp_path / "edited.json"
    p.write_bytes(text.encode())
    return transcript.load(str(p))


MUTATIONS = {
    "trailing space": lambda t: t.replace('"text",', '"text" ,'),
    "indent 2": lambda t: t.replace('\n "num_rows"', '\n  "num_rows"'),
    "tab": lambda t: t.replace('\n "num_rows"', '\n\t"num_rows"'),
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "no final newline": lambda t: t[:-1],
    "two final newlines": lambda t: t + "\n",
    "key order": lambda t: t.replace(' "num_rows": 10,\n "s": "text",', ' "s": "text",\n "num_rows": 10,'),
    "unicode escape": lambda t: t.replace('"text"', '"\\u0074ext"'),
    "escaped slash": lambda t: t.replace('"text"', '"te\\/xt"').replace('"text"', '"te/xt"'),
    "duplicate key": lambda t: t.replace(' "num_rows": 10,', ' "num_rows": 11,\n "num_rows": 10,'),
    "exponent": lambda t: t.replace('"num_rows": 10', '"num_rows": 1e1'),
    "minus zero": lambda t: t.replace('"z": 0', '"z": -0'),
    "leading zero": lambda t: t.replace('"num_rows": 10', '"num_rows": 010'),
    "plus sign": lambda t: t.replace('"num_rows": 10', '"num_rows": +10'),
    "huge int": lambda t: t.replace('"num_rows": 10', '"num_rows": 1' + "0" * 5000),
    "NaN": lambda t: t.replace('"z": 0', '"z": NaN'),
    "BOM": lambda t: "\ufeff" + t,
    "upper-case leaves": lambda t: t.replace('"state_leaves": "ab01', '"state_leaves": "AB01'),
    "escaped leaves": lambda t: t.replace('"state_leaves": "ab01', '"state_leaves": "\\u0061b01'),
    "space in leaves": lambda t: t.replace('"state_leaves": "ab01', '"state_leaves": "ab 01'),
    "odd leaves": lambda t: t.replace('"state_leaves": "ab01', '"state_leaves": "ab0'),
    "leaves split over lines": lambda t: t.replace('"state_leaves": "ab01', '"state_leaves": "ab\n01'),
    "second state_leaves key": lambda t: t.replace(' "z": 0', ' "z": 0,\n "state_leaves": ""'),
    "nested state_leaves line": lambda t: t.replace(' "b": {\n', ' "b": {\n "state_leaves": "ab01",\n'),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_an_edit_that_keeps_the_values_is_refused(saved, name):
    tmp_path, text = saved
    edited = MUTATIONS[name](text)
    assert edited != text, name
    with pytest.raises(TranscriptFormatError):
        _load(tmp_path, forge(edited))


def test_a_value_edit_with_a_recomputed_digest_loads_with_the_new_value(saved):
    """The control: the digest is no signature; an edit in canonical form loads (and the trainer's signatures,
    the client binding and the recomputed verdict are what catch it: tests/test_transcript_mutations.py)."""
    tmp_path, text = saved
    obj, _ = _load(tmp_path, forge(text.replace('"num_rows": 10', '"num_rows": 11')))
    assert obj["num_rows"] == 11


@pytest.mark.parametrize("value", [10.0, -0.0, 1.5, True, 2**64, -1])
def test_a_number_of_another_type_is_refused_by_the_schema(value):
    """``10.0`` (or ``-0.0``) for an integer is canonical JSON of another value: the loader keeps it and the
    schema, run before any check, refuses it as malformed."""
    from protocol.transcript_schema import SCHEMA, _check

    with pytest.raises(TranscriptFormatError, match="malformed transcript: num_rows"):
        _check(SCHEMA["num_rows"], value, "num_rows")


_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
            | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([-0.0, 0.0, 1e300, 5e-324, 1.0]))
_docs = st.recursive(_scalars, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=6), ch, max_size=4),
                     max_leaves=25)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(doc=st.dictionaries(st.text(max_size=6), _docs, max_size=5))
def test_writer_and_piecewise_check_agree_with_json_dumps(doc):
    """Held: canonical_json.dumps is json.dumps byte for byte (surrogates, -0.0, huge ints, nested empties), and
    is_canonical accepts exactly that text: the writer's files load, and no other text of the same object does."""
    want = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)
    assert canonical_json.dumps(doc) == want
    assert transcript.is_canonical(json.loads(want), want + "\n")
    assert not transcript.is_canonical(json.loads(want), want + " \n")
    assert not transcript.is_canonical(json.loads(want), want.replace("\n", "\n ", 1) + "\n") or "\n" not in want
