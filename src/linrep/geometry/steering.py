"""Steering vectors, concept directions and the cosine statistics built on them.

Notation (``docs/latent-model.md`` §1, ``docs/real-models.md`` §5): a counterfactual pair (y0, y1) of concept W differs only in W;
its steering vector is Δg = g(y1) − g(y0) (Park et al.: γ(y1) − γ(y0)); the concept direction
ḡ_W is the unit-normalised mean of the Δg over the pairs of W. Cosines are taken in whatever
coordinates the vectors are given in; map them first with an :class:`~linrep.geometry.InnerProduct`
(or pass ``inner=``) to use the causal or a random inner product.

All functions are vectorised over pairs and accept leading batch axes where stated (e.g. K trained
runs at once: ``deltas: (K, P, d)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from .inner import InnerProduct

__all__ = [
    "ConceptDirection",
    "check_pairs",
    "steering_vectors",
    "unit",
    "concept_direction",
    "concept_directions",
    "cosine",
    "cosine_matrix",
    "pairwise_cosines",
    "same_concept_cosine",
    "cross_concept_cosines",
    "mean_abs_offdiag",
    "loo_cosines",
    "loo_projections",
    "block_structure",
    "block_means",
]

_EPS = 1e-300


def check_pairs(pairs: np.ndarray, vocab: int | None = None) -> np.ndarray:
    """Validate token pairs: an integer array (P, 2) of (base y0, target y1) within the vocabulary.

    Returns:
        (P, 2) int64.
    """
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"pairs must have shape (P, 2) as (base y0, target y1), got {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise InputError(f"pairs must be integer token ids, got dtype {p.dtype}")
    p = p.astype(np.int64, copy=False)
    if vocab is not None and p.size and (p.min() < 0 or p.max() >= vocab):
        raise InputError(
            f"pair token ids must lie in [0, {vocab}); got {p.min()}..{p.max()}: check the pairs"
        )
    return p


def steering_vectors(
    g: np.ndarray, pairs: np.ndarray, inner: InnerProduct | None = None
) -> np.ndarray:
    """Δg = g(y1) − g(y0) for each pair, in float64 (only the needed rows of ``g`` are read).

    Args:
        g: (..., V, d) unembedding (float32/float64; leading batch axes allowed).
        pairs: (P, 2) token ids (y0, y1).
        inner: optional fitted inner product; the result is mapped by ``inner.transform_vectors``.

    Returns:
        (..., P, d) float64.
    """
    g = np.asarray(g)
    p = check_pairs(pairs, g.shape[-2])
    d = g[..., p[:, 1], :].astype(np.float64) - g[..., p[:, 0], :]
    return inner.transform_vectors(d) if inner is not None else d


def unit(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """v / ‖v‖ along ``axis`` (zero vectors stay zero), float64."""
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.maximum(n, _EPS)


def concept_direction(deltas: np.ndarray) -> np.ndarray:
    """Unit-normalised mean steering vector ḡ = mean_k Δg_k / ‖mean_k Δg_k‖.

    Args:
        deltas: (..., P, d).

    Returns:
        (..., d) float64.
    """
    return unit(np.asarray(deltas, dtype=np.float64).mean(axis=-2))


def concept_directions(
    g: np.ndarray, pairs: Sequence[np.ndarray], inner: InnerProduct | None = None
) -> np.ndarray:
    """Concept directions of several concepts, one per pair list.

    Args:
        g: (..., V, d) unembedding.
        pairs: k arrays (P_j, 2).
        inner: optional fitted inner product (directions are in its coordinates).

    Returns:
        (..., k, d) float64 unit vectors.
    """
    dirs = [concept_direction(steering_vectors(g, p, inner)) for p in pairs]
    return np.stack(dirs, axis=-2)


class ConceptDirection:
    """Estimator of one concept's direction from its word/token pairs (sklearn style).

    ``ConceptDirection(inner=ip).fit(g, pairs)`` computes the steering vectors in the coordinates of
    ``inner`` and their unit mean.

    Args:
        inner: a fitted inner product (None = Euclidean).

    Attributes (after ``fit``):
        deltas_: (P, d) steering vectors. direction_: (d,) unit mean. n_pairs_: P.
        loo_cosines_: (P,) leave-one-out cosines (NaN if P < 2).
        same_concept_cosine_: mean pairwise cosine (NaN if P < 2).
    """

    def __init__(self, inner: InnerProduct | None = None):
        self.inner = inner

    def fit(self, g: np.ndarray, pairs: np.ndarray) -> ConceptDirection:
        """Fit on an unembedding ``g: (V, d)`` and pairs ``(P, 2)`` (y0, y1); returns self."""
        self.deltas_ = steering_vectors(g, pairs, self.inner)
        self.n_pairs_ = int(self.deltas_.shape[0])
        if self.n_pairs_ == 0:
            raise InputError("a concept direction needs at least one pair; got none")
        self.direction_ = concept_direction(self.deltas_)
        many = self.n_pairs_ > 1
        self.loo_cosines_ = loo_cosines(self.deltas_) if many else np.full(1, np.nan)
        self.same_concept_cosine_ = float(same_concept_cosine(self.deltas_)) if many else np.nan
        return self

    def transform(self, v: np.ndarray) -> np.ndarray:
        """Projections vᵀ ḡ of unembedding-side vectors (mapped by ``inner`` first), (...,)."""
        v = np.asarray(v, dtype=np.float64)
        if self.inner is not None:
            v = self.inner.transform_vectors(v)
        return v @ self.direction_


def cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine along the last axis (broadcasting), (...,); NaN for a zero vector."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    den = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(u * v, axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """All cosines between the rows of ``a`` and ``b`` (default b = a).

    Args:
        a: (..., p, d). b: (..., q, d).

    Returns:
        (..., p, q) float64.
    """
    ua = unit(a)
    ub = ua if b is None else unit(b)
    return ua @ np.swapaxes(ub, -1, -2)


def pairwise_cosines(deltas: np.ndarray) -> np.ndarray:
    """Cosines cos(Δ_k, Δ_l) over all unordered pairs k < l (the same-concept distribution).

    Args:
        deltas: (..., P, d).

    Returns:
        (..., P(P−1)/2) float64 in row-major upper-triangle order.
    """
    c = cosine_matrix(deltas)
    iu = np.triu_indices(c.shape[-1], k=1)
    return c[..., iu[0], iu[1]]


def same_concept_cosine(deltas: np.ndarray) -> np.ndarray:
    """Same-concept parallelism: the mean pairwise cosine of a concept's steering vectors.

    Computed without the P × P matrix: Σ_{k≠l} û_kᵀû_l = ‖Σ_k û_k‖² − P, so it scales to many pairs.

    Args:
        deltas: (..., P, d) with P ≥ 2.

    Returns:
        (...) float64.
    """
    u = unit(deltas)
    P = u.shape[-2]
    if P < 2:
        raise InputError(f"same-concept cosine needs ≥ 2 steering vectors, got {P}")
    s = u.sum(axis=-2)
    return (np.sum(s * s, axis=-1) - P) / (P * (P - 1))


def cross_concept_cosines(deltas: Sequence[np.ndarray]) -> np.ndarray:
    """Cosines between steering vectors of *different* concepts (the cross-concept distribution).

    Args:
        deltas: k arrays (..., P_j, d).

    Returns:
        (..., N) with N = Σ_{i<j} P_i P_j, ordered by concept pair (i < j), then pair indices.
    """
    us = [unit(d) for d in deltas]
    out = []
    for i in range(len(us)):
        for j in range(i + 1, len(us)):
            c = us[i] @ np.swapaxes(us[j], -1, -2)
            out.append(c.reshape(*c.shape[:-2], -1))
    if not out:
        raise InputError("cross-concept cosines need at least 2 concepts")
    return np.concatenate(out, axis=-1)


def mean_abs_offdiag(c: np.ndarray) -> np.ndarray:
    """Mean |C_ij| over i ≠ j of square matrices, (...,)."""
    c = np.asarray(c, dtype=np.float64)
    k = c.shape[-1]
    if k < 2:
        return np.full(c.shape[:-2], np.nan)
    off = ~np.eye(k, dtype=bool)
    return np.abs(c[..., off]).mean(axis=-1)


def _leave_one_out(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Δ as float64, Σ_{l≠k} Δ_l for every k), both (..., P, d); the sum is ∝ the others' mean."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.shape[-2] < 2:
        raise InputError(f"leave-one-out needs ≥ 2 pairs, got {d.shape[-2]}")
    return d, d.sum(axis=-2, keepdims=True) - d


def loo_cosines(deltas: np.ndarray) -> np.ndarray:
    """Leave-one-out cosines cos(Δ_k, mean_{l≠k} Δ_l) for each pair k (Park et al.'s LOO test).

    Args:
        deltas: (..., P, d) with P ≥ 2.

    Returns:
        (..., P) float64.
    """
    d, others = _leave_one_out(deltas)
    return cosine(d, others)


def loo_projections(deltas: np.ndarray) -> np.ndarray:
    """Leave-one-out projections Δ_kᵀ ū_{−k}, ū_{−k} the unit mean of the other pairs' Δ.

    This is the statistic Park et al. compare with random token pairs.

    Args:
        deltas: (..., P, d) with P ≥ 2.

    Returns:
        (..., P) float64.
    """
    d, others = _leave_one_out(deltas)
    return np.sum(d * unit(others), axis=-1)


def _group_masks(groups: Sequence[object], k: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(list(groups), dtype=object)
    if g.size != k:
        raise InputError(f"block structure needs one group label per concept: {g.size} for k = {k}")
    same = g[:, None] == g[None, :]
    off = ~np.eye(k, dtype=bool)
    return same & off, ~same


def block_means(c: np.ndarray, groups: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Mean |C_ij| over related pairs (same group, i ≠ j) and over unrelated pairs (different groups).

    Args:
        c: (..., k, k) cosine matrices (leading axes, e.g. null draws, allowed).
        groups: k group labels.

    Returns:
        (within (...), between (...)); NaN where a block is empty.
    """
    c = np.abs(np.asarray(c, dtype=np.float64))
    within, between = _group_masks(groups, c.shape[-1])

    def mean(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.full(c.shape[:-2], np.nan)
        return c[..., mask].mean(axis=-1)

    return mean(within), mean(between)


def block_structure(c: np.ndarray, groups: Sequence[object]) -> dict[str, float]:
    """Block structure of a concept cosine matrix: related concepts (same group) vs unrelated ones.

    Args:
        c: (k, k) cosine matrix.
        groups: k group labels (e.g. "verb", "language", "semantic").

    Returns:
        ``within_abs_cosine`` (mean |C_ij| over i ≠ j in the same group), ``between_abs_cosine``
        (different groups), their ``ratio``, and the numbers of entries ``n_within``/``n_between``.
    """
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise InputError(f"block_structure needs a (k, k) matrix and k groups; got {c.shape}")
    within, between = (float(v) for v in block_means(c, groups))
    w_mask, b_mask = _group_masks(groups, c.shape[0])
    return {
        "within_abs_cosine": within,
        "between_abs_cosine": between,
        "ratio": within / between if b_mask.any() and between > 0 else float("nan"),
        "n_within": int(w_mask.sum()),
        "n_between": int(b_mask.sum()),
    }
