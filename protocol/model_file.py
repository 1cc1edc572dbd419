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


KINDS = ("linear", "logistic", "softmax")
CLASSIFIERS = ("logistic", "softmax")


class Model:
    """A model file's content. Classifiers predict class indices (positions in ``labels``, the sorted label
    list of ``standardization.labels``; ``[0, 1]`` for a logistic model written without one); softmax
    weights are ``C x d`` with ``C`` biases, the other kinds ``d`` weights and one bias."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.kind: str = doc["model_kind"]
        self.feature_names: list[str] = doc["feature_names"]
        self.target: str = doc["target"]
        self.stdz = Standardization.from_dict(doc["standardization"])
        self.frac_bits: int = doc["frac_bits"]
        self.w = np.asarray(doc["weights_fixed"], dtype=np.float64) / (1 << self.frac_bits)
        self.b = np.asarray(doc["bias_fixed"], dtype=np.float64) / (1 << self.frac_bits)
        if self.b.ndim == 0:
            self.b = float(self.b)
        self.trigger = doc.get("trigger")

    @property
    def is_classifier(self) -> bool:
        return self.kind in CLASSIFIERS

    @property
    def labels(self) -> list:
        """Class labels in class-index order (classifiers only)."""
        return self.stdz.labels if self.stdz.labels is not None else [0, 1]

    def theta_fixed(self) -> list:
        """The flat fixed-point state as the transcript holds it (softmax: C rows of (w_c, b_c))."""
        w, b = self.doc.get("weights_fixed", []), self.doc.get("bias_fixed")
        if self.kind == "softmax" and isinstance(w, list) and isinstance(b, list) and len(w) == len(b):
            return [v for row, bc in zip(w, b) for v in (*(row if isinstance(row, list) else [row]), bc)]
        return [*w, b]

    @property
    def table_columns(self) -> list[str]:
        """Every column of the training table (features, target and columns left out)."""
        cols = self.doc.get("table_columns")
        return [str(c) for c in cols] if isinstance(cols, list) else [*self.feature_names, self.target]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_of(self, index: int):
        """The label of a class index (an index outside the label list, which only a trigger can produce, is
        returned as the integer)."""
        i = int(index)
        return self.labels[i] if 0 <= i < len(self.labels) else i

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
        """(n,) scores, or (n, C) logits for softmax."""
        return Z @ (self.w.T if self.kind == "softmax" else self.w) + self.b

    def _classes(self, s: np.ndarray) -> np.ndarray:
        if self.kind == "softmax":
            return np.argmax(s, axis=1).astype(np.int64)
        return (s > 0).astype(np.int64)

    def predict_clean(self, X: np.ndarray) -> np.ndarray:
        s = self.score(X)
        if self.kind == "linear":
            return s * self.stdz.target_std + self.stdz.target_mean
        return self._classes(s)

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
        return apply_trigger(self.trigger, Z, self._classes(s))


def build(*, kind: str, feature_names, target: str, stdz: Standardization, frac_bits: int, theta,
          transcript_sha256: str, verification: dict, extras: dict | None = None,
          table_columns: list[str] | None = None) -> dict:
    """``theta``: the flat state (softmax: C rows of (w_c, b_c), class 0 first). ``table_columns``: every
    column of the training table, so that ``predict`` knows which other columns to ignore."""
    theta = [int(v) for v in theta]
    scale = float(1 << frac_bits)
    if kind == "softmax":
        d1 = len(feature_names) + 1
        rows = [theta[c:c + d1] for c in range(0, len(theta), d1)]
        w, b = [r[:-1] for r in rows], [r[-1] for r in rows]
        wf, bf = [[v / scale for v in r] for r in w], [v / scale for v in b]
    else:
        w, b = theta[:-1], theta[-1]
        wf, bf = [v / scale for v in w], b / scale
    doc = {"format": FORMAT, "model_kind": kind, "feature_names": list(feature_names), "target": target,
           "standardization": stdz.to_dict(), "frac_bits": frac_bits, "weights_fixed": w,
           "bias_fixed": b, "weights": wf, "bias": bf,
           "transcript_sha256": transcript_sha256, "verification": verification}
    if table_columns:
        doc["table_columns"] = list(table_columns)
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
        ok = _consistent(m)
    except (KeyError, TypeError, ValueError, InputError) as e:
        raise TranscriptFormatError(f"{path}: malformed model file ({e})") from None
    if not ok:
        raise TranscriptFormatError(f"{path}: malformed model file (inconsistent fields)")
    return m


def _consistent(m: Model) -> bool:
    d = len(m.feature_names)
    if m.kind not in KINDS or not isinstance(m.frac_bits, int) or not np.all(np.isfinite(m.w)):
        return False
    if (m.stdz.labels is not None) != m.is_classifier and not (m.kind == "logistic" and m.stdz.labels is None):
        return False
    if m.kind == "softmax":
        C = m.num_classes
        return m.w.shape == (C, d) and np.shape(m.b) == (C,) and np.all(np.isfinite(m.b))
    return m.w.shape == (d,) and np.ndim(m.b) == 0 and math.isfinite(m.b) and (m.kind != "logistic" or m.num_classes == 2)
