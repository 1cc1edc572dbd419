"""The upload path at wire speed (docs/PROTOCOL.md sections 2 and 4): chunks encoded with one copy of the rows,
parsed by the server without copying them, data roots from a frontier while the leaves arrive, tree levels
built on the first proof, and the client's leaf-size rule."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from procs import ProverProcess, make_key

from protocol import convert
from protocol.merkle import (
    OPENED_FRACTION,
    DataCommitter,
    MerkleTree,
    data_leaves,
    data_root,
    default_rows_per_leaf,
)
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc


def _rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2**40, 2**40, (n, d + 1))


@pytest.mark.parametrize("n,per,R", [(1, 1, 1), (10, 3, 1), (30, 7, 4), (64, 64, 8)])
def test_wire_chunks_parse_as_the_protobuf_messages(n, per, R):
    rows = _rows(n, 3)
    built = list(convert.rows_to_chunks(b"s" * 16, rows, per, R))
    wire = list(convert.rows_to_wire_chunks(b"s" * 16, rows, per, R))
    assert [pb.DataChunk.FromString(w) for w in wire] == built
    for w, m in zip(wire, built):
        head, view = convert.split_data_chunk(w)
        assert bytes(view) == m.rows and head.rows == b"" and head.num_rows == m.num_rows
        assert (head.session_id, head.total_rows, head.rows_per_leaf) == (b"s" * 16, n, R)


def test_split_keeps_protobuf_semantics():
    """Fields in any order, unknown fields, a repeated rows field (the last wins, as protobuf's parser has it)."""
    m = pb.DataChunk(session_id=b"x" * 16, num_features=2, total_rows=5, num_rows=1, rows=b"a" * 24)
    unknown = bytes([15 << 3 | 0, 7, 14 << 3 | 2, 2]) + b"zz" + bytes([13 << 3 | 1]) + b"\x00" * 8
    msg = pb.DataChunk(rows=b"b" * 24).SerializeToString() + unknown + m.SerializeToString()
    head, view = convert.split_data_chunk(msg)
    assert bytes(view) == pb.DataChunk.FromString(msg).rows == b"a" * 24
    assert (head.session_id, head.num_features, head.total_rows) == (b"x" * 16, 2, 5)
    assert convert.split_data_chunk(b"") [0] == pb.DataChunk() and bytes(convert.split_data_chunk(b"")[1]) == b""


@pytest.mark.parametrize("bad", [b"\x2a\x10abc", b"\xff", b"\x0b", b"\x2a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                 b"\x0a\x05ab", b"\x10"])
def test_split_refuses_malformed_messages(bad):
    with pytest.raises(ValueError):
        convert.split_data_chunk(bad)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), R=st.integers(1, 9), cut=st.integers(1, 20))
def test_frontier_root_is_the_tree_root_whatever_the_chunking(n, R, cut):
    rows = _rows(n, 2, seed=n)
    c = DataCommitter(2, R)
    for s in range(0, n, cut):
        c.add(rows[s:s + cut].astype("<i8").tobytes())
    c.finish()
    tree = MerkleTree(data_leaves(rows, 0, R))
    assert c.root() == tree.root == data_root(rows, R)
    deferred = c.tree()
    assert deferred.root == tree.root and deferred.size == tree.size
    for j in {0, tree.size // 2, tree.size - 1}:
        assert deferred.proof(j) == tree.proof(j)


def test_leaf_size_rule_keeps_the_opened_leaves_within_a_sixteenth():
    for n, d, K, B in [(100_000, 100, 64, 256), (1_000_000, 20, 64, 256), (200_000, 20, 16, 16), (569, 30, 8, 16)]:
        R = default_rows_per_leaf(d, n, K * B)
        assert R == 1 or R * K * B <= n // OPENED_FRACTION
    assert default_rows_per_leaf(20, 1_000_000, 64 * 256) == 3  # was 15 with a quarter of the data
    assert default_rows_per_leaf(100) == 6  # no spot check to cap: leaves of >= 4 KiB


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    key, _ = make_key(tmp_path_factory.mktemp("k"))
    with ProverProcess(key) as srv:
        ch = grpc.insecure_channel(srv.address)
        yield pb_grpc.TrainerStub(ch), ch
        ch.close()


def _open(stub) -> bytes:
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4)
    return stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32),
                                                  proof_kind="spot")).session_id


def test_server_answers_a_malformed_chunk_with_invalid_argument(stub):
    stub, ch = stub
    raw = ch.stream_unary("/vtrain.v1.Trainer/UploadData", response_deserializer=pb.UploadDataResponse.FromString)
    sid = _open(stub)
    with pytest.raises(grpc.RpcError) as ei:
        raw(iter([b"\x2a\x10abc"]), timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "past the end" in ei.value.details()
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


def test_server_signs_the_root_of_rows_sent_in_wire_chunks(stub):
    """The rows the server keeps are views into the messages it received: the signed root and a later
    opening agree with the client's own rows."""
    from protocol.statements import Statement

    stub, ch = stub
    rows = np.random.default_rng(5).integers(-2**16, 2**16, (50, 4))
    sid = _open(stub)
    raw = ch.stream_unary("/vtrain.v1.Trainer/UploadData", response_deserializer=pb.UploadDataResponse.FromString)
    resp = raw(convert.rows_to_wire_chunks(sid, rows, 7, 3), timeout=30)
    signed = Statement.decode(resp.data_statement.statement)
    assert signed.fields["data_root"] == data_root(rows, 3) and signed.fields["rows_per_leaf"] == 3
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))
