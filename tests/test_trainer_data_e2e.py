"""Sessions on the trainer's own data with real processes (docs/PROTOCOL.md section 11): `serve --dataset` on
port 0 and `vtrain-verifier train --trainer-data`. The honest trainer is SPOT-CHECKED (exit 3) with the rows
it revealed counted, the same root in every session, and an offline audit that says why it cannot replay; each
adversary of this mode is caught (K >= T here, so every step is challenged: certainty, not luck; the
probabilistic rate is tested in tests/test_trainer_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol import transcript as tx
from protocol.dataset import builtin_bytes
from protocol.statements import Statement

T = 9  # iris, 150 rows, B = 16, one epoch


def _train(addr, out: Path, *extra, name="iris"):
    return verifier_json("train", "--server", addr, "--trainer-data", name, "--epochs", "1", "--batch-size", "16",
                         "--spot-checks", "64", "--out", str(out / "t.json"), "--model-out", str(out / "m.json"),
                         *extra)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("key"))[0]


def _data_root(path: Path) -> str:
    tr, _ = tx.load(str(path))
    return Statement.decode(bytes.fromhex(tr["statements"]["data"][0])).fields["data_root"].hex()


def test_honest_session_is_spot_checked_with_rows_revealed_and_one_root(key, tmp_path):
    (tmp_path / "b").mkdir()
    with ProverProcess(key, "--dataset", "iris=builtin:iris", "--dataset", "dia=builtin:diabetes", "--max-reveal", "1") as srv:
        rc, doc, err = _train(srv.address, tmp_path)
        assert rc == 3 and doc["status"] == "spot-checked", (doc, err)
        td = doc["trainer_data"]
        assert td["num_rows"] == 150 and td["models"] == ["softmax"] and td["target"] == "species"
        assert 16 <= td["rows_revealed"] <= 150 and td["fraction_revealed"] == td["rows_revealed"] / 150
        g = doc["guarantee"]
        assert g.startswith(f"a single changed step would have been caught with probability {T}/{T} = 1")
        assert f"revealing {td['rows_revealed']} of its 150 rows" in g and "No full replay is possible" in g
        assert "poisoned" in g
        rc2, _, err2 = _train(srv.address, tmp_path / "b")
        assert rc2 == 3, err2
        p = verifier("train", "--server", srv.address, "--trainer-data", "iris", "--out", str(tmp_path / "x.json"),
                     "--model-out", str(tmp_path / "x.m.json"))  # human output
        assert p.returncode == 3 and p.stdout.startswith("SPOT-CHECKED (spot): a single changed step"), p.stdout
        assert "no full replay (the rows are the trainer's)" in p.stderr
    # the same root in every session, the card's; the transcript records it
    root = td["data_root"]
    assert _data_root(tmp_path / "t.json") == _data_root(tmp_path / "b" / "t.json") == root
    tr, _ = tx.load(str(tmp_path / "t.json"))
    assert tr["data_root"] == root and tr["trainer_data"]["name"] == "iris"
    # offline audit: the same spot verdict; no replay possible, and --data is refused as the user's error
    p = verifier("audit", str(tmp_path / "t.json"))
    assert p.returncode == 3 and "SPOT-CHECKED (spot)" in p.stdout and "No full replay is possible" in p.stdout
    p = verifier("audit", str(tmp_path / "t.json"), "--data", "builtin:iris")
    assert p.returncode == 2 and "nothing of yours to replay" in p.stderr and "Traceback" not in p.stderr
    # the model file carries the trainer's published standardization: predict works on the original features
    from protocol.dataset import fit_standardization, load_table

    iris = load_table("builtin:iris")
    model = json.loads((tmp_path / "m.json").read_text())
    assert model["feature_names"] == iris.feature_names == td["feature_names"]
    assert td["standardization"] == fit_standardization(iris, "softmax").to_dict()


def test_edited_card_in_a_transcript_is_altered(key, tmp_path):
    with ProverProcess(key, "--dataset", "iris=builtin:iris") as srv:
        rc, _, err = _train(srv.address, tmp_path, "--spot-checks", "2")  # within the default cap (2 x 16 of 150)
        assert rc == 3, err
    tr, _ = tx.load(str(tmp_path / "t.json"))
    card = bytearray(bytes.fromhex(tr["trainer_data"]["card"][0]))
    card[-1] ^= 1  # the root inside the card
    tr["trainer_data"]["card"][0] = card.hex()
    tx.save(str(tmp_path / "e.json"), tr)
    rc, doc, _ = verifier_json("audit", str(tmp_path / "e.json"))
    assert rc == 2 and doc["status"] == "altered", doc


@pytest.mark.parametrize(("adversary", "where"), [
    ("swap-rows", "replaying the step from the committed state does not give the committed next state"),
    ("reorder", "replaying the step from the committed state does not give the committed next state"),
    ("jump", "replaying the step from the committed state does not give the committed next state"),
    ("bad-salt", "is not in the committed data"),
])
def test_adversaries_of_this_mode_are_rejected(key, tmp_path, adversary, where):
    # 128 of iris's rows, a multiple of B = 16: every row is in a batch of the one epoch, so the row swap-rows
    # changes always changes a step (with all 150 rows, 6 are left out and the swap is harmless 4% of the time)
    lines = builtin_bytes("builtin:iris").decode().splitlines()
    (tmp_path / "iris128.csv").write_text("\n".join(lines[:129]) + "\n")
    with ProverProcess(key, "--dataset", f"iris={tmp_path / 'iris128.csv'}", "--target", "species",
                       "--adversary", adversary, "--max-reveal", "1") as srv:
        rc, doc, err = _train(srv.address, tmp_path)
    assert rc == 1 and doc["status"] == "rejected" and where in doc["reason"], (adversary, doc, err)
    assert doc["step"] is not None
    if adversary == "jump":
        assert doc["step"] == 128 // 16
    p = verifier("audit", str(tmp_path / "t.json"))  # the rejection stands offline, from the signed transcript
    assert p.returncode == 1 and "REJECTED" in p.stdout, p.stdout


def test_bad_requests_get_clear_errors(key, tmp_path):
    with ProverProcess(key, "--dataset", "iris=builtin:iris") as srv:
        p = verifier("train", "--server", srv.address, "--trainer-data", "nope", "--out", str(tmp_path / "t.json"),
                     "--model-out", str(tmp_path / "m.json"))
        assert p.returncode == 2 and "lists no dataset 'nope' (it lists: iris)" in p.stderr, p.stderr
        p = verifier("train", "--server", srv.address, "--trainer-data", "iris", "--model", "linear",
                     "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        assert p.returncode == 2 and "committed for softmax" in p.stderr, p.stderr
        p = verifier("train", "--server", srv.address, "--trainer-data", "iris", "--data", "builtin:iris",
                     "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        assert p.returncode == 2 and "not both" in p.stderr, p.stderr
        # the trainer's disclosure limits, from its signed card, refused before any session opens
        rc, _, err = _train(srv.address, tmp_path)  # K = 64 >= T: every batch, all 150 rows
        assert rc == 2 and "opens at most 25% of its 150 rows per session; use --spot-checks 2 or fewer" in err, err
        p = verifier("train", "--server", srv.address, "--trainer-data", "iris", "--batch-size", "4",
                     "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        assert p.returncode == 2 and "batch sizes of at least 8" in p.stderr, p.stderr
        assert not (tmp_path / "t.json").exists()
    with ProverProcess(key) as srv:  # a trainer without datasets
        p = verifier("train", "--server", srv.address, "--trainer-data", "iris", "--out", str(tmp_path / "t.json"),
                     "--model-out", str(tmp_path / "m.json"))
        assert p.returncode == 2 and "lists no dataset 'iris' (it lists: none)" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_snark_session_on_the_trainers_data_is_verified(key, tmp_path):
    """--proof snark: the Poseidon commitment in the signed card, the client's setup with powers of tau, the
    trainer's key check and zero-knowledge proof: VERIFIED (snark), exit 0, live and offline; export-snarkjs."""
    src = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "diabetes.csv").read_text().splitlines()
    (tmp_path / "tiny.csv").write_text("\n".join(",".join(r.split(",")[:2] + [r.split(",")[-1]]) for r in src[:33])
                                       + "\n")
    with ProverProcess(key, "--dataset", f"tiny={tmp_path / 'tiny.csv'}", "--target", "progression",
                       "--dataset-model", "tiny=linear") as srv:
        rc, doc, err = _train(srv.address, tmp_path, "--proof", "snark", "--lr", "0.05", name="tiny")
    assert rc == 0 and doc["status"] == "verified" and doc["check"] == "snark", (doc, err)
    assert "zero knowledge" in doc["guarantee"] and "poisoned" in doc["guarantee"]
    assert doc["snark"]["constraints"] > 0 and len(doc["trainer_data"]["zk_commitment"]) == 64
    assert doc["trainer_data"]["zk_commitment"][:16] in doc["guarantee"]
    p = verifier("audit", str(tmp_path / "t.json"))
    assert p.returncode == 0 and "VERIFIED (snark)" in p.stdout, p.stdout
    rc, out, _ = verifier_json("export-snarkjs", str(tmp_path / "t.json"), "--out", str(tmp_path / "sj"))
    assert rc == 0 and out["files"] == ["verification_key.json", "proof.json", "public.json"]
    tr, _ = tx.load(str(tmp_path / "t.json"))
    assert json.loads((tmp_path / "sj" / "public.json").read_text()) == tr["proof"]["public"]
    assert int(tr["proof"]["public"][-1]) == int(doc["trainer_data"]["zk_commitment"], 16)  # the card's commitment
    p = verifier("export-snarkjs", str(tmp_path / "t.json"), "--out", str(tmp_path / "sj2"), "--data", str(tmp_path / "tiny.csv"))
    assert p.returncode == 2 and "trainer's own rows" in p.stderr
