"""Merkle trees with domain-separated hashing and inclusion proofs (RFC 6962 shape).

* leaf hash  = H(tag "merkle/leaf/<kind>" || 0x00 || payload)
* node hash  = H(tag "merkle/node" || 0x01 || left || right)
* Levels are built pairwise; an odd node at the end of a level is carried up unchanged. For every
  size this is exactly RFC 6962's MTH (split at the largest power of two below n), so a tree of n leaves
  has one root whatever order nodes are hashed in. An empty tree has no root (refused).
* An inclusion proof for leaf i of a tree of n leaves is the list of sibling hashes from the leaf up,
  skipping levels where the node was carried up; its length is determined by (i, n).

Two kinds of leaf: ``data`` (leaf index u64 || its rows, d+1 values each: features then target, as w-byte LE
integers, w = the table's canonical ``value_bytes``, protocol/row_encoding.py; tag ``data`` for w = 8,
``data-i8``/``data-i16``/``data-i32`` for the narrower widths) and ``state`` (step u64 || d+1 int64 LE parameters).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from . import encoding as enc
from . import row_encoding
from .errors import MerkleProofInvalid
from .hashing import tag_bytes, tagged_hash

_NODE_PREFIX = tag_bytes("merkle/node") + b"\x01"
_NODE_BASE = hashlib.sha256(_NODE_PREFIX)  # copied per node: cheaper than a fresh OpenSSL context


def _h(data: bytes) -> bytes:
    # The Merkle hot path (one call per row and per node) uses the standard library's binding of the same
    # OpenSSL SHA-256: byte-identical digests, about 3x less call overhead than cryptography's Hash object
    # (measured: commit_overhead 1.19 -> 1.08, upload 2x faster). Statements and PRG keys use cryptography.
    return hashlib.sha256(data).digest()


def leaf_prefix(kind: str) -> bytes:
    return tag_bytes(f"merkle/leaf/{kind}") + b"\x00"


def data_leaf_prefix(value_bytes: int = 8) -> bytes:
    """The data leaves' prefix for values of ``value_bytes`` bytes (each width its own domain tag)."""
    w = row_encoding.check_value_bytes(value_bytes)
    return leaf_prefix("data" if w == 8 else f"data-i{8 * w}")


_STATE_PREFIX = leaf_prefix("state")
_SMALL_LEAF = 2048  # below this, hashlib keeps the GIL per update and the per-call cost dominates
_LE_I64 = np.dtype("<i8")


def leaf_hash(kind: str, payload: bytes) -> bytes:
    return _h(leaf_prefix(kind) + payload)


def node_hash(left: bytes, right: bytes) -> bytes:
    return _h(_NODE_PREFIX + left + right)


def data_leaf_payload(index: int, row: np.ndarray) -> bytes:
    """Payload of a one-row int64 leaf (rows_per_leaf = 1, value_bytes = 8)."""
    return data_leaf_payload_block(index, np.asarray(row).reshape(1, -1))


def state_leaf_payload(step: int, theta: np.ndarray) -> bytes:
    return enc.u64(step) + np.ascontiguousarray(theta, dtype="<i8").tobytes()


LEAF_TARGET_BYTES = 4096  # one hash call per ~4 KiB: the per-call cost becomes small next to the hashing
OPENED_FRACTION = 16  # a spot check's opened leaves hold at most 1/16 of the rows


def default_rows_per_leaf(num_features: int, num_rows: int | None = None, opened_rows: int | None = None,
                          value_bytes: int = 8) -> int:
    """The client's choice of ``rows_per_leaf`` R (signed in the data statement, docs/PROTOCOL.md section 4):
    the fewest rows whose leaf holds at least LEAF_TARGET_BYTES (one hash call per ~4 KiB instead of per row),
    but no more than keeps the rows a spot check reveals (``opened_rows`` = K * B, each opening its whole leaf)
    at a sixteenth of the data: R * K * B <= n / 16. (A quarter made the openings, and the transcript that
    records them, a quarter of the data: at 1,000,000 x 20 rows and K = 64 that is 245,760 leaf rows.)"""
    row_bytes = value_bytes * (num_features + 1)
    r = -(-LEAF_TARGET_BYTES // row_bytes)
    if num_rows is not None and opened_rows:
        r = min(r, num_rows // (OPENED_FRACTION * opened_rows))
    return max(1, min(r, MAX_ROWS_PER_LEAF))


MAX_ROWS_PER_LEAF = 4096


def data_leaf_payload_block(leaf_index: int, block: np.ndarray, value_bytes: int = 8) -> bytes:
    """u64(j) || the leaf's rows (w-byte little-endian values, row-major)."""
    return enc.u64(leaf_index) + row_encoding.pack(block, value_bytes).tobytes()


def data_leaves(rows: np.ndarray, first_index: int = 0, rows_per_leaf: int = 1, value_bytes: int = 8) -> list[bytes]:
    """Leaf hashes of int64 rows (features then target); leaf j covers rows j*R .. j*R+R-1 (the last leaf may
    be shorter). ``first_index`` (a row index, a multiple of R) places ``rows`` in the whole table."""
    c = DataCommitter(rows.shape[1] - 1 if rows.ndim == 2 else 0, rows_per_leaf, first_index, value_bytes)
    c.add(rows)
    c.finish()
    return c.leaves


def data_root(rows: np.ndarray, rows_per_leaf: int = 1, value_bytes: int = 8) -> bytes:
    c = DataCommitter(rows.shape[1] - 1 if rows.ndim == 2 else 0, rows_per_leaf, value_bytes=value_bytes)
    c.add(rows)
    c.finish()
    return c.root()


class DataCommitter:
    """Incremental data leaves: feed row chunks of any size as they arrive (a leaf may span chunks); each full
    leaf is hashed straight from the received buffer (no copy of the rows), and the tree's inner nodes over the
    leaves so far are hashed at once (:class:`TreeBuilder`), so ``finish`` has only the right edge left: the
    root is ready as soon as the last chunk is hashed (on both sides of an upload, docs/PROTOCOL.md section 5)."""

    def __init__(self, num_features: int, rows_per_leaf: int, first_row: int = 0, value_bytes: int = 8):
        if rows_per_leaf < 1:
            raise ValueError("rows_per_leaf must be at least 1")
        if first_row % rows_per_leaf:
            raise ValueError("first_row must be a multiple of rows_per_leaf")
        self.value_bytes = row_encoding.check_value_bytes(value_bytes)
        self.row_bytes = value_bytes * (num_features + 1)
        self.leaf_bytes = self.row_bytes * rows_per_leaf
        self.next_leaf = first_row // rows_per_leaf
        self._pending = bytearray()
        self._base = hashlib.sha256(data_leaf_prefix(value_bytes))
        self._whole = first_row == 0  # a root only for a table committed from row 0
        self._builder = TreeBuilder()
        self._blob = self._builder.leaves  # the leaf hashes, 32 bytes each (no Python object per leaf)
        self._tree: MerkleTree | None = None

    def _hash(self, mv, offsets) -> None:
        """Hash the leaves at ``offsets`` of ``mv`` (each ``leaf_bytes`` long, except a last short one)."""
        base, blob, j, L = self._base, self._blob, self.next_leaf, self.leaf_bytes
        for off in offsets:
            h = base.copy()  # a copy of the prefixed context: OpenSSL 3 pays ~1 us to set up a fresh one
            h.update(j.to_bytes(8, "big"))
            h.update(mv[off:off + L])
            blob += h.digest()
            j += 1
        self.next_leaf = j
        if self._whole:
            self._builder.climb()

    def _hash_small(self, mv) -> None:
        """Whole small leaves (e.g. one row each): each payload u64(j) || rows laid out once with numpy, then
        one update per leaf instead of two (a fifth less per leaf, where the calls cost more than the bytes)."""
        L, k, j = self.leaf_bytes, len(mv) // self.leaf_bytes, self.next_leaf
        buf = np.empty((k, 8 + L), dtype=np.uint8)
        buf[:, :8] = np.arange(j, j + k, dtype=">u8").view(np.uint8).reshape(k, 8)
        buf[:, 8:] = np.frombuffer(mv, dtype=np.uint8).reshape(k, L)
        base, blob, S = self._base, self._blob, 8 + L
        with memoryview(buf.reshape(-1)) as flat:
            for off in range(0, k * S, S):
                h = base.copy()
                h.update(flat[off:off + S])
                blob += h.digest()
        self.next_leaf = j + k
        if self._whole:
            self._builder.climb()

    def root(self) -> bytes:
        """The data root of everything added (call ``finish`` first)."""
        return self.tree().root

    def tree(self) -> MerkleTree:
        """The data tree (call ``finish`` first)."""
        if not self._whole:
            raise ValueError("a committer started past row 0 has no root")
        if self._tree is None:
            self._tree = self._builder.tree()
        return self._tree

    @property
    def leaves(self) -> list[bytes]:
        return [bytes(self._blob[i:i + 32]) for i in range(0, len(self._blob), 32)]

    def add(self, rows) -> None:
        """``rows``: an integer array (k, d+1) (packed to ``value_bytes``; ValueError if a value does not fit) or
        its packed little-endian bytes."""
        mv = memoryview(row_encoding.pack(rows, self.value_bytes).view(np.uint8).reshape(-1)
                        if isinstance(rows, np.ndarray) else rows).cast("B")
        if len(mv) % self.row_bytes:
            raise ValueError("a chunk must hold whole rows")
        pos, L = 0, self.leaf_bytes
        if self._pending:
            take = min(L - len(self._pending), len(mv))
            self._pending += mv[:take]
            pos = take
            if len(self._pending) == L:
                self._hash(memoryview(self._pending), (0,))
                self._pending = bytearray()
        end = pos + (len(mv) - pos) // L * L
        if L < _SMALL_LEAF and end > pos:
            self._hash_small(mv[pos:end])
        else:
            self._hash(mv, range(pos, end, L))
        if end < len(mv):
            self._pending += mv[end:]

    def finish(self) -> None:
        """Hash the last, shorter leaf (if any)."""
        if self._pending:
            self._hash(memoryview(self._pending), (0,))
            self._pending = bytearray()


class TreeBuilder:
    """The levels of a MerkleTree built while its leaves arrive: append leaf hashes to ``leaves``, call
    ``climb`` to hash every inner node whose two children are known; ``tree()`` then carries the odd last nodes
    up and finishes the right edge (O(log n) nodes). The same tree as ``MerkleTree(leaves)``, built in pieces."""

    def __init__(self):
        self.leaves = bytearray()
        self._levels = [self.leaves]
        self._done = [0]  # bytes of each level already paired into the level above

    def climb(self) -> None:
        node, k = _NODE_BASE, 0
        while k < len(self._levels):
            level, done = self._levels[k], self._done[k]
            full = len(level) // 64 * 64
            if full > done:
                if k + 1 == len(self._levels):
                    self._levels.append(bytearray())
                    self._done.append(0)
                up = self._levels[k + 1]
                with memoryview(level) as mv:
                    for i in range(done, full, 64):
                        h = node.copy()
                        h.update(mv[i:i + 64])
                        up += h.digest()
                self._done[k] = full
            k += 1

    def prefix_root(self, m: int) -> bytes:
        """The root of the first m leaves (all appended and climbed): the right fold of the perfect aligned
        subtrees of the prefix, largest first, each already a node of its level (RFC 6962 MTH: split at the
        largest power of two below m); O(log m) node hashes."""
        if not 0 < m <= len(self.leaves) // 32:
            raise ValueError(f"no prefix of {m} leaves among {len(self.leaves) // 32}")
        self.climb()
        roots, pos = [], 0
        for h in reversed(range(m.bit_length())):
            if m >> h & 1:
                at = 32 * (pos >> h)
                roots.append(bytes(self._levels[h][at:at + 32]))
                pos += 1 << h
        root = roots[-1]
        for left in reversed(roots[:-1]):
            root = node_hash(left, root)
        return root

    def tree(self) -> MerkleTree:
        """The finished tree (no more leaves may be added; calling it again gives the same tree)."""
        if not self.leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.climb()  # every pair at every level is hashed; left: the odd last nodes
        levels, k = self._levels, 0
        while k < len(levels) - 1 or len(levels[k]) > 32:
            if len(levels[k]) > self._done[k]:  # an odd last node: carried up unchanged, after the level's pairs
                if k + 1 == len(levels):
                    levels.append(bytearray())
                    self._done.append(0)
                levels[k + 1] += levels[k][-32:]
                self._done[k] = len(levels[k])
                self.climb()
            k += 1
        return MerkleTree.from_levels([bytes(lv) for lv in levels])


def data_leaf(index: int, values, value_bytes: int = 8) -> bytes:
    """One row's leaf (rows_per_leaf = 1) from Python ints; raises struct.error outside ``value_bytes``."""
    return data_block_leaf(index, [values], value_bytes)


def data_block_leaf(leaf_index: int, rows, value_bytes: int = 8) -> bytes:
    """Leaf ``leaf_index`` from its rows as lists of Python ints (the same bytes as ``data_leaves``); raises
    struct.error for a value outside ``value_bytes`` bytes (never wraps)."""
    flat = [v for r in rows for v in r]
    code = row_encoding.struct_code(value_bytes)
    return _h(data_leaf_prefix(value_bytes) + enc.u64(leaf_index) + struct.pack(f"<{len(flat)}{code}", *flat))


def state_leaf(step: int, theta: np.ndarray) -> bytes:
    """leaf_hash("state", state_leaf_payload(step, theta)), on the trainer's per-step path: one call."""
    if isinstance(theta, np.ndarray) and theta.dtype == _LE_I64 and theta.flags.c_contiguous:
        raw = theta.tobytes()
    else:
        raw = np.ascontiguousarray(theta, dtype="<i8").tobytes()
    return hashlib.sha256(_STATE_PREFIX + step.to_bytes(8, "big") + raw).digest()


def state_leaf_block(first_step: int, states: np.ndarray) -> bytes:
    """``state_leaf(first_step + i, states[i])`` for every row of ``states`` (k, P), concatenated (32 bytes each):
    the trainer hashes the states it stored since its last event at once. The payloads u64(t) || theta_t are laid
    out in one array (numpy) and each is hashed from a copy of the prefixed context (OpenSSL 3 pays ~1 us to
    set up a fresh one): ~2 us per leaf against ~4 us for state_leaf per step."""
    raw = np.asarray(states)
    if raw.ndim != 2:
        raise ValueError("states must be a (steps, parameters) array")
    k, rb = raw.shape[0], 8 + 8 * raw.shape[1]
    buf = np.empty((k, rb), dtype=np.uint8)
    buf[:, :8] = np.arange(first_step, first_step + k, dtype=">u8").view(np.uint8).reshape(k, 8)
    buf[:, 8:] = np.ascontiguousarray(raw, dtype=_LE_I64).view(np.uint8).reshape(k, rb - 8)
    mv = memoryview(buf.reshape(-1))
    base, out = hashlib.sha256(_STATE_PREFIX), bytearray()
    for o in range(0, k * rb, rb):
        h = base.copy()
        h.update(mv[o:o + rb])
        out += h.digest()
    return bytes(out)


class MerkleTree:
    """All levels kept, for inclusion proofs; each level is one bytes object (32 bytes per node), so a tree
    of a million leaves costs 64 MB, not a million Python objects."""

    def __init__(self, leaves):
        blob = leaves if isinstance(leaves, (bytes, bytearray)) else b"".join(leaves)
        if not blob or len(blob) % 32:
            raise ValueError("a Merkle tree needs at least one leaf" if not blob else "leaves must be 32 bytes")
        builder = TreeBuilder()
        builder.leaves += blob
        self._levels = builder.tree()._levels  # level by level; an odd last node is carried up unchanged

    @classmethod
    def from_levels(cls, levels: list[bytes]) -> MerkleTree:
        """A tree whose levels were built elsewhere (TreeBuilder), leaves first, root last."""
        tree = cls.__new__(cls)
        tree._levels = levels
        return tree

    @property
    def root(self) -> bytes:
        return self._levels[-1]

    @property
    def size(self) -> int:
        return len(self._levels[0]) // 32

    def leaf(self, index: int) -> bytes:
        return self._levels[0][32 * index:32 * index + 32]

    def leaves(self) -> list[bytes]:
        lv = self._levels[0]
        return [lv[i:i + 32] for i in range(0, len(lv), 32)]

    def nbytes(self) -> int:
        return sum(len(lv) for lv in self._levels)

    def proofs(self, indices) -> list[list[bytes]]:
        return [self.proof(j) for j in indices]

    def levels_from(self, k: int) -> list[bytes]:
        """The levels from k (0 = the leaves) to the root, 32 bytes per node: a tree over level k's nodes."""
        return self._levels[k:]

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        out = []
        for level in self._levels[:-1]:
            sib = index ^ 1
            if 32 * sib < len(level):
                out.append(level[32 * sib:32 * sib + 32])
            index >>= 1
        return out


def root_from_proof(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its inclusion proof; raises on a malformed proof."""
    if not 0 <= index < size:
        raise MerkleProofInvalid(f"leaf index {index} outside a tree of {size} leaves")
    h, i, n, k = leaf, index, size, 0
    sha, pre = hashlib.sha256, _NODE_PREFIX
    while n > 1:
        if i ^ 1 < n:
            if k >= len(proof):
                raise MerkleProofInvalid(f"inclusion proof for leaf {index} is too short")
            sib = proof[k]
            if len(sib) != 32:
                raise MerkleProofInvalid("inclusion proof contains a hash that is not 32 bytes")
            h = sha(pre + h + sib).digest() if i % 2 == 0 else sha(pre + sib + h).digest()  # node_hash inlined
            k += 1
        i >>= 1
        n = (n + 1) >> 1
    if k != len(proof):
        raise MerkleProofInvalid(f"inclusion proof for leaf {index} is too long")
    return h


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes, what: str = "leaf") -> None:
    if root_from_proof(leaf, index, size, proof) != root:
        raise MerkleProofInvalid(f"{what} {index} is not in the committed tree (inclusion proof fails)")


def model_hash(theta, extras_json: str = "") -> bytes:
    """H("model", int_vector(parameters) || text(extras_json)): what the final statement signs. ``extras_json``
    is whatever serving-time content the trainer shipped with the parameters ("" for the honest trainer)."""
    return tagged_hash("model", enc.int_vector(theta), enc.text(extras_json))
