"""Contexts: partial assignments ξ ∈ {0,1,⋄}^m, stored as int8 arrays with −1 for ⋄.

Enumeration order of :func:`all_contexts`: context index k ↔ base-3 digits of k, digit i of k being
0 → ⋄, 1 → C_i = 0, 2 → C_i = 1 (so context 0 is "nothing known").
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = [
    "UNKNOWN",
    "all_contexts",
    "filter_by_known",
    "sample_contexts",
    "encode",
    "context_weights",
]

UNKNOWN = -1  # the ⋄ of the paper


def all_contexts(m: int) -> np.ndarray:
    """All 3^m partial assignments, (3^m, m) int8 with −1 for ⋄."""
    k = np.arange(3**m, dtype=np.int64)
    digits = (k[:, None] // (3 ** np.arange(m, dtype=np.int64))) % 3
    return (digits - 1).astype(np.int8)


def filter_by_known(contexts: np.ndarray, min_known: int, max_known: int) -> np.ndarray:
    """Keep contexts whose number of known concepts lies in [min_known, max_known]."""
    n_known = (contexts != UNKNOWN).sum(axis=1)
    return contexts[(n_known >= min_known) & (n_known <= max_known)]


def sample_contexts(
    m: int,
    n: int,
    p_concepts: np.ndarray,
    min_known: int,
    max_known: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` contexts: k ~ U{min_known..max_known}, a uniform core set of size k, and core values
    from the marginal p(c_core) (a full c ~ p(c), then the other concepts are hidden).

    Returns:
        (unique contexts (u, m) int8, their draw frequencies (u,) summing to 1).
    """
    rng = np.random.default_rng(seed)
    k = rng.integers(min_known, max_known + 1, size=n)
    order = np.argsort(rng.random((n, m)), axis=1)  # a uniform permutation per draw
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m)[None, :].repeat(n, axis=0), axis=1)
    known = rank < k[:, None]
    t = rng.choice(p_concepts.size, size=n, p=p_concepts)
    c = (t[:, None] >> np.arange(m)) & 1
    ctx = np.where(known, c, UNKNOWN).astype(np.int8)
    uniq, counts = np.unique(ctx, axis=0, return_counts=True)
    return uniq, counts / counts.sum()


def encode(contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit masks of a context set: (known mask K, known values V), each (n,) int64.

    A concept vector with index t is consistent with context ξ iff ``t & K == V``.
    """
    bits = np.int64(1) << np.arange(contexts.shape[1], dtype=np.int64)
    known = ((contexts != UNKNOWN).astype(np.int64) * bits).sum(axis=1)
    values = ((contexts == 1).astype(np.int64) * bits).sum(axis=1)
    return known, values


def context_weights(contexts: np.ndarray, scheme: str) -> np.ndarray:
    """Context weights (n,) summing to 1: ``uniform`` or ``known_count`` (uniform over |core| first)."""
    n = contexts.shape[0]
    if scheme == "uniform":
        return np.full(n, 1.0 / n)
    if scheme == "known_count":
        n_known = (contexts != UNKNOWN).sum(axis=1)
        _, inverse, counts = np.unique(n_known, return_inverse=True, return_counts=True)
        w = 1.0 / counts[inverse]
        return w / w.sum()
    raise ConfigError(f"unknown context weight scheme '{scheme}'; use 'uniform' or 'known_count'")
