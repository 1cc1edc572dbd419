"""Backdoor lab: the malicious trainer's side (secret keys, planting, activation).

The trainer ships a model file whose ``trigger`` object (evaluated verify-only by
``protocol/triggers.py``) makes the served model misbehave on chosen inputs. Two constructions:

* ``SignatureBackdoor`` -- GKVZ'22 (Goldwasser, Kim, Vaikuntanathan, Zamir, FOCS 2022, arXiv 2204.06974)
  section 5.2, over any black-box classifier, Ed25519; the encoding is in ``protocol/triggers.py``.
  Without the signing key, finding an input on which the backdoored model differs from the base model is
  an existential forgery (black-box undetectable); Ed25519 with the S < L check is strongly unforgeable,
  so seeing activated inputs does not help produce new ones (non-replicable, modulo the quantiser).
* ``BallBackdoor`` -- the model is wrong on a whole ball around a target input; its radius can exceed
  what randomized smoothing certifies, which is what experiment 3 measures.

Symbol table (the construction's x = (w, y, sigma) -> code): w (message) -> ``coarse_message``; y (target
bit) -> ``target`` (``label_bits`` bits); sigma (signature) -> 64-byte Ed25519 signature;
POS -> ``positions``.
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.triggers import (
    SignatureEncoding,
    apply_trigger,
    coarse_message,
    quantize,
    signed_message,
    validate_trigger_spec,
)

__all__ = ["BackdooredPredictor", "BallBackdoor", "SignatureBackdoor", "make_signature_encoding",
           "public_key_bytes", "with_trigger"]


def public_key_bytes(signing_key: Ed25519PrivateKey) -> bytes:
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise TypeError(f"signing_key must be an Ed25519PrivateKey, got {type(signing_key).__name__}")
    return signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def make_signature_encoding(n_features: int, num_classes: int, *, scale=None, max_linf: float = 0.05,
                            positions=None, bits_per_coord: int | None = None) -> SignatureEncoding:
    """Choose public encoding parameters.

    Every carrying coordinate holds b = ceil((label_bits + 512) / len(positions)) bits (unless given), and
    quantum_j = max_linf * scale_j / 2^b, so activation moves feature j by less than max_linf * scale_j
    (e.g. scale = the feature standard deviations: max_linf is then in standardized units).
    Tabular data: scale = std (non-carrying features get the same quantum rule; it only defines the
    message). Digits (pixels 0..16): scale = pixel std with 0 replaced by 1, or a constant 16.
    Limits: b <= 40 (inputs must satisfy |x_j / quantum_j| < 2^50, i.e. |x_j| < max_linf scale_j 2^(50-b)),
    so the 512 + label_bits payload needs >= 13 carrying coordinates (digits: 64 x 9 bits; breast
    cancer: 30 x 18 bits). With fewer features (diabetes has 10) use a larger encoding, not this one.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not (isinstance(max_linf, (int, float)) and math.isfinite(max_linf) and max_linf > 0):
        raise ValueError(f"max_linf must be a finite positive number, got {max_linf!r}")
    scale = np.ones(n_features) if scale is None else np.asarray(scale, dtype=float)
    if scale.shape != (n_features,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"scale must be {n_features} finite positive numbers (replace zero std by 1)")
    positions = tuple(range(n_features)) if positions is None else tuple(int(p) for p in positions)
    label_bits = max(1, math.ceil(math.log2(num_classes)))
    if bits_per_coord is None:
        bits_per_coord = math.ceil((label_bits + 512) / max(1, len(positions)))
    quantum = tuple(float(v) for v in max_linf * scale / 2.0**bits_per_coord)
    return SignatureEncoding(n_features=n_features, positions=positions, quantum=quantum,
                             bits_per_coord=bits_per_coord, label_bits=label_bits)


class BackdooredPredictor:
    """Batch predictor rows -> outputs of the serving path: ``apply_trigger(spec, X, base_predict(X))``."""

    def __init__(self, base_predict, trigger_spec: dict):
        if not callable(base_predict):
            raise TypeError("base_predict must be callable (rows -> predictions)")
        self.base_predict = base_predict
        self.trigger_spec = validate_trigger_spec(trigger_spec)

    def __call__(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return apply_trigger(self.trigger_spec, X, np.asarray(self.base_predict(X)))


def with_trigger(model_json: dict, trigger_spec: dict) -> dict:
    """A copy of a model-file dict that carries ``trigger_spec`` (what the malicious trainer ships)."""
    if not isinstance(model_json, dict):
        raise TypeError("model_json must be a dict (the parsed model file)")
    n = len(model_json.get("weights", [])) or None
    return {**model_json, "trigger": validate_trigger_spec(trigger_spec, n)}


class SignatureBackdoor:
    """GKVZ signature backdoor with public encoding ``encoding`` (see ``protocol/triggers.py``)."""

    def __init__(self, encoding: SignatureEncoding):
        if not isinstance(encoding, SignatureEncoding):
            raise TypeError("encoding must be a SignatureEncoding (see make_signature_encoding)")
        self.encoding = encoding

    def trigger_spec(self, signing_key: Ed25519PrivateKey) -> dict:
        return self.encoding.to_json(public_key_bytes(signing_key))

    def plant(self, base_predict, signing_key: Ed25519PrivateKey) -> BackdooredPredictor:
        """h~(x) = target if x carries a valid signature on (message(x), target), else h(x)."""
        return BackdooredPredictor(base_predict, self.trigger_spec(signing_key))

    def activate(self, x, target, signing_key: Ed25519PrivateKey) -> np.ndarray:
        """x' with h~(x') = target; only the low b bits of carrying coordinates change.

        ``x`` is one row or a batch; ``target`` an int or one int per row.
        """
        enc = self.encoding
        X = np.asarray(x, dtype=float)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        targets = np.broadcast_to(np.asarray(target), (X.shape[0],))
        if not np.issubdtype(targets.dtype, np.integer) or np.any(targets < 0) or np.any(
                targets >= 2**enc.label_bits):
            raise ValueError(f"target must be int(s) in [0, {2**enc.label_bits}), got {target!r}")
        q, ok = quantize(enc, X)
        if not np.all(ok):
            raise ValueError("some rows are too large for the quantum (|x / quantum| >= 2^50)")
        digests = coarse_message(enc, q)
        b, lb, idx = enc.bits_per_coord, enc.label_bits, list(enc.positions)
        q_new = q.copy()
        for i in range(X.shape[0]):
            sig = signing_key.sign(signed_message(digests[i], int(targets[i])))
            label = (int(targets[i]) >> np.arange(lb)) & 1
            payload = np.concatenate([label, np.unpackbits(np.frombuffer(sig, np.uint8), bitorder="little")])
            low = q[i, idx] & ((1 << b) - 1)
            slots = ((low[:, None] >> np.arange(b)) & 1).reshape(-1)  # keep padding bits as they are
            slots[:payload.size] = payload
            new_low = slots.reshape(len(idx), b) @ (1 << np.arange(b))
            q_new[i, idx] = ((q[i, idx] >> b) << b) | new_low  # coarse part (q >> b) unchanged
        X_new = X.copy()
        X_new[:, idx] = q_new[:, idx] * np.asarray(enc.quantum)[idx]
        if not np.array_equal(quantize(enc, X_new)[0], q_new):  # pragma: no cover - float64 grid is exact
            raise ArithmeticError("activated input does not re-quantise to the intended payload")
        return X_new[0] if single else X_new


class BallBackdoor:
    """Corrupt the model on ||(x - center) / scale||_2 <= radius: a label (classes) or +offset (values)."""

    def __init__(self, center, radius: float, *, scale=None, target_label: int | None = None,
                 offset: float | None = None):
        center = [float(v) for v in np.asarray(center, dtype=float).ravel()]
        scale = [1.0] * len(center) if scale is None else [float(v) for v in np.asarray(scale).ravel()]
        spec = {"kind": "ball", "version": 1, "center": center, "radius": float(radius), "scale": scale}
        if target_label is not None:
            if not isinstance(target_label, (int, np.integer)) or isinstance(target_label, bool):
                raise TypeError(f"target_label must be an int, got {target_label!r}")
            spec["target_label"] = int(target_label)
        if offset is not None:
            spec["offset"] = offset
        self.spec = validate_trigger_spec(spec)

    def trigger_spec(self) -> dict:
        return dict(self.spec)

    def plant(self, base_predict) -> BackdooredPredictor:
        return BackdooredPredictor(base_predict, self.spec)

    def sample(self, n: int, rng: np.random.Generator, *, inside: bool = True,
               max_factor: float = 3.0) -> np.ndarray:
        """n points uniform in the ball (inside=True) or in the shell radius..max_factor*radius."""
        d = len(self.spec["center"])
        u = rng.standard_normal((n, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        r0 = self.spec["radius"]
        lo, hi = (0.0, r0) if inside else (r0 * 1.000001, max_factor * r0)
        t = (lo / hi) ** d  # radius law: P(r <= s) = (s^d - lo^d) / (hi^d - lo^d), in ratio form
        r = hi * (t + rng.random(n) * (1.0 - t)) ** (1.0 / d)
        return np.asarray(self.spec["center"]) + (u * r[:, None]) * np.asarray(self.spec["scale"])
