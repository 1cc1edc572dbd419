"""The client's own record of a full replay, signed with a local client key.

A full replay needs the data, so nobody can recompute a replay verdict from the transcript alone. When this
client replays a transcript (``train`` by default, or ``audit --data``), it signs an ``attestation``
statement (docs/PROTOCOL.md section 10) with its local Ed25519 key: the transcript's digest, the final model
hash, the data root, T and the result ("verified" or "rejected at step t"). ``predict`` believes a replay
result only under a valid signature by this machine's key. So "verified (replay)" in ``predict`` means: a
vtrain client holding this key replayed every step of exactly this transcript on data with the committed
root and every state matched. Anyone who can read the key file can forge that, which is why it is 0600.

Attestations are kept in the model file (``verification.attestation``) and in
``CONFIG/attestations/<digest>.json`` (every attestation for that transcript: a later failed
``audit --data`` is found there even when the model file says otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import transcript as tx
from protocol.errors import InputError, TranscriptFormatError
from protocol.fileio import write_atomic
from protocol.keys import generate_key_file, load_private_key, public_bytes
from protocol.merkle import model_hash
from protocol.statements import Statement, sign

from .trust_store import config_dir

KEY_FILE = "client_key.pem"


def key_path() -> Path:
    return config_dir() / KEY_FILE


def _key():
    path = key_path()
    if not path.exists():
        generate_key_file(str(path))
    return load_private_key(str(path))


def client_public_key() -> bytes | None:
    """This machine's client key, or None if it has none yet (then no attestation can be valid)."""
    if not key_path().exists():
        return None
    return public_bytes(load_private_key(str(key_path())))


def transcript_digest(tr: dict) -> bytes:
    return bytes.fromhex(tx.integrity(tr))


def result_text(verdict) -> str:
    if verdict.status == "verified":
        return "verified"
    return f"rejected at step {verdict.step}" if verdict.step is not None else "rejected"


def attest(tr: dict, verdict, integrity: str | None = None) -> dict:
    """Sign the replay verdict of ``tr`` (a verdict with check "replay") and store it. Returns the record.
    ``integrity``: ``tx.integrity(tr)`` when the caller has it (``tx.save_with_integrity`` of this very ``tr``,
    unchanged since), so the whole transcript is not encoded a second time."""
    model = [int(v) for v in tr["model"]]
    digest = bytes.fromhex(integrity) if integrity is not None else transcript_digest(tr)  # it encodes the whole transcript
    st = Statement("attestation", bytes.fromhex(tr["session_id"]), {
        "transcript_digest": digest, "model_hash": model_hash(model, tr.get("model_extras", "")),
        "data_root": bytes.fromhex(tr["data_root"]), "num_steps": len(tr["state_leaves"]) // 64 - 1,
        "result": result_text(verdict)})
    key = _key()
    data, sig = sign(key, st)
    rec = {"statement": data.hex(), "signature": sig.hex(), "client_key": public_bytes(key).hex(),
           "reason": verdict.reason[:300]}
    _store(digest.hex(), rec)
    return rec


def _store_path(digest_hex: str) -> Path:
    return config_dir() / "attestations" / f"{digest_hex}.json"


def _store(digest_hex: str, rec: dict) -> None:
    recs = stored(digest_hex)
    recs.append(rec)
    try:
        write_atomic(_store_path(digest_hex), json.dumps(recs, indent=1, sort_keys=True) + "\n", mode=0o600)
    except OSError as e:
        raise InputError(f"cannot record the replay result in {_store_path(digest_hex)}: {e.strerror or e}") from None


def stored(digest_hex: str) -> list:
    path = _store_path(digest_hex)
    try:
        recs = tx.safe_json_loads(path.read_text(encoding="utf-8"), f"attestation file {path}")
    except (FileNotFoundError, TranscriptFormatError, OSError, UnicodeDecodeError):
        return []
    return recs if isinstance(recs, list) else []


def valid_results(recs: list, tr: dict, pub: bytes | None) -> list[tuple[str, str]]:
    """(result, reason) of every attestation in ``recs`` that is signed by ``pub`` (this machine's client key)
    and is about exactly this transcript and its model. Anything else is ignored."""
    if pub is None:
        return []
    want = {"transcript_digest": transcript_digest(tr),
            "model_hash": model_hash([int(v) for v in tr["model"]], tr.get("model_extras", "")),
            "data_root": bytes.fromhex(tr["data_root"])}
    out = []
    for rec in recs:
        try:
            data, sig = bytes.fromhex(rec["statement"]), bytes.fromhex(rec["signature"])
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, data)
            st = Statement.decode(data)
        except (KeyError, TypeError, ValueError, InvalidSignature, TranscriptFormatError):
            continue
        if st.kind == "attestation" and st.session_id.hex() == tr["session_id"] and \
                all(st.fields[k] == v for k, v in want.items()):
            out.append((st.fields["result"], str(rec.get("reason", ""))))
    return out


def fingerprint(pub: bytes | None) -> str:
    return pub.hex()[:16] + "..." if pub else "(none)"

