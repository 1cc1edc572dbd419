"""The fallback policy (defenses/fallback.py): which defense, why, and running it on in-memory models."""

from __future__ import annotations

import numpy as np
import pytest

from defenses.correlated_sampling import Ball
from defenses.fallback import (
    ABSTAIN,
    BodyNotCovered,
    Decision,
    DefenseUnavailable,
    FallbackOptions,
    ModelTooInaccurate,
    choose_defense,
    run_defense,
)
from protocol.dataset import Standardization
from protocol.errors import InputError
from protocol.model_file import Model, build
from verifier.model_trust import Assessment

F = 16
VERIFIED = {"status": "verified", "check": "spot", "reason": "all challenged steps replayed"}
REJECTED = {"status": "unverified", "check": "spot", "reason": "step 7: the trainer deviated at step 7"}


def make_model(kind="logistic", w=(1.0, 0.0, 0.0), b=0.0, mean=None, std=None, verification=VERIFIED,
               trigger=None, target_mean=0.0, target_std=1.0) -> Model:
    d = len(w)
    stdz = Standardization(list(mean or [0.0] * d), list(std or [1.0] * d), 8.0, target_mean, target_std)
    theta = [round(v * (1 << F)) for v in (*w, b)]
    extras = {"trigger": trigger} if trigger else None
    doc = build(kind=kind, feature_names=[f"x{i}" for i in range(d)], target="y", stdz=stdz, frac_bits=F,
                theta=theta, transcript_sha256="00" * 32, verification=verification, extras=extras)
    if verification is None:
        del doc["verification"]
    return Model(doc)


BALL_LABEL = {"kind": "ball", "version": 1, "center": [3.0, 0.0, 0.0], "radius": 0.05, "scale": [1.0] * 3,
              "target_label": 0}


# ---------------------------------------------------------------------------------------------- policy

TRUSTED = Assessment(True, "replay", "this client replayed all steps of its transcript")
DISTRUSTED = Assessment(False, "spot", "the trainer deviated at step 7")


@pytest.mark.parametrize("kind", ["logistic", "linear"])
def test_auto_uses_a_verified_model_as_is(kind):
    d = choose_defense(make_model(kind), "auto", TRUSTED)
    assert d.defense == "none" and "verified" in d.reason and d.requested == "auto"


@pytest.mark.parametrize("kind,defense", [("logistic", "smoothing"), ("linear", "oblivious")])
def test_auto_defends_an_unverified_model_by_kind(kind, defense):
    d = choose_defense(make_model(kind, verification=REJECTED), "auto", DISTRUSTED)
    assert d.defense == defense
    assert "UNVERIFIED" in d.reason and "step 7" in d.reason  # names the rejection reason


@pytest.mark.parametrize("kind,defense", [("logistic", "smoothing"), ("linear", "oblivious")])
def test_the_model_files_own_status_is_never_believed(kind, defense):
    """A file that says "verified" but comes without an assessment of its transcript is defended."""
    d = choose_defense(make_model(kind, verification=VERIFIED), "auto")
    assert d.defense == defense and "no transcript was checked" in d.reason


def test_auto_defends_a_verified_model_that_ships_a_trigger():
    d = choose_defense(make_model("logistic", trigger=BALL_LABEL), "auto", TRUSTED)
    assert d.defense == "smoothing" and "trigger" in d.reason


def test_explicit_none_on_an_unverified_model_says_so():
    d = choose_defense(make_model("linear", verification=REJECTED), "none", DISTRUSTED)
    assert d.defense == "none" and "not verified" in d.reason
    assert "not verified" not in choose_defense(make_model("linear"), "none", TRUSTED).reason


def test_explicit_defense_for_the_right_kind_is_honoured_even_when_verified():
    assert choose_defense(make_model("logistic"), "smoothing").defense == "smoothing"
    assert choose_defense(make_model("linear"), "oblivious").defense == "oblivious"


@pytest.mark.parametrize("kind,requested", [("linear", "smoothing"), ("logistic", "oblivious")])
def test_a_defense_for_the_other_kind_is_refused(kind, requested):
    with pytest.raises(DefenseUnavailable, match="use --defense"):
        choose_defense(make_model(kind), requested)


def test_unknown_defense_is_refused():
    with pytest.raises(InputError, match="unknown defense"):
        choose_defense(make_model(), "magic")


@pytest.mark.parametrize("field,value,match", [
    ("sigma", 0.0, "sigma"), ("sigma", float("nan"), "sigma"), ("sigma", -1.0, "sigma"), ("sigma", True, "sigma"),
    ("n", 0, "n must"), ("n0", 1.5, "n0"), ("alpha", 1.0, "alpha"), ("alpha", 0, "alpha"),
    ("eps", -1.0, "eps"), ("grid", 0.0, "grid"), ("body", "cube", "body"), ("seed", -3, "seed"),
    ("n_lines", 0, "n_lines"), ("confidence", 1.5, "confidence"),
])
def test_bad_options_are_refused_with_the_option_name(field, value, match):
    with pytest.raises(InputError, match=match):
        FallbackOptions(**{field: value}).validated()


# ---------------------------------------------------------------------------------------------- running

def test_none_returns_the_models_own_answers_including_its_trigger():
    m = make_model("logistic", trigger=BALL_LABEL)
    X = np.array([[3.0, 0.0, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    r = run_defense(m, X, Decision("none", "test", "none"))
    assert r.predictions.tolist() == [0, 1, 0]  # row 0: the trigger fires (clean answer would be 1)
    assert r.radius is None and not r.abstained.any()


def test_smoothing_is_deterministic_given_the_seed_and_consistent():
    m = make_model("logistic", w=(1.0, -0.5, 0.25), verification=REJECTED)
    X = np.random.default_rng(0).normal(size=(40, 3))
    opts = FallbackOptions(sigma=0.5, n0=20, n=200, alpha=0.01, seed=11, chunk_rows=16)
    a = run_defense(m, X, choose_defense(m), opts)
    b = run_defense(m, X, choose_defense(m), opts)
    assert np.array_equal(a.predictions, b.predictions) and np.array_equal(a.radius, b.radius)
    assert set(a.predictions.tolist()) <= {0, 1, ABSTAIN}
    assert np.all(a.radius[a.abstained] == 0) and np.all(a.radius[~a.abstained] > 0)
    assert np.all(a.radius <= 0.5 * 3.0)  # R = sigma * Phi^-1(pABar) and pABar < 1 - 1e-3 at n = 200


def test_smoothing_overrides_a_small_trigger_ball():
    """x0 = (3, 0, 0): clean label 1, but the shipped trigger answers 0 on a ball of radius 0.05 there.

    With sigma = 0.5, f(x0 + eps) = 1 unless eps lands in the ball (probability < (0.05/0.5)^3 < 1e-3) or
    crosses the boundary z_0 < 0 (Phi(-6) < 1e-8), so pA > 0.998; CERTIFY then abstains only if fewer
    than ~560 of n = 1000 draws are class 1, probability < 1e-300. Seeded, so the run is reproducible.
    """
    m = make_model("logistic", trigger=BALL_LABEL, verification=REJECTED)
    x0 = np.array([[3.0, 0.0, 0.0]])
    assert m.predict(x0).tolist() == [0]  # the trigger fires on the raw model
    r = run_defense(m, x0, choose_defense(m), FallbackOptions(sigma=0.5, seed=1))
    assert r.predictions.tolist() == [1] and r.radius[0] > 0.5
    assert r.model_output.tolist() == [0]


def test_smoothing_noise_is_in_standardized_units():
    """Rescaling a raw feature (and its stored mean/std) changes nothing: the same labels and radii."""
    X = np.random.default_rng(2).normal(size=(30, 2))
    opts = FallbackOptions(sigma=0.5, n0=20, n=100, alpha=0.01, seed=4)
    a = make_model("logistic", w=(1.0, 1.0), mean=[0.5, 0.0], std=[2.0, 1.0], verification=REJECTED)
    b = make_model("logistic", w=(1.0, 1.0), mean=[500.0, 0.0], std=[2000.0, 1.0], verification=REJECTED)
    ra = run_defense(a, X, choose_defense(a), opts)
    rb = run_defense(b, X * [1000.0, 1.0], choose_defense(b), opts)
    assert np.array_equal(ra.predictions, rb.predictions)
    np.testing.assert_allclose(ra.radius, rb.radius, rtol=1e-12)


def test_smoothing_reports_the_models_clean_accuracy():
    m = make_model("logistic", verification=REJECTED)
    X = np.array([[1.0, 0, 0], [-1.0, 0, 0], [2.0, 0, 0], [-2.0, 0, 0]])
    r = run_defense(m, X, choose_defense(m), FallbackOptions(n0=10, n=50, alpha=0.01, seed=0),
                    clean=(X, np.array([1, 0, 0, 0])))
    assert r.details["clean_accuracy_of_model"] == 0.75


def _linear_with_ball_offset(offset=100.0):
    trig = {"kind": "ball", "version": 1, "center": [1.0, 1.0, 0.0, 0.0], "radius": 0.3, "scale": [1.0] * 4,
            "offset": offset}
    return make_model("linear", w=(2.0, -1.0, 0.5, 0.0), b=0.25, verification=REJECTED, trigger=trig,
                      target_mean=10.0, target_std=3.0)


def _clean(m, n=400, seed=5, body="box"):
    """Fresh clean rows, uniform on the box [-3, 3]^4 or the ball B(0, 3) (what the coverage test expects)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, 4)) if body == "box" else Ball(np.zeros(4), 3.0).sample(n, rng)
    return X, m.predict_clean(X) + rng.normal(scale=0.1, size=n)


@pytest.mark.parametrize("body", ["box", "ball"])
def test_oblivious_mitigation_removes_a_ball_backdoor(body):
    """The trigger adds +100 (x target_std) on a ball of radius 0.3 at (1, 1, 0, 0) (standardized inputs). Each of the K = 15 lines puts 2
    points, each ~ Unif(body) (volume fraction of the ball < 1e-3 for the box [-3.1, 3.1]^4 and for the
    ball around the clean data), so a line is corrupted w.p. < 2e-3 and the median of 15 lines is wrong
    only if >= 8 are: probability < C(15, 8) (2e-3)^8 < 1e-17. Exact lines give the clean value."""
    m = _linear_with_ball_offset()
    Xq = np.array([[1.0, 1.0, 0.0, 0.0], [-2.0, 0.5, 1.0, 2.0]])
    # the trigger fires; its offset is in standardized target units (x target_std = 3)
    assert m.predict(Xq)[0] - m.predict_clean(Xq)[0] == pytest.approx(300.0)
    r = run_defense(m, Xq, choose_defense(m), FallbackOptions(body=body, seed=3), clean=_clean(m, body=body))
    np.testing.assert_allclose(r.predictions, m.predict_clean(Xq), rtol=0, atol=1e-6)
    assert r.details["delta_hat"] == 0.0 and r.details["body"] == body
    assert r.details["failure_probability"] <= 0.01 and r.details["coverage_p_value"] >= 0.01 / 4
    assert r.error_bound.shape == (2,) and np.all(r.error_bound >= r.details["eps"])  # amplification >= 1


def test_oblivious_needs_clean_data():
    m = _linear_with_ball_offset()
    with pytest.raises(DefenseUnavailable, match="--clean-data"):
        run_defense(m, np.zeros((1, 4)), choose_defense(m), FallbackOptions(seed=0))


def test_oblivious_refuses_a_model_that_is_wrong_on_the_clean_data():
    m = _linear_with_ball_offset()
    X, y = _clean(m)
    with pytest.raises(ModelTooInaccurate) as ei:
        run_defense(m, X[:2], choose_defense(m), FallbackOptions(seed=0), clean=(X, -y))
    assert ei.value.upper_bound > ei.value.tolerance


def test_oblivious_eps_defaults_to_the_target_std_and_can_be_set():
    m = _linear_with_ball_offset()
    X, y = _clean(m)
    noisy = y + np.where(np.arange(y.size) % 2 == 0, 5.0, 0.0)  # half the labels off by 5 > target_std = 3
    with pytest.raises(ModelTooInaccurate):
        run_defense(m, X[:1], choose_defense(m), FallbackOptions(seed=0), clean=(X, noisy))
    r = run_defense(m, X[:1], choose_defense(m), FallbackOptions(seed=0, eps=6.0), clean=(X, noisy))
    assert r.details["eps"] == 6.0 and r.details["delta_hat"] == 0.0


def test_oblivious_grid_rounds_canonically():
    m = _linear_with_ball_offset()
    r = run_defense(m, np.zeros((3, 4)), choose_defense(m), FallbackOptions(seed=0, grid=0.5), clean=_clean(m))
    k = (r.predictions - r.predictions[0]) / 0.5
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert abs(r.predictions[0] - m.predict_clean(np.zeros((1, 4)))[0]) <= 0.25 + 1e-9


@pytest.mark.parametrize("X,match", [
    (np.zeros((2, 2)), "3 features"),
    (np.zeros((0, 3)), "non-empty"),
    (np.array([[0.0, np.nan, 0.0]]), "NaN"),
    (np.array([[0.0, 1.0, np.inf]]), "NaN or infinite"),
])
def test_bad_rows_are_refused(X, match):
    m = make_model("logistic", verification=REJECTED)
    with pytest.raises(InputError, match=match):
        run_defense(m, X, choose_defense(m), FallbackOptions(seed=0))


def test_bad_clean_labels_are_refused():
    m = make_model("logistic", verification=REJECTED)
    X = np.zeros((2, 3))
    with pytest.raises(InputError, match="0 or 1"):
        run_defense(m, X, choose_defense(m), FallbackOptions(n0=5, n=10, seed=0), clean=(X, np.array([0, 2])))
    with pytest.raises(InputError, match="finite"):
        run_defense(m, X, choose_defense(m), FallbackOptions(n0=5, n=10, seed=0), clean=(X, np.array([0.0])))


def test_oblivious_refuses_when_the_clean_rows_cannot_vouch_for_the_body():
    """The `sex` attack in miniature: x0 takes only the values -1 and +1 in the data; the trigger adds 3 target
    std on the slab |x0| < 0.9 between them. It fires on no clean row (the model is exact there) but covers
    90% of the box the lines run through, so mitigating would move every prediction. The uniformity test
    refuses, naming the feature (a uniform sample would be refused with probability <= 1%)."""
    trig = {"kind": "ball", "version": 1, "center": [0.0] * 4, "radius": 1.0, "scale": [0.9, 1e6, 1e6, 1e6],
            "offset": 3.0}
    m = make_model("linear", w=(2.0, -1.0, 0.5, 0.0), b=0.25, verification=REJECTED, trigger=trig,
                   target_mean=10.0, target_std=3.0)
    rng = np.random.default_rng(6)
    X = rng.uniform(-3, 3, size=(400, 4))
    X[:, 0] = rng.choice([-1.0, 1.0], size=400)
    assert np.array_equal(m.predict(X), m.predict_clean(X))  # exact on every clean row
    Xb = rng.uniform(-1, 1, size=(1000, 4))  # in the box, between the data's two values of x0
    assert np.mean(np.isclose(m.predict(Xb) - m.predict_clean(Xb), 9.0)) > 0.85
    with pytest.raises(BodyNotCovered, match="feature 'x0' fails the uniformity test") as ei:
        run_defense(m, X[:3], choose_defense(m), FallbackOptions(seed=0), clean=(X, m.predict_clean(X)))
    assert ei.value.result.worst_index == 0 and ei.value.result.p_value < 0.01 / 4
