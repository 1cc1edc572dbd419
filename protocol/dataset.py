"""Client-side data handling: CSV loading with clear errors, standardization, quantization.

The client standardizes every feature with statistics of its own data (mean, population std; a constant
feature gets std 1), clips standardized values to ``[-CLIP, CLIP]`` and quantizes to scale ``2^f``.
Linear regression also standardizes the target; logistic regression needs a 0/1 target. The transform is
stored with the model so predictions on new rows apply it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .errors import InputError
from .fixedpoint import quantize

CLIP = 8.0
BUILTIN = {"breast_cancer": "malignant", "diabetes": "progression", "digits": "digit"}


@dataclass
class Table:
    feature_names: list[str]
    target: str
    X: np.ndarray  # float64 (n, d)
    y: np.ndarray  # float64 (n,)
    source: str = ""


@dataclass
class Standardization:
    mean: list[float]
    std: list[float]
    clip: float = CLIP
    target_mean: float = 0.0
    target_std: float = 1.0
    notes: list[str] = field(default_factory=list)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise InputError(f"expected rows with {len(self.mean)} features, got shape {X.shape}")
        Z = (X - np.asarray(self.mean)) / np.asarray(self.std)
        return np.clip(Z, -self.clip, self.clip)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "clip": self.clip, "target_mean": self.target_mean,
                "target_std": self.target_std}

    @classmethod
    def from_dict(cls, d: dict) -> Standardization:
        try:
            s = cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]], clip=float(d["clip"]),
                    target_mean=float(d["target_mean"]), target_std=float(d["target_std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed standardization record: {e}") from e
        vals = s.mean + s.std + [s.clip, s.target_mean, s.target_std]
        if len(s.mean) != len(s.std) or not all(math.isfinite(v) for v in vals) or min(s.std + [s.target_std]) <= 0:
            raise InputError("malformed standardization record (lengths, non-finite or non-positive scale)")
        return s


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def read_text(spec: str) -> tuple[str, str]:
    """``builtin:NAME`` or a path -> (text, source description)."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise InputError(f"unknown builtin dataset {name!r}; choose one of {', '.join(builtin_names())}")
        return resources.files("protocol.data").joinpath(f"{name}.csv").read_text(), spec
    try:
        with open(spec, encoding="utf-8") as fh:
            return fh.read(), spec
    except OSError as e:
        raise InputError(f"cannot read data file {spec}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{spec} is not a UTF-8 text (CSV) file") from e


def default_target(spec: str) -> str | None:
    if spec.startswith("builtin:"):
        return BUILTIN.get(spec.split(":", 1)[1])
    return None


def parse_csv(text: str, target: str | None, source: str = "", require_target: bool = True,
              progress=None) -> Table:
    """Strict CSV: a header row, then numeric rows of the same length. Errors name the line and column.
    ``progress(done, total)``, when given, is called as the work advances (splitting the lines, then
    converting the rows: total = twice the line count)."""
    work = 2 * (text.count("\n") + 1) if progress is not None else 0
    rows = _split_rows(text, progress, work)
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise InputError(f"{source or 'data'}: the file is empty (a header row is required)")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise InputError(f"{source}: the header has empty or duplicate column names")
    if target is not None and target not in header:
        raise InputError(f"{source}: target column {target!r} not found; columns are: {', '.join(header)}")
    if target is None and require_target:
        raise InputError(f"{source}: name the target column with --target (columns: {', '.join(header)})")
    body = rows[1:]
    if not body:
        raise InputError(f"{source}: no data rows after the header")
    values = np.empty((len(body), len(header)), dtype=np.float64)
    for i, row in enumerate(body):
        line = i + 2
        if progress is not None and i % 8192 == 0:
            progress(work // 2 + i, work)
        if len(row) != len(header):
            raise InputError(f"{source}: line {line} has {len(row)} fields, the header has {len(header)} (ragged row)")
        for j, cell in enumerate(row):
            try:
                v = float(cell)
            except ValueError:
                raise InputError(f"{source}: line {line}, column {header[j]!r}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise InputError(f"{source}: line {line}, column {header[j]!r}: {cell!r} is not finite (NaN/inf)")
            values[i, j] = v
    if progress is not None:
        progress(work, work)
    if target is None:
        return Table(header, "", values, np.zeros(len(body)), source)
    t = header.index(target)
    feats = [h for k, h in enumerate(header) if k != t]
    if not feats:
        raise InputError(f"{source}: no feature columns besides the target")
    return Table(feats, target, np.delete(values, t, axis=1), values[:, t], source)


def _split_rows(text: str, progress, work: int) -> list[list[str]]:
    if progress is None:
        return list(csv.reader(io.StringIO(text)))
    rows = []
    for row in csv.reader(io.StringIO(text)):
        rows.append(row)
        if len(rows) % 16384 == 0:
            progress(min(len(rows), work // 2), work)
    return rows


def load_table(spec: str, target: str | None = None, require_target: bool = True, progress=None) -> Table:
    text, source = read_text(spec)
    return parse_csv(text, target if target is not None else default_target(spec), source, require_target, progress)


def fit_standardization(table: Table, model: str) -> Standardization:
    X = table.X
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    notes = []
    const = std == 0
    if const.any():
        notes.append(f"constant features left unscaled: {[table.feature_names[i] for i in np.flatnonzero(const)]}")
        std = np.where(const, 1.0, std)
    tm, ts = 0.0, 1.0
    if model == "linear":
        tm, ts = float(table.y.mean()), float(table.y.std()) or 1.0
    else:
        labels = set(np.unique(table.y).tolist())
        if not labels <= {0.0, 1.0}:
            raise InputError(f"logistic regression needs a 0/1 target; {table.target!r} has values "
                             f"{sorted(labels)[:6]}{'...' if len(labels) > 6 else ''}")
    return Standardization([float(v) for v in mean], [float(v) for v in std], CLIP, tm, ts, notes)


def quantize_table(table: Table, stdz: Standardization, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (X_q int64 (n, d), Y_q int64 (n,))."""
    Xq = quantize(stdz.apply(table.X), frac_bits)
    Yq = quantize((table.y - stdz.target_mean) / stdz.target_std, frac_bits)
    return Xq, Yq


def rows_matrix(Xq: np.ndarray, Yq: np.ndarray) -> np.ndarray:
    """The committed row layout: features then target, int64."""
    return np.ascontiguousarray(np.column_stack([Xq, Yq]), dtype=np.int64)


def quantized_rows(table: Table, stdz: Standardization, frac_bits: int) -> np.ndarray:
    """The rows the client commits to: standardize, quantize, lay out (features then target)."""
    return rows_matrix(*quantize_table(table, stdz, frac_bits))
