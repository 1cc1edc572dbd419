"""``train`` and ``audit`` subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc

from protocol import model_file
from protocol import transcript as tx
from protocol.csv_reader import ReadOptions
from protocol.dataset import Standardization, fit_standardization, load_table, quantized_rows, resolve_model
from protocol.errors import InputError, TranscriptFormatError
from protocol.fixedpoint import dyadic
from protocol.keys import parse_public_hex
from protocol.training import TrainConfig

from .audit import verify_transcript
from .cli import EXIT_OK, EXIT_REJECTED, CliError, table_options
from .client import ClientSeeds, SessionAborted, open_channel, run_session

# Defaults chosen by the quality benchmark (bench/quality.py): held-out accuracy / R^2 within the targets of
# scikit-learn's LogisticRegression / ordinary least squares on the bundled data.
DEFAULTS = {"logistic": {"epochs": 30, "batch_size": 16, "lr": 0.2, "l2": 0.01},
            "linear": {"epochs": 20, "batch_size": 32, "lr": 0.02, "l2": 0.0},
            "softmax": {"epochs": 60, "batch_size": 16, "lr": 0.2, "l2": 0.01}}


def _config(args, num_classes: int = 0) -> TrainConfig:
    for name, value in DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    lr_num = dyadic(args.lr, args.lr_shift, "--lr")
    if lr_num < 1:
        raise InputError(f"--lr {args.lr} rounds to 0 at resolution 2^-{args.lr_shift}; raise it or --lr-shift")
    l2_num = dyadic(args.l2, args.frac_bits, "--l2")
    return TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr_num=lr_num,
                       lr_shift=args.lr_shift, l2_num=l2_num, frac_bits=args.frac_bits, weight_bits=args.weight_bits,
                       checkpoint_interval=args.checkpoint_interval, num_classes=num_classes).validate()


def _status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _progress_bar(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = {"bar": None}

    def update(step, total, epoch, loss):
        if bar["bar"] is None:
            bar["bar"] = tqdm(total=total, unit="step", desc="training", file=sys.stderr, leave=False)
        bar["bar"].n = step
        bar["bar"].set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
        bar["bar"].refresh()

    def close():
        if bar["bar"] is not None:
            bar["bar"].close()

    return update, close


def _table_and_config(args):
    """Read the table, pick the model (logistic on more than two classes -> softmax) and the config."""
    table = load_table(args.data, args.target, options=table_options(args))
    model, num_classes, note = resolve_model(args.model, table)
    if args.proof == "snark" and model != "linear":
        raise InputError(f"--proof snark covers linear regression only (the SNARK circuit is the linear-regression "
                         f"step); a {model} model is verified with --proof spot")
    args.model = model
    notes = list(table.notes) + ([note] if note else [])
    return table, _config(args, num_classes), notes


def cmd_train(args) -> int:
    table, cfg, notes = _table_and_config(args)
    if not args.json:
        for n in notes:
            _status(f"note: {n}")
    if not 1 <= args.spot_checks <= 100_000:
        raise InputError("--spot-checks must be between 1 and 100000")
    pinned = parse_public_hex(args.trainer_key) if args.trainer_key else None
    if args.seed:
        try:
            master = bytes.fromhex(args.seed)
        except ValueError:
            raise InputError("--seed must be hex") from None
        if not master:
            raise InputError("--seed must not be empty")
        seeds = ClientSeeds.from_master(master)
    else:
        seeds = ClientSeeds.fresh()
    stdz = fit_standardization(table, cfg.model)
    if table.X.shape[0] < cfg.batch_size:
        raise InputError(f"{table.X.shape[0]} rows are fewer than one batch of {cfg.batch_size}")
    tls_ca = None
    if args.tls_ca:
        try:
            tls_ca = Path(args.tls_ca).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read --tls-ca {args.tls_ca}: {e.strerror}") from e
    channel = open_channel(args.server, tls_ca)
    try:
        grpc.channel_ready_future(channel).result(timeout=min(args.timeout, 15))
    except grpc.FutureTimeoutError:
        raise CliError(f"cannot connect to the prover at {args.server} (is `vtrain-prover serve` running there?)") from None
    progress, close_bar = _progress_bar(sys.stderr.isatty() and not args.json)
    try:
        tr, verdict = run_session(channel, table, stdz, cfg, spot_checks=args.spot_checks, seeds=seeds,
                                  trainer_key=pinned, server_label=args.server, progress=progress,
                                  timeout=args.timeout, proof_kind=args.proof, max_constraints=args.max_constraints,
                                  status=None if args.json else _status)
    except SessionAborted as e:
        raise CliError(f"the session with {args.server} failed: {e}") from None
    finally:
        close_bar()
        channel.close()
    digest = tx.save(args.out, tr)
    model_written = False
    if "model" in tr:
        status = "verified" if verdict.ok else "unverified"
        doc = model_file.build(kind=cfg.model, feature_names=table.feature_names, target=table.target, stdz=stdz,
                               frac_bits=cfg.frac_bits, theta=tr["model"], transcript_sha256=digest,
                               verification={"status": status, "check": verdict.check,
                                             "reason": verdict.reason or verdict.guarantee},
                               extras=_shipped_extras(tr), table_columns=table.columns)
        model_file.save(args.model_out, doc)
        model_written = True
    result = {"status": verdict.status, "check": verdict.check, "reason": verdict.reason, "step": verdict.step,
              "guarantee": verdict.guarantee, "transcript": args.out, "transcript_sha256": digest,
              "model": args.model_out if model_written else None, "trainer_key": tr.get("trainer_key"),
              "trust": tr.get("trust"), "num_steps": len(tr.get("state_leaves", "")) // 64 - 1 if "state_leaves" in tr else None,
              "config": cfg.to_dict(), "proof_kind": args.proof, "model_kind": cfg.model, "notes": notes}
    if args.proof == "snark" and isinstance(tr.get("proof"), dict) and "constraints" in tr["proof"]:
        result["snark"] = {k: tr["proof"].get(k) for k in ("constraints", "setup_seconds", "proving_key_bytes")}
        result["snark"]["proof_bytes"] = 192
    _report(args, result, tr)
    return EXIT_OK if verdict.ok else EXIT_REJECTED


def _shipped_extras(tr: dict) -> dict:
    """What the trainer shipped besides the parameters (kept in the model file, as a real model format would
    carry it; the verdict already says the model is unverified). Only a valid trigger spec is kept."""
    if "model_extras" not in tr:
        return {}
    from protocol.triggers import validate_trigger_spec

    try:
        extras = json.loads(tr["model_extras"])
        return {"trigger": validate_trigger_spec(extras["trigger"], tr["num_features"])}
    except (ValueError, TypeError, KeyError):
        return {"shipped_extras_ignored": tr["model_extras"][:200]}


def _report(args, result: dict, tr: dict) -> None:
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
        return
    if tr.get("trust") == "first-use":
        print(f"note: trainer key {tr.get('trainer_key')} recorded on first use (pin it next time with "
              f"--trainer-key)", file=sys.stderr)
    _print_verdict(result)
    if result["status"] != "verified" and result.get("model"):
        print(f"the model was saved to {result['model']} marked UNVERIFIED; `vtrain-verifier predict` will "
              f"apply a defense to it")
    print(f"transcript: {result['transcript']} (sha256 {result['transcript_sha256'][:16]}...)")


def cmd_audit(args) -> int:
    tr, digest = tx.load(args.transcript)
    if args.trainer_key and tx.get(tr, "trainer_key", str) != parse_public_hex(args.trainer_key).hex():
        return _audit_out(args, {"status": "rejected", "check": "key", "reason": "the transcript is signed by "
                                 f"trainer key {tr.get('trainer_key')}, not the required key", "step": None,
                                 "guarantee": ""}, digest)
    rows = None
    if args.data:
        try:
            meta = tx.get(tr, "client.metadata", dict)
            stdz = Standardization.from_dict(tx.get(meta, "standardization", dict))
            cfg = TrainConfig.from_dict(tx.get(tr, "config", dict))
        except InputError as e:
            raise TranscriptFormatError(str(e)) from None
        opts = ReadOptions(delimiter=args.delimiter, features=tuple(meta.get("feature_names") or ()) or None,
                           drop_missing=args.drop_missing)
        table = load_table(args.data, args.target or meta.get("target"), options=opts)
        if table.feature_names != meta.get("feature_names"):
            raise InputError(f"--data has features {table.feature_names[:4]}..., the session used "
                             f"{meta.get('feature_names', [])[:4]}...")
        rows = quantized_rows(table, stdz, cfg.frac_bits)
    try:
        v = verify_transcript(tr, rows)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, (InputError, TranscriptFormatError)):
            raise
        raise TranscriptFormatError(f"malformed transcript: {e!r}") from None
    return _audit_out(args, {**v.to_dict()}, digest)


def _audit_out(args, res: dict, digest: str) -> int:
    res["transcript_sha256"] = digest
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        _print_verdict(res)
        if res["status"] != "verified" and res.get("evidence"):
            print("evidence: " + json.dumps(res["evidence"])[:2000])
    return EXIT_OK if res["status"] == "verified" else EXIT_REJECTED


def _print_verdict(res: dict) -> None:
    if res["status"] == "verified":
        print(f"VERIFIED ({res['check']}): {res['guarantee']}")
    else:
        where = f" [step {res['step']}]" if res.get("step") is not None else ""
        print(f"REJECTED ({res['check']}){where}: {res['reason']}")
