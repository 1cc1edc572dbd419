"""Attacks on the canonical value width (issue #8: data values sent and hashed at ``value_bytes`` w in {1,2,4,8};
protocol/row_encoding.py, protocol/merkle.py, prover/upload.py, verifier/checks.py check_spot), complementing
tests/test_row_encoding.py: values at the int8/int16/int32 boundaries through all three hashing paths (the
client's packed array, the server's received bytes in arbitrary chunks, the verifier's Python ints), leaf
payloads that are byte-identical at two widths, a trainer opening wrapped values at widths 1 and 2, and a
client declaring widths the protocol does not have or a width wider than its rows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import convert
from protocol.errors import InputError, MerkleProofInvalid
from protocol.keys import public_bytes
from protocol.merkle import DataCommitter, MerkleTree, data_block_leaf, data_root
from protocol.prg import SeedContext, seed_commitment
from protocol.row_encoding import pack, table_value_bytes, value_range
from protocol.training import Schedule, TrainConfig
from prover.session import Limits, SessionManager
from verifier import checks

EDGES = [-(2**63), -(2**31) - 1, -(2**31), -32769, -32768, -129, -128, -1, 0, 1, 127, 128, 32767, 32768,
         2**31 - 1, 2**31, 2**63 - 1]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(vals=st.lists(st.sampled_from(EDGES), min_size=3, max_size=40), d1=st.integers(1, 3), R=st.integers(1, 5),
       cut=st.integers(0, 1000))
def test_the_three_hashing_paths_agree_at_the_width_boundaries(vals, d1, R, cut):
    """Held: at the table's canonical width, the root from the packed array (client), from its bytes received in
    two arbitrary pieces (server) and from Python-int leaves (verifier's check_spot) is one root; a narrower
    width cannot encode the rows (never wraps)."""
    n = len(vals) // d1
    rows = np.array(vals[:n * d1], dtype=np.int64).reshape(n, d1)
    w = table_value_bytes(rows)
    lo, hi = value_range(w)
    assert lo <= rows.min() and rows.max() < hi
    want = data_root(rows, R, w)
    raw = pack(rows, w).tobytes()
    k = (cut % (n + 1)) * d1 * w  # a chunk boundary anywhere between rows (leaves span chunks)
    c = DataCommitter(d1 - 1, R, value_bytes=w)
    c.add(memoryview(raw[:k]))
    c.add(memoryview(raw[k:]))
    c.finish()
    assert c.root() == want
    py = rows.tolist()
    leaves = [data_block_leaf(j, py[j * R:(j + 1) * R], w) for j in range(-(-n // R))]
    assert MerkleTree(leaves).root == want
    if w > 1:
        with pytest.raises(ValueError):
            pack(rows, w // 2)


@pytest.mark.parametrize(("w1", "w2"), [(1, 8), (2, 8), (1, 2), (4, 8), (1, 4)])
def test_byte_identical_payloads_at_two_widths_give_two_roots(w1, w2):
    """Held: one byte string read as d1 narrow values or as fewer wide values per row (same leaf payload bytes,
    same index) commits to different rows, so it must have a different root: each width has its own leaf tag."""
    rng = np.random.default_rng(1)
    narrow = rng.integers(*value_range(w1), size=(6, 8 // w1), dtype=np.int64)  # rows of 8 bytes at w1
    raw = pack(narrow, w1).tobytes()
    wide = np.frombuffer(raw, dtype=f"<i{w2}").astype(np.int64).reshape(6, -1)
    assert pack(wide, w2).tobytes() == raw  # the same leaf payloads
    assert data_root(narrow, 2, w1) != data_root(wide, 2, w2)


def _manager():
    key = Ed25519PrivateKey.generate()
    return key, SessionManager(key, public_bytes(key), Limits())


@pytest.fixture(scope="module", params=[1, 2], ids=["int8", "int16"])
def narrow_session(request):
    """An honest in-process session whose rows span the whole int8 (int16) range, boundaries included."""
    w = request.param
    lo, hi = value_range(w)
    rng = np.random.default_rng(w)
    n, d = 256, 3
    X = rng.integers(lo, hi, (n, d))
    X[0], X[1] = lo, hi - 1
    rows = np.column_stack([X, rng.integers(0, 2, n)]).astype(np.int64)
    assert table_value_bytes(rows) == w
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=8, frac_bits=4, weight_bits=40).validate()
    _key, m = _manager()
    s, _, _ = m.open_session(cfg, b"\x05" * 32, "spot")
    sid, R = s.session_id, 3
    m.upload(iter([(sid, d, n, n, pack(rows, w).tobytes(), R, w)]))
    seed, audit = b"\x06" * 32, b"\x07" * 32
    m.commit_randomness(sid, seed, seed_commitment(audit, sid), 8)
    for _ev in m.train(sid):
        pass
    rec = s.record["result"]
    openings = [convert.opening_from_proto(msg) for msg in m.prove(sid, audit, "spot")[0]]
    root = data_root(rows, R, w)
    return {"w": w, "sid": sid, "rows": rows, "cfg": cfg, "R": R, "seed": seed, "audit": audit, "root": root,
            "openings": openings, "state_root": MerkleTree(rec.tree.leaves()).root, "T": cfg.num_steps(n)}


def _spot(x, openings, w=None):
    n, d = x["rows"].shape[0], x["rows"].shape[1] - 1
    sched = Schedule(SeedContext(x["sid"], x["root"], x["seed"]), x["cfg"], n, d)
    return checks.check_spot(openings, sid=x["sid"], state_root=x["state_root"], audit_seed=x["audit"], spot_checks=8,
                             num_steps=x["T"], data_root=x["root"], num_rows=n, sched=sched, cfg=x["cfg"],
                             rows_per_leaf=x["R"], value_bytes=w or x["w"])


def test_an_honest_narrow_session_at_the_boundaries_spot_checks(narrow_session):
    assert len(_spot(narrow_session, narrow_session["openings"])) == 8


@pytest.mark.parametrize("col", [0, -1])  # a feature, or the target
def test_an_opened_value_wrapping_at_width_1_or_2_is_refused(narrow_session, col):
    """A trainer opening v +- 2^(8w) (same w low bytes, so the same leaf if it were packed with wrapping):
    refused as a malformed opening before hashing, for a feature and for the target."""
    x = narrow_session
    span = 1 << (8 * x["w"])
    for delta in (span, -span, 2 * span):
        ops = copy.deepcopy(x["openings"])
        r = ops[-1]["rows"][-1]
        i, j = r["index"], r["proof_index"]
        r["values"][col] += delta
        r["leaf_rows"][i - j * x["R"]][col] += delta
        with pytest.raises(MerkleProofInvalid, match="malformed opening"):
            _spot(x, ops)


def test_narrow_openings_do_not_verify_at_any_other_width(narrow_session):
    x = narrow_session
    for w in (1, 2, 4, 8):
        if w != x["w"]:
            with pytest.raises(MerkleProofInvalid):
                _spot(x, x["openings"], w)


@pytest.mark.parametrize("w", [3, 5, 16, 2**32 - 1])
def test_the_server_refuses_a_width_the_protocol_does_not_have(w):
    _key, m = _manager()
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4).validate()
    s, _, _ = m.open_session(cfg, b"\x08" * 32, "spot")
    rows = np.arange(-8, 8, dtype=np.int64).reshape(4, 4)
    with pytest.raises(InputError, match="value_bytes must be one of"):
        m.upload(iter([(s.session_id, 3, 4, 4, pack(rows, 1).tobytes() * min(w, 16), 1, w)]))


def test_width_0_means_8_and_is_then_minimal_only_for_wide_rows():
    _key, m = _manager()
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4, weight_bits=48).validate()
    wide = np.array([[2**40, -1, 0, 5]] * 4, dtype=np.int64)
    s, _, _ = m.open_session(cfg, b"\x09" * 32, "spot")
    m.upload(iter([(s.session_id, 3, 4, 4, pack(wide, 8).tobytes(), 1, 0)]))
    s2, _, _ = m.open_session(cfg, b"\x0a" * 32, "spot")
    with pytest.raises(InputError, match="fits in 1 byte"):
        m.upload(iter([(s2.session_id, 3, 4, 4, pack(wide % 100, 8).tobytes(), 1, 0)]))


def test_the_minimal_width_is_the_whole_table_s_not_a_chunk_s():
    """Held: a 2-byte table whose first chunks fit in 1 byte is accepted (the width is the table's); a table that
    fits in 1 byte everywhere is refused at 2 even when sent in many chunks."""
    _key, m = _manager()
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4).validate()
    small = np.full((8, 4), -3, dtype=np.int64)
    big = small.copy()
    big[-1, -1] = -129
    s, _, _ = m.open_session(cfg, b"\x0b" * 32, "spot")
    m.upload(iter([(s.session_id, 3, 8, 4, pack(big[:4], 2).tobytes(), 1, 2),
                   (s.session_id, 3, 8, 4, pack(big[4:], 2).tobytes(), 1, 2)]))
    s2, _, _ = m.open_session(cfg, b"\x0c" * 32, "spot")
    with pytest.raises(InputError, match="fits in 1 byte"):
        m.upload(iter([(s2.session_id, 3, 8, 1, pack(small[k:k + 1], 2).tobytes(), 1, 2) for k in range(8)]))


def test_an_edited_width_in_a_real_transcript_is_altered_never_blamed_on_the_trainer():
    """Someone editing a saved transcript's ``value_bytes`` (with or without the leaf rows re-encoded): the
    width is in the client record the trainer signed through the client nonce, so the audit says the file was
    altered, never that the trainer cheated, and never VERIFIED/spot-checked."""
    from test_transcript_mutations import record_session

    from verifier.audit import verify_transcript

    tr, v = record_session(None, b"attack-width", 2)
    assert v.status == "spot-checked"
    assert verify_transcript(copy.deepcopy(tr)).status == "spot-checked"
    for w in (1, 2, 4, 8):
        if w == tr["value_bytes"]:
            continue
        bad = copy.deepcopy(tr)
        bad["value_bytes"] = w
        assert verify_transcript(bad).status == "altered", w
