"""An iterator run ahead by a helper thread through a small queue: the CSV reader's chunks (pandas' parser releases
the GIL, so the next chunk is parsed on the other core) and the client's Train stream (a trainer that falls
silent is noticed after a timeout)."""

from __future__ import annotations

import queue
import threading


class Idle(Exception):
    """Nothing came from the helper for ``idle`` seconds."""


def offer(q: queue.Queue, item, stopped) -> bool:
    """Put ``item`` on ``q``, waiting while it is full; False once ``stopped()`` (nothing reads ``q`` then)."""
    while not stopped():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def ahead(items, *, depth: int, name: str, idle: float | None = None, error=None, finish=None, join: bool = False):
    """The items of ``items``, in order, at most ``depth`` ahead; the exception that ends the iteration is
    raised here (``error(e)``: the exception to raise instead). ``idle``: raise Idle after that many seconds
    without an item. ``finish()``: run by the helper when it stops (closes a generator, say). When the consumer
    stops early the helper stops at its next item (``join``: the consumer waits for that)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        return offer(q, item, stop.is_set)

    def run() -> None:
        try:
            for x in items:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put(("error", e if error is None else error(e)))
        finally:
            if finish is not None:
                finish()

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, item = q.get(timeout=idle)
            except queue.Empty:
                raise Idle() from None
            if kind == "item":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        if join:
            worker.join()
