"""What the default full replay adds to `train` (issue #7 section 2): the client's replay time over the session
time (upload, training, proof) of the same run, through the real client and an in-process gRPC trainer.

    ratio replay_vs_session_breast_cancer = MEDIAN (target <= 1.0)   default logistic config, T = 1050
    ratio replay_vs_session_100k = MEDIAN (target <= 1.0)             100,000 x 10 synthetic rows

The replay recomputes every step the trainer computed (plus the state hashes), so about 1 is expected; the
session also carries the upload and the proof. ``--quick``: one epoch of batch 32 on the 100k rows instead of
the default 30 epochs of batch 16 (187,500 steps).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.dataset import Table, fit_standardization, load_table, quantized_rows
from protocol.fixedpoint import dyadic
from protocol.training import TrainConfig
from prover.server import build_server
from verifier.audit import with_replay
from verifier.client import ClientSeeds, open_channel, run_session


def _config(epochs: int, batch: int) -> TrainConfig:
    return TrainConfig(model="logistic", epochs=epochs, batch_size=batch, lr_num=dyadic(0.2, 10, "lr"), lr_shift=10,
                       l2_num=dyadic(0.01, 16, "l2"), checkpoint_interval=100).validate()


def _synthetic(n: int, d: int) -> Table:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d))
    y = ((X @ rng.normal(size=d) + 0.5 * rng.normal(size=n)) > 0).astype(np.float64)
    return Table(X=X, y=y, feature_names=[f"x{i}" for i in range(d)], target="y", source=f"synthetic:{n}x{d}")


def measure(table: Table, cfg: TrainConfig, repeats: int) -> list[dict]:
    stdz = fit_standardization(table, cfg.model)
    rows = quantized_rows(table, stdz, cfg.frac_bits)
    server, port, _ = build_server(Ed25519PrivateKey.generate(), limits=None)
    server.start()
    channel = open_channel(f"127.0.0.1:{port}")
    out = []
    try:
        for _ in range(repeats):
            timings: dict = {}
            t0 = time.perf_counter()
            tr, verdict = run_session(channel, table, stdz, cfg, spot_checks=64, seeds=ClientSeeds.fresh(),
                                      timings=timings)
            session = time.perf_counter() - t0 - timings["spot_check"]
            t1 = time.perf_counter()
            final = with_replay(verdict, tr, rows)
            replay = time.perf_counter() - t1
            assert final.status == "verified", final
            out.append({"steps": cfg.num_steps(rows.shape[0]), "session": session, "spot": timings["spot_check"],
                        "replay": replay})
    finally:
        channel.close()
        server.stop(None)
    return out


def report(name: str, runs: list[dict]) -> None:
    ratios = [r["replay"] / r["session"] for r in runs]
    for r in runs:
        print(f"  {name}: T = {r['steps']}, session {r['session']:.2f} s, spot check {r['spot']:.2f} s, "
              f"replay {r['replay']:.2f} s")
    print(f"ratio replay_vs_session_{name} = {statistics.median(ratios):.3f} (target <= 1.0) "
          f"[min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} runs]", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one epoch of batch 32 on the 100k rows")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    report("breast_cancer", measure(load_table("builtin:breast_cancer"), _config(30, 16), args.repeats))
    big = _synthetic(100_000, 10)
    cfg = _config(1, 32) if args.quick else _config(30, 16)
    report("100k", measure(big, cfg, 1 if not args.quick else args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
