"""The honest training step, defined once: the trainer runs it, the verifier replays it.

Symbols (docs/PROTOCOL.md, "The training step"): ``f`` frac_bits, ``K`` weight_bits, ``B`` batch size
(a power of two, ``L = log2 B``), learning rate ``eta = lr_num / 2^lr_shift``, L2 ``lambda = l2_num / 2^f``,
``U = f + lr_shift + L``. Data ``X[i]`` (d ints, scale 2^f) and ``Y[i]`` (scale 2^f), parameters
``theta = (w_0..w_{d-1}, b)`` (scale 2^f)::

    a_i  = sum_k X[i][k] * w_k + (b << f)            # exact, scale 2^(2f)
    z_i  = a_i >> f                                  # floor; -2^(K-1) <= z_i < 2^(K-1) else overflow
    r_i  = z_i - Y[i]                                # logistic: sigmoid_q(z_i) - Y[i]
    G_j  = sum_i r_i * X[i][j] + l2_num * w_j * B    # j < d
    G_b  = (sum_i r_i) << f
    theta_j' = ((theta_j << U) - lr_num * G_j) >> U  # floor; same K-bit range else overflow

Softmax (multinomial logistic regression, ``C = num_classes`` classes, ``Y[i]`` the class index):
theta holds ``C`` rows ``(w_c0..w_c,d-1, b_c)``, flattened row-major (class 0 first). Per row the logits
``z_ic`` are computed as above, then with ``m_i = max_c z_ic`` and ``exp_q`` the integer exponential of
``protocol.fixedpoint``::

    e_ic = exp_q(z_ic - m_i)                          # 0 <= e_ic <= 2^f, e = 2^f at the maximum
    p_ic = (e_ic << f) // sum_c e_ic                  # floor
    r_ic = p_ic - [Y[i] == c] * 2^f
    G_cj = sum_i r_ic * X[i][j] + l2_num * w_cj * B ;  G_cb = (sum_i r_ic) << f

and the same update per parameter.

``step_exact`` is the reference on Python integers. ``step_fast`` computes the same integers with float64
BLAS products, used only when a bound proves every partial sum is an integer below 2^53 (then the float
result is exact whatever the summation order), and int64 element-wise arithmetic when a bound proves it
cannot overflow; otherwise it falls back to ``step_exact``. Both are tested equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import encoding as enc
from .errors import FixedPointOverflow, InputError
from .fixedpoint import check_range, exp_exact, exp_q, in_range, sigmoid_exact, sigmoid_q
from .prg import SeedContext, initial_parameters, shuffle

MODELS = ("linear", "logistic", "softmax")
MAX_CLASSES = 1024
_EXACT_F64 = 2**53
_SAFE_I64 = 2**62


@dataclass(frozen=True)
class TrainConfig:
    model: str = "logistic"
    epochs: int = 5
    batch_size: int = 32
    lr_num: int = 102  # 0.1 at lr_shift 10
    lr_shift: int = 10
    l2_num: int = 0
    frac_bits: int = 16
    weight_bits: int = 32
    checkpoint_interval: int = 100
    num_classes: int = 0  # softmax: C >= 2 classes; 0 for the single-output models (linear, logistic)

    def validate(self) -> TrainConfig:
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not 1 <= self.epochs <= 10_000:
            raise InputError(f"epochs must be in 1..10000, got {self.epochs}")
        b = self.batch_size
        if b < 1 or b & (b - 1) or b > 2**20:
            raise InputError(f"batch size must be a power of two between 1 and 2^20, got {b}")
        if not 4 <= self.frac_bits <= 30:
            raise InputError(f"frac_bits must be in 4..30, got {self.frac_bits}")
        if not self.frac_bits + 2 <= self.weight_bits <= 62:
            raise InputError(f"weight_bits must be in frac_bits+2..62, got {self.weight_bits}")
        if not 0 <= self.lr_shift <= 30 or not 1 <= self.lr_num < 2**31:
            raise InputError("learning rate must be lr_num / 2^lr_shift with 1 <= lr_num < 2^31, lr_shift <= 30 "
                             "(a learning rate that rounds to 0 at this resolution is refused)")
        if not 0 <= self.l2_num < 2**31:
            raise InputError("l2 must be non-negative and below 2^15")
        if not 1 <= self.checkpoint_interval <= 2**32 - 1:
            raise InputError("checkpoint interval must be >= 1")
        if self.model == "softmax" and not 2 <= self.num_classes <= MAX_CLASSES:
            raise InputError(f"softmax needs 2..{MAX_CLASSES} classes, got {self.num_classes}")
        if self.model != "softmax" and self.num_classes != 0:
            raise InputError(f"num_classes is for the softmax model only (0 for {self.model})")
        return self

    @property
    def outputs(self) -> int:
        """Rows of the parameter matrix: C for softmax, 1 otherwise."""
        return self.num_classes if self.model == "softmax" else 1

    def num_params(self, num_features: int) -> int:
        """Length of the flattened state theta: ``outputs * (d + 1)``."""
        return self.outputs * (num_features + 1)

    @property
    def log2_batch(self) -> int:
        return self.batch_size.bit_length() - 1

    @property
    def update_shift(self) -> int:
        return self.frac_bits + self.lr_shift + self.log2_batch

    @property
    def lr(self) -> float:
        return self.lr_num / (1 << self.lr_shift)

    @property
    def l2(self) -> float:
        return self.l2_num / (1 << self.frac_bits)

    def steps_per_epoch(self, num_rows: int) -> int:
        return num_rows // self.batch_size

    def num_steps(self, num_rows: int) -> int:
        return self.epochs * self.steps_per_epoch(num_rows)

    def encode(self) -> bytes:
        """Canonical encoding (signed inside the session statement)."""
        return b"".join([
            enc.text(self.model), enc.u32(self.epochs), enc.u32(self.batch_size), enc.u64(self.lr_num),
            enc.u8(self.lr_shift), enc.u64(self.l2_num), enc.u8(self.frac_bits), enc.u8(self.weight_bits),
            enc.u32(self.checkpoint_interval),
        ] + ([enc.u32(self.num_classes)] if self.model == "softmax" else []))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown training-config fields: {sorted(unknown)}")
        return cls(**d).validate()


class Schedule:
    """Initial parameters and the batch of every step, derived only from the seed context."""

    def __init__(self, ctx: SeedContext, cfg: TrainConfig, num_rows: int, num_features: int):
        if num_rows < cfg.batch_size:
            raise InputError(f"batch size {cfg.batch_size} is larger than the data ({num_rows} rows)")
        self.ctx, self.cfg, self.n, self.d = ctx, cfg, num_rows, num_features
        self.steps_per_epoch = cfg.steps_per_epoch(num_rows)
        self.num_steps = cfg.epochs * self.steps_per_epoch
        self._perms: dict[int, np.ndarray] = {}

    def initial_state(self) -> np.ndarray:
        return initial_parameters(self.ctx, self.cfg.num_params(self.d), self.cfg.frac_bits)

    def epoch_of(self, step: int) -> int:
        return (step - 1) // self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's permutation; the last few are cached (bounded memory), so random access by step
        (a spot check) does not recompute a shuffle per step when steps are visited epoch by epoch."""
        perm = self._perms.get(epoch)
        if perm is None:
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))
            perm = self._perms[epoch] = shuffle(self.ctx, epoch, self.n)
        return perm

    def batch(self, step: int) -> np.ndarray:
        """Row indices of step ``step`` (1-based): slice ``(step-1) mod S`` of its epoch's permutation;
        the ``n mod B`` rows left at the end of each permutation are not used in that epoch."""
        if not 1 <= step <= self.num_steps:
            raise ValueError(f"step {step} outside 1..{self.num_steps}")
        epoch = self.epoch_of(step)
        s = (step - 1) % self.steps_per_epoch
        b = self.cfg.batch_size
        return self.permutation(epoch)[s * b:(s + 1) * b]


def step_exact(theta, X, Y, cfg: TrainConfig, step: int | None = None) -> list[int]:
    """Reference step on Python ints. ``theta``: outputs*(d+1) ints; ``X``: B rows of d ints; ``Y``: B ints."""
    if cfg.model == "softmax":
        return _softmax_exact(theta, X, Y, cfg, step)
    f, B = cfg.frac_bits, cfg.batch_size
    theta = [int(v) for v in theta]
    w, b = theta[:-1], theta[-1]
    d = len(w)
    r = []
    for row, y in zip(X, Y):
        z = _logit_exact(row, w, b, cfg, step)
        p = z if cfg.model == "linear" else sigmoid_exact(z, f)
        r.append(p - int(y))
    grads = [sum(ri * int(row[j]) for ri, row in zip(r, X)) + cfg.l2_num * w[j] * B for j in range(d)]
    grads.append(sum(r) << f)
    return _update_exact(theta, grads, cfg, step)


def _logit_exact(row, w, b: int, cfg: TrainConfig, step) -> int:
    """``z = (sum_k x_k w_k + (b << f)) >> f`` with the K-bit range check."""
    z = (sum(int(x) * wk for x, wk in zip(row, w)) + (b << cfg.frac_bits)) >> cfg.frac_bits
    K = cfg.weight_bits
    if not in_range(z, K):
        raise FixedPointOverflow(f"prediction reached {z}, outside [-2^{K - 1}, 2^{K - 1}) at step {step}: the "
                                 f"fixed-point format overflowed", step=step, value=z, bound=1 << (K - 1))
    return z


def _update_exact(theta: list[int], grads: list[int], cfg: TrainConfig, step) -> list[int]:
    U, K = cfg.update_shift, cfg.weight_bits
    new = [((t << U) - cfg.lr_num * g) >> U for t, g in zip(theta, grads)]
    for v in new:
        if not in_range(v, K):
            raise FixedPointOverflow(f"parameter reached {v}, outside [-2^{K - 1}, 2^{K - 1}) at step {step}: lower "
                                     f"the learning rate", step=step, value=v, bound=1 << (K - 1))
    return new


def softmax_probs_exact(z: list[int], f: int) -> list[int]:
    """``p_c = (exp_q(z_c - max z) << f) // sum_c exp_q(z_c - max z)`` (scale 2^f, floor)."""
    m = max(z)
    e = [exp_exact(zc - m, f) for zc in z]
    s = sum(e)
    return [(ec << f) // s for ec in e]


def _softmax_exact(theta, X, Y, cfg: TrainConfig, step) -> list[int]:
    f, B, C = cfg.frac_bits, cfg.batch_size, cfg.num_classes
    theta = [int(v) for v in theta]
    d1 = len(theta) // C
    rows = [theta[c * d1:(c + 1) * d1] for c in range(C)]
    d = d1 - 1
    R = []  # R[i][c]
    for row, y in zip(X, Y):
        z = [_logit_exact(row, wc[:-1], wc[-1], cfg, step) for wc in rows]
        p = softmax_probs_exact(z, f)
        R.append([pc - ((1 << f) if int(y) == c else 0) for c, pc in enumerate(p)])
    grads = []
    for c in range(C):
        w = rows[c][:-1]
        grads += [sum(r[c] * int(x[j]) for r, x in zip(R, X)) + cfg.l2_num * w[j] * B for j in range(d)]
        grads.append(sum(r[c] for r in R) << f)
    return _update_exact(theta, grads, cfg, step)


def _int_array(a, lean: bool) -> np.ndarray:
    """Signed integers in their own width (contiguous unless ``lean``); anything else as int64."""
    a = np.asarray(a)
    if a.dtype.kind == "i" and a.dtype.isnative:
        return a if lean else np.ascontiguousarray(a)
    return (np.asarray if lean else np.ascontiguousarray)(a, dtype=np.int64)


class FastStepper:
    """``step_exact`` computed with numpy; exact by the bounds in the module docstring.

    Bounds used (``xmax = max|X|``, ``tmax = max|theta|``, ``d`` features, ``B`` batch):
    ``|a_i| <= d*xmax*tmax + tmax*2^f < 2^53`` makes the first product exact in float64;
    ``|r_i| <= rmax`` (linear: ``max|z| + max|Y|``; logistic: ``2^f + max|Y|``) and
    ``B*rmax*xmax < 2^53`` make the gradient product exact; ``tmax*2^U + lr_num*gmax < 2^62`` keeps the
    update in int64. A step that fails a bound is computed by ``step_exact`` instead (same integers)."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, lean: bool = False):
        """``lean``: keep X and Y as given (e.g. views into the rows) and convert each batch to float64 when it
        is used, instead of holding contiguous and float64 copies of the data (the audit's bounded memory:
        the data once, at a few microseconds per step)."""
        self.X = _int_array(X, lean)  # narrow integers (the upload's value width) are kept as they are:
        self.Y = _int_array(Y, lean)  # every use below widens them (float64 products, Python ints)
        self.cfg = cfg
        self.Xf = None if lean else self.X.astype(np.float64)
        self.xmax = max(int(self.X.max()), -int(self.X.min())) if self.X.size else 0
        self.ymax = max(int(self.Y.max()), -int(self.Y.min())) if self.Y.size else 0
        self.Yf = None if lean else self.Y.astype(np.float64)  # exact when ymax < 2^52 (else the exact path)
        if self.xmax >= _EXACT_F64:
            raise InputError("data values too large for exact arithmetic")
        self.d = self.X.shape[1]
        self.exact_fallbacks = 0

    def step(self, theta: np.ndarray, idx: np.ndarray, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (theta', residuals r) for the batch ``idx`` (r: (B,), or (B, C) for softmax)."""
        if self.cfg.model == "softmax":
            return self._softmax_step(theta, idx, step)
        cfg = self.cfg
        f, B = cfg.frac_bits, cfg.batch_size
        tmax = int(np.abs(theta).max())
        if (self.d * self.xmax + (1 << f)) * tmax >= _EXACT_F64 or self.ymax >= _EXACT_F64 // 2:
            return self._exact(theta, idx, step)
        Xb = self.Xf[idx] if self.Xf is not None else self.X[idx].astype(np.float64)
        thf = theta.astype(np.float64)
        # every partial sum is an integer below 2^53 (bound above), and scaling by 2^-f and floor are exact
        zf = np.floor((Xb @ thf[:-1] + thf[-1] * float(1 << f)) * (1.0 / (1 << f)))
        zmax = int(np.abs(zf).max())
        if zmax >= 1 << (cfg.weight_bits - 1):
            check_range(zf.astype(np.int64), cfg.weight_bits, "prediction", step)
        if cfg.model == "linear":
            r = zf - (self.Yf[idx] if self.Yf is not None else self.Y[idx].astype(np.float64))
            rmax = zmax + self.ymax
        else:
            r = (sigmoid_q(zf.astype(np.int64), f) - self.Y[idx]).astype(np.float64)
            rmax = (1 << f) + self.ymax
        if (rmax * max(self.xmax, 1) * B >= _EXACT_F64 or (rmax * B) << f >= _SAFE_I64
                or cfg.l2_num * B * tmax >= _SAFE_I64):
            return self._exact(theta, idx, step)
        G = np.empty(theta.shape[0], dtype=np.int64)
        G[:-1] = (r @ Xb).astype(np.int64)
        if cfg.l2_num:
            G[:-1] += (cfg.l2_num * B) * theta[:-1]
        G[-1] = int(r.sum()) << f
        return self._update(theta, G, tmax, rmax, step), r

    def _update(self, theta: np.ndarray, G: np.ndarray, tmax: int, rmax: int, step) -> np.ndarray:
        """``((theta << U) - lr_num * G) >> U`` in int64 when ``tmax*2^U + lr_num*gmax < 2^62``, else on
        Python ints; range-checked."""
        cfg = self.cfg
        U, B = cfg.update_shift, cfg.batch_size
        gmax = max(rmax * self.xmax * B + cfg.l2_num * B * tmax, (rmax * B) << cfg.frac_bits)
        if (tmax << U) + cfg.lr_num * gmax >= _SAFE_I64:
            new = np.array([((int(t) << U) - cfg.lr_num * int(g)) >> U for t, g in zip(theta, G)], dtype=object)
        else:
            new = ((theta << U) - cfg.lr_num * G) >> U
        check_range(new, cfg.weight_bits, "parameter", step)
        return new.astype(np.int64)

    def _softmax_step(self, theta: np.ndarray, idx: np.ndarray, step):
        """Softmax: the same bounds with ``rmax = 2^f`` (``|p - onehot| <= 2^f``); exp_q and the floor
        division are int64-exact (every intermediate below 2^(2f+1) <= 2^61)."""
        cfg = self.cfg
        f, B, C = cfg.frac_bits, cfg.batch_size, cfg.num_classes
        tmax = int(np.abs(theta).max())
        rmax = 1 << f
        if ((self.d * self.xmax + (1 << f)) * tmax >= _EXACT_F64 or rmax * max(self.xmax, 1) * B >= _EXACT_F64
                or (rmax * B) << f >= _SAFE_I64 or cfg.l2_num * B * tmax >= _SAFE_I64):
            return self._exact(theta, idx, step)
        Th = theta.reshape(C, self.d + 1)
        Xb = self.Xf[idx] if self.Xf is not None else self.X[idx].astype(np.float64)
        Thf = Th.astype(np.float64)
        zf = np.floor((Xb @ Thf[:, :-1].T + Thf[:, -1] * float(1 << f)) * (1.0 / (1 << f)))  # (B, C)
        if int(np.abs(zf).max()) >= 1 << (cfg.weight_bits - 1):
            check_range(zf.astype(np.int64).ravel(), cfg.weight_bits, "prediction", step)
        r = self._softmax_residuals(zf.astype(np.int64), idx)
        G = np.empty((C, self.d + 1), dtype=np.int64)
        G[:, :-1] = (r.T.astype(np.float64) @ Xb).astype(np.int64)
        if cfg.l2_num:
            G[:, :-1] += (cfg.l2_num * B) * Th[:, :-1]
        G[:, -1] = r.sum(axis=0) << f
        return self._update(theta, G.ravel(), tmax, rmax, step), r

    def _softmax_residuals(self, z: np.ndarray, idx: np.ndarray) -> np.ndarray:
        f = self.cfg.frac_bits
        e = exp_q(z - z.max(axis=1, keepdims=True), f)
        p = (e << f) // e.sum(axis=1, keepdims=True)
        onehot = self.Y[idx][:, None] == np.arange(self.cfg.num_classes)[None, :]
        return p - (onehot.astype(np.int64) << f)

    def _exact(self, theta, idx, step):
        self.exact_fallbacks += 1
        Xb, Yb = self.X[idx].tolist(), self.Y[idx].tolist()
        new = np.array(step_exact(theta.tolist(), Xb, Yb, self.cfg, step), dtype=np.int64)
        return new, self.residuals(theta, idx)

    def residuals(self, theta, idx) -> np.ndarray:
        f = self.cfg.frac_bits
        if self.cfg.model == "softmax":
            C = self.cfg.num_classes
            rows = [[int(v) for v in r] for r in np.asarray(theta).reshape(C, -1)]
            z = [[(sum(int(x) * wk for x, wk in zip(row, wc[:-1])) + (wc[-1] << f)) >> f for wc in rows]
                 for row in self.X[idx].tolist()]
            return self._softmax_residuals(np.array(z, dtype=np.int64), idx)
        w, b = [int(v) for v in theta[:-1]], int(theta[-1])
        z = [(sum(int(x) * wk for x, wk in zip(row, w)) + (b << f)) >> f for row in self.X[idx].tolist()]
        z = np.array(z, dtype=np.int64)
        p = z if self.cfg.model == "linear" else sigmoid_q(z, f)
        return p - self.Y[idx]


def batch_loss(r: np.ndarray, Yb: np.ndarray, cfg: TrainConfig) -> float:
    """Display-only loss of a batch from its residuals (float; never committed)."""
    scale = float(1 << cfg.frac_bits)
    if cfg.model == "softmax":
        onehot = Yb[:, None] == np.arange(cfg.num_classes)[None, :]
        p = np.clip((r + onehot * scale) / scale, 1e-7, 1.0)
        return float(-np.mean(np.log(p[onehot])))
    if cfg.model == "linear":
        return float(np.mean((r / scale) ** 2) / 2)
    p = np.clip((r + Yb) / scale, 1e-7, 1 - 1e-7)
    y = Yb / scale
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def lean_pays(cfg: TrainConfig) -> bool:
    """Whether a training run should use ``FastStepper(lean=True)``: converting each batch when it is used costs
    about 10 us per step more, a float64 copy of the data (n x d x 8 bytes, ~0.3 s and 160 MB at a million rows
    of 20 features) is made once; over a few epochs the batches convert fewer values than the copy."""
    return cfg.epochs <= 4


def train_honest(X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, ctx: SeedContext):
    """Generator over (step, epoch, theta_step, residuals) for step = 1..T, after yielding
    (0, 0, theta_0, None). The plain honest loop; the prover adds commitments around it."""
    sched = Schedule(ctx, cfg, X.shape[0], X.shape[1])
    stepper = FastStepper(X, Y, cfg, lean=lean_pays(cfg))
    theta = sched.initial_state()
    yield 0, 0, theta, None
    for t in range(1, sched.num_steps + 1):
        theta, r = stepper.step(theta, sched.batch(t), t)
        yield t, sched.epoch_of(t), theta, r
