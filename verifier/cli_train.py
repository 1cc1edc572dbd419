"""``train`` and ``audit`` subcommands."""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import grpc

from protocol import row_encoding
from protocol import transcript as tx
from protocol.chunked_table import load_table_chunked
from protocol.dataset import fit_standardization, quantized_rows, resolve_model
from protocol.errors import InputError
from protocol.fileio import ensure_parent
from protocol.fixedpoint import dyadic
from protocol.keys import parse_public_hex
from protocol.peer_text import peer_text
from protocol.training import TrainConfig
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from . import attest
from .audit import (
    ALTERED,
    VERIFIED,
    with_replay,
)
from .checks import receive_cap
from .cli import CliError, table_options
from .cli_audit import _print_verdict, _write_model, exit_code
from .client import ClientSeeds, SessionAborted, SessionIncomplete, open_channel, preflight, run_session
from .preflight import TableShape, check_limits, peek_shape, small_table_batch
from .progress import Progress, progress_enabled
from .replay_ahead import ReplayAhead
from .trust_store import TrustStore

# Defaults chosen by the quality benchmark (bench/quality.py): held-out accuracy / R^2 within the targets of
# scikit-learn's LogisticRegression / ordinary least squares on the bundled data.
DEFAULTS = {"logistic": {"epochs": 30, "batch_size": 16, "lr": 0.2, "l2": 0.01},
            "linear": {"epochs": 20, "batch_size": 32, "lr": 0.02, "l2": 0.0},
            "softmax": {"epochs": 60, "batch_size": 16, "lr": 0.2, "l2": 0.01}}


def _config(args, model: str | None = None, num_classes: int = 0) -> TrainConfig:
    """The training config: the flags given, the defaults of ``model`` (default: --model) for the rest. ``args``
    is not changed, so the defaults can follow the model the table turns out to need (logistic -> softmax)."""
    model = model or args.model
    v = {name: getattr(args, name) if getattr(args, name) is not None else default
         for name, default in DEFAULTS[model].items()}
    lr_num = dyadic(v["lr"], args.lr_shift, "--lr")
    if lr_num < 1:
        raise InputError(f"--lr {v['lr']} rounds to 0 at resolution 2^-{args.lr_shift}; raise it or --lr-shift")
    l2_num = dyadic(v["l2"], args.frac_bits, "--l2")
    return TrainConfig(model=model, epochs=v["epochs"], batch_size=v["batch_size"], lr_num=lr_num,
                       lr_shift=args.lr_shift, l2_num=l2_num, frac_bits=args.frac_bits, weight_bits=args.weight_bits,
                       checkpoint_interval=args.checkpoint_interval, num_classes=num_classes).validate()


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
        shown = {"loss": f"{loss:.4f}"} if not math.isnan(loss) else {}  # NaN: no loss sent (the trainer's own data)
        bar["bar"].set_postfix(epoch=epoch, **shown, refresh=False)
        bar["bar"].refresh()

    def close():
        if bar["bar"] is not None:
            bar["bar"].close()

    return update, close


def _seeds(args) -> ClientSeeds:
    if args.seed is not None:
        raise InputError("--seed was removed: a seed the user types would let a trainer that learns it predict the "
                         "audit challenge. The client's randomness now always comes from the OS; for reproducible "
                         "tests use --insecure-fixed-seed HEX (training seed only), and rebuild a model from its "
                         "transcript with `audit TRANSCRIPT --data ... --model-out M.json`")
    if not args.insecure_fixed_seed:
        return ClientSeeds.fresh()
    try:
        master = bytes.fromhex(args.insecure_fixed_seed)
    except ValueError:
        raise InputError("--insecure-fixed-seed must be hex") from None
    if not master:
        raise InputError("--insecure-fixed-seed must not be empty")
    return ClientSeeds.fixed_training(master)


def cmd_train(args) -> int:
    if args.trainer_data:  # the trainer's own dataset (docs/PROTOCOL.md section 12)
        from .cli_trainer_data import cmd_train_trainer_data

        return cmd_train_trainer_data(args)
    if not args.data or not args.model:
        raise InputError("train needs --data and --model (or --trainer-data NAME for a dataset the trainer holds)")
    opts = table_options(args)
    shape = peek_shape(args.data, opts)  # rows and columns from a byte scan: limits before the real work
    notes = _small_table_default(args, shape)
    # As requested (softmax: at least 2 classes until the labels are read); the exact config follows the full load.
    cfg = _config(args, num_classes=2 if args.model == "softmax" else 0)
    if not 1 <= args.spot_checks <= 100_000:
        raise InputError("--spot-checks must be between 1 and 100000")
    pinned = parse_public_hex(args.trainer_key) if args.trainer_key else None
    seeds = _seeds(args)
    check_limits(None, cfg, shape, **_plan(args))  # what the client can tell alone, before connecting
    for path in (args.out, args.model_out):
        ensure_parent(path)  # an unwritable output is refused before the session, not after it
    accept_key, key_trust = _key_trust(args, pinned)
    channel = connect(args)  # GetInfo only; the session's channel gets the session's caps
    ui = Progress(progress_enabled(args))
    try:
        table, stdz, cfg, load_notes = _load_within_limits(args, channel, cfg, shape, opts, ui)
    finally:
        channel.close()
    notes += load_notes
    if not args.json:
        for n in load_notes:
            _status(f"note: {n}")
    cap = receive_cap(table.X.shape[0], table.X.shape[1], cfg, args.spot_checks)
    rows = quantized_rows(table, stdz, cfg.frac_bits, compact=True)  # once: uploaded, then replayed
    table.X = table.y = None  # the float table is not needed again: only the rows stay in memory,
    rows = row_encoding.pack(rows, row_encoding.table_value_bytes(rows))  # at their canonical width
    channel = open_channel(args.server, _tls_ca(args), max_receive=cap)
    ahead = None if args.no_replay else ReplayAhead()  # the replay's honest states, computed while the trainer trains
    tr, verdict, timings, digest = drive_session(args, channel, ui, partial(
        run_session, channel, table, stdz, cfg, rows=rows, spot_checks=args.spot_checks, seeds=seeds, trainer_key=pinned,
        server_label=args.server, timeout=args.timeout, proof_kind=args.proof, max_constraints=args.max_constraints,
        status=None if args.json else _status, retries=max(0, args.retries), accept_key=accept_key, ui=ui,
        replay_ahead=ahead))
    final, attestation = verdict, None
    if not args.no_replay and verdict.status not in (ALTERED, VERIFIED) and "state_leaves" in tr:
        t1 = time.perf_counter()
        with ui.callback("replay", unit="step") as replaying:
            final = with_replay(verdict, tr, rows, replaying, ahead)
        timings["replay"] = time.perf_counter() - t1
        if final.check == "replay":
            attestation = attest.attest(tr, final, integrity=tr["integrity"])  # saved above; tr is unchanged
    model_written = "model" in tr
    if model_written:
        _write_model(args.model_out, tr, args.out, digest, final, attestation, table.columns)
    result = {"status": final.status, "check": final.check, "reason": final.reason, "step": final.step,
              "guarantee": final.guarantee, "evidence": final.evidence, "transcript_verdict": verdict.status,
              "transcript": args.out, "transcript_sha256": digest,
              "model": args.model_out if model_written else None,
              "signer": {"key": tr.get("trainer_key"), "trust": key_trust.get("how", "pinned" if pinned else None)},
              "randomness": seeds.randomness,
              "num_steps": len(tr.get("state_leaves", "")) // 64 - 1 if "state_leaves" in tr else None,
              "seconds": {k: round(v, 3) for k, v in timings.items()}, "config": cfg.to_dict(),
              "proof_kind": args.proof, "model_kind": cfg.model, "notes": notes}
    if args.proof == "snark" and isinstance(tr.get("proof"), dict) and "constraints" in tr["proof"]:
        result["snark"] = {k: tr["proof"].get(k) for k in ("constraints", "setup_seconds", "proving_key_bytes")}
        result["snark"]["proof_bytes"] = 192
    _report(args, result)
    return exit_code(final.status)


def _key_trust(args, pinned):
    """(accept_key for run_session, the dict it fills with how the trainer key was trusted)."""
    store = TrustStore(args.trust_store)
    key_trust: dict = {}

    def accept_key(pub: bytes) -> None:
        key_trust["how"] = store.check_session_key(args.server, pub, pinned)

    return accept_key, key_trust


def _tls_ca(args) -> bytes | None:
    if not args.tls_ca:
        return None
    try:
        return Path(args.tls_ca).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read --tls-ca {args.tls_ca}: {e.strerror}") from e


def connect(args, receive_limit: int | None = None) -> grpc.Channel:
    """Preflight the address, open the channel (TLS with --tls-ca) and wait for it; CliError when it fails."""
    tls_ca = _tls_ca(args)
    try:
        preflight(args.server, args.timeout)
    except SessionAborted as e:
        raise CliError(str(e)) from None
    channel = open_channel(args.server, tls_ca, max_receive=receive_limit)
    try:
        grpc.channel_ready_future(channel).result(timeout=min(args.timeout, 15))
    except grpc.FutureTimeoutError:
        channel.close()
        raise CliError(f"{args.server} accepts connections, but no gRPC session came up within "
                       f"{min(args.timeout, 15):g} s: a TLS mismatch (--tls-ca for a TLS trainer, none for a plain one) "
                       f"or not a vtrain-prover") from None
    return channel



def drive_session(args, channel, ui: Progress, session):
    """Run ``session(progress=..., timings=...)`` on ``channel`` with the training bar, save the transcript
    (the partial one, then CliError, when the trainer disappears) and close the channel.
    -> (transcript, verdict, timings, transcript digest)."""
    progress, close_bar = _progress_bar(ui.enabled)
    timings: dict = {}
    t0 = time.perf_counter()
    try:
        tr, verdict = session(progress=progress, timings=timings)
    except SessionIncomplete as e:
        close_bar()
        tx.save(args.out, e.transcript)
        raise CliError(f"the session with {args.server} did not finish: {e}. The partial transcript (incomplete, "
                       f"no verdict; what the trainer signed so far) was saved to {args.out}") from None
    except SessionAborted as e:
        raise CliError(f"the session with {args.server} failed: {e}") from None
    finally:
        close_bar()
        channel.close()
    timings["session"] = time.perf_counter() - t0 - timings.get("spot_check", 0.0)
    digest, tr["integrity"] = tx.save_with_integrity(args.out, tr)  # tr is now exactly the saved object
    return tr, verdict, timings, digest

def _small_table_default(args, shape: TableShape) -> list[str]:
    """A table smaller than the model's default batch gets a batch size that fits, said on stderr."""
    default = DEFAULTS[args.model]["batch_size"]
    batch = small_table_batch(shape.rows, default) if args.batch_size is None else None
    if batch is None:
        return []
    args.batch_size = batch  # an explicit setting from here on (a softmax switch keeps it)
    note = (f"{shape.rows} rows are fewer than one batch of {default} (the {args.model} default): using "
            f"--batch-size {batch} ({shape.rows // batch} steps per epoch)")
    if not args.json:
        print(f"note: {note}", file=sys.stderr)
    return [note]


def _plan(args) -> dict:
    return {"spot_checks": args.spot_checks, "proof_kind": args.proof, "max_constraints": args.max_constraints}


def _load_within_limits(args, channel, cfg: TrainConfig, shape: TableShape, opts, ui: Progress):
    """GetInfo, the limit check on the counted shape, then the full load, the model the table needs (logistic
    on more than two classes -> softmax) and the check on the exact shape: all before the upload.
    -> (table, standardization, exact config, notes)."""
    try:
        info = pb_grpc.TrainerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=args.timeout)
    except grpc.RpcError as e:
        raise CliError(f"the session with {args.server} failed: {e.code().name}: {peer_text(e.details())}") from None
    plan = _plan(args)
    check_limits(info.limits, cfg, shape, **plan)
    with ui.callback("loading", percent=True) as loading:
        # chunk by chunk into one float64 matrix (protocol/chunked_table.py): not pandas' whole frame besides it
        table = load_table_chunked(args.data, args.target, opts, shape.rows, progress=loading)
    model, num_classes, note = resolve_model(args.model, table)
    if args.proof == "snark" and model != "linear":
        raise InputError(f"--proof snark covers linear regression only (the SNARK circuit is the linear-regression "
                         f"step); a {model} model is verified with --proof spot")
    args.model = model
    cfg = _config(args, model, num_classes)
    exact = TableShape(table.X.shape[0], table.X.shape[1])
    check_limits(info.limits, cfg, exact, **plan)
    if exact.rows < cfg.batch_size:
        raise InputError(f"{exact.rows} rows are fewer than one batch of {cfg.batch_size}")
    return table, fit_standardization(table, cfg.model), cfg, list(table.notes) + ([note] if note else [])


def _report(args, result: dict) -> None:
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
        return
    signer = result["signer"]
    how = {"pinned": "pinned with --trainer-key", "known": f"known from the trust store for {args.server}",
           "first-use": f"first use: recorded in the trust store for {args.server} (pin it with --trainer-key)"}
    print(f"trainer key {signer['key']}: {how.get(signer['trust'], signer['trust'])}", file=sys.stderr)
    _print_verdict(result)
    secs = result["seconds"]
    parts = [f"session (upload, training, proof) {secs.get('session', 0):.2f} s",
             f"spot check {secs.get('spot_check', 0):.2f} s"]
    parts.append(f"full replay {secs['replay']:.2f} s" if "replay" in secs else
                 "no full replay (the rows are the trainer's)" if result.get("trainer_data") else
                 "full replay skipped (--no-replay)")
    print("time: " + ", ".join(parts), file=sys.stderr)
    if result["status"] != VERIFIED and result.get("model"):
        print(f"the model was saved to {result['model']} ({result['status']}); `vtrain-verifier predict` will apply "
              f"a defense to it")
    print(f"transcript: {result['transcript']} (sha256 {result['transcript_sha256'][:16]}...)")
