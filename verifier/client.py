"""The client side of a session: the client's seeds, the record it commits to, retries of a busy trainer, and
the verdict (``audit.verify_transcript`` applied to the recorded transcript). The parts: connection.py (channel,
errors), session_flow.py (the protocol flow), upload.py (the rows), train_stream.py (the Train stream),
proof_request.py (SNARK setup, the Prove request)."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import grpc

from protocol import row_encoding
from protocol.dataset import Standardization, Table, quantized_rows
from protocol.errors import VerificationError
from protocol.evidence import RANDOMNESS_FIXED, RANDOMNESS_OS, client_binding, client_record
from protocol.hashing import tagged_hash
from protocol.merkle import default_rows_per_leaf
from protocol.snark import session as snark_session
from protocol.training import TrainConfig
from protocol.transcript import FORMAT

from .audit import Verdict, rejected_verdict, verify_transcript
from .connection import (
    Refused,
    SessionAborted,
    SessionIncomplete,
    aborted,
    backoff_seconds,
    open_channel,
    preflight,
)
from .progress import SILENT, Progress
from .session_flow import flow
from .upload import upload_rows

__all__ = ["ClientSeeds", "Refused", "SessionAborted", "SessionIncomplete", "aborted", "backoff_seconds",
           "drive_session", "open_channel", "preflight", "run_session", "upload_rows"]


@dataclass
class ClientSeeds:
    """The client's secrets for one session. The audit seed and the nonce secret always come from the OS
    CSPRNG; the training seed too, unless the user fixed it (``--insecure-fixed-seed``, tests and demos)."""

    training_seed: bytes
    audit_seed: bytes
    nonce_secret: bytes
    randomness: str = RANDOMNESS_OS

    @classmethod
    def fresh(cls) -> ClientSeeds:
        return cls(os.urandom(32), os.urandom(32), os.urandom(32))

    @classmethod
    def fixed_training(cls, master: bytes) -> ClientSeeds:
        """``--insecure-fixed-seed``: the training seed (batch order, initial state) derived from ``master``, so
        a run can be repeated; the audit seed and the nonce secret stay fresh, so the challenge is still
        unpredictable. The verdict says the randomness was fixed by the user."""
        seed = tagged_hash("session-binding", b"client-seed/training", master)
        return cls(seed, os.urandom(32), os.urandom(32), RANDOMNESS_FIXED)


def run_session(channel: grpc.Channel, table: Table, stdz: Standardization, cfg: TrainConfig, *,
                spot_checks: int, seeds: ClientSeeds, trainer_key: bytes | None = None, server_label: str = "",
                progress=None, rows_per_chunk: int | None = None, timeout: float | None = None,
                proof_kind: str = "spot", max_constraints: int | None = None, status=None,
                retries: int = 0, accept_key=None, timings: dict | None = None,
                ui: Progress = SILENT, rows=None, replay_ahead=None) -> tuple[dict, Verdict]:
    """Returns (transcript, verdict). Raises SessionAborted for transport errors or a refused request. ``rows``:
    the table's quantized rows when the caller already has them (``quantized_rows(table, stdz, cfg.frac_bits)``).

    ``accept_key(pub)``, if given, is called with the trainer's key before anything is sent (the trust store);
    it raises to stop the session. The verdict is the transcript's own (spot check or SNARK); the caller runs
    the full replay (verify_transcript with the rows). ``ui`` shows the upload, the SNARK setup and the
    trainer's proving as progress bars (verifier/progress.py).

    ``retries``: a session the trainer refuses as busy (RESOURCE_EXHAUSTED with a retry hint) before the
    training seed is sent (CommitRandomness) is started again, as a new session, up to this many times, after
    ``backoff_seconds``. A refusal after the training seed left the client is never retried with that seed.
    ``replay_ahead``: a verifier.replay_ahead.ReplayAhead, started once the schedule is fixed."""
    cfg.validate()
    if rows is None:
        rows = quantized_rows(table, stdz, cfg.frac_bits)
    n, d = rows.shape[0], rows.shape[1] - 1
    meta = {"source": table.source, "feature_names": table.feature_names, "target": table.target,
            "standardization": stdz.to_dict(), "randomness": seeds.randomness}
    if proof_kind == "snark":
        try:
            snark_session.check_size(cfg, n, d, max_constraints or snark_session.DEFAULT_MAX_CONSTRAINTS)
        except ValueError as e:
            raise SessionAborted(str(e)) from None
    elif proof_kind != "spot":
        raise SessionAborted(f"unknown proof kind {proof_kind!r}")
    # Block data leaves (vtrain/2). The client's own data root is computed while the rows are sent
    # (upload_rows); the client record commits to the data's shape and leaf size, not to its root
    # (docs/PROTOCOL.md §5, "When the client commits to what").
    # Values are sent and hashed at the table's canonical width (protocol/row_encoding.py, committed in the record).
    value_bytes = row_encoding.table_value_bytes(rows)
    rows_per_leaf = default_rows_per_leaf(d, n, spot_checks * cfg.batch_size, value_bytes)
    base: dict = {"format": FORMAT, "server": server_label, "config": cfg.to_dict(), "proof_kind": proof_kind,
                  "client": {"metadata": meta, "nonce_secret": seeds.nonce_secret.hex()},
                  "num_rows": n, "num_features": d, "rows_per_leaf": rows_per_leaf, "value_bytes": value_bytes,
                  "training_seed": seeds.training_seed.hex(), "audit_seed": seeds.audit_seed.hex(),
                  "spot_checks": spot_checks, "statements": {}}
    # Everything the client chose, committed before the trainer picks its session id (docs/PROTOCOL.md §5).
    return drive_session(channel, base, rows, cfg, seeds, spot_checks=spot_checks, trainer_key=trainer_key,
                         progress=progress, rows_per_chunk=rows_per_chunk, timeout=timeout, status=status,
                         retries=retries, accept_key=accept_key, timings=timings, ui=ui, replay_ahead=replay_ahead)


def drive_session(channel: grpc.Channel, base: dict, rows, cfg: TrainConfig, seeds: ClientSeeds, *, spot_checks: int,
                  trainer_key: bytes | None = None, progress=None, rows_per_chunk: int | None = None,
                  timeout: float | None = None, status=None, retries: int = 0, accept_key=None,
                  timings: dict | None = None, ui: Progress = SILENT, replay_ahead=None) -> tuple[dict, Verdict]:
    """Commit the client record ``base`` (through the client nonce), run the session (``rows``: the client's rows
    to upload, or None for the trainer's own dataset named in ``base["trainer_data"]``), retrying a busy trainer
    as run_session describes; returns (transcript, verdict)."""
    proof_kind = base["proof_kind"]
    record = {**client_record(base), "config": base["config"], "proof_kind": proof_kind}
    base["client_nonce"] = client_binding(record, seeds.nonce_secret).hex()
    status = status or (lambda msg: None)
    attempt = 0
    while True:
        tr = copy.deepcopy(base)
        try:
            flow(tr, channel, rows, cfg, seeds, spot_checks=spot_checks, trainer_key=trainer_key, progress=progress,
                  rows_per_chunk=rows_per_chunk, timeout=timeout, status=status, accept_key=accept_key, ui=ui,
                 replay_ahead=replay_ahead)
        except SessionIncomplete as e:
            if "session_id" not in tr:
                raise SessionAborted(str(e)) from None
            tr["incomplete"] = str(e)
            e.transcript = tr
            raise
        except Refused as e:
            # "audit_commitment" is recorded just before CommitRandomness carries the training seed out: from
            # then on a new session with the same seed would let the trainer pick its session id knowing it.
            if attempt >= retries or "audit_commitment" in tr:
                raise
            delay = backoff_seconds(attempt, e.retry_after)
            status(f"the trainer is busy ({e}); new session in {delay:.1f} s (retry {attempt + 1} of {retries})")
            time.sleep(delay)
            attempt += 1
            continue
        except VerificationError as e:
            verdict = rejected_verdict(proof_kind, e)
            tr["verdict"] = verdict.to_dict()
            return tr, verdict
        break
    t0 = time.perf_counter()
    verdict = verify_transcript(tr, compare_recorded=False, live=True)
    if timings is not None:
        timings["spot_check"] = time.perf_counter() - t0
    tr["verdict"] = verdict.to_dict()
    return tr, verdict
