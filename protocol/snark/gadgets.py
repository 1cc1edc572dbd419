"""R1CS gadgets: booleans, signed floor division by 2^S with a range-checked quotient, materialisation.

Floor division (docs/SNARK.md section 3.1). Input an LC E whose true integer value lies in (-r/2, r/2) (the caller proves
that no wrap-around can occur, see `check_no_wrap`), shift S, quotient width K:

    off  = 2^(K-1+S)
    U    = E + off                      honest U in [0, 2^(S+K))
    b_k * b_k = b_k                     k = 0..S+K-1, new private wires      (S+K constraints)
    (sum_k 2^k b_k - off - E) * 1 = 0                                        (1 constraint)
    q   := sum_{k>=S} 2^(k-S) b_k - 2^(K-1)      the quotient, an LC
    rho := sum_{k<S} 2^k b_k                     the remainder

The bits range-check the WHOLE offset dividend, hence the quotient q in [-2^(K-1), 2^(K-1)) and the
remainder in [0, 2^S) at once. A remainder-only check would be unsound: 2^S is invertible mod r, so any
remainder has a matching (huge) quotient field element.
"""

from __future__ import annotations

from protocol.errors import FixedPointOverflow
from protocol.snark.field import to_signed
from protocol.snark.r1cs import LC, R1CS, as_lc

__all__ = [
    "MAX_DIVIDEND_BITS",
    "NO_WRAP_BOUND",
    "alloc_bit",
    "boolean",
    "check_no_wrap",
    "floor_div_pow2",
    "materialize",
    "materialize_into",
]

#: S + K must not exceed this, so the decomposed dividend stays far below r/2 ~ 2^253.9 (docs/SNARK.md section 3.2).
MAX_DIVIDEND_BITS = 250
#: Every dividend's a-priori bound sum|coeff| * 2^(K-1) (+ |constant|) must be below this (docs/SNARK.md section 3.2).
NO_WRAP_BOUND = 1 << 252


def boolean(cs: R1CS, x, name: str) -> None:
    """Constrain x (an LC or a wire) to {0, 1}: x * x = x."""
    lc = LC.term(x) if isinstance(x, int) and not isinstance(x, bool) else as_lc(x)
    cs.enforce(lc, lc, lc, name)


def alloc_bit(cs: R1CS, name: str, value: int | None = None) -> int:
    """A new private wire constrained to be a bit."""
    if value is not None and value not in (0, 1):
        raise ValueError(f"bit {name!r} must be 0 or 1, got {value}")
    w = cs.private(name, value)
    boolean(cs, w, f"{name} is boolean")
    return w


def check_no_wrap(bound: int, what: str = "dividend") -> None:
    """Raise ValueError unless an a-priori bound on |E| is below NO_WRAP_BOUND = 2^252."""
    if bound >= NO_WRAP_BOUND:
        raise ValueError(f"{what} may reach {bound} (~2^{bound.bit_length()}) >= 2^252: linear combinations "
                         f"could wrap around mod r; use smaller data, weights, weight_bits or shifts")


def _check_shape(shift: int, width: int) -> None:
    for v, what in ((shift, "shift S"), (width, "quotient width K")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    if shift < 0 or width < 1:
        raise ValueError(f"need S >= 0 and K >= 1, got S = {shift}, K = {width}")
    if shift + width > MAX_DIVIDEND_BITS:
        raise ValueError(f"S + K = {shift + width} exceeds {MAX_DIVIDEND_BITS}: the decomposed dividend could "
                         f"wrap around mod r")


def floor_div_pow2(cs: R1CS, e, shift: int, width: int, name: str, *, step: int | None = None) -> LC:
    """Return the LC q = floor(E / 2^S), constrained to [-2^(K-1), 2^(K-1)) (module docstring).

    Adds S + K boolean constraints and one linear constraint. When E has a value in `cs`, the bits get
    their values; an honest quotient outside the K-bit range raises FixedPointOverflow (never wraps).
    """
    _check_shape(shift, width)
    e = as_lc(e)
    n_bits = shift + width
    off = 1 << (width - 1 + shift)
    ev = cs.value(e)
    u = None
    if ev is not None:
        u = to_signed(ev) + off
        if not 0 <= u < 1 << n_bits:
            q = to_signed(ev) >> shift
            raise FixedPointOverflow(
                f"{name}: quotient floor(E / 2^{shift}) = {q} is outside the {width}-bit range "
                f"[-2^{width - 1}, 2^{width - 1})", step=step, value=q, bound=1 << (width - 1))
    total = LC.const(-off).add_scaled(e, -1)  # sum 2^k b_k - off - E
    q = LC.const(-(1 << (width - 1)))
    for k in range(n_bits):
        b = alloc_bit(cs, f"{name}.bit{k}", None if u is None else (u >> k) & 1)
        total.add_term(b, 1 << k)
        if k >= shift:
            q.add_term(b, 1 << (k - shift))
    cs.enforce_zero(total, f"{name} decomposes E + 2^{width - 1 + shift}")
    return q


def materialize(cs: R1CS, lc, name: str) -> int:
    """A new private wire w with the constraint (lc - w) * 1 = 0; w takes lc's value when known."""
    w = cs.private(name, cs.value(lc))
    cs.enforce_zero(as_lc(lc) - LC.term(w), f"{name} materialised")
    return w


def materialize_into(cs: R1CS, lc, wire: int, name: str) -> None:
    """Constrain an already allocated wire (e.g. a public output) to equal lc, and assign its value."""
    v = cs.value(lc)
    if v is not None:
        cs.set_value(wire, v)
    cs.enforce_zero(as_lc(lc) - LC.term(wire), f"{name} materialised")
