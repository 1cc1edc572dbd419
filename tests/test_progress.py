"""Progress bars with real processes: on a terminal (stderr on a pseudo-terminal) every long phase shows a
bar; through a pipe, or with --json, none does and --json stdout stays one JSON document."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading

import numpy as np
import pytest
from procs import VERIFIER, ProverProcess, make_key, verifier

BAR_MARK = "%|"   # tqdm's bar: "uploading:  40%|####      | 177/442 ..."


def verifier_on_terminal(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    """Run the verifier with stderr on a pseudo-terminal (stdout a pipe) -> (code, stdout, terminal text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([VERIFIER, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks: list[bytes] = []

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:   # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        reader.join(timeout=10)
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def _bar(text: str, desc: str) -> bool:
    return any(desc + ":" in ln and BAR_MARK in ln for ln in text.replace("\r", "\n").splitlines())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key, _ = make_key(tmp_path_factory.mktemp("progress"))
    with ProverProcess(key) as srv:
        yield srv


def test_train_and_audit_show_each_phase_on_a_terminal(server, tmp_path):
    tr, model = tmp_path / "t.json", tmp_path / "m.json"
    code, out, term = verifier_on_terminal("train", "--server", server.address, "--data", "builtin:diabetes",
                                           "--model", "linear", "--out", str(tr), "--model-out", str(model))
    assert code == 0 and "VERIFIED" in out, term
    for phase in ("loading", "uploading", "training"):
        assert _bar(term, phase), f"no {phase} bar in {term[-2000:]!r}"
    code, out, term = verifier_on_terminal("audit", str(tr), "--data", "builtin:diabetes")
    assert code == 0 and "VERIFIED (replay)" in out, term
    assert _bar(term, "loading") and _bar(term, "replay"), term[-2000:]


def test_no_bars_through_a_pipe_or_with_json(server, tmp_path):
    tr, model = tmp_path / "t.json", tmp_path / "m.json"
    p = verifier("train", "--server", server.address, "--data", "builtin:diabetes", "--model", "linear",
                 "--out", str(tr), "--model-out", str(model))
    assert p.returncode == 0 and BAR_MARK not in p.stderr and "uploading" not in p.stderr, p.stderr
    p = verifier("audit", str(tr), "--data", "builtin:diabetes")
    assert p.returncode == 0 and BAR_MARK not in p.stderr, p.stderr
    code, out, term = verifier_on_terminal("audit", str(tr), "--data", "builtin:diabetes", "--json")
    assert code == 0 and json.loads(out)["status"] == "verified" and BAR_MARK not in term + out, term


def test_snark_setup_and_proving_show_elapsed_time(server, tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(16, 2))
    data = tmp_path / "tiny.csv"
    data.write_text("a,b,y\n" + "".join(f"{a:.4f},{b:.4f},{a - b:.4f}\n" for a, b in X))
    code, out, term = verifier_on_terminal("train", "--server", server.address, "--data", str(data), "--target",
                                           "y", "--model", "linear", "--proof", "snark", "--epochs", "1",
                                           "--batch-size", "8", "--out", str(tmp_path / "t.json"),
                                           "--model-out", str(tmp_path / "m.json"))
    assert code == 0 and "VERIFIED (snark)" in out, out + term
    assert "SNARK setup: 00:" in term and "trainer proving: 00:" in term, term[-2000:]


def test_certify_shows_rows_done_on_a_terminal(server, tmp_path):
    model = tmp_path / "m.json"
    p = verifier("train", "--server", server.address, "--data", "builtin:breast_cancer", "--model", "logistic",
                 "--out", str(tmp_path / "t.json"), "--model-out", str(model), "--epochs", "2")
    assert p.returncode == 0, p.stderr
    code, _out, term = verifier_on_terminal("certify", "--model", str(model), "--data", "builtin:breast_cancer",
                                           "--sigma", "0.25", "--n0", "20", "--n", "200", "--alpha", "0.01")
    assert code == 0 and _bar(term, "certify"), term[-2000:]


def test_csv_progress_follows_the_bytes_read(tmp_path):
    """The loading callback moves monotonically through the file's bytes and ends at its size; the table read
    with a callback is the table read without one."""
    from protocol.dataset import load_table

    path = tmp_path / "big.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(300_000)))
    calls: list[tuple[int, int]] = []
    t = load_table(str(path), "y", progress=lambda done, total: calls.append((done, total)))
    assert t.X.shape == (300_000, 2)
    assert (t.X == load_table(str(path), "y").X).all()
    done = [d for d, _ in calls]
    size = path.stat().st_size
    assert done == sorted(done) and done[-1] == size and all(tt == size for _, tt in calls)
    assert any(0 < d < size for d in done), calls  # progress in between, not only at the end


def test_two_party_training_shows_its_steps_on_a_terminal_and_not_with_json(tmp_path):
    """train-2pc: a bar over the secure steps on a terminal; the end reports bytes and rounds; --json stays one
    document with no bar (three real processes)."""
    from test_mpc_e2e import DealerProcess, _split

    key, _ = make_key(tmp_path)
    a, b = _split(tmp_path)
    with DealerProcess(key) as dealer, ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as srv:
        args = ["train-2pc", "--server", srv.address, "--trainer-data", "mine", "--dealer", dealer.address, "--data",
                str(a), "--target", "progression", "--model", "linear", "--epochs", "2", "--batch-size", "8"]
        code, out, term = verifier_on_terminal(*args, "--model-out", str(tmp_path / "m.json"))
        assert code == 0 and "TRAINED" in out and "rounds" in out and "MB" in out, (out, term[-1000:])
        assert _bar(term, "secure training"), term[-2000:]
        code, out, term = verifier_on_terminal(*args, "--model-out", str(tmp_path / "m2.json"), "--json")
        assert code == 0 and json.loads(out)["rounds"] > 0, out
        assert BAR_MARK not in term, term[-2000:]
