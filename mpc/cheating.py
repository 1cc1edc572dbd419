"""Named cheating strategies for a two-party trainer (``vtrain-prover serve --mpc-adversary NAME``).

Each deviates in one way; the honest client must abort with a clear message and never output a model
(tests/test_mpc_e2e.py runs each against real processes). The dealer's ``bad-triple`` lives in
``mpc.preprocessing.Generator``.
"""

from __future__ import annotations

import numpy as np

from .field import add, const, zeros
from .shares import Shared


class Honest:
    def before_inputs(self, party) -> None:
        pass

    def inputs(self, masked: bytes) -> bytes:
        """Its masked input rows as sent (docs/MPC.md section 4, round ``inputs``)."""
        return masked

    def outgoing(self, label: str, shares: np.ndarray) -> np.ndarray:
        return shares

    def material(self, t: int, mat: dict, party) -> None:
        pass

    def truncated(self, t: int, z: Shared) -> Shared:
        return z

    def after_step(self, t: int, old: Shared, new: Shared) -> Shared:
        return new


class BadShare(Honest):
    """Sends a wrong share when the first truncation value of step 1 is opened."""

    def outgoing(self, label, shares):
        if label == "s1/z/c":
            shares = shares.copy()
            shares[0] = add(shares[0], const(1))
        return shares


class BadTriple(Honest):
    """Uses a wrong share of one multiplication triple at step 1 (its product is then wrong)."""

    def material(self, t, mat, party):
        if t == 1:
            mat["L1.c"].v[0] = add(mat["L1.c"].v[0], const(1))


class BadTruncation(Honest):
    """Adds 1 to its share of a truncated prediction at step 1 (a rounding 'error' steering the model)."""

    def truncated(self, t, z):
        if t == 1:
            v = z.v.copy()
            v[0] = add(v[0], const(1))
            return Shared(v, z.m, z.key)
        return z


class SkipStep(Honest):
    """Skips step 2's update: keeps its shares of the previous parameters while exchanging every message."""

    def after_step(self, t, old, new):
        return old if t == 2 else new


class EarlyOutput(Honest):
    """Asks for the model after one step: sends the output message where step 2 begins."""

    def material(self, t, mat, party):
        if t == 2:
            party.exchange("output", zeros(1))


class HideRows(Honest):
    """Declares its rows in the hello but sends none of them masked (its row count is a lie)."""

    def inputs(self, masked):
        return b""


STRATEGIES = {"bad-share": BadShare, "bad-triple": BadTriple, "bad-truncation": BadTruncation,
              "skip-step": SkipStep, "early-output": EarlyOutput, "hide-rows": HideRows}


def get_hooks(name: str | None):
    if not name:
        return None
    if name not in STRATEGIES:
        raise ValueError(f"unknown two-party adversary {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
