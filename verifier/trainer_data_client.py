"""The client of a session on the trainer's own data (docs/PROTOCOL.md section 11): read and check the dataset's
signed data card, commit to it in the client record, then the usual session with UseTrainerData in place of
the upload. The card (its root) is fixed before the client reveals any randomness."""

from __future__ import annotations

import grpc

from protocol import convert
from protocol.errors import TranscriptFormatError, VerificationError
from protocol.statements import PROTOCOL_VERSION
from protocol.trainer_data import DataCard, open_card
from protocol.training import TrainConfig
from protocol.transcript import FORMAT
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from .client import ClientSeeds, SessionAborted, aborted, drive_session


def fetch_card(channel: grpc.Channel, name: str, timeout: float | None) -> tuple[DataCard, tuple[bytes, bytes]]:
    """The trainer's signed card for dataset ``name``, verified under the key the trainer announces (pin or
    trust that key as for any session). Raises SessionAborted when there is no such dataset or its card does
    not verify."""
    try:
        info = pb_grpc.TrainerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=timeout)
    except grpc.RpcError as e:
        raise aborted(e) from None
    pub = bytes(info.trainer_public_key)
    if len(pub) != 32:
        raise SessionAborted(f"the trainer's GetInfo answer is malformed (a public key of {len(pub)} bytes, not 32)")
    if info.protocol_version != PROTOCOL_VERSION:
        raise SessionAborted(f"the trainer speaks {info.protocol_version!r}, this client {PROTOCOL_VERSION!r}")
    found = [d for d in info.datasets if d.name == name]
    if len(found) != 1:
        listed = ", ".join(sorted({d.name for d in info.datasets})) or "none"
        raise SessionAborted(f"the trainer lists {'no' if not found else 'several'} dataset {name!r} (it lists: "
                             f"{listed})")
    signed = convert.signed_from_proto(found[0].card)
    if not signed[0]:  # listed without a card: a header-only dataset (prover/trainer_data.py TrainerDatasets.cards)
        raise SessionAborted(f"the trainer lists dataset {name!r} without rows (a schema for two-party training "
                             f"only: train-2pc); a session on the trainer's own data needs rows")
    try:
        card = open_card(pub, *signed)
    except (VerificationError, TranscriptFormatError) as e:
        raise SessionAborted(f"the trainer's data card for {name!r} does not check: {e}") from None
    if card.name != name:
        raise SessionAborted(f"the data card listed as {name!r} is signed for dataset {card.name!r}")
    return card, signed


def run_trainer_data_session(channel: grpc.Channel, card: DataCard, signed: tuple[bytes, bytes], cfg: TrainConfig,
                             *, spot_checks: int, seeds: ClientSeeds, server_label: str = "", proof_kind: str = "spot",
                             **kw):
    """Returns (transcript, verdict) like client.run_session; ``kw`` as for client.drive_session. The session
    must be with the key that signed the card (``trainer_key`` is that key)."""
    cfg.validate()
    meta = {"source": f"trainer:{card.name}", "feature_names": list(card.feature_names), "target": card.target,
            "standardization": card.standardization, "randomness": seeds.randomness}
    if proof_kind == "snark" and not card.zk_commitment:
        raise SessionAborted(f"dataset {card.name!r} is not offered with a SNARK (its card carries no Poseidon "
                             f"commitment); use --proof spot")
    base = {"format": FORMAT, "server": server_label, "config": cfg.to_dict(), "proof_kind": proof_kind,
            "client": {"metadata": meta, "nonce_secret": seeds.nonce_secret.hex()},
            "num_rows": card.num_rows, "num_features": card.num_features, "data_root": card.data_root.hex(),
            "rows_per_leaf": 1, "value_bytes": 8, "trainer_data": {"name": card.name, "card": [x.hex() for x in signed]},
            "training_seed": seeds.training_seed.hex(), "audit_seed": seeds.audit_seed.hex(),
            "spot_checks": spot_checks, "statements": {}}
    return drive_session(channel, base, None, cfg, seeds, spot_checks=spot_checks, trainer_key=card.trainer_key, **kw)


def snark_setup(stub, call, tr: dict, cfg: TrainConfig, sid: bytes, seeds: ClientSeeds, status, msg_cap: int) -> dict:
    """Proof kind snark on the trainer's data: build the private-data circuit from public information (sizes,
    the seed's batches; docs/SNARK.md section 8), run the setup with the powers of tau (so the trainer can check
    the key before it proves), send the proving key, keep the verifying key."""
    import time

    from protocol.prg import SeedContext
    from protocol.snark import zk_session
    from protocol.training import Schedule

    n, d = tr["num_rows"], tr["num_features"]
    sched = Schedule(SeedContext(sid, bytes.fromhex(tr["data_root"]), seeds.training_seed), cfg, n, d)
    batches = [sched.batch(t).tolist() for t in range(1, sched.num_steps + 1)]
    t0 = time.perf_counter()
    cs, pk, vk = zk_session.client_setup(n, d, batches, cfg)
    setup_s = time.perf_counter() - t0
    from .proof_request import send_proving_key

    return send_proving_key(stub, call, sid, pk, vk, cs, setup_s, sched, msg_cap, status,
                            f"SNARK setup (private data, {cs.n_constraints} constraints) done in {setup_s:.1f} s")


def private_public(tr: dict, model, theta0, binding: int) -> list[int]:
    """The private-data circuit's public inputs: (model, theta_0, binding, the card's Poseidon commitment)."""
    from . import trainer_data_checks

    card = open_card(bytes.fromhex(tr["trainer_key"]), *(bytes.fromhex(x) for x in tr["trainer_data"]["card"]))
    return trainer_data_checks.private_public(model, theta0, binding, card)
