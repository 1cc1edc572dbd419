"""Run every ``bench/experiments/exp*.py`` ``main`` in order, passing ``--out`` and ``--quick`` through.

Usage: ``python -m bench.experiments.run_all [--out results/] [--quick] [--only exp1 exp3]``.
A failing experiment is reported and the others still run; the exit code is the number of failures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
import traceback
from pathlib import Path

_PATTERN = re.compile(r"^exp(\d+)_\w+\.py$")


def discover() -> list[str]:
    """Module names of the experiments, ordered by their number."""
    here = Path(__file__).resolve().parent
    found = [(int(m.group(1)), p.stem) for p in here.iterdir() if (m := _PATTERN.match(p.name))]
    return [f"bench.experiments.{stem}" for _, stem in sorted(found)]


def _load() -> str:
    """The 1-minute load average (the machine is shared: wall-clock times depend on it), or 'n/a'."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/", help="output directory (default: results/)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every experiment")
    ap.add_argument("--only", nargs="*", default=None, help="experiment prefixes to run, e.g. exp1 exp3")
    args = ap.parse_args(argv)
    modules = discover()
    if args.only:
        modules = [m for m in modules if any(m.rsplit(".", 1)[1].startswith(p) for p in args.only)]
        if not modules:
            raise SystemExit(f"no experiment matches --only {args.only}")
    passthrough = ["--out", args.out] + (["--quick"] if args.quick else [])
    failures, t_all = [], time.perf_counter()
    c_all = time.process_time()
    for name in modules:
        t0, c0 = time.perf_counter(), time.process_time()
        print(f"== {name} {' '.join(passthrough)}", flush=True)
        try:
            rc = importlib.import_module(name).main(passthrough)
        except Exception:  # noqa: BLE001 - keep going: one broken experiment should not hide the others' results
            traceback.print_exc()
            rc = 1
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.1f}s (CPU {time.process_time() - c0:.1f}s; "
              f"load average {_load()})", flush=True)
        if rc:
            failures.append(name)
    print(f"run_all: {len(modules) - len(failures)}/{len(modules)} succeeded in "
          f"{time.perf_counter() - t_all:.1f}s (CPU {time.process_time() - c_all:.1f}s of this process, all threads; "
          f"load average {_load()})" + (f"; failed: {failures}" if failures else ""))
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
