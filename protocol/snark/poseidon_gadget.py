"""R1CS gadgets: the Poseidon permutation and sponge of ``poseidon.py``, and the field product of two LCs.

Constraints per permutation (docs/SNARK.md section 8.3): each S-box x^5 costs 3 products
(x2 = x*x, x4 = x2*x2, x5 = x4*x) and returns a new wire; round constants and the MDS layer are linear
and free. In the partial rounds the two elements without an S-box stay linear combinations that grow by
one term per round; they are materialised (one linear constraint each) once they exceed MAX_LC_TERMS
terms, which bounds the density of the constraint matrices. So a permutation costs
3 * (3 * R_F + R_P) = 243 products plus a few materialisations (``permutation_cost``).
"""

from __future__ import annotations

from .field import R
from .gadgets import materialize
from .poseidon import FULL_ROUNDS, LENGTH_TAG, PARTIAL_ROUNDS, RATE, WIDTH, params
from .r1cs import LC, R1CS, as_lc

__all__ = ["MAX_LC_TERMS", "mul", "permutation_cost", "permute_gadget", "sponge_gadget"]

MAX_LC_TERMS = 12


def mul(cs: R1CS, a, b, name: str) -> LC:
    """A new wire w with the constraint a * b = w (a, b LCs); w gets the product when both are known."""
    a, b = as_lc(a), as_lc(b)
    va, vb = cs.value(a), cs.value(b)
    w = cs.private(name, None if va is None or vb is None else va * vb % R)
    cs.enforce(a, b, LC.term(w), name)
    return LC.term(w)


def _sbox(cs: R1CS, x: LC, name: str) -> LC:
    x2 = mul(cs, x, x, f"{name}.x2")
    x4 = mul(cs, x2, x2, f"{name}.x4")
    return mul(cs, x4, x, f"{name}.x5")


def permute_gadget(cs: R1CS, state, name: str) -> list[LC]:
    """Constrain and return the Poseidon permutation of a width-3 state of LCs."""
    rc, mds = params()
    s = [as_lc(v).copy() for v in state]
    if len(s) != WIDTH:
        raise ValueError(f"Poseidon state must have {WIDTH} elements, got {len(s)}")
    half = FULL_ROUNDS // 2
    for i in range(FULL_ROUNDS + PARTIAL_ROUNDS):
        s = [v.add_term(0, rc[WIDTH * i + k]) for k, v in enumerate(s)]
        if i < half or i >= half + PARTIAL_ROUNDS:
            s = [_sbox(cs, v, f"{name}.r{i}.s{k}") for k, v in enumerate(s)]
        else:
            s[0] = _sbox(cs, s[0], f"{name}.r{i}.s0")
            for k in range(1, WIDTH):
                if len(s[k]) > MAX_LC_TERMS:
                    s[k] = LC.term(materialize(cs, s[k], f"{name}.r{i}.m{k}"))
        s = [LC().add_scaled(s[0], row[0]).add_scaled(s[1], row[1]).add_scaled(s[2], row[2]) for row in mds]
    return s


def sponge_gadget(cs: R1CS, elems, name: str) -> LC:
    """The LC of ``poseidon.sponge_hash`` over the given LCs (same tag, padding and output element)."""
    elems = [as_lc(e) for e in elems]
    state = [LC.const(len(elems) * LENGTH_TAG % R), LC(), LC()]
    for n, i in enumerate(range(0, max(len(elems), 1), RATE)):
        chunk = elems[i:i + RATE]
        chunk += [LC()] * (RATE - len(chunk))
        state = permute_gadget(cs, [state[0], state[1] + chunk[0], state[2] + chunk[1]], f"{name}.p{n}")
    return state[1]


def permutation_cost() -> int:
    """Constraints of one permutation (products plus materialisations), counted on a throwaway system."""
    cs = R1CS()
    ins = [cs.private_input(f"in{k}") for k in range(WIDTH)]
    permute_gadget(cs, [LC.term(w) for w in ins], "p")
    return cs.n_constraints
