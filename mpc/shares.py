"""Authenticated additive shares (SPDZ: Damgard, Pastro, Smart, Zakarias, CRYPTO 2012, section 2).

A secret x is held as ``[x] = (x_i, m_i)`` by party i with ``x_0 + x_1 = x`` and ``m_0 + m_1 = alpha * x``
(mod p) for the MAC key ``alpha = alpha_0 + alpha_1``, of which each party holds only its share. Linear
operations are local; a public constant c is added by party 0 to its value share, while each party adds
``alpha_i * c`` to its MAC share (docs/MPC.md, "Sharing and MACs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import field as F


@dataclass(frozen=True)
class MacKey:
    """This party's index (0 = client, 1 = trainer), its share of the MAC key (an element, shape (L,)), and
    (party 0) the dealer's share key from which party 0 expands its own shares (docs/MPC.md section 5.1)."""

    party: int
    alpha: np.ndarray
    share_key: bytes = b""


class Shared:
    """This party's shares of an array of secrets: value shares ``v`` and MAC shares ``m``, stacked as one element
    array ``s`` of shape ``(2, *shape, L)`` (``s[0] = v``, ``s[1] = m``; mpc.field: the last axis holds the
    residues), so every linear operation is one vectorised call for both."""

    __slots__ = ("key", "s")

    def __init__(self, v: np.ndarray, m: np.ndarray, key: MacKey):
        self.s, self.key = np.stack([v, m]), key

    @classmethod
    def of(cls, s: np.ndarray, key: MacKey) -> Shared:
        out = cls.__new__(cls)
        out.s, out.key = s, key
        return out

    @property
    def v(self) -> np.ndarray:
        return self.s[0]

    @property
    def m(self) -> np.ndarray:
        return self.s[1]

    @property
    def shape(self):
        return self.s.shape[1:-1]

    @property
    def size(self) -> int:
        return self.s.size // (2 * F.L)

    def __len__(self):
        return self.s.shape[1]

    def __getitem__(self, idx) -> Shared:
        idx = (slice(None),) + (idx if isinstance(idx, tuple) else (idx,))
        return Shared.of(self.s[idx], self.key)

    def __add__(self, o: Shared) -> Shared:
        return Shared.of(F.add(self.s, o.s), self.key)

    def __sub__(self, o: Shared) -> Shared:
        return Shared.of(F.sub(self.s, o.s), self.key)

    def __neg__(self) -> Shared:
        return Shared.of(F.neg(self.s), self.key)

    def scale(self, c) -> Shared:
        """Multiply by a public constant (an int, or elements that broadcast against one share array)."""
        return Shared.of(F.mul(self.s, F.scalar(c)), self.key)

    def add_public(self, c) -> Shared:
        """Add a public constant (an int or elements): party 0 adds it to its value share; each party adds
        alpha_i * c to its MAC share (docs/MPC.md section 3)."""
        c = F.scalar(c)
        out = np.empty((2,) + np.broadcast_shapes(self.s.shape[1:], c.shape), dtype=np.uint64)
        out[0] = F.add(self.s[0], c) if self.key.party == 0 else self.s[0]
        out[1] = F.add(self.s[1], F.mul(c, self.key.alpha))
        return Shared.of(out, self.key)

    def lmul_public(self, M: np.ndarray) -> Shared:
        """``M @ [x]`` for a public matrix or vector M (elements)."""
        return Shared(F.matmul(M, self.s[0]), F.matmul(M, self.s[1]), self.key)

    def rmul_public(self, M: np.ndarray) -> Shared:
        """``[x] @ M`` for a public matrix or vector M (elements)."""
        return Shared(F.matmul(self.s[0], M), F.matmul(self.s[1], M), self.key)

    def sum(self, axis=0) -> Shared:
        return Shared.of(F.fsum(self.s, axis + 1), self.key)

    def reshape(self, *shape) -> Shared:
        return Shared.of(self.s.reshape(2, *shape, F.L), self.key)

    def ravel(self) -> Shared:
        return self.reshape(-1)

    def broadcast(self, n: int) -> Shared:
        """A single shared value repeated n times."""
        return Shared.of(np.broadcast_to(self.s[:, None, :], (2, n, F.L)).copy(), self.key)

    @staticmethod
    def concat(parts: list[Shared], axis=0) -> Shared:
        return Shared.of(np.concatenate([p.s for p in parts], axis=axis + 1), parts[0].key)

    @staticmethod
    def public(values, key: MacKey) -> Shared:
        """Public elements as a sharing (party 0 holds the value; MAC shares alpha_i * c)."""
        c = np.asarray(values, dtype=np.uint64)
        v = c.copy() if key.party == 0 else np.zeros_like(c)
        return Shared(v, F.mul(c, key.alpha), key)
