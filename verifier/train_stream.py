"""The Train stream as the client reads it: state leaves, checkpoints and the final result, within the session's
caps, with a trainer that falls silent noticed after ``--timeout``."""

from __future__ import annotations

import grpc

from protocol.peer_text import peer_text
from protocol.run_ahead import Idle, ahead
from protocol.wire import trainer_pb2 as pb

from . import checks
from .connection import LOST, SessionAborted, SessionIncomplete, lost_message, too_large
from .progress import SILENT, Progress


class _Silent(Exception):
    pass


class _Unreadable(Exception):
    pass


def _events(call, idle: float | None):
    """The Train stream's events, read by a helper thread (protocol/run_ahead.py) so that a trainer that stops
    sending is noticed after ``idle`` seconds without a message (the whole stream has no deadline: training may
    be long). The queue is small, so an unread flood is held back by gRPC flow control, not buffered here."""

    def unreadable(e: BaseException) -> BaseException:  # a message the client cannot decode is the trainer's fault
        return e if isinstance(e, grpc.RpcError) else _Unreadable(f"{type(e).__name__}: {e}")

    try:
        yield from ahead(call, depth=4, name="vtrain-train-stream", idle=idle, error=unreadable)
    except Idle:
        raise _Silent() from None
    finally:
        call.cancel()


def receive_training(stub, tr, sid, T, cfg, timeout, progress, status, ui: Progress = SILENT):
    """Consume the Train stream within the session's caps: at most T+1 state leaves (kept as 32 bytes each),
    at most floor(T/C) checkpoints, at most one final result, each message within the channel's receive cap.
    Returns (final or None, stream_error or None); the recorded leaves and checkpoints are in ``tr``."""
    leaves = bytearray()
    cps: list[list[str]] = []
    final, error = None, None
    max_cps = T // cfg.checkpoint_interval
    tr["statements"]["checkpoints"] = cps
    call = stub.Train(pb.TrainRequest(session_id=sid))
    proving = None
    try:
        for ev in _events(call, timeout):
            which = ev.WhichOneof("event")
            if final is not None and which != "progress":  # (a SNARK trainer reports its proving after it)
                error = "sent more after its final result"
            elif which == "leaves":
                h = bytes(ev.leaves.hashes)
                have = len(leaves) // 32
                if ev.leaves.first_step != have or len(h) % 32:
                    error = (f"sent state commitments out of order or malformed (from step {ev.leaves.first_step}, "
                             f"{len(h)} bytes, after {have} leaves)")
                elif have + len(h) // 32 > T + 1:
                    leaves += h[:32 * (T + 2 - have)]  # one leaf beyond T+1 shows the overflow; the rest is dropped
                    error = checks.leaf_flood_reason(T)
                else:
                    leaves += h
            elif which == "checkpoint":
                cps.append([bytes(ev.checkpoint.statement).hex(), bytes(ev.checkpoint.signature).hex()])
                if len(cps) > max_cps:
                    error = f"sent more than the {max_cps} checkpoint statements of {T} steps every {cfg.checkpoint_interval}"
            elif which == "progress" and ev.progress.phase == "proving":
                status("the trainer is proving" if ev.progress.step == 0 else "the trainer finished its proof")
                proving = _proving_bar(ui, proving, ev.progress.step == 0)
            elif which == "progress" and progress is not None:
                progress(min(ev.progress.step, T), T, ev.progress.epoch, ev.progress.loss)
            elif which == "final":
                final = ev.final
            elif which is None:
                error = "sent an empty or unknown training event"
            if error is not None:
                break
    except _Unreadable as e:
        error = f"sent a message the client cannot read ({e})"
    except _Silent:
        raise SessionIncomplete(f"the trainer sent nothing for {timeout:g} s (--timeout) during training, after "
                                f"{len(leaves) // 32} of {T + 1} state commitments; gave up", tr) from None
    except grpc.RpcError as e:
        if too_large(e):
            error = f"sent a message larger than this session allows ({peer_text(e.details())})"
        elif e.code() in LOST or "session_id" not in tr:
            raise SessionIncomplete(lost_message(e, timeout, f"during training (after {len(leaves) // 32} of "
                                                              f"{T + 1} state commitments)"), tr) from None
        else:
            raise SessionAborted(f"training failed: {e.code().name}: {peer_text(e.details())}") from None
    finally:
        _proving_bar(ui, proving, False)
        tr["state_leaves"] = leaves.hex()  # a partial transcript keeps the commitments received so far
    return final, error


def _proving_bar(ui: Progress, bar, start: bool):
    """The trainer's proof has no known length: an elapsed-time bar between its start and end events."""
    if bar is not None:
        bar.close()
    return ui.bar("trainer proving", unit="s") if start else None
