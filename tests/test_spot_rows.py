"""The spot check's batch path (verifier/spot_rows.py) checks exactly what the row-by-row check does: on a real
session's openings (a real gRPC server, 20,000 rows in leaves of 2, K = 64 steps of 8 rows: 512 inclusion
proofs), every single-field change of an opened row is refused with the row-by-row check's own error, and the
shared-path Merkle walk returns merkle.root_from_proof's root for every path."""

from __future__ import annotations

import copy
import random
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.dataset import Table, fit_standardization
from protocol.errors import VerificationError
from protocol.merkle import MerkleTree, root_from_proof
from protocol.prg import SeedContext
from protocol.state_leaves import scan
from protocol.statements import Statement
from protocol.training import Schedule, TrainConfig
from prover.server import build_server
from verifier import checks, spot_rows
from verifier.client import ClientSeeds, open_channel, run_session

CFG = TrainConfig(model="logistic", epochs=1, batch_size=8, lr_num=205, checkpoint_interval=500)
N, D, K = 20_000, 5, 64


@pytest.fixture(scope="module")
def session():
    rng = np.random.default_rng(5)
    X = np.round(rng.normal(size=(N, D)), 3)
    y = (X @ rng.normal(size=D) > 0).astype(np.float64)
    table = Table([f"x{i}" for i in range(D)], "y", X, y, "synthetic")
    server, port, _ = build_server(Ed25519PrivateKey.generate())
    server.start()
    try:
        channel = open_channel(f"127.0.0.1:{port}")
        tr, verdict = run_session(channel, table, fit_standardization(table, CFG.model), CFG, spot_checks=K,
                                  seeds=ClientSeeds.fixed_training(b"spot-rows"))
        channel.close()
    finally:
        server.stop(None)
    assert verdict.status == "spot-checked", verdict
    assert tr["rows_per_leaf"] > 1
    return tr


def _check(tr, openings, fast: bool = True, monkeypatch=None):
    sid, n = bytes.fromhex(tr["session_id"]), tr["num_rows"]
    data_root = bytes(Statement.decode(bytes.fromhex(tr["statements"]["data"][0])).fields["data_root"])
    sched = Schedule(SeedContext(sid, data_root, bytes.fromhex(tr["training_seed"])), CFG, n, D)
    return checks.check_spot(openings, sid=sid, state_root=scan(tr["state_leaves"]).root,
                             audit_seed=bytes.fromhex(tr["audit_seed"]), spot_checks=K, num_steps=sched.num_steps,
                             data_root=data_root, num_rows=n, sched=sched, cfg=CFG,
                             rows_per_leaf=tr["rows_per_leaf"], value_bytes=tr["value_bytes"])


def _outcome(tr, openings, monkeypatch, fast: bool):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(checks, "batch_rows", lambda *a, **k: None)
        try:
            _check(tr, openings)
        except VerificationError as e:
            return type(e).__name__, str(e), e.step
        except (KeyError, TypeError, ValueError, struct.error) as e:  # (the schema check refuses these first)
            return "format", type(e).__name__, None
    return "accepted", "", None


def test_honest_openings_pass_on_the_batch_path(session, monkeypatch):
    used = []
    real = spot_rows.batch_rows
    monkeypatch.setattr(checks, "batch_rows", lambda *a, **k: used.append(r := real(*a, **k)) or r)
    _check(session, session["proof"]["openings"])
    assert len(used) == K and sum(r is not None for r in used) >= K - 2  # (a batch touching the short last leaf)


def _mutations(tr, rnd):
    """(name, openings) pairs: one field of one opened row changed, in a random row of a random step."""
    ops = tr["proof"]["openings"]
    R, W = tr["rows_per_leaf"], tr["value_bytes"]
    hi = 1 << (8 * W - 1)
    for trial in range(6):
        k, j = rnd.randrange(len(ops)), rnd.randrange(CFG.batch_size)
        for name, change in [
            ("wrong sibling (low level)", lambda r: r["proof"].__setitem__(0, "00" * 32)),
            ("wrong sibling (top level)", lambda r: r["proof"].__setitem__(len(r["proof"]) - 1, "ab" * 32)),
            ("sibling bit flip", lambda r: r["proof"].__setitem__(
                rnd.randrange(len(r["proof"])), format(int(r["proof"][0], 16) ^ 1, "064x"))),
            ("siblings swapped", lambda r: r["proof"].reverse()),
            ("sibling dropped", lambda r: r["proof"].pop()),
            ("sibling added", lambda r: r["proof"].append("11" * 32)),
            ("upper-case sibling", lambda r: r["proof"].__setitem__(0, r["proof"][0].upper())),
            ("short sibling", lambda r: r["proof"].__setitem__(0, r["proof"][0][:62])),
            ("sibling split 62/66", lambda r: r["proof"][0:2].__len__() == 2 and r["proof"].__setitem__(
                slice(0, 2), [r["proof"][0][:62], r["proof"][0][62:] + r["proof"][1]])),
            ("leaf value changed", lambda r: r["leaf_rows"][rnd.randrange(R)].__setitem__(0, r["leaf_rows"][0][0] + 1)),
            ("row value changed", lambda r: r["values"].__setitem__(1, r["values"][1] + 1)),
            ("row and leaf changed together", lambda r: (
                r["values"].__setitem__(2, r["values"][2] - 1),
                r["leaf_rows"][r["index"] % R].__setitem__(2, r["values"][2]))),
            ("value outside the width", lambda r: r["leaf_rows"][0].__setitem__(0, hi)),
            ("float value", lambda r: r["leaf_rows"][0].__setitem__(1, float(r["leaf_rows"][0][1]))),
            ("bool value", lambda r: r["values"].__setitem__(0, bool(r["values"][0] & 1))),
            ("leaf row dropped", lambda r: r["leaf_rows"].pop()),
            ("leaf row duplicated", lambda r: r["leaf_rows"].append(list(r["leaf_rows"][0]))),
            ("proof index", lambda r: r.__setitem__("proof_index", r["proof_index"] + 1)),
            ("proof index missing", lambda r: r.pop("proof_index")),
            ("proof missing", lambda r: r.pop("proof")),
            ("leaf rows as tuple", lambda r: r.__setitem__("leaf_rows", tuple(r["leaf_rows"]))),
        ]:
            mutated = copy.deepcopy(ops)
            change(mutated[k]["rows"][j])
            yield f"{name} (step {ops[k]['step']}, row {j})", mutated


def test_every_change_to_an_opened_row_gets_the_row_by_row_verdict(session, monkeypatch):
    """The batch path never accepts what the row-by-row check refuses, and a refusal names the same failure."""
    rnd = random.Random(11)
    refused = 0
    for name, openings in _mutations(session, rnd):
        fast, slow = _outcome(session, openings, monkeypatch, True), _outcome(session, openings, monkeypatch, False)
        assert fast == slow, name
        refused += fast[0] != "accepted"
    assert refused >= 6 * 18  # (a no-op change is accepted by both, e.g. a bool equal to the value it replaced)


def test_a_wrong_sibling_in_one_of_many_paths_is_caught(session):
    """One of the 512 data paths of the session carries one wrong sibling at its top level (the level all
    paths share): refused, naming that step and row."""
    openings = copy.deepcopy(session["proof"]["openings"])
    op = openings[-1]
    row = op["rows"][-1]
    row["proof"][-1] = format(int(row["proof"][-1], 16) ^ (1 << 100), "064x")
    with pytest.raises(VerificationError, match=rf"step {op['step']}: row {row['index']} is not in the committed data"):
        _check(session, openings)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 33, 100, 257])
def test_shared_paths_give_the_root_of_each_proof(size):
    rnd = random.Random(size)
    leaves = [rnd.randbytes(32) for _ in range(size)]
    tree = MerkleTree(leaves)
    paths = spot_rows.SharedPaths(size)
    for _ in range(3):  # several calls share the nodes of earlier ones
        idx = [rnd.randrange(size) for _ in range(min(size, 20))]
        proofs = [b"".join(tree.proof(i)) for i in idx]
        hs = [leaves[i] for i in idx]
        if size > 1:  # a wrong sibling high up in one path, after other paths went through the same nodes
            bad = len(idx) - 1
            raw = bytearray(proofs[bad])
            if raw:
                raw[-1] ^= 1
                proofs[bad] = bytes(raw)
        roots = paths.roots(hs, idx, proofs)
        assert roots == [root_from_proof(h, i, size, [p[k:k + 32] for k in range(0, len(p), 32)])
                         for h, i, p in zip(hs, idx, proofs)]
    i = size - 1
    good = b"".join(tree.proof(i))
    for bad in (good + b"\x00" * 32, good[:-32] if good else None, good + b"\x00", None):
        if bad is not None:
            assert spot_rows.SharedPaths(size).roots([leaves[i]], [i], [bad]) is None
    assert spot_rows.SharedPaths(size).roots([leaves[0]], [size], [good]) is None


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_the_batch_step_is_the_exact_step(model):
    """checks._batch_step (numpy, on a batch checked at once) gives step_exact's integers, or its overflow."""
    from protocol.training import step_exact

    cfg = TrainConfig(model=model, epochs=1, batch_size=8, lr_num=205)
    rnd = np.random.default_rng(3)
    for scale in (2**10, 2**20, 2**40, 2**61, 2**62 - 1, 2**63 - 1):
        for _ in range(5):
            rows = rnd.integers(-2**17, 2**17, size=(8, 6))
            state = [int(v) for v in rnd.integers(-scale, scale, size=6, endpoint=True)]
            try:
                want = step_exact(list(state), rows[:, :-1].tolist(), rows[:, -1].tolist(), cfg, 5)
            except ArithmeticError as e:
                want = ("overflow", str(e))
            try:
                got = checks._batch_step(rows, rows.tolist(), state, cfg, 5)
            except ArithmeticError as e:
                got = ("overflow", str(e))
            assert got == want, (scale, state)


def test_a_malformed_proof_leaves_nothing_later_paths_could_borrow():
    """A call that returns None (a proof too short) must not leave its partial nodes in the shared record:
    they would name a path index that the next call's first path then takes, and a later path matching them
    would borrow that other path's root."""
    size = 64
    rnd = random.Random(3)
    leaves = [rnd.randbytes(32) for _ in range(size)]
    tree = MerkleTree(leaves)
    paths = spot_rows.SharedPaths(size)
    short = b"".join(tree.proof(5))[:-32]
    assert paths.roots([leaves[5]], [5], [short]) is None
    assert not paths._seen  # nothing recorded from the refused path
    idx = [40, 5, 4]
    good = [b"".join(tree.proof(i)) for i in idx]
    assert paths.roots([leaves[i] for i in idx], idx, good) == [tree.root] * 3
    # a leaf that is not in the tree, with leaf 5's siblings: reaches no recorded node with a matching hash
    assert paths.roots([rnd.randbytes(32)], [5], [good[1]]) != [tree.root]
