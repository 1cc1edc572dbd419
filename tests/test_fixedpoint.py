"""Fixed-point rules (protocol/fixedpoint.py): quantization, floor rounding, the integer sigmoid, range checks."""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest
from helpers import load_vectors
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FixedPointOverflow
from protocol.fixedpoint import (
    EXP_POINTS,
    SIGMOID_POINTS,
    check_range,
    dyadic,
    exp_exact,
    exp_q,
    exp_table,
    in_range,
    quantize,
    sigmoid_exact,
    sigmoid_q,
    sigmoid_table,
)

HYP = settings(max_examples=300, deadline=None, derandomize=True)
F_VALUES = (4, 5, 8, 12, 16, 20, 30)


# -- quantize ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "f", "expected"), [
    (0.5, 0, 0), (1.5, 0, 2), (2.5, 0, 2), (3.5, 0, 4), (-0.5, 0, 0), (-1.5, 0, -2), (-2.5, 0, -2),
    (0.25, 1, 0), (0.75, 1, 2), (-0.75, 1, -2), (1.0, 16, 65536), (-1.0, 16, -65536),
    (2.0**-17, 16, 0), (3 * 2.0**-17, 16, 2), (-(2.0**-17), 16, 0), (-(3 * 2.0**-17), 16, -2),
])
def test_quantize_rounds_half_to_even(x, f, expected):
    assert int(quantize(np.array([x]), f)[0]) == expected


def test_quantize_not_half_away_or_truncation():
    q = quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.9, -0.9]), 0).tolist()
    assert q == [0, 2, 2, 0, -2, -2, 1, -1]


def test_quantize_kat():
    for x, f, expected in load_vectors("fixedpoint")["quantize"]:
        assert int(quantize(np.array([float(x)]), f)[0]) == expected, (x, f)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(np.array([1.0, bad, 2.0]), 16)


def test_quantize_overflow_bound():
    assert int(quantize(np.array([2.0**45 - 1]), 16)[0]) == (2**45 - 1) * 2**16
    for big in (2.0**46, -(2.0**46), 1e300):
        with pytest.raises(FixedPointOverflow):
            quantize(np.array([0.0, big]), 16)


def test_quantize_shape_and_dtype():
    out = quantize(np.zeros((3, 2)), 8)
    assert out.shape == (3, 2) and out.dtype == np.int64
    assert quantize(np.zeros(0), 16).shape == (0,)


def test_dyadic():
    assert dyadic(0.1, 10, "lr") == 102
    assert dyadic(0.0, 10, "lr") == 0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a finite non-negative"):
            dyadic(bad, 10, "lr")


# -- floor, never truncation ---------------------------------------------------------------------------------

def test_sigmoid_interpolation_uses_floor():
    """Between table points the interpolated value is floor(lo + (hi-lo)*r/2^sh), checked on exact rationals."""
    f = 16
    t = sigmoid_table(f)
    sh = f - 4
    for z in (-(8 << 16) + 1, -12345, -1, 1, 777, 4095, 100001):
        u = z + (8 << 16)
        i, r = u >> sh, u % (1 << sh)
        exact = t[i] + (t[i + 1] - t[i]) * r / (1 << sh)
        assert sigmoid_exact(z, f) == math.floor(exact)
        assert int(sigmoid_q(np.array([z]), f)[0]) == math.floor(exact)


def test_arithmetic_shift_is_floor_on_negatives():
    """The protocol's '>>' on numpy int64 (the fast path) is floor, like Python's, never truncation."""
    vals = np.array([-1, -2, -3, -65535, -65536, -65537, -(2**62) - 1], dtype=np.int64)
    for v in vals:
        assert int(v >> np.int64(16)) == int(v) // 2**16  # Python // is floor division
    assert int(np.int64(-1) >> np.int64(16)) == -1  # truncation would give 0


# -- the sigmoid table ---------------------------------------------------------------------------------------

def test_sigmoid_table_kat():
    vec = load_vectors("fixedpoint")
    for f, want in vec["sigmoid_table"].items():
        t = sigmoid_table(int(f))
        assert len(t) == want["len"] == SIGMOID_POINTS == 257
        got = hashlib.sha256(",".join(str(v) for v in t).encode()).hexdigest()
        assert got == want["sha256_of_decimal_csv"], f"sigmoid table for f={f} changed"
    t16 = sigmoid_table(16)
    for k, v in vec["sigmoid_table_f16_entries"].items():
        assert t16[int(k)] == v
    assert t16[128] == 32768 and t16[0] == 22 and t16[256] == 65514


@pytest.mark.parametrize("f", F_VALUES)
def test_sigmoid_table_definition(f):
    """T[k] = round(2^f * sigmoid((k-128)/16)) (float reference; no value here is within 1e-6 of a tie);
    symmetric T[k] + T[256-k] = 2^f; non-decreasing."""
    t = sigmoid_table(f)
    for k, v in enumerate(t):
        exact = 2**f / (1 + math.exp(-(k - 128) / 16))
        assert abs(v - exact) <= 0.5 + 1e-6, (k, v, exact)
        assert v + t[256 - k] == 2**f, k
    assert all(a <= b for a, b in itertools.pairwise(t))


# -- sigmoid_q vs sigmoid_exact ------------------------------------------------------------------------------

def _edge_inputs(f: int) -> list[int]:
    lim = 8 << f
    sh = f - 4
    edges = [0, 1, -1, lim, -lim, lim - 1, -lim + 1, lim + 1, -lim - 1, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    for k in (0, 1, 127, 128, 129, 255, 256):  # table points and their neighbours
        p = (k << sh) - lim
        edges += [p - 1, p, p + 1]
    return edges


@pytest.mark.parametrize("f", F_VALUES)
def test_sigmoid_q_equals_exact_on_edges(f):
    zs = _edge_inputs(f)
    got = sigmoid_q(np.array(zs, dtype=np.int64), f).tolist()
    assert got == [sigmoid_exact(z, f) for z in zs]


@pytest.mark.parametrize("f", F_VALUES)
def test_sigmoid_clamps(f):
    lim = 8 << f
    t = sigmoid_table(f)
    assert sigmoid_exact(lim, f) == sigmoid_exact(lim + 12345, f) == sigmoid_exact(2**70, f) == t[256]
    assert sigmoid_exact(-lim, f) == sigmoid_exact(-lim - 1, f) == sigmoid_exact(-(2**70), f) == t[0]
    assert sigmoid_exact(0, f) == t[128] == 2 ** (f - 1)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(f=st.sampled_from(F_VALUES), zs=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_sigmoid_q_vectorised_equals_exact_any_int64(f, zs):
    assert sigmoid_q(np.array(zs, dtype=np.int64), f).tolist() == [sigmoid_exact(z, f) for z in zs]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(f=st.sampled_from(F_VALUES), data=st.data())
def test_sigmoid_q_vectorised_equals_exact_near_range(f, data):
    lim = 8 << f
    zs = data.draw(st.lists(st.integers(-lim - 3, lim + 3), min_size=1, max_size=64))
    assert sigmoid_q(np.array(zs, dtype=np.int64), f).tolist() == [sigmoid_exact(z, f) for z in zs]


@pytest.mark.parametrize("f", (8, 16, 30))
def test_sigmoid_q_accuracy(f):
    """|sigmoid_q(z)/2^f - 1/(1+e^-x)|, x = z/2^f: inside [-8, 8] the interpolation error is at most
    h^2 max|s''|/8 = (1/16)^2 * 0.0963 / 8 < 4.8e-5, plus table rounding 2^-(f+1) and floor 2^-f;
    outside, the clamp adds at most 1 - s(8) < 3.36e-4."""
    rng = np.random.default_rng(20240601)
    z = np.concatenate([rng.integers(-(9 << f), 9 << f, size=20000), np.arange(-(1 << f), 1 << f, 1 << max(f - 10, 0))])
    x = z / 2.0**f
    err = np.abs(sigmoid_q(z, f) / 2.0**f - 1 / (1 + np.exp(-x)))
    slack = 1.5 / 2**f
    inside = np.abs(x) <= 8
    assert err[inside].max() <= 4.8e-5 + slack
    assert err.max() <= 3.36e-4 + slack


@pytest.mark.parametrize("f", (4, 16, 30))
def test_sigmoid_q_monotone(f):
    lim = 8 << f
    step = max(1, (2 * lim) // 200_000)
    z = np.arange(-lim - 10 * step, lim + 10 * step, step, dtype=np.int64)
    s = sigmoid_q(z, f)
    assert np.all(np.diff(s) >= 0)
    assert s.min() >= 0 and s.max() <= 2**f


@settings(max_examples=200, deadline=None, derandomize=True)
@given(f=st.sampled_from(F_VALUES), a=st.integers(-(2**40), 2**40), b=st.integers(-(2**40), 2**40))
def test_sigmoid_exact_monotone_property(f, a, b):
    lo, hi = min(a, b), max(a, b)
    assert sigmoid_exact(lo, f) <= sigmoid_exact(hi, f)


def test_sigmoid_samples_kat():
    for f, z, want in load_vectors("fixedpoint")["sigmoid_samples"]:
        assert sigmoid_exact(z, f) == want, (f, z)
        assert int(sigmoid_q(np.array([z], dtype=np.int64), f)[0]) == want, (f, z)


# -- the softmax exponential ---------------------------------------------------------------------------------

def test_exp_table_kat():
    vec = load_vectors("fixedpoint")
    for f, want in vec["exp_table"].items():
        t = exp_table(int(f))
        assert len(t) == want["len"] == EXP_POINTS == 257
        assert hashlib.sha256(",".join(str(v) for v in t).encode()).hexdigest() == want["sha256_of_decimal_csv"]
    for k, v in vec["exp_table_f16_entries"].items():
        assert exp_table(16)[int(k)] == v
    for f, v, want in vec["exp_samples"]:
        assert exp_exact(v, f) == want == int(exp_q(np.array([v], dtype=np.int64), f)[0]), (f, v)


@pytest.mark.parametrize("f", F_VALUES)
def test_exp_table_definition(f):
    """E[k] = round(2^f e^(-k/16)) (float reference, no value within 1e-6 of a tie); E[0] = 2^f; decreasing."""
    t = exp_table(f)
    assert t[0] == 2**f
    for k, v in enumerate(t):
        assert abs(v - 2**f * math.exp(-k / 16)) <= 0.5 + 1e-6, (k, v)
    assert all(a >= b for a, b in itertools.pairwise(t))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(f=st.sampled_from(F_VALUES), data=st.data())
def test_exp_q_vectorised_equals_exact(f, data):
    lim = 16 << f
    vs = data.draw(st.lists(st.one_of(st.integers(-lim - 3, 0), st.integers(-(2**62), 0)), min_size=1, max_size=64))
    assert exp_q(np.array(vs, dtype=np.int64), f).tolist() == [exp_exact(v, f) for v in vs]


@pytest.mark.parametrize("f", (8, 16, 30))
def test_exp_q_accuracy_and_clamp(f):
    """Interpolation error <= h^2 max|e''| / 8 = (1/16)^2 / 8 < 4.9e-4 relative to 1 (e^x <= 1 on x <= 0), plus
    rounding; below -16 the value is E[256] = round(2^f e^-16)."""
    v = -np.arange(0, 16 << f, max(1, (16 << f) // 100_000), dtype=np.int64)
    err = np.abs(exp_q(v, f) / 2.0**f - np.exp(v / 2.0**f))
    assert err.max() <= 4.9e-4 + 1.5 / 2**f
    assert exp_exact(-(16 << f) - 1, f) == exp_exact(-(2**70), f) == exp_table(f)[256]
    assert np.all(np.diff(exp_q(v, f)) <= 0)
    with pytest.raises(ValueError, match="non-positive"):
        exp_exact(1, f)


def test_sigmoid_q_rejects_small_frac_bits():
    with pytest.raises(ValueError, match="frac_bits >= 4"):
        sigmoid_q(np.array([0]), 3)


# -- check_range ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("K", (18, 32, 62))
def test_check_range_twos_complement_bound(K):
    """Allowed: -2^(K-1) <= v < 2^(K-1) (docs/PROTOCOL.md section 7); the error carries step, value, bound."""
    bound = 2 ** (K - 1)
    check_range(np.array([bound - 1, -bound, 0], dtype=np.int64), K, "parameter")
    check_range(np.zeros(0, dtype=np.int64), K, "parameter")
    for bad in (bound, -bound - 1, bound + 5, -(2**63), 2**63 - 1):
        with pytest.raises(FixedPointOverflow) as ei:
            check_range(np.array([0, bad, 1], dtype=np.int64), K, "parameter", step=7)
        assert ei.value.step == 7 and ei.value.value == bad and ei.value.bound == bound
        assert "parameter" in str(ei.value) and "step 7" in str(ei.value)


def test_check_range_object_arrays():
    K = 32
    check_range(np.array([2**31 - 1, -(2**31)], dtype=object), K, "x")
    for bad in (2**31, -(2**31) - 1, -(2**100), 2**100):
        with pytest.raises(FixedPointOverflow):
            check_range(np.array([1, bad], dtype=object), K, "x")


@pytest.mark.parametrize("K", (6, 18, 32, 62))
def test_in_range(K):
    assert in_range(-(2 ** (K - 1)), K) and in_range(2 ** (K - 1) - 1, K)
    assert not in_range(2 ** (K - 1), K) and not in_range(-(2 ** (K - 1)) - 1, K)
