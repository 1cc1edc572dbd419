"""Proving-key transfer encoding (client -> trainer): uncompressed affine points, so the trainer needs no
square roots to read ~10^5 points.

    pk = "vtrain/v1/groth16-pk" 0x00 || u32 n_wires || u32 n_constraints || u32 domain_size
         || vk_bytes (snarkjs_io.vk_to_bytes, compressed) || G1 alpha, beta, delta || G2 beta, delta
         || u32 len || G1* a_query || u32 len || G1* b1_query || u32 len || G2* b2_query
         || u32 len || G1* l_query || u32 len || G1* h_query
    G1 = x || y (48 + 48 bytes big-endian), G2 = x.c0 || x.c1 || y.c0 || y.c1; infinity = all zero bytes.

A key with the powers of tau (provider-owned data, docs/SNARK.md section 8.4) starts with the magic
"vtrain/v2/groth16-pk" 0x00 instead and appends  u32 len || G1* [tau^k]_1 (k = 0..N) || G2 [tau]_2
|| G2 [tau^N]_2.  The prover checks such a key with ``key_check.check_proving_key``.

Parsing checks lengths and that every point is on its curve. It does not check subgroup membership: the
proving key only affects the trainer's own zero knowledge, which is moot for the client's data (soundness
rests on the client's setup and the verifying key it keeps); with provider-owned data the prover runs
``key_check.check_proving_key`` (well-formedness on the projection onto the prime-order subgroups).
"""

from __future__ import annotations

import struct

from protocol.encoding import Reader

from .curve import is_on_curve_g1, is_on_curve_g2
from .errors import SnarkFormatError
from .groth16 import ProvingKey
from .snarkjs_io import vk_from_bytes, vk_to_bytes

MAGIC = b"vtrain/v1/groth16-pk\x00"
MAGIC_POWERS = b"vtrain/v2/groth16-pk\x00"
_G1, _G2 = 96, 192


def _g1(pt) -> bytes:
    if pt is None:
        return bytes(_G1)
    return pt[0].to_bytes(48, "big") + pt[1].to_bytes(48, "big")


def _g2(pt) -> bytes:
    if pt is None:
        return bytes(_G2)
    (x0, x1), (y0, y1) = pt
    return b"".join(v.to_bytes(48, "big") for v in (x0, x1, y0, y1))


def pk_to_bytes(pk: ProvingKey) -> bytes:
    vkb = vk_to_bytes(pk.vk)
    out = [MAGIC_POWERS if pk.has_powers else MAGIC, struct.pack(">III", pk.n_wires, pk.n_constraints, pk.domain_size), struct.pack(">I", len(vkb)), vkb,
           _g1(pk.alpha_1), _g1(pk.beta_1), _g1(pk.delta_1), _g2(pk.beta_2), _g2(pk.delta_2)]
    for pts, enc in ((pk.a_query, _g1), (pk.b1_query, _g1), (pk.b2_query, _g2), (pk.l_query, _g1), (pk.h_query, _g1)):
        out.append(struct.pack(">I", len(pts)))
        out.append(b"".join(enc(p) for p in pts))
    if pk.has_powers:
        out += [struct.pack(">I", len(pk.tau_powers_1)), b"".join(_g1(p) for p in pk.tau_powers_1),
                _g2(pk.tau_2), _g2(pk.tau_n_2)]
    return b"".join(out)


class _Reader(Reader):
    def __init__(self, data: bytes):
        super().__init__(data, "proving key", SnarkFormatError)

    def g1(self, what: str):
        raw = self.take(_G1)
        if raw == bytes(_G1):
            return None
        pt = (int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
        if not is_on_curve_g1(pt):
            raise SnarkFormatError(f"proving key: {what} is not a point on G1's curve")
        return pt

    def g2(self, what: str):
        raw = self.take(_G2)
        if raw == bytes(_G2):
            return None
        v = [int.from_bytes(raw[i:i + 48], "big") for i in range(0, _G2, 48)]
        pt = ((v[0], v[1]), (v[2], v[3]))
        if not is_on_curve_g2(pt):
            raise SnarkFormatError(f"proving key: {what} is not a point on G2's curve")
        return pt


def pk_from_bytes(data: bytes) -> ProvingKey:
    r = _Reader(data)
    magic = r.take(len(MAGIC))
    if magic not in (MAGIC, MAGIC_POWERS):
        raise SnarkFormatError("not a vtrain Groth16 proving key")
    n_wires, n_constraints, domain = struct.unpack(">III", r.take(12))
    vk = vk_from_bytes(r.take(r.u32()))
    alpha_1, beta_1, delta_1 = r.g1("alpha_1"), r.g1("beta_1"), r.g1("delta_1")
    beta_2, delta_2 = r.g2("beta_2"), r.g2("delta_2")
    queries = []
    for name, read, expect in (("a_query", r.g1, n_wires), ("b1_query", r.g1, n_wires), ("b2_query", r.g2, n_wires),
                               ("l_query", r.g1, n_wires - vk.n_public - 1), ("h_query", r.g1, domain - 1)):
        count = r.u32()
        if count != expect:
            raise SnarkFormatError(f"proving key: {name} has {count} points, expected {expect}")
        queries.append(tuple(read(f"{name}[{i}]") for i in range(count)))
    extra = {}
    if magic == MAGIC_POWERS:
        count = r.u32()
        if count != domain + 1:
            raise SnarkFormatError(f"proving key: tau_powers_1 has {count} points, expected {domain + 1}")
        extra = {"tau_powers_1": tuple(r.g1(f"tau_powers_1[{i}]") for i in range(count)),
                 "tau_2": r.g2("tau_2"), "tau_n_2": r.g2("tau_n_2")}
    if r.pos != len(data):
        raise SnarkFormatError("proving key has trailing bytes")
    return ProvingKey(**extra, vk=vk, n_wires=n_wires, n_constraints=n_constraints, domain_size=domain, alpha_1=alpha_1,
                      beta_1=beta_1, beta_2=beta_2, delta_1=delta_1, delta_2=delta_2, a_query=queries[0],
                      b1_query=queries[1], b2_query=queries[2], l_query=queries[3], h_query=queries[4])
