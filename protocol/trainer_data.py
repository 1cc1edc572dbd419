"""Trainer-owned datasets: the hiding (salted) data commitment and the signed public data card.

Defined once here; the trainer commits and opens (prover/trainer_data.py), the client and the auditor check
(verifier/trainer_data_checks.py). docs/PROTOCOL.md section 11.

Salted data leaf (one row per leaf)::

    leaf_i = SHA-256(tag("merkle/leaf/salted-data") || 0x00 || u64(i) || salt_i || row_i)

``salt_i``: 32 bytes from the OS CSPRNG, fresh per row and per commitment; ``row_i``: the d+1 int64
little-endian values (features, then target). The leaves form the usual Merkle tree (protocol/merkle.py).
Without the salts, the root and every sibling hash an opening reveals are hashes of a 256-bit secret each:
they let no one test a guessed row (hiding, in the random-oracle model); with a salt, a row is opened.

Data card: a standing statement of kind ``data-card`` (the session id is empty), signed once per commitment;
every session that uses the dataset signs the same ``data_root`` again in its ``data`` statement.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import dataclass

import numpy as np

from . import encoding as enc
from .dataset import Standardization
from .errors import InputError, TranscriptFormatError
from .merkle import MerkleTree, leaf_prefix
from .statements import PROTOCOL_VERSION, Statement, verify
from .training import MODELS

SALT_BYTES = 32
LEAF_ENCODING = "salted-sha256/v1"  # the leaf above; a card with another encoding is refused
DEFAULT_MAX_REVEAL_PPM = 250_000  # a quarter of the rows per session
DEFAULT_MIN_BATCH = 8
CARD_KIND = "data-card"
CARD_SESSION = b""  # a card belongs to no session
_PREFIX = leaf_prefix("salted-data")


def fresh_salts(n: int) -> bytes:
    """n salts of SALT_BYTES from the OS CSPRNG (``secrets``), concatenated."""
    return secrets.token_bytes(SALT_BYTES * n)


def salted_leaf(index: int, salt: bytes, row) -> bytes:
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} bytes, got {len(salt)}")
    raw = np.ascontiguousarray(np.asarray(row, dtype=np.int64), dtype="<i8").tobytes()
    return hashlib.sha256(_PREFIX + enc.u64(index) + bytes(salt) + raw).digest()


STATE_LEAF_ENCODING = "salted-state/v1"  # hiding state leaves of trainer-data sessions (below)
_STATE_PREFIX = leaf_prefix("salted-state")


def state_salt(secret: bytes, step: int) -> bytes:
    """salt_t = HMAC-SHA256(secret, tag("state-salt") || u64(t)): the per-step salt of a trainer-data session's
    state leaf t; ``secret`` is 32 bytes from the OS CSPRNG, fresh per session, never sent (docs/PROTOCOL.md
    section 12, "Hiding state leaves"). Only the salts of opened states are revealed."""
    import hmac

    from .hashing import tag_bytes

    return hmac.new(bytes(secret), tag_bytes("state-salt") + enc.u64(step), hashlib.sha256).digest()


def hiding_state_leaf(step: int, num_steps: int, salt: bytes | None, theta) -> bytes:
    """State leaf t of a trainer-data session: the plain leaf of section 4 for the public states (t = 0, derived
    from the client's seed; t = T, the returned model), otherwise
    SHA-256(tag("merkle/leaf/salted-state") || 0x00 || u64(t) || salt_t || theta_t)."""
    from .merkle import state_leaf

    if step in (0, num_steps):
        return state_leaf(step, theta)
    if salt is None or len(salt) != SALT_BYTES:
        raise ValueError(f"state leaf {step} needs a {SALT_BYTES}-byte salt")
    raw = np.ascontiguousarray(np.asarray(theta, dtype=np.int64), dtype="<i8").tobytes()
    return hashlib.sha256(_STATE_PREFIX + enc.u64(step) + bytes(salt) + raw).digest()


def salted_leaves(rows: np.ndarray, salts: bytes) -> bytes:
    """The concatenated 32-byte leaves of int64 rows (n, d+1) under ``salts`` (n * SALT_BYTES bytes)."""
    n = rows.shape[0]
    if len(salts) != SALT_BYTES * n:
        raise ValueError(f"{n} rows need {SALT_BYTES * n} bytes of salt, got {len(salts)}")
    raw = np.ascontiguousarray(rows, dtype="<i8")
    sha = hashlib.sha256
    return b"".join(sha(_PREFIX + enc.u64(i) + salts[SALT_BYTES * i:SALT_BYTES * (i + 1)] + raw[i].tobytes()).digest()
                    for i in range(n))


def salted_tree(rows: np.ndarray, salts: bytes) -> MerkleTree:
    return MerkleTree(salted_leaves(rows, salts))


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class DataCard:
    """The public description of a trainer-owned dataset, and the root of its hiding commitment."""

    trainer_key: bytes
    name: str
    num_rows: int
    num_features: int
    feature_names: list
    target: str
    models: tuple
    frac_bits: int
    standardization: dict  # Standardization.to_dict() of the transform the trainer applied
    data_root: bytes
    rows_per_leaf: int = 1
    leaf_encoding: str = LEAF_ENCODING
    # the SNARK of training on these rows (docs/SNARK.md section 8): the blinded Poseidon commitment to the same
    # rows (32 bytes, big-endian field element) and the K it packs values with; b"" and 0 when not offered
    zk_commitment: bytes = b""
    zk_weight_bits: int = 0
    # the trainer's disclosure policy (docs/PROTOCOL.md section 12, "Disclosure limits"): a spot check may open at
    # most max_reveal_ppm / 10^6 of the rows (min(K, T) * B <= that fraction of n), and B >= min_batch
    max_reveal_ppm: int = DEFAULT_MAX_REVEAL_PPM
    min_batch: int = DEFAULT_MIN_BATCH

    def max_spot_checks(self, batch_size: int) -> int:
        """The largest K whose openings stay within the cap (0: this batch size alone exceeds it)."""
        return self.max_reveal_ppm * self.num_rows // (1_000_000 * batch_size)

    @property
    def zk_commitment_int(self) -> int | None:
        return int.from_bytes(self.zk_commitment, "big") if self.zk_commitment else None

    def statement(self) -> Statement:
        return Statement(CARD_KIND, CARD_SESSION, {
            "protocol_version": PROTOCOL_VERSION, "trainer_key": self.trainer_key, "name": self.name,
            "num_rows": self.num_rows, "num_features": self.num_features,
            "feature_names": canonical_json(list(self.feature_names)), "target": self.target,
            "models": ",".join(self.models), "frac_bits": self.frac_bits,
            "standardization": canonical_json(self.standardization), "leaf_encoding": self.leaf_encoding,
            "rows_per_leaf": self.rows_per_leaf, "data_root": self.data_root, "zk_commitment": self.zk_commitment,
            "zk_weight_bits": self.zk_weight_bits, "max_reveal_ppm": self.max_reveal_ppm,
            "min_batch": self.min_batch})

    def to_dict(self) -> dict:
        return {"name": self.name, "num_rows": self.num_rows, "num_features": self.num_features,
                "feature_names": list(self.feature_names), "target": self.target, "models": list(self.models),
                "frac_bits": self.frac_bits, "standardization": self.standardization,
                "data_root": self.data_root.hex(), "rows_per_leaf": self.rows_per_leaf,
                "leaf_encoding": self.leaf_encoding, "zk_commitment": self.zk_commitment.hex(),
                "zk_weight_bits": self.zk_weight_bits, "max_reveal": self.max_reveal_ppm / 1e6,
                "min_batch": self.min_batch}


def _json_field(raw: bytes, what: str):
    try:
        value = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise TranscriptFormatError(f"the data card's {what} is not JSON: {e}") from None
    if canonical_json(value) != raw:
        raise TranscriptFormatError(f"the data card's {what} is not in canonical form")
    return value


def open_card(public_key: bytes, data: bytes, signature: bytes) -> DataCard:
    """Verify a signed data card under ``public_key`` and parse it. Raises SignatureInvalid / BindingMismatch
    (protocol.errors) for a card that is not this trainer's, TranscriptFormatError for one that is malformed
    or describes a commitment this client cannot check."""
    st = verify(public_key, data, signature, kind=CARD_KIND, session_id=CARD_SESSION)
    f = st.fields
    if f["protocol_version"] != PROTOCOL_VERSION:
        raise TranscriptFormatError(f"the data card speaks {f['protocol_version']!r}, not {PROTOCOL_VERSION!r}")
    if f["trainer_key"] != bytes(public_key):
        raise TranscriptFormatError("the data card names another trainer key than the one that signed it")
    if f["leaf_encoding"] != LEAF_ENCODING or f["rows_per_leaf"] != 1:
        raise TranscriptFormatError(f"the data card's commitment ({f['leaf_encoding']!r}, {f['rows_per_leaf']} rows "
                                    f"per leaf) is not {LEAF_ENCODING!r} with one row per leaf")
    names = _json_field(f["feature_names"], "feature names")
    stdz = _json_field(f["standardization"], "standardization")
    models = tuple(f["models"].split(",")) if f["models"] else ()
    n, d = f["num_rows"], f["num_features"]
    if (not isinstance(names, list) or len(names) != d or not all(isinstance(x, str) for x in names)
            or not models or any(m not in MODELS for m in models) or n < 1 or d < 1 or not isinstance(stdz, dict)):
        raise TranscriptFormatError("the data card is inconsistent (feature names, models or sizes)")
    try:
        parsed = Standardization.from_dict(stdz)
    except InputError as e:
        raise TranscriptFormatError(f"the data card's standardization: {e}") from None
    if len(parsed.mean) != d or not all(math.isfinite(v) for v in parsed.mean):
        raise TranscriptFormatError("the data card's standardization does not match its features")
    zk, zk_k = f["zk_commitment"], f["zk_weight_bits"]
    from .snark.field import R

    if f["max_reveal_ppm"] > 1_000_000 or f["min_batch"] < 1:
        raise TranscriptFormatError("the data card's disclosure limits are out of range")
    if (zk or zk_k) and (len(zk) != 32 or int.from_bytes(zk, "big") >= R or not 2 <= zk_k <= 64):
        raise TranscriptFormatError("the data card's zk commitment is not a field element with its weight bits")
    return DataCard(bytes(public_key), f["name"], n, d, names, f["target"], models, f["frac_bits"], stdz,
                    f["data_root"], f["rows_per_leaf"], f["leaf_encoding"], zk, zk_k, f["max_reveal_ppm"],
                    f["min_batch"])


def card_hash(data: bytes) -> bytes:
    """SHA-256 of the card's canonical statement bytes (for display: "clients can compare notes")."""
    return hashlib.sha256(bytes(data)).digest()
