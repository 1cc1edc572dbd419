"""Experiment 1: randomized-smoothing certification (Cohen, Rosenfeld, Kolter 2019) on the bundled digits data.

Base models: multinomial logistic regression (scikit-learn) on standardized pixels (per-pixel z-score
from the training split; constant pixels get std 1). sigma is in these *standardized pixel units*
(radius 1 = one standard deviation of one pixel, or 1/8 of a standard deviation on each of 64 pixels).

Two base models per sigma: ``plain`` (trained on clean data: what a defender who can only wrap a shipped
model gets) and ``noise-aug`` (trained on Gaussian-augmented data at the same sigma, as CRK do).
Outputs: certified accuracy vs L2 radius (CERTIFY, n0 = 100, alpha = 0.001) and the clean-accuracy cost
of smoothing (PREDICT accuracy, abstentions counted as errors, vs the base model's accuracy), with CERTIFY's
abstention rate beside it: a defender who wants a radius gets CERTIFY, and pays its abstentions.

Claim tested: smoothing (CRK'19) certifies a non-trivial L2 radius on digits at a moderate clean-accuracy cost,
and noise-augmented training reduces that cost. Refuted if: certified accuracy at radius 0.5 is ~0 for every
sigma, or the smoothed accuracy (PREDICT, or CERTIFY's non-abstaining share) falls far below the base model's
for the noise-augmented models too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.experiments import (
    LinearScorer,
    Timer,
    experiment_parser,
    save_figure,
    split_standardize,
    write_table,
)

SIGMAS = (0.25, 0.5, 1.0)
CLAIM = ("Claim: smoothing certifies a non-trivial L2 radius on digits at a moderate clean-accuracy cost, and "
         "noise-augmented training lowers that cost. Refuted if: cert_acc@0.5 is ~0 at every sigma, or the "
         "noise-aug models' PREDICT accuracy (or CERTIFY's correct-and-not-abstaining rate) falls far below "
         "their base accuracy.")
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
ALPHA = 0.001


def train_logistic(Z, y, sigma_aug: float | None, copies: int, seed: int) -> LinearScorer:
    from sklearn.linear_model import LogisticRegression

    if sigma_aug:
        rng = np.random.default_rng(seed)
        Z = np.repeat(Z, copies, axis=0)
        Z = Z + sigma_aug * rng.standard_normal(Z.shape)
        y = np.repeat(y, copies)
    model = LogisticRegression(max_iter=3000, C=1.0).fit(Z, y)
    return LinearScorer.from_sklearn(model)


def evaluate(scorer: LinearScorer, Z, y, sigma: float, n0: int, n: int, n_pred: int, seed: int) -> dict:
    from scipy.stats import norm

    from defenses.certified_accuracy import certified_accuracy_table
    from defenses.smoothing import SmoothedClassifier

    g = SmoothedClassifier(scorer.predict, num_classes=10, sigma=sigma, batch_size=50_000)
    cert = g.certify(Z, n0=n0, n=n, alpha=ALPHA, random_state=seed)
    pred = g.predict(Z, n=n_pred, alpha=ALPHA, random_state=seed + 1)
    table = certified_accuracy_table(cert.labels, cert.radii, y, RADII)
    correct = (cert.labels == y) & ~cert.abstained
    row = {
        "base_clean_acc": float(np.mean(scorer.predict(Z) == y)),
        "smoothed_predict_acc": float(np.mean(pred.labels == y)),
        "predict_abstain_rate": float(np.mean(pred.abstained)),
        "certify_abstain_rate": float(np.mean(cert.abstained)),
        "certify_correct_rate": float(np.mean(correct)),
        "median_radius_correct": float(np.median(cert.radii[correct])) if correct.any() else 0.0,
        # largest radius CERTIFY can return with n samples: all n votes for cA, pABar = alpha^(1/n)
        "max_certifiable_radius": float(sigma * norm.ppf(ALPHA ** (1.0 / n))),
    }
    row.update({f"cert_acc@{r['radius']:g}": r["certified_accuracy"] for r in table})
    return row, (cert.radii, cert.labels, y)


def plot_cost(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    for kind, marker in (("plain", "o"), ("noise-aug", "s")):
        sub = [r for r in rows if r["model"] == kind]
        s = [r["sigma"] for r in sub]
        ax.plot(s, [r["base_clean_acc"] for r in sub], marker + "--", label=f"{kind}: base model")
        ax.plot(s, [r["smoothed_predict_acc"] for r in sub], marker + "-", label=f"{kind}: smoothed (PREDICT) accuracy")
        ax.plot(s, [r["certify_correct_rate"] for r in sub], marker + ":",
                label=f"{kind}: CERTIFY correct and not abstaining")
        ax.plot(s, [r["certify_abstain_rate"] for r in sub], marker + "-.", alpha=0.7,
                label=f"{kind}: CERTIFY abstention rate")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sigma (standardized pixel units)")
    ax.set_ylabel("rate on clean test images")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Digits: clean-accuracy cost of smoothing (PREDICT) and CERTIFY's abstentions", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    from defenses.certified_accuracy import plot_certified_accuracy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    sp = split_standardize("digits", 0.3, args.seed)
    y_train, y_test = sp.y_train.astype(np.int64), sp.y_test.astype(np.int64)
    Z_train, Z_test = sp.standardize(sp.X_train), sp.standardize(sp.X_test)
    n_eval, n0, n, n_pred, copies = (60, 100, 500, 200, 2) if args.quick else (300, 100, 10_000, 1000, 8)
    Z_eval, y_eval = Z_test[:n_eval], y_test[:n_eval]
    plain = train_logistic(Z_train, y_train, None, 1, args.seed)
    rows, curves = [], {"plain": {}, "noise-aug": {}}
    for i, sigma in enumerate(SIGMAS):
        aug = train_logistic(Z_train, y_train, sigma, copies, args.seed + 10 + i)
        for kind, scorer in (("plain", plain), ("noise-aug", aug)):
            row, curve = evaluate(scorer, Z_eval, y_eval, sigma, n0, n, n_pred, args.seed + 100 * i)
            rows.append({"sigma": sigma, "model": kind, **row})
            curves[kind][sigma] = curve
            print(f"sigma={sigma} {kind}: base {row['base_clean_acc']:.3f} smoothed "
                  f"{row['smoothed_predict_acc']:.3f} cert@0.5 {row['cert_acc@0.5']:.3f} "
                  f"cert@1 {row['cert_acc@1']:.3f} ({timer():.1f}s)", flush=True)
    meta = {"dataset": "digits", "n_eval": n_eval, "n0": n0, "n": n, "n_predict": n_pred, "alpha": ALPHA,
            "units": "standardized pixels (z-score per pixel, training split)", "quick": args.quick,
            "seconds": timer()}
    write_table(out, "exp1_certify_digits", rows,
                "Experiment 1: certified accuracy of smoothed logistic regression on digits (10 classes)",
                notes=(f"sigma and radii in standardized pixel units; CERTIFY n0={n0}, n={n}, alpha={ALPHA}; "
                       f"PREDICT n={n_pred} (abstain = error); {n_eval} test images. certify_abstain_rate is the "
                       "share of images CERTIFY refuses to label (no radius); certify_correct_rate = correct and "
                       "certified at radius >= 0.\n\n" + CLAIM), meta=meta)
    for kind, curve in curves.items():
        plot_certified_accuracy(curve, out / f"exp1_certified_accuracy_{kind}.png",
                                title=f"Digits, {kind} logistic base model (standardized pixel units)")
    plot_cost(rows, out / "exp1_clean_accuracy_cost.png")
    print(f"exp1 done in {timer():.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
