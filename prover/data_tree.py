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

CUT = 1  # keep levels >= 1: half the nodes; a proof re-hashes its leaf, its sibling and their node


class RowTree:
    """A MerkleTree's root and inclusion proofs from its levels >= ``cut`` and a function giving leaf hashes
    from the rows: ``leaf_hashes(los, width)`` -> for each block start ``lo``, the 32-byte hashes of leaves
    lo..min(lo + width, size) - 1."""

    def __init__(self, tree: MerkleTree, leaf_hashes: Callable[[list[int], int], list[list[bytes]]],
                 cut: int = CUT):
        self.root, self.size, self.cut = tree.root, tree.size, cut
        self._leaf_hashes = leaf_hashes
        # a tree of at most 2^cut leaves is its own block; otherwise the full tree's levels from `cut` up are a
        # tree over the nodes of level `cut` (each level is built from the one below only): kept, not re-hashed
        self._upper = MerkleTree.from_levels(tree.levels_from(cut)) if tree.size > 1 << cut else None

    def nbytes(self) -> int:
        return self._upper.nbytes() if self._upper is not None else 32

    def proof(self, index: int) -> list[bytes]:
        return self.proofs([index])[0]

    def proofs(self, indices: list[int]) -> list[list[bytes]]:
        """The inclusion proofs of leaves ``indices`` (the blocks' leaves hashed in one pass over the rows)."""
        for index in indices:
            if not 0 <= index < self.size:
                raise IndexError(f"leaf {index} outside a tree of {self.size}")
        c = self.cut
        blocks = self._leaf_hashes([j >> c << c for j in indices], 1 << c)
        out = []
        for index, level in zip(indices, blocks):
            i, path = index & ((1 << c) - 1), []
            # the block starts at a multiple of 2^cut, so below level `cut` its nodes are the full tree's, with
            # the same siblings present and the same odd last node carried up (the last block ends with the tree)
            while len(level) > 1:
                if i ^ 1 < len(level):
                    path.append(level[i ^ 1])
                nxt = [node_hash(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
                level, i = nxt + level[len(nxt) * 2:], i >> 1
            top = self._upper.leaf(index >> c) if self._upper is not None else self.root
            if level[0] != top:
                raise AssertionError(f"the rows of data leaf {index} no longer hash to the committed data tree")
            out.append(path + (self._upper.proof(index >> c) if self._upper is not None else []))
        return out


def session_leaf_hashes(s, d: int, rows_per_leaf: int, value_bytes: int):
    """Leaf hashes (docs/PROTOCOL.md section 4: H(prefix || u64(j) || the leaf's rows at the value width)) from
    a session's rows as training laid them out (``s.X`` in the value width, ``s.Y``): proofs are asked for at
    the spot check, after training. Every value fits the width (the upload checked it). Whole blocks are
    gathered and packed with one numpy call; a block holding the table's last leaf (which may be short) is
    packed on its own."""
    R, dtype = rows_per_leaf, row_encoding.value_dtype(value_bytes)
    L = R * (d + 1) * value_bytes
    base = hashlib.sha256(data_leaf_prefix(value_bytes))

    def hashes(raw, first_leaf: int, count: int, at: int = 0) -> list[bytes]:
        out = []
        for k in range(count):
            h = base.copy()
            h.update((first_leaf + k).to_bytes(8, "big") + raw[at + k * L:at + k * L + L])
            out.append(h.digest())
        return out

    def pack(cells: np.ndarray) -> bytes:
        """The rows at ``cells`` (any shape of row indices), features then target, in the value width."""
        rows = np.empty(cells.shape + (d + 1,), dtype=dtype)
        rows[..., :d], rows[..., d] = s.X[cells], s.Y[cells]
        return rows.tobytes()

    def leaf_hashes(los: list[int], width: int) -> list[list[bytes]]:
        if s.X is None:
            raise AssertionError("a data inclusion proof before the rows were laid out")
        n = s.X.shape[0]
        size = -(-n // R)
        whole = [lo for lo in los if (lo + width) * R <= n]
        out: dict[int, list[bytes]] = {}
        if whole:
            raw, span = pack(np.asarray(whole, dtype=np.int64)[:, None] * R + np.arange(width * R)), width * L
            for k, lo in enumerate(whole):
                out[lo] = hashes(raw, lo, width, k * span)
        for lo in los:
            if lo not in out:
                hi = min(lo + width, size)
                out[lo] = hashes(pack(np.arange(lo * R, min(hi * R, n))), lo, hi - lo)  # the last leaf is short
        return [out[lo] for lo in los]

    return leaf_hashes
