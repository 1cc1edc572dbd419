"""A hostile client's upload stream against a real trainer process (docs/PROTOCOL.md sections 2 and 4: chunk
boundaries are free; the first chunk fixes the session's row count, feature count, leaf size and value width).

* Chunks of any sizes (one row, a leaf and a bit, boundaries in the middle of leaves, a prime number of rows):
  the trainer signs exactly the root the client computes itself (protocol.merkle.data_root), so an honest
  client's check passes whatever chunking it chose, and a trainer that lost or moved a byte at a boundary would
  be caught.
* Too few rows, too many rows, another session id or feature count in a later chunk: refused with
  INVALID_ARGUMENT naming the problem, nothing signed; the trainer keeps serving.
* A later chunk that declares another width, total or leaf size: refused, or, if the trainer reads it under the
  first chunk's header, the statement it signs is true of the bytes it stored (their root at the signed width
  and leaf size): a signed data statement never describes rows other than the ones that will be opened.
"""

from __future__ import annotations

import os
import random

import grpc
import numpy as np
import pytest
from procs import ProverProcess, make_key

from protocol import convert, row_encoding
from protocol.merkle import data_root
from protocol.statements import Statement
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc
from verifier import checks


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    key, _ = make_key(tmp_path_factory.mktemp("k"))
    with ProverProcess(key) as srv:
        ch = grpc.insecure_channel(srv.address)
        stub = pb_grpc.TrainerStub(ch)
        yield stub, ch, stub.GetInfo(pb.GetInfoRequest()).trainer_public_key
        ch.close()


def _open(stub) -> bytes:
    cfg = TrainConfig(model="linear", epochs=1, batch_size=4)
    return stub.OpenSession(pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=os.urandom(32),
                                                  proof_kind="spot")).session_id


def _chunk(sid: bytes, rows: np.ndarray, n: int, R: int, w: int, d: int | None = None) -> bytes:
    part = row_encoding.pack(rows, w)
    d = rows.shape[1] - 1 if d is None else d
    return b"".join((convert.chunk_head(sid, n, d, R, w, part.shape[0], part.nbytes), memoryview(part).cast("B")))


def _upload(trainer, chunks):
    """-> (status code or None, details, response)."""
    stub, ch, _ = trainer
    raw = ch.stream_unary("/vtrain.v1.Trainer/UploadData", response_deserializer=pb.UploadDataResponse.FromString)
    sid = _open(stub)
    try:
        return None, "", raw(chunks(sid), timeout=60), sid
    except grpc.RpcError as e:
        return e.code(), e.details(), None, sid
    finally:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


def _cuts(rnd: random.Random, n: int, R: int) -> list[int]:
    """Chunk boundaries of odd kinds: a 1-row chunk, one leaf plus one row, mid-leaf cuts, random sizes."""
    cuts = {1, min(n, R + 1), min(n, 2 * R - 1)} | {rnd.randrange(1, n) for _ in range(5)}
    return sorted(c for c in cuts if 0 < c < n) + [n]


@pytest.mark.parametrize("seed", range(6))
def test_any_chunking_gets_the_clients_own_root_signed(trainer, seed):
    rnd = random.Random(seed)
    n, d, R = rnd.choice([37, 101, 257]), rnd.randint(1, 6), rnd.choice([1, 2, 3, 5, 8])
    w = rnd.choice([1, 2, 4])  # 8-byte values exceed the session's range (weight_bits 32)
    hi = 1 << (8 * w - 1)
    rows = np.random.default_rng(seed).integers(-hi, hi, (n, d + 1), dtype=np.int64)
    rows[0, 0] = -hi  # the table needs exactly w bytes per value (the canonical width)
    cuts = _cuts(rnd, n, R)

    def chunks(sid):
        start = 0
        for stop in cuts:
            yield _chunk(sid, rows[start:stop], n, R, w)
            start = stop

    code, msg, resp, sid = _upload(trainer, chunks)
    assert code is None, (code, msg, cuts)
    signed = (resp.data_statement.statement, resp.data_statement.signature)
    checks.check_data(trainer[2], signed, sid, data_root=data_root(rows, R, w), num_rows=n, num_features=d,
                      rows_per_leaf=R, value_bytes=w)


ROWS = np.random.default_rng(1).integers(-2**20, 2**20, (40, 4), dtype=np.int64)


@pytest.mark.parametrize(("name", "chunks", "words"), [
    ("too few rows", lambda sid: iter([_chunk(sid, ROWS[:39], 40, 2, 4)]), "upload ended after 39 rows"),
    ("too many rows", lambda sid: iter([_chunk(sid, ROWS[:20], 39, 2, 4), _chunk(sid, ROWS[20:], 39, 2, 4)]),
     "more rows (40) than declared (39)"),
    ("another session id", lambda sid: iter([_chunk(sid, ROWS[:20], 40, 2, 4),
                                             _chunk(os.urandom(16), ROWS[20:], 40, 2, 4)]), "same session id"),
    ("another feature count", lambda sid: iter([_chunk(sid, ROWS[:20], 40, 2, 4),
                                                _chunk(sid, ROWS[20:, :3], 40, 2, 4)]), "same feature count"),
    ("no chunk at all", lambda sid: iter([]), ""),
])
def test_a_stream_that_breaks_its_first_header_is_refused_and_nothing_is_signed(trainer, name, chunks, words):
    code, msg, resp, _ = _upload(trainer, chunks)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in msg, (name, code, msg)
    assert resp is None
    code, msg, _, _ = _upload(trainer, lambda sid: iter([_chunk(sid, ROWS, 40, 2, 4)]))  # still serving
    assert code is None, msg


@pytest.mark.parametrize(("name", "later"), [
    ("narrower width", {"w": 2, "rows": slice(20, 40), "scale": 1 << 10}),  # values that fit 2 bytes
    ("wider width", {"w": 8, "rows": slice(20, 40), "scale": 1}),
    ("another total", {"n": 80, "rows": slice(20, 40), "scale": 1}),
    ("another leaf size", {"R": 5, "rows": slice(20, 40), "scale": 1}),
])
def test_a_later_header_that_changes_the_shape_never_makes_a_false_statement(trainer, name, later):
    """The first chunk says 40 rows, leaves of 2 rows, 4-byte values; the second declares something else."""
    first = ROWS[:20]
    second = ROWS[later["rows"]] // later["scale"]

    def chunks(sid):
        yield _chunk(sid, first, 40, 2, 4)
        yield _chunk(sid, second, later.get("n", 40), later.get("R", 2), later.get("w", 4))

    code, msg, resp, _ = _upload(trainer, chunks)
    if code is not None:
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg, (name, code, msg)
        return
    st = Statement.decode(resp.data_statement.statement)
    f = st.fields
    # what the trainer stored: the second chunk's bytes read at the signed width
    w = f["value_bytes"]
    raw = row_encoding.pack(second, later.get("w", 4)).tobytes()
    stored2 = np.frombuffer(raw, dtype=f"<i{w}").astype(np.int64).reshape(-1, 4)
    stored = np.vstack([first, stored2])
    assert (f["num_rows"], f["num_features"]) == (stored.shape[0], stored.shape[1] - 1), (name, f)
    assert f["data_root"] == data_root(stored, f["rows_per_leaf"], w), (name, f)
