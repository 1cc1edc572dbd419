"""Limits checked before work (verifier/preflight.py), with real prover and verifier processes.

A refused session must be refused from the trainer's GetInfo limits before the data is read in full or
uploaded (the prover's log shows no session opened), with settings that fit; a table smaller than the
default batch trains by default with a batch that fits, and says so.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from procs import ProverProcess, make_key, verifier, verifier_json

from verifier import preflight


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("preflight"))[0]


def _csv(path, X, y, names=None):
    names = names or [f"x{j}" for j in range(X.shape[1])]
    lines = [",".join([*names, "y"])] + [",".join(f"{v:.6g}" for v in [*row, t]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_limits_refused_before_the_data_is_read_with_settings_that_fit(key, tmp_path):
    """Every limit crossed is listed with a concrete fix. The file's last line is not a number: had the client
    parsed the file, the error would name that line instead of the limits."""
    rng = np.random.default_rng(1)
    data = _csv(tmp_path / "big.csv", rng.normal(size=(3000, 6)), rng.normal(size=3000))
    with open(data, "a") as fh:
        fh.write("1,2,3,4,5,6,oops\n")
    with ProverProcess(key, "--max-steps", "500", "--max-rows", "2000", "--max-features", "4",
                       "--max-spot-checks", "16", "-v") as srv:
        p = verifier("train", "--server", srv.address, "--data", str(data), "--target", "y", "--model", "linear",
                     "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        srv.stop()
        log = srv.stderr()
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    err = p.stderr
    assert "nothing was uploaded" in err and "oops" not in err
    assert "3001 rows, the trainer's limit is 2000" in err and "--max-rows 3001" in err
    assert "6 features, the trainer's limit is 4" in err and "--max-features 6" in err
    assert "64 spot checks, the trainer's limit is 16: use --spot-checks 16" in err
    # 20 epochs x 93 steps of 32 = 1860 steps: batch 128 gives 460 <= 500; 500 // 93 = 5 epochs
    assert "1860 training steps" in err and "--batch-size 128 or --epochs 5" in err and "--max-steps 1860" in err
    assert "opened" not in log and not (tmp_path / "t.json").exists()


def test_steps_advice_fits_the_limit(key, tmp_path):
    """The proposed settings really fit: a second run with them is accepted and verifies."""
    with ProverProcess(key, "--max-steps", "100") as srv:
        base = ("train", "--server", srv.address, "--data", "builtin:diabetes", "--model", "linear",
                "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"), "--insecure-fixed-seed", "02")
        p = verifier(*base)
        assert p.returncode == 2 and "260 training steps" in p.stderr, p.stderr
        assert "use --batch-size 128 or --epochs 7, or ask the trainer for --max-steps 260" in p.stderr
        code, doc, err = verifier_json(*base, "--epochs", "7")
        assert code == 0 and doc["status"] == "verified" and doc["num_steps"] == 91, err
        code, doc, err = verifier_json(*base, "--batch-size", "128")
        assert code == 0 and doc["num_steps"] == 60, err


def test_snark_size_checked_before_the_upload(key, tmp_path):
    with ProverProcess(key, "--max-constraints", "2000", "-v") as srv:
        p = verifier("train", "--server", srv.address, "--data", "builtin:diabetes", "--model", "linear",
                     "--proof", "snark", "--epochs", "1", "--batch-size", "256",
                     "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        srv.stop()
        log = srv.stderr()
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "the SNARK circuit would have" in p.stderr and "the trainer's limit is 2000" in p.stderr
    assert "--proof spot" in p.stderr and "opened" not in log


def test_small_table_trains_by_default_with_a_batch_that_fits(key, tmp_path):
    """Linnerud-size (15 rows, 3 features + target): the linear default batch is 32."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(15, 3))
    data = _csv(tmp_path / "small.csv", X, X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=15),
                ["chins", "situps", "jumps"])
    with ProverProcess(key) as srv:
        args = ("train", "--server", srv.address, "--data", str(data), "--target", "y", "--model", "linear",
                "--out", str(tmp_path / "t.json"), "--model-out", str(tmp_path / "m.json"))
        p = verifier(*args)
        assert p.returncode == 0 and "VERIFIED" in p.stdout, p.stdout + p.stderr
        assert "15 rows are fewer than one batch of 32 (the linear default): using --batch-size 2 " \
               "(7 steps per epoch)" in p.stderr
        code, doc, _err = verifier_json(*args)
        assert code == 0 and doc["config"]["batch_size"] == 2 and "using --batch-size 2" in doc["notes"][0]
    # an explicit batch that does not fit is refused with one that does, before connecting (no server here)
    p = verifier("train", "--server", "127.0.0.1:1", *args[3:], "--batch-size", "32")
    assert p.returncode == 2 and "15 rows are fewer than one batch of 32: use --batch-size 2 (at most 8)" \
        in p.stderr, p.stderr


@pytest.mark.parametrize("text,rows,cols", [
    ("a,b,y\n1,2,3\n4,5,6\n", 2, 2),
    ("a,b,y\n1,2,3\n4,5,6", 2, 2),            # no final newline
    ("a,b,y\r\n1,2,3\r\n4,5,6\r\n\r\n\n", 2, 2),  # CRLF and trailing blank lines
    ("a,b,y\n", 0, 2),
    ("", 0, 0),
])
def test_peek_shape_counts_without_parsing(tmp_path, text, rows, cols):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    assert preflight.peek_shape(str(path)) == preflight.TableShape(rows, cols)


def test_peek_shape_of_builtin_data_matches_the_loaded_table():
    from protocol.dataset import load_table

    for name in ("breast_cancer", "diabetes", "digits"):
        t = load_table(f"builtin:{name}")
        assert preflight.peek_shape(f"builtin:{name}") == preflight.TableShape(*t.X.shape)


@pytest.mark.parametrize("opts,cols", [
    ({}, 3), ({"drop": ("b",)}, 2), ({"drop": ("b", "nope")}, 2), ({"features": ("a",)}, 1),
    ({"delimiter": ";"}, 0),  # the wrong delimiter: one column; the full load then names the problem
])
def test_peek_shape_follows_the_table_options(tmp_path, opts, cols):
    """The feature count checked against the trainer's limit is the one the session will have."""
    from protocol.csv_reader import ReadOptions
    from protocol.dataset import load_table

    path = tmp_path / "t.csv"
    path.write_text("a,b,c,y\n1,2,3,4\n5,6,7,8\n")
    shape = preflight.peek_shape(str(path), ReadOptions(**opts))
    assert shape == preflight.TableShape(2, cols)
    if cols and "nope" not in opts.get("drop", ()):
        assert load_table(str(path), "y", options=ReadOptions(**opts)).X.shape == (2, cols)


def test_small_table_batch_rule():
    assert preflight.small_table_batch(15, 32) == 2 and preflight.small_table_batch(15, 16) == 2
    assert preflight.small_table_batch(31, 32) == 4 and preflight.small_table_batch(3, 16) == 1
    assert preflight.small_table_batch(32, 32) is None and preflight.small_table_batch(442, 32) is None


def test_json_output_of_a_refusal_is_machine_readable(key, tmp_path):
    with ProverProcess(key, "--max-rows", "100") as srv:
        code, doc, _err = verifier_json("train", "--server", srv.address, "--data", "builtin:diabetes", "--model",
                                       "linear", "--out", str(tmp_path / "t.json"),
                                       "--model-out", str(tmp_path / "m.json"))
    assert code == 2 and doc["status"] == "error" and "--max-rows 442" in doc["error"]
    assert json.dumps(doc)
