"""Regenerate the committed wire code from proto/ (``make proto``).

Runs grpc_tools.protoc on proto/vtrain/v1/*.proto (``trainer.proto``: the verifiable-training service;
``mpc.proto``: two-party training and its dealer, docs/MPC.md) and writes ``protocol/wire/<name>_pb2.py`` and
``<name>_pb2_grpc.py`` with the package-relative import fixed. ``generate(outdir)`` is also used by the
drift test, which fails when the committed files differ from a fresh generation.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
WIRE_DIR = Path(__file__).resolve().parent


def generate(outdir: Path) -> list[Path]:
    from grpc_tools import protoc  # dev extra

    protos = sorted(PROTO_DIR.glob("vtrain/v1/*.proto"))
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}", f"--grpc_python_out={tmp}"]
        args += [str(p.relative_to(PROTO_DIR)) for p in protos]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        for src in sorted(Path(tmp, "vtrain", "v1").glob("*.py")):
            text = src.read_text()
            text = re.sub(r"^from vtrain\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M)
            dst = outdir / src.name
            dst.write_text(text)
            written.append(dst)
    return written


def main() -> int:
    for p in generate(WIRE_DIR):
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
