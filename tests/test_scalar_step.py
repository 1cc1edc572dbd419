"""The scalar step (protocol/scalar_step.py, the audit's replay for small linear and logistic batches) equals
the exact reference bit for bit, raises the reference's overflow errors, and its leaf is merkle.state_leaf."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from test_training_step import _cfg, step_cases

from protocol import scalar_step
from protocol.errors import FixedPointOverflow
from protocol.merkle import state_leaf
from protocol.training import step_exact


def _scalar(theta, X, Y, cfg, dtype=np.int64, t=1):
    rows = np.column_stack([np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)])
    return scalar_step.ScalarStepper(rows, cfg).step(list(theta), list(range(len(Y))), t)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(case=step_cases())
def test_scalar_step_equals_the_reference(case):
    cfg, theta, X, Y = case
    if cfg.model == "softmax":
        with pytest.raises(ValueError):
            scalar_step.ScalarStepper(np.zeros((1, 2), dtype=np.int64), cfg)
        return
    try:
        want = step_exact(theta, X, Y, cfg, 7)
    except FixedPointOverflow as e:
        with pytest.raises(FixedPointOverflow) as got:
            _scalar(theta, X, Y, cfg, t=7)
        assert str(got.value) == str(e) and got.value.step == 7
        return
    assert _scalar(theta, X, Y, cfg, t=7) == want
    if max(abs(v) for v in [*Y, *(x for row in X for x in row)]) < 2**31:
        assert _scalar(theta, X, Y, cfg, np.int32, t=7) == want  # the audit's compact rows


def test_batch_indices_pick_the_rows():
    cfg = _cfg(model="linear", batch_size=2, frac_bits=8, weight_bits=32, lr_num=1, lr_shift=2)
    rng = np.random.default_rng(3)
    rows = rng.integers(-2000, 2000, size=(50, 4))
    theta = [5, -7, 11, 3]
    for idx in ([3, 41], [41, 3], [0, 49]):
        want = step_exact(theta, rows[idx, :-1].tolist(), rows[idx, -1].tolist(), cfg, 2)
        assert scalar_step.ScalarStepper(rows, cfg).step(theta, idx, 2) == want


@pytest.mark.parametrize("K", [24, 32, 62])
def test_overflow_at_the_bound_is_the_reference_error(K):
    cfg = _cfg(model="linear", batch_size=1, frac_bits=16, weight_bits=K, lr_num=1, lr_shift=0)
    bound = 2 ** (K - 1)
    for y in (bound - 1, -bound):
        assert _scalar([0, 0], [[0]], [y], cfg) == [0, y]
    for y in (bound, -bound - 1):
        with pytest.raises(FixedPointOverflow) as ei:
            _scalar([0, 0], [[0]], [y], cfg, t=3)
        assert ei.value.value == y and ei.value.bound == bound and ei.value.step == 3
    h = 2 ** (K - 2)
    with pytest.raises(FixedPointOverflow, match="prediction"):
        _scalar([h, h], [[1 << 16]], [0], cfg)


def test_leaf_is_the_state_leaf():
    for theta in ([0], [1, -1, 2**62, -(2**63)], list(range(-40, 41))):
        fmt = struct.Struct(f"<{len(theta)}q")
        for t in (0, 1, 2**40):
            assert scalar_step.leaf_of(t, theta, fmt) == state_leaf(t, np.asarray(theta, dtype=np.int64))


def test_applies_only_to_small_linear_and_logistic_batches():
    assert scalar_step.applies(_cfg(model="linear", batch_size=1), 8)
    assert scalar_step.applies(_cfg(model="logistic", batch_size=4), 15)
    assert not scalar_step.applies(_cfg(model="logistic", batch_size=32), 30)
    assert not scalar_step.applies(_cfg(model="softmax", batch_size=1, num_classes=3), 4)


@pytest.mark.parametrize(("model", "B"), [("linear", 1), ("logistic", 4)])
def test_replay_names_the_same_step_with_the_same_evidence_on_both_paths(monkeypatch, model, B):
    """verifier.checks.replay takes the scalar path for small batches: an honest session replays, a changed
    state is named at its step with the evidence the numpy path gives."""
    from helpers import seed_context

    from protocol.errors import StepMismatch
    from protocol.training import Schedule, train_honest
    from verifier import checks

    cfg = _cfg(model=model, batch_size=B, frac_bits=16, weight_bits=32, lr_num=30, lr_shift=10, epochs=2)
    rng = np.random.default_rng(5)
    n, d = 40, 3
    X = rng.integers(-(1 << 17), 1 << 17, size=(n, d))
    Y = rng.integers(-(1 << 16), 1 << 16, size=n) if model == "linear" else rng.integers(0, 2, size=n) << 16
    rows = np.column_stack([X, Y]).astype(np.int32)
    ctx = seed_context()
    states = [theta for _, _, theta, _ in train_honest(X, Y, cfg, ctx)]
    leaves = [state_leaf(t, th) for t, th in enumerate(states)]
    model_params = [int(v) for v in states[-1]]
    sched = Schedule(ctx, cfg, n, d)
    assert scalar_step.applies(cfg, d)
    checks.replay(rows, leaves, model_params, sched, cfg)  # honest: passes on the scalar path
    bad = list(leaves)
    bad[7] = bytes(32)
    results = []
    for scalar in (True, False):
        monkeypatch.setattr(scalar_step, "applies", lambda *_a, s=scalar: s)
        with pytest.raises(StepMismatch) as ei:
            checks.replay(rows, bad, model_params, Schedule(ctx, cfg, n, d), cfg)
        results.append((ei.value.step, str(ei.value), ei.value.evidence))
    assert results[0] == results[1] and results[0][0] == 7
