"""verify_transcript: every check fires on a transcript recorded from a real (in-process) gRPC session, and
the full replay never turns a rejected transcript into a verified one."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.errors import TranscriptFormatError
from protocol.training import TrainConfig
from prover.server import build_server
from verifier.audit import verify_transcript
from verifier.client import ClientSeeds, open_channel, run_session

CFG = TrainConfig(model="logistic", epochs=1, batch_size=32, lr_num=205, checkpoint_interval=5)


def record_session(adversary: str | None, master: bytes, spot_checks: int):
    """A transcript recorded by the real client from a real gRPC server (in process, port 0)."""
    server, port, _ = build_server(Ed25519PrivateKey.generate(), adversary=adversary)
    server.start()
    try:
        table = load_table("builtin:breast_cancer")
        stdz = fit_standardization(table, CFG.model)
        channel = open_channel(f"127.0.0.1:{port}")
        tr, verdict = run_session(channel, table, stdz, CFG, spot_checks=spot_checks,
                                  seeds=ClientSeeds.from_master(master))
        channel.close()
    finally:
        server.stop(None)
    return tr, verdict, quantized_rows(table, stdz, CFG.frac_bits)


@pytest.fixture(scope="module")
def session():
    tr, verdict, rows = record_session(None, b"audit", 4)
    assert verdict.ok, verdict
    return tr, rows


def _reverdict(tr):
    """An attacker can rewrite the unsigned recorded verdict to match what the audit recomputes."""
    tr["verdict"] = verify_transcript(tr, compare_recorded=False).to_dict()
    return tr


def test_honest_transcript_verifies_with_and_without_data(session):
    tr, rows = session
    assert verify_transcript(tr).check == "spot" and verify_transcript(tr).ok
    v = verify_transcript(tr, rows)
    assert v.ok and v.check == "replay"


def _flip_hex(s: str, pos: int = 10) -> str:
    return s[:pos] + ("0" if s[pos] != "0" else "1") + s[pos + 1:]


MUTATIONS = {
    "checkpoint signature": (lambda t: t["statements"]["checkpoints"][0].__setitem__(
        1, _flip_hex(t["statements"]["checkpoints"][0][1])), "signature"),
    "missing checkpoint": (lambda t: t["statements"]["checkpoints"].pop(), "checkpoint statements"),
    "final signature": (lambda t: t["statements"]["final"].__setitem__(1, _flip_hex(t["statements"]["final"][1])),
                        "signature"),
    "session statement of another kind": (lambda t: t["statements"].__setitem__(
        "session", t["statements"]["data"]), "expected a session statement"),
    "truncated leaves": (lambda t: t.__setitem__("state_leaves", t["state_leaves"][:-64]), "committed"),
    "client record": (lambda t: t["client"]["metadata"].__setitem__("target", "x"), "client record"),
    "opened steps": (lambda t: t["proof"]["openings"].reverse(), "challenges"),
    "opened rows": (lambda t: t["proof"]["openings"][0]["rows"].reverse(), "seed-derived batch"),
    "row proof": (lambda t: t["proof"]["openings"][0]["rows"][0].__setitem__(
        "proof", t["proof"]["openings"][0]["rows"][1]["proof"]), "not in the committed data"),
    "state after": (lambda t: t["proof"]["openings"][0]["state_after"].__setitem__(0, 12345),
                    "not in the committed state tree"),
    "training seed": (lambda t: t.__setitem__("training_seed", "00" * 32), "training_seed"),
    "data root": (lambda t: t.__setitem__("data_root", _flip_hex(t["data_root"])), "data_root"),
    "checkpoint order": (lambda t: t["statements"]["checkpoints"].reverse(), "is for step"),
    "state proof index": (lambda t: t["proof"]["openings"][0]["proof_before"].__setitem__(
        "index", t["proof"]["openings"][0]["proof_before"]["index"] + 1), "is for leaf"),
    "row proof index": (lambda t: t["proof"]["openings"][0]["rows"][0].__setitem__(
        "proof_index", t["proof"]["openings"][0]["rows"][0]["index"] + 1), "for another leaf"),
    "row values": (lambda t: t["proof"]["openings"][0]["rows"][0]["values"].append(0), "malformed opening"),
    "proof kind": (lambda t: t["proof"].__setitem__("kind", "snark"), "agreed on"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_check_fires_and_replay_never_rescues(session, name):
    tr, rows = session
    mutate, words = MUTATIONS[name]
    bad = copy.deepcopy(tr)
    mutate(bad)
    v = verify_transcript(bad, compare_recorded=False)
    assert v.status == "rejected" and words in v.reason, (name, v.reason)
    _reverdict(bad)
    assert verify_transcript(bad).status == "rejected"
    assert verify_transcript(bad, rows).status == "rejected", name  # the data cannot rescue it


def test_other_data_is_not_the_committed_data(session):
    tr, rows = session
    other = rows.copy()
    other[3, 0] += 1
    v = verify_transcript(tr, other)
    assert v.status == "rejected" and "not the data the trainer committed" in v.reason


def test_recorded_verdict_must_match(session):
    tr, _ = session
    bad = copy.deepcopy(tr)
    bad["verdict"]["reason"] = "edited"
    v = verify_transcript(bad)
    assert v.status == "rejected" and "recorded in the transcript differs" in v.reason


@pytest.mark.parametrize("mutate", [
    lambda t: t.__setitem__("state_leaves", t["state_leaves"].upper()),
    lambda t: t.__setitem__("num_rows", "569"),
    lambda t: t["statements"]["checkpoints"].__setitem__(0, 5),
    lambda t: t.pop("session_id"),
    lambda t: t.__setitem__("trust", "maybe"),
])
def test_malformed_fields_are_format_errors(session, mutate):
    tr, _ = session
    bad = json.loads(json.dumps(tr))
    mutate(bad)
    with pytest.raises(TranscriptFormatError):
        verify_transcript(bad)


def test_detection_probability_formula():
    """1 - C(T-m, K)/C(T, K), exact on small cases."""
    from verifier.checks import detection_probability

    assert detection_probability(10, 3, 1) == pytest.approx(3 / 10)
    assert detection_probability(10, 10, 1) == 1.0
    assert detection_probability(100, 64, 1) == pytest.approx(0.64)
    assert detection_probability(100, 5, 20) == pytest.approx(1 - np.prod([(80 - i) / (100 - i) for i in range(5)]))


def test_replay_evidence_is_checkable_by_a_third_party():
    """From a wrong-lr trainer's transcript, the replay's evidence alone (plus the transcript's signed root
    and the data rows) shows the trainer signed a false state: recomputed here without the verifier."""
    from protocol.merkle import root_from_proof, state_leaf
    from protocol.statements import Statement
    from protocol.training import step_exact

    tr, _, rows = record_session("wrong-lr", b"ev", 1)
    v = verify_transcript(tr, rows)
    assert v.status == "rejected" and v.check == "replay" and v.step == CFG.num_steps(569) // 2
    ev, t = v.evidence, v.step
    signed_root = Statement.decode(bytes.fromhex(tr["statements"]["final"][0])).fields["state_root"]
    assert ev["state_root"] == signed_root.hex()
    size = CFG.num_steps(569) + 1
    before = np.array(ev["state_before"], dtype=np.int64)
    sib = [bytes.fromhex(h) for h in ev["proof_before"]]
    assert root_from_proof(state_leaf(t - 1, before), t - 1, size, sib) == signed_root  # the trainer's own state
    honest = step_exact(ev["state_before"], rows[ev["batch"], :-1].tolist(), rows[ev["batch"], -1].tolist(), CFG)
    assert honest == ev["honest_state_after"]
    committed = bytes.fromhex(ev["committed_leaf_after"])
    assert root_from_proof(committed, t, size, [bytes.fromhex(h) for h in ev["proof_after"]]) == signed_root
    assert state_leaf(t, np.array(honest, dtype=np.int64)) != committed  # what it signed is not the honest step


def test_initial_state_check_fires(session):
    """A committed theta_0 that is not the seed-derived one is named as step 0 (the signatures would also
    fail on an edited transcript, so the check is exercised directly)."""
    from protocol.errors import StepMismatch
    from protocol.prg import SeedContext
    from protocol.training import Schedule
    from protocol.transcript import split_leaves
    from verifier.checks import check_initial_state

    tr, _ = session
    sched = Schedule(SeedContext(bytes.fromhex(tr["session_id"]), bytes.fromhex(tr["data_root"]),
                                 bytes.fromhex(tr["training_seed"])), CFG, tr["num_rows"], tr["num_features"])
    leaves = split_leaves(tr["state_leaves"])
    check_initial_state(leaves, sched)  # honest
    with pytest.raises(StepMismatch) as ei:
        check_initial_state([leaves[1], *leaves[1:]], sched)
    assert ei.value.step == 0


def test_a_live_rejection_is_recorded_exactly_as_the_audit_recomputes_it(monkeypatch):
    """The trainer signs a data root over other rows: the client rejects at the data commitment, and the
    saved transcript's verdict is the one the offline audit recomputes (not reported as 'altered')."""
    import prover.upload as upload_mod
    from protocol.merkle import MerkleTree

    monkeypatch.setattr(upload_mod, "MerkleTree", lambda leaves: MerkleTree(list(leaves)[::-1]))
    tr, verdict, _ = record_session(None, b"lying root", 4)
    assert verdict.status == "rejected" and "data_root" in verdict.reason
    assert verify_transcript(tr).to_dict() == verdict.to_dict() == tr["verdict"]
