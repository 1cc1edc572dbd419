"""The canonical value width (protocol/row_encoding.py, docs/PROTOCOL.md section 4), attacked from both sides:
a trainer that opens values wrapping to the committed bytes, signs another width or another root for the same
rows; the server's unpacking of narrow rows; the width rule itself."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import convert
from protocol.errors import BindingMismatch, MerkleProofInvalid
from protocol.keys import public_bytes
from protocol.merkle import MerkleTree, data_root
from protocol.prg import SeedContext, seed_commitment
from protocol.row_encoding import minimal_value_bytes, pack, table_value_bytes, unpack
from protocol.statements import Statement, sign
from protocol.training import Schedule, TrainConfig
from prover.session import Limits, SessionManager
from prover.upload import StoredRows
from verifier import checks

K = 6


@pytest.mark.parametrize("lo,hi,w", [(0, 0, 1), (-128, 127, 1), (-129, 0, 2), (0, 128, 2), (-32768, 32767, 2),
                                     (0, 32768, 4), (-(2**31), 2**31 - 1, 4), (0, 2**31, 8), (-(2**63), 0, 8)])
def test_minimal_width(lo, hi, w):
    assert minimal_value_bytes(lo, hi) == w
    assert table_value_bytes(np.array([[lo, hi]], dtype=np.int64)) == w


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=3, max_size=30))
def test_pack_unpack_is_exact_at_the_canonical_width(values):
    rows = np.array(values[: len(values) // 3 * 3], dtype=np.int64).reshape(-1, 3)
    w = table_value_bytes(rows)
    packed = pack(rows, w)
    assert packed.dtype.itemsize == w and np.array_equal(unpack(packed.tobytes(), w).reshape(rows.shape), rows)
    if w > 1:
        with pytest.raises(ValueError):
            pack(rows, w // 2)


def test_the_server_lays_narrow_rows_out_as_the_exact_int64_values():
    rows = np.array([[-128, 127, -1], [0, -5, 100]], dtype=np.int64)
    for w in (1, 2, 4, 8):
        X, Y = StoredRows([pack(rows[:1], w).tobytes(), pack(rows[1:], w).tobytes()], 2, 2, w).arrays()
        assert np.array_equal(X, rows[:, :2]) and np.array_equal(Y, rows[:, 2]), w


@pytest.fixture(scope="module")
def session():
    """One honest session on rows of canonical width 4, run through the trainer's handlers: the openings as the
    client records them, and everything check_spot needs."""
    rng = np.random.default_rng(11)
    n, d = 512, 3
    rows = np.column_stack([rng.integers(-3 << 16, 3 << 16, (n, d)), rng.integers(0, 2, n) << 16]).astype(np.int64)
    assert table_value_bytes(rows) == 4
    cfg = TrainConfig(model="logistic", epochs=2, batch_size=8).validate()
    key = Ed25519PrivateKey.generate()
    m = SessionManager(key, public_bytes(key), Limits())
    s, _, _ = m.open_session(cfg, b"\x01" * 32, "spot")
    sid = s.session_id
    R = 4
    data_signed = m.upload(iter([(sid, d, n, n, pack(rows, 4).tobytes(), R, 4)]))
    seed, audit = b"\x02" * 32, b"\x03" * 32
    m.commit_randomness(sid, seed, seed_commitment(audit, sid), K)
    for _ev in m.train(sid):
        pass
    rec = s.record["result"]
    openings = [convert.opening_from_proto(msg) for msg in m.prove(sid, audit, "spot")[0]]
    root = data_root(rows, R, 4)
    return {"key": key, "pub": public_bytes(key), "sid": sid, "rows": rows, "cfg": cfg, "R": R, "seed": seed,
            "audit": audit, "root": root, "data_signed": data_signed, "openings": openings,
            "state_root": MerkleTree(rec.tree.leaves()).root, "T": cfg.num_steps(n)}


def _spot(x, openings, value_bytes=4):
    n, d = x["rows"].shape[0], x["rows"].shape[1] - 1
    sched = Schedule(SeedContext(x["sid"], x["root"], x["seed"]), x["cfg"], n, d)
    return checks.check_spot(openings, sid=x["sid"], state_root=x["state_root"], audit_seed=x["audit"], spot_checks=K,
                             num_steps=x["T"], data_root=x["root"], num_rows=n, sched=sched, cfg=x["cfg"],
                             rows_per_leaf=x["R"], value_bytes=value_bytes)


def test_the_honest_narrow_session_spot_checks(session):
    x = session
    assert Statement.decode(x["data_signed"][0]).fields["data_root"] == x["root"]
    assert len(_spot(x, x["openings"])) == K


def test_an_opened_value_that_wraps_to_the_committed_bytes_is_refused(session):
    """A trainer opening v + 2^32 for a committed 4-byte v: as 4 bytes it packs (with wrapping) to the committed
    leaf, but it is another value for the training step. Refused as a malformed opening, never hashed."""
    import copy

    x = session
    for delta in (1 << 32, -(1 << 32), 1 << 40):
        ops = copy.deepcopy(x["openings"])
        r = ops[0]["rows"][0]
        i, j = r["index"], r["proof_index"]
        r["values"][0] += delta
        r["leaf_rows"][i - j * x["R"]][0] += delta
        with pytest.raises(MerkleProofInvalid, match="malformed opening"):
            _spot(x, ops)


def test_the_width_is_bound_to_the_root(session):
    """The same openings checked at another width do not verify: a root names its width."""
    x = session
    with pytest.raises(MerkleProofInvalid, match="not in the committed data"):
        _spot(x, x["openings"], value_bytes=8)


def test_a_trainer_signing_another_width_or_the_wide_root_is_rejected(session):
    """A trainer that re-encodes the client's rows at 8 bytes (another root for the same rows) or signs another
    width: the client's check of the data statement rejects before any seed leaves."""
    x = session
    n, d = x["rows"].shape[0], x["rows"].shape[1] - 1
    checks.check_data(x["pub"], x["data_signed"], x["sid"], data_root=x["root"], num_rows=n, num_features=d,
                      rows_per_leaf=x["R"], value_bytes=4)
    for w, root in ((8, x["root"]), (8, data_root(x["rows"], x["R"], 8)), (2, x["root"])):
        forged = sign(x["key"], Statement("data", x["sid"], {"data_root": root, "num_rows": n, "num_features": d,
                                                             "rows_per_leaf": x["R"], "value_bytes": w}))
        with pytest.raises(BindingMismatch):
            checks.check_data(x["pub"], forged, x["sid"], data_root=x["root"], num_rows=n, num_features=d,
                              rows_per_leaf=x["R"], value_bytes=4)


def test_the_server_refuses_a_non_minimal_width_in_process():
    key = Ed25519PrivateKey.generate()
    m = SessionManager(key, public_bytes(key), Limits())
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4).validate()
    rows = np.arange(-40, 40, dtype=np.int64).reshape(20, 4)  # needs 1 byte
    from protocol.errors import InputError

    for w in (2, 4, 8):
        s, _, _ = m.open_session(cfg, bytes([w]) * 32, "spot")
        with pytest.raises(InputError, match="fits in 1 byte "):
            m.upload(iter([(s.session_id, 3, 20, 20, pack(rows, w).tobytes(), 1, w)]))
        m.close(s.session_id)
