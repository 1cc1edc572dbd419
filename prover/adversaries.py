"""Named cheating strategies, for demos and for testing the verifier (``--adversary NAME``).

A strategy changes one thing about the honest run and otherwise behaves honestly, signing whatever it
computed. ``target_step(T)`` is the step a single-step cheat picks (the middle of training). The replay audit
must name that step; spot checks catch single-step cheats only with probability K/T, and ``all-steps`` with
probability 1 - C(0, K)... i.e. always, since every step is wrong.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import numpy as np

from protocol.training import FastStepper


class Honest:
    name = "honest"
    offers_proof = True

    def prepare(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X, Y

    def batch(self, step: int, honest_idx: np.ndarray, num_steps: int) -> np.ndarray:
        return honest_idx

    def step(self, stepper: FastStepper, theta: np.ndarray, idx: np.ndarray, step: int, num_steps: int):
        return stepper.step(theta, idx, step)

    def final_model(self, theta: np.ndarray) -> np.ndarray:
        return theta

    def model_extras(self, X: np.ndarray, Y: np.ndarray, theta: np.ndarray, cfg) -> dict | str:
        """Serving-time content a malicious trainer ships with the model (e.g. a trigger); {} when honest.
        A string is shipped as is (already JSON text)."""
        return {}

    def stream(self, events):
        """The Train stream as sent (prover.trainer events); a hostile trainer may add, drop or delay events."""
        return events

    def openings(self, openings: list[dict]) -> list[dict]:
        """The spot-check openings as sent."""
        return openings
    def observe(self, session: dict) -> None:
        """Everything the trainer knows when training starts: session_id, data_root, training_seed,
        audit_commitment, spot_checks, num_steps (a cheating strategy may use all of it)."""

    def observe_audit_seed(self, audit_seed: bytes) -> None:
        """The audit seed, revealed by the client at Prove (after every state was signed)."""


def target_step(num_steps: int) -> int:
    return max(1, num_steps // 2)


class WrongLR(Honest):
    """One step (the middle one) with twice the agreed learning rate."""

    name = "wrong-lr"

    def step(self, stepper, theta, idx, step, num_steps):
        if step != target_step(num_steps):
            return stepper.step(theta, idx, step)
        cfg = stepper.cfg
        other = FastStepper(stepper.X, stepper.Y, type(cfg)(**{**cfg.to_dict(), "lr_num": cfg.lr_num * 2}))
        return other.step(theta, idx, step)


class SkipStep(Honest):
    """The middle step is skipped: its state equals the previous one."""

    name = "skip-step"

    def step(self, stepper, theta, idx, step, num_steps):
        if step == target_step(num_steps):
            return theta.copy(), np.zeros(len(idx), dtype=np.int64)
        return stepper.step(theta, idx, step)


class Reorder(Honest):
    """Batch order chosen by the trainer (rows sorted by target, a classic ordering attack), not the seed."""

    name = "reorder"

    def prepare(self, X, Y):
        self._order = np.argsort(Y, kind="stable")
        return X, Y

    def batch(self, step, honest_idx, num_steps):
        n, B = self._order.size, honest_idx.size
        spe = n // B
        s = (step - 1) % spe
        return self._order[s * B:(s + 1) * B]


class Poison(Honest):
    """One batch (the middle step's) contains an extra row that is not in the committed data."""

    name = "poison"

    def prepare(self, X, Y):
        self._n = X.shape[0]
        fake_x = np.full((1, X.shape[1]), int(np.abs(X).max()), dtype=np.int64)
        fake_y = np.array([-int(np.abs(Y).max()) or -1], dtype=np.int64)
        return np.vstack([X, fake_x]), np.concatenate([Y, fake_y])

    def batch(self, step, honest_idx, num_steps):
        if step != target_step(num_steps):
            return honest_idx
        idx = honest_idx.copy()
        idx[0] = self._n  # the fabricated row
        return idx


class SwapModel(Honest):
    """Trains honestly, then hands back (and signs) a different final model."""

    name = "swap-model"

    def final_model(self, theta):
        out = theta.copy()
        out[:-1] = -out[:-1]
        return out


class AllSteps(Honest):
    """Every step slightly off: the bias gets one extra unit in the last place."""

    name = "all-steps"

    def step(self, stepper, theta, idx, step, num_steps):
        new, r = stepper.step(theta, idx, step)
        new = new.copy()
        new[-1] += 1
        return new, r


class NoProofOffered(Honest):
    """Trains honestly and commits, but answers Prove with UNIMPLEMENTED (a trainer that offers no proof)."""

    name = "no-proof"
    offers_proof = False


# -- hostile messages: a client must reject these (or give up on them) without crashing or growing -------------

class BadStateLength(Honest):
    """Trains honestly, then hands back (and signs, with a matching model hash) a final model of d+2 values."""

    name = "bad-state-length"

    def final_model(self, theta):
        return np.append(theta, 1)


class LeafFlood(Honest):
    """Streams FLOOD_LEAVES state-leaf hashes beyond the T+1 it owes (8 MB per 256k), before its final result."""

    name = "leaf-flood"
    FLOOD_LEAVES = 2_000_000
    PER_EVENT = 4096

    def stream(self, events):
        from .trainer import FinalEvent, LeavesEvent

        sent = 0
        for ev in events:
            if isinstance(ev, LeavesEvent):
                sent = ev.first_step + len(ev.hashes) // 32
            if isinstance(ev, FinalEvent):
                junk = bytes(32 * self.PER_EVENT)
                for k in range(0, self.FLOOD_LEAVES, self.PER_EVENT):
                    yield LeavesEvent(sent + k, junk)
            yield ev


class DeepExtras(Honest):
    """Ships a JSON value nested DEPTH deep with the model (signed in the model hash)."""

    name = "deep-extras"
    DEPTH = 100_000

    def model_extras(self, X, Y, theta, cfg):
        return '{"a":' * self.DEPTH + "1" + "}" * self.DEPTH


class GarbageProof(Honest):
    """Answers the spot check with well-typed garbage: the challenged step numbers, but states of d+5 random
    values, 16 random siblings per inclusion proof, rows with random indices and random-length values."""

    name = "garbage-proof"
    SIBLINGS = 16

    def openings(self, openings):
        rng = np.random.default_rng(7)
        out = []
        for op in openings:
            width = len(op["state_before"]) + 4
            sib = [rng.bytes(32) for _ in range(self.SIBLINGS)]
            out.append({"step": op["step"], "state_before": rng.integers(-2**62, 2**62, width),
                        "state_after": rng.integers(-2**62, 2**62, width), "proof_before": sib, "proof_after": sib,
                        "rows": [(int(rng.integers(0, 2**62)), rng.integers(-2**62, 2**62, int(rng.integers(0, 9))),
                                  int(rng.integers(0, 2**62)), sib, rng.integers(-2**62, 2**62, 3))
                                 for _ in op["rows"]]})
        return out


_RELEASE = threading.Event()


def release_stalls() -> None:
    """Server shutdown: a stalled ``slow`` stream resumes (so the process can exit)."""
    _RELEASE.set()


class Slow(Honest):
    """Trains, streams honestly up to the middle of training, then sends nothing for STALL_SECONDS (or until the
    server shuts down), then carries on."""

    name = "slow"
    STALL_SECONDS = 120.0

    def stream(self, events):
        from .trainer import ProgressEvent

        stalled = False
        for ev in events:
            yield ev
            if not stalled and isinstance(ev, ProgressEvent) and ev.step >= max(1, ev.total_steps // 2):
                stalled = True
                end = time.monotonic() + self.STALL_SECONDS
                while time.monotonic() < end and not _RELEASE.wait(0.2):
                    pass


def chosen_model(theta: np.ndarray) -> np.ndarray:
    """The model a jumping trainer wants to ship: every weight negated (the bias kept)."""
    out = np.asarray(theta, dtype=np.int64).copy()
    out[:-1] = -out[:-1]
    return out


class Jump(Honest):
    """Trains honestly, then commits a chosen model as the last state (step T) and signs everything
    consistently: the final model equals the last committed state, so only a check of step T catches it
    (the spot check with probability K/T, the full replay always)."""

    name = "jump"

    def step(self, stepper, theta, idx, step, num_steps):
        new, r = stepper.step(theta, idx, step)
        return (chosen_model(new), r) if step == num_steps else (new, r)


class Remember(Honest):
    """Remembers the randomness of every session it serves (training seeds, audit seeds) and uses all of it
    to predict the challenge: every audit seed it has seen, and the audit seed of a short user-fixed seed
    found by brute force (masters of 1-2 bytes under the client-seed derivation of verifier/client.py, as
    the audit seed was derived before vtrain/2). A candidate is confirmed exactly against the signed audit
    commitment H(session_id || audit_seed). It then jumps at step T (like ``jump``) and, with a confirmed
    prediction, grinds the shipped model (bias +-k units) until step T is not challenged. ``log`` records,
    per session, whether it predicted the challenge (it never should against a vtrain/2 client)."""

    name = "remember"
    seen_audit_seeds: ClassVar[list[bytes]] = []  # shared by every session this process serves
    log: ClassVar[list[dict]] = []
    MAX_GRIND = 256

    def observe(self, session):
        self.session = session
        self.leaves: list[bytes] = []
        master = _brute_force_master(session["training_seed"])
        candidates = list(self.seen_audit_seeds)
        if master is not None:
            candidates.append(_legacy_part(b"audit", master))
        from protocol.prg import seed_commitment

        self.predicted = next((a for a in candidates
                               if seed_commitment(a, session["session_id"]) == session["audit_commitment"]), None)
        self.entry = {"session_id": session["session_id"].hex(), "master_found": master is not None,
                      "predicted": self.predicted is not None, "escaped_prediction": None}
        self.log.append(self.entry)

    def observe_audit_seed(self, audit_seed):
        self.seen_audit_seeds.append(bytes(audit_seed))

    def step(self, stepper, theta, idx, step, num_steps):
        from protocol.merkle import state_leaf

        if step == 1:
            self.leaves.append(state_leaf(0, theta))
        new, r = stepper.step(theta, idx, step)
        if step == num_steps:
            new = self._grind(chosen_model(new), num_steps)
        self.leaves.append(state_leaf(step, new))
        return new, r

    def _grind(self, model: np.ndarray, T: int) -> np.ndarray:
        if self.predicted is None:
            return model  # no prediction: gamble on the K/T odds
        from protocol.merkle import MerkleTree, state_leaf
        from protocol.prg import challenge_steps

        for k in range(self.MAX_GRIND):
            cand = model.copy()
            cand[-1] += (k + 1) // 2 * (1 if k % 2 else -1)
            root = MerkleTree([*self.leaves, state_leaf(T, cand)]).root
            if T not in challenge_steps(self.session["session_id"], root, self.predicted, self.session["spot_checks"], T):
                self.entry["escaped_prediction"] = True
                return cand
        self.entry["escaped_prediction"] = False
        return model


def _legacy_part(label: bytes, master: bytes) -> bytes:
    from protocol.hashing import tagged_hash

    return tagged_hash("session-binding", b"client-seed/" + label, master)


def _brute_force_master(training_seed: bytes, max_len: int = 2) -> bytes | None:
    """A user-fixed seed of at most ``max_len`` bytes, recovered from the training seed it produced."""
    import itertools

    for n in range(1, max_len + 1):
        for tup in itertools.product(range(256), repeat=n):
            m = bytes(tup)
            if _legacy_part(b"training", m) == training_seed:
                return m
    return None


# -- trainer-owned data (docs/PROTOCOL.md section 11): `reorder` and `jump` above apply as they are ---------------

class SwapRows(Honest):
    """Commits its dataset, then trains on one row that is not in it: row ``n // 2`` is replaced by a fabricated
    row (every value v becomes -v - 1). Its openings show the committed rows, so a challenged step whose batch
    holds that row does not replay; the other steps are honest (caught with probability 1 - C(T-m, K)/C(T, K),
    m = the steps whose batch holds the row, about one per epoch)."""

    name = "swap-rows"

    @staticmethod
    def swapped_row(n: int) -> int:
        return n // 2

    def prepare(self, X, Y):
        k = self.swapped_row(X.shape[0])
        X2, Y2 = X.copy(), Y.copy()
        X2[k] = -X2[k] - 1
        return X2, Y2


class BadSalt(Honest):
    """Trains honestly on its committed dataset, but opens every row with a salt that is not the committed one
    (one bit flipped): no opened row is in the committed data, at every challenged step."""

    name = "bad-salt"

    def openings(self, openings):
        for op in openings:
            op["rows"] = [(*r[:5], bytes([r[5][0] ^ 1]) + bytes(r[5][1:])) if len(r) > 5 else r for r in op["rows"]]
        return openings


STRATEGIES = {cls.name: cls for cls in (Honest, WrongLR, SkipStep, Reorder, Poison, SwapModel, AllSteps,
                                        NoProofOffered, Jump, Remember, BadStateLength, LeafFlood, DeepExtras,
                                        GarbageProof, Slow, SwapRows, BadSalt)}


def get_strategy(name: str | None) -> Honest:
    from . import backdoor_strategies  # signature-backdoor, ball-backdoor (issue: backdoor lab)

    table = {**STRATEGIES, **backdoor_strategies.STRATEGIES}
    key = name or "honest"
    if key not in table:
        raise ValueError(f"unknown adversary {name!r}; choose one of {', '.join(sorted(table))}")
    return table[key]()
