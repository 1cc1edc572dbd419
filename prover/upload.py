"""Receiving a session's data and proving key chunk by chunk: every size is checked before bytes are kept.

``DataReceiver``: the first chunk declares n, d, rows_per_leaf and value_bytes w; they are checked against the
limits and the session's memory is reserved (admission.Admission.reserve) before any row is stored. Each chunk
is range-checked and hashed into data leaves as it arrives (in the work pool, while the next chunk is being
received) and kept as received (w bytes per value): no copy. At the end the rows' own width must be w (the
canonical encoding, protocol/row_encoding.py). Training lays the rows out once (``StoredRows.arrays``: features
X (n, d) in the value width, target Y int64) and drops the chunks. What a session keeps after its upload is its
rows plus the leaf tree (32 bytes per ~4 KiB leaf, about twice): about 1.02x the data as sent.

``KeyReceiver``: the proving key's header (first chunk) must describe exactly this session's circuit
(constraints, domain, public inputs) and the declared total must be the size that header implies, before
any byte is kept.
"""

from __future__ import annotations

import struct

import numpy as np

from protocol import row_encoding
from protocol.errors import InputError, TranscriptFormatError
from protocol.merkle import MAX_ROWS_PER_LEAF, DataCommitter, MerkleTree
from protocol.snark import keys_io, snarkjs_io
from protocol.snark import session as snark_session

from . import memory

# Memory a session may reach while training, per byte of its rows: the rows (1x), the float64 copy the fast
# step multiplies (1x), numpy temporaries per batch (small). A proving key as parsed into Python integers
# takes ~4x its encoded size (measured: 116 MB of key -> +438 MB).
TRAIN_FACTOR = 2
KEY_FACTOR = 4


def data_reservation(n: int, d: int, steps: int, rows_per_leaf: int, params: int | None = None) -> int:
    """Bytes reserved for a session of n rows, d features, ``steps`` steps: rows and their training copy, the
    per-step states (``params`` int64 each, d + 1 unless the model has several classes), the data and state trees
    (about 64 bytes per leaf), 1 MiB of slack."""
    leaves = -(-n // rows_per_leaf) + steps + 1
    return TRAIN_FACTOR * n * (d + 1) * 8 + (steps + 1) * (params or d + 1) * 8 + 64 * leaves + (1 << 20)


class StoredRows:
    """A session's rows as received (w-byte little-endian values, row-major chunks)."""

    def __init__(self, chunks: list[bytes], n: int, d: int, value_bytes: int = 8):
        self.chunks, self.n, self.d, self.w = chunks, n, d, value_bytes

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, d) in the upload's value width, native order; Y (n,) int64), contiguous; the chunks are released
        as they are copied. Narrow X is exact (sign-extended wherever it is used) and half the memory of int64."""
        X = np.empty((self.n, self.d), dtype=np.dtype(f"i{self.w}"))
        Y = np.empty(self.n, dtype=np.int64)
        at = 0
        while self.chunks:
            part = np.frombuffer(self.chunks.pop(0), dtype=row_encoding.value_dtype(self.w)).reshape(-1, self.d + 1)
            X[at:at + part.shape[0]] = part[:, :-1]
            Y[at:at + part.shape[0]] = part[:, -1]
            at += part.shape[0]
        return X, Y


class DataReceiver:
    def __init__(self, n: int, d: int, rows_per_leaf: int, bound: int, value_bytes: int = 8):
        self.n, self.d, self.R, self.bound, self.w = n, d, rows_per_leaf, bound, value_bytes
        self.chunks: list[bytes] = []
        self.got = 0
        self.lo, self.hi = 0, 0  # the smallest and largest value received (for the canonical width)
        self.committer = DataCommitter(d, rows_per_leaf, value_bytes=value_bytes)

    @staticmethod
    def check_value_bytes(w: int) -> int:
        """The declared width (0 on the wire means 8); InputError unless 1, 2, 4 or 8."""
        try:
            return row_encoding.check_value_bytes(w or 8)
        except ValueError as e:
            raise InputError(str(e)) from None

    @staticmethod
    def check_leaf_size(d: int, rows_per_leaf: int) -> None:
        if not 1 <= rows_per_leaf <= MAX_ROWS_PER_LEAF or (rows_per_leaf > 1 and rows_per_leaf * (d + 1) * 8 > 1 << 16):
            raise InputError(f"rows_per_leaf {rows_per_leaf} is outside 1..{MAX_ROWS_PER_LEAF} or makes a leaf over "
                             f"64 KiB (rows of {d} features are {(d + 1) * 8} bytes)")

    def add(self, nf: int, nr: int, raw: bytes) -> None:
        d = self.d
        if nf != d:
            raise InputError("every chunk must carry the same feature count")
        w = self.w
        if len(raw) != nr * (d + 1) * w:
            raise InputError(f"chunk says {nr} rows of {d}+1 values of {w} bytes ({nr * (d + 1) * w} bytes) but "
                             f"carries {len(raw)} bytes")
        if self.got + nr > self.n:
            raise InputError(f"received more rows ({self.got + nr}) than declared ({self.n})")
        if nr == 0:
            return
        if not self._settled():  # the values' range still matters: it is read (two passes over the chunk)
            part = np.frombuffer(raw, dtype=row_encoding.value_dtype(w))
            lo, hi = int(part.min()), int(part.max())
            if lo < -self.bound or hi >= self.bound:
                k = self.bound.bit_length() - 1
                raise InputError(f"data values must lie in [-2^{k}, 2^{k}) in fixed point")
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self.committer.add(raw)
        self.chunks.append(raw)
        self.got += nr

    def _settled(self) -> bool:
        """Nothing a chunk holds can change the verdict on the values: every w-byte value lies within the bound
        (w = 4 and the default 32 weight bits), and a value already received needs all w bytes (the width is
        minimal whatever follows). Then the rest is only hashed and kept."""
        lo, hi = row_encoding.value_range(self.w)
        return (-self.bound <= lo and hi <= self.bound
                and row_encoding.minimal_value_bytes(self.lo, self.hi) == self.w)

    def release(self) -> None:
        """Drop the received rows now (a failed upload)."""
        self.chunks, self.committer = [], None

    def finish(self) -> tuple[MerkleTree, StoredRows]:
        if self.got != self.n:
            raise InputError(f"upload ended after {self.got} rows, but {self.n} were declared")
        need = row_encoding.minimal_value_bytes(self.lo, self.hi)
        if need != self.w:  # one encoding per table: otherwise two data roots would commit to the same rows
            raise InputError(f"the rows were sent as {self.w}-byte values but every value fits in {need} byte{'s' * (need > 1)} "
                             f"(values {self.lo}..{self.hi}): value_bytes must be the smallest width holding the "
                             f"data (docs/PROTOCOL.md section 4)")
        self.committer.finish()
        rows, self.chunks = StoredRows(self.chunks, self.n, self.d, self.w), []
        return self.committer.tree(), rows


class DataUpload:
    """One UploadData call in progress (the session is held busy): add chunks, then finish or close."""

    def __init__(self, m, s, rx: DataReceiver, reserved: int):
        self.m, self.s, self.rx, self.reserved = m, s, rx, reserved
        self.done = False
        memory.receiving(True)  # until close

    def add(self, sid: bytes, nf: int, _total: int, nr: int, raw: bytes, *_rest) -> None:
        if bytes(sid) not in (b"", self.s.session_id):
            raise InputError("every chunk must carry the same session id and feature count")
        self.rx.add(nf, nr, raw)

    def finish(self) -> tuple[bytes, bytes]:
        out = self.m.commit_data(self.s, self.rx)
        self.done = True
        return out

    def close(self) -> None:
        """End the call; on failure the received rows and their reservation are released at once."""
        if not self.done:
            self.rx.release()
            self.m._unreserve(self.s, self.reserved)
        if self.rx is not None:
            memory.receiving(False)
        self.rx = None
        memory.trim()  # the chunks' transient buffers
        self.m._release_call(self.s)


class KeyUpload:
    """One UploadProvingKey call in progress (the session is held busy)."""

    def __init__(self, m, s, total: int, reserved: int):
        self.m, self.s, self.total, self.reserved = m, s, total, reserved
        self.buf = bytearray()
        self.done = False

    def add(self, data: bytes) -> None:
        if len(self.buf) + len(data) > self.total:
            raise InputError(f"received more proving-key bytes ({len(self.buf) + len(data)}) than declared "
                             f"({self.total})")
        self.buf += data

    def finish(self) -> bytes:
        if len(self.buf) != self.total:
            raise InputError(f"the proving key upload ended after {len(self.buf)} of {self.total} bytes")
        raw, self.buf = bytes(self.buf), bytearray()
        vk_hash = self.m.keep_key(self.s, raw)
        self.done = True
        return vk_hash

    def close(self) -> None:
        self.buf = bytearray()
        if not self.done:
            self.m._unreserve(self.s, self.reserved)
        self.m._release_call(self.s)


_HEADER = len(keys_io.MAGIC) + 12 + 4


def key_header(first: bytes) -> tuple[int, int, int, bytes]:
    """(n_wires, n_constraints, domain, vk bytes) from the first chunk, which must carry the header and vk."""
    if len(first) < _HEADER or first[:len(keys_io.MAGIC)] not in (keys_io.MAGIC, keys_io.MAGIC_POWERS):
        raise InputError("not a proving key: the first chunk must start with the key's header (magic, sizes, verifying key)")
    n_wires, n_constraints, domain = struct.unpack(">III", first[len(keys_io.MAGIC):len(keys_io.MAGIC) + 12])
    (vk_len,) = struct.unpack(">I", first[_HEADER - 4:_HEADER])
    if len(first) < _HEADER + vk_len:
        raise InputError("the first proving-key chunk must carry the whole verifying key")
    return n_wires, n_constraints, domain, first[_HEADER:_HEADER + vk_len]


def expected_key_bytes(n_wires: int, n_public: int, domain: int, vk_len: int) -> int:
    """The encoded size keys_io.pk_to_bytes gives for these sizes."""
    g1, g2 = 96, 192
    return (_HEADER + vk_len + 3 * g1 + 2 * g2 + 5 * 4
            + n_wires * (2 * g1 + g2) + (n_wires - n_public - 1) * g1 + (domain - 1) * g1)


def check_key_header(first: bytes, total: int, cfg, n: int, d: int) -> None:
    """The declared key must be for this session's circuit: T*(...) constraints, the Groth16 domain for them,
    2(d+1)+1 public inputs, and exactly the size those imply; raises InputError otherwise."""
    n_wires, n_constraints, domain, vkb = key_header(first)
    want_c = snark_session.constraint_count(cfg, n, d)
    n_public = 2 * (d + 1) + 1
    want_dom = max(2, 1 << (want_c + n_public).bit_length())  # groth16.domain_size: pow2 >= n + l + 1
    if n_constraints != want_c or domain != want_dom:
        raise InputError(f"the proving key is for a circuit of {n_constraints} constraints (domain {domain}); "
                         f"this session's circuit has {want_c} (domain {want_dom})")
    try:
        vk = snarkjs_io.vk_from_bytes(vkb)
    except (TranscriptFormatError, ValueError) as e:
        raise InputError(f"the proving key's verifying key is malformed: {e}") from None
    if vk.n_public != n_public:
        raise InputError(f"the proving key's verifying key has {vk.n_public} public inputs; this session's "
                         f"circuit has {n_public}")
    if not n_public < n_wires <= 2 * n_constraints + n_public + 1:
        raise InputError(f"the proving key declares {n_wires} wires, impossible for {n_constraints} constraints")
    want = expected_key_bytes(n_wires, n_public, domain, len(vkb))
    if total != want:
        raise InputError(f"the proving key declares {total} bytes; its header implies {want}")
