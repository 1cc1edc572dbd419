"""Trainer-owned datasets: ``vtrain-prover serve --dataset NAME=PATH [--target COL]`` (repeatable).

Loaded once at start-up with the project's CSV reader (bad files are a start-up error, not a session
error). Two-party training (docs/MPC.md) takes part with the rows of the dataset a client names; the rows
never leave the trainer except masked. A header-only file is a schema without rows: two-party sessions on it
train on the client's rows alone (docs/MPC.md section 1); sessions on the trainer's own data refuse it.
"""

from __future__ import annotations

import logging

from protocol.dataset import Table, load_table
from protocol.errors import InputError

log = logging.getLogger("vtrain.prover.datasets")


def add_arguments(parser) -> None:
    """The serve flags for trainer-owned data and two-party training."""
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                        help="a dataset of the trainer's own (CSV or builtin:NAME), repeatable: committed (hiding) "
                             "and listed with a signed data card for sessions on it (vtrain-verifier train "
                             "--trainer-data NAME), and enables two-party training (train-2pc --trainer-data NAME); "
                             "a header-only CSV is a schema without rows, for two-party training only")
    parser.add_argument("--target", help="target column of the --dataset files (default for builtin data: its label)")
    parser.add_argument("--dealer", action="append", default=[], metavar="HOST:PORT",
                        help="dealers this trainer accepts for two-party training (repeatable); without it the "
                             "client's choice is accepted, so the trainer's privacy rests on the client's dealer")
    parser.add_argument("--dealer-tls-ca", help="PEM CA certificate: connect to the dealer with TLS (default: plaintext)")
    parser.add_argument("--mpc-adversary", help="a cheating two-party trainer, for demos and tests (default: honest): "
                        "bad-share, bad-triple, bad-truncation, skip-step, early-output, hide-rows")


class Datasets:
    def __init__(self, tables: dict[str, Table]):
        self.tables = tables

    @classmethod
    def from_specs(cls, specs: list[str], target: str | None) -> Datasets:
        tables: dict[str, Table] = {}
        for spec in specs:
            name, sep, path = spec.partition("=")
            name = name.strip()
            if not sep or not name or not path:
                raise InputError(f"--dataset must be NAME=PATH, got {spec!r}")
            if name in tables:
                raise InputError(f"--dataset {name!r} given twice")
            tables[name] = load_table(path, target, allow_empty=True)
            log.info("dataset %s: %d rows, %d features, target %s%s", name, tables[name].X.shape[0],
                     tables[name].X.shape[1], tables[name].target,
                     "" if tables[name].X.shape[0] else " (header only: a schema for two-party training)")
        return cls(tables)

    def get(self, name: str) -> Table:
        t = self.tables.get(name)
        if t is None:
            raise InputError(f"this trainer has no dataset {name!r}" + (f" (it has: {', '.join(sorted(self.tables))})"
                                                                         if self.tables else ""))
        return t


def attach(server, args) -> Datasets | None:
    """Add the two-party training service to a trainer's server (before it starts) when datasets are given;
    returns the datasets (None without any)."""
    if not args.dataset:
        return None
    from pathlib import Path

    from .mpc_servicer import add_two_party_service

    tls_ca = None
    if args.dealer_tls_ca:
        try:
            tls_ca = Path(args.dealer_tls_ca).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read --dealer-tls-ca: {e}") from e
    served = Datasets.from_specs(args.dataset, args.target)
    add_two_party_service(server, served, args.dealer, args.mpc_adversary, tls_ca)
    return served
