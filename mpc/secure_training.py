"""The two-party training session (party-symmetric: the client runs it as party 0, the trainer as party 1).

1. inputs: each party opens its rows masked by the dealer's bounded masks, ``e = x + R`` (checked to lie
   in the allowed range), together with a commitment to its coin-toss seed; ``[x] = e - [R]``;
2. coin toss: both reveal their seeds; the joint seed J gives the training seed, the sacrifice scalars and,
   with the masked rows, the data root, hence protocol.training's schedule;
3. T secure steps (``secure_step``); the range and sacrifice checks of step t are opened in step t+1's first
   round (the last step's in a closing round) and decided after the MAC check that covers them;
4. output: the parameters are opened (to both, or masked so only the client learns them), MAC-checked.
Specified in docs/MPC.md; the step is protocol.training.step_exact on the union, bit for bit.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from protocol.errors import InputError
from protocol.prg import KeyStream, SeedContext, initial_parameters

from .errors import MpcAbort, MpcOverflow
from .field import L, from_ints, is_zero, signed, sub, words_below, words_to_elements
from .hashing import mpc_hash
from .party import Party, coefficients, send_abort
from .plan import Plan
from .preprocessing import Preprocessing, batch_schedule
from .shares import Shared
from .truncation import trunc_check

REVEAL_MODES = ("both", "client")
SWITCH_INTERVAL = 0.0005  # seconds; see run_party


@dataclass
class Outcome:
    theta: list[int] | None  # None for the trainer when the model is revealed to the client only
    steps: int
    seconds_online: float
    seconds_preprocessing: float
    bytes_sent: int
    bytes_received: int
    rounds: int
    training_seed: bytes = b""
    data_root: bytes = b""
    timings: dict = field(default_factory=dict)


def _timed(acc: list, fn, *args):
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        acc[0] += time.perf_counter() - t0


INPUT_BYTES = 16  # a masked input x + 2^(K-1) + R on the wire: an unsigned 128-bit integer, little-endian


def masked_inputs(X_own: np.ndarray, Y_own: np.ndarray, R_own: np.ndarray, K: int) -> bytes:
    """Own rows (features then target) plus 2^(K-1) plus the dealer's clear masks (two 64-bit words each), as
    unsigned 128-bit integers (docs/MPC.md section 4): exact integer addition with carry, no field reduction."""
    rows = np.column_stack([X_own, Y_own]).astype(np.int64) if X_own.size or Y_own.size else \
        np.zeros((0, R_own.shape[1]), dtype=np.int64)
    xs = (rows + (1 << (K - 1))).astype(np.uint64)  # in [0, 2^K)
    lo = R_own[..., 0] + xs
    hi = R_own[..., 1] + (lo < xs)
    return np.ascontiguousarray(np.stack([lo, hi], axis=-1), dtype="<u8").tobytes()


def verify_checks(opened: np.ndarray, t: int, plan: Plan) -> None:
    """Step t's check values (after the MAC check covering them): the range values (with ``plan.defer_range1``
    layer 1's w1 first, then layer 2's w2), then the sacrifice sum (decided first)."""
    K = plan.weight_bits
    if not is_zero(opened[-1]):
        raise MpcAbort(f"the preprocessing failed the triple sacrifice at step {t}: the dealer's "
                       "multiplication triples are wrong (the dealer deviated)")
    B = plan.batch_size if plan.defer_range1 else 0
    if not is_zero(opened[:B]).all():
        _overflow("prediction", t, K)
    if not is_zero(opened[B:-1]).all():
        _overflow("parameter", t, K)


def _overflow(what: str, t: int, K: int):
    raise MpcOverflow(f"a {what} left [-2^{K - 1}, 2^{K - 1}) at step {t}: the fixed-point format overflowed "
                      "(lower the learning rate)", step=t)


def secure_step(party: Party, theta: Shared, mat: dict[str, Shared], idx: np.ndarray, E: np.ndarray, X: Shared,
                R: Shared, plan: Plan, t: int, prev: Shared | None = None) -> tuple[Shared, Shared]:
    """One step of protocol.training on shares. ``prev``: step t-1's check values, opened in this step's first
    round and MAC-checked before this step's first truncation opening. Returns ([theta'], [this step's
    range-check values and sacrifice sum]), to be opened by the next step or the closing round."""
    d, B, f = plan.d, plan.batch_size, plan.frac_bits
    cfg = plan.cfg
    U = cfg.update_shift
    L1, L2 = plan.layers()
    defer = plan.defer_range1
    tt = party.sac_t
    w, b = theta[:d], theta[d]
    Eb = E[idx, :d]  # public masked rows: X_b = E_b - R_b
    Rb = R[idx, :d]
    Yb = X[idx, d]
    V, V2, Z, Z2 = mat["V"], mat["V2"], mat["Z"], mat["Z2"]
    M, M2, Zp, Zp2 = mat["M"], mat["M2"], mat["Zp"], mat["Zp2"]
    # forward: F = w - V opened; X_b w = E_b w - (R_b F + R_b V)          (SecureML matrix triple Z = R_b V)
    # the MAC check rides on this opening: it covers step t-1's checks and precedes this step's first truncation
    o = party.open(Shared.concat([w - V, V.scale(tt) - V2] + ([prev] if prev is not None else [])), f"s{t}/F",
                   check=True)
    F, rhoV = o[:d], o[d:2 * d]
    if prev is not None:
        checked = o[2 * d:]
        party.when_checked(lambda: verify_checks(checked, t - 1, plan))
    party.sacrifice_matrix(Z.scale(tt) - Z2 - Rb.rmul_public(rhoV))
    a = w.lmul_public(Eb) - (Rb.rmul_public(F) + Z) + b.broadcast(B).scale(1 << f)
    # z = a >> f; its range check (w1) either finishes before layer 2 or, deferred, rides on the next openings
    z, w1 = trunc_check(party, a, L1, mat, "L1", f"s{t}/z", defer=defer)
    if party.hooks is not None:
        z = party.hooks.truncated(t, z)
    r = z - Yb
    # backward: P = r - M opened; r^T X_b = r^T E_b - (P^T R_b + M^T R_b)   (Zp = M^T R_b)
    # MAC check before the next truncation opening: z is within layer 2's bound (range-checked, or deferred with
    # layer 2's bound covering any z layer 1 can output; docs/MPC.md sections 7-8)
    o = party.open(Shared.concat([r - M, M.scale(tt) - M2] + ([] if defer else [w1])), f"s{t}/P", check=True)
    Pm, rhoM = o[:B], o[B:2 * B]
    party.sacrifice_matrix(Zp.scale(tt) - Zp2 - Rb.lmul_public(rhoM))
    G = r.rmul_public(Eb) - (Rb.lmul_public(Pm) + Zp) + w.scale(plan.l2_num * B)
    Gb = r.sum().scale(1 << f)
    grads = Shared.concat([G, Gb.reshape(1)])
    x2 = theta.scale(1 << U) - grads.scale(plan.lr_num)
    if not defer and not is_zero(o[2 * B:]).all():
        party.when_checked(lambda: _overflow("prediction", t, plan.weight_bits))
    new, w2 = trunc_check(party, x2, L2, mat, "L2", f"s{t}/theta")  # theta' = x2 >> U, range-checked
    if party.hooks is not None:
        new = party.hooks.after_step(t, theta, new)
    if defer:
        while not w1.done:  # layer 2 opened fewer times than the chain is long (not with the defaults)
            party.open(Shared.of(np.zeros((2, 0, L), dtype=np.uint64), party.key), f"s{t}/z/tail")
        w1 = w1.result
    checks = Shared.concat(([w1] if defer else []) + [w2, party.take_sacrifice().reshape(1)])
    return new, checks


def run_party(index: int, channel, pre: Preprocessing, plan: Plan, X_own: np.ndarray, Y_own: np.ndarray,
              session_id: bytes, reveal: str = "both", hooks=None, progress=None, view: list | None = None) -> Outcome:
    """Run one party's side of the session. Raises MpcAbort (deviation) or MpcOverflow (range)."""
    if reveal not in REVEAL_MODES:
        raise ValueError(f"reveal must be one of {REVEAL_MODES}")
    pre_time = [0.0]
    t_start = time.perf_counter()
    d = plan.d
    mine = plan.n0 if index == 0 else plan.n1
    theirs = plan.n1 if index == 0 else plan.n0
    if X_own.shape != (mine, d) or Y_own.shape != (mine,):
        raise ValueError("own rows do not match the plan")
    K = plan.weight_bits
    if mine and (min(X_own.min(), Y_own.min()) < -(1 << (K - 1)) or max(X_own.max(), Y_own.max()) >= 1 << (K - 1)):
        raise InputError(f"the quantized data leave [-2^{K - 1}, 2^{K - 1}) (weight_bits {K}): raise --weight-bits")
    # A frame handed to the transport's threads waits for the GIL while this thread computes; with CPython's
    # default 5 ms switch interval that added up to 5 ms to most rounds (measured: about a third of the online
    # time). The interval is process-wide; it is restored when the session ends.
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(min(old_switch, SWITCH_INTERVAL))
    party = None
    try:
        inp = _timed(pre_time, pre.inputs)
        party = Party(inp.key, channel, hooks)
        party.view = view
        return _run(party, index, pre, plan, inp, X_own, Y_own, theirs, session_id, reveal, progress, pre_time,
                    t_start)
    except (MpcAbort, MpcOverflow) as e:
        if party is not None:
            party.abort(str(e))
        else:  # the dealer's input material failed (nothing sent yet): the other party learns why from us
            send_abort(channel, str(e))
        e.ctx = getattr(party, "ctx", None)  # the seed context, when the coin toss got that far
        raise
    finally:
        sys.setswitchinterval(old_switch)


def _run(party, index, pre, plan, inp, X_own, Y_own, theirs, session_id, reveal, progress, pre_time, t_start):
    d, K = plan.d, plan.weight_bits
    if not words_below(inp.own, 1 << plan.input_bits).all():
        raise MpcAbort("the dealer's input masks are outside [0, 2^(K+kappa)): the dealer deviated")
    e_own = masked_inputs(X_own, Y_own, inp.own, K)
    coin = os.urandom(32)
    com = mpc_hash("coin/commit", bytes([index]), session_id, coin)
    if party.hooks is not None:
        party.hooks.before_inputs(party)
        e_own = party.hooks.inputs(e_own)
    e_other, their_com = party.exchange_bytes("inputs", e_own, blob=com)
    row_bytes = INPUT_BYTES * (d + 1)
    if len(e_other) != row_bytes * theirs:  # its row count was declared in the hello (docs/MPC.md section 4)
        sent = f"{len(e_other) // row_bytes} rows" if len(e_other) % row_bytes == 0 else f"{len(e_other)} bytes"
        raise MpcAbort(f"malformed message: the other party declared {theirs} rows but sent masked inputs for {sent} "
                       f"({d + 1} values of {INPUT_BYTES} bytes per row): it deviated")
    words_other = np.frombuffer(e_other, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    if party.view is not None:
        party.view.append(("inputs", [int(lo) + (int(hi) << 64) for lo, hi in words_other.tolist()]))
    if not words_below(words_other, (1 << plan.input_bits) + (1 << K)).all():
        raise MpcAbort("the other party's masked inputs are outside the allowed range (values must lie in "
                       f"[-2^{K - 1}, 2^{K - 1})): it deviated")
    _, their_coin = party.exchange("coin", blob=coin)
    if len(their_com) != 32 or mpc_hash("coin/commit", bytes([1 - index]), session_id, their_coin) != their_com:
        raise MpcAbort("the other party's coin-toss seed does not match its commitment")
    coins = (coin, their_coin) if index == 0 else (their_coin, coin)
    E0, E1 = (e_own, e_other) if index == 0 else (e_other, e_own)
    # the public masked rows E = X + R as elements: the received integers x + 2^(K-1) + R, less 2^(K-1)
    E = sub(words_to_elements(np.frombuffer(E0 + E1, dtype="<u8").reshape(-1, 2)), from_ints(1 << (K - 1)))
    E = E.reshape(plan.n, d + 1, L)
    joint = mpc_hash("coin/joint", *coins)
    training_seed = mpc_hash("training-seed", joint)
    sac = mpc_hash("sacrifice", joint)
    party.sac_stream = KeyStream(sac)
    party.sac_t = coefficients(party.sac_stream, 1)[0]
    data_root = mpc_hash("data-root", session_id, E0, E1)
    ctx = party.ctx = SeedContext(session_id, data_root, training_seed)
    _timed(pre_time, pre.start_steps, ctx)
    R = inp.R
    X = (-R).add_public(E)
    theta = Shared.public(from_ints([int(v) for v in initial_parameters(ctx, d + 1, plan.frac_bits)]), party.key)
    T = plan.num_steps
    checks = None
    for t, idx in enumerate(batch_schedule(plan, ctx), 1):
        mat = _timed(pre_time, pre.step, t)
        if party.hooks is not None:
            party.hooks.material(t, mat, party)
        theta, checks = secure_step(party, theta, mat, np.asarray(idx), E, X, R, plan, t, checks)
        if progress is not None:
            progress(t, T)
    opened = party.open(checks, f"s{T}/checks", check=True)
    party.when_checked(lambda: verify_checks(opened, T, plan))
    out = _timed(pre_time, pre.output)
    if reveal == "both":
        vals = party.open(theta, "output", check=True)
    else:
        vals = party.open(theta + out.mask, "output", check=True)
        vals = sub(vals, out.clear) if index == 0 else None
    party.close_checks()  # party 1 learns the last check's outcome here; nothing is output before
    total = time.perf_counter() - t_start
    st = party.stats
    theta_out = [int(v) for v in signed(vals)] if vals is not None else None
    return Outcome(theta_out, T, total - pre_time[0], pre_time[0], st.bytes_sent, st.bytes_received, st.rounds,
                   training_seed, data_root)

