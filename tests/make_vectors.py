"""Regenerate the known-answer vectors in ``tests/vectors/`` (run deliberately, never from a test).

    .venv/bin/python tests/make_vectors.py            # rewrite tests/vectors/*.json
    .venv/bin/python tests/make_vectors.py --check    # exit 1 if the committed files differ (drift check)

The vectors pin the protocol rules: the sigmoid table, the PRG (keys, permutations, initial parameters,
challenge steps, uniform integers), the Merkle hashing, the statement encoding and Ed25519 signatures, and
a whole honest training run. A change to any of them is a protocol change: regenerate only together with
docs/PROTOCOL.md, and review the diff. Inputs are spelled out here (no RNG whose stream could change
between numpy versions); the data of the golden training run is stored in the vector file itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import merkle
from protocol.fixedpoint import exp_exact, exp_table, quantize, sigmoid_exact, sigmoid_table
from protocol.keys import public_bytes
from protocol.prg import (
    KeyStream,
    SeedContext,
    challenge_steps,
    initial_parameters,
    seed_commitment,
    shuffle,
    uniform_below,
)
from protocol.statements import Statement, sign
from protocol.training import Schedule, TrainConfig, train_honest

VECTORS = Path(__file__).resolve().parent / "vectors"

# Fixed inputs (hex so the files are self-describing).
SESSION_ID = bytes(range(16))
DATA_ROOT = bytes(range(32, 64))
TRAINING_SEED = bytes(range(100, 132))
AUDIT_SEED = bytes([0xA5]) * 32
STATE_ROOT = bytes([0x5A]) * 32
SIGNING_KEY_SEED = bytes(range(200, 232))


def table_digest(table) -> str:
    """sha256 over the decimal table values joined by commas (independent of any vtrain encoding)."""
    return hashlib.sha256(",".join(str(int(v)) for v in table).encode()).hexdigest()


def fixedpoint_vectors() -> dict:
    t16 = sigmoid_table(16)
    zs = [-(1 << 40), -(8 << 16) - 1, -(8 << 16), -(8 << 16) + 1, -65536, -4097, -4096, -1, 0, 1, 4095, 4096,
          12345, 65536, (8 << 16) - 1, 8 << 16, (8 << 16) + 1, 1 << 40]
    samples = [[f, z, sigmoid_exact(z, f)] for f in (4, 8, 16, 30) for z in zs]
    xs = [0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e-9, -1e-9, 0.1, -0.1, 3.141592653589793, -1234.5678, 7.999999]
    q = [[repr(x), f, int(quantize(np.array([x]), f)[0])] for f in (0, 1, 16) for x in xs]
    vs = [0, -1, -4095, -4096, -4097, -65536, -(16 << 16) + 1, -(16 << 16), -(16 << 16) - 1, -(1 << 40)]
    return {
        "description": "sigmoid table and integer sigmoid; exp table and integer exp (softmax); quantize "
                       "(round half to even)",
        "exp_table": {str(f): {"sha256_of_decimal_csv": table_digest(exp_table(f)), "len": len(exp_table(f))}
                      for f in (4, 16, 30)},
        "exp_table_f16_entries": {str(k): exp_table(16)[k] for k in (0, 1, 16, 128, 255, 256)},
        "exp_samples": [[f, v, exp_exact(v, f)] for f in (4, 8, 16, 30) for v in vs],
        "sigmoid_table": {str(f): {"sha256_of_decimal_csv": table_digest(sigmoid_table(f)),
                                   "len": len(sigmoid_table(f))} for f in (4, 16, 30)},
        "sigmoid_table_f16_entries": {str(k): t16[k] for k in (0, 1, 64, 127, 128, 129, 192, 255, 256)},
        "sigmoid_samples": samples,
        "quantize": q,
    }


def prg_vectors() -> dict:
    ctx = SeedContext(SESSION_ID, DATA_ROOT, TRAINING_SEED)
    shuffles = [{"epoch": e, "n": n, "perm": shuffle(ctx, e, n).tolist()}
                for e, n in ((0, 1), (0, 2), (0, 10), (1, 10), (7, 33), (2**40, 5))]
    init = [{"count": c, "frac_bits": f, "values": initial_parameters(ctx, c, f).tolist()}
            for c, f in ((5, 16), (3, 4), (4, 6), (8, 30))]
    chal = [{"k": k, "num_steps": t, "steps": challenge_steps(SESSION_ID, STATE_ROOT, AUDIT_SEED, k, t)}
            for k, t in ((1, 1), (3, 10), (10, 10), (50, 20), (8, 1000), (5, 2**40))]
    key = bytes(range(32))
    unif = [{"m": m, "count": c, "values": uniform_below(KeyStream(key), c, m).tolist()}
            for m, c in ((1, 4), (2, 16), (3, 16), (10, 12), (3 << 61, 8), (2**63 - 1, 4), (2**63, 4))]
    return {
        "description": "PRG: fixed seed context -> keys, permutations, initial parameters, challenges. The "
                       "uniform_below entries each read a fresh stream(keystream_key), keystream_key being used "
                       "directly as the raw ChaCha20 key (not hashed), from its first word",
        "session_id": SESSION_ID.hex(), "data_root": DATA_ROOT.hex(), "training_seed": TRAINING_SEED.hex(),
        "state_root": STATE_ROOT.hex(), "audit_seed": AUDIT_SEED.hex(),
        "init_key": ctx.init_key().hex(), "epoch_key_0_0": ctx.epoch_key(0, 0).hex(),
        "epoch_key_3_1": ctx.epoch_key(3, 1).hex(),
        "keystream_key": key.hex(), "keystream_first_64_bytes": KeyStream(key).read(64).hex(),
        "shuffle": shuffles, "initial_parameters": init, "challenge_steps": chal, "uniform_below": unif,
        "seed_commitment": seed_commitment(AUDIT_SEED, SESSION_ID).hex(),
    }


def merkle_rows(n: int) -> np.ndarray:
    """Row i = (i, -i, 2^40 + i, -(2^62) + i): values that exercise sign and width."""
    i = np.arange(n, dtype=np.int64)
    return np.column_stack([i, -i, (1 << 40) + i, -(1 << 62) + i]).astype(np.int64)


def merkle_vectors() -> dict:
    sizes = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 33, 70)
    leaves = merkle.data_leaves(merkle_rows(70))
    state = [merkle.state_leaf(t, np.array([t, -t, 1 << 30], dtype=np.int64)) for t in range(9)]
    return {
        "description": "Merkle roots. Data row i (i = 0..69) is the 4 int64 values (i, -i, 2^40 + i, -2^62 + i); "
                       "data_roots[n] is the root over rows 0..n-1 (leaf payload u64(i) || the row). State leaf t "
                       "(t = 0..8) is over theta_t = (t, -t, 2^30); state_roots[n] over leaves 0..n-1",
        "data_leaf_0": leaves[0].hex(), "data_leaf_69": leaves[69].hex(),
        "data_roots": {str(n): merkle.MerkleTree(leaves[:n]).root.hex() for n in sizes},
        "state_leaf_0": state[0].hex(),
        "state_roots": {str(n): merkle.MerkleTree(state[:n]).root.hex() for n in (1, 2, 3, 9)},
        "node_hash_zero_zero": merkle.node_hash(bytes(32), bytes(32)).hex(),
        "model_hash_1_2_3": merkle.model_hash([1, -2, 3]).hex(),
        "proof_5_of_70": [h.hex() for h in merkle.MerkleTree(leaves).proof(5)],
        "data_roots_rows_per_leaf_3": {str(n): merkle.data_root(merkle_rows(n), 3).hex() for n in sizes},
        "data_leaf_rows_per_leaf_3_last_of_70": merkle.data_leaves(merkle_rows(70), 0, 3)[-1].hex(),
        "narrow_description": "narrow_rows(n, w): row i = (i, -i, 2^(8w-1) - 1 - i, -2^(8w-1) + i), whose canonical "
                              "width is w bytes; data_roots_value_bytes[w][n] is its root with R = 3 and w-byte "
                              "values (tag merkle/leaf/data-i{8w})",
        "data_roots_value_bytes": {str(w): {str(n): merkle.data_root(narrow_rows(n, w), 3, w).hex() for n in sizes}
                                   for w in (1, 2, 4)},
    }


def narrow_rows(n: int, w: int) -> np.ndarray:
    """Rows of canonical width w bytes (n <= 70): both ends of the w-byte range appear in row 0."""
    i = np.arange(n, dtype=np.int64)
    top = 1 << (8 * w - 1)
    return np.column_stack([i, -i, top - 1 - i, -top + i]).astype(np.int64)


def statement_examples() -> list[Statement]:
    sid = SESSION_ID
    return [
        Statement("session", sid, {"protocol_version": "vtrain/2", "trainer_key": bytes([1]) * 32,
                                   "client_nonce": bytes([2]) * 32, "server_nonce": bytes([3]) * 32,
                                   "config": TrainConfig().encode(), "proof_kind": "spot"}),
        Statement("session", sid, {"protocol_version": "vtrain/2", "trainer_key": bytes([1]) * 32,
                                   "client_nonce": bytes([2]) * 32, "server_nonce": bytes([3]) * 32,
                                   "config": TrainConfig(model="softmax", num_classes=10).encode(),
                                   "proof_kind": "spot"}),
        Statement("data", sid, {"data_root": DATA_ROOT, "num_rows": 569, "num_features": 30,
                                "rows_per_leaf": 3, "value_bytes": 4}),
        Statement("randomness", sid, {"data_root": DATA_ROOT, "training_seed": TRAINING_SEED,
                                      "audit_commitment": bytes([4]) * 32, "spot_checks": 8}),
        Statement("checkpoint", sid, {"step": 100, "state_leaf": bytes([5]) * 32, "prefix_root": bytes([6]) * 32}),
        Statement("final", sid, {"num_steps": 2**40, "state_root": STATE_ROOT, "model_hash": bytes([7]) * 32}),
        Statement("snark", sid, {"vk_hash": bytes([8]) * 32, "proof_hash": bytes([9]) * 32,
                                 "model_hash": bytes([10]) * 32}),
        Statement("openings", sid, {"audit_seed": AUDIT_SEED, "openings_hash": bytes([11]) * 32}),
        Statement("attestation", sid, {"transcript_digest": bytes([12]) * 32, "model_hash": bytes([13]) * 32,
                                       "data_root": DATA_ROOT, "num_steps": 1050, "result": "rejected at step 7"}),
        # (a real data card has an empty session id: trainer_data_vectors)
        Statement("data-card", sid, card_example().statement().fields),
    ]


def card_example():
    from protocol.trainer_data import DataCard

    return DataCard(bytes([1]) * 32, "bc", 569, 2, ["a", "b"], "y", ("logistic",), 16,
                    {"mean": [0.5, -1.0], "std": [1.0, 2.0], "clip": 8.0, "target_mean": 0.0, "target_std": 1.0,
                     "labels": [0, 1], "target_kind": "binary"}, DATA_ROOT, zk_commitment=bytes([0x11]) * 32,
                    zk_weight_bits=32)


def trainer_data_vectors() -> dict:
    """Salted data leaves and a signed data card (docs/PROTOCOL.md section 11)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.trainer_data import salted_leaves

    rows = merkle_rows(9)
    salts = b"".join(bytes([i]) * 32 for i in range(9))
    leaves = salted_leaves(rows, salts)
    key = Ed25519PrivateKey.from_private_bytes(SIGNING_KEY_SEED)
    card = card_example()
    card = type(card)(**{**card.__dict__, "trainer_key": public_bytes(key)})
    data, sig = sign(key, card.statement())
    from protocol.trainer_data import hiding_state_leaf, state_salt

    secret, theta = bytes([0x5A]) * 32, np.array([3, -3, 2**30], dtype=np.int64)
    return {"description": "salted data leaves: row i (i = 0..8) as in merkle.json, salt_i = 32 bytes of value i; "
                           "leaf_i = SHA-256(tag('merkle/leaf/salted-data') || 0x00 || u64(i) || salt_i || row_i); "
                           "the data card of card_example() in make_vectors.py, signed with the statements key; "
                           "hiding state leaf 3 of T = 8 over theta = (3, -3, 2^30) with secret = 32 bytes 0x5a: "
                           "state_salt_3 = HMAC-SHA256(secret, tag('state-salt') || u64(3)), state_leaf_3 = "
                           "SHA-256(tag('merkle/leaf/salted-state') || 0x00 || u64(3) || salt_3 || theta)",
            "state_salt_3": state_salt(secret, 3).hex(),
            "hiding_state_leaf_3": hiding_state_leaf(3, 8, state_salt(secret, 3), theta).hex(),
            "salted_leaf_0": leaves[:32].hex(), "salted_leaf_8": leaves[-32:].hex(),
            "salted_root_9": merkle.MerkleTree(leaves).root.hex(),
            "card_statement": data.hex(), "card_signature": sig.hex(), "public_key": public_bytes(key).hex()}


OPENINGS_EXAMPLE = [{"step": 3, "state_before": [1, -2, 3], "state_after": [4, -5, 2**62],
                     "proof_before": {"index": 2, "siblings": ["aa" * 32, "bb" * 32]},
                     "proof_after": {"index": 3, "siblings": ["cc" * 32]},
                     "rows": [{"index": 7, "values": [-(2**63), 0, 65536], "proof": ["dd" * 32], "proof_index": 3,
                               "leaf_rows": [[9, 8, 7], [-(2**63), 0, 65536]]},
                              {"index": 0, "values": [1, 2, 3], "proof": [], "proof_index": 0,
                               "leaf_rows": [[1, 2, 3], [4, 5, 6]]}]}]
CLIENT_RECORD_EXAMPLE = {"metadata": {"source": "builtin:breast_cancer", "feature_names": ["a", "b"], "target": "y",
                                      "standardization": {"mean": [0.5, -1.0], "std": [1.0, 2.0], "clip": 8.0,
                                                          "target_mean": 0.0, "target_std": 1.0},
                                      "randomness": "os"},
                         "server": "127.0.0.1:50051", "rows_per_leaf": 2, "value_bytes": 4, "num_rows": 569,
                         "num_features": 2, "training_seed": TRAINING_SEED.hex(), "audit_seed": AUDIT_SEED.hex(),
                         "spot_checks": 64, "config": TrainConfig().to_dict(), "proof_kind": "spot"}
NONCE_SECRET = bytes([0x3C]) * 32


def evidence_vectors() -> dict:
    from protocol.evidence import client_binding, openings_encoding, openings_hash

    return {"description": "openings hash H('openings', audit_seed || openings_encoding) and client nonce "
                           "H('session-binding', json.dumps(record, sort_keys=True) || nonce_secret) "
                           "(docs/PROTOCOL.md sections 5 and 9)",
            "audit_seed": AUDIT_SEED.hex(), "openings": OPENINGS_EXAMPLE,
            "openings_encoding": openings_encoding(OPENINGS_EXAMPLE).hex(),
            "openings_hash": openings_hash(AUDIT_SEED, OPENINGS_EXAMPLE).hex(),
            "client_record": CLIENT_RECORD_EXAMPLE, "nonce_secret": NONCE_SECRET.hex(),
            "client_json": json.dumps(CLIENT_RECORD_EXAMPLE, sort_keys=True),
            "client_nonce": client_binding(CLIENT_RECORD_EXAMPLE, NONCE_SECRET).hex()}


def statement_vectors() -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.keys import public_bytes

    key = Ed25519PrivateKey.from_private_bytes(SIGNING_KEY_SEED)
    out = []
    for st in statement_examples():
        data, sig = sign(key, st)
        out.append({"kind": st.kind, "encoding": data.hex(), "signature": sig.hex()})
    return {"description": "canonical statement encodings and Ed25519 signatures (RFC 8032, deterministic); "
                           "the statements are statement_examples() in make_vectors.py",
            "private_key_seed": SIGNING_KEY_SEED.hex(), "public_key": public_bytes(key).hex(), "statements": out}


def golden_data(model: str, n: int, d: int) -> tuple[list[list[int]], list[int]]:
    """Integer-only deterministic data (scale 2^16): a linear congruential sequence, no RNG library."""
    state = 12345
    X, Y = [], []
    for _ in range(n):
        row = []
        for _ in range(d):
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            row.append(((state >> 33) % (1 << 18)) - (1 << 17))  # in [-2, 2) at scale 2^16
        X.append(row)
        s = sum((k + 1) * v for k, v in enumerate(row))
        if model == "logistic":
            Y.append(1 << 16 if s > 0 else 0)
        elif model == "softmax":  # three classes by the sign pattern of two scores
            Y.append(int(s > 0) + int(row[0] - row[1] > 1 << 16))
        else:
            Y.append(s // 4)
    return X, Y


def training_vectors() -> dict:
    ctx = SeedContext(SESSION_ID, DATA_ROOT, TRAINING_SEED)
    runs = []
    for model, l2 in (("logistic", 0), ("linear", 655), ("softmax", 655)):
        cfg = TrainConfig(model=model, epochs=3, batch_size=8, lr_num=205, lr_shift=10, l2_num=l2,
                          num_classes=3 if model == "softmax" else 0).validate()
        X, Y = golden_data(model, 37, 3)
        states = [theta.tolist() for _, _, theta, _ in train_honest(np.array(X), np.array(Y), cfg, ctx)]
        leaves = [merkle.state_leaf(t, np.array(s)) for t, s in enumerate(states)]
        sched = Schedule(ctx, cfg, len(X), 3)
        runs.append({
            "config": cfg.to_dict(), "X": X, "Y": Y, "num_steps": len(states) - 1,
            "initial_state": states[0], "state_1": states[1], "final_state": states[-1],
            "model_hash": merkle.model_hash(states[-1]).hex(), "state_root": merkle.MerkleTree(leaves).root.hex(),
            "batches_epoch_0": [sched.batch(t).tolist() for t in range(1, sched.steps_per_epoch + 1)],
        })
    return {"description": "golden honest training runs; seed context as in prg.json", "session_id": SESSION_ID.hex(),
            "data_root": DATA_ROOT.hex(), "training_seed": TRAINING_SEED.hex(), "runs": runs}


BUILDERS = {"fixedpoint": fixedpoint_vectors, "prg": prg_vectors, "merkle": merkle_vectors,
            "statements": statement_vectors, "training": training_vectors, "evidence": evidence_vectors,
            "trainer_data": trainer_data_vectors}


def render(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = ap.parse_args(argv)
    VECTORS.mkdir(exist_ok=True)
    drift = []
    for name, build in BUILDERS.items():
        path = VECTORS / f"{name}.json"
        text = render(build())
        if args.check:
            if not path.exists() or path.read_text() != text:
                drift.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print(f"vectors differ from the committed files: {', '.join(drift)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
