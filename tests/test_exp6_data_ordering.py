"""Experiment 6's order check on real machinery: the honest order replays, a reordered tail of m steps
fails exactly at its m steps, and the full replay names the first of them."""

from __future__ import annotations

import numpy as np

from bench.experiments import exp6_data_ordering as e6
from protocol.prg import SeedContext
from protocol.training import Schedule


def test_reordered_steps_fail_replay_and_honest_order_passes():
    X, Y, Xte, yte, group = e6.load()
    sched = Schedule(SeedContext(b"s" * 16, b"r" * 32, b"t" * 32), e6.CFG, *X.shape)
    T = sched.num_steps
    honest = e6.run_order(X, Y, sched, 0)
    assert e6.bad_steps(X, Y, sched, honest) == [] and e6.full_replay_step(X, Y, sched, honest) is None
    obj = e6.Objective("raise", Xte, yte, group, 0)
    attacked = e6.run_order(X, Y, sched, 4, obj, "low-high")
    assert all(
        np.array_equal(a, b) for a, b in zip(attacked[:T - 3], honest[:T - 3]))
    assert e6.bad_steps(X, Y, sched, attacked) == [T - 3, T - 2, T - 1, T]
    assert e6.full_replay_step(X, Y, sched, attacked) == T - 3
    assert obj.value(attacked[-1]) > obj.value(honest[-1])
