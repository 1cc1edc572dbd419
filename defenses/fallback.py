"""The verifier's fallback: which defense a model gets, and why; then running it.

Policy (:func:`choose_defense`, ``requested="auto"``):

    model verified AND carries no trigger       ->  "none"       (the verified weights, used as is)
    otherwise, logistic (a classifier)          ->  "smoothing"  (randomized smoothing, CERTIFY per row)
    otherwise, linear (regression)              ->  "oblivious"  (local correction on random lines)

"Verified" is decided by ``verifier.model_trust.assess`` from the model's transcript, never from the model
file's own status field (anyone can edit it). "Otherwise" covers a transcript that was rejected, altered,
only spot-checked or missing, a trainer that offered no proof, and a verified model that also ships a
serving-time ``trigger``: no transcript covers a trigger, so its served function is not the verified one. An explicit request ("none", "smoothing",
"oblivious") is honoured when it applies to the model kind; otherwise :class:`DefenseUnavailable`.

Units (a choice, documented here once). Both defenses work in the model's STANDARDIZED feature units,
z = (x - mean) / std with the mean/std stored in the model file (no clipping, so the map is invertible):

* smoothing adds eps ~ N(0, sigma^2 I) to z, so ``sigma`` and the certified radius R are L2 distances in
  standardized units: the prediction is constant for every raw perturbation dx with ||dx / std||_2 < R.
  Standardized units weigh every feature by its spread, which raw units (mm next to mm^2) do not;
* oblivious mitigation draws its lines in the body D = Unif(Box) fitted to the clean rows (unbiased
  endpoints of a uniform sample, defenses/coverage.py), or Unif(Ball) around the clean mean. A box is the
  same set in raw and standardized units; the ball is round in standardized units.

The base predictor is always the model's own serving path ``model.predict`` (it honours a trigger), called
on z * std + mean. Oblivious mitigation refuses (``MitigationRefused``, exit 1 at the CLI) unless the clean
rows look like a uniform sample of the body (they are the only evidence about the model where it will be
queried), the model's error rate on them is low enough, and the resulting per-row guarantee is not vacuous
(defenses/oblivious.py). A regression error is |f(x) - y| > eps, eps in target units (default: one target
standard deviation from the model file).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from defenses.coverage import BodyNotCovered, MitigationRefused, fit_body
from defenses.oblivious import LocalPolynomialMitigator, ModelTooInaccurate, canonical_round
from defenses.smoothing import ABSTAIN, SmoothedClassifier
from protocol.errors import InputError

__all__ = ["ABSTAIN", "DEFENSES", "OBLIVIOUS_ASSUMPTION", "BodyNotCovered", "Decision", "DefenseUnavailable",
           "FallbackOptions", "FallbackResult", "MitigationRefused", "ModelTooInaccurate", "StandardizedPredictor", "certify_rows", "choose_defense", "run_defense"]

DEFENSES = ("auto", "none", "smoothing", "oblivious")
_FOR_KIND = {"logistic": "smoothing", "linear": "oblivious"}
OBLIVIOUS_ASSUMPTION = ("oblivious mitigation assumes that the clean rows are a uniform sample of the {body} they "
                        "span, collected without the trainer's knowledge, and that the true target is a linear "
                        "function of the features which the model matches within eps almost everywhere in that "
                        "{body}")


class DefenseUnavailable(InputError):
    """The requested defense does not apply to this model, or it lacks an input (e.g. clean data)."""


@dataclass(frozen=True)
class Decision:
    defense: str      # "none" | "smoothing" | "oblivious"
    reason: str       # one sentence a user can read
    requested: str    # what was asked for ("auto" or an explicit defense)


@dataclass(frozen=True)
class FallbackOptions:
    """Parameters of both defenses (symbols of defenses/smoothing.py and defenses/oblivious.py)."""

    sigma: float = 0.25          # smoothing noise, standardized units
    n0: int = 100                # CERTIFY selection draws
    n: int = 1000                # CERTIFY estimation draws
    alpha: float = 0.001         # CERTIFY failure probability per row
    batch_size: int = 10_000     # noisy rows per call of the base predictor
    chunk_rows: int = 64         # rows per CERTIFY call (progress granularity; fixed, so seeds reproduce)
    n_lines: int = 15            # oblivious: K lines per query
    eps: float | None = None     # oblivious: error threshold in target units (None: the target std)
    body: str = "box"            # oblivious: "box" | "ball"
    grid: float | None = None    # oblivious: canonical rounding Delta (None: unrounded)
    confidence: float = 0.99     # oblivious: confidence of the refusal bound
    max_failure: float = 0.01    # oblivious: per-row failure probability the guarantee must reach, else refuse
    coverage_alpha: float = 0.01  # oblivious: level of the uniformity test of the clean rows against the body
    candidates: int = 4          # oblivious: nodes drawn per line, the best-conditioned 2 are queried
    seed: int | None = None      # randomness of both defenses (None: fresh)

    def validated(self) -> FallbackOptions:
        """Raise InputError naming the bad option; return self."""
        _positive_real(self.sigma, "sigma (noise level, standardized units)")
        for name in ("n0", "n", "batch_size", "chunk_rows", "n_lines"):
            _positive_int(getattr(self, name), name)
        if _positive_int(self.candidates, "candidates") < 2:
            raise InputError(f"candidates must be an integer >= 2 (nodes per line), got {self.candidates!r}")
        if not (_real(self.alpha) and 0 < self.alpha < 1):
            raise InputError(f"alpha must be a number in (0, 1), got {self.alpha!r}")
        for name in ("confidence", "max_failure", "coverage_alpha"):
            if not (_real(getattr(self, name)) and 0 < getattr(self, name) < 1):
                raise InputError(f"{name} must be a number in (0, 1), got {getattr(self, name)!r}")
        if self.eps is not None:
            _positive_real(self.eps, "eps (regression error threshold, target units)")
        if self.grid is not None:
            _positive_real(self.grid, "grid (canonical rounding step, target units)")
        if self.body not in ("box", "ball"):
            raise InputError(f"body must be 'box' or 'ball', got {self.body!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)
                                      or self.seed < 0):
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        return self


@dataclass
class FallbackResult:
    decision: Decision
    predictions: np.ndarray            # labels (ABSTAIN where smoothing abstained) or values
    model_output: np.ndarray           # what the shipped model answers on the same rows (model.predict)
    radius: np.ndarray | None = None   # smoothing: certified L2 radius, standardized units (0 if abstained)
    pABar: np.ndarray | None = None    # smoothing: lower confidence bound on P[f(x + eps) = label]
    details: dict = field(default_factory=dict)
    error_bound: np.ndarray | None = None  # oblivious: |prediction - linear truth| <= this, per row (target units)

    @property
    def abstained(self) -> np.ndarray:
        if self.radius is None:
            return np.zeros(self.predictions.shape, dtype=bool)
        return self.predictions == ABSTAIN


# ---------------------------------------------------------------------------------------------------
# Policy.
# ---------------------------------------------------------------------------------------------------

def choose_defense(model, requested: str = "auto", trust=None) -> Decision:
    """Which defense ``model`` gets and why (module docstring). ``trust`` is the verdict on the model
    (``verifier.model_trust.assess``: ``.verified`` and ``.reason``); the model file's own status field is
    never believed, so without ``trust`` the model counts as unverified."""
    if requested not in DEFENSES:
        raise InputError(f"unknown defense {requested!r}; choose one of {', '.join(DEFENSES)}")
    if model.kind not in _FOR_KIND:
        raise InputError(f"unsupported model kind {model.kind!r}")
    verified = bool(trust is not None and trust.verified)
    status = _status_text(model, trust)
    if requested == "none":
        note = "" if verified and not model.trigger else " -- no defense, although it is not verified"
        return Decision("none", f"--defense none: the model is used as is ({status}){note}", requested)
    if requested != "auto":
        if requested != _FOR_KIND[model.kind]:
            what = "a classifier (logistic model)" if requested == "smoothing" else \
                "real-valued outputs (a linear regression model)"
            raise DefenseUnavailable(f"--defense {requested} needs {what}; this is a {model.kind} model: use "
                                     f"--defense {_FOR_KIND[model.kind]} (or auto)")
        return Decision(requested, f"--defense {requested} requested ({status})", requested)
    if verified and not model.trigger:
        return Decision("none", f"the model is used as is: {status}", requested)
    defense = _FOR_KIND[model.kind]
    how = "a classifier gets randomized smoothing" if defense == "smoothing" else \
        "a regression model gets oblivious mitigation"
    return Decision(defense, f"{status}; {how}", requested)


def _status_text(model, trust) -> str:
    if trust is None:
        return ("the model is UNVERIFIED: no transcript was checked for it (the model file's own status is not "
                "evidence)")
    if trust.verified and model.trigger:
        return (f"the model is verified ({trust.reason}), but the model file also ships a serving-time "
                f"{model.trigger.get('kind', '?')!s} trigger that no transcript covers")
    if trust.verified:
        return f"the model is verified: {trust.reason}"
    return f"the model is UNVERIFIED: {trust.reason}"


# ---------------------------------------------------------------------------------------------------
# Running a decision.
# ---------------------------------------------------------------------------------------------------

class StandardizedPredictor:
    """The model's serving path seen in standardized units: z -> model.predict(z * std + mean)."""

    def __init__(self, model):
        self.model = model
        self.mean = np.asarray(model.stdz.mean, dtype=np.float64)
        self.std = np.asarray(model.stdz.std, dtype=np.float64)

    def to_z(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std

    def __call__(self, Z) -> np.ndarray:
        return self.model.predict(np.asarray(Z) * self.std + self.mean)


def run_defense(model, X, decision: Decision, options: FallbackOptions | None = None, clean=None,
                progress: Callable[[int], None] | None = None) -> FallbackResult:
    """Predictions for the rows X (raw feature units) under ``decision``.

    clean: None or (X_clean, y_clean), labelled rows in raw units; required by "oblivious".
    progress: optional callback receiving the number of rows finished.
    Raises DefenseUnavailable (InputError) for a missing input, MitigationRefused (BodyNotCovered,
    ModelTooInaccurate) when oblivious mitigation refuses the model.
    """
    options = (options or FallbackOptions()).validated()
    X = _check_rows(X, model.num_features, "data")
    base = np.asarray(model.predict(X))
    if decision.defense == "none":
        return FallbackResult(decision, base, base)
    if decision.defense == "smoothing":
        return _run_smoothing(model, X, base, decision, options, clean, progress)
    if decision.defense == "oblivious":
        return _run_oblivious(model, X, base, decision, options, clean, progress)
    raise InputError(f"unknown defense {decision.defense!r}")


def certify_rows(model, X, sigma: float, options: FallbackOptions, rng: np.random.Generator,
                 progress: Callable[[int], None] | None = None):
    """CERTIFY every row (standardized units) in chunks of ``options.chunk_rows`` -> (labels, radius, pABar)."""
    if model.kind != "logistic":
        raise DefenseUnavailable(f"randomized smoothing needs a classifier; this is a {model.kind} model")
    f = StandardizedPredictor(model)
    g = SmoothedClassifier(f, num_classes=2, sigma=sigma, batch_size=options.batch_size)
    Z = f.to_z(X)
    labels, radius, pABar = [], [], []
    for start in range(0, Z.shape[0], options.chunk_rows):
        c = g.certify(Z[start:start + options.chunk_rows], options.n0, options.n, options.alpha, random_state=rng)
        labels.append(c.labels)
        radius.append(c.radii)
        pABar.append(c.pABar)
        if progress is not None:
            progress(len(c.labels))
    return np.concatenate(labels), np.concatenate(radius), np.concatenate(pABar)


def _run_smoothing(model, X, base, decision, options, clean, progress) -> FallbackResult:
    rng = np.random.default_rng(options.seed)
    labels, radius, pABar = certify_rows(model, X, options.sigma, options, rng, progress)
    details = {"sigma": options.sigma, "n0": options.n0, "n": options.n, "alpha": options.alpha,
               "units": "standardized L2 (z = (x - mean) / std)", "abstain_value": ABSTAIN}
    if clean is not None:
        Xc, yc = _check_clean(model, clean)
        details["clean_accuracy_of_model"] = float(np.mean(np.asarray(model.predict(Xc)) == yc))
    return FallbackResult(decision, labels, base, radius, pABar, details)


def _run_oblivious(model, X, base, decision, options, clean, progress=None) -> FallbackResult:
    if clean is None:
        raise DefenseUnavailable("oblivious mitigation needs clean labelled data to check the model and to "
                                 "define the sampling body: pass --clean-data PATH (a CSV with the model's "
                                 f"features and the target column {model.target!r})")
    Xc, yc = _check_clean(model, clean)
    f = StandardizedPredictor(model)
    Zc = f.to_z(Xc)
    eps = float(options.eps) if options.eps is not None else float(model.stdz.target_std)
    try:
        body = fit_body(Zc, options.body)
    except ValueError as e:  # a constant feature or a single row: no uniform body fits the clean rows
        raise MitigationRefused(f"refusing: cannot fit a sampling {options.body} to the clean rows: {e}") from None
    mit = LocalPolynomialMitigator(f, degree=1, body=body, n_lines=options.n_lines, eps=eps, grid=options.grid,
                                   confidence=options.confidence, max_failure=options.max_failure,
                                   coverage_alpha=options.coverage_alpha,
                                   candidates=options.candidates if options.candidates > 2 else None,
                                   random_state=options.seed)
    try:
        mit.fit(Zc, yc)
    except BodyNotCovered as e:  # name the feature, in the model's words
        j = e.result.worst_index
        raise BodyNotCovered(e.result, options.body, None if j is None else f"feature {model.feature_names[j]!r}") \
            from None
    values, amplification = mit.predict_with_bounds(f.to_z(X), progress)
    if options.grid is not None:
        values = canonical_round(values, options.grid, mit.grid_offset_)
    details = {"degree": 1, "n_lines": options.n_lines, "body": options.body, "eps": eps, "grid": options.grid,
               "clean_rows": int(Zc.shape[0]), "queries_per_row": mit.queries_per_point_,
               "assumption": OBLIVIOUS_ASSUMPTION.format(body=options.body), **mit.guarantee()}
    return FallbackResult(decision, values, base, details=details, error_bound=eps * amplification)


def _check_clean(model, clean) -> tuple[np.ndarray, np.ndarray]:
    try:
        Xc, yc = clean
    except (TypeError, ValueError):
        raise TypeError("clean must be a pair (X_clean, y_clean)") from None
    Xc = _check_rows(Xc, model.num_features, "clean data")
    yc = np.asarray(yc, dtype=np.float64)
    if yc.shape != (Xc.shape[0],) or not np.all(np.isfinite(yc)):
        raise InputError(f"clean labels must be {Xc.shape[0]} finite numbers, got shape {yc.shape}")
    if model.kind == "logistic" and not np.all((yc == 0) | (yc == 1)):
        raise InputError("clean labels of a logistic model must be 0 or 1")
    return Xc, yc


def _check_rows(X, d: int, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != d or X.shape[0] < 1:
        raise InputError(f"{what}: expected a non-empty table of rows with the model's {d} features, got shape "
                         f"{X.shape}")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise InputError(f"{what}: NaN or infinite values in rows {np.flatnonzero(bad)[:10].tolist()}")
    return X


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _positive_real(v, name: str) -> float:
    if not (_real(v) and v > 0):
        raise InputError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InputError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)
