"""``vtrain-verifier``: train (against a prover), audit a transcript, predict, certify.

Exit codes: 0 verified / success, 1 rejected, 2 usage, input or connection error, or an altered transcript,
3 spot-checked (only K of T steps were checked: see the verdict's first sentence).
"""

from __future__ import annotations

import argparse
import json
import sys

from protocol.cli_help import Parser, add_version
from protocol.errors import InputError, TranscriptFormatError, VtrainError
from protocol.peer_text import screen_text

EXIT_OK, EXIT_REJECTED, EXIT_ERROR, EXIT_SPOT_CHECKED = 0, 1, 2, 3


class CliError(Exception):
    """Exit 2 with this message."""


def _parser() -> Parser:
    p = Parser(prog="vtrain-verifier", description="The client (verifier) side of vtrain.")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a remote prover and verify it")
    t.add_argument("--server", required=True, help="HOST:PORT of a vtrain-prover")
    t.add_argument("--data", help="PATH.csv or builtin:breast_cancer | builtin:diabetes | builtin:digits (default: none; "
                   "required unless --trainer-data)")
    t.add_argument("--trainer-data", metavar="NAME", help="train on a dataset the trainer holds (listed with its "
                   "signed data card by the trainer): spot-checked against its hiding commitment, rows stay with "
                   "the trainer; instead of --data (default: none, --data is used)")
    t.add_argument("--target", help="target column (default for builtin data: its label column)")
    t.add_argument("--model", choices=("linear", "logistic", "softmax"),
                   help="linear regression (squared loss), logistic regression (binary; picks softmax when the "
                        "target has more than two classes) or softmax (multinomial); with --trainer-data, default: "
                        "the kind the dataset is committed for")
    t.add_argument("--epochs", type=int, help="default: logistic 30, softmax 60, linear 20")
    t.add_argument("--batch-size", type=int, help="a power of two (default: logistic 16, linear 32; a table "
                   "with fewer rows gets the largest power of two <= rows/4)")
    t.add_argument("--lr", type=float, help="learning rate, rounded to a multiple of 2^-lr_shift "
                   "(default: logistic 0.2, linear 0.02)")
    t.add_argument("--lr-shift", type=int, default=10,
                   help="learning-rate resolution: the rate is an integer multiple of 2^-LR_SHIFT")
    t.add_argument("--l2", type=float, help="L2 penalty, rounded to a multiple of 2^-frac_bits "
                   "(default: logistic 0.01, linear 0)")
    t.add_argument("--frac-bits", type=int, default=16,
                   help="fixed point: fractional bits of every value (4..30)")
    t.add_argument("--weight-bits", type=int, default=32,
                   help="fixed point: values must stay below 2^(WEIGHT_BITS-1) (FRAC_BITS+2..62)")
    t.add_argument("--checkpoint-interval", type=int, default=100,
                   help="the trainer signs a checkpoint every this many steps")
    t.add_argument("--proof", choices=("spot", "snark"), default="spot",
                   help="spot: challenge K random steps (default); snark: a Groth16 proof of all steps (linear only)")
    t.add_argument("--spot-checks", type=int, default=64, help="K challenged steps (default %(default)s)")
    t.add_argument("--max-constraints", type=int, default=1 << 16,
                   help="refuse --proof snark above this circuit size (default %(default)s)")
    t.add_argument("--trainer-key", help="pin the trainer's Ed25519 public key (64 hex characters); also accepts "
                   "a trainer whose key changed (replaces its trust-store entry) (default: the trust store: the "
                   "first key seen for an address is recorded, a later different key is refused)")
    t.add_argument("--no-replay", action="store_true",
                   help="skip the full local replay after the spot check: the verdict is then SPOT-CHECKED (exit 3), "
                   "not VERIFIED (default: replay)")
    t.add_argument("--insecure-fixed-seed", metavar="HEX",
                   help="INSECURE, tests and demos only: derive the training seed (batch order, initial state) from "
                   "HEX; the audit seed stays fresh, and the verdict says the randomness was fixed by the user "
                   "(default: fresh randomness)")
    t.add_argument("--trust-store", metavar="PATH",
                   help="known trainer keys (default: $XDG_CONFIG_HOME/vtrain/known_trainers or "
                   "~/.config/vtrain/known_trainers)")
    t.add_argument("--seed", help=argparse.SUPPRESS)  # removed in vtrain/2: refused with an explanation
    t.add_argument("--tls-ca", help="PEM CA certificate: connect with TLS (default: plaintext)")
    t.add_argument("--out", required=True, help="transcript path (missing folders are created)")
    t.add_argument("--model-out", required=True, help="model JSON path (missing folders are created)")
    t.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for each answer of the trainer, and at most between two messages of its "
                        "training stream; then the client gives up and saves the partial transcript "
                        "(default %(default)s)")
    t.add_argument("--retries", type=int, default=3,
                   help="when the trainer is busy (RESOURCE_EXHAUSTED with a retry hint, before training starts), "
                        "start a new session up to N times with exponential backoff (default %(default)s)")
    t.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    add_table_args(t)

    a = sub.add_parser("audit", help="re-verify a saved transcript offline")
    a.add_argument("transcript", help="a transcript written by `train --out`")
    a.add_argument("--data", help="the session's data (PATH.csv or builtin:NAME): enables the full replay "
                   "(default: signatures, bindings and spot-check openings only)")
    a.add_argument("--target", help="target column of --data (default: the session's)")
    a.add_argument("--trainer-key", help="require this trainer public key (hex; default: the trust store, "
                   "else the transcript's key, reported as unauthenticated)")
    a.add_argument("--trust-store", metavar="PATH", help="known trainer keys (default as for train)")
    a.add_argument("--model-out", metavar="MODEL.json",
                   help="with --data: write the model the replay rebuilt, only when it verifies "
                   "(missing folders are created; default: no model written)")
    a.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    add_table_args(a, select=False)

    x = sub.add_parser("export-snarkjs", help="write a SNARK transcript's proof in snarkjs formats")
    x.add_argument("transcript", help="a transcript of a --proof snark session")
    x.add_argument("--out", required=True, help="output folder (created when missing)")
    x.add_argument("--data", help="the session's data: also write circuit.r1cs and witness.wtns "
                   "(default: the proof files only)")
    x.add_argument("--target", help="target column of --data (default: the session's)")
    x.add_argument("--json", action="store_true", help="machine-readable result on stdout")

    from . import cli_predict

    cli_predict.add_parsers(sub)
    from . import cli_2pc

    cli_2pc.add_parser(sub)
    return p


# -- reading users' tables (issue #12): shared by train, audit, predict, certify ---------------------------

def add_table_args(p, select: bool = True) -> None:
    g = p.add_argument_group("table options")
    g.add_argument("--delimiter", help="field delimiter: comma, semicolon, tab or one character (default: detected "
                   "from the header line)")
    g.add_argument("--drop-missing", action="store_true",
                   help="drop rows with empty cells in the columns used (default: refuse them, naming the cell)")
    if select:
        g.add_argument("--features", help="comma-separated feature columns (default: every column but the target)")
        g.add_argument("--drop", help="comma-separated columns to leave out, e.g. a text column (default: none)")


def table_options(args):
    from protocol.csv_reader import ReadOptions, split_names

    return ReadOptions(delimiter=getattr(args, "delimiter", None), features=split_names(getattr(args, "features", None)),
                       drop=split_names(getattr(args, "drop", None)) or (),
                       drop_missing=bool(getattr(args, "drop_missing", False))).validated()


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from .cli_train import cmd_train

            return cmd_train(args)
        if args.command == "audit":
            from .cli_audit import cmd_audit

            return cmd_audit(args)
        if args.command == "train-2pc":
            from .cli_2pc import cmd_train_2pc

            return cmd_train_2pc(args)
        if args.command == "export-snarkjs":
            from .cli_snarkjs import cmd_export

            return cmd_export(args)
        from . import cli_predict

        return cli_predict.dispatch(args)
    except (CliError, InputError, TranscriptFormatError, VtrainError) as e:
        if getattr(args, "json", False):
            print(json.dumps({"status": "error", "error": str(e)}))
        print(f"vtrain-verifier: error: {screen_text(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vtrain-verifier: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
