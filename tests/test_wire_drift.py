"""The committed wire code must equal a fresh generation from proto/ (run `make proto` after editing it)."""

from pathlib import Path

import pytest

from protocol.wire import generate


def test_generated_code_is_up_to_date(tmp_path):
    pytest.importorskip("grpc_tools")
    fresh = generate.generate(tmp_path)
    assert fresh, "no .proto files found"
    for f in fresh:
        committed = generate.WIRE_DIR / f.name
        assert committed.exists(), f"{f.name} is not committed; run make proto"
        assert committed.read_text() == f.read_text(), f"{committed} is stale; run make proto"
    names = {f.name for f in fresh}
    stray = {p.name for p in Path(generate.WIRE_DIR).glob("*_pb2*.py")} - names
    assert not stray, f"generated files without a .proto: {stray}"
