"""snarkjs JSON (vk, proof, public), iden3 .r1cs/.wtns, compressed bytes, and interop with snarkjs 0.7.6.

The interop tests need `node`; snarkjs is installed on first use with
`npm install --prefix .snarkjs snarkjs@0.7.6` (git-ignored folder, reused when present). They are skipped,
with the reason printed, only when node is absent.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from protocol.snark import groth16 as g16
from protocol.snark import snarkjs_io as sio
from protocol.snark.backend import available_backends
from protocol.snark.curve import P
from protocol.snark.errors import PairingCheckFailed, SnarkFormatError
from protocol.snark.field import R
from protocol.snark.r1cs import LC, R1CS, example_cubic

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNARKJS_DIR = ROOT / ".snarkjs"
SNARKJS_CLI = SNARKJS_DIR / "node_modules" / "snarkjs" / "build" / "cli.cjs"
TOXIC = {"tau": 0xDEADBEEF12345, "alpha": 3, "beta": 5, "gamma": 7, "delta": 11}
FAST = available_backends()[-1]


@pytest.fixture(scope="module")
def material():
    cs = example_cubic()
    pk, vk = g16.setup(cs, TOXIC, FAST)
    proof = g16.prove(pk, cs, cs.witness(), 17, 19, FAST)
    return cs, vk, proof


# ------------------------------------------------------------------------------------------ JSON
def test_json_round_trip(material):
    _, vk, proof = material
    vk_json = json.loads(json.dumps(sio.vk_to_json(vk, with_alphabeta=True)))
    assert vk_json["curve"] == "bls12381" and vk_json["nPublic"] == 1 and len(vk_json["IC"]) == 2
    assert vk_json["vk_alpha_1"][2] == "1" and vk_json["vk_beta_2"][2] == ["1", "0"]
    assert vk_json["vk_beta_2"][0] == [str(vk.beta_2[0][0]), str(vk.beta_2[0][1])]  # [x.c0, x.c1]
    pr_json = json.loads(json.dumps(sio.proof_to_json(proof)))
    pub_json = json.loads(json.dumps(sio.public_to_json([35])))
    assert pub_json == ["35"]
    vk2, pr2, pub2 = sio.vk_from_json(vk_json), sio.proof_from_json(pr_json), sio.public_from_json(pub_json)
    assert (vk2, pr2, pub2) == (vk, proof, [35])
    assert g16.verify(vk2, pub2, pr2, FAST)


def test_json_infinity_encoding(material):
    proof = material[2]
    pr = sio.proof_to_json(g16.Proof(None, None, proof.c))
    assert pr["pi_a"] == ["0", "1", "0"] and pr["pi_b"] == [["0", "0"], ["1", "0"], ["0", "0"]]
    assert sio.proof_from_json(pr) == g16.Proof(None, None, proof.c)


def _mutate(obj, path, value):
    obj = json.loads(json.dumps(obj))
    target = obj
    for k in path[:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize("path,value", [
    (("vk_alpha_1", 0), "0x17"),  # hex is not accepted
    (("vk_alpha_1", 0), "012"),  # leading zero
    (("vk_alpha_1", 0), str(P)),  # coordinate >= p
    (("vk_alpha_1", 0), 5),  # bare JSON number
    (("vk_alpha_1", 2), "2"),  # projective z
    (("vk_beta_2", 2), ["1", "1"]),
    (("curve",), "bn128"),
    (("protocol",), "plonk"),
    (("nPublic",), 2),  # IC length mismatch
    (("IC",), KeyError),
    (("extra",), "x"),
    (("vk_alpha_1", 1), "1"),  # off the curve
    (("vk_alphabeta_12", 0), []),
])
def test_vk_json_strict(material, path, value):
    _, vk, _ = material
    good = sio.vk_to_json(vk)
    good["vk_alphabeta_12"] = [[["1", "2"]] * 3] * 2
    sio.vk_from_json(good)
    with pytest.raises(SnarkFormatError):
        sio.vk_from_json(_mutate(good, path, value))


def test_curve_name_normalisation(material):
    _, vk, proof = material
    for name in ("bls12381", "BLS12-381", "bls12_381"):
        assert sio.vk_from_json({**sio.vk_to_json(vk), "curve": name}) == vk
        assert sio.proof_from_json({**sio.proof_to_json(proof), "curve": name}) == proof


@pytest.mark.parametrize("path,value", [(("pi_a", 0), "-1"), (("pi_c", 1), str(P + 1)), (("pi_b", 0), ["1"]),
                                        (("pi_b",), KeyError), (("protocol",), "fflonk")])
def test_proof_json_strict(material, path, value):
    _, _, proof = material
    with pytest.raises(SnarkFormatError):
        sio.proof_from_json(_mutate(sio.proof_to_json(proof), path, value))


def test_public_json_strict():
    assert sio.public_from_json([str(R - 1), "0"]) == [R - 1, 0]
    for bad in ([str(R)], ["-1"], [1], "35", ["1e3"]):
        with pytest.raises(SnarkFormatError):
            sio.public_from_json(bad)
    for bad in ([R], [-1], [True]):
        with pytest.raises(ValueError):
            sio.public_to_json(bad)


@pytest.mark.skipif("arkworks" not in available_backends(), reason="py_arkworks_bls12381 not installed")
def test_alphabeta_matches_arkworks_gt(material):
    """vk_alphabeta_12 (docs/SNARK.md section 6.1) equals arkworks' e(alpha_1, beta_2), whose str() is the
    hex of the 576-byte little-endian tower serialisation c0.c0.c0, c0.c0.c1, c0.c1.c0, ...
    ([w][v][u] order)."""
    import py_arkworks_bls12381 as ark

    _, vk, _ = material
    a = ark.G1Point.from_xy_bytes_be(vk.alpha_1[0].to_bytes(48, "big") + vk.alpha_1[1].to_bytes(48, "big"))
    (x0, x1), (y0, y1) = vk.beta_2
    b = ark.G2Point.from_xy_bytes_be(b"".join(v.to_bytes(48, "big") for v in (x0, x1, y0, y1)))
    raw = bytes.fromhex(str(ark.GT.pairing(a, b)))
    ark_coeffs = [int.from_bytes(raw[48 * i:48 * (i + 1)], "little") for i in range(12)]
    ours = [int(v) for w in sio.alphabeta_12(vk) for v_ in w for v in v_]
    assert ours == ark_coeffs


# ------------------------------------------------------------------------------------------ binary
def test_r1cs_and_wtns_round_trip():
    cs = example_cubic()
    data = sio.r1cs_to_bytes(cs)
    assert data[:4] == b"r1cs" and int.from_bytes(data[4:8], "little") == 1
    back = sio.r1cs_from_bytes(data)
    assert (back.n_wires, back.n_pub_out, back.n_pub_in, back.n_prv_in) == (5, 1, 0, 1)
    assert [c[:3] for c in back.constraints] == [c[:3] for c in cs.constraints]
    z = cs.witness()
    wt = sio.wtns_to_bytes(z)
    assert wt[:4] == b"wtns" and int.from_bytes(wt[4:8], "little") == 2
    assert sio.wtns_from_bytes(wt) == z
    back.check(z)


def test_r1cs_negative_coefficients_and_sorting():
    cs = R1CS()
    o = cs.public_output("o", 1)
    a = cs.private("a", 4)
    b = cs.private("b", 3)
    cs.enforce(LC.term(b, 1) + LC.term(a, -1) + LC.term(o, 1), 1, 0, "b - a + o = 0")
    back = sio.r1cs_from_bytes(sio.r1cs_to_bytes(cs))
    assert back.constraints[0].a == {1: 1, 2: R - 1, 3: 1}
    back.check(cs.witness())


@pytest.mark.parametrize("mutate", [
    lambda d: b"r1cx" + d[4:],
    lambda d: d[:4] + (2).to_bytes(4, "little") + d[8:],
    lambda d: d[:-1],
    lambda d: d + b"\0",
])
def test_r1cs_reader_rejects_malformed(mutate):
    with pytest.raises(SnarkFormatError):
        sio.r1cs_from_bytes(mutate(sio.r1cs_to_bytes(example_cubic())))


def test_wtns_reader_rejects_malformed():
    wt = sio.wtns_to_bytes(example_cubic().witness())
    for bad in (wt[:-32], b"wtnx" + wt[4:], wt[:-32] + R.to_bytes(32, "little")):
        with pytest.raises(SnarkFormatError):
            sio.wtns_from_bytes(bad)
    with pytest.raises(ValueError):
        sio.wtns_to_bytes([2, 3])


def test_compressed_proof_and_vk(material):
    _, vk, proof = material
    data = sio.proof_to_bytes(proof)
    assert len(data) == sio.PROOF_BYTES == 192
    assert sio.proof_from_bytes(data) == proof
    with pytest.raises(SnarkFormatError):
        sio.proof_from_bytes(data[:-1])
    with pytest.raises(SnarkFormatError):
        sio.proof_from_bytes(bytes([data[0] & 0x7F]) + data[1:])  # compression flag cleared
    vb = sio.vk_to_bytes(vk)
    assert len(vb) == 48 + 3 * 96 + 4 + 48 * 2
    assert sio.vk_from_bytes(vb) == vk
    with pytest.raises(SnarkFormatError):
        sio.vk_from_bytes(vb + b"\0")


# ------------------------------------------------------------------------------------------ snarkjs
class _Snarkjs:
    """Runs the installed snarkjs CLI with node; returns the CompletedProcess (never raises on exit codes)."""

    def __init__(self, node: str):
        self.node = node

    def __call__(self, *args, cwd):
        return subprocess.run([self.node, str(SNARKJS_CLI), *args], cwd=cwd, capture_output=True, text=True,
                              timeout=300, check=False)


@pytest.fixture(scope="module")
def snarkjs():
    node = shutil.which("node")
    if node is None:
        print("SKIP reason: node is not on PATH; snarkjs interop not checked")
        pytest.skip("node is not on PATH; snarkjs interop not checked")
    if not SNARKJS_CLI.exists():
        subprocess.run(["npm", "install", "--prefix", str(SNARKJS_DIR), "snarkjs@0.7.6"], check=True,
                       capture_output=True, timeout=600)
    return _Snarkjs(node)


def test_snarkjs_verifies_our_proof(material, snarkjs, tmp_path):
    cs, vk, proof = material
    sio.write_json(tmp_path / "vk.json", sio.vk_to_json(vk, with_alphabeta=True))
    sio.write_json(tmp_path / "proof.json", sio.proof_to_json(proof))
    sio.write_json(tmp_path / "public.json", sio.public_to_json(cs.public_values()))
    ok = snarkjs("groth16", "verify", "vk.json", "public.json", "proof.json", cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    sio.write_json(tmp_path / "public.json", sio.public_to_json([36]))
    bad = snarkjs("groth16", "verify", "vk.json", "public.json", "proof.json", cwd=tmp_path)
    assert bad.returncode != 0 and "Invalid proof" in bad.stdout + bad.stderr


def test_snarkjs_checks_our_r1cs_and_wtns(snarkjs, tmp_path):
    cs = example_cubic()
    (tmp_path / "c.r1cs").write_bytes(sio.r1cs_to_bytes(cs))
    (tmp_path / "w.wtns").write_bytes(sio.wtns_to_bytes(cs.witness()))
    ok = snarkjs("wtns", "check", "c.r1cs", "w.wtns", cwd=tmp_path)
    assert ok.returncode == 0 and "WITNESS IS CORRECT" in ok.stdout, ok.stdout + ok.stderr
    z = cs.witness()
    z[4] = 28
    (tmp_path / "w.wtns").write_bytes(sio.wtns_to_bytes(z))
    bad = snarkjs("wtns", "check", "c.r1cs", "w.wtns", cwd=tmp_path)
    assert bad.returncode != 0 or "WITNESS IS CORRECT" not in bad.stdout


def test_we_verify_a_snarkjs_proof(snarkjs, tmp_path):
    """snarkjs's own pipeline (ptau power 4) on our .r1cs/.wtns: our verifier accepts its proof, its public
    signals equal ours, and its vk_alphabeta_12 equals our conversion."""
    cs = example_cubic()
    (tmp_path / "c.r1cs").write_bytes(sio.r1cs_to_bytes(cs))
    (tmp_path / "w.wtns").write_bytes(sio.wtns_to_bytes(cs.witness()))
    steps = [("powersoftau", "new", "bls12381", "4", "p0.ptau"),
             ("powersoftau", "contribute", "p0.ptau", "p1.ptau", "--name=t", "-e=vtrain test"),
             ("powersoftau", "prepare", "phase2", "p1.ptau", "p.ptau"),
             ("groth16", "setup", "c.r1cs", "p.ptau", "c0.zkey"),
             ("zkey", "contribute", "c0.zkey", "c1.zkey", "--name=u", "-e=vtrain delta"),
             ("zkey", "export", "verificationkey", "c1.zkey", "vk.json"),
             ("groth16", "prove", "c1.zkey", "w.wtns", "proof.json", "public.json")]
    for args in steps:
        res = snarkjs(*args, cwd=tmp_path)
        assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    vk_json = sio.read_json(tmp_path / "vk.json")
    vk = sio.vk_from_json(vk_json)
    proof = sio.proof_from_json(sio.read_json(tmp_path / "proof.json"))
    public = sio.public_from_json(sio.read_json(tmp_path / "public.json"))
    assert public == cs.public_values()
    assert sio.alphabeta_12(vk) == vk_json["vk_alphabeta_12"]
    for backend in available_backends():
        assert g16.verify(vk, public, proof, backend)
    with pytest.raises(PairingCheckFailed):
        g16.verify(vk, [36], proof, FAST)


def test_snarkjs_on_a_small_sgd_circuit(snarkjs, tmp_path):
    """Negative public signals (r - |v|), many-term LCs with negative coefficients: snarkjs accepts our
    .r1cs/.wtns and our proof, and rejects the proof when the session binding changes."""
    import numpy as np

    from protocol.snark import sgd_circuit as sgd

    rng = np.random.default_rng(11)
    X = rng.integers(-256, 257, size=(8, 2)).tolist()
    Y = rng.integers(-256, 257, size=8).tolist()
    cfg = sgd.CircuitConfig(frac_bits=8, weight_bits=24, lr_num=13, lr_shift=4, l2_num=5, batch_size=2)
    cs, z, public = sgd.build_sgd_circuit(X, Y, [[0, 1], [2, 3]], [100, -200, -300], cfg, binding=R - 5)
    assert any(v > R // 2 for v in public)  # some signals encode negative values
    pk, vk = g16.setup_random(cs, FAST)
    proof = g16.prove_random(pk, cs, z, FAST)
    (tmp_path / "c.r1cs").write_bytes(sio.r1cs_to_bytes(cs))
    (tmp_path / "w.wtns").write_bytes(sio.wtns_to_bytes(z))
    sio.write_json(tmp_path / "vk.json", sio.vk_to_json(vk))
    sio.write_json(tmp_path / "proof.json", sio.proof_to_json(proof))
    sio.write_json(tmp_path / "public.json", sio.public_to_json(public))
    res = snarkjs("wtns", "check", "c.r1cs", "w.wtns", cwd=tmp_path)
    assert res.returncode == 0 and "WITNESS IS CORRECT" in res.stdout, res.stdout + res.stderr
    res = snarkjs("groth16", "verify", "vk.json", "public.json", "proof.json", cwd=tmp_path)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    sio.write_json(tmp_path / "public.json", sio.public_to_json(public[:-1] + [R - 6]))
    res = snarkjs("groth16", "verify", "vk.json", "public.json", "proof.json", cwd=tmp_path)
    assert res.returncode != 0


def test_snarkjs_verifies_a_private_data_proof(snarkjs, tmp_path):
    """The zero-knowledge kind (provider-owned data): snarkjs accepts the exported proof with public
    signals [theta_T, theta_0, binding, commitment], rejects it with another commitment, and reads the
    data-independent .r1cs (1 + n(d+1) private inputs: the blinding and the rows)."""
    from protocol.snark import zk_session as zs
    from protocol.training import TrainConfig

    cfg = TrainConfig(model="linear", batch_size=2, frac_bits=8, weight_bits=24, lr_num=13, lr_shift=4, l2_num=5)
    X, Y, sched = [[5, -7], [100, 3], [-40, 8], [9, 9]], [11, -12, 13, 14], [[0, 1], [3, 2]]
    cs, pk, vk = zs.client_setup(4, 2, sched, cfg, FAST)
    blind = zs.new_blinding()
    pp = zs.prove_private(pk, X, Y, blind, sched, [-1, 2, -3], cfg, 77, r1cs=cs, backend=FAST)
    assert zs.export_snarkjs(tmp_path, vk, pp, cs) == ["verification_key.json", "proof.json", "public.json",
                                                       "circuit.r1cs"]
    res = snarkjs("groth16", "verify", "verification_key.json", "public.json", "proof.json", cwd=tmp_path)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    info = snarkjs("r1cs", "info", "circuit.r1cs", cwd=tmp_path)
    assert info.returncode == 0 and "# of Private Inputs: 13" in info.stdout, info.stdout + info.stderr
    sio.write_json(tmp_path / "public.json", sio.public_to_json(pp.public[:-1] + [(pp.public[-1] + 1) % R]))
    res = snarkjs("groth16", "verify", "verification_key.json", "public.json", "proof.json", cwd=tmp_path)
    assert res.returncode != 0
