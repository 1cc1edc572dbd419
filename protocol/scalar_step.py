"""The training step (``protocol.training.step_exact``) for small batches of linear and logistic regression,
on Python ints without numpy's per-call overhead: about ten times faster than ``FastStepper`` for a batch of
one row (numpy pays a few microseconds per call on arrays of nine numbers), the same integers.

The arithmetic is the reference's, line for line (docs/PROTOCOL.md section 3): ``z = (sum_k x_k w_k +
(b << f)) >> f`` range-checked to K bits, ``r = p - y`` (``p = z`` or ``sigmoid_exact(z)``), ``g_k = sum_i
r_i x_ik + l2_num * B * w_k``, ``g_b = (sum_i r_i) << f``, ``theta' = ((theta << U) - lr_num * g) >> U``
range-checked. Any value out of range hands the step to ``step_exact`` itself, which raises its own error, so
the errors are the reference's too. Tested equal to ``step_exact`` and ``FastStepper``
(tests/test_scalar_step.py).
"""

from __future__ import annotations

import hashlib
import struct
from operator import mul

import numpy as np

from .fixedpoint import sigmoid_exact
from .merkle import _STATE_PREFIX
from .training import TrainConfig, step_exact

MAX_BATCH_CELLS = 64  # B * (d + 1) up to which the scalar step beats numpy's (measured: bench/bench_audit.py)


def applies(cfg: TrainConfig, num_features: int) -> bool:
    return cfg.model in ("linear", "logistic") and cfg.batch_size * (num_features + 1) <= MAX_BATCH_CELLS


class ScalarStepper:
    """``step(theta, idx, t)``: theta as a list of ints, ``idx`` the batch's row indices as a list of ints;
    ``rows`` the (n, d + 1) rows (features then target, int32 or int64), read one row at a time."""

    def __init__(self, rows: np.ndarray, cfg: TrainConfig):
        if cfg.model not in ("linear", "logistic"):
            raise ValueError("the scalar step is for linear and logistic regression")
        self.rows, self.cfg = rows, cfg
        self.f, self.U, self.lr = cfg.frac_bits, cfg.update_shift, cfg.lr_num
        self.l2B = cfg.l2_num * cfg.batch_size
        self.half = 1 << (cfg.weight_bits - 1)
        self.logistic = cfg.model == "logistic"

    def step(self, theta: list[int], idx: list[int], t: int) -> list[int]:
        f, half = self.f, self.half
        w, bf = theta[:-1], theta[-1] << f
        batch = [self.rows[i].tolist() for i in idx]
        r = []
        for row in batch:
            z = (sum(map(mul, row, w)) + bf) >> f  # map stops at len(w): the target (last) is not a feature
            if not -half <= z < half:
                return self._reference(theta, batch, t)  # raises the reference's overflow error
            r.append((sigmoid_exact(z, f) if self.logistic else z) - row[-1])
        if len(r) == 1:
            r0 = r[0]
            grads = [r0 * x for x in batch[0]]  # the last (r0 * y) is replaced below
        else:
            grads = [sum(map(mul, r, col)) for col in zip(*batch)]
        if self.l2B:
            grads = [g + self.l2B * wk for g, wk in zip(grads, w)]  # stops at len(w)
        grads[len(w):] = [sum(r) << f]
        U, lr = self.U, self.lr
        new = [((v << U) - lr * g) >> U for v, g in zip(theta, grads, strict=True)]
        if not (-half <= min(new) and max(new) < half):
            return self._reference(theta, batch, t)
        return new

    def _reference(self, theta, batch, t):
        return step_exact(theta, [row[:-1] for row in batch], [row[-1] for row in batch], self.cfg, t)


def leaf_of(t: int, theta: list[int], fmt: struct.Struct) -> bytes:
    """``merkle.state_leaf(t, theta)`` for a list of ints, ``fmt`` = ``struct.Struct(f"<{len(theta)}q")``
    (packed directly: no array per step; tested equal)."""
    return hashlib.sha256(_STATE_PREFIX + t.to_bytes(8, "big") + fmt.pack(*theta)).digest()
