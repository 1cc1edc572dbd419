"""Exception family shared by the prover, the verifier and the audit.

Verification failures raise :class:`VerificationError` subclasses carrying the values that failed, so a
rejection can name the step and carry evidence. Misuse raises ``ValueError``/``TypeError``.
"""

from __future__ import annotations


class VtrainError(Exception):
    """Base class for errors raised by vtrain."""


class InputError(VtrainError, ValueError):
    """Bad user input (data file, configuration, request) with a message a person can act on."""


class FixedPointOverflow(VtrainError, ArithmeticError):
    """A value left the range the fixed-point format allows (never silently wrapped)."""

    def __init__(self, message: str, *, step: int | None = None, value: int | None = None, bound: int | None = None):
        super().__init__(message)
        self.step = step
        self.value = value
        self.bound = bound


class VerificationError(VtrainError):
    """A check failed: the trainer's claim is not what the protocol says it should be."""

    def __init__(self, message: str, *, step: int | None = None, evidence: dict | None = None):
        super().__init__(message)
        self.step = step
        self.evidence = evidence or {}


class SignatureInvalid(VerificationError):
    """An Ed25519 signature does not verify over the canonical statement bytes."""


class BindingMismatch(VerificationError):
    """A statement refers to another session, key, config, data root or seed than the one agreed."""


class MerkleProofInvalid(VerificationError):
    """An inclusion proof does not lead to the committed root."""


class StepMismatch(VerificationError):
    """Replaying a step from the committed previous state does not give the committed next state."""


class TranscriptFormatError(VtrainError, ValueError):
    """A transcript or model file cannot be parsed (truncated, tampered, wrong version)."""
