"""The trainer's run: the protocol's honest loop (or a named cheat) with per-step commitments.

Emits plain events; the gRPC servicer converts them. Every state theta_t (t = 0..T) becomes a Merkle leaf
``state_leaf(t, theta_t)``; every ``checkpoint_interval`` steps a checkpoint statement signs
(t, leaf_t, root of leaves 0..t); at the end the final statement signs (T, root, model hash).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from protocol.merkle import MerkleFrontier, MerkleTree, model_hash, state_leaf
from protocol.prg import SeedContext
from protocol.statements import Statement, sign
from protocol.training import FastStepper, Schedule, TrainConfig, batch_loss


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
    state leaf (default ``state_leaf``; trainer-owned data: the hiding leaves of docs/PROTOCOL.md section 12)."""
    state_leaf_of = leaf_fn or state_leaf
    n, d = X.shape
    sched = Schedule(ctx, cfg, n, d)
    T = sched.num_steps
    Xs, Ys = strategy.prepare(X, Y)
    stepper = FastStepper(Xs, Ys, cfg)
    states = np.empty((T + 1, cfg.num_params(d)), dtype=np.int64)  # compact: (T+1) x P int64, no Python ints
    theta = sched.initial_state()
    states[0] = theta
    leaves = bytearray(state_leaf_of(0, theta))  # leaf t at [32t, 32t+32): 32 bytes per step, no Python objects
    frontier = MerkleFrontier()
    frontier.append(bytes(leaves))
    sent = 0
    last = time.monotonic()
    loss = float("nan")
    for t in range(1, T + 1):
        idx = strategy.batch(t, sched.batch(t), T)
        theta, r = strategy.step(stepper, theta, idx, t, T)
        states[t] = theta
        leaf = state_leaf_of(t, theta)
        leaves += leaf
        frontier.append(leaf)
        if t % cfg.checkpoint_interval == 0:
            data, sig = sign(key, Statement("checkpoint", session_id, {
                "step": t, "state_leaf": leaf, "prefix_root": frontier.root()}))
            yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
            yield SignedEvent("checkpoint", data, sig)
        if t + 1 - sent >= 4096:
            yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
        now = time.monotonic()
        if now - last >= progress_every or t == T:
            last = now
            loss = batch_loss(r, Ys[idx], cfg)
            if sent < t + 1:
                yield LeavesEvent(sent, bytes(leaves[32 * sent:])); sent = t + 1
            yield ProgressEvent(t, T, sched.epoch_of(t), loss)
    if sent < T + 1:
        yield LeavesEvent(sent, bytes(leaves[32 * sent:]))
    tree = MerkleTree(bytes(leaves))
    final = np.asarray(strategy.final_model(theta), dtype=np.int64)
    extras = strategy.model_extras(Xs, Ys, final, cfg)
    extras_json = extras if isinstance(extras, str) else json.dumps(extras, sort_keys=True) if extras else ""
    data, sig = sign(key, Statement("final", session_id, {
        "num_steps": T, "state_root": tree.root, "model_hash": model_hash(final, extras_json)}))
    record["result"] = TrainingRecord(states, tree, final, X, Y, extras_json)
    yield FinalEvent(data, sig, final, extras_json)
