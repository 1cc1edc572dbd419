"""Two-party secure training against plain bit-exact training (``mpc_vs_plain``).

Three real processes on loopback: ``vtrain-dealer serve``, ``vtrain-prover serve --dataset`` (half of the
rows) and ``vtrain-verifier train-2pc`` (the other half). Same data, config and schedule for the plain
baseline (protocol.training on the union with the session's seed context), which also checks that the
secure model is bit-identical. Default size: n = 10,000, d = 10, B = 32, 1 epoch (312 steps); ``--quick``:
n = 1,000. Preprocessing (time the client waited for the dealer, and the dealer's bytes) is reported
separately from the online phase.

Reference points (cited, not measured here; docs/MPC.md section 11 states the settings and the target):

* MP-SPDZ (Keller, "MP-SPDZ: A Versatile Framework for Multi-Party Computation", CCS 2020, Table 5, as quoted in
  https://github.com/data61/MP-SPDZ/issues/1622): one epoch of logistic regression, 1,280 examples, d = 10,
  B = 128 (10 iterations), two parties, times including preprocessing: SPDZ2k (malicious, no dealer) 973.17 s
  and 109,189 MB sent by party 0; semi2k (semi-honest, no dealer) 27.52 s and 8,173 MB. Per iteration: 97.3 s /
  10.9 GB and 2.75 s / 817 MB. The only two-party *training* figures with malicious security we could read.
* SecretFlow's benchmark page (https://github.com/secretflow/secretflow/blob/main/docs/developer/benchmark/
  overall_benchmark.md, 2024/02/21): 10^8 multiplications in 522.3 s with semi2k, its two-party protocol with a
  trusted party generating the correlated randomness (our dealer's role): 5.2 us per multiplication
  (semi-honest, ring Z_2^64, C++, 32 vCPUs per party, 100 Mbps / 50 ms: bandwidth-bound, so a LAN is faster).
* moose's comparison (https://github.com/tf-encrypted/moose, benchmarks/README.md): MP-SPDZ 0.3.2, three-party
  replicated ring (semi-honest, honest majority, no preprocessing), logistic regression B = 128: 0.450 s for 10
  iterations (45 ms per iteration) on AWS c5.9xlarge machines in one region, 36 threads.
SecureML (Mohassel-Zhang, S&P 2017) and ABY2.0 (Patra et al., USENIX Security 2021) report faster
semi-honest linear-regression iterations with probabilistic truncation (one or two rounds per iteration);
their tables could not be read in the sources available to us, so no number of theirs is quoted.

The stated target is per Beaver product against SecretFlow's dealer-assisted semi2k (the same preprocessing
model as ours): at most 15x its 5.2 us, for MACs on every share (2x the arithmetic and bytes), the sacrifice
(a second triple and a third opened value per product, 1.5x) and the 250-bit ring held as five 50-bit residues
(5x the arithmetic of one 64-bit word; the exact truncation needs more than 200 bits, docs/MPC.md section 7).
Python against C++, loopback gRPC against a C++ network stack, and exact against probabilistic truncation are
not allowed for: the issue asks for what the best systems reach. The load average is printed with the
figures: the machine is shared, and the plain baseline moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def _serve(*cmd: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(BIN / cmd[0]), *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def _write(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"x{j}" for j in range(X.shape[1])] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.6f")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1,000 instead of 10,000")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--repeat", type=int, default=1, help="secure sessions to run (min/median/max printed)")
    ap.add_argument("--rows-at", choices=("both", "client", "trainer"), default="both",
                    help="who holds the rows: half each (default, the issue's measurement), or one party all of "
                         "them (the other none: no --data, or a header-only --dataset; docs/MPC.md section 1)")
    args = ap.parse_args(argv)
    n = args.rows or (1000 if args.quick else 10_000)
    d, B = 10, 32
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    from mpc.plan import Plan
    from protocol.dataset import Standardization, load_table, quantize_table
    from protocol.prg import SeedContext
    from protocol.training import TrainConfig, train_honest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cut = {"both": n // 2, "client": n, "trainer": 0}[args.rows_at]
        _write(tmp / "client.csv", X[:cut], y[:cut])
        _write(tmp / "trainer.csv", X[cut:], y[cut:])
        data = [] if cut == 0 else ["--data", str(tmp / "client.csv")]  # a client without rows: no --data
        subprocess.run([str(BIN / "vtrain-prover"), "keygen", "--out", str(tmp / "k.pem")], check=True,
                       capture_output=True)
        dealer, daddr = _serve("vtrain-dealer", "serve")
        prover, paddr = _serve("vtrain-prover", "serve", "--key", str(tmp / "k.pem"), "--dataset",
                               f"half={tmp / 'trainer.csv'}", "--target", "y")
        docs = []
        try:
            for _ in range(max(1, args.repeat)):
                p = subprocess.run([str(BIN / "vtrain-verifier"), "train-2pc", "--server", paddr, "--trainer-data",
                                    "half", "--dealer", daddr, *data, "--target", "y",
                                    "--model", "linear", "--epochs", "1", "--batch-size", str(B), "--model-out",
                                    str(tmp / "m.json"), "--json"], capture_output=True, text=True, check=False)
                if p.returncode != 0:
                    print(p.stdout, p.stderr)
                    return 1
                docs.append((json.loads(p.stdout), json.loads((tmp / "m.json").read_text())))
        finally:
            for proc in (prover, dealer):
                proc.terminate()
                proc.wait(timeout=15)
        doc, model = docs[-1]
        stdz = Standardization.from_dict(model["standardization"])
        parts = [quantize_table(load_table(str(tmp / f), "y", allow_empty=True), stdz, 16)
                 for f in ("client.csv", "trainer.csv")]
        Xq, Yq = np.vstack([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]])
    cfg = TrainConfig(model="linear", epochs=1, batch_size=B, lr_num=20, lr_shift=10)
    exact = True
    for doc, model in docs:
        ctx = SeedContext(bytes.fromhex(doc["session_id"]), bytes.fromhex(doc["data_root"]),
                          bytes.fromhex(doc["training_seed"]))
        plain = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _, _, theta, _ in train_honest(Xq, Yq, cfg, ctx):
                pass
            plain.append(time.perf_counter() - t0)
        exact &= model["weights_fixed"] + [model["bias_fixed"]] == [int(v) for v in theta]
        doc["plain"] = statistics.median(plain)
    T = doc["steps"]
    from mpc.field import ELEMENT_BYTES
    plan = Plan.build(doc["client_rows"], doc["trainer_rows"], d, cfg)
    L1, L2 = plan.layers()
    products = B * L1.mults + (d + 1) * L2.mults  # Beaver products per step (plus 2 matrix triples)

    def spread(values, fmt):
        v = sorted(values)
        return "/".join(fmt.format(x) for x in (v[0], statistics.median(v), v[-1]))

    online = [x["seconds"] - x["seconds_preprocessing"] for x, _ in docs]
    ratios = [(x["seconds"] - x["seconds_preprocessing"]) / x["plain"] for x, _ in docs]
    per_step = [(x["bytes_sent"] + x["bytes_received"]) / T / 1e3 for x, _ in docs]
    print(f"two-party training: n={n} (client {doc['client_rows']} + trainer {doc['trainer_rows']}; the "
          f"{doc['standardization_from']}'s standardization), d={d}, B={B}, "
          f"1 epoch, T={T} steps, {len(docs)} session(s); bit-identical to plain training: {exact}")
    print(f"  online {spread(online, '{:.1f}')} s (min/median/max), waiting for preprocessing "
          f"{doc['seconds_preprocessing']:.1f} s (last); plain bit-exact training {doc['plain'] * 1e3:.1f} ms (last)")
    print(f"  online communication per step: {spread(per_step, '{:.1f}')} kB (sent + received; "
          f"{doc['rounds'] / T:.1f} rounds per step); preprocessing from the dealer per step: "
          f"{doc['dealer_bytes'] / T / 1e6:.3f} MB to the client (it expands its shares from a key), "
          f"{plan.step_elements() * ELEMENT_BYTES / 1e6:.2f} MB to the trainer")
    us_all = sorted(o / (T * products) * 1e6 for o in online)
    us = statistics.median(us_all)
    step_ms = [s / T * 1e3 for s in online]
    total_ms = statistics.median([x["seconds"] for x, _ in docs]) / T * 1e3
    print(f"  online time per step: {spread(step_ms, '{:.1f}')} ms (min/median/max); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared) at the end")
    print(f"  cited (module docstring, docs/MPC.md section 11): MP-SPDZ two-party logistic regression, d=10, B=128, "
          "per iteration with preprocessing: SPDZ2k (malicious) 97.3 s / 10.9 GB, semi2k 2.75 s / 817 MB; ours per "
          f"step with the dealer's preprocessing {total_ms:.0f} ms / "
          f"{statistics.median(per_step) / 1e3 + plan.step_elements() * ELEMENT_BYTES / 1e6:.2f} MB: the gap is "
          "the trusted dealer replacing OT/HE preprocessing, not a faster online phase")
    print(f"  cited: MP-SPDZ three-party replicated (semi-honest) logistic regression, B=128: 45 ms per iteration "
          f"(AWS, one region); ours {statistics.median(step_ms):.0f} ms per step online")
    print(f"  online time per Beaver product: {spread(us_all, '{:.0f}')} us (min/median/max; {products} products "
          "per step, the step's other work included); cited: SecretFlow semi2k (dealer-assisted, semi-honest, "
          "Z_2^64, C++) 5.2 us per multiplication")
    print(f"ratio mpc_product_vs_semi2k = {us / 5.2:.1f} (target <= 15)")
    print(f"  min/median/max {spread([u / 5.2 for u in us_all], '{:.1f}')} over {len(us_all)} session(s); 15 = 2x MACs, "
          "1.5x sacrifice, 5x residues (docs/MPC.md section 11)")
    print(f"ratio mpc_vs_plain = {statistics.median(ratios):.0f} (reported; the issue's target is the cited figure above)")
    print(f"  min/median/max {spread(ratios, '{:.0f}')}")
    print(f"ratio mpc_with_preprocessing_vs_plain = {doc['seconds'] / doc['plain']:.0f} (reported, no target)")
    return 0 if exact else 1

if __name__ == "__main__":
    raise SystemExit(main())
