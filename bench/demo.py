"""`make demo`: the main job on bundled real data, with real processes.

1. generate a trainer key; start `vtrain-prover serve` on a free local port;
2. `vtrain-verifier train` on builtin:breast_cancer (logistic): spot check, then the full local replay ->
   VERIFIED; `audit` without the data -> SPOT-CHECKED (exit 3), with the data -> VERIFIED;
3. the `jump` trainer (honest training, then a chosen model committed as its last state, all signed): the
   default train rejects it at the last step; `predict` mitigates the rejected model;
4. an edited transcript (two opened rows swapped, integrity digest recomputed, as anyone can): `audit`
   refuses it as ALTERED (exit 2) and does not blame the trainer;
5. a small SNARK session; a session on the trainer's own 512 breast-cancer rows (docs/PROTOCOL.md section 12:
   two clients see the same signed root, the spot verdict counts the rows revealed, `swap-rows` is rejected in
   every run: every step is challenged and every row trained on); a two-party secure training session (dealer, trainer, client) and a cheating trainer; a summary; the servers are stopped. Exits 0 when every outcome is the expected one.
The demo keeps its trust store, client key and attestations in demo-out/config (XDG_CONFIG_HOME), not in
the user's configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
OUT = Path("demo-out")


def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n$ {shown}", flush=True)
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / args[0]), *args[1:]], check=False, capture_output=True, text=True,
                       env={**os.environ, "XDG_CONFIG_HOME": str((OUT / "config").resolve())})
    if "--json" not in args:  # JSON results are summarized by the caller
        sys.stdout.write(p.stdout)
    if p.stderr.strip():
        sys.stdout.write("".join(f"  | {line}\n" for line in p.stderr.strip().splitlines()[-6:]))
    print(f"  (exit {p.returncode}, {time.perf_counter() - t0:.1f} s)")
    if expect is not None and p.returncode != expect:
        raise SystemExit(f"demo: expected exit {expect} from {args[0]} {args[1]}, got {p.returncode}")
    return p


class Server:
    def __init__(self, key: Path, *extra: str):
        self.proc = subprocess.Popen([str(BIN / "vtrain-prover"), "serve", "--key", str(key), "--listen",
                                      "127.0.0.1:0", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"demo: the prover did not start ({line!r})")
        self.address = line.removeprefix("listening on ")
        print(f"started vtrain-prover serve {' '.join(extra)} -> {line}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)


def _word(p: subprocess.CompletedProcess) -> str:
    """The verdict line's head, e.g. "VERIFIED (replay)" or "REJECTED (replay) [step 1050]"."""
    for line in p.stdout.splitlines():
        if line.split(" ", 1)[0].rstrip(":") in ("VERIFIED", "SPOT-CHECKED", "REJECTED", "ALTERED"):
            return line.split(":")[0] + f"  (exit {p.returncode})"
    return f"(exit {p.returncode})"


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    summary = []
    pub = run("vtrain-prover", "keygen", "--out", str(OUT / "trainer.pem")).stdout.strip()
    common = ["--data", "builtin:breast_cancer", "--model", "logistic", "--epochs", "20", "--lr", "0.25",
              "--spot-checks", "64", "--trainer-key", pub]  # T = 20 * floor(569 / 16) = 700 steps

    honest = Server(OUT / "trainer.pem")
    try:
        p = run("vtrain-verifier", "train", "--server", honest.address, *common, "--out", str(OUT / "honest.transcript.json"),
                "--model-out", str(OUT / "honest.model.json"))
        summary.append(("honest trainer, train (spot check + replay)", _word(p)))
        p = run("vtrain-verifier", "audit", str(OUT / "honest.transcript.json"), "--trainer-key", pub, expect=3)
        summary.append(("honest trainer, audit without the data", _word(p)))
        p = run("vtrain-verifier", "audit", str(OUT / "honest.transcript.json"), "--data", "builtin:breast_cancer",
                "--trainer-key", pub)
        summary.append(("honest trainer, audit with the data", _word(p)))
    finally:
        honest.stop()

    cheat = Server(OUT / "trainer.pem", "--adversary", "jump")
    try:
        p = run("vtrain-verifier", "train", "--server", cheat.address, *common, "--out", str(OUT / "jump.transcript.json"),
                "--model-out", str(OUT / "jump.model.json"), expect=1)
        summary.append(("jump trainer (last state replaced), train", _word(p)))
    finally:
        cheat.stop()

    p = run("vtrain-verifier", "predict", "--model", str(OUT / "jump.model.json"), "--data", "builtin:breast_cancer",
            "--seed", "7", "--n", "2000", "--json", "--out", str(OUT / "jump.predictions.csv"))
    doc = json.loads(p.stdout)
    summary.append(("fallback for the rejected model", f"{doc.get('defense')}: {doc.get('reason', '')}"[:90]))

    # Anyone can edit a transcript and recompute its integrity digest: swap two opened rows.
    from protocol import transcript as tx

    tr, _ = tx.load(str(OUT / "honest.transcript.json"))
    tr["proof"]["openings"][0]["rows"][:2] = tr["proof"]["openings"][0]["rows"][1::-1]
    tx.save(str(OUT / "edited.transcript.json"), tr)
    p = run("vtrain-verifier", "audit", str(OUT / "edited.transcript.json"), "--data", "builtin:breast_cancer",
            "--trainer-key", pub, expect=2)
    summary.append(("edited transcript (two opened rows swapped)", _word(p)))

    # A small SNARK session: 64 diabetes rows, 3 features, 4 steps, proved with Groth16 over BLS12-381.
    small = OUT / "diabetes_small.csv"
    src = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "diabetes.csv").read_text().splitlines()[:65]
    small.write_text("\n".join(",".join(r.split(",")[:3] + [r.split(",")[-1]]) for r in src) + "\n")
    snark = Server(OUT / "trainer.pem")
    try:
        t0 = time.perf_counter()
        p = run("vtrain-verifier", "train", "--server", snark.address, "--data", str(small), "--target", "progression",
                "--model", "linear", "--batch-size", "16", "--epochs", "1", "--lr", "0.05", "--proof", "snark",
                "--trainer-key", pub, "--out", str(OUT / "snark.transcript.json"),
                "--model-out", str(OUT / "snark.model.json"), "--json")
        wall = time.perf_counter() - t0
        doc = json.loads(p.stdout)
        info = doc.get("snark", {})
        print(f"SNARK: {info.get('constraints')} constraints, setup {info.get('setup_seconds')} s, proving key "
              f"{info.get('proving_key_bytes', 0) / 1e6:.1f} MB, proof {info.get('proof_bytes')} bytes, session {wall:.1f} s")
        summary.append(("SNARK session (4 steps)", (f"{doc['status'].upper()} ({info.get('constraints')} constraints, "
                        f"proof {info.get('proof_bytes')} B, {wall:.1f} s)")))
        t0 = time.perf_counter()
        p = run("vtrain-verifier", "audit", str(OUT / "snark.transcript.json"))
        summary.append(("SNARK offline audit", _word(p) + f" ({time.perf_counter() - t0:.1f} s)"))
        run("vtrain-verifier", "export-snarkjs", str(OUT / "snark.transcript.json"), "--out", str(OUT / "snarkjs"))
    finally:
        snark.stop()

    summary += trainer_owned_session(pub)
    summary += two_party_session()

    print("\nSummary")
    for what, outcome in summary:
        print(f"  {what:46s} {outcome}")
    print(f"files in {OUT}/")
    return 0


def trainer_owned_session(pub: str) -> list[tuple[str, str]]:
    """The trainer's own breast-cancer rows (committed once, salted); the client supplies only the randomness.
    Two sessions sign the same root. The trainer holds the first 512 of the 569 rows, a multiple of B = 16, so
    every row is in a batch of every epoch (the last n mod B rows of an epoch's permutation are not used,
    docs/PROTOCOL.md section 7; with 569 rows `swap-rows`'s row would sit out both epochs with probability
    (9/569)^2): its fabricated row is trained on at one step per epoch, and K = 100 >= T = 64 challenges every
    step, so `swap-rows` is rejected in every run, whatever the client's seeds."""
    rows = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "breast_cancer.csv").read_text().splitlines()
    data = OUT / "breast_cancer_512.csv"
    data.write_text("\n".join(rows[:513]) + "\n")
    out = []
    for adversary, expect in ((None, 3), ("swap-rows", 1)):
        # (the adversary's server lifts the per-session reveal cap so that K >= T can challenge every step)
        extra = ["--adversary", adversary, "--max-reveal", "1"] if adversary else []
        srv = Server(OUT / "trainer.pem", "--dataset", f"bc={data}", "--target", "malignant", "--salt-file",
                     str(OUT / "trainer.salts.json"), *extra)
        try:
            roots = []
            for k in range(1 if adversary else 2):
                name = f"owned.{adversary or 'honest'}.{k}"
                p = run("vtrain-verifier", "train", "--server", srv.address, "--trainer-data", "bc", "--epochs", "2",
                        "--spot-checks", "100" if adversary else "8", "--trainer-key", pub,
                        "--out", str(OUT / f"{name}.transcript.json"), "--model-out", str(OUT / f"{name}.model.json"),
                        "--json", expect=expect)
                doc = json.loads(p.stdout)
                td = doc.get("trainer_data", {})
                roots.append(td.get("data_root", "")[:16])
                what = (f"trainer-owned data, {adversary} trainer" if adversary else
                        f"trainer-owned data, honest session {k + 1}")
                out.append((what, (f"{doc['status'].upper()} (exit {p.returncode}), {td.get('rows_revealed')} of "
                                   f"{td.get('num_rows')} rows revealed, root {roots[-1]}...")))
                print(f"  {doc['status'].upper()}: {doc.get('guarantee') or doc.get('reason')}")
            if not adversary:
                if len(set(roots)) != 1:
                    raise SystemExit("demo: two sessions on the same dataset signed different roots")
                p = run("vtrain-verifier", "audit", str(OUT / "owned.honest.0.transcript.json"), "--trainer-key", pub,
                        expect=3)
                out.append(("trainer-owned data, offline audit", _word(p)))
        finally:
            srv.stop()
    return out


def two_party_session() -> list[tuple[str, str]]:
    """Two-party secure training: a dealer, a trainer holding half of 64 diabetes rows, the client the other
    half; then the same against a trainer that sends one wrong share (aborted, no model)."""
    rows = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "diabetes.csv").read_text().splitlines()

    def part(lo, hi):
        return "\n".join(",".join(r.split(",")[:3] + [r.split(",")[-1]]) for r in [rows[0]] + rows[lo:hi]) + "\n"

    (OUT / "2pc_client.csv").write_text(part(1, 33))
    (OUT / "2pc_trainer.csv").write_text(part(33, 65))
    dealer = subprocess.Popen([str(BIN / "vtrain-dealer"), "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    daddr = dealer.stdout.readline().strip().removeprefix("listening on ")
    print(f"started vtrain-dealer serve -> {daddr}")
    out = []
    try:
        for adversary, expect in ((None, 0), ("bad-share", 1)):
            extra = ["--mpc-adversary", adversary] if adversary else []
            srv = Server(OUT / "trainer.pem", "--dataset", f"half={OUT / '2pc_trainer.csv'}", "--target", "progression",
                         *extra)
            try:
                p = run("vtrain-verifier", "train-2pc", "--server", srv.address, "--trainer-data", "half", "--dealer",
                        daddr, "--data", str(OUT / "2pc_client.csv"), "--target", "progression", "--model", "linear",
                        "--epochs", "1", "--batch-size", "16", "--model-out", str(OUT / f"2pc.{adversary or 'honest'}.model.json"),
                        expect=expect)
                out.append((f"two-party training, {adversary or 'honest'} trainer", p.stdout.split(":")[0]))
            finally:
                srv.stop()
    finally:
        dealer.send_signal(signal.SIGTERM)
        dealer.wait(timeout=15)
    return out


if __name__ == "__main__":
    sys.exit(main())
