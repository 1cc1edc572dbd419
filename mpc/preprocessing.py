"""Preprocessing material, its deterministic generator, and the one interface parties consume it through.

``Generator`` is the dealer's algorithm: from a 32-byte session key (the dealer's secret) and the public
plan it derives, deterministically, the MAC key, the input masks and every step's material, and splits
each value into two additive shares with MAC shares (docs/MPC.md, "Preprocessing"). A party consumes
material only through :class:`Preprocessing` (``inputs()``, ``step(t)``, ``output()``): the dealer client
(``dealer/client.py``) and the in-process :class:`LocalPreprocessing` implement it; a dealer-free generator
(MASCOT / Overdrive style) would be a third implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from protocol.prg import KeyStream, SeedContext, shuffle

from .errors import MpcAbort
from .field import (
    ELEMENT_BYTES,
    add,
    bounded_bytes,
    bounded_words,
    const,
    decode,
    encode,
    from_ints,
    matmul,
    mul,
    sub,
    uniform,
    words_to_elements,
)
from .hashing import mpc_hash
from .plan import Plan
from .shares import MacKey, Shared

INPUT_CHUNK_ROWS = 2048


@dataclass
class InputMaterial:
    key: MacKey
    R: Shared  # (n, d+1): masks of every row of the union
    own: np.ndarray  # (n_i, d+1, 2) clear masks of this party's own rows (64-bit words, little-endian)


@dataclass
class OutputMaterial:
    mask: Shared  # (d+1,)
    clear: np.ndarray | None  # party 0 only


class Preprocessing(Protocol):
    """What a party needs from preprocessing, in consumption order."""

    def inputs(self) -> InputMaterial: ...

    def start_steps(self, ctx: SeedContext) -> None: ...

    def step(self, t: int) -> dict[str, Shared]: ...

    def output(self) -> OutputMaterial: ...


def batch_schedule(plan: Plan, ctx: SeedContext):
    """Row indices of every step of the union (client rows first), as protocol.training.Schedule does."""
    S = plan.cfg.steps_per_epoch(plan.n)
    B = plan.batch_size
    for e in range(plan.epochs):
        perm = shuffle(ctx, e, plan.n)
        for s in range(S):
            yield perm[s * B:(s + 1) * B]


def block_monomials(bits: np.ndarray, blocks: list[tuple[int, int]]) -> np.ndarray:
    """Per value (row), per block, the products of every subset of two or more of the block's bits, subsets
    in increasing bitmask order (docs/MPC.md, "Exact truncation")."""
    cols = []
    for lo, w in blocks:
        masks = np.array([m for m in range(1 << w) if m.bit_count() >= 2], dtype=np.int64)
        if masks.size:
            pat = (bits[:, lo:lo + w].astype(np.int64) << np.arange(w)).sum(axis=1)  # the block's bits as an int
            cols.append(((pat[:, None] & masks) == masks).astype(np.uint8))  # product of the bits of the mask
    return np.concatenate(cols, axis=1).ravel() if cols else np.zeros(0, dtype=np.uint8)


class Generator:
    """The dealer's deterministic generation for one session (both parties' shares)."""

    def __init__(self, key: bytes, plan: Plan, tamper: str | None = None):
        self.key, self.plan, self.tamper = key, plan, tamper
        self.share_key = mpc_hash("dealer/share-key", key)  # party 0's shares are expanded from it
        a = uniform(self._stream("alpha", 0), 2)
        self.alpha = (a[0], a[1])
        self._Rw: np.ndarray | None = None
        self._R: np.ndarray | None = None

    def _stream(self, label: str, index: int) -> KeyStream:
        return KeyStream(mpc_hash("dealer/stream", self.key, label.encode(), index.to_bytes(8, "big")))

    def _bytes(self, label: str, index: int, nbytes: int) -> bytes:
        return self._stream(label, index).read(nbytes)

    def uniform(self, label: str, index: int, count: int) -> np.ndarray:
        return uniform(self._stream(label, index), count)

    def bounded(self, label: str, index: int, count: int, bits: int) -> np.ndarray:
        """``count`` integers uniform in [0, 2^bits) as 64-bit words, shape (count, ceil(bits / 64))."""
        return bounded_words(self._bytes(label, index, bounded_bytes(count, bits)), count, bits)

    def split(self, label: str, index: int, values: np.ndarray) -> tuple[tuple, tuple]:
        """-> ((v0, m0), (v1, m1)) with v0 + v1 = x and m0 + m1 = alpha x."""
        x = np.asarray(values, dtype=np.uint64).reshape(-1, len(self.alpha[0]))
        v0, m0 = party0_shares(self.share_key, label, index, len(x))  # (2, n, L): unpacks as v0, m0
        mac = mul(x, add(self.alpha[0], self.alpha[1]))
        return (v0, m0), (sub(x, v0), sub(mac, m0))

    @property
    def R_words(self) -> np.ndarray:
        """Input masks of the union, (n, d+1, 2) 64-bit words, uniform in [0, 2^(K + kappa))."""
        if self._Rw is None:
            p = self.plan
            w = self.bounded("R", 0, p.n * (p.d + 1), p.input_bits)
            w = np.pad(w, ((0, 0), (0, 2 - w.shape[1])))  # always two words (input_bits <= 128)
            self._Rw = w.reshape(p.n, p.d + 1, 2)
        return self._Rw

    @property
    def R(self) -> np.ndarray:
        """The input masks as elements, (n, d+1, L)."""
        if self._R is None:
            self._R = words_to_elements(self.R_words)
        return self._R

    def input_chunks(self, party: int):
        """Payloads for one party: chunk 0 = alpha_i (party 0: and the share key); then row blocks (party 1:
        shares and MACs; both: the clear masks of their own rows)."""
        yield encode(self.alpha[party]) + (self.share_key if party == 0 else b"")
        p = self.plan
        own = range(p.n0) if party == 0 else range(p.n0, p.n)
        for lo in range(0, p.n, INPUT_CHUNK_ROWS):
            hi = min(lo + INPUT_CHUNK_ROWS, p.n)
            clear = np.ascontiguousarray(self.R_words[max(lo, own.start):min(hi, own.stop)], dtype="<u8").tobytes()
            if party == 0:
                yield clear
            else:
                shares = self.split("R", lo, self.R[lo:hi])[1]
                yield encode(shares[0]) + encode(shares[1]) + clear

    def step_values(self, t: int, batch: np.ndarray) -> list[np.ndarray]:
        """The step's secret values, in ``plan.step_layout()`` order, all read from one stream ``("step", t)`` in
        this order: V, V2 (uniform, d), M, M2 (uniform, B); per layer the bits (bytes), rhi (bounded), then a, b,
        a2 (uniform) (docs/MPC.md section 5.1)."""
        p = self.plan
        d, B = p.d, p.batch_size
        st = self._stream("step", t)
        Rb = self.R[batch, :d]
        V, V2 = uniform(st, d), uniform(st, d)
        M, M2 = uniform(st, B), uniform(st, B)
        out = [V, V2, matmul(Rb, V), matmul(Rb, V2), M, M2, matmul(M, Rb), matmul(M2, Rb)]
        for li, layer in enumerate(p.layers(), 1):
            nb = layer.count * layer.nbits
            bits = np.unpackbits(np.frombuffer(st.read((nb + 7) // 8), dtype=np.uint8))[:nb]
            mono = block_monomials(bits.reshape(layer.count, layer.nbits), layer.blocks)
            rhi = words_to_elements(bounded_words(st.read(bounded_bytes(layer.count, layer.rhi_bits)), layer.count,
                                                  layer.rhi_bits))
            k = layer.count * layer.mults
            a, b, a2 = uniform(st, k), uniform(st, k), uniform(st, k)
            c, c2 = mul(a, b), mul(a2, b)
            if self.tamper == "bad-triple" and t == 1 and li == 1:
                c[0] = add(c[0], const(1))  # a wrong product with consistent MACs: only the sacrifice can see it
            out += [from_ints(bits.astype(np.int64)), from_ints(mono.astype(np.int64)), rhi, a, b, c, a2, c2]
        return out

    def step_payloads(self, t: int, batch: np.ndarray) -> tuple[bytes, bytes]:
        """(party 0's, party 1's) step payloads; party 0's is empty: it expands its shares from the share key
        (``party0_step_shares``); party 1's is ``v_1 || m_1`` of every array in layout order."""
        layout = self.plan.step_layout()
        _, (v1, m1) = self.split("step", t, np.concatenate(self.step_values(t, batch)))
        v1, m1 = encode(v1), encode(m1)
        parts, pos = [], 0
        for _, n in layout:
            lo, hi = pos * ELEMENT_BYTES, (pos + n) * ELEMENT_BYTES
            parts += [v1[lo:hi], m1[lo:hi]]
            pos += n
        return b"", b"".join(parts)

    def output_payload(self, party: int) -> bytes:
        p = self.plan
        mask = self.uniform("out", 0, p.d + 1)
        if party == 0:
            return encode(mask)
        v, m = self.split("out", 0, mask)[1]
        return encode(v) + encode(m)


def party0_shares(share_key: bytes, label: str, index: int, n: int) -> np.ndarray:
    """Party 0's value and MAC shares (stacked, shape (2, n, L)) of an array of n values split under (label,
    index): uniform, expanded from the dealer's share key (docs/MPC.md section 5.1)."""
    k = mpc_hash("dealer/stream", share_key, ("share/" + label).encode(), index.to_bytes(8, "big"))
    r = uniform(KeyStream(k), 2 * n)
    return r.reshape(2, n, -1)


def party0_step_shares(share_key: bytes, t: int, layout: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Party 0's value and MAC shares of every array of step t (name -> (2, n, L)), split under ("step", t) as
    one array: the value shares of every array in layout order, then their MAC shares (docs/MPC.md section 5.1)."""
    r = party0_shares(share_key, "step", t, sum(n for _, n in layout))
    out, pos = {}, 0
    for name, n in layout:
        out[name] = r[:, pos:pos + n]
        pos += n
    return out


def decode_inputs(plan: Plan, party: int, chunks) -> InputMaterial:
    it = iter(chunks)
    first = next(it, b"")
    share_key = first[ELEMENT_BYTES:] if party == 0 else b""
    if party == 0 and len(share_key) != 32:
        raise MpcAbort("the dealer's input material is malformed (no share key)")
    key = MacKey(party, decode(first[:ELEMENT_BYTES], 1)[0], share_key)
    w = plan.d + 1
    own = (0, plan.n0) if party == 0 else (plan.n0, plan.n)
    vs, ms, clears = [], [], []
    for lo in range(0, plan.n, INPUT_CHUNK_ROWS):
        hi = min(lo + INPUT_CHUNK_ROWS, plan.n)
        nown = max(0, min(hi, own[1]) - max(lo, own[0]))
        data = next(it, None)
        if data is None:
            raise MpcAbort("the dealer's input material ended early")
        k = (hi - lo) * w
        nshares = 0 if party == 0 else 2 * k * ELEMENT_BYTES
        if len(data) != nshares + 16 * nown * w:
            raise MpcAbort("malformed message: the dealer's input material has the wrong length")
        if party == 0:
            v, m = party0_shares(share_key, "R", lo, k)
        else:
            e = decode(data[:nshares], 2 * k)
            v, m = e[:k], e[k:]
        vs.append(v)
        ms.append(m)
        clears.append(np.frombuffer(data[nshares:], dtype="<u8").reshape(-1, 2).astype(np.uint64))
    L = key.alpha.shape[-1]
    R = Shared(np.concatenate(vs).reshape(plan.n, w, L), np.concatenate(ms).reshape(plan.n, w, L), key)
    own_clear = np.concatenate(clears).reshape(own[1] - own[0], w, 2) if clears else \
        np.zeros((0, w, 2), dtype=np.uint64)
    return InputMaterial(key, R, own_clear)


def decode_step(plan: Plan, key: MacKey, payload: bytes, t: int) -> dict[str, Shared]:
    layout = plan.step_layout()
    out = {}
    if key.party == 0:
        if payload:
            raise MpcAbort("malformed message: the dealer sent party 0 step shares it expands itself")
        for name, sh in party0_step_shares(key.share_key, t, layout).items():
            out[name] = Shared.of(sh, key)
        return out
    e = decode(payload, 2 * sum(n for _, n in layout))
    pos = 0
    for name, n in layout:
        out[name] = Shared.of(e[pos:pos + 2 * n].reshape(2, n, -1), key)
        pos += 2 * n
    return out


def decode_output(plan: Plan, key: MacKey, payload: bytes) -> OutputMaterial:
    n = plan.d + 1
    if key.party == 0:
        clear = decode(payload, n)
        return OutputMaterial(Shared.of(party0_shares(key.share_key, "out", 0, n), key), clear)
    e = decode(payload, 2 * n)
    return OutputMaterial(Shared.of(e.reshape(2, n, -1), key), None)


class LocalPreprocessing:
    """In-process dealer (tests, benchmarks): the same generator, no network."""

    def __init__(self, gen: Generator, party: int):
        self.gen, self.party = gen, party
        self._key: MacKey | None = None
        self._batches: list | None = None

    def inputs(self) -> InputMaterial:
        mat = decode_inputs(self.gen.plan, self.party, self.gen.input_chunks(self.party))
        self._key = mat.key
        return mat

    def start_steps(self, ctx: SeedContext) -> None:
        self._batches = list(batch_schedule(self.gen.plan, ctx))

    def step(self, t: int) -> dict[str, Shared]:
        payload = self.gen.step_payloads(t, self._batches[t - 1])[self.party]
        return decode_step(self.gen.plan, self._key, payload, t)

    def output(self) -> OutputMaterial:
        return decode_output(self.gen.plan, self._key, self.gen.output_payload(self.party))
