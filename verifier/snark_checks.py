"""Checks of the SNARK proof kind (small, no I/O): the signed snark statement and the Groth16 proof
against the client's own verifying key and the public inputs the client computes itself."""

from __future__ import annotations

from protocol.errors import BindingMismatch, VerificationError
from protocol.merkle import model_hash
from protocol.snark import groth16
from protocol.snark import session as snark_session
from protocol.snark.groth16 import Proof, VerifyingKey
from protocol.statements import expect_fields, verify


def check_snark(pub: bytes, signed, sid: bytes, *, vk: VerifyingKey, proof: Proof, public: list[int], model,
                theta0, session_statement: bytes, extras_json: str = "", expected_public=None) -> None:
    """Raises VerificationError (or a SNARK subclass naming the failed check). ``expected_public``: the public
    inputs of another circuit of the session (trainer-owned data: verifier/trainer_data_checks.py)."""
    st = verify(pub, *signed, kind="snark", session_id=sid)
    expect_fields(st, {"vk_hash": snark_session.vk_hash(vk), "proof_hash": snark_session.proof_hash(proof),
                       "model_hash": model_hash(model, extras_json)})
    expected = expected_public or snark_session.public_inputs(model, theta0,
                                                              snark_session.session_binding(session_statement))
    if list(public) != expected:
        raise BindingMismatch("the SNARK's public inputs are not (returned model, seed-derived initial state, "
                              "session binding)")
    try:
        groth16.verify(vk, expected, proof)
    except VerificationError as e:
        raise VerificationError(f"the Groth16 proof of honest training does not verify: {e}") from e


def snark_guarantee(T: int, constraints: int) -> str:
    return (f"SNARK (Groth16 over BLS12-381, {constraints} constraints): all {T} steps of the agreed linear-regression "
            f"training on your committed data, with the batch order and initial state from your seed, were computed "
            f"bit-exactly, ending in the returned model; the proof is bound to this session. Soundness rests on your "
            f"own setup (designated verifier): anyone else relying on this proof must trust that the setup's toxic "
            f"waste was erased.")
