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

Each ratio is the median of the per-run ratios over ``--repeats`` (>= 5) interleaved runs, with min and max
on the next line (bench/stats.py); times shown are medians. Timings are reported, never asserted. Usage: ``python -m bench.bench_training [--quick] [--repeats 3] [--skip NAME ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from bench.servers import prover_process, start_process, stop_process, with_cpu
from bench.stats import interleaved, median, ratio_report, ratios
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


def with_process_time(fn, out: list):
    """fn, appending the CPU seconds this process spent in it to ``out``."""
    import time

    def run():
        c0 = time.process_time()
        result = fn()
        out.append(time.process_time() - c0)
        return result
    return run


def best_of(repeats: int, *fns):
    """Interleaved runs; returns (per-callable lists of seconds, last results)."""
    return interleaved(repeats, *fns)


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
    (tes, tfs), (th_e, th_f) = best_of(repeats, lambda: exact_training(Xq, Yq, cfg, ctx),
                                     lambda: float_sgd(X, y, Schedule(ctx, cfg, n, d), theta0, cfg))
    T = sched.num_steps
    te, tf = median(tes), median(tfs)
    diff = float(np.abs(th_e / (1 << cfg.frac_bits) - th_f).max())
    print(f"[train_vs_float] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"logistic, lr = {cfg.lr:.6f}, f = {cfg.frac_bits}")
    print(f"time bit-exact training (train_honest incl. Schedule + FastStepper setup) = {te:.3f} s "
          f"({te / T * 1e6:.1f} us/step)")
    print(f"time float64 numpy SGD (same Schedule, float data) = {tf:.3f} s ({tf / T * 1e6:.1f} us/step)")
    print(f"max |theta_exact - theta_float| = {diff:.2e} (fixed point vs float, reals)")
    print(ratio_report("train_vs_float", ratios(tes, tfs), 1.5))


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
    committed_training(key, ctx.session_id, Xq, Yq, cfg, ctx)  # warm-up of both sides (page cache, allocator)
    exact_training(Xq, Yq, cfg, ctx)
    cpu_c, cpu_b = [], []
    # runs of ~0.3 s on a shared 2-core machine: at least 11 interleaved pairs, so the median is not one
    # descheduled run; CPU time of this (single-threaded) work is reported beside the wall-time ratio
    (tcs, tbs), ((rec, events), theta) = best_of(
        max(repeats, 11), with_process_time(lambda: committed_training(key, ctx.session_id, Xq, Yq, cfg, ctx), cpu_c),
        with_process_time(lambda: exact_training(Xq, Yq, cfg, ctx), cpu_b))
    T = cfg.num_steps(n)
    tc, tb = median(tcs), median(tbs)
    same = bool(np.array_equal(rec.final_model, theta))
    print(f"[commit_overhead] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"checkpoint every {cfg.checkpoint_interval} steps ({T // cfg.checkpoint_interval} signatures + final), "
          f"{events} events; same final model: {same}")
    print(f"time run_training consumed (commitments + Ed25519 signatures) = {tc:.3f} s ({tc / T * 1e6:.1f} us/step)")
    print(f"time bare bit-exact training (train_honest) = {tb:.3f} s ({tb / T * 1e6:.1f} us/step)")
    cr = ratios(cpu_c, cpu_b)
    print(f"CPU-time ratio (reported only) median {median(cr):.3f}, min {min(cr):.3f}, max {max(cr):.3f}")
    print(ratio_report("commit_overhead", ratios(tcs, tbs), 1.10))


# -- upload_vs_raw -----------------------------------------------------------------------------------------
def session_upload(channel, stub, rows, cfg, pub, per_chunk, rows_per_leaf, value_bytes) -> bytes:
    """OpenSession + UploadData exactly as the client runs them (the canonical width of the rows found, as
    run_session does before the session; verifier.client.upload_rows: each chunk packed to that width once, sent,
    and hashed into the client's own data leaves while the next is on the wire), then the check of the signed
    data statement."""
    from protocol import convert
    from protocol.row_encoding import table_value_bytes
    from protocol.wire import trainer_pb2 as pb
    from verifier import checks
    from verifier.client import upload_rows

    n, w = rows.shape
    if table_value_bytes(rows) != value_bytes:
        raise AssertionError("the bench's rows changed width")
    resp = stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=_bytes("upload"),
                                                  proof_kind="spot"))
    sid = bytes(resp.session_id)
    tr = {"statements": {}}
    signed = upload_rows(channel, lambda fn, *a: fn(*a), sid, rows, 64 << 20, per_chunk, rows_per_leaf, tr,
                         value_bytes=value_bytes)
    data_root = bytes.fromhex(tr["data_root"])
    checks.check_data(pub, signed, sid, data_root=data_root, num_rows=n, num_features=w - 1,
                      rows_per_leaf=rows_per_leaf, value_bytes=value_bytes)
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))
    return data_root


def raw_upload(call, rows, per_chunk, dtype="<i8") -> int:
    """The rows as ``dtype`` bytes (int64: what the user would otherwise send) through the bare stream."""
    raw = np.ascontiguousarray(rows, dtype=dtype)

    def chunks():
        for start in range(0, raw.shape[0], per_chunk):
            yield raw[start:start + per_chunk].tobytes()

    return int.from_bytes(call(chunks()), "big")


def opening_bytes(n: int, d: int, B: int, R: int) -> int:
    """Raw size of one challenged step's opening: two states with their proofs, and per batch row its values,
    its data leaf (R rows) and the leaf's inclusion proof (int64 values, 32-byte hashes; protobuf adds a
    few bytes per field). R = 1 is the previous per-row commitment (no separate leaf rows)."""
    leaves = -(-n // R)
    depth = max(1, (leaves - 1).bit_length())
    row = (d + 1) * 8
    per_row = row + depth * 32 + (R * row if R > 1 else 0)
    return 2 * (row + 32 * 20) + B * per_row


def print_openings(label: str, n: int, d: int, B: int, K: int, R: int) -> None:
    before, after = opening_bytes(n, d, B, 1), opening_bytes(n, d, B, R)
    data = n * (d + 1) * 8
    print(f"opening per challenged step ({label}: n = {n:,}, d = {d}, B = {B}): before (one row per leaf) "
          f"{before / 1e3:.1f} kB, after (R = {R} rows per leaf) {after / 1e3:.1f} kB; K = {K} steps move "
          f"{K * after / 1e6:.2f} MB = {K * after / data:.1%} of the {data / 1e6:.1f} MB of data (before "
          f"{K * before / data:.1%})")
    from protocol.merkle import OPENED_FRACTION, default_rows_per_leaf

    if default_rows_per_leaf(d, n, K * B) < R:  # the client would not pick this R for this K
        print(f"  (the client picks R = {default_rows_per_leaf(d, n, K * B)} for K = {K}: R * K * B <= n / "
              f"{OPENED_FRACTION}; it picks R = {R} for K <= {max(1, n // (OPENED_FRACTION * B * R))})")


def run_upload_vs_raw(p: dict, repeats: int) -> None:
    import sys
    import tempfile

    from protocol.dataset import rows_matrix
    from protocol.merkle import default_rows_per_leaf
    from protocol.row_encoding import table_value_bytes
    from protocol.wire import trainer_pb2_grpc as pb_grpc
    from prover.session import Limits
    from verifier.client import open_channel

    n, d = p["n"], p["d"]
    _X, _y, Xq, Yq = synthetic(n, d, seed=3)
    rows = rows_matrix(Xq, Yq)
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=256).validate()
    W = table_value_bytes(rows)  # the canonical width (4 bytes: features in [-8, 8] with 16 fractional bits)
    per_chunk = max(1, CHUNK_BYTES // ((d + 1) * 8))  # the baseline's chunks: ~1 MiB of int64 rows
    per_chunk_w = max(1, CHUNK_BYTES // ((d + 1) * W))  # the client's: ~1 MiB of packed rows (upload_rows)
    R = default_rows_per_leaf(d, value_bytes=W)  # leaves of >= 4 KiB; the CLI caps R further by the spot check
    per_chunk_w = per_chunk_w // R * R
    cap = Limits().max_message_bytes
    tmp = tempfile.mkdtemp(prefix="vtrain-bench-")
    proc, addr, pub = prover_process(tmp)
    raw_proc, raw_addr = start_process([sys.executable, "-m", "bench.servers"])
    ch, raw_ch = open_channel(addr, max_bytes=cap), open_channel(raw_addr, max_bytes=cap)
    packed_dtype = f"<i{W}"
    from protocol.row_encoding import pack

    try:
        stub = pb_grpc.TrainerStub(ch)
        call = raw_ch.stream_unary("/benchraw.Raw/Upload")  # no serializers: bytes in, bytes out
        session_upload(ch, stub, rows[:1000], cfg, pub, per_chunk_w, R, table_value_bytes(rows[:1000]))  # warm-up
        raw_upload(call, rows[:1000], per_chunk)
        # the session's input: the rows as `vtrain-verifier train` holds them (quantized_rows(compact=True) writes
        # them as int32 when they fit, before any session); the session from int64 rows is timed too, reported only
        held = pack(rows, W)
        cpu_s, cpu_r, cpu_p = [], [], []
        (tss, trs, tps, t64s), (_root, got, got_p, _r64) = best_of(
            repeats, with_cpu(lambda: session_upload(ch, stub, held, cfg, pub, per_chunk_w, R, W), proc.pid, cpu_s),
            with_cpu(lambda: raw_upload(call, rows, per_chunk), raw_proc.pid, cpu_r),
            with_cpu(lambda: raw_upload(call, rows, per_chunk_w, packed_dtype), raw_proc.pid, cpu_p),
            lambda: session_upload(ch, stub, rows, cfg, pub, per_chunk_w, R, W))
    finally:
        ch.close()
        raw_ch.close()
        stop_process(proc)
        stop_process(raw_proc)
    ts, tr, tp = median(tss), median(trs), median(tps)
    mb, mb_w = rows.nbytes / 1e6, rows.size * W / 1e6
    from protocol.merkle import data_root

    packed = held
    hash_cpu = []
    for _ in range(3):
        c0 = time.process_time()
        data_root(packed, R, W)
        hash_cpu.append(time.process_time() - c0)
    print(f"[upload_vs_raw] n = {n:,}, d = {d}: {mb:.1f} MB of int64 rows; the session sends them as {W}-byte values "
          f"(the table's canonical width, signed in the data statement): {mb_w:.1f} MB in {-(-n // per_chunk_w)} "
          f"chunks of {per_chunk_w} rows, rows_per_leaf R = {R} ({R * (d + 1) * W:,}-byte leaves); the bare "
          f"stream sends the {mb:.1f} MB of int64 rows in {-(-n // per_chunk)} chunks of {per_chunk} rows (received "
          f"{got:,} bytes); both servers are separate processes (the trainer is a real `vtrain-prover serve`)")
    print(f"time session OpenSession + UploadData (canonical width found, rows packed, client leaves hashed while "
          f"sending, server leaves hashed while receiving, server signature, client check) = {ts:.3f} s "
          f"({mb / ts:.0f} MB/s of int64 rows), from the rows as the CLI holds them ({W}-byte values); from int64 "
          f"rows (each chunk packed on the way, reported only) = {median(t64s):.3f} s (ratio to the baseline "
          f"{median(ratios(t64s, trs)):.2f})")
    print(f"time bare gRPC client stream of the int64 rows (the baseline) = {tr:.3f} s ({mb / tr:.0f} MB/s)")
    print(f"time bare gRPC client stream of the {mb_w:.1f} MB of packed rows (received {got_p:,} bytes) = {tp:.3f} s")
    print(f"CPU seconds (client + server process, reported only): session {median(cpu_s):.3f} s, bare stream "
          f"{median(cpu_r):.3f} s (ratio {median(cpu_s) / median(cpu_r):.2f}), bare stream of packed rows "
          f"{median(cpu_p):.3f} s")
    from protocol.merkle import OPENED_FRACTION

    k_fit = max(1, n // (OPENED_FRACTION * cfg.batch_size * R))  # the largest K for which the client picks this R
    print(f"one side's commitment work (data leaves + root of the packed rows, CPU) = {min(hash_cpu):.3f} s")
    print_openings(f"this upload, spot check K = {k_fit}", n, d, cfg.batch_size, k_fit, R)
    print_openings("this upload, spot check K = 64", n, d, cfg.batch_size, 64, R)
    print(ratio_report("upload_vs_raw", ratios(tss, trs), 1.5))
    print("  (the issue's baseline: the same rows as int64 through a bare stream; part of the gain is the narrower "
          "encoding, so the next ratio compares with a bare stream of the packed bytes)")
    print(ratio_report("upload_vs_raw_packed", ratios(tss, tps), "none").replace("(target <= none)",
                                                                                 "(reported only, no target)"))


# -- spot_vs_replay ----------------------------------------------------------------------------------------
def trained_session(n: int, d: int, cfg: TrainConfig, K: int, R: int):
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
    from protocol.row_encoding import pack, table_value_bytes

    W = table_value_bytes(rows)
    m.upload(iter([(sid, d, n, n, pack(rows, W).tobytes(), R, W)]))
    seed, audit = _bytes("spot/seed"), _bytes("spot/audit")
    m.commit_randomness(sid, seed, seed_commitment(audit, sid), K)
    for _ev in m.train(sid):
        pass
    rec = s.record["result"]
    messages = m.prove(sid, audit, "spot")[0]
    openings = [convert.opening_from_proto(msg) for msg in messages]
    wire = sum(msg.ByteSize() for msg in messages)
    return sid, rows, s.data_tree.root, seed, audit, rec.tree.leaves(), rec.final_model, openings, wire


def run_spot_vs_replay(p: dict, repeats: int) -> None:
    from protocol.merkle import MerkleTree, default_rows_per_leaf
    from protocol.row_encoding import table_value_bytes
    from verifier import checks

    n, d, K = p["spot_n"], p["spot_d"], p["K"]
    cfg = TrainConfig(model="logistic", epochs=p["spot_epochs"], batch_size=p["spot_B"]).validate()
    R = default_rows_per_leaf(d, n, K * cfg.batch_size)  # the client's rule
    sid, rows, data_root, seed, audit, leaves, model, openings, wire = trained_session(n, d, cfg, K, R)
    ctx = SeedContext(sid, data_root, seed)
    T = cfg.num_steps(n)
    state_root = MerkleTree(leaves).root

    def spot():
        return checks.check_spot(openings, sid=sid, state_root=state_root, audit_seed=audit, spot_checks=K,
                                 num_steps=T, data_root=data_root, num_rows=n, sched=Schedule(ctx, cfg, n, d), cfg=cfg,
                                 rows_per_leaf=R, value_bytes=table_value_bytes(rows))

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

    (tss, trs, txs), _ = best_of(repeats, spot, replay, spot_verdict_extras)
    ts, tr, tx = median(tss), median(trs), median(txs)
    print(f"[spot_vs_replay] n = {n:,}, d = {d}, B = {cfg.batch_size}, epochs = {cfg.epochs}, T = {T:,} steps, "
          f"K = {K} openings ({K * cfg.batch_size} row openings), logistic, rows_per_leaf R = {R}")
    print_openings("spot_vs_replay", n, d, cfg.batch_size, K, R)
    print(f"openings as sent (protobuf) = {wire / 1e3:.1f} kB for K = {K} steps ({wire / K / 1e3:.1f} kB per step)")
    print(f"time check_spot (K = {K}) = {ts * 1e3:.1f} ms ({ts / K * 1e3:.2f} ms/opening)")
    print(f"time full replay (checks.replay) = {tr:.3f} s ({tr / T * 1e6:.1f} us/step)")
    print(f"time O(T) state-root work of the spot verdict besides check_spot (state tree + prefix roots) = "
          f"{tx * 1e3:.1f} ms (ratio to replay {tx / tr:.3f}, reported only)")
    print(ratio_report("spot_vs_replay", ratios(tss, trs), 0.02))


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
