"""Packed opening rows in transcript files (protocol/packed_rows.py, docs/PROTOCOL.md section 9): the law
(unpack(pack(rows)) == rows, one text per content), the strict decoder, and files edited afterwards: every edit
of a packed string is a format error or ALTERED, never VERIFIED and never the trainer's fault."""

from __future__ import annotations

import base64
import copy
import json
import random

import pytest
from test_transcript_mutations import audit_outcome, transcripts  # noqa: F401 - the recorded sessions (a fixture)

from protocol import opening_rows, packed_rows
from protocol import transcript as tx
from protocol.errors import TranscriptFormatError


def _rows(rnd: random.Random, B: int, w: int, R: int, sibs) -> list[dict]:
    big = (1 << 63) - 1
    return [{"index": rnd.randrange(1 << 64), "proof_index": rnd.randrange(1 << 64),
             "values": [rnd.choice((rnd.randint(-big - 1, big), rnd.randint(-9, 9))) for _ in range(w)],
             "proof": [rnd.randbytes(32).hex() for _ in range(sibs(k))],
             "leaf_rows": [[rnd.randint(-big - 1, big) for _ in range(w)] for _ in range(R)]} for k in range(B)]


@pytest.mark.parametrize("seed", range(20))
def test_unpack_of_pack_is_the_rows(seed):
    rnd = random.Random(seed)
    B, w, R = rnd.randint(1, 9), rnd.randint(1, 5), rnd.randint(1, 4)
    sibs = (lambda k: 3) if seed % 2 else (lambda k: rnd.randint(0, 4))  # uniform (numpy) and ragged proofs
    rows = _rows(rnd, B, w, R, sibs)
    text = packed_rows.pack(opening_rows.regular(rows))
    assert packed_rows.unpack(text) == rows


def test_strict_decoding():
    rows = _rows(random.Random(1), 3, 2, 2, lambda k: 2)
    raw = opening_rows.regular(rows).encoding()
    text = packed_rows.pack(opening_rows.regular(rows))
    bad = {
        "not base64": (text[:-4] + "!!!!", "not base64"),
        "newline": (text[:8] + "\n" + text[8:], "not base64"),
        "no padding": (base64.b64encode(raw + b"\0").decode().rstrip("="), "not base64"),
        "padding bits": (base64.b64encode(raw + b"\0").decode()[:-3] + "B==", "canonical base64"),
        "cut": (base64.b64encode(raw[:-8]).decode(), "ends early"),
        "trailing": (base64.b64encode(raw + b"\0" * 8).decode(), "after its last row"),
        "empty": (base64.b64encode(b"\0\0\0\0").decode(), "never empty"),
        "count": (base64.b64encode(b"\xff\xff\xff\xff" + raw[4:]).decode(), "ends early"),
        "width": (base64.b64encode(raw[:160] + b"\0\0\0\3" + raw[164:]).decode(), "different or zero widths"),  # row 2
        "leaf size": (base64.b64encode(raw[:404] + b"\0\0\0\0" + raw[408:]).decode(), "different or zero sizes"),  # row 2
        "leaf width": (base64.b64encode(raw[:-8 * 2 - 4] + b"\0\0\0\1" + raw[-8 * 2:]).decode(), "another width"),
    }
    for t, message in bad.values():
        with pytest.raises(TranscriptFormatError, match=message):
            packed_rows.unpack(t)


@pytest.fixture(scope="module")
def sessions(transcripts):  # noqa: F811 - the imported fixture
    return transcripts


def _load(path):
    return tx.load(str(path))[0]


def test_saved_files_hold_packed_rows_and_load_as_lists(sessions, tmp_path):
    for name, tr in sessions.items():
        path = tmp_path / f"{name}.json"
        tx.save(str(path), tr)
        raw = json.loads(path.read_text())
        assert raw["format"] == packed_rows.FORMAT
        assert all(isinstance(op["rows"], str) for op in raw["proof"]["openings"])
        obj = _load(path)
        assert obj["proof"] == tr["proof"]  # the JSON lists, value for value
        assert tx.integrity(obj) == obj["integrity"]
        assert audit_outcome(obj) == audit_outcome(json.loads(json.dumps(tr)))
        tx.save(str(tmp_path / "again.json"), obj)
        assert (tmp_path / "again.json").read_bytes() == path.read_bytes()  # one text per content


def _edited_file(tr, tmp_path, edit) -> dict:
    """``tr`` saved, its file form edited by ``edit(raw JSON)``, the integrity digest recomputed (anyone can)."""
    path = tmp_path / "t.json"
    tx.save(str(path), tr)
    raw = json.loads(path.read_text())
    raw.pop("integrity")
    edit(raw)
    raw["integrity"] = tx.tagged_hash("transcript", tx.dumps(raw).encode()).hex()  # over the text as written
    path.write_text(tx.dumps(raw))
    return path


@pytest.mark.parametrize("seed", range(6))
def test_edited_packed_bytes_are_altered_or_format_errors(sessions, tmp_path, seed):
    """A changed byte inside a packed rows string, the integrity digest recomputed: the trainer's openings
    statement hashes exactly these bytes, so the audit says altered (or the decoder refuses the file)."""
    rnd = random.Random(f"packed-{seed}")
    for base in ("honest", "rejected"):
        tr = sessions[base]

        def edit(raw):
            ops = raw["proof"]["openings"]
            op = ops[rnd.randrange(len(ops))]
            data = bytearray(base64.b64decode(op["rows"]))
            at = rnd.randrange(len(data))
            data[at] ^= 1 << rnd.randrange(8)
            op["rows"] = base64.b64encode(bytes(data)).decode()

        path = _edited_file(tr, tmp_path, edit)
        try:
            obj = _load(path)
        except TranscriptFormatError:
            continue  # a count or width no longer consistent: a clear format error
        status, reason = audit_outcome(obj)
        assert status in ("altered", "error"), (base, status, reason)


def test_a_packed_list_written_as_a_list_is_not_canonical(sessions, tmp_path):
    def edit(raw):
        raw["proof"]["openings"][0]["rows"] = packed_rows.unpack(raw["proof"]["openings"][0]["rows"])

    with pytest.raises(TranscriptFormatError, match="not in canonical form"):
        _load(_edited_file(sessions["honest"], tmp_path, edit))


def test_list_format_files_are_still_read_and_refuse_packed_rows(sessions, tmp_path):
    old = copy.deepcopy(sessions["honest"])
    old["format"] = packed_rows.LIST_FORMAT
    path = tmp_path / "old.json"
    tx.save(str(path), old)
    raw = json.loads(path.read_text())
    assert all(isinstance(op["rows"], list) for op in raw["proof"]["openings"])  # written as that format writes
    assert audit_outcome(_load(path)) == audit_outcome(json.loads(json.dumps(sessions["honest"])))

    def edit(raw):
        raw["format"] = packed_rows.LIST_FORMAT

    with pytest.raises(TranscriptFormatError, match="packed, which a vtrain-transcript/2 file never is"):
        _load(_edited_file(sessions["honest"], tmp_path, edit))


def test_irregular_rows_stay_lists(sessions, tmp_path):
    """A malformed opening (here a bool among the values) is saved as the list it is; the audit rejects it."""
    tr = copy.deepcopy(sessions["honest"])
    tr["proof"]["openings"][0]["rows"][0]["values"][0] = True
    path = tmp_path / "t.json"
    tx.save(str(path), tr)
    raw = json.loads(path.read_text())
    assert isinstance(raw["proof"]["openings"][0]["rows"], list)
    assert isinstance(raw["proof"]["openings"][1]["rows"], str)
    assert _load(path)["proof"] == tr["proof"]
    assert audit_outcome(_load(path))[0] == "error"
