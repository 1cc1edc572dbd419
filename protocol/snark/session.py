"""The SNARK proof kind inside a session: the circuit both sides build from the session's data and seed.

Public inputs (outputs first): theta_T (d+1), theta_0 (d+1), binding, with
``binding = int(H("session-binding", "snark" || session statement bytes)) mod r``: a proof is bound to the
signed session statement (config, both nonces, trainer key), so it cannot be replayed in another session.
"""

from __future__ import annotations

import hashlib

import numpy as np

from protocol.hashing import tagged_hash
from protocol.training import Schedule, TrainConfig

from . import sgd_circuit
from .field import R
from .groth16 import Proof, VerifyingKey
from .snarkjs_io import proof_to_bytes, vk_to_bytes

DEFAULT_MAX_CONSTRAINTS = 1 << 16


def session_binding(session_statement: bytes) -> int:
    return int.from_bytes(tagged_hash("session-binding", b"snark", session_statement), "big") % R


def circuit_data(X: np.ndarray, Y: np.ndarray, sched: Schedule):
    """Lists of Python ints for the circuit builder: X, Y and the batch of every step."""
    return X.tolist(), Y.tolist(), [sched.batch(t).tolist() for t in range(1, sched.num_steps + 1)]


def constraint_count(cfg: TrainConfig, num_rows: int, num_features: int) -> int:
    return sgd_circuit.constraint_count(num_features, cfg, cfg.num_steps(num_rows))


def check_size(cfg: TrainConfig, num_rows: int, num_features: int, limit: int) -> int:
    """Raise ValueError naming the size when the circuit is over ``limit`` constraints."""
    if cfg.model != "linear":
        raise ValueError("the SNARK proof covers linear regression only (the logistic sigmoid is a table lookup); "
                         "use --proof spot for logistic regression")
    n = constraint_count(cfg, num_rows, num_features)
    if n > limit:
        raise ValueError(f"the SNARK circuit for this session would have {n} constraints ({cfg.num_steps(num_rows)} "
                         f"steps x {num_features} features x batch {cfg.batch_size}), over the limit of {limit}: use "
                         f"--proof spot (with the full replay audit) for a session this size, or fewer steps")
    return n


def build(X, Y, sched: Schedule, cfg: TrainConfig, theta0=None, binding=None):
    Xl, Yl, schedule = circuit_data(X, Y, sched)
    return sgd_circuit.build_sgd_circuit(Xl, Yl, schedule, theta0, cfg, binding)


def public_inputs(model, theta0, binding: int) -> list[int]:
    return sgd_circuit.encode_public_inputs([int(v) for v in model], [int(v) for v in theta0], binding)


def vk_hash(vk: VerifyingKey) -> bytes:
    return hashlib.sha256(vk_to_bytes(vk)).digest()


def proof_hash(proof: Proof) -> bytes:
    return hashlib.sha256(proof_to_bytes(proof)).digest()
