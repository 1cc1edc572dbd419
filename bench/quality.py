"""Model quality of the bit-exact trainer on the bundled data sets, against scikit-learn on the same split.

breast_cancer (logistic): held-out accuracy vs ``sklearn.linear_model.LogisticRegression()`` (default C = 1).
digits (10 classes) and iris (3 classes) (softmax): held-out accuracy vs the same estimator, which is
multinomial (lbfgs, cross-entropy over all classes) for more than two classes.
diabetes (linear): held-out R^2 vs ``sklearn.linear_model.LinearRegression()`` (ordinary least squares).
Split: 25 % held out, fixed seed, stratified for classification. Standardization is fitted on the training
rows only (``protocol.dataset.fit_standardization``) and applied to both splits; sklearn sees the same
standardized features. Our model is ``train_honest``'s last state read as reals (``theta / 2^f``).
``gap`` is sklearn's score minus ours (the shortfall; negative means ours is better).
"""

from __future__ import annotations

import numpy as np

from protocol.dataset import Table, class_labels, fit_standardization, load_table, quantize_table, rows_matrix
from protocol.merkle import MerkleTree, data_leaves
from protocol.prg import SeedContext
from protocol.training import TrainConfig, train_honest

SPLIT_SEED = 0
TEST_FRACTION = 0.25
# The chosen defaults (lr = lr_num / 2^lr_shift, l2 = l2_num / 2^16).
CONFIGS = {
    "breast_cancer": TrainConfig(model="logistic", epochs=30, batch_size=16, lr_num=205, lr_shift=10, l2_num=655),
    "diabetes": TrainConfig(model="linear", epochs=20, batch_size=32, lr_num=20, lr_shift=10, l2_num=0),
    "digits": TrainConfig(model="softmax", epochs=60, batch_size=16, lr_num=205, lr_shift=10, l2_num=655,
                          num_classes=10),
    "iris": TrainConfig(model="softmax", epochs=60, batch_size=16, lr_num=205, lr_shift=10, l2_num=655,
                        num_classes=3),
}
TARGETS = {"breast_cancer": 1.5, "diabetes": 0.03, "digits": 1.5, "iris": 1.5}


def split(table: Table, stratify: bool, seed: int = SPLIT_SEED):
    from sklearn.model_selection import train_test_split

    idx = np.arange(table.y.shape[0])
    tr, te = train_test_split(idx, test_size=TEST_FRACTION, random_state=seed,
                              stratify=table.y if stratify else None)
    return tuple(table.subset(ix) for ix in (tr, te))


def train_ours(train: Table, cfg: TrainConfig, seed_label: bytes = b"quality"):
    """-> (theta as reals (d+1,), standardization)."""
    import hashlib

    stdz = fit_standardization(train, cfg.model)
    Xq, Yq = quantize_table(train, stdz, cfg.frac_bits)
    root = MerkleTree(data_leaves(rows_matrix(Xq, Yq))).root
    ctx = SeedContext(hashlib.sha256(seed_label + b"/sid").digest()[:16], root,
                      hashlib.sha256(seed_label + b"/seed").digest())
    theta = None
    for _t, _e, theta, _r in train_honest(Xq, Yq, cfg, ctx):
        pass
    return theta.astype(np.float64) / (1 << cfg.frac_bits), stdz


def evaluate(name: str, cfg: TrainConfig, seed: int = SPLIT_SEED):
    """-> (ours, sklearn) held-out scores: accuracy in percent (logistic) or R^2 (linear)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import r2_score

    table = load_table(f"builtin:{name}")
    classifier = cfg.model != "linear"
    train, test = split(table, stratify=classifier, seed=seed)
    theta, stdz = train_ours(train, cfg)
    Ztr, Zte = stdz.apply(train.X), stdz.apply(test.X)
    if classifier:
        labels = class_labels(train.y)
        if cfg.model == "softmax":
            W = theta.reshape(cfg.num_classes, -1)
            pred = np.argmax(Zte @ W[:, :-1].T + W[:, -1], axis=1)
        else:
            pred = (Zte @ theta[:-1] + theta[-1] > 0).astype(np.int64)
        ours = 100.0 * float(np.mean(np.asarray(labels, dtype=object)[pred] == test.y))
        ref = 100.0 * float(LogisticRegression(max_iter=5000).fit(Ztr, train.y).score(Zte, test.y))
    else:
        score = Zte @ theta[:-1] + theta[-1]
        ours = float(r2_score(test.y, score * stdz.target_std + stdz.target_mean))
        ref = float(LinearRegression().fit(Ztr, train.y).score(Zte, test.y))
    return ours, ref


def run_quality() -> None:
    for name, cfg in CONFIGS.items():
        ours, ref = evaluate(name, cfg)
        metric = "R^2" if cfg.model == "linear" else "accuracy %"
        print(f"[quality] {name}: {cfg.model}, held-out {metric}, {TEST_FRACTION:.0%} test split (seed {SPLIT_SEED}"
              f"{'' if cfg.model == 'linear' else ', stratified'}); ours: epochs = {cfg.epochs}, B = "
              f"{cfg.batch_size}, lr = {cfg.lr_num}/2^{cfg.lr_shift} = {cfg.lr:.4f}, l2 = {cfg.l2_num}/2^"
              f"{cfg.frac_bits} = {cfg.l2:.5f}")
        fmt = "{:.4f}" if cfg.model == "linear" else "{:.2f}"
        print(f"quality {name}: ours = {fmt.format(ours)}, sklearn = {fmt.format(ref)}, "
              f"gap = {fmt.format(ref - ours)} (target <= {TARGETS[name]})")
