"""Groth16 setup / prove / verify on x^3 + x + 5 = 35 under both backends and across them, and every
rejection the verifier makes (wrong or mis-counted public inputs, inputs >= r, points off the curve,
outside the subgroup or at infinity, swapped A and C)."""

from __future__ import annotations

import pytest

from protocol.snark import groth16 as g16
from protocol.snark.backend import available_backends, get_backend
from protocol.snark.curve import (
    B_G1,
    B_G2,
    G1_GEN,
    P,
    fp2_add,
    fp2_mul,
    fp2_sqr,
    fp2_sqrt,
    fp_sqrt,
    g1_add,
    g1_neg,
    is_on_curve_g1,
    is_on_curve_g2,
)
from protocol.snark.errors import (
    PairingCheckFailed,
    ProofPointError,
    PublicInputCountError,
    PublicInputRangeError,
)
from protocol.snark.field import R
from protocol.snark.r1cs import LC, R1CS
from protocol.snark.r1cs import example_cubic as cubic

TOXIC = {"tau": 0x1234567890ABCDEF, "alpha": 101, "beta": 103, "gamma": 107, "delta": 109}
BACKENDS = available_backends()
needs_ark = pytest.mark.skipif("arkworks" not in BACKENDS, reason="py_arkworks_bls12381 not installed")


@pytest.fixture(scope="module")
def keys():
    cs = cubic()
    pk, vk = g16.setup(cs, TOXIC, "arkworks" if "arkworks" in BACKENDS else "pure")
    return cs, pk, vk


@pytest.fixture(scope="module")
def proof(keys):
    cs, pk, _ = keys
    return g16.prove(pk, cs, cs.witness(), 5, 7, get_backend(BACKENDS[-1]))


def _fast():
    return BACKENDS[-1]


def _non_subgroup_g1():
    """The first on-curve G1 point (x, y) with small x outside the order-r subgroup (cofactor != 1)."""
    for x in range(1, 100):
        y = fp_sqrt((x * x * x + B_G1) % P)
        if y is not None and not get_backend("pure").in_subgroup_g1((x, y)):
            return (x, y)
    raise AssertionError("no point found")


def _non_subgroup_g2():
    for x0 in range(1, 100):
        x = (x0, 1)
        y = fp2_sqrt(fp2_add(fp2_mul(fp2_sqr(x), x), B_G2))
        if y is not None and not get_backend("pure").in_subgroup_g2((x, y)):
            return (x, y)
    raise AssertionError("no point found")


# ------------------------------------------------------------------------------------------ completeness
@needs_ark
def test_setup_and_prove_agree_across_backends():
    """The deterministic cores give identical keys and proofs under both backends."""
    cs = cubic()
    pk_p, vk_p = g16.setup(cs, TOXIC, "pure")
    pk_a, vk_a = g16.setup(cs, TOXIC, "arkworks")
    assert pk_p == pk_a and vk_p == vk_a
    pr_p = g16.prove(pk_p, cs, cs.witness(), 5, 7, "pure")
    pr_a = g16.prove(pk_a, cs, cs.witness(), 5, 7, "arkworks")
    assert pr_p == pr_a
    # cross: a pure proof verified by arkworks, an arkworks proof by the pure verifier
    assert g16.verify(vk_a, [35], pr_p, "arkworks") is True
    assert g16.verify(vk_p, [35], pr_a, "pure") is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_to_end(keys, backend):
    cs, pk, vk = keys
    pr = g16.prove(pk, cs, cs.witness(), 11, 13, backend)
    assert g16.verify(vk, [35], pr, backend) is True
    assert vk.n_public == 1 and pk.domain_size == 8  # 3 constraints + 2 public-input rows -> N = 8


def test_random_wrappers(keys):
    cs, _, _ = keys
    pk, vk = g16.setup_random(cs, _fast())
    p1 = g16.prove_random(pk, cs, cs.witness(), _fast())
    p2 = g16.prove_random(pk, cs, cs.witness(), _fast())
    assert p1 != p2  # re-randomised; equal with probability ~2^-255
    assert g16.verify(vk, [35], p1, _fast()) and g16.verify(vk, [35], p2, _fast())


def test_unconstrained_public_input_is_bound():
    """A public input occurring in no constraint (like the session binding) is still bound to the proof
    by the public-input rows A_{n+i} = e_i (docs/SNARK.md section 4)."""
    cs = R1CS()
    out = cs.public_output("out", 4)
    cs.public_input("binding", 77)
    x = cs.private("x", 2)
    cs.enforce(LC.term(x), LC.term(x), LC.term(out), "x*x")
    pk, vk = g16.setup(cs, TOXIC, _fast())
    pr = g16.prove(pk, cs, cs.witness(), 3, 4, _fast())
    assert g16.verify(vk, [4, 77], pr, _fast())
    with pytest.raises(PairingCheckFailed):
        g16.verify(vk, [4, 78], pr, _fast())


# ------------------------------------------------------------------------------------------ rejections
@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_public_input(keys, proof, backend):
    _, _, vk = keys
    with pytest.raises(PairingCheckFailed) as info:
        g16.verify(vk, [36], proof, backend)
    assert info.value.evidence["public_inputs"] == [36]


@pytest.mark.parametrize("inputs", [[], [35, 0], [35, 35]])
def test_wrong_public_input_count(keys, proof, inputs):
    _, _, vk = keys
    with pytest.raises(PublicInputCountError) as info:
        g16.verify(vk, inputs, proof, _fast())
    assert info.value.evidence == {"expected": 1, "got": len(inputs)}


@pytest.mark.parametrize("value", [35 + R, R, -1, R - 35 - R - 1, True, 35.0, "35"])
def test_public_input_out_of_range_is_rejected_not_reduced(keys, proof, value):
    _, _, vk = keys
    with pytest.raises(PublicInputRangeError):
        g16.verify(vk, [value], proof, _fast())


@pytest.mark.parametrize("backend", BACKENDS)
def test_off_curve_points(keys, proof, backend):
    _, _, vk = keys
    a_off = (proof.a[0], (proof.a[1] + 1) % P)
    b_off = (proof.b[0], ((proof.b[1][0] + 1) % P, proof.b[1][1]))
    assert not is_on_curve_g1(a_off) and not is_on_curve_g2(b_off)
    for bad, name in ((g16.Proof(a_off, proof.b, proof.c), "A"), (g16.Proof(proof.a, b_off, proof.c), "B"),
                      (g16.Proof(proof.a, proof.b, a_off), "C")):
        with pytest.raises(ProofPointError, match=f"{name} is not on the curve"):
            g16.verify(vk, [35], bad, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_points_outside_the_subgroup(keys, proof, backend):
    _, _, vk = keys
    p1, p2 = _non_subgroup_g1(), _non_subgroup_g2()
    assert is_on_curve_g1(p1) and is_on_curve_g2(p2)
    for bad, name in ((g16.Proof(p1, proof.b, proof.c), "A"), (g16.Proof(proof.a, p2, proof.c), "B"),
                      (g16.Proof(proof.a, proof.b, p1), "C")):
        with pytest.raises(ProofPointError, match=f"{name} is on the curve but not in the order-r subgroup"):
            g16.verify(vk, [35], bad, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_swapped_a_and_c(keys, proof, backend):
    _, _, vk = keys
    with pytest.raises(PairingCheckFailed):
        g16.verify(vk, [35], g16.Proof(proof.c, proof.b, proof.a), backend)


def test_other_tampering(keys, proof):
    _, _, vk = keys
    for bad in (g16.Proof(g1_neg(proof.a), proof.b, proof.c), g16.Proof(proof.a, proof.b, g1_add(proof.c, G1_GEN))):
        with pytest.raises(PairingCheckFailed):
            g16.verify(vk, [35], bad, _fast())


def test_infinity_is_rejected(keys, proof):
    _, _, vk = keys
    for bad, name in ((g16.Proof(None, proof.b, proof.c), "A"), (g16.Proof(proof.a, None, proof.c), "B"),
                      (g16.Proof(proof.a, proof.b, None), "C")):
        with pytest.raises(ProofPointError, match=f"{name} is the point at infinity"):
            g16.verify(vk, [35], bad, _fast())


def test_verify_type_errors(keys, proof):
    _, _, vk = keys
    with pytest.raises(TypeError):
        g16.verify(vk, [35], (proof.a, proof.b, proof.c), _fast())


# ------------------------------------------------------------------------------------------ misuse
def test_setup_validates_toxic_waste():
    cs = cubic()
    with pytest.raises(ValueError, match="exactly the keys"):
        g16.setup(cs, {k: v for k, v in TOXIC.items() if k != "gamma"}, _fast())
    with pytest.raises(ValueError, match=r"\[1, r\)"):
        g16.setup(cs, {**TOXIC, "delta": 0}, _fast())
    with pytest.raises(ValueError, match=r"\[1, r\)"):
        g16.setup(cs, {**TOXIC, "alpha": R}, _fast())
    from protocol.snark.field import root_of_unity

    with pytest.raises(ValueError, match="domain"):
        g16.setup(cs, {**TOXIC, "tau": root_of_unity(8)}, _fast())


def test_prove_rejects_bad_witness_and_foreign_key(keys):
    cs, pk, _ = keys
    z = cs.witness()
    z[4] = 28
    with pytest.raises(ValueError, match="constraint 1"):
        g16.prove(pk, cs, z, 1, 1, _fast())
    other = R1CS()
    o = other.public_output("o", 1)
    other.enforce(LC.term(o), 1, 1, "o = 1")
    with pytest.raises(ValueError, match="different constraint system"):
        g16.prove(pk, other, other.witness(), 1, 1, _fast())
    with pytest.raises(ValueError, match=r"\[0, r\)"):
        g16.prove(pk, cs, cs.witness(), R, 1, _fast())
