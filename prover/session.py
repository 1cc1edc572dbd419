"""Session state machine and the plain handlers behind the gRPC methods.

Each handler takes request data and returns domain results, raising the errors below; the servicer maps
them to status codes. Order per session: OpenSession -> UploadData -> CommitRandomness -> Train -> Prove.
"""

from __future__ import annotations

import enum
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import constant_time

from protocol import convert
from protocol.errors import InputError, TranscriptFormatError, VerificationError
from protocol.evidence import openings_hash
from protocol.merkle import MerkleTree, data_leaves, model_hash
from protocol.prg import SeedContext, challenge_steps, seed_commitment
from protocol.snark import groth16, keys_io, snarkjs_io
from protocol.snark import session as snark_session
from protocol.statements import PROTOCOL_VERSION, Statement, sign
from protocol.training import MODELS, Schedule, TrainConfig

from .adversaries import Honest
from .trainer import ProgressEvent, run_training

PROOF_KINDS = ("spot", "snark")


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
    max_state_values: int = 50_000_000  # (T+1)*(d+1) parameters kept for openings
    max_constraints: int = 1 << 16  # largest SNARK circuit proved
    max_key_bytes: int = 128 * 1024 * 1024  # a proving key for 2^16 constraints is ~40 MB
    max_data_bytes: int = 1 << 30  # rows * (features + 1) * 8 held in memory per session


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


class SessionManager:
    def __init__(self, key, public_key: bytes, limits: Limits, strategy_factory=Honest, clock=time.monotonic):
        self.key, self.public_key, self.limits = key, public_key, limits
        self.strategy_factory = strategy_factory
        self.clock = clock
        self._sessions: dict[bytes, Session] = {}
        self._lock = threading.Lock()

    # -- bookkeeping -------------------------------------------------------------------------------
    def _expire(self) -> None:
        now = self.clock()
        with self._lock:
            for sid in [s for s, v in self._sessions.items()
                        if now - v.last_used > self.limits.idle_timeout_seconds and not v.lock.locked()]:
                del self._sessions[sid]

    def get(self, session_id: bytes) -> Session:
        self._expire()
        with self._lock:
            s = self._sessions.get(bytes(session_id))
        if s is None:
            raise UnknownSession(f"unknown session {bytes(session_id).hex() or '(empty id)'}: it never existed, "
                                 f"was closed, or expired after {self.limits.idle_timeout_seconds} s idle")
        s.last_used = self.clock()
        return s

    @staticmethod
    def _expect(s: Session, state: State, call: str) -> None:
        if s.state is not state:
            raise OutOfOrder(f"{call} is not allowed now: the session is in state '{s.state.value}', "
                             f"{call} needs '{state.value}' (order: OpenSession, UploadData, CommitRandomness, "
                             f"Train, Prove)")

    def session_count(self) -> int:
        self._expire()
        with self._lock:
            return len(self._sessions)

    # -- handlers ----------------------------------------------------------------------------------
    def info(self) -> dict:
        return {"protocol_version": PROTOCOL_VERSION, "public_key": self.public_key, "models": list(MODELS),
                "proof_kinds": list(PROOF_KINDS), "limits": self.limits}

    def open_session(self, cfg: TrainConfig, client_nonce: bytes, proof_kind: str) -> tuple[Session, bytes, bytes]:
        cfg.validate()
        if len(client_nonce) != 32:
            raise InputError(f"client nonce must be 32 bytes, got {len(client_nonce)}")
        kind = proof_kind or "spot"
        if kind not in PROOF_KINDS:
            raise InputError(f"proof kind {proof_kind!r} is not offered; this trainer offers {', '.join(PROOF_KINDS)}")
        if kind == "snark" and cfg.model != "linear":
            raise InputError("the SNARK proof covers linear regression only; use proof kind 'spot'")
        self._expire()
        with self._lock:
            if len(self._sessions) >= self.limits.max_sessions:
                raise LimitExceeded(f"the trainer already has {len(self._sessions)} open sessions (limit "
                                    f"{self.limits.max_sessions}); retry later or close finished sessions")
            sid = secrets.token_bytes(16)
            s = Session(sid, cfg, kind, bytes(client_nonce), secrets.token_bytes(32))
            self._sessions[sid] = s
        data, sig = sign(self.key, Statement("session", sid, {
            "protocol_version": PROTOCOL_VERSION, "trainer_key": self.public_key, "client_nonce": s.client_nonce,
            "server_nonce": s.server_nonce, "config": cfg.encode(), "proof_kind": kind}))
        s.session_statement = data
        return s, data, sig

    def upload(self, chunks) -> tuple[bytes, bytes]:
        """``chunks``: iterator of (session_id, num_features, total_rows, num_rows, rows_bytes)."""
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            raise InputError("empty upload: no chunks were sent")
        s = self.get(first[0])
        if not s.lock.acquire(blocking=False):
            raise OutOfOrder("another call on this session is in progress")
        try:
            self._expect(s, State.OPENED, "UploadData")
            return self._upload_locked(s, first, chunks)
        finally:
            s.lock.release()

    def _check_declared(self, d: int, total: int) -> None:
        lim = self.limits
        if not 1 <= d <= lim.max_features:
            raise (LimitExceeded if d > lim.max_features else InputError)(
                f"{d} features: must be between 1 and {lim.max_features} (server limit)")
        if total > lim.max_rows:
            raise LimitExceeded(f"{total} rows exceed the server limit of {lim.max_rows}")
        if total * (d + 1) * 8 > lim.max_data_bytes:
            raise LimitExceeded(f"{total} rows of {d} features ({total * (d + 1) * 8} bytes) exceed the server's "
                                f"data limit of {lim.max_data_bytes} bytes")
        if total < 1:
            raise InputError("the upload declares zero rows; send at least one batch of rows")

    def _upload_locked(self, s: Session, first, chunks) -> tuple[bytes, bytes]:
        _, d, total, _, _ = first
        self._check_declared(d, total)
        parts: list[np.ndarray] = []
        leaves: list[bytes] = []
        got = 0
        for i, (sid, nf, _tot, nr, raw) in enumerate(itertools.chain([first], chunks)):
            if i and (bytes(sid) not in (b"", s.session_id) or nf != d):
                raise InputError("every chunk must carry the same session id and feature count")
            if len(raw) != nr * (d + 1) * 8:
                raise InputError(f"chunk says {nr} rows of {d}+1 int64 values ({nr * (d + 1) * 8} bytes) but carries "
                                 f"{len(raw)} bytes")
            got += nr
            if got > total:
                raise InputError(f"received more rows ({got}) than declared ({total})")
            part = np.frombuffer(raw, dtype="<i8").reshape(nr, d + 1)
            parts.append(part)
            leaves.extend(data_leaves(part, first_index=got - nr))  # hash while the next chunk arrives
        if got != total:
            raise InputError(f"upload ended after {got} rows, but {total} were declared")
        rows = np.concatenate(parts).astype(np.int64)
        bound = 1 << (s.cfg.weight_bits - 1)
        if rows.min() < -bound or rows.max() >= bound:
            raise InputError(f"data values must lie in [-2^{s.cfg.weight_bits - 1}, 2^{s.cfg.weight_bits - 1}) "
                             f"in fixed point")
        if total < s.cfg.batch_size:
            raise InputError(f"{total} rows are fewer than one batch of {s.cfg.batch_size}")
        T = s.cfg.num_steps(total)
        if T > self.limits.max_steps:
            raise LimitExceeded(f"{T} training steps exceed the server limit of {self.limits.max_steps}; "
                                f"use fewer epochs or a larger batch")
        if s.proof_kind == "snark":
            try:
                snark_session.check_size(s.cfg, total, d, self.limits.max_constraints)
            except ValueError as e:
                raise LimitExceeded(str(e)) from None
        if (T + 1) * (d + 1) > self.limits.max_state_values:
            raise LimitExceeded(f"{T + 1} states of {d + 1} parameters exceed the server's state memory limit")
        s.data_tree = MerkleTree(leaves)
        s.X, s.Y = np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, -1])
        data, sig = sign(self.key, Statement("data", s.session_id, {
            "data_root": s.data_tree.root, "num_rows": total, "num_features": d}))
        s.state = State.DATA_COMMITTED
        return data, sig

    def commit_randomness(self, sid: bytes, training_seed: bytes, audit_commitment: bytes, spot_checks: int):
        s = self.get(sid)
        with s.lock:
            self._expect(s, State.DATA_COMMITTED, "CommitRandomness")
            if len(training_seed) != 32 or len(audit_commitment) != 32:
                raise InputError("training seed and audit commitment must be 32 bytes each")
            if not 1 <= spot_checks <= self.limits.max_spot_checks:
                raise InputError(f"spot checks must be between 1 and {self.limits.max_spot_checks}")
            s.training_seed, s.audit_commitment, s.spot_checks = bytes(training_seed), bytes(audit_commitment), spot_checks
            data, sig = sign(self.key, Statement("randomness", s.session_id, {
                "data_root": s.data_tree.root, "training_seed": s.training_seed,
                "audit_commitment": s.audit_commitment, "spot_checks": spot_checks}))
            s.state = State.RANDOMNESS_COMMITTED
            return data, sig

    def upload_proving_key(self, chunks) -> bytes:
        """``chunks``: iterator of (session_id, total_bytes, data). Returns the vk hash."""
        s, parts, got, total = None, [], 0, None
        for sid, tot, data in chunks:
            if s is None:
                s = self.get(sid)
                with s.lock:
                    self._expect(s, State.RANDOMNESS_COMMITTED, "UploadProvingKey")
                    if s.proof_kind != "snark":
                        raise OutOfOrder("UploadProvingKey belongs to proof kind 'snark'; this session agreed on "
                                         f"{s.proof_kind!r}")
                total = tot
                if not 0 < total <= self.limits.max_key_bytes:
                    raise LimitExceeded(f"a proving key of {total} bytes is over the limit of "
                                        f"{self.limits.max_key_bytes} bytes")
            got += len(data)
            if got > total:
                raise InputError(f"received more proving-key bytes ({got}) than declared ({total})")
            parts.append(bytes(data))
        if s is None or got != total:
            raise InputError(f"the proving key upload ended after {got} of {total} bytes")
        try:
            pk = keys_io.pk_from_bytes(b"".join(parts))
        except TranscriptFormatError as e:
            raise InputError(str(e)) from None
        with s.lock:
            self._expect(s, State.RANDOMNESS_COMMITTED, "UploadProvingKey")
            s.pk = pk
            s.state = State.KEY_RECEIVED
        return snark_session.vk_hash(pk.vk)

    def train(self, sid: bytes):
        """Generator of trainer events (see prover.trainer)."""
        s = self.get(sid)
        if not s.lock.acquire(blocking=False):
            raise OutOfOrder("another call on this session is in progress")
        try:
            self._expect(s, State.KEY_RECEIVED if s.proof_kind == "snark" else State.RANDOMNESS_COMMITTED, "Train")
            s.state = State.TRAINING
            ctx = SeedContext(s.session_id, s.data_tree.root, s.training_seed)
            completed = False
            try:
                s.strategy = self.strategy_factory()
                s.strategy.observe({"session_id": s.session_id, "data_root": s.data_tree.root,
                                    "training_seed": s.training_seed, "audit_commitment": s.audit_commitment,
                                    "spot_checks": s.spot_checks, "num_steps": s.cfg.num_steps(s.X.shape[0])})
                yield from run_training(key=self.key, session_id=s.session_id, X=s.X, Y=s.Y, cfg=s.cfg, ctx=ctx,
                                        strategy=s.strategy, record=s.record)
                if s.proof_kind == "snark":
                    yield from self._prove_snark(s, ctx)
                completed = True
            finally:
                s.state = State.TRAINED if completed else State.FAILED
                s.last_used = self.clock()
        finally:
            s.lock.release()

    def _prove_snark(self, s: Session, ctx: SeedContext):
        """Build this session's circuit with the honest witness and prove it with the client's key."""
        sched = Schedule(ctx, s.cfg, s.X.shape[0], s.X.shape[1])
        yield ProgressEvent(0, 1, 0, float("nan"), phase="proving")
        cs, witness, public = snark_session.build(s.X, s.Y, sched, s.cfg, [int(v) for v in sched.initial_state()],
                                                  snark_session.session_binding(s.session_statement))
        proof = groth16.prove_random(s.pk, cs, witness)
        try:
            groth16.verify(s.pk.vk, public, proof)  # never send a proof that does not verify under the client's key
        except VerificationError as e:
            raise InputError(f"the proving key the client sent does not yield proofs that verify under its own "
                             f"verifying key ({e}); run the setup again") from None
        rec = s.record["result"]
        data, sig = sign(self.key, Statement("snark", s.session_id, {
            "vk_hash": snark_session.vk_hash(s.pk.vk), "proof_hash": snark_session.proof_hash(proof),
            "model_hash": model_hash(rec.final_model, rec.extras_json)}))
        s.snark = {"proof": snarkjs_io.proof_to_bytes(proof), "statement": data, "signature": sig}
        s.pk = None  # large; no longer needed
        yield ProgressEvent(1, 1, 0, float("nan"), phase="proving")

    def prove(self, sid: bytes, audit_seed: bytes, kind: str):
        s = self.get(sid)
        with s.lock:
            self._expect(s, State.TRAINED, "Prove")
            if not getattr(s.strategy, "offers_proof", True):
                raise NoProof("this trainer does not provide proofs of training")
            if (kind or "spot") != s.proof_kind:
                raise InputError(f"this session agreed on proof kind {s.proof_kind!r}, not {kind!r}")
            if len(audit_seed) != 32:
                raise InputError("the audit seed must be 32 bytes")
            if not constant_time.bytes_eq(seed_commitment(audit_seed, s.session_id), s.audit_commitment):
                raise Denied("the revealed audit seed does not match the commitment made before training")
            s.strategy.observe_audit_seed(bytes(audit_seed))
            if s.proof_kind == "snark":
                return s.snark
            rec = s.record["result"]
            T = rec.states.shape[0] - 1
            steps = challenge_steps(s.session_id, rec.tree.root, audit_seed, s.spot_checks, T)
            sched_ctx = SeedContext(s.session_id, s.data_tree.root, s.training_seed)
            sched = Schedule(sched_ctx, s.cfg, rec.X.shape[0], rec.X.shape[1])
            openings = []
            for t in steps:
                idx = sched.batch(t)
                rows = [(int(i), np.concatenate([rec.X[i], [rec.Y[i]]]), s.data_tree.proof(int(i))) for i in idx]
                openings.append({"step": t, "state_before": rec.states[t - 1], "state_after": rec.states[t],
                                 "proof_before": rec.tree.proof(t - 1), "proof_after": rec.tree.proof(t),
                                 "rows": rows})
            # sign what is sent, in its JSON form (the form the client records and an auditor re-hashes)
            sent = [convert.opening_from_proto(convert.opening_to_proto(op)) for op in openings]
            data, sig = sign(self.key, Statement("openings", s.session_id, {
                "audit_seed": bytes(audit_seed), "openings_hash": openings_hash(audit_seed, sent)}))
            return openings, (data, sig)

    def close(self, sid: bytes) -> None:
        with self._lock:
            self._sessions.pop(bytes(sid), None)
