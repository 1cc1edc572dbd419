"""The full replay's honest states, computed while the trainer trains and proves (docs/PROTOCOL.md section 8).

Once the trainer has signed the randomness statement, the schedule (initial state, every batch) is fixed by
values the client holds: the session id, its own data root, the training seed, the config and the rows. A
background thread then computes the honest state leaf of every step, on the client's otherwise idle core,
while the trainer trains and answers the spot check. The replay (``checks.replay``) uses them only for a
transcript of exactly those inputs and only to confirm: when every committed leaf equals the honest one, the
step-by-step loop would find nothing, so it is not run again; any difference (or no result: an overflow, an
error) runs the loop, which names the first divergent step with its evidence.
"""

from __future__ import annotations

import threading

import numpy as np

from protocol.prg import SeedContext
from protocol.training import Schedule, TrainConfig

from . import checks


class ReplayAhead:
    def __init__(self):
        self._key: tuple | None = None
        self._thread: threading.Thread | None = None
        self._leaves: bytes | None = None
        self._rows: np.ndarray | None = None

    def start(self, rows: np.ndarray, sid: bytes, data_root: bytes, training_seed: bytes, cfg: TrainConfig, n: int,
              d: int) -> None:
        """Compute the honest leaves of this schedule in a daemon thread (once)."""
        if self._thread is not None:
            return
        self._key = (bytes(sid), bytes(data_root), bytes(training_seed), cfg.encode(), n, d)
        self._rows = rows
        sched = Schedule(SeedContext(sid, data_root, training_seed), cfg, n, d)
        self._thread = threading.Thread(target=self._run, args=(rows, sched, cfg), name="vtrain-replay-ahead",
                                        daemon=True)
        self._thread.start()

    def _run(self, rows, sched, cfg) -> None:
        try:
            self._leaves = checks.honest_leaves(rows, sched, cfg)
        except Exception:  # noqa: BLE001 - an overflow or anything else: the replay's own loop runs and says why
            self._leaves = None

    def leaves_for(self, rows: np.ndarray, sid: bytes, data_root: bytes, training_seed: bytes, cfg: TrainConfig,
                   n: int, d: int) -> bytes | None:
        """The honest leaves (T+1, 32 bytes each) if they were computed for exactly these inputs (the same rows
        object, not only rows of the same root), else None."""
        if self._thread is None or rows is not self._rows or self._key != (
                bytes(sid), bytes(data_root), bytes(training_seed), cfg.encode(), n, d):
            return None
        self._thread.join()
        return self._leaves
