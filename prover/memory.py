"""Giving freed memory back to the OS, so a refused, stalled or finished session stops counting in the
process's resident size (the memory budget in prover/admission.py is about what the process holds).

glibc serves large buffers from mmap only below a threshold that it raises after the first large free (up
to 32 MiB), and trims its heaps only from the top: without help, the rows of a dropped upload stay
resident. ``configure`` fixes the threshold (buffers of 256 KiB or more are mmap'd and unmapped when freed);
``trim`` returns free heap pages after a session or upload ends. Both are no-ops without glibc.

While an upload is being received (``receiving``) the automatic trim threshold is raised above one upload
message (UPLOAD_TRIM_THRESHOLD): gRPC hands every received message to Python as many small slices, freed once
they are joined; with the 1 MiB threshold the event loop's heap was given back to the kernel (madvise) after
nearly every 4 MiB message and faulted in again for the next one (py-spy on bench/upload_vs_raw.py; 5 MiB:
about 5-8% less CPU for the upload, both processes). Outside uploads the threshold is 1 MiB again, so freed
memory does not linger between trims (bench/bench_load.py load_rss_vs_data, 8 concurrent uploads: 1.76 at
1 MiB, 1.79 at 5 MiB during uploads, 1.86 at 8 MiB all the time). The explicit ``trim`` after each upload
and session still returns everything free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 1 << 20  # free bytes at a heap's top before glibc returns them on its own
UPLOAD_TRIM_THRESHOLD = 5 << 20  # the same while an upload is received (> one 4 MiB message's slices)
_state = {"configured": False, "uploads": 0}
_lock = threading.Lock()


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def configure() -> None:
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        _state["configured"] = True


def receiving(started: bool) -> None:
    """An upload started (True) or ended (False): the trim threshold is UPLOAD_TRIM_THRESHOLD while any upload
    is in progress (in a configured process; a no-op otherwise)."""
    _count(1 if started else -1)


def _count(delta: int) -> None:
    with _lock:
        before = _state["uploads"]
        _state["uploads"] = after = before + delta
        if _state["configured"] and (before == 0) != (after == 0):
            _LIBC.mallopt(_M_TRIM_THRESHOLD, UPLOAD_TRIM_THRESHOLD if after else TRIM_THRESHOLD)


def trim() -> None:
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
