"""Audit in bounded memory (issue #13), with real processes: the peak RSS of `vtrain-verifier audit --data`
does not grow with the number of steps. Before the fix an audit cost about 7.5 KB per step (10.5 GB for
1.4M steps): 8x the steps here (N = 2048 -> 16384, B = 1) then added about 100 MB; now it adds the data's few
hundred KB and the bounded read buffers (about 4 MB measured). The 1M-row figures are in `make bench` (bench/bench_audit.py)."""

from __future__ import annotations

import numpy as np
from procs import ProverProcess, make_key, verifier, verifier_measured

N = 2048
D = 2


def _session(tmp, key, pub, n: int):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, D))
    data = tmp / f"d{n}.csv"
    np.savetxt(data, np.column_stack([X, X @ [0.5, -1.0]]), delimiter=",", fmt="%.4f", header="a,b,y", comments="")
    with ProverProcess(key, "--max-steps", str(8 * N)) as srv:
        p = verifier("train", "--server", srv.address, "--data", str(data), "--target", "y", "--model", "linear",
                     "--epochs", "1", "--batch-size", "1", "--lr", "0.01", "--checkpoint-interval", "1000",
                     "--no-replay", "--out", str(tmp / f"t{n}.json"), "--model-out", str(tmp / f"m{n}.json"),
                     "--trainer-key", pub, "--trust-store", str(tmp / "trust"))
    assert p.returncode == 3, p.stderr[-2000:]
    return tmp / f"t{n}.json", data


def test_audit_peak_memory_does_not_grow_with_the_steps(tmp_path):
    key, pub = make_key(tmp_path)
    peaks = {}
    for n in (N, 8 * N):
        transcript, data = _session(tmp_path, key, pub, n)
        rc, out, err, rss_kib, _ = verifier_measured("audit", str(transcript), "--data", str(data), "--target", "y",
                                                      "--trust-store", str(tmp_path / "trust"))
        assert rc == 0 and "VERIFIED (replay)" in out, (out, err[-2000:])
        peaks[n] = rss_kib
    growth = (peaks[8 * N] - peaks[N]) / 1024  # MiB
    # bounded buffers (1 MiB reads of the state leaves, one block) fill up by 16k steps: a few MiB, then flat
    assert growth < 24, (peaks, f"{growth:.1f} MiB more for {7 * N} more steps")  # was about 100 MiB


def test_the_audit_command_imports_no_heavy_module():
    """The audit's constant (issue #13): `vtrain-verifier audit` builds its parser and loads its code without
    gRPC, protobuf, scipy, pandas, matplotlib or py_ecc (each costs megabytes; pandas is imported only when a
    table is not plain numbers, see protocol/csv_chunks.py)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from verifier import cli; cli._parser(); import verifier.cli_audit, protocol.csv_chunks; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert not loaded & {"grpc", "google", "scipy", "pandas", "matplotlib", "py_ecc", "tqdm"}, loaded
