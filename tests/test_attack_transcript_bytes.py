"""Someone editing a saved transcript's spot-check openings (docs/PROTOCOL.md section 9), byte by byte, with the
integrity digest recomputed (anyone can): every edit of what the trainer's openings statement covers makes the
audit say ALTERED or refuse the file (exit 2), never VERIFIED or spot-checked, never REJECTED (the trainer
signed the original bytes, so an edit is not its fault).

Written against the file as it is, whatever the format version: an opening's rows saved as a packed string
(base64 of the bytes the openings statement hashes) get a bit flipped in every byte of the count and of the
first row, and in every 7th byte of the other rows; rows saved as JSON lists get every number and every hash
changed in turn. Then structured edits of an opening's rows
(rows swapped, duplicated, dropped, one row's leaf or proof given to another, an index moved), re-saved with the
library, which packs them again when the format does. A file in a format this version does not read is an
exit-2 error naming the format.
"""

from __future__ import annotations

import base64
import copy
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from procs import verifier
from test_transcript_mutations import audit_outcome

from protocol import transcript as tx
from protocol.dataset import Table, fit_standardization
from protocol.errors import TranscriptFormatError
from protocol.training import TrainConfig
from prover.server import build_server
from verifier.client import ClientSeeds, open_channel, run_session

# a small session (64 rows of 3 features, B = 4, one row per leaf): an audit takes a few ms, so every byte of an
# opening can be tried
CFG = TrainConfig(model="logistic", epochs=1, batch_size=4, lr_num=205, checkpoint_interval=4)
SIGNED_OK = ("verified", "spot-checked")


def record(adversary: str | None = None, master: bytes = b"bytes"):
    """A small session recorded by the real client from a real gRPC server in process -> (transcript, verdict)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(64, 3))
    table = Table(["a", "b", "c"], "y", X, (X @ [1.0, -2.0, 0.5] > 0).astype(float), source="synthetic")
    server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary=adversary)
    server.start()
    try:
        channel = open_channel(f"127.0.0.1:{port}")
        out = run_session(channel, table, fit_standardization(table, CFG.model), CFG, spot_checks=3,
                          seeds=ClientSeeds.fixed_training(master))
        channel.close()
    finally:
        server.stop(None)
    return out


@pytest.fixture(scope="module")
def sessions():
    honest, cheat = record()[0], record("all-steps")[0]
    assert audit_outcome(json.loads(json.dumps(honest)))[0] in SIGNED_OK
    assert audit_outcome(json.loads(json.dumps(cheat)))[0] == "rejected"
    return {"honest": honest, "rejected": cheat}


@pytest.fixture(scope="module")
def saved(sessions, tmp_path_factory):
    """Each transcript's file form (the JSON the file holds, integrity removed)."""
    out = {}
    for name, tr in sessions.items():
        path = tmp_path_factory.mktemp("saved") / f"{name}.json"
        tx.save(str(path), tr)
        raw = json.loads(path.read_text())
        raw.pop("integrity")
        out[name] = raw
    return out


def _outcome_of_file(raw: dict, path) -> tuple[str, str]:
    """Write ``raw`` (file form) with a recomputed integrity digest, load it and audit it."""
    doc = dict(raw)
    doc["integrity"] = tx.integrity(raw)
    path.write_text(tx.dumps(doc))
    try:
        obj, _ = tx.load(str(path))
    except TranscriptFormatError as e:
        return "error", str(e)
    return audit_outcome(obj)


def _first_row_end(data: bytes) -> int:
    """The end of the first row of packed rows (docs/PROTOCOL.md section 8's encoding: u32 count, then per row
    u64 index, u32 w, w i64 values, u64 leaf index, u32 s, s siblings, u32 R, R leaf rows of u32 w + w i64)."""
    w = int.from_bytes(data[12:16], "big")
    at = 4 + 8 + 4 + 8 * w + 8
    s = int.from_bytes(data[at:at + 4], "big")
    at += 4 + 32 * s
    r = int.from_bytes(data[at:at + 4], "big")
    return at + 4 + r * (4 + 8 * w)


def _edits_of_rows(rows):
    """Every single edit of an opening's saved rows: -> (description, edited copy)."""
    if isinstance(rows, str):  # packed: one bit flipped (a different bit for neighbouring bytes) in every byte of
        data = base64.b64decode(rows)  # the count and of the first row (each row has the same layout), then in
        first = _first_row_end(data)  # every 7th byte of the others (every field of every row is hit)
        for i in [*range(first), *range(first, len(data), 7)]:
            b = bytearray(data)
            b[i] ^= 1 << (i % 8)
            yield f"byte {i}", base64.b64encode(bytes(b)).decode()
        return
    for r, row in enumerate(rows):  # JSON lists: every number +1, every hash with one nibble changed
        for key in ("index", "proof_index"):
            out = copy.deepcopy(rows)
            out[r][key] = row[key] + 1
            yield f"row {r} {key}", out
        for j in range(len(row["values"])):
            out = copy.deepcopy(rows)
            out[r]["values"][j] += 1
            yield f"row {r} value {j}", out
        for k in range(len(row["proof"])):
            out = copy.deepcopy(rows)
            h = row["proof"][k]
            out[r]["proof"][k] = ("1" if h[0] == "0" else "0") + h[1:]
            yield f"row {r} sibling {k}", out
        for a, leaf in enumerate(row["leaf_rows"]):
            for j in range(len(leaf)):
                out = copy.deepcopy(rows)
                out[r]["leaf_rows"][a][j] += 1
                yield f"row {r} leaf row {a} value {j}", out


@pytest.mark.parametrize("base", ["honest", "rejected"])
def test_every_byte_of_an_openings_rows_is_covered(saved, tmp_path, base):
    doc = copy.deepcopy(saved[base])
    ops = doc["proof"]["openings"]
    tried = 0
    for k in range(len(ops)):
        original = ops[k]["rows"]
        for what, edited in _edits_of_rows(original):
            ops[k]["rows"] = edited
            try:
                status, reason = _outcome_of_file(doc, tmp_path / "t.json")
            finally:
                ops[k]["rows"] = original
            assert status in ("altered", "error"), (base, k, what, status, reason)
            tried += 1
        if k == 0 and base == "rejected":
            break  # the cheating trainer's transcript: one opening is enough (its verdict step is elsewhere)
    assert tried > 50, tried


def _structured(rows: list) -> dict:
    r0, r1 = rows[0], rows[1]
    edits = {
        "rows swapped": [r1, r0, *rows[2:]],
        "row duplicated": [*rows, copy.deepcopy(r0)],
        "last row dropped": rows[:-1],
        "row 0 given row 1's leaf": [{**r0, "leaf_rows": r1["leaf_rows"]}, *rows[1:]],
        "row 0 given row 1's proof": [{**r0, "proof": r1["proof"], "proof_index": r1["proof_index"]}, *rows[1:]],
        "row 0 moved to row 1's index": [{**r0, "index": r1["index"], "proof_index": r1["proof_index"]}, *rows[1:]],
        "row 0 replaced by row 1": [copy.deepcopy(r1), *rows[1:]],
    }
    return {k: copy.deepcopy(v) for k, v in edits.items()}


@pytest.mark.parametrize("base", ["honest", "rejected"])
def test_structured_edits_of_an_opening_resaved_with_the_library(sessions, tmp_path, base):
    tr = sessions[base]
    for k in range(len(tr["proof"]["openings"])):
        for what, rows in _structured(tr["proof"]["openings"][k]["rows"]).items():
            edited = json.loads(json.dumps(tr))
            edited["proof"]["openings"][k]["rows"] = rows
            path = tmp_path / "t.json"
            tx.save(str(path), edited)  # re-saved as the library writes it (packed again where it packs)
            try:
                obj, _ = tx.load(str(path))
            except TranscriptFormatError:
                continue
            status, reason = audit_outcome(obj)
            assert status in ("altered", "error"), (base, k, what, status, reason)


def test_a_file_in_a_format_this_version_does_not_read_is_a_clear_error(saved, tmp_path):
    raw = copy.deepcopy(saved["honest"])
    raw["format"] = "vtrain-transcript/1"
    path = tmp_path / "old.json"
    _outcome_of_file(raw, path)  # written with a valid digest
    p = verifier("audit", str(path))
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr[-800:])
    assert "vtrain-transcript/1" in p.stderr and "vtrain-transcript/" in p.stderr.replace("/1", ""), p.stderr
