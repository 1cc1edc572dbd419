"""The data tree a trainer keeps for a session between its upload and its spot check, in 1/2^CUT of the memory.

The full tree (docs/PROTOCOL.md section 4: leaves over blocks of rows, RFC 6962-style nodes) costs 64 bytes per
leaf; at one row per leaf (the default whenever the spot check opens many rows) that is most of the size of the
rows themselves. The trainer already holds the rows, so it keeps only the tree's levels from level ``CUT`` up
and, for an inclusion proof, re-hashes the 2^CUT leaves of the aligned block around the opened leaf from the
rows. Root and proofs are the same bytes as the full tree's (tests/test_data_tree.py), and every re-hashed
block is compared with the kept node above it: rows that changed after the commitment can never be opened under
the committed root (the trainer would sign an opening the client refuses; a bug, so it is an error here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from protocol import row_encoding
from protocol.merkle import MerkleTree, data_leaf_prefix, node_hash

CUT = 2  # keep levels >= 2: a quarter of the nodes; a proof re-hashes 4 leaves and 3 nodes


class RowTree:
    """A MerkleTree's root and inclusion proofs from its levels >= ``cut`` and a function giving leaf hashes
    from the rows: ``leaf_hashes(lo, hi)`` -> the 32-byte hashes of leaves lo..hi-1."""

    def __init__(self, tree: MerkleTree, leaf_hashes: Callable[[int, int], list[bytes]], cut: int = CUT):
        self.root, self.size, self.cut = tree.root, tree.size, cut
        self._leaf_hashes = leaf_hashes
        # a tree of at most 2^cut leaves is its own block; otherwise the nodes of level `cut` rebuilt into a
        # tree give exactly the full tree's levels from `cut` up (each level is built from the one below only)
        self._upper = MerkleTree(tree.level(cut)) if tree.size > 1 << cut else None

    def nbytes(self) -> int:
        return self._upper.nbytes() if self._upper is not None else 32

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        lo = index >> self.cut << self.cut
        level, i, out = self._leaf_hashes(lo, min(lo + (1 << self.cut), self.size)), index - lo, []
        # lo is a multiple of 2^cut, so below level `cut` the block's nodes are the full tree's, with the same
        # siblings present and the same odd last node carried up (the last block ends where the tree does)
        while len(level) > 1:
            if i ^ 1 < len(level):
                out.append(level[i ^ 1])
            nxt = [node_hash(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
            level, i = nxt + level[len(nxt) * 2:], i >> 1
        top = self._upper.leaf(index >> self.cut) if self._upper is not None else self.root
        if level[0] != top:
            raise AssertionError(f"the rows of data leaves {lo}.. no longer hash to the committed data tree")
        return out + (self._upper.proof(index >> self.cut) if self._upper is not None else [])


def session_leaf_hashes(s, d: int, rows_per_leaf: int, value_bytes: int) -> Callable[[int, int], list[bytes]]:
    """Leaf hashes (docs/PROTOCOL.md section 4: H(prefix || u64(j) || the leaf's rows at the value width)) from
    a session's rows as training laid them out (``s.X`` in the value width, ``s.Y``): proofs are asked for at
    the spot check, after training. Every value fits the width (the upload checked it)."""
    R, prefix, dtype = rows_per_leaf, data_leaf_prefix(value_bytes), row_encoding.value_dtype(value_bytes)
    L = R * (d + 1) * value_bytes

    def leaf_hashes(lo: int, hi: int) -> list[bytes]:
        if s.X is None:
            raise AssertionError("a data inclusion proof before the rows were laid out")
        a, b = lo * R, min(hi * R, s.X.shape[0])
        rows = np.empty((b - a, d + 1), dtype=dtype)
        rows[:, :d], rows[:, d] = s.X[a:b], s.Y[a:b]
        raw = rows.tobytes()
        return [hashlib.sha256(prefix + (lo + k).to_bytes(8, "big") + raw[k * L:k * L + L]).digest()
                for k in range(hi - lo)]

    return leaf_hashes
