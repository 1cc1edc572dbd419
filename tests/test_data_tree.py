"""prover/data_tree.py: the trainer's pruned data tree gives the full tree's root and proofs, byte for byte,
and refuses to open rows that no longer hash to the committed tree."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.merkle import MerkleTree, data_leaves, data_root, verify_inclusion
from prover.data_tree import RowTree, session_leaf_hashes


class _Rows:  # the two attributes of a session the leaf function reads
    def __init__(self, X, Y):
        self.X, self.Y = X, Y


def _session(n: int, d: int, seed: int, w: int):
    rng = np.random.default_rng(seed)
    lim = 1 << (8 * w - 1)
    X = rng.integers(-lim, lim, size=(n, d)).astype(f"i{w}")
    Y = rng.integers(-lim, lim, size=n).astype(np.int64)
    return _Rows(X, Y)


def _full(s, R, w):
    rows = np.column_stack([s.X.astype(np.int64), s.Y])
    return MerkleTree(b"".join(data_leaves(rows, 0, R, w))), rows


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), d=st.integers(1, 4), R=st.integers(1, 5), cut=st.integers(1, 5),
       w=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**32 - 1))
def test_same_root_and_proofs_as_the_full_tree(n, d, R, cut, w, seed):
    s = _session(n, d, seed, w)
    full, rows = _full(s, R, w)
    t = RowTree(full, session_leaf_hashes(s, d, R, w), cut)
    assert t.root == full.root == data_root(rows, R, w)
    assert t.size == full.size
    for j in range(full.size):
        assert t.proof(j) == full.proof(j)
        verify_inclusion(full.leaf(j), j, full.size, t.proof(j), full.root)
    picks = list(range(full.size))[::-1] + [0, full.size - 1, full.size - 1]  # any order, repeats
    assert t.proofs(picks) == [full.proof(j) for j in picks]
    if full.size > 1 << cut:
        assert t.nbytes() < full.nbytes() / (1 << cut) * 2 + 64


def test_changed_rows_are_never_opened():
    s = _session(100, 3, 5, 4)
    full, _ = _full(s, 1, 4)
    t = RowTree(full, session_leaf_hashes(s, 3, 1, 4))
    t.proof(42)
    s.X[42, 1] ^= 1
    with pytest.raises(AssertionError, match="no longer hash"):
        t.proof(42)
    with pytest.raises(AssertionError, match="no longer hash"):
        t.proof(43)  # same block (leaves 42 and 43): its path went through the changed row
    t.proof(50)  # another block


def test_small_trees_and_bounds():
    s = _session(5, 2, 1, 2)
    full, _ = _full(s, 1, 2)
    t = RowTree(full, session_leaf_hashes(s, 2, 1, 2), 3)
    assert [t.proof(j) for j in range(5)] == [full.proof(j) for j in range(5)]
    with pytest.raises(IndexError):
        t.proof(5)
    s.Y[0] += 1
    with pytest.raises(AssertionError):
        t.proof(0)


def test_no_proof_before_the_rows_are_laid_out():
    s = _session(40, 2, 2, 2)
    full, _ = _full(s, 1, 2)
    t = RowTree(full, session_leaf_hashes(s, 2, 1, 2))
    s.X = None  # a session whose rows are still the upload's chunks
    with pytest.raises(AssertionError, match="before the rows were laid out"):
        t.proof(3)
