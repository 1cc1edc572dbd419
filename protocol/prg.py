"""The protocol's PRG: ChaCha20 keystreams under domain-separated SHA-256 keys.

All training randomness comes from the client's 32-byte training seed, bound to the session id and the
data root (the trainer cannot know it before it has signed the data commitment):

* ``init key   = H("prg/init",    session_id || data_root || training_seed)``
* ``epoch key  = H("prg/shuffle", session_id || data_root || training_seed || u64 epoch || u32 attempt)``
* ``challenge key = H("prg/challenge", session_id || state_root || audit_seed)``

``stream(key)`` is the ChaCha20 keystream (RFC 7539 block function via ``cryptography``, 16-byte
nonce/counter block all zero), read as little-endian ``uint64`` words.

* Uniform integers below ``m``: rejection sampling, accept a word ``w < 2^64 - (2^64 mod m)`` and output
  ``w mod m`` (no modulo bias).
* Shuffling ``n`` items for an epoch: draw ``n`` words as sort keys; if any two are equal, redraw with
  ``attempt + 1``; the permutation is the stable argsort. Given distinct i.i.d. uniform keys, every order is
  equally likely, so the shuffle is exactly uniform (conditioning on "all distinct" keeps it uniform). This
  is equivalent in distribution to Fisher-Yates with rejection sampling and vectorises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from .encoding import u32, u64
from .hashing import tagged_hash

_NONCE = bytes(16)


class KeyStream:
    """Sequential reader of the ChaCha20 keystream under ``key`` (32 bytes)."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("PRG key must be 32 bytes")
        self._enc = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()

    def read(self, nbytes: int) -> bytes:
        return self._enc.update(bytes(nbytes))

    def words(self, count: int) -> np.ndarray:
        return np.frombuffer(self.read(8 * count), dtype="<u8")

    def words_into(self, out: np.ndarray, block: int = 1 << 16) -> np.ndarray:
        """Fill ``out`` (uint64) with the next ``len(out)`` words, ``block`` at a time: the same words as
        ``words(len(out))`` without the two stream-sized byte buffers."""
        for a in range(0, out.size, block):
            out[a:a + block] = self.words(min(block, out.size - a))
        return out


def uniform_below(stream: KeyStream, count: int, m: int) -> np.ndarray:
    """``count`` unbiased uniform integers in ``[0, m)`` (``1 <= m <= 2^63``) as int64."""
    if not 1 <= m <= 2**63:
        raise ValueError("modulus out of range")
    limit = (2**64 // m) * m  # accept w < limit
    out: list[np.ndarray] = []
    have = 0
    while have < count:
        need = count - have
        w = stream.words(need + need // 8 + 4)
        if limit < 2**64:
            w = w[w < np.uint64(limit)]
        vals = (w % np.uint64(m)).astype(np.int64)[:need]
        out.append(vals)
        have += vals.size
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class SeedContext:
    """What the training randomness is bound to."""

    session_id: bytes
    data_root: bytes
    training_seed: bytes

    def __post_init__(self):
        if len(self.training_seed) != 32:
            raise ValueError("the training seed must be 32 bytes")
        if len(self.data_root) != 32:
            raise ValueError("the data root must be 32 bytes")

    def init_key(self) -> bytes:
        return tagged_hash("prg/init", self.session_id, self.data_root, self.training_seed)

    def epoch_key(self, epoch: int, attempt: int = 0) -> bytes:
        return tagged_hash("prg/shuffle", self.session_id, self.data_root, self.training_seed,
                           u64(epoch), u32(attempt))


_last: tuple = ()  # (epoch key, n, permutation): the last one made in this process
_REMEMBER_ROWS = 1 << 22  # up to 32 MB kept


def shuffle(ctx: SeedContext, epoch: int, n: int) -> np.ndarray:
    """The epoch's permutation of ``range(n)`` (int64, read-only). The last one is remembered: a client's spot
    check and its full replay, a trainer's training and its openings, each ask for the same permutation."""
    global _last
    key = ctx.epoch_key(epoch)
    last = _last
    if last and last[0] == key and last[1] == n:
        return last[2]
    perm = _shuffle(ctx, epoch, n)
    perm.flags.writeable = False
    if n <= _REMEMBER_ROWS:
        _last = (key, n, perm)
    return perm


def _shuffle(ctx: SeedContext, epoch: int, n: int) -> np.ndarray:
    attempt = 0
    keys = np.empty(n, dtype=np.uint64)  # one key array and the permutation: 16 bytes per row at the peak
    while True:
        KeyStream(ctx.epoch_key(epoch, attempt)).words_into(keys)
        perm = np.argsort(keys)  # keys are distinct (checked below), so any sort gives the same order
        keys.sort()
        if n < 2 or not bool((keys[1:] == keys[:-1]).any()):
            return perm.astype(np.int64, copy=False)
        attempt += 1  # a tie among 64-bit keys (probability < n^2 / 2^65): redraw


def initial_parameters(ctx: SeedContext, count: int, frac_bits: int) -> np.ndarray:
    """theta_0: ``count`` integers uniform in ``[-2^(f-6), 2^(f-6)]`` (reals in about [-1/64, 1/64])."""
    half = 1 << max(frac_bits - 6, 0)
    vals = uniform_below(KeyStream(ctx.init_key()), count, 2 * half + 1)
    return vals - half


def challenge_steps(session_id: bytes, state_root: bytes, audit_seed: bytes, k: int, num_steps: int) -> list[int]:
    """``min(k, T)`` distinct steps in ``1..T``, uniform, in the order drawn."""
    if num_steps < 1:
        raise ValueError("no steps to challenge")
    if len(session_id) != 16 or len(state_root) != 32 or len(audit_seed) != 32:
        raise ValueError("challenge inputs must be a 16-byte session id, a 32-byte root and a 32-byte audit seed")
    k = min(k, num_steps)
    stream = KeyStream(tagged_hash("prg/challenge", session_id, state_root, audit_seed))
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < k:
        for v in uniform_below(stream, k, num_steps):
            s = int(v) + 1
            if s not in seen:
                seen.add(s)
                chosen.append(s)
                if len(chosen) == k:
                    break
    return chosen


def seed_commitment(audit_seed: bytes, session_id: bytes) -> bytes:
    """Hash commitment to the audit seed, bound to the session (the seed is 32 random bytes)."""
    if len(audit_seed) != 32:
        raise ValueError("the audit seed must be 32 bytes")
    return tagged_hash("seed/commit", session_id, audit_seed)
