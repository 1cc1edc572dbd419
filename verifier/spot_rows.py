"""The opened batch rows of one spot-checked step, checked all at once (docs/PROTOCOL.md section 4).

``checks.check_spot`` checks each opened row on its own: its leaf index, its whole data leaf (R rows of d+1
values within ``value_bytes`` bytes, the row among them), the leaf's hash and its inclusion proof up to the
signed data root. At 1,000,000 rows and K = 64 challenged steps of B = 256 rows that is 16,384 leaves and
inclusion proofs, one Python object per value. ``batch_rows`` makes the same checks on numpy arrays built
from the opening and walks the B inclusion proofs level by level. It accepts a batch only when every row
passes every one of those checks; on anything else (a failed check, an irregular opening, a leaf shorter than
R at the end of the data) it returns None and the row-by-row check runs, which names the failure. So the
verdict and its message are those of the row-by-row check in every case; only the honest case is faster.
"""

from __future__ import annotations

import hashlib

import numpy as np

from protocol import opening_rows
from protocol.merkle import _NODE_PREFIX, data_leaf_prefix
from protocol.row_encoding import value_range


def batch_rows(op_rows, batch: list[int], *, rows_per_leaf: int, num_rows: int, row_width: int, value_bytes: int,
               data_root: bytes, paths: SharedPaths) -> np.ndarray | None:
    """The (B, d+1) int64 rows of a batch whose every row opening passes the row-by-row checks of
    ``checks.check_spot`` (client block leaves: no custom leaf encoding); None otherwise. ``batch``: the
    seed-derived row indices, already compared with the openings' indices; ``paths``: the data tree's
    SharedPaths of this spot check (of ``ceil(num_rows / rows_per_leaf)`` leaves)."""
    R, B = rows_per_leaf, len(batch)
    rows = opening_rows.regular(op_rows)  # None: bools, floats, extra keys, ragged leaves... row by row
    if rows is None or rows.leaf_rows.shape != (B, R, row_width) or any(len(p) > 64 * 32 for p in rows.proofs):
        return None
    leaf_rows, values, proofs, proof_index = rows.leaf_rows, rows.values, rows.proofs, rows.proof_index
    index = np.asarray(batch, dtype=np.int64)
    leaf = index // R
    lo, hi = value_range(value_bytes)
    if (proof_index != leaf.tolist() or int(leaf.max()) * R + R > num_rows  # a leaf shorter than R: row by row
            or int(leaf_rows.min()) < lo or int(leaf_rows.max()) >= hi
            or not np.array_equal(leaf_rows[np.arange(B), index - leaf * R], values)):
        return None
    prefix = data_leaf_prefix(value_bytes)
    packed = leaf_rows.astype(f"<i{value_bytes}")  # = data_block_leaf's struct packing (in range: checked above)
    leaves = leaf.tolist()
    hashes = [hashlib.sha256(prefix + j.to_bytes(8, "big") + packed[k].tobytes()).digest()  # u64 big-endian index
              for k, j in enumerate(leaves)]
    roots = paths.roots(hashes, leaves, proofs)
    if roots is None or any(r != data_root for r in roots):
        return None
    return values


class SharedPaths:
    """Inclusion proofs in one tree, checked across calls (all the batches of a spot check), sharing their upper
    nodes. When a path reaches a node (level, position) that an earlier path reached with the same hash, and its
    remaining siblings are byte for byte that path's remaining siblings, the rest of its computation is that
    path's (the same inputs give the same hashes): it takes that path's result. Every path's own siblings are
    thus either hashed or compared with ones that were hashed; none is skipped."""

    def __init__(self, size: int, paths: int = 0):
        """``paths``: about how many proofs will be checked (0: unknown). Below the level where that many random
        paths start to meet (2^level * paths >= size), nodes are not remembered: they are almost never shared,
        and at a million rows their entries were most of the ~70 MB this took (the check is the same; only a
        rare shortcut is not taken)."""
        self.size = size
        self._low = max(0, (size // (4 * paths)).bit_length() - 1) if paths else 0
        self._seen: dict[int, tuple[bytes, int, int]] = {}  # level << 64 | position -> (hash, path, used)
        self._raws: list[bytes] = []
        self._roots: list[bytes] = []

    def roots(self, leaves: list[bytes], indices: list[int], proofs: list[bytes]) -> list[bytes] | None:
        """``merkle.root_from_proof`` of each (leaf, index, proof: its siblings concatenated); None if any proof is
        malformed (an index outside the tree, a proof too short or too long, or not a whole number of hashes)."""
        size = self.size
        if any(not 0 <= i < size for i in indices) or any(len(p) % 32 for p in proofs):
            return None
        sha, pre, seen, raws, roots, low = hashlib.sha256, _NODE_PREFIX, self._seen, self._raws, self._roots, self._low
        out = []
        for h, i, raw in zip(leaves, indices, proofs):
            m, k = len(raw) // 32, len(raws)
            n, u, level, reached = size, 0, 0, []
            while n > 1:
                prior = seen.get(level << 64 | i) if level >= low else None
                if prior is None:
                    if level >= low:
                        reached.append((level << 64 | i, (h, k, u)))
                elif prior[0] == h and raw[32 * u:] == raws[prior[1]][32 * prior[2]:]:
                    h, u = roots[prior[1]], m  # that path's remaining computation, on the same bytes
                    break
                if i ^ 1 < n:
                    if u >= m:
                        return None
                    sib = raw[32 * u:32 * u + 32]
                    h = sha(pre + h + sib).digest() if i % 2 == 0 else sha(pre + sib + h).digest()
                    u += 1
                i >>= 1
                n = (n + 1) >> 1
                level += 1
            if u != m:
                return None
            seen.update(reached)  # only a whole, well-formed path is shared (its index k now names it)
            raws.append(raw)
            roots.append(h)
            out.append(h)
        return out

