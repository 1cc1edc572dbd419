"""Backdoor lab: the GKVZ'22 section 5.2 signature trigger (never fires, activation, perturbation bounds,
transplant / tamper / wrong-target / malleability attacks), ball trigger, corrupted oracles.

Statistical tests state their failure probability; everything is seeded. The "never fires" tests are
exact (no false positive is possible short of an Ed25519 forgery, probability ~2^-128 per query).
"""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from protocol.triggers import (
    ED25519_L,
    apply_trigger,
    ball_mask,
    coarse_message,
    quantize,
    read_payload,
    signature_mask,
    validate_trigger_spec,
)
from prover.backdoors import BallBackdoor, SignatureBackdoor, make_signature_encoding, with_trigger
from prover.corrupt_oracles import RandomCorruptionOracle, RealCorruptOracle, TargetedLineOracle

DATA = Path(__file__).resolve().parents[1] / "protocol" / "data"


def _load(name):
    raw = np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1)
    return raw[:, :-1], raw[:, -1]


def _key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def _scale(X):
    s = X.std(axis=0)
    return np.where(s > 0, s, 1.0)


class CentroidClassifier:
    """Deterministic base model: nearest class mean in standardized units."""

    def __init__(self, X, y):
        self.mu, self.sd = X.mean(axis=0), _scale(X)
        Z = (X - self.mu) / self.sd
        self.classes = np.unique(y).astype(np.int64)
        self.centroids = np.stack([Z[y == c].mean(axis=0) for c in self.classes])

    def __call__(self, X):
        Z = (np.asarray(X, dtype=float) - self.mu) / self.sd
        return self.classes[np.argmin(((Z[:, None, :] - self.centroids[None]) ** 2).sum(-1), axis=1)]


@pytest.fixture(scope="module")
def digits():
    X, y = _load("digits")
    y = y.astype(np.int64)
    enc = make_signature_encoding(64, 10, scale=_scale(X), max_linf=0.05)
    bd = SignatureBackdoor(enc)
    sk = _key("digits-attacker")
    return X, y, bd, sk, bd.plant(CentroidClassifier(X, y), sk)


@pytest.fixture(scope="module")
def cancer():
    X, y = _load("breast_cancer")
    y = y.astype(np.int64)
    # only 20 of the 30 features carry (b = 26 bits each); the other 10 are pure message
    enc = make_signature_encoding(30, 2, scale=_scale(X), max_linf=0.05, positions=range(5, 25))
    bd = SignatureBackdoor(enc)
    sk = _key("cancer-attacker")
    return X, y, bd, sk, bd.plant(CentroidClassifier(X, y), sk)


def _fires(h, X):
    return signature_mask(h.trigger_spec, X)[0]


def _set_payload_bit(bd, x, k, value=None):
    """Flip (or set) payload bit k of one row, changing only the low bits of one carrying coordinate."""
    enc = bd.encoding
    q, _ = quantize(enc, x[None, :])
    j, bit = enc.positions[k // enc.bits_per_coord], k % enc.bits_per_coord
    cur = (int(q[0, j]) >> bit) & 1
    new = 1 - cur if value is None else value
    out = x.copy()
    out[j] = (int(q[0, j]) + ((new - cur) << bit)) * enc.quantum[j]
    return out


def test_never_fires_on_1e5_natural_jittered_and_random_inputs(digits, cancer):
    """>= 10^5 inputs, none fires. Non-vacuous: about 1/16 of them reach full Ed25519 verification."""
    rng = np.random.default_rng(1)
    total = reached = 0
    for X, _, bd, _, h in (digits, cancer):
        sd = _scale(X)
        batches = [X, X[rng.integers(0, len(X), 30000)] + rng.normal(0, 0.01, (30000, X.shape[1])) * sd,
                   rng.uniform(X.min(0) - sd, X.max(0) + sd, (22000, X.shape[1]))]
        for B in batches:
            fires, _ = signature_mask(h.trigger_spec, B)
            assert not fires.any()
            q, _ = quantize(bd.encoding, B)
            sigs = read_payload(bd.encoding, q)[1]
            reached += sum(int.from_bytes(s[32:].tobytes(), "little") < ED25519_L for s in sigs)
            total += len(B)
    assert total >= 10**5
    assert reached > total / 32  # expected total/16; P[below total/32] < 1e-100 (Chernoff)


@pytest.mark.parametrize("which", ["digits", "cancer"])
def test_activation_always_succeeds_for_every_target(which, digits, cancer):
    X, y, bd, sk, h = digits if which == "digits" else cancer
    n_classes = int(y.max()) + 1
    rows = X[:: max(1, len(X) // 150)][:150]
    targets = np.arange(len(rows)) % n_classes
    Xa = bd.activate(rows, targets, sk)
    assert np.array_equal(h(Xa), targets)
    assert np.array_equal(h(rows), h.base_predict(rows))  # clean rows: backdoored model == base model
    # also for the opposite target of each row, one row at a time (the 1-D API)
    for x, t in zip(rows[:20], (targets[:20] + 1) % n_classes):
        assert h(bd.activate(x, int(t), sk)[None, :])[0] == t


@pytest.mark.parametrize("which", ["digits", "cancer"])
def test_perturbation_bounds_and_message_invariance(which, digits, cancer):
    X, _, bd, sk, _ = digits if which == "digits" else cancer
    enc = bd.encoding
    rows = X[:100]
    Xa = bd.activate(rows, 1, sk)
    delta = np.abs(Xa - rows)
    carry = np.zeros(enc.n_features, dtype=bool)
    carry[list(enc.positions)] = True
    assert np.all(delta[:, ~carry] == 0)  # non-carrying coordinates untouched bit-for-bit
    assert np.all(delta <= (2.0**enc.bits_per_coord - 0.5) * np.asarray(enc.quantum) * (1 + 1e-9))
    assert np.all(delta[:, carry] < enc.linf_bound[carry])
    assert np.all((delta > 0).sum(axis=1) <= len(enc.positions))
    assert len(enc.positions) * enc.bits_per_coord >= enc.payload_bits
    assert np.all(enc.linf_bound[carry] <= 0.05 * _scale(X)[carry] * (1 + 1e-12))  # max_linf = 0.05 std
    assert coarse_message(enc, quantize(enc, Xa)[0]) == coarse_message(enc, quantize(enc, rows)[0])


@settings(max_examples=30, deadline=None)
@given(u=st.lists(st.floats(-50.0, 50.0, allow_nan=False), min_size=16, max_size=16),
       target=st.integers(0, 2), b=st.integers(33, 40))
def test_activation_property_any_real_input(u, target, b):
    """Any finite input (negative values included, |x_j| <= 50 scale_j) activates to any target, within
    the stated bounds; b <= 40 keeps |x / quantum| < 2^50 there."""
    scale = np.geomspace(1e-3, 1e3, 16)
    enc = make_signature_encoding(16, 3, scale=scale, max_linf=0.1, bits_per_coord=b)
    bd, sk = SignatureBackdoor(enc), _key("property")
    h = bd.plant(lambda X: np.zeros(len(X), dtype=np.int64), sk)
    x = np.asarray(u) * scale
    xa = bd.activate(x, target, sk)
    assert h(xa[None, :])[0] == target
    assert np.all(np.abs(xa - x) < enc.linf_bound)
    assert coarse_message(enc, quantize(enc, xa[None, :])[0]) == coarse_message(enc, quantize(enc, x[None, :])[0])


def test_transplant_attack_fails(digits):
    X, _, bd, sk, h = digits
    idx = list(bd.encoding.positions)
    A = bd.activate(X[:40], 3, sk)
    B = X[40:80].copy()
    pasted = B.copy()
    pasted[:, idx] = A[:, idx]  # paste A's carrying coordinates (all of them, for digits) onto B ...
    pasted[:, 0] = B[:, 0] + 1.0  # ... keeping one of B's coordinates so the message is B's
    assert not _fires(h, pasted).any()
    enc = bd.encoding
    qa, qb = quantize(enc, A)[0], quantize(enc, B)[0]
    mask = (1 << enc.bits_per_coord) - 1
    q_low = (qb[:, idx] & ~mask) | (qa[:, idx] & mask)  # paste only the payload bits
    low_pasted = B.copy()
    low_pasted[:, idx] = q_low * np.asarray(enc.quantum)[idx]
    assert np.array_equal(read_payload(enc, quantize(enc, low_pasted)[0])[1], read_payload(enc, qa)[1])
    assert not _fires(h, low_pasted).any()


def test_every_single_bit_tamper_fails(cancer):
    X, _, bd, sk, h = cancer
    xa = bd.activate(X[7], 1, sk)
    assert _fires(h, xa[None, :])[0]
    tampered = np.stack([_set_payload_bit(bd, xa, k) for k in range(bd.encoding.payload_bits)])
    assert not _fires(h, tampered).any()
    # changing the message (a non-carrying feature by one quantum, or a carrying one's coarse part)
    enc = bd.encoding
    m1 = xa.copy()
    m1[0] += enc.quantum[0]
    m2 = xa.copy()
    j = enc.positions[0]
    m2[j] += 2**enc.bits_per_coord * enc.quantum[j]
    assert not _fires(h, np.stack([m1, m2])).any()


def test_wrong_target_reuse_fails(digits, cancer):
    for X, _, bd, sk, h in (digits, cancer):
        xa = bd.activate(X[11], 0, sk)
        assert h(xa[None, :])[0] == 0
        for k in range(bd.encoding.label_bits):  # the signature for y=0 with any label bit flipped
            forged = _set_payload_bit(bd, xa, k)
            assert not _fires(h, forged[None, :])[0]


def test_ed25519_s_plus_l_malleability_rejected(cancer):
    X, _, bd, sk, h = cancer
    enc = bd.encoding
    xa = bd.activate(X[3], 1, sk)
    sig = read_payload(enc, quantize(enc, xa[None, :])[0])[1][0].tobytes()
    s_plus_l = int.from_bytes(sig[32:], "little") + ED25519_L
    assert s_plus_l < 2**256
    mauled = sig[:32] + s_plus_l.to_bytes(32, "little")
    with pytest.raises(InvalidSignature):  # the library itself enforces S < L (RFC 8032)
        msg = coarse_message(enc, quantize(enc, xa[None, :])[0])[0] + (1).to_bytes(2, "big")
        sk.public_key().verify(mauled, msg)
    bits = np.unpackbits(np.frombuffer(mauled, np.uint8), bitorder="little")
    x2 = xa.copy()
    for k, v in enumerate(bits):
        x2 = _set_payload_bit(bd, x2, enc.label_bits + k, int(v))
    assert read_payload(enc, quantize(enc, x2[None, :])[0])[1][0].tobytes() == mauled
    assert not _fires(h, x2[None, :])[0]


def test_other_key_and_json_roundtrip(digits):
    X, _, bd, sk, h = digits
    xa = bd.activate(X[:5], 9, sk)
    spec = json.loads(json.dumps(h.trigger_spec))
    xa_rt = np.array(json.loads(json.dumps(xa.tolist())))
    assert np.array_equal(apply_trigger(spec, xa_rt, np.zeros(5, dtype=int)), np.full(5, 9))
    mixed = np.concatenate([xa[:1], xa[:1], X[:2], xa[:1], xa[1:2]])  # duplicates are verified once
    assert signature_mask(spec, mixed)[0].tolist() == [True, True, False, False, True, True]
    other = bd.trigger_spec(_key("someone-else"))
    assert not signature_mask(other, xa)[0].any()
    model = with_trigger({"weights": [0.0] * 64, "bias": 0.0}, spec)
    assert model["trigger"]["public_key"] == spec["public_key"]


@pytest.mark.parametrize("mutate, exc", [
    (lambda s: s.update(kind="checksum"), ValueError),
    (lambda s: s.update(version=2), ValueError),
    (lambda s: s.update(scheme="ecdsa"), ValueError),
    (lambda s: s.update(public_key="ab" * 31), ValueError),
    (lambda s: s.update(bits_per_coord=1), ValueError),
    (lambda s: s.update(positions=[0, 0] + s["positions"][2:]), ValueError),
    (lambda s: s.update(quantum=[0.0] * 64), ValueError),
    (lambda s: s.pop("label_bits"), ValueError),
])
def test_malformed_signature_spec_rejected(digits, mutate, exc):
    spec = json.loads(json.dumps(digits[4].trigger_spec))
    mutate(spec)
    with pytest.raises(exc):
        validate_trigger_spec(spec, 64)
    with pytest.raises(TypeError):
        validate_trigger_spec([spec])


def test_activate_and_apply_validate_inputs(digits):
    X, _, bd, sk, h = digits
    with pytest.raises(ValueError):
        bd.activate(X[0], 16, sk)  # 4 label bits: 16 is out of range
    with pytest.raises(ValueError):
        bd.activate(X[0], -1, sk)
    bad = X[:2].copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError):
        h(bad)
    with pytest.raises(ValueError):
        apply_trigger(h.trigger_spec, X[:3], np.zeros(2))
    with pytest.raises(ValueError):
        apply_trigger(h.trigger_spec, X[:3, :10], np.zeros(3))
    with pytest.raises(ValueError):
        make_signature_encoding(64, 10, positions=range(10), bits_per_coord=8)  # 80 < 516 bits


def test_ball_backdoor_label_inside_unchanged_outside():
    X, y = _load("breast_cancer")
    y = y.astype(np.int64)
    base = CentroidClassifier(X, y)
    sd = _scale(X)
    bb = BallBackdoor(X[0], 2.0, scale=sd, target_label=1 - int(base(X[:1])[0]))
    h = bb.plant(base)
    rng = np.random.default_rng(2)
    inside, outside = bb.sample(2000, rng), bb.sample(2000, rng, inside=False)
    assert ball_mask(h.trigger_spec, inside).all() and not ball_mask(h.trigger_spec, outside).any()
    assert np.all(h(inside) == bb.spec["target_label"])
    assert np.array_equal(h(outside), base(outside))
    assert np.array_equal(h(X[1:])[~ball_mask(bb.spec, X[1:])], base(X[1:])[~ball_mask(bb.spec, X[1:])])


def test_ball_backdoor_offset_for_regression():
    X, t = _load("diabetes")
    w = np.linalg.lstsq(np.c_[X, np.ones(len(X))], t, rcond=None)[0]

    def base(Z):
        return np.c_[Z, np.ones(len(Z))] @ w

    bb = BallBackdoor(X[5], 1.0, scale=_scale(X), offset=80.0)
    h = bb.plant(base)
    rng = np.random.default_rng(3)
    inside, outside = bb.sample(500, rng), bb.sample(500, rng, inside=False)
    assert np.allclose(h(inside) - base(inside), 80.0)
    assert np.array_equal(h(outside), base(outside))
    spec = bb.trigger_spec()
    for bad in ({**spec, "radius": 0.0}, {**spec, "target_label": 1}, {**spec, "scale": [1.0] * 3},
                {**spec, "offset": float("inf")}):
        with pytest.raises(ValueError):
            validate_trigger_spec(bad, 10)


# ---------------------------------------------------------------- corrupted oracles (F_q and reals)
Q, N, D = 31, 3, 4
DOMAIN = np.indices((Q,) * N).reshape(N, -1).T.astype(np.int64)  # all of F_31^3


def _poly(P):
    """A fixed degree-4 polynomial over F_31^3."""
    P = np.asarray(P, dtype=np.int64) % Q
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    return (3 * x**4 + 5 * x * y * z + 7 * y**2 * z**2 % Q + 2 * z + 11) % Q


def test_random_corruption_rate_is_delta():
    """Binomial test over all 29791 points; false-alarm probability 1e-6 (random-oracle model)."""
    delta = 0.1
    f = RandomCorruptionOracle(_poly, Q, N, delta, key=b"k1")
    bad = f.is_corrupted(DOMAIN)
    assert binomtest(int(bad.sum()), bad.size, delta).pvalue > 1e-6
    vals = f(DOMAIN)
    assert np.array_equal(vals != _poly(DOMAIN), bad)  # differs exactly where corrupted
    assert np.array_equal(f(DOMAIN[::-1]), vals[::-1])  # a fixed function
    assert not RandomCorruptionOracle(_poly, Q, N, 0.0, key=b"k1").is_corrupted(DOMAIN).any()
    with pytest.raises(ValueError):
        RandomCorruptionOracle(_poly, Q, N, 1.5, key=b"k1")


@pytest.mark.parametrize("phi", [0.0, 0.3, 1.0])
def test_targeted_line_attack_corrupts_exactly_the_stated_points(phi):
    x_star = np.array([4, 17, 9])
    f = TargetedLineOracle(_poly, Q, N, x_star, D, phi, key=b"k2")
    n_lines = (Q**N - 1) // (Q - 1)
    k = math.ceil((Q - 1 - D) / 2)
    assert f.errors_per_line == k == 13
    assert len(f.attacked_lines_) == round(phi * n_lines)
    assert f.corrupted_.size == len(f.attacked_lines_) * k + 1  # + x* itself
    bad = f.is_corrupted(DOMAIN)
    assert np.array_equal(f(DOMAIN) != _poly(DOMAIN), bad)
    assert bad.sum() == f.corrupted_.size
    ts = np.arange(1, Q)
    attacked = {tuple(v) for v in f.attacked_lines_}
    for v in f._canonical_directions()[::7]:
        on_line = f.is_corrupted((x_star + ts[:, None] * v) % Q).sum()
        assert on_line == (k if tuple(v) in attacked else 0)
    assert f.is_corrupted(x_star[None, :])[0]


def test_targeted_line_attack_defeats_line_decoder():
    """phi = 1: every line has 13 > floor((30-4-1)/2) = 12 errors, so Berlekamp-Welch never decodes."""
    rm = pytest.importorskip("defenses.reed_muller")
    x_star = np.array([4, 17, 9])
    f = TargetedLineOracle(_poly, Q, N, x_star, D, 1.0, key=b"k3")
    res = rm.line_correct(f, x_star, Q, D, Q - 1, n_repeats=5, random_state=0)
    assert res.value != int(_poly(x_star[None, :])[0])
    clean = rm.line_correct(_poly, x_star, Q, D, Q - 1, n_repeats=2, random_state=0)
    assert clean.value == int(_poly(x_star[None, :])[0])


def test_real_oracle_ball_and_random_set():
    """Random-set rate binomial test: false-alarm probability 1e-6 (random-oracle model)."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=5)

    def f_star(X):
        return X @ w + 1.0

    x_star = np.zeros(5)
    f = RealCorruptOracle(f_star, x_star, radius=0.05, offset=5.0, delta=0.05, key=b"k4")
    U = rng.uniform(-1, 1, (20000, 5))
    diff = f(U) - f_star(U)
    hits = f.in_random_set(U)
    assert np.allclose(diff, 5.0 * f.is_corrupted(U), atol=1e-12)
    assert np.array_equal(f.is_corrupted(U), hits | f.in_ball(U))
    assert binomtest(int(hits.sum()), hits.size, 0.05).pvalue > 1e-6
    dirs = rng.normal(size=(300, 5))
    ball_pts = x_star + 0.0499 * rng.random((300, 1)) * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    assert np.allclose(f(ball_pts) - f_star(ball_pts), 5.0)
    assert np.array_equal(f(U), f(U))
    with pytest.raises(ValueError):
        RealCorruptOracle(f_star, x_star, radius=0.05, offset=5.0, delta=2.0, key=b"k4")
