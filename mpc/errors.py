"""Why a two-party session stopped."""

from __future__ import annotations

from protocol.errors import VtrainError


class MpcAbort(VtrainError):
    """The other party (or the dealer) deviated, or the peer stopped: the honest party aborts, no output."""


class MpcUnavailable(MpcAbort):
    """The session stopped because a connection failed (the trainer or the dealer is unreachable or gone)."""


class MpcOverflow(VtrainError):
    """A value left the fixed-point range (the plain step raises FixedPointOverflow at the same step)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step
