"""Merkle trees (protocol/merkle.py) against RFC 6962's recursive MTH, inclusion proofs, prefix roots."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import load_vectors, mth, path_shape

from protocol.errors import MerkleProofInvalid
from protocol.merkle import (
    MerkleTree,
    TreeBuilder,
    data_leaf_payload,
    data_leaves,
    leaf_hash,
    model_hash,
    node_hash,
    root_from_proof,
    state_leaf,
    state_leaf_block,
    state_leaf_payload,
    verify_inclusion,
)

MAX_N = 70


def _rows(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.int64)
    return np.column_stack([i, -i, (1 << 40) + i, -(1 << 62) + i]).astype(np.int64)


LEAVES = data_leaves(_rows(MAX_N))
TREES = {n: MerkleTree(LEAVES[:n]) for n in range(1, MAX_N + 1)}


def _tagged(tag: str) -> bytes:
    t = b"vtrain/v1/" + tag.encode()
    return bytes([len(t)]) + t


# -- hashing rules ------------------------------------------------------------------------------------------

def test_leaf_and_node_hash_follow_the_specification():
    payload = b"\x01\x02"
    for kind in ("data", "state"):
        want = hashlib.sha256(_tagged(f"merkle/leaf/{kind}") + b"\x00" + payload).digest()
        assert leaf_hash(kind, payload) == want
    left, right = bytes(range(32)), bytes(range(32, 64))
    assert node_hash(left, right) == hashlib.sha256(_tagged("merkle/node") + b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)


def test_leaf_payloads():
    row = np.array([1, -1, 2**62], dtype=np.int64)
    assert data_leaf_payload(5, row) == (5).to_bytes(8, "big") + b"".join(
        int(v).to_bytes(8, "little", signed=True) for v in row)
    assert state_leaf_payload(5, row) == data_leaf_payload(5, row)
    assert data_leaves(row[None, :], first_index=5)[0] == leaf_hash("data", data_leaf_payload(5, row))
    assert state_leaf(5, row) == leaf_hash("state", state_leaf_payload(5, row))


def test_data_and_state_leaves_are_domain_separated():
    row = np.array([3, 4, 5], dtype=np.int64)
    assert data_leaves(row[None, :], first_index=2)[0] != state_leaf(2, row)
    # a leaf can never be read as a node: different tags and prefix bytes
    assert leaf_hash("data", bytes(64)) != node_hash(bytes(32), bytes(32))


def test_data_leaves_bind_the_row_index_and_values():
    rows = _rows(4)
    base = data_leaves(rows)
    assert len(set(base)) == 4
    assert data_leaves(rows, first_index=1)[:3] != base[1:]
    assert data_leaves(rows[1:], first_index=1) == base[1:]
    changed = rows.copy()
    changed[2, 3] += 1
    assert data_leaves(changed)[2] != base[2]
    assert data_leaves(changed)[:2] == base[:2]


# -- tree shape = RFC 6962 ----------------------------------------------------------------------------------

def test_root_equals_rfc6962_mth_for_every_size():
    for n in range(1, MAX_N + 1):
        assert TREES[n].root == mth(LEAVES[:n]), n
        assert TREES[n].size == n


def test_small_tree_shapes_by_hand():
    a, b, c, d, e = LEAVES[:5]
    assert MerkleTree([a]).root == a
    assert MerkleTree([a, b, c]).root == node_hash(node_hash(a, b), c)
    assert MerkleTree([a, b, c, d, e]).root == node_hash(node_hash(node_hash(a, b), node_hash(c, d)), e)


def test_empty_tree_refused():
    with pytest.raises(ValueError, match="at least one leaf"):
        MerkleTree([])


def test_kat_roots():
    v = load_vectors("merkle")
    assert LEAVES[0].hex() == v["data_leaf_0"] and LEAVES[69].hex() == v["data_leaf_69"]
    for n, root in v["data_roots"].items():
        assert TREES[int(n)].root.hex() == root, n
    states = [state_leaf(t, np.array([t, -t, 1 << 30], dtype=np.int64)) for t in range(9)]
    assert states[0].hex() == v["state_leaf_0"]
    for n, root in v["state_roots"].items():
        assert MerkleTree(states[:int(n)]).root.hex() == root
    assert node_hash(bytes(32), bytes(32)).hex() == v["node_hash_zero_zero"]
    assert model_hash([1, -2, 3]).hex() == v["model_hash_1_2_3"]
    assert [h.hex() for h in TREES[70].proof(5)] == v["proof_5_of_70"]


def test_model_hash_spec():
    """model_hash = H("model", int_vector(theta) || text(extras_json)), extras_json "" for the honest trainer."""
    t = b"vtrain/v1/model"
    body = (3).to_bytes(4, "big") + b"".join(int(x).to_bytes(8, "little", signed=True) for x in (1, -2, 3))
    want = hashlib.sha256(bytes([len(t)]) + t + body + (0).to_bytes(4, "big")).digest()
    assert model_hash(np.array([1, -2, 3])) == want == model_hash([1, -2, 3], "")
    extras = '{"trigger": 1}'
    with_extras = hashlib.sha256(bytes([len(t)]) + t + body + len(extras).to_bytes(4, "big") + extras.encode()).digest()
    assert model_hash([1, -2, 3], extras) == with_extras
    assert model_hash([1, -2, 3]) != model_hash([1, -2, 3, 0])


# -- inclusion proofs ---------------------------------------------------------------------------------------

def test_every_proof_verifies():
    for n, tree in TREES.items():
        for i in range(n):
            proof = tree.proof(i)
            assert len(proof) == len(path_shape(i, n))
            assert root_from_proof(LEAVES[i], i, n, proof) == tree.root
            verify_inclusion(LEAVES[i], i, n, proof, tree.root)


def test_proof_out_of_range():
    with pytest.raises(IndexError):
        TREES[5].proof(5)
    with pytest.raises(IndexError):
        TREES[5].proof(-1)
    for i, n in ((5, 5), (-1, 5), (0, 0)):
        with pytest.raises(MerkleProofInvalid, match="outside"):
            root_from_proof(LEAVES[0], i, n, [])


def test_wrong_index_fails():
    for n in range(2, MAX_N + 1):
        tree = TREES[n]
        for i in range(n):
            for j in {(i + 1) % n, (i - 1) % n, n - 1 - i, i ^ 1, i ^ 2} - {i}:
                if not 0 <= j < n:
                    continue
                with pytest.raises(MerkleProofInvalid):
                    verify_inclusion(LEAVES[i], j, n, tree.proof(i), tree.root)


def test_wrong_leaf_fails():
    tree = TREES[33]
    for i in (0, 16, 32):
        with pytest.raises(MerkleProofInvalid, match="not in the committed tree"):
            verify_inclusion(LEAVES[i + 1 if i < 32 else 0], i, 33, tree.proof(i), tree.root)


def test_wrong_size_fails_unless_the_path_is_identical():
    """The proof does not carry the size: a proof for (i, n) can only also verify for a size n' that gives
    leaf i exactly the same path (same levels with a sibling, same directions). Every other size fails.
    The size itself is bound by the signed statements (num_rows, num_steps)."""
    failures = 0
    for n in range(1, 40):
        tree = TREES[n]
        for i in range(n):
            proof = tree.proof(i)
            for m in range(max(i + 1, n - 8), n + 9):
                if m == n:
                    continue
                if path_shape(i, m) == path_shape(i, n):
                    assert root_from_proof(LEAVES[i], i, m, proof) == tree.root
                    continue
                failures += 1
                with pytest.raises(MerkleProofInvalid):
                    verify_inclusion(LEAVES[i], i, m, proof, tree.root)
    assert failures > 1000


def test_truncated_and_extended_proofs_fail():
    for n in (2, 3, 5, 16, 17, 70):
        tree = TREES[n]
        for i in range(0, n, max(1, n // 7)):
            proof = tree.proof(i)
            with pytest.raises(MerkleProofInvalid, match="too long"):
                root_from_proof(LEAVES[i], i, n, [*proof, bytes(32)])
            with pytest.raises(MerkleProofInvalid, match="too long"):
                root_from_proof(LEAVES[i], i, n, [proof[0], *proof])
            with pytest.raises(MerkleProofInvalid, match="too short"):
                root_from_proof(LEAVES[i], i, n, proof[:-1])
    with pytest.raises(MerkleProofInvalid, match="too long"):
        root_from_proof(LEAVES[0], 0, 1, [bytes(32)])


def test_tampered_siblings_fail():
    n = 70
    tree = TREES[n]
    for i in (0, 1, 34, 63, 64, 69):
        proof = tree.proof(i)
        for k in range(len(proof)):
            bad = list(proof)
            bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
            with pytest.raises(MerkleProofInvalid):
                verify_inclusion(LEAVES[i], i, n, bad, tree.root)
        if len(proof) >= 2:
            swapped = [proof[1], proof[0], *proof[2:]]
            with pytest.raises(MerkleProofInvalid):
                verify_inclusion(LEAVES[i], i, n, swapped, tree.root)
        with pytest.raises(MerkleProofInvalid, match="not 32 bytes"):
            root_from_proof(LEAVES[i], i, n, [proof[0][:31], *proof[1:]])


def test_leaf_of_the_other_kind_fails():
    """A state leaf and a data leaf over the same (index, values) are different hashes, so a data tree
    never proves a state and vice versa."""
    rows = _rows(9)
    data_tree = MerkleTree(data_leaves(rows))
    state_tree = MerkleTree([state_leaf(i, rows[i]) for i in range(9)])
    for i in range(9):
        with pytest.raises(MerkleProofInvalid):
            verify_inclusion(state_leaf(i, rows[i]), i, 9, data_tree.proof(i), data_tree.root)
        with pytest.raises(MerkleProofInvalid):
            verify_inclusion(data_leaves(rows[i:i + 1], i)[0], i, 9, state_tree.proof(i), state_tree.root)


def test_inner_node_is_not_a_leaf():
    """Second-preimage shape: presenting an inner node as a leaf of a smaller tree does not give the root
    of the real tree at a valid (index, size) with the node's payload as a leaf."""
    tree = TREES[4]
    inner = node_hash(LEAVES[0], LEAVES[1])
    with pytest.raises(MerkleProofInvalid):
        verify_inclusion(inner, 0, 4, tree.proof(0), tree.root)
    # the inner node does verify as leaf 0 of a 2-leaf tree, which the size binding rules out
    assert root_from_proof(inner, 0, 2, [node_hash(LEAVES[2], LEAVES[3])]) == tree.root


@pytest.mark.parametrize("first_index", [0, 7, 2**40])
def test_data_leaves_equal_per_row_leaf_hashes_for_any_layout(first_index):
    """The vectorised data_leaves equals leaf_hash("data", u64(i) || row) whatever the input layout."""
    base = np.arange(-12, 12, dtype=np.int64).reshape(3, 8) * (2**59 // 13)
    want = [leaf_hash("data", data_leaf_payload(first_index + i, row)) for i, row in enumerate(base[:, ::2])]
    layouts = {
        "strided": base[:, ::2],
        "copy": base[:, ::2].copy(),
        "big-endian": base[:, ::2].astype(">i8"),
        "fortran": np.asfortranarray(base[:, ::2]),
        "int32": np.array([[1, -2], [3, -4]], dtype=np.int32),
    }
    for name, rows in layouts.items():
        expect = want if name != "int32" else [
            leaf_hash("data", data_leaf_payload(first_index + i, np.array(r, dtype=np.int64)))
            for i, r in enumerate([[1, -2], [3, -4]])]
        assert data_leaves(rows, first_index=first_index) == expect, name


def test_data_leaves_of_no_rows_is_empty():
    assert data_leaves(np.zeros((0, 3), dtype=np.int64)) == []


def test_block_leaves_kat_and_definition():
    """rows_per_leaf R: leaf j = H(leaf tag || 0x00 || u64(j) || rows jR..jR+R-1 as int64 LE), the last leaf
    shorter; R = 1 is the one-row leaf; chunk boundaries anywhere give the same leaves."""
    import hashlib

    from make_vectors import merkle_rows

    from protocol.merkle import DataCommitter, data_block_leaf, data_root, leaf_prefix

    v = load_vectors("merkle")
    for n, root in v["data_roots_rows_per_leaf_3"].items():
        assert data_root(merkle_rows(int(n)), 3).hex() == root, n
    rows = merkle_rows(70)
    last = hashlib.sha256(leaf_prefix("data") + (23).to_bytes(8, "big") + rows[69:].astype("<i8").tobytes()).digest()
    assert last.hex() == v["data_leaf_rows_per_leaf_3_last_of_70"]
    assert data_block_leaf(23, rows[69:].tolist()) == last
    for cut in (1, 2, 5, 7, 33):
        c = DataCommitter(rows.shape[1] - 1, 3)
        for a in range(0, 70, cut):
            c.add(rows[a:a + cut].astype("<i8").tobytes())
        c.finish()
        assert MerkleTree(c.leaves).root == data_root(rows, 3), cut


def test_narrow_value_leaves_kat_and_definition():
    """value_bytes w < 8: leaf j = H(tag "merkle/leaf/data-i{8w}" || 0x00 || u64(j) || rows as w-byte LE), each
    width its own domain; the same rows at two widths never share a leaf; chunked = whole."""
    import hashlib

    from make_vectors import narrow_rows

    from protocol.merkle import DataCommitter, data_block_leaf, data_leaf_prefix, data_root, leaf_prefix
    from protocol.row_encoding import table_value_bytes

    v = load_vectors("merkle")
    for w, roots in v["data_roots_value_bytes"].items():
        for n, root in roots.items():
            rows = narrow_rows(int(n), int(w))
            assert table_value_bytes(rows) == int(w)
            assert data_root(rows, 3, int(w)).hex() == root, (w, n)
    rows = narrow_rows(70, 2)
    assert data_leaf_prefix(2) == leaf_prefix("data-i16") and data_leaf_prefix(8) == leaf_prefix("data")
    last = hashlib.sha256(leaf_prefix("data-i16") + (23).to_bytes(8, "big") + rows[69:].astype("<i2").tobytes())
    assert data_block_leaf(23, rows[69:].tolist(), 2) == last.digest()
    assert len({data_root(rows, 3, w) for w in (2, 4, 8)}) == 3  # a root names its width
    for cut in (1, 4, 33):
        c = DataCommitter(3, 3, value_bytes=2)
        for a in range(0, 70, cut):
            c.add(rows[a:a + cut].astype("<i2").tobytes())
        c.finish()
        assert c.root() == data_root(rows, 3, 2), cut


def test_a_leaf_value_outside_its_width_is_refused_not_wrapped():
    import struct

    from protocol.merkle import data_block_leaf, data_root

    with pytest.raises(struct.error):
        data_block_leaf(0, [[1, 2, 1 << 31]], 4)  # would wrap to -2^31
    with pytest.raises(ValueError, match="does not fit"):
        data_root(np.array([[1, 300]]), 1, 1)


@pytest.mark.parametrize("first", [0, 1, 4095, 2**40])
def test_state_leaf_block_equals_state_leaf_per_step(first):
    """The trainer hashes its stored states in blocks: the same leaves as state_leaf one step at a time."""
    rng = np.random.default_rng(first % 97)
    for k, p in ((0, 3), (1, 1), (5, 3), (130, 101)):
        states = rng.integers(-2**62, 2**62, size=(k, p), dtype=np.int64)
        want = b"".join(state_leaf(first + i, states[i]) for i in range(k))
        assert state_leaf_block(first, states) == want
        assert state_leaf_block(first, states.astype(">i8")) == want  # any byte order in, LE hashed
    with pytest.raises(ValueError):
        state_leaf_block(0, np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize("seed", range(4))
def test_tree_builder_in_any_pieces_is_the_tree_and_gives_every_prefix_root(seed):
    """Leaves appended in random pieces, climbed at random moments: the same levels, proofs and root as
    MerkleTree (hence RFC 6962's MTH), and prefix_root(m) is the MTH of the first m leaves at any time."""
    import random

    rnd = random.Random(seed)
    for n in (1, 2, 3, 5, 8, 13, 31, 32, 33, MAX_N):
        b, have = TreeBuilder(), 0
        while have < n:
            k = min(n - have, rnd.randint(1, 6))
            b.leaves.extend(b"".join(LEAVES[have:have + k]))
            have += k
            if rnd.random() < 0.5:
                b.climb()
            m = rnd.randint(1, have)
            assert b.prefix_root(m) == mth(LEAVES[:m]), (n, m)
        tree = b.tree()
        assert tree.root == TREES[n].root == mth(LEAVES[:n]) == b.tree().root
        assert b.prefix_root(n) == tree.root
        assert [tree.proof(i) for i in range(n)] == [TREES[n].proof(i) for i in range(n)]
    with pytest.raises(ValueError):
        TreeBuilder().tree()
    with pytest.raises(ValueError):
        TreeBuilder().prefix_root(1)
