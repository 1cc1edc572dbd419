"""Benchmark: the end-to-end costs of verifiable training, each against its bare baseline.

* ``train_vs_float``: bit-exact training (``train_honest``: Schedule + FastStepper setup + every step, on the
  int64 quantized data) vs plain float64 numpy minibatch SGD on the same batches (taken from the same
  Schedule beforehand), same learning rate and L2, on the float data.
* ``commit_overhead``: ``prover.trainer.run_training`` consumed fully (per-step state leaves, prefix roots,
  Ed25519-signed checkpoints, state tree, final statement) vs ``train_honest`` on the same inputs.
* ``upload_vs_raw``: OpenSession + UploadData through the real gRPC server (in process, 127.0.0.1, port 0),
  including the client's own data Merkle root and its check of the signed data statement, vs the same row
  bytes in the same chunk sizes through a bare client-streaming method (generic handler, identity
  serializers) on a bare server.
* ``spot_vs_replay``: ``verifier.checks.check_spot`` on K openings produced by the session's Prove logic
  (converted through the wire format, as the client records them) vs ``verifier.checks.replay``.
* Quality on the bundled data sets (see ``bench/quality.py``).

Each ratio is best-of-``--repeats`` of each side, the two sides interleaved. Timings are reported, never
asserted. Usage: ``python -m bench.bench_training [--quick] [--repeats 3] [--skip NAME ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from protocol.fixedpoint import quantize
from protocol.prg import SeedContext
from protocol.training import Schedule, TrainConfig, train_honest

FULL = {"n": 100_000, "d": 100, "B": 256, "epochs": 3, "spot_n": 8192, "spot_d": 8, "spot_B": 8, "spot_epochs": 40,
        "K": 64}
QUICK = {"n": 20_000, "d": 100, "B": 256, "epochs": 1, "spot_n": 2048, "spot_d": 8, "spot_B": 8, "spot_epochs": 5,
         "K": 64}
SECTIONS = ("train_vs_float", "commit_overhead", "upload_vs_raw", "spot_vs_replay", "quality")
CHUNK_BYTES = 1 << 20  # run_session's default: about 1 MiB of rows per DataChunk


def _bytes(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(b"bench_training/" + label.encode()).digest()[:n]


def best_of(repeats: int, *fns):
    """Run the callables interleaved ``repeats`` times; returns (best times, last results)."""
    times = [[] for _ in fns]
    results = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times], results


def ratio_line(name: str, value: float, target: float) -> str:
    return f"ratio {name} = {value:.3f} (target <= {target})"


def synthetic(n: int, d: int, seed: int, frac_bits: int = 16):
    """Standardized-looking features N(0, 1) clipped to [-8, 8], logistic labels from a random model.
    Returns (X float64, y float64 0/1, Xq int64, Yq int64)."""
    rng = np.random.default_rng(seed)
    X = np.clip(rng.standard_normal((n, d)), -8.0, 8.0)
    w = rng.standard_normal(d) / np.sqrt(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ w) * 2.0))).astype(np.float64)
    return X, y, quantize(X, frac_bits), quantize(y, frac_bits)


def bench_context(label: str) -> SeedContext:
    return SeedContext(_bytes(label + "/sid", 16), _bytes(label + "/root"), _bytes(label + "/seed"))


# -- train_vs_float ----------------------------------------------------------------------------------------
def exact_training(Xq, Yq, cfg, ctx) -> np.ndarray:
    theta = None
    for _t, _e, theta, _r in train_honest(Xq, Yq, cfg, ctx):
        pass
    return theta


def float_sgd(X, y, sched: Schedule, theta0, cfg) -> np.ndarray:
    """Plain float64 minibatch SGD for the same model/loss: w -= lr * (X_b^T r / B + l2 * w), b -= lr * mean r."""
    w = theta0[:-1].astype(np.float64) / (1 << cfg.frac_bits)
    b = float(theta0[-1]) / (1 << cfg.frac_bits)
    lr, l2, B = cfg.lr, cfg.l2, cfg.batch_size
    logistic = cfg.model == "logistic"
    for t in range(1, sched.num_steps + 1):
        idx = sched.batch(t)
        Xb = X[idx]
        z = Xb @ w + b
        p = 1.0 / (1.0 + np.exp(-z)) if logistic else z
        r = p - y[idx]
        g = (r @ Xb) / B
        if l2:
            g += l2 * w
        w -= lr * g
        b -= lr * float(r.mean())
    return np.append(w, b)


def run_train_vs_float(p: dict, repeats: int) -> None:
    n, d = p["n"], p["d"]
    cfg = TrainConfig(model="logistic", epochs=p["epochs"], batch_size=p["B"]).validate()
    X, y, Xq, Yq = synthetic(n, d, seed=1)
    ctx = bench_context("train")
    sched = Schedule(ctx, cfg, n, d)
    theta0 = sched.initial_state()
    # both sides derive the batches through a fresh Schedule (the same seeded shuffles): the same schedule
    (te, tf), (th_e, th_f) = best_of(repeats, lambda: exact_training(Xq, Yq, cfg, ctx),
                                     lambda: float_sgd(X, y, Schedule(ctx, cfg, n, d), theta0, cfg))
    T = sched.num_steps
    diff = float(np.abs(th_e / (1 << cfg.frac_bits) - th_f).max())
    print(f"[train_vs_float] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"logistic, lr = {cfg.lr:.6f}, f = {cfg.frac_bits}")
    print(f"time bit-exact training (train_honest incl. Schedule + FastStepper setup) = {te:.3f} s "
          f"({te / T * 1e6:.1f} us/step)")
    print(f"time float64 numpy SGD (same Schedule, float data) = {tf:.3f} s ({tf / T * 1e6:.1f} us/step)")
    print(f"max |theta_exact - theta_float| = {diff:.2e} (fixed point vs float, reals)")
    print(ratio_line("train_vs_float", te / tf, 1.5))


# -- commit_overhead ---------------------------------------------------------------------------------------
def committed_training(key, sid, Xq, Yq, cfg, ctx):
    from prover.adversaries import Honest
    from prover.trainer import run_training

    record: dict = {}
    events = 0
    for _ev in run_training(key=key, session_id=sid, X=Xq, Y=Yq, cfg=cfg, ctx=ctx, strategy=Honest(),
                            record=record):
        events += 1
    return record["result"], events


def run_commit_overhead(p: dict, repeats: int) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    n, d = p["n"], p["d"]
    cfg = TrainConfig(model="logistic", epochs=p["epochs"], batch_size=p["B"]).validate()
    _X, _y, Xq, Yq = synthetic(n, d, seed=2)
    ctx = bench_context("commit")
    key = Ed25519PrivateKey.generate()
    (tc, tb), ((rec, events), theta) = best_of(repeats, lambda: committed_training(key, ctx.session_id, Xq, Yq, cfg, ctx),
                                               lambda: exact_training(Xq, Yq, cfg, ctx))
    T = cfg.num_steps(n)
    same = bool(np.array_equal(rec.final_model, theta))
    print(f"[commit_overhead] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"checkpoint every {cfg.checkpoint_interval} steps ({T // cfg.checkpoint_interval} signatures + final), "
          f"{events} events; same final model: {same}")
    print(f"time run_training consumed (commitments + Ed25519 signatures) = {tc:.3f} s ({tc / T * 1e6:.1f} us/step)")
    print(f"time bare bit-exact training (train_honest) = {tb:.3f} s ({tb / T * 1e6:.1f} us/step)")
    print(ratio_line("commit_overhead", tc / tb, 1.10))


# -- upload_vs_raw -----------------------------------------------------------------------------------------
def _raw_server(max_bytes: int):
    from concurrent import futures

    import grpc

    def upload(request_iterator, context):
        total = 0
        for chunk in request_iterator:
            total += len(chunk)
        return total.to_bytes(8, "big")

    handler = grpc.method_handlers_generic_handler(
        "benchraw.Raw", {"Upload": grpc.stream_unary_rpc_method_handler(upload)})  # identity (de)serializers
    opts = [("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


def session_upload(stub, rows, cfg, pub, per_chunk) -> bytes:
    from protocol import convert
    from protocol.merkle import MerkleTree, data_leaves
    from protocol.wire import trainer_pb2 as pb
    from verifier import checks

    n, w = rows.shape
    nonce = _bytes("upload/nonce")
    resp = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=nonce,
                                                  proof_kind="spot"))
    sid = bytes(resp.session_id)
    data_root = MerkleTree(data_leaves(rows)).root  # the client's own root, as run_session computes it
    resp = stub.UploadData(convert.rows_to_chunks(sid, rows, per_chunk))
    checks.check_data(pub, convert.signed_from_proto(resp.data_statement), sid, data_root=data_root, num_rows=n,
                      num_features=w - 1)
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))
    return data_root


def raw_upload(call, rows, per_chunk) -> int:
    raw = np.ascontiguousarray(rows, dtype="<i8")

    def chunks():
        for start in range(0, raw.shape[0], per_chunk):
            yield raw[start:start + per_chunk].tobytes()

    return int.from_bytes(call(chunks()), "big")


def run_upload_vs_raw(p: dict, repeats: int) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.dataset import rows_matrix
    from protocol.keys import public_bytes
    from protocol.wire import trainer_pb2_grpc as pb_grpc
    from prover.server import build_server
    from prover.session import Limits
    from verifier.client import open_channel

    n, d = p["n"], p["d"]
    _X, _y, Xq, Yq = synthetic(n, d, seed=3)
    rows = rows_matrix(Xq, Yq)
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=256).validate()
    per_chunk = max(1, CHUNK_BYTES // ((d + 1) * 8))
    limits = Limits()
    key = Ed25519PrivateKey.generate()
    server, port, _manager = build_server(key, "127.0.0.1", 0, limits)
    raw_server, raw_port = _raw_server(limits.max_message_bytes)
    server.start()
    raw_server.start()
    ch = open_channel(f"127.0.0.1:{port}", max_bytes=limits.max_message_bytes)
    raw_ch = open_channel(f"127.0.0.1:{raw_port}", max_bytes=limits.max_message_bytes)
    try:
        stub = pb_grpc.TrainerStub(ch)
        call = raw_ch.stream_unary("/benchraw.Raw/Upload")  # no serializers: bytes in, bytes out
        (ts, tr), (_root, got) = best_of(repeats, lambda: session_upload(stub, rows, cfg, public_bytes(key), per_chunk),
                                         lambda: raw_upload(call, rows, per_chunk))
    finally:
        ch.close()
        raw_ch.close()
        server.stop(None)
        raw_server.stop(None)
    mb = rows.nbytes / 1e6
    print(f"[upload_vs_raw] n = {n:,}, d = {d}: {mb:.1f} MB of int64 rows in {-(-n // per_chunk)} chunks of "
          f"{per_chunk} rows ({per_chunk * (d + 1) * 8:,} bytes); raw server received {got:,} bytes")
    print(f"time session OpenSession + UploadData (client root, server commit + signature) = {ts:.3f} s "
          f"({mb / ts:.0f} MB/s)")
    print(f"time bare gRPC client stream of the same bytes = {tr:.3f} s ({mb / tr:.0f} MB/s)")
    print(ratio_line("upload_vs_raw", ts / tr, 1.5))


# -- spot_vs_replay ----------------------------------------------------------------------------------------
def trained_session(n: int, d: int, cfg: TrainConfig, K: int):
    """Run one honest session through the SessionManager handlers (no transport); returns what the client
    holds after Prove: (sid, rows, data_root, training_seed, audit_seed, leaves, model, openings as recorded)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol import convert
    from protocol.dataset import rows_matrix
    from protocol.keys import public_bytes
    from protocol.prg import seed_commitment
    from prover.session import Limits, SessionManager

    _X, _y, Xq, Yq = synthetic(n, d, seed=4)
    rows = rows_matrix(Xq, Yq)
    key = Ed25519PrivateKey.generate()
    m = SessionManager(key, public_bytes(key), Limits())
    s, _data, _sig = m.open_session(cfg, _bytes("spot/nonce"), "spot")
    sid = s.session_id
    m.upload(iter([(sid, d, n, n, rows.tobytes())]))
    seed, audit = _bytes("spot/seed"), _bytes("spot/audit")
    m.commit_randomness(sid, seed, seed_commitment(audit, sid), K)
    for _ev in m.train(sid):
        pass
    rec = s.record["result"]
    openings = [convert.opening_from_proto(convert.opening_to_proto(op)) for op in m.prove(sid, audit, "spot")[0]]
    return sid, rows, s.data_tree.root, seed, audit, list(rec.tree.levels[0]), rec.final_model, openings


def run_spot_vs_replay(p: dict, repeats: int) -> None:
    from protocol.merkle import MerkleTree
    from verifier import checks

    n, d, K = p["spot_n"], p["spot_d"], p["K"]
    cfg = TrainConfig(model="logistic", epochs=p["spot_epochs"], batch_size=p["spot_B"]).validate()
    sid, rows, data_root, seed, audit, leaves, model, openings = trained_session(n, d, cfg, K)
    ctx = SeedContext(sid, data_root, seed)
    T = cfg.num_steps(n)
    state_root = MerkleTree(leaves).root

    def spot():
        return checks.check_spot(openings, sid=sid, state_root=state_root, audit_seed=audit, spot_checks=K,
                                 num_steps=T, data_root=data_root, num_rows=n, sched=Schedule(ctx, cfg, n, d), cfg=cfg)

    def replay():
        checks.replay(rows, leaves, model, Schedule(ctx, cfg, n, d), cfg)

    def spot_verdict_extras():
        """The O(T) work the spot verdict (verifier.audit._spot) does besides check_spot: the state root
        (built once, shared by check_final and check_spot) and the checkpoint prefix roots (no signatures
        here; those add T / interval Ed25519 verifications)."""
        MerkleTree(leaves)
        from protocol.merkle import MerkleFrontier
        fr = MerkleFrontier()
        for t, leaf in enumerate(leaves):
            fr.append(leaf)
            if t and t % cfg.checkpoint_interval == 0:
                fr.root()

    (ts, tr, tx), _ = best_of(repeats, spot, replay, spot_verdict_extras)
    print(f"[spot_vs_replay] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"K = {K} openings ({K * cfg.batch_size} row openings), logistic")
    print(f"time check_spot (K = {K}) = {ts * 1e3:.1f} ms ({ts / K * 1e3:.2f} ms/opening)")
    print(f"time full replay (checks.replay) = {tr:.3f} s ({tr / T * 1e6:.1f} us/step)")
    print(f"time O(T) state-root work of the spot verdict besides check_spot (state tree + prefix roots) = "
          f"{tx * 1e3:.1f} ms (ratio to replay {tx / tr:.3f}, reported only)")
    print(ratio_line("spot_vs_replay", ts / tr, 0.02))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (n = 20,000, 1 epoch; spot: n = 2,048, T = 1,280 steps)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--spot-epochs", type=int, default=None,
                    help="epochs of the spot_vs_replay run (T = epochs * n / 8); default 10 (T = 10,240)")
    ap.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    p = dict(QUICK if args.quick else FULL)
    if args.spot_epochs is not None:
        p["spot_epochs"] = args.spot_epochs
    repeats = args.repeats
    runs = {"train_vs_float": run_train_vs_float, "commit_overhead": run_commit_overhead,
            "upload_vs_raw": run_upload_vs_raw, "spot_vs_replay": run_spot_vs_replay}
    for name in SECTIONS:
        if name in args.skip:
            continue
        if name == "quality":
            from bench.quality import run_quality

            run_quality()
        else:
            runs[name](p, repeats)
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
