"""Linear probes: can a concept's value be read off the context embedding f(x) linearly?"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["probe_accuracy", "threshold_probe_accuracy"]


def probe_accuracy(
    x: np.ndarray,
    y: np.ndarray,
    *,
    cv: int = 5,
    C: float = 1.0,
    seed: int = 0,
    max_samples: int | None = 20000,
) -> float:
    """Cross-validated accuracy of a logistic-regression probe (standardised features).

    Args:
        x: (n, d) embeddings f(x) (or hidden states).
        y: (n,) binary labels (the concept's value in each context).
        cv: number of stratified folds (reduced to the smallest class size if needed, ≥ 2).
        C: inverse L2 regularisation strength of sklearn's ``LogisticRegression``.
        seed: seed of the fold shuffling and of the subsample.
        max_samples: subsample this many rows (stratified by chance) if n is larger; None = all.

    Returns:
        Mean held-out accuracy in [0, 1]; NaN if a class has fewer than 2 examples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).ravel()
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputError(f"probe needs x (n, d) and y (n,); got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    if max_samples is not None and x.shape[0] > max_samples:
        keep = rng.choice(x.shape[0], size=max_samples, replace=False)
        x, y = x[keep], y[keep]
    _, counts = np.unique(y, return_counts=True)
    if counts.size < 2 or counts.min() < 2:
        return float("nan")
    folds = StratifiedKFold(n_splits=int(min(cv, counts.min())), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return float(cross_val_score(model, x, y, cv=folds).mean())


def threshold_probe_accuracy(s: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a one-threshold probe on a score: predict the class whose mean lies on the same
    side of the midpoint of the two class means (no fitting beyond the means).

    Args:
        s: (n,) scores, e.g. projections f(x)ᵀḡ on a concept direction.
        y: (n,) labels 0/1.

    Returns:
        Fraction of correct predictions.
    """
    mid = 0.5 * (s[y == 0].mean() + s[y == 1].mean())
    pred = (s > mid).astype(int)
    if s[y == 1].mean() < s[y == 0].mean():
        pred = 1 - pred
    return float((pred == y).mean())
