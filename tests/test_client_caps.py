"""The client's caps on what a trainer sends (issue #7 section 4), in process: the receive cap, the final
model's shape and extras, deeply nested extras, and the transcript schema's own rules."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import transcript as tx
from protocol.dataset import fit_standardization, load_table
from protocol.errors import StepMismatch, TranscriptFormatError
from protocol.training import TrainConfig
from prover import adversaries
from prover.server import build_server
from verifier import checks
from verifier.cli_audit import _shipped_extras
from verifier.client import ClientSeeds, open_channel, run_session

CFG = TrainConfig(model="logistic", epochs=1, batch_size=32, lr_num=205, checkpoint_interval=5)


def test_an_oversized_spot_check_answer_is_refused_before_it_is_buffered(monkeypatch):
    """The receive cap is twice an honest session's largest message: openings padded to 200 siblings per
    proof exceed it, and the client rejects (the trainer gave no usable proof) instead of buffering them."""
    monkeypatch.setattr(adversaries.GarbageProof, "SIBLINGS", 200)
    server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary="garbage-proof")
    server.start()
    table = load_table("builtin:breast_cancer")
    cap = checks.receive_cap(569, 30, CFG, 4)
    try:
        channel = open_channel(f"127.0.0.1:{port}", max_receive=cap)
        tr, verdict = run_session(channel, table, fit_standardization(table, CFG.model), CFG, spot_checks=4,
                                  seeds=ClientSeeds.fresh())
        channel.close()
    finally:
        server.stop(None)
    assert verdict.status == "rejected" and "larger than this session allows" in verdict.reason, verdict
    assert "proof" not in tr


def test_receive_cap_covers_an_honest_session_and_grows_with_it():
    small = checks.receive_cap(569, 30, CFG, 4)
    assert small < 2 << 20
    big = checks.receive_cap(100_000, 30, TrainConfig(model="logistic", epochs=20, batch_size=32), 64)
    assert big > 32 * (20 * (100_000 // 32) + 1)  # all leaves may come in one event
    assert big < 64 << 20


def test_final_shape():
    checks.check_final_shape([0] * 4, "", 3, 10)
    checks.check_final_shape([0] * 4, "x" * checks.max_extras_bytes(3), 3, 10)
    with pytest.raises(StepMismatch, match="5 parameters, the agreed model has 4") as ei:
        checks.check_final_shape([0] * 5, "", 3, 10)
    assert ei.value.step == 10
    with pytest.raises(StepMismatch, match="over the cap"):
        checks.check_final_shape([0] * 4, "x" * (checks.max_extras_bytes(3) + 1), 3, 10)


@pytest.mark.parametrize("extras", ["[" * 3000 + "]" * 3000, '{"trigger": ' * 2000 + "1" + "}" * 2000, "not json"])
def test_shipped_extras_are_parsed_safely(extras):
    """Within the size cap but nested thousands deep: kept as ignored text, never a RecursionError."""
    out = _shipped_extras({"model_extras": extras, "num_features": 3})
    assert list(out) == ["shipped_extras_ignored"]


def test_schema_accepts_a_minimal_early_rejection_and_refuses_a_verdict_with_incomplete():
    base = {"format": tx.FORMAT, "server": "s", "client_nonce": "00" * 32, "proof_kind": "spot", "num_rows": 1,
            "num_features": 1, "statements": {}, "data_root": "00" * 32, "training_seed": "00" * 32,
            "audit_seed": "00" * 32, "spot_checks": 1, "config": {k: 1 for k in (
                "epochs", "batch_size", "lr_num", "lr_shift", "l2_num", "frac_bits", "weight_bits",
                "checkpoint_interval")} | {"model": "linear"},
            "client": {"nonce_secret": "00" * 32, "metadata": {"source": "", "feature_names": [], "target": "", "randomness": "os",
                                                               "standardization": {"mean": [], "std": [], "clip": 8.0,
                                                                                   "target_mean": 0, "target_std": 1.0}}}}
    assert tx.validate(base) is base
    with pytest.raises(TranscriptFormatError, match="incomplete cannot accompany a verdict"):
        tx.validate({**base, "incomplete": "x", "verdict": {"status": "rejected", "check": "spot", "reason": "",
                                                            "step": None, "guarantee": "", "evidence": {}}})
    for path, bad, words in ((("client", "metadata", "standardization", "clip"), True, "must be a number"),
                             (("statements", "final"), ["ab", "c"], "must be a lower-case hex string"),
                             (("statements", "checkpoints"), [["ab"]], "must have 2 items"),
                             (("proof",), {"kind": "zk"}, "proof.kind must be one of spot, snark"),
                             (("statements", "final"), ["ab", "cd"], None)):
        doc = tx.loads(tx.dumps(base))
        cur = doc
        for p in path[:-1]:
            cur = cur[p]
        cur[path[-1]] = bad
        if words is None:  # well-formed on its own, but a client never records a stream error with a final
            tx.validate(doc)
            doc["stream_error"], words = "x", "stream_error cannot accompany a final"
        with pytest.raises(TranscriptFormatError, match=words):
            tx.validate(doc)


def test_a_malformed_open_session_answer_is_a_clear_error(monkeypatch):
    """A session id of 17 bytes would be recorded into a transcript the audit can only call malformed: the
    client stops at once with a message instead."""
    import prover.session as session_mod
    from verifier.client import SessionAborted

    real = session_mod.secrets.token_bytes
    monkeypatch.setattr(session_mod.secrets, "token_bytes", lambda n: real(n + 1 if n == 16 else n))
    server, port, _ = build_server(Ed25519PrivateKey.generate())
    server.start()
    table = load_table("builtin:breast_cancer")
    try:
        channel = open_channel(f"127.0.0.1:{port}")
        with pytest.raises(SessionAborted, match="OpenSession answer is malformed"):
            run_session(channel, table, fit_standardization(table, CFG.model), CFG, spot_checks=4,
                        seeds=ClientSeeds.fresh())
        channel.close()
    finally:
        server.stop(None)


def test_the_recorded_verdict_is_compared_as_canonical_text():
    """24.0 == 24 and True == 1 in Python: a recorded verdict whose evidence was edited that way differs from
    the recomputed one (the transcript was altered), it does not pass as the trainer's rejection."""
    import copy

    from test_transcript_mutations import record_session

    from verifier.audit import verify_transcript

    tr, v = record_session("all-steps", b"canonical verdict", 3)
    assert v.status == "rejected" and verify_transcript(tr).to_dict() == v.to_dict()
    for edit in (lambda ev: ev["replayed_state"].__setitem__(0, float(ev["replayed_state"][0])),
                 lambda ev: ev.__setitem__("step", True if ev["step"] == 1 else float(ev["step"]))):
        bad = copy.deepcopy(tr)
        edit(bad["verdict"]["evidence"])
        assert bad["verdict"] == tr["verdict"]  # equal as Python values: why the comparison is on the text
        got = verify_transcript(bad)
        assert got.to_dict() != v.to_dict() and "altered" in got.reason, got
