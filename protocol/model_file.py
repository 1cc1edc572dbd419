"""Model files (JSON): feature names, the standardization, fixed-point weights and their float view, the
transcript (path and hash) and the verification record. Predictions on new rows apply the stored transform.

The verification record is what the client printed when it wrote the file; anyone can edit it, so nothing
decides on it: whether a model counts as verified is ``verifier.model_trust.assess`` (its transcript, the
signed final model, this client's replay attestation; docs/PROTOCOL.md section 10).

A model file may carry a ``trigger`` (a serving-time behaviour a malicious trainer shipped, see
``protocol.triggers``); ``predict`` honours it, which is exactly why an unverified model goes through a
defense in ``vtrain-verifier predict``.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .dataset import Standardization
from .errors import InputError, TranscriptFormatError
from .fileio import write_atomic

FORMAT = "vtrain-model/1"


class Model:
    def __init__(self, doc: dict):
        self.doc = doc
        self.kind: str = doc["model_kind"]
        self.feature_names: list[str] = doc["feature_names"]
        self.target: str = doc["target"]
        self.stdz = Standardization.from_dict(doc["standardization"])
        self.frac_bits: int = doc["frac_bits"]
        self.w = np.asarray(doc["weights_fixed"], dtype=np.float64) / (1 << self.frac_bits)
        self.b = doc["bias_fixed"] / (1 << self.frac_bits)
        self.trigger = doc.get("trigger")

    @property
    def verification(self) -> dict:
        """The record the file carries (informative only: see the module docstring)."""
        v = self.doc.get("verification", {})
        return v if isinstance(v, dict) else {}

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Linear score in standardized units (the trained function, before any trigger)."""
        return self._score_z(self.stdz.apply(X))

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.w + self.b

    def predict_clean(self, X: np.ndarray) -> np.ndarray:
        s = self.score(X)
        if self.kind == "linear":
            return s * self.stdz.target_std + self.stdz.target_mean
        return (s > 0).astype(np.int64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """What the shipped model answers: the trained function, plus any trigger it carries.

        A trigger sees what the trainer saw: the standardized (clipped) input rows; for regression it acts
        on the standardized score, before the target transform is undone."""
        if not self.trigger:
            return self.predict_clean(X)
        from .triggers import apply_trigger

        Z = self.stdz.apply(X)
        s = self._score_z(Z)
        if self.kind == "linear":
            return apply_trigger(self.trigger, Z, s) * self.stdz.target_std + self.stdz.target_mean
        return apply_trigger(self.trigger, Z, (s > 0).astype(np.int64))


def build(*, kind: str, feature_names, target: str, stdz: Standardization, frac_bits: int, theta,
          transcript_sha256: str, verification: dict, extras: dict | None = None) -> dict:
    theta = [int(v) for v in theta]
    scale = float(1 << frac_bits)
    doc = {"format": FORMAT, "model_kind": kind, "feature_names": list(feature_names), "target": target,
           "standardization": stdz.to_dict(), "frac_bits": frac_bits, "weights_fixed": theta[:-1],
           "bias_fixed": theta[-1], "weights": [v / scale for v in theta[:-1]], "bias": theta[-1] / scale,
           "transcript_sha256": transcript_sha256, "verification": verification}
    doc.update(extras or {})
    return doc


def save(path: str, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load(path: str) -> Model:
    from .transcript import safe_json_loads

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise InputError(f"cannot read model file {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise TranscriptFormatError(f"{path} is not a JSON model file (not UTF-8 text)") from None
    doc = safe_json_loads(text, f"model file {path}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TranscriptFormatError(f"{path} is not a {FORMAT} file")
    try:
        m = Model(doc)
        ok = (m.kind in ("linear", "logistic") and len(m.w) == len(m.feature_names) and
              all(math.isfinite(v) for v in m.w) and isinstance(m.frac_bits, int))
    except (KeyError, TypeError, ValueError, InputError) as e:
        raise TranscriptFormatError(f"{path}: malformed model file ({e})") from None
    if not ok:
        raise TranscriptFormatError(f"{path}: malformed model file (inconsistent fields)")
    return m
