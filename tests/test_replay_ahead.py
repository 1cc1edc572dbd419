"""The full replay with the honest leaves computed during the session (verifier/replay_ahead.py) gives exactly
the verdict of the step-by-step replay: it only skips the loop when every committed leaf is the honest one."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.training import TrainConfig
from prover.server import build_server
from verifier import audit, checks
from verifier.client import ClientSeeds, open_channel, run_session
from verifier.replay_ahead import ReplayAhead

CFG = TrainConfig(model="logistic", epochs=1, batch_size=4, lr_num=205, checkpoint_interval=20)


def record(adversary: str | None):
    server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary=adversary)
    server.start()
    try:
        table = load_table("builtin:breast_cancer")
        stdz = fit_standardization(table, CFG.model)
        rows = quantized_rows(table, stdz, CFG.frac_bits)
        ahead = ReplayAhead()
        channel = open_channel(f"127.0.0.1:{port}")
        tr, verdict = run_session(channel, table, stdz, CFG, spot_checks=4, seeds=ClientSeeds.fixed_training(b"ahead"),
                                  rows=rows, replay_ahead=ahead)
        channel.close()
    finally:
        server.stop(None)
    return tr, verdict, rows, ahead


@pytest.mark.parametrize("adversary", [None, "wrong-lr", "skip-step", "all-steps"])
def test_the_replay_with_leaves_computed_ahead_is_the_replay(adversary, monkeypatch):
    tr, verdict, rows, ahead = record(adversary)
    assert ahead._thread is not None
    ahead._thread.join()
    with_ahead = audit.with_replay(verdict, tr, rows, None, ahead)
    without = audit.with_replay(verdict, tr, rows)
    assert with_ahead.to_dict() == without.to_dict()
    if adversary is None:
        assert with_ahead.status == "verified" and ahead._leaves is not None
        skipped = []
        real = checks._stepper
        monkeypatch.setattr(checks, "_stepper", lambda *a: skipped.append(1) or real(*a))
        audit.with_replay(verdict, tr, rows, None, ahead)
        assert not skipped  # the honest leaves were used: the loop did not run again
    else:
        assert with_ahead.status == "rejected" and with_ahead.step is not None


def test_leaves_of_other_inputs_are_not_used_and_a_changed_leaf_is_still_found():
    tr, _verdict, rows, ahead = record(None)
    ids = [bytes.fromhex(tr[k]) for k in ("session_id", "data_root", "training_seed")]
    honest = ahead.leaves_for(rows, *ids, CFG, rows.shape[0], rows.shape[1] - 1)  # (waits for the thread)
    assert honest is not None
    assert ahead.leaves_for(rows, bytes(16), bytes(32), bytes(32), CFG, rows.shape[0], rows.shape[1] - 1) is None
    # other rows (even equal ones) were not what the thread replayed: not used
    assert ahead.leaves_for(rows.copy(), *ids, CFG, rows.shape[0], rows.shape[1] - 1) is None
    # the committed leaves changed at step 9 (as a trainer that deviated would have them), honest leaves given:
    # the loop runs and names step 9, with the honest leaves or without
    leaves = bytearray(bytes.fromhex(tr["state_leaves"]))
    leaves[9 * 32] ^= 1
    from protocol.prg import SeedContext
    from protocol.training import Schedule

    sched = Schedule(SeedContext(bytes.fromhex(tr["session_id"]), bytes.fromhex(tr["data_root"]),
                                 bytes.fromhex(tr["training_seed"])), CFG, rows.shape[0], rows.shape[1] - 1)
    for given in (honest, None, honest[:-32], bytes(len(honest))):
        with pytest.raises(checks.StepMismatch, match="step 9 is the first step"):
            checks.replay(rows, bytes(leaves), tr["model"], sched, CFG, "", None, given)
    checks.replay(rows, bytes.fromhex(tr["state_leaves"]), tr["model"], sched, CFG, "", None, bytes(len(honest)))
    assert np.frombuffer(honest, np.uint8).size == 32 * (sched.num_steps + 1)
