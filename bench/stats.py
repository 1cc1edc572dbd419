"""Shared by the benchmarks: interleaved repeated measurement and the ``ratio`` report lines.

Every ratio is reported as the median over >= 5 interleaved runs (each run times every side once, in turn,
so drift on a shared machine hits both sides alike), with min and max on the next line:

    ratio NAME = MEDIAN (target <= X)
      min = A, max = B over N interleaved runs
"""

from __future__ import annotations

import statistics
import time


def interleaved(repeats: int, *fns):
    """Run the callables in turn ``repeats`` times; returns (per-callable lists of seconds, last results)."""
    times = [[] for _ in fns]
    results = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return times, results


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-run ratios of two interleaved series."""
    return [a / b for a, b in zip(num, den)]


def ratio_report(name: str, samples: list[float], target: float | str) -> str:
    med = statistics.median(samples)
    return (f"ratio {name} = {med:.3f} (target <= {target})\n"
            f"  min = {min(samples):.3f}, max = {max(samples):.3f} over {len(samples)} interleaved runs")


def median(xs: list[float]) -> float:
    return statistics.median(xs)
