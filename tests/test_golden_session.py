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
from protocol.row_encoding import pack, table_value_bytes
from protocol.training import TrainConfig
from prover.session import Limits, SessionManager
from prover.trainer import FinalEvent

GOLDEN = {
    "data_root": "77b12b4aca73735f31b261e21d9a8424b905f44e6b4798351351bb00b4bb1224",
    "model_hash": "eaf2322652957e1883b04f96cc7168281ba538eadeaf3b54f2510861a6856c48",
    "final_statement_sha256": "604993307d003bec5f28cd9a3ce9cb5e85bd245ca9d51296e6ed5b415932220d",
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
    vb = table_value_bytes(rows)  # the canonical width (4 bytes here)
    mgr.upload(iter([(s.session_id, w - 1, n, n, pack(rows, vb).tobytes(), 1, vb)]))
    audit = b"\x22" * 32
    mgr.commit_randomness(s.session_id, b"\x33" * 32, seed_commitment(audit, s.session_id), 8)
    final = next(ev for ev in mgr.train(s.session_id) if isinstance(ev, FinalEvent))
    return rows, final


def test_golden_vector(monkeypatch):
    rows, final = _run(monkeypatch)
    got = {"data_root": MerkleTree(data_leaves(rows, value_bytes=table_value_bytes(rows))).root.hex(), "model_hash": model_hash(final.model).hex(),
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
