"""The client's rows in two-party training, and the schema and standardization both parties use.

The standardization comes from the party that holds rows (docs/MPC.md sections 1 and 4): the client's when
it holds any; otherwise the trainer's, fitted on its dataset and sent in the hello answer with the dataset's
schema. The client checks what it receives is well formed (the right length, finite, every scale > 0: a
constant column has std 1, ``protocol.dataset.fit_standardization``). A trainer choosing a bad one then only
spoils a model trained on its own rows alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.dataset import CLIP, Standardization, Table, fit_standardization, load_table, quantize_table
from protocol.errors import InputError

from .cli import CliError


@dataclass
class Schema:
    feature_names: list[str]
    target: str
    stdz: Standardization
    stdz_from: str  # "client" | "trainer": whose standardization both parties used (revealed by design)


class Rows:
    """``--data`` as given: None (no rows, no schema), a header-only table (a schema, no rows) or rows."""

    def __init__(self, table: Table | None, stdz: Standardization | None, Xq: np.ndarray | None,
                 Yq: np.ndarray | None):
        self.table, self.stdz, self.Xq, self.Yq = table, stdz, Xq, Yq

    @classmethod
    def load(cls, spec: str | None, target: str | None, cfg) -> Rows:
        if spec is None:
            return cls(None, None, None, None)
        table = load_table(spec, target, allow_empty=True)
        if not table.X.shape[0]:
            return cls(table, None, None, None)
        stdz = fit_standardization(table, cfg.model)
        return cls(table, stdz, *quantize_table(table, stdz, cfg.frac_bits))

    @property
    def n(self) -> int:
        return 0 if self.table is None else int(self.table.X.shape[0])

    def hello_fields(self) -> dict:
        """MpcHello's schema and standardization fields: none without a table (the client takes the trainer's
        schema), the schema alone for a header-only table."""
        if self.table is None:
            return {}
        out = {"feature_names": self.table.feature_names, "target": self.table.target}
        if self.stdz is not None:
            s = self.stdz
            out.update(mean=s.mean, std=s.std, target_mean=s.target_mean, target_std=s.target_std)
        return out

    def settle(self, reply, args) -> Schema:
        """The schema and standardization of the session, from the trainer's hello answer. Raises CliError when
        neither party holds rows or the answer is not what the protocol allows."""
        names, target, name = list(reply.feature_names), reply.target, args.trainer_data
        sent = bool(len(reply.mean) or len(reply.std) or reply.target_mean or reply.target_std)
        if self.table is not None and (names != self.table.feature_names or target != self.table.target):
            raise CliError(f"the trainer's dataset {name!r} has columns {names} -> {target!r}; yours are "
                           f"{self.table.feature_names} -> {self.table.target!r}")
        if self.table is None and args.target is not None and target != args.target:
            raise CliError(f"the trainer's dataset {name!r} has the target {target!r}, not --target {args.target!r}")
        if self.stdz is not None:
            if sent:
                raise CliError("the trainer's answer is malformed: it sent a standardization although yours is used")
            return Schema(self.table.feature_names, self.table.target, self.stdz, "client")
        if int(reply.trainer_rows) == 0:
            yours = "you gave no --data" if self.table is None else f"your --data {args.data} has no rows"
            raise CliError(f"neither party holds rows: {yours} and the trainer's dataset {name!r} has none "
                           f"(a header-only table): nothing to train on")
        if not names or not all(names) or len(set(names)) != len(names) or not target:
            raise CliError(f"the trainer's answer is malformed: the schema of {name!r} needs distinct, non-empty "
                           f"feature names and a target")
        try:
            stdz = Standardization.from_dict({"mean": list(reply.mean), "std": list(reply.std), "clip": CLIP,
                                              "target_mean": reply.target_mean, "target_std": reply.target_std})
        except InputError as e:
            raise CliError(f"the trainer's standardization of {name!r} is malformed: {e}") from None
        if len(stdz.mean) != len(names):
            raise CliError(f"the trainer's standardization of {name!r} has {len(stdz.mean)} columns, its schema "
                           f"{len(names)} features")
        self.Xq, self.Yq = np.zeros((0, len(names)), dtype=np.int64), np.zeros(0, dtype=np.int64)
        return Schema(names, target, stdz, "trainer")
