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
reads and parses the CSV (the session's time does not include the client's CSV loading). Each run records a
fresh session and audits it right after, so both sides see the same machine load; CPU seconds are printed
next to the wall times.

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

from bench.servers import cpu_seconds, prover_process, stop_process
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


def record_session(workdir: Path, n: int) -> tuple[float, float]:
    """Train through the real CLIs (the CSV must exist); -> (session seconds the client reports, CPU seconds
    of the trainer and the client together)."""
    proc, addr, pub = prover_process(workdir, "--max-steps", str(2 * n), "--max-rows", str(2 * n))
    try:
        rc, _, _, out, cpu = run_child([_exe("vtrain-verifier"), "train", "--server", addr, "--data",
                                        str(workdir / "data.csv"), "--target", "y", "--model", "linear", "--epochs",
                                        "1", "--batch-size", "1", "--lr", "0.01", "--no-replay", "--out",
                                        str(workdir / "t.json"), "--model-out", str(workdir / "m.json"),
                                        "--trust-store", str(workdir / "trust"), "--trainer-key", pub.hex()],
                                       stderr=True)
        cpu += cpu_seconds(proc.pid)
    finally:
        stop_process(proc)
    m = re.search(r"session \(upload, training, proof\) ([0-9.]+) s", out)
    if rc != 3 or not m:
        raise RuntimeError(f"the session failed (exit {rc}): {out[-1500:]}")
    return float(m.group(1)), cpu


def run_child(argv: list[str], env: dict | None = None, stderr: bool = False) -> tuple[int, float, int, str, float]:
    """Run ``argv`` and reap it with wait4: -> (exit code, wall seconds, peak RSS bytes, output, CPU seconds)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=out if stderr else subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, seconds, usage.ru_maxrss * 1024, text, usage.ru_utime + usage.ru_stime


def measure(n: int, repeats: int) -> dict:
    """``repeats`` interleaved runs, each a fresh session then its audit (so both see the same machine load)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="vtrain-bench-audit-") as tmp:
        work = Path(tmp)
        write_csv(work / "data.csv", n)
        env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
        for _ in range(repeats):
            session, session_cpu = record_session(work, n)
            argv = [_exe("vtrain-verifier"), "audit", str(work / "t.json"), "--trust-store", str(work / "trust"),
                    "--json", "--data", str(work / "data.csv"), "--target", "y"]
            rc, seconds, rss, out, cpu = run_child(argv, env)
            if rc != 0 or '"status": "verified"' not in out:
                raise RuntimeError(f"audit --data did not verify (exit {rc}): {out[-1000:]}")
            runs.append({"session": session, "session_cpu": session_cpu, "audit": seconds, "rss": rss, "cpu": cpu})
        rc, s_nodata, rss_nodata, _, _ = run_child(argv[:6], env)
        return {"n": n, "runs": runs, "data_bytes": n * (D + 1) * 8,
                "transcript_bytes": (work / "t.json").stat().st_size, "nodata": (s_nodata, rss_nodata, rc)}


def report(name: str, m: dict) -> None:
    print(f"  {name}: {m['n']} rows x {D} features, {m['n']} steps (B = 1, one epoch); data {m['data_bytes'] / 1e6:.0f} "
          f"MB as int64, transcript {m['transcript_bytes'] / 1e6:.0f} MB")
    for r in m["runs"]:
        print(f"  {name}: session {r['session']:.1f} s ({r['session_cpu']:.1f} CPU s, trainer + client); audit --data "
              f"{r['audit']:.1f} s ({r['cpu']:.1f} CPU s), peak RSS {r['rss'] / 1e6:.0f} MB")
    s, rss, rc = m["nodata"]
    print(f"  {name}: audit without --data {s:.1f} s, peak RSS {rss / 1e6:.0f} MB (exit {rc})")
    print(ratio_report(f"audit_rss_{name}", [r["rss"] / m["data_bytes"] for r in m["runs"]], 2), flush=True)
    print(ratio_report(f"audit_time_{name}", [r["audit"] / r["session"] for r in m["runs"]], 1.2), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one audit run per size")
    ap.add_argument("--rows", type=int, nargs="*", help="sizes to run (default 100000, and 1000000 with "
                    "VTRAIN_BENCH_1M=1)")
    ap.add_argument("--repeats", type=int, help="interleaved session + audit runs per size (default 3)")
    args = ap.parse_args(argv)
    sizes = args.rows or ([100_000, 1_000_000] if os.environ.get("VTRAIN_BENCH_1M") == "1" else [100_000])
    repeats = args.repeats or (1 if args.quick else 3)
    for n in sizes:
        name = "1m" if n == 1_000_000 else "100k" if n == 100_000 else str(n)
        report(name, measure(n, repeats))
    if 1_000_000 not in sizes:
        print("  (the 1,000,000-row run is gated: set VTRAIN_BENCH_1M=1; it records a 1M-step session first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
