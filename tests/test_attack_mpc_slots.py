"""Two-party training slots held without work (issue #8's "a slot is only held by work": a stalled stream is
ended within the configurable receive timeout; README "Trainer service limits").

An abuser opens the trainer's TwoPartyTraining.Run streams and sends nothing (or only its hello, and then
nothing). Each Run takes one of the trainer's few two-party slots and one of its session slots; an honest
`train-2pc` must not be refused as busy for longer than the receive timeout the operator configured. Real
processes (trainer, dealer, CLI), loopback, bounded.
"""

from __future__ import annotations

import threading
import time

import grpc
from procs import ProverProcess
from test_abuse import _rss
from test_mpc_e2e import _train, setup  # noqa: F401 - the module fixture (dealer, key, data)

from protocol.wire import mpc_pb2_grpc


class SilentRun:
    """A Run stream that sends nothing until released (at most 60 s)."""

    def __init__(self, address: str):
        self.release = threading.Event()
        self.channel = grpc.insecure_channel(address)
        self.call = mpc_pb2_grpc.TwoPartyTrainingStub(self.channel).Run(self._silence(), timeout=90)
        self.first = None
        threading.Thread(target=self._read, daemon=True).start()

    def _silence(self):
        self.release.wait(60)
        return
        yield  # a generator that yields nothing

    def _read(self):
        try:
            for frame in self.call:
                self.first = self.first or frame
        except grpc.RpcError:
            pass

    def close(self):
        self.release.set()
        self.call.cancel()
        self.channel.close()


def test_silent_two_party_streams_do_not_hold_the_slots_past_the_receive_timeout(setup):  # noqa: F811
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--receive-timeout", "2",
                       "--upload-start-timeout", "2", "--max-sessions-per-peer", "20") as prover:
        abusers = [SilentRun(prover.address) for _ in range(6)]  # more than the two-party slots
        try:
            time.sleep(8)  # four times the receive timeout: the silent streams must be gone by now
            p, doc, _out = _train(tmp, prover, dealer, a, "--timeout", "60")
        finally:
            for s in abusers:
                s.close()
    assert p.returncode == 0 and doc.get("status") == "trained", (p.returncode, doc, p.stderr[-500:])




def test_frames_sent_ahead_are_not_buffered_without_bound(setup, tmp_path):  # noqa: F811
    """The protocol alternates (each party sends one frame per round, then waits for the other's), so a trainer
    never needs more than a frame or two of a client's ahead. A client with a valid hello, a dealer that never
    answers (the session waits) and 40 frames of 8 MiB sent at once must not make the trainer hold them."""
    import os
    import socket

    _tmp, key, _a, b, _dealer = setup
    hole = socket.socket()  # a "dealer" that accepts connections and never answers: the session waits on it
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    header = b.read_text().splitlines()[0].split(",")
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        time.sleep(0.5)
        base = _rss(prover.proc.pid) // 2**20
        from protocol.wire import mpc_pb2

        cfg = mpc_pb2.MpcConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16,
                                weight_bits=32)
        hello = mpc_pb2.MpcHello(dataset="mine", config=cfg, client_nonce=os.urandom(32), client_rows=40,
                                 feature_names=header[:-1], target=header[-1], mean=[0.0] * (len(header) - 1),
                                 std=[1.0] * (len(header) - 1), target_mean=0.0, target_std=1.0,
                                 dealer=f"127.0.0.1:{hole.getsockname()[1]}", reveal="both")
        done = threading.Event()

        def frames():
            yield mpc_pb2.MpcFrame(hello=hello)
            for _ in range(40):
                yield mpc_pb2.MpcFrame(label="inputs", elements=bytes(8 << 20))
            done.wait(30)

        ch = grpc.insecure_channel(prover.address)
        call = mpc_pb2_grpc.TwoPartyTrainingStub(ch).Run(frames(), timeout=60)
        try:
            first = next(call)
            assert first.HasField("hello_reply"), first
            time.sleep(6)
            grown = _rss(prover.proc.pid) // 2**20 - base
        finally:
            done.set()
            call.cancel()
            ch.close()
            hole.close()
    assert grown < 96, f"the trainer holds {grown} MiB of a client's frames sent ahead (320 MiB sent)"
