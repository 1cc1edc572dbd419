"""R1CS builder, satisfiability checker and gadgets (booleans, floor division, materialisation)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FixedPointOverflow
from protocol.snark.errors import ConstraintViolation
from protocol.snark.field import R, from_signed, to_signed
from protocol.snark.gadgets import (
    alloc_bit,
    boolean,
    check_no_wrap,
    floor_div_pow2,
    materialize,
    materialize_into,
)
from protocol.snark.r1cs import LC, R1CS, example_cubic


# ------------------------------------------------------------------------------------------ LC / R1CS
def test_lc_arithmetic_is_mod_r_and_drops_zeros():
    a = LC.term(1, 3) + LC.term(2, -1)
    assert a == {1: 3, 2: R - 1}
    assert (a - a) == {}
    assert (a + LC.term(2, 1)) == {1: 3}
    assert (2 * a)[1] == 6 and (-a)[1] == R - 3
    assert (a + 5)[0] == 5 and (5 - a)[0] == 5
    assert a.evaluate([1, 10, 4]) == 26
    with pytest.raises(TypeError):
        a * 1.5


def test_wire_order_is_enforced():
    cs = R1CS()
    cs.public_output("o")
    cs.public_input("i")
    cs.private("p")
    with pytest.raises(ValueError, match="after a internal wire"):
        cs.public_input("late")
    with pytest.raises(ValueError, match="not allocated"):
        cs.enforce(LC.term(99), 1, 0, "bad")


def test_cubic_counts_and_checker():
    cs = example_cubic()
    assert (cs.n_wires, cs.n_pub_out, cs.n_pub_in, cs.n_prv_in, cs.n_public, cs.n_constraints) == (5, 1, 0, 1, 1, 3)
    z = cs.witness()
    assert z == [1, 35, 3, 9, 27] and cs.public_values() == [35]
    cs.check(z)
    bad = list(z)
    bad[4] = 28  # x3 wrong: constraint 1 ("x2*x") fails first
    with pytest.raises(ConstraintViolation) as info:
        cs.check(bad)
    assert info.value.index == 1 and info.value.name == "x2*x"
    assert cs.first_violation(bad) == 1 and not cs.is_satisfied(bad)


def test_witness_shape_errors():
    cs = example_cubic()
    z = cs.witness()
    with pytest.raises(ValueError, match="wires"):
        cs.check(z[:-1])
    with pytest.raises(ValueError, match="constant 1"):
        cs.check([2] + z[1:])
    with pytest.raises(ValueError, match=r"\[0, r\)"):
        cs.check(z[:-1] + [R])
    cs2 = R1CS()
    cs2.private("unset")
    with pytest.raises(ValueError, match="no value"):
        cs2.witness()


# ------------------------------------------------------------------------------------------ gadgets
def test_boolean_and_alloc_bit():
    cs = R1CS()
    b = alloc_bit(cs, "b", 1)
    cs.check(cs.witness())
    z = cs.witness()
    z[b] = 2
    with pytest.raises(ConstraintViolation, match="boolean"):
        cs.check(z)
    with pytest.raises(ValueError):
        alloc_bit(cs, "c", 2)
    boolean(cs, LC.term(b), "again")
    assert cs.n_constraints == 2


def _floor_circuit(e_value: int | None, shift: int, width: int):
    cs = R1CS()
    e = cs.private_input("e", e_value)
    q = floor_div_pow2(cs, LC.term(e), shift, width, "fd")
    return cs, e, q


@pytest.mark.parametrize("shift,width", [(0, 1), (3, 4), (8, 16), (43, 32)])
def test_floor_div_honest_boundaries(shift, width):
    lo, hi = -(1 << (shift + width - 1)), (1 << (shift + width - 1)) - 1
    candidates = (lo, lo + 1, -1, 0, 1, hi - 1, hi, -(1 << shift) - 1, (1 << shift) + 3)
    for ev in sorted({v for v in candidates if lo <= v <= hi}):
        cs, _, q = _floor_circuit(ev, shift, width)
        z = cs.witness()
        cs.check(z)
        assert to_signed(q.evaluate(z)) == ev >> shift
        assert cs.n_constraints == shift + width + 1
    for ev in (lo - 1, hi + 1):
        with pytest.raises(FixedPointOverflow):
            _floor_circuit(ev, shift, width)


def test_floor_div_exhaustive_soundness_small():
    """For S = 2, K = 3 and every E in [-40, 40) (the true range is [-16, 16)): the satisfying assignments
    of the 5 bit wires are exactly one, with quotient floor(E / 4), when E is in range, and none otherwise."""
    shift, width = 2, 3
    cs, e, q = _floor_circuit(None, shift, width)
    bits = [w for w in range(cs.n_wires) if cs.wire_names[w].startswith("fd.bit")]
    assert len(bits) == shift + width
    for ev in range(-40, 40):
        sols = []
        for assignment in itertools.product((0, 1), repeat=len(bits)):
            z = [1] * cs.n_wires
            z[e] = from_signed(ev)
            for w, v in zip(bits, assignment):
                z[w] = v
            if cs.is_satisfied(z):
                sols.append(to_signed(q.evaluate(z)))
        assert sols == ([ev >> shift] if -16 <= ev < 16 else []), ev


def _weak_floor(cs: R1CS, e: int, shift: int, q_value: int, rho_value: int):
    """The UNSOUND remainder-only gadget of docs/SNARK.md section 3.1: quotient wire unchecked, remainder S bits."""
    q = cs.private("weak.q", q_value)
    rho = LC()
    for k in range(shift):
        rho.add_term(alloc_bit(cs, f"weak.bit{k}", (rho_value >> k) & 1), 1 << k)
    cs.enforce_zero(LC.term(q, 1 << shift) + rho - LC.term(e), "weak decomposition")
    return q


def test_forged_remainder_witness_fails_real_gadget():
    """docs/SNARK.md section 3.1 (a remainder-only check is unsound): E = 1000, S = 8. Honest q = 3,
    rho = 232. The forgery keeps rho + 1 and the quotient q' = (E - rho - 1) / 2^S mod r, a ~2^254 field
    element. It satisfies the remainder-only gadget, but no assignment expressing it satisfies the real
    gadget."""
    E, S, K = 1000, 8, 16
    rho_f = (E % (1 << S)) + 1
    q_forged = (E - rho_f) * pow(1 << S, -1, R) % R
    assert q_forged.bit_length() > 200
    weak = R1CS()
    ew = weak.private_input("e", E)
    _weak_floor(weak, ew, S, q_forged, rho_f)
    weak.check(weak.witness())  # the attack works against the weak gadget

    cs, _, q = _floor_circuit(E, S, K)
    honest = cs.witness()
    cs.check(honest)
    assert to_signed(q.evaluate(honest)) == 3
    bits = [w for w in range(cs.n_wires) if cs.wire_names[w].startswith("fd.bit")]
    # forgery 1: the bits of (q' + 2^(K-1)) 2^S + rho', truncated to S + K boolean wires
    u_forged = ((q_forged + (1 << (K - 1))) << S) + rho_f
    z = list(honest)
    for k, w in enumerate(bits):
        z[w] = (u_forged >> k) & 1
    with pytest.raises(ConstraintViolation, match="decomposes"):
        cs.check(z)
    # forgery 2: remainder bits of rho', and the top bit wire solved from the linear constraint
    z = list(honest)
    for k, w in enumerate(bits[:-1]):
        z[w] = (rho_f >> k) & 1 if k < S else 0
    partial = sum(z[w] << k for k, w in enumerate(bits[:-1]))
    z[bits[-1]] = (E + (1 << (K - 1 + S)) - partial) * pow(1 << (S + K - 1), -1, R) % R
    assert cs.constraints[-1].a.evaluate(z) == 0  # the linear constraint now holds ...
    with pytest.raises(ConstraintViolation, match="boolean"):  # ... but the top "bit" is not a bit
        cs.check(z)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=40), st.integers(min_value=1, max_value=40), st.data())
def test_floor_div_property(shift, width, data):
    ev = data.draw(st.integers(min_value=-(1 << (shift + width - 1)), max_value=(1 << (shift + width - 1)) - 1))
    cs, _, q = _floor_circuit(ev, shift, width)
    z = cs.witness()
    assert cs.is_satisfied(z) and to_signed(q.evaluate(z)) == ev >> shift


def test_floor_div_shape_checks():
    cs = R1CS()
    with pytest.raises(ValueError, match="exceeds 250"):
        floor_div_pow2(cs, LC.const(0), 200, 51, "x")
    with pytest.raises(ValueError):
        floor_div_pow2(cs, LC.const(0), -1, 4, "x")
    with pytest.raises(TypeError):
        floor_div_pow2(cs, LC.const(0), 1.0, 4, "x")
    check_no_wrap((1 << 252) - 1)
    with pytest.raises(ValueError, match="wrap"):
        check_no_wrap(1 << 252)


def test_materialize():
    cs = R1CS()
    out = cs.public_output("out")
    x = cs.private_input("x", 7)
    w = materialize(cs, LC.term(x, 3) + 1, "w")
    materialize_into(cs, LC.term(w, 2), out, "out")
    z = cs.witness()
    assert z[w] == 22 and z[out] == 44
    cs.check(z)
    z[out] = 45
    with pytest.raises(ConstraintViolation, match="out materialised"):
        cs.check(z)


def test_r1cs_pickles():
    import pickle

    cs = example_cubic()
    back = pickle.loads(pickle.dumps(cs))
    assert back.constraints == cs.constraints and back.constraints[2].name == "out"
    back.check(back.witness())
