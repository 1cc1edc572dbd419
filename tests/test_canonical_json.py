"""protocol/canonical_json.py is json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False),
byte for byte, errors included."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical_json import dumps


def _ref(obj) -> str:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)


_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=8))
_docs = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=5), max_leaves=40)


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_same_bytes_as_json_dumps(doc):
    assert dumps(doc) == _ref(doc)


@pytest.mark.parametrize("doc", [{}, [], [[]], {"a": {}}, {"a": []}, [1, [2, [3, {}]]], ["\u00e9\u2603\n\"", 1.5e300],
                                 {"b": 1, "a": [True, None, -0.0]}, (1, (2, 3)), {"x": ("y", {"z": ()})},
                                 {"rows": [[1, -2], [3, 4]], "proof": ["aa", "bb"], "k": 1}])
def test_edge_cases(doc):
    assert dumps(doc) == _ref(doc)


def test_non_string_keys_fall_back_to_json():
    doc = {"a": {1: [2], 2: {"b": 3}}}
    assert dumps(doc) == _ref(doc)


@pytest.mark.parametrize("bad", [math.nan, [1, math.inf], {"a": [{"b": -math.inf}]}])
def test_non_finite_floats_are_refused_like_json(bad):
    with pytest.raises(ValueError):
        _ref(bad)
    with pytest.raises(ValueError):
        dumps(bad)


@pytest.mark.parametrize("bad", [object(), [1, object()], {"a": [{"b": {1, 2}}]}, b"x"])
def test_unserializable_values_raise_type_error_like_json(bad):
    with pytest.raises(TypeError):
        _ref(bad)
    with pytest.raises(TypeError):
        dumps(bad)


@pytest.mark.parametrize("obj", [{"format": "f", "z": [1, {"a": "integrity"}], "a": {}},
                                 {"a": 1, "b": "x\n \"integrity\": 1"}, {"zz": 1}, {"a": [1]},
                                 {"integrity": "old", "model": [1, 2], "format": "f"}])
def test_saved_text_is_the_canonical_text_with_its_integrity(obj):
    """transcript.save encodes once and inserts the integrity line: the same bytes as encoding twice."""
    from protocol import transcript as tx

    assert tx.saved_text(obj) == tx.dumps({**obj, "integrity": tx.integrity(obj)})


@pytest.mark.parametrize("obj", [{"format": "f", "z": [1, {"a": "integrity"}], "a": {}}, {"zz": 1}, {"a": [1]},
                                 {"integrity": "old", "model": [1, 2], "format": "f"}, {"b": {"x": [1, 2.5]}},
                                 {"a": "x", "b": {"c": [[1, 2], [3]]}, "zz": {"y": None, "x": True}}])
def test_save_with_integrity_returns_the_digest_of_the_saved_file(obj, tmp_path):
    """The digest a replay attestation signs (verifier/attest.py) is taken from the save: it must be the integrity
    of the file as loaded, and the sha256 that of the file's bytes."""
    import hashlib
    import json

    from protocol import transcript as tx

    path = tmp_path / "t.json"
    sha, digest = tx.save_with_integrity(str(path), obj)
    data = path.read_bytes()
    assert sha == hashlib.sha256(data).hexdigest() == tx.save(str(tmp_path / "u.json"), obj)
    assert digest == tx.integrity(obj) == json.loads(data)["integrity"]
    assert data.decode() == tx.saved_text(obj) == tx.dumps({**obj, "integrity": digest})  # canonical, byte for byte
    assert tx.load(str(path))[0] == {**obj, "integrity": digest} if obj.get("format") == tx.FORMAT else True
