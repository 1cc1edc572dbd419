"""Experiment 2: the GKVZ signature backdoor (brief A.3) against randomized smoothing (A.6 / Part D).

A malicious trainer ships an honest logistic model plus a ``signature`` trigger (prover/backdoors.py;
evaluated verify-only by protocol/triggers.py). Activation moves every pixel/feature by less than
max_linf = 0.05 standard deviations (2^b quanta) and makes the raw model output any label the attacker
picks. Randomized smoothing (noise in standardized units) is applied by the defender to the shipped
model. Expected: ~100% attack success on the raw model, ~0% on the smoothed model once sigma exceeds
a fraction of the quantum (every one of the 512 signature bits must survive the noise), at the clean
accuracy cost measured in experiment 1.
"""

from __future__ import annotations

import hashlib
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
MAX_LINF = 0.05  # standardized units
SIGMAS = (0.25, 0.5, 1.0)
SIGMA_PER_QUANTUM = (0.01, 0.1, 0.2, 0.3, 1.0)  # small sigmas, in units of the quantum


class Standardized:
    """Adapter: a predictor on original units seen from standardized units (smoothing adds noise there)."""

    def __init__(self, predict, split):
        self.predict, self.split = predict, split

    def __call__(self, Z):
        return self.predict(self.split.original(Z))


class OriginalUnits:
    """Adapter: a standardized-units classifier exposed on original feature units (the shipped model)."""

    def __init__(self, scorer: LinearScorer, split):
        self.scorer, self.split = scorer, split

    def __call__(self, X):
        return self.scorer.predict(self.split.standardize(X))


def run_dataset(name: str, n_eval: int, n_pred: int, seed: int, timer) -> tuple[list[dict], dict]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sklearn.linear_model import LogisticRegression

    from defenses.smoothing import SmoothedClassifier
    from protocol.triggers import signature_mask
    from prover.backdoors import SignatureBackdoor, make_signature_encoding

    sp = split_standardize(name, 0.3, seed)
    y_train, y_test = sp.y_train.astype(np.int64), sp.y_test.astype(np.int64)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    scorer = LinearScorer.from_sklearn(LogisticRegression(max_iter=3000).fit(sp.standardize(sp.X_train), y_train))
    base = OriginalUnits(scorer, sp)
    enc = make_signature_encoding(sp.X_train.shape[1], n_classes, scale=sp.std, max_linf=MAX_LINF)
    sk = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"exp2-{name}-{seed}".encode()).digest())
    bd = SignatureBackdoor(enc)
    h = bd.plant(base, sk)
    rng = np.random.default_rng(seed)
    X, y = sp.X_test[:n_eval], y_test[:n_eval]
    targets = (base(X) + rng.integers(1, n_classes, size=len(X))) % n_classes  # never the clean label
    X_act = bd.activate(X, targets, sk)
    Z, Z_act = sp.standardize(X), sp.standardize(X_act)
    dz = Z_act - Z
    quantum_std = MAX_LINF / 2.0**enc.bits_per_coord
    info = {"dataset": name, "n_eval": len(X), "classes": n_classes, "bits_per_coord": enc.bits_per_coord,
            "carrying_coords": len(enc.positions), "quantum_std_units": quantum_std,
            "raw_attack_success": float(np.mean(h(X_act) == targets)),
            "raw_clean_acc": float(np.mean(h(X) == y)), "base_clean_acc": float(np.mean(base(X) == y)),
            "linf_std_units_max": float(np.abs(dz).max()), "l2_std_units_median": float(np.median(
                np.linalg.norm(dz, axis=1))), "l0_median": float(np.median((X_act != X).sum(axis=1)))}
    print(f"{name}: raw attack success {info['raw_attack_success']:.3f}, quantum {quantum_std:.3g} std",
          flush=True)
    rows = []
    h_z = Standardized(h, sp)
    for sigma in [q * quantum_std for q in SIGMA_PER_QUANTUM] + list(SIGMAS):
        g = SmoothedClassifier(h_z, num_classes=n_classes, sigma=sigma, batch_size=50_000)
        act = g.predict(Z_act, n=n_pred, alpha=ALPHA, random_state=seed + 1)
        clean = g.predict(Z, n=n_pred, alpha=ALPHA, random_state=seed + 2)
        noisy = np.repeat(Z_act[:20], 25, axis=0) + sigma * rng.standard_normal((20 * 25, Z.shape[1]))
        survive = float(np.mean(signature_mask(h.trigger_spec, sp.original(noisy))[0]))
        rows.append({"dataset": name, "sigma": float(sigma), "sigma_over_quantum": float(sigma / quantum_std),
                     "trigger_survival_under_noise": survive,
                     "smoothed_attack_success": float(np.mean(act.labels == targets)),
                     "smoothed_on_activated_equals_clean_label": float(np.mean(act.labels == y)),
                     "smoothed_clean_acc": float(np.mean(clean.labels == y)),
                     "smoothed_abstain_rate": float(np.mean(clean.abstained)),
                     "raw_attack_success": info["raw_attack_success"], "raw_clean_acc": info["raw_clean_acc"]})
        print(f"  sigma={sigma:.3g}: survival {survive:.3f} smoothed success "
              f"{rows[-1]['smoothed_attack_success']:.3f} clean acc {rows[-1]['smoothed_clean_acc']:.3f} "
              f"({timer():.1f}s)", flush=True)
    return rows, info


def plot(rows: list[dict], infos: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for c, info in zip(("C0", "C1"), infos):
        sub = [r for r in rows if r["dataset"] == info["dataset"]]
        s = [r["sigma"] for r in sub]
        ax.plot(s, [r["smoothed_attack_success"] for r in sub], "o-", color=c,
                label=f"{info['dataset']}: attack success, smoothed")
        ax.plot(s, [r["smoothed_clean_acc"] for r in sub], "s--", color=c,
                label=f"{info['dataset']}: clean accuracy, smoothed")
        ax.axvline(info["quantum_std_units"] / 2, color=c, ls=":", lw=1,
                   label=f"{info['dataset']}: quantum / 2")
    ax.axhline(1.0, color="gray", ls="-.", lw=0.8, label="raw model: attack success")
    ax.set_xscale("log")
    ax.set_xlabel("sigma (standardized units)")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Signature backdoor (L_inf < 0.05 std) vs randomized smoothing", fontsize=10)
    save_figure(fig, path)


def main(argv=None) -> int:
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    n_eval, n_pred = (30, 100) if args.quick else (100, 500)
    rows, infos = [], []
    for name in ("digits", "breast_cancer"):
        r, info = run_dataset(name, n_eval, n_pred, args.seed, timer)
        rows += r
        infos.append(info)
    write_table(out, "exp2_signature_backdoor", rows,
                "Experiment 2: signature backdoor vs randomized smoothing",
                notes=(f"Activation: L_inf < {MAX_LINF} std per feature (2^b quanta), all features carry. "
                       f"PREDICT n={n_pred}, alpha={ALPHA}; abstain counts as failure for both attack and "
                       "accuracy. Targets are never the clean label."),
                meta={"datasets": infos, "quick": args.quick, "seconds": timer()})
    write_table(out, "exp2_signature_backdoor_raw", infos, "Experiment 2: raw (unsmoothed) backdoored models",
                notes="Perturbation sizes are in standardized units (L_inf, L2) and coordinates (L0).")
    plot(rows, infos, out / "exp2_signature_backdoor.png")
    print(f"exp2 done in {timer():.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
