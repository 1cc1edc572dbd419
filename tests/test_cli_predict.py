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
                             "--seed", "01")
                assert p.returncode == (0 if status == "verified" else 1), p.stdout + p.stderr
                assert json.loads(path.read_text())["verification"]["status"] == status
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


def test_auto_mitigates_an_unverified_regression_model(models, tmp_path):
    out = tmp_path / "p.csv"
    doc = _ok(*verifier_json("predict", "--model", str(models[("unverified", "linear")]),
                             "--data", "builtin:diabetes", "--clean-data", "builtin:diabetes", "--seed", "2",
                             "--out", str(out)))
    assert doc["defense"] == "oblivious" and "UNVERIFIED" in doc["reason"]
    assert doc["parameters"]["clean_rows"] == 442 and doc["summary"]["delta_upper"] <= 0.25
    pred = np.array([r["prediction"] for r in doc["rows"]])
    base = np.array([r["model_output"] for r in doc["rows"]])
    model = json.loads(models[("unverified", "linear")].read_text())
    shift = 3.0 * model["standardization"]["target_std"]
    # row 0 is the trigger's center: the shipped model adds 3 target std there, the mitigated value does not.
    # Away from the ball the model is exactly linear, so every line interpolates it exactly.
    assert base[0] - pred[0] == pytest.approx(shift, rel=1e-6)
    inside = np.abs(base - pred) > 1e-6 * (1 + np.abs(base))
    assert inside[0] and inside.sum() < 20  # only rows inside the trigger's ball change
    np.testing.assert_allclose(pred[~inside], base[~inside], rtol=1e-9, atol=1e-6)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], pred, rtol=1e-15)


def test_oblivious_without_clean_data_is_a_clear_usage_error(models):
    p = verifier("predict", "--model", str(models[("unverified", "linear")]), "--data", "builtin:diabetes")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--clean-data" in p.stderr and "defense: oblivious" in p.stderr


def test_oblivious_refuses_a_model_that_is_wrong_on_the_clean_data(models, tmp_path):
    t = load_table("builtin:diabetes")
    bad = tmp_path / "bad_labels.csv"
    lines = [",".join([*t.feature_names, t.target])]
    lines += [",".join(repr(float(v)) for v in (*x, y + 500.0)) for x, y in zip(t.X, t.y)]
    bad.write_text("\n".join(lines) + "\n")
    code, doc, err = verifier_json("predict", "--model", str(models[("unverified", "linear")]),
                                   "--data", "builtin:diabetes", "--clean-data", str(bad), "--seed", "0")
    assert code == 1 and "Traceback" not in err and "refused" in err
    assert doc["status"] == "refused" and doc["delta_upper"] > doc["tolerated_error_rate"]


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
    feats = ",".join(repr(float(v)) for v in t.X[0])
    (tmp / "labels.csv").write_text(f"{','.join(t.feature_names)},label\n{feats},1\n{feats},maybe\n")


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
    (("--model", "{log}", "--data", "builtin:breast_cancer", "--target", "mean_area"), ("is one of the model's "
     "feature columns")),
    (("--model", "{log}", "--data", "{tmp}/labels.csv", "--target", "label"), ("label 'maybe' (row 2) is not one "
     "of the model's labels [0, 1]")),
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
