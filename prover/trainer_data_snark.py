"""The zero-knowledge SNARK of training on the trainer's own committed data, inside a session (docs/PROTOCOL.md
section 12, docs/SNARK.md section 8): the Poseidon commitment signed in the data card beside the SHA-256 root,
the size and key-header checks, the subversion-zero-knowledge check of the client's proving key before the
secret rows are used, and the proof.

Hooks: prover/trainer_data.py (commit, UseTrainerData), prover/session.py (key header, key kept),
prover/proving.py (the proof, verified and signed there).
"""

from __future__ import annotations

import numpy as np

from protocol.errors import InputError
from protocol.prg import SeedContext
from protocol.snark import groth16, snarkjs_io, zk_session
from protocol.snark import session as snark_session
from protocol.snark.errors import ProvingKeyRejected
from protocol.snark.key_check import check_proving_key, project_proof
from protocol.snark.poseidon import commit
from protocol.snark.zk_circuit import build_private_circuit, constraint_breakdown
from protocol.training import Schedule

from .session_state import LimitExceeded

ZK_MAX_VALUES = 4096  # the Poseidon commitment is computed at start-up for linear datasets of at most this many values
ZK_WEIGHT_BITS = 32  # K of the commitment's packing (the session's weight_bits must be this)


class KeyRefused(InputError):
    """INVALID_ARGUMENT: the client's proving key fails the well-formedness checks (subversion zero knowledge)."""


def offered(model: str, n: int, d: int) -> bool:
    return model == "linear" and n * (d + 1) <= ZK_MAX_VALUES


def zk_commitment(X: np.ndarray, Y: np.ndarray, blinding: int) -> bytes:
    return commit(X.tolist(), Y.tolist(), blinding, ZK_WEIGHT_BITS).to_bytes(32, "big")


def schedule_of(s) -> tuple[list[list[int]], list[int]]:
    """The session's batches (steps 1..T) and theta_0, from the client's seed."""
    n, d = s.shape
    sched = Schedule(SeedContext(s.session_id, s.data_tree.root, s.training_seed), s.cfg, n, d)
    return [sched.batch(t).tolist() for t in range(1, sched.num_steps + 1)], [int(v) for v in sched.initial_state()]


def check_session(limits, s, c) -> None:
    """UseTrainerData with proof kind snark: the dataset is offered with a SNARK and the circuit fits."""
    card = c.card
    if not card.zk_commitment:
        raise InputError(f"dataset {card.name!r} is not offered with a SNARK (linear datasets of at most "
                         f"{ZK_MAX_VALUES} values are); use proof kind 'spot'")
    if s.cfg.weight_bits != card.zk_weight_bits:
        raise InputError(f"the SNARK of dataset {card.name!r} is for weight_bits {card.zk_weight_bits}, the session "
                         f"asks {s.cfg.weight_bits}")
    total = constraint_breakdown(card.num_rows, card.num_features, s.cfg, s.cfg.num_steps(card.num_rows))["total"]
    if total > limits.max_constraints:
        raise LimitExceeded(f"the SNARK of this session has {total} constraints, over the trainer's limit of "
                            f"{limits.max_constraints}; use fewer epochs or a larger batch")


def check_key_header(first: bytes, s) -> None:
    """The declared key is for this session's private-data circuit (constraints, public inputs)."""
    from protocol.snark import keys_io

    from .upload import key_header

    _, n_constraints, _, vkb = key_header(first)
    if not first.startswith(keys_io.MAGIC_POWERS):
        raise InputError("the proving key carries no powers of tau: the trainer cannot check it is well formed "
                         "before proving its private data (docs/SNARK.md section 8.4); run the setup with powers")
    n, d = s.shape
    want = constraint_breakdown(n, d, s.cfg, s.cfg.num_steps(n))["total"]
    if n_constraints != want:
        raise InputError(f"the proving key is for a circuit of {n_constraints} constraints; this session's "
                         f"private-data circuit has {want}")
    try:
        vk = snarkjs_io.vk_from_bytes(vkb)
    except ValueError as e:
        raise InputError(f"the proving key's verifying key is malformed: {e}") from None
    if vk.n_public != 2 * (d + 1) + 2:
        raise InputError(f"the proving key's verifying key has {vk.n_public} public inputs; this session's circuit "
                         f"has {2 * (d + 1) + 2}")


def accept_key(s, pk) -> None:
    """Before the secret rows touch any group operation: the key must be well formed for this session's circuit
    (docs/SNARK.md section 8.4). Raises KeyRefused."""
    batches, _ = schedule_of(s)
    try:
        check_proving_key(pk, zk_session.circuit(*s.shape, batches, s.cfg))
    except ProvingKeyRejected as e:
        raise KeyRefused(f"the trainer refuses this proving key: it is not well formed, so proving its private "
                         f"data with it could leak the data ({e}); run the setup again with a vtrain client") from None


def private_proof(s) -> tuple[list[int], object]:
    """The session's zero-knowledge proof on the committed rows, with fresh blinding (r, s) and projected onto the
    prime-order subgroups: (public inputs, proof). prover/proving.py verifies it under the client's key and
    signs it."""
    c = s.trainer_data
    batches, theta0 = schedule_of(s)
    binding = snark_session.session_binding(s.session_statement)
    cs, witness, public = build_private_circuit(*s.shape, batches, s.cfg, X=c.X.tolist(), Y=c.Y.tolist(),
                                                theta0=theta0, binding=binding, blinding=c.zk_blinding)
    return public, project_proof(groth16.prove_random(s.pk, cs, witness))  # the key was checked on arrival
