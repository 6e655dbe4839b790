"""Within-concept analogies (3CosAdd), the classic word-embedding diagnostic.

For two counterfactual pairs (a, b) and (c, d) of one concept, the analogy a : b :: c : ? is solved
correctly when the candidate token most cosine-similar to γ̂(b) − γ̂(a) + γ̂(c) (γ̂ = unit rows),
excluding a, b and c, is d. Works on any unembedding ``g: (V, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["analogy_accuracy"]


def analogy_accuracy(
    gamma: np.ndarray,
    pairs: Sequence[np.ndarray],
    *,
    candidates: np.ndarray | None = None,
    max_queries: int = 20,
    seed: int = 0,
    batch: int = 128,
) -> list[dict]:
    """Within-concept analogy accuracy (3CosAdd), vectorised over queries.

    For pairs (a, b) and (c, d) of one concept, the query γ̂(b) − γ̂(a) + γ̂(c) (γ̂ = unit rows) is
    correct when its most cosine-similar candidate token, excluding a, b and c, is d.

    Args:
        gamma: (V, d) unembedding (float32 is fine).
        pairs: per concept a (P, 2) array of (base, target) ids (all of them must be candidates).
        candidates: (V,) bool mask of the tokens searched (default all), e.g. the normal
            leading-space word tokens, which is where every answer lies.
        max_queries: ordered pair-of-pairs queries sampled per concept (all if fewer).
        seed: sampling seed.
        batch: queries scored per matrix product.

    Returns:
        Per concept ``{"accuracy", "n_queries"}`` (accuracy NaN with fewer than 2 pairs).
    """
    g = np.asarray(gamma)
    cand = np.arange(g.shape[0]) if candidates is None else np.flatnonzero(candidates)
    gc = np.ascontiguousarray(g[cand], dtype=np.float32)  # (C, d)
    inv = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", gc, gc)), 1e-30)
    gc *= inv[:, None]  # unit rows γ̂
    pos = np.full(g.shape[0], -1, dtype=np.int64)
    pos[cand] = np.arange(cand.size)
    rng = np.random.default_rng(seed)
    queries, owner = [], []
    for j, p in enumerate(pairs):
        P = len(p)
        if P < 2:
            continue
        ii, kk = np.nonzero(~np.eye(P, dtype=bool))
        if ii.size > max_queries:
            pick = rng.choice(ii.size, size=max_queries, replace=False)
            ii, kk = ii[pick], kk[pick]
        # query (a, b, c) = (p_i0, p_i1, p_k0) → expect p_k1
        queries.append(np.stack([p[ii, 0], p[ii, 1], p[kk, 0], p[kk, 1]], axis=1))
        owner.append(np.full(ii.size, j))
    result = [{"accuracy": float("nan"), "n_queries": 0} for _ in pairs]
    if not queries:
        return result
    q = pos[np.concatenate(queries)]  # positions among the candidates
    if (q < 0).any():
        raise ValueError("every analogy token must be a candidate token")
    who = np.concatenate(owner)
    correct = np.zeros(len(q), bool)
    for s in range(0, len(q), batch):
        qb = q[s : s + batch]
        target = gc[qb[:, 1]] - gc[qb[:, 0]] + gc[qb[:, 2]]  # (B, d)
        scores = target @ gc.T  # (B, C): cosine up to a positive per-query factor
        rows = np.arange(len(qb))[:, None]
        scores[rows, qb[:, :3]] = -np.inf
        correct[s : s + batch] = scores.argmax(axis=1) == qb[:, 3]
    for j in range(len(pairs)):
        m = who == j
        if m.any():
            result[j] = {"accuracy": float(correct[m].mean()), "n_queries": int(m.sum())}
    return result
