"""BLS12-381 curve layer: int arithmetic vs py_ecc, MSM/fixed-base vs naive, encodings, backends.

Randomness is seeded (numpy default_rng); nothing here is statistical.
"""

import numpy as np
import pytest
from py_ecc import optimized_bls12_381 as bls
from py_ecc.bls.point_compression import compress_G1, compress_G2

from protocol.snark import curve as cv
from protocol.snark.backend import ArkworksBackend, PureBackend, available_backends, get_backend
from protocol.snark.field import R

try:
    import py_arkworks_bls12381 as ark
except ImportError:  # pragma: no cover - installed in this environment
    ark = None

needs_ark = pytest.mark.skipif(ark is None, reason="py_arkworks_bls12381 not importable")
BACKENDS = [
    "pure",
    pytest.param("arkworks", marks=needs_ark),
]


def _scalars(rng, n):
    return [int.from_bytes(rng.bytes(32), "big") % R for _ in range(n)]


def _g1_naive(points, scalars):
    acc = None
    for p, k in zip(points, scalars):
        acc = cv.g1_add(acc, cv.g1_mul(p, k % R))
    return acc


def _g2_naive(points, scalars):
    acc = None
    for p, k in zip(points, scalars):
        acc = cv.g2_add(acc, cv.g2_mul(p, k % R))
    return acc


def _first_x(has_root, make_x):
    for i in range(1000):
        x = make_x(i)
        if has_root(x):
            return x
    raise AssertionError("no candidate found")


def _non_subgroup_g1():
    """A point of E(F_p) outside G1: the first x with x^3 + 4 a square (killed by r checked via py_ecc)."""
    x = _first_x(lambda x: cv.fp_sqrt(x**3 + 4) is not None, lambda i: i + 5)
    pt = (x, cv.fp_sqrt(x**3 + 4))
    assert not bls.is_inf(bls.multiply(cv.to_pyecc_g1(pt), R))  # independent: r * pt != O in py_ecc
    return pt


def _twist_rhs(x):
    return cv.fp2_add(cv.fp2_mul(cv.fp2_sqr(x), x), cv.B_G2)


def _non_subgroup_g2():
    x = _first_x(lambda x: cv.fp2_sqrt(_twist_rhs(x)) is not None, lambda i: (i + 1, 1))
    pt = (x, cv.fp2_sqrt(_twist_rhs(x)))
    assert not bls.is_inf(bls.multiply(cv.to_pyecc_g2(pt), R))
    return pt


@pytest.fixture(scope="module")
def rand_points():
    """A few random G1/G2 points with their discrete logs (computed with py_ecc, independently)."""
    rng = np.random.default_rng(7)
    ks = _scalars(rng, 4)
    g1 = [cv.from_pyecc_g1(bls.multiply(bls.G1, k)) for k in ks]
    g2 = [cv.from_pyecc_g2(bls.multiply(bls.G2, k)) for k in ks[:3]]
    return ks, g1, g2


# ------------------------------------------------------------------------------ arithmetic


def test_generators_match_pyecc():
    assert cv.from_pyecc_g1(bls.G1) == cv.G1_GEN
    assert cv.from_pyecc_g2(bls.G2) == cv.G2_GEN
    assert cv.is_on_curve_g1(cv.G1_GEN) and cv.is_on_curve_g2(cv.G2_GEN)
    assert cv.in_subgroup_g1(cv.G1_GEN) and cv.in_subgroup_g2(cv.G2_GEN)


def test_group_law_g1_against_pyecc(rand_points):
    ks, g1, _ = rand_points
    a, b = g1[0], g1[1]
    assert cv.g1_add(a, b) == cv.from_pyecc_g1(bls.add(cv.to_pyecc_g1(a), cv.to_pyecc_g1(b)))
    assert cv.g1_double(a) == cv.from_pyecc_g1(bls.double(cv.to_pyecc_g1(a)))
    assert cv.g1_add(a, a) == cv.g1_double(a)  # madd falls back to doubling
    assert cv.g1_add(a, cv.g1_neg(a)) is None
    assert cv.g1_add(None, a) == a and cv.g1_add(a, None) == a
    assert cv.g1_mul(cv.G1_GEN, ks[0]) == a
    assert cv.g1_mul(a, -3) == cv.g1_neg(cv.g1_mul(a, 3))
    assert cv.g1_mul(a, 0) is None and cv.g1_mul(a, R) is None and cv.g1_mul(None, 5) is None
    j = cv.g1_jac_add(cv.g1_jac_double((a[0], a[1], 1)), (b[0], b[1], 1))
    assert cv.g1_batch_normalize([j, (1, 1, 0)]) == [cv.g1_add(cv.g1_double(a), b), None]


def test_group_law_g2_against_pyecc(rand_points):
    ks, _, g2 = rand_points
    a, b = g2[0], g2[1]
    assert cv.g2_add(a, b) == cv.from_pyecc_g2(bls.add(cv.to_pyecc_g2(a), cv.to_pyecc_g2(b)))
    assert cv.g2_double(a) == cv.from_pyecc_g2(bls.double(cv.to_pyecc_g2(a)))
    assert cv.g2_add(a, a) == cv.g2_double(a)
    assert cv.g2_add(a, cv.g2_neg(a)) is None
    assert cv.g2_mul(cv.G2_GEN, ks[0]) == a
    assert cv.g2_mul(a, -2) == cv.g2_neg(cv.g2_double(a))
    assert cv.g2_mul(a, R) is None
    j = cv.g2_jac_add(cv.g2_jac_double((a[0], a[1], (1, 0))), (b[0], b[1], (1, 0)))
    assert cv.g2_batch_normalize([j]) == [cv.g2_add(cv.g2_double(a), b)]


def test_fp2_sqrt_and_inverse():
    rng = np.random.default_rng(11)
    for _ in range(5):
        a = tuple(int.from_bytes(rng.bytes(48), "big") % cv.P for _ in range(2))
        s = cv.fp2_sqrt(cv.fp2_sqr(a))
        assert s in (a, cv.fp2_neg(a))
        assert cv.fp2_mul(a, cv.fp2_inv(a)) == (1, 0)
    assert cv.fp2_sqrt((cv.P - 1, 0)) == (0, 1)  # sqrt(-1) = u
    with pytest.raises(ZeroDivisionError):
        cv.fp2_inv((0, 0))


# --------------------------------------------------------------- Pippenger and fixed-base


def _msm_inputs(rng, base_points):
    n = len(base_points)
    ks = _scalars(rng, n)
    ks[:4] = [0, 1, R - 1, 2]
    ks[5] = ks[6] = 3  # same bucket twice with equal points below
    pts = list(base_points)
    pts[4] = None
    pts[6] = pts[5]
    pts[8] = pts[7]
    ks[8] = R - ks[7]  # P and -P cancel
    return pts, ks


@pytest.mark.parametrize("window", [None, 1, 2, 3, 8])
def test_pippenger_g1_equals_naive(window):
    rng = np.random.default_rng(100 + (window or 0))
    pts, ks = _msm_inputs(rng, cv.fixed_base_g1(cv.G1_GEN, _scalars(rng, 24)))
    assert cv.msm_g1(pts, ks, window) == _g1_naive(pts, ks)


@pytest.mark.parametrize("window", [None, 3])
def test_pippenger_g2_equals_naive(window):
    rng = np.random.default_rng(200 + (window or 0))
    pts, ks = _msm_inputs(rng, cv.fixed_base_g2(cv.G2_GEN, _scalars(rng, 12)))
    assert cv.msm_g2(pts, ks, window) == _g2_naive(pts, ks)


def test_pippenger_edge_cases():
    assert cv.msm_g1([], []) is None
    assert cv.msm_g1([cv.G1_GEN, None], [0, 5]) is None
    assert cv.msm_g1([cv.G1_GEN], [R + 1]) == cv.G1_GEN
    assert cv.msm_g1([cv.G1_GEN, cv.G1_GEN], [1, R - 1]) is None
    with pytest.raises(ValueError, match="equal lengths"):
        cv.msm_g1([cv.G1_GEN], [1, 2])
    with pytest.raises(TypeError):
        cv.msm_g1([cv.G1_GEN], [1.0])


@pytest.mark.parametrize("window", [None, 4, 8])
def test_fixed_base_g1_equals_naive(window):
    rng = np.random.default_rng(300 + (window or 0))
    ks = [0, 1, R - 1, R, R + 5, 2**255 - 1] + _scalars(rng, 10)
    expected = [cv.g1_mul(cv.G1_GEN, k % R) for k in ks]
    assert cv.fixed_base_g1(cv.G1_GEN, ks, window) == expected
    assert cv.fixed_base_g1(None, ks) == [None] * len(ks)


def test_fixed_base_g2_equals_naive(rand_points):
    rng = np.random.default_rng(400)
    base = rand_points[2][0]
    ks = [0, 1, R - 1] + _scalars(rng, 4)
    assert cv.fixed_base_g2(base, ks, 5) == [cv.g2_mul(base, k) for k in ks]


# ----------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("k", ["one", "r-1", "random"])
def test_compressed_bytes_agree_with_pyecc_and_arkworks(k):
    k = {"one": 1, "r-1": R - 1, "random": _scalars(np.random.default_rng(5), 1)[0]}[k]
    p1 = bls.multiply(bls.G1, k)
    p2 = bls.multiply(bls.G2, k)
    mine1, mine2 = cv.g1_to_bytes(cv.from_pyecc_g1(p1)), cv.g2_to_bytes(cv.from_pyecc_g2(p2))
    z1, z2 = compress_G2(p2)
    assert mine1 == compress_G1(p1).to_bytes(48, "big")
    assert mine2 == z1.to_bytes(48, "big") + z2.to_bytes(48, "big")
    if ark is not None:
        assert mine1 == (ark.G1Point() * ark.Scalar(k)).to_compressed_bytes()
        assert mine2 == (ark.G2Point() * ark.Scalar(k)).to_compressed_bytes()
    assert cv.g1_from_bytes(mine1) == cv.from_pyecc_g1(p1)
    assert cv.g2_from_bytes(mine2) == cv.from_pyecc_g2(p2)


def test_known_generator_and_infinity_encodings():
    assert cv.g1_to_bytes(cv.G1_GEN).hex().startswith("97f1d3a7") and cv.g1_to_bytes(cv.G1_GEN).hex().endswith(
        "db22c6bb")
    assert cv.g2_to_bytes(cv.G2_GEN).hex()[:8] == "93e02b60"
    assert cv.g1_to_bytes(None) == b"\xc0" + bytes(47)
    assert cv.g2_to_bytes(None) == b"\xc0" + bytes(95)
    assert cv.g1_from_bytes(b"\xc0" + bytes(47)) is None
    assert cv.g2_from_bytes(b"\xc0" + bytes(95)) is None
    # the sign flag selects the other root
    flipped = bytearray(cv.g1_to_bytes(cv.G1_GEN))
    flipped[0] ^= 0x20
    assert cv.g1_from_bytes(bytes(flipped)) == cv.g1_neg(cv.G1_GEN)
    flipped2 = bytearray(cv.g2_to_bytes(cv.G2_GEN))
    flipped2[0] ^= 0x20
    assert cv.g2_from_bytes(bytes(flipped2)) == cv.g2_neg(cv.G2_GEN)


def _with_x(x_bytes: bytes, flags: int = 0x80) -> bytes:
    out = bytearray(x_bytes)
    out[0] |= flags
    return bytes(out)


def test_g1_decoding_rejections():
    good = cv.g1_to_bytes(cv.G1_GEN)
    with pytest.raises(ValueError, match="compression flag"):
        cv.g1_from_bytes(bytes([good[0] & 0x7F]) + good[1:])
    with pytest.raises(ValueError, match="infinity flag"):
        cv.g1_from_bytes(bytes([good[0] | 0x40]) + good[1:])
    with pytest.raises(ValueError, match="infinity flag"):
        cv.g1_from_bytes(b"\xe0" + bytes(47))  # infinity with sign set
    with pytest.raises(ValueError, match="not < p"):
        cv.g1_from_bytes(_with_x(cv.P.to_bytes(48, "big")))
    off_x = _first_x(lambda x: cv.fp_sqrt(x**3 + 4) is None, lambda i: i + 1)
    with pytest.raises(ValueError, match="not on the curve"):
        cv.g1_from_bytes(_with_x(off_x.to_bytes(48, "big")))
    with pytest.raises(ValueError, match="48 bytes"):
        cv.g1_from_bytes(good[:47])
    with pytest.raises(TypeError):
        cv.g1_from_bytes(good.hex())
    bad = _non_subgroup_g1()
    enc = cv.g1_to_bytes(bad)
    with pytest.raises(ValueError, match="not in the order-r subgroup"):
        cv.g1_from_bytes(enc)
    assert cv.g1_from_bytes(enc, subgroup_check=False) == bad


def test_g2_decoding_rejections():
    good = cv.g2_to_bytes(cv.G2_GEN)
    with pytest.raises(ValueError, match="compression flag"):
        cv.g2_from_bytes(bytes([good[0] & 0x7F]) + good[1:])
    with pytest.raises(ValueError, match="infinity flag"):
        cv.g2_from_bytes(b"\xc0" + bytes(94) + b"\x01")
    with pytest.raises(ValueError, match="not < p"):  # x.c1 = p
        cv.g2_from_bytes(_with_x(cv.P.to_bytes(48, "big")) + good[48:])
    with pytest.raises(ValueError, match="not < p"):  # x.c0 = p
        cv.g2_from_bytes(good[:48] + cv.P.to_bytes(48, "big"))
    off_x = _first_x(lambda x: cv.fp2_sqrt(_twist_rhs(x)) is None, lambda i: (i + 1, 2))
    with pytest.raises(ValueError, match="not on the twist"):
        cv.g2_from_bytes(_with_x(off_x[1].to_bytes(48, "big")) + off_x[0].to_bytes(48, "big"))
    bad = _non_subgroup_g2()
    enc = cv.g2_to_bytes(bad)
    with pytest.raises(ValueError, match="not in the order-r subgroup"):
        cv.g2_from_bytes(enc)
    assert cv.g2_from_bytes(enc, subgroup_check=False) == bad


def test_on_curve_and_subgroup_predicates():
    bad1, bad2 = _non_subgroup_g1(), _non_subgroup_g2()
    assert cv.is_on_curve_g1(bad1) and not cv.in_subgroup_g1(bad1)
    assert cv.is_on_curve_g2(bad2) and not cv.in_subgroup_g2(bad2)
    assert not cv.is_on_curve_g1((cv.G1_GEN[0], cv.G1_GEN[1] + 1))
    assert not cv.is_on_curve_g1((cv.G1_GEN[0] + cv.P, cv.G1_GEN[1]))  # non-canonical coordinate
    assert not cv.is_on_curve_g2((cv.G2_GEN[0], cv.G1_GEN))
    assert cv.is_on_curve_g1(None) and cv.in_subgroup_g2(None)
    with pytest.raises(ValueError, match="not a canonical point"):
        cv.g1_to_bytes((1, 1))


# ------------------------------------------------------------------------------ backends


@pytest.fixture(params=BACKENDS)
def backend(request):
    return get_backend(request.param)


def test_get_backend():
    assert isinstance(get_backend("pure"), PureBackend)
    assert "pure" in available_backends()
    if ark is not None:
        assert isinstance(get_backend(), ArkworksBackend) and get_backend("fast").name == "arkworks"
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("gpu")


def test_backend_msm_g1(backend):
    rng = np.random.default_rng(500)
    pts, ks = _msm_inputs(rng, cv.fixed_base_g1(cv.G1_GEN, _scalars(rng, 16)))
    ks[9] = -ks[9]  # negative scalars are reduced mod r
    assert backend.msm_g1(pts, ks) == _g1_naive(pts, ks)
    assert backend.msm_g1([], []) is None
    with pytest.raises(ValueError, match="equal lengths"):
        backend.msm_g1(pts, ks[:-1])  # arkworks alone would silently truncate


def test_backend_msm_g2(backend):
    rng = np.random.default_rng(600)
    pts, ks = _msm_inputs(rng, cv.fixed_base_g2(cv.G2_GEN, _scalars(rng, 10)))
    assert backend.msm_g2(pts, ks) == _g2_naive(pts, ks)
    with pytest.raises(ValueError, match="equal lengths"):
        backend.msm_g2(pts[:-1], ks)


def test_backend_mul_add_neg(backend, rand_points):
    ks, g1, g2 = rand_points
    assert backend.mul_g1(cv.G1_GEN, ks[0]) == g1[0]
    assert backend.mul_g2(cv.G2_GEN, ks[1]) == g2[1]
    assert backend.mul_g1(g1[1], -1) == cv.g1_neg(g1[1])
    assert backend.mul_g2(g2[0], R) is None and backend.mul_g1(None, 3) is None
    assert backend.add_g1(g1[0], g1[1]) == cv.g1_add(g1[0], g1[1])
    assert backend.add_g2(g2[0], backend.neg_g2(g2[0])) is None
    assert backend.neg_g1(None) is None
    with pytest.raises(ValueError, match="not a canonical affine point"):
        backend.mul_g1((1, 2), 3)
    with pytest.raises(ValueError, match="not a canonical affine point"):
        backend.msm_g1([(1, 2)], [3])
    with pytest.raises(TypeError):
        backend.mul_g1(cv.G1_GEN, 2.0)


def test_backend_fixed_base(backend, rand_points):
    rng = np.random.default_rng(700)
    ks = [0, 1, R - 1, -5] + _scalars(rng, 5)
    assert backend.fixed_base_g1(rand_points[1][2], ks) == [cv.g1_mul(rand_points[1][2], k % R) for k in ks]
    assert backend.fixed_base_g2(cv.G2_GEN, ks[:5]) == [cv.g2_mul(cv.G2_GEN, k % R) for k in ks[:5]]
    # a longer list selects a wider window (another cached table) and must agree with the short one
    longer = backend.fixed_base_g1(rand_points[1][2], ks * 8)
    assert longer[: len(ks)] == backend.fixed_base_g1(rand_points[1][2], ks) and len(longer) == 8 * len(ks)
    assert backend.fixed_base_g1(None, [1, 2]) == [None, None]
    with pytest.raises(TypeError):
        backend.fixed_base_g2(cv.G2_GEN, [1.5])


def test_backend_subgroup(backend):
    assert backend.in_subgroup_g1(cv.G1_GEN) and backend.in_subgroup_g2(cv.G2_GEN)
    assert backend.in_subgroup_g1(None) and backend.in_subgroup_g2(None)
    assert not backend.in_subgroup_g1(_non_subgroup_g1())
    assert not backend.in_subgroup_g2(_non_subgroup_g2())
    assert not backend.in_subgroup_g1((1, 2))  # off the curve


def test_backend_pairing_check(backend):
    """Pure backend: 7 Miller loops + 4 final exponentiations (~1 s); arkworks: milliseconds."""
    a, b = 0x1234567, 0xABCDEF12345
    aP, bQ = backend.mul_g1(cv.G1_GEN, a), backend.mul_g2(cv.G2_GEN, b)
    neg_abP = backend.mul_g1(cv.G1_GEN, -a * b)
    # e(aP, bQ) e(-abP, Q) == 1, plus an infinity pair that must be skipped
    assert backend.pairing_check([(aP, bQ), (neg_abP, cv.G2_GEN), (None, bQ)])
    # a false statement: e(aP, bQ) e(-(ab+1)P, Q) != 1
    assert not backend.pairing_check([(aP, bQ), (backend.mul_g1(cv.G1_GEN, -a * b - 1), cv.G2_GEN)])
    # bilinearity in the second argument: e(bP, aQ) = e(aP, bQ)
    assert backend.pairing_check([(backend.mul_g1(cv.G1_GEN, b), backend.mul_g2(cv.G2_GEN, a)),
                                  (backend.neg_g1(aP), bQ)])
    assert backend.pairing_check([(None, cv.G2_GEN), (cv.G1_GEN, None)])
    assert backend.pairing_check([])
    with pytest.raises(ValueError, match="not a canonical affine point"):
        backend.pairing_check([((1, 2), cv.G2_GEN)])


@needs_ark
def test_backends_agree_on_random_msm():
    rng = np.random.default_rng(800)
    pts = cv.fixed_base_g1(cv.G1_GEN, _scalars(rng, 300))
    ks = _scalars(rng, 300)
    ks[::3] = [int(v) for v in rng.integers(0, 2, size=100)]  # bit-like witness values
    assert get_backend("pure").msm_g1(pts, ks) == get_backend("arkworks").msm_g1(pts, ks)
