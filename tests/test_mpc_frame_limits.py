"""The trainer's two-party handler holds a slot only while the client works, and only frames the plan allows
(prover/mpc_servicer.py; real processes). A hello must arrive within --upload-start-timeout, every later frame
within --receive-timeout; at most two frames are read ahead; a frame larger than the session's plan allows
(its masked inputs, docs/MPC.md section 3) ends the session. The attacks with the most frames are in
tests/test_attack_mpc_slots.py."""

from __future__ import annotations

import os
import threading
import time

import grpc
from procs import ProverProcess
from test_mpc_e2e import _train, setup  # noqa: F401 - the module fixture (dealer, key, data)

from protocol.wire import mpc_pb2, mpc_pb2_grpc


def _hello(b, dealer_address: str, client_rows: int = 40) -> mpc_pb2.MpcHello:
    header = b.read_text().splitlines()[0].split(",")
    cfg = mpc_pb2.MpcConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16,
                            weight_bits=32)
    return mpc_pb2.MpcHello(dataset="mine", config=cfg, client_nonce=os.urandom(32), client_rows=client_rows,
                            feature_names=header[:-1], target=header[-1], mean=[0.0] * (len(header) - 1),
                            std=[1.0] * (len(header) - 1), target_mean=0.0, target_std=1.0, dealer=dealer_address,
                            reveal="both")


def _run(address: str, frames):
    ch = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    return ch, mpc_pb2_grpc.TwoPartyTrainingStub(ch).Run(frames, timeout=60)


def _drain(call, ch, release: threading.Event | None = None) -> tuple[list, float]:
    """Every frame the trainer sends until it ends the call (then the error code, if it ends with one), and the
    seconds that took; the client's stream is released and its channel closed either way."""
    got, t0 = [], time.monotonic()
    try:
        got.extend(call)  # (what arrived before an error stays)
    except grpc.RpcError as e:
        got.append(e.code())
    finally:
        if release is not None:
            release.set()
        ch.close()
    return got, time.monotonic() - t0


def test_an_oversized_frame_ends_the_session_and_the_trainer_keeps_serving(setup):  # noqa: F811
    tmp, key, a, b, dealer = setup
    release = threading.Event()
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        def frames():
            yield mpc_pb2.MpcFrame(hello=_hello(b, dealer.address))
            # 40 client rows of d + 1 values: honest frames stay far below 4 MiB + 16*40*(d+1) bytes
            yield mpc_pb2.MpcFrame(label="inputs", elements=bytes(6 << 20))
            release.wait(30)

        ch, call = _run(prover.address, frames())
        got, waited = _drain(call, ch, release)  # the trainer ends the call (its abort frame, if any, first)
        assert waited < 30, "the session waited instead of ending on the oversized frame"
        assert got and isinstance(got[0], mpc_pb2.MpcFrame) and got[0].HasField("hello_reply"), got
        # the slot is free again: an honest session trains
        p, doc, _ = _train(tmp, prover, dealer, a, "--timeout", "120")
        assert p.returncode == 0 and doc.get("status") == "trained", (p.returncode, doc, p.stderr[-400:])
        prover.stop()
        log = prover.stderr()
    assert "sent a frame of 6,29" in log and "are at most" in log, log[-2000:]  # ended by the cap, not later


def test_a_hello_too_large_is_refused_before_any_work(setup):  # noqa: F811
    _tmp, key, _a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        h = _hello(b, dealer.address)
        h.feature_names.extend(["x" * 1000] * 1100)  # over the 1 MiB a hello may take
        ch, call = _run(prover.address, iter([mpc_pb2.MpcFrame(hello=h)]))
        got, waited = _drain(call, ch)
        assert waited < 20
        assert not any(isinstance(m, mpc_pb2.MpcFrame) and m.HasField("hello_reply") for m in got)


def test_a_client_silent_after_its_hello_is_dropped_after_the_receive_timeout(setup):  # noqa: F811
    _tmp, key, _a, b, dealer = setup
    release = threading.Event()
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression", "--receive-timeout", "2") as prover:
        def frames():
            yield mpc_pb2.MpcFrame(hello=_hello(b, dealer.address))
            release.wait(45)  # then silence, longer than the receive timeout

        ch, call = _run(prover.address, frames())
        got, waited = _drain(call, ch, release)
        prover.stop()
        log = prover.stderr()
    assert got and isinstance(got[0], mpc_pb2.MpcFrame) and got[0].HasField("hello_reply"), got
    assert waited < 30, f"the trainer held a silent session for {waited:.0f} s (receive timeout 2 s)"
    assert "the client sent nothing for 2 s" in log, log[-2000:]
