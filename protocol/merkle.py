"""Merkle trees with domain-separated hashing and inclusion proofs (RFC 6962 shape).

* leaf hash  = H(tag "merkle/leaf/<kind>" || 0x00 || payload)
* node hash  = H(tag "merkle/node" || 0x01 || left || right)
* Levels are built pairwise; an odd node at the end of a level is carried up unchanged. For every
  size this is exactly RFC 6962's MTH (split at the largest power of two below n), so a tree of n leaves
  has one root whatever order nodes are hashed in. An empty tree has no root (refused).
* An inclusion proof for leaf i of a tree of n leaves is the list of sibling hashes from the leaf up,
  skipping levels where the node was carried up; its length is determined by (i, n).

Two kinds of leaf: ``data`` (row index u64 || d+1 int64 LE values: features then target) and ``state``
(step u64 || d+1 int64 LE parameters).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from . import encoding as enc
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


def leaf_hash(kind: str, payload: bytes) -> bytes:
    return _h(leaf_prefix(kind) + payload)


def node_hash(left: bytes, right: bytes) -> bytes:
    return _h(_NODE_PREFIX + left + right)


def data_leaf_payload(index: int, row: np.ndarray) -> bytes:
    return enc.u64(index) + np.ascontiguousarray(row, dtype="<i8").tobytes()


def state_leaf_payload(step: int, theta: np.ndarray) -> bytes:
    return enc.u64(step) + np.ascontiguousarray(theta, dtype="<i8").tobytes()


def data_leaves(rows: np.ndarray, first_index: int = 0) -> list[bytes]:
    """Leaf hashes of int64 rows (features then target), indices starting at ``first_index``."""
    rows = np.ascontiguousarray(rows, dtype="<i8")
    n = rows.shape[0]
    if n == 0:
        return []
    # one buffer per row: u64 index (big-endian) || the row's int64 values (little-endian)
    buf = np.empty((n, 8 + rows.shape[1] * 8), dtype=np.uint8)
    buf[:, :8] = np.arange(first_index, first_index + n, dtype=">u8").view(np.uint8).reshape(n, 8)
    buf[:, 8:] = rows.view(np.uint8).reshape(n, -1)
    pre, w, raw = leaf_prefix("data"), buf.shape[1], buf.tobytes()
    sha = hashlib.sha256
    return [sha(pre + raw[i * w:(i + 1) * w]).digest() for i in range(n)]


def data_leaf(index: int, values) -> bytes:
    """One row's leaf from Python ints (the same bytes as ``data_leaves``); raises struct.error outside int64."""
    return _h(leaf_prefix("data") + enc.u64(index) + struct.pack(f"<{len(values)}q", *values))


def state_leaf(step: int, theta: np.ndarray) -> bytes:
    return leaf_hash("state", state_leaf_payload(step, theta))


class MerkleTree:
    """All levels kept, for inclusion proofs."""

    def __init__(self, leaves: list[bytes]):
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            cur = self.levels[-1]
            nxt = [node_hash(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            self.levels.append(nxt)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        out = []
        for level in self.levels[:-1]:
            sib = index ^ 1
            if sib < len(level):
                out.append(level[sib])
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
