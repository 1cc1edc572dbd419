"""Benchmark: overhead of randomized-smoothing CERTIFY over the bare base-model calls it needs.

Smoothing: SmoothedClassifier.certify on m inputs with n0 selection and n estimation draws each.
Baseline: the same noise stream (same Generator seed, same batching, same x + eps construction) fed
directly to the base model, with nothing else. The ratio is the smoothing bookkeeping cost (label
mapping, bincount, Clopper-Pearson bound, radius). Usage: python bench/bench_smoothing.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from defenses.smoothing import SmoothedClassifier


def _bare_calls(base, X, num, sigma, batch_size, rng) -> int:
    """Stream m * num noisy rows (input-major, as SmoothedClassifier does) through base; sum of labels."""
    m, d = X.shape
    total = m * num
    buf = np.empty((min(batch_size, total), d))
    label_sum = 0
    for start in range(0, total, buf.shape[0]):
        stop = min(start + buf.shape[0], total)
        noisy = buf[: stop - start]
        rng.standard_normal(out=noisy)
        noisy *= sigma
        first, last = start // num, (stop - 1) // num
        if last - first < 16:
            for i in range(first, last + 1):
                noisy[max(i * num, start) - start: min((i + 1) * num, stop) - start] += X[i]
        else:
            noisy += X[np.arange(start, stop) // num]
        label_sum += int(base(noisy).sum())
    return label_sum


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    w, b = rng.normal(size=args.features), 0.1
    X = rng.normal(size=(args.inputs, args.features))

    def base(Z):                                        # linear 2-class model: [<w, z> + b > 0]
        return (Z @ w + b > 0).astype(np.int64)

    smooth = SmoothedClassifier(base, 2, args.sigma, batch_size=args.batch_size)
    rows = args.inputs * (args.n0 + args.n)
    print(f"inputs = {args.inputs}, features = {args.features}, classes = 2, n0 = {args.n0}, n = {args.n}, "
          f"sigma = {args.sigma}, alpha = {args.alpha}, batch_size = {args.batch_size}")
    print(f"noisy rows per run = {rows:,} ({rows * args.features * 8 / 1e9:.2f} GB of noise, streamed)")

    t_smooth, t_bare = [], []
    for r in range(args.repeats):                       # interleaved, best of repeats
        seed = args.seed + 1 + r
        t0 = time.perf_counter()
        res = smooth.certify(X, args.n0, args.n, args.alpha, random_state=seed)
        t_smooth.append(time.perf_counter() - t0)
        g = np.random.default_rng(seed)
        t0 = time.perf_counter()
        s0 = _bare_calls(base, X, args.n0, args.sigma, args.batch_size, g)
        s1 = _bare_calls(base, X, args.n, args.sigma, args.batch_size, g)
        t_bare.append(time.perf_counter() - t0)
        if (s0, s1) != (int(res.counts0[:, 1].sum()), int(res.counts[:, 1].sum())):
            print("error: baseline did not see the same noisy inputs as CERTIFY")
            return 1

    ts, tb = min(t_smooth), min(t_bare)
    print(f"time certify (best of {args.repeats}) = {ts:.3f} s ({ts / rows * 1e9:.1f} ns/row)")
    print(f"time bare base-model calls (best of {args.repeats}) = {tb:.3f} s ({tb / rows * 1e9:.1f} ns/row)")
    print(f"certified = {int((~res.abstained).sum())}/{args.inputs}, median radius = {np.median(res.radii):.4f}")
    print(f"ratio smoothing_overhead = {ts / tb:.3f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
