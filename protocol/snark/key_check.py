"""Subversion zero knowledge: the prover checks a Groth16 proving key before proving with secret data.

Groth16 is zero knowledge only for a well-formed CRS (Abdolmaleki, Baghery, Lipmaa, Zajac, "A
Subversion-Resistant SNARK", ASIACRYPT 2017, ePrint 2017/599; Fuchsbauer, "Subversion-Zero-Knowledge
SNARKs", PKC 2018, ePrint 2017/587). A key is well formed when there are alpha, beta, delta, tau with
alpha, beta, delta != 0, t(tau) = tau^N - 1 != 0 and every element as ``groth16.setup`` defines it. The
key then carries [tau^k]_1 (k = 0..N), [tau]_2 and [tau^N]_2 (``setup(powers=True)``), and the prover,
which knows the constraint system, checks (docs/SNARK.md section 8.4; each check raises
ProvingKeyRejected naming it):

    shape          sizes match the prover's own constraint system; the powers are present
    nondegenerate  alpha_1, beta_1, delta_1, beta_2, delta_2, [tau]_2 not infinity; [tau^0]_1 = G1;
                   [tau^N]_2 != G2 (t(tau) != 0)
    beta, delta    e(beta_1, G2) = e(G1, beta_2);  e(delta_1, G2) = e(G1, delta_2)
    tau-powers     e(sum_k rho_k [tau^(k+1)]_1, G2) = e(sum_k rho_k [tau^k]_1, [tau]_2)   (k < N)
    tau-N          e([tau^N]_1, G2) = e(G1, [tau^N]_2)
    a-query        sum_i rho_i A_i = [U(tau)]_1 with U = sum_i rho_i u_i, from the powers (an MSM)
    b1-query       sum_i rho_i B1_i = [V(tau)]_1, V = sum_i rho_i v_i
    b2-query       e(sum_i rho_i B1_i, G2) = e(G1, sum_i rho_i B2_i)
    l-query        e(sum' rho_i L_i, delta_2) = e(sum' rho_i A_i, beta_2) e(alpha_1, sum' rho_i B2_i)
                   e([W'(tau)]_1, G2), sums over private wires i > l, W' = sum' rho_i w_i
    h-query        e(sum_k s_k H_k, delta_2) = e(sum_k s_k [tau^k]_1, [tau^N]_2 - G2)   (k <= N-2)

with rho_i, s_k uniform 128-bit values from the OS drawn after the key is received, so a key violating
any single equation passes its batched check with probability <= 2^-128. The polynomials U, V, W' are
evaluated on the domain H from the constraint matrices (public-input rows included) and interpolated
with one inverse NTT each.

Subgroups without per-point checks. The curves' groups are G x E[h] (h the cofactor, coprime to r), and
pi(P) = [h * (h^-1 mod r)] P is the projection onto the order-r subgroup G. Every check above is made on
projected sums (pi is linear, so they check the projected key pi(pk)), and ``project_proof`` projects the
finished proof: its points are exactly those an honest prover computes from pi(pk), which passed every
check. A key with small-order components thus cannot make the proof leak the witness modulo a small
prime, at the cost of three scalar multiplications instead of ~10^5 subgroup checks.
"""

from __future__ import annotations

import secrets
import time

from .curve import G1_GEN, G2_GEN, g1_add, g1_mul, g1_neg, g2_add, g2_mul, g2_neg
from .errors import ProvingKeyRejected
from .field import R, intt, root_of_unity
from .groth16 import Proof, ProvingKey, domain_size, resolve_backend
from .r1cs import R1CS

__all__ = ["COFACTOR_G1", "COFACTOR_G2", "check_proving_key", "project_proof"]

COFACTOR_G1 = 0x396C8C005555E1568C00AAAB0000AAAB
COFACTOR_G2 = int("5d543a95414e7f1091d50792876a202cd91de4547085abaa68a205b2e5a7ddfa628f1cb4d9e82ef21537e293a6691ae"
                  "1616ec6e786f0c70cf1c38e31c7238e5", 16)
_PI1 = COFACTOR_G1 * pow(COFACTOR_G1, -1, R)
_PI2 = COFACTOR_G2 * pow(COFACTOR_G2, -1, R)
RHO_BITS = 128


def _pi1(pt):
    """Projection onto G (exact integer scalar: the backends reduce scalars mod r, which would make it 1)."""
    return None if pt is None else g1_mul(pt, _PI1)


def _pi2(pt):
    return None if pt is None else g2_mul(pt, _PI2)


def project_proof(proof: Proof, backend=None) -> Proof:
    """The proof with every point projected onto the order-r subgroup (identity for an honest key)."""
    del backend  # the projection is exact integer arithmetic (curve.py), the same for every backend
    return Proof(a=_pi1(proof.a), b=_pi2(proof.b), c=_pi1(proof.c))


def _msm(msm, points, scalars):
    pts, ks = [], []
    for p, k in zip(points, scalars, strict=True):
        if p is not None and k:
            pts.append(p)
            ks.append(k)
    return msm(pts, ks) if pts else None


def _poly_at_tau(be, powers, evals, omega):
    """[f(tau)]_1 for the polynomial f of degree < N with the given evaluations on H."""
    return _pi1(_msm(be.msm_g1, powers, intt(evals, omega)))


def _qap_combinations(r1cs: R1CS, rho: list[int], n_dom: int):
    """Evaluations on H of U = sum rho_i u_i, V = sum rho_i v_i, W' = sum_{i>l} rho_i w_i."""
    l = r1cs.n_public
    eu, ev, ew = [0] * n_dom, [0] * n_dom, [0] * n_dom
    for j, (a, b, c, _name) in enumerate(r1cs.constraints):
        eu[j] = sum(k * rho[i] for i, k in a.items()) % R
        ev[j] = sum(k * rho[i] for i, k in b.items()) % R
        ew[j] = sum(k * rho[i] for i, k in c.items() if i > l) % R
    n = r1cs.n_constraints
    for i in range(l + 1):  # public-input rows A_{n+i} = e_i
        eu[n + i] = rho[i]
    return eu, ev, ew


def _pairing(be, pairs, check: str, what: str) -> None:
    if not be.pairing_check([(p, q) for p, q in pairs if p is not None and q is not None]):
        raise ProvingKeyRejected(f"proving key is not well formed: {what}", check=check)


def _shape(pk: ProvingKey, r1cs: R1CS) -> int:
    n_dom = domain_size(r1cs)
    if (pk.n_wires, pk.n_constraints, pk.domain_size) != (r1cs.n_wires, r1cs.n_constraints, n_dom):
        raise ProvingKeyRejected("proving key was generated for a different constraint system", check="shape")
    if len(pk.tau_powers_1) != n_dom + 1 or pk.tau_2 is None or pk.tau_n_2 is None:
        raise ProvingKeyRejected("proving key lacks the powers of tau needed to check it (ask the client for a "
                                 "key with powers: setup(powers=True))", check="shape")
    if pk.vk.n_public != r1cs.n_public:
        raise ProvingKeyRejected("proving key's verifying key has the wrong number of public inputs", check="shape")
    return n_dom


def check_proving_key(pk: ProvingKey, r1cs: R1CS, backend=None) -> dict:
    """Raise ProvingKeyRejected (with ``check`` naming the failed check) unless pi(pk) is well formed.
    Returns the time taken in seconds, per phase."""
    t0 = time.perf_counter()
    be = resolve_backend(backend)
    n_dom = _shape(pk, r1cs)
    p1, p2 = _pi1, _pi2
    g1n = g1_neg(G1_GEN)
    alpha, beta1, delta1 = p1(pk.alpha_1), p1(pk.beta_1), p1(pk.delta_1)
    beta2, delta2, tau2, taun2 = p2(pk.beta_2), p2(pk.delta_2), p2(pk.tau_2), p2(pk.tau_n_2)
    powers = pk.tau_powers_1
    if None in (alpha, beta1, delta1, beta2, delta2, tau2):
        raise ProvingKeyRejected("proving key is degenerate: alpha, beta, delta or tau is zero", check="nondegenerate")
    if powers[0] != G1_GEN or taun2 == G2_GEN or taun2 is None:
        raise ProvingKeyRejected("proving key is degenerate: [tau^0]_1 != G1 or t(tau) = 0", check="nondegenerate")
    _pairing(be, [(beta1, G2_GEN), (g1n, beta2)], "beta", "e(beta_1, G2) != e(G1, beta_2)")
    _pairing(be, [(delta1, G2_GEN), (g1n, delta2)], "delta", "e(delta_1, G2) != e(G1, delta_2)")
    rho = [secrets.randbits(RHO_BITS) for _ in range(n_dom)]
    hi = p1(_msm(be.msm_g1, powers[1:], rho))
    lo = p1(_msm(be.msm_g1, powers[:-1], rho))
    _pairing(be, [(hi, G2_GEN), (g1_neg(lo), tau2)], "tau-powers", "the [tau^k]_1 are not successive powers")
    _pairing(be, [(p1(powers[-1]), G2_GEN), (g1n, taun2)], "tau-N", "[tau^N]_2 does not match [tau^N]_1")
    t_powers = time.perf_counter()
    # QAP queries, with one rho per wire
    m1, l = r1cs.n_wires, r1cs.n_public
    rho = [secrets.randbits(RHO_BITS) for _ in range(m1)]
    omega = root_of_unity(n_dom)
    eu, ev, ew = _qap_combinations(r1cs, rho, n_dom)
    base = powers[:n_dom]
    u_tau, v_tau, w_tau = (_poly_at_tau(be, base, e, omega) for e in (eu, ev, ew))
    a_all = _msm(be.msm_g1, pk.a_query, rho)
    if p1(a_all) != u_tau:
        raise ProvingKeyRejected("proving key is not well formed: A_i != [u_i(tau)]_1", check="a-query")
    if p1(_msm(be.msm_g1, pk.b1_query, rho)) != v_tau:
        raise ProvingKeyRejected("proving key is not well formed: B1_i != [v_i(tau)]_1", check="b1-query")
    b2_all = _msm(be.msm_g2, pk.b2_query, rho)
    _pairing(be, [(v_tau, G2_GEN), (g1n, p2(b2_all))], "b2-query", "B2_i != [v_i(tau)]_2")
    a_pub = _msm(be.msm_g1, pk.a_query[:l + 1], rho[:l + 1])
    b2_pub = _msm(be.msm_g2, pk.b2_query[:l + 1], rho[:l + 1])
    a_priv = p1(g1_add(a_all, g1_neg(a_pub)))
    b2_priv = p2(g2_add(b2_all, g2_neg(b2_pub)))
    l_sum = p1(_msm(be.msm_g1, pk.l_query, rho[l + 1:]))
    _pairing(be, [(l_sum, delta2), (g1_neg(a_priv), beta2), (g1_neg(alpha), b2_priv),
                  (g1_neg(w_tau), G2_GEN)], "l-query", "L_i != [(beta u_i + alpha v_i + w_i)(tau) / delta]_1")
    s = [secrets.randbits(RHO_BITS) for _ in range(n_dom - 1)]
    h_sum = p1(_msm(be.msm_g1, pk.h_query, s))
    p_sum = p1(_msm(be.msm_g1, powers[:n_dom - 1], s))
    _pairing(be, [(h_sum, delta2), (g1_neg(p_sum), taun2), (p_sum, G2_GEN)], "h-query",
             "H_k != [tau^k t(tau) / delta]_1")
    t_end = time.perf_counter()
    return {"powers_s": t_powers - t0, "queries_s": t_end - t_powers, "total_s": t_end - t0}
