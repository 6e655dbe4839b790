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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import geometry as geo
from .records import Record

__all__ = [
    "intervention_effects",
    "embedding_vector",
    "topk_table",
    "word_probabilities",
    "context_interventions",
    "InterventionSide",
    "InterventionConcept",
    "TopKTable",
    "TopKRow",
    "WordProbabilities",
]


@dataclass(frozen=True)
class InterventionConcept(Record):
    """Log-odds change per unit α: own pairs (leave-one-out) vs mean |change| of other concepts."""

    on_target: float
    off_target: float
    ratio: float | None


@dataclass(frozen=True)
class TopKRow(Record):
    """Top-k next tokens of one context at one α."""

    alpha: float
    tokens: tuple[str, ...]
    probs: tuple[float, ...]


@dataclass(frozen=True)
class TopKTable(Record):
    """Top-k next tokens of one context as α grows."""

    context: str
    rows: tuple[TopKRow, ...]


@dataclass(frozen=True)
class WordProbabilities(Record):
    """Base-side contexts: the counterpart target word vs the base word as α grows (one per α)."""

    n_contexts: int
    mean_log_odds_change: tuple[float, ...]
    mean_p_base: tuple[float, ...]
    mean_p_target: tuple[float, ...]
    frac_target_over_base: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class InterventionSide(Record):
    """The final-layer intervention of every concept's direction.

    Attributes:
        inner_product: whose direction is added. scale: s, the length of a unit-α step.
        units: what one unit of α means. alphas: the α grid of the context tables.
        matrix: ``(k, k)`` [W, W'] = s · mean_k ⟨ḡ'_W, Δg'_k⟩ over W' pairs (diagonal LOO).
        per_concept: concept → :class:`InterventionConcept`.
        topk, word_probabilities: concept → context tables (when contexts were given).
    """

    inner_product: str
    scale: float
    units: str
    alphas: tuple[float, ...]
    matrix: np.ndarray
    per_concept: Mapping[str, InterventionConcept]
    topk: Mapping[str, TopKTable] = field(default_factory=dict)
    word_probabilities: Mapping[str, WordProbabilities] = field(default_factory=dict)


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
) -> tuple[np.ndarray, dict[str, InterventionConcept]]:
    """On-target vs off-target log-odds change per unit α for every concept's direction.

    Args:
        deltas: per concept the (P_j, d) steering vectors Δg' in the inner product's coordinates.
        directions: (k, d) unit concept directions ḡ' in the same coordinates.
        names: the k concept names.
        scale: s, the length of a unit-α step (mean ‖f'(x)‖, or 1).

    Returns:
        ``(matrix, per_concept)``: matrix ``(k, k)`` with [W, W'] = s · mean_k ⟨ḡ'_W, Δg'_k⟩ over
        the pairs of W' (diagonal: leave-one-out), and per concept the on-target change, the
        off-target mean |·| of the off-diagonal row and their ratio.
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
        n: InterventionConcept(
            float(loo[i]),
            float(off_mean[i]),
            float(loo[i] / off_mean[i]) if off_mean[i] > 0 else None,
        )
        for i, n in enumerate(names)
    }
    return M, per


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
) -> tuple[TopKRow, ...]:
    """Top-k next tokens of one context as α grows.

    Args:
        f: (d,) final hidden state of the context. gamma: (V, d). v: (d,) raw-coordinate step.
        alphas: the α grid. display: token id → text. normal: (V,) mask of allowed tokens.
        k: tokens per row.

    Returns:
        One :class:`TopKRow` per α.
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
            TopKRow(
                float(a),
                tuple(display(int(t)) for t in top),
                tuple(float(np.exp(logits[t] - lz)) for t in top),
            )
        )
    return tuple(rows)


def _word_probability_summary(lp: np.ndarray) -> WordProbabilities:
    """From log-probabilities ``(A, n, 2)`` (base, target) of n contexts at A values of α."""
    change = lp[:, :, 1] - lp[:, :, 0] - (lp[0, :, 1] - lp[0, :, 0])
    return WordProbabilities(
        n_contexts=int(lp.shape[1]),
        mean_log_odds_change=tuple(float(x) for x in change.mean(axis=1)),
        mean_p_base=tuple(float(x) for x in np.exp(lp[:, :, 0]).mean(axis=1)),
        mean_p_target=tuple(float(x) for x in np.exp(lp[:, :, 1]).mean(axis=1)),
        frac_target_over_base=tuple(float(x) for x in (lp[:, :, 1] > lp[:, :, 0]).mean(axis=1)),
    )


def context_interventions(
    F: np.ndarray,
    labels: np.ndarray,
    words: Sequence[str],
    texts: Sequence[str],
    counterpart: Mapping[str, str],
    token_id: Callable[[str], int | None],
    gamma: np.ndarray,
    v: np.ndarray,
    alphas: Sequence[float],
    display: Callable[[int], str],
    normal: np.ndarray,
    k: int = 5,
) -> tuple[TopKTable, WordProbabilities | None]:
    """Top-k table of the first base context, and p(target word) vs p(base word) as α grows.

    Args:
        F: ``(n, d)`` final hidden states of the concept's contexts; labels ``(n,)``; words and
            texts: each context's next word and text.
        counterpart: base word → target word (the concept's kept pairs).
        token_id: word → its single token id (or None).
        gamma: ``(V, d)``. v: ``(d,)`` raw step per unit α. alphas: the α grid.
        display: token id → text. normal: ``(V,)`` tokens the softmax runs over. k: tokens per row.
    """
    base_rows = np.flatnonzero(np.asarray(labels) == 0)
    first = int(base_rows[0])
    table = TopKTable(texts[first], topk_table(F[first], gamma, v, alphas, display, normal, k=k))
    rows, toks = [], []
    for i in base_rows:
        target = counterpart.get(words[i])
        ib, it = token_id(words[i]), token_id(target) if target else None
        if ib is not None and it is not None:
            rows.append(i)
            toks.append((ib, it))
    if not rows:
        return table, None
    lp = word_probabilities(F[rows], gamma, v, alphas, np.asarray(toks), normal)
    return table, _word_probability_summary(lp)
