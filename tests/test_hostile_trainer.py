"""A hostile trainer cannot crash the client, grow its memory, or hang it (issue #7 section 4; #13 connection
errors). Real processes: `vtrain-prover serve --adversary NAME` on port 0 and the `vtrain-verifier` CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from procs import VERIFIER, ProverProcess, make_key, verifier, verifier_json, verifier_measured

from protocol import transcript as tx

T = 34  # breast cancer, 2 epochs of B = 32


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("keys"))[0]


def _args(addr, out_dir, *extra):
    return ("train", "--server", addr, "--data", "builtin:breast_cancer", "--model", "logistic", "--epochs", "2",
            "--batch-size", "32", "--out", str(out_dir / "t.json"), "--model-out", str(out_dir / "m.json"), *extra)


def _audit(out_dir):
    return verifier_json("audit", str(out_dir / "t.json"))


def _no_traceback(*texts):
    for text in texts:
        assert "Traceback" not in text and "Error:" not in text.replace("error:", ""), text[-2000:]


def test_bad_state_length_is_rejected_with_evidence(key, tmp_path):
    with ProverProcess(key, "--adversary", "bad-state-length") as srv:
        rc, doc, err = verifier_json(*_args(srv.address, tmp_path))
    _no_traceback(err)
    assert rc == 1 and doc["status"] == "rejected" and "final model has 32 parameters" in doc["reason"], (doc, err)
    assert doc["step"] == T
    rc, audit, err = _audit(tmp_path)  # the saved transcript is evidence: the audit agrees
    assert rc == 1 and audit["reason"] == doc["reason"], (audit, err)


def test_leaf_flood_is_cut_off_and_memory_stays_bounded(key, tmp_path):
    """2,000,000 extra leaf hashes (64 MB): the client stops at the first one beyond T+1; its peak RSS stays
    within 40 MB of an honest session's (holding the flood as Python bytes would take over 150 MB more)."""
    with ProverProcess(key) as srv:
        rc, _, err, honest_rss, _ = verifier_measured(*_args(srv.address, tmp_path / "h"))
    assert rc == 0, err
    with ProverProcess(key, "--adversary", "leaf-flood") as srv:
        rc, out, err, flood_rss, _ = verifier_measured(*_args(srv.address, tmp_path, "--json"))
    _no_traceback(err)
    assert flood_rss < honest_rss + 40 * 1024, (flood_rss, honest_rss)
    doc = json.loads(out)
    assert rc == 1 and f"streamed more than the {T + 1} state commitments" in doc["reason"], (doc, err)
    tr, _ = tx.load(str(tmp_path / "t.json"))
    assert len(tr["state_leaves"]) == 64 * (T + 2)  # kept: the T+1 owed and the first one beyond
    # a third party gets no verdict: the flood is the recording client's observation, not signed by the trainer
    rc, audit, err = _audit(tmp_path)
    assert rc == 2 and audit["status"] == "incomplete" and tr["stream_error"] in audit["reason"], (audit, err)


def test_deep_extras_are_rejected_without_parsing(key, tmp_path):
    with ProverProcess(key, "--adversary", "deep-extras") as srv:
        rc, doc, err = verifier_json(*_args(srv.address, tmp_path))
    _no_traceback(err)
    assert rc == 1 and "serving-time content" in doc["reason"] and "over the cap" in doc["reason"], (doc, err)
    model = json.loads((tmp_path / "m.json").read_text())
    assert model["verification"]["status"] == "rejected" and "trigger" not in model
    rc, audit, err = _audit(tmp_path)
    assert rc == 1 and audit["reason"] == doc["reason"], (audit, err)


def test_garbage_proof_is_rejected(key, tmp_path):
    with ProverProcess(key, "--adversary", "garbage-proof") as srv:
        rc, doc, err = verifier_json(*_args(srv.address, tmp_path, "--spot-checks", "4"))
    _no_traceback(err)
    assert rc == 1 and doc["status"] == "rejected" and doc["step"] is not None, (doc, err)
    assert "has 35 values, the model has 31" in doc["reason"], doc
    rc, audit, err = _audit(tmp_path)
    assert rc == 1 and audit["reason"] == doc["reason"], (audit, err)


def test_a_silent_trainer_is_given_up_after_the_timeout(key, tmp_path):
    with ProverProcess(key, "--adversary", "slow") as srv:
        rc, out, err, _, seconds = verifier_measured(*_args(srv.address, tmp_path, "--timeout", "3"), timeout=120)
    _no_traceback(err)
    assert rc == 2 and "sent nothing for 3 s (--timeout)" in err, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert 3 <= seconds < 60, seconds
    tr, _ = tx.load(str(tmp_path / "t.json"))  # the partial transcript: incomplete, no verdict
    assert "verdict" not in tr and "sent nothing" in tr["incomplete"]
    rc, audit, err = _audit(tmp_path)
    assert rc == 2 and audit["status"] == "incomplete" and "no verdict" in audit["reason"], (audit, err)


def test_a_trainer_killed_mid_training_leaves_a_partial_transcript(key, tmp_path):
    with ProverProcess(key, "--adversary", "slow", "-v") as srv:
        proc = subprocess.Popen([VERIFIER, *_args(srv.address, tmp_path, "--timeout", "100")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        opened = threading.Event()
        threading.Thread(target=lambda: any(("opened" in line or " start peer=" in line) and (opened.set() or True) for line in srv.proc.stderr),
                         daemon=True).start()
        assert opened.wait(120), "the client never opened a session"
        time.sleep(3)  # the trainer has signed its first states and stalls mid-training
        srv.proc.kill()
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    _no_traceback(err)
    assert proc.returncode == 2 and "disconnected" in err and "partial transcript" in err, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    tr, _ = tx.load(str(tmp_path / "t.json"))
    assert "verdict" not in tr and "disconnected" in tr["incomplete"] and tr["statements"]["randomness"]
    p = verifier("audit", str(tmp_path / "t.json"))
    assert p.returncode == 2 and "\nINCOMPLETE (no verdict)" in p.stdout, (p.stdout, p.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("server, words", [
    ("127.0.0.1", "malformed address"),
    ("127.0.0.1:99999", "malformed address"),
    ("localhost:http", "malformed address"),
    ("no-such-host.invalid:5000", "unknown host 'no-such-host.invalid'"),
    ("127.0.0.1:{free}", "nothing is listening at 127.0.0.1:{free}"),
])
def test_connection_errors_are_distinct_and_quick(tmp_path, monkeypatch, server, words):
    # the name lookup's wait is the resolver's, not the client's: at most one 1 s try per query (glibc's
    # RES_OPTIONS), so that a slow or absent nameserver (5 s x 2 tries by default) does not pass for a hang
    monkeypatch.setenv("RES_OPTIONS", "timeout:1 attempts:1")
    port = _free_port()
    server, words = server.format(free=port), words.format(free=port)
    # the same command failing before any network (a malformed address), just before: the process's start-up
    # cost on this machine at this moment (several seconds on a loaded 2-core machine)
    *_, start_up = verifier_measured(*_args("127.0.0.1", tmp_path, "--timeout", "60"))
    rc, _out, err, _, seconds = verifier_measured(*_args(server, tmp_path, "--timeout", "60"))
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    # the answer is known at once: a client in gRPC's reconnect loop waits 15 s or the 60 s --timeout beyond
    # its start-up; 8 s leaves room for the resolver's two 1 s queries and for the load changing between runs
    assert seconds < start_up + 8, (seconds, start_up)
    assert not (tmp_path / "t.json").exists()


def test_audit_with_other_data_is_an_input_error(key, tmp_path):
    """#13: the right rows in another order are the user's mistake (exit 2, both roots, the order hint), not a
    rejection of an honest trainer (exit 1)."""
    with ProverProcess(key) as srv:
        rc, _, err = verifier_json(*_args(srv.address, tmp_path))
    assert rc == 0, err
    lines = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "breast_cancer.csv").read_text().splitlines()
    shuffled = tmp_path / "reordered.csv"
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    rc, doc, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", str(shuffled), "--target", "malignant")
    tr, _ = tx.load(str(tmp_path / "t.json"))
    assert rc == 2 and doc["status"] == "error" and "committed order" in err and tr["data_root"] in err, (doc, err)
    assert "Traceback" not in err
    # the streamed read (protocol/csv_chunks.py) refuses every other kind of wrong file the same way: exit 2
    n = len(lines) - 1
    cells = lines[400].split(",")
    cells[0] = str(float(cells[0]) + 1)
    for name, body, words in (("short", lines[:-1], f"{n - 1} rows x 30 features, the session committed {n} x 30"),
                              ("long", lines + lines[1:2], f"{n + 1} rows x 30 features"),
                              ("changed", lines[:400] + [",".join(cells)] + lines[401:], "committed order"),
                              ("ragged", lines[:300] + [lines[300] + ",1"] + lines[301:], "line 301 has 32 fields")):
        (tmp_path / f"{name}.csv").write_text("\n".join(body) + "\n")
        rc, doc, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", str(tmp_path / f"{name}.csv"),
                                     "--target", "malignant")
        assert rc == 2 and doc["status"] == "error" and words in err and "Traceback" not in err, (name, doc, err)
