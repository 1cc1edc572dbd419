"""Attacks on sessions over the trainer's own data (docs/PROTOCOL.md section 12), each written so that it FAILS
if the attack succeeds: a trainer that chooses its data, salts and openings adversarially, a client that sends
anything (and would like the trainer's rows), and someone editing a transcript afterwards.

Attacks that still succeed are marked ``xfail(strict=True)`` with the reason (they are findings, not fixed).
What the spot mode cannot hide (the batch-average updates of unopened steps between known states) is counted in
the verdict and bounded by the trainer's minimum batch size: tested below as such, not as hidden."""

from __future__ import annotations

import copy
import math
import os
import types

import numpy as np
import pytest

from protocol.dataset import Standardization, parse_csv, quantized_rows
from protocol.errors import InputError, MerkleProofInvalid, VerificationError
from protocol.keys import public_bytes
from protocol.merkle import state_leaf
from protocol.prg import SeedContext, challenge_steps
from protocol.training import Schedule, TrainConfig, step_exact
from prover import adversaries
from prover.proving import spot_openings
from prover.session import LimitExceeded, Limits, SessionManager
from prover.trainer import LeavesEvent, ProgressEvent
from prover.trainer_data import commit_all, use_trainer_data
from verifier import checks
from verifier.trainer_data_checks import hiding_state_leaf_of, revealed_rows, salted_data_leaf

# -- helpers: a trainer serving a small private table in process -------------------------------------------------


def _binary_table(n=32, seed=5):
    """A private dataset of low entropy (three 0/1 features, a 0/1/2 target): realistic for survey-like data."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 2, size=(n, 3))
    y = rows.sum(axis=1) % 3
    text = "\n".join(f"{a},{b},{c},{t}" for (a, b, c), t in zip(rows, y))
    return parse_csv("a,b,c,y\n" + text + "\n", "y", "private")


def _continuous_table(n=32, seed=9):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
    text = "\n".join(",".join(f"{v:.4f}" for v in (*x, t)) for x, t in zip(X, y))
    return parse_csv("a,b,c,y\n" + text + "\n", "y", "private")


OPEN_POLICY = {"max_reveal": 1.0, "min_batch_private": 1}  # no disclosure limits: the attacks on the leaves


def _manager(key, table, strategy="honest", name="private", **policy):
    """``policy``: serve's --max-reveal / --min-batch-private (default: the trainer's defaults)."""
    m = SessionManager(key, public_bytes(key), Limits(), strategy_factory=lambda: adversaries.get_strategy(strategy))
    args = types.SimpleNamespace(dataset_model=[f"{name}=linear"], dataset_frac_bits=16, salt_file=None,
                                 recommit=False, **policy)
    m.trainer_data = commit_all(key, public_bytes(key), {name: table}, args)
    return m


def _session(m, cfg, K, seed=None, name="private"):
    """A client's session; returns (session, the events the client received on the Train stream)."""
    s, _, _ = m.open_session(cfg, os.urandom(32), "spot")
    use_trainer_data(m, s.session_id, name)
    m.commit_randomness(s.session_id, seed or os.urandom(32), bytes(32), K)
    events = list(m.train(s.session_id))
    return s, events


def _leaves(events) -> list[bytes]:
    raw = b"".join(ev.hashes for ev in events if isinstance(ev, LeavesEvent))
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


LINEAR_B1 = TrainConfig(model="linear", epochs=1, batch_size=1, lr_num=102, lr_shift=10, frac_bits=16)


# -- 1. a client that wants the trainer's rows ---------------------------------------------------------------------


def test_one_session_cannot_reveal_the_whole_private_dataset(signing_key):
    """K = T (or B close to n) would open every row in ONE session: the trainer's cap (serve --max-reveal,
    default a quarter of the rows, published in the card) refuses it when the client commits K, naming the K that
    fits; K within the cap is accepted."""
    m = _manager(signing_key, _binary_table(n=32))
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=102, lr_shift=10, frac_bits=16)
    assert m.trainer_data.get("private").card.max_spot_checks(8) == 1
    with pytest.raises(LimitExceeded, match=r"at most 25% .* ask --spot-checks 1 or fewer"):
        _session(m, cfg, K=4096)  # T = 4: every step challenged
    with pytest.raises(LimitExceeded, match="use a smaller --batch-size"):
        _session(m, TrainConfig(model="linear", epochs=1, batch_size=16, lr_num=102, lr_shift=10, frac_bits=16), K=1)
    s, _ = _session(m, cfg, K=1)  # within the cap
    from protocol import convert

    ops = [convert.opening_from_proto(op) for op in spot_openings(signing_key, s, os.urandom(32))[0]]
    assert revealed_rows(ops) <= 8, "one session revealed more rows than the trainer's cap"


def _dictionary_attack(m, s, leaves) -> int:
    """The client's attack on the state leaves: rows it recovers correctly (candidates: every 0/1 feature vector
    with every target, quantized with the card's published standardization)."""
    card = m.trainer_data.get("private").card
    stdz = Standardization.from_dict(card.standardization)
    grid = [(a, b, c, t) for a in (0, 1) for b in (0, 1) for c in (0, 1) for t in (0, 1, 2)]
    cand_table = parse_csv("a,b,c,y\n" + "\n".join(",".join(map(str, g)) for g in grid) + "\n", "y", "guess")
    cands = quantized_rows(cand_table, stdz, card.frac_bits).tolist()
    sched = Schedule(SeedContext(s.session_id, card.data_root, s.training_seed), s.cfg, card.num_rows,
                     card.num_features)
    theta = [int(v) for v in sched.initial_state()]
    recovered = {}
    for t in range(1, sched.num_steps + 1):
        hits = [c for c in cands if state_leaf(t, np.array(step_exact(theta, [c[:-1]], [c[-1]], s.cfg, t),
                                                           dtype=np.int64)) == leaves[t]]
        if not hits:
            break
        theta = step_exact(theta, [hits[0][:-1]], [hits[0][-1]], s.cfg, t)
        recovered[int(sched.batch(t)[0])] = hits[0]
    truth = np.column_stack([m.trainer_data.get("private").X, m.trainer_data.get("private").Y]).tolist()
    return sum(truth[i] == row for i, row in recovered.items())


def test_state_leaves_do_not_let_a_client_test_guessed_rows(signing_key):
    """(B = 1 and no reveal cap: the strongest case, allowed here by the open policy.) With theta_0 (from the seed), the public batch indices and the published standardization, a client could
    test guessed rows against unsalted state leaves and walk the chain; the hiding leaves (a per-step salt,
    docs/PROTOCOL.md section 12) stop it: no guess matches any leaf."""
    m = _manager(signing_key, _binary_table(n=32), **OPEN_POLICY)
    s, events = _session(m, LINEAR_B1, K=1)
    right = _dictionary_attack(m, s, _leaves(events))
    assert right < 16, f"the client recovered {right} of 32 private rows from the state hashes (1 row opened)"


def test_a_snark_session_streams_no_state_leaves_a_client_can_test(signing_key):
    """Proof kind snark streams the same (hiding) state leaves before proving: no guess tests against them."""
    from prover.session import State

    m = _manager(signing_key, _binary_table(n=32), **OPEN_POLICY)
    s, _, _ = m.open_session(LINEAR_B1, os.urandom(32), "snark")
    use_trainer_data(m, s.session_id, "private")
    m.commit_randomness(s.session_id, os.urandom(32), bytes(32), 1)
    s.state = State.KEY_RECEIVED  # (the client's key plays no part in training; the proving phase is not reached)
    events = []
    gen = m.train(s.session_id)
    for ev in gen:
        if isinstance(ev, ProgressEvent) and ev.phase == "proving":
            break
        events.append(ev)
    gen.close()
    right = _dictionary_attack(m, s, _leaves(events))
    assert right < 16, f"the client recovered {right} of 32 private rows from a SNARK session's state hashes"


def test_opened_states_around_unopened_steps_are_counted_and_batches_are_large(signing_key):
    """Two consecutive known states around an unchallenged step reveal that step's batch-average update (theta_0
    is public; theta_1 is the state_before of a challenged step 2): with B = 1 the update's weights over its bias
    are the unopened row's features. Hiding this needs the SNARK; what the spot mode does instead: (a) the verdict
    counts those steps beside the rows ("the batch-average updates of u further steps"), recomputed here from the
    known states; (b) the trainer refuses batches below its --min-batch-private (default 8, in the card)."""
    from verifier.trainer_data_checks import exposed_updates, guarantee

    table = _continuous_table(n=32)
    m = _manager(signing_key, table, **OPEN_POLICY)
    c = m.trainer_data.get("private")
    for _ in range(200):  # an honest client's luck: step 2 challenged, step 1 not (about K/T of the sessions)
        s, _ = _session(m, LINEAR_B1, K=8)
        audit = os.urandom(32)
        T = s.cfg.num_steps(c.card.num_rows)
        steps = challenge_steps(s.session_id, s.record["result"].tree.root, audit, 8, T)
        if 2 in steps and 1 not in steps:
            break
        m.close(s.session_id)  # the trainer's per-client session limit counts open sessions
    else:
        pytest.skip("no session with step 2 challenged and step 1 not")
    from protocol import convert
    ops = [convert.opening_from_proto(op) for op in spot_openings(signing_key, s, audit)[0]]
    sched = Schedule(SeedContext(s.session_id, c.card.data_root, s.training_seed), s.cfg, *c.X.shape)
    theta0 = np.array(sched.initial_state(), dtype=float)
    theta1 = np.array(next(op for op in ops if op["step"] == 2)["state_before"], dtype=float)
    i = int(sched.batch(1)[0])
    delta = theta1 - theta0
    guess = delta[:-1] / delta[-1] * (1 << s.cfg.frac_bits)  # x_j = dw_j / db (in fixed point)
    assert np.allclose(guess, c.X[i], rtol=0.02, atol=0.02 * (1 << s.cfg.frac_bits))  # the leak is real at B = 1
    # (a) the count: exactly the unopened steps with both neighbouring states known, step 1 among them
    known = {0, T} | {t - 1 for t in steps} | {t for t in steps}
    truth = [t for t in range(1, T + 1) if t not in steps and t - 1 in known and t in known]
    assert 1 in truth and exposed_updates(ops, T) == len(truth)
    text = guarantee(T, 8, "os", ops, 32)
    assert f"and the batch-average updates of {len(truth)} further steps" in text, text
    # (b) the default policy refuses B = 1 (and anything below 8) with advice, accepts B = 8
    strict = _manager(signing_key, table)
    assert strict.trainer_data.get("private").card.min_batch == 8
    for B in (1, 4):
        cfg = TrainConfig(model="linear", epochs=1, batch_size=B, lr_num=102, lr_shift=10, frac_bits=16)
        sess, _, _ = strict.open_session(cfg, os.urandom(32), "spot")
        with pytest.raises(InputError, match="at least 8.*use --batch-size 8 or more"):
            use_trainer_data(strict, sess.session_id, "private")
    _session(strict, TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=102, lr_shift=10, frac_bits=16), K=1)


def test_progress_events_carry_no_loss_of_private_batches(signing_key):
    """The Train stream's display-only loss is computed on the private batch (with B = 1 it is the squared
    residual of one unopened row): a trainer-data session must not send it."""
    m = _manager(signing_key, _continuous_table(n=32), **OPEN_POLICY)
    _, events = _session(m, LINEAR_B1, K=1)
    losses = [ev.loss for ev in events if isinstance(ev, ProgressEvent)]
    assert losses and all(math.isnan(v) for v in losses), losses


# -- 2. a trainer that opens what it likes ---------------------------------------------------------------------------


def _spot_check(s, ops, audit, K):
    rec = s.record["result"]
    T = rec.states.shape[0] - 1
    sched = Schedule(SeedContext(s.session_id, s.data_tree.root, s.training_seed), s.cfg, *rec.X.shape)
    return checks.check_spot(ops, sid=s.session_id, state_root=rec.tree.root, audit_seed=audit, spot_checks=K,
                             num_steps=T, data_root=s.data_tree.root, num_rows=rec.X.shape[0], sched=sched,
                             cfg=s.cfg, rows_per_leaf=1, data_leaf=salted_data_leaf,
                             state_leaf_of=hiding_state_leaf_of(T))


def _honest_openings(signing_key, cfg, K):
    m = _manager(signing_key, _binary_table(n=32), **OPEN_POLICY)
    s, _ = _session(m, cfg, K)
    audit = os.urandom(32)
    from protocol import convert
    ops = [convert.opening_from_proto(op) for op in spot_openings(signing_key, s, audit)[0]]
    _spot_check(s, ops, audit, K)  # honest: passes
    return s, ops, audit


def test_one_committed_row_cannot_be_opened_at_another_index(signing_key):
    """A trainer reusing one committed (row, salt, proof) for another batch index: the leaf hashes its index."""
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=102, lr_shift=10, frac_bits=16)
    s, ops, audit = _honest_openings(signing_key, cfg, K=2)
    bad = copy.deepcopy(ops)
    r0, r1 = bad[0]["rows"][0], bad[0]["rows"][1]
    for k in ("values", "leaf_rows", "salt", "proof"):
        r1[k] = copy.deepcopy(r0[k])
    with pytest.raises(VerificationError):
        _spot_check(s, bad, audit, 2)


def test_a_salt_of_another_row_or_length_is_refused(signing_key):
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=102, lr_shift=10, frac_bits=16)
    s, ops, audit = _honest_openings(signing_key, cfg, K=1)
    for salt in (ops[0]["rows"][1]["salt"], ops[0]["rows"][0]["salt"] + "00", ops[0]["rows"][0]["salt"][:-2], ""):
        bad = copy.deepcopy(ops)
        bad[0]["rows"][0]["salt"] = salt
        with pytest.raises(MerkleProofInvalid):
            _spot_check(s, bad, audit, 1)


def test_a_state_opened_with_a_wrong_missing_or_extra_salt_is_refused(signing_key):
    """A trainer opening a hiding state leaf with another salt (or none), or a public state (0 or T) with one:
    the state is not in the committed state tree (rejected, the step named)."""
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=102, lr_shift=10, frac_bits=16)
    s, ops, audit = _honest_openings(signing_key, cfg, K=4)  # T = 4: every step opened (no reveal cap here)
    T = 4
    for k, op in enumerate(ops):
        for label, idx in (("before", op["step"] - 1), ("after", op["step"])):
            public = idx in (0, T)
            assert bool(op.get(f"salt_{label}")) != public, (op["step"], label)
            for salt in ([os.urandom(32).hex()] if public else
                         [os.urandom(32).hex(), "", op[f"salt_{label}"][:-2], None]):
                bad = copy.deepcopy(ops)
                bad[k][f"salt_{label}"] = salt
                if salt is None:
                    bad[k].pop(f"salt_{label}")
                with pytest.raises(MerkleProofInvalid, match=f"step {op['step']}"):
                    _spot_check(s, bad, audit, 4)


def test_salts_are_fresh_per_row_and_per_commitment(signing_key):
    """The hiding rests on 32 fresh OS-random bytes per row: no two equal, none zero, new on recommit."""
    a = _manager(signing_key, _binary_table(n=32)).trainer_data.get("private")
    b = _manager(signing_key, _binary_table(n=32)).trainer_data.get("private")
    salts = [a.salt(i) for i in range(32)] + [b.salt(i) for i in range(32)]
    assert len(set(salts)) == 64 and all(len(x) == 32 and any(x) for x in salts)
    assert a.card.data_root != b.card.data_root
    # equal rows get different leaves (a duplicate row is not visible in the tree)
    X, Y = a.X, a.Y
    dup = [(i, j) for i in range(32) for j in range(i) if X[i].tolist() == X[j].tolist() and Y[i] == Y[j]]
    assert dup, "the binary table has duplicate rows"
    i, j = dup[0]
    from protocol.trainer_data import salted_leaf

    row = [*X[i].tolist(), int(Y[i])]
    assert salted_leaf(i, a.salt(i), row) != salted_leaf(j, a.salt(j), row)


# -- 3. someone editing the transcript afterwards (real processes) ---------------------------------------------------


def _forged_card(key_path, tr) -> list[str]:
    """A card the trainer really signed (same key) for the same dataset under another commitment (new salts)."""
    import dataclasses

    from protocol.keys import load_private_key
    from protocol.statements import sign
    from protocol.trainer_data import open_card

    key = load_private_key(str(key_path))
    card = open_card(public_bytes(key), *(bytes.fromhex(x) for x in tr["trainer_data"]["card"]))
    other = dataclasses.replace(card, data_root=os.urandom(32))
    return [x.hex() for x in sign(key, other.statement())]


def _salted_opening(t) -> dict:
    """The first opening whose state after carries a salt (every step but T: its state is hiding)."""
    return next(op for op in t["proof"]["openings"] if op.get("salt_after"))


def test_edited_trainer_data_transcripts_are_altered_never_accepted(tmp_path):
    """One honest session over the wire (K = 2 of T = 9), then edits a third party could make. The honest one is
    SPOT-CHECKED (exit 3) with exactly the distinct rows of the challenged batches counted; every edit gives
    ALTERED (exit 2) or REJECTED (exit 1), never SPOT-CHECKED or VERIFIED."""
    from procs import ProverProcess, make_key, verifier, verifier_json

    from protocol import transcript as tx

    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--dataset", "iris=builtin:iris") as srv:
        out = tmp_path / "t.json"
        rc, doc, err = verifier_json("train", "--server", srv.address, "--trainer-data", "iris", "--epochs", "1",
                                     "--batch-size", "16", "--spot-checks", "2", "--out", str(out),
                                     "--model-out", str(tmp_path / "m.json"))
        out2 = tmp_path / "t2.json"
        rc2, _, err2 = verifier_json("train", "--server", srv.address, "--trainer-data", "iris", "--epochs", "1",
                                     "--batch-size", "16", "--spot-checks", "2", "--out", str(out2),
                                     "--model-out", str(tmp_path / "m2.json"))
    assert rc == 3 and rc2 == 3 and doc["status"] == "spot-checked", (doc, err, err2)
    tr, _ = tx.load(str(out))
    # the count is the number of distinct rows of the challenged batches, recomputed from the seed here
    sid, root = bytes.fromhex(tr["session_id"]), bytes.fromhex(tr["data_root"])
    from protocol.statements import Statement

    state_root = Statement.decode(bytes.fromhex(tr["statements"]["final"][0])).fields["state_root"]
    cfg = TrainConfig.from_dict(tr["config"])
    sched = Schedule(SeedContext(sid, root, bytes.fromhex(tr["training_seed"])), cfg, 150, 4)
    steps = challenge_steps(sid, state_root, bytes.fromhex(tr["audit_seed"]), 2, sched.num_steps)
    truth = len({int(i) for t in steps for i in sched.batch(t)})
    td = doc["trainer_data"]
    assert td["rows_revealed"] == truth and td["fraction_revealed"] == truth / 150
    assert f"revealing {truth} of its 150 rows ({truth / 150:.1%})" in doc["guarantee"]
    assert doc["guarantee"].startswith("a single changed step would have been caught with probability only 2/9")

    other, _ = tx.load(str(out2))
    edits = {
        "no trainer_data": lambda t: t.pop("trainer_data"),
        "another card of the trainer": lambda t: t["trainer_data"].__setitem__("card", _forged_card(key, t)),
        "dataset renamed": lambda t: t["trainer_data"].__setitem__("name", "iris2"),
        "salt dropped": lambda t: t["proof"]["openings"][0]["rows"][0].pop("salt"),
        "salt changed": lambda t: t["proof"]["openings"][0]["rows"][0].__setitem__(
            "salt", other["proof"]["openings"][0]["rows"][0]["salt"]),
        "state salt changed": lambda t: _salted_opening(t).__setitem__("salt_after", os.urandom(32).hex()),
        "state salt of another step": lambda t: _salted_opening(t).__setitem__(
            "salt_after", _salted_opening(t)["salt_before"] or other["proof"]["openings"][0]["salt_after"]),
        "state salts dropped": lambda t: [_salted_opening(t).pop(k) for k in ("salt_before", "salt_after")],
        "openings of another session": lambda t: t.__setitem__("proof", other["proof"]),
        "proof kind snark": lambda t: t.__setitem__("proof_kind", "snark"),
        "standardization": lambda t: t["client"]["metadata"]["standardization"]["mean"].__setitem__(0, 0.0),
        "row count": lambda t: t.__setitem__("num_rows", 128),
    }
    for what, edit in edits.items():
        t = copy.deepcopy(tr)
        edit(t)
        path = tmp_path / "e.json"
        tx.save(str(path), t)
        p = verifier("audit", str(path))
        assert p.returncode in (1, 2) and "SPOT-CHECKED" not in p.stdout and "VERIFIED" not in p.stdout, (
            what, p.returncode, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr, (what, p.stderr)
    # even with the trainer's true rows in hand, the library's replay never calls this session VERIFIED (the
    # salted root is no root of the rows alone): the CLI refuses --data, the library refuses the rows
    from protocol.dataset import load_table
    from verifier.audit import verify_transcript

    rows = quantized_rows(load_table("builtin:iris"), Standardization.from_dict(td["standardization"]), 16)
    try:
        v = verify_transcript(copy.deepcopy(tr), rows)
    except InputError:
        pass
    else:
        assert v.status != "verified", v
    # the model file of this session: never 'verified' (spot only), and no advice to replay what cannot be
    from protocol import model_file
    from verifier import model_trust

    a = model_trust.assess(model_file.load(str(tmp_path / "m.json")), str(tmp_path / "m.json"))
    assert not a.verified and a.check == "spot" and "--data" not in a.reason and "trainer's own rows" in a.reason, a
    # the verdict field of the file is never believed: audit recomputes it
    t = copy.deepcopy(tr)
    t["verdict"]["status"] = "verified"
    tx.save(str(tmp_path / "v.json"), t)
    p = verifier("audit", str(tmp_path / "v.json"))
    assert p.returncode in (2, 3) and "VERIFIED" not in p.stdout, (p.returncode, p.stdout)


def test_a_tree_of_more_rows_cannot_pass_for_the_cards_row_count():
    """A trainer that commits 2n salted rows but signs n in the card (and draws batches from n): the inclusion
    proofs of its real tree do not verify for a tree of n leaves, for any row."""
    from protocol.merkle import MerkleTree
    from protocol.trainer_data import fresh_salts, salted_leaves

    rng = np.random.default_rng(3)
    rows = rng.integers(-1000, 1000, size=(300, 5))
    big = MerkleTree(salted_leaves(rows, fresh_salts(300)))
    proof = big.proof(0)
    as_hex = (lambda p: [h.hex() for h in p]) if isinstance(proof, list) else (lambda p: [h.hex() for h in p.siblings])
    for i in range(0, 150, 7):
        leaf = big.leaf(i)
        checks._included(leaf, i, 300, as_hex(big.proof(i)), big.root, "not in", 1)  # the honest size passes
        with pytest.raises(MerkleProofInvalid):
            checks._included(leaf, i, 150, as_hex(big.proof(i)), big.root, "not in", 1)


def test_a_softmax_session_with_another_class_count_is_refused(signing_key):
    """A client that asks softmax with fewer classes than the dataset's labels would get a model trained on
    targets it cannot encode (label 2 of 2 classes is no class): refused at UseTrainerData, with the count."""
    from protocol.dataset import load_table

    m = SessionManager(signing_key, public_bytes(signing_key), Limits())
    args = types.SimpleNamespace(dataset_model=[], dataset_frac_bits=16, salt_file=None, recommit=False)
    m.trainer_data = commit_all(signing_key, public_bytes(signing_key), {"iris": load_table("builtin:iris")}, args)
    for nc in (2, 4):
        cfg = TrainConfig(model="softmax", num_classes=nc, epochs=1, batch_size=16, lr_num=204, lr_shift=10)
        s, _, _ = m.open_session(cfg, os.urandom(32), "spot")
        with pytest.raises(InputError, match="has 3 classes, the session asks"):
            use_trainer_data(m, s.session_id, "iris")


def test_a_huge_dataset_name_gets_a_short_clear_error(signing_key):
    """UseTrainerData echoes an unknown name: a 3 MB name must not turn into an unreadable transport error
    (gRPC refuses status details over 16 KiB)."""
    from protocol.dataset import load_table

    m = SessionManager(signing_key, public_bytes(signing_key), Limits())
    args = types.SimpleNamespace(dataset_model=[], dataset_frac_bits=16, salt_file=None, recommit=False)
    m.trainer_data = commit_all(signing_key, public_bytes(signing_key), {"iris": load_table("builtin:iris")}, args)
    cfg = TrainConfig(model="softmax", num_classes=3, epochs=1, batch_size=16, lr_num=204, lr_shift=10)
    s, _, _ = m.open_session(cfg, os.urandom(32), "spot")
    with pytest.raises(InputError) as e:
        use_trainer_data(m, s.session_id, "x" * 3_000_000)
    assert len(str(e.value)) < 1000 and "at most 256 characters" in str(e.value)


def test_the_revealed_fraction_never_rounds_a_partial_reveal_to_none_or_all():
    from verifier.trainer_data_checks import _percent

    assert _percent(1, 5000) == "<0.1%" and _percent(4999, 5000) == ">99.9%"
    assert _percent(0, 5000) == "0.0%" and _percent(5000, 5000) == "100.0%" and _percent(16, 150) == "10.7%"
