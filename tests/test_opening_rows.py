"""protocol/opening_rows.py: whatever ``regular`` accepts, the transcript schema's value-by-value check accepts
and the openings hash's value-by-value encoding encodes to the same bytes; a row the honest client would not
record is never regular (so the value-by-value paths name it)."""

from __future__ import annotations

import copy
import random

import pytest

from protocol import evidence, opening_rows
from protocol import transcript_schema as schema
from protocol.errors import TranscriptFormatError


def honest_rows(rnd: random.Random, B: int = 6, R: int = 3, w: int = 4, depth: int = 5) -> list[dict]:
    rows = []
    for _ in range(B):
        i = rnd.randrange(10**6)
        leaf = [[rnd.randrange(-2**31, 2**31) for _ in range(w)] for _ in range(R)]
        rows.append({"index": i, "values": list(leaf[i % R]), "proof_index": i // R,
                     "proof": [rnd.randbytes(32).hex() for _ in range(depth - (i % 2))], "leaf_rows": leaf})
    return rows


def slow_encoding(rows) -> bytes:
    saved = opening_rows.regular
    try:
        opening_rows.regular = lambda rows: None
        return evidence.openings_encoding([{"step": 1, "state_before": [1], "state_after": [2],
                                            "proof_before": {"index": 0, "siblings": []},
                                            "proof_after": {"index": 1, "siblings": []}, "rows": rows}])
    finally:
        opening_rows.regular = saved


def fast_encoding(rows) -> bytes:
    return evidence.openings_encoding([{"step": 1, "state_before": [1], "state_after": [2],
                                        "proof_before": {"index": 0, "siblings": []},
                                        "proof_after": {"index": 1, "siblings": []}, "rows": rows}])


def schema_ok(rows) -> bool:
    try:
        schema._List(schema.OPENING["rows"].item).check(rows, "rows")  # the value-by-value check
        return True
    except TranscriptFormatError:
        return False


MUTATIONS = [
    ("bool value", lambda r, rnd: r["values"].__setitem__(0, True)),
    ("bool in leaf", lambda r, rnd: r["leaf_rows"][1].__setitem__(2, False)),
    ("float value", lambda r, rnd: r["values"].__setitem__(1, 1.0)),
    ("float in leaf", lambda r, rnd: r["leaf_rows"][0].__setitem__(0, 2.5)),
    ("string value", lambda r, rnd: r["values"].__setitem__(1, "7")),
    ("2^63", lambda r, rnd: r["leaf_rows"][0].__setitem__(0, 2**63)),
    ("-2^63-1", lambda r, rnd: r["values"].__setitem__(0, -2**63 - 1)),
    ("-2^63", lambda r, rnd: r["values"].__setitem__(0, -2**63)),  # in range: fine both ways
    ("2^64 index", lambda r, rnd: r.__setitem__("index", 2**64)),
    ("negative index", lambda r, rnd: r.__setitem__("index", -1)),
    ("bool index", lambda r, rnd: r.__setitem__("index", True)),
    ("float proof index", lambda r, rnd: r.__setitem__("proof_index", 3.0)),
    ("upper-case sibling", lambda r, rnd: r["proof"].__setitem__(0, r["proof"][0].upper())),
    ("short sibling", lambda r, rnd: r["proof"].__setitem__(0, r["proof"][0][:62])),
    ("odd sibling", lambda r, rnd: r["proof"].__setitem__(0, r["proof"][0][:63])),
    ("spaced sibling", lambda r, rnd: r["proof"].__setitem__(0, r["proof"][0][:62] + " a")),
    ("non-hex sibling", lambda r, rnd: r["proof"].__setitem__(0, "g" * 64)),
    ("sibling as bytes", lambda r, rnd: r["proof"].__setitem__(0, bytes(32))),
    ("no siblings", lambda r, rnd: r.__setitem__("proof", [])),
    ("proof not a list", lambda r, rnd: r.__setitem__("proof", "ab" * 32)),
    ("extra key", lambda r, rnd: r.__setitem__("extra", 1)),
    ("salt", lambda r, rnd: r.__setitem__("salt", "00" * 16)),
    ("missing key", lambda r, rnd: r.pop("proof_index")),
    ("ragged leaf", lambda r, rnd: r["leaf_rows"][0].append(1)),
    ("short leaf", lambda r, rnd: r["leaf_rows"].pop()),
    ("empty leaf", lambda r, rnd: r.__setitem__("leaf_rows", [])),
    ("empty values", lambda r, rnd: r.__setitem__("values", [])),
    ("values longer", lambda r, rnd: r["values"].append(0)),
    ("leaf as tuple", lambda r, rnd: r.__setitem__("leaf_rows", tuple(r["leaf_rows"]))),
    ("leaf row as tuple", lambda r, rnd: r["leaf_rows"].__setitem__(0, tuple(r["leaf_rows"][0]))),
    ("row as list", lambda r, rnd: r.clear()),
]


def test_honest_rows_are_regular_and_encode_the_same():
    rnd = random.Random(1)
    for _ in range(20):
        rows = honest_rows(rnd, B=rnd.randrange(1, 9), R=rnd.randrange(1, 5), w=rnd.randrange(1, 6))
        assert opening_rows.regular(rows) is not None
        assert fast_encoding(rows) == slow_encoding(rows)
        assert schema_ok(rows)


@pytest.mark.parametrize("name,change", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_changed_row_is_regular_only_if_the_slow_paths_agree(name, change):
    rnd = random.Random(name)
    for _ in range(5):
        rows = honest_rows(rnd)
        bad = copy.deepcopy(rows)
        change(bad[rnd.randrange(len(bad))], rnd)
        if opening_rows.regular(bad) is not None:
            assert schema_ok(bad), name
            assert fast_encoding(bad) == slow_encoding(bad), name
        else:  # the value-by-value paths run: the schema refuses it, or it is a row a hostile trainer can send
            assert not schema_ok(bad) or name in ("ragged leaf", "short leaf", "empty leaf", "empty values",
                                                  "values longer", "no siblings", "-2^63", "salt", "short sibling"), name
    assert (opening_rows.regular(bad) is not None) == (name in ("-2^63", "no siblings")), name
