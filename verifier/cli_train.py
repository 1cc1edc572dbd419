"""``train`` and ``audit`` subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc

from protocol import model_file
from protocol import transcript as tx
from protocol.dataset import Standardization, fit_standardization, load_table, quantized_rows
from protocol.errors import InputError, TranscriptFormatError
from protocol.fileio import ensure_parent
from protocol.fixedpoint import dyadic
from protocol.keys import parse_public_hex
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from .audit import verify_transcript
from .cli import EXIT_OK, EXIT_REJECTED, CliError
from .client import ClientSeeds, SessionAborted, open_channel, run_session
from .preflight import TableShape, check_limits, peek_shape, small_table_batch
from .progress import Progress, progress_enabled

# Defaults chosen by the quality benchmark (bench/quality.py): held-out accuracy / R^2 within the targets of
# scikit-learn's LogisticRegression / ordinary least squares on the bundled data.
DEFAULTS = {"logistic": {"epochs": 30, "batch_size": 16, "lr": 0.2, "l2": 0.01},
            "linear": {"epochs": 20, "batch_size": 32, "lr": 0.02, "l2": 0.0}}


def _config(args) -> TrainConfig:
    for name, value in DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    lr_num = dyadic(args.lr, args.lr_shift, "--lr")
    if lr_num < 1:
        raise InputError(f"--lr {args.lr} rounds to 0 at resolution 2^-{args.lr_shift}; raise it or --lr-shift")
    l2_num = dyadic(args.l2, args.frac_bits, "--l2")
    return TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr_num=lr_num,
                       lr_shift=args.lr_shift, l2_num=l2_num, frac_bits=args.frac_bits, weight_bits=args.weight_bits,
                       checkpoint_interval=args.checkpoint_interval).validate()


def _status(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)  # above any progress bar, which is redrawn below it
    sys.stderr.flush()


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


def cmd_train(args) -> int:
    shape = peek_shape(args.data)  # rows and columns from a byte scan: limits before the real work
    notes = _small_table_default(args, shape)
    cfg = _config(args)
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
    check_limits(None, cfg, shape, **_plan(args))  # what the client can tell alone, before connecting
    for path in (args.out, args.model_out):
        ensure_parent(path)  # an unwritable output is refused before the session, not after it
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
        channel.close()
        raise CliError(f"cannot connect to the prover at {args.server} (is `vtrain-prover serve` running there?)") from None
    ui = Progress(progress_enabled(args))
    try:
        table, stdz = _load_within_limits(args, channel, cfg, shape, ui)
    except BaseException:
        channel.close()
        raise
    progress, close_bar = _progress_bar(ui.enabled)
    try:
        tr, verdict = run_session(channel, table, stdz, cfg, spot_checks=args.spot_checks, seeds=seeds,
                                  trainer_key=pinned, server_label=args.server, progress=progress,
                                  timeout=args.timeout, proof_kind=args.proof, max_constraints=args.max_constraints,
                                  status=None if args.json else _status, ui=ui)
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
                               extras=_shipped_extras(tr))
        model_file.save(args.model_out, doc)
        model_written = True
    result = {"status": verdict.status, "check": verdict.check, "reason": verdict.reason, "step": verdict.step,
              "guarantee": verdict.guarantee, "transcript": args.out, "transcript_sha256": digest,
              "model": args.model_out if model_written else None, "trainer_key": tr.get("trainer_key"),
              "trust": tr.get("trust"), "num_steps": len(tr.get("state_leaves", "")) // 64 - 1 if "state_leaves" in tr else None,
              "config": cfg.to_dict(), "proof_kind": args.proof}
    result["notes"] = notes
    if args.proof == "snark" and isinstance(tr.get("proof"), dict) and "constraints" in tr["proof"]:
        result["snark"] = {k: tr["proof"].get(k) for k in ("constraints", "setup_seconds", "proving_key_bytes")}
        result["snark"]["proof_bytes"] = 192
    _report(args, result, tr)
    return EXIT_OK if verdict.ok else EXIT_REJECTED


def _small_table_default(args, shape: TableShape) -> list[str]:
    """A table smaller than the model's default batch gets a batch size that fits, said on stderr."""
    default = DEFAULTS[args.model]["batch_size"]
    batch = small_table_batch(shape.rows, default) if args.batch_size is None else None
    if batch is None:
        return []
    args.batch_size = batch
    note = (f"{shape.rows} rows are fewer than one batch of {default} (the {args.model} default): using "
            f"--batch-size {batch} ({shape.rows // batch} steps per epoch)")
    if not args.json:
        print(f"note: {note}", file=sys.stderr)
    return [note]


def _plan(args) -> dict:
    return {"spot_checks": args.spot_checks, "proof_kind": args.proof, "max_constraints": args.max_constraints}


def _load_within_limits(args, channel, cfg: TrainConfig, shape: TableShape, ui: Progress):
    """GetInfo, the limit check on the counted shape, then the full load and the check on the exact shape:
    all before the upload."""
    try:
        info = pb_grpc.TrainerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=args.timeout)
    except grpc.RpcError as e:
        raise CliError(f"the session with {args.server} failed: {e.code().name}: {e.details()}") from None
    plan = _plan(args)
    check_limits(info.limits, cfg, shape, **plan)
    with ui.callback("loading", percent=True) as loading:
        table = load_table(args.data, args.target, progress=loading)
    stdz = fit_standardization(table, cfg.model)
    exact = TableShape(table.X.shape[0], table.X.shape[1])
    if exact != shape:
        check_limits(info.limits, cfg, exact, **plan)
    return table, stdz


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
    ui = Progress(progress_enabled(args))
    with ui.bar("reading the transcript"):
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
        with ui.callback("loading", percent=True) as loading:
            table = load_table(args.data, args.target or meta.get("target"), progress=loading)
        if table.feature_names != meta.get("feature_names"):
            raise InputError(f"--data has features {table.feature_names[:4]}..., the session used "
                             f"{meta.get('feature_names', [])[:4]}...")
        rows = quantized_rows(table, stdz, cfg.frac_bits)
    try:
        with ui.callback("replay", unit="step", waiting="checking signatures and openings") as replaying:
            v = verify_transcript(tr, rows, progress=replaying)
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
