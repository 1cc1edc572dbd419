"""Session state machine and the plain handlers behind the gRPC methods.

Each handler takes request data and returns domain results, raising the errors of prover/session_state.py
(which also holds ``Session``, ``State`` and ``Limits``); the servicer maps them to status codes. Order per
session: OpenSession -> UploadData -> CommitRandomness -> Train -> Prove. The proofs themselves (spot openings,
Groth16) are built in prover/proving.py; the upload streams in prover/upload.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import threading
import time

from cryptography.hazmat.primitives import constant_time

from protocol.errors import InputError, TranscriptFormatError
from protocol.prg import SeedContext, seed_commitment
from protocol.snark import keys_io
from protocol.snark import session as snark_session
from protocol.statements import PROTOCOL_VERSION, Statement, sign
from protocol.training import MODELS, TrainConfig

from . import memory
from .admission import Admission
from .adversaries import Honest
from .data_tree import RowTree, session_leaf_hashes
from .proving import prove_snark, spot_openings
from .session_state import (  # the servicer, CLI and tests import these from here too
    Denied,
    LimitExceeded,
    Limits,
    NoProof,
    OutOfOrder,
    Session,
    State,
    UnknownSession,
)
from .trainer import ProgressEvent, run_training
from .upload import KEY_FACTOR, DataReceiver, DataUpload, KeyUpload, check_key_header, data_reservation

log = logging.getLogger("vtrain.prover")

PROOF_KINDS = ("spot", "snark")


class SessionManager:
    def __init__(self, key, public_key: bytes, limits: Limits, strategy_factory=Honest, clock=time.monotonic):
        self.key, self.public_key, self.limits = key, public_key, limits
        self.strategy_factory = strategy_factory
        self.clock = clock
        self._sessions: dict[bytes, Session] = {}
        self._lock = threading.Lock()
        self.admission = Admission(limits)
        self.trainer_data = None  # prover.trainer_data.TrainerDatasets when serving datasets of its own

    # -- bookkeeping -------------------------------------------------------------------------------
    def _expire(self) -> None:
        now, lim = self.clock(), self.limits
        with self._lock:
            gone = []
            for sid, v in list(self._sessions.items()):
                if v.lock.locked():
                    continue
                if v.state is State.OPENED and now - v.opened_at > lim.upload_start_seconds:
                    gone.append((v, f"expired: no upload started within {lim.upload_start_seconds:g} s"))
                elif now - v.last_used > lim.idle_timeout_seconds:
                    gone.append((v, f"expired: idle for {lim.idle_timeout_seconds} s"))
            for v, _ in gone:
                del self._sessions[v.session_id]
        for v, why in gone:
            self._end(v, why)

    def expire(self) -> None:
        """Drop sessions past their start or idle timeout (called periodically by the server)."""
        self._expire()

    def _end(self, s: Session, why: str) -> None:
        """Release a session's slot and memory once (it is no longer in the table)."""
        with self._lock:
            if s.ended:
                return
            s.ended = why
        s.X = s.Y = s.stored = s.data_tree = s.pk = None
        s.record.clear()
        self.admission.release_session(s.peer, s.reserved)
        memory.trim()
        log.info("session %s end peer=%s state=%s reason=%s", s.session_id.hex(), s.peer, s.state.value, why,
                 extra={"event": "session_end", "session": s.session_id.hex(), "peer": s.peer, "reason": why})

    @contextlib.contextmanager
    def _busy(self, s: Session):
        """Hold the session for one call; a second concurrent call gets FAILED_PRECONDITION at once."""
        if not s.lock.acquire(blocking=False):
            raise OutOfOrder("another call on this session is in progress")
        try:
            yield
        finally:
            self._release_call(s)

    def get(self, session_id: bytes) -> Session:
        self._expire()
        with self._lock:
            s = self._sessions.get(bytes(session_id))
        if s is None:
            raise UnknownSession(f"unknown session {bytes(session_id).hex() or '(empty id)'}: it never existed, "
                                 f"was closed, or expired (no upload within {self.limits.upload_start_seconds:g} s "
                                 f"of opening, or {self.limits.idle_timeout_seconds} s idle)")
        s.last_used = self.clock()
        return s

    def _unreserve(self, s: Session, nbytes: int) -> None:
        with self._lock:
            if s.ended:
                return
            s.reserved -= nbytes
        self.admission.unreserve(nbytes)
        memory.trim()

    def _release_call(self, s: Session) -> None:
        """End a call that held the session; a session closed meanwhile is released now."""
        s.last_used = self.clock()
        s.lock.release()
        if s.session_id not in self._sessions:
            self._end(s, "closed by the client")

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
                "proof_kinds": list(PROOF_KINDS), "limits": self.limits,
                "datasets": self.trainer_data.cards() if self.trainer_data is not None else []}

    def open_session(self, cfg: TrainConfig, client_nonce: bytes, proof_kind: str,
                     peer: str = "local") -> tuple[Session, bytes, bytes]:
        cfg.validate()
        if len(client_nonce) != 32:
            raise InputError(f"client nonce must be 32 bytes, got {len(client_nonce)}")
        kind = proof_kind or "spot"
        if kind not in PROOF_KINDS:
            raise InputError(f"proof kind {proof_kind!r} is not offered; this trainer offers {', '.join(PROOF_KINDS)}")
        if kind == "snark" and cfg.model != "linear":
            raise InputError("the SNARK proof covers linear regression only; use proof kind 'spot'")
        self._expire()
        self.admission.admit_session(peer)
        with self._lock:
            sid = secrets.token_bytes(16)
            s = Session(sid, cfg, kind, bytes(client_nonce), secrets.token_bytes(32), peer=peer,
                        opened_at=self.clock(), last_used=self.clock())
            self._sessions[sid] = s
        log.info("session %s start peer=%s model=%s epochs=%d proof=%s", sid.hex(), peer, cfg.model, cfg.epochs,
                 kind, extra={"event": "session_start", "session": sid.hex(), "peer": peer})
        data, sig = sign(self.key, Statement("session", sid, {
            "protocol_version": PROTOCOL_VERSION, "trainer_key": self.public_key, "client_nonce": s.client_nonce,
            "server_nonce": s.server_nonce, "config": cfg.encode(), "proof_kind": kind}))
        s.session_statement = data
        return s, data, sig

    def upload(self, chunks, peer: str = "local") -> tuple[bytes, bytes]:
        """``chunks``: iterator of (session_id, num_features, total_rows, num_rows, rows_bytes[, rows_per_leaf[,
        value_bytes]]).
        The synchronous form of begin_upload / DataUpload.add / DataUpload.finish."""
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            raise InputError("empty upload: no chunks were sent")
        up = self.begin_upload(*first)
        try:
            up.add(*first)
            for c in chunks:
                up.add(*c)
            return up.finish()
        finally:
            up.close()

    def begin_upload(self, sid: bytes, d: int, total: int, _nr=0, _raw=b"", rows_per_leaf: int = 1,
                     value_bytes: int = 8) -> DataUpload:
        """Checks the first chunk's declarations and reserves the session's memory before any row is stored;
        the session stays busy until DataUpload.close."""
        s = self.get(sid)
        if not s.lock.acquire(blocking=False):
            raise OutOfOrder("another call on this session is in progress")
        try:
            self._expect(s, State.OPENED, "UploadData")
            self._check_declared(d, total)
            DataReceiver.check_leaf_size(d, rows_per_leaf)
            w = DataReceiver.check_value_bytes(value_bytes)
            need = self._admit_size(s, total, d, rows_per_leaf)
            return DataUpload(self, s, DataReceiver(total, d, rows_per_leaf, 1 << (s.cfg.weight_bits - 1), w), need)
        except BaseException:
            s.lock.release()
            raise

    def _admit_size(self, s: Session, total: int, d: int, rows_per_leaf: int, snark_check: bool = True) -> int:
        """The session's size within the limits; reserves (and returns) the memory it needs. ``snark_check``:
        the size of the client-data SNARK circuit (a trainer-data session checks its own circuit)."""
        if total < s.cfg.batch_size:
            raise InputError(f"{total} rows are fewer than one batch of {s.cfg.batch_size}")
        T = s.cfg.num_steps(total)
        if T > self.limits.max_steps:
            raise LimitExceeded(f"{T} training steps exceed the server limit of {self.limits.max_steps}; "
                                f"use fewer epochs or a larger batch")
        if s.proof_kind == "snark" and snark_check:
            try:
                snark_session.check_size(s.cfg, total, d, self.limits.max_constraints)
            except ValueError as e:
                raise LimitExceeded(str(e)) from None
        P = s.cfg.num_params(d)
        if (T + 1) * P > self.limits.max_state_values:
            raise LimitExceeded(f"{T + 1} states of {P} parameters exceed the server's state memory limit")
        need = data_reservation(total, d, T, rows_per_leaf, P)
        self.admission.reserve(need, f"a session of {total} rows x {d} features, {T} steps")
        s.reserved += need
        return need

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

    def commit_randomness(self, sid: bytes, training_seed: bytes, audit_commitment: bytes, spot_checks: int):
        s = self.get(sid)
        with self._busy(s):
            self._expect(s, State.DATA_COMMITTED, "CommitRandomness")
            if len(training_seed) != 32 or len(audit_commitment) != 32:
                raise InputError("training seed and audit commitment must be 32 bytes each")
            if not 1 <= spot_checks <= self.limits.max_spot_checks:
                raise InputError(f"spot checks must be between 1 and {self.limits.max_spot_checks}")
            if s.trainer_data is not None:  # the trainer's disclosure cap (docs/PROTOCOL.md section 12)
                from .trainer_data import check_reveal

                check_reveal(s, spot_checks)
            s.training_seed, s.audit_commitment, s.spot_checks = bytes(training_seed), bytes(audit_commitment), spot_checks
            data, sig = sign(self.key, Statement("randomness", s.session_id, {
                "data_root": s.data_tree.root, "training_seed": s.training_seed,
                "audit_commitment": s.audit_commitment, "spot_checks": spot_checks}))
            s.state = State.RANDOMNESS_COMMITTED
            return data, sig

    def upload_proving_key(self, chunks) -> bytes:
        """``chunks``: iterator of (session_id, total_bytes, data). Returns the vk hash. The synchronous form of
        begin_key_upload / KeyUpload.add / KeyUpload.finish."""
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            raise InputError("the proving key upload ended after 0 bytes")
        up = self.begin_key_upload(*first)
        try:
            up.add(first[2])
            for c in chunks:
                up.add(c[2])
            return up.finish()
        finally:
            up.close()

    def begin_key_upload(self, sid: bytes, total: int, first: bytes) -> KeyUpload:
        """The header in the first chunk must describe this session's circuit, and the memory the parsed key takes
        is reserved, before any byte is kept; the session stays busy until KeyUpload.close."""
        s = self.get(sid)
        if not s.lock.acquire(blocking=False):
            raise OutOfOrder("another call on this session is in progress")
        try:
            self._expect(s, State.RANDOMNESS_COMMITTED, "UploadProvingKey")
            if s.proof_kind != "snark":
                raise OutOfOrder("UploadProvingKey belongs to proof kind 'snark'; this session agreed on "
                                 f"{s.proof_kind!r}")
            if not 0 < total <= self.limits.max_key_bytes:
                raise LimitExceeded(f"a proving key of {total} bytes is over the limit of "
                                    f"{self.limits.max_key_bytes} bytes")
            if s.trainer_data is not None:  # the private-data circuit (prover/trainer_data_snark.py)
                from .trainer_data_snark import check_key_header as check_private_header

                check_private_header(bytes(first), s)
            else:
                check_key_header(bytes(first), total, s.cfg, *s.shape)
            need = (KEY_FACTOR + 1) * total
            self.admission.reserve(need, f"a proving key of {total} bytes")
            s.reserved += need
            return KeyUpload(self, s, total, need)
        except BaseException:
            s.lock.release()
            raise

    def precheck_train(self, sid: bytes) -> None:
        """Train's errors that need no training slot (unknown session, busy, wrong state), answered at once."""
        s = self.get(sid)
        if s.lock.locked():
            raise OutOfOrder("another call on this session is in progress")
        self._expect(s, State.KEY_RECEIVED if s.proof_kind == "snark" else State.RANDOMNESS_COMMITTED, "Train")

    def train(self, sid: bytes):
        """Generator of trainer events (see prover.trainer)."""
        s = self.get(sid)
        with self._busy(s):
            self._expect(s, State.KEY_RECEIVED if s.proof_kind == "snark" else State.RANDOMNESS_COMMITTED, "Train")
            s.state = State.TRAINING
            ctx = SeedContext(s.session_id, s.data_tree.root, s.training_seed)
            completed = False
            try:
                s.strategy = self.strategy_factory()
                if s.X is None:  # lay the rows out once (the chunks are freed as they are copied)
                    s.X, s.Y = s.stored.arrays()
                    s.stored = None
                s.strategy.observe({"session_id": s.session_id, "data_root": s.data_tree.root,
                                    "training_seed": s.training_seed, "audit_commitment": s.audit_commitment,
                                    "spot_checks": s.spot_checks, "num_steps": s.cfg.num_steps(s.X.shape[0])})
                leaf_fn = None
                if s.trainer_data is not None:  # hiding state leaves (docs/PROTOCOL.md section 12)
                    from .trainer_data import state_leaf_fn

                    leaf_fn = state_leaf_fn(s, s.cfg.num_steps(s.X.shape[0]))
                events = s.strategy.stream(run_training(key=self.key, session_id=s.session_id, X=s.X, Y=s.Y,
                                                        cfg=s.cfg, ctx=ctx, strategy=s.strategy, record=s.record,
                                                        leaf_fn=leaf_fn))
                if s.trainer_data is not None:  # the display loss is a function of private, unopened rows
                    events = _without_loss(events)
                yield from events
                if s.proof_kind == "snark":
                    yield from prove_snark(self.key, s, ctx)
                completed = True
            finally:
                s.state = State.TRAINED if completed else State.FAILED
                s.last_used = self.clock()

    def prove(self, sid: bytes, audit_seed: bytes, kind: str):
        s = self.get(sid)
        with self._busy(s):
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
            return spot_openings(self.key, s, audit_seed)

    def close(self, sid: bytes) -> None:
        with self._lock:
            s = self._sessions.pop(bytes(sid), None)
        if s is not None and not s.lock.locked():  # a busy session is released when its call ends (_busy)
            self._end(s, "closed by the client")

    # -- hooks of the upload calls (prover/upload.py) ----------------------------------------------------
    def commit_data(self, s: Session, rx: DataReceiver) -> tuple[bytes, bytes]:
        """All rows arrived: keep them, sign the data statement."""
        tree, s.stored = rx.finish()
        # the rows are kept anyway: the tree's lowest levels are re-hashed from them per proof (prover/data_tree.py)
        s.data_tree, s.rows_per_leaf, s.shape = RowTree(tree, session_leaf_hashes(s, rx.d, rx.R, rx.w)), rx.R, (rx.n, rx.d)
        data, sig = sign(self.key, Statement("data", s.session_id, {
            "data_root": tree.root, "num_rows": rx.n, "num_features": rx.d, "rows_per_leaf": rx.R,
            "value_bytes": rx.w}))
        s.state = State.DATA_COMMITTED
        return data, sig

    def keep_key(self, s: Session, raw: bytes) -> bytes:
        """The whole proving key arrived: parse it, keep it; returns the vk hash."""
        try:
            pk = keys_io.pk_from_bytes(raw)
        except TranscriptFormatError as e:
            raise InputError(str(e)) from None
        self._expect(s, State.RANDOMNESS_COMMITTED, "UploadProvingKey")
        if s.trainer_data is not None:  # subversion zero knowledge: refuse a malformed key before proving with it
            from .trainer_data_snark import accept_key

            accept_key(s, pk)
        s.pk = pk
        s.state = State.KEY_RECEIVED
        return snark_session.vk_hash(pk.vk)


def _without_loss(events):
    """Trainer-owned data (docs/PROTOCOL.md section 12): Progress events with the batch loss replaced by NaN (with
    B = 1 it is the squared residual of one row the client never opened)."""
    for ev in events:
        yield dataclasses.replace(ev, loss=float("nan")) if isinstance(ev, ProgressEvent) else ev
