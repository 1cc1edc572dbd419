"""Verify a transcript: every signature and binding, the spot-check openings, and (with the data) a full
replay. The client's live verdict is this same function applied to the transcript it just recorded."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from protocol import transcript as tx
from protocol.errors import BindingMismatch, InputError, TranscriptFormatError, VerificationError
from protocol.merkle import MerkleTree, data_leaves
from protocol.prg import SeedContext, seed_commitment
from protocol.training import Schedule, TrainConfig

from . import checks


@dataclass
class Verdict:
    status: str  # "verified" | "rejected"
    check: str  # "spot" | "replay"
    reason: str = ""
    step: int | None = None
    guarantee: str = ""
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.status == "verified"


def no_proof_reason(error: str) -> str:
    return f"the trainer gave no proof ({error}); the model is unverified"


def spot_guarantee(T: int, K: int) -> str:
    k = min(K, T)
    m = max(1, math.ceil(T / 100))
    p = checks.detection_probability(T, k, m)
    p_floor = math.floor(p * 1000) / 10
    return (f"spot check: {k} of {T} steps were challenged after the trainer signed all of them, and each was "
            f"replayed bit-exactly from its committed state with the seed-derived batch; the initial state (from your "
            f"seed) and the final model (= the last committed state) were checked exactly. A trainer that deviated "
            f"on at least 1% of the steps ({m} of {T}) would have been caught with probability >= {p_floor}%; a "
            f"single wrong step is caught with probability {k}/{T}. Run `vtrain-verifier audit --data` for the full "
            f"replay.")


def replay_guarantee(T: int) -> str:
    return (f"full replay: all {T} steps were recomputed bit-exactly from your data and seed and every committed "
            f"state matched; the model is exactly what the agreed algorithm produces on your data with your "
            f"randomness.")


def rejected_verdict(check: str, e: VerificationError) -> Verdict:
    """The one way a failed check becomes a verdict (live in the client and offline in the audit)."""
    return Verdict("rejected", check, str(e), e.step, "", _jsonable(e.evidence))


def _jsonable(ev: dict) -> dict:
    out = {}
    for k, v in (ev or {}).items():
        out[k] = v.hex() if isinstance(v, bytes) else v
    return out


def verify_transcript(tr: dict, rows: np.ndarray | None = None, compare_recorded: bool = True,
                      progress=None) -> Verdict:
    """Raises TranscriptFormatError on malformed input; returns a Verdict otherwise.
    ``progress(t, T)``: optional callback during the full replay."""
    kind = tr.get("proof_kind") if tr.get("proof_kind") in ("spot", "snark") else "spot"
    try:
        v = _spot(tr)
    except VerificationError as e:
        v = rejected_verdict(kind, e)
    if compare_recorded and "verdict" in tr:
        rec = tr["verdict"]
        if rec != v.to_dict():
            return Verdict("rejected", kind, "the verdict recorded in the transcript differs from the recomputed one "
                           f"(recorded {rec.get('status') if isinstance(rec, dict) else rec!r}, recomputed {v.status}: "
                           f"{v.reason or 'ok'}): the transcript was altered")
    if rows is None:
        return v
    # The replay runs after the signature, binding and proof checks. It can only sharpen a rejection (name
    # the first divergent step); it never turns a rejected transcript into a verified one.
    if v.status != "verified" and v.step is None:
        return v
    try:
        replayed = _replay(tr, rows, progress)
    except VerificationError as e:
        return rejected_verdict("replay", e)
    return replayed if v.status == "verified" else v


def _context(tr: dict):
    sid = tx.get_hex(tr, "session_id", 16)
    pub = tx.get_hex(tr, "trainer_key", 32)
    try:
        cfg = TrainConfig.from_dict(tx.get(tr, "config", dict))
    except (InputError, TypeError) as e:
        raise TranscriptFormatError(f"transcript config is invalid: {e}") from None
    return sid, pub, cfg


def _spot(tr: dict) -> Verdict:
    sid, pub, cfg = _context(tr)
    meta = tx.get(tr, "client.metadata", dict)
    client_nonce = tx.get_hex(tr, "client_nonce", 32)
    if tx.metadata_binding(meta, tx.get_hex(tr, "client.nonce_secret", 32)) != client_nonce:
        raise BindingMismatch("the client record (data source, features, standardization) does not match the "
                              "client nonce the trainer signed")
    proof_kind = tx.get(tr, "proof_kind", str)
    if tx.get(tr, "trust", str) not in ("pinned", "first-use"):
        raise TranscriptFormatError("transcript field 'trust' must be 'pinned' or 'first-use'")
    if "proof" in tr and tx.get(tr, "proof.kind", str) != proof_kind:
        raise BindingMismatch(f"the proof is of kind {tr['proof'].get('kind')!r}, the session agreed on {proof_kind!r}")
    checks.check_session(pub, tx.get_signed(tr, "statements.session"), sid, client_nonce=client_nonce,
                         server_nonce=tx.get_hex(tr, "server_nonce", 32), cfg=cfg, proof_kind=proof_kind)
    n, d = tx.get(tr, "num_rows", int), tx.get(tr, "num_features", int)
    data_root = tx.get_hex(tr, "data_root", 32)
    checks.check_data(pub, tx.get_signed(tr, "statements.data"), sid, data_root=data_root, num_rows=n, num_features=d)
    if "randomness" not in tr.get("statements", {}):
        raise VerificationError("transcript incomplete: the session stopped after the data commitment")
    seed = tx.get_hex(tr, "training_seed", 32)
    audit_seed = tx.get_hex(tr, "audit_seed", 32)
    commitment = tx.get_hex(tr, "audit_commitment", 32)
    K = tx.get(tr, "spot_checks", int)
    if seed_commitment(audit_seed, sid) != commitment:
        raise BindingMismatch("the audit seed does not match its commitment")
    checks.check_randomness(pub, tx.get_signed(tr, "statements.randomness"), sid, data_root=data_root,
                            training_seed=seed, audit_commitment=commitment, spot_checks=K)
    if "final" not in tr.get("statements", {}):
        raise VerificationError("transcript incomplete: training did not finish with a signed final statement")
    sched = Schedule(SeedContext(sid, data_root, seed), cfg, n, d)
    T = sched.num_steps
    leaves = tx.split_leaves(tx.get(tr, "state_leaves", str))
    model = tx.get_int_list(tr, "model")
    if len(model) != d + 1:
        raise TranscriptFormatError(f"the model has {len(model)} parameters, expected {d + 1}")
    extras = tx.get(tr, "model_extras", str) if "model_extras" in tr else ""
    state_root = MerkleTree(leaves).root if len(leaves) == T + 1 else None
    checks.check_final(pub, tx.get_signed(tr, "statements.final"), sid, leaves=leaves, num_steps=T, model=model,
                       extras_json=extras, state_root=state_root)
    checks.check_checkpoints(pub, tx.get_signed_list(tr, "statements.checkpoints"), sid, leaves, cfg.checkpoint_interval)
    checks.check_initial_state(leaves, sched)
    checks.check_final_model(leaves, model, extras)
    if "proof" not in tr:
        raise VerificationError(no_proof_reason(str(tr.get("proof_error", "none recorded"))))
    if proof_kind == "snark":
        return _snark(tr, pub, sid, model, sched, extras)
    openings = tx.get(tr, "proof.openings", list)
    try:
        checks.check_spot(openings, sid=sid, state_root=state_root, audit_seed=audit_seed,
                          spot_checks=K, num_steps=T, data_root=data_root, num_rows=n, sched=sched, cfg=cfg)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, VerificationError):
            raise
        raise TranscriptFormatError(f"malformed spot-check opening: {e!r}") from None
    return Verdict("verified", "spot", "", None, spot_guarantee(T, K))


def _replay(tr: dict, rows: np.ndarray, progress=None) -> Verdict:
    sid, _pub, cfg = _context(tr)
    n, d = tx.get(tr, "num_rows", int), tx.get(tr, "num_features", int)
    if rows.shape != (n, d + 1):
        raise VerificationError(f"the data given has {rows.shape[0]} rows x {rows.shape[1] - 1} features, the session "
                                f"committed {n} x {d}")
    data_root = tx.get_hex(tr, "data_root", 32)
    if MerkleTree(data_leaves(rows)).root != data_root:
        raise BindingMismatch("the data given is not the data the trainer committed to (Merkle roots differ)")
    seed = tx.get_hex(tr, "training_seed", 32)
    sched = Schedule(SeedContext(sid, data_root, seed), cfg, n, d)
    leaves = tx.split_leaves(tx.get(tr, "state_leaves", str))
    extras = tx.get(tr, "model_extras", str) if "model_extras" in tr else ""
    checks.replay(rows, leaves, tx.get_int_list(tr, "model"), sched, cfg, extras, progress)
    return Verdict("verified", "replay", "", None, replay_guarantee(sched.num_steps))


def _snark(tr: dict, pub: bytes, sid: bytes, model, sched: Schedule, extras: str) -> Verdict:
    from protocol.snark import snarkjs_io
    from protocol.snark.errors import SnarkFormatError

    from .snark_checks import check_snark, snark_guarantee

    try:
        vk = snarkjs_io.vk_from_json(tx.get(tr, "proof.vk", dict))
        proof = snarkjs_io.proof_from_json(tx.get(tr, "proof.proof", dict))
        public = snarkjs_io.public_from_json(tx.get(tr, "proof.public", list))
    except (SnarkFormatError, ValueError, TypeError) as e:
        raise TranscriptFormatError(f"malformed SNARK record: {e}") from None
    check_snark(pub, tx.get_signed(tr, "proof.statement"), sid, vk=vk, proof=proof, public=public, model=model,
                theta0=[int(v) for v in sched.initial_state()],
                session_statement=tx.get_signed(tr, "statements.session")[0], extras_json=extras)
    return Verdict("verified", "snark", "", None, snark_guarantee(sched.num_steps, tx.get(tr, "proof.constraints", int)))
