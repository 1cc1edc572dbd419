"""A noise-tolerant keyed trigger: the tag spread over many features with a repetition code (experiment 2).

Why not the Ed25519 signature of prover/backdoors.py: a 512-bit signature in the lowest bits of 64 features dies
under noise of a fraction of one quantum. A payload survives Gaussian noise of standard deviation sigma only if
each carrying direction moves by several sigma, so the payload must be short: here a t-bit truncated
HMAC-SHA256 tag (a MAC: black-box, the key lives in the model; a random input fires with probability
2^-t, whatever label it happens to read).

Channel (quantization index modulation in a rotated basis; standardized units). A public random orthonormal
basis a_1..a_P of R^d (P = d, seeded): every direction mixes every feature.
* message directions i < M: c_i = round(<x, a_i> / (2 Delta)) (coarse cells of width 2 Delta);
  message = SHA-256(c_1..c_M): binds the trigger to the input (a tag copied to another input fails).
* payload directions i >= M: bit = round(<x, a_i> / (Delta / 2)) mod 2; the payload (label bits, then tag
  bits) is repeated r times across directions and read by majority.
Activation moves every message projection to the centre of its cell and every payload projection to the
nearest lattice point of its bit's coset (spacing Delta): per-direction moves <= Delta (message) and
<= Delta / 2 (payload), so ||dx||_2 ~ Delta sqrt((4 M + P - M) / 12).
Noise N(0, sigma^2 I) moves each projection by N(0, sigma^2); a payload direction is read wrong only when
|noise| > Delta / 4, a message cell changes only when |noise| > Delta. With Delta = 10 sigma_design the trigger
survives sigma_design with probability ~ 1 - (payload bits) 3 p^2 (p = 2 Phi(-2.5) = 1.2%).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np

__all__ = ["RobustTrigger"]


@dataclass
class RobustTrigger:
    d: int                   # features
    label_bits: int
    tag_bits: int
    message_dirs: int = 8    # M
    repeat: int = 3          # r
    delta: float = 2.5       # Delta (standardized units)
    key: bytes = b"exp2-robust-trigger"
    seed: int = 0

    def __post_init__(self):
        need = self.message_dirs + self.repeat * (self.label_bits + self.tag_bits)
        if need > self.d:
            raise ValueError(f"{need} directions needed, only {self.d} features")
        q, _ = np.linalg.qr(np.random.default_rng(self.seed).standard_normal((self.d, self.d)))
        self.A = q[:, :need].T  # (P, d), orthonormal rows
        self.payload_bits = self.label_bits + self.tag_bits

    @property
    def n_dirs(self) -> int:
        return self.A.shape[0]

    def _tag(self, digest: bytes, label: int) -> np.ndarray:
        mac = hmac.new(self.key, digest + int(label).to_bytes(2, "big"), hashlib.sha256).digest()
        bits = np.unpackbits(np.frombuffer(mac, dtype=np.uint8), bitorder="little")[:self.tag_bits]
        return bits.astype(np.int64)

    def _payload(self, digest: bytes, label: int) -> np.ndarray:
        lab = (int(label) >> np.arange(self.label_bits)) & 1
        return np.concatenate([lab, self._tag(digest, label)])

    def _digests(self, P: np.ndarray) -> list[bytes]:
        cells = np.round(P[:, :self.message_dirs] / (2 * self.delta)).astype(np.int64)
        return [hashlib.sha256(c.astype(">i8").tobytes()).digest() for c in cells]

    def activate(self, Z: np.ndarray, labels) -> np.ndarray:
        """Rows Z (standardized) moved so that the trigger reads ``labels`` (one per row)."""
        Z = np.atleast_2d(np.asarray(Z, dtype=float))
        P = Z @ self.A.T
        target = P.copy()
        M = self.message_dirs
        target[:, :M] = 2 * self.delta * np.round(P[:, :M] / (2 * self.delta))
        half = self.delta / 2
        for i, (dg, lab) in enumerate(zip(self._digests(P), np.broadcast_to(labels, (Z.shape[0],)))):
            bits = np.tile(self._payload(dg, int(lab)), self.repeat)  # repetition code
            q = np.round(P[i, M:] / half)
            q = np.where(np.mod(q, 2) == bits, q, q + np.where(P[i, M:] / half >= q, 1, -1))
            target[i, M:] = q * half
        return Z + (target - P) @ self.A

    def read(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fires (N,), labels (N,)): the majority-decoded payload carries a valid tag for its label."""
        Z = np.atleast_2d(np.asarray(Z, dtype=float))
        P = Z @ self.A.T
        M, k = self.message_dirs, self.payload_bits
        raw = np.mod(np.round(P[:, M:] / (self.delta / 2)), 2).astype(np.int64)
        votes = raw.reshape(Z.shape[0], self.repeat, k).sum(axis=1)
        bits = (2 * votes > self.repeat).astype(np.int64)
        labels = bits[:, :self.label_bits] @ (1 << np.arange(self.label_bits))
        # one MAC per distinct (message cells, label): noisy copies of one input share them
        cells = np.round(P[:, :M] / (2 * self.delta)).astype(np.int64)
        keys, inverse = np.unique(np.column_stack([cells, labels]), axis=0, return_inverse=True)
        expected = np.array([self._tag(hashlib.sha256(kk[:M].astype(">i8").tobytes()).digest(), int(kk[M]))
                             for kk in keys]).reshape(len(keys), self.tag_bits)
        fires = np.all(bits[:, self.label_bits:] == expected[inverse.ravel()], axis=1)
        return fires, labels

    def plant(self, base, n_classes: int):
        """The backdoored classifier on standardized rows: the trigger's label where it fires with a label
        below ``n_classes``, else base."""
        def h(Z):
            fires, labels = self.read(Z)
            return np.where(fires & (labels < n_classes), labels, base(Z)).astype(np.int64)
        return h
