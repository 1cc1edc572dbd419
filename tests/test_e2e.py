"""End to end with real processes: `vtrain-prover serve` on port 0 and the `vtrain-verifier` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol import transcript as tx

EPOCHS = "2"  # breast cancer: 569 rows, B = 32 -> 17 steps per epoch, T = 34
T = 34


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    key, pub = make_key(d)
    return key, pub


def _train(addr, out_dir, *extra, data="builtin:breast_cancer", model="logistic"):
    return verifier_json("train", "--server", addr, "--data", data, "--model", model, "--epochs", EPOCHS,
                         "--batch-size", "32",
                         "--out", str(out_dir / "t.json"), "--model-out", str(out_dir / "m.json"), *extra)


def test_honest_session_verifies_and_audits(keydir, tmp_path):
    key, pub = keydir
    with ProverProcess(key) as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--trainer-key", pub)
        assert srv.stop() == 0, "the server must shut down cleanly on SIGTERM"
    assert rc == 0, err
    assert doc["status"] == "verified" and doc["check"] == "replay" and doc["signer"]["trust"] == "pinned"
    assert doc["transcript_verdict"] == "spot-checked" and doc["randomness"] == "os"
    assert doc["num_steps"] == T and "all 34 steps were recomputed" in doc["guarantee"]
    assert set(doc["seconds"]) == {"session", "spot_check", "replay"}
    model = json.loads((tmp_path / "m.json").read_text())
    assert model["verification"]["status"] == "verified" and model["verification"]["check"] == "replay"
    assert model["transcript_sha256"] == doc["transcript_sha256"] and model["transcript"] == "t.json"
    assert len(model["weights_fixed"]) == 30 and len(model["feature_names"]) == 30
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"))
    assert rc == 3 and audit["status"] == "spot-checked" and audit["check"] == "spot", err
    assert audit["guarantee"].startswith("a single changed step would have been caught with probability 34/34 = 1")
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:breast_cancer")
    assert rc == 0 and audit["status"] == "verified" and audit["check"] == "replay", err
    rc, audit, _ = verifier_json("audit", str(tmp_path / "t.json"), "--trainer-key", "11" * 32)
    assert rc == 1 and "not the required key" in audit["reason"]


def test_pinned_key_mismatch_is_rejected(keydir, tmp_path):
    key, _ = keydir
    with ProverProcess(key) as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--trainer-key", "22" * 32)
    assert rc == 1 and doc["status"] == "rejected" and "pinned" in doc["reason"], (doc, err)


def test_linear_regression_session(keydir, tmp_path):
    key, _ = keydir
    with ProverProcess(key) as srv:
        rc, _doc, err = _train(srv.address, tmp_path, "--lr", "0.05", data="builtin:diabetes", model="linear")
    assert rc == 0 and _doc["status"] == "verified", err
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:diabetes")
    assert rc == 0 and audit["check"] == "replay", err


# adversary -> the step the replay audit must name
EXPECTED_STEP = {"wrong-lr": T // 2, "skip-step": T // 2, "poison": T // 2, "reorder": 1, "all-steps": 1,
                 "swap-model": T, "signature-backdoor": T, "ball-backdoor": T, "jump": T, "remember": T}


@pytest.mark.parametrize("adversary", sorted(EXPECTED_STEP))
def test_every_adversary_is_rejected_by_the_default_train(keydir, tmp_path, adversary):
    """The default `train` ends with the full local replay: every cheat is rejected live, naming the first
    bad step, and `audit --data` says the same."""
    key, _ = keydir
    with ProverProcess(key, "--adversary", adversary) as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--spot-checks", "2")
    assert rc == 1 and doc["status"] == "rejected", (doc, err)
    assert doc["step"] == EXPECTED_STEP[adversary], doc
    assert (tmp_path / "t.json").exists() and (tmp_path / "m.json").exists()
    assert json.loads((tmp_path / "m.json").read_text())["verification"]["status"] == "rejected"
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:breast_cancer")
    assert rc == 1, (audit, err)
    assert audit["status"] == "rejected" and audit["step"] == doc["step"], audit
    if adversary.endswith("backdoor"):  # honest parameters, served with a trigger: caught at the final model
        assert "serving-time content" in audit["reason"]
        assert "trigger" in json.loads((tmp_path / "m.json").read_text())
    if audit["check"] == "replay" and adversary not in ("swap-model", "signature-backdoor", "ball-backdoor"):
        ev = audit["evidence"]
        assert ev["step"] == audit["step"] and ev["committed_leaf_after"] and ev["proof_after"] is not None


def test_all_steps_is_rejected_by_the_spot_check_alone(keydir, tmp_path):
    key, _ = keydir
    with ProverProcess(key, "--adversary", "all-steps") as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--spot-checks", "3", "--no-replay")
    assert rc == 1 and doc["status"] == "rejected" and doc["check"] == "spot", (doc, err)
    assert "replay" not in doc["seconds"]
    assert "deviated at step" in doc["reason"]
    rc, audit, _ = verifier_json("audit", str(tmp_path / "t.json"))  # no data: openings only
    assert rc == 1 and audit["step"] == doc["step"]


def test_tampered_transcript_never_verifies(keydir, tmp_path):
    key, _ = keydir
    with ProverProcess(key) as srv:
        rc, _, err = _train(srv.address, tmp_path, "--spot-checks", "4")
    assert rc == 0, err
    path = tmp_path / "t.json"
    raw = path.read_bytes()
    rng = np.random.default_rng(20261125)
    bad = tmp_path / "bad.json"
    positions = rng.choice(len(raw), size=60, replace=False)
    for pos in positions:
        mutated = bytearray(raw)
        mutated[pos] = (mutated[pos] + 1 + int(rng.integers(0, 254))) % 256
        bad.write_bytes(bytes(mutated))
        p = verifier("audit", str(bad))
        assert p.returncode == 2, (pos, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr and "VERIFIED" not in p.stdout, (pos, p.stderr)


def test_semantic_tampering_is_reported_as_altered(keydir, tmp_path):
    """Edits with the integrity digest recomputed (anyone can): exit 2, "altered", never the trainer's fault."""
    key, _ = keydir
    with ProverProcess(key) as srv:
        rc, _, err = _train(srv.address, tmp_path, "--spot-checks", "4")
    assert rc == 0, err
    tr, _ = tx.load(str(tmp_path / "t.json"))
    cases = {
        "config": lambda t: t["config"].__setitem__("epochs", 3),
        "feature names": lambda t: t["client"]["metadata"]["feature_names"].__setitem__(0, "x"),
        "model": lambda t: t["model"].__setitem__(0, t["model"][0] + 1),
        "opening": lambda t: t["proof"]["openings"][0]["state_after"].__setitem__(0, 7),
        "opened rows swapped": lambda t: t["proof"]["openings"][0]["rows"].reverse(),
        "audit seed": lambda t: t.__setitem__("audit_seed", "00" * 32),
        "recorded verdict": lambda t: t["verdict"].__setitem__("status", "rejected"),
        "verdict removed": lambda t: t.pop("verdict"),
        "server": lambda t: t.__setitem__("server", "127.0.0.1:1"),
        "trust claim added": lambda t: t.__setitem__("trust", "pinned"),
        "extra key": lambda t: t.__setitem__("comment", "fine"),
    }
    for name, mutate in cases.items():
        t = json.loads(json.dumps(tr))
        mutate(t)
        tx.save(str(tmp_path / "x.json"), t)
        with_data = name in ("opened rows swapped", "verdict removed", "feature names")  # process starts are slow
        for extra in ((), ("--data", "builtin:breast_cancer"))[:1 + with_data]:
            rc, audit, err = verifier_json("audit", str(tmp_path / "x.json"), *extra)
            assert rc == 2 and audit.get("status") == "altered", (name, extra, audit, err)
            assert "nothing in it is evidence against the trainer" in audit["reason"]


def _self_signed(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_session(keydir, tmp_path):
    key, pub = keydir
    cert, tls_key = _self_signed(tmp_path)
    with ProverProcess(key, "--tls-cert", str(cert), "--tls-key", str(tls_key)) as srv:
        port = srv.address.rsplit(":", 1)[1]
        rc, doc, err = _train(f"localhost:{port}", tmp_path, "--tls-ca", str(cert), "--trainer-key", pub)
        assert rc == 0 and doc["status"] == "verified", err
        # without --tls-ca the plaintext client cannot talk to the TLS server: a clear connection error
        rc, _, err = _train(f"localhost:{port}", tmp_path, "--timeout", "3")
        assert rc == 2 and "Traceback" not in err, err


def test_a_trainer_that_offers_no_proof_leaves_an_unverified_model(keydir, tmp_path):
    key, _ = keydir
    with ProverProcess(key, "--adversary", "no-proof") as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--no-replay")
        assert rc == 1 and doc["status"] == "rejected" and "gave no proof" in doc["reason"], (doc, err)
        assert "not evidence that the trainer cheated" in doc["reason"]
        model = json.loads((tmp_path / "m.json").read_text())
        assert model["verification"]["status"] == "rejected" and "no proof" in model["verification"]["reason"]
        # the audit agrees (same reason, recomputed): the transcript holds no proof, so it cannot verify
        rc, audit, _ = verifier_json("audit", str(tmp_path / "t.json"))
        assert rc == 1 and audit["status"] == "rejected" and audit["reason"] == doc["reason"]
        # the default train replays every committed step, which needs no openings
        rc, doc, err = _train(srv.address, tmp_path)
    assert rc == 0 and doc["status"] == "verified" and doc["transcript_verdict"] == "rejected", (doc, err)
