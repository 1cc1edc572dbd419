"""Golden end-to-end vector: fixed data, seeds, key and server randomness give an exact model hash and an
exact signed final statement, through the prover's real handlers and the verifier's audit.

The vector was produced once by this code and is pinned here; a change to any protocol rule (quantization,
Merkle hashing, PRG, shuffle, the training step, statement encoding) changes it. Update it only deliberately,
together with docs/PROTOCOL.md."""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import prover.session as session_mod
from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.keys import public_bytes
from protocol.merkle import MerkleTree, data_leaves, model_hash
from protocol.prg import seed_commitment
from protocol.training import TrainConfig
from prover.session import Limits, SessionManager
from prover.trainer import FinalEvent

GOLDEN = {
    "data_root": "fbb18606aee76c1ecf2b57f99664e58d20a809d0717d1cd59c81cd0897ffcdd0",
    "model_hash": "0de18dd696eaf5f19b940de6808e0e05006ea2bddd9c6ed2a8d9c0889a577f96",
    "final_statement_sha256": "ae57aa8004d303e13dc8540d44945b0c36142f43882ecc105248384742901c54",
}


def _run(monkeypatch):
    counter = iter(range(1000))
    monkeypatch.setattr(session_mod.secrets, "token_bytes", lambda n: bytes([next(counter) % 256]) * n)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    mgr = SessionManager(key, public_bytes(key), Limits())
    table = load_table("builtin:breast_cancer")
    cfg = TrainConfig(model="logistic", epochs=2, batch_size=32, lr_num=205, lr_shift=10)
    stdz = fit_standardization(table, cfg.model)
    rows = quantized_rows(table, stdz, cfg.frac_bits)
    s, _, _ = mgr.open_session(cfg, b"\x11" * 32, "spot")
    n, w = rows.shape
    mgr.upload(iter([(s.session_id, w - 1, n, n, rows.astype("<i8").tobytes())]))
    audit = b"\x22" * 32
    mgr.commit_randomness(s.session_id, b"\x33" * 32, seed_commitment(audit, s.session_id), 8)
    final = next(ev for ev in mgr.train(s.session_id) if isinstance(ev, FinalEvent))
    return rows, final


def test_golden_vector(monkeypatch):
    rows, final = _run(monkeypatch)
    got = {"data_root": MerkleTree(data_leaves(rows)).root.hex(), "model_hash": model_hash(final.model).hex(),
           "final_statement_sha256": hashlib.sha256(final.statement + final.signature).hexdigest()}
    assert got == GOLDEN, f"golden vector changed: {got}"


def test_golden_run_is_deterministic_and_accurate(monkeypatch):
    _, a = _run(monkeypatch)
    _, b = _run(monkeypatch)
    assert a.statement == b.statement and np.array_equal(a.model, b.model)
    table = load_table("builtin:breast_cancer")
    stdz = fit_standardization(table, "logistic")
    w = np.asarray(a.model[:-1]) / 2**16
    acc = float(np.mean(((stdz.apply(table.X) @ w + a.model[-1] / 2**16) > 0) == (table.y > 0.5)))
    assert acc > 0.9, acc
