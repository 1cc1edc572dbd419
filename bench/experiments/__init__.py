"""Experiments: ``exp<N>_<topic>.py``, each with ``main(argv=None) -> int`` taking ``--out DIR`` and ``--quick``.

Shared helpers for the experiments (no import-time side effects): dataset loading, a seeded split with
standardization, the linear base models, and atomic writers for tables (markdown + JSON) and figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from protocol.fileio import write_atomic

DATA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "data"

__all__ = ["DATA_DIR", "LinearScorer", "Split", "Timer", "experiment_parser", "load_dataset", "rate_error",
           "save_figure", "split_standardize", "write_table"]


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) from protocol/data/<name>.csv; the target is the last column."""
    path = DATA_DIR / f"{name}.csv"
    if not path.exists():
        raise ValueError(f"unknown dataset {name!r}: {path} does not exist")
    with open(path) as fh:
        header = fh.readline().strip().split(",")
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    return raw[:, :-1], raw[:, -1], header[:-1]


class Split:
    """Seeded train/test split; ``mean``/``std`` from the training rows (std 0 -> 1)."""

    def __init__(self, X, y, test_fraction: float, seed: int):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(X))
        n_test = round(test_fraction * len(X))
        self.test_idx, self.train_idx = perm[:n_test], perm[n_test:]
        self.X_train, self.y_train = X[self.train_idx], y[self.train_idx]
        self.X_test, self.y_test = X[self.test_idx], y[self.test_idx]
        self.mean = self.X_train.mean(axis=0)
        std = self.X_train.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def standardize(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self.mean) / self.std

    def original(self, Z) -> np.ndarray:
        return np.asarray(Z, dtype=float) * self.std + self.mean


def split_standardize(name: str, test_fraction: float = 0.3, seed: int = 0) -> Split:
    X, y, _ = load_dataset(name)
    return Split(X, y, test_fraction, seed)


class LinearScorer:
    """Linear scores in standardized units: scores(Z) = Z @ W.T + b (multiclass: argmax = label)."""

    def __init__(self, W, b, classes=None):
        self.W, self.b = np.atleast_2d(np.asarray(W, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
        self.classes = None if classes is None else np.asarray(classes)

    @classmethod
    def from_sklearn(cls, model) -> LinearScorer:
        return cls(model.coef_, model.intercept_, getattr(model, "classes_", None))

    def scores(self, Z) -> np.ndarray:
        return np.asarray(Z, dtype=float) @ self.W.T + self.b

    def score(self, Z) -> np.ndarray:
        """First (binary: only) score column; > 0 means class ``classes[1]``."""
        return self.scores(Z)[:, 0]

    def predict(self, Z) -> np.ndarray:
        s = self.scores(Z)
        idx = (s[:, 0] > 0).astype(np.int64) if s.shape[1] == 1 else np.argmax(s, axis=1)
        return idx if self.classes is None else self.classes[idx].astype(np.int64)


def experiment_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="results/", help="output directory (default: results/)")
    p.add_argument("--quick", action="store_true", help="small sizes, for smoke tests (seconds)")
    p.add_argument("--seed", type=int, default=0, help="master seed")
    return p


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_table(out_dir, stem: str, rows: list[dict], title: str, notes: str = "", meta: dict | None = None):
    """Write <stem>.md (markdown table) and <stem>.json ({title, notes, meta, rows}) atomically."""
    out = Path(out_dir)
    cols = list(dict.fromkeys(c for r in rows for c in r))  # union of keys, first-seen order
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "-")) for c in cols) + " |" for r in rows]
    write_atomic(out / f"{stem}.md", "\n".join(lines) + "\n")
    payload = {"title": title, "notes": notes, "meta": meta or {}, "rows": rows}
    write_atomic(out / f"{stem}.json", json.dumps(payload, indent=2, default=float) + "\n")


def rate_error(n: int, what: str = "rate", confidence: float = 0.95) -> str:
    """One sentence: how far a proportion over ``n`` independent trials can be from its expectation.

    Exact (Clopper-Pearson) two-sided intervals at ``confidence``: the widest half-width (at an observed 1/2),
    and how far an observed 0 (or 1) can sit from the truth."""
    from scipy import stats

    a = 1 - confidence
    k = n // 2
    half = (stats.beta.ppf(1 - a / 2, k + 1, n - k) - stats.beta.ppf(a / 2, k, n - k + 1)) / 2
    zero = 1 - (a / 2) ** (1 / n)
    return (f"Statistical error: each {what} is a proportion over {n} independent trials; its exact "
            f"{confidence:.0%} interval reaches at most {half:.3f} either side of it (at 1/2), and an observed 0 (1) means a true "
            f"{what} below {zero:.3f} (above {1 - zero:.3f}).")


def save_figure(fig, path) -> None:
    """Render a matplotlib Figure (Agg canvas) to PNG atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buf.getvalue())


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
