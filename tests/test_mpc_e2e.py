"""Two-party training with three real processes (dealer, trainer, client) on loopback, ports 0."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from procs import BIN, ProverProcess, make_key, verifier

from mpc.plan import Plan
from protocol import model_file
from protocol.dataset import Standardization, load_table, quantize_table
from protocol.prg import SeedContext
from protocol.training import TrainConfig, train_honest

DATA = Path(__file__).resolve().parents[1] / "protocol" / "data" / "diabetes.csv"


class DealerProcess(ProverProcess):
    def __enter__(self):
        self.proc = subprocess.Popen([str(BIN / "vtrain-dealer"), "serve", "--listen", "127.0.0.1:0", *self.extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"dealer did not start: {line!r}")
        self.address = line.removeprefix("listening on ")
        return self


def _split(tmp: Path, rows_a: int = 40, rows_b: int = 24, cols: int = 3) -> tuple[Path, Path]:
    lines = DATA.read_text().splitlines()

    def cut(r):
        c = r.split(",")
        return ",".join(c[:cols] + [c[-1]])

    a, b = tmp / "client.csv", tmp / "trainer.csv"
    a.write_text("\n".join([cut(lines[0])] + [cut(r) for r in lines[1:1 + rows_a]]) + "\n")
    b.write_text("\n".join([cut(lines[0])] + [cut(r) for r in lines[1 + rows_a:1 + rows_a + rows_b]]) + "\n")
    return a, b


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpc")
    key, _ = make_key(tmp)
    a, b = _split(tmp)
    with DealerProcess(key) as dealer:
        yield tmp, key, a, b, dealer


def _train(tmp, prover, dealer, a, *extra):
    out = tmp / "m.json"
    if out.exists():
        out.unlink()
    p = verifier("train-2pc", "--server", prover.address, "--trainer-data", "mine", "--dealer", dealer.address,
                 "--data", str(a), "--target", "progression", "--model", "linear", "--epochs", "1",
                 "--batch-size", "8", "--model-out", str(out), "--json", *extra, timeout=300)
    doc = json.loads(p.stdout) if p.stdout.strip() else {}
    return p, doc, out


def test_three_processes_train_exactly_the_plain_model_on_the_union(setup):
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--dealer", "unused:1") as bad:
        p, doc, _ = _train(tmp, bad, dealer, a)
        assert p.returncode == 2 and "only uses the dealers" in p.stderr  # the trainer pins its dealers
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        p, doc, out = _train(tmp, prover, dealer, a)
        assert p.returncode == 0, p.stderr
        assert doc["status"] == "trained" and doc["steps"] == 8 and doc["rounds"] > 0 and doc["bytes_sent"] > 0
        assert "does not collude" in doc["guarantee"] and "false data" in doc["guarantee"]
        model = model_file.load(str(out))
        # plain bit-exact training on the union (client rows first) with the same randomness
        ta, tb = load_table(str(a), "progression"), load_table(str(b), "progression")
        stdz = Standardization.from_dict(json.loads(out.read_text())["standardization"])
        (Xa, Ya), (Xb, Yb) = quantize_table(ta, stdz, 16), quantize_table(tb, stdz, 16)
        X, Y = np.vstack([Xa, Xb]), np.concatenate([Ya, Yb])
        cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10)
        assert Plan.build(len(Ya), len(Yb), 3, cfg).num_steps == 8
        assert model.verification["status"] != "verified"  # no transcript: the file says how it was trained instead
        ctx = SeedContext(bytes.fromhex(doc["session_id"]), bytes.fromhex(doc["data_root"]),
                          bytes.fromhex(doc["training_seed"]))
        theta = None
        for _, _, theta, _ in train_honest(X, Y, cfg, ctx):
            pass
        assert model.doc["weights_fixed"] + [model.doc["bias_fixed"]] == [int(v) for v in theta]
        p2, doc2, _ = _train(tmp, prover, dealer, a, "--reveal", "client")
        assert p2.returncode == 0 and doc2["reveal"] == "client"


@pytest.mark.parametrize("name", ["bad-share", "bad-triple", "bad-truncation", "skip-step", "early-output"])
def test_each_cheating_trainer_is_detected_and_no_model_is_written(setup, name):
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--mpc-adversary", name) as prover:
        p, doc, out = _train(tmp, prover, dealer, a)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert doc["status"] == "aborted" and doc["reason"]
    assert not out.exists()


def test_the_trainer_stops_promptly_after_an_aborted_session(setup):
    """`serve` exits on SIGTERM after a two-party session the client aborted (the handler thread of that
    session used to wait for a read the stopped server never completes, and the process hung at exit)."""
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--mpc-adversary",
                       "bad-share") as prover:
        p, doc, _ = _train(tmp, prover, dealer, a)
        assert p.returncode == 1 and doc["status"] == "aborted", (p.stdout, p.stderr)
        t0 = time.monotonic()
        code = prover.stop()
    assert code == 0 and time.monotonic() - t0 < 12, (code, time.monotonic() - t0)


def test_aborted_sessions_leave_no_server_thread_waiting_on_a_read(setup):
    """Each session a client aborted used to leave one thread of the server's pool (16 threads, shared with the
    other synchronous handlers) blocked for good on a read of the finished call: a client could starve the
    trainer by aborting sessions. The handler now reads on the server's loop (mpc.transport.LoopTransport)."""
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--mpc-adversary",
                       "bad-share") as prover:
        for _ in range(3):
            p, doc, _ = _train(tmp, prover, dealer, a)
            assert p.returncode == 1 and doc["status"] == "aborted", (p.stdout, p.stderr)
        time.sleep(1.0)  # let the handlers finish
        assert prover.stop() == 0
        err = prover.stderr()
    assert "still blocked" not in err, err


def test_a_client_that_vanishes_mid_session_frees_the_trainers_session_at_once(setup):
    """A client killed mid-training: the trainer's session must end within seconds (not after its 600 s idle
    timeout, holding one of its few two-party session slots)."""
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        p = subprocess.Popen([str(BIN / "vtrain-verifier"), "train-2pc", "--server", prover.address, "--trainer-data",
                              "mine", "--dealer", dealer.address, "--data", str(a), "--target", "progression",
                              "--model", "linear", "--epochs", "200", "--batch-size", "8", "--model-out",
                              str(tmp / "gone.json"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(4.0)
        p.kill()
        p.communicate(timeout=30)
        time.sleep(3.0)
        assert prover.stop() == 0
        err = prover.stderr()
    assert "two-party session" in err and "aborted" in err, err[-2000:]


def test_a_cheating_dealer_is_detected(setup):
    tmp, key, a, b, _ = setup
    with DealerProcess(key, "--adversary", "bad-triple") as dealer, \
            ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        p, doc, out = _train(tmp, prover, dealer, a)
    assert p.returncode == 1 and "sacrifice" in doc["reason"] and "dealer" in doc["reason"]
    assert not out.exists()


def test_bad_requests_get_clear_errors(setup):
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        p = verifier("train-2pc", "--server", prover.address, "--trainer-data", "nope", "--dealer", dealer.address,
                     "--data", str(a), "--target", "progression", "--model", "linear", "--model-out",
                     str(tmp / "x.json"))
        assert p.returncode == 2 and "no dataset 'nope'" in p.stderr and "Traceback" not in p.stderr
        p = verifier("train-2pc", "--server", prover.address, "--trainer-data", "mine", "--dealer", "127.0.0.1:1",
                     "--data", str(a), "--target", "progression", "--model", "linear", "--model-out",
                     str(tmp / "x.json"), "--timeout", "20")
        assert p.returncode == 2 and "dealer" in p.stderr and "UNAVAILABLE" in p.stderr and "Traceback" not in p.stderr


def test_tls_everywhere(setup, tmp_path):
    from test_e2e import _self_signed

    _, key, a, b, _ = setup
    cert, tls_key = _self_signed(tmp_path)
    tls = ("--tls-cert", str(cert), "--tls-key", str(tls_key))
    with DealerProcess(key, *tls) as dealer, \
            ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--dealer-tls-ca", str(cert),
                          *tls) as prover:
        prover.address = "localhost:" + prover.address.rsplit(":", 1)[1]
        dealer.address = "localhost:" + dealer.address.rsplit(":", 1)[1]
        p, doc, _ = _train(tmp_path, prover, dealer, a, "--tls-ca", str(cert), "--dealer-tls-ca", str(cert))
        assert p.returncode == 0 and doc["status"] == "trained", p.stderr
        # a client that does not speak TLS gets a connection error, not a traceback
        p, _, _ = _train(tmp_path, prover, dealer, a, "--timeout", "3")
        assert p.returncode == 2 and "Traceback" not in p.stderr


def test_two_party_sessions_take_the_trainer_session_slots(setup):
    """The two-party service is under the trainer's admission control: with one session per client address,
    an open Trainer session makes a two-party Run from the same address answer busy (with the retry hint) at
    once, and the slot comes back when that session closes."""
    import os

    import grpc

    from protocol import convert
    from protocol.wire import mpc_pb2, mpc_pb2_grpc
    from protocol.wire import trainer_pb2 as pb
    from protocol.wire import trainer_pb2_grpc as pb_grpc

    _tmp, key, _a, b, _dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--max-sessions-per-peer", "1",
                       "--upload-start-timeout", "60") as prover:
        ch = grpc.insecure_channel(prover.address)
        trainer, two_party = pb_grpc.TrainerStub(ch), mpc_pb2_grpc.TwoPartyTrainingStub(ch)
        sid = trainer.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(TrainConfig()),
                                                        client_nonce=os.urandom(32), proof_kind="spot")).session_id
        first = next(two_party.Run(iter([mpc_pb2.MpcFrame()]), timeout=30))
        assert "busy" in first.abort and "retry in" in first.abort, first
        trainer.CloseSession(pb.CloseSessionRequest(session_id=sid))
        first = next(two_party.Run(iter([mpc_pb2.MpcFrame()]), timeout=30))  # a bad hello: refused, not busy
        assert "busy" not in first.abort and "refused" in first.abort, first
        ch.close()
