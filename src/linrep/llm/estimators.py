"""Direction estimators: one interface, four ways to turn labelled representations into a direction.

Each estimator is a small scikit-learn-style object: ``fit(X, y, pairs=None)`` → self, with the unit
vector ``direction_`` ``(d,)`` afterwards. ``X: (n, d)`` are representations (unembedding rows γ(y)
of base and target words, or hidden states λ(x) of base- and target-side contexts), ``y: (n,)`` is 0
for the base side and 1 for the target side, and ``pairs: (P, 2)`` optionally names the rows of each
counterfactual pair (base row, target row). Every direction points from base to target
(direction_ · (μ₁ − μ₀) ≥ 0).

* :class:`MeanDifference` (default, Park et al.): unit(μ₁ − μ₀); with pairs this is the unit mean of
  the Δ_k.
* :class:`ShrunkLDA`: Fisher's discriminant Σ_w⁻¹(μ₁ − μ₀) with the Ledoit–Wolf shrunk within-class
  covariance (scikit-learn ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``).
* :class:`LogisticProbe`: the weight vector of an L2-regularised logistic regression.
* :class:`FirstPrincipalDifference`: the top eigenvector of the second moment of the differences,
  E[(x₁ − x₀)(x₁ − x₀)ᵀ] — over the given pairs, or (no pairs) over all base/target combinations,
  where it equals Σ₁ + Σ₀ + (μ₁ − μ₀)(μ₁ − μ₀)ᵀ in closed form.

LDA and the logistic probe return the normal of a separating hyperplane (a linear read-out), the
other two a displacement; all are reported as unit vectors in the coordinates they were fitted in.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = [
    "DirectionEstimator",
    "MeanDifference",
    "ShrunkLDA",
    "LogisticProbe",
    "FirstPrincipalDifference",
    "ESTIMATORS",
    "get_estimator",
]


def _unit_toward(v: np.ndarray, delta: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not n > 0:
        return np.zeros_like(v)
    v = v / n
    return -v if float(v @ delta) < 0 else v


def _check(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int).ravel()
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise InputError(f"an estimator needs X (n, d) and y (n,), got {X.shape} and {y.shape}")
    counts = np.bincount(y, minlength=2)
    if y.min(initial=0) < 0 or y.max(initial=0) > 1 or counts[0] < 1 or counts[1] < 1:
        raise InputError("an estimator needs labels 0 (base) and 1 (target), at least one of each")
    return X, y


class DirectionEstimator:
    """Base class. Subclasses implement ``_fit(X, y, pairs) -> (d,)`` (any scale and sign)."""

    name = "base"

    def fit(self, X: np.ndarray, y: np.ndarray, pairs: np.ndarray | None = None):
        """Fit on ``X: (n, d)``, ``y: (n,)`` ∈ {0, 1}, optional ``pairs: (P, 2)`` row indices."""
        X, y = _check(X, y)
        delta = X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)
        self.direction_ = _unit_toward(self._fit(X, y, pairs), delta)
        self.n_features_in_ = X.shape[1]
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, pairs: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


class MeanDifference(DirectionEstimator):
    """unit(μ₁ − μ₀): Park et al.'s concept direction (the unit mean Δ for paired rows)."""

    name = "mean"

    def _fit(self, X, y, pairs):
        if pairs is not None:
            p = np.asarray(pairs)
            return (X[p[:, 1]] - X[p[:, 0]]).mean(axis=0)
        return X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)


class ShrunkLDA(DirectionEstimator):
    """Σ_w⁻¹(μ₁ − μ₀) with the Ledoit–Wolf shrunk within-class covariance (scikit-learn)."""

    name = "lda"

    def _fit(self, X, y, pairs):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
        return np.asarray(lda.coef_, dtype=np.float64).ravel()


class LogisticProbe(DirectionEstimator):
    """Weights of an L2 logistic regression on standardised-by-scale inputs.

    Args:
        C: inverse regularisation strength (scikit-learn's ``C``).
    """

    name = "logistic"

    def __init__(self, C: float = 1.0):
        self.C = C

    def _fit(self, X, y, pairs):
        from sklearn.linear_model import LogisticRegression

        scale = float(np.sqrt((X**2).sum(axis=1).mean())) or 1.0
        clf = LogisticRegression(C=self.C, max_iter=2000).fit(X / scale, y)
        return np.asarray(clf.coef_, dtype=np.float64).ravel()


class FirstPrincipalDifference(DirectionEstimator):
    """Top eigenvector of E[(x₁ − x₀)(x₁ − x₀)ᵀ] over the pairs (or all base/target combinations)."""

    name = "pca"

    def _fit(self, X, y, pairs):
        if pairs is not None:
            p = np.asarray(pairs)
            D = X[p[:, 1]] - X[p[:, 0]]
            second = D.T @ D / D.shape[0]
        else:
            X0, X1 = X[y == 0], X[y == 1]
            delta = X1.mean(axis=0) - X0.mean(axis=0)
            second = np.cov(X1, rowvar=False, bias=True) + np.cov(X0, rowvar=False, bias=True)
            second = np.atleast_2d(second) + np.outer(delta, delta)
        _, vecs = np.linalg.eigh(second)
        return vecs[:, -1]


#: Estimator names accepted by ``estimator=`` (config key ``llm.estimator``).
ESTIMATORS: dict[str, type[DirectionEstimator]] = {
    cls.name: cls for cls in (MeanDifference, ShrunkLDA, LogisticProbe, FirstPrincipalDifference)
}


def get_estimator(spec: str | DirectionEstimator) -> DirectionEstimator:
    """An estimator by name (``mean``, ``lda``, ``logistic``, ``pca``) or the object itself."""
    if isinstance(spec, DirectionEstimator):
        return spec
    if spec not in ESTIMATORS:
        from ..errors import did_you_mean

        raise InputError(f"unknown estimator '{spec}'{did_you_mean(str(spec), ESTIMATORS)}")
    return ESTIMATORS[spec]()
