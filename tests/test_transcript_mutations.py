"""Property test (issue #7 section 4): thousands of structured mutations of real transcripts go through the
audit. Whatever the change, the audit never raises anything but a clear format/input error (exit 2), never
says VERIFIED for a changed transcript, and never blames the trainer for a change to what it signed."""

from __future__ import annotations

import copy
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from procs import verifier_json

from protocol import transcript as tx
from protocol.dataset import fit_standardization, load_table
from protocol.errors import InputError, TranscriptFormatError
from protocol.training import TrainConfig
from prover.server import build_server
from verifier.audit import verify_transcript
from verifier.client import ClientSeeds, open_channel, run_session

MUTATIONS_PER_TRANSCRIPT = 1000
# small batches keep each transcript (and so each audit) small: T = 142 steps, 7 checkpoints, 4 rows per opening
CFG = TrainConfig(model="logistic", epochs=1, batch_size=4, lr_num=205, checkpoint_interval=20)

def record_session(adversary: str | None, master: bytes, spot_checks: int):
    """A transcript recorded by the real client from a real gRPC server (in process, port 0)."""
    server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary=adversary)
    server.start()
    try:
        table = load_table("builtin:breast_cancer")
        channel = open_channel(f"127.0.0.1:{port}")
        tr, verdict = run_session(channel, table, fit_standardization(table, CFG.model), CFG,
                                  spot_checks=spot_checks, seeds=ClientSeeds.fixed_training(master))
        channel.close()
    finally:
        server.stop(None)
    return tr, verdict


@pytest.fixture(scope="module")
def transcripts():
    honest, v = record_session(None, b"mutations", 4)
    assert v.status == "spot-checked", v
    caught, v = record_session("all-steps", b"mutations", 3)
    assert v.status == "rejected" and v.step is not None
    return {"honest": honest, "rejected": caught}


def _paths(node, path=()):
    """Every (path, value) in the JSON tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _parent(tr, path):
    cur = tr
    for p in path[:-1]:
        cur = cur[p]
    return cur


def _other_type(v, rnd):
    if isinstance(v, bool):
        return rnd.choice([int(v), str(v).lower(), None])
    if isinstance(v, int):
        return rnd.choice([float(v), bool(v & 1), str(v), None, [v]])
    if isinstance(v, float):
        return rnd.choice([int(v), str(v), None, True])
    if isinstance(v, str):
        return rnd.choice([len(v), None, [v], {"x": v}, True])
    if isinstance(v, list):
        return rnd.choice([{"0": v[0]} if v else {}, None, len(v), json.dumps(v)[:40]])
    if isinstance(v, dict):
        return rnd.choice([list(v.values()), None, 1, "x"])
    return rnd.choice([0, "", [], {}])


def _changed_number(v, rnd):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return rnd.choice([v + 1, v - 1, 2**70, -(2**70), 2**63, 2**64, -1, 0, v * 2 + 1])
    return v * 2 + 0.5


def _changed_string(s: str, rnd):
    if not s:
        return "0"
    hexy = all(c in "0123456789abcdef" for c in s)
    options = ["truncate", "char"]
    if hexy:
        options += ["odd", "upper", "nibble"]
    kind = rnd.choice(options)
    if kind == "truncate":
        return s[:-2] if len(s) > 2 else ""
    if kind == "odd":
        return s[:-1]
    if kind == "upper":
        return s.upper() if s.upper() != s else s + "A"
    i = rnd.randrange(len(s))
    if kind == "nibble":
        return s[:i] + ("0123456789abcdef"[(int(s[i], 16) + rnd.randrange(1, 16)) % 16]) + s[i + 1:]
    return s[:i] + chr((ord(s[i]) - 31) % 95 + 32) + s[i + 1:]


_PATHS: dict[int, tuple[list, list]] = {}


def mutate(tr: dict, rnd: random.Random) -> tuple[dict, tuple, str]:
    """One structured mutation at a random node: -> (mutated copy, path, kind). A quarter of the draws are
    in the signed statements' hex (a few strings that carry everything the trainer signed)."""
    if id(tr) not in _PATHS:
        every = [p for p, _ in _paths(tr) if p]
        _PATHS[id(tr)] = (every, [p for p in every if p[0] == "statements" and isinstance(_get(tr, p), str)])
    every, statements = _PATHS[id(tr)]
    out = json.loads(json.dumps(tr))
    path = rnd.choice(statements if rnd.random() < 0.25 else every)
    parent, key, value = _parent(out, path), path[-1], _get(out, path)
    kinds = ["type", "drop", "number", "string", "swap", "add"]
    kind = rnd.choice(kinds)
    if kind == "type":
        parent[key] = _other_type(value, rnd)
    elif kind == "drop":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif kind == "number" and isinstance(value, int | float):
        parent[key] = _changed_number(value, rnd)
    elif kind == "string" and isinstance(value, str):
        parent[key] = _changed_string(value, rnd)
    elif kind == "swap" and isinstance(parent, list) and len(parent) > 1:
        j = rnd.randrange(len(parent))
        parent[key], parent[j] = parent[j], parent[key]
    elif kind == "add":
        target = value if isinstance(value, dict) else parent if isinstance(parent, dict) else None
        if target is None:
            parent.insert(key, copy.deepcopy(value))
        else:
            target[rnd.choice(["extra", "note", "x"])] = rnd.choice([1, "x", None, [1]])
    else:  # fall back to a type change
        kind = "type"
        parent[key] = _other_type(value, rnd)
    return out, path, kind


def _get(tr, path):
    cur = tr
    for p in path:
        cur = cur[p]
    return cur


def audit_outcome(tr: dict) -> tuple[str, str]:
    """What `vtrain-verifier audit` concludes, in process: ("error", message) for exit 2 (malformed transcript
    or input), else (verdict status, reason). Anything else raised is a bug (the test fails with it)."""
    try:
        v = verify_transcript(tr)
    except (TranscriptFormatError, InputError) as e:
        return "error", str(e)
    return v.status, v.reason


@pytest.mark.parametrize("base", ["honest", "rejected"])
def test_structured_mutations_never_crash_verify_or_frame(transcripts, base):
    tr = transcripts[base]
    original = tx.dumps(tr)
    rnd = random.Random(f"vtrain-mutations-{base}")
    seen: dict[str, int] = {}
    for _ in range(MUTATIONS_PER_TRANSCRIPT):
        bad, path, kind = mutate(tr, rnd)
        if tx.dumps(bad) == original:
            continue  # a no-op (e.g. two equal items swapped)
        status, reason = audit_outcome(bad)  # any other exception fails the test here, with its traceback
        seen[status] = seen.get(status, 0) + 1
        # never a positive verdict for a changed transcript, and never a rejection: every edit either breaks a
        # signature or binding (altered), or the schema (malformed), and nothing an editor does is evidence
        # against the trainer (signed openings and the bound client record of issue #7 section 3)
        assert status in ("error", "altered"), (".".join(map(str, path)), kind, status, reason)
    assert seen.get("error", 0) > 100 and seen.get("altered", 0) > 100, seen  # both kinds of refusal are reached


@pytest.mark.parametrize("seed", range(4))
def test_mutations_through_the_cli(transcripts, tmp_path, seed):
    """A few mutated transcripts, saved as an attacker would (canonical, integrity digest recomputed), through
    the real CLI: the same outcome as in process, exit 2 for malformed, never a traceback."""
    rnd = random.Random(f"cli-{seed}")
    tr = transcripts["honest"]
    for _ in range(3):
        bad, path, kind = mutate(tr, rnd)
        if tx.dumps(bad) == tx.dumps(tr):
            continue
        status, _ = audit_outcome(bad)
        p = tmp_path / "bad.json"
        tx.save(str(p), bad)
        rc, doc, err = verifier_json("audit", str(p))
        assert "Traceback" not in err, err
        assert rc == {"error": 2, "altered": 2}[status], (path, kind, rc, doc, err)
        if status == "error":
            assert "malformed transcript" in err or "error:" in err, err


@pytest.mark.parametrize("field, value, words", [
    ("num_rows", 569.0, "malformed transcript: num_rows must be an integer, got 569.0"),
    ("num_rows", True, "malformed transcript: num_rows must be an integer, got true"),
    ("model", [2**70], "malformed transcript: model[0] must be an integer in"),
    ("spot_checks", "4", "malformed transcript: spot_checks must be an integer"),
    ("extra", 1, "malformed transcript: extra is not a field"),
    ("config", None, "malformed transcript: config must be an object"),
])
def test_malformed_fields_are_named(transcripts, field, value, words):
    bad = copy.deepcopy(transcripts["honest"])
    bad[field] = value
    with pytest.raises(TranscriptFormatError) as ei:
        verify_transcript(bad)
    assert str(ei.value).startswith(words), ei.value


def test_opening_step_and_row_index_types(transcripts):
    for mutate_one, words in (
        (lambda op: op.__setitem__("step", float(op["step"])), "proof.openings[0].step must be an integer"),
        (lambda op: op["rows"][0].__setitem__("index", True), "proof.openings[0].rows[0].index must be an integer, got true"),
        (lambda op: op.pop("proof_after"), "proof.openings[0].proof_after is missing"),
        (lambda op: op["state_before"].__setitem__(0, 2**63), "proof.openings[0].state_before[0] must be an integer in"),
    ):
        bad = copy.deepcopy(transcripts["honest"])
        mutate_one(bad["proof"]["openings"][0])
        with pytest.raises(TranscriptFormatError) as ei:
            verify_transcript(bad)
        assert str(ei.value).startswith(f"malformed transcript: {words}"), ei.value


# -- the streamed state leaves (issue #13): a saved transcript's leaves are decoded block by block ----------

def _streamed(path, monkeypatch):
    """tx.load with every state_leaves field streamed (decoded to a temporary file), as for a large session."""
    from protocol.state_leaves import StreamedHex

    monkeypatch.setattr(tx, "STREAM_MIN_HEX", 0)
    obj, _ = tx.load(str(path))
    assert isinstance(obj["state_leaves"], StreamedHex)
    return obj


def _leaf_edits(hexstr: str, rnd: random.Random):
    """Edits of the leaves' hex an attacker could save with a recomputed integrity digest (each stays lower-case
    hex): one nibble, a leaf dropped, two leaves swapped, a leaf added."""
    i = rnd.randrange(len(hexstr) // 64)
    j = (i + 1 + rnd.randrange(len(hexstr) // 64 - 1)) % (len(hexstr) // 64)
    leaf = lambda k: hexstr[64 * k:64 * k + 64]
    nib = rnd.randrange(len(hexstr))
    swapped = [hexstr[k:k + 64] for k in range(0, len(hexstr), 64)]
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return {
        "nibble": hexstr[:nib] + "0123456789abcdef"[(int(hexstr[nib], 16) + 1) % 16] + hexstr[nib + 1:],
        "drop": hexstr[:64 * i] + hexstr[64 * i + 64:],
        "swap": "".join(swapped),
        "add": hexstr[:64 * i] + leaf(j) + hexstr[64 * i:],
    }


@pytest.mark.parametrize("base", ["honest", "rejected"])
def test_streamed_leaves_verdict_is_the_in_memory_one(transcripts, tmp_path, monkeypatch, base):
    tx.save(str(tmp_path / "t.json"), transcripts[base])
    obj = _streamed(tmp_path / "t.json", monkeypatch)
    assert obj["state_leaves"] == transcripts[base]["state_leaves"]
    assert tx.integrity(obj) == tx.integrity(transcripts[base])
    assert audit_outcome(obj) == audit_outcome(json.loads(json.dumps(transcripts[base])))


@pytest.mark.parametrize("seed", range(3))
def test_streamed_leaf_edits_are_altered_never_blamed_on_the_trainer(transcripts, tmp_path, monkeypatch, seed):
    rnd = random.Random(f"streamed-{seed}")
    for base in ("honest", "rejected"):
        for kind, hexstr in _leaf_edits(transcripts[base]["state_leaves"], rnd).items():
            bad = {**transcripts[base], "state_leaves": hexstr}
            tx.save(str(tmp_path / "t.json"), bad)  # canonical, integrity recomputed: only the signatures catch it
            status, reason = audit_outcome(_streamed(tmp_path / "t.json", monkeypatch))
            assert status == "altered", (base, kind, status, reason)


def test_streamed_leaves_text_edits_are_format_errors(transcripts, tmp_path, monkeypatch):
    """Edits of the file's text inside the streamed value: each a clear format error (exit 2)."""
    path = tmp_path / "t.json"
    tx.save(str(path), transcripts["honest"])
    text = path.read_text()
    start = text.index('\n "state_leaves": "') + len('\n "state_leaves": "')
    monkeypatch.setattr(tx, "STREAM_MIN_HEX", 0)
    edits = {
        "upper": (text[:start] + "A" + text[start + 1:], "lower-case hex"),
        "non-hex": (text[:start] + "g" + text[start + 1:], "lower-case hex"),
        "escape": (text[:start] + "\\u0061" + text[start + 1:], "lower-case hex"),
        "odd": (text[:start] + text[start + 1:], "odd length"),
        "integrity": (text[:start] + ("1" if text[start] != "1" else "2") + text[start + 1:], "damaged or was edited"),
        "cut": (text[:start + 100], "ends inside state_leaves"),
        "non-ascii": (text[:start] + "\u00e9" + text[start + 1:], "lower-case hex"),
    }
    for kind, (body, message) in edits.items():
        path.write_bytes(body.encode())
        with pytest.raises(TranscriptFormatError, match=message):
            tx.load(str(path))
        _, err = audit_outcome_cli(path)
        assert message in err and "Traceback" not in err, (kind, err)


def audit_outcome_cli(path) -> tuple[int, str]:
    """The CLI on the same file (the same decoder; a field this small ends up as text): exit 2, the same
    message."""
    p = __import__("procs").verifier("audit", str(path))
    assert p.returncode == 2, p.stdout
    return p.returncode, p.stderr


def test_leaves_are_read_from_the_checked_copy(transcripts, tmp_path, monkeypatch):
    """What the audit reads is what load() checked: rewriting the file after loading changes nothing."""
    path = tmp_path / "t.json"
    tx.save(str(path), transcripts["honest"])
    obj = _streamed(path, monkeypatch)
    bad = {**transcripts["honest"], "state_leaves": "00" * (len(transcripts["honest"]["state_leaves"]) // 2)}
    tx.save(str(path), bad)
    assert audit_outcome(obj) == audit_outcome(json.loads(json.dumps(transcripts["honest"])))
