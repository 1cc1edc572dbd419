"""Real processes for end-to-end tests: a `vtrain-prover serve` on port 0 and the verifier CLI.

Both inherit the environment, so XDG_CONFIG_HOME (set per test by tests/conftest.py) isolates the
verifier's trust store, client key and attestations from the user's and from other tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

BIN = Path(sys.executable).parent
PROVER = str(BIN / "vtrain-prover")
VERIFIER = str(BIN / "vtrain-verifier")


class ProverProcess:
    def __init__(self, key: Path, *extra: str, listen: str = "127.0.0.1:0"):
        self.key, self.extra, self.listen = key, list(extra), listen
        self.proc = None
        self.address = None

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen([PROVER, "serve", "--key", str(self.key), "--listen", self.listen, *self.extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"prover did not start: {line!r} {self.proc.stderr.read()}")
        self.address = line.removeprefix("listening on ")
        return self

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return -9
        return self.proc.returncode

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""

    def __exit__(self, *exc):
        self.stop()


def make_key(tmp: Path) -> tuple[Path, str]:
    key = tmp / "trainer.pem"
    out = subprocess.run([PROVER, "keygen", "--out", str(key)], capture_output=True, text=True, check=True)
    return key, out.stdout.strip()


def verifier(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([VERIFIER, *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def verifier_json(*args: str) -> tuple[int, dict, str]:
    p = verifier(*args, "--json")
    try:
        doc = json.loads(p.stdout) if p.stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {"_raw": p.stdout}
    return p.returncode, doc, p.stderr
