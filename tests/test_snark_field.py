"""Scalar field F_r of BLS12-381: constants, roots of unity, NTTs, batch inversion, signed embedding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.snark.field import (
    GENERATOR,
    TWO_ADICITY,
    P,
    R,
    batch_inverse,
    coset_intt,
    coset_ntt,
    from_signed,
    intt,
    ntt,
    root_of_unity,
    to_signed,
)

# r - 1 = 2^32 * 3 * 11 * 19 * 10177 * 125527 * 859267 * 906349^2 * 2508409 * 2529403 * 52437899 * 254760293^2
# (docs/SNARK.md section 4.1)
R_MINUS_1_FACTORS = {2: 32, 3: 1, 11: 1, 19: 1, 10177: 1, 125527: 1, 859267: 1, 906349: 2, 2508409: 1,
                     2529403: 1, 52437899: 1, 254760293: 2}
OMEGA_32 = 0x16A2A19EDFE81F20D09B681922C813B4B63683508C2280B93829971F439F0D2B


def _rand_field(rng, n):
    return [int.from_bytes(rng.bytes(32), "big") % R for _ in range(n)]


def _naive_eval(coeffs, x):
    return sum(c * pow(x, i, R) for i, c in enumerate(coeffs)) % R


def test_constants():
    assert R == 52435875175126190479447740508185965837690552500527637822603658699938581184513
    assert P.bit_length() == 381 and R.bit_length() == 255
    prod = 1
    for q, e in R_MINUS_1_FACTORS.items():
        prod *= q**e
    assert prod == R - 1


def test_generator_generates_multiplicative_group():
    for q in R_MINUS_1_FACTORS:
        assert pow(GENERATOR, (R - 1) // q, R) != 1, q
    assert pow(5, (R - 1) // 3, R) == 1  # 5 is not a generator (docs/SNARK.md 4.1): the check can fire


def test_omega_32_is_primitive():
    w = root_of_unity(2**32)
    assert w == OMEGA_32
    assert pow(w, 2**31, R) == R - 1
    assert pow(w, 2**32, R) == 1


@pytest.mark.parametrize("k", [0, 1, 2, 5, 14, 31])
def test_root_of_unity_orders(k):
    w = root_of_unity(2**k)
    assert pow(w, 2**k, R) == 1
    if k:
        assert pow(w, 2 ** (k - 1), R) == R - 1
    assert root_of_unity(2**k) == pow(OMEGA_32, 2 ** (TWO_ADICITY - k), R)


@pytest.mark.parametrize("bad", [0, 3, 6, 2**33, -4])
def test_root_of_unity_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        root_of_unity(bad)
    with pytest.raises(TypeError):
        root_of_unity(4.0)


def test_ntt_matches_naive_evaluation():
    rng = np.random.default_rng(1)
    n = 16
    coeffs = _rand_field(rng, n)
    w = root_of_unity(n)
    assert ntt(coeffs, w) == [_naive_eval(coeffs, pow(w, j, R)) for j in range(n)]


def test_coset_ntt_matches_naive_evaluation():
    rng = np.random.default_rng(2)
    n = 8
    coeffs = _rand_field(rng, n)
    w = root_of_unity(n)
    assert coset_ntt(coeffs, w, GENERATOR) == [_naive_eval(coeffs, GENERATOR * pow(w, j, R)) for j in range(n)]


@pytest.mark.parametrize("n", [1, 2, 4, 256, 2048])
def test_ntt_intt_round_trip(n):
    rng = np.random.default_rng(n)
    vals = _rand_field(rng, n)
    w = root_of_unity(n)
    assert intt(ntt(vals, w), w) == vals
    assert ntt(intt(vals, w), w) == vals
    assert coset_intt(coset_ntt(vals, w), w) == vals
    assert coset_intt(coset_ntt(vals, w, 5), w, 5) == vals


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=-(2**300), max_value=2**300), min_size=8, max_size=8))
def test_ntt_round_trip_reduces_inputs(vals):
    w = root_of_unity(8)
    assert intt(ntt(vals, w), w) == [v % R for v in vals]


def test_ntt_input_validation():
    w8 = root_of_unity(8)
    with pytest.raises(ValueError, match="power of two"):
        ntt([1, 2, 3], root_of_unity(4))
    with pytest.raises(ValueError, match="primitive"):
        ntt([1] * 8, root_of_unity(4))  # order 4, not 8
    with pytest.raises(ValueError, match="primitive"):
        intt([1] * 8, root_of_unity(16))  # order 16
    with pytest.raises(TypeError):
        ntt([1.0] * 8, w8)
    with pytest.raises(ValueError, match="nonzero"):
        coset_ntt([1] * 8, w8, R)


def test_batch_inverse():
    rng = np.random.default_rng(3)
    vals = [v or 1 for v in _rand_field(rng, 50)] + [1, R - 1, R + 2]
    assert batch_inverse(vals) == [pow(v, -1, R) for v in vals]
    assert batch_inverse([]) == []
    assert batch_inverse([2, 3], modulus=P) == [pow(2, -1, P), pow(3, -1, P)]
    with pytest.raises(ValueError, match="index 2"):
        batch_inverse([1, 2, R, 4])


def test_signed_embedding():
    half = R // 2
    for v in [0, 1, -1, 12345, -(2**200), half, -half]:
        assert to_signed(from_signed(v)) == v
    assert from_signed(-1) == R - 1
    assert to_signed(R - 1) == -1
    assert to_signed(half) == half and to_signed(half + 1) == -half
    with pytest.raises(ValueError, match="wrap"):
        from_signed(half + 1)
    with pytest.raises(TypeError):
        from_signed(1.5)
