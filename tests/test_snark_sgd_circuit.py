"""The T-step linear-regression SGD circuit: bit-exact agreement with protocol.training.step_exact,
soundness against a deviating witness, the no-wrap checks, and a Groth16 round trip on a small instance."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import FixedPointOverflow
from protocol.snark import groth16 as g16
from protocol.snark import sgd_circuit as sgd
from protocol.snark.backend import available_backends
from protocol.snark.errors import ConstraintViolation, PairingCheckFailed, PublicInputRangeError
from protocol.snark.field import R, from_signed, to_signed
from protocol.training import TrainConfig, step_exact

FAST = available_backends()[-1]


def instance(seed: int, d: int, B: int, T: int, f: int, n: int = 16):
    """Random data |x|, |y| <= 2^f (values in [-1, 1]), theta_0 in [-1, 1], and a random schedule."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-(1 << f), (1 << f) + 1, size=(n, d)).tolist()
    Y = rng.integers(-(1 << f), (1 << f) + 1, size=n).tolist()
    sched = [rng.choice(n, B, replace=False).tolist() for _ in range(T)]
    theta0 = rng.integers(-(1 << f), (1 << f) + 1, size=d + 1).tolist()
    return X, Y, sched, theta0


def small_cfg(**kw):
    base = {"model": "linear", "batch_size": 2, "frac_bits": 8, "weight_bits": 24, "lr_num": 13, "lr_shift": 4,
            "l2_num": 5}
    return TrainConfig(**{**base, **kw})


def lead_trace(X, Y, sched, theta0, cfg):
    out = [theta0]
    for t, batch in enumerate(sched, start=1):
        out.append(step_exact(out[-1], [X[i] for i in batch], [Y[i] for i in batch], cfg, t))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_circuit_matches_step_exact(seed):
    X, Y, sched, theta0 = instance(seed, d=2, B=2, T=3, f=8)
    cfg = small_cfg()
    trace = lead_trace(X, Y, sched, theta0, cfg)
    assert sgd.reference_sgd(X, Y, sched, theta0, cfg) == trace
    cs, z, public = sgd.build_sgd_circuit(X, Y, sched, theta0, cfg, binding=12345)
    cs.check(z)
    assert public == sgd.encode_public_inputs(trace[-1], theta0, 12345)
    assert sgd.decode_public_inputs(public, 2, cfg.weight_bits) == (trace[-1], theta0, 12345)
    assert cs.n_constraints == sgd.constraint_count(2, cfg, 3) == 3 * (2 * 33 + 3 * (13 + 24 + 2))
    # every intermediate parameter wire equals the lead's trace
    for t in range(1, 3):
        for j in range(3):
            w = cs.wire_names.index(f"step{t}.theta[{j}]")
            assert to_signed(z[w]) == trace[t][j]


def test_target_size_circuit_matches_step_exact():
    """d = 8, B = 8, T = 16, f = 16, K = 32, lr = 26/256: 15 056 constraints, domain 2^14 (no proof here)."""
    X, Y, sched, theta0 = instance(7, d=8, B=8, T=16, f=16, n=64)
    cfg = TrainConfig(model="linear", batch_size=8, frac_bits=16, weight_bits=32, lr_num=26, lr_shift=8)
    cs, z, public = sgd.build_sgd_circuit(X, Y, sched, theta0, cfg, binding=R - 1)
    assert cs.n_constraints == sgd.constraint_count(8, cfg, 16) == 15056
    assert g16.domain_size(cs) == 1 << 14
    cs.check(z)
    theta_T, theta_0, binding = sgd.decode_public_inputs(public, 8, 32)
    assert theta_T == lead_trace(X, Y, sched, theta0, cfg)[-1] and theta_0 == theta0 and binding == R - 1


@pytest.mark.parametrize("t,j", [(1, 0), (2, 2), (3, 1)])
def test_deviating_step_cannot_satisfy(t, j):
    """A witness generator that lies about one parameter after step t (+100) and continues honestly from
    the lie (so it claims a different theta_T) violates exactly one constraint: that materialisation."""
    X, Y, sched, theta0 = instance(3, d=2, B=2, T=3, f=8)
    cfg = small_cfg()
    cs, honest, _ = sgd.build_sgd_circuit(X, Y, sched, theta0, cfg, 1)
    cs2, z, public = sgd._build(X, Y, sched, theta0, cfg, 1, {(t, j): 100})
    assert [c[:3] for c in cs2.constraints] == [c[:3] for c in cs.constraints]
    failing = [k for k, (a, b, c, _) in enumerate(cs.constraints)
               if a.evaluate(z) * b.evaluate(z) % R != c.evaluate(z)]
    name = f"theta_T[{j}] materialised" if t == 3 else f"step{t}.theta[{j}] materialised"
    assert [cs.constraints[k].name for k in failing] == [name]
    with pytest.raises(ConstraintViolation, match=name.replace("[", r"\[").replace("]", r"\]")):
        cs.check(z)
    assert public != cs.public_values(honest)


def test_single_wire_perturbations_are_caught():
    """Adding 1 to any single non-public wire of an honest witness breaks a constraint (60 wires drawn
    with a fixed seed; deterministic)."""
    X, Y, sched, theta0 = instance(4, d=2, B=2, T=2, f=8)
    cs, z, _ = sgd.build_sgd_circuit(X, Y, sched, theta0, small_cfg(), 9)
    rng = np.random.default_rng(5)
    for w in rng.choice(np.arange(cs.n_public + 1, cs.n_wires), 60, replace=False).tolist():
        bad = list(z)
        bad[w] = (bad[w] + 1) % R
        assert not cs.is_satisfied(bad), cs.wire_names[w]


def test_constraints_do_not_depend_on_the_witness():
    X, Y, sched, theta0 = instance(5, d=2, B=2, T=2, f=8)
    cs, _, _ = sgd.build_sgd_circuit(X, Y, sched, theta0, small_cfg(), 3)
    bare, none_z, none_pub = sgd.build_sgd_circuit(X, Y, sched, None, small_cfg(), None)
    assert none_z is None and none_pub is None
    assert [c[:3] for c in bare.constraints] == [c[:3] for c in cs.constraints]
    with pytest.raises(ValueError, match="both"):
        sgd.build_sgd_circuit(X, Y, sched, theta0, small_cfg(), None)


def test_overflow_is_raised_like_step_exact():
    X, Y, sched, _ = instance(6, d=2, B=2, T=2, f=8)
    cfg = small_cfg(weight_bits=12)
    theta0 = [2000, -2000, 2000]  # |theta| < 2^11, predictions overflow
    with pytest.raises(FixedPointOverflow):
        lead_trace(X, Y, sched, theta0, cfg)
    with pytest.raises(FixedPointOverflow):
        sgd.build_sgd_circuit(X, Y, sched, theta0, cfg, 0)
    with pytest.raises(FixedPointOverflow):
        sgd.build_sgd_circuit(X, Y, sched, [1 << 11, 0, 0], cfg, 0)


def test_no_wrap_requirements_are_checked():
    X, Y, sched, _ = instance(8, d=2, B=2, T=1, f=8)
    with pytest.raises(ValueError, match="exceeds 250"):
        sgd.build_sgd_circuit(X, Y, sched, None, sgd.CircuitConfig(frac_bits=8, weight_bits=240, lr_num=1,
                                                                    lr_shift=4, batch_size=2), None)
    huge = [[1 << 215, 1], [1, 1]]
    with pytest.raises(ValueError, match="2\\^252"):
        sgd.build_sgd_circuit(huge, [0, 0], [[0, 1]], None, sgd.CircuitConfig(frac_bits=8, weight_bits=40,
                                                                               lr_num=1, lr_shift=4, batch_size=2), None)
    assert sgd.rounding_bound(X, Y, sched, small_cfg()) < 1 << 80


@pytest.mark.parametrize("kwargs,match", [
    ({"schedule": [[0]]}, "batch size"),
    ({"schedule": [[0, 99]]}, "outside"),
    ({"schedule": []}, "at least one"),
    ({"theta0": [0, 0]}, "d \\+ 1"),
    ({"Y": [0]}, "targets"),
])
def test_input_validation(kwargs, match):
    X, Y, sched, theta0 = instance(9, d=2, B=2, T=1, f=8)
    args = {"X": X, "Y": Y, "schedule": sched, "theta0": theta0, **kwargs}
    with pytest.raises(ValueError, match=match):
        sgd.build_sgd_circuit(args["X"], args["Y"], args["schedule"], args["theta0"], small_cfg(), 0)


def test_config_validation():
    X, Y, sched, theta0 = instance(9, d=2, B=2, T=1, f=8)
    with pytest.raises(ValueError, match="linear"):
        sgd.reference_sgd(X, Y, sched, theta0, small_cfg(model="logistic"))
    with pytest.raises(ValueError, match="power of two"):
        sgd.CircuitConfig.coerce(sgd.CircuitConfig(batch_size=3))
    with pytest.raises(TypeError):
        sgd.reference_sgd([[0.5, 1]], [0], [[0, 0]], [0, 0, 0], small_cfg())


def test_decode_public_inputs_checks_ranges():
    pub = sgd.encode_public_inputs([1, -2, 3], [-4, 5, -6], 7)
    assert pub[1] == R - 2
    assert sgd.decode_public_inputs(pub, 2, 24) == ([1, -2, 3], [-4, 5, -6], 7)
    for bad_index, value in ((0, from_signed(1 << 23)), (4, from_signed(-(1 << 23) - 1))):
        bad = list(pub)
        bad[bad_index] = value
        with pytest.raises(PublicInputRangeError):
            sgd.decode_public_inputs(bad, 2, 24)
    with pytest.raises(ValueError, match="expected 7"):
        sgd.decode_public_inputs(pub[:-1], 2, 24)
    edge = list(pub)
    edge[4] = from_signed(-(1 << 23))  # the two's-complement minimum is in range, as in the gadget
    assert sgd.decode_public_inputs(edge, 2, 24)[1][1] == -(1 << 23)


def test_groth16_round_trip_small_sgd():
    X, Y, sched, theta0 = instance(10, d=2, B=2, T=2, f=8)
    cs, z, public = sgd.build_sgd_circuit(X, Y, sched, theta0, small_cfg(), binding=424242)
    pk, vk = g16.setup_random(cs, FAST)
    proof = g16.prove_random(pk, cs, z, FAST)
    assert g16.verify(vk, public, proof, FAST)
    for k in (0, 3, len(public) - 1):  # a final weight, an initial weight, the session binding
        bad = list(public)
        bad[k] = (bad[k] + 1) % R
        with pytest.raises(PairingCheckFailed):
            g16.verify(vk, bad, proof, FAST)
