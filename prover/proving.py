"""The trainer's proofs of a trained session: spot-check openings (docs/PROTOCOL.md section 4) and the Groth16
proof of the whole training (docs/SNARK.md), each with the signed statement the client records.

Called by prover/session.py once the session is TRAINED (openings) or right after training (SNARK).
"""

from __future__ import annotations

import numpy as np

from protocol import convert, opening_rows
from protocol.errors import InputError, VerificationError
from protocol.evidence import openings_hash
from protocol.merkle import model_hash
from protocol.prg import SeedContext, challenge_steps
from protocol.snark import groth16, snarkjs_io
from protocol.snark import session as snark_session
from protocol.statements import Statement, sign
from protocol.training import Schedule
from protocol.wire import trainer_pb2 as pb

from .adversaries import Honest
from .session_state import Session
from .trainer import ProgressEvent


def spot_openings(key, s: Session, audit_seed: bytes):
    """The openings of the steps the audit seed challenges, each batch row with its whole data leaf, as the
    StepOpening messages sent, and the signed statement over them: (messages, (statement, signature))."""
    rec = s.record["result"]
    T = rec.states.shape[0] - 1
    steps = challenge_steps(s.session_id, rec.tree.root, audit_seed, s.spot_checks, T)
    sched = Schedule(SeedContext(s.session_id, s.data_tree.root, s.training_seed), s.cfg, rec.X.shape[0],
                     rec.X.shape[1])
    openings = []
    R, n = s.rows_per_leaf, rec.X.shape[0]
    offsets = np.arange(R)
    for t in steps:
        idx = np.asarray(sched.batch(t), dtype=np.int64)
        lo = idx // R * R
        cells = np.minimum(lo[:, None] + offsets, n - 1)  # each row's whole data leaf (docs/PROTOCOL.md section 4)
        blocks = np.concatenate([rec.X[cells], rec.Y[cells][:, :, None]], axis=2).astype(np.int64)
        rows = []
        leaves = (idx // R).tolist()
        paths = s.data_tree.proofs(leaves)  # (prover/data_tree.py: re-hashed from the rows in one pass)
        for k, (i, j) in enumerate(zip(idx.tolist(), leaves)):
            block = blocks[k] if j * R + R <= n else blocks[k, :n - j * R]  # the last leaf may be shorter
            rows.append((i, block[i - j * R], j, paths[k], block))
        openings.append({"step": t, "state_before": rec.states[t - 1], "state_after": rec.states[t],
                         "proof_before": rec.tree.proof(t - 1), "proof_after": rec.tree.proof(t), "rows": rows})
    if s.trainer_data is not None:  # salted leaves: each opened row comes with its salt (prover/trainer_data.py)
        from .trainer_data import add_salts

        openings = add_salts(openings, s.trainer_data, s.state_secret, T)
    honest = s.trainer_data is None and type(s.strategy).openings is Honest.openings
    openings = s.strategy.openings(openings)  # (a hostile trainer's garbage, signed like any answer)
    # sign what is sent, in its JSON form (the form the client records and an auditor re-hashes); an honest
    # opening's regular rows go packed: the very bytes the openings hash reads (docs/PROTOCOL.md section 2)
    messages, forms = _messages(openings, honest)
    digest = openings_hash(audit_seed, forms)
    data, sig = sign(key, Statement("openings", s.session_id, {"audit_seed": bytes(audit_seed),
                                                               "openings_hash": digest}))
    return messages, (data, sig)


def _messages(openings: list[dict], honest: bool) -> tuple[list, list[dict]]:
    """(StepOpening messages, their JSON forms for the openings hash). An honest opening whose rows are regular
    sends them packed (``rows_packed``: the very bytes the openings hash reads for them); others as RowOpenings."""
    packed = [_rows(op["rows"]) if honest else None for op in openings]
    messages = [convert.opening_to_proto(op if rows is None else {**op, "rows": []}) for op, rows in zip(openings, packed)]
    for m, rows in zip(messages, packed):
        if rows is not None:
            m.rows_packed = rows.encoding()
    return messages, [_json_form(m, rows) for m, rows in zip(messages, packed)]


def _json_form(message, rows) -> dict:
    """``convert.opening_from_proto(message)`` for the openings hash; packed rows as the arrays they were packed
    from (the same encoding, without a Python object per value)."""
    if rows is None:
        return convert.opening_from_proto(message)
    return {**convert.opening_from_proto(pb.StepOpening(
        step=message.step, state_before=message.state_before, state_after=message.state_after,
        proof_before=message.proof_before, proof_after=message.proof_after)), "rows": rows}


def _rows(rows) -> opening_rows.Rows | None:
    """An opening's rows (index, values, leaf index, siblings, leaf block) as opening_rows.Rows, when every
    leaf holds the same number of rows (else None: the message's JSON form is hashed)."""
    if len({len(r[4]) for r in rows}) != 1 or any(len(r) != 5 for r in rows):
        return None
    return opening_rows.Rows([int(r[0]) for r in rows], np.stack([np.asarray(r[1], dtype=np.int64) for r in rows]),
                             [int(r[2]) for r in rows], [b"".join(r[3]) for r in rows],
                             np.stack([np.asarray(r[4], dtype=np.int64) for r in rows]))


def prove_snark(key, s: Session, ctx: SeedContext):
    """Build this session's circuit with the honest witness and prove it with the client's key (a generator of
    progress events; the proof and its signed statement end up in ``s.snark``)."""
    yield ProgressEvent(0, 1, 0, float("nan"), phase="proving")
    if s.trainer_data is not None:  # the zero-knowledge proof on the trainer's own rows
        from .trainer_data_snark import private_proof

        public, proof = private_proof(s)
    else:
        sched = Schedule(ctx, s.cfg, s.X.shape[0], s.X.shape[1])
        cs, witness, public = snark_session.build(s.X, s.Y, sched, s.cfg, [int(v) for v in sched.initial_state()],
                                                  snark_session.session_binding(s.session_statement))
        proof = groth16.prove_random(s.pk, cs, witness)
    try:
        groth16.verify(s.pk.vk, public, proof)  # never send a proof that does not verify under the client's key
    except VerificationError as e:
        raise InputError(f"the proving key the client sent does not yield proofs that verify under its own "
                         f"verifying key ({e}); run the setup again") from None
    rec = s.record["result"]
    data, sig = sign(key, Statement("snark", s.session_id, {
        "vk_hash": snark_session.vk_hash(s.pk.vk), "proof_hash": snark_session.proof_hash(proof),
        "model_hash": model_hash(rec.final_model, rec.extras_json)}))
    s.snark = {"proof": snarkjs_io.proof_to_bytes(proof), "statement": data, "signature": sig}
    s.pk = None  # large; no longer needed
    yield ProgressEvent(1, 1, 0, float("nan"), phase="proving")
