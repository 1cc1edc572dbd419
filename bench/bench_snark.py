"""Benchmark: Groth16 over BLS12-381 for T steps of the protocol's linear-regression SGD step.

Circuit: ``protocol.snark.sgd_circuit.build_sgd_circuit`` with d = 8 features, batch B = 8, f = 16,
K = 32, learning rate 26/256, no L2. Data: synthetic standardized rows (N(0, 1) features clipped to
[-8, 8], a standardized linear target), quantized at 2^f; the batches and theta_0 come from
``protocol.training.Schedule`` (the protocol's own PRG; n = 64 rows, 8 steps per epoch, the first T steps).

Per size: constraints, wires, domain size N; setup, prove and verify time for each backend ("pure":
own int arithmetic + py_ecc pairing; "arkworks": py_arkworks_bls12381); the compressed proof size.
Keys and proofs are affine int tuples, independent of the backend that computed them: both setups
run from ONE trapdoor (drawn from ``secrets``, dropped after the two setups) and must give the
identical proving key, and both provers run with the same blinding (r, s) on that key and must give
the identical proof; every proof is verified by both backends. The ratio is

    ratio snark_fast_vs_pure = (arkworks prove time) / (pure prove time)   (same circuit and witness)

measured on the T = 16 size (the first size with --quick). Both provers share the pure-Python NTTs
(7 of size N), so the ratio cannot go below NTT time / pure prove time.

Private data (docs/SNARK.md section 8, ``protocol.snark.zk_session``): the provider's 64 rows x 8
features are the witness, committed with Poseidon; B = 8, T = 16 (``--quick``: 16 rows x 4 features,
T = 2), fast backend only. Printed: constraints (ranges, commitment, steps; per data element and per
step), setup with powers of tau, the provider's proving-key check, prove (fresh blinding, projected),
verify. Target: prove <= 20 s with the fast backend.

Prove is timed once (``--repeats`` for best-of-N), verify best-of-3 (its first call also pays the
py_ecc import). Usage: ``python -m bench.bench_snark [--quick] [--steps 16 32] [--repeats 1]``. The full run
(T = 16 and T = 32) takes about 2-4 minutes on an otherwise idle 2-core machine, ``--quick``
(T = 2 and T = 4) under one minute. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import time
from functools import partial

import numpy as np

from protocol.fixedpoint import quantize
from protocol.prg import SeedContext
from protocol.snark import groth16 as g16
from protocol.snark.backend import available_backends, get_backend
from protocol.snark.field import R
from protocol.snark.sgd_circuit import CircuitConfig, build_sgd_circuit, constraint_count
from protocol.snark.snarkjs_io import proof_to_bytes
from protocol.training import Schedule, TrainConfig

D, B, F, K, LR_NUM, LR_SHIFT = 8, 8, 16, 32, 26, 8
ROWS = 8 * B  # 8 steps per epoch
FULL_STEPS = (16, 32)
QUICK_STEPS = (2, 4)
RATIO_STEPS = 16
RATIO_TARGET = 0.35
TARGET_PURE_PROVE, TARGET_VERIFY, TARGET_FAST_PROVE = 6.0, 0.5, 1.5


def _bytes(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(b"bench_snark/" + label.encode()).digest()[:n]


def synthetic(n: int, d: int, seed: int, frac_bits: int = F):
    """Standardized features (N(0,1) clipped to [-8, 8]) and a standardized linear target, quantized."""
    rng = np.random.default_rng(seed)
    X = np.clip(rng.standard_normal((n, d)), -8.0, 8.0)
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.1 * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    return [[int(v) for v in row] for row in quantize(X, frac_bits)], [int(v) for v in quantize(y, frac_bits)]


def workload(steps: int, seed: int = 1):
    """(X, Y, schedule, theta0, circuit config, binding) for T = steps."""
    if steps < 1:
        raise ValueError(f"T must be >= 1, got {steps}")
    X, Y = synthetic(ROWS, D, seed)
    per_epoch = ROWS // B
    tcfg = TrainConfig(model="linear", epochs=-(-steps // per_epoch), batch_size=B, lr_num=LR_NUM,
                       lr_shift=LR_SHIFT, frac_bits=F, weight_bits=K).validate()
    ctx = SeedContext(_bytes("sid", 16), _bytes("root"), _bytes("seed"))
    sched = Schedule(ctx, tcfg, ROWS, D)
    schedule = [[int(i) for i in sched.batch(t)] for t in range(1, steps + 1)]  # the session's first T steps
    theta0 = [int(v) for v in sched.initial_state()]
    cfg = CircuitConfig(frac_bits=F, weight_bits=K, lr_num=LR_NUM, lr_shift=LR_SHIFT, l2_num=0, batch_size=B)
    binding = int.from_bytes(_bytes(f"binding/{steps}"), "big") % R
    return X, Y, schedule, theta0, cfg, binding


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _best(repeats: int, fn):
    best, out = None, None
    for _ in range(repeats):
        t, out = _timed(fn)
        best = t if best is None else min(best, t)
    return best, out


def bench_size(steps: int, backends: list[str], repeats: int) -> dict:
    """Build, set up, prove and verify one size; returns the measurements (seconds, counts)."""
    X, Y, schedule, theta0, cfg, binding = workload(steps)
    t_build, (cs, witness, public) = _timed(lambda: build_sgd_circuit(X, Y, schedule, theta0, cfg, binding))
    if cs.n_constraints != constraint_count(D, cfg, steps):
        raise AssertionError(f"constraint count {cs.n_constraints} != formula {constraint_count(D, cfg, steps)}")
    res = {"T": steps, "constraints": cs.n_constraints, "wires": cs.n_wires, "public": cs.n_public,
           "domain": g16.domain_size(cs), "build": t_build, "setup": {}, "prove": {}, "verify": {}}
    n_dom = res["domain"]
    while True:  # one trapdoor for both setups (so the keys must coincide); dropped right after them
        toxic = {name: secrets.randbelow(R - 1) + 1 for name in g16.TOXIC_NAMES}
        if pow(toxic["tau"], n_dom, R) != 1:
            break
    pk = None
    for name in backends:
        t, (pk_b, _vk_b) = _timed(partial(g16.setup, cs, toxic, get_backend(name)))
        res["setup"][name] = t
        if pk is None:
            pk = pk_b
        elif pk_b != pk:
            raise AssertionError(f"setup with backend {name!r} gave a different proving key from the same trapdoor")
    del toxic
    r_blind, s_blind = secrets.randbelow(R), secrets.randbelow(R)
    proof = None
    for name in backends:
        t, prf = _best(repeats, partial(g16.prove, pk, cs, witness, r_blind, s_blind, get_backend(name)))
        res["prove"][name] = t
        if proof is None:
            proof = prf
        elif prf != proof:
            raise AssertionError(f"prover with backend {name!r} gave a different proof for the same (r, s)")
    for name in backends:
        t, ok = _best(max(3, repeats), partial(g16.verify, pk.vk, public, proof, get_backend(name)))
        if ok is not True:
            raise AssertionError(f"backend {name!r} did not accept the proof")
        res["verify"][name] = t
    res["proof_bytes"] = len(proof_to_bytes(proof))
    return res


ZK_FULL, ZK_QUICK = (64, 8, 16), (16, 4, 2)  # rows, features, T
TARGET_ZK_PROVE = 20.0


def bench_private(rows: int, d: int, steps: int, backend: str) -> dict:
    """Setup (client), key check + prove (provider), verify (client) for provider-owned data."""
    from protocol.snark import zk_session as zs
    from protocol.snark.zk_circuit import constraint_breakdown

    X, Y = synthetic(rows, d, seed=5)
    per_epoch = rows // B
    tcfg = TrainConfig(model="linear", epochs=-(-steps // per_epoch), batch_size=B, lr_num=LR_NUM,
                       lr_shift=LR_SHIFT, frac_bits=F, weight_bits=K).validate()
    sched = Schedule(SeedContext(_bytes("zk-sid", 16), _bytes("zk-root"), _bytes("zk-seed")), tcfg, rows, d)
    schedule = [[int(i) for i in sched.batch(t)] for t in range(1, steps + 1)]
    theta0 = [int(v) for v in sched.initial_state()]
    binding = int.from_bytes(_bytes("zk-binding"), "big") % R
    be = get_backend(backend)
    blind = zs.new_blinding()
    t_commit, com = _timed(lambda: zs.commitment(X, Y, blind, tcfg))
    t_setup, (cs, pk, vk) = _timed(lambda: zs.client_setup(rows, d, schedule, tcfg, be))
    cpu0 = time.process_time()
    t_total, pp = _timed(lambda: zs.prove_private(pk, X, Y, blind, schedule, theta0, tcfg, binding, r1cs=cs,
                                                  backend=be))
    cpu = time.process_time() - cpu0
    t_verify, ok = _timed(lambda: zs.verify_private(vk, com, theta0, pp.theta_T, binding, pp.proof, tcfg, be))
    if ok is not True or pp.commitment != com:
        raise AssertionError("the private-data proof did not verify against the commitment")
    br = constraint_breakdown(rows, d, tcfg, steps)
    if br["total"] != cs.n_constraints:
        raise AssertionError(f"constraint count {cs.n_constraints} != formula {br['total']}")
    return {"rows": rows, "d": d, "T": steps, "backend": backend, "breakdown": br, "wires": cs.n_wires,
            "domain": g16.domain_size(cs), "commit": t_commit, "setup": t_setup,
            "check": pp.key_check["total_s"], "prove": t_total - pp.key_check["total_s"], "verify": t_verify,
            "build": pp.key_check["build_s"], "groth16": pp.key_check["groth16_s"], "cpu": cpu, "check_cpu": pp.key_check["check_cpu_s"],
            "prove_cpu": pp.key_check["prove_cpu_s"],
            "load": os.getloadavg()[0]}


def report_private(z: dict) -> None:
    br = z["breakdown"]
    print(f"private data (zk): n = {z['rows']} rows x d = {z['d']}, B = {B}, T = {z['T']}, K = {K}, backend "
          f"{z['backend']}: constraints = {br['total']} (data ranges {br['ranges']}, Poseidon commitment "
          f"{br['commitment']} in {br['permutations']} permutations, steps {br['steps']}), wires = {z['wires']}, "
          f"N = 2^{z['domain'].bit_length() - 1}")
    print(f"  constraints per data element = {br['per_data_element']:.1f} ({K + 1} range + "
          f"{(br['commitment']) / br['data_elements']:.1f} commitment), per step = {br['per_step']}")
    print(f"  native commitment {z['commit']:.3f} s; client setup with powers of tau {z['setup']:.1f} s")
    print(f"  provider: proving-key check {z['check']:.2f} s, prove {z['prove']:.2f} s (circuit + witness "
          f"{z['build']:.2f} s, Groth16 {z['groth16']:.2f} s); client verify {z['verify']:.4f} s")
    print(f"  provider CPU time: key check {z['check_cpu']:.1f} s, prove {z['prove_cpu']:.1f} s (wall "
          f"{z['check']:.1f} s, {z['prove']:.1f} s; load average {z['load']:.1f} on {os.cpu_count()} cores)")


def report(res: dict, backends: list[str]) -> None:
    print(f"size: d = {D}, B = {B}, T = {res['T']}, f = {F}, K = {K}, lr = {LR_NUM}/2^{LR_SHIFT}: "
          f"constraints = {res['constraints']}, wires = {res['wires']}, public inputs = {res['public']}, "
          f"domain N = {res['domain']} (2^{res['domain'].bit_length() - 1})")
    print(f"  build circuit + witness: {res['build']:.3f} s")
    for name in backends:
        print(f"  {name:9s} setup {res['setup'][name]:8.2f} s   prove {res['prove'][name]:7.3f} s   "
              f"verify {res['verify'][name]:7.4f} s")
    print(f"  proof size: {res['proof_bytes']} bytes (compressed A|B|C)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"T in {QUICK_STEPS} instead of {FULL_STEPS}")
    ap.add_argument("--steps", type=int, nargs="+", help="explicit list of T values")
    ap.add_argument("--repeats", type=int, default=1,
                    help="best-of-N for prove (default 1); verify is always best-of-max(3, N)")
    ap.add_argument("--zk-only", action="store_true", help="only the private-data (zero-knowledge) size")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    backends = available_backends()
    z = bench_private(*(ZK_QUICK if args.quick else ZK_FULL), backends[-1])
    report_private(z)
    print(f"target: zk prove <= {TARGET_ZK_PROVE:g} s ({ZK_FULL[0]} x {ZK_FULL[1]}, T = {ZK_FULL[2]}, fast backend)"
          f" -- measured ({z['rows']} x {z['d']}, T = {z['T']}, {z['backend']}): prove {z['prove']:.2f} s, "
          f"with the key check {z['prove'] + z['check']:.2f} s; CPU time prove {z['prove_cpu']:.1f} s")
    if args.zk_only:
        return 0
    if "arkworks" not in backends:
        print("arkworks backend not importable (py_arkworks_bls12381): only the pure backend is measured")
    results = []
    for t in steps:
        res = bench_size(t, backends, args.repeats)
        report(res, backends)
        results.append(res)
    ref = next((r for r in results if r["T"] == RATIO_STEPS), results[0])
    if ref["T"] != RATIO_STEPS:
        print(f"note: the targets are stated for T = {RATIO_STEPS}; the figures below are for T = {ref['T']}")
    pure_prove, pure_verify = ref["prove"]["pure"], ref["verify"]["pure"]
    if "arkworks" in backends:
        fast_prove = ref["prove"]["arkworks"]
        print(f"ratio snark_fast_vs_pure = {fast_prove / pure_prove:.3f} (target <= {RATIO_TARGET})")
        print(f"target: pure prove <= {TARGET_PURE_PROVE:g} s, verify <= {TARGET_VERIFY:g} s; fast prove <= "
              f"{TARGET_FAST_PROVE:g} s -- measured (T = {ref['T']}): pure prove {pure_prove:.2f} s, verify "
              f"{pure_verify:.3f} s (pure) / {ref['verify']['arkworks']:.4f} s (arkworks); fast prove "
              f"{fast_prove:.2f} s")
    else:
        print(f"target: pure prove <= {TARGET_PURE_PROVE:g} s, verify <= {TARGET_VERIFY:g} s -- measured "
              f"(T = {ref['T']}): pure prove {pure_prove:.2f} s, verify {pure_verify:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
