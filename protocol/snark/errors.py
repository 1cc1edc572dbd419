"""Exceptions of the Groth16 layer, as subclasses of the project-wide family in :mod:`protocol.errors`.

Verification failures raise a :class:`SnarkVerificationError` subclass whose ``evidence`` names the value
that failed; malformed files raise :class:`SnarkFormatError` (a ``ValueError``); an assignment that does not
satisfy a constraint system raises :class:`ConstraintViolation` (also a ``ValueError``: it is misuse by the
prover, not a rejected proof).
"""

from __future__ import annotations

from protocol.errors import TranscriptFormatError, VerificationError, VtrainError

__all__ = [
    "ConstraintViolation",
    "PairingCheckFailed",
    "ProofPointError",
    "ProvingKeyRejected",
    "PublicInputCountError",
    "PublicInputError",
    "PublicInputRangeError",
    "SnarkFormatError",
    "SnarkVerificationError",
]


class SnarkVerificationError(VerificationError):
    """A Groth16 proof was rejected."""


class PublicInputError(SnarkVerificationError):
    """The public inputs do not match the verifying key's statement shape."""


class PublicInputCountError(PublicInputError):
    """The number of public inputs differs from the key's nPublic."""


class PublicInputRangeError(PublicInputError):
    """A public input is not an int in [0, r) (values >= r are rejected, never reduced)."""


class ProofPointError(SnarkVerificationError):
    """A proof point is the point at infinity, off the curve, or outside the order-r subgroup."""


class PairingCheckFailed(SnarkVerificationError):
    """e(-A,B) e(vk_x,gamma) e(C,delta) e(alpha,beta) != 1: the proof does not verify for these inputs."""


class SnarkFormatError(TranscriptFormatError):
    """A snarkjs JSON file, an iden3 binary file or a compressed proof/key cannot be parsed strictly."""


class ConstraintViolation(VtrainError, ValueError):
    """A witness does not satisfy a constraint; ``index`` and ``name`` identify the first failing one."""

    def __init__(self, message: str, *, index: int, name: str, a: int | None = None, b: int | None = None,
                 c: int | None = None):
        super().__init__(message)
        self.index = index
        self.name = name
        self.a = a
        self.b = b
        self.c = c


class ProvingKeyRejected(VtrainError, ValueError):
    """The prover refuses a proving key that is not well formed (subversion zero knowledge, docs/SNARK.md
    section 8.4); ``check`` names the failed check (e.g. "h-query")."""

    def __init__(self, message: str, *, check: str):
        super().__init__(f"{message} [check: {check}]")
        self.check = check
