"""The BLS12-381 scalar field F_r: constants, roots of unity, radix-2 NTTs, batch inversion.

All values are plain Python ints in [0, R). The NTT is iterative (Cooley-Tukey, decimation in time)
over a bit-reversed input, with one twiddle list per stage; bit-reversal tables are cached per size.

Symbols (docs/SNARK.md section 4.1): r - 1 = 2^32 * t with t odd; 7 generates F_r^*, so
omega_32 = 7^t is a primitive 2^32-th root of unity and omega_N = omega_32^(2^(32 - log2 N)).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = [
    "GENERATOR",
    "TWO_ADICITY",
    "P",
    "R",
    "batch_inverse",
    "coset_intt",
    "coset_ntt",
    "from_signed",
    "intt",
    "ntt",
    "root_of_unity",
    "to_signed",
]

#: Scalar field order r (= order of G1, G2, GT).
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
#: Base field prime p.
P = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB
#: Multiplicative generator of F_r^* (also the default coset shift).
GENERATOR = 7
#: r - 1 = 2^TWO_ADICITY * _T with _T odd.
TWO_ADICITY = 32
_T = (R - 1) >> TWO_ADICITY
#: Primitive 2^32-th root of unity, 7^t mod r.
_OMEGA_32 = pow(GENERATOR, _T, R)
_HALF_R = R // 2


def _log2_exact(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"domain size must be an int, got {type(n).__name__}")
    if n < 1 or n & (n - 1):
        raise ValueError(f"domain size must be a power of two >= 1, got {n}")
    k = n.bit_length() - 1
    if k > TWO_ADICITY:
        raise ValueError(f"domain size 2^{k} exceeds the 2-adicity 2^{TWO_ADICITY} of r - 1")
    return k


def root_of_unity(n: int) -> int:
    """Primitive n-th root of unity omega_n = omega_32^(2^(32 - log2 n)) for a power of two n <= 2^32."""
    k = _log2_exact(n)
    return pow(_OMEGA_32, 1 << (TWO_ADICITY - k), R)


@lru_cache(maxsize=32)
def _bit_reversal(n: int) -> tuple[int, ...]:
    """rev[i] = i with its log2(n) bits reversed."""
    k = n.bit_length() - 1
    rev = [0] * n
    for i in range(1, n):
        rev[i] = (rev[i >> 1] >> 1) | ((i & 1) << (k - 1))
    return tuple(rev)


def _check_values(values, n_name: str = "values") -> list[int]:
    vals = list(values)
    _log2_exact(len(vals))
    for v in vals:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{n_name} must be ints, got {type(v).__name__}")
    return vals


def _check_root(omega: int, n: int) -> None:
    if not isinstance(omega, int) or isinstance(omega, bool):
        raise TypeError(f"omega must be an int, got {type(omega).__name__}")
    omega %= R
    if pow(omega, n, R) != 1 or (n > 1 and pow(omega, n // 2, R) == 1):
        raise ValueError(f"omega is not a primitive {n}-th root of unity mod r")


def _ntt_core(vals: list[int], omega: int) -> list[int]:
    """In-order output a_hat[j] = sum_i a[i] omega^(ij) for a validated power-of-two length."""
    n = len(vals)
    rev = _bit_reversal(n)
    a = [vals[rev[i]] % R for i in range(n)]
    m = 1
    while m < n:
        # stage with butterflies of span m: twiddles w_2m^j for j < m
        w_m = pow(omega, n // (2 * m), R)
        tw = [1] * m
        for j in range(1, m):
            tw[j] = tw[j - 1] * w_m % R
        for start in range(0, n, 2 * m):
            for j in range(m):
                lo = start + j
                hi = lo + m
                t = a[hi] * tw[j] % R
                u = a[lo]
                a[lo] = (u + t) % R
                a[hi] = (u - t) % R
        m *= 2
    return a


def ntt(values, omega: int) -> list[int]:
    """Evaluate the polynomial with coefficients `values` on <omega>: out[j] = sum_i v_i omega^(ij)."""
    vals = _check_values(values)
    _check_root(omega, len(vals))
    return _ntt_core(vals, omega % R)


def intt(values, omega: int) -> list[int]:
    """Inverse of `ntt`: coefficients from the evaluations on <omega>."""
    vals = _check_values(values)
    n = len(vals)
    _check_root(omega, n)
    out = _ntt_core(vals, pow(omega, -1, R))
    n_inv = pow(n, -1, R)
    return [x * n_inv % R for x in out]


def _check_shift(shift: int) -> int:
    if not isinstance(shift, int) or isinstance(shift, bool):
        raise TypeError(f"coset shift must be an int, got {type(shift).__name__}")
    if shift % R == 0:
        raise ValueError("coset shift must be nonzero mod r")
    return shift % R


def coset_ntt(values, omega: int, shift: int = GENERATOR) -> list[int]:
    """Evaluate the polynomial with coefficients `values` on the coset shift*<omega>."""
    vals = _check_values(values)
    g = _check_shift(shift)
    scaled = []
    gk = 1
    for v in vals:
        scaled.append(v * gk % R)
        gk = gk * g % R
    return ntt(scaled, omega)


def coset_intt(values, omega: int, shift: int = GENERATOR) -> list[int]:
    """Inverse of `coset_ntt`: coefficients from the evaluations on shift*<omega>."""
    g_inv = pow(_check_shift(shift), -1, R)
    coeffs = intt(values, omega)
    gk = 1
    for k in range(len(coeffs)):
        coeffs[k] = coeffs[k] * gk % R
        gk = gk * g_inv % R
    return coeffs


def batch_inverse(values, modulus: int = R) -> list[int]:
    """Inverses of all `values` mod `modulus` with one modular inversion (Montgomery's trick).

    Raises ValueError naming the first index whose value is 0 mod `modulus`.
    """
    vals = [v % modulus for v in values]
    prefix = [1] * (len(vals) + 1)
    acc = 1
    for i, v in enumerate(vals):
        if v == 0:
            raise ValueError(f"batch_inverse: value at index {i} is zero mod the modulus")
        acc = acc * v % modulus
        prefix[i + 1] = acc
    if not vals:
        return []
    inv = pow(acc, -1, modulus)
    out = [0] * len(vals)
    for i in range(len(vals) - 1, -1, -1):
        out[i] = inv * prefix[i] % modulus
        inv = inv * vals[i] % modulus
    return out


def to_signed(v: int) -> int:
    """Map a field element v (reduced mod r first) to the integer in (-r/2, r/2) congruent to it."""
    v %= R
    return v - R if v > _HALF_R else v


def from_signed(v: int) -> int:
    """Embed a signed integer |v| < r/2 into F_r as v mod r (two's complement: -1 -> r - 1)."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"expected an int, got {type(v).__name__}")
    if not -_HALF_R <= v <= _HALF_R:
        raise ValueError(f"signed value {v} is outside (-r/2, r/2) and would wrap around")
    return v % R
