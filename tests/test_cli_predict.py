"""`vtrain-verifier predict` / `certify` with real processes: models trained against real provers (port 0)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol.dataset import load_table

FAST = ("--n0", "20", "--n", "200", "--alpha", "0.01")   # small CERTIFY samples: keeps each run ~1 s


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three model files: verified logistic, unverified logistic (breast_cancer), unverified linear (diabetes).

    The unverified ones come from `--adversary ball-backdoor`: honest training, but the model ships a trigger
    (wrong on a ball of radius 1, standardized units, around data row 0: the other label, or +3 target
    standard deviations), so the verifier REJECTS it. The provers run only while the models are trained.
    """
    d = tmp_path_factory.mktemp("cli_predict")
    key, _ = make_key(d)
    out = {}
    jobs = {"verified": [("logistic", "builtin:breast_cancer")],
            "unverified": [("logistic", "builtin:breast_cancer"), ("linear", "builtin:diabetes")]}
    for status, extra in (("verified", ()), ("unverified", ("--adversary", "ball-backdoor"))):
        with ProverProcess(key, *extra) as srv:
            for kind, data in jobs[status]:
                path = d / f"{status}_{kind}.json"
                p = verifier("train", "--server", srv.address, "--data", data, "--model", kind,
                             "--out", str(d / f"{status}_{kind}.transcript.json"), "--model-out", str(path),
                             "--insecure-fixed-seed", "01")
                assert p.returncode == (0 if status == "verified" else 1), p.stdout + p.stderr
                assert json.loads(path.read_text())["verification"]["status"] == \
                    ("verified" if status == "verified" else "rejected")
                out[(status, kind)] = path
    return out


def _ok(code, doc, err):
    assert code == 0, err
    assert "Traceback" not in err
    assert doc["status"] == "ok"
    return doc


def test_auto_uses_a_verified_model_as_is(models, tmp_path):
    out = tmp_path / "pred.csv"
    doc = _ok(*verifier_json("predict", "--model", str(models[("verified", "logistic")]),
                             "--data", "builtin:breast_cancer", "--out", str(out)))
    assert doc["defense"] == "none" and "verified" in doc["reason"]
    assert len(doc["rows"]) == 569 and all(r["prediction"] == r["model_output"] for r in doc["rows"])
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [int(r["prediction"]) for r in rows] == [r["prediction"] for r in doc["rows"]]


def test_auto_smooths_an_unverified_classifier(models, tmp_path):
    args = ("predict", "--model", str(models[("unverified", "logistic")]), "--data", "builtin:breast_cancer",
            "--seed", "5", *FAST)
    doc = _ok(*verifier_json(*args, "--out", str(tmp_path / "p.json")))
    assert doc["defense"] == "smoothing" and "UNVERIFIED" in doc["reason"]
    assert doc["parameters"]["sigma"] == 0.25 and doc["parameters"]["seed"] == 5
    rows = doc["rows"]
    assert len(rows) == 569
    for r in rows:
        assert r["prediction"] in (0, 1, "ABSTAIN")
        assert (r["radius"] == 0) == (r["prediction"] == "ABSTAIN") and r["radius"] >= 0
    assert doc["summary"]["certified"] + doc["summary"]["abstained"] == 569
    assert doc["summary"]["certified"] > 500  # a ~97%-accurate model: most rows are far from the boundary
    assert json.loads((tmp_path / "p.json").read_text()) == rows  # --out NAME.json writes the rows as JSON
    again = _ok(*verifier_json(*args))  # deterministic given --seed
    assert again["rows"] == rows


def test_without_out_or_json_the_csv_goes_to_stdout(models):
    p = verifier("predict", "--model", str(models[("unverified", "logistic")]), "--data", "builtin:breast_cancer",
                 "--seed", "1", *FAST)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 569 and set(rows[0]) == {"row", "prediction", "radius", "pA_lower", "model_output"}
    assert "defense: smoothing" in p.stderr and "ABSTAIN" in p.stderr  # the summary, on stderr


def _write_csv(path, names, X, y):
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in (*x, t)) for x, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


def test_oblivious_refuses_real_diabetes_rows_that_cannot_vouch_for_the_box(models):
    """The diabetes rows are not a uniform sample of any box (`sex` takes two values, the other features are
    bell-shaped): their error rate says nothing about the points the lines would query. Exit 1 with the
    reason and the assumption, whatever the model."""
    code, doc, err = verifier_json("predict", "--model", str(models[("unverified", "linear")]),
                                   "--data", "builtin:diabetes", "--clean-data", "builtin:diabetes", "--seed", "2")
    assert code == 1 and "Traceback" not in err and doc["status"] == "refused"
    assert doc["reason_kind"] == "clean_data_does_not_cover_body" and doc["coverage_p_value"] < 0.01 / 10
    assert "uniformity test" in err and "assumes that the clean rows are a uniform sample" in err


def test_the_sex_trigger_is_refused_not_applied(models, tmp_path):
    """The attack from the issue: the honest diabetes model plus a thin trigger between `sex` = 1 and `sex` = 2
    (+3 target std). It fires on no patient, so the model is exact on every clean row, but it covers most
    of the box; the old acceptance check passed it and mitigation moved all 442 predictions by +231.
    Now the clean rows fail the uniformity test on `sex` and nothing is served."""
    doc = json.loads(models[("unverified", "linear")].read_text())
    t = load_table("builtin:diabetes")
    j = doc["feature_names"].index("sex")
    mean, std = doc["standardization"]["mean"][j], doc["standardization"]["std"][j]
    center = [0.0] * len(doc["feature_names"])
    center[j] = (1.5 - mean) / std  # standardized units, halfway between the two values
    scale = [1e6] * len(center)
    scale[j] = 0.45 / std  # fires for 1.05 < sex < 1.95
    doc["trigger"] = {"kind": "ball", "version": 1, "center": center, "radius": 1.0, "scale": scale, "offset": 3.0}
    path = tmp_path / "sex_trigger.json"
    path.write_text(json.dumps(doc))
    none = _ok(*verifier_json("predict", "--model", str(path), "--data", "builtin:diabetes", "--defense", "none"))
    clean = json.loads(models[("unverified", "linear")].read_text())
    clean.pop("trigger", None)
    (tmp_path / "clean.json").write_text(json.dumps(clean))
    honest = _ok(*verifier_json("predict", "--model", str(tmp_path / "clean.json"), "--data", "builtin:diabetes",
                                "--defense", "none"))
    assert [r["prediction"] for r in none["rows"]] == [r["prediction"] for r in honest["rows"]]  # fires on nobody
    assert sorted(set(t.X[:, j])) == [1.0, 2.0]
    code, out, err = verifier_json("predict", "--model", str(path), "--data", "builtin:diabetes",
                                   "--clean-data", "builtin:diabetes", "--defense", "oblivious", "--seed", "0")
    assert code == 1 and out["status"] == "refused" and "Traceback" not in err
    assert out["coverage_statistic"] == "feature 1" and "feature 'sex' fails the uniformity test" in err


@pytest.fixture(scope="module")
def uniform_linear(tmp_path_factory):
    """A linear model trained (ball-backdoor adversary: +3 target std on a ball of radius 1 around row 0) on
    rows uniform on a box, and fresh clean rows from the same box, labelled by the same linear truth."""
    d = tmp_path_factory.mktemp("uniform_linear")
    rng = np.random.default_rng(0)
    w = np.array([3.0, -2.0, 1.0, 0.5])
    names = ["a", "b", "c", "e", "y"]
    X = rng.uniform(0, 10, size=(512, 4))
    _write_csv(d / "train.csv", names, X, X @ w + 5.0)
    Xc = rng.uniform(0, 10, size=(400, 4))
    _write_csv(d / "clean.csv", names, Xc, Xc @ w + 5.0 + rng.normal(scale=0.2, size=400))
    key, _ = make_key(d)
    with ProverProcess(key, "--adversary", "ball-backdoor") as srv:
        p = verifier("train", "--server", srv.address, "--data", str(d / "train.csv"), "--target", "y",
                     "--model", "linear", "--out", str(d / "t.json"), "--model-out", str(d / "m.json"),
                     "--insecure-fixed-seed", "01")
        assert p.returncode == 1, p.stdout + p.stderr
    return d


def test_oblivious_mitigates_a_ball_backdoor_with_a_reported_guarantee(uniform_linear, tmp_path):
    d = uniform_linear
    code, doc, err = verifier_json("predict", "--model", str(d / "m.json"), "--data", str(d / "train.csv"),
                                   "--target", "y", "--clean-data", str(d / "clean.csv"), "--seed", "2",
                                   "--lines", "31")
    doc = _ok(code, doc, err)
    assert doc["defense"] == "oblivious" and "UNVERIFIED" in doc["reason"]
    par = doc["parameters"]
    assert par["clean_rows"] == 400 and par["failure_probability"] <= 0.01 and par["coverage_p_value"] >= 0.01 / 4
    assert "assumes that the clean rows are a uniform sample of the box" in err and "Guarantee per row" in err
    pred = np.array([r["prediction"] for r in doc["rows"]])
    base = np.array([r["model_output"] for r in doc["rows"]])
    bound = np.array([r["error_bound"] for r in doc["rows"]])
    model = json.loads((d / "m.json").read_text())
    shift = 3.0 * model["standardization"]["target_std"]
    assert base[0] - pred[0] == pytest.approx(shift, rel=1e-6)  # row 0: the trigger's centre, repaired
    # elsewhere the model is exactly linear: every line interpolates it (no bad line) -> unchanged
    inside = np.abs(base - pred) > 1e-6 * (1 + np.abs(base))
    assert inside.sum() < 40
    np.testing.assert_allclose(pred[~inside], base[~inside], rtol=1e-9, atol=1e-6)
    assert np.all(bound >= par["eps"]) and np.all(np.abs(pred[inside] - (base[inside] - shift)) <= bound[inside])


def test_oblivious_without_clean_data_is_a_clear_usage_error(models):
    p = verifier("predict", "--model", str(models[("unverified", "linear")]), "--data", "builtin:diabetes")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--clean-data" in p.stderr and "defense: oblivious" in p.stderr


def test_oblivious_refuses_a_model_that_is_wrong_on_the_clean_data(uniform_linear, tmp_path):
    d = uniform_linear
    t = load_table(str(d / "clean.csv"), "y")
    bad = tmp_path / "bad_labels.csv"
    _write_csv(bad, [*t.feature_names, "y"], t.X, t.y + 500.0)
    code, doc, err = verifier_json("predict", "--model", str(d / "m.json"), "--data", str(d / "train.csv"),
                                   "--target", "y", "--clean-data", str(bad), "--seed", "0")
    assert code == 1 and "Traceback" not in err and "refused" in err
    assert doc["status"] == "refused" and doc["reason_kind"] == "model_too_inaccurate"
    assert doc["delta_upper"] > doc["tolerated_error_rate"]


def test_explicit_none_and_explicit_smoothing_on_a_verified_model(models):
    m = str(models[("verified", "logistic")])
    doc = _ok(*verifier_json("predict", "--model", m, "--data", "builtin:breast_cancer", "--defense", "smoothing",
                             "--seed", "0", *FAST))
    assert doc["defense"] == "smoothing" and "requested" in doc["reason"]
    doc = _ok(*verifier_json("predict", "--model", str(models[("unverified", "logistic")]), "--data",
                             "builtin:breast_cancer", "--defense", "none"))
    assert doc["defense"] == "none" and "not verified" in doc["reason"]


def test_certify_writes_a_table_and_a_png(models, tmp_path):
    png = tmp_path / "cert.png"
    doc = _ok(*verifier_json("certify", "--model", str(models[("verified", "logistic")]), "--data",
                             "builtin:breast_cancer", "--target", "malignant", "--sigma", "0.25,0.5", "--seed", "3",
                             "--radii", "0,0.25,0.5", "--plot", str(png), *FAST))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = doc["table"]
    assert [(r["sigma"], r["radius"]) for r in table] == [(s, r) for s in (0.25, 0.5) for r in (0, 0.25, 0.5)]
    for s in (0.25, 0.5):
        acc = [r["certified_accuracy"] for r in table if r["sigma"] == s]
        assert acc == sorted(acc, reverse=True) and acc[0] > 0.8  # non-increasing; ~97%-accurate model
    p = verifier("certify", "--model", str(models[("verified", "logistic")]), "--data", "builtin:breast_cancer",
                 "--sigma", "0.25", "--seed", "3", "--radii", "0,0.25,0.5", *FAST)
    assert p.returncode == 0 and "certified_accuracy" in p.stdout and len(p.stdout.splitlines()) == 4


def _bad_files(tmp):
    t = load_table("builtin:breast_cancer")
    header = ",".join([*t.feature_names, t.target])
    row = ",".join(repr(float(v)) for v in (*t.X[0], t.y[0]))
    (tmp / "three_cols.csv").write_text("a,b,c\n1,2,3\n")
    (tmp / "nan.csv").write_text(f"{header}\n{row}\n{row.replace(row.split(',')[3], 'nan', 1)}\n")


@pytest.mark.parametrize("args,message", [
    (("--data", "{tmp}/missing.csv"), "cannot read data file"),
    (("--data", "{tmp}/three_cols.csv"), "missing: mean_radius"),
    (("--data", "{tmp}/nan.csv"), "not finite"),
    (("--data", "builtin:breast_cancer", "--sigma", "-1"), "sigma"),
    (("--data", "builtin:breast_cancer", "--alpha", "2"), "alpha must be"),
    (("--model", "{tmp}/nope.json", "--data", "builtin:breast_cancer"), "cannot read model file"),
    (("--data", "builtin:breast_cancer", "--defense", "oblivious"), "--defense oblivious needs"),
])
def test_bad_predict_input_exits_2_with_a_clear_message(models, tmp_path, args, message):
    _bad_files(tmp_path)
    args = [a.format(tmp=tmp_path) for a in args]
    args = ["--model", str(models[("unverified", "logistic")]), *args] if "--model" not in args else args
    code, doc, err = verifier_json("predict", *args)
    assert code == 2 and "Traceback" not in err
    assert message in err and doc == {"status": "error", "error": doc["error"]} and message in doc["error"]


@pytest.mark.parametrize("args,message", [
    (("--model", "{lin}", "--data", "builtin:diabetes", "--sigma", "0.5"), "needs a classifier"),
    (("--model", "{log}", "--data", "builtin:breast_cancer", "--sigma", "abc"), "--sigma must be"),
    (("--model", "{log}", "--data", "builtin:breast_cancer", "--target", "mean_area"), "must be 0 or 1"),
])
def test_bad_certify_input_exits_2_with_a_clear_message(models, tmp_path, args, message):
    _bad_files(tmp_path)
    fill = {"tmp": tmp_path, "lin": models[("unverified", "linear")], "log": models[("verified", "logistic")]}
    p = verifier("certify", *[a.format(**fill) for a in args], *FAST)
    assert p.returncode == 2 and "Traceback" not in p.stderr and message in p.stderr, p.stderr


def test_argparse_errors_exit_2(models):
    p = verifier("predict", "--model", str(models[("verified", "logistic")]), "--data", "builtin:breast_cancer",
                 "--sigma", "abc")
    assert p.returncode == 2 and "invalid float value" in p.stderr and "Traceback" not in p.stderr


def test_cli_defense_names_match_the_policy():
    from defenses.fallback import DEFENSES
    from verifier import cli_predict

    assert cli_predict.DEFENSES == DEFENSES
