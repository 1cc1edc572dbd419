"""Audit in bounded memory (issue #13): peak RSS and time of ``vtrain-verifier audit --data`` as a child
process, on a session recorded at run time by the real CLIs (``vtrain-prover serve`` and
``vtrain-verifier train --no-replay``): linear model, d = 8 features, batch size 1, one epoch, so the session
has one step per row.

    ratio audit_rss_100k = MEDIAN (target <= 2)   peak RSS of `audit --data` / int64 size of the data
    ratio audit_time_100k = MEDIAN (target <= 1.2) audit wall time / the session's time as `train` reports it
    ratio audit_rss_1m, audit_time_1m             the same on 1,000,000 rows and 1,000,000 steps

The int64 size of the data is rows x (d + 1) x 8 bytes (72 MB at 1M rows). The session's time is what `train`
prints as "session (upload, training, proof)": the training of every step on the trainer, with the upload
before it and the spot-check openings after it. Peak RSS is the child's ru_maxrss (wait4). The audit also
reads and parses the CSV (the session's time does not include the client's CSV loading).

The 1M-row session takes several minutes to record on a 2-core machine, so it runs only with
``VTRAIN_BENCH_1M=1``; ``--quick``: one audit run per size instead of three.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.servers import prover_process, stop_process
from bench.stats import ratio_report

D = 8


def _exe(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def write_csv(path: Path, n: int, d: int = D) -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(size=d)
    with open(path, "w") as fh:
        fh.write(",".join([f"x{i}" for i in range(d)] + ["y"]) + "\n")
        for start in range(0, n, 100_000):
            X = rng.normal(size=(min(100_000, n - start), d))
            y = X @ w + 0.1 * rng.normal(size=X.shape[0])
            np.savetxt(fh, np.column_stack([X, y]), delimiter=",", fmt="%.5f")


def record_session(workdir: Path, n: int) -> float:
    """Train through the real CLIs; returns the session seconds the client reports."""
    write_csv(workdir / "data.csv", n)
    proc, addr, pub = prover_process(workdir, "--max-steps", str(2 * n), "--max-rows", str(2 * n))
    try:
        r = subprocess.run([_exe("vtrain-verifier"), "train", "--server", addr, "--data", str(workdir / "data.csv"),
                            "--target", "y", "--model", "linear", "--epochs", "1", "--batch-size", "1", "--lr", "0.01",
                            "--no-replay", "--out", str(workdir / "t.json"), "--model-out", str(workdir / "m.json"),
                            "--trust-store", str(workdir / "trust"), "--trainer-key", pub.hex()],
                           capture_output=True, text=True, timeout=3600, check=False)
    finally:
        stop_process(proc)
    m = re.search(r"session \(upload, training, proof\) ([0-9.]+) s", r.stdout + r.stderr)
    if r.returncode != 3 or not m:
        raise RuntimeError(f"the session failed (exit {r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
    return float(m.group(1))


def audit_child(argv: list[str], env: dict | None = None) -> tuple[int, float, int, str]:
    """Run ``argv`` and reap it with wait4: -> (exit code, wall seconds, peak RSS bytes, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss * 1024, out.decode()


def measure(n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vtrain-bench-audit-") as tmp:
        work = Path(tmp)
        session = record_session(work, n)
        argv = [_exe("vtrain-verifier"), "audit", str(work / "t.json"), "--trust-store", str(work / "trust"),
                "--json", "--data", str(work / "data.csv"), "--target", "y"]
        env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
        runs = []
        for _ in range(repeats):
            rc, seconds, rss, out = audit_child(argv, env)
            if rc != 0 or '"status": "verified"' not in out:
                raise RuntimeError(f"audit --data did not verify (exit {rc}): {out[-1000:]}")
            runs.append((seconds, rss))
        rc, s_nodata, rss_nodata, _ = audit_child(argv[:6], env)
        data_bytes = n * (D + 1) * 8
        return {"n": n, "session": session, "runs": runs, "data_bytes": data_bytes,
                "transcript_bytes": (work / "t.json").stat().st_size, "nodata": (s_nodata, rss_nodata, rc)}


def report(name: str, m: dict) -> None:
    print(f"  {name}: {m['n']} rows x {D} features, {m['n']} steps (B = 1, one epoch); data {m['data_bytes'] / 1e6:.0f} "
          f"MB as int64, transcript {m['transcript_bytes'] / 1e6:.0f} MB; session {m['session']:.1f} s")
    for s, rss in m["runs"]:
        print(f"  {name}: audit --data {s:.1f} s, peak RSS {rss / 1e6:.0f} MB")
    s, rss, rc = m["nodata"]
    print(f"  {name}: audit without --data {s:.1f} s, peak RSS {rss / 1e6:.0f} MB (exit {rc})")
    print(ratio_report(f"audit_rss_{name}", [rss / m["data_bytes"] for _, rss in m["runs"]], 2), flush=True)
    print(ratio_report(f"audit_time_{name}", [s / m["session"] for s, _ in m["runs"]], 1.2), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one audit run per size")
    ap.add_argument("--rows", type=int, nargs="*", help="sizes to run (default 100000, and 1000000 with "
                    "VTRAIN_BENCH_1M=1)")
    args = ap.parse_args(argv)
    sizes = args.rows or ([100_000, 1_000_000] if os.environ.get("VTRAIN_BENCH_1M") == "1" else [100_000])
    repeats = 1 if args.quick else 3
    for n in sizes:
        name = "1m" if n == 1_000_000 else "100k" if n == 100_000 else str(n)
        report(name, measure(n, repeats))
    if 1_000_000 not in sizes:
        print("  (the 1,000,000-row run is gated: set VTRAIN_BENCH_1M=1; it records a 1M-step session first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
