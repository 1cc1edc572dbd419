"""The `jump` and `remember` trainers (issue #7 sections 1-2), in process over real gRPC (port 0).

* jump: honest training, then a chosen model committed as the last state, everything signed consistently.
  The spot check alone catches it exactly when step T is challenged (probability K/T); the full replay
  always does.
* remember: keeps every session's randomness and brute-forces short fixed seeds to predict the challenge,
  then grinds its last state until step T is not challenged. Against the pre-vtrain/2 client (audit seed
  derived from the user's seed) it escapes the spot check; against this client it never predicts.

Statistics: rejection counts are compared with Binomial(N, K/T) at two-sided level ALPHA = 1e-6
(tests/helpers.py); seeded by the OS (the client's randomness must be fresh), so the test fails with
probability <= 1e-6 when the code is right.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import ALPHA
from scipy import stats

from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.prg import challenge_steps
from protocol.statements import Statement
from protocol.training import TrainConfig
from prover import adversaries
from prover.server import build_server
from verifier.audit import verify_transcript
from verifier.client import ClientSeeds, open_channel, run_session

N_ROWS, D, B = 64, 2, 8
CFG = TrainConfig(model="logistic", epochs=1, batch_size=B, lr_num=205, checkpoint_interval=4)
T = N_ROWS // B  # 8 steps
K = 2


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N_ROWS, D))
    y = (X @ [1.0, -1.0] > 0).astype(int)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    path.write_text("a,b,y\n" + "".join(f"{a:.6f},{b:.6f},{c}\n" for (a, b), c in zip(X, y, strict=True)))
    t = load_table(str(path), "y")
    return t, fit_standardization(t, CFG.model)


class Trainer:
    """One in-process gRPC trainer running a named strategy; sessions through the real client."""

    def __init__(self, adversary):
        self.server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary=adversary)
        self.server.start()
        self.channel = open_channel(f"127.0.0.1:{port}")

    def session(self, table, seeds: ClientSeeds, spot_checks: int = K):
        t, stdz = table
        return run_session(self.channel, t, stdz, CFG, spot_checks=spot_checks, seeds=seeds)

    def close(self):
        self.channel.close()
        self.server.stop(None)


def _challenged(tr) -> list[int]:
    root = Statement.decode(bytes.fromhex(tr["statements"]["final"][0])).fields["state_root"]
    return challenge_steps(bytes.fromhex(tr["session_id"]), root, bytes.fromhex(tr["audit_seed"]), K, T)


def _rows(table):
    t, stdz = table
    return quantized_rows(t, stdz, CFG.frac_bits)


def test_jump_is_caught_by_the_spot_check_exactly_when_step_T_is_challenged(table):
    """Claim: with the replay skipped, a jump is rejected iff step T is among the K challenged steps, so the
    rejection rate over sessions is K/T. Refuted by: any session where the two disagree, or a count outside
    the Binomial(N, K/T) acceptance interval at level 1e-6."""
    trainer = Trainer("jump")
    n_sessions, rejected = 150, 0
    try:
        for _ in range(n_sessions):
            tr, v = trainer.session(table, ClientSeeds.fresh())
            caught = T in _challenged(tr)
            assert (v.status == "rejected") == caught, (v.status, v.reason)
            assert v.status in ("rejected", "spot-checked")
            if caught:
                assert v.step == T and "deviated at step" in v.reason
            rejected += caught
    finally:
        trainer.close()
    lo, hi = stats.binom.interval(1 - ALPHA, n_sessions, K / T)
    assert lo <= rejected <= hi, (rejected, lo, hi)  # expected 37.5; [lo, hi] is about [15, 64]


def test_jump_is_rejected_by_the_full_replay_in_every_session(table):
    """The client holds the data: the replay recomputes step T and finds the chosen model, every time."""
    trainer = Trainer("jump")
    rows = _rows(table)
    try:
        for _ in range(20):
            tr, _v = trainer.session(table, ClientSeeds.fresh())
            final = verify_transcript(tr, rows, compare_recorded=False)
            assert final.status == "rejected" and final.step == T and final.check == "replay", final
    finally:
        trainer.close()


def _legacy_seeds(master: bytes) -> ClientSeeds:
    """The client before vtrain/2: `--seed` derived the audit seed and the nonce secret from the same value."""
    part = adversaries._legacy_part
    return ClientSeeds(part(b"training", master), part(b"audit", master), part(b"nonce", master))


@pytest.fixture
def remember():
    adversaries.Remember.seen_audit_seeds.clear()
    adversaries.Remember.log.clear()
    trainer = Trainer("remember")
    yield trainer
    trainer.close()


def test_remember_escapes_the_spot_check_of_a_client_whose_audit_seed_came_from_the_user(remember, table):
    """The attack is real: against the legacy derivation it recovers a 2-byte seed by brute force (or recalls
    the audit seed of an earlier session with the same seed), predicts the challenge, and its jump passes the
    spot check in every session; only the full replay catches it."""
    rows = _rows(table)
    for master in (b"\x0a\x0b", b"\x0a\x0b", b"a longer seed that no brute force finds"):
        tr, v = remember.session(table, _legacy_seeds(master))
        assert remember.server is not None
        log = adversaries.Remember.log[-1]
        if master.startswith(b"a longer"):  # first session with this long seed: nothing to predict from
            assert not log["predicted"]
            continue
        assert log["predicted"] and log["escaped_prediction"], log
        assert T not in _challenged(tr) and v.status == "spot-checked", v
        assert verify_transcript(tr, rows, compare_recorded=False).status == "rejected"
    tr, v = remember.session(table, _legacy_seeds(b"a longer seed that no brute force finds"))  # same long seed
    assert adversaries.Remember.log[-1]["predicted"] and v.status == "spot-checked"


def test_remember_never_predicts_the_challenge_of_this_client(remember, table):
    """The fix: the audit seed always comes from the OS. Even with a short user-fixed training seed, reused in
    every session, the trainer (which recovers that seed) never confirms a prediction, and the default
    replay rejects it in every session."""
    rows = _rows(table)
    for seeds in [ClientSeeds.fixed_training(b"\x0a\x0b") for _ in range(6)] + [ClientSeeds.fresh() for _ in range(2)]:
        tr, v = remember.session(table, seeds)
        log = adversaries.Remember.log[-1]
        assert not log["predicted"], log
        assert log["master_found"] == (seeds.randomness == "fixed-by-user")
        assert (v.status == "rejected") == (T in _challenged(tr))
        final = verify_transcript(tr, rows, compare_recorded=False)
        assert final.status == "rejected" and final.step == T


def test_a_fixed_training_seed_keeps_the_audit_seed_and_nonce_fresh_and_says_so(table):
    a, b = ClientSeeds.fixed_training(b"\x01"), ClientSeeds.fixed_training(b"\x01")
    assert a.training_seed == b.training_seed
    assert a.audit_seed != b.audit_seed and a.nonce_secret != b.nonce_secret
    assert ClientSeeds.fresh().randomness == "os" and a.randomness == "fixed-by-user"
    trainer = Trainer(None)
    try:
        tr, v = trainer.session(table, a)
        assert v.status == "spot-checked" and "fixed by the user" in v.guarantee and "session id" in v.guarantee
        assert tr["client"]["metadata"]["randomness"] == "fixed-by-user"
        tr, v = trainer.session(table, ClientSeeds.fresh())
        assert v.status == "spot-checked" and "fixed by the user" not in v.guarantee
        final = verify_transcript(tr, _rows(table), compare_recorded=False)
        assert final.status == "verified" and "fixed by the user" not in final.guarantee
    finally:
        trainer.close()


def test_fresh_seeds_come_from_the_os(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "urandom", lambda n: calls.append(n) or bytes([len(calls)]) * n)
    s = ClientSeeds.fresh()
    assert calls == [32, 32, 32] and len({s.training_seed, s.audit_seed, s.nonce_secret}) == 3
    ClientSeeds.fixed_training(b"\x05")
    assert calls == [32, 32, 32, 32, 32]  # audit seed and nonce secret: fresh even with a fixed seed
