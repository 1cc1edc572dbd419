"""CLI polish with real processes: help and defaults for every flag, --version, output folders created the
same way everywhere (and one clear error when a path cannot be written), the certified-accuracy plot title
inside the figure, the fallback summary, and an install without setuptools warnings."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import PROVER, VERIFIER, ProverProcess, make_key, verifier, verifier_json

ROOT = Path(__file__).resolve().parents[1]
DEALER = str(Path(PROVER).parent / "vtrain-dealer")
FAST = ("--n0", "20", "--n", "200", "--alpha", "0.01")


def _subparsers():
    from dealer.cli import _parser as dealer_parser
    from prover.cli import _parser as prover_parser
    from verifier.cli import _parser as verifier_parser

    for top in (prover_parser(), verifier_parser(), dealer_parser()):
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        yield from ((top.prog, name, parser) for name, parser in sub.choices.items())


def test_every_flag_has_help_and_a_shown_default():
    """Every option of every subcommand has help; an optional flag shows its default value, or its help says
    what happens without it ("default: ...")."""
    seen = 0
    for prog, name, parser in _subparsers():
        fmt = parser._get_formatter()
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
                continue  # a hidden flag (the removed --seed, refused with an explanation) is not in the help
            seen += 1
            where = f"{prog} {name} {a.option_strings or a.dest}"
            assert a.help, f"{where} has no help"
            if a.option_strings and not a.required and not isinstance(a, argparse._StoreTrueAction):
                shown = fmt._get_help_string(a) % {"default": a.default}
                assert "default" in shown, f"{where} shows no default: {a.help!r}"
    assert seen > 60


@pytest.mark.parametrize("cmd,flag,default", [
    ((PROVER, "serve"), "--max-steps", "1000000"), ((PROVER, "serve"), "--max-message-bytes", "67108864"),
    ((VERIFIER, "train"), "--lr-shift", "10"), ((VERIFIER, "train"), "--frac-bits", "16"),
    ((VERIFIER, "train"), "--weight-bits", "32"), ((VERIFIER, "train"), "--checkpoint-interval", "100"),
    ((VERIFIER, "train-2pc"), "--l2", "0.0"),
])
def test_help_output_shows_defaults(cmd, flag, default):
    p = subprocess.run([*cmd, "--help"], check=False, capture_output=True, text=True, timeout=60,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0
    start = p.stdout.index(f"  {flag} ")
    entry = " ".join(p.stdout[start:p.stdout.find("\n  -", start + 1)].split())   # the flag's help, unwrapped
    assert f"(default: {default})" in entry, entry


def test_version_on_both_commands():
    from protocol.statements import PROTOCOL_VERSION

    for exe, name in ((PROVER, "vtrain-prover"), (VERIFIER, "vtrain-verifier"), (DEALER, "vtrain-dealer")):
        p = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith(f"{name} 0.") and PROTOCOL_VERSION in p.stdout, p.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A verified and an unverified (ball-backdoor trigger) logistic model on breast_cancer, written into
    folders that do not exist yet."""
    d = tmp_path_factory.mktemp("usability")
    key, _ = make_key(d)
    out = {}
    for status, extra in (("verified", ()), ("unverified", ("--adversary", "ball-backdoor"))):
        with ProverProcess(key, *extra) as srv:
            model = d / status / "models" / "m.json"
            tr = d / status / "transcripts" / "t.json"
            p = verifier("train", "--server", srv.address, "--data", "builtin:breast_cancer", "--model",
                         "logistic", "--out", str(tr), "--model-out", str(model), "--insecure-fixed-seed", "05")
            assert p.returncode == (0 if status == "verified" else 1), p.stdout + p.stderr
            out[status] = (model, tr)
    out["dir"] = d
    return out


def test_train_creates_missing_output_folders(trained):
    for status in ("verified", "unverified"):
        model, tr = trained[status]
        expected = "verified" if status == "verified" else "rejected"  # #7's verdict words in the model file
        assert json.loads(model.read_text())["verification"]["status"] == expected and tr.is_file()


def test_certify_and_predict_create_missing_output_folders(trained, tmp_path):
    model = str(trained["verified"][0])
    png = tmp_path / "new" / "plots" / "ca.png"
    code, _doc, err = verifier_json("certify", "--model", model, "--data", "builtin:breast_cancer", "--sigma",
                                   "0.25", "--plot", str(png), *FAST, "--seed", "1")
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", err
    out = tmp_path / "new2" / "rows" / "pred.csv"
    p = verifier("predict", "--model", model, "--data", "builtin:breast_cancer", "--out", str(out))
    assert p.returncode == 0 and out.read_text().startswith("row,prediction"), p.stderr


def test_certify_reports_what_the_transcript_shows_not_the_model_file(trained, tmp_path):
    """An edited model file that calls a rejected model verified is still unverified in certify's JSON."""
    model, tr = trained["unverified"]
    doc = json.loads(model.read_text())
    doc["verification"]["status"] = "verified"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    runs = {"forged": ("--model", str(forged), "--transcript", str(tr)),
            "verified": ("--model", str(trained["verified"][0]))}
    for name, args in runs.items():
        code, out, err = verifier_json("certify", *args, "--data", "builtin:breast_cancer", "--sigma", "0.25", *FAST,
                                       "--seed", "1")
        assert code == 0, err
        assert out["verification"]["verified"] is (name == "verified"), out["verification"]
    assert out["verification"]["model_file_says"] == "verified"


def test_unwritable_output_paths_get_one_clear_message(trained, tmp_path):
    """A path under a regular file cannot be created: every command says so (exit 2, no traceback)."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    model = str(trained["verified"][0])
    runs = [
        ("certify", "--model", model, "--data", "builtin:breast_cancer", "--sigma", "0.25", *FAST,
         "--plot", str(blocker / "p.png")),
        ("predict", "--model", model, "--data", "builtin:breast_cancer", "--out", str(blocker / "o.csv")),
    ]
    for args in runs:
        p = verifier(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert f"cannot write {blocker}/" in p.stderr and "cannot create its folder" in p.stderr, p.stderr
    with ProverProcess(make_key(tmp_path)[0], "-v") as srv:
        p = verifier("train", "--server", srv.address, "--data", "builtin:diabetes", "--model", "linear",
                     "--epochs", "1", "--out", str(blocker / "t.json"), "--model-out", str(tmp_path / "m.json"))
        srv.stop()
    assert p.returncode == 2 and f"cannot write {blocker}/t.json: cannot create its folder" in p.stderr, p.stderr
    assert "opened" not in srv.stderr()  # refused before the session


def test_certified_accuracy_title_is_inside_the_figure():
    """The title the certify command uses (long, two lines after wrapping) fits inside the figure, both edges."""
    from defenses.certified_accuracy import certified_accuracy_figure

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    title = ("certified accuracy, unverified logistic model, 1797 rows (radius: standardized L2) with a longer "
             "description than any the CLI writes")
    fig = certified_accuracy_figure({0.25: (rng.uniform(0, 1, 200), y, y), 1.0: (rng.uniform(0, 2, 200), y, 1 - y)},
                                    title=title)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box, page = fig.axes[0].title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (box, page)
    for text in (fig.axes[0].xaxis.label, fig.axes[0].yaxis.label):
        b = text.get_window_extent(renderer)
        assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1


def test_fallback_summary_says_what_smoothing_changed(trained):
    model = str(trained["unverified"][0])
    code, doc, err = verifier_json("predict", "--model", model, "--data", "builtin:breast_cancer", *FAST,
                                   "--seed", "3")
    assert code == 0 and doc["defense"] == "smoothing", err
    rows = doc["rows"]
    abstained = sum(r["prediction"] == "ABSTAIN" for r in rows)
    flipped = sum(r["prediction"] != "ABSTAIN" and r["prediction"] != r["model_output"] for r in rows)
    radii = [r["radius"] for r in rows if r["prediction"] != "ABSTAIN"]
    line = next(ln for ln in err.splitlines() if ln.startswith("smoothing changed"))
    assert line.startswith(f"smoothing changed {abstained + flipped} of 569 answers: {abstained} ABSTAIN, "
                           f"{flipped} certified with another label than the model's; {569 - abstained} rows "
                           f"certified, median certified radius {np.median(radii):.3g} (standardized L2)"), line
    assert abstained > 0   # the ball-backdoor row and its neighbours sit at the decision boundary


@pytest.mark.slow
def test_install_prints_no_setuptools_warnings(tmp_path):
    """Building the package (the step `pip install` runs) emits no warnings from pyproject.toml."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("protocol", "prover", "verifier", "defenses", "mpc", "dealer"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path / "dist"), str(src)], check=False, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    text = p.stdout + p.stderr
    assert "Warning" not in text and "deprecated" not in text.lower(), text
    assert list((tmp_path / "dist").glob("vtrain-*.whl"))
