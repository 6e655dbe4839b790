"""Test statistics for concept geometry that respect shared words, and their nulls.

Notation (``docs/real-models.md`` §5): a concept W has P counterfactual pairs (y0_k, y1_k) with
steering vectors Δ_k = γ(y1_k) − γ(y0_k) in the coordinates of an inner product, and the concept
direction ḡ_W = unit(mean_k Δ_k). Pairs of one concept often share a word (``he→she``, ``his→her``,
``him→her``), and concepts share words with each other (every verb concept contains the bare verb).
Two pairs that share a word are not independent: both Δ carry ±γ(word). So

* a pair is scored against a direction estimated from the pairs that share **no token** with it
  (:func:`shared_out_directions`; with no shared words this is the plain leave-one-out direction);
* resampling and cross-fitting work on **word clusters**, the connected components of "shares a
  token" (:func:`word_clusters`, :func:`cross_fit_folds`);
* the leave-one-out test flips whole word clusters (:func:`loo_sign_flip_test`): a permutation null
  of the same statistic, so its spread is the standard error of that statistic. (Comparing a mean of P
  LOO projections with single random pairs is not a test; even a fixed-direction null of means
  understates the LOO statistic's spread, which counts every Δ_kᵀΔ_l twice.)

Also here: Holm's step-down adjustment across concepts (:func:`holm`), the label-permutation null
of an embedding–unembedding alignment (:func:`label_permutation_null`), and the cosine summaries of a
set of concept directions computed identically for observed and null directions
(:func:`cosine_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .steering import block_means, check_pairs, cosine_matrix, mean_abs_offdiag, unit

__all__ = [
    "holm",
    "word_clusters",
    "shared_out_directions",
    "shared_out_projections",
    "Fold",
    "cross_fit_folds",
    "loo_sign_flip_test",
    "mean_difference_direction",
    "label_permutation_null",
    "CosineSummary",
    "cosine_summary",
]


# ------------------------------------------------------------------------------ multiplicity
def holm(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence).

    With the m finite p-values sorted, p_(1) ≤ … ≤ p_(m), the adjusted values are
    p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)); rejecting p̃ ≤ α is Holm's procedure at level α.

    Args:
        p: (k,) p-values; NaN entries are not counted in m and stay NaN.

    Returns:
        (k,) adjusted p-values.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    order = np.argsort(q, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


# ----------------------------------------------------------------------- shared-word structure
def _incidence(pairs: np.ndarray, index: np.ndarray, n_tokens: int):
    """(P, T) sparse 0/1 matrix: pair k uses local token index[k, 0] and index[k, 1]."""
    from scipy import sparse

    P = pairs.shape[0]
    m = sparse.csr_matrix(
        (np.ones(2 * P), (np.repeat(np.arange(P), 2), index.ravel())), shape=(P, n_tokens)
    )
    m.data[:] = 1.0  # a token on both sides of a pair counts once
    return m


def word_clusters(pairs: np.ndarray) -> np.ndarray:
    """Word clusters: connected components of the graph "pair k and pair l share a token".

    Args:
        pairs: (P, 2) token ids (y0, y1).

    Returns:
        (P,) int64 cluster labels 0, 1, … numbered in order of first appearance.
    """
    from scipy.sparse.csgraph import connected_components

    p = check_pairs(pairs)
    if p.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    used, inv = np.unique(p.ravel(), return_inverse=True)
    inc = _incidence(p, inv.reshape(-1, 2), used.size)
    _, comp = connected_components(inc.T @ inc, directed=False)  # token graph
    lab = comp[inv.reshape(-1, 2)[:, 0]]
    _, first, dense = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[dense].astype(np.int64)


def shared_out_directions(
    est_deltas: np.ndarray, est_pairs: np.ndarray, eval_pairs: np.ndarray
) -> np.ndarray:
    """Per evaluated pair l, the unit mean of the estimation pairs that share no token with it.

        ū_{−l} = unit( Σ_{k : {y0_k, y1_k} ∩ {y0_l, y1_l} = ∅} Δ_k )

    When the evaluated pairs are the estimation pairs this is leave-one-out with every pair that
    shares a word with pair l also left out (plain LOO when no words are shared). Evaluated on other
    concepts' pairs it is the cross-fitted off-target direction.

    Args:
        est_deltas: (P, d) steering vectors Δ_k of the estimation pairs.
        est_pairs: (P, 2) their token ids.
        eval_pairs: (N, 2) token ids of the evaluated pairs.

    Returns:
        (N, d) float64 unit vectors; a row is NaN when every estimation pair shares a token with it.
    """
    from scipy import sparse

    est, ev = check_pairs(est_pairs), check_pairs(eval_pairs)
    D = np.asarray(est_deltas, dtype=np.float64)
    if D.shape[0] != est.shape[0]:
        raise InputError(f"{D.shape[0]} steering vectors but {est.shape[0]} estimation pairs")
    used, inv = np.unique(np.concatenate([est.ravel(), ev.ravel()]), return_inverse=True)
    a = _incidence(est, inv[: est.size].reshape(-1, 2), used.size)
    b = _incidence(ev, inv[est.size :].reshape(-1, 2), used.size)
    share = sparse.csr_matrix(b @ a.T)  # (N, P) number of shared tokens
    share.data[:] = 1.0
    kept = D.sum(axis=0) - share @ D  # (N, d)
    out = unit(kept)
    out[np.asarray(share.sum(axis=1)).ravel() >= est.shape[0]] = np.nan
    return out


def shared_out_projections(deltas: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Δ_kᵀ ū_{−k} with ū_{−k} from the pairs sharing no token with pair k (see
    :func:`shared_out_directions`): the leave-one-out projection made robust to shared words.

    Args:
        deltas: (P, d). pairs: (P, 2).

    Returns:
        (P,) float64 (NaN where no pair is left).
    """
    u = shared_out_directions(deltas, pairs, pairs)
    return np.sum(np.asarray(deltas, dtype=np.float64) * u, axis=-1)


@dataclass(frozen=True)
class Fold:
    """One cross-fitting fold: evaluate on ``eval_idx``, estimate on ``est_idx`` (no shared token)."""

    eval_idx: np.ndarray
    est_idx: np.ndarray


def cross_fit_folds(
    eval_pairs: np.ndarray, est_pairs: np.ndarray, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """K-fold cross-fitting with word-disjoint estimation sets.

    Evaluated items that share a token (e.g. two contexts calling for the same word pair) form one
    word cluster and go to the same fold; clusters are dealt to folds largest first (random order
    among equal sizes), round robin. Fold f estimates on the pairs that share no token with any of
    its evaluated items.

    Args:
        eval_pairs: (N, 2) token pairs of the evaluated items (contexts or pairs).
        est_pairs: (P, 2) token pairs a direction can be estimated from (may overlap eval_pairs).
        n_folds: K ≥ 2 (fewer folds are returned when there are fewer clusters).
        seed: seed of the tie-breaking order.

    Returns:
        The non-empty folds; their ``eval_idx`` partition range(N).
    """
    if n_folds < 2:
        raise InputError(f"cross-fitting needs at least 2 folds, got {n_folds}")
    ev, est = check_pairs(eval_pairs), check_pairs(est_pairs)
    cl = word_clusters(ev)
    sizes = np.bincount(cl) if cl.size else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(sizes.size), -sizes))  # largest first, random ties
    fold_of = np.empty(sizes.size, dtype=np.int64)
    fold_of[order] = np.arange(sizes.size) % n_folds
    folds = []
    for f in range(min(n_folds, sizes.size)):
        idx = np.flatnonzero(fold_of[cl] == f)
        banned = np.isin(est, ev[idx]).any(axis=1)
        folds.append(Fold(eval_idx=idx, est_idx=np.flatnonzero(~banned)))
    return folds


# --------------------------------------------------------------------------------------- nulls
def _injective_maps(n_rows: int, n_tokens: int, n_draws: int, rng) -> np.ndarray:
    """(n_draws, n_tokens) uniformly random injective maps into range(n_rows).

    One permutation of the rows gives ⌊n_rows / n_tokens⌋ disjoint maps (each exactly uniform), so
    the cost is a few permutations rather than one per draw.
    """
    if n_tokens > n_rows:
        raise InputError(f"cannot map {n_tokens} tokens injectively into {n_rows} rows")
    per = max(1, n_rows // max(n_tokens, 1))
    blocks = -(-n_draws // per)
    maps = [rng.permutation(n_rows)[: per * n_tokens].reshape(per, n_tokens) for _ in range(blocks)]
    return np.concatenate(maps)[:n_draws]


def _sign_flip_terms(deltas: np.ndarray, pairs: np.ndarray):
    """Gram quantities of the shared-out LOO projection: G = ΔΔᵀ, H = RΔᵀ, a = diag H, b = ‖R_k‖²."""
    from scipy import sparse

    p = check_pairs(pairs)
    D = np.asarray(deltas, dtype=np.float64)
    if D.shape[0] != p.shape[0]:
        raise InputError(f"{D.shape[0]} steering vectors but {p.shape[0]} pairs")
    used, inv = np.unique(p.ravel(), return_inverse=True)
    inc = _incidence(p, inv.reshape(-1, 2), used.size)
    share = sparse.csr_matrix(inc @ inc.T)  # (P, P), k ∈ N(k)
    share.data[:] = 1.0
    G = D @ D.T
    H = np.asarray(share @ G)  # row k: R_kᵀ Δ_l with R_k = Σ_{l ∈ N(k)} Δ_l
    b = np.asarray(share.multiply(H).sum(axis=1)).ravel()
    return G, H, np.diag(H).copy(), b


def _shared_out_mean(G, H, a, b, s: np.ndarray) -> np.ndarray:
    """Mean over pairs of the shared-out LOO projection after flipping pair k by s_k, for (P, B) s.

    With every neighbour l ∈ N(k) in k's word cluster (so s_l = s_k):
        s_kΔ_kᵀ(S_s − s_k R_k) / ‖S_s − s_k R_k‖ = (s_k (Gs)_k − a_k) / √(sᵀGs − 2 s_k (Hs)_k + b_k).
    """
    Gs, Hs = G @ s, H @ s
    quad = np.sum(s * Gs, axis=0)  # ‖S_s‖²
    den2 = quad[None, :] - 2 * s * Hs + b[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (s * Gs - a[:, None]) / np.sqrt(np.where(den2 > 1e-12 * quad[None, :], den2, np.nan))
    return np.nanmean(t, axis=0) if np.isfinite(t).any() else np.full(s.shape[1], np.nan)


def loo_sign_flip_test(
    deltas: np.ndarray, pairs: np.ndarray, n_perm: int = 2000, seed: int = 0, chunk: int = 500
):
    """Sign-flip permutation test of a concept's leave-one-out projection, by word cluster.

    Statistic: T = mean_k Δ_kᵀ ū_{−N(k)} (:func:`shared_out_projections`: each pair against the unit
    mean of the pairs that share no word with it). Null: "the pairs share no direction": swapping base
    and target of every pair in a word cluster (Δ ↦ −Δ for the whole cluster) leaves the joint law
    unchanged, so T recomputed under independent random flips σ_c = ±1 of the C clusters is an exact
    permutation null (exact when the token vectors are i.i.d. and centrally symmetric about their
    mean; a close approximation for real vocabularies). The null's spread is the standard error of T,
    so ``z`` is a test statistic. Cost O(P² · n_perm) from the Gram matrix, no d-sized work per draw.

    Args:
        deltas: (P, d) steering vectors (inner-product coordinates). pairs: (P, 2) token ids.
        n_perm: random flips (the observed T is compared with them: p ≥ 1/(n_perm + 1)).
        seed: random seed.
        chunk: flips per vectorised block.

    Returns:
        :class:`~linrep.geometry.NullTest` with the observed T and the flip null (``n_clusters`` is
        ``word_clusters(pairs).max() + 1``).
    """
    from .nulls import null_test

    G, H, a, b = _sign_flip_terms(deltas, pairs)
    cl = word_clusters(pairs)
    observed = float(_shared_out_mean(G, H, a, b, np.ones((G.shape[0], 1)))[0])
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    for s0 in range(0, n_perm, chunk):
        m = min(chunk, n_perm - s0)
        sigma = rng.choice(np.array([-1.0, 1.0]), size=(int(cl.max()) + 1, m))
        null[s0 : s0 + m] = _shared_out_mean(G, H, a, b, sigma[cl])
    return null_test(observed, null)


def mean_difference_direction(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f̄ = unit(mean F[y = 1] − mean F[y = 0]), the embedding-side direction of paired contexts.

    Args:
        F: (n, d) context representations λ(x) (in an inner product's coordinates).
        y: (n,) labels 0 (base side) / 1 (target side).

    Returns:
        (d,) float64.
    """
    F = np.asarray(F, dtype=np.float64)
    y = _labels(y, F.shape[0])
    return unit(F[y].mean(axis=0) - F[~y].mean(axis=0))


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be (n,) = ({n},) values 0/1, got shape {y.shape}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise InputError("labels need both sides (some 0 and some 1)")
    return y


def label_permutation_null(
    F: np.ndarray,
    y: np.ndarray,
    directions: np.ndarray,
    n_perm: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Alignment cos(f̄, ū) recomputed with the base/target labels of the same contexts permuted.

    Each draw picks a uniformly random relabelling y* with the same number of target contexts and
    returns cos(unit(mean F[y* = 1] − mean F[y* = 0]), ū) for every direction ū. Contexts of one
    concept share topic and syntax, so even a random split of them has a mean difference with a
    component along the concept's direction; this null measures how large that gets by chance.

    Args:
        F: (n, d) context representations (inner-product coordinates).
        y: (n,) 0/1 labels.
        directions: (d,) or (m, d) unembedding-side directions in the same coordinates.
        n_perm: permutations.
        seed: random seed.

    Returns:
        (n_perm,) or (n_perm, m) float64 cosines.
    """
    F = np.asarray(F, dtype=np.float64)
    y = _labels(y, F.shape[0])
    n, n1 = y.size, int(y.sum())
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((n_perm, n)), axis=1)  # a uniform random order per draw
    L = ranks < n1  # (n_perm, n): the first n1 of a random order are "target"
    weights = L / n1 - (~L) / (n - n1)
    U = unit(np.atleast_2d(np.asarray(directions, dtype=np.float64)))
    cos = unit(weights @ F) @ U.T
    return cos[:, 0] if np.ndim(directions) == 1 else cos


# ------------------------------------------------------------------------------ cosine summaries
@dataclass(frozen=True)
class CosineSummary:
    """Summaries of k concept directions, each of shape (...) (leading axes: null draws).

    Attributes:
        mean_abs_offdiag: mean |cos(ḡ_W, ḡ_W')| over W ≠ W'.
        within_abs, between_abs: the same over pairs in the same related group / different groups.
        ratio: within_abs / between_abs.
        reference_cos: (..., k) cos(ḡ_W, r) with a reference direction r (e.g. the mean of γ).
        mean_abs_reference_cos: mean_W |cos(ḡ_W, r)|.
        mean_abs_offdiag_reference_removed: mean |offdiag| after projecting r out of every ḡ_W.
    """

    mean_abs_offdiag: np.ndarray
    within_abs: np.ndarray
    between_abs: np.ndarray
    ratio: np.ndarray
    reference_cos: np.ndarray
    mean_abs_reference_cos: np.ndarray
    mean_abs_offdiag_reference_removed: np.ndarray


def cosine_summary(
    directions: np.ndarray, groups: Sequence[object], reference: np.ndarray | None = None
) -> CosineSummary:
    """Cosine summaries of concept directions, vectorised over leading axes.

    The same function runs on the observed directions (k, d) and on null directions (B, k, d), so
    observed and null are built the same way.

    Args:
        directions: (..., k, d) concept directions (normalised here) in an inner product's coordinates.
        groups: k related-group labels (singleton groups = unrelated to every other concept).
        reference: optional (d,) reference direction in the same coordinates (e.g. mean of γ).

    Returns:
        :class:`CosineSummary`.
    """
    D = unit(np.asarray(directions, dtype=np.float64))
    C = cosine_matrix(D)
    within, between = block_means(C, groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = within / between
    if reference is None:
        nan = np.full(D.shape[:-1], np.nan)
        return CosineSummary(
            mean_abs_offdiag(C), within, between, ratio, nan, nan[..., 0], nan[..., 0]
        )
    r = unit(np.asarray(reference, dtype=np.float64))
    rc = D @ r
    removed = mean_abs_offdiag(cosine_matrix(D - rc[..., None] * r))
    return CosineSummary(
        mean_abs_offdiag(C), within, between, ratio, rc, np.abs(rc).mean(axis=-1), removed
    )
