"""Intervention: add α·(concept direction, mapped to the embedding side) to the final hidden state.

In the coordinates of an inner product (from :mod:`linrep.geometry`) the logits are dot products,
logit(y | x) = f'(x)ᵀ g'(y), with f' = f M^{−1/2} and g' = g M^{1/2}. Park et al.'s intervention adds
a multiple of the unembedding direction ḡ'_W to f'(x); in raw coordinates that is
f ↦ f + α·s·ḡ'_W M^{1/2}. Since the log-odds of a pair (y0, y1) are f'ᵀ(g'(y1) − g'(y0)), the change is
**exact and context-free**:

    Δ log-odds_k(α) = α · s · ⟨ḡ'_W, Δg'_k⟩,

so concept W's own pairs should move (on-target: the mean of ⟨ḡ'_{W,−k}, Δg'_k⟩, leave-one-out so the
pair is not part of its own direction) while other concepts' pairs stay put (off-target: the mean
of |mean_k ⟨ḡ'_W, Δg'_k⟩| over the pairs of each other concept W'). The scale s is the mean norm
‖f'(x)‖ of the model's context representations (so α is a fraction of a typical λ(x); 1 without
contexts). Probabilities are context-dependent: :func:`topk_table` shows the top tokens of real
contexts as α grows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import geometry as geo

__all__ = ["intervention_effects", "embedding_vector", "topk_table", "word_probabilities"]


def embedding_vector(direction: np.ndarray, ip: geo.InnerProduct) -> np.ndarray:
    """The raw-coordinate embedding-side vector v with f'·ḡ' shift: f ↦ f + v moves f' by ḡ'.

    f' = f M^{−1/2}, so moving f' by u means moving f by u M^{1/2} (``ip.transform_vectors``).

    Args:
        direction: (..., d) directions in the inner product's coordinates.
        ip: the fitted inner product.

    Returns:
        (..., d) float64 raw-coordinate vectors.
    """
    return ip.transform_vectors(direction)


def intervention_effects(
    deltas: Sequence[np.ndarray], directions: np.ndarray, names: Sequence[str], scale: float = 1.0
) -> dict:
    """On-target vs off-target log-odds change per unit α for every concept's direction.

    Args:
        deltas: per concept the (P_j, d) steering vectors Δg' in the inner product's coordinates.
        directions: (k, d) unit concept directions ḡ' in the same coordinates.
        names: the k concept names.
        scale: s, the length of a unit-α step (mean ‖f'(x)‖, or 1).

    Returns:
        ``matrix`` (k, k): entry [W, W'] = s · mean_k ⟨ḡ'_W, Δg'_k⟩ over the pairs of W' (diagonal:
        leave-one-out), ``on_target`` / ``off_target`` (mean |·| of the off-diagonal row) /
        ``ratio`` per concept, and ``scale``.
    """
    D = geo.unit(np.asarray(directions, dtype=np.float64))
    means = np.stack([np.asarray(d).mean(axis=0) for d in deltas])  # (k, d)
    M = scale * (D @ means.T)  # [W, W'] = s ⟨ḡ_W, mean Δ of W'⟩
    loo = np.array([scale * geo.loo_projections(d).mean() for d in deltas])
    np.fill_diagonal(M, loo)
    k = len(names)
    off = np.abs(M[~np.eye(k, dtype=bool)].reshape(k, k - 1)) if k > 1 else np.zeros((k, 0))
    off_mean = off.mean(axis=1) if k > 1 else np.full(k, np.nan)
    per = {
        n: {
            "on_target": float(loo[i]),
            "off_target": float(off_mean[i]),
            "ratio": float(loo[i] / off_mean[i]) if off_mean[i] > 0 else None,
        }
        for i, n in enumerate(names)
    }
    return {"scale": float(scale), "per_concept": per, "matrix": M.tolist()}


def word_probabilities(
    f: np.ndarray,
    gamma: np.ndarray,
    v: np.ndarray,
    alphas: Sequence[float],
    tokens: np.ndarray,
    normal: np.ndarray,
) -> np.ndarray:
    """log p(token | x) after f ↦ f + α v, for several α (softmax over normal tokens).

    Logits are computed in γ's dtype (float32 for real models: no float64 copy of γ).

    Args:
        f: (n, d) final hidden states. gamma: (V, d). v: (d,) raw-coordinate step. alphas: (A,).
        tokens: (n, T) token ids whose log-probabilities are returned.
        normal: (V,) bool mask of the tokens the softmax runs over.

    Returns:
        (A, n, T) float64 log-probabilities.
    """
    from scipy.special import logsumexp

    g = np.asarray(gamma)
    base = (np.asarray(f).astype(g.dtype) @ g.T).astype(np.float64)  # (n, V)
    step = (g @ np.asarray(v).astype(g.dtype)).astype(np.float64)  # (V,)
    out = np.empty((len(alphas), base.shape[0], tokens.shape[1]))
    for a_i, a in enumerate(alphas):
        logits = base + a * step[None, :]
        logits[:, ~normal] = -np.inf
        lz = logsumexp(logits, axis=1, keepdims=True)
        out[a_i] = np.take_along_axis(logits, tokens, axis=1) - lz
    return out


def topk_table(
    f: np.ndarray,
    gamma: np.ndarray,
    v: np.ndarray,
    alphas: Sequence[float],
    display,
    normal: np.ndarray,
    k: int = 5,
) -> list[dict]:
    """Top-k next tokens of one context as α grows.

    Args:
        f: (d,) final hidden state of the context. gamma: (V, d). v: (d,) raw-coordinate step.
        alphas: the α grid. display: token id → text. normal: (V,) mask of allowed tokens.
        k: tokens per row.

    Returns:
        One dict per α: ``{"alpha", "tokens": [..k..], "probs": [..k..]}``.
    """
    g = np.asarray(gamma)
    base = (g @ f.astype(g.dtype)).astype(np.float64)
    step = (g @ v.astype(g.dtype)).astype(np.float64)
    rows = []
    for a in alphas:
        logits = base + a * step
        logits[~normal] = -np.inf
        top = np.argpartition(-logits, k)[:k]
        top = top[np.argsort(-logits[top])]
        m = logits.max()
        lz = m + np.log(np.exp(logits - m).sum())
        rows.append(
            {
                "alpha": float(a),
                "tokens": [display(int(t)) for t in top],
                "probs": [float(np.exp(logits[t] - lz)) for t in top],
            }
        )
    return rows
