"""Two-party training when one party holds no rows (docs/MPC.md section 1), with three real processes
(dealer, trainer, client) on loopback: the model equals plain training (`train_honest`) on the one party's
rows, bit for bit, with the standardization of the party that holds rows; both without rows is refused
before any dealer material is drawn; a party that lies about its row count makes the other abort."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from procs import ProverProcess, make_key, verifier
from test_mpc_e2e import DealerProcess, _split
from test_progress import _bar, verifier_on_terminal

from mpc.cheating import Honest
from mpc.errors import MpcAbort
from protocol import model_file
from protocol.dataset import Standardization, fit_standardization, load_table, quantize_table
from protocol.prg import SeedContext
from protocol.training import TrainConfig, train_honest

CFG = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpc_no_rows")
    key, _ = make_key(tmp)
    a, b = _split(tmp)
    header = tmp / "header.csv"
    header.write_text(a.read_text().splitlines()[0] + "\n")
    with DealerProcess(key) as dealer:
        yield SimpleNamespace(tmp=tmp, key=key, a=a, b=b, header=header, dealer=dealer)


def _train(tmp, prover, dealer, *extra, name="mine"):
    out = tmp / "m.json"
    if out.exists():
        out.unlink()
    p = verifier("train-2pc", "--server", prover.address, "--trainer-data", name, "--dealer", dealer.address,
                 "--model", "linear", "--epochs", "1", "--batch-size", "8", "--model-out", str(out), "--json",
                 *extra, timeout=300)
    doc = json.loads(p.stdout) if p.stdout.strip() else {}
    return p, doc, out


def _plain(rows_csv: Path, out: Path, doc: dict) -> list[int]:
    """train_honest on one party's rows, quantized with the model file's standardization, same randomness."""
    stdz = Standardization.from_dict(json.loads(out.read_text())["standardization"])
    X, Y = quantize_table(load_table(str(rows_csv), "progression"), stdz, 16)
    ctx = SeedContext(bytes.fromhex(doc["session_id"]), bytes.fromhex(doc["data_root"]),
                      bytes.fromhex(doc["training_seed"]))
    theta = None
    for _, _, theta, _ in train_honest(X, Y, CFG, ctx):
        pass
    return [int(v) for v in theta]


def _model(out: Path) -> list[int]:
    m = model_file.load(str(out))
    return m.doc["weights_fixed"] + [m.doc["bias_fixed"]]


@pytest.mark.parametrize("how", ["no --data", "header-only --data"])
def test_a_client_without_rows_trains_the_trainers_rows_exactly_with_the_trainers_standardization(setup, how):
    s = setup
    data = () if how == "no --data" else ("--data", str(s.header), "--target", "progression")
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression") as prover:
        p, doc, out = _train(s.tmp, prover, s.dealer, *data)
        assert p.returncode == 0, p.stderr
        assert doc["status"] == "trained" and doc["client_rows"] == 0 and doc["trainer_rows"] == 24
        assert doc["standardization_from"] == "trainer" and doc["steps"] == 3
        assert doc["rounds"] == 2 + 3 * 13 + 5  # inputs, coin; 13 per step; checks, mac, output, mac, mac-close
        assert doc["bytes_sent"] > 0 and doc["dealer_bytes"] > 0
        saved = json.loads(out.read_text())
        assert saved["feature_names"] == load_table(str(s.b), "progression").feature_names
        assert saved["target"] == "progression"
        fitted = fit_standardization(load_table(str(s.b), "progression"), "linear")
        assert saved["standardization"]["mean"] == fitted.mean and saved["standardization"]["std"] == fitted.std
        assert _model(out) == _plain(s.b, out, doc)
        # --target without --data is checked against the trainer's dataset
        p, doc, _ = _train(s.tmp, prover, s.dealer, "--target", "age")
        assert p.returncode == 2 and "has the target 'progression', not --target 'age'" in p.stderr, p.stderr


def test_a_trainer_with_a_header_only_dataset_trains_the_clients_rows_exactly(setup):
    s = setup
    with ProverProcess(s.key, "--dataset", f"mine={s.header}", "--target", "progression") as prover:
        p, doc, out = _train(s.tmp, prover, s.dealer, "--data", str(s.a), "--target", "progression")
        assert p.returncode == 0, p.stderr
        assert doc["client_rows"] == 40 and doc["trainer_rows"] == 0 and doc["standardization_from"] == "client"
        assert doc["steps"] == 5 and doc["rounds"] == 2 + 5 * 13 + 5
        assert _model(out) == _plain(s.a, out, doc)
        p2, doc2, out2 = _train(s.tmp, prover, s.dealer, "--data", str(s.a), "--target", "progression", "--reveal", "client")
        assert p2.returncode == 0 and doc2["reveal"] == "client" and _model(out2) == _plain(s.a, out2, doc2)


def test_progress_bar_and_summary_on_a_terminal_with_a_client_without_rows(setup):
    s = setup
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression") as prover:
        code, out, term = verifier_on_terminal(
            "train-2pc", "--server", prover.address, "--trainer-data", "mine", "--dealer", s.dealer.address,
            "--model", "linear", "--epochs", "4", "--batch-size", "8", "--model-out", str(s.tmp / "bar.json"))
    assert code == 0, (out, term)
    assert _bar(term, "secure training") and "12/12" in term, term[-2000:]
    assert "12 steps on 0 + 24 rows" in out and "the trainer's standardization" in out, out
    assert " rounds; dealer " in out and "MB" in out, out


@pytest.mark.parametrize("client", ["no --data", "header-only --data"])
def test_neither_party_holding_rows_is_refused_before_the_dealer(setup, client):
    """The dealer address is unreachable: a refusal that came after fetching preprocessing would say so."""
    s = setup
    data = () if client == "no --data" else ("--data", str(s.header), "--target", "progression")

    class Nowhere:
        address = "127.0.0.1:1"

    with ProverProcess(s.key, "--dataset", f"empty={s.header}", "--target", "progression") as prover:
        p, doc, out = _train(s.tmp, prover, Nowhere, *data, name="empty")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "neither party holds rows" in p.stderr and "'empty'" in p.stderr and "header-only" in p.stderr, p.stderr
    assert "UNAVAILABLE" not in p.stderr and "Traceback" not in p.stderr
    assert doc["status"] == "error" and "neither party holds rows" in doc["error"]
    assert not out.exists()


def test_a_trainer_data_session_on_a_header_only_dataset_is_refused_naming_it(setup):
    import grpc

    from protocol.wire import trainer_pb2 as pb
    from protocol.wire import trainer_pb2_grpc as pb_grpc

    s = setup
    with ProverProcess(s.key, "--dataset", f"empty={s.header}", "--dataset", f"mine={s.b}", "--target", "progression",
                       "--max-reveal", "1") as prover:
        p = verifier("train", "--server", prover.address, "--trainer-data", "empty", "--out", str(s.tmp / "t.json"),
                     "--model-out", str(s.tmp / "tm.json"))
        assert p.returncode == 2 and "dataset 'empty' without rows" in p.stderr and "Traceback" not in p.stderr, \
            p.stderr
        # the trainer refuses it too (a client that skips the card check), naming the dataset
        ch = grpc.insecure_channel(prover.address)
        info = pb_grpc.TrainerStub(ch).GetInfo(pb.GetInfoRequest(), timeout=30)
        assert sorted(d.name for d in info.datasets) == ["empty", "mine"]
        assert [bool(d.card.statement) for d in sorted(info.datasets, key=lambda d: d.name)] == [False, True]
        ch.close()
        # the dataset with rows still serves trainer-data sessions
        p = verifier("train", "--server", prover.address, "--trainer-data", "mine", "--model", "linear",
                     "--epochs", "1", "--batch-size", "16", "--out", str(s.tmp / "t.json"),
                     "--model-out", str(s.tmp / "tm.json"), "--json")
        assert p.returncode in (0, 3), p.stderr


def test_the_trainer_refuses_use_trainer_data_on_a_header_only_dataset(setup, tmp_path):
    from protocol.errors import InputError
    from prover.trainer_data import commit_all

    header = setup.header
    tables = {"empty": load_table(str(header), "progression", allow_empty=True)}

    class Args:
        pass

    served = commit_all(*_keypair(), tables, Args())
    assert served.cards() == [("empty", b"", b"")]
    with pytest.raises(InputError, match="dataset 'empty' holds no rows"):
        served.get("empty")


def _keypair():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = Ed25519PrivateKey.generate()
    return k, k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_a_trainer_that_declares_rows_and_sends_none_is_caught(setup):
    s = setup
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression", "--mpc-adversary",
                       "hide-rows") as prover:
        p, doc, out = _train(s.tmp, prover, s.dealer, "--data", str(s.a), "--target", "progression")
    assert p.returncode == 1 and doc["status"] == "aborted", (p.stdout, p.stderr)
    assert "declared 24 rows but sent masked inputs for 0 rows" in doc["reason"], doc
    assert not out.exists()


class WrongRowCount(Honest):
    """Sends masked input rows other than the count it declared: ``extra`` more (or all removed)."""

    def __init__(self, extra: int | None):
        self.extra = extra

    def inputs(self, masked):
        if self.extra is None:
            return b""
        return masked + os.urandom(16 * 4) * self.extra  # a row is 4 values (3 features + target) of 16 bytes


@pytest.mark.parametrize("declared,extra", [(0, 2), (40, None)])
def test_a_client_that_lies_about_its_row_count_makes_the_trainer_abort(setup, declared, extra):
    """A client (this test process) declares 0 rows and sends 2 masked rows, or declares its 40 rows and sends
    none: the real trainer aborts naming the mismatch, and its abort frame reaches the client."""
    import grpc

    from dealer.client import DealerPreprocessing
    from mpc.plan import Plan
    from mpc.secure_training import run_party
    from mpc.transport import ClientTransport
    from protocol.wire import mpc_pb2, mpc_pb2_grpc
    from prover.mpc_servicer import config_to_proto, session_id_of

    s = setup
    table = load_table(str(s.a), "progression")
    stdz = fit_standardization(table, "linear")
    X, Y = quantize_table(table, stdz, 16)
    X, Y = X[:declared], Y[:declared]
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression") as prover:
        ch = grpc.insecure_channel(prover.address)
        nonce = os.urandom(32)
        fields = {} if declared == 0 else {"feature_names": table.feature_names, "target": table.target,
                                           "mean": stdz.mean, "std": stdz.std, "target_mean": stdz.target_mean,
                                           "target_std": stdz.target_std}
        hello = mpc_pb2.MpcHello(dataset="mine", config=config_to_proto(CFG), client_nonce=nonce,
                                 client_rows=declared, dealer=s.dealer.address, reveal="both", **fields)
        tr = ClientTransport(mpc_pb2_grpc.TwoPartyTrainingStub(ch), 60)
        tr.send_proto(mpc_pb2.MpcFrame(hello=hello))
        reply = tr.recv_proto().hello_reply
        assert reply.trainer_rows == 24
        sid = session_id_of(nonce, bytes(reply.trainer_nonce))
        plan = Plan.build(declared, 24, 3, CFG)
        pre = DealerPreprocessing(s.dealer.address, sid, 0, plan)
        with pytest.raises(MpcAbort) as e:
            run_party(0, tr, pre, plan, X, Y, sid, hooks=WrongRowCount(extra))
        tr.close()
        pre.close()
        ch.close()
    sent = 2 if extra else 0
    want = f"the other party declared {declared} rows but sent masked inputs for {sent} rows"
    # the trainer's own reason, relayed in its abort frame (its log line may come after the frame: not raced here)
    assert "the other party aborted" in str(e.value) and want in str(e.value), str(e.value)


@pytest.mark.parametrize("case", ["stdz with no rows", "columns differ"])
def test_the_trainer_refuses_a_hello_that_does_not_fit_its_rows(setup, case):
    import grpc

    from protocol.wire import mpc_pb2, mpc_pb2_grpc
    from prover.mpc_servicer import config_to_proto

    s = setup
    fields = {"mean": [0.0] * 3, "std": [1.0] * 3, "target_std": 1.0} if case == "stdz with no rows" else \
        {"feature_names": ["x", "y", "z"], "target": "progression"}
    hello = mpc_pb2.MpcHello(dataset="mine", config=config_to_proto(CFG), client_nonce=os.urandom(32), client_rows=0,
                             dealer=s.dealer.address, reveal="both", **fields)
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression") as prover:
        ch = grpc.insecure_channel(prover.address)
        first = next(mpc_pb2_grpc.TwoPartyTrainingStub(ch).Run(iter([mpc_pb2.MpcFrame(hello=hello)]), timeout=30))
        ch.close()
    want = "sends no standardization" if case == "stdz with no rows" else "has columns"
    assert first.abort.startswith("refused:") and want in first.abort, first


def test_the_trainer_fits_its_own_standardization_for_a_client_without_rows(setup):
    """The hello answer's schema and standardization: the ones of the trainer's rows (with rows of its own),
    the schema alone when the client sent its standardization."""
    import grpc

    from protocol.wire import mpc_pb2, mpc_pb2_grpc
    from prover.mpc_servicer import config_to_proto

    s = setup
    fitted = fit_standardization(load_table(str(s.b), "progression"), "linear")
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression") as prover:
        ch = grpc.insecure_channel(prover.address)
        stub = mpc_pb2_grpc.TwoPartyTrainingStub(ch)
        hello = mpc_pb2.MpcHello(dataset="mine", config=config_to_proto(CFG), client_nonce=os.urandom(32),
                                 client_rows=0, dealer=s.dealer.address, reveal="both")
        r = next(stub.Run(iter([mpc_pb2.MpcFrame(hello=hello)]), timeout=30)).hello_reply
        ch.close()
    assert list(r.feature_names) == ["age", "sex", "bmi"] and r.target == "progression" and r.trainer_rows == 24
    assert list(r.mean) == fitted.mean and list(r.std) == fitted.std
    assert (r.target_mean, r.target_std) == (fitted.target_mean, fitted.target_std)
    assert np.isfinite(list(r.mean)).all()


class _FakeTrainer:
    """A hostile trainer in this test process: answers any hello with the given MpcHelloReply fields."""

    def __init__(self, **reply):
        self.reply, self.hellos = reply, []

    def __enter__(self):
        from concurrent import futures

        import grpc

        from protocol.wire import mpc_pb2, mpc_pb2_grpc

        fake = self

        class Servicer(mpc_pb2_grpc.TwoPartyTrainingServicer):
            def Run(self, request_iterator, context):
                fake.hellos.append(next(request_iterator).hello)
                yield mpc_pb2.MpcFrame(hello_reply=mpc_pb2.MpcHelloReply(trainer_nonce=os.urandom(32), **fake.reply))

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        mpc_pb2_grpc.add_TwoPartyTrainingServicer_to_server(Servicer(), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None)


GOOD_REPLY = {"trainer_rows": 24, "feature_names": ["age", "sex", "bmi"], "target": "progression",
              "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "target_mean": 0.0, "target_std": 1.0}


@pytest.mark.parametrize("changes,with_rows,want", [
    ({"std": [1.0, float("nan"), 1.0]}, False, "standardization of 'mine' is malformed"),
    ({"std": [1.0, 0.0, 1.0]}, False, "standardization of 'mine' is malformed"),
    ({"mean": [0.0, 0.0]}, False, "standardization of 'mine' is malformed"),
    ({"trainer_rows": 0}, False, "neither party holds rows"),
    ({"feature_names": ["age", "age", "bmi"]}, False, "distinct, non-empty feature names"),
    ({"feature_names": ["age", "", "bmi"]}, False, "distinct, non-empty feature names"),
    ({"target": ""}, False, "distinct, non-empty feature names and a target"),
    ({}, True, "sent a standardization although yours is used"),
    ({"feature_names": ["age", "sex", "bp"]}, True, "has columns"),
])
def test_a_hostile_trainers_hello_answer_is_refused_before_the_dealer(setup, tmp_path, changes, with_rows, want):
    """The real client against a trainer that answers with a malformed schema or standardization, or claims no
    rows either: refused (exit 2, no model file) before any dealer material is drawn (the dealer is
    unreachable: a refusal after contacting it would say UNAVAILABLE)."""
    s = setup
    data = ("--data", str(s.a), "--target", "progression") if with_rows else ()

    class Nowhere:
        address = "127.0.0.1:1"

    with _FakeTrainer(**{**GOOD_REPLY, **changes}) as fake:
        p, doc, out = _train(tmp_path, fake, Nowhere, *data)
    assert p.returncode == 2 and want in p.stderr, (p.stdout, p.stderr)
    assert doc["status"] == "error" and "UNAVAILABLE" not in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()
    assert fake.hellos[0].client_rows == (40 if with_rows else 0)
    assert len(fake.hellos[0].mean) == (3 if with_rows else 0)  # a client without rows sends no standardization


def test_a_well_formed_answer_goes_on_to_the_dealer(setup, tmp_path):
    """Control for the test above: the same fake trainer with a well-formed answer gets as far as the dealer."""

    class Nowhere:
        address = "127.0.0.1:1"

    with _FakeTrainer(**GOOD_REPLY) as fake:
        p, _doc, out = _train(tmp_path, fake, Nowhere, "--timeout", "20")
    assert p.returncode == 2 and "dealer" in p.stderr and "UNAVAILABLE" in p.stderr, p.stderr
    assert not out.exists()


def test_the_trainers_json_log_has_one_line_per_session_start_end_and_refusal_with_the_peer(setup):
    s = setup
    with ProverProcess(s.key, "--dataset", f"mine={s.b}", "--target", "progression", "--json-logs") as prover:
        p, doc, _ = _train(s.tmp, prover, s.dealer)  # a client without rows: trains
        assert p.returncode == 0, p.stderr
        p, _, _ = _train(s.tmp, prover, s.dealer, name="nope")  # refused at hello
        assert p.returncode == 2 and "no dataset 'nope'" in p.stderr, p.stderr
        prover.stop()
        lines = [json.loads(ln) for ln in prover.stderr().splitlines() if ln.startswith("{")]
    mine = [x for x in lines if x.get("method") == "TwoPartyTraining.Run"]
    events = [x["event"] for x in mine]
    assert events == ["session_start", "session_end", "refused"], mine
    assert all(x["peer"] for x in mine) and mine[0]["session"] == mine[1]["session"] == doc["session_id"]
    assert mine[1]["reason"].startswith("done: 3 steps") and "no dataset 'nope'" in mine[2]["reason"]


def test_an_unwritable_model_path_is_refused_before_the_session(setup, tmp_path):
    """--model-out is checked before anything is sent (the trainer address here accepts nothing)."""
    p = verifier("train-2pc", "--server", "127.0.0.1:1", "--trainer-data", "mine", "--dealer", "127.0.0.1:1",
                 "--model", "linear", "--model-out", str(setup.a / "m.json"), "--timeout", "5")
    assert p.returncode == 2 and "cannot write" in p.stderr and "cannot connect" not in p.stderr, p.stderr
