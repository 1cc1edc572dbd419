"""protocol/state_leaves.py: reading the state leaves block by block gives exactly what merkle.MerkleTree
gives over all of them (root, checkpoint prefix roots, inclusion proofs), from every source, at every size
around the block boundaries (BLOCK made tiny so the multi-block paths run)."""

from __future__ import annotations

import io
import os
import random

import pytest

import protocol.state_leaves as sl
from protocol.errors import TranscriptFormatError
from protocol.merkle import MerkleTree


def _streamed(leaves: list[bytes]) -> sl.StreamedHex:
    import hashlib

    text = b"".join(leaves).hex().encode() + b'",\n'
    field, rest = sl.decode_hex_field(io.BytesIO(b""), text, (hashlib.sha256(), hashlib.sha256()), 1 << 20, 0)
    assert rest == b'",\n'
    return field


@pytest.mark.parametrize("block", [1, 4, 8])
def test_scan_and_proofs_equal_the_whole_tree(monkeypatch, block):
    monkeypatch.setattr(sl, "BLOCK", block)
    rnd = random.Random(block)
    for n in [*range(1, 40), 63, 64, 65, 100, 257]:
        leaves = [rnd.randbytes(32) for _ in range(n)]
        tree = MerkleTree(leaves)
        steps = sorted(rnd.sample(range(n), min(n, 4)))
        for src in (leaves, b"".join(leaves).hex(), _streamed(leaves)):
            s = sl.scan(src, steps)
            assert (s.count, s.root, s.first, s.last) == (n, tree.root, leaves[0], leaves[-1])
            assert s.prefixes == {t: (leaves[t], MerkleTree(leaves[:t + 1]).root) for t in steps}
            assert sl.scan(src).root == tree.root
            for i in range(n):
                assert sl.inclusion_proof(src, i) == tree.proof(i), (n, i)
            lv = sl.Leaves(src)
            assert b"".join(blob for _, blob in lv.blocks()) == b"".join(leaves)
            assert [lv[i] for i in range(n)] == leaves


def test_streamed_hex_compares_as_its_text():
    leaves = [os.urandom(32) for _ in range(3)]
    field = _streamed(leaves)
    assert len(field) == 192 and field == b"".join(leaves).hex() and field != "00" * 96 and field != 5


@pytest.mark.parametrize("bad", ["", "11" * 31, "zz" * 32, "AB" * 32, [b"\x00" * 31]])
def test_malformed_leaves_are_format_errors(bad):
    with pytest.raises(TranscriptFormatError):
        lv = sl.Leaves(bad)
        lv[0]


@pytest.mark.parametrize("block", [1, 4, 1 << 14])
def test_compact_range_grown_in_any_steps_gives_every_prefix_root(monkeypatch, block):
    """The trainer's prefix roots (CompactRange extended checkpoint by checkpoint over a growing leaf buffer)
    equal the root of the whole prefix, whatever the stops."""
    monkeypatch.setattr(sl, "BLOCK", block)
    rnd = random.Random(block)
    leaves = [rnd.randbytes(32) for _ in range(300)]
    for interval in (1, 3, 7, 64, 100, 299):
        rng, buf = sl.CompactRange(), bytearray()
        for stop in range(1, 301):
            buf += leaves[stop - 1]
            if stop % interval == 0 or rnd.random() < 0.05:
                assert rng.extend(sl.Leaves(buf), stop).root() == MerkleTree(leaves[:stop]).root, (interval, stop)
                assert rng.size == stop
    with pytest.raises(IndexError):
        sl.CompactRange().extend(leaves[:3], 4)
    with pytest.raises(ValueError):
        sl.CompactRange().root()
