"""The data tree, however it is built (at once, or while chunks of any size arrive, inner nodes hashed as soon as
their children are known), is the tree docs/PROTOCOL.md sections 3-4 define, checked against an independent
reference written from that text (RFC 6962 MTH, leaf payload u64(j) || rows jR..min(jR+R, n)-1 at w bytes).

A builder that hashed a node too early (before its right child was final), carried an odd node to the wrong
place, or lost bytes of a leaf split across chunks would give a root no independent implementation computes:
every honest upload would then disagree between client and trainer, or, worse, two different tables could be
mistaken for one. Inclusion proofs are checked against the reference root, and the RFC 6962 shape against the
level-by-level description.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.merkle import DataCommitter, MerkleTree, data_root, verify_inclusion

PREFIX = b"vtrain/v1/"


def _tag(tag: str) -> bytes:  # u8(len(T)) || T
    t = PREFIX + tag.encode()
    return bytes([len(t)]) + t


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_tag("merkle/node") + b"\x01" + left + right).digest()


def ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962: split at the largest power of two below n (as tests/helpers.mth, but on this module's own node
    hash: nothing of protocol/merkle.py is used by the reference)."""
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return ref_node(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_levels(leaves: list[bytes]) -> bytes:
    """The same tree, level by level: pairs hashed, an odd last node carried up unchanged."""
    level = list(leaves)
    while len(level) > 1:
        nxt = [ref_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def ref_data_leaves(rows: np.ndarray, R: int, w: int) -> list[bytes]:
    kind = "data" if w == 8 else f"data-i{8 * w}"
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[w]
    out = []
    for j in range(0, rows.shape[0], R):
        block = [int(v) for v in rows[j:j + R].reshape(-1)]
        payload = struct.pack(">Q", j // R) + struct.pack(f"<{len(block)}{code}", *block)
        out.append(hashlib.sha256(_tag(f"merkle/leaf/{kind}") + b"\x00" + payload).digest())
    return out


@st.composite
def tables(draw, big_leaves: bool = False):
    """Small leaves (a row or a few; hashed from one interleaved buffer) or leaves of >= 2 KiB (hashed from the
    chunk): the two paths of an incremental committer."""
    n = draw(st.integers(1, 700 if big_leaves else 140))
    d = draw(st.integers(5, 9) if big_leaves else st.integers(0, 4))
    w = draw(st.sampled_from([4, 8] if big_leaves else [1, 2, 4, 8]))
    R = draw(st.sampled_from([43, 64, 80]) if big_leaves else st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    lo, hi = -(1 << (8 * w - 1)), (1 << (8 * w - 1)) - 1
    rows = np.random.default_rng(seed).integers(lo, hi, size=(n, d + 1), endpoint=True, dtype=np.int64)
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), max_size=6, unique=True))) if n > 1 else []
    return rows, R, w, cuts


def test_the_reference_matches_the_known_answer_vectors():
    from helpers import load_vectors

    vec = load_vectors("merkle")
    rows = np.array([(i, -i, 2**40 + i, -2**62 + i) for i in range(70)], dtype=np.int64)
    roots = vec["data_roots"]
    for n, root in (roots.items() if isinstance(roots, dict) else enumerate(roots)):
        n = int(n)
        if n:
            assert ref_mth(ref_data_leaves(rows[:n], 1, 8)).hex() == root, n


@settings(max_examples=250, deadline=None)
@given(st.one_of(tables(), tables(big_leaves=True)))
def test_streamed_commitment_is_the_specified_tree(table):
    rows, R, w, cuts = table
    leaves = ref_data_leaves(rows, R, w)
    want = ref_mth(leaves)
    assert ref_levels(leaves) == want  # the two descriptions of the shape agree
    c = DataCommitter(rows.shape[1] - 1, R, value_bytes=w)
    packed = rows.astype({1: "<i1", 2: "<i2", 4: "<i4", 8: "<i8"}[w]).tobytes()
    row_bytes = w * rows.shape[1]
    for a, b in zip([0, *cuts], [*cuts, rows.shape[0]]):  # chunks of whole rows, leaves split across them
        c.add(packed[a * row_bytes:b * row_bytes])
    c.finish()
    assert c.leaves == leaves
    assert c.root() == want
    assert data_root(rows, R, w) == want
    tree = MerkleTree(b"".join(leaves))
    assert tree.root == want
    for i in sorted({0, len(leaves) - 1, len(leaves) // 2, (len(leaves) * 7) // 9}):
        verify_inclusion(leaves[i], i, len(leaves), tree.proof(i), want)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 600), st.lists(st.integers(0, 599), max_size=12))
def test_every_size_and_the_prefix_roots_checkpoints_sign(n, steps):
    """Whole trees of every size, and the prefix roots (leaves 0..t) that checkpoint statements sign and the
    audit recomputes (docs/PROTOCOL.md section 3, "Prefix roots")."""
    from protocol.state_leaves import scan

    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    assert MerkleTree(b"".join(leaves)).root == ref_mth(leaves) == ref_levels(leaves)
    ts = sorted({t for t in steps if t < n})
    got = scan(b"".join(leaves), ts)
    assert got.root == ref_mth(leaves)
    for t in ts:
        assert got.prefixes[t] == (leaves[t], ref_mth(leaves[:t + 1])), t


def ref_state_leaf(t: int, theta) -> bytes:
    payload = struct.pack(">Q", t) + np.asarray(theta, dtype="<i8").tobytes()
    return hashlib.sha256(_tag("merkle/leaf/state") + b"\x00" + payload).digest()


@settings(max_examples=12, deadline=None)
@given(st.integers(8, 300), st.sampled_from([1, 2, 4]), st.integers(1, 40), st.integers(0, 2**31))
def test_the_trainers_streamed_leaves_and_checkpoint_roots_are_the_specified_ones(n, B, interval, seed):
    """Whatever order the trainer hashes its per-step states in (per step, or in blocks when an event needs them)
    and however it keeps prefix roots, each leaf it streams is state_leaf(t, theta_t) of the states it trained
    through, each checkpoint signs the MTH of leaves 0..t, and the final statement the MTH of all."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.prg import SeedContext
    from protocol.statements import Statement
    from protocol.training import TrainConfig
    from prover.adversaries import get_strategy
    from prover.trainer import FinalEvent, LeavesEvent, SignedEvent, run_training

    rng = np.random.default_rng(seed)
    X = rng.integers(-2**16, 2**16, size=(n, 3))
    Y = rng.integers(-2**16, 2**16, size=n)
    cfg = TrainConfig(model="linear", epochs=2, batch_size=B, checkpoint_interval=interval)
    ctx = SeedContext(bytes(16), bytes(32), rng.bytes(32))
    record: dict = {}
    streamed, checkpoints, final = bytearray(), [], None
    for ev in run_training(key=Ed25519PrivateKey.generate(), session_id=bytes(16), X=X, Y=Y, cfg=cfg, ctx=ctx,
                           strategy=get_strategy(None), progress_every=0.0, record=record):
        if isinstance(ev, LeavesEvent):
            assert ev.first_step * 32 == len(streamed)
            streamed += ev.hashes
        elif isinstance(ev, SignedEvent):
            checkpoints.append((Statement.decode(ev.statement).fields, len(streamed) // 32))
        elif isinstance(ev, FinalEvent):
            final = Statement.decode(ev.statement).fields
    states = record["result"].states
    leaves = [ref_state_leaf(t, states[t]) for t in range(states.shape[0])]
    assert bytes(streamed) == b"".join(leaves)
    assert len(checkpoints) == (states.shape[0] - 1) // interval
    for fields, known in checkpoints:
        t = fields["step"]
        assert t % interval == 0 and known >= t + 1  # the leaves it signs over were streamed before it
        assert fields["state_leaf"] == leaves[t] and fields["prefix_root"] == ref_mth(leaves[:t + 1]), t
    assert final is not None and final["state_root"] == ref_mth(leaves) and final["num_steps"] == len(leaves) - 1
