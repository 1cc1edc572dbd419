"""Progress bars for the long phases of the CLIs (loading, upload, proving, replay, defenses).

Library code never prints progress: it takes a callback ``progress(done, total)``. The CLIs build those
callbacks here: a tqdm bar on stderr when stderr is a terminal and ``--json`` is not given, a no-op otherwise
(so scripts, pipes and ``--json`` stdout never see a bar). Phases of unknown length (the trainer's SNARK proof,
the client's Groth16 setup) get a bar that counts elapsed seconds, refreshed by a small timer thread.
"""

from __future__ import annotations

import sys
import threading
from typing import Self


def progress_enabled(args) -> bool:
    """Bars only for a person watching a terminal, never with --json."""
    return sys.stderr.isatty() and not getattr(args, "json", False)


class Bar:
    """One phase. ``update(k)`` adds k, ``set(done, total)`` moves to an absolute position (callback form)."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True,
                 percent: bool = False):
        self._bar = None
        self._stop = threading.Event()
        self._ticker = None
        if not enabled:
            return
        from tqdm import tqdm

        fmt = "{desc}: {elapsed}" if total is None else None   # unknown length: elapsed time only
        if percent:   # work in abstract units: show the fraction and the time left, not the counts
            fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                         unit_scale=total is not None and total >= 100_000, bar_format=fmt)
        if total is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._bar.refresh()

    def update(self, k: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(k)

    def set(self, done: int, total: int | None = None) -> None:
        if self._bar is None:
            return
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Progress:
    """A factory of bars that are all on or all off (one per command run)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def bar(self, desc: str, total: int | None = None, unit: str = "it") -> Bar:
        return Bar(desc, total, unit, self.enabled)

    def callback(self, desc: str, unit: str = "it", percent: bool = False, waiting: str | None = None) -> LazyBar:
        """A ``progress(done, total)`` callback for library code (use it as a context manager to close it).
        ``waiting``: an elapsed-time bar shown until the first call (the work before the counted phase)."""
        return LazyBar(desc, unit, self.enabled, percent, self.bar(waiting) if waiting else None)


class LazyBar:
    """A callback ``(done, total)`` whose bar appears at the first call, once the total is known."""

    def __init__(self, desc: str, unit: str, enabled: bool, percent: bool = False, waiting: Bar | None = None):
        self.desc, self.unit, self.enabled, self.percent = desc, unit, enabled, percent
        self._bar: Bar | None = None
        self._waiting = waiting

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._close_waiting()
            self._bar = Bar(self.desc, total, self.unit, True, self.percent)
        self._bar.set(done, total)

    def _close_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.close()
            self._waiting = None

    def close(self) -> None:
        self._close_waiting()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SILENT = Progress(False)
