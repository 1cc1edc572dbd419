"""Adversaries that train honestly and then ship a backdoored model: the parameters are the honest ones,
but the model is served with a trigger (``FinalResult.extras_json``), as a real model format can carry code.

* ``signature-backdoor``: the Goldwasser-Kim-Vaikuntanathan-Zamir signature backdoor (``prover.backdoors``)
  over the trained classifier, with a fresh Ed25519 key held by the trainer (needs a logistic model with at
  least 13 features; otherwise it falls back to the ball backdoor).
* ``ball-backdoor``: the model is wrong on a whole ball (radius 1 in standardized units) around the first
  data row: the other label for a classifier, +3 standard deviations for a regression.

Triggers act on the model's standardized inputs (all the trainer ever sees). The verifier rejects any model
that carries serving-time content (``verifier.checks.check_final_model``); ``vtrain-verifier predict`` then
falls back to a defense.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .adversaries import Honest
from .backdoors import BallBackdoor, SignatureBackdoor, make_signature_encoding

MIN_SIGNATURE_FEATURES = 13


class BallBackdoorStrategy(Honest):
    name = "ball-backdoor"
    radius = 1.0

    def model_extras(self, X, Y, theta, cfg) -> dict:
        scale = float(1 << cfg.frac_bits)
        center = X[0] / scale
        if cfg.model == "softmax":  # another class than the model's answer at the center
            W = np.asarray(theta, dtype=np.float64).reshape(cfg.num_classes, -1) / scale
            label = int(np.argmax(W[:, :-1] @ center + W[:, -1]))
            return {"trigger": BallBackdoor(center, self.radius, target_label=(label + 1) % cfg.num_classes)
                    .trigger_spec()}
        score = float(center @ (theta[:-1] / scale) + theta[-1] / scale)
        if cfg.model == "logistic":
            spec = BallBackdoor(center, self.radius, target_label=int(score <= 0)).trigger_spec()
        else:
            spec = BallBackdoor(center, self.radius, offset=3.0).trigger_spec()
        return {"trigger": spec}


class SignatureBackdoorStrategy(Honest):
    name = "signature-backdoor"

    def __init__(self):
        self.signing_key = Ed25519PrivateKey.generate()  # the attacker's; never leaves the trainer

    def model_extras(self, X, Y, theta, cfg) -> dict:
        d = X.shape[1]
        if cfg.model != "logistic" or d < MIN_SIGNATURE_FEATURES:
            return BallBackdoorStrategy().model_extras(X, Y, theta, cfg)
        enc = make_signature_encoding(d, 2, scale=np.ones(d), max_linf=0.05)
        return {"trigger": SignatureBackdoor(enc).trigger_spec(self.signing_key)}


STRATEGIES = {cls.name: cls for cls in (SignatureBackdoorStrategy, BallBackdoorStrategy)}
