"""Sessions on the trainer's own data (docs/PROTOCOL.md section 11): the hiding commitment made once at start-up
and reused by every session, the signed data cards GetInfo lists, the UseTrainerData handler, and the salts
that go with the spot-check openings.

A commitment is made once per process, or kept across restarts with ``--salt-file`` (the salts are the secret
that opens the commitment: the file is written 0600); ``--recommit`` draws fresh salts (a new root) anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol.dataset import Table, class_labels, fit_standardization, quantized_rows
from protocol.errors import InputError
from protocol.fileio import write_atomic
from protocol.merkle import MerkleTree
from protocol.snark.zk_session import new_blinding
from protocol.statements import Statement, sign
from protocol.trainer_data import (
    DEFAULT_MAX_REVEAL_PPM,
    DEFAULT_MIN_BATCH,
    SALT_BYTES,
    DataCard,
    fresh_salts,
    hiding_state_leaf,
    salted_tree,
    state_salt,
)
from protocol.training import MODELS

from . import trainer_data_snark as zk_snark
from .session_state import LimitExceeded

log = logging.getLogger("vtrain.prover.trainer_data")

DEFAULT_FRAC_BITS = 16  # the client's default (vtrain-verifier train --frac-bits)
SALT_FILE_FORMAT = "vtrain-salts/1"
MAX_NAME = 256  # characters of a dataset name in UseTrainerData


def add_arguments(parser) -> None:
    parser.add_argument("--dataset-model", action="append", default=[], metavar="NAME=KIND",
                        help="the model kind a --dataset is committed for (linear, logistic, softmax; default: "
                             "from its target: text or two values -> logistic/softmax, few integers (<= 32, <= rows/8) -> softmax, "
                             "else linear)")
    parser.add_argument("--dataset-frac-bits", type=int, default=DEFAULT_FRAC_BITS,
                        help="fixed-point fraction bits of the committed rows (default %(default)s)")
    parser.add_argument("--salt-file", help="keep each dataset's commitment salts here (0600) so a restart signs "
                        "the same dataset roots (default: none: every start commits afresh)")
    parser.add_argument("--max-reveal", type=_fraction, default=DEFAULT_MAX_REVEAL_PPM / 1e6, metavar="FRACTION",
                        help="the largest fraction of a dataset's rows one spot-checked session may open: "
                             "min(K, T) * B <= FRACTION * n, checked when the client commits K (default %(default)s; "
                             "published in the data card)")
    parser.add_argument("--min-batch-private", type=int, default=DEFAULT_MIN_BATCH, metavar="B",
                        help="the smallest batch size a session on a --dataset may use: opened states around an "
                             "unopened step reveal that step's batch-average update (default %(default)s; published "
                             "in the data card)")
    parser.add_argument("--recommit", action="store_true",
                        help="draw fresh salts (a new root per dataset) even if --salt-file holds some")


def _fraction(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}")
    return v


def check_reveal(s, spot_checks: int) -> None:
    """CommitRandomness on a trainer-data session (before any randomness is used): the rows a spot check opens,
    min(K, T) * B, stay within the card's cap (docs/PROTOCOL.md section 12, "Disclosure limits")."""
    if s.proof_kind != "spot":
        return  # a SNARK opens no row
    card = s.trainer_data.card
    n, B = card.num_rows, s.cfg.batch_size
    K = min(spot_checks, s.cfg.num_steps(n))
    if min(K * B, n) * 1_000_000 > card.max_reveal_ppm * n:  # (never more than the n distinct rows)
        fits = card.max_spot_checks(B)
        advice = (f"ask --spot-checks {fits} or fewer" if fits else
                  f"even one step's batch of {B} rows exceeds it: use a smaller --batch-size")
        raise LimitExceeded(f"this trainer opens at most {card.max_reveal_ppm / 1e4:g}% of dataset {card.name!r} "
                            f"({card.num_rows} rows) per session; {K} spot checks of batch {B} would open {K * B} "
                            f"rows ({K * B / n:.1%}): {advice}")


def suited_model(table: Table) -> str:
    """The model kind a dataset's target suits: text labels or two values -> a classifier, a few integer values
    (at most 32, and at most one per 8 rows) -> softmax, anything else -> linear regression."""
    labels = class_labels(table.y)
    if table.y.dtype == object or len(labels) <= 2:
        return "logistic" if len(labels) == 2 else "softmax"
    if all(isinstance(v, int) for v in labels) and len(labels) <= min(32, table.y.shape[0] // 8):
        return "softmax"
    return "linear"


@dataclass
class CommittedDataset:
    card: DataCard
    signed: tuple[bytes, bytes]  # the card statement and its signature
    X: np.ndarray  # quantized features (n, d), int64, read-only (shared by every session)
    Y: np.ndarray
    salts: bytes
    tree: MerkleTree
    zk_blinding: int | None = None  # the Poseidon commitment's blinding (secret), when the SNARK is offered

    def salt(self, i: int) -> bytes:
        return self.salts[SALT_BYTES * i:SALT_BYTES * (i + 1)]


class TrainerDatasets:
    def __init__(self, committed: dict[str, CommittedDataset], schema_only: tuple[str, ...] = ()):
        self.committed = committed
        self.schema_only = tuple(schema_only)  # header-only datasets: two-party training only, no card

    def cards(self) -> list[tuple[str, bytes, bytes]]:
        """GetInfo's list: each committed dataset with its signed card; a schema-only dataset with an empty card
        (the client names it in its refusal instead of calling it unknown)."""
        return sorted([(name, *c.signed) for name, c in self.committed.items()] +
                      [(name, b"", b"") for name in self.schema_only])

    def get(self, name: str) -> CommittedDataset:
        if len(name) > MAX_NAME:  # the name is echoed in the error: keep it within gRPC's status size
            raise InputError(f"a dataset name is at most {MAX_NAME} characters, got {len(name)}")
        c = self.committed.get(name)
        if c is None and name in self.schema_only:
            raise InputError(schema_only_refusal(name))
        if c is None:
            have = ", ".join(sorted(self.committed)) or "none"
            raise InputError(f"this trainer has no dataset {name!r} (it has: {have})")
        return c


def schema_only_refusal(name: str) -> str:
    return (f"dataset {name!r} holds no rows on this trainer (a header-only table, served for two-party training "
            f"only: train-2pc); a session on the trainer's own data needs rows")


def _models(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, kind = spec.partition("=")
        if not sep or kind not in MODELS:
            raise InputError(f"--dataset-model must be NAME=KIND with KIND one of {', '.join(MODELS)}, got {spec!r}")
        out[name.strip()] = kind
    return out


def _load_salts(path: str | None) -> dict:
    if not path or not Path(path).exists():
        return {}
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != SALT_FILE_FORMAT or not isinstance(doc.get("datasets"), dict):
            raise ValueError("not a vtrain salt file")
        return doc["datasets"]
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(f"cannot use --salt-file {path}: {e}") from None


def commit_all(key, public_key: bytes, tables: dict[str, Table], args) -> TrainerDatasets:
    """Quantize each dataset with its own standardization, commit it with salted leaves (fresh salts unless the
    salt file holds salts for exactly these rows), sign its data card."""
    models = _models(getattr(args, "dataset_model", []))
    unknown = set(models) - set(tables)
    if unknown:
        raise InputError(f"--dataset-model names no --dataset: {', '.join(sorted(unknown))}")
    frac_bits = getattr(args, "dataset_frac_bits", DEFAULT_FRAC_BITS)
    salt_file = getattr(args, "salt_file", None)
    stored = {} if getattr(args, "recommit", False) else _load_salts(salt_file)
    max_reveal = round(1e6 * getattr(args, "max_reveal", DEFAULT_MAX_REVEAL_PPM / 1e6))
    min_batch = getattr(args, "min_batch_private", DEFAULT_MIN_BATCH)
    if not 0 < max_reveal <= 1_000_000 or min_batch < 1:
        raise InputError("--max-reveal must be in (0, 1] and --min-batch-private at least 1")
    out, keep, schema_only = {}, {}, []
    for name, table in tables.items():
        if not table.X.shape[0]:  # a schema for two-party training: nothing to commit
            schema_only.append(name)
            continue
        model = models.get(name) or suited_model(table)
        stdz = fit_standardization(table, model)
        rows = quantized_rows(table, stdz, frac_bits)
        digest = hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").tobytes()).hexdigest()
        old = stored.get(name, {})
        reuse = old.get("rows_sha256") == digest and len(old.get("salts", "")) == 2 * SALT_BYTES * rows.shape[0]
        salts = bytes.fromhex(old["salts"]) if reuse else fresh_salts(rows.shape[0])
        tree = salted_tree(rows, salts)
        X, Y = np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, -1])
        blinding, zk = None, (b"", 0)
        if zk_snark.offered(model, *X.shape):  # beside the root: the Poseidon commitment the SNARK opens
            blinding = int(old["zk_blinding"]) if reuse and "zk_blinding" in old else new_blinding()
            zk = (zk_snark.zk_commitment(X, Y, blinding), zk_snark.ZK_WEIGHT_BITS)
        card = DataCard(public_key, name, rows.shape[0], rows.shape[1] - 1, list(table.feature_names), table.target,
                        (model,), frac_bits, stdz.to_dict(), tree.root, zk_commitment=zk[0], zk_weight_bits=zk[1],
                        max_reveal_ppm=max_reveal, min_batch=min_batch)
        signed = sign(key, card.statement())
        X.flags.writeable = Y.flags.writeable = False
        out[name] = CommittedDataset(card, signed, X, Y, salts, tree, blinding)
        keep[name] = {"rows_sha256": digest, "salts": salts.hex(), "data_root": tree.root.hex(),
                      **({"zk_blinding": str(blinding)} if blinding is not None else {})}
        log.info("dataset %s committed for %s: %d rows x %d features, root %s (%s salts)", name, model,
                 rows.shape[0], rows.shape[1] - 1, tree.root.hex(), "kept" if reuse else "fresh")
    if salt_file:
        write_atomic(salt_file, json.dumps({"format": SALT_FILE_FORMAT, "datasets": keep}, sort_keys=True), mode=0o600)
    return TrainerDatasets(out, tuple(schema_only))


def use_trainer_data(m, sid: bytes, name: str) -> tuple[bytes, bytes]:
    """UseTrainerData: the session trains on the named dataset; signs the data statement (the card's root)."""
    from .session import State

    if m.trainer_data is None:
        raise InputError("this trainer serves no datasets of its own (start it with --dataset NAME=PATH)")
    s = m.get(sid)
    with m._busy(s):
        m._expect(s, State.OPENED, "UseTrainerData")
        c = m.trainer_data.get(name)
        card = c.card
        if s.cfg.model not in card.models:
            raise InputError(f"dataset {name!r} is committed for {', '.join(card.models)} (its target encoding), "
                             f"not {s.cfg.model}")
        labels = card.standardization.get("labels")
        if s.cfg.model == "softmax" and labels and s.cfg.num_classes != len(labels):
            raise InputError(f"dataset {name!r} has {len(labels)} classes, the session asks {s.cfg.num_classes}")
        if s.cfg.batch_size < card.min_batch:
            raise InputError(f"dataset {name!r} is served for batch sizes of at least {card.min_batch}: a batch of "
                             f"{s.cfg.batch_size} makes the opened states around an unopened step reveal that step's "
                             f"average update over too few private rows; use --batch-size {card.min_batch} or more")
        if s.cfg.frac_bits != card.frac_bits:
            raise InputError(f"dataset {name!r} is committed at frac_bits {card.frac_bits}, the session asks "
                             f"{s.cfg.frac_bits}")
        bound = 1 << (s.cfg.weight_bits - 1)
        if max(int(np.abs(c.X).max(initial=0)), int(np.abs(c.Y).max(initial=0))) >= bound:
            raise InputError(f"dataset {name!r} has values outside the {s.cfg.weight_bits}-bit range of the session")
        m._check_declared(card.num_features, card.num_rows)
        if s.proof_kind == "snark":
            zk_snark.check_session(m.limits, s, c)
        m._admit_size(s, card.num_rows, card.num_features, 1, snark_check=False)
        s.X, s.Y, s.data_tree, s.rows_per_leaf = c.X, c.Y, c.tree, 1
        s.shape, s.trainer_data = (card.num_rows, card.num_features), c
        s.state_secret = secrets.token_bytes(32)  # hiding state leaves (protocol/trainer_data.py state_salt)
        data, sig = sign(m.key, Statement("data", s.session_id, {
            "data_root": c.tree.root, "num_rows": card.num_rows, "num_features": card.num_features,
            "rows_per_leaf": 1, "value_bytes": 8}))  # salted int64 leaves (section 12), one row each
        s.state = State.DATA_COMMITTED
        log.info("session %s uses dataset %s", s.session_id.hex(), name)
        return data, sig


def add_salts(openings: list[dict], c: CommittedDataset, state_secret: bytes, num_steps: int) -> list[dict]:
    """Each opened row (index, values, leaf index, proof, leaf rows) gets its salt as a sixth element; each
    opening the salts of its two states' hiding leaves (empty for the public states 0 and T)."""
    salt = lambda t: b"" if t in (0, num_steps) else state_salt(state_secret, t)
    for op in openings:
        op["rows"] = [(*r, c.salt(int(r[0]))) for r in op["rows"]]
        op["salt_before"], op["salt_after"] = salt(op["step"] - 1), salt(op["step"])
    return openings


def state_leaf_fn(s, num_steps: int):
    """The leaf function of a trainer-data session's states (hiding leaves, protocol/trainer_data.py)."""
    secret = s.state_secret
    return lambda t, theta: hiding_state_leaf(t, num_steps, None if t in (0, num_steps) else state_salt(secret, t),
                                              theta)
