"""Null baselines: random token pairs and shuffled unembeddings.

* **Random-pair null** (Park et al. 2023): project the differences g(b) − g(a) of ``n`` random token
  pairs (a ≠ b) on a concept direction; a concept is "linearly represented" if its pairs' leave-one-out
  projections sit far in the upper tail of that distribution.
* **Shuffled-unembedding null** (Park et al. 2024, arXiv 2406.01506): randomly permute the rows of the
  unembedding (token identities), keep the word pairs, and recompute the statistic. A consistent
  permutation is used per shuffle, so a token shared by two pairs maps to the same random row.
* **Random word-pair directions** (:func:`random_pair_means`, :func:`relabelled_pair_means`): the mean
  steering vector of as many random word pairs as each concept has (independent pairs, or the
  concepts' own tokens relabelled into random words so shared words stay shared), for null
  distributions of every summary of concept directions.
* **Random inner products** (:func:`random_inner_product_directions`): the observed mean steering
  vectors as seen by several random inner products (a distribution, not one draw).

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
    "random_pair_means",
    "relabelled_pair_means",
    "random_inner_product_directions",
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
    from ..limits import check_memory

    check_memory(  # the (n, k) result and the pair indices, before drawing them
        8.0 * n * (u.shape[0] + 3),
        f"a random-pair null of {n:,} pairs",
        "the number of random pairs (llm.n_random_pairs)",
    )
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
        z: (observed − null_mean) / null_std. A test statistic only when the null sample is of the
            *same* statistic (e.g. means of P random pairs for a mean over P pairs).
        p_value: one-sided empirical p = (1 + #{null ≥ observed}) / (n + 1).
        n_null: size of the null sample.
        q025, q50, q95, q975: quantiles of the null sample.
        p_value_less: the other tail, (1 + #{null ≤ observed}) / (n + 1).
    """

    observed: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    z: np.ndarray
    p_value: np.ndarray
    n_null: int
    q025: np.ndarray = np.nan
    q50: np.ndarray = np.nan
    q95: np.ndarray = np.nan
    q975: np.ndarray = np.nan
    p_value_less: np.ndarray = np.nan

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
    n = nul.shape[0]
    p = (1 + (nul >= obs).sum(axis=0)) / (n + 1)
    p_less = (1 + (nul <= obs).sum(axis=0)) / (n + 1)
    q = np.quantile(nul, [0.025, 0.5, 0.95, 0.975], axis=0)
    return NullTest(obs, mu, sd, z, p, int(n), q[0], q[1], q[2], q[3], p_less)


# ------------------------------------------------------------------ random word-pair directions
def _signed_means(g: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int):
    """(n, d) float64: row i = Σ vals · g[cols] over the entries with that row (one sparse product)."""
    from scipy import sparse

    g = np.asarray(g)
    S = sparse.csr_matrix((vals.astype(g.dtype), (rows, cols)), shape=(n, g.shape[0]))
    return np.asarray(S @ g, dtype=np.float64)


def _candidates(rows: np.ndarray | None, V: int) -> np.ndarray:
    idx = _row_indices(rows, V)
    return np.arange(V) if idx is None else idx


def random_pair_means(
    g: np.ndarray,
    sizes: Sequence[int],
    n_draws: int = 200,
    seed: int = 0,
    *,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Mean steering vectors of random word pairs, as many per "concept" as the real ones have.

    Draw b, concept j: m_bj = (1/P_j) Σ_k (g(b_k) − g(a_k)) over P_j independent uniform pairs
    a_k ≠ b_k of candidate rows. unit(m_bj) (after an inner product's map) is a random-word-pair
    concept direction.

    Args:
        g: (V, d) unembedding (float32 is not copied).
        sizes: (k,) pairs per concept P_j.
        n_draws: B.
        seed: random seed.
        rows: candidate rows (mask or indices), e.g. single-token words.

    Returns:
        (B, k, d) float64.
    """
    g = np.asarray(g)
    cand = _candidates(rows, g.shape[0])
    sizes = np.asarray(sizes, dtype=np.int64)
    if cand.size < 2 or sizes.size == 0 or sizes.min() < 1:
        raise InputError(
            f"need ≥ 2 candidate rows and ≥ 1 pair per concept (got {cand.size}, {sizes})"
        )
    rng = np.random.default_rng(seed)
    n = n_draws * int(sizes.sum())
    ia = rng.integers(0, cand.size, size=n)
    ib = (ia + rng.integers(1, cand.size, size=n)) % cand.size  # uniform over b ≠ a
    group = np.tile(np.repeat(np.arange(sizes.size), sizes), n_draws)
    out_row = np.repeat(np.arange(n_draws), sizes.sum()) * sizes.size + group
    w = 1.0 / sizes[group]
    rows_ = np.concatenate([out_row, out_row])
    cols = np.concatenate([cand[ib], cand[ia]])
    m = _signed_means(g, rows_, cols, np.concatenate([w, -w]), n_draws * sizes.size)
    return m.reshape(n_draws, sizes.size, g.shape[1])


def relabelled_pair_means(
    g: np.ndarray,
    pairs: Sequence[np.ndarray],
    n_draws: int = 200,
    seed: int = 0,
    *,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Mean steering vectors of the concepts' own pairs with their tokens relabelled into random words.

    One uniformly random injective map π of all tokens used by the k concepts into the candidate rows
    per draw (the shuffled-unembedding null restricted to word rows): m_bj = mean_k (g(π(y1_k)) −
    g(π(y0_k))). Shared words stay shared within and across concepts (every verb concept keeps its
    common verbs), so summaries that shared words force come out in this null as well.

    Args:
        g: (V, d) unembedding.
        pairs: k arrays (P_j, 2) of token ids.
        n_draws: B.
        seed: random seed.
        rows: candidate rows of the map.

    Returns:
        (B, k, d) float64.
    """
    from .stats import _injective_maps

    g = np.asarray(g)
    plist = [check_pairs(p, g.shape[0]) for p in pairs]
    sizes = np.array([p.shape[0] for p in plist])
    if sizes.size == 0 or sizes.min() < 1:
        raise InputError("every concept needs at least one pair")
    cand = _candidates(rows, g.shape[0])
    used, inv = np.unique(np.concatenate([p.ravel() for p in plist]), return_inverse=True)
    inv = inv.reshape(-1, 2)
    group = np.repeat(np.arange(sizes.size), sizes)
    w = 1.0 / sizes[group]
    maps = cand[_injective_maps(cand.size, used.size, n_draws, np.random.default_rng(seed))]
    k = sizes.size
    out_row = (np.arange(n_draws)[:, None] * k + group[None, :]).ravel()
    rows_ = np.concatenate([out_row, out_row])
    cols = np.concatenate([maps[:, inv[:, 1]].ravel(), maps[:, inv[:, 0]].ravel()])
    vals = np.concatenate([np.tile(w, n_draws), -np.tile(w, n_draws)])
    return _signed_means(g, rows_, cols, vals, n_draws * k).reshape(n_draws, k, g.shape[1])


def random_inner_product_directions(
    vectors: np.ndarray, n_draws: int = 16, seed: int = 0, log_sd: float = 1.0
) -> np.ndarray:
    """Unembedding-side vectors as seen by several independent random inner products.

    A random inner product (:class:`RandomInnerProduct`) is M = Q Λ Qᵀ with Q Haar-orthogonal and
    log Λ_ii ~ N(0, log_sd²). Cosines under M are those of the rows of V M^{1/2}, and (dropping the
    final rotation Qᵀ, which preserves them) of V Q Λ^{1/2}. Writing V = L Uᵀ (Uᵀ: r × d orthonormal
    rows, r = min(k, d)), V Q = L (UᵀQ) and UᵀQ is a Haar-random r-frame, drawn as the Q factor of a
    d × r Gaussian. So each draw costs O(d r²) instead of the O(d³) of a full Q, with exactly the
    distribution of the cosines under :class:`RandomInnerProduct`.

    Args:
        vectors: (k, d) e.g. mean steering vectors of k concepts (raw coordinates).
        n_draws: R inner products.
        seed: random seed.
        log_sd: spread of the log-eigenvalues (as :class:`RandomInnerProduct`).

    Returns:
        (R, k, d) float64 whose row inner products are ⟨v_i, v_j⟩_{M_r}.
    """
    v = np.asarray(vectors, dtype=np.float64)
    k, d = v.shape
    Uv, Rv = np.linalg.qr(v.T)  # v = Rvᵀ Uvᵀ, Uv: (d, r)
    L = Rv.T  # (k, r)
    rng = np.random.default_rng(seed)
    out = np.empty((n_draws, k, d))
    for r in range(n_draws):  # one small QR per inner product
        Z = rng.standard_normal((d, L.shape[1]))
        Q, R = np.linalg.qr(Z)
        frame = (Q * np.sign(np.diag(R))).T  # (r, d), Haar-distributed orthonormal rows
        out[r] = (L @ frame) * np.exp(0.5 * log_sd * rng.standard_normal(d))
    return out
