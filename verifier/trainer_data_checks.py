"""Checks of a session on the trainer's own data (docs/PROTOCOL.md section 11): the signed data card against
the session, the salted data leaves of the opened rows, and the verdict's wording. Pure, no I/O; used live by
the client and offline by the audit."""

from __future__ import annotations

from protocol import transcript as tx
from protocol.errors import BindingMismatch, MerkleProofInvalid
from protocol.trainer_data import SALT_BYTES, DataCard, hiding_state_leaf, open_card, salted_leaf
from protocol.training import TrainConfig


def check_card(tr: dict, pub: bytes, cfg: TrainConfig) -> DataCard:
    """The recorded card is signed by the session's trainer and describes exactly what the client committed to
    in its record (root, size, features, target, standardization) and the agreed config (model, frac_bits)."""
    name = tx.get(tr, "trainer_data.name", str)
    card = open_card(pub, *tx.get_signed(tr, "trainer_data.card"))
    meta = tx.get(tr, "client.metadata", dict)
    expected = {"name": (card.name, name), "data root": (card.data_root, tx.get_hex(tr, "data_root", 32)),
                "row count": (card.num_rows, tx.get(tr, "num_rows", int)),
                "feature count": (card.num_features, tx.get(tr, "num_features", int)),
                "rows per leaf": (card.rows_per_leaf, tx.get(tr, "rows_per_leaf", int)),
                "feature names": (list(card.feature_names), meta.get("feature_names")),
                "target": (card.target, meta.get("target")),
                "standardization": (card.standardization, meta.get("standardization")),
                "fraction bits": (card.frac_bits, cfg.frac_bits)}
    for what, (signed, recorded) in expected.items():
        if signed != recorded:
            raise BindingMismatch(f"the data card's {what} is not the session's")
    if cfg.model not in card.models:
        raise BindingMismatch(f"the data card commits the dataset for {', '.join(card.models)}, the session trained "
                              f"{cfg.model}")
    return card


def private_public(model, theta0, binding: int, card: DataCard) -> list[int]:
    """The zero-knowledge circuit's public inputs: (model, theta_0, binding, the card's Poseidon commitment)."""
    from protocol.errors import VerificationError
    from protocol.snark.zk_circuit import encode_private_public

    if card.zk_commitment_int is None:
        raise VerificationError("the data card offers no SNARK commitment, yet the session was proved by SNARK")
    return encode_private_public([int(v) for v in model], [int(v) for v in theta0], binding, card.zk_commitment_int)


def snark_guarantee(T: int, constraints: int, card: DataCard) -> str:
    return (f"SNARK (Groth16 over BLS12-381, {constraints} constraints, zero knowledge): all {T} steps of the agreed "
            f"linear-regression training on the trainer's rows committed in its signed data card (Poseidon "
            f"commitment {card.zk_commitment.hex()[:16]}..., beside the root {card.data_root.hex()[:16]}...), with "
            f"the batch order and initial state from your seed, were computed bit-exactly, ending in the returned "
            f"model; the proof reveals nothing about the rows beyond that commitment (the streamed state commitments "
            f"are hiding; the model itself, as any trained model, depends on the rows) and is bound to this session. "
            f"Soundness rests on your own setup (designated verifier). The trainer chose its data: a poisoned "
            f"committed dataset passes this proof.")


def salted_data_leaf(r: dict, j: int, block, step: int) -> bytes:
    """The salted leaf of an opened row (one row per leaf; check_spot has checked the row against its leaf)."""
    salt = r.get("salt")
    if not isinstance(salt, str) or len(salt) != 2 * SALT_BYTES:
        raise MerkleProofInvalid(f"step {step}: row {r.get('index')} is opened without its {SALT_BYTES}-byte salt",
                                 step=step)
    return salted_leaf(j, tx.strict_hex(salt, "a salt"), block[0])


def hiding_state_leaf_of(num_steps: int):
    """check_spot's state leaf for a trainer-data session: the opened state with the salt the opening carries
    (none for the public states 0 and T, a 32-byte one otherwise); a missing or wrong salt fails inclusion."""
    def leaf(op: dict, label: str, idx: int, state) -> bytes:
        t, salt = op["step"], op.get(f"salt_{label}")
        if idx in (0, num_steps):
            if salt:
                raise MerkleProofInvalid(f"step {t}: the public state {idx} is opened with a salt (its leaf has none)",
                                         step=t)
            return hiding_state_leaf(idx, num_steps, None, state)
        if not isinstance(salt, str) or len(salt) != 2 * SALT_BYTES:
            raise MerkleProofInvalid(f"step {t}: the state {label} the step is opened without its {SALT_BYTES}-byte "
                                     f"salt (its leaf is hiding)", step=t)
        return hiding_state_leaf(idx, num_steps, tx.strict_hex(salt, "a state salt"), state)
    return leaf


def revealed_rows(openings: list[dict]) -> int:
    """Distinct committed rows the openings revealed."""
    return len({int(r["index"]) for op in openings for r in op["rows"]})


def exposed_updates(openings: list[dict], num_steps: int) -> int:
    """Unopened steps whose update theta_t - theta_{t-1} is determined by states the client holds (theta_0 from
    its seed, theta_T the model, both states of every opened step): for such a step the client learns the
    batch-average update of its B private rows (with B = 1, the row up to scale)."""
    known = {0, num_steps}
    opened = {int(op["step"]) for op in openings}
    for t in opened:
        known |= {t - 1, t}
    return sum(1 for t in range(1, num_steps + 1) if t not in opened and t - 1 in known and t in known)


def _percent(r: int, n: int) -> str:
    """r/n as a percentage that never rounds a partial reveal to 0.0 % or 100.0 %."""
    text = f"{r / n:.1%}"
    if 0 < r < n and text in ("0.0%", "100.0%"):
        return "<0.1%" if r / n < 0.5 else ">99.9%"
    return text


def guarantee(T: int, K: int, randomness: str, openings: list[dict], n: int) -> str:
    """The spot verdict's text for a session on the trainer's data: the single-step probability first (as for
    every spot check), then what was revealed and what no check here covers."""
    from .audit import spot_guarantee

    r, u = revealed_rows(openings), exposed_updates(openings, T)
    note = (f"the batch rows of the challenged steps were opened against the trainer's hiding data commitment (the "
            f"root in its signed data card), revealing {r} of its {n} rows ({_percent(r, n)}), and the batch-average "
            f"updates of {u} further steps (unopened steps between opened or public states; a longer run of "
            f"unopened steps reveals only the sum of its updates). No full replay is possible: "
            f"the rows are the trainer's and stay with it. The trainer chose its data: a poisoned committed dataset "
            f"passes every check of training.")
    return spot_guarantee(T, K, randomness, replay_note=note)
