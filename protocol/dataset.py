"""Client-side data handling: tables (read by ``protocol.csv_reader``), class labels, standardization,
quantization.

The client standardizes every feature with statistics of its own data (mean, population std; a constant
feature gets std 1), clips standardized values to ``[-CLIP, CLIP]`` and quantizes to scale ``2^f``.
Linear regression also standardizes the target. Classifiers map the target's labels (any type) to class
indices by the sorted label list (numbers in numeric order when every label is a number, otherwise text in
Unicode code-point order): logistic regression trains on ``index * 2^f`` (two classes), softmax on the index
itself. The transform (standardization and labels) is stored with the model so predictions on new rows apply
it and are written as the original labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .csv_reader import ReadOptions, _Source, read_columns, read_header
from .errors import InputError
from .fixedpoint import quantize
from .row_encoding import holding, minimal_value_bytes

CLIP = 8.0
BUILTIN = {"breast_cancer": "malignant", "diabetes": "progression", "digits": "digit", "iris": "species"}
TARGET_KINDS = {"linear": "value", "logistic": "binary", "softmax": "class_index"}


@dataclass
class Table:
    feature_names: list[str]
    target: str
    X: np.ndarray  # float64 (n, d)
    y: np.ndarray  # float64 (n,) when the target is numeric, else an object array of label texts
    source: str = ""
    notes: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # every column of the file (features, target, dropped)

    def subset(self, idx) -> Table:
        return Table(self.feature_names, self.target, self.X[idx], self.y[idx], self.source, list(self.notes),
                     list(self.columns))


@dataclass
class Standardization:
    mean: list[float]
    std: list[float]
    clip: float = CLIP
    target_mean: float = 0.0
    target_std: float = 1.0
    notes: list[str] = field(default_factory=list)
    labels: list | None = None  # classifiers: the sorted label list (class index = position)
    target_kind: str = "value"  # value (linear) | binary (logistic: index * 2^f) | class_index (softmax)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise InputError(f"expected rows with {len(self.mean)} features, got shape {X.shape}")
        Z = (X - np.asarray(self.mean)) / np.asarray(self.std)
        return np.clip(Z, -self.clip, self.clip)

    def to_dict(self) -> dict:
        d = {"mean": self.mean, "std": self.std, "clip": self.clip, "target_mean": self.target_mean,
             "target_std": self.target_std}
        if self.labels is not None:
            d.update(labels=list(self.labels), target_kind=self.target_kind)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Standardization:
        try:
            s = cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]], clip=float(d["clip"]),
                    target_mean=float(d["target_mean"]), target_std=float(d["target_std"]),
                    labels=_labels_from(d.get("labels")), target_kind=d.get("target_kind", "value"))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed standardization record: {e}") from e
        vals = s.mean + s.std + [s.clip, s.target_mean, s.target_std]
        if len(s.mean) != len(s.std) or not all(math.isfinite(v) for v in vals) or min(s.std + [s.target_std]) <= 0:
            raise InputError("malformed standardization record (lengths, non-finite or non-positive scale)")
        if s.target_kind not in TARGET_KINDS.values() or (s.labels is None) != (s.target_kind == "value"):
            raise InputError("malformed standardization record (labels and target_kind disagree)")
        return s


def _labels_from(v) -> list | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) < 2 or not (all(isinstance(x, str) for x in v) or all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
        raise ValueError("labels must be a list of at least two strings or two finite numbers")
    if v != sort_labels(v):
        raise ValueError("labels must be distinct and sorted")
    return list(v)


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def _source(spec: str) -> _Source:
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise InputError(f"unknown builtin dataset {name!r}; choose one of {', '.join(builtin_names())}")
        return _Source(None, resources.files("protocol.data").joinpath(f"{name}.csv").read_text(), spec)
    return _Source(spec, None, spec)


def builtin_bytes(spec: str) -> bytes:
    """The bytes of a ``builtin:NAME`` table (an unknown name is an InputError naming the choices)."""
    return _source(spec).text.encode()


def default_target(spec: str) -> str | None:
    if spec.startswith("builtin:"):
        return BUILTIN.get(spec.split(":", 1)[1])
    return None


def _table(source: _Source, target: str | None, require_target: bool, options: ReadOptions | None,
           progress=None, allow_empty: bool = False) -> Table:
    c = read_columns(source, target, options or ReadOptions(), require_target, progress, allow_empty)
    y = c.y if c.y is not None else np.zeros(c.X.shape[0])
    return Table(c.feature_names, c.target, c.X, y, source.label, c.notes, c.header)


def parse_csv(text: str, target: str | None, source: str = "", require_target: bool = True,
              options: ReadOptions | None = None) -> Table:
    """A CSV text -> Table (the rules of ``protocol.csv_reader``). Errors name the line and column."""
    return _table(_Source(None, text, source or "data"), target, require_target, options)


def load_table(spec: str, target: str | None = None, require_target: bool = True,
               options: ReadOptions | None = None, progress=None, allow_empty: bool = False) -> Table:
    """``builtin:NAME`` or a CSV path -> Table. ``progress(done, total)``, when given, follows the bytes read.
    ``allow_empty``: a header-only file is a table of 0 rows (a schema; two-party training, docs/MPC.md
    section 1), not an error."""
    return _table(_source(spec), target if target is not None else default_target(spec), require_target, options,
                  progress, allow_empty)


def table_header(spec: str, options: ReadOptions | None = None) -> list[str]:
    """The column names of ``spec`` (nothing else is read)."""
    return read_header(_source(spec), (options or ReadOptions()).validated())[0]


# -- class labels -----------------------------------------------------------------------------------------

def _label_value(v: float):
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


def sort_labels(labels) -> list:
    """The documented order: numbers numerically, text by Unicode code points; duplicates removed."""
    return sorted(set(labels))


def class_labels(y: np.ndarray) -> list:
    """The sorted distinct labels of a target column (numbers as int when integral)."""
    if y.dtype == object:
        return sort_labels(y.tolist())
    return [_label_value(v) for v in np.unique(y)]


def class_indices(y: np.ndarray, labels: list, what: str = "target") -> np.ndarray:
    """Class index (position in ``labels``) of every target value; an unknown label is an input error."""
    numeric = not isinstance(labels[0], str)
    if numeric:
        vals = y if y.dtype != object else np.array([float(v) if _is_float(v) else np.nan for v in y])
        keys = np.asarray(labels, dtype=np.float64)
        idx = np.clip(np.searchsorted(keys, vals), 0, len(keys) - 1)
        bad = keys[idx] != vals
    else:
        lookup = {lab: i for i, lab in enumerate(labels)}
        texts = y.tolist() if y.dtype == object else [str(_label_value(v)) for v in y]
        idx = np.array([lookup.get(t, -1) for t in texts], dtype=np.int64)
        bad = idx < 0
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{what}: label {y[k]!r} (row {k + 1}) is not one of the model's labels {labels[:12]}"
                         f"{' ...' if len(labels) > 12 else ''}")
    return idx.astype(np.int64)


def _is_float(v) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def numeric_target(table: Table) -> np.ndarray:
    """The target as numbers (regression); text is refused naming the first non-number."""
    if table.y.dtype == object:
        bad = next((v for v in table.y if not _is_float(v)), table.y[0])
        raise InputError(f"{table.source}: the target {table.target!r} holds text ({bad!r} is not a number): linear "
                         f"regression needs a numeric target; for classes use --model logistic")
    return table.y


def resolve_model(requested: str, table: Table) -> tuple[str, int, str | None]:
    """-> (model, num_classes, note). ``logistic`` on a target with more than two classes becomes softmax
    (multinomial logistic regression); a note says so."""
    if requested == "linear":
        return "linear", 0, None
    labels = class_labels(table.y)
    if len(labels) < 2:
        raise InputError(f"{table.source}: the target {table.target!r} has a single class ({labels[0]!r}); a "
                         f"classifier needs at least two")
    if requested == "softmax":
        return "softmax", len(labels), None
    if len(labels) > 2:
        return "softmax", len(labels), (f"the target {table.target!r} has {len(labels)} classes: training "
                                        f"multinomial logistic regression (softmax)")
    return "logistic", 0, None


def column_std(X: np.ndarray, mean: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``X.std(axis=0)`` bit for bit (numpy sums axis 0 of a C-ordered matrix row after row, so carrying the
    running sum into the next chunk keeps the order) without numpy's temporary copy of the whole matrix."""
    if X.ndim != 2 or not X.shape[0] or not X.flags.c_contiguous:
        return X.std(axis=0)
    acc = None
    for a in range(0, X.shape[0], chunk):
        sq = X[a:a + chunk] - mean
        np.multiply(sq, sq, out=sq)
        acc = np.add.reduce(sq, axis=0) if acc is None else np.add.reduce(np.concatenate([acc[None, :], sq]), axis=0)
    return np.sqrt(acc / X.shape[0])


def fit_standardization(table: Table, model: str) -> Standardization:
    X = table.X
    mean = X.mean(axis=0)
    std = column_std(X, mean)
    notes = []
    const = std == 0
    if const.any():
        notes.append(f"constant features left unscaled: {[table.feature_names[i] for i in np.flatnonzero(const)]}")
        std = np.where(const, 1.0, std)
    tm, ts, labels = 0.0, 1.0, None
    if model == "linear":
        y = numeric_target(table)
        tm, ts = float(y.mean()), float(y.std()) or 1.0
    else:
        labels = class_labels(table.y)
        if model == "logistic" and len(labels) != 2:
            raise InputError(f"logistic regression needs two classes; {table.target!r} has {len(labels)} "
                             f"({', '.join(map(repr, labels[:6]))}{' ...' if len(labels) > 6 else ''}): use "
                             f"--model softmax")
    return Standardization([float(v) for v in mean], [float(v) for v in std], CLIP, tm, ts, notes, labels,
                           TARGET_KINDS.get(model, "value") if labels is not None else "value")


def target_values(table: Table, stdz: Standardization, frac_bits: int) -> np.ndarray:
    """The committed target ``Y_q`` (int64): the standardized value, ``index * 2^f`` or the class index."""
    if stdz.labels is None:
        return quantize((numeric_target(table) - stdz.target_mean) / stdz.target_std, frac_bits)
    idx = class_indices(table.y, stdz.labels, f"{table.source}: target {table.target!r}")
    return idx << frac_bits if stdz.target_kind == "binary" else idx


def quantize_table(table: Table, stdz: Standardization, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (X_q int64 (n, d), Y_q int64 (n,))."""
    return quantize(stdz.apply(table.X), frac_bits), target_values(table, stdz, frac_bits)


def rows_matrix(Xq: np.ndarray, Yq: np.ndarray) -> np.ndarray:
    """The committed row layout: features then target, int64."""
    return np.ascontiguousarray(np.column_stack([Xq, Yq]), dtype=np.int64)


def quantized_rows(table: Table, stdz: Standardization, frac_bits: int, chunk: int = 1 << 16,
                   compact: bool = False) -> np.ndarray:
    """The rows the client commits to: standardize, quantize, lay out (features then target). Element-wise,
    so computed ``chunk`` rows at a time into the result: the peak is the rows plus one chunk's temporaries
    (the audit's bounded memory), the same integers as ``rows_matrix(*quantize_table(...))``. ``compact``:
    int32 storage while every value fits (half the memory; a value beyond it switches to int64, one copy)."""
    X = np.asarray(table.X)
    if X.ndim != 2 or X.shape[1] != len(stdz.mean):
        return rows_matrix(*quantize_table(table, stdz, frac_bits))  # refused there, with its message
    Y = target_values(table, stdz, frac_bits)
    small = compact and (Y.size == 0 or minimal_value_bytes(int(Y.min()), int(Y.max())) <= 4)
    rows = np.empty((X.shape[0], X.shape[1] + 1), dtype=np.int32 if small else np.int64)
    rows[:, -1] = Y
    del Y
    for a in range(0, X.shape[0], chunk):
        q = quantize(stdz.apply(X[a:a + chunk]), frac_bits)
        if q.size:
            rows = holding(rows, int(q.min()), int(q.max()))
        rows[a:a + chunk, :-1] = q
    return rows
