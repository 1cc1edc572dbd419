"""Verify a transcript: every signature and binding, the spot-check openings, and (with the data) a full
replay. The client's live verdict is this same function applied to the transcript it just recorded.

Verdicts (docs/PROTOCOL.md section 8, "Verdicts"):

* ``verified``      every step was checked: the full replay (``check = "replay"``) or a SNARK (``"snark"``);
* ``spot-checked``  the signatures, bindings, initial state, final model and the K challenged steps passed,
                    the other steps were not checked (``check = "spot"``);
* ``rejected``      the trainer's own signed statements (with the client's committed record, and the data
                    for a replay) show a deviation, or the trainer gave no proof (``check = "no-proof"``);
* ``altered``       the transcript disagrees with the signatures or bindings it carries, is incomplete, has
                    keys a vtrain client never writes, or its recorded verdict is not the recomputed one:
                    nothing in it is evidence against anyone (exit 2);
* ``incomplete``    the session was cut off (connection lost, the trainer silent, or a stream the client cut
                    off for breaking the protocol): no verdict (exit 2).

Before any of this, the transcript must match the schema of protocol/transcript.py (else
TranscriptFormatError, "malformed transcript: FIELD ...", exit 2): unknown keys, wrong types and out-of-range
numbers never reach a check.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from protocol import opening_rows
from protocol import transcript as tx
from protocol.errors import BindingMismatch, InputError, TranscriptFormatError, VerificationError
from protocol.evidence import RANDOMNESS_FIXED, client_binding, client_record, openings_hash
from protocol.merkle import MAX_ROWS_PER_LEAF
from protocol.merkle import data_root as data_root_of
from protocol.peer_text import peer_text
from protocol.prg import SeedContext, seed_commitment
from protocol.row_encoding import VALUE_BYTES, table_value_bytes
from protocol.state_leaves import Leaves, scan
from protocol.statements import Statement, expect_fields, verify
from protocol.training import Schedule, TrainConfig

from . import checks, trainer_data_checks

VERIFIED, SPOT_CHECKED, REJECTED, ALTERED = "verified", "spot-checked", "rejected", "altered"
INCOMPLETE = "incomplete"  # the session was cut off: no verdict (exit 2)

class TranscriptAltered(Exception):
    """The transcript is not what a vtrain client recorded from a trainer's signed answers."""


class NoProofGiven(VerificationError):
    """The trainer committed to every state but gave no proof (the full replay can still check them)."""


@dataclass
class Verdict:
    status: str  # VERIFIED | SPOT_CHECKED | REJECTED | ALTERED
    check: str  # "spot" | "snark" | "replay" | "no-proof" | "transcript"
    reason: str = ""
    step: int | None = None
    guarantee: str = ""
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED


def no_proof_reason(error: str, replay: bool = True) -> str:
    how = ("`vtrain-verifier audit --data` replays every committed step" if replay else
           "the rows are the trainer's own, so no replay by the client is possible")
    return (f"the trainer gave no proof ({error}); the model is unverified (this is not evidence that the trainer "
            f"cheated; {how})")


def spot_guarantee(T: int, K: int, randomness: str = "os", replay_note: str | None = None) -> str:
    k = min(K, T)
    m = max(1, math.ceil(T / 100))
    p = checks.detection_probability(T, k, m)
    p_floor = math.floor(p * 1000) / 10
    if k == T:
        first = (f"a single changed step would have been caught with probability {k}/{T} = 1: every step was "
                 f"challenged and replayed from its committed state.")
    else:
        first = (f"a single changed step would have been caught with probability only {k}/{T} = {k / T:.1%}: a "
                 f"model replaced at one step (for example committed in place of the last state) passes this check "
                 f"with probability {1 - k / T:.1%}.")
    text = (f"{first} A trainer that deviated on m of the {T} steps is caught with probability "
            f"1 - C({T}-m, {k})/C({T}, {k}) (>= {p_floor}% for m = {m}). Checked exactly: the signatures, the initial "
            f"state from your seed, the final model (= the last committed state) and the {k} challenged steps; "
            + (replay_note or "run `vtrain-verifier audit --data` for the full replay."))
    return text + _fixed_note(randomness)


def replay_guarantee(T: int, randomness: str = "os") -> str:
    return (f"full replay: all {T} steps were recomputed bit-exactly from your data and seed and every committed "
            f"state matched; the model is exactly what the agreed algorithm produces on your data with the "
            f"session's randomness." + _fixed_note(randomness))


def _fixed_note(randomness: str) -> str:
    if randomness != RANDOMNESS_FIXED:
        return ""
    return (" Note: the training randomness was fixed by the user (--insecure-fixed-seed): a trainer that knew the "
            "seed (from an earlier session or by brute force of a short seed) could choose its session id to steer "
            "the batch order and the initial state.")


def rejected_verdict(check: str, e: VerificationError) -> Verdict:
    """The one way a failed check becomes a verdict (live in the client and offline in the audit)."""
    if isinstance(e, NoProofGiven):
        check = "no-proof"
    return Verdict(REJECTED, check, str(e), e.step, "", _jsonable(e.evidence))


def altered_verdict(why: str) -> Verdict:
    return Verdict(ALTERED, "transcript", f"the transcript was altered after it was recorded ({why}); nothing in it "
                   f"is evidence against the trainer (if the recording client saw this live, its own verdict stands)")


def _jsonable(ev: dict) -> dict:
    out = {}
    for k, v in (ev or {}).items():
        out[k] = v.hex() if isinstance(v, bytes) else v
    return out


@contextmanager
def _unsigned(what: str):
    """Checks of values the transcript carries next to the signatures that bind them: a mismatch means the
    file was changed (or the trainer sent something that contradicts its own signature, which only the
    recording client saw), never evidence against the trainer."""
    try:
        yield
    except VerificationError as e:
        raise TranscriptAltered(f"{what}: {e}") from None


def verify_transcript(tr: dict, rows: np.ndarray | None = None, compare_recorded: bool = True,
                      live: bool = False, progress=None) -> Verdict:
    """Raises TranscriptFormatError on a malformed transcript (checked against the schema of
    protocol/transcript.py before anything else) and InputError for data that is not the session's; returns
    a Verdict otherwise. ``live``: the recording client's own view (see transcript_verdict).
    ``progress(t, T)``: optional callback during the full replay."""
    with opening_rows.reading():  # the openings are read once by the schema, their hash and the spot check
        tx.validate(tr)
        if rows is not None:
            check_given_data(tr, rows)
        v = transcript_verdict(tr, compare_recorded, live)
    return v if rows is None or v.status == INCOMPLETE else with_replay(v, tr, rows, progress)


def transcript_verdict(tr: dict, compare_recorded: bool = True, live: bool = False) -> Verdict:
    """The verdict the transcript alone supports (no data): spot-checked, verified (SNARK), rejected or
    altered. ``live=True`` is the recording client's view: what an auditor must call altered (the trainer's
    answers contradict its own signatures) the client that received them calls a rejection."""
    kind = tr.get("proof_kind") if tr.get("proof_kind") in ("spot", "snark") else "spot"
    try:
        try:
            v = _spot(tr)
        except checks.Incomplete as e:
            if "incomplete" not in tr and "stream_error" not in tr:
                raise TranscriptAltered(f"it is incomplete ({e}; a session that stopped early proves nothing about "
                                        f"the trainer)") from None
            v = _cut_off(tr, kind, str(e))
        except VerificationError as e:
            v = rejected_verdict(kind, e)
        if "incomplete" in tr and v.status != REJECTED:
            v = _cut_off(tr, kind, "")
        if v.status == INCOMPLETE:
            return v  # no verdict was recorded (or, for a stream the client cut off, only the client's own)
        if compare_recorded:
            if "verdict" not in tr:
                raise TranscriptAltered("it has no recorded verdict")
            rec = tr["verdict"]
            if tx.dumps(rec) != tx.dumps(v.to_dict()):  # canonical text: 24.0 or true is not 24 or 1 here
                status = rec.get("status") if isinstance(rec, dict) else rec
                raise TranscriptAltered(f"its recorded verdict ({status!r}) is not the recomputed one ({v.status}: "
                                        f"{v.reason or 'ok'})")
    except TranscriptAltered as e:
        if live:  # the client saw the trainer send it: its own rejection, not attributable to a third party
            return Verdict(REJECTED, kind, f"the trainer's answers contradict its own signatures or the session "
                           f"({str(e).replace('it is', 'the session is')}); a third party cannot attribute this "
                           f"to the trainer, the recording client can")
        return altered_verdict(str(e))
    return v


def _cut_off(tr: dict, kind: str, detail: str) -> Verdict:
    """A session that ended early: the connection was lost (``incomplete``) or the client cut off a stream
    that broke the protocol (``stream_error``, the client's own record, not signed by the trainer)."""
    why = tr.get("incomplete") or f"the recording client cut the session off: the trainer {tr['stream_error']}"
    return Verdict(INCOMPLETE, kind, f"{why}; the transcript ends there and holds no verdict"
                   + (f" ({detail})" if detail else "") + "; what it holds is signed by the trainer and checks")


def with_replay(v: Verdict, tr: dict, rows: np.ndarray, progress=None, ahead=None) -> Verdict:
    """Combine the transcript verdict with the full replay (docs/PROTOCOL.md section 8): a replay that passes
    turns spot-checked (or no-proof) into verified; a replay that fails names the first divergent step, which
    is never later than a failed challenged step; a rejection the replay cannot explain (a bad opening of
    honest states, a binding) stands; altered stays altered. ``ahead``: a verifier.replay_ahead.ReplayAhead
    (the honest leaves computed during the session)."""
    if v.status == ALTERED or (v.status == REJECTED and v.step is None and v.check != "no-proof"):
        return v
    try:
        replayed = _replay(tr, rows, progress, ahead)
    except VerificationError as e:
        return rejected_verdict("replay", e)
    return replayed if v.status != REJECTED or v.check == "no-proof" else v


def _context(tr: dict):
    sid = tx.get_hex(tr, "session_id", 16)
    pub = tx.get_hex(tr, "trainer_key", 32)
    try:
        cfg = TrainConfig.from_dict(tx.get(tr, "config", dict))
    except (InputError, TypeError) as e:
        raise TranscriptFormatError(f"malformed transcript: config is invalid: {e}") from None
    return sid, pub, cfg


def randomness_mode(tr: dict) -> str:
    meta = tr.get("client", {}).get("metadata", {}) if isinstance(tr.get("client"), dict) else {}
    return meta.get("randomness", "os") if isinstance(meta, dict) else "os"


def _record(tr: dict) -> dict:
    return {**client_record(tr), "config": tr.get("config"), "proof_kind": tr.get("proof_kind")}


def _spot(tr: dict) -> Verdict:
    sid, pub, cfg = _context(tr)
    statements = tx.get(tr, "statements", dict)
    proof_kind = tx.get(tr, "proof_kind", str)
    if tx.get(tr, "client.metadata.randomness", str) not in ("os", RANDOMNESS_FIXED):
        raise TranscriptFormatError("transcript field 'client.metadata.randomness' must be 'os' or 'fixed-by-user'")
    client_nonce = tx.get_hex(tr, "client_nonce", 32)
    n, d, K = tx.get(tr, "num_rows", int), tx.get(tr, "num_features", int), tx.get(tr, "spot_checks", int)
    data_root = tx.get_hex(tr, "data_root", 32)
    seed, audit_seed = tx.get_hex(tr, "training_seed", 32), tx.get_hex(tr, "audit_seed", 32)
    with _unsigned("the client record"):
        if client_binding(_record(tr), tx.get_hex(tr, "client.nonce_secret", 32)) != client_nonce:
            raise BindingMismatch("the client record (server, data size, seeds, K, config, standardization) does not "
                                  "match the client nonce the trainer signed")
    with _unsigned("the session statement"):
        session = verify(pub, *tx.get_signed(tr, "statements.session"), kind="session", session_id=sid)
        expect_fields(session, {"trainer_key": pub, "client_nonce": client_nonce,
                                "server_nonce": tx.get_hex(tr, "server_nonce", 32)})
    # From here the client record is what the client committed to before the trainer chose anything, and the
    # trainer's statements are what it signed: a disagreement is a rejection.
    checks.check_session(pub, tx.get_signed(tr, "statements.session"), sid, client_nonce=client_nonce,
                         server_nonce=tx.get_hex(tr, "server_nonce", 32), cfg=cfg, proof_kind=proof_kind)
    R = rows_per_leaf(tr)
    _require(statements, "data", "the trainer's data commitment")
    with _unsigned("the data statement"):  # the root is the client's own, outside its committed record (§5):
        data = verify(pub, *tx.get_signed(tr, "statements.data"), kind="data", session_id=sid)  # only the
        expect_fields(data, {"data_root": data_root})  # recording client knows it sent other rows
    W = value_bytes(tr)
    checks.check_data(pub, tx.get_signed(tr, "statements.data"), sid, data_root=data_root, num_rows=n, num_features=d,
                      rows_per_leaf=R, value_bytes=W)
    trainer_data = None  # the trainer's own dataset (docs/PROTOCOL.md section 11): its signed card, checked here
    if "trainer_data" in tr:
        with _unsigned("the data card"):
            trainer_data = trainer_data_checks.check_card(tr, pub, cfg)
    _require(statements, "randomness", "the trainer's randomness statement")
    commitment = tx.get_hex(tr, "audit_commitment", 32)
    with _unsigned("the randomness statement"):
        rand = verify(pub, *tx.get_signed(tr, "statements.randomness"), kind="randomness", session_id=sid)
        expect_fields(rand, {"audit_commitment": commitment})
    if seed_commitment(audit_seed, sid) != commitment:
        raise BindingMismatch("the audit seed the client committed to does not open the signed audit commitment")
    checks.check_randomness(pub, tx.get_signed(tr, "statements.randomness"), sid, data_root=data_root,
                            training_seed=seed, audit_commitment=commitment, spot_checks=K)
    _require(statements, "final", "the signed final statement", checks.incomplete_reason(tr.get("stream_error")))
    sched = Schedule(SeedContext(sid, data_root, seed), cfg, n, d)
    T = sched.num_steps
    leaves = Leaves(tx.get(tr, "state_leaves"))
    model = tx.get_int_list(tr, "model")
    extras = tx.get(tr, "model_extras", str) if "model_extras" in tr else ""
    scanned = scan(leaves, range(cfg.checkpoint_interval, len(leaves), cfg.checkpoint_interval))  # one pass
    state_root = scanned.root
    with _unsigned("the state leaves or the model"):
        final = verify(pub, *tx.get_signed(tr, "statements.final"), kind="final", session_id=sid)
        from protocol.merkle import model_hash

        expect_fields(final, {"state_root": state_root, "model_hash": model_hash(model, extras)})
    checks.check_final(pub, tx.get_signed(tr, "statements.final"), sid, leaves=leaves, num_steps=T, model=model,
                       extras_json=extras, state_root=state_root)
    with _unsigned("the checkpoint statements"):
        cps = tx.get_signed_list(tr, "statements.checkpoints")
        expected_steps = list(range(cfg.checkpoint_interval, T + 1, cfg.checkpoint_interval))
        if len(cps) != len(expected_steps):
            raise VerificationError(f"{len(cps)} checkpoint statements, the session has {len(expected_steps)}")
        for t, signed in zip(expected_steps, cps, strict=True):
            if verify(pub, *signed, kind="checkpoint", session_id=sid).fields["step"] != t:
                raise VerificationError(f"the checkpoint statement in place of step {t} is for another step")
    checks.check_final_shape(model, extras, d, T, cfg.num_params(d))
    checks.check_checkpoints(pub, cps, sid, leaves, cfg.checkpoint_interval, scanned)
    checks.check_initial_state(leaves, sched)
    checks.check_final_model(leaves, model, extras)
    if "proof" not in tr:
        if "incomplete" in tr:
            raise checks.Incomplete(f"{checks.INCOMPLETE}: no proof was received")
        raise NoProofGiven(no_proof_reason(peer_text(tr.get("proof_error", "none recorded")), replay=trainer_data is None))
    if proof_kind == "snark":
        return _snark(tr, pub, sid, model, sched, extras, trainer_data)
    with _unsigned("the spot-check openings"):
        if tx.get(tr, "proof.kind", str) != "spot":
            raise BindingMismatch(f"the proof is of kind {tr['proof'].get('kind')!r}, the session agreed on 'spot'")
        openings = tx.get(tr, "proof.openings", list)
        if "statement" not in tr["proof"]:
            raise VerificationError("the openings carry no signed openings statement")
        signed = verify(pub, *tx.get_signed(tr, "proof.statement"), kind="openings", session_id=sid)
        expect_fields(signed, {"audit_seed": audit_seed, "openings_hash": openings_hash(audit_seed, openings)})
    try:
        checks.check_spot(openings, sid=sid, state_root=state_root, audit_seed=audit_seed,
                          spot_checks=K, num_steps=T, data_root=data_root, num_rows=n, sched=sched, cfg=cfg,
                          rows_per_leaf=R, value_bytes=W, data_leaf=trainer_data_checks.salted_data_leaf if trainer_data else None,
                          state_leaf_of=trainer_data_checks.hiding_state_leaf_of(T) if trainer_data else None)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, VerificationError):
            raise
        raise TranscriptFormatError(f"malformed spot-check opening: {e!r}") from None
    if trainer_data is not None:
        return Verdict(SPOT_CHECKED, "spot", "", None, trainer_data_checks.guarantee(T, K, randomness_mode(tr),
                                                                                      openings, n))
    return Verdict(SPOT_CHECKED, "spot", "", None, spot_guarantee(T, K, randomness_mode(tr)))


def _require(statements: dict, name: str, what: str, reason: str | None = None) -> None:
    if name not in statements:
        raise checks.Incomplete(reason or f"{checks.INCOMPLETE}: {what} is missing")


def check_given_data(tr: dict, rows: np.ndarray) -> None:
    """The user's --data must be the committed data: otherwise that is the user's input error (exit 2), not
    something the trainer did."""
    n, d = tr["num_rows"], tr["num_features"]
    if rows.shape != (n, d + 1):
        raise InputError(f"the data given has {rows.shape[0]} rows x {rows.shape[1] - 1} features, the session "
                         f"committed {n} x {d}: give the session's data file")
    check_given_width(tr, table_value_bytes(rows))
    check_given_root(tr, data_root_of(rows, rows_per_leaf(tr), value_bytes(tr)))


def committed_roots(tr: dict) -> list[str]:
    """The data roots the user's --data may have: the one the trainer signed (whether the signature holds is
    the audit's business, not this check's), and the client's record."""
    roots = [tr["data_root"]] if "data_root" in tr else []
    try:
        roots.insert(0, Statement.decode(bytes.fromhex(tr["statements"]["data"][0])).fields["data_root"].hex())
    except (KeyError, ValueError, TranscriptFormatError):
        pass
    return roots


def check_given_root(tr: dict, given: bytes) -> None:
    """``given``: the data root of the user's rows (computed as they were read: protocol/csv_chunks.py)."""
    roots = committed_roots(tr)
    if not roots:
        raise InputError("the transcript ends before the data commitment: there is nothing to replay against")
    if given.hex() not in roots:
        raise InputError(f"the data given is not the data committed in this session (Merkle root of the given rows "
                         f"{given.hex()}, committed root {roots[0]}): the rows must be exactly the session's, in the "
                         f"committed order, with the same target column and standardization")


def value_bytes(tr: dict) -> int:
    W = tx.get(tr, "value_bytes", int)
    if W not in VALUE_BYTES:
        raise TranscriptFormatError(f"transcript field 'value_bytes' must be one of {VALUE_BYTES}")
    return W


def check_given_width(tr: dict, need: int) -> None:
    """The user's rows need ``need`` bytes per value (their canonical width): it must be the committed one."""
    W = value_bytes(tr)
    if "trainer_data" not in tr and need != W:
        raise InputError(f"the data given needs {need}-byte values, the session committed {W}-byte values: give "
                         f"the session's data file, with the same target column and standardization")


def rows_per_leaf(tr: dict) -> int:
    R = tx.get(tr, "rows_per_leaf", int)
    if not 1 <= R <= MAX_ROWS_PER_LEAF:
        raise TranscriptFormatError(f"transcript field 'rows_per_leaf' must be in 1..{MAX_ROWS_PER_LEAF}")
    return R


def _replay(tr: dict, rows: np.ndarray, progress=None, ahead=None) -> Verdict:
    sid, _pub, cfg = _context(tr)
    n, d = tx.get(tr, "num_rows", int), tx.get(tr, "num_features", int)
    data_root = tx.get_hex(tr, "data_root", 32)
    seed = tx.get_hex(tr, "training_seed", 32)
    sched = Schedule(SeedContext(sid, data_root, seed), cfg, n, d)
    leaves = Leaves(tx.get(tr, "state_leaves"))
    extras = tx.get(tr, "model_extras", str) if "model_extras" in tr else ""
    honest = ahead.leaves_for(rows, sid, data_root, seed, cfg, n, d) if ahead is not None else None
    checks.replay(rows, leaves, tx.get_int_list(tr, "model"), sched, cfg, extras, progress, honest)
    return Verdict(VERIFIED, "replay", "", None, replay_guarantee(sched.num_steps, randomness_mode(tr)))


def _snark(tr: dict, pub: bytes, sid: bytes, model, sched: Schedule, extras: str, card=None) -> Verdict:
    """``card``: the trainer's data card (trainer-owned data, docs/PROTOCOL.md section 12): the zero-knowledge
    circuit, whose public inputs end with the card's Poseidon commitment."""
    from protocol.snark import snarkjs_io
    from protocol.snark.errors import SnarkFormatError

    from .snark_checks import check_snark, snark_guarantee

    try:
        vk = snarkjs_io.vk_from_json(tx.get(tr, "proof.vk", dict))
        proof = snarkjs_io.proof_from_json(tx.get(tr, "proof.proof", dict))
        public = snarkjs_io.public_from_json(tx.get(tr, "proof.public", list))
    except (SnarkFormatError, ValueError, TypeError) as e:
        raise TranscriptFormatError(f"malformed SNARK record: {e}") from None
    with _unsigned("the snark statement"):
        if tx.get(tr, "proof.kind", str) != "snark":
            raise BindingMismatch(f"the proof is of kind {tr['proof'].get('kind')!r}, the session agreed on 'snark'")
        from protocol.snark import session as snark_session

        st = verify(pub, *tx.get_signed(tr, "proof.statement"), kind="snark", session_id=sid)
        expect_fields(st, {"vk_hash": snark_session.vk_hash(vk), "proof_hash": snark_session.proof_hash(proof)})
        binding = snark_session.session_binding(tx.get_signed(tr, "statements.session")[0])
        theta0 = [int(v) for v in sched.initial_state()]
        expected = (snark_session.public_inputs(model, theta0, binding) if card is None else
                    trainer_data_checks.private_public(model, theta0, binding, card))
        if list(public) != expected:
            raise BindingMismatch("the recorded public inputs are not (model, initial state, session binding"
                                  + (", data commitment)" if card is not None else ")"))
    check_snark(pub, tx.get_signed(tr, "proof.statement"), sid, vk=vk, proof=proof, public=public, model=model,
                theta0=theta0, session_statement=tx.get_signed(tr, "statements.session")[0], extras_json=extras,
                expected_public=expected)
    constraints = tx.get(tr, "proof.constraints", int)
    text = (snark_guarantee(sched.num_steps, constraints) if card is None else
            trainer_data_checks.snark_guarantee(sched.num_steps, constraints, card))
    return Verdict(VERIFIED, "snark", "", None, text + _fixed_note(randomness_mode(tr)))
