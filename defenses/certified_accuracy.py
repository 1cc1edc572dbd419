"""Certified accuracy of randomized smoothing over a labeled dataset (CRK'19, Figures/Tables).

The certified accuracy at radius r is the fraction of the dataset that CERTIFY classifies correctly
(not abstaining) with certified radius R >= r (the paper's and the reference code's convention; the
guarantee is for ||delta||_2 < R, and R is already rounded down, see defenses/smoothing.py).
"""

from __future__ import annotations

import io
import textwrap

import numpy as np

from defenses.smoothing import ABSTAIN
from protocol.fileio import write_atomic


def _check(labels_pred, radii, y_true, abstain_value: int):
    labels_pred, radii, y_true = np.asarray(labels_pred), np.asarray(radii, dtype=np.float64), np.asarray(y_true)
    if labels_pred.ndim != 1 or labels_pred.shape != radii.shape or labels_pred.shape != y_true.shape:
        raise ValueError(f"labels_pred {labels_pred.shape}, radii {radii.shape} and y_true {y_true.shape} "
                         "must be 1-D arrays of the same length")
    if labels_pred.size == 0:
        raise ValueError("need at least one example")
    if not np.all(np.isfinite(radii)) or np.any(radii < 0):
        raise ValueError("radii must be finite and >= 0")
    if np.any(y_true == abstain_value):
        raise ValueError(f"y_true contains the abstain value {abstain_value}; pass the right abstain_value")
    return labels_pred, radii, y_true


def certified_accuracy_table(labels_pred, radii, y_true, radii_grid, abstain_value: int = ABSTAIN) -> list[dict]:
    """Rows {"radius": r, "certified_accuracy": mean(correct and not abstained and R >= r)} for r in radii_grid."""
    labels_pred, radii, y_true = _check(labels_pred, radii, y_true, abstain_value)
    grid = np.asarray(radii_grid, dtype=np.float64)
    if grid.ndim != 1 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError("radii_grid must be a 1-D array of finite radii >= 0")
    correct = (labels_pred == y_true) & (labels_pred != abstain_value)
    return [{"radius": float(r), "certified_accuracy": float(np.mean(correct & (radii >= r)))} for r in grid]


TITLE_WIDTH = 70  # characters per title line: fits a 6-inch figure at 10 pt


def plot_certified_accuracy(curves: dict, path, abstain_value: int = ABSTAIN, title: str | None = None) -> None:
    """Write a PNG of certified accuracy vs radius, one step curve per sigma (:func:`certified_accuracy_figure`).
    Written atomically (protocol/fileio.py: missing folders are created)."""
    buf = io.BytesIO()
    certified_accuracy_figure(curves, abstain_value, title).savefig(buf, format="png", dpi=120)
    write_atomic(path, buf.getvalue())


def certified_accuracy_figure(curves: dict, abstain_value: int = ABSTAIN, title: str | None = None):
    """A matplotlib Figure of certified accuracy vs radius, one step curve per sigma.

    curves: {sigma: (radii, y_pred, y_true)}.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("curves must map at least one sigma to (radii, y_pred, y_true)")
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    r_max = 0.0
    for sigma in sorted(curves):
        radii, y_pred, y_true = curves[sigma]
        y_pred, radii, y_true = _check(y_pred, radii, y_true, abstain_value)
        ok = np.sort(radii[(y_pred == y_true) & (y_pred != abstain_value)])
        # Exact step function: accuracy(r) = #{correct with R >= r} / N, dropping just after each R.
        xs = np.concatenate([[0.0], ok])
        ys = (ok.size - np.arange(ok.size + 1)) / radii.size
        ax.step(xs, ys, where="post", label=f"sigma = {sigma:g}")
        r_max = max(r_max, float(ok[-1]) if ok.size else 0.0)
    ax.set_xlim(0.0, max(r_max * 1.05, 1e-6))
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("radius (L2)")
    ax.set_ylabel("certified accuracy")
    ax.set_title(textwrap.fill(title or "Randomized smoothing: certified accuracy", TITLE_WIDTH), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
