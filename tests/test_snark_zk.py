"""Zero-knowledge SNARK of training on committed private data: the circuit, the Poseidon gadget, the
subversion-zero-knowledge key checks (each malformation fires its own check), unlinkable proofs, and
rejection of a wrong commitment, wrong data or a wrong model."""

from __future__ import annotations

import dataclasses
import random

import pytest

from protocol.snark import groth16 as g16
from protocol.snark import keys_io
from protocol.snark import poseidon as P
from protocol.snark import zk_circuit as Z
from protocol.snark import zk_session as S
from protocol.snark.backend import available_backends
from protocol.snark.curve import G1_GEN, G2_GEN, g1_add, g1_mul, g2_mul, in_subgroup_g1
from protocol.snark.encoding import fp_sqrt
from protocol.snark.errors import ConstraintViolation, PairingCheckFailed, ProvingKeyRejected
from protocol.snark.field import P as FP
from protocol.snark.field import R
from protocol.snark.key_check import COFACTOR_G1, check_proving_key
from protocol.snark.poseidon_gadget import permutation_cost, permute_gadget, sponge_gadget
from protocol.snark.r1cs import LC, R1CS
from protocol.training import TrainConfig

FAST = available_backends()[-1]
CFG = TrainConfig(model="linear", batch_size=2, frac_bits=8, weight_bits=24, lr_num=13, lr_shift=4, l2_num=5)
N, D = 6, 2
THETA0 = [3, -5, 7]
BINDING = 4242


def _data(seed):
    rng = random.Random(seed)
    X = [[rng.randint(-300, 300) for _ in range(D)] for _ in range(N)]
    Y = [rng.randint(-300, 300) for _ in range(N)]
    return X, Y


SCHED = [[0, 1], [2, 5], [4, 3]]


@pytest.fixture(scope="module")
def session():
    cs, pk, vk = S.client_setup(N, D, SCHED, CFG, FAST)
    X, Y = _data(1)
    blind = S.new_blinding()
    com = S.commitment(X, Y, blind, CFG)
    pp = S.prove_private(pk, X, Y, blind, SCHED, THETA0, CFG, BINDING, r1cs=cs, backend=FAST)
    return {"cs": cs, "pk": pk, "vk": vk, "X": X, "Y": Y, "blind": blind, "com": com, "pp": pp}


# ------------------------------------------------------------------------------------------ gadgets
def test_poseidon_gadget_matches_native():
    rng = random.Random(3)
    state = [rng.randrange(R) for _ in range(3)]
    cs = R1CS()
    ins = [cs.private_input(f"s{k}", v) for k, v in enumerate(state)]
    out = permute_gadget(cs, [LC.term(w) for w in ins], "p")
    cs.check(cs.witness())
    assert [cs.value(o) for o in out] == P.permute(state)
    assert cs.n_constraints == permutation_cost() == 3 * (3 * 8 + 57) + 10
    elems = [rng.randrange(R) for _ in range(5)]
    cs2 = R1CS()
    ws = [cs2.private_input(f"e{k}", v) for k, v in enumerate(elems)]
    assert cs2.value(sponge_gadget(cs2, [LC.term(w) for w in ws], "h")) == P.sponge_hash(elems)
    z = cs2.witness()
    cs2.check(z)
    z[-1] = (z[-1] + 1) % R  # the last S-box output
    assert not cs2.is_satisfied(z)


def test_circuit_matches_reference_and_counts():
    X, Y = _data(2)
    cs, z, public = Z.build_private_circuit(N, D, SCHED, CFG, X=X, Y=Y, theta0=THETA0, binding=BINDING, blinding=9)
    cs.check(z)
    trace = Z.reference_sgd(X, Y, SCHED, THETA0, CFG)
    assert public == Z.encode_private_public(trace[-1], THETA0, BINDING, P.commit(X, Y, 9, CFG.weight_bits))
    br = Z.constraint_breakdown(N, D, CFG, len(SCHED))
    assert cs.n_constraints == br["total"]
    assert br["ranges"] == N * (D + 1) * (CFG.weight_bits + 1)
    assert br["per_step"] == 2 * (8 + 24 + 1) + 3 * (8 + 4 + 1 + 24 + 2) + 2 * 2 * D
    assert (cs.n_pub_out, cs.n_pub_in, cs.n_prv_in) == (D + 1, D + 3, 1 + N * (D + 1))
    shape_only = S.circuit(N, D, SCHED, CFG)  # what the client builds: the same constraints
    assert shape_only.constraints == cs.constraints


def test_out_of_range_data_is_refused_and_cannot_be_forced():
    X, Y = _data(3)
    X[0][0] = 1 << 23  # K = 24: outside [-2^23, 2^23)
    with pytest.raises(ValueError, match="range"):
        Z.build_private_circuit(N, D, SCHED, CFG, X=X, Y=Y, theta0=THETA0, binding=1, blinding=2)
    X, Y = _data(3)
    cs, z, _ = Z.build_private_circuit(N, D, SCHED, CFG, X=X, Y=Y, theta0=THETA0, binding=1, blinding=2)
    w = cs.wire_names.index("data[0][0]")
    z[w] = (z[w] + (1 << 24)) % R  # a value outside the range, everything else unchanged
    with pytest.raises(ConstraintViolation):
        cs.check(z)


# ------------------------------------------------------------------------------------------ protocol
def test_honest_proof_verifies_and_proofs_are_unlinkable(session):
    s = session
    pp = s["pp"]
    assert pp.commitment == s["com"]
    assert pp.theta_T == Z.reference_sgd(s["X"], s["Y"], SCHED, THETA0, CFG)[-1]
    assert S.verify_private(s["vk"], s["com"], THETA0, pp.theta_T, BINDING, pp.proof, CFG, FAST)
    pp2 = S.prove_private(s["pk"], s["X"], s["Y"], s["blind"], SCHED, THETA0, CFG, BINDING, r1cs=s["cs"],
                          backend=FAST)
    assert pp2.public == pp.public
    assert pp2.proof.a != pp.proof.a and pp2.proof.b != pp.proof.b and pp2.proof.c != pp.proof.c
    assert S.verify_private(s["vk"], s["com"], THETA0, pp2.theta_T, BINDING, pp2.proof, CFG, FAST)


def test_wrong_commitment_model_or_binding_fails(session):
    s = session
    pp, vk = s["pp"], s["vk"]
    with pytest.raises(PairingCheckFailed):
        S.verify_private(vk, (s["com"] + 1) % R, THETA0, pp.theta_T, BINDING, pp.proof, CFG, FAST)
    bad_model = list(pp.theta_T)
    bad_model[0] += 1
    with pytest.raises(PairingCheckFailed):
        S.verify_private(vk, s["com"], THETA0, bad_model, BINDING, pp.proof, CFG, FAST)
    with pytest.raises(PairingCheckFailed):
        S.verify_private(vk, s["com"], [4, -5, 7], pp.theta_T, BINDING, pp.proof, CFG, FAST)
    with pytest.raises(PairingCheckFailed):
        S.verify_private(vk, s["com"], THETA0, pp.theta_T, BINDING + 1, pp.proof, CFG, FAST)


def test_training_on_other_data_fails_against_the_commitment(session):
    """The provider committed to (X, Y) but trains on X' (one value changed): its proof states the
    commitment of X', so it fails against the commitment the client received."""
    s = session
    X2 = [row[:] for row in s["X"]]
    X2[5][1] += 1
    pp = S.prove_private(s["pk"], X2, s["Y"], s["blind"], SCHED, THETA0, CFG, BINDING, r1cs=s["cs"], backend=FAST)
    assert pp.commitment != s["com"]
    with pytest.raises(PairingCheckFailed):
        S.verify_private(s["vk"], s["com"], THETA0, pp.theta_T, BINDING, pp.proof, CFG, FAST)


# ------------------------------------------------------------------------------------------ key checks
def _g1_plus(pt, k=1):
    return g1_add(pt, g1_mul(G1_GEN, k))


def _first_private(pk):
    return pk.vk.n_public + 1


MALFORMED = {
    "shape": lambda pk: dataclasses.replace(pk, tau_powers_1=(), tau_2=None, tau_n_2=None),
    "nondegenerate": lambda pk: dataclasses.replace(pk, delta_1=None),
    "beta": lambda pk: dataclasses.replace(pk, beta_1=_g1_plus(pk.beta_1)),
    "delta": lambda pk: dataclasses.replace(pk, delta_2=g2_mul(pk.delta_2, 2)),
    "tau-powers": lambda pk: dataclasses.replace(
        pk, tau_powers_1=pk.tau_powers_1[:3] + (_g1_plus(pk.tau_powers_1[3]),) + pk.tau_powers_1[4:]),
    "tau-N": lambda pk: dataclasses.replace(pk, tau_n_2=g2_mul(pk.tau_n_2, 3)),
    "a-query": lambda pk: dataclasses.replace(pk, a_query=_bump(pk.a_query, _first_private(pk) + 4)),
    "b1-query": lambda pk: dataclasses.replace(pk, b1_query=_bump(pk.b1_query, _first_private(pk) + 1)),
    "b2-query": lambda pk: dataclasses.replace(
        pk, b2_query=tuple(g2_mul(G2_GEN, 5) if i == 1 else q for i, q in enumerate(pk.b2_query))),
    # the classic subverted key: L_i shifted so that C reveals sum z_i * (shift) to the key's author
    "l-query": lambda pk: dataclasses.replace(pk, l_query=_bump(pk.l_query, 0)),
    "h-query": lambda pk: dataclasses.replace(pk, h_query=_bump(pk.h_query, len(pk.h_query) - 1)),
}


def _bump(points, i):
    return tuple(_g1_plus(p) if j == i else p for j, p in enumerate(points))


@pytest.mark.parametrize("check", sorted(MALFORMED))
def test_malformed_key_is_refused_by_its_own_check(session, check):
    bad = MALFORMED[check](session["pk"])
    with pytest.raises(ProvingKeyRejected) as err:
        check_proving_key(bad, session["cs"], FAST)
    assert err.value.check == check and f"[check: {check}]" in str(err.value)


def test_prover_refuses_a_bad_key_before_proving(session, monkeypatch):
    s = session
    called = []
    monkeypatch.setattr(S.g16, "prove_random", lambda *a, **k: called.append(1))
    with pytest.raises(ProvingKeyRejected, match="L_i"):
        S.prove_private(MALFORMED["l-query"](s["pk"]), s["X"], s["Y"], s["blind"], SCHED, THETA0, CFG, BINDING,
                        r1cs=s["cs"], backend=FAST)
    assert not called


def _order3_point():
    x = 1
    while True:
        y = fp_sqrt((x ** 3 + 4) % FP)
        if y is not None:
            t = g1_mul((x, y), R * COFACTOR_G1 // 3)
            if t is not None:
                return t
        x += 1


def test_small_order_components_are_projected_away(session):
    """A key whose A_i carry an order-3 component passes (the checks see the projection) and the proof,
    projected, lies in G1 and verifies: nothing about the witness mod 3 can leak through the proof."""
    s = session
    t3 = _order3_point()
    assert g1_mul(t3, 3) is None and not in_subgroup_g1(t3)
    tainted = dataclasses.replace(s["pk"], a_query=tuple(g1_add(p, t3) if p is not None else t3
                                                         for p in s["pk"].a_query))
    check_proving_key(tainted, s["cs"], FAST)
    pp = S.prove_private(tainted, s["X"], s["Y"], s["blind"], SCHED, THETA0, CFG, BINDING, r1cs=s["cs"],
                         backend=FAST)
    assert in_subgroup_g1(pp.proof.a) and in_subgroup_g1(pp.proof.c)
    assert S.verify_private(s["vk"], s["com"], THETA0, pp.theta_T, BINDING, pp.proof, CFG, FAST)


def test_key_with_powers_round_trips_through_bytes(session):
    pk = session["pk"]
    data = keys_io.pk_to_bytes(pk)
    assert data.startswith(keys_io.MAGIC_POWERS)
    assert keys_io.pk_from_bytes(data) == pk
    plain = dataclasses.replace(pk, tau_powers_1=(), tau_2=None, tau_n_2=None)
    assert keys_io.pk_from_bytes(keys_io.pk_to_bytes(plain)) == plain
    from protocol.snark.errors import SnarkFormatError

    with pytest.raises(SnarkFormatError):
        keys_io.pk_from_bytes(data[:-1])


def test_plain_setup_is_unchanged_by_the_powers_option():
    cs = S.circuit(N, D, SCHED, CFG)
    toxic = {"tau": 123456789, "alpha": 3, "beta": 5, "gamma": 7, "delta": 11}
    pk0, vk0 = g16.setup(cs, toxic, FAST)
    pk1, vk1 = g16.setup(cs, toxic, FAST, powers=True)
    assert vk0 == vk1 and dataclasses.replace(pk1, tau_powers_1=(), tau_2=None, tau_n_2=None) == pk0
    assert pk1.tau_powers_1[2] == g1_mul(G1_GEN, 123456789 ** 2 % R)
