"""The trainer's run: the protocol's honest loop (or a named cheat) with per-step commitments.

Emits plain events; the gRPC servicer converts them. Every state theta_t (t = 0..T) becomes a Merkle leaf
``state_leaf(t, theta_t)`` (protocol/merkle.py); every ``checkpoint_interval`` steps a checkpoint statement signs
(t, leaf_t, root of leaves 0..t); at the end the final statement signs (T, root, model hash).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from protocol.merkle import MerkleTree, TreeBuilder, model_hash, state_leaf_block
from protocol.prg import SeedContext
from protocol.statements import Statement, sign
from protocol.training import FastStepper, Schedule, TrainConfig, batch_loss, lean_pays


@dataclass
class ProgressEvent:
    step: int
    total_steps: int
    epoch: int
    loss: float
    phase: str = "training"


@dataclass
class LeavesEvent:
    first_step: int
    hashes: bytes


@dataclass
class SignedEvent:
    kind: str  # "checkpoint"
    statement: bytes
    signature: bytes


@dataclass
class FinalEvent:
    statement: bytes
    signature: bytes
    model: np.ndarray
    extras_json: str = ""


@dataclass
class TrainingRecord:
    """What the trainer keeps to answer Prove."""

    states: np.ndarray  # (T+1, P) int64, P = cfg.num_params(d)
    tree: MerkleTree
    final_model: np.ndarray
    X: np.ndarray  # committed rows' features (int64)
    Y: np.ndarray
    extras_json: str = ""


def run_training(*, key, session_id: bytes, X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, ctx: SeedContext,
                 strategy, progress_every: float = 0.2, record: dict, leaf_fn=None):
    """Generator of events. On completion ``record['result']`` holds a TrainingRecord. ``leaf_fn(t, theta)``: the
    state leaf (default ``state_leaf``; trainer-owned data: the hiding leaves of docs/PROTOCOL.md section 12).

    The step loop only stores theta_t (one row of ``states``); the leaves of the states stored since the last
    event are hashed when an event needs them (``state_leaf_block``: the same leaves, one loop) into a
    TreeBuilder, whose nodes give each checkpoint's prefix root in O(log t) hashes and, at the end, the state
    tree itself: about 5 us per step in all instead of ~15 (``commit_overhead`` in bench/bench_training.py)."""
    n, d = X.shape
    sched = Schedule(ctx, cfg, n, d)
    T = sched.num_steps
    Xs, Ys = strategy.prepare(X, Y)
    stepper = FastStepper(Xs, Ys, cfg, lean=lean_pays(cfg))  # the same stepper as train_honest
    states = np.empty((T + 1, cfg.num_params(d)), dtype=np.int64)  # compact: (T+1) x P int64, no Python ints
    theta = sched.initial_state()
    states[0] = theta
    builder = TreeBuilder()  # the state tree, built as the leaves are hashed
    leaves = builder.leaves  # leaf t at [32t, 32t+32): 32 bytes per step, no Python objects

    def hashed(stop: int) -> None:  # the leaves of states len(leaves)/32 .. stop-1, and the nodes above them
        first = len(leaves) // 32
        if leaf_fn is None:
            leaves.extend(state_leaf_block(first, states[first:stop]))
        else:
            for t in range(first, stop):
                leaves.extend(leaf_fn(t, states[t]))
        builder.climb()

    sent = 0
    last = time.monotonic()
    loss = float("nan")
    interval = cfg.checkpoint_interval
    batch, step, batch_of = strategy.batch, strategy.step, sched.batch
    for t in range(1, T + 1):
        idx = batch(t, batch_of(t), T)
        theta, r = step(stepper, theta, idx, t, T)
        states[t] = theta
        if t % interval == 0:
            hashed(t + 1)
            leaf = bytes(leaves[32 * t:])
            data, sig = sign(key, Statement("checkpoint", session_id, {
                "step": t, "state_leaf": leaf, "prefix_root": builder.prefix_root(t + 1)}))
            yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
            yield SignedEvent("checkpoint", data, sig)
        if t + 1 - sent >= 4096:
            hashed(t + 1)
            yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
        now = time.monotonic()
        if now - last >= progress_every or t == T:
            last = now
            loss = batch_loss(r, Ys[idx], cfg)
            if sent < t + 1:
                hashed(t + 1)
                yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
            yield ProgressEvent(t, T, sched.epoch_of(t), loss)
    hashed(T + 1)
    if sent < T + 1:
        yield LeavesEvent(sent, bytes(leaves[32 * sent:]))
    tree = builder.tree()
    final = np.asarray(strategy.final_model(theta), dtype=np.int64)
    extras = strategy.model_extras(Xs, Ys, final, cfg)
    extras_json = extras if isinstance(extras, str) else json.dumps(extras, sort_keys=True) if extras else ""
    data, sig = sign(key, Statement("final", session_id, {
        "num_steps": T, "state_root": tree.root, "model_hash": model_hash(final, extras_json)}))
    record["result"] = TrainingRecord(states, tree, final, X, Y, extras_json)
    yield FinalEvent(data, sig, final, extras_json)
