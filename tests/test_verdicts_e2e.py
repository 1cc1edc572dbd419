"""Verdict words with real processes (issue #7 sections 2-3, #13 item 4): the trust store, the signer line of
`audit`, `--no-replay`, and `predict --defense auto` never trusting a model on its file's word."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol import transcript as tx
from protocol.prg import challenge_steps
from protocol.statements import Statement

EPOCHS, T = "1", 17  # breast cancer, B = 32: 17 steps
FAST = ("--n0", "20", "--n", "200", "--alpha", "0.01", "--seed", "3")


def _train(addr, out: Path, *extra):
    return verifier_json("train", "--server", addr, "--data", "builtin:breast_cancer", "--model", "logistic",
                         "--epochs", EPOCHS, "--batch-size", "32", "--spot-checks", "4", "--out", str(out / "t.json"),
                         "--model-out", str(out / "m.json"), *extra)


def _store() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "vtrain" / "known_trainers"


def test_trust_store_records_first_use_and_refuses_a_changed_key(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (key1, pub1), (key2, pub2) = make_key(tmp_path / "a"), make_key(tmp_path / "b")
    with ProverProcess(key1) as srv:
        addr = srv.address
        rc, doc, err = _train(addr, tmp_path, "--no-replay")
    assert rc == 3 and doc["signer"] == {"key": pub1, "trust": "first-use"}, (doc, err)
    assert _store().read_text().splitlines()[-1] == f"{addr} {pub1}"
    assert stat.S_IMODE(_store().stat().st_mode) == 0o600
    (tmp_path / "t.json").rename(tmp_path / "first.json")
    with ProverProcess(key2, listen=addr) as srv:  # another key at the same address
        p = verifier("train", "--server", addr, "--data", "builtin:breast_cancer", "--model", "logistic",
                     "--epochs", EPOCHS, "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m2.json"))
        assert p.returncode == 2 and pub1 in p.stderr and pub2 in p.stderr, p.stderr
        assert f"--trainer-key {pub2}" in p.stderr and "Traceback" not in p.stderr
        assert not (tmp_path / "t.json").exists() and not (tmp_path / "m2.json").exists()
        rc, doc, err = _train(addr, tmp_path, "--no-replay", "--trainer-key", pub2)  # deliberate acceptance
        assert rc == 3 and doc["signer"]["trust"] == "pinned", err
    assert f"{addr} {pub2}" in _store().read_text() and pub1 not in _store().read_text()
    # audit: which key signed, and how it is trusted
    p = verifier("audit", str(tmp_path / "t.json"))
    assert p.returncode == 3 and f"signed by trainer key {pub2}: KNOWN (trust store: {addr})" in p.stdout, p.stdout
    assert "unauthenticated" not in p.stdout and p.stdout.splitlines()[-1].startswith("SPOT-CHECKED (spot): a single")
    p = verifier("audit", str(tmp_path / "first.json"))  # pub1 is no longer in the store
    assert p.returncode == 3 and f"{pub1}: UNKNOWN" in p.stdout and "the signer is unauthenticated" in p.stdout
    rc, doc, _ = verifier_json("audit", str(tmp_path / "t.json"), "--trainer-key", pub2, "--trust-store",
                               str(tmp_path / "empty"))
    assert rc == 3 and doc["signer"]["trust"] == "pinned" and "signer_note" not in doc
    rc, doc, _ = verifier_json("audit", str(tmp_path / "t.json"), "--trust-store", str(tmp_path / "empty"))
    assert doc["signer"]["trust"] == "unknown" and "unauthenticated" in doc["signer_note"]


def _challenged(tr) -> list[int]:
    root = Statement.decode(bytes.fromhex(tr["statements"]["final"][0])).fields["state_root"]
    return challenge_steps(bytes.fromhex(tr["session_id"]), root, bytes.fromhex(tr["audit_seed"]), 4, T)


def _predict(model: Path, *extra):
    rc, doc, err = verifier_json("predict", "--model", str(model), "--data", "builtin:breast_cancer", *FAST, *extra)
    assert rc == 0 and "Traceback" not in err, err
    return doc


def _edit_status(model: Path, status="verified"):
    doc = json.loads(model.read_text())
    doc["verification"]["status"] = status
    model.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("key"))[0]


def test_jump_without_replay_and_a_later_failed_audit_never_make_the_model_trusted(key, tmp_path):
    """#7 section 2 (one real-process --no-replay run of `jump`) and #13 item 4: a spot-checked model is
    mitigated even when its file says verified, and after the user's `audit --data` fails it stays mitigated
    with that reason; the default train would have rejected it outright."""
    with ProverProcess(key, "--adversary", "jump") as srv:
        for _ in range(12):  # until step T is not challenged (probability 13/17 per session)
            rc, doc, err = _train(srv.address, tmp_path, "--no-replay")
            tr, _ = tx.load(str(tmp_path / "t.json"))
            assert rc == (1 if T in _challenged(tr) else 3), (doc, err)
            if rc == 3:
                break
        assert rc == 3 and doc["status"] == "spot-checked" and "replay" not in doc["seconds"]
        assert doc["guarantee"].startswith(f"a single changed step would have been caught with probability only "
                                           f"4/{T}")
    model = tmp_path / "m.json"
    assert json.loads(model.read_text())["verification"]["status"] == "spot-checked"
    _edit_status(model)
    out = _predict(model)
    assert out["defense"] == "smoothing" and "SPOT-CHECKED" in out["reason"], out["reason"]
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:breast_cancer")
    assert rc == 1 and audit["step"] == T and audit["check"] == "replay", (audit, err)
    out = _predict(model)
    assert out["defense"] == "smoothing" and f"replay of its transcript by this client failed (rejected at step {T}" \
        in out["reason"], out["reason"]
    assert out["verification"]["status"] == "unverified"


def test_a_spot_checked_model_is_trusted_only_after_a_replay_by_this_client(key, tmp_path, monkeypatch):
    with ProverProcess(key) as srv:
        rc, _doc, err = _train(srv.address, tmp_path, "--no-replay")
    assert rc == 3, err
    model = tmp_path / "m.json"
    assert _predict(model)["defense"] == "smoothing"
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:breast_cancer",
                                   "--model-out", str(tmp_path / "rebuilt" / "m.json"))
    assert rc == 0 and audit["model"] == str(tmp_path / "rebuilt" / "m.json"), err
    rebuilt, original = (json.loads(p.read_text()) for p in (tmp_path / "rebuilt" / "m.json", model))
    assert rebuilt["weights_fixed"] == original["weights_fixed"] and rebuilt["transcript"] == "../t.json"
    assert rebuilt["standardization"] == original["standardization"]
    out = _predict(model)
    assert out["defense"] == "none" and "replayed all steps" in out["reason"], out["reason"]
    assert _predict(tmp_path / "rebuilt" / "m.json")["defense"] == "none"
    # the attestation is this machine's: under another client key (another config folder) it is not believed
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-config"))
    out = _predict(model)
    assert out["defense"] == "smoothing" and "SPOT-CHECKED" in out["reason"]


def test_a_verified_model_file_is_used_only_with_its_own_transcript(key, tmp_path):
    with ProverProcess(key) as srv:
        rc, doc, err = _train(srv.address, tmp_path)
        assert rc == 0 and doc["status"] == "verified", err
        (tmp_path / "other").mkdir()
        rc, _, err = _train(srv.address, tmp_path / "other")  # another honest, verified session
        assert rc == 0, err
    model = tmp_path / "m.json"
    assert _predict(model)["defense"] == "none"
    doc = json.loads(model.read_text())
    cases = {
        "standardization": lambda d: d["standardization"]["mean"].__setitem__(0, d["standardization"]["mean"][0] + 1),
        "weights": lambda d: d["weights_fixed"].__setitem__(0, -d["weights_fixed"][0]),
        "transcript path": lambda d: d.__setitem__("transcript", "missing.json"),
        "another session's transcript": lambda d: d.__setitem__("transcript", "other/t.json"),
        "attestation removed": lambda d: d["verification"].pop("attestation"),
    }
    for name, mutate in cases.items():
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        out = _predict(tmp_path / "bad.json")
        if name == "attestation removed":  # the attestation store of this client still has it
            assert out["defense"] == "none", (name, out["reason"])
            continue
        assert out["defense"] == "smoothing", (name, out["reason"])
    # --transcript names it explicitly: a rejected session's transcript does not make this model verified
    out = _predict(model, "--transcript", str(tmp_path / "other" / "t.json"))
    assert out["defense"] == "smoothing" and "not the transcript's model" in out["reason"]


def test_the_removed_seed_flag_is_refused_with_an_explanation(tmp_path):
    p = verifier("train", "--server", "127.0.0.1:1", "--data", "builtin:breast_cancer", "--model", "logistic",
                 "--seed", "0a0b", "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
    assert p.returncode == 2 and "--insecure-fixed-seed" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = verifier("audit", str(tmp_path / "none.json"), "--model-out", str(tmp_path / "m.json"))
    assert p.returncode == 2 and "needs --data" in p.stderr, p.stderr
