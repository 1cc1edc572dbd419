"""The T+1 state leaves of a session (32-byte digests), read in bounded memory.

A transcript holds them as one lower-case hex field, ``state_leaves`` (docs/PROTOCOL.md section 9,
"Transcript"): 64 hex characters per step, 64 MB for a million steps. The audit never holds them all: when a
transcript is loaded from a file (protocol/transcript.py ``load``) the field is decoded while the integrity
digest is computed, into an unlinked temporary file only this process can reach (so what is read later is
exactly what was checked, whatever happens to the transcript file meanwhile), and every check reads it in
blocks of ``BLOCK`` leaves: the state root and the checkpoint prefix roots in one pass
(:func:`scan`), the full replay in another, an inclusion proof for evidence by recomputing only the subtrees
it needs (:func:`inclusion_proof`).

:class:`Leaves` gives the same reading interface over a list of digests, a hex string (a transcript held in
memory, as the live client has it) or such a decoded field (:class:`StreamedHex`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import TranscriptFormatError
from .merkle import MerkleTree, node_hash

BLOCK = 1 << 14  # leaves per read (512 KiB); a power of two: a block is a subtree of the state tree


class StreamedHex:
    """A hex field of a loaded transcript, decoded into a private temporary file. ``len()`` is the length of
    the hex text (as for a ``str``), so code that only measures the field works unchanged."""

    def __init__(self, fh, nbytes: int):
        self._fh, self.nbytes = fh, nbytes

    def __len__(self) -> int:
        return 2 * self.nbytes

    def __deepcopy__(self, memo):
        return self  # immutable

    def __eq__(self, other) -> bool:
        """Equal to the hex text it was decoded from (compared block by block)."""
        if isinstance(other, StreamedHex):
            return other is self or (other.nbytes == self.nbytes and all(
                a == b for a, b in zip(self.hex_chunks(), other.hex_chunks(), strict=True)))
        if not isinstance(other, str) or len(other) != len(self):
            return False
        pos = 0
        for chunk in self.hex_chunks():
            if other[pos:pos + len(chunk)].encode() != chunk:
                return False
            pos += len(chunk)
        return True

    __hash__ = None

    def read(self, offset: int, size: int) -> bytes:
        out = b""
        while len(out) < size:  # pread may return fewer bytes than asked
            got = os.pread(self._fh.fileno(), size - len(out), offset + len(out))
            if not got:
                raise OSError("the decoded state leaves are shorter than recorded")
            out += got
        return out

    def hex_chunks(self, size: int | None = None):
        size = size or 32 * BLOCK
        for off in range(0, self.nbytes, size):
            yield self.read(off, min(size, self.nbytes - off)).hex().encode()


def decode_hex_field(fh, first: bytes, hashes, read_size: int, min_stream: int):
    """Decode the transcript's state_leaves value, which starts at ``first`` (just after its opening quote),
    into a temporary file, feeding the file bytes read to hashes[0] (the file digest) and the value to
    hashes[1] (the integrity digest). -> (StreamedHex, or a str below ``min_stream`` hex characters; the bytes
    after the value, from its closing quote to the end of the piece read). Refuses any character but 0-9a-f
    and an odd length ("malformed transcript: state_leaves ...")."""
    import tempfile

    digest, body = hashes
    out = tempfile.TemporaryFile()  # noqa: SIM115 - unlinked at once; owned by the StreamedHex it becomes
    carry, nbytes, piece = b"", 0, first
    try:
        while True:
            end = piece.find(b'"')
            value = piece if end < 0 else piece[:end]
            if value.translate(None, _HEX_DIGITS):
                raise TranscriptFormatError("malformed transcript: state_leaves must be a lower-case hex string (it "
                                            "holds other characters)")
            body.update(value)
            value = carry + value
            cut = len(value) - len(value) % 2
            raw = bytes.fromhex(value[:cut].decode())
            out.write(raw)
            nbytes += len(raw)
            carry = value[cut:]
            if end >= 0:
                break
            piece = fh.readline(read_size)
            if not piece:
                raise TranscriptFormatError("the transcript is not valid JSON (it ends inside state_leaves); it is "
                                            "damaged or was edited")
            digest.update(piece)
        if carry:
            raise TranscriptFormatError("malformed transcript: state_leaves must be a lower-case hex string (odd "
                                        "length)")
        out.flush()
    except BaseException:
        out.close()
        raise
    field = StreamedHex(out, nbytes)
    if len(field) < min_stream:  # small: a plain string, as json.loads would give
        field = b"".join(field.hex_chunks()).decode()
        out.close()
    return field, b'"' + piece[end + 1:]


_HEX_DIGITS = b"0123456789abcdef"


class Leaves:
    """Random access to one leaf and sequential reading in blocks, from any of the three sources."""

    def __init__(self, source):
        if isinstance(source, Leaves):
            source = source._src
        if isinstance(source, list):
            source = b"".join(source)
        if isinstance(source, (bytes, bytearray)):
            nbytes = len(source)
        elif isinstance(source, str):
            if len(source) % 2:
                raise TranscriptFormatError("state leaves are not hex")
            nbytes = len(source) // 2
        elif isinstance(source, StreamedHex):
            nbytes = source.nbytes
        else:
            raise TranscriptFormatError("state leaves must be a hex string")
        if not nbytes or nbytes % 32:
            raise TranscriptFormatError("state leaves must be a non-empty multiple of 32 bytes")
        self._src, self.count = source, nbytes // 32

    def __len__(self) -> int:
        return self.count

    def _read(self, first: int, k: int) -> bytes:
        src = self._src
        if isinstance(src, StreamedHex):
            return src.read(32 * first, 32 * k)
        if isinstance(src, str):
            text = src[64 * first:64 * (first + k)]
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise TranscriptFormatError("state leaves are not hex") from None
            if not (text.islower() or text.isdecimal()):
                raise TranscriptFormatError("state leaves are not lower-case hex")
            return raw
        return bytes(src[32 * first:32 * (first + k)])

    def __getitem__(self, i: int) -> bytes:
        if not 0 <= i < self.count:
            raise IndexError(f"leaf {i} outside {self.count} leaves")
        return self._read(i, 1)

    def blocks(self, start: int = 0, stop: int | None = None, size: int | None = None):
        """Yields (index of the first leaf, 32*k bytes) over leaves start..stop-1, ``size`` (BLOCK) at a time."""
        size = size or BLOCK
        stop = self.count if stop is None else min(stop, self.count)
        for first in range(start, stop, size):
            yield first, self._read(first, min(size, stop - first))

    def root(self, start: int = 0, stop: int | None = None) -> bytes:
        """Merkle root (merkle.MerkleTree) of leaves start..stop-1, ``start`` a multiple of a power of two at
        least the range (a subtree of the whole tree). Reads BLOCK leaves at a time: a level of the tree is
        the roots of its aligned blocks (an odd last node is carried up, so a short last block's root is the
        node its range has in the whole tree)."""
        stop = self.count if stop is None else min(stop, self.count)
        if stop - start <= BLOCK:
            return MerkleTree(self._read(start, stop - start)).root
        return MerkleTree(b"".join(MerkleTree(blob).root for _, blob in self.blocks(start, stop))).root


@dataclass
class Scan:
    """One pass over the leaves: their number, the root, the first and last leaf, and for each requested
    step t the leaf t and the root of leaves 0..t (a checkpoint's prefix root)."""

    count: int
    root: bytes
    first: bytes
    last: bytes
    prefixes: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)


def scan(leaves, prefix_steps=()) -> Scan:
    """The state root and the prefix roots at ``prefix_steps`` (increasing), in one pass of bounded memory
    (a :class:`CompactRange` over the leaves)."""
    lv = Leaves(leaves)
    rng = CompactRange()
    prefixes = {}
    for t in prefix_steps:
        if not 0 <= t < lv.count or t < rng.size:
            continue
        prefixes[t] = (lv[t], rng.extend(lv, t + 1).root())
    return Scan(lv.count, rng.extend(lv, lv.count).root(), lv[0], lv[lv.count - 1], prefixes)


class CompactRange:
    """The root of every prefix of a growing list of leaves: an RFC 6962 compact range (the perfect subtrees of
    the prefix so far), extended by the largest aligned subtrees, whose roots are
    computed at C speed (Leaves.root), never leaf by leaf. The audit's scan (the trainer, which holds every
    node anyway, reads its prefix roots off merkle.TreeBuilder)."""

    def __init__(self):
        self._stack: list[tuple[int, bytes]] = []  # (height, root), heights strictly decreasing
        self.size = 0

    def extend(self, leaves, stop: int) -> CompactRange:
        """Append leaves size..stop-1 of ``leaves`` (a :class:`Leaves` or any source it reads), carrying as in
        binary addition."""
        lv = leaves if isinstance(leaves, Leaves) else Leaves(leaves)
        stack, pos = self._stack, self.size
        if stop > lv.count:
            raise IndexError(f"leaf {stop - 1} outside {lv.count} leaves")
        while pos < stop:
            height = (pos & -pos).bit_length() - 1 if pos else stop.bit_length()
            while pos + (1 << height) > stop:
                height -= 1
            h, hh = lv.root(pos, pos + (1 << height)), height
            while stack and stack[-1][0] == hh:
                h = node_hash(stack.pop()[1], h)
                hh += 1
            stack.append((hh, h))
            pos += 1 << height
        self.size = max(pos, self.size)
        return self

    def root(self) -> bytes:
        """The root of the prefix: H(p_0, H(p_1, ... H(p_{k-1}, p_k))) over the perfect subtrees."""
        if not self._stack:
            raise ValueError("empty tree has no root")
        stack = self._stack
        h = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            h = node_hash(left, h)
        return h


def inclusion_proof(leaves, index: int) -> list[bytes]:
    """merkle.MerkleTree(leaves).proof(index), recomputing only the sibling subtrees (each from its own
    leaves): bounded memory, one read of the leaves."""
    lv = Leaves(leaves)
    if not 0 <= index < lv.count:
        raise IndexError(f"leaf {index} outside a tree of {lv.count}")
    out, level_size, i, h = [], lv.count, index, 0
    while level_size > 1:
        sib = i ^ 1
        if sib < level_size:
            out.append(lv.root(sib << h, min((sib + 1) << h, lv.count)))
        i >>= 1
        level_size = (level_size + 1) >> 1
        h += 1
    return out
