"""Experiment 3: the smoothing-resistant ball backdoor, and oblivious mitigation of a linear model.

The trainer corrupts the model on a whole L2 ball of radius r around a target input x* (standardized
units; ``BallBackdoor`` in prover/backdoors.py, evaluated by protocol/triggers.py).

Part A (digits, 10 classes, logistic): randomized smoothing (Part D) at x*. Gaussian noise has norm
~ sigma sqrt(d), so once r is well beyond sigma sqrt(d) -- and far beyond the radius CERTIFY certifies
for the clean model at x* -- almost every noisy query lands in the ball and the smoothed classifier
outputs the attacker's label (and CERTIFY even certifies it).

Part B (breast_cancer logistic score, diabetes linear regression): the oblivious local mitigator
(brief B.4: correlated points on random lines through x*, D = Unif(body), body = a ball containing all
standardized data) queries the model only at points distributed like D; the backdoor ball has
D-mass <= (r / R_body)^d, so the mitigated output equals the clean linear model's value at x*.
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

ALPHA = 0.001
SIGMAS = (0.25, 0.5, 1.0)
REL_RADII = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)  # in units of sigma * sqrt(d)
BODY_FRACS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9)  # part B: r / R_body
SIGMA_B = 0.5


class ScoreSign:
    """Binary classifier from a real score: 1 if score > 0 else 0."""

    def __init__(self, score):
        self.score = score

    def __call__(self, Z):
        return (np.asarray(self.score(Z)) > 0).astype(np.int64)


def part_a(n_points: int, n_pred: int, n_cert: int, seed: int, timer) -> tuple[list[dict], list[dict]]:
    from scipy.stats import chi2
    from sklearn.linear_model import LogisticRegression

    from defenses.smoothing import SmoothedClassifier
    from prover.backdoors import BallBackdoor

    sp = split_standardize("digits", 0.3, seed)
    Ztr, Zte = sp.standardize(sp.X_train), sp.standardize(sp.X_test)
    ytr, yte = sp.y_train.astype(np.int64), sp.y_test.astype(np.int64)
    scorer = LinearScorer.from_sklearn(LogisticRegression(max_iter=3000).fit(Ztr, ytr))
    ok = np.flatnonzero(scorer.predict(Zte) == yte)[:n_points]
    Zs, ys = Zte[ok], yte[ok]
    rng = np.random.default_rng(seed)
    targets = (ys + rng.integers(1, 10, size=len(ys))) % 10
    d = Zs.shape[1]
    rows, cert_rows = [], []
    for i, sigma in enumerate(SIGMAS):
        clean = SmoothedClassifier(scorer.predict, 10, sigma, batch_size=50_000)
        cert = clean.certify(Zs, n0=100, n=n_cert, alpha=ALPHA, random_state=seed + i)
        med_R = float(np.median(cert.radii))
        cert_rows.append({"sigma": sigma, "sigma_sqrt_d": sigma * np.sqrt(d), "clean_median_certified_radius":
                          med_R, "clean_max_certified_radius": float(cert.radii.max()),
                          "clean_certify_acc": float(np.mean(cert.labels == ys))})
        for rel in REL_RADII:
            r = rel * sigma * np.sqrt(d)
            success = certified = 0
            for z, t in zip(Zs, targets):
                h = BallBackdoor(z, r, target_label=int(t)).plant(scorer.predict)
                g = SmoothedClassifier(h, 10, sigma, batch_size=50_000)
                success += int(g.predict(z[None, :], n=n_pred, alpha=ALPHA, random_state=seed + 7).labels[0] == t)
                c = g.certify(z[None, :], n0=100, n=n_pred, alpha=ALPHA, random_state=seed + 8)
                certified += int(c.labels[0] == t)
            rows.append({"sigma": sigma, "radius": float(r), "radius_over_sigma_sqrt_d": rel,
                         "radius_over_clean_median_R": float(r / med_R) if med_R > 0 else float("inf"),
                         "noise_mass_in_ball": float(chi2.cdf((r / sigma) ** 2, d)),
                         "raw_attack_success": 1.0, "smoothed_attack_success": success / len(Zs),
                         "attacker_label_certified": certified / len(Zs)})
        print(f"A sigma={sigma}: success by r/(sigma sqrt d) "
              f"{[round(r['smoothed_attack_success'], 2) for r in rows[-len(REL_RADII):]]} ({timer():.1f}s)",
              flush=True)
    return rows, cert_rows


def _dataset_b(name: str, seed: int):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    sp = split_standardize(name, 0.3, seed)
    Ztr = sp.standardize(sp.X_train)
    if name == "breast_cancer":
        scorer = LinearScorer.from_sklearn(LogisticRegression(max_iter=3000).fit(Ztr, sp.y_train.astype(np.int64)))
    else:
        lr = LinearRegression().fit(Ztr, sp.y_train)
        scorer = LinearScorer(lr.coef_[None, :], [lr.intercept_])
    return sp, scorer


def part_b(name: str, n_points: int, n_pred: int, n_lines: int, seed: int, timer) -> list[dict]:
    from defenses.correlated_sampling import Ball
    from defenses.oblivious import LocalPolynomialMitigator, ModelTooInaccurate
    from defenses.smoothing import SmoothedClassifier
    from prover.backdoors import BallBackdoor

    sp, scorer = _dataset_b(name, seed)
    classify = name == "breast_cancer"
    Z_all = sp.standardize(np.concatenate([sp.X_train, sp.X_test]))
    body = Ball(np.zeros(Z_all.shape[1]), 1.05 * float(np.linalg.norm(Z_all, axis=1).max()))
    Zs = sp.standardize(sp.X_test)[:n_points]
    d = Zs.shape[1]
    rng = np.random.default_rng(seed)
    X_clean = body.sample(2000, rng)
    w_norm = float(np.linalg.norm(scorer.W))
    rows = []
    for frac in BODY_FRACS:
        r = frac * body.radius
        mitig_err, naive_err, mass, success_mit, success_smooth, raw_success, refused = [], [], [], 0, 0, 0, 0
        for j, z in enumerate(Zs):
            s_star = float(scorer.score(z[None, :])[0])
            if classify:  # the whole ball gets the label opposite to the clean one at x*
                offset = -np.sign(s_star) * (abs(s_star) + r * w_norm + 1.0)
            else:
                offset = 100.0  # progression units (target std ~ 77)
            f = BallBackdoor(z, r, offset=float(offset)).plant(scorer.score)
            y_clean = (scorer.score(X_clean) > 0).astype(int) if classify else scorer.score(X_clean)
            mit = LocalPolynomialMitigator(f, degree=1, body=body, n_lines=n_lines, eps=1e-6,
                                           task="classification" if classify else "regression",
                                           random_state=seed + j)
            naive_err.append(abs(float(f(z[None, :])[0]) - s_star))
            mass.append(float(np.mean(np.linalg.norm(X_clean - z, axis=1) <= r)))
            attacker = int(s_star <= 0)
            try:
                mit.fit(X_clean, y_clean)
            except ModelTooInaccurate:  # the ball has too much D-mass: the mitigator refuses (no output)
                refused += 1
            else:
                mitig_err.append(abs(float(mit.predict_unrounded(z[None, :])[0]) - s_star))
                success_mit += int(classify and mit.predict_class(z[None, :])[0] == attacker)
            if classify:
                raw_success += int((f(z[None, :])[0] > 0) == attacker)
                g = SmoothedClassifier(ScoreSign(f), 2, SIGMA_B, batch_size=50_000)
                success_smooth += int(g.predict(z[None, :], n=n_pred, alpha=ALPHA, random_state=seed).labels[0]
                                      == attacker)
        row = {"dataset": name, "radius": float(r), "radius_over_body_radius": frac,
               "radius_over_sigma_sqrt_d": float(r / (SIGMA_B * np.sqrt(d))), "backdoor_mass_bound": float(min(1.0, (r / body.radius) ** d)),
               "naive_abs_error_median": float(np.median(naive_err)),
               "backdoor_mass_empirical": float(np.mean(mass)), "mitigator_refused": refused / len(Zs),
               "mitigated_abs_error_max": float(np.max(mitig_err)) if mitig_err else float("nan"),
               # among accepted models: output off by more than 1 (logit or progression unit)
               "mitigator_fooled": float(np.mean(np.asarray(mitig_err) > 1.0)) if mitig_err else float("nan")}
        if classify:
            row.update({"raw_attack_success": raw_success / len(Zs),
                        f"smoothed_attack_success_sigma{SIGMA_B}": success_smooth / len(Zs),
                        "mitigated_attack_success": success_mit / len(Zs)})
        rows.append(row)
    print(f"B {name}: max mitigated error {np.nanmax([r['mitigated_abs_error_max'] for r in rows]):.3g} "
          f"(body radius {body.radius:.3g}, d={d}) ({timer():.1f}s)", flush=True)
    return rows


def plot(rows_a, cert_rows, rows_b, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for c, cr in zip(("C0", "C1", "C2"), cert_rows):
        sub = [r for r in rows_a if r["sigma"] == cr["sigma"]]
        ax1.plot([r["radius"] for r in sub], [r["smoothed_attack_success"] for r in sub], "o-", color=c,
                 label=f"sigma={cr['sigma']:g}")
        ax1.axvline(cr["sigma_sqrt_d"], color=c, ls=":", lw=1)
        ax1.axvline(cr["clean_median_certified_radius"], color=c, ls="--", lw=1)
    ax1.set_xlabel("ball radius r (standardized pixel units)")
    ax1.set_ylabel("attack success on the smoothed model")
    ax1.set_title("Digits, smoothed: dotted = sigma sqrt(d), dashed = clean median certified R", fontsize=9)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    bc = [r for r in rows_b if r["dataset"] == "breast_cancer"]
    rad = [r["radius"] for r in bc]
    ax2.plot(rad, [r["raw_attack_success"] for r in bc], "k^-", label="raw model")
    ax2.plot(rad, [r[f"smoothed_attack_success_sigma{SIGMA_B}"] for r in bc], "o-",
             label=f"smoothed, sigma={SIGMA_B}")
    ax2.plot(rad, [r["mitigated_attack_success"] for r in bc], "s-", label="oblivious mitigator (linear)")
    ax2.set_xlabel("ball radius r (standardized units)")
    ax2.set_ylabel("attack success")
    ax2.set_title("Breast cancer: ball backdoor vs smoothing and oblivious mitigation", fontsize=9)
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None) -> int:
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    n_a, n_pred, n_cert, n_b, n_lines = (6, 200, 1000, 6, 15) if args.quick else (40, 1000, 10_000, 40, 15)
    rows_a, cert_rows = part_a(n_a, n_pred, n_cert, args.seed, timer)
    rows_b = []
    for name in ("breast_cancer", "diabetes"):
        rows_b += part_b(name, n_b, n_pred, n_lines, args.seed, timer)
    meta = {"quick": args.quick, "n_points_a": n_a, "n_points_b": n_b, "n_predict": n_pred, "n_certify": n_cert,
            "n_lines": n_lines, "alpha": ALPHA, "seconds": timer()}
    write_table(out, "exp3_ball_smoothing", rows_a, "Experiment 3A: ball backdoor vs randomized smoothing (digits)",
                notes=(f"Radii and sigma in standardized pixel units (d = 64). PREDICT n={n_pred}, alpha={ALPHA} "
                       "at the target x*; 'certified' = CERTIFY returns the attacker's label. "
                       "noise_mass_in_ball = P[sigma chi_d <= r]."), meta=meta)
    write_table(out, "exp3_clean_certified_radius", cert_rows,
                "Experiment 3A: certified radius of the clean smoothed model at the target points",
                notes=f"CERTIFY n0=100, n={n_cert}, alpha={ALPHA}.", meta=meta)
    write_table(out, "exp3_ball_mitigation", rows_b,
                "Experiment 3B: oblivious mitigation (linear, D = Unif(ball containing the data)) of a ball "
                "backdoor",
                notes=("Errors are |value - clean linear value| at x* (classification: logit score; regression: "
                       "progression units, offset 100). backdoor_mass_bound = (r / R_body)^d; "
                       "empirical mass = fraction of the 2000 clean D-samples inside the ball; the mitigator "
                       f"refuses models whose 99% upper error bound exceeds 1/4. K={n_lines} "
                       "lines, 2 points per line, median aggregate."), meta=meta)
    plot(rows_a, cert_rows, rows_b, out / "exp3_ball_backdoor.png")
    print(f"exp3 done in {timer():.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
