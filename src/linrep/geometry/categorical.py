"""Categorical concepts as vectors, hierarchy as orthogonality (Park, Choe, Jiang & Veitch 2024).

Park et al. ("The Geometry of Categorical and Hierarchical Concepts in Large Language Models",
arXiv 2406.01506) represent a category w (animal, mammal, …) with token set Y(w) by one vector ℓ_w
in the causal coordinates g(y) = Cov(γ)^{−1/2}(γ(y) − E γ) of the unembedding (``docs/hierarchy.md`` §6.1):

    m_w = mean_{y ∈ Y(w)} g(y),   Σ_w = Ledoit–Wolf covariance of {g(y) : y ∈ Y(w)},
    ĝ_w = Σ_w⁻¹ m_w / ‖Σ_w⁻¹ m_w‖,   ℓ_w = (ĝ_wᵀ m_w) ĝ_w              (estimator ``"lda"``)

or simply ℓ_w = m_w (estimator ``"mean"``). Their hierarchy claim: if Y(z) ⊂ Y(w) then
ℓ_w ⟂ ℓ_z − ℓ_w, and the vectors of a parent's children span a simplex.

Σ_w is scikit-learn's ``ledoit_wolf`` estimate (biased empirical covariance S = X_cᵀX_c / n shrunk
to μI, μ = tr S / d, with sklearn's shrinkage formula). We evaluate it in *Gram form*: the
shrinkage needs only ‖x_k‖⁴ and ‖X_c X_cᵀ‖_F², and with a = δμ, b = (1 − δ)/n,
Σ_w = aI + b X_cᵀX_c, so by Woodbury

    Σ_w⁻¹ m = (m − X_cᵀ (a/b · I + X_c X_cᵀ)⁻¹ X_c m) / a,

an n × n solve instead of d × d (n words ≪ d = 640 on Gemma). When n > d the d × d system is
solved directly. Both are exact rewrites (tests compare with ``sklearn.covariance.LedoitWolf``).
Everything is batched over leading axes, so a null of B random categories is one call on
``(B, n, d)``.

Shapes: category tokens ``X: (..., n, d)`` in causal coordinates; vectors ``ℓ: (..., d)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "ledoit_wolf_shrinkage",
    "lda_direction",
    "category_vectors",
    "subspace_coordinates",
    "edge_cosines",
    "sibling_cosines",
    "simplex_singular_values",
]

Estimator = Literal["lda", "mean"]
ESTIMATORS: tuple[str, ...] = ("lda", "mean")
MIN_WORDS = 2  # the Ledoit–Wolf covariance needs two samples


def _check(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or X.shape[-2] < MIN_WORDS:
        raise InputError(
            f"a category vector needs ≥ {MIN_WORDS} token vectors (..., n, d); got shape {X.shape}"
        )
    return X


def ledoit_wolf_shrinkage(
    Xc: np.ndarray, gram: np.ndarray | None = None, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's Ledoit–Wolf shrinkage δ and target scale μ, from the Gram matrix.

    With centred rows x_k (k = 1..n) in d dimensions, S = X_cᵀX_c / n, μ = tr S / d:
    β̃ = Σ_k ‖x_k‖⁴,  δ̃ = ‖X_c X_cᵀ‖_F² / n²,  β = (β̃/n − δ̃) / (d n),  Δ = (δ̃ − d μ²) / d,
    δ = min(β, Δ) / Δ (0 when β = 0) — sklearn's formula, with its d × d sums rewritten as n × n.

    Args:
        Xc: (..., n, d) centred rows.
        gram: (..., n, n) X_c X_cᵀ if already computed.
        dim: the ambient dimension d when ``Xc`` holds coordinates in an orthonormal basis of a
            subspace containing the rows (default ``Xc.shape[-1]``).

    Returns:
        (δ (...,), μ (...,)) float64.
    """
    n = Xc.shape[-2]
    d = Xc.shape[-1] if dim is None else dim
    K = Xc @ np.swapaxes(Xc, -1, -2) if gram is None else gram
    sq = np.diagonal(K, axis1=-2, axis2=-1)  # (..., n) ‖x_k‖²
    mu = sq.sum(axis=-1) / (n * d)
    big_delta = np.einsum("...ij,...ij->...", K, K) / n**2
    beta = (np.sum(sq * sq, axis=-1) / n - big_delta) / (d * n)
    delta = (big_delta - d * mu**2) / d
    beta = np.minimum(beta, delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(beta == 0, 0.0, beta / np.where(delta == 0, 1.0, delta))
    return shrink, mu


def lda_direction(X: np.ndarray, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ĝ_w = Σ_w⁻¹ m_w / ‖Σ_w⁻¹ m_w‖ with the Ledoit–Wolf Σ_w, and the mean m_w.

    Args:
        X: (..., n, r) token vectors of the category (n ≥ 2).
        dim: ambient dimension d ≥ r when X holds coordinates in an orthonormal basis of a subspace
            containing every row (see :func:`subspace_coordinates`); Σ_w maps that subspace to
            itself, so Σ_w⁻¹m_w computed there is exact. Default: r.

    Returns:
        (ĝ (..., r) unit, m (..., r)).
    """
    X = _check(X)
    n, d = X.shape[-2:]
    m = X.mean(axis=-2)
    Xc = X - m[..., None, :]
    K = Xc @ np.swapaxes(Xc, -1, -2) if n <= d else None
    shrink, mu = ledoit_wolf_shrinkage(Xc, K, dim)
    a, b = shrink * mu, (1.0 - shrink) / n
    if K is not None and np.all(a > 0):
        v = _woodbury_solve(Xc, K, m, a, b)
    else:
        S = np.swapaxes(Xc, -1, -2) @ Xc
        Sigma = b[..., None, None] * S + a[..., None, None] * np.eye(d)
        v = _solve(Sigma, m)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-300), m


def _woodbury_solve(
    Xc: np.ndarray, K: np.ndarray, m: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """(aI + b X_cᵀX_c)⁻¹ m through the n × n system (a/b · I + K) z = X_c m, K = X_c X_cᵀ."""
    n = Xc.shape[-2]
    out = m / a[..., None]
    full = b > 0  # b = 0 ⇔ δ = 1: Σ = μI, nothing to correct
    if np.any(full):
        ratio = np.where(full, a / np.where(full, b, 1.0), 1.0)
        K = K + ratio[..., None, None] * np.eye(n)
        z = np.linalg.solve(K, (Xc @ m[..., None]))[..., 0]
        corr = (np.swapaxes(Xc, -1, -2) @ z[..., None])[..., 0] / a[..., None]
        out = out - np.where(full[..., None], corr, 0.0)
    return out


def _solve(A: np.ndarray, m: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(A, m[..., None])[..., 0]
    except np.linalg.LinAlgError:  # δ = 0 with n ≤ d: the covariance is singular; use Σ⁺
        return (np.linalg.pinv(A, hermitian=True) @ m[..., None])[..., 0]


def category_vectors(
    X: np.ndarray, estimator: Estimator = "lda", dim: int | None = None
) -> np.ndarray:
    """Vector representations ℓ_w of categories.

    Args:
        X: (..., n, d) each category's token vectors in causal coordinates (n ≥ 2).
        estimator: ``"lda"`` — ℓ = (ĝᵀm) ĝ with ĝ the normalised Ledoit–Wolf Σ⁻¹m (Park et al.);
            ``"mean"`` — ℓ = m.
        dim: ambient dimension when X holds subspace coordinates (see :func:`lda_direction`).

    Returns:
        (..., d) float64.
    """
    if estimator == "mean":
        return _check(X).mean(axis=-2)
    if estimator != "lda":
        raise InputError(f"unknown category estimator {estimator!r}; use one of {ESTIMATORS}")
    ghat, m = lda_direction(X, dim)
    return np.sum(ghat * m, axis=-1, keepdims=True) * ghat


def subspace_coordinates(X: np.ndarray) -> np.ndarray:
    """Coordinates of the rows of X in an orthonormal basis of their span: (n, d) → (n, min(n, d)).

    Inner products between rows (hence every cosine and, with ``dim=d``, every category vector of
    a subset of these rows) are unchanged; work on subsets of n ≪ d rows shrinks by d / n.
    """
    U, s, _ = np.linalg.svd(np.asarray(X, dtype=np.float64), full_matrices=False)
    return U * s


def _cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(u * v, axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def edge_cosines(l_parent: np.ndarray, l_child: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two statistics of a parent → child edge.

    Args:
        l_parent: (..., d) ℓ_parent. l_child: (..., d) ℓ_child (broadcasting).

    Returns:
        (cos(ℓ_parent, ℓ_child − ℓ_parent) (...,), cos(ℓ_parent, ℓ_child) (...,)).
    """
    return _cos(l_parent, l_child - l_parent), _cos(l_parent, l_child)


def sibling_cosines(l_parent: np.ndarray, l_children: np.ndarray) -> np.ndarray:
    """cos(ℓ_parent, ℓ_ci − ℓ_cj) for every pair of a parent's children i < j.

    Args:
        l_parent: (..., d). l_children: (..., k, d).

    Returns:
        (..., k(k−1)/2) in row-major upper-triangle order.
    """
    k = l_children.shape[-2]
    i, j = np.triu_indices(k, 1)
    diff = l_children[..., i, :] - l_children[..., j, :]
    return _cos(l_parent[..., None, :], diff)


def simplex_singular_values(l_children: np.ndarray) -> np.ndarray:
    """Singular values of the edge matrix [ℓ_c2 − ℓ_c1, …, ℓ_ck − ℓ_c1], descending.

    The k vectors are affinely independent (span a (k−1)-simplex) iff the smallest is > 0. In
    d ≫ k dimensions almost any k vectors are, so compare σ_min / σ_max with a null.

    Args:
        l_children: (..., k, d), k ≥ 2.

    Returns:
        (..., k − 1).
    """
    L = np.asarray(l_children, dtype=np.float64)
    if L.shape[-2] < 2:
        raise InputError("a simplex needs ≥ 2 vertices (children)")
    return np.linalg.svd(L[..., 1:, :] - L[..., :1, :], compute_uv=False)
