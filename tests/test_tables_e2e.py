"""Issue #12 with real processes: multi-class models (iris, digits), labels of any type, column selection,
delimiters, empty cells; predict and certify on what train wrote; the model file is all predict needs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from protocol.dataset import load_table


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    key, pub = make_key(d)
    with ProverProcess(key) as srv:
        yield srv.address, pub


def _train(addr, out, data, *extra, model="logistic", epochs="2", batch="16"):
    return verifier_json("train", "--server", addr, "--data", str(data), "--model", model, "--epochs", epochs,
                         "--batch-size", batch, "--out", str(out / "t.json"), "--model-out", str(out / "m.json"),
                         "--insecure-fixed-seed", "0c0d", *extra)


def _bc_rows(n=160, cols=4):
    """(header, rows) from the bundled breast-cancer table: the first ``cols`` features and the label."""
    t = load_table("builtin:breast_cancer")
    return t.feature_names[:cols], t.X[:n, :cols], t.y[:n].astype(int)


def _write(path, header, rows, delimiter=",", bom=False):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_iris_three_text_labels_train_softmax_verify_audit_predict_certify(server, tmp_path):
    addr, pub = server
    rc, doc, err = _train(addr, tmp_path, "builtin:iris", "--trainer-key", pub, epochs="3")
    assert rc == 0, err
    assert doc["status"] == "verified" and doc["model_kind"] == "softmax" and doc["config"]["num_classes"] == 3
    assert any("3 classes" in n and "softmax" in n for n in doc["notes"])
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["model_kind"] == "softmax" and m["standardization"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert np.shape(m["weights_fixed"]) == (3, 4) and len(m["bias_fixed"]) == 3
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:iris")
    assert rc == 0 and audit["check"] == "replay", err
    rc, pred, err = verifier_json("predict", "--model", str(tmp_path / "m.json"), "--data", "builtin:iris")
    assert rc == 0 and pred["defense"] == "none", err
    got = [r["prediction"] for r in pred["rows"]]
    assert set(got) <= {"setosa", "versicolor", "virginica"}
    truth = load_table("builtin:iris").y.tolist()
    assert np.mean([g == t for g, t in zip(got, truth)]) > 0.8
    rc, cert, err = verifier_json("certify", "--model", str(tmp_path / "m.json"), "--data", "builtin:iris",
                                  "--sigma", "0.25", "--n0", "20", "--n", "100", "--seed", "1")
    assert rc == 0 and cert["clean_accuracy_of_model"] > 0.8, err
    # smoothing (forced) answers with the labels or ABSTAIN
    rc, pred, err = verifier_json("predict", "--model", str(tmp_path / "m.json"), "--data", "builtin:iris",
                                  "--defense", "smoothing", "--n0", "20", "--n", "100", "--seed", "1")
    assert rc == 0 and {r["prediction"] for r in pred["rows"]} <= {"setosa", "versicolor", "virginica", "ABSTAIN"}


def test_digits_ten_classes_with_explicit_softmax(server, tmp_path):
    addr, _ = server
    rc, doc, err = _train(addr, tmp_path, "builtin:digits", model="softmax", epochs="1", batch="64")
    assert rc == 0 and doc["status"] == "verified" and doc["config"]["num_classes"] == 10, err
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"))  # without the data: spot-checked (exit 3)
    assert rc == 3 and audit["status"] == "spot-checked", err
    assert json.loads((tmp_path / "m.json").read_text())["standardization"]["labels"] == list(range(10))


def test_a_cheating_trainer_on_softmax_is_caught_by_spot_check_and_replay(tmp_path):
    key, _ = make_key(tmp_path)
    with ProverProcess(key, "--adversary", "all-steps") as srv:
        rc, doc, err = _train(srv.address, tmp_path, "builtin:iris", epochs="2")
    assert rc == 1 and doc["status"] == "rejected" and doc["step"] is not None, (doc, err)
    rc, audit, _ = verifier_json("audit", str(tmp_path / "t.json"), "--data", "builtin:iris")
    assert rc == 1 and audit["step"] == 1


def test_yes_no_target_and_predictions_written_as_labels(server, tmp_path):
    addr, _ = server
    names, X, y = _bc_rows()
    path = _write(tmp_path / "yn.csv", [*names, "malignant"],
                  [[*map(repr, x), "yes" if v else "no"] for x, v in zip(X.tolist(), y)])
    rc, doc, err = _train(addr, tmp_path, path, "--target", "malignant")
    assert rc == 0 and doc["model_kind"] == "logistic", err
    assert json.loads((tmp_path / "m.json").read_text())["standardization"]["labels"] == ["no", "yes"]
    out = tmp_path / "p.csv"
    p = verifier("predict", "--model", str(tmp_path / "m.json"), "--data", str(path), "--out", str(out))
    assert p.returncode == 0, p.stderr
    preds = [r["prediction"] for r in csv.DictReader(out.open())]
    assert set(preds) <= {"yes", "no"} and np.mean([(p == "yes") == bool(v) for p, v in zip(preds, y)]) > 0.8


def test_a_string_column_is_refused_by_name_then_dropped(server, tmp_path):
    addr, _ = server
    names, X, y = _bc_rows()
    header = [names[0], "site", *names[1:], "label"]
    rows = [[repr(x[0]), "north" if i % 2 else "south", *map(repr, x[1:]), v] for i, (x, v) in
            enumerate(zip(X.tolist(), y))]
    path = _write(tmp_path / "site.csv", header, rows)
    rc, doc, err = _train(addr, tmp_path, path, "--target", "label")
    assert rc == 2 and "column 'site'" in err and "--drop site" in err and "Traceback" not in err
    rc, doc, err = _train(addr, tmp_path, path, "--target", "label", "--drop", "site")
    assert rc == 0 and doc["status"] == "verified", err
    m = json.loads((tmp_path / "m.json").read_text())
    assert "site" not in m["feature_names"] and m["table_columns"] == header
    # predict on the same table: 'site' was in the training table, so it is ignored
    rc, pred, err = verifier_json("predict", "--model", str(tmp_path / "m.json"), "--data", str(path))
    assert rc == 0 and len(pred["rows"]) == len(rows), err
    # --features picks columns (in that order) instead
    rc, doc, err = _train(addr, tmp_path, path, "--target", "label", "--features", f"{names[1]},{names[0]}")
    assert rc == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["feature_names"] == [names[1], names[0]]


def test_predict_names_missing_and_unexpected_columns(server, tmp_path):
    addr, _ = server
    names, X, y = _bc_rows()
    path = _write(tmp_path / "a.csv", [*names, "label"], [[*map(repr, x), v] for x, v in zip(X.tolist(), y)])
    assert _train(addr, tmp_path, path, "--target", "label")[0] == 0
    other = _write(tmp_path / "b.csv", [*names[1:], "extra_col"], [[*map(repr, x[1:]), 1] for x in X.tolist()])
    p = verifier("predict", "--model", str(tmp_path / "m.json"), "--data", str(other))
    assert p.returncode == 2 and f"missing: {names[0]}" in p.stderr and "unexpected: extra_col" in p.stderr
    assert "--drop extra_col" in p.stderr and "Traceback" not in p.stderr
    ok = _write(tmp_path / "c.csv", [*names, "extra_col"], [[*map(repr, x), 1] for x in X.tolist()])
    p = verifier("predict", "--model", str(tmp_path / "m.json"), "--data", str(ok), "--drop", "extra_col")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(("delimiter", "flag"), [(";", None), ("\t", None), (";", "semicolon")])
def test_semicolon_and_tab_files_with_bom_and_quoted_header(server, tmp_path, delimiter, flag):
    addr, _ = server
    names, X, y = _bc_rows()
    path = tmp_path / "semi.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        fh.write(delimiter.join(f'" {n} "' for n in [*names, "malignant"]) + "\n")  # quoted, padded names
        fh.writelines(delimiter.join([*(f"{a:.6g}" for a in x), str(v)]) + "\n" for x, v in zip(X.tolist(), y))
    extra = ("--delimiter", flag) if flag else ()
    rc, doc, err = _train(addr, tmp_path, path, "--target", "malignant", *extra)
    assert rc == 0 and doc["status"] == "verified", err
    assert json.loads((tmp_path / "m.json").read_text())["feature_names"] == names
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", str(path), *extra)
    assert rc == 0 and audit["check"] == "replay", err


def test_empty_cells_refused_with_line_and_column_or_dropped(server, tmp_path):
    addr, _ = server
    names, X, y = _bc_rows()
    rows = [[*map(repr, x), v] for x, v in zip(X.tolist(), y)]
    rows[4][1] = ""  # line 6 (header is line 1)
    rows[9][0] = ""
    path = _write(tmp_path / "holes.csv", [*names, "label"], rows)
    rc, doc, err = _train(addr, tmp_path, path, "--target", "label")
    assert rc == 2 and f"line 6, column '{names[1]}': empty cell" in err and "--drop-missing" in err
    rc, doc, err = _train(addr, tmp_path, path, "--target", "label", "--drop-missing")
    assert rc == 0 and doc["status"] == "verified", err
    assert any("dropped 2 of 160 rows" in n for n in doc["notes"])
    rc, audit, err = verifier_json("audit", str(tmp_path / "t.json"), "--data", str(path), "--drop-missing")
    assert rc == 0 and audit["check"] == "replay", err


def test_snark_is_linear_only_and_the_cli_says_so(server, tmp_path):
    rc, _doc, err = _train(server[0], tmp_path, "builtin:iris", "--proof", "snark")
    assert rc == 2 and "linear regression only" in err and "--proof spot" in err
