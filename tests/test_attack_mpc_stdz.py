"""A client sending the trainer a malformed standardization in its two-party hello (docs/MPC.md section 4: both
parties quantize their rows with the client's standardization). Real trainer process; the client is this test,
speaking the wire protocol. Whatever the client sends, the trainer answers with a refusal that names the problem
(never a crash, never a silently closed stream) and keeps serving: non-finite values, a zero or negative scale,
the wrong number of columns, and values that are finite but overflow the fixed-point encoding of the trainer's
own rows (a target scaled by 1e-300 or shifted by 1e300: |y| * 2^f >= 2^62)."""

from __future__ import annotations

import math

import pytest
from procs import ProverProcess
from test_mpc_e2e import _train, setup  # noqa: F401 - the module fixture (dealer, key, data)
from test_mpc_frame_limits import _drain, _hello, _run

from protocol.wire import mpc_pb2


@pytest.mark.parametrize(("change", "words"), [
    ({"mean": [math.nan, 0.0, 0.0]}, "standardization"),
    ({"std": [1.0, math.inf, 1.0]}, "standardization"),
    ({"std": [1.0, 0.0, 1.0]}, "standardization"),
    ({"std": [1.0, -2.0, 1.0]}, "standardization"),
    ({"target_std": 0.0}, "standardization"),
    ({"mean": [0.0, 0.0]}, "standardization"),  # one column short
    # finite, positive: the trainer's targets become ~1e302 (the session thread once died on FixedPointOverflow,
    # an ArithmeticError, and the stream just closed)
    ({"target_std": 1e-300}, "fixed-point"),
    ({"target_mean": 1e300}, "fixed-point"),
])
def test_a_malformed_standardization_from_the_client_is_refused_by_name(setup, change, words):  # noqa: F811
    tmp, key, a, b, dealer = setup
    with ProverProcess(key, "--dataset", f"mine={b}", "--target", "progression") as prover:
        h = _hello(b, dealer.address)
        for field, value in change.items():
            if isinstance(value, list):
                getattr(h, field)[:] = value
            else:
                setattr(h, field, value)
        ch, call = _run(prover.address, iter([mpc_pb2.MpcFrame(hello=h)]))
        got, waited = _drain(call, ch)
        assert waited < 30, waited
        frames = [m for m in got if isinstance(m, mpc_pb2.MpcFrame)]
        assert frames and "refused" in frames[0].abort and words in frames[0].abort, got
        # the trainer keeps serving: an honest session trains
        p, doc, _ = _train(tmp, prover, dealer, a, "--timeout", "60")
        assert p.returncode == 0 and doc.get("status") == "trained", (p.returncode, p.stderr[-800:])
        prover.stop()
        log = prover.stderr()
    assert "Traceback" not in log and "crashed" not in log, log[-3000:]
