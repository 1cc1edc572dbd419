"""Authenticated additive shares (SPDZ: Damgard, Pastro, Smart, Zakarias, CRYPTO 2012, section 2).

A secret x is held as ``[x] = (x_i, m_i)`` by party i with ``x_0 + x_1 = x`` and ``m_0 + m_1 = alpha * x``
(mod p) for the MAC key ``alpha = alpha_0 + alpha_1``, of which each party holds only its share. Linear
operations are local; a public constant c is added by party 0 to its value share, while each party adds
``alpha_i * c`` to its MAC share (docs/MPC.md, "Sharing and MACs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .field import P


@dataclass(frozen=True)
class MacKey:
    """This party's index (0 = client, 1 = trainer), its share of the MAC key, and (party 0) the dealer's share
    key from which party 0 expands its own shares (docs/MPC.md section 5.1)."""

    party: int
    alpha: int
    share_key: bytes = b""


class Shared:
    """This party's shares of an array of secrets: value shares ``v`` and MAC shares ``m`` (object arrays)."""

    __slots__ = ("key", "m", "v")

    def __init__(self, v: np.ndarray, m: np.ndarray, key: MacKey):
        self.v, self.m, self.key = v, m, key

    @property
    def shape(self):
        return self.v.shape

    def __len__(self):
        return len(self.v)

    def __getitem__(self, idx) -> Shared:
        return Shared(self.v[idx], self.m[idx], self.key)

    def __add__(self, o: Shared) -> Shared:
        return Shared((self.v + o.v) % P, (self.m + o.m) % P, self.key)

    def __sub__(self, o: Shared) -> Shared:
        return Shared((self.v - o.v) % P, (self.m - o.m) % P, self.key)

    def __neg__(self) -> Shared:
        return Shared((-self.v) % P, (-self.m) % P, self.key)

    def scale(self, c) -> Shared:
        """Multiply by a public constant (int or an object array that broadcasts)."""
        return Shared((self.v * c) % P, (self.m * c) % P, self.key)

    def add_public(self, c) -> Shared:
        """Add a public constant (int or object array): party 0 adds it to its value share."""
        c = np.asarray(c, dtype=object) % P if not isinstance(c, int) else c % P
        v = (self.v + c) % P if self.key.party == 0 else self.v + 0 * c
        return Shared(v % P, (self.m + self.key.alpha * c) % P, self.key)

    def lmul_public(self, M: np.ndarray) -> Shared:
        """``M @ [x]`` for a public matrix M (object array)."""
        return Shared((M @ self.v) % P, (M @ self.m) % P, self.key)

    def rmul_public(self, M: np.ndarray) -> Shared:
        """``[x] @ M`` for a public matrix M."""
        return Shared((self.v @ M) % P, (self.m @ M) % P, self.key)

    def sum(self, axis=None) -> Shared:
        return Shared(np.sum(self.v, axis=axis) % P, np.sum(self.m, axis=axis) % P, self.key)

    def reshape(self, *shape) -> Shared:
        v, m = np.asarray(self.v, dtype=object), np.asarray(self.m, dtype=object)
        return Shared(v.reshape(*shape), m.reshape(*shape), self.key)

    def ravel(self) -> Shared:
        return self.reshape(-1)

    @staticmethod
    def concat(parts: list[Shared], axis=0) -> Shared:
        return Shared(np.concatenate([s.v for s in parts], axis=axis),
                      np.concatenate([s.m for s in parts], axis=axis), parts[0].key)

    @staticmethod
    def public(values: np.ndarray, key: MacKey) -> Shared:
        """A public array as a sharing (party 0 holds the value; MAC shares alpha_i * c)."""
        c = np.asarray(values, dtype=object) % P
        v = c.copy() if key.party == 0 else c * 0
        return Shared(v, (c * key.alpha) % P, key)
