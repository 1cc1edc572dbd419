"""The client's upload: the rows streamed to the trainer in chunks, hashed into the client's own data root while
they are on the wire (docs/PROTOCOL.md §5)."""

from __future__ import annotations

import queue

from protocol import convert, row_encoding
from protocol.merkle import DataCommitter
from protocol.run_ahead import offer
from protocol.wire import trainer_pb2 as pb

# Rows per DataChunk: about 4 MiB. Each message costs the trainer's event loop and work pool a fixed amount
# (await, split, submit) and both processes a few system calls; at 1 MiB those were ~10% of an upload's CPU
# (bench/upload_vs_raw.py: 0.31 -> 0.28 CPU-s for 40 MB). The trainer's message cap bounds it (msg_cap // 2).
CHUNK_BYTES = 4 << 20


def default_rows_per_chunk(d: int, value_bytes: int, rows_per_leaf: int, msg_cap: int) -> int:
    """About CHUNK_BYTES of rows (at most half the trainer's message cap), whole leaves per chunk when a chunk
    holds one (each leaf is then hashed from the chunk, with no copy)."""
    per_chunk = max(1, min(CHUNK_BYTES, msg_cap // 2) // ((d + 1) * value_bytes))
    return per_chunk // rows_per_leaf * rows_per_leaf if per_chunk >= rows_per_leaf else per_chunk


RAMP = 3  # chunks of 1/8, 1/4, 1/2 the full size at each end of a long upload


def chunk_bounds(n: int, per_chunk: int, rows_per_leaf: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk: ``per_chunk`` rows, except that an upload of more than 2 * RAMP full chunks
    opens and ends with chunks of 1/8, 1/4 and 1/2 that size (whole leaves each when a full chunk holds whole
    leaves). The trainer checks and hashes chunk k while chunk k+1 arrives: a small first chunk starts that
    pipeline sooner, a small last one leaves less to hash once the last byte has arrived (chunk boundaries are
    free, docs/PROTOCOL.md section 2)."""
    sizes, step = [], rows_per_leaf if per_chunk % rows_per_leaf == 0 else 1
    if n > 2 * RAMP * per_chunk and per_chunk >> RAMP >= step:
        sizes = [max(step, (per_chunk >> k) // step * step) for k in range(RAMP, 0, -1)]
    head = sum(sizes)
    tail_start = (n - head) // step * step if sizes else n  # the last chunks start on a leaf; the very last takes the rest
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    while start < tail_start:
        stop = min(start + per_chunk, tail_start)
        bounds.append((start, stop))
        start = stop
    for k in range(len(sizes) - 1, -1, -1):
        stop = start + sizes[k] if k else n
        bounds.append((start, stop))
        start = stop
    return bounds


def upload_rows(channel, call, sid: bytes, rows, msg_cap: int, rows_per_chunk: int | None, rows_per_leaf: int,
                tr: dict, bar=None, value_bytes: int = 8) -> tuple[bytes, bytes]:
    """Stream the rows (about CHUNK_BYTES per chunk, values of ``value_bytes`` bytes) in block leaves of ``rows_per_leaf``
    rows. This thread packs each chunk once, queues it for gRPC's sending thread and hashes it into the client's
    own data leaves while the previous chunk is on the wire (hashlib releases the GIL on each >= 2 KiB leaf,
    docs/PROTOCOL.md §5). Records the client's data root as ``tr["data_root"]`` and the signed data statement;
    returns the signed data statement."""
    n, d = rows.shape[0], rows.shape[1] - 1
    per_chunk = rows_per_chunk or default_rows_per_chunk(d, value_bytes, rows_per_leaf, msg_cap)
    bounds = chunk_bounds(n, per_chunk, rows_per_leaf)
    method = channel.stream_unary("/vtrain.v1.Trainer/UploadData",  # chunks are serialized here (chunk_head)
                                  response_deserializer=pb.UploadDataResponse.FromString)
    q: queue.Queue = queue.Queue(maxsize=4)
    requests = iter(q.get, None)
    fut = call(method.future, requests if bar is None else _counted(requests, bar, bounds))
    committer = DataCommitter(d, rows_per_leaf, value_bytes=value_bytes)
    sending = True
    try:
        for start, stop in bounds:  # all of it, even if the call fails: a partial transcript
            part = row_encoding.pack(rows[start:stop], value_bytes)  # records the client's root too
            if sending:
                msg = b"".join((convert.chunk_head(sid, n, d, rows_per_leaf, value_bytes, part.shape[0], part.nbytes),
                                memoryview(part).cast("B")))
                sending = offer(q, msg, fut.done)
            committer.add(part)
    finally:
        if not offer(q, None, fut.done):
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


def _counted(chunks, bar, bounds):
    """Pass the upload's chunks through, advancing ``bar`` by the rows each one carries."""
    for (start, stop), chunk in zip(bounds, chunks):
        yield chunk
        bar.update(stop - start)
