"""Provider-owned data: the API a session calls for a zero-knowledge SNARK of training on committed rows.

Roles (docs/SNARK.md section 8): the provider holds the rows and a blinding element; it publishes the
Poseidon commitment (``commitment``) before the client reveals its seed. The client derives theta_0 and
the batch schedule from the seed, builds the constraint system (``circuit``: it depends on n, d, the
schedule and the configuration, never on the data) and runs the setup WITH the powers of tau
(``client_setup``). The provider checks the key (``key_check``), proves with fresh blinding
(``prove_private``) and returns theta_T and the proof; the client checks it against the commitment it
received earlier, its own theta_0 and the session binding (``verify_private``).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass

from . import groth16 as g16
from .field import R
from .key_check import check_proving_key, project_proof
from .poseidon import commit
from .sgd_circuit import CircuitConfig
from .zk_circuit import build_private_circuit, decode_private_public, encode_private_public

__all__ = ["PrivateProof", "circuit", "client_setup", "commitment", "export_snarkjs", "new_blinding", "prove_private",
           "verify_private"]


@dataclass(frozen=True)
class PrivateProof:
    proof: g16.Proof
    theta_T: list[int]
    public: list[int]  # [theta_T, theta_0, binding, commitment] as field elements
    commitment: int
    key_check: dict  # seconds: key check (total_s, ...), build_s (circuit + witness), groth16_s, *_cpu_s
    r1cs: object = dataclasses.field(default=None, repr=False, compare=False)  # the circuit (with values)
    witness: list = dataclasses.field(default=None, repr=False, compare=False)  # secret: holds the rows


def new_blinding() -> int:
    """A uniform blinding element from the OS (never from user input)."""
    return secrets.randbelow(R)


def commitment(X, Y, blinding: int, cfg) -> int:
    """The provider's commitment to its rows (values must be K-bit signed integers)."""
    return commit(X, Y, blinding, CircuitConfig.coerce(cfg).weight_bits)


def circuit(n: int, d: int, schedule, cfg):
    """The constraint system (no witness) both sides build from public information."""
    return build_private_circuit(n, d, schedule, cfg)[0]


def client_setup(n: int, d: int, schedule, cfg, backend=None):
    """The client's setup: (r1cs, proving key with powers of tau, verifying key); trapdoor dropped."""
    cs = circuit(n, d, schedule, cfg)
    pk, vk = g16.setup_random(cs, backend, powers=True)
    return cs, pk, vk


def prove_private(pk: g16.ProvingKey, X, Y, blinding: int, schedule, theta0, cfg, binding: int, *,
                  r1cs=None, backend=None) -> PrivateProof:
    """The provider's side. Refuses (ProvingKeyRejected) a key that is not well formed BEFORE touching
    the secret witness in any group operation; then proves with r, s from the OS and projects the proof
    onto the prime-order subgroups (key_check module docstring)."""
    n, d = len(X), len(X[0]) if X else 0
    shape = r1cs if r1cs is not None else circuit(n, d, schedule, cfg)
    c0 = time.process_time()
    timings = check_proving_key(pk, shape, backend)
    c1 = time.process_time()
    t0 = time.perf_counter()
    cs, witness, public = build_private_circuit(n, d, schedule, cfg, X=X, Y=Y, theta0=theta0, binding=binding,
                                                blinding=blinding)
    t1 = time.perf_counter()
    proof = project_proof(g16.prove_random(pk, cs, witness, backend), backend)
    timings = {**timings, "build_s": t1 - t0, "groth16_s": time.perf_counter() - t1, "check_cpu_s": c1 - c0,
               "prove_cpu_s": time.process_time() - c1}
    theta_T, _, _, com = decode_private_public(public, d, CircuitConfig.coerce(cfg).weight_bits)
    return PrivateProof(proof=proof, theta_T=theta_T, public=public, commitment=com, key_check=timings, r1cs=cs,
                        witness=witness)


def verify_private(vk: g16.VerifyingKey, commitment: int, theta0, theta_T, binding: int, proof: g16.Proof,
                   cfg, backend=None) -> bool:
    """The client's check: True, or a SnarkVerificationError naming the failed check. The public inputs
    are built here from the client's own values (theta_T range-checked to K bits)."""
    d = len(theta0) - 1
    public = encode_private_public(theta_T, theta0, binding, commitment)
    decode_private_public(public, d, CircuitConfig.coerce(cfg).weight_bits)  # range checks (raises)
    return g16.verify(vk, public, proof, backend)


def export_snarkjs(out_dir, vk: g16.VerifyingKey, pp: PrivateProof, r1cs=None) -> list[str]:
    """Write verification_key.json, proof.json, public.json (and, given the data-independent constraint
    system, circuit.r1cs) for ``snarkjs groth16 verify``; never the witness (it holds the private rows)."""
    from pathlib import Path

    from protocol.fileio import write_atomic

    from . import snarkjs_io as sio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"verification_key.json": sio.vk_to_json(vk), "proof.json": sio.proof_to_json(pp.proof),
             "public.json": sio.public_to_json(pp.public)}
    for name, obj in files.items():
        write_atomic(out / name, json.dumps(obj, indent=1) + "\n")
    written = list(files)
    if r1cs is not None:
        write_atomic(out / "circuit.r1cs", sio.r1cs_to_bytes(r1cs))
        written.append("circuit.r1cs")
    return written
