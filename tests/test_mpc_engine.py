"""The two-party engine in process: exactness against protocol.training, MACs, sacrifice, laws."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from mpc import field
from mpc.cheating import get_hooks
from mpc.errors import MpcAbort, MpcOverflow
from mpc.field import ELEMENT_BYTES, PRIMES, P, decode, encode, from_ints, to_ints
from mpc.party import QueueChannel
from mpc.plan import Plan
from mpc.preprocessing import Generator, LocalPreprocessing
from mpc.secure_training import run_party
from protocol.errors import FixedPointOverflow, InputError
from protocol.prg import SeedContext
from protocol.training import TrainConfig, train_honest


def run_pair(X, Y, n0, cfg, *, reveal="both", hooks1=None, hooks0=None, tamper=None, seed=b"\x01" * 32):
    """Both parties in threads over an in-process channel, with an in-process dealer."""
    sys.setswitchinterval(1e-4)
    plan = Plan.build(n0, X.shape[0] - n0, X.shape[1], cfg)
    gen = Generator(seed, plan, tamper=tamper)
    c0, c1 = QueueChannel.pair(timeout=60)
    sid = os.urandom(16)
    res = {}

    def go(i, ch):
        rows = slice(0, n0) if i == 0 else slice(n0, None)
        try:
            res[i] = run_party(i, ch, LocalPreprocessing(gen, i), plan, X[rows], Y[rows], sid, reveal=reveal,
                               hooks=hooks1 if i == 1 else hooks0)
        except (MpcAbort, MpcOverflow) as e:
            res[i] = e

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in ((0, c0), (1, c1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return res, sid


def plain(X, Y, cfg, sid, outcome):
    ctx = SeedContext(sid, outcome.data_root, outcome.training_seed)
    theta = None
    for _, _, theta, _ in train_honest(X, Y, cfg, ctx):
        pass
    return [int(v) for v in theta]


def data(n, d, seed=0, scale=2**18):
    rng = np.random.default_rng(seed)
    X = rng.integers(-scale, scale, size=(n, d))
    Y = X @ rng.integers(-3, 4, size=d) // 4 + rng.integers(-2**14, 2**14, size=n)
    return X.astype(np.int64), Y.astype(np.int64)


CFG = TrainConfig(model="linear", epochs=2, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16, weight_bits=32)


@pytest.mark.parametrize("n0", [20, 0, 40])
def test_secure_training_equals_plain_training_on_the_union(n0):
    X, Y = data(40, 3, seed=n0)
    res, sid = run_pair(X, Y, n0, CFG)
    assert not isinstance(res[0], Exception), res[0]
    assert res[0].theta == res[1].theta == plain(X, Y, CFG, sid, res[0])
    assert res[0].steps == CFG.num_steps(40)


def test_exact_with_l2_other_shifts_and_reveal_to_client_only():
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=3, lr_shift=6, l2_num=700, frac_bits=12,
                      weight_bits=24)
    X, Y = data(24, 2, seed=5, scale=2**13)
    res, sid = run_pair(X, Y, 10, cfg, reveal="client")
    assert res[1].theta is None
    assert res[0].theta == plain(X, Y, cfg, sid, res[0])


def test_overflow_is_reported_at_the_same_step_as_plain_training():
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4, lr_num=2**20, lr_shift=10, frac_bits=16, weight_bits=24)
    X, Y = data(16, 2, seed=2)
    res, _ = run_pair(X, Y, 8, cfg)
    assert isinstance(res[0], MpcOverflow) and isinstance(res[1], MpcOverflow)
    assert "overflowed" in str(res[0])
    with pytest.raises(FixedPointOverflow) as plain_error:
        for _ in train_honest(X, Y, cfg, res[0].ctx):
            pass
    assert res[0].step == plain_error.value.step


def test_exact_when_layer_1s_range_check_cannot_be_deferred():
    cfg = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16, weight_bits=48)
    assert not Plan.build(20, 20, 3, cfg).defer_range1  # layer 2's bound for an unchecked z would not fit N
    X, Y = data(40, 3, seed=8)
    res, sid = run_pair(X, Y, 20, cfg)
    assert not isinstance(res[0], Exception), res[0]
    assert res[0].theta == res[1].theta == plain(X, Y, cfg, sid, res[0])


def test_a_deferred_prediction_overflow_is_reported_at_its_step_before_anything_is_output():
    """Layer 1's range check finishes during layer 2 and its w1 is decided in the next step's first round: the
    overflow must still name plain training's step and kind (a prediction), and no model is output."""
    cfg = TrainConfig(model="linear", epochs=2, batch_size=4, lr_num=1024, lr_shift=10, frac_bits=16, weight_bits=24)
    assert Plan.build(8, 8, 2, cfg).defer_range1
    X, Y = data(16, 2, seed=2, scale=2**18)
    kinds = set()
    for _ in range(3):  # the schedule comes from the coin toss: prediction or parameter overflows, both checked
        res, _ = run_pair(X, Y, 8, cfg)
        assert isinstance(res[0], MpcOverflow) and isinstance(res[1], MpcOverflow), res
        with pytest.raises(FixedPointOverflow) as plain_error:
            for _ in train_honest(X, Y, cfg, res[0].ctx):
                pass
        kind = str(plain_error.value).split()[0]
        assert res[0].step == res[1].step == plain_error.value.step
        assert f"a {kind} left" in str(res[0]) and f"a {kind} left" in str(res[1])
        kinds.add(kind)
    assert "prediction" in kinds


@pytest.mark.parametrize("name", ["bad-share", "bad-triple", "bad-truncation", "skip-step", "early-output"])
def test_every_trainer_deviation_makes_the_client_abort(name):
    X, Y = data(32, 2, seed=3)
    res, _ = run_pair(X, Y, 16, CFG, hooks1=get_hooks(name))
    assert isinstance(res[0], MpcAbort), res[0]


@pytest.mark.parametrize("name", ["bad-share", "skip-step"])
def test_a_cheating_client_makes_the_trainer_abort(name):
    X, Y = data(32, 2, seed=6)
    res, _ = run_pair(X, Y, 16, CFG, hooks0=get_hooks(name))
    assert isinstance(res[1], MpcAbort), res[1]


def test_a_dealer_with_a_wrong_triple_is_caught_by_the_sacrifice():
    X, Y = data(32, 2, seed=4)
    res, _ = run_pair(X, Y, 16, CFG, tamper="bad-triple")
    assert isinstance(res[0], MpcAbort) and "sacrifice" in str(res[0])
    assert isinstance(res[1], MpcAbort)


def test_field_encoding_round_trips_and_refuses_unreduced_values():
    vals = [0, 1, P - 1, 2**200, P // 3] + [int.from_bytes(os.urandom(32), "little") % P for _ in range(200)]
    assert list(to_ints(decode(encode(from_ints(vals)), len(vals)))) == vals
    for i, p in enumerate(PRIMES):  # residue i equal to p_i: not reduced
        with pytest.raises(MpcAbort, match="not reduced"):
            decode((p << (50 * i)).to_bytes(32, "little"))
    with pytest.raises(MpcAbort, match="not reduced"):  # a bit above the 250 bits of the five residues
        decode((1 << 250).to_bytes(32, "little"))
    assert encode(from_ints([P - 1])) == sum((p - 1) << (50 * j) for j, p in enumerate(PRIMES)).to_bytes(32, "little")
    with pytest.raises(MpcAbort):
        decode(b"\x00" * (ELEMENT_BYTES - 1))


def test_field_arithmetic_matches_python_integers_mod_n():
    """The residue (CRT) arithmetic of mpc.field against Python big integers mod N, including the extremes
    p_i - 1 where the float64 quotient estimate is least precise."""
    rng = np.random.default_rng(5)
    xs = [int.from_bytes(rng.bytes(32), "little") % P for _ in range(3000)] + [0, 1, P - 1]
    ys = [int.from_bytes(rng.bytes(32), "little") % P for _ in range(len(xs) - 3)] + [P - 1, 0, P - 1]
    a, b = from_ints(xs), from_ints(ys)
    assert list(to_ints(field.mul(a, b))) == [x * y % P for x, y in zip(xs, ys)]
    assert list(to_ints(field.add(a, b))) == [(x + y) % P for x, y in zip(xs, ys)]
    assert list(to_ints(field.sub(a, b))) == [(x - y) % P for x, y in zip(xs, ys)]
    assert list(to_ints(field.neg(a))) == [-x % P for x in xs]
    big = rng.integers(0, 2**63, size=(2, 400_000, len(PRIMES)), dtype=np.uint64) % np.array(PRIMES, dtype=np.uint64)
    r = field.mul(big[0], big[1])  # residues directly: the quotient estimate is off by one in about 1 case in 10^5
    ref = (big[0].astype(object) * big[1].astype(object)) % np.array(PRIMES, dtype=object)
    assert np.array_equal(r.astype(object), ref)
    top = np.array([PRIMES], dtype=np.uint64) - 1
    assert to_ints(field.mul(top, top))[0] == to_ints(top)[0] ** 2 % P
    assert to_ints(field.fsum(np.concatenate([a] * 5), 0)) == 5 * sum(xs) % P  # > 2^13 terms: chunked
    c = rng.integers(-1, 2, size=len(xs))
    assert list(to_ints(field.mul_small(a, c))) == [x * int(k) % P for x, k in zip(xs, c)]
    w = rng.integers(0, 2**63, size=(50, 3), dtype=np.uint64) * 2 + 1
    ints = [sum(int(v) << (64 * k) for k, v in enumerate(r)) for r in w]
    assert list(to_ints(field.words_to_elements(w))) == [v % P for v in ints]
    assert list(field.words_below(w, ints[7])) == [v < ints[7] for v in ints]


def test_plan_refuses_logistic_and_configs_beyond_the_field():
    with pytest.raises(InputError, match="linear"):
        Plan.build(10, 10, 2, TrainConfig(model="logistic", batch_size=4))
    big = TrainConfig(model="linear", batch_size=1024, lr_num=2**30, lr_shift=30, frac_bits=30, weight_bits=62)
    with pytest.raises(InputError, match="field"):
        Plan.build(2000, 0, 50, big)
    with pytest.raises(InputError, match="two-party limit"):
        Plan.build(150_000, 50_000, 10, CFG)
    for layer in Plan.build(10, 10, 10, CFG).layers():
        assert layer.kk + 40 + 2 <= P.bit_length() - 1  # N > 2^(k + kappa + 2)


def test_uniform_elements_reject_residues_not_below_their_prime_in_order():
    """docs/MPC.md section 2: 64-bit words, top 14 bits cleared; a residue >= p_j is replaced by the next words of
    the stream, rejected residues in row-major order."""

    class Stream:
        def __init__(self, words):
            self.data, self.pos = np.array(words, dtype="<u8").tobytes(), 0

        def read(self, n):
            self.pos += n
            return self.data[self.pos - n:self.pos]

    first = [PRIMES[0], 5, 6, 7, (1 << 63) + 8] + [9, 10, 11, 12, (1 << 50) - 1]
    got = field.uniform(Stream(first + [PRIMES[0] + (1 << 60), 3, 4]), 2)
    # round 1 replaces (0, 0) by p_0 + 2^60 -> p_0 (rejected again) and (1, 4) by 3; round 2 replaces (0, 0) by 4
    assert got.tolist() == [[4, 5, 6, 7, 8], [9, 10, 11, 12, 3]]


def test_low_bits_of_opened_truncation_values_both_paths():
    from mpc.truncation import _low_bits

    c = np.array([int.from_bytes(os.urandom(25), "little") for _ in range(40)] + [0, (1 << 200) - 1], dtype=object)
    for n in (1, 16, 63, 64, 65, 130):  # up to 64 bits through uint64, beyond through Python ints
        assert _low_bits(c, n).tolist() == [[(int(v) >> i) & 1 for i in range(n)] for v in c]
