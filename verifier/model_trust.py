"""Is this model file verified? The decision ``predict --defense auto`` rests on (docs/PROTOCOL.md section 10).

A model file's own ``verification.status`` is never believed: anyone can edit it. A model counts as
verified only when all of these hold:

1. its transcript is given (``--transcript T``, else the path the model file records, relative to the model
   file) and its SHA-256 is the one the model file records;
2. the transcript audits (signatures, bindings, openings) without being altered or rejected;
3. the model is the transcript's: the fixed-point parameters hash to the trainer-signed final model hash,
   and the model kind, frac bits, feature names, target and standardization are the session's;
4. every step was checked: the transcript's SNARK verifies, or this machine's client key attests that it
   replayed the transcript in full and every state matched (verifier/attest.py); and no attestation by this
   key records a failed replay of it;
5. the model file carries no serving-time trigger.

Otherwise ``auto`` mitigates, and the reason says which condition failed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from protocol import transcript as tx
from protocol.errors import InputError, TranscriptFormatError

from . import attest
from .audit import ALTERED, SPOT_CHECKED, VERIFIED, verify_transcript


@dataclass(frozen=True)
class Assessment:
    verified: bool
    check: str | None  # "replay" | "snark" | "spot" | None
    reason: str


def transcript_path(model, model_path: str, given: str | None) -> Path | None:
    if given:
        return Path(given)
    rec = model.doc.get("transcript")
    if not isinstance(rec, str) or not rec:
        return None
    p = Path(rec)
    return p if p.is_absolute() else Path(model_path).resolve().parent / p


def assess(model, model_path: str, given_transcript: str | None = None) -> Assessment:
    path = transcript_path(model, model_path, given_transcript)
    if path is None:
        return Assessment(False, None, "no transcript is given for this model (pass --transcript), so nothing shows "
                                       "how it was trained")
    try:
        raw = path.read_bytes()
    except OSError as e:
        return Assessment(False, None, f"its transcript {path} cannot be read ({e.strerror}); pass --transcript")
    if hashlib.sha256(raw).hexdigest() != model.doc.get("transcript_sha256") and not given_transcript:
        return Assessment(False, None, f"the transcript at {path} is not the one this model file records (SHA-256 "
                                       f"differs)")
    try:
        tr, _ = tx.load(str(path))
        v = verify_transcript(tr)
    except (TranscriptFormatError, InputError) as e:
        return Assessment(False, None, f"its transcript does not audit: {e}")
    if v.status == ALTERED or v.status not in (VERIFIED, SPOT_CHECKED):
        return Assessment(False, v.check, f"its transcript audits as {v.status.upper()}: {v.reason}")
    mismatch = _model_mismatch(model, tr)
    if mismatch:
        return Assessment(False, v.check, f"the model file is not the transcript's model: {mismatch}")
    if model.trigger:
        return Assessment(False, v.check, "the model file ships a serving-time trigger that no transcript covers")
    pub = attest.client_public_key()
    recs = [a for a in [model.verification.get("attestation")] if isinstance(a, dict)]
    results = attest.valid_results(recs + attest.stored(attest.transcript_digest(tr).hex()), tr, pub)
    failed = [(r, why) for r, why in results if r != "verified"]
    if failed:
        return Assessment(False, "replay", f"a full replay of its transcript by this client failed ({failed[0][0]}: "
                                           f"{failed[0][1]})")
    if v.status == VERIFIED:
        return Assessment(True, v.check, f"its transcript verified ({v.check}: every step is proved)")
    if results:
        return Assessment(True, "replay", f"this client replayed all steps of its transcript and every state matched "
                                          f"(attested by client key {attest.fingerprint(pub)})")
    how = ("no full replay is possible: it trained on the trainer's own rows (docs/PROTOCOL.md section 12)"
           if "trainer_data" in tr else "run `vtrain-verifier audit TRANSCRIPT --data ...` to replay it in full")
    return Assessment(False, "spot", "its transcript is only SPOT-CHECKED (a model changed in a single step passes "
                                     f"with high probability); {how}")


def _model_mismatch(model, tr: dict) -> str:
    theta = model.theta_fixed()
    meta = tr["client"]["metadata"]
    if theta != tr["model"]:
        return "its fixed-point parameters differ from the trainer-signed final model"
    for what, mine, theirs in (("model kind", model.kind, tr["config"]["model"]),
                               ("frac bits", model.frac_bits, tr["config"]["frac_bits"]),
                               ("feature names", model.feature_names, meta.get("feature_names")),
                               ("target", model.target, meta.get("target")),
                               ("standardization", model.doc.get("standardization"), meta.get("standardization"))):
        if mine != theirs:
            return f"its {what} differs from the session's"
    return ""
