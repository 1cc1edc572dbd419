"""The trainer's proofs of a trained session: spot-check openings (docs/PROTOCOL.md section 4) and the Groth16
proof of the whole training (docs/SNARK.md), each with the signed statement the client records.

Called by prover/session.py once the session is TRAINED (openings) or right after training (SNARK).
"""

from __future__ import annotations

import numpy as np

from protocol import convert
from protocol.errors import InputError, VerificationError
from protocol.evidence import openings_hash
from protocol.merkle import model_hash
from protocol.prg import SeedContext, challenge_steps
from protocol.snark import groth16, snarkjs_io
from protocol.snark import session as snark_session
from protocol.statements import Statement, sign
from protocol.training import Schedule

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
    for t in steps:
        idx = sched.batch(t)
        rows = []
        for i in (int(i) for i in idx):  # each row with its whole data leaf (docs/PROTOCOL.md section 4)
            lo, hi = i // R * R, min(i // R * R + R, n)
            block = np.column_stack([rec.X[lo:hi], rec.Y[lo:hi]])
            rows.append((i, block[i - lo], i // R, s.data_tree.proof(i // R), block))
        openings.append({"step": t, "state_before": rec.states[t - 1], "state_after": rec.states[t],
                         "proof_before": rec.tree.proof(t - 1), "proof_after": rec.tree.proof(t), "rows": rows})
    if s.trainer_data is not None:  # salted leaves: each opened row comes with its salt (prover/trainer_data.py)
        from .trainer_data import add_salts

        openings = add_salts(openings, s.trainer_data, s.state_secret, T)
    openings = s.strategy.openings(openings)  # (a hostile trainer's garbage, signed like any answer)
    # sign what is sent, in its JSON form (the form the client records and an auditor re-hashes)
    messages = [convert.opening_to_proto(op) for op in openings]
    digest = openings_hash(audit_seed, [convert.opening_from_proto(m) for m in messages])
    data, sig = sign(key, Statement("openings", s.session_id, {"audit_seed": bytes(audit_seed),
                                                               "openings_hash": digest}))
    return messages, (data, sig)


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
