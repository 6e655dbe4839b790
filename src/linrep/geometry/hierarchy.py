"""Hierarchy as orthogonality, tested against nulls that separate semantics from the estimator.

The science and what each null can show: ``docs/hierarchy.md`` §6.2.

Input: token coordinates ``X: (U, d)`` (causal coordinates of a token universe: a real model's
category words plus random pools, or every token of a latent model) and a :class:`CategoryTree`
whose categories are index sets into X (a parent's set contains its children's) and whose edges
are (parent, child) pairs. For every edge the statistics of :func:`~.categorical.edge_cosines`,

    cos(ℓ_parent, ℓ_child − ℓ_parent)   (Park et al.: ≈ 0, "hierarchy is orthogonality")
    cos(ℓ_parent, ℓ_child)              (the child points along its parent),

get a 95 % interval and four nulls of the same sizes. The interval is θ̂ ± 1.96 σ̂ with σ̂ from a
stratified delete-half jackknife: each replicate keeps a random half of the child's tokens and a
random half of the parent's other tokens (so the child stays inside its parent), and
σ̂² = (k / (n − k)) · mean_s (θ_s − θ̄)² for k kept of n tokens (Shao & Wu 1989). A with-replacement
bootstrap is biased here: duplicated tokens shrink the Ledoit–Wolf covariance's rank and shift the
estimator (on Gemma its percentile intervals missed the estimate itself).

* ``subset``     — (a) the child is a random subset of the parent's tokens of the child's size;
* ``random_set`` — (b) the parent is a random set of ``word_pool`` tokens of the parent's size and
  the child a random subset of it (one random parent per draw and real parent, shared by its
  edges as the real edges share ℓ_parent);
* ``shuffled``   — (c) token identities shuffled: one random injective map of all category tokens
  into ``normal_pool`` per draw, shared by every edge (so a parent's image still contains its
  child's), everything recomputed;
* ``unrelated``  — (d) the child is replaced by a category outside the parent's lineage (minus any
  tokens it shares with the parent), subsampled to the child's size when larger.

An edge *beats* a null on orthogonality when |cos(ℓ_p, ℓ_c − ℓ_p)| is smaller than the null's
(one-sided empirical p = (1 + #{|null| ≤ |obs|}) / (n + 1)), and on alignment when cos(ℓ_p, ℓ_c) is
larger (p = (1 + #{null ≥ obs}) / (n + 1)). With a few hundred draws the empirical p cannot
resolve the 0.05 / n_edges a multiplicity correction asks for, so the decision uses the same tail
of a normal fit to the signed null draws (``p_normal``), Holm-adjusted over the edges at 0.05.
The summary test compares the mean over edges with the null distribution of that mean (draw j of
every edge's null forms one null mean). Note that null (a) shares the estimator *and* the subset
structure with real edges: an edge that does not beat it shows nothing beyond "the child is a
subset of the parent".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from .categorical import (
    Estimator,
    category_vectors,
    edge_cosines,
    sibling_cosines,
    simplex_singular_values,
    subspace_coordinates,
)
from .stats import holm  # the one Holm adjustment of linrep.geometry (re-exported here)

__all__ = [
    "NULLS",
    "CategoryTree",
    "NullComparison",
    "EdgeResult",
    "ParentResult",
    "SummaryNull",
    "HierarchyAnalysis",
    "analyze_tree",
    "holm",
]

NULLS = ("subset", "random_set", "shuffled", "unrelated")
_CHUNK_CELLS = 4_000_000  # B·n·d float64 values gathered at a time (32 MB)


@dataclass(frozen=True)
class CategoryTree:
    """Categories as index sets into a coordinate matrix, and the parent → child edges.

    Attributes:
        names: (k,) category names.
        members: k int arrays of row indices (each category's closure: a parent holds its
            descendants' rows), each with ≥ 2 distinct rows.
        edges: (parent index, child index) pairs; the child's rows ⊂ the parent's rows.
    """

    names: tuple[str, ...]
    members: tuple[np.ndarray, ...]
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.members):
            raise InputError("CategoryTree needs one member array per name")
        for p, c in self.edges:
            if not np.isin(self.members[c], self.members[p]).all():
                raise InputError(
                    f"category '{self.names[c]}' is not contained in its parent "
                    f"'{self.names[p]}'; a parent's tokens must include its children's"
                )

    def children(self, i: int) -> list[int]:
        return [c for p, c in self.edges if p == i]

    def lineage(self, i: int) -> set[int]:
        """i, its ancestors and its descendants."""
        out, up, down = {i}, [i], [i]
        while up:
            x = up.pop()
            new = [p for p, c in self.edges if c == x and p not in out]
            out.update(new)
            up += new
        while down:
            x = down.pop()
            new = [c for p, c in self.edges if p == x and c not in out]
            out.update(new)
            down += new
        return out


@dataclass(frozen=True)
class NullComparison:
    """One statistic of one edge against one null sample.

    Attributes:
        null: null name (:data:`NULLS`).
        n: null draws.
        mean: the null's mean (mean, q025, q975 are of |cos| for orthogonality).
        q025: the null's 2.5 % quantile.
        q975: the null's 97.5 % quantile.
        p_value: one-sided empirical p (direction in the module doc; never below 1 / (n + 1)).
        p_normal: the same tail under a normal fit N(μ, σ²) of the signed null draws (resolves
            small p with few draws).
        p_holm: Holm-adjusted p_normal over edges.
        beats: p_holm < 0.05.
    """

    null: str
    n: int
    mean: float
    q025: float
    q975: float
    p_value: float
    p_normal: float
    p_holm: float
    beats: bool


@dataclass(frozen=True)
class EdgeResult:
    """One parent → child edge (all numbers with ``estimator``).

    ``orthogonality`` compares |cos(ℓ_p, ℓ_c − ℓ_p)| (null quantiles are of |cos| too);
    ``alignment`` compares cos(ℓ_p, ℓ_c).
    """

    parent: str
    child: str
    n_words: int
    n_parent_words: int
    estimator: str
    cos_parent_childdiff: float
    cos_parent_childdiff_ci: tuple[float, float]
    cos_parent_child: float
    cos_parent_child_ci: tuple[float, float]
    orthogonality: dict[str, NullComparison]
    alignment: dict[str, NullComparison]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParentResult:
    """A parent with ≥ 2 children: sibling differences and the simplex of its children.

    Attributes:
        sibling_cosines: cos(ℓ_parent, ℓ_ci − ℓ_cj) per child pair ``(ci, cj, cos)``.
        singular_values: of [ℓ_c2 − ℓ_c1, …] (descending).
        affinely_independent: σ_min > 1e-8 σ_max.
        sigma_ratio: σ_min / σ_max (NaN for two children: one singular value, the ratio is 1 by
            construction).
        sigma_ratio_null_mean: the same for children replaced by random subsets of the parent's
            tokens of the children's sizes.
        sigma_ratio_null_p: share of null ratios ≤ the observed one (small means the real simplex
            is *flatter* than random subsets).
    """

    parent: str
    children: tuple[str, ...]
    estimator: str
    sibling_cosines: tuple[tuple[str, str, float], ...]
    singular_values: tuple[float, ...]
    affinely_independent: bool
    sigma_ratio: float
    sigma_ratio_null_mean: float
    sigma_ratio_null_p: float


@dataclass(frozen=True)
class SummaryNull:
    """Mean over edges of |cos(ℓ_p, ℓ_c − ℓ_p)| and of cos(ℓ_p, ℓ_c) against one null's means."""

    null: str
    n: int
    mean_abs_cos_childdiff_null: float
    mean_abs_cos_childdiff_q: tuple[float, float]
    p_orthogonality: float
    mean_cos_child_null: float
    mean_cos_child_q: tuple[float, float]
    p_alignment: float


@dataclass(frozen=True)
class HierarchyAnalysis:
    """Everything measured on one tree with one estimator."""

    estimator: str
    edges: tuple[EdgeResult, ...]
    parents: tuple[ParentResult, ...]
    mean_abs_cos_childdiff: float
    mean_cos_child: float
    summary_nulls: dict[str, SummaryNull]
    n_null: int
    n_boot: int
    seed: int
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return asdict(self)


# --------------------------------------------------------------------------------- helpers
def _vectors(
    X: np.ndarray, idx: np.ndarray, estimator: Estimator, dim: int | None = None
) -> np.ndarray:
    """ℓ of the categories X[idx[b]] for idx (B, n) → (B, d), gathered in memory-bounded chunks."""
    B, n = idx.shape
    step = max(1, _CHUNK_CELLS // max(1, n * X.shape[1]))
    return np.concatenate(
        [category_vectors(X[idx[s : s + step]], estimator, dim) for s in range(0, B, step)]
    )


def _subsets(rng: np.random.Generator, pool: np.ndarray, B: int, n: int) -> np.ndarray:
    """B uniform random n-subsets (in random order) of ``pool``, (B, n)."""
    if n > pool.size:
        raise InputError(f"cannot draw {n} distinct tokens from a pool of {pool.size}")
    if pool.size > 4 * n:  # rejection-free trick for big pools: argpartition of random keys
        keys = rng.random((B, pool.size))
        pick = np.argpartition(keys, n - 1, axis=1)[:, :n]
        return pool[rng.permuted(pick, axis=1)]
    return pool[np.argsort(rng.random((B, pool.size)), axis=1)[:, :n]]


class _Parent:
    """A parent's rows in coordinates of their own span (n_p ≤ d columns; exact, see
    :func:`~.categorical.subspace_coordinates`), for the nulls and resamples inside the parent."""

    def __init__(self, X: np.ndarray, tree: CategoryTree, p: int, est: Estimator):
        self.rows = tree.members[p]
        self.Y = subspace_coordinates(X[self.rows])  # (n_p, r)
        self.dim = X.shape[1]
        self.est = est
        self.vector = category_vectors(self.Y, est, self.dim)

    def positions(self, child_rows: np.ndarray) -> np.ndarray:
        """Positions of a child's rows among the parent's rows."""
        return np.flatnonzero(np.isin(self.rows, child_rows))

    def vectors(self, pos: np.ndarray) -> np.ndarray:
        return _vectors(self.Y, pos, self.est, self.dim)


def _jackknife_sd(par: _Parent, child_rows: np.ndarray, B: int, rng) -> np.ndarray:
    """(2,) delete-half jackknife standard errors of the edge statistics (see the module doc)."""
    child = par.positions(child_rows)
    rest = np.setdiff1d(np.arange(par.rows.size), child)
    kc, kr = max(2, (child.size + 1) // 2), (rest.size + 1) // 2
    ic = _subsets(rng, child, B, kc)
    ir = _subsets(rng, rest, B, kr) if kr else ic[:, :0]
    lp = par.vectors(np.concatenate([ic, ir], axis=1))
    theta = np.stack(edge_cosines(lp, par.vectors(ic)), axis=1)  # (B, 2)
    k, n = kc + kr, child.size + rest.size
    factor = k / (n - k) if n > k else np.nan
    return np.sqrt(factor * np.nanmean((theta - np.nanmean(theta, axis=0)) ** 2, axis=0))


def _compare(obs: float, null: np.ndarray, name: str, orthogonality: bool) -> dict:
    """Empirical and normal-approximation p-values of one edge statistic against one null."""
    from scipy.special import ndtr  # standard normal cdf

    null = null[np.isfinite(null)]
    n = null.size
    mu, sd = (float(null.mean()), float(null.std(ddof=1))) if n > 1 else (np.nan, np.nan)
    if orthogonality:
        stat, o = np.abs(null), abs(obs)
        p_emp = (1 + np.sum(stat <= o)) / (n + 1)
        p_norm = ndtr((o - mu) / sd) - ndtr((-o - mu) / sd)  # P(|N(μ, σ²)| ≤ |obs|)
    else:
        stat = null
        p_emp = (1 + np.sum(stat >= obs)) / (n + 1)
        p_norm = ndtr((mu - obs) / sd)  # P(N(μ, σ²) ≥ obs)
    q = np.quantile(stat, [0.025, 0.975]) if n else [np.nan, np.nan]
    return {
        "null": name,
        "n": int(n),
        "mean": float(stat.mean()) if n else float("nan"),
        "q025": float(q[0]),
        "q975": float(q[1]),
        "p_value": float(p_emp),
        "p_normal": float(p_norm),
    }


# --------------------------------------------------------------------------------- nulls
def _null_subset(par: _Parent, n_child: int, B: int, rng) -> np.ndarray:
    ic = _subsets(rng, np.arange(par.rows.size), B, n_child)
    return np.stack(edge_cosines(par.vector, par.vectors(ic)), axis=1)


def _null_random_set(X, tree, B, rng, est, pool) -> np.ndarray:
    """(B, E, 2). One set of B random parents per real parent, shared by its edges (as the real
    edges share ℓ_parent); each child is a random subset of its random parent."""
    out = np.empty((B, len(tree.edges), 2))
    for p in sorted({p for p, _ in tree.edges}):
        ip = _subsets(rng, pool, B, tree.members[p].size)
        lp = _vectors(X, ip, est)
        for e, (q, c) in enumerate(tree.edges):
            if q == p:
                lc = _vectors(X, ip[:, : tree.members[c].size], est)
                out[:, e] = np.stack(edge_cosines(lp, lc), axis=1)
    return out


def _null_unrelated(X, tree, e, B, rng, est, lv) -> tuple[np.ndarray, str | None]:
    p, c = tree.edges[e]
    n_c = tree.members[c].size
    lineage = tree.lineage(p)
    cands = []
    for j in range(len(tree.names)):
        if j in lineage:
            continue
        rows = np.setdiff1d(tree.members[j], tree.members[p])
        if rows.size >= 2:
            cands.append(rows)
    if not cands:
        return np.full((0, 2), np.nan), "no category outside the parent's lineage"
    which = rng.integers(0, len(cands), B)
    out = np.empty((B, 2))
    short = False
    for j, rows in enumerate(cands):
        sel = np.flatnonzero(which == j)
        if not sel.size:
            continue
        n = min(n_c, rows.size)
        short |= n < n_c
        lc = _vectors(X, _subsets(rng, rows, sel.size, n), est)
        out[sel] = np.stack(edge_cosines(lv[p], lc), axis=1)
    return out, ("some unrelated categories are smaller than the child" if short else None)


def _null_shuffled(X, tree, B, rng, est, pool) -> np.ndarray:
    """(B, n_edges, 2): one injective map of all category rows into ``pool`` per draw."""
    used = np.unique(np.concatenate(tree.members))
    images = _subsets(rng, pool, B, used.size)  # (B, |used|): image of used[k] in draw b
    local = [np.searchsorted(used, m) for m in tree.members]
    L = np.stack([_vectors(X, images[:, loc], est) for loc in local], axis=1)  # (B, k, d)
    pe = np.array([p for p, _ in tree.edges])
    ce = np.array([c for _, c in tree.edges])
    return np.stack(edge_cosines(L[:, pe], L[:, ce]), axis=2)


# --------------------------------------------------------------------------------- analysis
def analyze_tree(
    X: np.ndarray,
    tree: CategoryTree,
    *,
    estimator: Estimator = "lda",
    word_pool: np.ndarray | None = None,
    normal_pool: np.ndarray | None = None,
    n_null: int = 200,
    n_boot: int = 200,
    seed: int = 0,
    nulls: Sequence[str] = NULLS,
) -> HierarchyAnalysis:
    """Edge cosines, intervals, nulls and per-parent simplices of one category tree.

    Args:
        X: (U, d) token coordinates (causal coordinates for Park et al.'s estimator).
        tree: categories (index sets into X) and edges.
        estimator: ``"lda"`` or ``"mean"`` (:func:`~.categorical.category_vectors`).
        word_pool: rows of X the random-set null draws from (default: all rows).
        normal_pool: rows of X the shuffled null maps tokens into (default: all rows).
        n_null: draws per null and edge. n_boot: jackknife replicates per edge (the interval).
        seed: seed of every draw (same seed → same numbers).
        nulls: which of :data:`NULLS` to run.

    Returns:
        :class:`HierarchyAnalysis`.

    BLAS runs single-threaded inside: the work is many small batched products and solves, for
    which threads only add contention (24× slower solves on a loaded 2-core machine).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _analyze_tree(
            np.asarray(X, dtype=np.float64),
            tree,
            estimator,
            word_pool,
            normal_pool,
            n_null,
            n_boot,
            seed,
            nulls,
        )


def _analyze_tree(
    X, tree, estimator, word_pool, normal_pool, n_null, n_boot, seed, nulls
) -> HierarchyAnalysis:
    bad = [n for n in nulls if n not in NULLS]
    if bad:
        raise InputError(f"unknown hierarchy null(s) {bad}; use some of {list(NULLS)}")
    if not tree.edges:
        raise InputError("the hierarchy has no parent → child edges; add lines to hierarchy.txt")
    U = X.shape[0]
    word_pool = np.arange(U) if word_pool is None else np.asarray(word_pool, np.int64)
    normal_pool = np.arange(U) if normal_pool is None else np.asarray(normal_pool, np.int64)
    rng = np.random.default_rng(seed)
    lv = np.stack([category_vectors(X[m], estimator) for m in tree.members])  # (k, d)
    E = len(tree.edges)
    pe = np.array([p for p, _ in tree.edges])
    ce = np.array([c for _, c in tree.edges])
    obs = np.stack(edge_cosines(lv[pe], lv[ce]), axis=1)  # (E, 2)
    parents = {p: _Parent(X, tree, p, estimator) for p in np.unique(pe)}
    draws: dict[str, np.ndarray] = {}  # null → (n_null, E, 2)
    notes: dict[int, list[str]] = {e: [] for e in range(E)}
    for name in nulls:
        if name == "shuffled":
            draws[name] = _null_shuffled(X, tree, n_null, rng, estimator, normal_pool)
            continue
        if name == "random_set":
            draws[name] = _null_random_set(X, tree, n_null, rng, estimator, word_pool)
            continue
        per = []
        for e in range(E):
            if name == "subset":
                n_c = tree.members[ce[e]].size
                per.append(_null_subset(parents[pe[e]], n_c, n_null, rng))
            else:
                d, note = _null_unrelated(X, tree, e, n_null, rng, estimator, lv)
                per.append(d if d.shape[0] else np.full((n_null, 2), np.nan))
                if note:
                    notes[e].append(f"unrelated null: {note}")
        draws[name] = np.stack(per, axis=1)
    sds = [_jackknife_sd(parents[p], tree.members[c], n_boot, rng) for p, c in tree.edges]
    edges = _edge_results(tree, obs, draws, sds, estimator, notes)
    return HierarchyAnalysis(
        estimator=estimator,
        edges=edges,
        parents=_parent_results(tree, parents, lv, n_null, rng),
        mean_abs_cos_childdiff=float(np.mean(np.abs(obs[:, 0]))),
        mean_cos_child=float(np.mean(obs[:, 1])),
        summary_nulls={k: _summary(k, obs, v) for k, v in draws.items()},
        n_null=n_null,
        n_boot=n_boot,
        seed=seed,
    )


def _edge_results(tree, obs, draws, sds, est, notes) -> tuple[EdgeResult, ...]:
    E = obs.shape[0]
    comps: dict[tuple[str, int], list[dict]] = {}
    for name, d in draws.items():
        for s, ortho in ((0, True), (1, False)):
            rows = [_compare(obs[e, s], d[:, e, s], name, ortho) for e in range(E)]
            adj = holm([r["p_normal"] for r in rows])
            for r, a in zip(rows, adj, strict=True):
                r["p_holm"] = float(a)
                r["beats"] = bool(a < 0.05)
            comps[(name, s)] = rows
    out = []
    for e, (p, c) in enumerate(tree.edges):
        ci = np.stack([obs[e] - 1.96 * sds[e], obs[e] + 1.96 * sds[e]])  # (2: lo/hi, 2: stats)
        out.append(
            EdgeResult(
                parent=tree.names[p],
                child=tree.names[c],
                n_words=int(tree.members[c].size),
                n_parent_words=int(tree.members[p].size),
                estimator=est,
                cos_parent_childdiff=float(obs[e, 0]),
                cos_parent_childdiff_ci=(float(ci[0, 0]), float(ci[1, 0])),
                cos_parent_child=float(obs[e, 1]),
                cos_parent_child_ci=(float(ci[0, 1]), float(ci[1, 1])),
                orthogonality={n: NullComparison(**comps[(n, 0)][e]) for n in draws},
                alignment={n: NullComparison(**comps[(n, 1)][e]) for n in draws},
                notes=tuple(notes[e]),
            )
        )
    return tuple(out)


def _summary(name: str, obs: np.ndarray, d: np.ndarray) -> SummaryNull:
    """Mean over edges vs the null's per-draw means over edges (draws with a NaN edge dropped)."""
    ok = np.all(np.isfinite(d), axis=(1, 2))
    d = d[ok]
    ortho = np.abs(d[:, :, 0]).mean(axis=1)
    align = d[:, :, 1].mean(axis=1)
    o, a = float(np.mean(np.abs(obs[:, 0]))), float(np.mean(obs[:, 1]))
    n = int(d.shape[0])
    q = (lambda v: tuple(float(x) for x in np.quantile(v, [0.025, 0.975]))) if n else None
    return SummaryNull(
        null=name,
        n=n,
        mean_abs_cos_childdiff_null=float(ortho.mean()) if n else float("nan"),
        mean_abs_cos_childdiff_q=q(ortho) if n else (float("nan"),) * 2,
        p_orthogonality=float((1 + np.sum(ortho <= o)) / (n + 1)),
        mean_cos_child_null=float(align.mean()) if n else float("nan"),
        mean_cos_child_q=q(align) if n else (float("nan"),) * 2,
        p_alignment=float((1 + np.sum(align >= a)) / (n + 1)),
    )


def _sigma_ratios(par, sizes, sv, n_null, rng) -> tuple[float, np.ndarray]:
    """σ_min/σ_max of the children's simplex and of children replaced by random subsets of the
    parent's rows (same sizes). Two children give one singular value: the ratio is 1 by
    construction, so it is NaN with an empty null."""
    if len(sizes) < 3 or not sv[0] > 0:
        return float("nan"), np.zeros(0)
    rows = np.arange(par.rows.size)
    null_L = np.stack([par.vectors(_subsets(rng, rows, n_null, n)) for n in sizes], axis=1)
    nsv = simplex_singular_values(null_L)  # (n_null, k − 1)
    return float(sv[-1] / sv[0]), nsv[:, -1] / np.maximum(nsv[:, 0], 1e-300)


def _parent_results(tree, parents, lv, n_null, rng) -> tuple[ParentResult, ...]:
    out = []
    for p, par in parents.items():
        kids = tree.children(p)
        if len(kids) < 2:
            continue
        L = lv[kids]
        sv = simplex_singular_values(L)
        ratio, nratio = _sigma_ratios(par, [tree.members[c].size for c in kids], sv, n_null, rng)
        sib = sibling_cosines(lv[p], L)
        i, j = np.triu_indices(len(kids), 1)
        out.append(
            ParentResult(
                parent=tree.names[p],
                children=tuple(tree.names[c] for c in kids),
                estimator=par.est,
                sibling_cosines=tuple(
                    (tree.names[kids[a]], tree.names[kids[b]], float(s))
                    for a, b, s in zip(i, j, sib, strict=True)
                ),
                singular_values=tuple(float(s) for s in sv),
                affinely_independent=bool(sv[-1] > 1e-8 * sv[0]),
                sigma_ratio=ratio,
                sigma_ratio_null_mean=float(nratio.mean()) if nratio.size else float("nan"),
                sigma_ratio_null_p=float((1 + np.sum(nratio <= ratio)) / (nratio.size + 1))
                if nratio.size
                else float("nan"),
            )
        )
    return tuple(out)
