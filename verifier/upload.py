"""The client's upload: the rows streamed to the trainer in chunks, hashed into the client's own data root while
they are on the wire (docs/PROTOCOL.md §5)."""

from __future__ import annotations

import queue

from protocol import convert, row_encoding
from protocol.merkle import DataCommitter
from protocol.wire import trainer_pb2 as pb


def upload_rows(channel, call, sid: bytes, rows, msg_cap: int, rows_per_chunk: int | None, rows_per_leaf: int,
                tr: dict, bar=None, value_bytes: int = 8) -> tuple[bytes, bytes]:
    """Stream the rows (about 1 MiB per chunk, values of ``value_bytes`` bytes) in block leaves of ``rows_per_leaf``
    rows. This thread packs each chunk once, queues it for gRPC's sending thread and hashes it into the client's
    own data leaves while the previous chunk is on the wire (hashlib releases the GIL on each >= 2 KiB leaf,
    docs/PROTOCOL.md §5). Records the client's data root as ``tr["data_root"]`` and the signed data statement;
    returns the signed data statement."""
    n, d = rows.shape[0], rows.shape[1] - 1
    per_chunk = rows_per_chunk or max(1, min(1 << 20, msg_cap // 2) // ((d + 1) * value_bytes))
    if rows_per_chunk is None and per_chunk >= rows_per_leaf:
        per_chunk = per_chunk // rows_per_leaf * rows_per_leaf  # whole leaves per chunk: hashed with no copy
    method = channel.stream_unary("/vtrain.v1.Trainer/UploadData",  # chunks are serialized here (chunk_head)
                                  response_deserializer=pb.UploadDataResponse.FromString)
    q: queue.Queue = queue.Queue(maxsize=4)
    requests = iter(q.get, None)
    fut = call(method.future, requests if bar is None else _counted(requests, bar, n, per_chunk))
    committer = DataCommitter(d, rows_per_leaf, value_bytes=value_bytes)
    sending = True
    try:
        for start in range(0, n, per_chunk):  # all of it, even if the call fails: a partial transcript
            part = row_encoding.pack(rows[start:start + per_chunk], value_bytes)  # records the client's root too
            if sending:
                msg = b"".join((convert.chunk_head(sid, n, d, rows_per_leaf, value_bytes, part.shape[0], part.nbytes),
                                memoryview(part).cast("B")))
                sending = _put(q, msg, fut)
            committer.add(part)
    finally:
        if not _put(q, None, fut):
            try:  # the call ended: let gRPC's request thread, if it is still waiting on the queue, finish
                q.put_nowait(None)
            except queue.Full:
                pass
    committer.finish()
    tr["data_root"] = committer.root().hex()
    resp = call(lambda timeout=None: fut.result())
    data_signed = convert.signed_from_proto(resp.data_statement)
    tr["statements"]["data"] = [x.hex() for x in data_signed]
    return data_signed


def _put(q: queue.Queue, item, fut) -> bool:
    """Queue ``item`` for the sending thread; False once the call has ended (nothing reads the queue then)."""
    while not fut.done():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _counted(chunks, bar, n: int, per_chunk: int):
    """Pass the upload's chunks through, advancing ``bar`` by the rows each one carries."""
    for start, chunk in zip(range(0, n, per_chunk), chunks):
        yield chunk
        bar.update(min(per_chunk, n - start))
