"""Honest overflows in two-party training are reported as overflows, at plain training's step, and never as a
deviation (docs/MPC.md sections 6-9).

A prediction that leaves the K-bit range makes the parties' truncation and range-check values large. If a
bound used by the protocol did not cover them (e.g. a range check moved after the next truncation, whose
opened value must then stay within its bound for any prediction layer 1 can output), honest parties would
abort with "a share was altered", blaming each other for the data: a false accusation, and a wrong word in a
verdict. Here one row of large features lands in some batch (a random step: the batch order comes from the
coin toss); the prediction of that step overflows in plain training; both parties must stop with MpcOverflow
at the same step.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_mpc_engine import data, run_pair

from mpc.errors import MpcAbort, MpcOverflow
from protocol.errors import FixedPointOverflow
from protocol.training import TrainConfig, train_honest

CFG = TrainConfig(model="linear", epochs=2, batch_size=8, lr_num=20, lr_shift=10, frac_bits=16, weight_bits=32)


def _plain_overflow_step(X, Y, ctx) -> tuple[int | None, str]:
    try:
        for _ in train_honest(X, Y, CFG, ctx):
            pass
    except FixedPointOverflow as e:
        return e.step, str(e)
    return None, ""


@pytest.mark.parametrize("seed, scale, rows", [(21, 2**30, 1), (22, 2**29, 1), (23, 2**31 - 1, 1), (24, 2**28, 1),
                                               (25, 2**31 - 1, 32), (26, -2**31, 32)])
def test_a_prediction_overflow_is_an_overflow_at_plain_trainings_step(seed, scale, rows):
    """``rows`` rows of extreme (in-range) features, the others small; the extreme rows' predictions overflow
    once the weights have grown (a later step), or at once when every row is extreme (largest |z|)."""
    X, Y = data(32, 3, seed=seed, scale=2**14)
    rng = np.random.default_rng(seed)
    big = rng.permutation(32)[:rows]
    X[big] = np.abs(scale) * np.where(rng.normal(size=(rows, 3)) > 0, 1, -1)
    X[X >= 2**31] = 2**31 - 1
    n0 = 16
    res, _ = run_pair(X, Y, n0, CFG)
    for i in (0, 1):
        assert not isinstance(res[i], MpcAbort), f"party {i} blamed the other for an honest overflow: {res[i]}"
    if not isinstance(res[0], MpcOverflow):  # that row's prediction happened to stay in range: must be exact
        assert _plain_overflow_step(X, Y, res[0].ctx)[0] is None
        return
    assert isinstance(res[1], MpcOverflow), res[1]
    step, why = _plain_overflow_step(X, Y, res[0].ctx)
    assert step is not None and res[0].step == res[1].step == step, (res[0].step, res[1].step, step, why)
