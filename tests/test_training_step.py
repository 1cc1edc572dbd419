"""The training step (protocol/training.py): the numpy fast path equals the exact reference bit for bit,
the reference equals the written specification, overflow is an error at the documented bound, the schedule,
and a golden run pinned in tests/vectors/training.json."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from helpers import load_vectors, seed_context
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FixedPointOverflow, InputError
from protocol.fixedpoint import exp_table, sigmoid_exact, sigmoid_table
from protocol.merkle import MerkleTree, model_hash, state_leaf
from protocol.prg import SeedContext, shuffle
from protocol.training import FastStepper, Schedule, TrainConfig, step_exact, train_honest


def spec_step(theta, X, Y, cfg: TrainConfig) -> list[int]:
    """docs/PROTOCOL.md section 7 written with exact rationals and floor (independent of step_exact)."""
    if cfg.model == "softmax":
        return spec_softmax_step(theta, X, Y, cfg)
    f, B = cfg.frac_bits, cfg.batch_size
    lr = Fraction(cfg.lr_num, 2**cfg.lr_shift)
    w, b = [int(v) for v in theta[:-1]], int(theta[-1])
    tab = sigmoid_table(f)
    r = []
    for row, y in zip(X, Y):
        z = floor(Fraction(sum(int(x) * wk for x, wk in zip(row, w)) + b * 2**f, 2**f))
        if cfg.model == "logistic":
            u = min(max(z, -8 * 2**f), 8 * 2**f) + 8 * 2**f
            i, rem = divmod(u, 2 ** (f - 4))
            hi = tab[min(i + 1, 256)]
            z = tab[i] + floor(Fraction((hi - tab[i]) * rem, 2 ** (f - 4)))
        r.append(z - int(y))
    G = [sum(ri * int(row[j]) for ri, row in zip(r, X)) + cfg.l2_num * w[j] * B for j in range(len(w))]
    G.append(sum(r) * 2**f)
    # theta' = floor(theta - eta * G / (2^f * B))
    return [floor(t - lr * g / (2**f * B)) for t, g in zip([*w, b], G)]


def spec_exp(v: int, f: int) -> int:
    """exp_q(v), v <= 0: E[i] + floor((E[i+1] - E[i]) * rem / 2^(f-4)), u = min(-v, 16 * 2^f)."""
    tab = exp_table(f)
    i, rem = divmod(min(-v, 16 * 2**f), 2 ** (f - 4))
    hi = tab[min(i + 1, 256)]
    return tab[i] + floor(Fraction((hi - tab[i]) * rem, 2 ** (f - 4)))


def spec_softmax_step(theta, X, Y, cfg: TrainConfig) -> list[int]:
    f, B, C = cfg.frac_bits, cfg.batch_size, cfg.num_classes
    lr = Fraction(cfg.lr_num, 2**cfg.lr_shift)
    d1 = len(theta) // C
    W = [[int(v) for v in theta[c * d1:(c + 1) * d1]] for c in range(C)]
    new = []
    R = []
    for row, y in zip(X, Y):
        z = [floor(Fraction(sum(int(x) * wk for x, wk in zip(row, wc[:-1])) + wc[-1] * 2**f, 2**f)) for wc in W]
        e = [spec_exp(zc - max(z), f) for zc in z]
        R.append([floor(Fraction(ec * 2**f, sum(e))) - (2**f if int(y) == c else 0) for c, ec in enumerate(e)])
    for c in range(C):
        G = [sum(r[c] * int(x[j]) for r, x in zip(R, X)) + cfg.l2_num * W[c][j] * B for j in range(d1 - 1)]
        G.append(sum(r[c] for r in R) * 2**f)
        new += [floor(t - lr * g / (2**f * B)) for t, g in zip(W[c], G)]
    return new


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**kw).validate()


def _fast(theta, X, Y, cfg):
    X, Y = np.asarray(X, dtype=np.int64), np.asarray(Y, dtype=np.int64)
    fs = FastStepper(X, Y, cfg)
    new, r = fs.step(np.asarray(theta, dtype=np.int64), np.arange(len(Y)), 1)
    return new.tolist(), r.tolist(), fs


@st.composite
def step_cases(draw):
    model = draw(st.sampled_from(["linear", "logistic", "softmax"]))
    C = draw(st.integers(2, 5)) if model == "softmax" else 0
    f = draw(st.sampled_from([4, 8, 12, 16, 20]))
    K = draw(st.sampled_from([max(f + 12, 24), 32, 48]))
    B = draw(st.sampled_from([1, 2, 4, 8, 16]))
    d = draw(st.integers(1, 5))
    cfg = _cfg(model=model, batch_size=B, frac_bits=f, weight_bits=K, lr_num=draw(st.integers(1, 2**12)),
               lr_shift=draw(st.integers(0, 16)), l2_num=draw(st.sampled_from([0, 1, 2**f // 100, 2**f])),
               num_classes=C)
    xs = st.integers(-(4 << f), 4 << f)
    X = draw(st.lists(st.lists(xs, min_size=d, max_size=d), min_size=B, max_size=B))
    ys = {"logistic": st.sampled_from([0, 1 << f]), "softmax": st.integers(-1, C)}.get(
        model, st.integers(-(4 << f), 4 << f))
    Y = draw(st.lists(ys, min_size=B, max_size=B))
    P = max(C, 1) * (d + 1)
    theta = draw(st.lists(st.integers(-(2 << f), 2 << f), min_size=P, max_size=P))
    return cfg, theta, X, Y


def _agree(cfg, theta, X, Y):
    """Either both raise FixedPointOverflow or both give the same integers (and the spec's)."""
    try:
        want = step_exact(theta, X, Y, cfg, 1)
    except FixedPointOverflow:
        with pytest.raises(FixedPointOverflow):
            _fast(theta, X, Y, cfg)
        return None
    got, _, fs = _fast(theta, X, Y, cfg)
    assert got == want
    assert want == spec_step(theta, X, Y, cfg)
    rows = np.column_stack([np.asarray(X, dtype=np.int64), np.asarray(Y, dtype=np.int64)])  # the audit's form
    lean = FastStepper(rows[:, :-1], rows[:, -1], cfg, lean=True)  # views, no float copy
    assert lean.X.base is rows and lean.Xf is None
    assert lean.step(np.asarray(theta, dtype=np.int64), np.arange(len(Y)), 1)[0].tolist() == want
    return fs


@settings(max_examples=250, deadline=None, derandomize=True)
@given(case=step_cases())
def test_fast_step_equals_exact_and_spec(case):
    _agree(*case)


def test_residuals_returned_by_fast_path():
    cfg = _cfg(model="logistic", batch_size=4, frac_bits=16)
    X = [[65536, -3], [-70000, 5], [0, 0], [1, 1]]
    Y = [65536, 0, 0, 65536]
    theta = [-40000, 12345, -7]
    _, r, _ = _fast(theta, X, Y, cfg)
    w, b = theta[:-1], theta[-1]
    z = [(sum(x * wk for x, wk in zip(row, w)) + (b << 16)) >> 16 for row in X]
    assert r == [sigmoid_exact(zi, 16) - y for zi, y in zip(z, Y)]


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_huge_weights_force_the_exact_fallback(model):
    """(d*xmax + 2^f)*tmax >= 2^53: the float product would not be exact, so step_exact is used."""
    cfg = _cfg(model=model, batch_size=4, frac_bits=16, weight_bits=62, lr_num=1, lr_shift=20)
    X = [[65536, -65536], [3, 7], [-131072, 5], [1, 1]]
    Y = [0, 65536, 0, 65536]
    theta = [2**40 + 3, -(2**40) - 5, 2**39 + 1]
    fs = _agree(cfg, theta, X, Y)
    assert fs is not None and fs.exact_fallbacks == 1
    # residuals of the fallback path are the exact ones too
    _, r, _ = _fast(theta, X, Y, cfg)
    assert len(r) == 4


def test_large_gradient_forces_the_exact_fallback():
    """B * rmax * xmax >= 2^53 (linear, large predictions): the gradient product falls back."""
    cfg = _cfg(model="linear", batch_size=16, frac_bits=16, weight_bits=62, lr_num=1, lr_shift=30)
    X = [[2**22 + i] for i in range(16)]
    Y = [-(2**40)] * 16
    theta = [2**20, 2**25]
    fs = _agree(cfg, theta, X, Y)
    assert fs is not None and fs.exact_fallbacks == 1


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_python_int_update_path(model):
    """tmax * 2^U + lr_num * gmax >= 2^62: the update is computed on Python ints, still equal."""
    cfg = _cfg(model=model, batch_size=32, frac_bits=16, weight_bits=40, lr_num=3, lr_shift=30, l2_num=655)
    U = cfg.update_shift
    rng = np.random.default_rng(11)
    X = rng.integers(-(4 << 16), 4 << 16, size=(32, 3)).tolist()
    Y = (rng.integers(0, 2, size=32) << 16).tolist() if model == "logistic" else rng.integers(-99999, 99999, 32).tolist()
    theta = [5000, -6000, 7000, 2**12]
    assert (max(abs(t) for t in theta) << U) >= 2**62  # the condition for the Python-int path
    fs = _agree(cfg, theta, X, Y)
    assert fs is not None and fs.exact_fallbacks == 0


# -- overflow at the documented bound ---------------------------------------------------------------------

@pytest.mark.parametrize("K", [24, 32, 62])
def test_parameter_overflow_at_the_bound(K):
    """B=1, d=1, X=0, lr = 1, linear, no L2: the new bias is exactly y, so y sweeps the bound.
    Allowed: -2^(K-1) <= theta' < 2^(K-1) (docs/PROTOCOL.md section 7)."""
    cfg = _cfg(model="linear", batch_size=1, frac_bits=16, weight_bits=K, lr_num=1, lr_shift=0)
    bound = 2 ** (K - 1)
    # the fast path falls back to exact arithmetic where int64 would not suffice (K = 62)
    steppers = [lambda y: step_exact([0, 0], [[0]], [y], cfg, 3), lambda y: _fast([0, 0], [[0]], [y], cfg)[0]]
    for y in (bound - 1, -bound):
        for run in steppers:
            assert run(y) == [0, y]
    for y in (bound, -bound - 1):
        for run in steppers:
            with pytest.raises(FixedPointOverflow) as ei:
                run(y)
            assert ei.value.value == y and ei.value.bound == bound


@pytest.mark.parametrize("K", [24, 32, 62])
def test_prediction_overflow_at_the_bound(K):
    """X = 1.0, w + b sweeps the bound: z = w + b exactly."""
    f = 16
    cfg = _cfg(model="linear", batch_size=1, frac_bits=f, weight_bits=K, lr_num=1, lr_shift=30)
    h = 2 ** (K - 2)
    ok = [[h, h - 1], [-h, -h]]  # z = 2^(K-1) - 1 and z = -2^(K-1)
    bad = [[h, h], [-h, -h - 1]]  # z = 2^(K-1) and z = -2^(K-1) - 1
    for theta in ok:
        step_exact(theta, [[1 << f]], [0], cfg, 9)  # no overflow (the parameters may still move)
        _agree(cfg, theta, [[1 << f]], [0])
    for theta in bad:
        with pytest.raises(FixedPointOverflow, match="prediction") as ei:
            step_exact(theta, [[1 << f]], [0], cfg, 9)
        assert ei.value.step == 9
        with pytest.raises(FixedPointOverflow, match="prediction"):
            _fast(theta, [[1 << f]], [0], cfg)


def test_rounding_is_floor_not_truncation():
    """f=4, lr=1/2, B=1, X=0: the new bias is floor(y/2); for negative odd y truncation would differ."""
    cfg = _cfg(model="linear", batch_size=1, frac_bits=4, weight_bits=20, lr_num=1, lr_shift=1)
    for y, want in ((-1, -1), (-3, -2), (3, 1), (-4, -2)):
        assert step_exact([0, 0], [[0]], [y], cfg)[1] == want
        assert _fast([0, 0], [[0]], [y], cfg)[0][1] == want
    # prediction a = -1 at scale 2^(2f): z = floor(-1/2^f) = -1 (truncation would give 0)
    cfg = _cfg(model="linear", batch_size=1, frac_bits=4, weight_bits=20, lr_num=1, lr_shift=0)
    _, r, _ = _fast([-1, 0], [[1]], [0], cfg)
    assert r == [-1]


@pytest.mark.parametrize(("model", "B", "l2_num", "w"), [("logistic", 2048, 2**16, 2**36), ("linear", 8, 2**30, 2**30)])
def test_l2_term_does_not_wrap(model, B, l2_num, w):
    cfg = _cfg(model=model, batch_size=B, frac_bits=16, weight_bits=62, lr_num=1, lr_shift=20 if B > 8 else 30,
               l2_num=l2_num)
    X, Y = [[1]] * B, [0] * B
    assert l2_num * B * w >= 2**63  # the L2 term alone exceeds int64
    assert _fast([w, 0], X, Y, cfg)[0] == step_exact([w, 0], X, Y, cfg)


def test_zero_features_with_extreme_targets():
    cfg = _cfg(model="linear", batch_size=4, frac_bits=16, weight_bits=62, lr_num=1, lr_shift=30)
    X, Y = [[0]] * 4, [-(2**61)] * 4  # in the K-bit data range [-2^61, 2^61)
    want = step_exact([0, 0], X, Y, cfg)
    assert _fast([0, 0], X, Y, cfg)[0] == want


def test_fast_stepper_rejects_unrepresentable_data():
    cfg = _cfg(model="linear", batch_size=1, weight_bits=62)
    with pytest.raises(InputError, match="too large"):
        FastStepper(np.array([[2**53]]), np.array([0]), cfg)


# -- golden runs ------------------------------------------------------------------------------------------

def _golden_ctx(v) -> SeedContext:
    return SeedContext(*(bytes.fromhex(v[k]) for k in ("session_id", "data_root", "training_seed")))


@pytest.mark.parametrize("run_index", [0, 1, 2])
def test_golden_training_run(run_index):
    """Runs: logistic, linear with L2, softmax (3 classes) with L2."""
    v = load_vectors("training")
    run = v["runs"][run_index]
    cfg = TrainConfig.from_dict(run["config"])
    X, Y = np.array(run["X"], dtype=np.int64), np.array(run["Y"], dtype=np.int64)
    states = [theta.tolist() for _, _, theta, _ in train_honest(X, Y, cfg, _golden_ctx(v))]
    assert len(states) - 1 == run["num_steps"] == cfg.num_steps(len(X))
    assert states[0] == run["initial_state"] and states[1] == run["state_1"]
    assert states[-1] == run["final_state"]
    assert model_hash(states[-1]).hex() == run["model_hash"]
    leaves = [state_leaf(t, np.array(s)) for t, s in enumerate(states)]
    assert MerkleTree(leaves).root.hex() == run["state_root"]
    sched = Schedule(_golden_ctx(v), cfg, len(X), X.shape[1])
    assert [sched.batch(t).tolist() for t in range(1, sched.steps_per_epoch + 1)] == run["batches_epoch_0"]
    # the golden run also replays with the exact reference and with the specification
    theta = states[0]
    for t in range(1, len(states)):
        idx = sched.batch(t)
        theta = step_exact(theta, X[idx].tolist(), Y[idx].tolist(), cfg, t)
        assert theta == states[t] == spec_step(states[t - 1], X[idx].tolist(), Y[idx].tolist(), cfg)


# -- the schedule -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "B", "epochs"), [(37, 8, 3), (64, 16, 2), (5, 1, 2), (33, 32, 4)])
def test_schedule_batches(n, B, epochs):
    ctx = seed_context(1, 2, 3)
    cfg = _cfg(batch_size=B, epochs=epochs)
    sched = Schedule(ctx, cfg, n, 3)
    S = n // B
    assert sched.steps_per_epoch == S and sched.num_steps == epochs * S == cfg.num_steps(n)
    for e in range(epochs):
        steps = range(e * S + 1, (e + 1) * S + 1)
        batches = [sched.batch(t) for t in steps]
        assert all(len(b) == B and sched.epoch_of(t) == e for b, t in zip(batches, steps))
        used = np.concatenate(batches)
        assert len(set(used.tolist())) == S * B  # disjoint within the epoch
        perm = shuffle(ctx, e, n)
        assert used.tolist() == perm[:S * B].tolist()  # the last n mod B rows of the permutation are dropped
        assert set(perm[S * B:].tolist()).isdisjoint(used.tolist())
    for bad in (0, -1, sched.num_steps + 1):
        with pytest.raises(ValueError, match="outside 1.."):
            sched.batch(bad)


def test_schedule_rejects_too_little_data():
    with pytest.raises(InputError, match="larger than the data"):
        Schedule(seed_context(), _cfg(batch_size=8), 7, 2)


def test_schedule_initial_state_from_seed():
    cfg = _cfg(batch_size=4, frac_bits=16)
    a = Schedule(seed_context(1, 2, 3), cfg, 10, 4).initial_state()
    assert a.shape == (5,) and np.abs(a).max() <= 2**10
    assert np.array_equal(a, Schedule(seed_context(1, 2, 3), cfg, 10, 4).initial_state())
    assert not np.array_equal(a, Schedule(seed_context(1, 2, 4), cfg, 10, 4).initial_state())


@pytest.mark.parametrize(("field", "value"), [
    ("model", "svm"), ("epochs", 0), ("batch_size", 3), ("batch_size", 0), ("frac_bits", 3), ("frac_bits", 31),
    ("weight_bits", 17), ("weight_bits", 63), ("lr_num", 0), ("lr_shift", 31), ("l2_num", -1),
    ("checkpoint_interval", 0),
])
def test_config_validation(field, value):
    with pytest.raises(InputError):
        TrainConfig(**{"frac_bits": 16, field: value}).validate()


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(InputError, match="unknown training-config fields"):
        TrainConfig.from_dict({"model": "linear", "momentum": 0.9})


# -- softmax specifics ------------------------------------------------------------------------------------

def test_softmax_config_encoding_and_validation():
    """softmax appends u32(num_classes) to the config encoding; the other models are unchanged (PROTOCOL.md s.5)."""
    from protocol import encoding as enc
    from protocol.convert import config_from_proto, config_to_proto

    base = TrainConfig(model="logistic").encode()
    soft = _cfg(model="softmax", num_classes=7)
    assert soft.encode() == enc.text("softmax") + base[len(enc.text("logistic")):] + enc.u32(7)
    assert soft.outputs == 7 and soft.num_params(4) == 35 and TrainConfig().num_params(4) == 5
    assert config_from_proto(config_to_proto(soft)) == soft
    assert TrainConfig.from_dict(soft.to_dict()) == soft
    for bad in ({"model": "softmax", "num_classes": 1}, {"model": "softmax"}, {"model": "logistic", "num_classes": 2},
                {"model": "softmax", "num_classes": 1025}):
        with pytest.raises(InputError, match="softmax|num_classes"):
            TrainConfig(**bad).validate()


def test_softmax_huge_weights_force_the_exact_fallback():
    cfg = _cfg(model="softmax", num_classes=3, batch_size=4, frac_bits=16, weight_bits=62, lr_num=1, lr_shift=20)
    X = [[65536, -65536], [3, 7], [-131072, 5], [1, 1]]
    Y = [0, 2, 1, 2]
    theta = [2**40 + 3, -(2**40) - 5, 2**39 + 1, 7, -8, 9, 2**41, 0, -(2**38)]
    fs = _agree(cfg, theta, X, Y)
    assert fs is not None and fs.exact_fallbacks == 1
    assert np.asarray(_fast(theta, X, Y, cfg)[1]).shape == (4, 3)


def test_softmax_probabilities_are_floor_normalised():
    """Two equal logits: e = 2^f each, p = floor(2^f * 2^f / 2^(f+1)) = 2^(f-1); the rows of p sum to at most
    2^f and lose less than C units to the floor."""
    from protocol.training import softmax_probs_exact

    assert softmax_probs_exact([5, 5], 16) == [32768, 32768]
    p = softmax_probs_exact([0, -65536, 3 * 65536], 16)
    assert 65536 - 3 < sum(p) <= 65536 and p[2] == max(p)
    cfg = _cfg(model="softmax", num_classes=3, batch_size=2, frac_bits=16)
    _, r, _ = _fast([0] * 9, [[1, 2], [3, 4]], [0, 2], cfg)
    third = (65536 << 16) // (3 * 65536)
    assert r == [[third - 65536, third, third], [third, third, third - 65536]]
