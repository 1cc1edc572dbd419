"""snarkjs-compatible files: verification_key.json, proof.json, public.json (curve "bls12381"), iden3
`.r1cs` (version 1) and `.wtns` (version 2), and compressed bytes of proofs and verifying keys.

JSON (docs/SNARK.md section 6.1; snarkjs src/groth16_verify.js): canonical decimal strings, affine points
with z = "1" (G1) / ["1", "0"] (G2), G2 coordinates [[x.c0, x.c1], [y.c0, y.c1]]; infinity ["0","1","0"] /
[["0","0"],["1","0"],["0","0"]]. Parsers are strict: exact key sets, canonical decimals (no sign, no leading
zeros, no hex), coordinates < p, public signals < r. Curve membership of proof points is left to the
verifier (it raises precise errors); verifying keys are checked on the curve and not at infinity.

Binary (docs/SNARK.md section 6.1; iden3 binfileutils, r1csfile doc/r1cs_bin_format.md): little-endian
container `magic | u32 version | u32 nSections | (u32 type | u64 length | payload)*`, field elements 32
bytes LE.
"""

from __future__ import annotations

import json
import re
import struct

from protocol.snark.curve import (
    P,
    g1_from_bytes,
    g1_to_bytes,
    g2_from_bytes,
    g2_to_bytes,
    is_on_curve_g1,
    is_on_curve_g2,
    to_pyecc_g1,
    to_pyecc_g2,
)
from protocol.snark.errors import SnarkFormatError
from protocol.snark.field import R
from protocol.snark.groth16 import Proof, VerifyingKey
from protocol.snark.r1cs import LC, R1CS

__all__ = [
    "PROOF_BYTES",
    "alphabeta_12",
    "proof_from_bytes",
    "proof_from_json",
    "proof_to_bytes",
    "proof_to_json",
    "public_from_json",
    "public_to_json",
    "r1cs_from_bytes",
    "r1cs_to_bytes",
    "read_json",
    "vk_from_bytes",
    "vk_from_json",
    "vk_to_bytes",
    "vk_to_json",
    "write_json",
    "wtns_from_bytes",
    "wtns_to_bytes",
]

PROOF_BYTES = 192  # A 48 | B 96 | C 48
_DEC = re.compile(r"0|[1-9][0-9]*")
_VK_KEYS = {"protocol", "curve", "nPublic", "vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC"}
_PROOF_KEYS = {"pi_a", "pi_b", "pi_c", "protocol", "curve"}
_G1_INF = ["0", "1", "0"]
_G2_INF = [["0", "0"], ["1", "0"], ["0", "0"]]


# ------------------------------------------------------------------------------------------ JSON
def _g1_json(pt) -> list:
    return list(_G1_INF) if pt is None else [str(pt[0]), str(pt[1]), "1"]


def _g2_json(pt) -> list:
    if pt is None:
        return [list(v) for v in _G2_INF]
    (x0, x1), (y0, y1) = pt
    return [[str(x0), str(x1)], [str(y0), str(y1)], ["1", "0"]]


def _dec(s, bound: int, what: str) -> int:
    if not isinstance(s, str) or not _DEC.fullmatch(s):
        raise SnarkFormatError(f"{what}: expected a canonical decimal string, got {s!r}")
    v = int(s)
    if v >= bound:
        raise SnarkFormatError(f"{what}: value {v} is not below the modulus")
    return v


def _g1_parse(obj, what: str):
    if obj == _G1_INF:
        return None
    if not isinstance(obj, list) or len(obj) != 3 or obj[2] != "1":
        raise SnarkFormatError(f"{what}: expected [x, y, \"1\"] (affine G1) or the infinity encoding")
    return (_dec(obj[0], P, f"{what}.x"), _dec(obj[1], P, f"{what}.y"))


def _g2_parse(obj, what: str):
    if obj == _G2_INF:
        return None
    ok = isinstance(obj, list) and len(obj) == 3 and obj[2] == ["1", "0"]
    ok = ok and all(isinstance(c, list) and len(c) == 2 for c in obj[:2])
    if not ok:
        raise SnarkFormatError(f"{what}: expected [[x.c0, x.c1], [y.c0, y.c1], [\"1\", \"0\"]] or infinity")
    (x0, x1), (y0, y1) = ((_dec(v, P, f"{what}[{i}][{k}]") for k, v in enumerate(c)) for i, c in enumerate(obj[:2]))
    return ((x0, x1), (y0, y1))


def _check_header(obj: dict, keys: set, optional: set, what: str) -> None:
    if not isinstance(obj, dict):
        raise SnarkFormatError(f"{what}: expected a JSON object")
    missing, extra = keys - set(obj), set(obj) - keys - optional
    if missing or extra:
        raise SnarkFormatError(f"{what}: missing keys {sorted(missing)}, unexpected keys {sorted(extra)}")
    if obj["protocol"] != "groth16":
        raise SnarkFormatError(f"{what}: protocol must be \"groth16\", got {obj['protocol']!r}")
    curve = obj["curve"]
    if not isinstance(curve, str) or re.sub(r"[^A-Z0-9]", "", curve.upper()) != "BLS12381":
        raise SnarkFormatError(f"{what}: curve must be bls12381, got {curve!r}")


def alphabeta_12(vk: VerifyingKey) -> list:
    """snarkjs's vk_alphabeta_12 = e(alpha_1, beta_2) in its convention: e_pyecc(beta_2, alpha_1)^(-3) in the
    tower layout [m % 2][m // 2] = [a + b, b] with a, b the py_ecc coefficients m, m + 6 (docs/SNARK.md
    section 6.1)."""
    from py_ecc.optimized_bls12_381 import final_exponentiate
    from py_ecc.optimized_bls12_381.optimized_pairing import miller_loop

    e = final_exponentiate(miller_loop(to_pyecc_g2(vk.beta_2), to_pyecc_g1(vk.alpha_1), final_exponentiate=False))
    g = (e * e * e).inv()
    c = [int(v) for v in g.coeffs]
    out = [[None] * 3 for _ in range(2)]
    for m in range(6):
        a, b = c[m], c[m + 6]
        out[m % 2][m // 2] = [str((a + b) % P), str(b)]
    return out


def vk_to_json(vk: VerifyingKey, *, with_alphabeta: bool = False) -> dict:
    out = {"protocol": "groth16", "curve": "bls12381", "nPublic": vk.n_public,
           "vk_alpha_1": _g1_json(vk.alpha_1), "vk_beta_2": _g2_json(vk.beta_2),
           "vk_gamma_2": _g2_json(vk.gamma_2), "vk_delta_2": _g2_json(vk.delta_2)}
    if with_alphabeta:
        out["vk_alphabeta_12"] = alphabeta_12(vk)
    out["IC"] = [_g1_json(p) for p in vk.ic]
    return out


def vk_from_json(obj: dict) -> VerifyingKey:
    """Strict parse; the optional vk_alphabeta_12 is shape-checked and otherwise ignored (as snarkjs does)."""
    _check_header(obj, _VK_KEYS, {"vk_alphabeta_12"}, "verification key")
    n = obj["nPublic"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SnarkFormatError(f"verification key: nPublic must be a non-negative int, got {n!r}")
    ic = obj["IC"]
    if not isinstance(ic, list) or len(ic) != n + 1:
        raise SnarkFormatError(f"verification key: IC must have nPublic + 1 = {n + 1} entries")
    ab = obj.get("vk_alphabeta_12")
    if ab is not None:
        if not (isinstance(ab, list) and len(ab) == 2 and all(isinstance(r, list) and len(r) == 3 for r in ab)
                and all(isinstance(c, list) and len(c) == 2 for r in ab for c in r)):
            raise SnarkFormatError("verification key: vk_alphabeta_12 must be a 2 x 3 x 2 array")
        for r in ab:
            for c in r:
                for v in c:
                    _dec(v, P, "vk_alphabeta_12")
    vk = VerifyingKey(alpha_1=_g1_parse(obj["vk_alpha_1"], "vk_alpha_1"), beta_2=_g2_parse(obj["vk_beta_2"], "vk_beta_2"),
                      gamma_2=_g2_parse(obj["vk_gamma_2"], "vk_gamma_2"), delta_2=_g2_parse(obj["vk_delta_2"], "vk_delta_2"),
                      ic=tuple(_g1_parse(p, f"IC[{i}]") for i, p in enumerate(ic)))
    for name, pt, on_curve in (("vk_alpha_1", vk.alpha_1, is_on_curve_g1), ("vk_beta_2", vk.beta_2, is_on_curve_g2),
                               ("vk_gamma_2", vk.gamma_2, is_on_curve_g2), ("vk_delta_2", vk.delta_2, is_on_curve_g2)):
        if pt is None or not on_curve(pt):
            raise SnarkFormatError(f"verification key: {name} is infinity or not on the curve")
    if not all(is_on_curve_g1(p) for p in vk.ic):
        raise SnarkFormatError("verification key: an IC point is not on the curve")
    return vk


def proof_to_json(proof: Proof) -> dict:
    return {"pi_a": _g1_json(proof.a), "pi_b": _g2_json(proof.b), "pi_c": _g1_json(proof.c),
            "protocol": "groth16", "curve": "bls12381"}


def proof_from_json(obj: dict) -> Proof:
    _check_header(obj, _PROOF_KEYS, set(), "proof")
    return Proof(a=_g1_parse(obj["pi_a"], "pi_a"), b=_g2_parse(obj["pi_b"], "pi_b"), c=_g1_parse(obj["pi_c"], "pi_c"))


def public_to_json(values) -> list:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < R:
            raise ValueError(f"public signal {i} must be an int in [0, r) (encode negatives as r - |v|), got {v!r}")
        out.append(str(v))
    return out


def public_from_json(obj) -> list[int]:
    if not isinstance(obj, list):
        raise SnarkFormatError("public signals: expected a JSON list of decimal strings")
    return [_dec(v, R, f"public signal {i}") for i, v in enumerate(obj)]


def write_json(path, obj) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ------------------------------------------------------------------------------ iden3 containers
def _fe(v: int) -> bytes:
    return (v % R).to_bytes(32, "little")


def _container(magic: bytes, version: int, sections: list[tuple[int, bytes]]) -> bytes:
    out = [magic, struct.pack("<II", version, len(sections))]
    for typ, payload in sections:
        out.append(struct.pack("<IQ", typ, len(payload)))
        out.append(payload)
    return b"".join(out)


def _sections(data: bytes, magic: bytes, version: int) -> dict[int, bytes]:
    if not isinstance(data, (bytes, bytearray)) or len(data) < 12 or data[:4] != magic:
        raise SnarkFormatError(f"not a {magic.decode()} file (bad magic or truncated)")
    ver, n = struct.unpack_from("<II", data, 4)
    if ver != version:
        raise SnarkFormatError(f"{magic.decode()} version {ver} is not supported (expected {version})")
    pos, out = 12, {}
    for _ in range(n):
        if pos + 12 > len(data):
            raise SnarkFormatError(f"{magic.decode()}: truncated section header")
        typ, size = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if typ in out or pos + size > len(data):
            raise SnarkFormatError(f"{magic.decode()}: duplicate or truncated section {typ}")
        out[typ] = bytes(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise SnarkFormatError(f"{magic.decode()}: {len(data) - pos} trailing bytes")
    return out


def _field_header(buf: bytes, what: str) -> int:
    if len(buf) < 36 or struct.unpack_from("<I", buf)[0] != 32 or int.from_bytes(buf[4:36], "little") != R:
        raise SnarkFormatError(f"{what}: header must declare n8 = 32 and the BLS12-381 scalar field")
    return 36


def _lc_bytes(lc: LC) -> bytes:
    terms = sorted(lc.items())
    return struct.pack("<I", len(terms)) + b"".join(struct.pack("<I", w) + _fe(c) for w, c in terms)


def r1cs_to_bytes(cs: R1CS) -> bytes:
    """iden3 .r1cs version 1: header, constraints (LC terms sorted by wire, merged, no zeros), wire->label map."""
    header = (struct.pack("<I", 32) + R.to_bytes(32, "little")
              + struct.pack("<IIIIQI", cs.n_wires, cs.n_pub_out, cs.n_pub_in, cs.n_prv_in, cs.n_wires, cs.n_constraints))
    body = b"".join(_lc_bytes(a) + _lc_bytes(b) + _lc_bytes(c) for a, b, c, _ in cs.constraints)
    labels = b"".join(struct.pack("<Q", i) for i in range(cs.n_wires))
    return _container(b"r1cs", 1, [(1, header), (2, body), (3, labels)])


def r1cs_from_bytes(data: bytes) -> R1CS:
    """Parse a .r1cs file into an R1CS (wire names are generic, values unassigned)."""
    secs = _sections(data, b"r1cs", 1)
    if 1 not in secs or 2 not in secs:
        raise SnarkFormatError("r1cs: header or constraint section missing")
    h = secs[1]
    pos = _field_header(h, "r1cs")
    if len(h) != pos + 28:
        raise SnarkFormatError("r1cs: header section has the wrong length")
    n_wires, n_out, n_in, n_prv, _n_labels, n_cons = struct.unpack_from("<IIIIQI", h, pos)
    if n_wires < 1 + n_out + n_in + n_prv:
        raise SnarkFormatError("r1cs: fewer wires than declared public and private inputs")
    cs = R1CS()
    for kind, count in ((cs.public_output, n_out), (cs.public_input, n_in), (cs.private_input, n_prv)):
        for _ in range(count):
            kind(f"w{cs.n_wires}")
    while cs.n_wires < n_wires:
        cs.private(f"w{cs.n_wires}")
    body, pos = secs[2], 0
    try:
        for j in range(n_cons):
            lcs = []
            for _ in range(3):
                (n_terms,) = struct.unpack_from("<I", body, pos)
                pos += 4
                lc = LC()
                for _ in range(n_terms):
                    (w,) = struct.unpack_from("<I", body, pos)
                    c = int.from_bytes(body[pos + 4:pos + 36], "little")
                    if len(body) < pos + 36 or w >= n_wires or c >= R or w in lc:
                        raise SnarkFormatError(f"r1cs: constraint {j} has a bad term (wire {w})")
                    pos += 36
                    lc.add_term(w, c)
                lcs.append(lc)
            cs.enforce(*lcs, f"c{j}")
    except struct.error as exc:
        raise SnarkFormatError("r1cs: constraint section is truncated") from exc
    if pos != len(body):
        raise SnarkFormatError("r1cs: trailing bytes in the constraint section")
    return cs


def wtns_to_bytes(witness) -> bytes:
    """iden3 .wtns version 2: header (n8, r, nWitness) then the values, wire 0 = 1 first."""
    z = list(witness)
    if not z or z[0] != 1 or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < R for v in z):
        raise ValueError("witness must start with 1 and contain ints in [0, r)")
    header = struct.pack("<I", 32) + R.to_bytes(32, "little") + struct.pack("<I", len(z))
    return _container(b"wtns", 2, [(1, header), (2, b"".join(_fe(v) for v in z))])


def wtns_from_bytes(data: bytes) -> list[int]:
    secs = _sections(data, b"wtns", 2)
    if 1 not in secs or 2 not in secs:
        raise SnarkFormatError("wtns: header or value section missing")
    h = secs[1]
    pos = _field_header(h, "wtns")
    if len(h) != pos + 4:
        raise SnarkFormatError("wtns: header section has the wrong length")
    (n,) = struct.unpack_from("<I", h, pos)
    vals = secs[2]
    if len(vals) != 32 * n:
        raise SnarkFormatError(f"wtns: expected {n} values of 32 bytes, got {len(vals)} bytes")
    z = [int.from_bytes(vals[i:i + 32], "little") for i in range(0, len(vals), 32)]
    if any(v >= R for v in z) or not z or z[0] != 1:
        raise SnarkFormatError("wtns: values must be < r and wire 0 must be 1")
    return z


# ------------------------------------------------------------------------------ compressed bytes
def proof_to_bytes(proof: Proof) -> bytes:
    """192 bytes: A (48) | B (96) | C (48), ZCash compressed encodings."""
    return g1_to_bytes(proof.a) + g2_to_bytes(proof.b) + g1_to_bytes(proof.c)


def proof_from_bytes(data: bytes) -> Proof:
    """Decode (curve equation checked here; subgroup membership and infinity are the verifier's checks)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != PROOF_BYTES:
        raise SnarkFormatError(f"a compressed proof is {PROOF_BYTES} bytes")
    try:
        return Proof(a=g1_from_bytes(data[:48], subgroup_check=False),
                     b=g2_from_bytes(data[48:144], subgroup_check=False),
                     c=g1_from_bytes(data[144:], subgroup_check=False))
    except ValueError as exc:
        raise SnarkFormatError(f"compressed proof: {exc}") from exc


def vk_to_bytes(vk: VerifyingKey) -> bytes:
    """alpha_1 (48) | beta_2 | gamma_2 | delta_2 (96 each) | u32 BE nPublic | IC_0..IC_l (48 each)."""
    return b"".join([g1_to_bytes(vk.alpha_1), g2_to_bytes(vk.beta_2), g2_to_bytes(vk.gamma_2),
                     g2_to_bytes(vk.delta_2), vk.n_public.to_bytes(4, "big"), *(g1_to_bytes(p) for p in vk.ic)])


def vk_from_bytes(data: bytes) -> VerifyingKey:
    """Decode with curve and subgroup checks on every point."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 340:
        raise SnarkFormatError("compressed verifying key is truncated")
    n = int.from_bytes(data[336:340], "big")
    if len(data) != 340 + 48 * (n + 1):
        raise SnarkFormatError(f"compressed verifying key with nPublic = {n} must be {340 + 48 * (n + 1)} bytes")
    try:
        vk = VerifyingKey(alpha_1=g1_from_bytes(data[:48]), beta_2=g2_from_bytes(data[48:144]),
                          gamma_2=g2_from_bytes(data[144:240]), delta_2=g2_from_bytes(data[240:336]),
                          ic=tuple(g1_from_bytes(data[340 + 48 * i:388 + 48 * i]) for i in range(n + 1)))
    except ValueError as exc:
        raise SnarkFormatError(f"compressed verifying key: {exc}") from exc
    if None in (vk.alpha_1, vk.beta_2, vk.gamma_2, vk.delta_2):
        raise SnarkFormatError("compressed verifying key: alpha, beta, gamma or delta is the point at infinity")
    return vk
