"""F_p helpers and Berlekamp-Welch decoding (as used by Gemmell and Sudan, "Highly resilient correctors for
polynomials", IPL 1992).  Deterministic except the hypothesis property tests, which are exact statements
(no statistical failure probability)."""

import itertools
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defenses.finite_field import (
    DecodingError,
    berlekamp_welch,
    check_prime,
    field_dtype,
    inv_mod,
    lagrange_interpolate,
    lagrange_weights_at_zero,
    poly_divmod,
    poly_eval,
    poly_trim,
    solve_mod,
)

P31 = 2**31 - 1
P61 = 2**61 - 1  # object-dtype path


def test_check_prime_accepts_primes_and_rejects_the_rest():
    for p in (2, 3, 31, P31, P61):
        assert check_prime(p) == p
    for bad in (0, 1, 4, 561, 2**31, P31 * 3):  # 561: Carmichael number
        with pytest.raises(ValueError, match="not a prime"):
            check_prime(bad)
    for bad in (True, 31.0, "31"):
        with pytest.raises(TypeError):
            check_prime(bad)


def test_field_dtype_switches_at_2_31():
    assert field_dtype(P31) is np.int64 and field_dtype(P61) is object


def test_inv_mod():
    for p in (31, P31, P61):
        for a in (1, 2, p - 1, 123456789 % p):
            assert a * inv_mod(a, p) % p == 1
    with pytest.raises(ZeroDivisionError):
        inv_mod(62, 31)


@pytest.mark.parametrize("p", [31, P31, P61])
def test_poly_eval_array_matches_python_ints(p):
    rng = np.random.default_rng(1)
    coeffs = [int(c) for c in rng.integers(0, min(p, 2**62), size=6)]
    xs = [0, 1, p - 1] + [int(v) for v in rng.integers(0, min(p, 2**62), size=20)]
    expected = [sum(c * pow(x, k, p) for k, c in enumerate(coeffs)) % p for x in xs]
    assert [int(v) for v in poly_eval(coeffs, np.array(xs, dtype=field_dtype(p)), p)] == expected
    assert [poly_eval(coeffs, x, p) for x in xs] == expected


def test_lagrange_weights_at_zero_are_alternating_binomials():
    # Lagrange weights at 0 of the nodes 1..d+1: c_i = L_i(0) = (-1)^(i+1) C(d+1, i)
    for p in (31, P31):
        for d in range(6):
            c = lagrange_weights_at_zero(range(1, d + 2), p)
            assert c == [((-1) ** (i + 1) * comb(d + 1, i)) % p for i in range(1, d + 2)]
    with pytest.raises(ValueError, match="distinct"):
        lagrange_weights_at_zero([1, 32], 31)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, P31 - 1), min_size=1, max_size=8), st.data())
def test_interpolation_round_trip(coeffs, data):
    nodes = data.draw(st.lists(st.integers(0, P31 - 1), min_size=len(coeffs), max_size=len(coeffs), unique=True))
    values = [poly_eval(coeffs, a, P31) for a in nodes]
    assert lagrange_interpolate(nodes, values, P31) == coeffs
    w = lagrange_weights_at_zero(nodes, P31) if 0 not in nodes else None
    if w is not None:
        assert sum(wi * vi for wi, vi in zip(w, values)) % P31 == coeffs[0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, P31 - 1), max_size=9), st.lists(st.integers(0, P31 - 1), min_size=1, max_size=5))
def test_poly_divmod_law(num, den):
    den = poly_trim(den)
    if not den:
        with pytest.raises(ZeroDivisionError):
            poly_divmod(num, den, P31)
        return
    q, r = poly_divmod(num, den, P31)
    assert len(r) < len(den)
    prod = [0] * (len(q) + len(den))
    for i, qi in enumerate(q):
        for j, dj in enumerate(den):
            prod[i + j] = (prod[i + j] + qi * dj) % P31
    back = [(prod[k] if k < len(prod) else 0) + (r[k] if k < len(r) else 0) for k in range(max(len(prod), len(r)))]
    assert poly_trim([v % P31 for v in back]) == poly_trim(num)


@pytest.mark.parametrize("p", [P31, P61])
def test_solve_mod_full_rank_and_underdetermined(p):
    rng = np.random.default_rng(2)
    for rows, cols in ((8, 8), (5, 9), (12, 7)):
        A = [[int(v) for v in row] for row in rng.integers(0, min(p, 2**62), size=(rows, cols))]
        x_true = [int(v) for v in rng.integers(0, min(p, 2**62), size=cols)]
        b = [sum(a * x for a, x in zip(row, x_true)) % p for row in A]
        x = [int(v) for v in solve_mod(np.array(A, dtype=object), b, p)]
        assert [sum(a * xi for a, xi in zip(row, x)) % p for row in A] == b


def test_solve_mod_inconsistent_and_shape_errors():
    with pytest.raises(ValueError, match="inconsistent"):
        solve_mod([[1, 1], [2, 2]], [1, 3], 31)
    with pytest.raises(ValueError, match="shapes"):
        solve_mod([[1, 1]], [1, 2], 31)


def test_berlekamp_welch_exhaustive_small_field():
    """Every error pattern of weight <= e = floor((m-d-1)/2), every error value, is corrected.

    p = 7, m = 6 nodes 1..6, d = 1 (e = 2): C(6,2)*36 + 6*6 + 1 = 577 words per polynomial."""
    p, d, m = 7, 1, 6
    nodes = list(range(1, m + 1))
    for P in ([3, 5], [0, 0], [6, 1]):
        clean = [poly_eval(P, a, p) for a in nodes]
        for w in range(3):
            for pos in itertools.combinations(range(m), w):
                for shifts in itertools.product(range(1, p), repeat=w):
                    word = list(clean)
                    for i, s in zip(pos, shifts):
                        word[i] = (word[i] + s) % p
                    assert berlekamp_welch(nodes, word, d, p) == P


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(0, 12), st.data())
def test_berlekamp_welch_corrects_up_to_e_errors_large_prime(d, extra, data):
    m = d + 1 + extra
    e = (m - d - 1) // 2
    P = data.draw(st.lists(st.integers(0, P31 - 1), min_size=d + 1, max_size=d + 1))
    nodes = data.draw(st.lists(st.integers(1, P31 - 1), min_size=m, max_size=m, unique=True))
    pos = data.draw(st.lists(st.integers(0, m - 1), max_size=e, unique=True))
    word = [poly_eval(P, a, P31) for a in nodes]
    for i in pos:
        word[i] = (word[i] + data.draw(st.integers(1, P31 - 1))) % P31
    assert berlekamp_welch(nodes, word, d, P31) == P


def test_e_max_plus_one_errors_can_fool_the_decoder():
    """A word at distance e+1 from P but e from another codeword P' decodes to P' (m - d odd)."""
    p, d, m = P31, 2, 9
    e = (m - d - 1) // 2  # 3; codewords are >= m - d = 7 = 2e + 1 apart
    nodes = list(range(1, m + 1))
    P = [5, 7, 11]
    Pp = [(P[0] + 3 * (-1) * (-2)) % p, (P[1] + 3 * (-(1 + 2))) % p, (P[2] + 3) % p]  # P + 3(x-1)(x-2)
    word = [poly_eval(P, a, p) for a in nodes]
    for i in range(2, 2 + e + 1):  # positions where P and P' differ
        word[i] = poly_eval(Pp, nodes[i], p)
    assert berlekamp_welch(nodes, word, d, p) == Pp != P


def test_too_many_errors_raise_decoding_error_with_details():
    rng = np.random.default_rng(3)
    p, d, m = 31, 2, 7
    e = (m - d - 1) // 2
    nodes = list(range(1, m + 1))
    raised = 0
    for _ in range(40):
        word = [poly_eval([1, 2, 3], a, p) for a in nodes]
        for i in rng.choice(m, e + 1, replace=False):
            word[i] = (word[i] + int(rng.integers(1, p))) % p
        try:
            berlekamp_welch(nodes, word, d, p)
        except DecodingError as err:
            raised += 1
            assert (err.n_points, err.degree, err.radius) == (m, d, e)
    assert raised > 0


def test_berlekamp_welch_validation():
    with pytest.raises(ValueError, match="at least d"):
        berlekamp_welch([1, 2], [0, 0], 2, 31)
    with pytest.raises(ValueError, match="distinct"):
        berlekamp_welch([1, 32, 3], [0, 0, 0], 1, 31)
    with pytest.raises(ValueError, match="radius"):
        berlekamp_welch([1, 2, 3, 4], [0] * 4, 1, 31, e=2)
    with pytest.raises(ValueError, match="values"):
        berlekamp_welch([1, 2, 3], [0, 0], 1, 31)
