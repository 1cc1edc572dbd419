"""``upload_vs_raw`` of bench/bench_training.py (run there, ``--skip upload_vs_raw`` leaves it out): OpenSession +
UploadData through a real ``vtrain-prover serve`` against a bare gRPC client stream of the int64 rows (the
issue's baseline), both sides' commitment work included; also against a bare stream of the packed rows (reported
only: the narrower canonical encoding is part of the gain, so the two are shown apart); opening sizes per
challenged step before (one row per leaf) and after (block leaves).
"""

from __future__ import annotations

import time

import numpy as np

from bench.servers import prover_process, start_process, stop_process, with_cpu
from bench.stats import median, ratio_report, ratios
from protocol.training import TrainConfig


def _bytes(label: str, n: int = 32) -> bytes:
    import hashlib

    return hashlib.sha256(b"bench_training/" + label.encode()).digest()[:n]


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


def print_openings(label: str, n: int, d: int, B: int, K: int, R: int, w: int = 8) -> None:
    before, after = opening_bytes(n, d, B, 1), opening_bytes(n, d, B, R)
    data = n * (d + 1) * 8
    print(f"opening per challenged step ({label}: n = {n:,}, d = {d}, B = {B}): before (one row per leaf) "
          f"{before / 1e3:.1f} kB, after (R = {R} rows per leaf) {after / 1e3:.1f} kB; K = {K} steps move "
          f"{K * after / 1e6:.2f} MB = {K * after / data:.1%} of the {data / 1e6:.1f} MB of data (before "
          f"{K * before / data:.1%})")
    from protocol.merkle import OPENED_FRACTION, default_rows_per_leaf

    picked = default_rows_per_leaf(d, n, K * B, value_bytes=w)
    if picked < R:  # the client would not pick this R for this K
        print(f"  (the client picks R = {picked} for K = {K}: R * K * B <= n / "
              f"{OPENED_FRACTION}; it picks R = {R} for K <= {max(1, n // (OPENED_FRACTION * B * R))})")


def run_upload_vs_raw(p: dict, repeats: int) -> None:
    import sys
    import tempfile

    from bench.bench_training import CHUNK_BYTES, best_of, synthetic
    from protocol.dataset import rows_matrix
    from protocol.merkle import default_rows_per_leaf
    from protocol.row_encoding import table_value_bytes
    from protocol.wire import trainer_pb2_grpc as pb_grpc
    from prover.session import Limits
    from verifier.client import open_channel
    from verifier.upload import default_rows_per_chunk

    n, d = p["n"], p["d"]
    _X, _y, Xq, Yq = synthetic(n, d, seed=3)
    rows = rows_matrix(Xq, Yq)
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=256).validate()
    W = table_value_bytes(rows)  # the canonical width (4 bytes: features in [-8, 8] with 16 fractional bits)
    per_chunk = max(1, CHUNK_BYTES // ((d + 1) * 8))  # the baseline's chunks: ~1 MiB of int64 rows
    R = default_rows_per_leaf(d, value_bytes=W)  # leaves of >= 4 KiB; the CLI caps R further by the spot check
    cap = Limits().max_message_bytes
    per_chunk_w = default_rows_per_chunk(d, W, R, cap)  # the client's own chunks (upload_rows: ~4 MiB)
    per_chunk_big = max(1, per_chunk_w * W // 8)  # the baseline at the session's message size (reported only)
    K_CLI = 64  # `vtrain-verifier train`'s default --spot-checks: its R for these n and B (reported only)
    R64 = default_rows_per_leaf(d, n, K_CLI * cfg.batch_size, value_bytes=W)
    per_chunk_64 = default_rows_per_chunk(d, W, R64, cap)
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
        (tss, trs, tps, t64s, tbs, tks), (_root, got, got_p, _r64, _rb, _rk) = best_of(
            repeats, with_cpu(lambda: session_upload(ch, stub, held, cfg, pub, per_chunk_w, R, W), proc.pid, cpu_s),
            with_cpu(lambda: raw_upload(call, rows, per_chunk), raw_proc.pid, cpu_r),
            with_cpu(lambda: raw_upload(call, rows, per_chunk_w, packed_dtype), raw_proc.pid, cpu_p),
            lambda: session_upload(ch, stub, rows, cfg, pub, per_chunk_w, R, W),
            lambda: raw_upload(call, rows, per_chunk_big),
            lambda: session_upload(ch, stub, held, cfg, pub, per_chunk_64, R64, W))
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
    from verifier.upload import RAMP, chunk_bounds

    bounds = chunk_bounds(n, per_chunk_w, R)
    ramp = ", ".join(str(b - a) for a, b in bounds[:RAMP]) if len(bounds) > 2 * RAMP else "none"
    print(f"[upload_vs_raw] n = {n:,}, d = {d}: {mb:.1f} MB of int64 rows; the session sends them as {W}-byte values "
          f"(the table's canonical width, signed in the data statement): {mb_w:.1f} MB in {len(bounds)} chunks of "
          f"{per_chunk_w} rows, the first and last {RAMP} of them {ramp} rows (halving toward each end), "
          f"rows_per_leaf R = {R} ({R * (d + 1) * W:,}-byte leaves); the bare "
          f"stream sends the {mb:.1f} MB of int64 rows in {-(-n // per_chunk)} chunks of {per_chunk} rows (received "
          f"{got:,} bytes); both servers are separate processes (the trainer is a real `vtrain-prover serve`)")
    print(f"time session OpenSession + UploadData (canonical width found, rows packed, client leaves hashed while "
          f"sending, server leaves hashed while receiving, server signature, client check) = {ts:.3f} s "
          f"({mb / ts:.0f} MB/s of int64 rows), from the rows as the CLI holds them ({W}-byte values); from int64 "
          f"rows (each chunk packed on the way, reported only) = {median(t64s):.3f} s (ratio to the baseline "
          f"{median(ratios(t64s, trs)):.2f})")
    print(f"time bare gRPC client stream of the int64 rows (the baseline) = {tr:.3f} s ({mb / tr:.0f} MB/s); in "
          f"chunks of the session's message size ({per_chunk_big} rows, reported only) = {median(tbs):.3f} s")
    print(f"time bare gRPC client stream of the {mb_w:.1f} MB of packed rows (received {got_p:,} bytes) = {tp:.3f} s")
    print(f"CPU seconds (client + server process, reported only): session {median(cpu_s):.3f} s, bare stream "
          f"{median(cpu_r):.3f} s (ratio {median(cpu_s) / median(cpu_r):.2f}), bare stream of packed rows "
          f"{median(cpu_p):.3f} s")
    from protocol.merkle import OPENED_FRACTION

    k_fit = max(1, n // (OPENED_FRACTION * cfg.batch_size * R))  # the largest K for which the client picks this R
    print(f"one side's commitment work (data leaves + root of the packed rows, CPU) = {min(hash_cpu):.3f} s")
    print_openings(f"this upload, spot check K = {k_fit}", n, d, cfg.batch_size, k_fit, R, W)
    print_openings("this upload, spot check K = 64", n, d, cfg.batch_size, 64, R, W)
    print(ratio_report("upload_vs_raw", ratios(tss, trs), 1.5))
    print("  (the issue's baseline: the same rows as int64 through a bare stream; part of the gain is the narrower "
          "encoding, so the next ratio compares with a bare stream of the packed bytes)")
    print(ratio_report("upload_vs_raw_packed", ratios(tss, tps), "none").replace("(target <= none)",
                                                                                 "(reported only, no target)"))
    print(f"  (at the CLI's default --spot-checks {K_CLI} the client picks R = {R64} for this table (the opened leaves "
          f"must stay within a sixteenth of the data): {-(-n // R64):,} leaves, one hash call each, and as many "
          f"inner nodes, on both sides; the same session then takes {median(tks):.3f} s, next ratio)")
    print(ratio_report(f"upload_vs_raw_k{K_CLI}", ratios(tks, trs), "none").replace("(target <= none)",
                                                                                   "(reported only, no target)"))
