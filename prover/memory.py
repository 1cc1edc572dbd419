"""Giving freed memory back to the OS, so a refused, stalled or finished session stops counting in the
process's resident size (the memory budget in prover/admission.py is about what the process holds).

glibc serves large buffers from mmap only below a threshold that it raises after the first large free (up
to 32 MiB), and trims its heaps only from the top: without help, the rows of a dropped upload stay
resident. ``configure`` fixes the threshold (buffers of 256 KiB or more are mmap'd and unmapped when freed);
``trim`` returns free heap pages after a session or upload ends. Both are no-ops without glibc.

The automatic trim threshold (TRIM_THRESHOLD) is above one upload message: gRPC hands every received message
to Python as many small slices, freed once they are joined; with a 1 MiB threshold the event loop's heap was
given back to the kernel (madvise) after nearly every 4 MiB message and faulted in again for the next one
(py-spy on bench/upload_vs_raw.py; 8 MiB: about 6% less CPU for the upload, both processes). The explicit
``trim`` after each upload and session still returns everything free; a larger threshold let more freed
memory linger between trims (16 MiB: load_rss_vs_data 1.76 -> 1.87 in bench/bench_load.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 8 << 20  # free bytes at a heap's top before glibc returns them on its own (> one 4 MiB message)


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


def trim() -> None:
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
