"""Attacks on the two-party session over the wire, with real processes (docs/MPC.md sections 3-5).

A cheating trainer is a real `vtrain-prover serve` process whose outgoing frames are rewritten (this module, run
as a script, patches ``mpc.transport.LoopTransport`` and then runs the prover's CLI); the victim is the real
`vtrain-verifier train-2pc`, which must exit 1 (ABORTED, with the named reason) and write no model:

* ``rows``: the trainer announces one row more than it holds (its hello reply), so its masked inputs are one row
  short of what the client's plan expects: "masked inputs of 16 bytes";
* ``unreduced``: step 1's first opening carries an element with a residue above its prime;
* ``close``: the trainer ends the call where its masked inputs were due: "the trainer closed the session".

A cheating dealer (served from this process) hands a party input material of the wrong length. A cheating client
(this process, speaking the protocol itself) lies about its row count, half-closes its stream after the hello, or
sends an unreduced element; the honest trainer's log must name each, and the trainer keeps serving.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from procs import ProverProcess, verifier
from test_mpc_e2e import _train, setup  # noqa: F401 - the module fixture (dealer, key, data)
from test_mpc_frame_limits import _drain, _hello, _run

from protocol.wire import mpc_pb2

SERVE = ("--dataset", "mine={b}", "--target", "progression")


# what a trainer's abort text can do on the client's terminal: end the line, move up over "ABORTED: ...", erase it
# and print a verdict of its own
FORGED = "x\n\x1b[1A\x1b[2K\rTRAINED (two-party secure computation): 8 steps on 40 + 24 rows; model written"


def unreduced(elements: bytes) -> bytes:
    """The first element's first residue set to 2^50 - 1 (every prime is below 2^50; docs/MPC.md section 2)."""
    return b"\xff" * 7 + bytes([elements[7] | 0x03]) + elements[8:]


def _patch_trainer(mode: str) -> None:
    """Make this process's two-party trainer deviate on the wire as ``mode`` says (see the module docstring)."""
    from mpc import transport

    original = transport.LoopTransport._put

    def _put(self, m):
        if m is not None and mode == "rows" and m.HasField("hello_reply"):
            m.hello_reply.trainer_rows += 1
        elif m is not None and mode == "unreduced" and m.label == "s1/F":
            m.elements = unreduced(m.elements)
        elif m is not None and mode == "close" and m.label == "inputs":
            m = None  # the handler ends the call (status OK) where the masked inputs were due
        elif m is not None and mode == "inject" and m.label == "inputs":
            m = type(m)(abort=FORGED)  # an abort whose text rewrites the client's terminal
        original(self, m)

    transport.LoopTransport._put = _put


class CheatingTrainer(ProverProcess):
    """`vtrain-prover serve` in a process whose two-party frames are rewritten as ``mode`` says."""

    def __init__(self, mode: str, key: Path, *extra: str):
        super().__init__(key, *extra)
        self.mode = mode

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, self.mode, "serve", "--key", str(self.key),
                                      "--listen", self.listen, *self.extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"cheating trainer did not start: {line!r} {self.proc.stderr.read()}")
        self.address = line.removeprefix("listening on ")
        return self


def _serve(b) -> list[str]:
    return [a.format(b=b) for a in SERVE]


def _victim_aborts(p, doc, out, *reason: str) -> None:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr[-800:])
    assert doc.get("status") == "aborted" and all(r in doc.get("reason", "") for r in reason), doc
    assert "Traceback" not in p.stderr, p.stderr[-800:]
    assert not out.exists(), "a model was written after an abort"


@pytest.mark.parametrize(("mode", "reason"), [
    ("rows", ("malformed message", "masked inputs")),  # "... expected N masked inputs of 16 bytes"
    ("unreduced", ("not reduced below its primes",)),
    ("close", ("the trainer closed the session",)),
])
def test_a_trainer_deviating_on_the_wire_makes_the_client_abort_without_a_model(setup, mode, reason):  # noqa: F811
    tmp, key, a, b, dealer = setup
    with CheatingTrainer(mode, key, *_serve(b)) as prover:
        p, doc, out = _train(tmp, prover, dealer, a, "--timeout", "60")
    _victim_aborts(p, doc, out, *reason)


def test_a_trainers_abort_text_cannot_rewrite_the_clients_terminal(setup):  # noqa: F811
    """The reason a trainer gives is shown to the user: it must not carry line breaks or terminal escapes that
    hide "ABORTED" and show a verdict vtrain never reached (the exit code and the model file stay honest)."""
    tmp, key, a, b, dealer = setup
    with CheatingTrainer("inject", key, *_serve(b)) as prover:
        out = tmp / "m.json"
        p = verifier("train-2pc", "--server", prover.address, "--trainer-data", "mine", "--dealer", dealer.address,
                     "--data", str(a), "--target", "progression", "--model", "linear", "--epochs", "1",
                     "--batch-size", "8", "--model-out", str(out), "--timeout", "60", timeout=300)
    assert p.returncode == 1 and not out.exists(), (p.returncode, p.stdout)
    shown = p.stdout + p.stderr
    assert "\x1b" not in shown and not any(line.startswith("TRAINED") for line in shown.splitlines()), shown


def _honest_control(tmp, key, a, b, dealer) -> None:
    """The same processes and data without the deviation train (so each abort above is the deviation's)."""
    with CheatingTrainer("none", key, *_serve(b)) as prover:
        p, doc, out = _train(tmp, prover, dealer, a, "--timeout", "60")
    assert p.returncode == 0 and doc.get("status") == "trained" and out.exists(), (p.returncode, p.stderr[-800:])


def test_the_patched_trainer_is_honest_without_a_deviation(setup):  # noqa: F811
    _honest_control(*setup)


# ---- a dealer that hands out input material of the wrong length ----

def _dealer_server(victim: int):
    from dealer.service import DealerServicer
    from mpc.preprocessing import Generator
    from protocol.wire import mpc_pb2_grpc

    class ShortInputs(Generator):
        def input_chunks(self, party):
            for i, chunk in enumerate(super().input_chunks(party)):
                yield chunk[:-16] if party == victim and i == 1 else chunk  # one mask short

    class Servicer(DealerServicer):
        def _generator(self, key, plan):
            return ShortInputs(key, plan)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    mpc_pb2_grpc.add_DealerServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


class _Address:
    def __init__(self, address: str):
        self.address = address


def _session_with_short_material(setup, victim: int):  # noqa: F811
    """A real trainer and client with a dealer giving ``victim`` short input material -> (p, doc, out, log)."""
    tmp, key, a, b, _ = setup
    server, address = _dealer_server(victim)
    try:
        with ProverProcess(key, *_serve(b)) as prover:
            p, doc, out = _train(tmp, prover, _Address(address), a, "--timeout", "60")
            prover.stop()
            log = prover.stderr()
    finally:
        server.stop(0)
    return p, doc, out, log


def test_input_material_of_the_wrong_length_makes_the_client_abort_naming_the_dealer(setup):  # noqa: F811
    p, doc, out, _ = _session_with_short_material(setup, victim=0)
    _victim_aborts(p, doc, out, "the dealer's input material has the wrong length")


def test_input_material_of_the_wrong_length_for_the_trainer_ends_the_session_without_a_model(setup):  # noqa: F811
    """The trainer (party 1) aborts before its first message and tells the client why (the dealer's material)."""
    p, doc, out, log = _session_with_short_material(setup, victim=1)
    assert p.returncode == 1 and doc.get("status") == "aborted" and not out.exists(), (p.returncode, doc)
    assert "input material has the wrong length" in doc.get("reason", ""), doc
    assert "the dealer's input material has the wrong length" in log, log[-2000:]


# ---- a cheating client against the honest trainer process ----

class _Script:
    """A client's request stream driven by the test: frames are queued, ``None`` half-closes."""

    def __init__(self):
        import queue

        self.q = queue.Queue()

    def __iter__(self):
        while True:
            m = self.q.get(timeout=60)
            if m is None:
                return
            yield m


def _trainer_log_after(prover) -> str:
    prover.stop()
    return prover.stderr()


def test_a_client_lying_about_its_row_count_is_refused_by_the_trainer(setup):  # noqa: F811
    """The hello announces 40 rows; the masked inputs hold 39 (d + 1 = 4 values each)."""
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, *_serve(b)) as prover:
        script = _Script()
        script.q.put(mpc_pb2.MpcFrame(hello=_hello(b, dealer.address, client_rows=40)))
        ch, call = _run(prover.address, iter(script))
        reply = next(call)
        assert reply.HasField("hello_reply"), reply
        script.q.put(mpc_pb2.MpcFrame(label="inputs", elements=bytes(16 * 39 * 4), blob=os.urandom(32)))
        got = [reply]
        try:
            for m in call:
                got.append(m)
                if m.abort:
                    break
        except grpc.RpcError as e:
            got.append(e.code())
        script.q.put(None)
        ch.close()
        # the honest trainer's answer to a lying client is an abort naming the count, and it keeps serving
        # ("expected 160 masked inputs of 16 bytes": 40 rows of d + 1 = 4 values)
        assert any(isinstance(m, mpc_pb2.MpcFrame) and "malformed message" in m.abort and "masked inputs" in m.abort
                   for m in got), got
        p, doc, _ = _train(tmp, prover, dealer, a, "--timeout", "60")
        assert p.returncode == 0 and doc.get("status") == "trained", (p.returncode, p.stderr[-800:])
        log = _trainer_log_after(prover)
    assert "malformed message" in log and "masked inputs" in log, log[-2000:]


def test_a_client_that_half_closes_after_its_hello_ends_the_trainers_session(setup):  # noqa: F811
    _tmp, key, _a, b, dealer = setup
    with ProverProcess(key, *_serve(b)) as prover:
        script = _Script()
        script.q.put(mpc_pb2.MpcFrame(hello=_hello(b, dealer.address)))
        ch, call = _run(prover.address, iter(script))
        assert next(call).HasField("hello_reply")
        script.q.put(None)  # no more frames: the request stream ends
        _, waited = _drain(call, ch)
        log = _trainer_log_after(prover)
    assert waited < 30, waited
    assert "the client closed the session" in log, log[-2000:]


def test_a_client_sending_an_unreduced_element_is_caught_by_the_trainer(setup):  # noqa: F811
    """A client that speaks the whole protocol (this process) but sends step 1's first opening with a residue
    above its prime."""
    from dealer.client import DealerPreprocessing
    from mpc.errors import MpcAbort
    from mpc.party import Frame
    from mpc.plan import Plan
    from mpc.secure_training import run_party
    from mpc.transport import ClientTransport
    from protocol.dataset import fit_standardization, load_table, quantize_table
    from protocol.training import TrainConfig
    from protocol.wire import mpc_pb2_grpc
    from prover.mpc_servicer import session_id_of

    _tmp, key, a, b, dealer = setup
    table = load_table(str(a), "progression")
    stdz = fit_standardization(table, "linear")
    Xq, Yq = quantize_table(table, stdz, 16)
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10)

    class Cheat(ClientTransport):
        def send(self, f: Frame) -> None:
            if f.label == "s1/F":
                f = Frame(f.label, unreduced(f.elements), f.blob, f.abort)
            super().send(f)

    with ProverProcess(key, *_serve(b)) as prover:
        ch = grpc.insecure_channel(prover.address, options=[("grpc.max_send_message_length", 64 << 20)])
        tr = Cheat(mpc_pb2_grpc.TwoPartyTrainingStub(ch), 60)
        hello = _hello(b, dealer.address, client_rows=len(Yq))
        hello.mean[:], hello.std[:] = stdz.mean, stdz.std
        hello.target_mean, hello.target_std = stdz.target_mean, stdz.target_std
        tr.send_proto(mpc_pb2.MpcFrame(hello=hello))
        reply = tr.recv_proto().hello_reply
        sid = session_id_of(bytes(hello.client_nonce), bytes(reply.trainer_nonce))
        plan = Plan.build(len(Yq), int(reply.trainer_rows), Xq.shape[1], cfg)
        pre = DealerPreprocessing(dealer.address, sid, 0, plan)
        with pytest.raises(MpcAbort) as told:
            run_party(0, tr, pre, plan, Xq, Yq, sid)
        tr.close()
        pre.close()
        ch.close()
        log = _trainer_log_after(prover)
    assert "not reduced below its primes" in str(told.value), told.value  # what the trainer told the cheater
    assert "not reduced below its primes" in log, log[-2000:]


if __name__ == "__main__":  # a cheating trainer: MODE, then `vtrain-prover` arguments
    if sys.argv[1] != "none":
        _patch_trainer(sys.argv[1])
    sys.argv = ["vtrain-prover", *sys.argv[2:]]
    from prover.cli import main

    sys.exit(main())
