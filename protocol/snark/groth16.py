"""Groth16 (Groth, EUROCRYPT 2016, ePrint 2016/260) over BLS12-381: setup, prove, verify.

Deterministic cores take their randomness as arguments (`setup(r1cs, toxic)`, `prove(..., r, s)`);
`setup_random` / `prove_random` draw it from `secrets`. Group arithmetic goes through a backend
(`protocol.snark.backend`: "pure" = py_ecc/int code, "arkworks" = Rust); keys and proofs are affine int
tuples (curve.py), so they can be produced with one backend and checked with the other.

Symbols (docs/SNARK.md section 4; Groth 2016, section 3.2): wires z_0 = 1, z_1..z_l public, z_{l+1}..z_m
private; n constraints A_j z * B_j z = C_j z; public-input rows A_{n+i} = e_i (i = 0..l); domain H = <omega>
of size N = 2^k >= n + l + 1; l_j the Lagrange basis of H; u_i, v_i, w_i the QAP polynomials of wire i;
t(X) = X^N - 1; h = (sum z_i u_i * sum z_i v_i - sum z_i w_i) / t.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from protocol.snark.curve import G1_GEN, G2_GEN, g1_neg, is_on_curve_g1, is_on_curve_g2
from protocol.snark.errors import (
    PairingCheckFailed,
    ProofPointError,
    PublicInputCountError,
    PublicInputRangeError,
)
from protocol.snark.field import GENERATOR, R, batch_inverse, coset_intt, coset_ntt, intt, root_of_unity
from protocol.snark.r1cs import R1CS

__all__ = [
    "TOXIC_NAMES",
    "Proof",
    "ProvingKey",
    "VerifyingKey",
    "domain_size",
    "prove",
    "prove_random",
    "resolve_backend",
    "setup",
    "setup_random",
    "verify",
]

TOXIC_NAMES = ("tau", "alpha", "beta", "gamma", "delta")


@dataclass(frozen=True)
class VerifyingKey:
    alpha_1: tuple
    beta_2: tuple
    gamma_2: tuple
    delta_2: tuple
    ic: tuple  # IC_0..IC_l in G1 (None = infinity)

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1


@dataclass(frozen=True)
class ProvingKey:
    vk: VerifyingKey
    n_wires: int
    n_constraints: int
    domain_size: int
    alpha_1: tuple
    beta_1: tuple
    beta_2: tuple
    delta_1: tuple
    delta_2: tuple
    a_query: tuple  # [u_i(tau)]_1, i = 0..m
    b1_query: tuple  # [v_i(tau)]_1
    b2_query: tuple  # [v_i(tau)]_2
    l_query: tuple  # [(beta u_i + alpha v_i + w_i)(tau) / delta]_1, i = l+1..m
    h_query: tuple  # [tau^i t(tau) / delta]_1, i = 0..N-2
    # Subversion-zero-knowledge extension (docs/SNARK.md section 8.4; empty/None in a plain key):
    tau_powers_1: tuple = ()  # [tau^k]_1, k = 0..N
    tau_2: tuple | None = None  # [tau]_2
    tau_n_2: tuple | None = None  # [tau^N]_2

    @property
    def has_powers(self) -> bool:
        return bool(self.tau_powers_1)


@dataclass(frozen=True)
class Proof:
    a: tuple  # G1
    b: tuple  # G2
    c: tuple  # G1


def resolve_backend(backend):
    """A Backend object is returned as is; a name ("pure", "arkworks", "auto") goes through get_backend;
    None means the fastest available backend (results are identical across backends)."""
    from protocol.snark.backend import get_backend

    if backend is None:
        return get_backend()
    return get_backend(backend) if isinstance(backend, str) else backend


def domain_size(r1cs: R1CS) -> int:
    """N = smallest power of two >= n + l + 1 (constraints plus public-input rows), at least 2."""
    rows = r1cs.n_constraints + r1cs.n_public + 1
    return max(2, 1 << (rows - 1).bit_length())


def _check_field(v, what: str, nonzero: bool = False) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    if not (1 if nonzero else 0) <= v < R:
        raise ValueError(f"{what} must be in [{1 if nonzero else 0}, r), got {v}")
    return v


# ------------------------------------------------------------------------------------------ setup
def _qap_at_tau(r1cs: R1CS, tau: int, n_dom: int):
    """u_i(tau), v_i(tau), w_i(tau) for every wire, and t(tau), via the closed-form Lagrange basis."""
    omega = root_of_unity(n_dom)
    t_tau = (pow(tau, n_dom, R) - 1) % R
    rows = r1cs.n_constraints + r1cs.n_public + 1
    omegas = [1] * rows
    for j in range(1, rows):
        omegas[j] = omegas[j - 1] * omega % R
    # l_j(tau) = omega^j (tau^N - 1) / (N (tau - omega^j))
    inv = batch_inverse([(tau - wj) * n_dom for wj in omegas])
    lag = [wj * t_tau % R * iv % R for wj, iv in zip(omegas, inv)]
    m1 = r1cs.n_wires
    u, v, w = [0] * m1, [0] * m1, [0] * m1
    for j, (a, b, c, _name) in enumerate(r1cs.constraints):
        lj = lag[j]
        for i, k in a.items():
            u[i] = (u[i] + k * lj) % R
        for i, k in b.items():
            v[i] = (v[i] + k * lj) % R
        for i, k in c.items():
            w[i] = (w[i] + k * lj) % R
    n = r1cs.n_constraints
    for i in range(r1cs.n_public + 1):  # public-input rows A_{n+i} = e_i
        u[i] = (u[i] + lag[n + i]) % R
    return u, v, w, t_tau


def setup(r1cs: R1CS, toxic: dict, backend=None, *, powers: bool = False) -> tuple[ProvingKey, VerifyingKey]:
    """Deterministic CRS generation from the trapdoor toxic = {tau, alpha, beta, gamma, delta}.

    ``powers=True`` adds [tau^k]_1 (k = 0..N), [tau]_2 and [tau^N]_2, which let a prover with secret
    witnesses check the key's well-formedness (``key_check.check_proving_key``)."""
    if not isinstance(r1cs, R1CS):
        raise TypeError(f"setup needs an R1CS, got {type(r1cs).__name__}")
    if not isinstance(toxic, dict) or set(toxic) != set(TOXIC_NAMES):
        raise ValueError(f"toxic must be a dict with exactly the keys {TOXIC_NAMES}")
    tau, alpha, beta, gamma, delta = (_check_field(toxic[k], k, nonzero=True) for k in TOXIC_NAMES)
    n_dom = domain_size(r1cs)
    if pow(tau, n_dom, R) == 1:
        raise ValueError("tau lies in the evaluation domain (tau^N = 1); draw another tau")
    be = resolve_backend(backend)
    u, v, w, t_tau = _qap_at_tau(r1cs, tau, n_dom)
    l, m1 = r1cs.n_public, r1cs.n_wires
    gamma_inv, delta_inv = pow(gamma, -1, R), pow(delta, -1, R)
    k = [(beta * u[i] + alpha * v[i] + w[i]) % R for i in range(m1)]
    ic = [k[i] * gamma_inv % R for i in range(l + 1)]
    lq = [k[i] * delta_inv % R for i in range(l + 1, m1)]
    hq = []
    acc = t_tau * delta_inv % R
    for _ in range(n_dom - 1):
        hq.append(acc)
        acc = acc * tau % R
    tau_pows = []
    if powers:
        acc = 1
        for _ in range(n_dom + 1):
            tau_pows.append(acc)
            acc = acc * tau % R
    g1_scalars = [alpha, beta, delta] + u + v + ic + lq + hq + tau_pows
    g1 = be.fixed_base_g1(G1_GEN, g1_scalars)
    g2 = be.fixed_base_g2(G2_GEN, [beta, gamma, delta] + v + ([tau, tau_pows[-1]] if powers else []))
    pos = 3
    parts = []
    for size in (m1, m1, l + 1, m1 - l - 1, n_dom - 1):
        parts.append(tuple(g1[pos:pos + size]))
        pos += size
    a_q, b1_q, ic_pts, l_q, h_q = parts
    vk = VerifyingKey(alpha_1=g1[0], beta_2=g2[0], gamma_2=g2[1], delta_2=g2[2], ic=ic_pts)
    extra = {}
    if powers:
        extra = {"tau_powers_1": tuple(g1[pos:]), "tau_2": g2[3 + m1], "tau_n_2": g2[4 + m1]}
    pk = ProvingKey(vk=vk, n_wires=m1, n_constraints=r1cs.n_constraints, domain_size=n_dom,
                    alpha_1=g1[0], beta_1=g1[1], beta_2=g2[0], delta_1=g1[2], delta_2=g2[2],
                    a_query=a_q, b1_query=b1_q, b2_query=tuple(g2[3:3 + m1]), l_query=l_q, h_query=h_q, **extra)
    return pk, vk


def setup_random(r1cs: R1CS, backend=None, *, powers: bool = False) -> tuple[ProvingKey, VerifyingKey]:
    """`setup` with the trapdoor drawn from `secrets` and dropped afterwards (docs/SNARK.md section 5)."""
    n_dom = domain_size(r1cs)
    while True:
        toxic = {name: secrets.randbelow(R - 1) + 1 for name in TOXIC_NAMES}
        if pow(toxic["tau"], n_dom, R) != 1:
            return setup(r1cs, toxic, backend, powers=powers)


# ------------------------------------------------------------------------------------------ prove
def _quotient(r1cs: R1CS, z: list[int], n_dom: int) -> list[int]:
    """Coefficients h_0..h_{N-2} of h = (a*b - c)/t, via evaluations on the coset g*H (docs/SNARK.md 4)."""
    ev_a, ev_b, ev_c = [0] * n_dom, [0] * n_dom, [0] * n_dom
    for j, (a, b, c, name) in enumerate(r1cs.constraints):
        ev_a[j], ev_b[j], ev_c[j] = a.evaluate(z), b.evaluate(z), c.evaluate(z)
        if ev_a[j] * ev_b[j] % R != ev_c[j]:
            raise ValueError(f"witness does not satisfy constraint {j} ({name!r}); cannot prove")
    n = r1cs.n_constraints
    for i in range(r1cs.n_public + 1):
        ev_a[n + i] = z[i]
    omega = root_of_unity(n_dom)
    coset = [coset_ntt(intt(ev, omega), omega, GENERATOR) for ev in (ev_a, ev_b, ev_c)]
    t_inv = pow((pow(GENERATOR, n_dom, R) - 1) % R, -1, R)  # t(g w^j) = g^N - 1 for every j
    h_eval = [(x * y - c) * t_inv % R for x, y, c in zip(*coset)]
    h = coset_intt(h_eval, omega, GENERATOR)
    if h[-1] != 0:
        raise AssertionError("quotient polynomial has degree N-1: the QAP does not divide (internal error)")
    return h[:-1]


def _msm(msm, points, scalars):
    """MSM skipping infinity points and zero scalars (None if everything cancels)."""
    pts, ks = [], []
    for p, k in zip(points, scalars, strict=True):
        if p is not None and k % R:
            pts.append(p)
            ks.append(k % R)
    return msm(pts, ks) if pts else None


def prove(pk: ProvingKey, r1cs: R1CS, witness, r: int, s: int, backend=None) -> Proof:
    """Deterministic Groth16 prover with blinding scalars r, s in [0, r)."""
    r_, s_ = _check_field(r, "r"), _check_field(s, "s")
    z = r1cs.check_witness_shape(witness)
    if (pk.n_wires, pk.n_constraints, pk.domain_size) != (r1cs.n_wires, r1cs.n_constraints, domain_size(r1cs)):
        raise ValueError("proving key was generated for a different constraint system")
    be = resolve_backend(backend)
    l = r1cs.n_public
    h = _quotient(r1cs, z, pk.domain_size)
    # A = alpha + sum z_i A_i + r delta ;  B = beta + sum z_i B_i + s delta (G2 and G1 copies)
    a = _msm(be.msm_g1, (pk.alpha_1, *pk.a_query, pk.delta_1), [1, *z, r_])
    b2 = _msm(be.msm_g2, (pk.beta_2, *pk.b2_query, pk.delta_2), [1, *z, s_])
    b1 = _msm(be.msm_g1, (pk.beta_1, *pk.b1_query, pk.delta_1), [1, *z, s_])
    # C = sum_{i>l} z_i L_i + sum_k h_k H_k + s A + r B' - r s delta
    c = _msm(be.msm_g1, (*pk.l_query, *pk.h_query, a, b1, pk.delta_1),
             [*z[l + 1:], *h, s_, r_, -r_ * s_ % R])
    if a is None or b2 is None or c is None:
        raise ValueError("degenerate proof (a point at infinity); retry with other r, s")
    return Proof(a=a, b=b2, c=c)


def prove_random(pk: ProvingKey, r1cs: R1CS, witness, backend=None) -> Proof:
    """`prove` with r, s drawn from `secrets`."""
    return prove(pk, r1cs, witness, secrets.randbelow(R), secrets.randbelow(R), backend)


# ------------------------------------------------------------------------------------------ verify
def _check_point(pt, name: str, on_curve, in_subgroup) -> None:
    if pt is None:
        raise ProofPointError(f"proof point {name} is the point at infinity", evidence={"point": name})
    if not on_curve(pt):
        raise ProofPointError(f"proof point {name} is not on the curve", evidence={"point": name, "value": pt})
    if not in_subgroup(pt):
        raise ProofPointError(f"proof point {name} is on the curve but not in the order-r subgroup",
                              evidence={"point": name, "value": pt})


def verify(vk: VerifyingKey, public_inputs, proof: Proof, backend=None) -> bool:
    """Return True, or raise a SnarkVerificationError subclass naming the failed check.

    Checks: exactly nPublic inputs, each an int in [0, r) (never reduced); A, C in G1 and B in G2, none
    at infinity; then one product of pairings (snarkjs's sign convention):
        e(-A, B) * e(vk_x, gamma_2) * e(C, delta_2) * e(alpha_1, beta_2) == 1,
        vk_x = IC_0 + sum_i x_i IC_i.
    """
    if not isinstance(vk, VerifyingKey) or not isinstance(proof, Proof):
        raise TypeError("verify(vk: VerifyingKey, public_inputs, proof: Proof)")
    xs = list(public_inputs)
    if len(xs) != vk.n_public:
        raise PublicInputCountError(f"expected exactly {vk.n_public} public inputs, got {len(xs)}",
                                    evidence={"expected": vk.n_public, "got": len(xs)})
    for i, x in enumerate(xs):
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < R:
            raise PublicInputRangeError(f"public input {i} is not an int in [0, r): {x!r}",
                                        evidence={"index": i, "value": x})
    be = resolve_backend(backend)
    _check_point(proof.a, "A", is_on_curve_g1, be.in_subgroup_g1)
    _check_point(proof.b, "B", is_on_curve_g2, be.in_subgroup_g2)
    _check_point(proof.c, "C", is_on_curve_g1, be.in_subgroup_g1)
    vk_x = _msm(be.msm_g1, vk.ic, [1, *xs])
    pairs = [(g1_neg(proof.a), proof.b), (vk_x, vk.gamma_2), (proof.c, vk.delta_2), (vk.alpha_1, vk.beta_2)]
    if not be.pairing_check([(p, q) for p, q in pairs if p is not None]):
        raise PairingCheckFailed("pairing check failed: the proof is not valid for these public inputs",
                                 evidence={"public_inputs": xs})
    return True
