"""Null baselines: random token pairs and shuffled unembeddings.

* **Random-pair null** (Park et al. 2023): project the differences g(b) − g(a) of ``n`` random token
  pairs (a ≠ b) on a concept direction; a concept is "linearly represented" if its pairs' leave-one-out
  projections sit far in the upper tail of that distribution.
* **Shuffled-unembedding null** (Park et al. 2024, arXiv 2406.01506): randomly permute the rows of the
  unembedding (token identities), keep the word pairs, and recompute the statistic. A consistent
  permutation is used per shuffle, so a token shared by two pairs maps to the same random row.

Both are streamed in chunks: memory is O(chunk · d), never O(n · d) or O(V²).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .inner import InnerProduct, _row_indices
from .steering import check_pairs, loo_cosines, unit

__all__ = [
    "random_pair_null",
    "shuffled_unembedding_null",
    "null_test",
    "NullTest",
    "mean_loo_cosine",
]


def mean_loo_cosine(deltas: np.ndarray) -> float:
    """Default statistic of the shuffled null: the mean leave-one-out cosine of a concept."""
    return float(np.mean(loo_cosines(deltas)))


def random_pair_null(
    g: np.ndarray,
    directions: np.ndarray,
    n: int = 100_000,
    seed: int = 0,
    *,
    rows: np.ndarray | None = None,
    inner: InnerProduct | None = None,
    statistic: str = "projection",
    chunk: int = 8192,
) -> np.ndarray:
    """Projections (or cosines) of random token-pair differences on concept directions.

    Args:
        g: (V, d) unembedding (float32 is fine; rows are read on demand).
        directions: (d,) or (k, d) concept directions *in the coordinates of* ``inner``
            (normalised here).
        n: number of random pairs (a, b), a ≠ b, drawn uniformly from ``rows``.
        seed: random seed.
        rows: optional mask/indices of the tokens to draw from (e.g. single-token words only).
        inner: fitted inner product applied to the differences (None = Euclidean).
        statistic: ``"projection"`` ((g(b) − g(a))ᵀ ū) or ``"cosine"``.
        chunk: pairs processed at a time.

    Returns:
        (n,) for one direction or (n, k) for k directions, float64.
    """
    g = np.asarray(g)
    if statistic not in ("projection", "cosine"):
        raise InputError(f"statistic must be 'projection' or 'cosine', got {statistic!r}")
    u = unit(np.atleast_2d(np.asarray(directions, dtype=np.float64)))
    if u.shape[-1] != g.shape[-1]:
        raise InputError(f"directions have size {u.shape[-1]} but g has d = {g.shape[-1]}")
    idx = _row_indices(rows, g.shape[0])
    R = g.shape[0] if idx is None else idx.size
    if R < 2 or n < 1:
        raise InputError(f"random-pair null needs ≥ 2 candidate rows and n ≥ 1 (got {R}, {n})")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, R, size=n)
    ib = (ia + rng.integers(1, R, size=n)) % R  # uniform over b ≠ a
    if idx is not None:
        ia, ib = idx[ia], idx[ib]
    out = np.empty((n, u.shape[0]))
    # projection: (Δ M^{1/2}) ū = Δ (M^{1/2} ū): fold the map into the k directions, so each pair
    # costs O(d k) instead of O(d²); the cosine needs ‖Δ M^{1/2}‖ and maps the differences
    fold = statistic == "projection" and inner is not None
    ut = inner.sqrt_ @ u.T if fold else u.T
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        diff = g[ib[sl]].astype(np.float64) - g[ia[sl]]
        if inner is not None and not fold:
            diff = inner.transform_vectors(diff)
        proj = diff @ ut
        if statistic == "cosine":
            proj /= np.maximum(np.linalg.norm(diff, axis=1, keepdims=True), 1e-300)
        out[sl] = proj
    return out[:, 0] if np.ndim(directions) == 1 else out


def shuffled_unembedding_null(
    g: np.ndarray,
    pairs: np.ndarray | Sequence[np.ndarray],
    n_shuffles: int = 100,
    seed: int = 0,
    *,
    rows: np.ndarray | None = None,
    inner: InnerProduct | None = None,
    statistic: Callable[[np.ndarray], float] = mean_loo_cosine,
) -> np.ndarray:
    """A statistic of the word pairs recomputed on row-shuffled unembeddings.

    Each shuffle draws a uniformly random injective map of the tokens used by the pairs into
    ``rows`` (the restriction of a random permutation of the vocabulary), shared by all concepts.

    Args:
        g: (V, d) unembedding.
        pairs: one (P, 2) array or a list of them (one per concept).
        n_shuffles: number of shuffles.
        seed: random seed.
        rows: candidate rows of the permutation (default all).
        inner: fitted inner product applied to the steering vectors.
        statistic: function of the (P, d) steering vectors → float (default mean LOO cosine).

    Returns:
        (n_shuffles,) for one pair array, (n_shuffles, k) for a list of k.
    """
    g = np.asarray(g)
    single = isinstance(pairs, np.ndarray) and pairs.ndim == 2
    plist = (
        [check_pairs(pairs, g.shape[0])] if single else [check_pairs(p, g.shape[0]) for p in pairs]
    )
    used, inv = np.unique(np.concatenate([p.ravel() for p in plist]), return_inverse=True)
    splits = np.cumsum([p.size for p in plist])[:-1]
    local = [q.reshape(-1, 2) for q in np.split(inv, splits)]
    idx = _row_indices(rows, g.shape[0])
    R = g.shape[0] if idx is None else idx.size
    if R < used.size:
        raise InputError(f"cannot shuffle {used.size} tokens into {R} rows; select more rows")
    rng = np.random.default_rng(seed)
    out = np.empty((n_shuffles, len(plist)))
    allp = np.concatenate(local)  # all concepts' pairs, mapped by one matrix product per shuffle
    bounds = np.cumsum([0] + [lp.shape[0] for lp in local])
    for s in range(n_shuffles):
        new = rng.choice(R, size=used.size, replace=False)
        if idx is not None:
            new = idx[new]
        gu = g[new].astype(np.float64)  # (U, d): rows the shuffled vocabulary gives the used tokens
        d = gu[allp[:, 1]] - gu[allp[:, 0]]
        if inner is not None:
            d = inner.transform_vectors(d)
        for j in range(len(local)):
            out[s, j] = statistic(d[bounds[j] : bounds[j + 1]])
    return out[:, 0] if single else out


@dataclass(frozen=True)
class NullTest:
    """Observed statistic vs a null sample.

    Attributes:
        observed: the statistic(s), (k,) or scalar.
        null_mean, null_std: moments of the null sample.
        z: (observed − null_mean) / null_std.
        p_value: one-sided empirical p = (1 + #{null ≥ observed}) / (n + 1).
        n_null: size of the null sample.
    """

    observed: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    z: np.ndarray
    p_value: np.ndarray
    n_null: int

    def to_dict(self) -> dict[str, object]:
        return {k: np.asarray(v).tolist() for k, v in self.__dict__.items()}


def null_test(observed: np.ndarray | float, null: np.ndarray) -> NullTest:
    """z-score and one-sided empirical p-value of observed statistics against a null sample.

    Args:
        observed: scalar or (k,).
        null: (n,) or (n, k) null sample (column j is the null of observed[j]).

    Returns:
        :class:`NullTest`.
    """
    obs = np.asarray(observed, dtype=np.float64)
    nul = np.asarray(null, dtype=np.float64)
    if nul.ndim == 1 and obs.ndim == 1 and obs.size > 1:
        nul = nul[:, None]  # one null shared by all observed values
    mu, sd = nul.mean(axis=0), nul.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (obs - mu) / sd
    p = (1 + (nul >= obs).sum(axis=0)) / (nul.shape[0] + 1)
    return NullTest(obs, mu, sd, z, p, int(nul.shape[0]))
