"""The verifier's checks: small, pure (no I/O), each raising a VerificationError subclass that names what
failed. Used both live (by the client) and offline (by the audit)."""

from __future__ import annotations

import math
import struct

import numpy as np

from protocol import scalar_step
from protocol.errors import BindingMismatch, MerkleProofInvalid, StepMismatch, VerificationError
from protocol.merkle import (
    data_block_leaf,
    model_hash,
    root_from_proof,
    state_leaf,
)
from protocol.prg import challenge_steps
from protocol.row_encoding import fits
from protocol.state_leaves import BLOCK, Leaves, Scan, inclusion_proof, scan
from protocol.statements import PROTOCOL_VERSION, Statement, expect_fields, verify
from protocol.training import FastStepper, Schedule, TrainConfig, step_exact
from protocol.transcript import hash_list

from .spot_rows import SharedPaths, batch_rows


def check_session(pub: bytes, signed, sid: bytes, *, client_nonce: bytes, server_nonce: bytes, cfg: TrainConfig,
                  proof_kind: str) -> Statement:
    st = verify(pub, *signed, kind="session", session_id=sid)
    expect_fields(st, {"protocol_version": PROTOCOL_VERSION, "trainer_key": pub, "client_nonce": client_nonce,
                       "server_nonce": server_nonce, "config": cfg.encode(), "proof_kind": proof_kind})
    return st


def check_data(pub: bytes, signed, sid: bytes, *, data_root: bytes, num_rows: int, num_features: int,
               rows_per_leaf: int, value_bytes: int) -> Statement:
    st = verify(pub, *signed, kind="data", session_id=sid)
    expect_fields(st, {"data_root": data_root, "num_rows": num_rows, "num_features": num_features,
                       "rows_per_leaf": rows_per_leaf, "value_bytes": value_bytes})
    return st


def check_randomness(pub: bytes, signed, sid: bytes, *, data_root: bytes, training_seed: bytes,
                     audit_commitment: bytes, spot_checks: int) -> Statement:
    st = verify(pub, *signed, kind="randomness", session_id=sid)
    expect_fields(st, {"data_root": data_root, "training_seed": training_seed,
                       "audit_commitment": audit_commitment, "spot_checks": spot_checks})
    return st


def check_checkpoints(pub: bytes, checkpoints, sid: bytes, leaves, interval: int, scanned: Scan | None = None) -> None:
    """Every checkpoint statement signs (t, leaf_t, root of leaves 0..t) for t = interval, 2*interval, ...
    ``leaves``: any source protocol/state_leaves.py reads; ``scanned``: its scan with those prefix roots, if
    already made (one pass over the leaves serves the state root and every checkpoint)."""
    lv = Leaves(leaves)
    expected_steps = list(range(interval, lv.count, interval))
    if len(checkpoints) != len(expected_steps):
        raise VerificationError(f"expected {len(expected_steps)} checkpoint statements, got {len(checkpoints)}")
    if scanned is None:
        scanned = scan(lv, expected_steps)
    for k, t in enumerate(expected_steps):
        leaf, prefix_root = scanned.prefixes[t]
        st = verify(pub, *checkpoints[k], kind="checkpoint", session_id=sid)
        if st.fields["step"] != t:
            raise BindingMismatch(f"checkpoint {k + 1} is for step {st.fields['step']}, expected step {t}", step=t)
        expect_fields(st, {"state_leaf": leaf, "prefix_root": prefix_root})


def check_final(pub: bytes, signed, sid: bytes, *, leaves, num_steps: int, model,
                extras_json: str = "", state_root: bytes | None = None) -> Statement:
    st = verify(pub, *signed, kind="final", session_id=sid)
    count = Leaves(leaves).count
    if count != num_steps + 1:
        raise VerificationError(f"the trainer committed {count - 1} steps, the agreed training has {num_steps}",
                                step=min(count, num_steps + 1) - 1)
    expect_fields(st, {"num_steps": num_steps, "state_root": state_root or scan(leaves).root,
                       "model_hash": model_hash(model, extras_json)})
    return st


INCOMPLETE = "transcript incomplete"


class Incomplete(VerificationError):
    """The transcript ends before the part a check needs (a live rejection, or a session that was cut off)."""


def incomplete_reason(stream_error: str | None) -> str:
    """The one wording of "no signed final statement", live and in the audit (``stream_error``: what the
    client saw the trainer do on the Train stream, recorded in the transcript; not signed by the trainer)."""
    base = f"{INCOMPLETE}: training did not finish with a signed final statement"
    return f"{base} (the trainer {stream_error})" if stream_error else base


def leaf_flood_reason(T: int) -> str:
    return f"streamed more than the {T + 1} state commitments of {T} steps"


def receive_cap(n: int, d: int, cfg: TrainConfig, spot_checks: int) -> int:
    """The largest message the client accepts from the trainer in this session: twice the largest an honest
    trainer sends (all T+1 leaves in one event; the final result with extras at their cap; the openings of
    min(K, T) steps; a SNARK answer), plus 64 KiB. Set as the channel's receive limit, so a larger message is
    refused by gRPC before it is buffered (docs/PROTOCOL.md section 2, "Caps")."""
    from protocol.merkle import default_rows_per_leaf

    T = cfg.num_steps(n)
    P = cfg.num_params(d)  # parameters per state: d + 1, or C(d + 1) for softmax
    # each opened row comes with its R-row leaf; R as the client picks it for 1-byte values, the largest any
    # value width gives (the cap is set before the data's width is known)
    R = default_rows_per_leaf(d, n, spot_checks * cfg.batch_size, value_bytes=1)
    depth = lambda size: max(1, (size - 1).bit_length())  # siblings per inclusion proof
    leaves = 32 * (T + 1) + 32
    final = 11 * P + max_extras_bytes(d) + 256
    opening = (2 * 11 * P + 2 * (34 * depth(T + 1) + 24)
               + cfg.batch_size * (11 * (d + 1) * (R + 1) + 34 * depth(n) + 32))
    prove = min(spot_checks, T) * (opening + 16) + 4096
    return 2 * max(leaves, final, prove) + (64 << 10)


def max_extras_bytes(d: int) -> int:
    """Cap on serving-time content (FinalResult.extras_json): none is honest; a trigger for d features fits."""
    return 4096 + 64 * d


def check_final_shape(model, extras_json: str, d: int, T: int, params: int | None = None) -> None:
    """The final model has the agreed number of parameters (``params``: d+1, or C(d+1) for softmax) and the
    shipped extras are within their cap."""
    P = params or d + 1
    if len(model) != P:
        raise StepMismatch(f"the trainer's final model has {len(model)} parameters, the agreed model has {P} "
                           f"(step {T})", step=T)
    if len(extras_json) > max_extras_bytes(d):
        raise StepMismatch(f"the trainer shipped {len(extras_json)} bytes of serving-time content with the model, "
                           f"over the cap of {max_extras_bytes(d)} (the agreed algorithm ships none; step {T})", step=T)


def check_initial_state(leaves, sched: Schedule) -> None:
    if Leaves(leaves)[0] != state_leaf(0, sched.initial_state()):
        raise StepMismatch("the committed initial state is not the one derived from your training seed", step=0)


def check_final_model(leaves, model, extras_json: str = "") -> None:
    leaves = Leaves(leaves)
    T = len(leaves) - 1
    if extras_json:
        raise StepMismatch(f"the trainer shipped the model with serving-time content beyond its parameters "
                           f"({extras_json[:80]}...): the agreed algorithm produces parameters only (step {T})", step=T,
                           evidence={"extras_json": extras_json})
    if leaves[T] != state_leaf(T, np.asarray(model, dtype=np.int64)):
        raise StepMismatch(f"the final model is not the last committed state (step {T}): the model was swapped "
                           f"after training", step=T)


def check_spot(openings: list[dict], *, sid: bytes, state_root: bytes, audit_seed: bytes, spot_checks: int,
               num_steps: int, data_root: bytes, num_rows: int, sched: Schedule, cfg: TrainConfig,
               rows_per_leaf: int = 1, value_bytes: int = 8, data_leaf=None, state_leaf_of=None) -> list[int]:
    """Check the openings of the challenged steps; returns the challenged steps.

    For each challenged step t: states t-1 and t are in the committed state tree, the batch rows are the
    seed-derived ones and are in the committed data tree, and replaying step t on them gives state t.
    ``data_leaf(row_opening, leaf_index, leaf_rows)``: the leaf hash of another leaf encoding (trainer-owned data:
    verifier/trainer_data_checks.py); the default is the client's block leaf. ``state_leaf_of(opening, label, index,
    state)``: the leaf hash of another state-leaf encoding (trainer-owned data: the hiding leaves)."""
    steps = challenge_steps(sid, state_root, audit_seed, spot_checks, num_steps)
    if [op["step"] for op in openings] != steps:
        raise VerificationError(f"the trainer opened steps {[op['step'] for op in openings][:8]}..., "
                                f"the audit seed challenges {steps[:8]}...")
    size = num_steps + 1
    batches = {t: [int(i) for i in sched.batch(t)] for t in sorted(steps)}  # epoch by epoch: one shuffle each
    width, row_width = cfg.num_params(sched.d), sched.d + 1  # values per state, per data row
    paths = SharedPaths(-(-num_rows // rows_per_leaf), len(steps) * cfg.batch_size)
    for op in sorted(openings, key=lambda o: o["step"]):  # several failures: the smallest step is named
        t = op["step"]
        for label, idx, state, proof in (("before", t - 1, op["state_before"], op["proof_before"]),
                                         ("after", t, op["state_after"], op["proof_after"])):
            if proof["index"] != idx:
                raise MerkleProofInvalid(f"step {t}: the opening of the state {label} is for leaf {proof['index']}", step=t)
            if len(state) != width:
                raise MerkleProofInvalid(f"step {t}: the opened state {label} the step has {len(state)} values, the "
                                         f"model has {width}", step=t)
            leaf = (state_leaf(idx, np.asarray(state, dtype=np.int64)) if state_leaf_of is None
                    else state_leaf_of(op, label, idx, state))
            _included(leaf, idx, size, proof["siblings"], state_root,
                      f"step {t}: the state {label} the step is not in the committed state tree", t)
        if [r["index"] for r in op["rows"]] != batches[t]:
            raise StepMismatch(f"step {t}: the opened batch rows are not the seed-derived batch", step=t)
        fast = None if data_leaf is not None else batch_rows(  # all rows at once; None: row by row, below
            op["rows"], batches[t], rows_per_leaf=rows_per_leaf, num_rows=num_rows, row_width=row_width,
            value_bytes=value_bytes, data_root=data_root, paths=paths)
        rows = [] if fast is None else fast.tolist()
        R = rows_per_leaf
        n_leaves = -(-num_rows // R)
        for r in op["rows"] if fast is None else ():
            i = r["index"]
            j = i // R
            if r.get("proof_index") != j:
                raise MerkleProofInvalid(f"step {t}: the inclusion proof of row {i} is for another leaf", step=t)
            vals, block = r["values"], r.get("leaf_rows")
            if (len(vals) != row_width or not _fits_i64(vals) or not isinstance(block, list)
                    or len(block) != min(R, num_rows - j * R)  # a value outside value_bytes would wrap: refused
                    or any(not isinstance(b, list) or len(b) != row_width or not fits(b, value_bytes) for b in block)
                    or [int(v) for v in block[i - j * R]] != [int(v) for v in vals]):
                raise MerkleProofInvalid(f"step {t}: row {i} has a malformed opening", step=t)
            leaf = data_block_leaf(j, block, value_bytes) if data_leaf is None else data_leaf(r, j, block, t)
            _included(leaf, j, n_leaves, r["proof"], data_root,
                      f"step {t}: row {i} is not in the committed data", t)
            rows.append(vals)
        try:
            replayed = _batch_step(fast, rows, op["state_before"], cfg, t)
        except ArithmeticError as e:
            raise StepMismatch(f"step {t}: replaying the committed state overflows: {e}", step=t) from e
        if replayed != list(op["state_after"]):
            raise StepMismatch(f"step {t}: replaying the step from the committed state does not give the committed "
                               f"next state (the trainer deviated at step {t})", step=t,
                               evidence={"step": t, "replayed_state": replayed})
    return steps


def _batch_step(fast: np.ndarray | None, rows: list, state: list, cfg: TrainConfig, t: int) -> list[int]:
    """``step_exact`` of the opened batch; with numpy (FastStepper: the same integers, falling back to the exact
    step wherever its float64 bounds fail) for a batch checked at once and a state well inside int64. An
    overflow is reported by ``step_exact``, in its words."""
    if fast is not None and cfg.model in ("linear", "logistic") and all(type(v) is int for v in state) \
            and -(1 << 62) < min(state) and max(state) < (1 << 62):
        try:
            fs = FastStepper(fast[:, :-1], fast[:, -1], cfg, lean=True)
            return fs.step(np.asarray(state, dtype=np.int64), np.arange(fast.shape[0]), t)[0].tolist()
        except ArithmeticError:
            pass
    return step_exact(list(state), [v[:-1] for v in rows], [v[-1] for v in rows], cfg, t)


def _included(leaf: bytes, index: int, size: int, siblings_hex, root: bytes, failure: str, step: int) -> None:
    if len(siblings_hex) > 64 or not all(len(h) == 64 for h in siblings_hex):
        raise MerkleProofInvalid(f"{failure} (the inclusion proof is not a list of at most 64 hashes of 32 bytes)",
                                 step=step)
    try:
        ok = root_from_proof(leaf, index, size, hash_list(siblings_hex, "an inclusion proof")) == root
    except MerkleProofInvalid as e:
        raise MerkleProofInvalid(f"{failure} ({e})", step=step) from None
    if not ok:
        raise MerkleProofInvalid(failure, step=step)


def _fits_i64(values) -> bool:
    return all(-(2**63) <= int(v) < 2**63 for v in values)


def replay(rows: np.ndarray, leaves, model, sched: Schedule, cfg: TrainConfig, extras_json: str = "",
           progress=None, honest: bytes | None = None) -> None:
    """Full replay: recompute every state and compare with the committed leaves (read block by block:
    protocol/state_leaves.py), the first difference is the step named. Raises StepMismatch with
    self-contained evidence. ``progress(t, T)``: optional callback, about every T/200 steps. ``honest``: the
    honest leaves of this schedule, already computed (``honest_leaves``, verifier/replay_ahead.py): when every
    committed leaf equals them the loop is not run again; otherwise it runs and names the difference."""
    leaves = Leaves(leaves)
    if len(leaves) != sched.num_steps + 1:
        raise VerificationError(f"the trainer committed {len(leaves) - 1} steps, the agreed training has "
                                f"{sched.num_steps}", step=min(len(leaves), sched.num_steps + 1) - 1)
    check_initial_state(leaves, sched)
    size = max(1, min(BLOCK, sched.num_steps // 200))
    if honest is not None and len(honest) == 32 * len(leaves) and all(
            blob == honest[32 * first:32 * first + len(blob)] for first, blob in leaves.blocks(1, size=BLOCK)):
        if progress is not None:
            progress(sched.num_steps, sched.num_steps)
        check_final_shape(model, extras_json, sched.d, sched.num_steps, cfg.num_params(sched.d))
        check_final_model(leaves, model, extras_json)
        return
    step, leaf, theta = _stepper(rows, sched, cfg)
    for first, blob in leaves.blocks(1, size=size):
        for j in range(0, len(blob), 32):
            t = first + j // 32
            prev = theta
            try:
                theta = step(theta, t)
            except ArithmeticError as e:  # the honest step cannot be computed: no honest trainer signs past it
                raise _overflow(leaves, sched, t, prev, e) from None
            if leaf(t, theta) != blob[j:j + 32]:
                raise _divergence(leaves, sched, t, prev, theta)
        if progress is not None:
            progress(first - 1 + len(blob) // 32, sched.num_steps)
    check_final_shape(model, extras_json, sched.d, sched.num_steps, cfg.num_params(sched.d))
    check_final_model(leaves, model, extras_json)


def honest_leaves(rows: np.ndarray, sched: Schedule, cfg: TrainConfig) -> bytes:
    """The state leaves 0..T of the honest training on ``rows`` (the replay's own steps); raises ArithmeticError
    where the honest step overflows."""
    step, leaf, theta = _stepper(rows, sched, cfg)
    out = [state_leaf(0, sched.initial_state())]
    for t in range(1, sched.num_steps + 1):
        theta = step(theta, t)
        out.append(leaf(t, theta))
    return b"".join(out)


def _stepper(rows: np.ndarray, sched: Schedule, cfg: TrainConfig):
    """-> (step(theta, t), leaf(t, theta), theta_0): the scalar step on Python ints for small linear and
    logistic batches (protocol/scalar_step.py), else FastStepper; the same integers either way."""
    if scalar_step.applies(cfg, sched.d):
        ss = scalar_step.ScalarStepper(rows, cfg)
        theta = [int(v) for v in sched.initial_state()]
        fmt = struct.Struct(f"<{len(theta)}q")
        return (lambda th, t: ss.step(th, sched.batch(t).tolist(), t)), (lambda t, th: scalar_step.leaf_of(t, th, fmt)), theta
    fs = FastStepper(rows[:, :-1], rows[:, -1], cfg, lean=True)  # no copy of the data
    return (lambda th, t: fs.step(th, sched.batch(t), t)[0]), state_leaf, sched.initial_state()


def _divergence(leaves: Leaves, sched: Schedule, t: int, prev, theta) -> StepMismatch:
    return StepMismatch(f"step {t} is the first step whose committed state differs from the honest replay",
                        step=t, evidence={
                            "step": t, "state_root": scan(leaves).root.hex(),
                            "state_before": [int(v) for v in prev], "leaf_before": leaves[t - 1].hex(),
                            "proof_before": [h.hex() for h in inclusion_proof(leaves, t - 1)],
                            "honest_state_after": [int(v) for v in theta],
                            "committed_leaf_after": leaves[t].hex(),
                            "proof_after": [h.hex() for h in inclusion_proof(leaves, t)],
                            "batch": [int(i) for i in sched.batch(t)],
                            "note": "state_before hashes to the committed leaf t-1; the honest step from it "
                                    "does not hash to the committed leaf t, which the signed state_root "
                                    "includes"})


def _overflow(leaves: Leaves, sched: Schedule, t: int, prev, err: ArithmeticError) -> StepMismatch:
    """The honest replay of step t overflows the fixed-point format (an honest trainer stops there, with an
    error), yet the trainer committed and signed states up to step T: its claim is false at step t."""
    return StepMismatch(f"step {t}: the honest replay overflows ({err}), yet the trainer committed states for every "
                        f"step up to {sched.num_steps}", step=t, evidence={
                            "step": t, "state_root": scan(leaves).root.hex(),
                            "state_before": [int(v) for v in prev], "leaf_before": leaves[t - 1].hex(),
                            "proof_before": [h.hex() for h in inclusion_proof(leaves, t - 1)],
                            "batch": [int(i) for i in sched.batch(t)], "overflow": str(err),
                            "note": "state_before hashes to the committed leaf t-1; the honest step from it "
                                    "overflows, so no honest training reaches the signed state_root"})


def detection_probability(num_steps: int, checks: int, bad_steps: int) -> float:
    """Pr[at least one of `bad_steps` wrong steps is challenged] = 1 - C(T-m, K)/C(T, K)."""
    k = min(checks, num_steps)
    if bad_steps <= 0:
        return 0.0
    if num_steps - bad_steps < k:
        return 1.0
    return 1.0 - math.comb(num_steps - bad_steps, k) / math.comb(num_steps, k)
