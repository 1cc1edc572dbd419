"""Benchmark: Berlekamp-Welch local correction over F_p vs the bare oracle calls it makes.

One decoded value = line_correct(oracle, x, p, d, m) with K = 1: m oracle points on a random line
x + t v (t = 1..m), one Berlekamp-Welch decode (Gauss-Jordan on m x (2e + d + 1), e = floor((m-d-1)/2)).
The overhead ratio is (total correction time) / (time of the same oracle evaluations alone, re-run on
the recorded points).  Oracle: a sparse random degree-d polynomial, numpy int64 arithmetic mod p.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from defenses.reed_muller import SparsePolynomial, curve_correct, line_correct


def _time_corrector(corrector, f, xs, p, d, m, seed):
    recorded = []

    def oracle(points):
        recorded.append(np.array(points))
        return f(points)

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    values = [corrector(oracle, x, p, d, m, random_state=rng).value for x in xs]
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    for pts in recorded:
        f(pts)
    bare = time.perf_counter() - t0
    correct = sum(int(v) == int(f(x[None])[0]) for v, x in zip(values, xs))
    return total, bare, correct


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of variables")
    ap.add_argument("--d", type=int, default=4, help="total degree")
    ap.add_argument("--m", type=int, default=30, help="points per line")
    ap.add_argument("--p", type=int, default=2**31 - 1, help="prime modulus")
    ap.add_argument("--terms", type=int, default=50, help="monomials in the oracle polynomial")
    ap.add_argument("--queries", type=int, default=200, help="decoded values to time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    f = SparsePolynomial.random(args.n, args.d, args.p, args.terms, random_state=args.seed)
    xs = np.random.default_rng(args.seed + 1).integers(0, args.p, size=(args.queries, args.n))
    print(f"sizes: n={args.n} d={args.d} m={args.m} p={args.p} terms={args.terms} "
          f"queries={args.queries} (exact oracle)")
    results = {}
    for name, corrector in (("line", line_correct), ("curve", curve_correct)):
        total, bare, correct = _time_corrector(corrector, f, xs, args.p, args.d, args.m, args.seed + 2)
        results[name] = (total, bare)
        q = args.queries
        print(f"time {name}_bw_correct per decoded value = {1e3 * total / q:.3f} ms "
              f"(oracle alone on the same {args.m} points: {1e3 * bare / q:.3f} ms; correct {correct}/{q})")
    total, bare = results["line"]
    print(f"ratio rm_decode_overhead = {total / bare:.2f} (target <= none; report)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
