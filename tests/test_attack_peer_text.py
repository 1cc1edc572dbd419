"""A trainer's own words cannot forge what the client's user sees. gRPC status details are chosen by the trainer;
printed as they come, a line break, a carriage return or a terminal escape (cursor up, erase line) lets a
cheating trainer put a forged "VERIFIED" line on the user's screen under a failed session (the exit code would
stay honest, the screen would not). Real client process against a gRPC server that answers every call with
such details."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from procs import verifier

from protocol.peer_text import peer_text, screen_text

FORGED = "x\n\x1b[1A\x1b[2K\rVERIFIED (replay): every step was replayed\r\n\x9b2K"


class _Hostile(grpc.GenericRpcHandler):
    def service(self, handler_call_details):
        def abort(request, context):
            context.abort(grpc.StatusCode.INTERNAL, FORGED)

        return grpc.unary_unary_rpc_method_handler(abort)


@pytest.fixture()
def hostile_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[_Hostile()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _screen_is_clean(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\x9b" not in text, repr(text[-500:])
    assert not any(line.startswith("VERIFIED") for line in text.splitlines()), text[-500:]


def test_a_trainers_status_details_cannot_forge_a_verdict_line(hostile_server, tmp_path):
    res = verifier("train", "--server", hostile_server, "--data", "builtin:diabetes", "--model", "linear",
                   "--epochs", "1", "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"),
                   "--timeout", "20", timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    _screen_is_clean(res.stdout + res.stderr)
    assert "INTERNAL" in res.stderr and "VERIFIED (replay)" in res.stderr, res.stderr  # shown, escaped, on one line
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    assert not (tmp_path / "m.json").exists()


@given(st.text(max_size=200))
def test_peer_text_leaves_nothing_that_moves_the_cursor(text):
    shown = peer_text(text)
    assert all(c.isprintable() for c in shown)
    if all(c.isprintable() for c in text):
        assert shown == text
    kept = screen_text(text)
    assert all(c.isprintable() or c in "\n\t" for c in kept)


def test_peer_text_is_bounded():
    assert len(peer_text("a" * 10_000, limit=100)) == 103
