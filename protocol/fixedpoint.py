"""Fixed-point formats, exact rounding and the integer-defined sigmoid.

A real v is represented by the integer ``round_half_even(v * 2^f)`` (``f`` = frac_bits). Rounding back to
scale ``2^f`` is always ``floor`` (Python ``>>`` / numpy arithmetic shift), never truncation toward zero.
Values must stay within ``-2^(K-1) <= v < 2^(K-1)`` (``K`` = weight_bits); leaving that range raises
:class:`~protocol.errors.FixedPointOverflow`, it never wraps.

The sigmoid is defined by integers: a table ``T[k] = round_half_even(2^f / (1 + e^(-k/16)))`` for
``k = -128..128`` (computed with :mod:`decimal` at 60 significant digits, which is exactly reproducible on
any machine), and between table points a floor-rounded linear interpolation; inputs are clamped to
``[-8, 8]``.

The exponential used by the softmax (multinomial logistic regression) is defined the same way, for
non-positive inputs only (the softmax subtracts the row maximum first): a table
``E[k] = round_half_even(2^f * e^(-k/16))`` for ``k = 0..256`` (decimal, 60 digits), floor-rounded linear
interpolation between table points, inputs below -16 clamped to -16 (docs/PROTOCOL.md section 7).
"""

from __future__ import annotations

import decimal
import functools

import numpy as np

from .errors import FixedPointOverflow

SIGMOID_RANGE = 8  # |z| clamped to 8
SIGMOID_STEP_BITS = 4  # table step 1/16
SIGMOID_POINTS = 2 * SIGMOID_RANGE * (1 << SIGMOID_STEP_BITS) + 1  # 257


def in_range(v: int, weight_bits: int) -> bool:
    """The K-bit two's-complement range ``-2^(K-1) <= v < 2^(K-1)`` (the SNARK's range check)."""
    return -(1 << (weight_bits - 1)) <= v < (1 << (weight_bits - 1))


def check_range(values: np.ndarray, weight_bits: int, what: str, step: int | None = None) -> None:
    """Raise FixedPointOverflow unless every value is in the K-bit two's-complement range."""
    if not values.size:
        return
    if values.dtype == object:
        lo, hi = int(min(values)), int(max(values))
    else:
        lo, hi = int(values.min()), int(values.max())
    if not (in_range(lo, weight_bits) and in_range(hi, weight_bits)):
        m = hi if not in_range(hi, weight_bits) else lo
        raise FixedPointOverflow(
            f"{what} reached {m}, outside [-2^{weight_bits - 1}, 2^{weight_bits - 1}) at step {step}: the "
            f"fixed-point format overflowed (lower the learning rate, or raise weight_bits)",
            step=step, value=m, bound=1 << (weight_bits - 1),
        )


@functools.cache
def sigmoid_table(frac_bits: int) -> tuple[int, ...]:
    """``T[k + 128] = round_half_even(2^f * sigmoid(k / 16))`` for k = -128..128."""
    one = decimal.Decimal(1)
    return _decimal_table(frac_bits, range(-SIGMOID_RANGE << SIGMOID_STEP_BITS, (SIGMOID_RANGE << SIGMOID_STEP_BITS) + 1),
                          lambda ctx, x: ctx.divide(one, ctx.add(one, ctx.exp(ctx.minus(x)))))


EXP_RANGE = 16  # exp_q input clamped to [-16, 0]
EXP_POINTS = EXP_RANGE * (1 << SIGMOID_STEP_BITS) + 1  # 257


def _decimal_table(frac_bits: int, ks, fn) -> tuple[int, ...]:
    """``round_half_even(2^f * fn(ctx, k / 16))`` for k in ``ks``, in 60-digit decimal arithmetic."""
    ctx = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
    scale = decimal.Decimal(1 << frac_bits)
    out = []
    for k in ks:
        x = ctx.divide(decimal.Decimal(k), decimal.Decimal(1 << SIGMOID_STEP_BITS))
        out.append(int(ctx.multiply(fn(ctx, x), scale).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)))
    return tuple(out)


@functools.cache
def exp_table(frac_bits: int) -> tuple[int, ...]:
    """``E[k] = round_half_even(2^f * e^(-k/16))`` for k = 0..256 (``E[0] = 2^f``)."""
    return _decimal_table(frac_bits, range(0, -EXP_POINTS, -1), lambda ctx, x: ctx.exp(x))


def exp_exact(v: int, frac_bits: int) -> int:
    """Integer ``2^f * e^(v / 2^f)`` for ``v <= 0`` on one Python int (the reference).

    ``u = min(-v, 16*2^f)``, ``i = u >> (f-4)``, ``r = u mod 2^(f-4)``,
    ``exp_q(v) = E[i] + (((E[i+1] - E[i]) * r) >> (f-4))`` with ``E[257] := E[256]``."""
    if v > 0:
        raise ValueError("exp_q is defined for non-positive inputs (max-subtracted logits)")
    return _interp_exact(exp_table(frac_bits), min(-v, EXP_RANGE << frac_bits), frac_bits - SIGMOID_STEP_BITS)


def exp_q(v: np.ndarray, frac_bits: int) -> np.ndarray:
    """``exp_exact`` vectorised over int64 arrays of non-positive values (every intermediate < 2^57)."""
    if frac_bits < SIGMOID_STEP_BITS:
        raise ValueError(f"softmax needs frac_bits >= {SIGMOID_STEP_BITS}")
    u = np.minimum(-np.asarray(v, dtype=np.int64), EXP_RANGE << frac_bits)
    return _interp_q(_padded_array(exp_table, frac_bits), u, frac_bits - SIGMOID_STEP_BITS)


def _interp_exact(table: tuple[int, ...], u: int, sh: int) -> int:
    """``T[i] + (((T[i+1] - T[i]) * r) >> sh)`` with ``i = u >> sh``, ``r = u mod 2^sh``, ``T[len] := T[-1]``."""
    i, r = u >> sh, u & ((1 << sh) - 1)
    hi = table[i + 1] if i + 1 < len(table) else table[-1]
    return table[i] + (((hi - table[i]) * r) >> sh)


def _interp_q(padded: np.ndarray, u: np.ndarray, sh: int) -> np.ndarray:
    """``_interp_exact`` over an int64 array ``u`` (``padded`` = the table with its last entry repeated)."""
    i = u >> sh
    r = u & ((1 << sh) - 1)
    lo = padded[i]
    return lo + (((padded[i + 1] - lo) * r) >> sh)


@functools.cache
def _padded_array(table_fn, frac_bits: int) -> np.ndarray:
    t = table_fn(frac_bits)
    arr = np.array(t + (t[-1],), dtype=np.int64)
    arr.setflags(write=False)
    return arr


FULL_TABLE_MAX_BITS = 18  # up to 2^(f+4)+1 = 4M entries (32 MB) for f = 18


def sigmoid_q(z: np.ndarray, frac_bits: int) -> np.ndarray:
    """Integer sigmoid (vectorised). For ``frac_bits <= 18`` one gather from the function tabulated on every
    input in [-8*2^f, 8*2^f] (built once by ``sigmoid_interp`` itself, so identical by construction)."""
    if SIGMOID_STEP_BITS <= frac_bits <= FULL_TABLE_MAX_BITS:
        lim = SIGMOID_RANGE << frac_bits
        full = _full_table(frac_bits)
        return full[np.minimum(np.maximum(np.asarray(z, dtype=np.int64), -lim), lim) + lim]
    return sigmoid_interp(z, frac_bits)


@functools.cache
def _full_table(frac_bits: int) -> np.ndarray:
    lim = SIGMOID_RANGE << frac_bits
    arr = sigmoid_interp(np.arange(-lim, lim + 1, dtype=np.int64), frac_bits)
    arr.setflags(write=False)
    return arr


def sigmoid_interp(z: np.ndarray, frac_bits: int) -> np.ndarray:
    """Integer sigmoid of ``z`` (scale 2^f) -> probability at scale 2^f, vectorised over int64 arrays.

    ``u = clamp(z, -8*2^f, 8*2^f) + 8*2^f``; ``i = u >> (f-4)``; ``r = u & (2^(f-4) - 1)``;
    ``out = T[i] + ((T[i+1] - T[i]) * r) >> (f-4)`` (with ``T[257] := T[256]``)."""
    if frac_bits < SIGMOID_STEP_BITS:
        raise ValueError(f"logistic regression needs frac_bits >= {SIGMOID_STEP_BITS}")
    lim = SIGMOID_RANGE << frac_bits
    u = np.minimum(np.maximum(np.asarray(z, dtype=np.int64), -lim), lim) + lim
    return _interp_q(_padded_array(sigmoid_table, frac_bits), u, frac_bits - SIGMOID_STEP_BITS)


def sigmoid_exact(z: int, frac_bits: int) -> int:
    """The same function on one Python int (the reference the vectorised version is tested against)."""
    lim = SIGMOID_RANGE << frac_bits
    return _interp_exact(sigmoid_table(frac_bits), min(max(z, -lim), lim) + lim, frac_bits - SIGMOID_STEP_BITS)


def quantize(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Client-side: floats -> int64 at scale 2^f, round half to even. Rejects NaN/inf and overflow."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize NaN or infinite values")
    scaled = x * float(1 << frac_bits)
    if scaled.size and np.abs(scaled).max() >= 2.0**62:
        raise FixedPointOverflow("value too large for the fixed-point format")
    return np.rint(scaled).astype(np.int64)


def dyadic(value: float, shift: int, what: str) -> int:
    """``round(value * 2^shift)`` as a positive/non-negative integer numerator, with a clear error."""
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite non-negative number, got {value}")
    num = round(value * (1 << shift))
    return num
