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
    leaf is hashed straight from the received buffer (no copy of the rows)."""

    def __init__(self, num_features: int, rows_per_leaf: int, first_row: int = 0, value_bytes: int = 8):
        if rows_per_leaf < 1:
            raise ValueError("rows_per_leaf must be at least 1")
        if first_row % rows_per_leaf:
            raise ValueError("first_row must be a multiple of rows_per_leaf")
        self.value_bytes = row_encoding.check_value_bytes(value_bytes)
        self.row_bytes = value_bytes * (num_features + 1)
        self.leaf_bytes = self.row_bytes * rows_per_leaf
        self.next_leaf = first_row // rows_per_leaf
        self._blob = bytearray()  # the leaf hashes, 32 bytes each (no Python object per leaf)
        self._pending = bytearray()
        self._base = hashlib.sha256(data_leaf_prefix(value_bytes))
        self._whole = first_row == 0  # a root only for a table committed from row 0
        self._tree: MerkleTree | None = None

    def _hash(self, block) -> None:
        h = self._base.copy()
        h.update(self.next_leaf.to_bytes(8, "big"))
        h.update(block)
        self._blob += h.digest()
        self.next_leaf += 1

    def root(self) -> bytes:
        """The data root of everything added (call ``finish`` first)."""
        return self.tree().root

    def tree(self) -> MerkleTree:
        """The data tree (call ``finish`` first), built once from the leaves, level by level (half the Python work
        per node of a frontier kept up to date per leaf)."""
        if not self._whole:
            raise ValueError("a committer started past row 0 has no root")
        if self._tree is None:
            self._tree = MerkleTree(bytes(self._blob))
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
                self._hash(self._pending)
                self._pending = bytearray()
        end = pos + (len(mv) - pos) // L * L
        for off in range(pos, end, L):
            self._hash(mv[off:off + L])
        if end < len(mv):
            self._pending += mv[end:]

    def finish(self) -> None:
        """Hash the last, shorter leaf (if any)."""
        if self._pending:
            self._hash(self._pending)
            self._pending = bytearray()


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


class MerkleTree:
    """All levels kept, for inclusion proofs; each level is one bytes object (32 bytes per node), so a tree
    of a million leaves costs 64 MB, not a million Python objects."""

    def __init__(self, leaves):
        blob = leaves if isinstance(leaves, (bytes, bytearray)) else b"".join(leaves)
        if not blob or len(blob) % 32:
            raise ValueError("a Merkle tree needs at least one leaf" if not blob else "leaves must be 32 bytes")
        self._levels = [bytes(blob)]
        sha, pre = hashlib.sha256, _NODE_PREFIX
        while len(self._levels[-1]) > 32:
            cur = self._levels[-1]
            full = len(cur) // 64 * 64
            nxt = b"".join([sha(pre + cur[i:i + 64]).digest() for i in range(0, full, 64)])  # node(l, r)
            self._levels.append(nxt + cur[full:])  # an odd last node is carried up unchanged

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

    def level(self, k: int) -> bytes:
        """The nodes of level k (0 = the leaves), 32 bytes each."""
        return self._levels[k]

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


class DeferredTree:
    """A tree whose root is already known (from a MerkleFrontier, computed while the leaves arrived) and whose
    levels are built on the first inclusion proof: committing to data costs no second pass over the leaves."""

    def __init__(self, leaves: bytes, root: bytes):
        self._leaves, self.root, self._tree = leaves, root, None

    @property
    def size(self) -> int:
        return len(self._leaves) // 32 if self._tree is None else self._tree.size

    def proof(self, index: int) -> list[bytes]:
        if self._tree is None:
            self._tree, self._leaves = MerkleTree(self._leaves), b""
            if self._tree.root != self.root:  # the same leaves, another way round: a bug, never input
                raise AssertionError("MerkleFrontier and MerkleTree disagree")
        return self._tree.proof(index)

    def nbytes(self) -> int:
        return len(self._leaves) if self._tree is None else self._tree.nbytes()


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


class MerkleFrontier:
    """Append-only accumulator giving the root of every prefix in O(log n) (RFC 6962 compact range).

    The root of the first n leaves is the right fold of the perfect-subtree roots:
    H(p_0, H(p_1, ... H(p_{k-1}, p_k))), which equals ``MerkleTree(leaves[:n]).root``."""

    def __init__(self):
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.size = 0

    def append(self, leaf: bytes) -> None:
        h, height = leaf, 0
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            h = node_hash(left, h)
            height += 1
        self._stack.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            raise ValueError("empty tree has no root")
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def model_hash(theta, extras_json: str = "") -> bytes:
    """H("model", int_vector(parameters) || text(extras_json)): what the final statement signs. ``extras_json``
    is whatever serving-time content the trainer shipped with the parameters ("" for the honest trainer)."""
    return tagged_hash("model", enc.int_vector(theta), enc.text(extras_json))
