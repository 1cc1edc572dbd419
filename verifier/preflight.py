"""Check a session against the trainer's limits before any work: before the data is read in full or uploaded.

``peek_shape`` counts a CSV's rows and columns without parsing it (a byte scan); ``small_table_batch`` picks
a batch size that fits a table smaller than the default batch; ``check_limits`` compares the planned session with
the limits of ``GetInfo`` (and the client's own SNARK limit) and raises one InputError (exit 2) that lists
every limit crossed with settings that would fit. The same check runs again on the exact shape after
loading, still before the upload; the trainer enforces its limits itself in any case (prover/session.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from protocol.csv_reader import ReadOptions
from protocol.dataset import builtin_bytes, table_header
from protocol.errors import InputError
from protocol.training import TrainConfig

_CHUNK = 1 << 24
MAX_BATCH = 1 << 20   # protocol/training.py TrainConfig.validate


@dataclass(frozen=True)
class TableShape:
    rows: int       # data rows (lines after the header, trailing blank lines not counted)
    features: int   # columns besides the target


def peek_shape(spec: str, options: ReadOptions | None = None) -> TableShape:
    """Rows and feature columns of ``spec`` from its header and a count of line ends (no parsing). The rows
    are an upper bound (a quoted cell may span lines; --drop-missing may drop rows): the exact shape is checked
    again after the full load, still before the upload. The features follow --features/--drop/--delimiter."""
    try:
        header = table_header(spec, options)
    except InputError:
        if spec.startswith("builtin:"):
            raise  # an unknown builtin name: the loader's message, before connecting
        header = []  # an empty or unreadable header: the full load names the problem
    if spec.startswith("builtin:"):
        data = builtin_bytes(spec)   # small bundled files
        return _shape(header, options, data.count(b"\n"), data[-_CHUNK:])
    try:
        with open(spec, "rb") as fh:
            newlines = fh.readline().count(b"\n")
            size = os.fstat(fh.fileno()).st_size
            while chunk := fh.read(_CHUNK):
                newlines += chunk.count(b"\n")
            fh.seek(max(0, size - (1 << 16)))
            tail = fh.read()
    except OSError as e:
        raise InputError(f"cannot read data file {spec}: {e.strerror}") from e
    return _shape(header, options, newlines, tail)


def _shape(header: list[str], options: ReadOptions | None, newlines: int, tail: bytes) -> TableShape:
    stripped = tail.rstrip()
    # lines up to the last non-blank one: the line ends before it, plus that line itself
    lines = newlines - tail[len(stripped):].count(b"\n") + (1 if stripped else 0)
    opts = options or ReadOptions()
    if opts.features:
        features = len(opts.features)
    else:
        features = len(header) - 1 - len(set(opts.drop or ()) & set(header))
    return TableShape(max(0, lines - 1), max(0, features))


def small_table_batch(rows: int, default: int) -> int | None:
    """None when ``rows`` holds one default batch; else the largest power of two <= rows / 4 (at least 1), so
    an epoch has at least four steps and drops fewer than a quarter of the rows."""
    if rows >= default or rows < 1:
        return None
    return _pow2_floor(max(1, rows // 4))


def _pow2_floor(x: int) -> int:
    return 1 << (max(1, x).bit_length() - 1)


def check_limits(limits, cfg: TrainConfig, shape: TableShape, *, spot_checks: int, proof_kind: str,
          max_constraints: int) -> None:
    """Raise InputError listing every limit this session crosses, each with settings that fit. ``limits``:
    the trainer's (GetInfo), or None for the checks the client can make alone (batch vs rows, its own SNARK
    limit)."""
    n, d = shape.rows, shape.features
    problems = []
    if 0 < n < cfg.batch_size:   # no rows at all: the loader names the problem (no data rows, empty file)
        problems.append(f"{n} rows are fewer than one batch of {cfg.batch_size}: use --batch-size "
                        f"{_pow2_floor(max(1, n // 4))} (at most {_pow2_floor(n)})")
    lim = {k: int(getattr(limits, k, 0) or 0) for k in ("max_rows", "max_features", "max_steps",
                                                          "max_spot_checks", "max_constraints", "max_data_bytes",
                                                          "max_state_values")}
    if lim["max_features"] and d > lim["max_features"]:
        problems.append(f"{d} features, the trainer's limit is {lim['max_features']}: drop columns, or ask the "
                        f"trainer for --max-features {d}")
    if lim["max_rows"] and n > lim["max_rows"]:
        problems.append(f"{n} rows, the trainer's limit is {lim['max_rows']}: train on at most {lim['max_rows']} "
                        f"rows, or ask the trainer for --max-rows {n}")
    if lim["max_data_bytes"] and n * (d + 1) * 8 > lim["max_data_bytes"]:
        problems.append(f"{n * (d + 1) * 8} bytes of data, the trainer's limit is {lim['max_data_bytes']}: "
                        f"train on fewer rows, or ask the trainer for --max-data-bytes {n * (d + 1) * 8}")
    if lim["max_spot_checks"] and spot_checks > lim["max_spot_checks"]:
        problems.append(f"{spot_checks} spot checks, the trainer's limit is {lim['max_spot_checks']}: use "
                        f"--spot-checks {lim['max_spot_checks']}")
    if n >= cfg.batch_size > 0:
        steps = cfg.num_steps(n)
        for cap, what, flag in ((lim["max_steps"], "training steps", "--max-steps"),
                                (lim["max_state_values"] and lim["max_state_values"] // cfg.num_params(d) - 1,
                                 "training steps (the trainer keeps every state)", None)):
            if cap and steps > cap:
                problems.append(_steps_advice(cfg, n, steps, cap, what, flag))
                break
        if proof_kind == "snark":
            problems += _snark_problems(cfg, n, d, max_constraints, lim["max_constraints"])
    if problems:
        raise InputError("the session was not started (nothing was uploaded): " + "; ".join(problems))


def _steps_advice(cfg: TrainConfig, n: int, steps: int, cap: int, what: str, flag: str | None) -> str:
    options = []
    b = cfg.batch_size * 2
    while b <= min(n, MAX_BATCH) and cfg.epochs * (n // b) > cap:
        b *= 2
    if b <= min(n, MAX_BATCH):
        options.append(f"--batch-size {b}")
    per_epoch = n // cfg.batch_size
    if cap >= per_epoch:
        options.append(f"--epochs {cap // per_epoch}")
    text = f"{steps} {what} ({cfg.epochs} epochs x {per_epoch} steps of batch {cfg.batch_size}), the trainer's " \
           f"limit is {cap}: "
    text += f"use {' or '.join(options)}" if options else "train on fewer rows"
    return text + (f", or ask the trainer for {flag} {steps}" if flag else "")


def _snark_problems(cfg: TrainConfig, n: int, d: int, ours: int, theirs: int) -> list[str]:
    from protocol.snark import session as snark_session

    if cfg.model != "linear":
        return ["the SNARK proof covers linear regression only: use --proof spot for logistic regression"]
    have = snark_session.constraint_count(cfg, n, d)
    trainer_binds = bool(theirs) and theirs < ours
    limit = theirs if trainer_binds else ours
    if have <= limit:
        return []
    whose = f"the trainer's limit is {limit}" if trainer_binds else f"your --max-constraints is {limit}"
    ask = f"ask the trainer for --max-constraints {have}" if trainer_binds else f"--max-constraints {have}"
    fit = [e for e in (cfg.epochs // 2 ** k for k in range(14)) if e >= 1
           and snark_session.constraint_count(replace(cfg, epochs=e), n, d) <= limit]
    hint = f"--epochs {fit[0]}" if fit else "fewer rows or features"
    return [(f"the SNARK circuit would have {have} constraints ({cfg.num_steps(n)} steps x {d} features x batch "
             f"{cfg.batch_size}), {whose}: use {hint} or --proof spot (the full replay audit covers any size), "
             f"or {ask}")]
