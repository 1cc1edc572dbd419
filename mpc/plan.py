"""Public parameters of a two-party session: bounds, truncation layers, the preprocessing layout.

Both parties and the dealer derive everything here from the same public values (row counts, d, the
training config), so they agree on how much material each step consumes and in which order
(docs/MPC.md, "Parameters" and "Preprocessing").

Bounds (``xb = K + kappa + 1`` bounds every input after the input range check, ``|x| < 2^xb``):

* layer 1 (``z = a >> f``): ``|a| <= d * 2^(xb + K - 1) + 2^(K - 1 + f)``;
* layer 2 (``theta' = (theta << U - lr * G) >> U``): ``|r| <= 2^(K-1) + 2^xb``,
  ``|G_j| <= B |r| 2^xb + l2 B 2^(K-1)``, ``|G_b| <= B |r| 2^f``, ``|x| <= 2^(K-1+U) + lr_num max|G|``.

A layer with bound ``2^bb``, shift s and range K is computed on ``x'' = x + 2^(s+K-1) + H 2^(s+K)`` with
``H = 2^max(bb - s - K, 0)``, so ``0 <= x'' < 2^kk``, ``kk = max(bb, s + K) + 2``; its mask has
``kk + kappa`` bits and the prime must satisfy ``p > 2^(kk + kappa + 2)``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

from protocol.errors import InputError
from protocol.training import TrainConfig

from .field import KAPPA, P

BLOCK_BITS = 4
MAX_ELEMENTS = 2_000_000  # n (d + 1): bounds each role's memory (shares and MACs: 80 bytes per value, 160 MB)


def fold_pairs(n: int) -> list[tuple[int, int]]:
    """One round of the fold of n affine maps (left to right): items (0, 1), (2, 3), ... are composed; an odd
    last item is carried over."""
    return [(i, i + 1) for i in range(0, n - 1, 2)]


def _folded(kinds: list[bool]) -> list[bool]:
    """Kinds after one fold round: a composition is a map (True) unless its left item is a value (False)."""
    out = [kinds[i] for i, _ in fold_pairs(len(kinds))]
    return out + ([kinds[-1]] if len(kinds) % 2 else [])


@dataclass(frozen=True)
class Layer:
    """One exact truncation layer: ``count`` values, shift ``s``, range ``K`` bits, input bound ``2^bb``."""

    count: int
    s: int
    K: int
    bb: int

    @property
    def H(self) -> int:
        return 1 << max(self.bb - self.s - self.K, 0)

    @property
    def kk(self) -> int:
        return max(self.bb, self.s + self.K) + 2

    @property
    def nbits(self) -> int:
        return self.s + self.K

    @property
    def rhi_bits(self) -> int:
        return self.kk + KAPPA - self.nbits

    @functools.cached_property
    def blocks(self) -> list[tuple[int, int]]:
        """(first bit, width) of the comparison's bit blocks: bits 0..s-1 and s..s+K-1, each cut from the
        least significant end into blocks of at most BLOCK_BITS bits."""
        out = []
        for lo, hi in ((0, self.s), (self.s, self.nbits)):
            out += [(b, min(BLOCK_BITS, hi - b)) for b in range(lo, hi, BLOCK_BITS)]
        return out

    @functools.cached_property
    def monomials(self) -> int:
        """Products of two or more bits of one block, per value (the dealer provides them)."""
        return sum((1 << w) - w - 1 for _, w in self.blocks)

    @functools.cached_property
    def low_blocks(self) -> int:
        """Blocks of bits 0..s-1 (their fold gives LT_s); the others are bits s..s+K-1."""
        return sum(1 for lo, _ in self.blocks if lo < self.s)

    @functools.cache  # noqa: B019 - a handful of layers per process
    def fold_rounds(self) -> list[int]:
        """Products per value in each round of the comparison (docs/MPC.md, "Exact truncation"): the low and the
        high blocks are folded in parallel by ``fold_pairs``; then one product joins them (when both exist)."""
        low = [False] + [True] * (self.low_blocks - 1) if self.low_blocks else []
        high = [bool(low)] + [True] * (len(self.blocks) - self.low_blocks - 1)
        out = []
        while len(low) > 1 or len(high) > 1:
            n = 0
            for seq in (low, high):
                n += sum(1 + seq[i] for i, _ in fold_pairs(len(seq)))
            low, high = _folded(low), _folded(high)
            out.append(n)
        if low:
            out.append(1)
        return out

    @functools.cached_property
    def mults(self) -> int:
        """Products per value: those of the comparison's fold, and the zero test."""
        return sum(self.fold_rounds()) + 1


@dataclass(frozen=True)
class Plan:
    n0: int  # client rows (party 0), first in the union
    n1: int  # trainer rows (party 1)
    d: int
    model: str
    epochs: int
    batch_size: int
    lr_num: int
    lr_shift: int
    l2_num: int
    frac_bits: int
    weight_bits: int

    @classmethod
    def build(cls, n0: int, n1: int, d: int, cfg: TrainConfig) -> Plan:
        plan = cls(n0, n1, d, cfg.model, cfg.epochs, cfg.batch_size, cfg.lr_num, cfg.lr_shift, cfg.l2_num,
                   cfg.frac_bits, cfg.weight_bits)
        plan.validate()
        return plan

    @property
    def cfg(self) -> TrainConfig:
        return TrainConfig(model=self.model, epochs=self.epochs, batch_size=self.batch_size, lr_num=self.lr_num,
                           lr_shift=self.lr_shift, l2_num=self.l2_num, frac_bits=self.frac_bits,
                           weight_bits=self.weight_bits)

    @property
    def n(self) -> int:
        return self.n0 + self.n1

    @property
    def num_steps(self) -> int:
        return self.cfg.num_steps(self.n)

    @property
    def input_bits(self) -> int:
        """Input masks are uniform in [0, 2^(K + kappa))."""
        return self.weight_bits + KAPPA

    @property
    def xb(self) -> int:
        return self.weight_bits + KAPPA + 1

    @functools.cache  # noqa: B019 - plans are few and small
    def layers(self) -> tuple[Layer, Layer]:
        """Layer 1 (``z = a >> f``) and layer 2 (``theta' = x >> U``). With ``defer_range1`` layer 2's bound
        holds for any z that layer 1 can output, in range or not (docs/MPC.md section 7)."""
        L1 = self._layer1()
        L2 = self._layer2(L1)
        if not self._fits(L2):
            L2 = self._layer2(None)
        return L1, L2

    @functools.cached_property
    def defer_range1(self) -> bool:
        """Whether layer 1's range check runs alongside layer 2 (its openings ride on later rounds, its w1 is
        opened with the next step's check values) instead of before layer 2's first opening: possible when
        layer 2's bound for an unchecked z still fits the ring (docs/MPC.md sections 7-8)."""
        return self._fits(self._layer2(self._layer1()))

    def _layer1(self) -> Layer:
        K, f, d = self.weight_bits, self.frac_bits, self.d
        a_max = d * (1 << (self.xb + K - 1)) + (1 << (K - 1 + f))
        return Layer(self.batch_size, f, K, a_max.bit_length())

    def _layer2(self, L1: Layer | None) -> Layer:
        """Layer 2 for |z| < 2^(K-1) (L1 None: z range-checked before layer 2) or |z| < 2^(bb1 - f)."""
        K, f, d, B = self.weight_bits, self.frac_bits, self.d, self.batch_size
        U = self.cfg.update_shift
        z_max = 1 << (K - 1) if L1 is None else 1 << (L1.bb - L1.s)
        r_max = z_max + (1 << self.xb)
        g_max = max(B * r_max * (1 << self.xb) + self.l2_num * B * (1 << (K - 1)), B * r_max * (1 << f))
        u_max = (1 << (K - 1 + U)) + self.lr_num * g_max
        return Layer(d + 1, U, K, u_max.bit_length())

    @staticmethod
    def _fits(layer: Layer) -> bool:
        return layer.kk + KAPPA + 2 <= P.bit_length() - 1

    def validate(self) -> None:
        self.cfg.validate()
        if self.model != "linear":
            raise InputError("two-party training supports --model linear only (the integer sigmoid's table lookup "
                             "has no exact secure version here; see docs/MPC.md)")
        if min(self.n0, self.n1) < 0:
            raise InputError("a row count is negative")
        if self.n == 0:
            raise InputError("neither party holds rows: nothing to train on")
        if self.n < self.batch_size:
            raise InputError(f"the two parties hold {self.n} rows together, fewer than one batch of {self.batch_size}")
        if not 1 <= self.d <= 1000:
            raise InputError(f"number of features must be in 1..1000, got {self.d}")
        if self.n * (self.d + 1) > MAX_ELEMENTS:
            raise InputError(f"{self.n} rows of {self.d + 1} values are over the two-party limit of {MAX_ELEMENTS:,} "
                             "values (every party holds shares and MACs of every value of the union in memory)")
        for layer in self.layers():
            if not self._fits(layer):
                raise InputError(f"this configuration needs {layer.kk}-bit intermediate values; with kappa = {KAPPA} "
                                 f"the ring Z_N (N = p_1 ... p_5 < 2^250, a product of field primes) allows at "
                                 f"most {P.bit_length() - 3 - KAPPA}: lower "
                                 f"--weight-bits, --lr or --l2")

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        try:
            doc = json.loads(data)
            plan = cls(**{k: int(v) if k != "model" else str(v) for k, v in doc.items()})
        except (ValueError, TypeError) as e:
            raise InputError(f"malformed plan: {e}") from e
        plan.validate()
        return plan

    def step_layout(self) -> list[tuple[str, int]]:
        """Names and lengths of one step's shared arrays, in the order they are generated and sent."""
        d, B = self.d, self.batch_size
        out = [("V", d), ("V2", d), ("Z", B), ("Z2", B), ("M", B), ("M2", B), ("Zp", d), ("Zp2", d)]
        for li, layer in enumerate(self.layers(), 1):
            c, nm = layer.count, layer.mults
            out += [(f"L{li}.bits", c * layer.nbits), (f"L{li}.mono", c * layer.monomials), (f"L{li}.rhi", c)]
            out += [(f"L{li}.{t}", c * nm) for t in ("a", "b", "c", "a2", "c2")]
        return out

    def step_elements(self) -> int:
        return 2 * sum(n for _, n in self.step_layout())
