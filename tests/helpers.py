"""Shared test helpers: the known-answer vector loader, an independent RFC 6962 MTH, chi-square, contexts.

Statistical tests in this suite reject at p < ALPHA. Under the null hypothesis (the code is right) each such
test fails with probability ALPHA = 1e-6; every stream is seeded, so a run's outcome is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from protocol.merkle import node_hash
from protocol.prg import SeedContext

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
ALPHA = 1e-6


def load_vectors(name: str) -> dict:
    """The committed known-answer file ``tests/vectors/<name>.json`` (written only by make_vectors.py)."""
    with open(VECTORS_DIR / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH on leaf hashes: split at k, the largest power of two < n."""
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path_shape(index: int, size: int) -> tuple[int, ...]:
    """Direction bits of the non-carried levels of leaf ``index`` (0: the node is a left child)."""
    out, i, n = [], index, size
    while n > 1:
        if i ^ 1 < n:
            out.append(i & 1)
        i >>= 1
        n = (n + 1) >> 1
    return tuple(out)


def chi_square_pvalue(counts) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against the uniform distribution."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(stats.chisquare(counts).pvalue)


def seed_context(session: int = 1, root: int = 2, seed: int = 3) -> SeedContext:
    """A SeedContext whose three inputs are filled with the given byte values."""
    return SeedContext(bytes([session]) * 16, bytes([root]) * 32, bytes([seed]) * 32)


def flip_bit(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)
