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
    """This party's shares of an array of secrets: value shares ``v`` and MAC shares ``m`` (element arrays,
    mpc.field: the last axis holds the residues)."""

    __slots__ = ("key", "m", "v")

    def __init__(self, v: np.ndarray, m: np.ndarray, key: MacKey):
        self.v, self.m, self.key = v, m, key

    @property
    def shape(self):
        return self.v.shape[:-1]

    @property
    def size(self) -> int:
        return self.v.size // F.L

    def __len__(self):
        return len(self.v)

    def __getitem__(self, idx) -> Shared:
        return Shared(self.v[idx], self.m[idx], self.key)

    def __add__(self, o: Shared) -> Shared:
        return Shared(F.add(self.v, o.v), F.add(self.m, o.m), self.key)

    def __sub__(self, o: Shared) -> Shared:
        return Shared(F.sub(self.v, o.v), F.sub(self.m, o.m), self.key)

    def __neg__(self) -> Shared:
        return Shared(F.neg(self.v), F.neg(self.m), self.key)

    def scale(self, c) -> Shared:
        """Multiply by a public constant (an int, or elements that broadcast)."""
        c = F.scalar(c)
        return Shared(F.mul(self.v, c), F.mul(self.m, c), self.key)

    def scale_small(self, c: np.ndarray) -> Shared:
        """Multiply by small public integer coefficients (int64, |c| < 2^12, shape of the values)."""
        return Shared(F.mul_small(self.v, c), F.mul_small(self.m, c), self.key)

    def add_public(self, c) -> Shared:
        """Add a public constant (an int or elements): party 0 adds it to its value share."""
        c = F.scalar(c)
        v = F.add(self.v, c) if self.key.party == 0 else self.v + 0 * c
        return Shared(v, F.add(self.m, F.mul(c, self.key.alpha)), self.key)

    def lmul_public(self, M: np.ndarray) -> Shared:
        """``M @ [x]`` for a public matrix or vector M (elements)."""
        return Shared(F.matmul(M, self.v), F.matmul(M, self.m), self.key)

    def rmul_public(self, M: np.ndarray) -> Shared:
        """``[x] @ M`` for a public matrix or vector M (elements)."""
        return Shared(F.matmul(self.v, M), F.matmul(self.m, M), self.key)

    def sum(self, axis=0) -> Shared:
        return Shared(F.fsum(self.v, axis), F.fsum(self.m, axis), self.key)

    def reshape(self, *shape) -> Shared:
        return Shared(self.v.reshape(*shape, F.L), self.m.reshape(*shape, F.L), self.key)

    def ravel(self) -> Shared:
        return self.reshape(-1)

    def broadcast(self, n: int) -> Shared:
        """A single shared value repeated n times."""
        return Shared(np.broadcast_to(self.v, (n, F.L)).copy(), np.broadcast_to(self.m, (n, F.L)).copy(), self.key)

    @staticmethod
    def concat(parts: list[Shared], axis=0) -> Shared:
        return Shared(np.concatenate([s.v for s in parts], axis=axis),
                      np.concatenate([s.m for s in parts], axis=axis), parts[0].key)

    @staticmethod
    def public(values, key: MacKey) -> Shared:
        """Public elements as a sharing (party 0 holds the value; MAC shares alpha_i * c)."""
        c = np.asarray(values, dtype=np.uint64)
        v = c.copy() if key.party == 0 else np.zeros_like(c)
        return Shared(v, F.mul(c, key.alpha), key)
