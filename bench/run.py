"""``make bench``: run every ``bench/bench_*.py`` module's ``main`` in turn (sorted by name).

Each module prints its sizes, absolute times and ``ratio NAME = VALUE (target <= X)`` lines; nothing here
judges a timing. The exit status is non-zero only if a module crashed (raised, or its ``main`` returned or
exited non-zero, which by convention means the benchmark itself failed, not that a target was missed).

Usage: ``python -m bench.run [--quick] [--only SUBSTRING ...] [--list]``. ``--quick`` is passed on to the
modules whose source mentions a ``--quick`` option; the others run with their defaults.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


class RatioSpread:
    """stdout filter: every ``ratio NAME = VALUE (target <= X)`` line must be followed by its spread line
    (``  min = A, max = B over N interleaved runs``, bench/stats.py); for a module that prints a single
    measurement the filter adds ``  min = max = VALUE (one measurement)`` so the format holds for every
    ratio and the reader sees that no spread was measured."""

    def __init__(self, out):
        self.out, self.buf, self.pending = out, "", None

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if self.pending is not None and not line.startswith("  min = "):
            self.out.write(f"  min = max = {self.pending} (one measurement: this module reports no spread)\n")
        self.pending = None
        if line.startswith("ratio ") and " = " in line:
            self.pending = line.split(" = ", 1)[1].split(" ", 1)[0]
        self.out.write(line + "\n")

    def flush(self) -> None:
        if self.buf:
            self._line(self.buf)
            self.buf = ""
        if self.pending is not None:
            self.out.write(f"  min = max = {self.pending} (one measurement: this module reports no spread)\n")
            self.pending = None
        self.out.flush()


def discover() -> list[str]:
    """Module names ``bench.bench_*`` found next to this file, sorted."""
    return sorted(f"bench.{m.name}" for m in pkgutil.iter_modules([str(BENCH_DIR)])
                  if m.name.startswith("bench_") and not m.ispkg)


def _accepts_quick(module) -> bool:
    try:
        return '"--quick"' in inspect.getsource(module)
    except (OSError, TypeError):
        return False


def run_one(name: str, quick: bool) -> tuple[bool, float, str]:
    """-> (ok, seconds, note). Never raises for a module's own failure."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(name)
        main = getattr(module, "main", None)
        if not callable(main):
            return False, time.perf_counter() - t0, "no main(argv) function"
        argv = ["--quick"] if quick and _accepts_quick(module) else []
        real, sys.stdout = sys.stdout, RatioSpread(sys.stdout)
        try:
            rc = main(argv)
        finally:
            sys.stdout.flush()
            sys.stdout = real
    except SystemExit as e:  # argparse errors and explicit exits
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # noqa: BLE001 - any crash is reported; the next module still runs
        traceback.print_exc()
        return False, time.perf_counter() - t0, f"crashed: {type(e).__name__}: {e}"
    finally:
        sys.stdout.flush()
    dt = time.perf_counter() - t0
    if rc not in (0, None):
        return False, dt, f"main returned {rc}"
    return True, dt, "ok"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to modules that support it")
    ap.add_argument("--only", nargs="*", default=None, help="run only modules whose name contains one of these")
    ap.add_argument("--list", action="store_true", help="list the benchmark modules and exit")
    args = ap.parse_args(argv)
    names = discover()
    if args.only:
        names = [n for n in names if any(s in n for s in args.only)]
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print("no benchmark modules selected")
        return 0
    results = []
    for name in names:
        print(f"===== {name} =====", flush=True)
        ok, dt, note = run_one(name, args.quick)
        results.append((name, ok, dt, note))
        print(f"----- {name}: {note} ({dt:.1f} s)\n", flush=True)
    failed = [r for r in results if not r[1]]
    print("summary: " + ", ".join(f"{n.split('.')[-1]} {'ok' if ok else 'FAILED'} ({dt:.1f} s)"
                                  for n, ok, dt, _ in results))
    if failed:
        print(f"{len(failed)} benchmark module(s) failed: {', '.join(n for n, *_ in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
