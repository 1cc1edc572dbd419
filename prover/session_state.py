"""A session's record, its states, the trainer's limits, and the errors the session handlers raise.

The servicer (prover/servicer.py) maps each error to its gRPC status code; prover/session.py holds the
handlers that move a ``Session`` through ``State`` in the order of docs/PROTOCOL.md.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from protocol.merkle import MerkleTree
from protocol.training import TrainConfig


class OutOfOrder(Exception):
    """FAILED_PRECONDITION."""


class UnknownSession(Exception):
    """NOT_FOUND."""


class LimitExceeded(Exception):
    """RESOURCE_EXHAUSTED."""


class Denied(Exception):
    """PERMISSION_DENIED."""


class NoProof(Exception):
    """UNIMPLEMENTED: this trainer gives no proof."""


class State(enum.Enum):
    OPENED = "opened"
    DATA_COMMITTED = "data committed"
    RANDOMNESS_COMMITTED = "randomness committed"
    KEY_RECEIVED = "proving key received"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"


@dataclass
class Limits:
    max_message_bytes: int = 64 * 1024 * 1024
    max_rows: int = 1_000_000
    max_features: int = 1024
    max_steps: int = 1_000_000
    max_sessions: int = 16
    idle_timeout_seconds: int = 900
    max_spot_checks: int = 4096
    max_state_values: int = 50_000_000  # (T+1)*P parameters kept for openings (P = outputs*(d+1))
    max_constraints: int = 1 << 16  # largest SNARK circuit proved
    max_key_bytes: int = 128 * 1024 * 1024  # a proving key for 2^16 constraints is ~40 MB
    max_data_bytes: int = 1 << 30  # rows * (features + 1) * 8 held in memory per session
    # admission control (prover/admission.py): slots are held only by work
    max_sessions_per_peer: int = 8
    max_streams: int = 16  # concurrent UploadData / UploadProvingKey streams
    max_streams_per_peer: int = 4
    max_watchers: int = 64  # open Health.Watch and reflection streams (each ~22 KB while idle)
    max_watchers_per_peer: int = 4
    upload_start_seconds: float = 10.0  # an opened session that has not started its upload by then is dropped
    receive_timeout_seconds: float = 30.0  # a client stream silent this long is ended (DEADLINE_EXCEEDED)
    memory_budget_bytes: int = 8 << 30  # everything sessions may hold at their peak, together
    # Sessions training at once (the others wait their turn, holding only their rows). Training holds the GIL
    # for most of each step, so a second one adds little throughput on a small machine but a float64 copy of
    # its rows (measured, 8 x 100,000 x 20 rows: peak RSS 1.85x the data with 1, 2.6x with 4).
    max_training: int = 1


@dataclass
class Session:
    session_id: bytes
    cfg: TrainConfig
    proof_kind: str
    client_nonce: bytes
    server_nonce: bytes
    state: State = State.OPENED
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    data_tree: MerkleTree | None = None
    training_seed: bytes = b""
    audit_commitment: bytes = b""
    spot_checks: int = 0
    record: dict = field(default_factory=dict)
    session_statement: bytes = b""
    pk: object = None
    snark: dict = field(default_factory=dict)
    strategy: object = None
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    peer: str = "local"
    opened_at: float = field(default_factory=time.monotonic)
    reserved: int = 0  # bytes of the memory budget this session holds
    rows_per_leaf: int = 1
    stored: object = None  # upload.StoredRows until training lays the rows out as X, Y
    shape: tuple = (0, 0)  # (n, d) once the data is committed
    ended: str = ""  # why the session ended (set once, when its resources are released)
    trainer_data: object = None  # prover.trainer_data.CommittedDataset: the session trains on the trainer's data
    state_secret: bytes = b""  # trainer data: the per-session secret of the state-leaf salts (never sent)
