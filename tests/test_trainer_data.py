"""Trainer-owned data (docs/PROTOCOL.md section 11) without sockets: the salted commitment and the data card
(known answers, laws, every refusal), the salted spot check, and a statistical test of the detection
probability the verdict states for `swap-rows`."""

from __future__ import annotations

import hashlib
import math
import os
import types

import numpy as np
import pytest
from helpers import flip_bit, load_vectors
from make_vectors import card_example, merkle_rows
from scipy.stats import binomtest

from protocol.dataset import load_table
from protocol.errors import (
    BindingMismatch,
    MerkleProofInvalid,
    SignatureInvalid,
    StepMismatch,
    TranscriptFormatError,
)
from protocol.hashing import tag_bytes
from protocol.keys import public_bytes
from protocol.merkle import MerkleTree, data_root, state_leaf
from protocol.prg import SeedContext, challenge_steps
from protocol.statements import Statement, sign
from protocol.trainer_data import DataCard, fresh_salts, open_card, salted_leaf, salted_leaves, salted_tree
from protocol.training import Schedule, TrainConfig
from prover import adversaries
from prover.proving import spot_openings
from prover.session import Limits, SessionManager
from prover.trainer_data import commit_all, suited_model, use_trainer_data
from verifier import checks
from verifier.trainer_data_checks import guarantee, hiding_state_leaf_of, revealed_rows, salted_data_leaf


def test_salted_leaves_known_answers():
    v = load_vectors("trainer_data")
    rows = merkle_rows(9)
    salts = b"".join(bytes([i]) * 32 for i in range(9))
    own = hashlib.sha256(tag_bytes("merkle/leaf/salted-data") + b"\x00" + (8).to_bytes(8, "big") + bytes([8]) * 32
                         + rows[8].astype("<i8").tobytes()).digest()  # the spec, written out
    assert own.hex() == v["salted_leaf_8"] == salted_leaf(8, bytes([8]) * 32, rows[8]).hex()
    assert salted_leaves(rows, salts)[:32].hex() == v["salted_leaf_0"]
    assert salted_tree(rows, salts).root.hex() == v["salted_root_9"]


def test_card_known_answer_and_parse():
    v = load_vectors("trainer_data")
    pub = bytes.fromhex(v["public_key"])
    card = open_card(pub, bytes.fromhex(v["card_statement"]), bytes.fromhex(v["card_signature"]))
    ex = card_example()
    assert (card.name, card.num_rows, card.models, card.standardization, card.data_root) == \
        (ex.name, ex.num_rows, ex.models, ex.standardization, ex.data_root)
    assert Statement.decode(bytes.fromhex(v["card_statement"])).session_id == b""  # a card belongs to no session
    assert (card.max_reveal_ppm, card.min_batch) == (250_000, 8)  # the disclosure limits are signed


def test_hiding_state_leaf_known_answer():
    import hashlib
    import hmac

    from protocol.hashing import tag_bytes
    from protocol.merkle import state_leaf
    from protocol.trainer_data import hiding_state_leaf, state_salt

    v = load_vectors("trainer_data")
    secret, theta = bytes([0x5A]) * 32, np.array([3, -3, 2**30], dtype=np.int64)
    salt = state_salt(secret, 3)
    assert salt.hex() == v["state_salt_3"]
    assert salt == hmac.new(secret, tag_bytes("state-salt") + (3).to_bytes(8, "big"), hashlib.sha256).digest()
    assert hiding_state_leaf(3, 8, salt, theta).hex() == v["hiding_state_leaf_3"]
    assert hiding_state_leaf(3, 8, salt, theta) != state_leaf(3, theta)
    assert hiding_state_leaf(0, 8, None, theta) == state_leaf(0, theta)  # public states: plain leaves
    assert hiding_state_leaf(8, 8, None, theta) == state_leaf(8, theta)
    with pytest.raises(ValueError):
        hiding_state_leaf(3, 8, None, theta)


def test_commitment_hides_and_binds():
    rows = merkle_rows(16)
    s1, s2 = fresh_salts(16), fresh_salts(16)
    assert len(s1) == 16 * 32 and s1 != s2
    # hiding: the same rows under fresh salts give unrelated roots, neither is the unsalted root
    assert salted_tree(rows, s1).root != salted_tree(rows, s2).root != data_root(rows)
    # binding: another row, or another salt, is another leaf
    other = rows.copy()
    other[3, 0] += 1
    assert salted_leaves(other, s1)[96:128] != salted_leaves(rows, s1)[96:128]
    assert salted_leaf(3, flip_bit(s1[96:128], 0), rows[3]) != salted_leaves(rows, s1)[96:128]
    with pytest.raises(ValueError):
        salted_leaf(0, b"short", rows[0])


def _signed_card(key, **change):
    base = card_example()
    card = DataCard(**{**base.__dict__, "trainer_key": public_bytes(key), **change})
    return sign(key, card.statement())


def test_card_refusals(signing_key):
    pub = public_bytes(signing_key)
    data, sig = _signed_card(signing_key)
    assert open_card(pub, data, sig).name == "bc"
    with pytest.raises(SignatureInvalid):
        open_card(pub, flip_bit(data, 8 * (len(data) - 1)), sig)
    with pytest.raises(SignatureInvalid):
        open_card(bytes(31) + b"\x01", data, sig)
    with pytest.raises(TranscriptFormatError, match="another trainer key"):
        open_card(pub, *_signed_card(signing_key, trainer_key=bytes([9]) * 32))
    with pytest.raises(TranscriptFormatError, match="one row per leaf"):
        open_card(pub, *_signed_card(signing_key, rows_per_leaf=4))
    with pytest.raises(TranscriptFormatError, match="one row per leaf"):
        open_card(pub, *_signed_card(signing_key, leaf_encoding="sha256/v0"))
    with pytest.raises(TranscriptFormatError, match="inconsistent"):
        open_card(pub, *_signed_card(signing_key, feature_names=["a"]))
    with pytest.raises(TranscriptFormatError, match="inconsistent"):
        open_card(pub, *_signed_card(signing_key, models=("ridge",)))
    bound = Statement("data-card", bytes(16), Statement.decode(data).fields)  # a card bound to a session
    with pytest.raises(BindingMismatch):
        open_card(pub, *sign(signing_key, bound))


def test_suited_models():
    assert suited_model(load_table("builtin:breast_cancer")) == "logistic"
    assert suited_model(load_table("builtin:iris")) == "softmax"
    assert suited_model(load_table("builtin:digits")) == "softmax"
    assert suited_model(load_table("builtin:diabetes")) == "linear"


# -- a manager serving the trainer's own iris data, in process ----------------------------------------------------

CFG = TrainConfig(model="softmax", num_classes=3, epochs=4, batch_size=16, lr_num=204, lr_shift=10, l2_num=0)


def _manager(key, strategy="honest", salt_file=None, recommit=False):
    m = SessionManager(key, public_bytes(key), Limits(), strategy_factory=lambda: adversaries.get_strategy(strategy))
    args = types.SimpleNamespace(dataset_model=[], dataset_frac_bits=16, salt_file=salt_file, recommit=recommit,
                                 max_reveal=1.0)  # K >= T below: every step opened (the cap is tested elsewhere)
    m.trainer_data = commit_all(key, public_bytes(key), {"iris": load_table("builtin:iris")}, args)
    return m


def _trained(m, seed=b"\x07" * 32, cfg=CFG):
    s, _, _ = m.open_session(cfg, os.urandom(32), "spot")
    use_trainer_data(m, s.session_id, "iris")
    m.commit_randomness(s.session_id, seed, bytes(32), 64)
    for _ in m.train(s.session_id):
        pass
    return s


def _check(s, audit_seed, K, openings):
    rec = s.record["result"]
    T = rec.states.shape[0] - 1
    sched = Schedule(SeedContext(s.session_id, s.data_tree.root, s.training_seed), s.cfg, *rec.X.shape)
    return checks.check_spot(openings, sid=s.session_id, state_root=rec.tree.root, audit_seed=audit_seed,
                             spot_checks=K, num_steps=T, data_root=s.data_tree.root, num_rows=rec.X.shape[0],
                             sched=sched, cfg=s.cfg, rows_per_leaf=1, data_leaf=salted_data_leaf,
                             state_leaf_of=hiding_state_leaf_of(T))


def _json(openings):
    from protocol import convert
    from protocol.wire import trainer_pb2 as pb

    return [convert.opening_from_proto(op if isinstance(op, pb.StepOpening) else convert.opening_to_proto(op))
            for op in openings]


def test_honest_openings_check_and_count_revealed_rows(signing_key):
    m = _manager(signing_key)
    s = _trained(m)
    s.spot_checks = 5
    audit = os.urandom(32)
    ops = _json(spot_openings(signing_key, s, audit)[0])
    assert len(_check(s, audit, 5, ops)) == 5
    r = revealed_rows(ops)
    assert 16 <= r <= 5 * 16 and all(len(row["salt"]) == 64 for op in ops for row in op["rows"])
    text = guarantee(36, 5, "os", ops, 150)
    assert text.startswith("a single changed step would have been caught with probability only 5/36")
    assert f"revealing {r} of its 150 rows ({r / 150:.1%})" in text and "No full replay is possible" in text
    # a missing or wrong salt: the row is not in the committed data
    ops[0]["rows"][0]["salt"] = ops[0]["rows"][0]["salt"][:-2] + ("00" if ops[0]["rows"][0]["salt"][-2:] != "00"
                                                                   else "01")
    with pytest.raises(MerkleProofInvalid, match="not in the committed data"):
        _check(s, audit, 5, ops)
    del ops[0]["rows"][0]["salt"]
    with pytest.raises(MerkleProofInvalid, match="without its 32-byte salt"):
        _check(s, audit, 5, ops)


def test_the_commitment_is_made_once_and_reused(signing_key, tmp_path):
    m = _manager(signing_key)
    a, b = _trained(m), _trained(m, seed=b"\x08" * 32)
    assert a.data_tree.root == b.data_tree.root == m.trainer_data.get("iris").card.data_root
    # a restart commits afresh, unless a salt file keeps the salts (and --recommit draws new ones anyway)
    f = tmp_path / "salts.json"
    r1 = _manager(signing_key, salt_file=str(f)).trainer_data.get("iris").card.data_root
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert _manager(signing_key, salt_file=str(f)).trainer_data.get("iris").card.data_root == r1
    assert _manager(signing_key).trainer_data.get("iris").card.data_root not in (r1, a.data_tree.root)
    assert _manager(signing_key, salt_file=str(f), recommit=True).trainer_data.get("iris").card.data_root != r1


def test_use_trainer_data_refusals(signing_key):
    from protocol.errors import InputError

    m = _manager(signing_key)
    for cfg, msg in ((TrainConfig(model="logistic"), "committed for softmax"),
                     (TrainConfig(model="softmax", num_classes=3, frac_bits=12), "frac_bits 16")):
        s, _, _ = m.open_session(cfg, os.urandom(32), "spot")
        with pytest.raises(InputError, match=msg):
            use_trainer_data(m, s.session_id, "iris")
    s, _, _ = m.open_session(CFG, os.urandom(32), "spot")
    with pytest.raises(InputError, match="no dataset 'nope'"):
        use_trainer_data(m, s.session_id, "nope")


def test_swap_rows_detection_probability_is_the_stated_one(signing_key):
    """Over many audit seeds, the spot check rejects `swap-rows` exactly when a challenged step's batch holds the
    swapped row, so its rate is 1 - C(T-m, K)/C(T, K), m = those steps. Two-sided binomial test at alpha = 1e-6
    (a correct implementation fails it with probability 1e-6)."""
    m = _manager(signing_key, "swap-rows")
    s = _trained(m)
    rec = s.record["result"]
    T, n, K = rec.states.shape[0] - 1, rec.X.shape[0], 3
    sched = Schedule(SeedContext(s.session_id, s.data_tree.root, s.training_seed), s.cfg, n, rec.X.shape[1])
    k = adversaries.SwapRows.swapped_row(n)
    bad = {t for t in range(1, T + 1) if k in {int(i) for i in sched.batch(t)}}
    assert 1 <= len(bad) <= s.cfg.epochs
    p = checks.detection_probability(T, K, len(bad))
    s.spot_checks = K
    rng = np.random.default_rng(2024)
    caught, trials = 0, 300
    for _ in range(trials):
        audit = rng.bytes(32)
        ops = _json(spot_openings(signing_key, s, audit)[0])
        try:
            _check(s, audit, K, ops)
        except StepMismatch as e:
            assert e.step in bad
            caught += 1
        else:
            assert not bad & set(challenge_steps(s.session_id, rec.tree.root, audit, K, T))
    assert binomtest(caught, trials, p).pvalue > 1e-6, (caught, trials, p)
    assert math.isclose(p, 1 - math.comb(T - len(bad), K) / math.comb(T, K))


def test_states_and_final_model_of_a_trainer_data_session_are_committed(signing_key):
    s = _trained(_manager(signing_key))
    rec = s.record["result"]
    from protocol.trainer_data import hiding_state_leaf, state_salt

    T = rec.states.shape[0] - 1
    assert len(s.state_secret) == 32 and any(s.state_secret)
    leaves = [hiding_state_leaf(t, T, None if t in (0, T) else state_salt(s.state_secret, t), rec.states[t])
              for t in range(T + 1)]
    assert MerkleTree(leaves).root == rec.tree.root
    # the public states 0 and T keep their plain leaves (the client checks them against its seed and the model);
    # every other leaf is hiding: not the plain hash of its state
    assert leaves[0] == state_leaf(0, rec.states[0]) and leaves[T] == state_leaf(T, rec.states[T])
    assert all(leaves[t] != state_leaf(t, rec.states[t]) for t in range(1, T))


def test_client_checks_the_card_and_the_root_each_session_signs(signing_key):
    """Over gRPC: the card must verify under the announced key and carry the listed name; a session whose data
    statement signs another root than the card's (a trainer that re-committed behind the client's back) is
    rejected before any randomness leaves the client."""
    from prover.server import build_server
    from verifier.client import ClientSeeds, SessionAborted, open_channel
    from verifier.trainer_data_client import fetch_card, run_trainer_data_session

    server, port, m = build_server(signing_key)
    m.trainer_data = _manager(signing_key).trainer_data
    c = m.trainer_data.get("iris")
    server.start()
    ch = open_channel(f"127.0.0.1:{port}")
    try:
        card, signed = fetch_card(ch, "iris", 30)
        assert card.data_root == c.tree.root and signed == c.signed
        good = c.signed
        c.signed = (good[0], flip_bit(good[1], 3))
        with pytest.raises(SessionAborted, match="does not check"):
            fetch_card(ch, "iris", 30)
        c.signed = good
        m.trainer_data.committed = {"other": c}
        with pytest.raises(SessionAborted, match="signed for dataset 'iris'"):
            fetch_card(ch, "other", 30)
        m.trainer_data.committed = {"iris": c}
        c.tree = salted_tree(np.column_stack([c.X, c.Y]), fresh_salts(c.X.shape[0]))  # re-committed, same card
        seeds = ClientSeeds.fresh()
        tr, verdict = run_trainer_data_session(ch, card, signed, CFG, spot_checks=4, seeds=seeds, timeout=60)
        assert verdict.status == "rejected" and "data_root" in verdict.reason, verdict
        assert "randomness" not in tr["statements"] and "audit_commitment" not in tr  # the seed never left
    finally:
        ch.close()
        server.stop(0).wait(10)


# -- proof kind snark on the trainer's data (prover/trainer_data_snark.py) ------------------------------------------

def _tiny_table():
    from protocol.dataset import parse_csv

    rng = np.random.default_rng(11)
    rows = "\n".join(f"{a:.3f},{b:.3f},{2 * a - b + 0.1 * e:.3f}" for a, b, e in rng.normal(size=(32, 3)))
    return parse_csv("a,b,y\n" + rows + "\n", "y", "tiny")


def test_a_subverted_proving_key_is_refused_over_grpc_before_proving(signing_key):
    """The trainer checks the client's key (subversion zero knowledge) when it arrives and answers a key whose
    L-query was shifted (the classic way to make C leak the witness) with INVALID_ARGUMENT, naming the check;
    nothing is trained or proved."""
    import dataclasses

    import grpc

    from protocol import convert
    from protocol.snark import keys_io, zk_session
    from protocol.snark.curve import G1_GEN, g1_add
    from protocol.wire import trainer_pb2 as pb
    from protocol.wire import trainer_pb2_grpc as pb_grpc
    from prover.server import build_server

    server, port, m = build_server(signing_key)
    args = types.SimpleNamespace(dataset_model=[], dataset_frac_bits=16, salt_file=None, recommit=False)
    m.trainer_data = commit_all(signing_key, public_bytes(signing_key), {"tiny": _tiny_table()}, args)
    card = m.trainer_data.get("tiny").card
    assert card.models == ("linear",) and len(card.zk_commitment) == 32 and card.zk_weight_bits == 32
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.TrainerStub(ch)
        cfg = TrainConfig(model="linear", epochs=1, batch_size=16, lr_num=51, lr_shift=10)
        sid = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32),
                                                     proof_kind="snark"), timeout=30).session_id
        stub.UseTrainerData(pb.UseTrainerDataRequest(session_id=sid, dataset="tiny"), timeout=30)
        seed = os.urandom(32)
        stub.CommitRandomness(pb.CommitRandomnessRequest(session_id=sid, training_seed=seed,
                                                         audit_commitment=bytes(32), spot_checks=1), timeout=30)
        sched = Schedule(SeedContext(sid, card.data_root, seed), cfg, 32, 2)
        batches = [sched.batch(t).tolist() for t in range(1, sched.num_steps + 1)]
        _, pk, _ = zk_session.client_setup(32, 2, batches, cfg)
        bad = dataclasses.replace(pk, l_query=(g1_add(pk.l_query[0], G1_GEN),) + tuple(pk.l_query[1:]))
        with pytest.raises(grpc.RpcError) as err:
            stub.UploadProvingKey(convert.key_to_chunks(sid, keys_io.pk_to_bytes(bad), 1 << 20), timeout=300)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "refuses this proving key" in err.value.details() and "check:" in err.value.details()
        plain = dataclasses.replace(pk, tau_powers_1=(), tau_2=None, tau_n_2=None)  # no powers: cannot be checked
        with pytest.raises(grpc.RpcError, match="no powers of tau"):
            stub.UploadProvingKey(convert.key_to_chunks(sid, keys_io.pk_to_bytes(plain), 1 << 20), timeout=60)
        with pytest.raises(grpc.RpcError) as err:  # nothing was accepted: training still waits for a key
            list(stub.Train(pb.TrainRequest(session_id=sid), timeout=30))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        ch.close()
        server.stop(0).wait(10)


def test_snark_refusals_at_use_trainer_data(signing_key):
    from protocol.errors import InputError

    m = _manager(signing_key)  # iris: softmax, no SNARK offered
    assert m.trainer_data.get("iris").card.zk_commitment == b""
    args = types.SimpleNamespace(dataset_model=["dia=linear"], dataset_frac_bits=16, salt_file=None, recommit=False)
    m.trainer_data = commit_all(signing_key, public_bytes(signing_key), {"dia": load_table("builtin:diabetes")}, args)
    assert m.trainer_data.get("dia").card.zk_commitment == b""  # 442 x 11 values: over ZK_MAX_VALUES
    s, _, _ = m.open_session(TrainConfig(model="linear", batch_size=32), os.urandom(32), "snark")
    with pytest.raises(InputError, match="not offered with a SNARK"):
        use_trainer_data(m, s.session_id, "dia")
