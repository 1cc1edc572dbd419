"""The upload path at wire speed (docs/PROTOCOL.md sections 2 and 4): chunks encoded with one copy of the rows,
parsed by the server without copying them, data roots from a frontier while the leaves arrive, tree levels
built on the first proof, and the client's leaf-size rule."""

from __future__ import annotations

import itertools
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
    assert signed.fields["data_root"] == data_root(rows, 3, 4) and signed.fields["rows_per_leaf"] == 3
    assert signed.fields["value_bytes"] == 4  # values in [-2^16, 2^16): 4 bytes on the wire and in the leaves
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


def _upload_code(stub, chunks) -> tuple[grpc.StatusCode | None, str]:
    stub, ch = stub
    raw = ch.stream_unary("/vtrain.v1.Trainer/UploadData", response_deserializer=pb.UploadDataResponse.FromString)
    sid = _open(stub)
    try:
        raw(chunks(sid), timeout=30)
        return None, ""
    except grpc.RpcError as e:
        return e.code(), e.details()
    finally:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


@pytest.mark.parametrize("declared,need", [(4, 2), (8, 4), (2, 1), (8, 1)])
def test_server_refuses_a_wider_encoding_than_the_data_needs(stub, declared, need):
    """A client that sends rows at more bytes than the table needs would commit the same rows under a second
    data root: refused (the encoding is canonical, docs/PROTOCOL.md section 4)."""
    hi = 1 << (8 * need - 1)
    rows = np.random.default_rng(need).integers(-hi, hi, (40, 3))
    rows[0, 0] = -hi  # the table needs exactly `need` bytes
    code, msg = _upload_code(stub, lambda sid: convert.rows_to_wire_chunks(sid, rows, 16, 1, declared))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"fits in {need} byte" in msg, msg
    code, msg = _upload_code(stub, lambda sid: convert.rows_to_wire_chunks(sid, rows, 16, 1, need))
    assert code is None, msg


@pytest.mark.parametrize("declared", [3, 5, 16, 255])
def test_server_refuses_a_width_that_is_not_1_2_4_or_8(stub, declared):
    rows = np.arange(24, dtype=np.int64).reshape(8, 3)

    def chunks(sid):
        head = convert.chunk_head(sid, 8, 2, 1, declared, 8, 24 * declared)
        yield head + bytes(24 * declared)

    code, msg = _upload_code(stub, chunks)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "value_bytes" in msg, msg
    assert rows.size == 24


def test_a_narrow_width_never_wraps_a_value():
    """The client's packing refuses a value outside the declared width (never wraps it into another value)."""
    from protocol.row_encoding import pack, table_value_bytes

    rows = np.array([[1, 2, (1 << 31)], [3, 4, 5]], dtype=np.int64)
    assert table_value_bytes(rows) == 8
    with pytest.raises(ValueError, match="does not fit"):
        list(convert.rows_to_wire_chunks(b"s" * 16, rows, 1, 1, 4))
    with pytest.raises(ValueError, match="does not fit"):
        pack(rows, 4)
    assert pack(rows[:, :2], 1).dtype == np.dtype("<i1")


def test_a_chunk_whose_length_is_not_its_declared_width_is_refused(stub):
    """Rows of 4-byte values declared as 2-byte values (or the reverse) do not match the declared row count."""
    rows = np.arange(-60, 60, dtype=np.int64).reshape(40, 3) * 300  # needs 4 bytes

    def chunks(sid):
        part = rows.astype("<i4")
        yield convert.chunk_head(sid, 40, 2, 1, 2, 40, part.nbytes) + part.tobytes()

    code, msg = _upload_code(stub, chunks)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "carries" in msg, msg


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 400), st.integers(1, 20))
def test_chunk_bounds_cover_every_row_once_in_order(n, per, R):
    """The client's chunks (verifier/upload.py chunk_bounds): contiguous, every row once, none empty, none above
    a full chunk plus a leaf; a long upload ramps up and down at its ends, on leaf boundaries when a full chunk
    holds whole leaves."""
    from verifier.upload import RAMP, chunk_bounds

    bounds = chunk_bounds(n, per, R)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [b - a for a, b in bounds]
    assert min(sizes) >= 1 and max(sizes) <= per + R
    step = R if per % R == 0 else 1
    if n > 2 * RAMP * per and per >> RAMP >= step:
        assert sizes[0] < sizes[1] < sizes[2] < per and sizes[-1] < sizes[-2] < sizes[-3] < per
        assert all(a % step == 0 for a, _ in bounds)
    else:
        assert bounds == [(s, min(s + per, n)) for s in range(0, n, per)]


def test_upload_rows_in_ramped_chunks_gets_the_clients_root_signed(stub):
    """upload_rows end to end with ramped chunks (more than 2 * RAMP full chunks): the server's signed root is
    the client's own, and the progress bar counts every row once."""
    from verifier import checks
    from verifier.upload import RAMP, upload_rows

    stub, ch = stub
    rows = np.random.default_rng(9).integers(-2**20, 2**20, (1000, 5))
    sid = _open(stub)

    class Bar:
        total = 0

        def update(self, k):
            Bar.total += k

    tr = {"statements": {}}
    per = 1000 // (2 * RAMP + 2) // 3 * 3
    signed = upload_rows(ch, lambda fn, *a: fn(*a, timeout=30), sid, rows, 4 << 20, per, 3, tr, Bar(), 4)
    assert tr["data_root"] == data_root(rows, 3, 4).hex() and Bar.total == 1000
    checks.check_data(stub.GetInfo(pb.GetInfoRequest()).trainer_public_key, signed, sid, data_root=data_root(rows, 3, 4), num_rows=1000, num_features=4,
                      rows_per_leaf=3, value_bytes=4)
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid))
