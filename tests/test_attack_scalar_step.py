"""Attacks on the audit's second implementation of the training step (protocol/scalar_step.py, issue #13) and on
the full replay that uses it (verifier/checks.py replay): values at the int32/int64 and K-bit boundaries, B = 1,
negative floor division, l2 and learning rates at their caps, overflow refusals, int32 rows; and a cheating
trainer whose signed states continue past the step at which the honest training overflows."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from helpers import seed_context
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import scalar_step
from protocol.errors import FixedPointOverflow, VerificationError
from protocol.merkle import state_leaf
from protocol.training import FastStepper, Schedule, TrainConfig, step_exact
from verifier import checks

I32 = (-(2**31), 2**31 - 1)


@st.composite
def edge_cases(draw):
    model = draw(st.sampled_from(["linear", "logistic"]))
    f = draw(st.sampled_from([4, 8, 16, 30]))
    K = draw(st.sampled_from([f + 2, 32, 48, 62]))
    B = draw(st.sampled_from([1, 2, 4, 8, 16]))
    d = draw(st.integers(1, max(1, 64 // B - 1)))
    cfg = TrainConfig(model=model, epochs=1, batch_size=B, frac_bits=f, weight_bits=K,
                      lr_num=draw(st.sampled_from([1, 3, 2**31 - 1])), lr_shift=draw(st.sampled_from([0, 7, 30])),
                      l2_num=draw(st.sampled_from([0, 1, 2**31 - 1]))).validate()
    half = 1 << (K - 1)
    edge_t = st.sampled_from([-half, half - 1, -1, 0, 1, -(half // 2), (half - 1) // 3])
    theta = draw(st.lists(st.one_of(edge_t, st.integers(-half, half - 1)), min_size=d + 1, max_size=d + 1))
    edge_x = st.sampled_from([I32[0], I32[1], -1, 0, 1, -128, 127, -32768, 32767, 1 << f, -(1 << f)])
    rows = draw(st.lists(st.lists(st.one_of(edge_x, st.integers(*I32)), min_size=d + 1, max_size=d + 1),
                         min_size=B, max_size=B))
    return cfg, theta, rows


def _reference(theta, rows, cfg):
    try:
        return step_exact(list(theta), [r[:-1] for r in rows], [r[-1] for r in rows], cfg, 7)
    except FixedPointOverflow as e:
        return ("overflow", str(e))


@settings(max_examples=600, deadline=None, derandomize=True)
@given(case=edge_cases(), dtype=st.sampled_from([np.int32, np.int64]))
def test_scalar_step_equals_step_exact_at_the_edges(case, dtype):
    """Held: the scalar step gives the reference's integers or the reference's overflow error (same message),
    on int32 or int64 rows, including values at -2^31 / 2^31-1 and states at -2^(K-1) / 2^(K-1)-1."""
    cfg, theta, rows = case
    arr = np.array(rows, dtype=dtype)
    ss = scalar_step.ScalarStepper(arr, cfg)
    want = _reference(theta, rows, cfg)
    try:
        got = ss.step(list(theta), list(range(len(rows))), 7)
    except FixedPointOverflow as e:
        got = ("overflow", str(e))
    assert got == want
    if isinstance(want, list):
        fmt = struct.Struct(f"<{len(want)}q")
        assert scalar_step.leaf_of(7, want, fmt) == state_leaf(7, np.array(want, dtype=np.int64))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(case=edge_cases())
def test_fast_stepper_on_int32_rows_equals_step_exact_at_the_edges(case):
    """Held: the audit's other replay path (FastStepper lean on int32 rows, as csv_chunks stores them) gives
    the same integers or an overflow error at the same boundaries (max|X| computed on Python ints: -2^31 has
    no int32 absolute value)."""
    cfg, theta, rows = case
    arr = np.array(rows, dtype=np.int32)
    fs = FastStepper(arr[:, :-1], arr[:, -1], cfg, lean=True)
    want = _reference(theta, rows, cfg)
    try:
        got = fs.step(np.array(theta, dtype=np.int64), np.arange(len(rows)), 7)[0].tolist()
    except FixedPointOverflow:
        got = "overflow"
    assert got == (want if isinstance(want, list) else "overflow")


def _overflowing_session(model: str, B: int, d: int = 2):
    """A session whose honest training overflows at some step t > 1 (the smallest power-of-two learning rate
    that makes it diverge): the honest states 0..t-1, and the overflow step."""
    rng = np.random.default_rng(5)
    n = 16 * B
    X = rng.integers(-(1 << 10), 1 << 10, (n, d))
    Y = (rng.integers(0, 2, n) << 8) if model == "logistic" else rng.integers(-(1 << 9), 1 << 9, n)
    rows = np.column_stack([X, Y]).astype(np.int64)
    for lr_num in (1 << k for k in range(12)):
        cfg = TrainConfig(model=model, epochs=4, batch_size=B, frac_bits=8, weight_bits=20, lr_num=lr_num,
                          lr_shift=0).validate()
        sched = Schedule(seed_context(), cfg, n, d)
        theta = [int(v) for v in sched.initial_state()]
        states = [theta]
        for t in range(1, sched.num_steps + 1):
            idx = sched.batch(t)
            try:
                theta = step_exact(theta, rows[idx, :-1].tolist(), rows[idx, -1].tolist(), cfg, t)
            except FixedPointOverflow:
                if t > 1:
                    return cfg, rows, sched, states, t
                break
            states.append(theta)
    raise AssertionError("no learning rate made the honest training overflow after step 1")


@pytest.mark.parametrize(("model", "B"), [("linear", 1), ("linear", 16), ("logistic", 1), ("logistic", 32)])
def test_states_signed_past_an_honest_overflow_are_a_rejection_at_that_step(model, B):
    """A cheating trainer commits (and signs) states for every step although the honest training overflows at
    step t (an honest trainer stops there). The full replay must reject at step t (the trainer's claim of T
    honest steps is false), not end in an error that reads as the user's fault (exit 2). Both replay paths
    (the scalar step for small batches, FastStepper otherwise)."""
    cfg, rows, sched, states, t = _overflowing_session(model, B)
    assert t > 1
    fake = states + [states[-1]] * (sched.num_steps + 1 - len(states))  # anything after step t-1
    leaves = [state_leaf(i, np.array(s, dtype=np.int64)) for i, s in enumerate(fake)]
    with pytest.raises(VerificationError) as e:
        checks.replay(rows, leaves, fake[-1], sched, cfg)
    assert e.value.step == t
    assert "overflow" in str(e.value)
