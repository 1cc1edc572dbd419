"""``vtrain-verifier train --trainer-data NAME``: a session on a dataset the trainer holds (docs/PROTOCOL.md
section 11). The client supplies only the randomness; the verdict is the spot check's (exit 3), with the rows
it revealed counted; no full replay is possible."""

from __future__ import annotations

from functools import partial

from protocol.errors import InputError
from protocol.fileio import ensure_parent
from protocol.keys import parse_public_hex

from .checks import receive_cap
from .cli import CliError
from .cli_audit import _write_model, exit_code
from .cli_train import (
    _config,
    _key_trust,
    _report,
    _seeds,
    _status,
    connect,
    drive_session,
)
from .client import SessionAborted
from .progress import Progress, progress_enabled
from .trainer_data_client import fetch_card, run_trainer_data_session


def _model_for(args, card) -> tuple[str, int]:
    if args.model and args.model not in card.models:
        raise InputError(f"dataset {card.name!r} is committed for {', '.join(card.models)} (its target encoding), "
                         f"not --model {args.model}")
    model = args.model or card.models[0]
    labels = card.standardization.get("labels")
    return model, (len(labels) if model == "softmax" and labels else 0)


def cmd_train_trainer_data(args) -> int:
    if args.data:
        raise InputError("give --data (your rows) or --trainer-data NAME (the trainer's), not both")
    if not 1 <= args.spot_checks <= 100_000:
        raise InputError("--spot-checks must be between 1 and 100000")
    pinned = parse_public_hex(args.trainer_key) if args.trainer_key else None
    seeds = _seeds(args)
    for path in (args.out, args.model_out):
        ensure_parent(path)  # an unwritable output is refused before the session, not after it
    accept_key, key_trust = _key_trust(args, pinned)
    probe = connect(args)
    try:
        card, signed = fetch_card(probe, args.trainer_data, args.timeout)
    except SessionAborted as e:
        raise CliError(f"the session with {args.server} failed: {e}") from None
    finally:
        probe.close()
    if pinned is not None and card.trainer_key != pinned:
        raise CliError(f"the trainer at {args.server} has key {card.trainer_key.hex()}, not the pinned {pinned.hex()}")
    notes = [(f"dataset {card.name!r}: {card.num_rows} rows x {card.num_features} features, target {card.target!r}, "
              f"committed for {', '.join(card.models)} at frac_bits {card.frac_bits}, root {card.data_root.hex()}")]
    if args.frac_bits != card.frac_bits:
        notes.append(f"--frac-bits {args.frac_bits} replaced by the dataset's {card.frac_bits}")
    model, num_classes = _model_for(args, card)
    args.frac_bits = card.frac_bits
    if args.proof == "snark":
        if not card.zk_commitment:
            raise InputError(f"dataset {card.name!r} is not offered with a SNARK (its card carries no Poseidon "
                             f"commitment: linear datasets of a few thousand values are); use --proof spot")
        if args.weight_bits != card.zk_weight_bits:
            notes.append(f"--weight-bits {args.weight_bits} replaced by the SNARK commitment's {card.zk_weight_bits}")
        args.weight_bits = card.zk_weight_bits
    cfg = _config(args, model, num_classes)
    if cfg.batch_size < card.min_batch:  # the trainer's disclosure limits, signed in its card (PROTOCOL.md 12)
        raise InputError(f"dataset {card.name!r} is served for batch sizes of at least {card.min_batch}; use "
                         f"--batch-size {card.min_batch} or more")
    fits = card.max_spot_checks(cfg.batch_size)
    if args.proof == "spot" and card.max_reveal_ppm < 1_000_000 and min(args.spot_checks,
                                                                          cfg.num_steps(card.num_rows)) > fits:
        raise InputError(f"dataset {card.name!r}: the trainer opens at most {card.max_reveal_ppm / 1e4:g}% of its "
                         f"{card.num_rows} rows per session; " + (f"use --spot-checks {fits} or fewer" if fits else
                         f"even one batch of {cfg.batch_size} rows exceeds that: use a smaller --batch-size"))
    if card.num_rows < cfg.batch_size:
        raise InputError(f"dataset {card.name!r} has {card.num_rows} rows, fewer than one batch of {cfg.batch_size}")
    if not args.json:
        for n in notes:
            _status(f"note: {n}")
    channel = connect(args, receive_cap(card.num_rows, card.num_features, cfg, args.spot_checks))
    ui = Progress(progress_enabled(args))
    tr, verdict, timings, digest = drive_session(args, channel, ui, partial(
        run_trainer_data_session, channel, card, signed, cfg, spot_checks=args.spot_checks, seeds=seeds,
        server_label=args.server, proof_kind=args.proof, timeout=args.timeout, status=None if args.json else _status,
        retries=max(0, args.retries), accept_key=accept_key, ui=ui))
    if "model" in tr:
        _write_model(args.model_out, tr, args.out, digest, verdict, None)
    revealed = _revealed(tr)
    result = {"status": verdict.status, "check": verdict.check, "reason": verdict.reason, "step": verdict.step,
              "guarantee": verdict.guarantee, "evidence": verdict.evidence, "transcript_verdict": verdict.status,
              "transcript": args.out, "transcript_sha256": digest, "model": args.model_out if "model" in tr else None,
              "signer": {"key": tr.get("trainer_key"), "trust": key_trust.get("how", "pinned" if pinned else None)},
              "randomness": seeds.randomness,
              "num_steps": len(tr.get("state_leaves", "")) // 64 - 1 if "state_leaves" in tr else None,
              "seconds": {k: round(v, 3) for k, v in timings.items()}, "config": cfg.to_dict(),
              "proof_kind": args.proof, "model_kind": cfg.model, "notes": notes,
              "trainer_data": {**card.to_dict(), "rows_revealed": revealed,
                               "fraction_revealed": revealed / card.num_rows,
                               "updates_revealed": _exposed(tr, cfg.num_steps(card.num_rows))}}
    if args.proof == "snark" and isinstance(tr.get("proof"), dict) and "constraints" in tr["proof"]:
        result["snark"] = {k: tr["proof"].get(k) for k in ("constraints", "setup_seconds", "proving_key_bytes")}
        result["snark"]["proof_bytes"] = 192
    _report(args, result)
    return exit_code(verdict.status)


def _exposed(tr: dict, T: int) -> int:
    proof = tr.get("proof")
    if not isinstance(proof, dict) or proof.get("kind") != "spot":
        return 1 if T == 1 else 0  # only theta_0 and the model: with T = 1 they determine the one update
    from .trainer_data_checks import exposed_updates

    return exposed_updates(proof.get("openings", []), T)


def _revealed(tr: dict) -> int:
    proof = tr.get("proof")
    if not isinstance(proof, dict) or proof.get("kind") != "spot":
        return 0
    from .trainer_data_checks import revealed_rows

    return revealed_rows(proof.get("openings", []))
