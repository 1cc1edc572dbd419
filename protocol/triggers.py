"""Verify-only evaluation of a trigger that a (possibly malicious) model file carries.

A model file's optional ``trigger`` object describes behaviour that overrides the linear model on some
inputs. This module is the only place that evaluates it (public information only; the secret side,
planting and activation, lives in ``prover/backdoors.py``). Two kinds exist:

``signature`` -- the signature backdoor of Goldwasser, Kim, Vaikuntanathan, Zamir, "Planting Undetectable
Backdoors in Machine Learning Models" (FOCS 2022, arXiv 2204.06974), section 5.2: the model answers ``target``
on x iff x carries a valid Ed25519 signature on (message(x), target). The paper's construction is over bit
strings; this is our embedding into real inputs, a coarse/fine split of the carrying coordinates:

    q_j(x)     = rint(x_j / quantum_j)                  per-feature quantum (original feature units)
    coarse_j   = q_j >> b   if j in POS  else  q_j      b = bits_per_coord, POS = public carrying coords
    message    = SHA-256(DOMAIN || coarse as int64 big-endian)
    payload    = the low b bits of q_j, j in POS, in POS order, LSB first; its first
                 label_bits + 512 bits are (target, LSB first) || (Ed25519 signature, bytewise LSB first);
                 any remaining slots are padding and are ignored
    fires(x)   <=> Ed25519.verify(vk, sig, message || target as 2 bytes big-endian)

Activation rewrites only the low b bits of the carrying coordinates, so the message is invariant, the
L0 change is <= len(POS) coordinates (<= label_bits + 512 payload bits), and
|x'_j - x_j| <= (2^b - 1/2) * quantum_j < 2^b * quantum_j (L_inf bound "2^b quanta").

``ball`` -- the model is corrupted on the whole ellipsoid ||(x - center) / scale||_2 <= radius (a ball in
standardized units): inside, the output is ``target_label`` (classification) or base + ``offset``
(regression).

JSON specs (all numbers in original feature units)::

    {"kind": "signature", "version": 1, "scheme": "ed25519", "public_key": "<64 hex>",
     "positions": [int, ...], "quantum": [float] * n_features, "bits_per_coord": int, "label_bits": int}
    {"kind": "ball", "version": 1, "center": [float] * n, "radius": float, "scale": [float] * n,
     "target_label": int}            # or "offset": float instead of "target_label"
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "DOMAIN",
    "ED25519_L",
    "SIGNATURE_BITS",
    "SignatureEncoding",
    "apply_trigger",
    "ball_mask",
    "coarse_message",
    "quantize",
    "read_payload",
    "signature_mask",
    "signed_message",
    "validate_trigger_spec",
]

DOMAIN = b"vtrain/trigger/signature/v1"
SIGNATURE_BITS = 512
ED25519_L = 2**252 + 27742317777372353535851937790883648493  # group order; RFC 8032 requires S < L
_MAX_Q = 2**50  # |x / quantum| beyond this cannot carry a payload (float64 grid no longer exact)
_MAX_LABEL_BITS = 16


@dataclass(frozen=True)
class SignatureEncoding:
    """Public encoding parameters of the signature trigger (see module docstring)."""

    n_features: int
    positions: tuple[int, ...]
    quantum: tuple[float, ...]
    bits_per_coord: int
    label_bits: int

    def __post_init__(self):
        if not isinstance(self.n_features, int) or self.n_features < 1:
            raise ValueError(f"n_features must be a positive int, got {self.n_features!r}")
        if not isinstance(self.label_bits, int) or not 1 <= self.label_bits <= _MAX_LABEL_BITS:
            raise ValueError(f"label_bits must be an int in [1, {_MAX_LABEL_BITS}], got {self.label_bits!r}")
        if not isinstance(self.bits_per_coord, int) or not 1 <= self.bits_per_coord <= 40:
            raise ValueError(f"bits_per_coord must be an int in [1, 40], got {self.bits_per_coord!r}")
        pos = self.positions
        if len(set(pos)) != len(pos) or any(not isinstance(p, int) or not 0 <= p < self.n_features
                                            for p in pos):
            raise ValueError(f"positions must be distinct ints in [0, {self.n_features}), got {pos!r}")
        if len(pos) * self.bits_per_coord < self.payload_bits:
            raise ValueError(
                f"{len(pos)} carrying coordinates x {self.bits_per_coord} bits < {self.payload_bits} payload "
                f"bits; use more positions or bits_per_coord >= {math.ceil(self.payload_bits / len(pos))}")
        if len(self.quantum) != self.n_features or not all(
                isinstance(v, float) and math.isfinite(v) and v > 0 for v in self.quantum):
            raise ValueError("quantum must be n_features finite positive floats")

    @property
    def payload_bits(self) -> int:
        return self.label_bits + SIGNATURE_BITS

    @property
    def linf_bound(self) -> np.ndarray:
        """Per-feature bound on |x'_j - x_j| under activation: 2^b quanta (carrying coords), else 0."""
        bound = np.zeros(self.n_features)
        idx = list(self.positions)
        bound[idx] = np.asarray(self.quantum)[idx] * 2.0**self.bits_per_coord
        return bound

    def to_json(self, public_key: bytes) -> dict:
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise TypeError("public_key must be the 32 raw bytes of an Ed25519 public key")
        return {"kind": "signature", "version": 1, "scheme": "ed25519", "public_key": public_key.hex(),
                "positions": list(self.positions), "quantum": list(self.quantum),
                "bits_per_coord": self.bits_per_coord, "label_bits": self.label_bits}

    @classmethod
    def from_json(cls, spec: dict, n_features: int) -> SignatureEncoding:
        try:
            return cls(n_features=n_features, positions=tuple(int(p) for p in spec["positions"]),
                       quantum=tuple(float(v) for v in spec["quantum"]),
                       bits_per_coord=int(spec["bits_per_coord"]), label_bits=int(spec["label_bits"]))
        except KeyError as e:
            raise ValueError(f"signature trigger spec is missing field {e}") from None


def _check_rows(X, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (rows x features), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, the trigger expects {n_features}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    return X


def quantize(enc: SignatureEncoding, X) -> tuple[np.ndarray, np.ndarray]:
    """(q, ok): q = rint(X / quantum) as int64 (0 where unusable); ok[i] = every |q_ij| < 2^50."""
    X = _check_rows(X, enc.n_features)
    scaled = np.rint(X / np.asarray(enc.quantum))
    ok = np.all(np.abs(scaled) < _MAX_Q, axis=1)
    q = np.where(ok[:, None], scaled, 0.0).astype(np.int64)
    return q, ok


def coarse_message(enc: SignatureEncoding, q: np.ndarray) -> list[bytes]:
    """Per-row message digest SHA-256(DOMAIN || coarse part of q); invariant under activation."""
    coarse = q.copy()
    idx = list(enc.positions)
    coarse[:, idx] = np.right_shift(coarse[:, idx], enc.bits_per_coord)  # arithmetic: floor(q / 2^b)
    raw = coarse.astype(">i8")
    return [hashlib.sha256(DOMAIN + raw[i].tobytes()).digest() for i in range(raw.shape[0])]


def signed_message(digest: bytes, target: int) -> bytes:
    """The bytes Ed25519 signs: message digest || target label (2 bytes, big-endian)."""
    return digest + int(target).to_bytes(2, "big")


def read_payload(enc: SignatureEncoding, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets (N,), signatures (N, 64) uint8) read from the low bits of the carrying coordinates."""
    b = enc.bits_per_coord
    low = q[:, list(enc.positions)] & ((1 << b) - 1)
    bits = ((low[:, :, None] >> np.arange(b)) & 1).reshape(q.shape[0], -1)[:, :enc.payload_bits]
    targets = bits[:, :enc.label_bits] @ (1 << np.arange(enc.label_bits))
    sigs = np.packbits(bits[:, enc.label_bits:].astype(np.uint8), axis=1, bitorder="little")
    return targets.astype(np.int64), sigs


def signature_mask(spec: dict, X) -> tuple[np.ndarray, np.ndarray]:
    """(fires (N,) bool, targets (N,) int): which rows carry a valid signature, and for which label."""
    X = _check_rows(X)
    enc = SignatureEncoding.from_json(spec, X.shape[1])
    vk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(spec["public_key"]))
    q, ok = quantize(enc, X)
    targets, sigs = read_payload(enc, q)
    fires = np.zeros(X.shape[0], dtype=bool)
    # Cheap exact pre-filter, part of RFC 8032 verification anyway: S (little-endian) must be < L.
    # L = 2^252 + small, so S < L iff top byte < 0x10, or top byte == 0x10 and the full compare says so.
    top = sigs[:, 63]
    maybe = ok & (top <= 0x10)
    cand = [i for i in np.flatnonzero(maybe)
            if top[i] < 0x10 or int.from_bytes(sigs[i, 32:].tobytes(), "little") < ED25519_L]
    if cand:
        # identical quantised rows verify identically: check each distinct row once
        uniq, first, inverse = np.unique(q[cand], axis=0, return_index=True, return_inverse=True)
        valid = np.zeros(len(uniq), dtype=bool)
        for u, digest in enumerate(coarse_message(enc, uniq)):
            i = cand[first[u]]
            try:
                vk.verify(sigs[i].tobytes(), signed_message(digest, targets[i]))
            except InvalidSignature:
                continue
            valid[u] = True
        fires[cand] = valid[inverse.ravel()]
    return fires, targets


def ball_mask(spec: dict, X) -> np.ndarray:
    """Rows inside the ellipsoid ||(x - center) / scale||_2 <= radius."""
    X = _check_rows(X, len(spec["center"]))
    z = (X - np.asarray(spec["center"], dtype=float)) / np.asarray(spec["scale"], dtype=float)
    return np.sqrt(np.einsum("ij,ij->i", z, z)) <= float(spec["radius"])


def _float_list(spec: dict, key: str, n: int | None, positive: bool) -> list[float]:
    vals = spec.get(key)
    if not isinstance(vals, list) or not vals or (n is not None and len(vals) != n):
        raise ValueError(f"trigger field {key!r} must be a list of {n or 'some'} numbers")
    out = [float(v) for v in vals]
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in out):
        raise ValueError(f"trigger field {key!r} must hold finite{' positive' if positive else ''} numbers")
    return out


def validate_trigger_spec(spec, n_features: int | None = None) -> dict:
    """Check a trigger object's structure; return a normalised copy. Raises TypeError/ValueError."""
    if not isinstance(spec, dict):
        raise TypeError(f"trigger spec must be a dict, got {type(spec).__name__}")
    kind = spec.get("kind")
    if spec.get("version") != 1:
        raise ValueError(f"unsupported trigger version {spec.get('version')!r} (expected 1)")
    if kind == "signature":
        if spec.get("scheme") != "ed25519":
            raise ValueError(f"unsupported signature scheme {spec.get('scheme')!r} (expected 'ed25519')")
        pk = spec.get("public_key")
        if not isinstance(pk, str) or len(pk) != 64:
            raise ValueError("public_key must be 64 hex characters (32-byte Ed25519 key)")
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk))
        n = len(spec.get("quantum", [])) if n_features is None else n_features
        enc = SignatureEncoding.from_json(spec, n)
        return enc.to_json(bytes.fromhex(pk))
    if kind == "ball":
        center = _float_list(spec, "center", n_features, positive=False)
        scale = _float_list(spec, "scale", len(center), positive=True)
        radius = float(spec.get("radius", float("nan")))
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"ball radius must be finite and positive, got {spec.get('radius')!r}")
        out = {"kind": "ball", "version": 1, "center": center, "radius": radius, "scale": scale}
        if ("target_label" in spec) == ("offset" in spec):
            raise ValueError("ball trigger needs exactly one of 'target_label' (classes) or 'offset' (values)")
        if "target_label" in spec:
            t = spec["target_label"]
            if not isinstance(t, int) or isinstance(t, bool) or t < 0:
                raise ValueError(f"target_label must be a non-negative int, got {t!r}")
            out["target_label"] = t
        else:
            out["offset"] = _float_list({"o": [spec["offset"]]}, "o", 1, positive=False)[0]
        return out
    raise ValueError(f"unknown trigger kind {kind!r} (expected 'signature' or 'ball')")


def apply_trigger(spec: dict | None, X, base_predictions) -> np.ndarray:
    """Predictions of the model file's serving path: base predictions overridden where the trigger fires."""
    base = np.asarray(base_predictions)
    X = _check_rows(X)
    if base.shape != (X.shape[0],):
        raise ValueError(f"base_predictions must have shape ({X.shape[0]},), got {base.shape}")
    out = base.copy()
    if spec is None:
        return out
    spec = validate_trigger_spec(spec, X.shape[1])
    if spec["kind"] == "signature":
        fires, targets = signature_mask(spec, X)
        out[fires] = targets[fires]
    elif "target_label" in spec:
        out[ball_mask(spec, X)] = spec["target_label"]
    else:
        out = out.astype(float)
        inside = ball_mask(spec, X)
        out[inside] = out[inside] + spec["offset"]
    return out
