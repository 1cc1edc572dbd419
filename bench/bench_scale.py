"""Benchmark ``scale_1m``: one real session on a 1,000,000 x 20 CSV generated at run time.

The session is the real CLI (``vtrain-verifier train``: CSV read, standardize, quantize, upload while hashing,
train, spot check, verify, write) against a real ``vtrain-prover serve``, logistic regression, one epoch,
B = 256, K = 64. Printed: the CSV size, the session's wall time, each process's peak RSS, and

* ``ratio scale_1m_rss`` = the larger peak RSS / the int64 size of the rows (n x 21 x 8 bytes), target <= 3;
* ``ratio scale_1m_time`` = session wall time (CSV read included) / (the same CSV read by the faster of
  ``pandas.read_csv`` and ``numpy.loadtxt`` + float64 minibatch SGD on the same schedule shape: 1 epoch,
  B = 256), target <= 3; the figure against ``numpy.loadtxt`` alone is printed beside it (reported only).

Median of ``--repeats`` interleaved runs (default 3: a run is ~1 min on the 2-core machine), min/max after.
Usage: ``python -m bench.bench_scale [--quick] [--repeats 3] [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.bench_training import float_sgd
from bench.servers import prover_process, stop_process
from bench.stats import median, ratio_report
from protocol.prg import SeedContext
from protocol.training import Schedule, TrainConfig

D = 20


def write_csv(path: Path, n: int, seed: int = 7) -> int:
    """n rows of D features (4 decimals) and a 0/1 target from a random linear model; returns the file size."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join([f"x{i}" for i in range(D)] + ["y"]) + "\n")
        for start in range(0, n, 100_000):
            X = np.round(rng.normal(size=(min(100_000, n - start), D)), 4)
            y = (X @ w + rng.normal(size=X.shape[0]) > 0).astype(np.int64)
            block = np.column_stack([X, y])
            fmt = ",".join(["%.4f"] * D + ["%d"])
            np.savetxt(fh, block, fmt=fmt)
    return path.stat().st_size


def session(csv: Path, address: str, out: Path) -> tuple[float, int, dict]:
    """(wall seconds, client peak RSS bytes, the CLI's own ``seconds`` split) of one CLI session."""
    exe = str(Path(sys.executable).parent / "vtrain-verifier")
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, "train", "--server", address, "--data", str(csv), "--target", "y", "--model",
                             "logistic", "--epochs", "1", "--batch-size", "256", "--spot-checks", "64", "--out",
                             str(out / "t.json"), "--model-out", str(out / "m.json"), "--json",
                             "--trust-store", str(out / "known_trainers")],  # a fresh server key each run
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict = {}
    readers = [threading.Thread(target=lambda k, f: out.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or '"verified"' not in out["stdout"]:
        raise RuntimeError(f"the scale session failed (exit {proc.returncode}): {out['stderr'][-2000:]}")
    return wall, usage.ru_maxrss * 1024, json.loads(out["stdout"]).get("seconds", {})


def baseline(csv: Path, n: int, reader: str = "numpy") -> float:
    """The CSV read with ``reader`` (numpy.loadtxt or pandas.read_csv, C parser) + float64 SGD, 1 epoch, B = 256
    (same Schedule as the session's shape). The issue allows either reader; the ratio uses the faster one (on
    this machine pandas, ~1 s against ~2.3 s for numpy.loadtxt at a million rows)."""
    t0 = time.perf_counter()
    if reader == "pandas":
        import pandas as pd

        data = pd.read_csv(csv).to_numpy(dtype=np.float64)
    else:
        data = np.loadtxt(csv, delimiter=",", skiprows=1)
    X, y = data[:, :-1], data[:, -1]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    cfg = TrainConfig(model="logistic", epochs=1, batch_size=256)
    ctx = SeedContext(b"\x01" * 16, b"\x02" * 32, b"\x03" * 32)
    sched = Schedule(ctx, cfg, n, D)
    float_sgd(X, y, sched, sched.initial_state(), cfg)
    return time.perf_counter() - t0


def baseline_process(csv: Path, n: int, reader: str) -> float:
    """``baseline`` in a child process (its own measured seconds). Run in this process, numpy.loadtxt's arrays
    would stay in it, and a later session's client is spawned with vfork (subprocess): until it execs it runs
    in this process's memory, and Linux counts that in its peak RSS (ru_maxrss keeps the pre-exec high-water
    mark). That is what made the client's peak vary between runs (run 1 before any baseline ~460 MB, later
    ones ~560 MB)."""
    out = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--baseline-only", str(csv), "--rows", str(n),
                          "--reader", reader], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-only", metavar="CSV", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="200,000 rows, one run")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reader", choices=("numpy", "pandas"), default="numpy", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.baseline_only:
        print(baseline(Path(args.baseline_only), args.rows, args.reader))
        return 0
    n, repeats = (200_000, 1) if args.quick else (args.rows, max(1, args.repeats))
    tmp = Path(tempfile.mkdtemp(prefix="vtrain-scale-"))
    csv = tmp / "scale.csv"
    t0 = time.perf_counter()
    size = write_csv(csv, n)
    print(f"[scale_1m] {n:,} x {D} CSV (+ 0/1 target) written in {time.perf_counter() - t0:.1f} s: "
          f"{size / 1e6:.0f} MB; int64 rows {n * (D + 1) * 8 / 1e6:.0f} MB")
    rows_bytes = n * (D + 1) * 8
    walls, bases, loadtxt, rss_c, rss_s, splits = [], [], [], [], [], []
    for _ in range(repeats):
        proc, addr, _pub = prover_process(tmp, "--max-rows", str(max(n, 1_000_000)))
        try:
            wall, client_peak, split = session(csv, addr, tmp)
            with open(f"/proc/{proc.pid}/status") as fh:
                server_peak = next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmHWM:"))
        finally:
            stop_process(proc)
        walls.append(wall)
        splits.append(split)
        rss_c.append(client_peak)
        rss_s.append(server_peak)
        by_numpy, by_pandas = baseline_process(csv, n, "numpy"), baseline_process(csv, n, "pandas")
        loadtxt.append(by_numpy)
        bases.append(min(by_numpy, by_pandas))
    print(f"time session (CLI: CSV read + standardize + upload + train + spot check + verify) = "
          f"{median(walls):.1f} s; baseline (the faster reader: pandas.read_csv or numpy.loadtxt) + float64 SGD = "
          f"{median(bases):.1f} s; with numpy.loadtxt {median(loadtxt):.1f} s")
    parts = {k: median([sp.get(k, 0.0) for sp in splits]) for k in ("session", "spot_check", "replay")}
    print(f"  of which (the CLI's own split, medians): session (upload, training, proof) "
          f"{parts['session']:.1f} s, spot check {parts['spot_check']:.1f} s, full replay {parts['replay']:.2f} s; "
          f"the rest ({median(walls) - sum(parts.values()):.1f} s) is start-up, reading the CSV and saving the transcript")
    print(f"peak RSS: client {median(rss_c) / 1e6:.0f} MB ({min(rss_c) / 1e6:.0f}-{max(rss_c) / 1e6:.0f}), server "
          f"{median(rss_s) / 1e6:.0f} MB ({min(rss_s) / 1e6:.0f}-{max(rss_s) / 1e6:.0f}) (rows {rows_bytes / 1e6:.0f} MB)")
    print(f"session wall min/median/max = {min(walls):.1f}/{median(walls):.1f}/{max(walls):.1f} s; baseline "
          f"{min(bases):.1f}/{median(bases):.1f}/{max(bases):.1f} s; load average {os.getloadavg()[0]:.1f}")
    print(ratio_report("scale_1m_rss", [max(c, s) / rows_bytes for c, s in zip(rss_c, rss_s)], 3))
    print(ratio_report("scale_1m_time", [w / b for w, b in zip(walls, bases)], 3))
    print(f"  against numpy.loadtxt + SGD (reported only, the slower reader): "
          f"{median([w / b for w, b in zip(walls, loadtxt)]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
