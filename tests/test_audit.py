"""verify_transcript: every check fires on a transcript recorded from a real (in-process) gRPC session, and
the full replay never turns a rejected transcript into a verified one."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.errors import InputError, TranscriptFormatError
from protocol.training import TrainConfig
from prover.server import build_server
from verifier.audit import verify_transcript
from verifier.client import ClientSeeds, open_channel, run_session

CFG = TrainConfig(model="logistic", epochs=1, batch_size=32, lr_num=205, checkpoint_interval=5)


def record_session(adversary: str | None, master: bytes | None, spot_checks: int, key=None):
    """A transcript recorded by the real client from a real gRPC server (in process, port 0)."""
    server, port, _ = build_server(key or Ed25519PrivateKey.generate(), adversary=adversary)
    server.start()
    try:
        table = load_table("builtin:breast_cancer")
        stdz = fit_standardization(table, CFG.model)
        channel = open_channel(f"127.0.0.1:{port}")
        seeds = ClientSeeds.fixed_training(master) if master else ClientSeeds.fresh()
        tr, verdict = run_session(channel, table, stdz, CFG, spot_checks=spot_checks, seeds=seeds)
        channel.close()
    finally:
        server.stop(None)
    return tr, verdict, quantized_rows(table, stdz, CFG.frac_bits)


KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))


@pytest.fixture(scope="module")
def session():
    tr, verdict, rows = record_session(None, None, 4, key=KEY)
    assert verdict.status == "spot-checked", verdict
    return tr, rows


def _reverdict(tr):
    """An attacker can rewrite the unsigned recorded verdict to match what the audit recomputes."""
    tr["verdict"] = verify_transcript(tr, compare_recorded=False).to_dict()
    return tr


def _resign_openings(tr):
    """What a trainer that signs these openings would have sent (the openings statement over them)."""
    from protocol.evidence import openings_hash
    from protocol.statements import Statement, sign

    seed = bytes.fromhex(tr["audit_seed"])
    data, sig = sign(KEY, Statement("openings", bytes.fromhex(tr["session_id"]), {
        "audit_seed": seed, "openings_hash": openings_hash(seed, tr["proof"]["openings"])}))
    tr["proof"]["statement"] = [data.hex(), sig.hex()]


def test_honest_transcript_spot_checks_and_verifies_with_the_data(session):
    tr, rows = session
    v = verify_transcript(tr)
    assert v.status == "spot-checked" and v.check == "spot" and not v.ok
    assert v.guarantee.startswith("a single changed step would have been caught with probability only 4/17")
    assert "1 - C(17-m, 4)/C(17, 4)" in v.guarantee
    v = verify_transcript(tr, rows)
    assert v.ok and v.status == "verified" and v.check == "replay"


def _flip_hex(s: str, pos: int = 10) -> str:
    return s[:pos] + ("0" if s[pos] != "0" else "1") + s[pos + 1:]


def _op(t):
    return t["proof"]["openings"][0]


# Changes to what the trainer signed in its openings statement: re-signed by the trainer, each is evidence
# against it (REJECTED with the reason); not re-signed, the transcript is ALTERED.
OPENING_MUTATIONS = {
    "opened steps": (lambda t: t["proof"]["openings"].reverse(), "challenges"),
    "opened rows": (lambda t: _op(t)["rows"].reverse(), "seed-derived batch"),
    "row proof": (lambda t: _op(t)["rows"][0].__setitem__("proof", _op(t)["rows"][1]["proof"]),
                  "not in the committed data"),
    "state after": (lambda t: _op(t)["state_after"].__setitem__(0, 12345), "not in the committed state tree"),
    "state proof index": (lambda t: _op(t)["proof_before"].__setitem__("index", _op(t)["proof_before"]["index"] + 1),
                          "is for leaf"),
    "row proof index": (lambda t: _op(t)["rows"][0].__setitem__("proof_index", _op(t)["rows"][0]["index"] + 1),
                        "for another leaf"),
    "row values": (lambda t: _op(t)["rows"][0]["values"].append(0), "malformed opening"),
}

# Changes nobody can sign for: always ALTERED, never REJECTED, never verified.
OTHER_MUTATIONS = {
    "checkpoint signature": lambda t: t["statements"]["checkpoints"][0].__setitem__(
        1, _flip_hex(t["statements"]["checkpoints"][0][1])),
    "missing checkpoint": lambda t: t["statements"]["checkpoints"].pop(),
    "checkpoint order": lambda t: t["statements"]["checkpoints"].reverse(),
    "final signature": lambda t: t["statements"]["final"].__setitem__(1, _flip_hex(t["statements"]["final"][1])),
    "session statement of another kind": lambda t: t["statements"].__setitem__("session", t["statements"]["data"]),
    "truncated leaves": lambda t: t.__setitem__("state_leaves", t["state_leaves"][:-64]),
    "client record": lambda t: t["client"]["metadata"].__setitem__("target", "x"),
    "server": lambda t: t.__setitem__("server", "evil:1"),
    "randomness mode": lambda t: t["client"]["metadata"].__setitem__("randomness", "fixed-by-user"),
    "training seed": lambda t: t.__setitem__("training_seed", "00" * 32),
    "audit seed": lambda t: t.__setitem__("audit_seed", "00" * 32),
    "spot checks": lambda t: t.__setitem__("spot_checks", 3),
    "data root": lambda t: t.__setitem__("data_root", _flip_hex(t["data_root"])),
    "config": lambda t: t["config"].__setitem__("epochs", 2),
    "model": lambda t: t["model"].__setitem__(0, t["model"][0] + 1),
    "proof kind": lambda t: t["proof"].__setitem__("kind", "snark"),
    "openings statement removed": lambda t: t["proof"].pop("statement"),
    "final removed": lambda t: t["statements"].pop("final"),
    "extra key trust": lambda t: t.__setitem__("trust", "pinned"),
    "extra key note": lambda t: t.__setitem__("note", "hello"),
    **{f"unsigned {name}": mutate for name, (mutate, _) in OPENING_MUTATIONS.items()},
}


@pytest.mark.parametrize("name", sorted(OPENING_MUTATIONS))
def test_each_opening_check_fires_when_the_trainer_signed_it(session, name):
    tr, rows = session
    mutate, words = OPENING_MUTATIONS[name]
    bad = copy.deepcopy(tr)
    mutate(bad)
    _resign_openings(bad)
    v = verify_transcript(bad, compare_recorded=False)
    assert v.status == "rejected" and words in v.reason, (name, v.reason)
    _reverdict(bad)
    assert verify_transcript(bad).status == "rejected"
    assert verify_transcript(bad, rows).status == "rejected", name  # the data cannot rescue it


@pytest.mark.parametrize("name", sorted(OTHER_MUTATIONS))
def test_an_unsigned_change_is_altered_never_blamed_on_the_trainer(session, name):
    """Issue #7 section 3: an edited transcript (integrity digest and recorded verdict recomputed by the
    editor) can never make the audit blame the trainer or say verified, with or without the data."""
    tr, rows = session
    bad = copy.deepcopy(tr)
    OTHER_MUTATIONS[name](bad)
    for recorded in (False, True):
        try:
            if recorded:
                _reverdict(bad)
            got = [verify_transcript(bad, compare_recorded=recorded)]
            got.append(verify_transcript(bad, rows, compare_recorded=recorded))
        except (TranscriptFormatError, InputError):
            continue  # refused as malformed: exit 2 as well
        assert [v.status for v in got] == ["altered", "altered"], (name, [v.reason for v in got])
        assert "nothing in it is evidence against the trainer" in got[0].reason


def test_a_transcript_without_proof_is_unverified_and_the_replay_still_decides(session):
    """No proof (a trainer that offers none, or a proof removed afterwards): rejected as unverified, saying it
    is not evidence of cheating; the full replay checks every committed step without the openings, so with
    the data the verdict is what the replay finds (here: every state honest)."""
    tr, rows = session
    bad = copy.deepcopy(tr)
    del bad["proof"]
    v = verify_transcript(bad, compare_recorded=False)
    assert v.status == "rejected" and v.check == "no-proof" and "not evidence that the trainer cheated" in v.reason
    assert verify_transcript(bad, rows, compare_recorded=False).status == "verified"


def test_other_data_is_the_users_input_error_not_a_rejection(session):
    """Data that is not the committed data (a changed value, or the right rows in another order) is the user's
    mistake: an InputError naming both roots and the committed order, never a verdict against the trainer."""
    from protocol.errors import InputError

    tr, rows = session
    changed = rows.copy()
    changed[3, 0] += 1
    for other in (changed, rows[::-1].copy()):
        with pytest.raises(InputError, match="committed order") as ei:
            verify_transcript(tr, other)
        assert tr["data_root"] in str(ei.value)
    with pytest.raises(InputError, match="rows x"):
        verify_transcript(tr, rows[:-1])



@pytest.mark.parametrize("change", ["edited", "removed"])
def test_recorded_verdict_must_be_present_and_match(session, change):
    tr, _ = session
    bad = copy.deepcopy(tr)
    if change == "edited":
        bad["verdict"]["reason"] = "edited"
    else:
        del bad["verdict"]
    v = verify_transcript(bad)
    assert v.status == "altered" and "verdict" in v.reason


@pytest.mark.parametrize("mutate", [
    lambda t: t.__setitem__("state_leaves", t["state_leaves"].upper()),
    lambda t: t.__setitem__("num_rows", "569"),
    lambda t: t["statements"]["checkpoints"].__setitem__(0, 5),
    lambda t: t.pop("session_id"),
    lambda t: t["client"]["metadata"].__setitem__("randomness", "maybe"),
    lambda t: t["proof"].__setitem__("kind", "snark"),  # a snark proof holding openings
])
def test_malformed_fields_are_format_errors(session, mutate):
    tr, _ = session
    bad = json.loads(json.dumps(tr))
    mutate(bad)
    with pytest.raises(TranscriptFormatError):
        verify_transcript(bad)


def test_spot_guarantee_leads_with_the_single_step_probability():
    from verifier.audit import spot_guarantee

    g = spot_guarantee(1050, 64)
    assert g.startswith("a single changed step would have been caught with probability only 64/1050 = 6.1%")
    assert "passes this check with probability 93.9%" in g and g.index("93.9%") < g.index("C(1050-m, 64)")
    assert spot_guarantee(34, 64).startswith("a single changed step would have been caught with probability 34/34 = 1")
    assert "fixed by the user" in spot_guarantee(34, 4, "fixed-by-user")


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

    tr, _, rows = record_session("wrong-lr", None, 1)
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


def test_a_data_root_over_other_rows_is_a_live_rejection_and_not_evidence_for_a_third_party(monkeypatch):
    """The trainer signs a data root over other rows: the client rejects at the data commitment, before its
    training seed leaves. The root is the client's own, outside the record its nonce commits to (it is hashed
    while the rows are sent, docs/PROTOCOL.md §5), so the offline audit cannot tell a lying trainer from an
    edited transcript: it says altered, never rejected."""
    import prover.upload as upload_mod
    from protocol.merkle import MerkleTree

    real = upload_mod.DataReceiver.finish

    def other_rows(self):
        tree, rows = real(self)
        return MerkleTree(tree.leaves()[::-1]), rows

    monkeypatch.setattr(upload_mod.DataReceiver, "finish", other_rows)
    tr, verdict, _ = record_session(None, None, 4)
    assert verdict.status == "rejected" and "signed data root" in verdict.reason, verdict
    assert "audit_commitment" not in tr and tr["verdict"] == verdict.to_dict()  # the seed never left
    audit = verify_transcript(tr)
    assert audit.status == "altered" and "data statement" in audit.reason, audit
