"""``audit``: re-verify a saved transcript offline (verifier/audit.py), with ``--data`` by the full replay.

Kept apart from ``train`` so that an audit imports no gRPC: its memory is the rows plus a small constant
(bench/bench_audit.py, ``audit_rss``). Also the verdict output and the model file shared with ``train``.
"""

from __future__ import annotations

import json
import os

from protocol import model_file
from protocol import transcript as tx
from protocol.csv_reader import ReadOptions
from protocol.dataset import Standardization
from protocol.errors import InputError, TranscriptFormatError
from protocol.fileio import ensure_parent
from protocol.keys import parse_public_hex
from protocol.peer_text import screen_text
from protocol.training import TrainConfig

from . import attest
from .audit import (
    ALTERED,
    INCOMPLETE,
    REJECTED,
    SPOT_CHECKED,
    VERIFIED,
    check_given_root,
    check_given_width,
    committed_roots,
    rows_per_leaf,
    transcript_verdict,
    value_bytes,
    with_replay,
)
from .cli import EXIT_ERROR, EXIT_OK, EXIT_REJECTED, EXIT_SPOT_CHECKED
from .progress import Progress, progress_enabled
from .trust_store import TrustStore


def exit_code(status: str) -> int:
    return {VERIFIED: EXIT_OK, SPOT_CHECKED: EXIT_SPOT_CHECKED, ALTERED: EXIT_ERROR, INCOMPLETE: EXIT_ERROR}.get(
        status, EXIT_REJECTED)


def _write_model(path: str, tr: dict, transcript_path: str, digest: str, verdict, attestation,
                 table_columns: list[str] | None = None) -> None:
    """The model file of a session: the transcript's final model with the session's transform, the verdict
    (informative only) and this client's replay attestation."""
    meta = tr["client"]["metadata"]
    verification = {"status": verdict.status, "check": verdict.check, "reason": verdict.reason or verdict.guarantee}
    if attestation:
        verification["attestation"] = attestation
    doc = model_file.build(kind=tr["config"]["model"], feature_names=meta["feature_names"], target=meta["target"],
                           stdz=Standardization.from_dict(meta["standardization"]), frac_bits=tr["config"]["frac_bits"],
                           theta=tr["model"], transcript_sha256=digest, verification=verification,
                           extras=_shipped_extras(tr), table_columns=table_columns)
    doc["transcript"] = os.path.relpath(os.path.abspath(transcript_path), os.path.dirname(os.path.abspath(path)))
    model_file.save(path, doc)


def _shipped_extras(tr: dict) -> dict:
    """What the trainer shipped besides the parameters (kept in the model file, as a real model format would
    carry it; the verdict already says the model is unverified). Only a valid trigger spec is kept."""
    if "model_extras" not in tr:
        return {}
    from protocol.triggers import validate_trigger_spec

    try:
        extras = tx.safe_json_loads(tr["model_extras"], "shipped model extras")
        return {"trigger": validate_trigger_spec(extras["trigger"], tr["num_features"])}
    except (ValueError, TypeError, KeyError, RecursionError):
        return {"shipped_extras_ignored": tr["model_extras"][:200]}


def cmd_audit(args) -> int:
    if args.model_out and not args.data:
        raise InputError("--model-out rebuilds the model by replaying the session: it needs --data")
    if args.model_out:
        ensure_parent(args.model_out)  # refused before the replay, not after it
    ui = Progress(progress_enabled(args))
    with ui.bar("reading the transcript"):
        tr, digest = tx.load(args.transcript)
    release_free_memory()  # the parse's temporaries: the rows below are a fresh mapping, not heap reuse
    tx.validate(tr)  # before anything reads a field: "malformed transcript: FIELD ...", exit 2
    if args.data and "trainer_data" in tr:
        raise InputError(f"this session trained on the trainer's own dataset {tr['trainer_data'].get('name')!r}: its "
                         f"rows stay with the trainer, so there is nothing of yours to replay (audit it without --data: "
                         f"the spot verdict)")
    key_hex = tx.get(tr, "trainer_key", str)
    pinned = parse_public_hex(args.trainer_key) if args.trainer_key else None
    trust, addresses = TrustStore(args.trust_store).trust_of(key_hex, pinned)
    signer = {"key": key_hex, "trust": trust, "addresses": addresses}
    if pinned is not None and key_hex != pinned.hex():
        return _audit_out(args, {"status": REJECTED, "check": "key", "reason": f"the transcript is signed by "
                                 f"trainer key {key_hex}, not the required key {pinned.hex()}", "step": None,
                                 "guarantee": "", "evidence": {}}, digest, signer)
    with ui.bar("checking signatures and openings"):
        v = _transcript_verdict(tr)
    if v.status in (ALTERED, INCOMPLETE) or not args.data:
        return _audit_out(args, v.to_dict(), digest, signer)
    release_free_memory()
    with ui.callback("loading", percent=True) as loading:
        rows, columns = _given_rows(args, tr, loading)
    release_free_memory()
    with ui.callback("replay", unit="step") as replaying:
        v = with_replay(v, tr, rows, replaying)
    del rows  # not needed again: the attestation below re-hashes the transcript
    attestation = attest.attest(tr, v) if v.check == "replay" else None  # seen by a later `predict` (model_trust)
    res = v.to_dict()
    if args.model_out and v.status == VERIFIED:
        _write_model(args.model_out, tr, args.transcript, digest, v, attestation, columns)
        res["model"] = args.model_out
    elif args.model_out:
        res["model"] = None
        res["model_note"] = f"no model written to {args.model_out}: the replay did not verify the transcript's model"
    return _audit_out(args, res, digest, signer)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system between the audit's phases (glibc ``malloc_trim``;
    nothing elsewhere): the peak RSS is then the live data of one phase, not the sum of every phase's freed
    temporaries (bench/bench_audit.py, ``audit_rss``)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _given_rows(args, tr: dict, progress):
    """The user's --data as the session's rows, read and quantized chunk by chunk straight into one array of
    the committed size (protocol/csv_chunks.py; int32 when the values fit), its data root computed on the
    way: -> (rows, every column of the file). Data that is not the committed data is the user's input error
    (exit 2), never a verdict about the trainer."""
    from protocol.csv_chunks import RowCountMismatch, read_quantized_rows

    try:
        meta = tx.get(tr, "client.metadata", dict)
        stdz = Standardization.from_dict(tx.get(meta, "standardization", dict))
        cfg = TrainConfig.from_dict(tx.get(tr, "config", dict))
    except InputError as e:
        raise TranscriptFormatError(str(e)) from None
    n, d = tx.get(tr, "num_rows", int), tx.get(tr, "num_features", int)
    opts = ReadOptions(delimiter=args.delimiter, features=tuple(meta.get("feature_names") or ()) or None,
                       drop_missing=args.drop_missing)

    def same_features(table) -> None:
        if table.feature_names != meta.get("feature_names"):
            raise InputError(f"--data has features {table.feature_names[:4]}..., the session used "
                             f"{meta.get('feature_names', [])[:4]}...")
        if len(table.feature_names) != d:
            raise InputError(f"the data given has {len(table.feature_names)} features, the session committed {n} x {d}: "
                             f"give the session's data file")

    try:
        q = read_quantized_rows(args.data, args.target or meta.get("target"), opts, stdz, cfg.frac_bits, n,
                                rows_per_leaf=rows_per_leaf(tr), progress=progress, on_header=same_features,
                                expected_roots={bytes.fromhex(r) for r in committed_roots(tr)},
                                value_bytes=value_bytes(tr))
    except RowCountMismatch as e:
        raise InputError(f"the data given has {e.got} rows x {d} features, the session committed {n} x {d}: give "
                         f"the session's data file") from None
    check_given_width(tr, q.width)
    check_given_root(tr, q.data_root)
    return q.rows, q.table.header


def _transcript_verdict(tr: dict):
    try:
        return transcript_verdict(tr)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, (InputError, TranscriptFormatError)):
            raise
        raise TranscriptFormatError(f"malformed transcript: {e!r}") from None


def _audit_out(args, res: dict, digest: str, signer: dict) -> int:
    res["transcript_sha256"] = digest
    res["signer"] = signer
    if signer["trust"] == "unknown":
        res["signer_note"] = ("the signer is unauthenticated: this key is neither pinned (--trainer-key) nor in the "
                              "trust store, and anyone can make a key that signs a consistent transcript")
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        where = f" (trust store: {', '.join(signer['addresses'])})" if signer["addresses"] else ""
        print(f"signed by trainer key {signer['key']}: {signer['trust'].upper()}{where}")
        if res.get("signer_note"):
            print(f"note: {res['signer_note']}")
        _print_verdict(res)
        if res["status"] == REJECTED and res.get("evidence"):
            print("evidence: " + json.dumps(res["evidence"])[:2000])
        if res.get("model"):
            print(f"model rebuilt by the replay: {res['model']}")
        elif res.get("model_note"):
            print(res["model_note"])
    return exit_code(res["status"])


def _print_verdict(res: dict) -> None:
    word = res["status"].upper()
    if res["status"] in (VERIFIED, SPOT_CHECKED):
        print(f"{word} ({res['check']}): {res['guarantee']}")
    elif res["status"] == ALTERED:
        print(f"{word}: {screen_text(res['reason'])}")
    elif res["status"] == INCOMPLETE:
        print(f"INCOMPLETE (no verdict): {screen_text(res['reason'])}")
    else:
        where = f" [step {res['step']}]" if res.get("step") is not None else ""
        print(f"{word} ({res['check']}){where}: {screen_text(res['reason'])}")
