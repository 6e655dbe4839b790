"""Embedding side of a real model: context representations λ(x) = f(x) and their alignment with γ.

For a concept W with paired contexts (base side y = 0, target side y = 1) and their hidden states
F: (n, d) at one layer, under an inner product with maps f ↦ f' = f M^{−1/2} (embedding side) and
g ↦ g' = g M^{1/2} (unembedding side) from :mod:`linrep.geometry`:

* embedding direction f̄_W: the estimator's unit direction on F' (default unit(mean F'[y=1] −
  mean F'[y=0]));
* alignment cos(f̄_W, ḡ_W) with the unembedding direction of the same concept, compared with
  (a) cos(f̄_W, ḡ_W') for the other concepts, (b) |cos| to random unit directions (≈ √(2/(π d))) and
  (c) the **label-permutation null**: the same estimator on the same contexts with the base/target
  labels permuted (group sizes kept), which is the baseline a referee expects — it keeps whatever
  direction all of the concept's contexts share;
* probe accuracy (cross-validated logistic regression on F) and the accuracy of the one-threshold
  probe sign(f'ᵀ ḡ'_W − midpoint), which uses the *unembedding* direction only (f'ᵀḡ'_W ∝
  fᵀ mean_k Δγ_k, the concept's mean logit difference, whatever the inner product).

Paper: Jiang et al. §5 / ``docs/experiments.md`` §4 (real LLMs, ii). The alignment is meaningful at
the final, post-norm layer, whose dot products with γ are the logits; at earlier layers it measures
how far the concept's direction there already points along ḡ_W.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import geometry as geo
from .estimators import DirectionEstimator, MeanDifference
from .records import Record

__all__ = [
    "Alignment",
    "AlignmentSummary",
    "EmbeddingConcept",
    "EmbeddingSide",
    "embedding_alignment",
    "alignment_null",
    "concept_alignment",
]


@dataclass(frozen=True)
class Alignment(Record):
    """cos(f̄_W, ḡ_W) of one concept under one inner product, with its three baselines.

    Attributes:
        cosine: the alignment.
        other_concepts_mean_abs, other_concepts_max_abs: |cos(f̄_W, ḡ_W')| over W' ≠ W.
        rank_among_concepts: 1 = the matching concept's ḡ is the most aligned.
        random_mean_abs, random_z, random_p_value: against random unit directions.
        perm_null_mean, perm_null_q95, perm_p_value: against the label-permutation null
            (one-sided, upper tail); perm_p_holm: Holm-adjusted across the concepts of one layer.
        perm_null_mean_abs: mean |cosine| under the permutations; n_perm: their number.
    """

    cosine: float
    other_concepts_mean_abs: float | None
    other_concepts_max_abs: float | None
    rank_among_concepts: int
    random_mean_abs: float
    random_z: float
    random_p_value: float
    perm_null_mean: float | None = None
    perm_null_q95: float | None = None
    perm_p_value: float | None = None
    perm_p_holm: float | None = None
    perm_null_mean_abs: float | None = None
    n_perm: int = 0


@dataclass(frozen=True)
class EmbeddingConcept(Record):
    """Embedding-side numbers of one concept at one layer."""

    name: str
    n_base: int
    n_target: int
    probe_accuracy: float | None
    unembedding_direction_probe_accuracy: float | None = None
    alignment: Mapping[str, Alignment] | None = None


@dataclass(frozen=True)
class AlignmentSummary(Record):
    """Means over concepts of :class:`Alignment` under one inner product."""

    mean_alignment: float
    mean_other_concepts_abs: float | None
    mean_random_abs: float
    mean_perm_null_q95: float | None
    n_rank1: int
    n_above_perm_q95: int
    n_concepts: int


@dataclass(frozen=True, eq=False)
class EmbeddingSide(Record):
    """The embedding side at one layer.

    Attributes:
        layer, n_layers: hidden-state index and the model's number of blocks (layer n = final).
        pooling: ``"last"`` token or ``"mean"`` over tokens.
        concepts: per concept with contexts.
        summary: inner product → :class:`AlignmentSummary`.
        alignment_rows: concepts with both contexts and an unembedding direction (matrix rows).
        alignment_matrix: inner product → ``(rows, k)`` cos(f̄_W, ḡ_W') for every concept W'.
        directions: inner product → ``(rows, d)`` unit embedding directions f̄'_W in its
            coordinates (raw steering vector: f̄'_W M^{1/2}, see :mod:`linrep.llm.directions`).
        contexts_without_concept: context files with no word-pair concept of that name.
    """

    layer: int
    n_layers: int
    pooling: str
    concepts: tuple[EmbeddingConcept, ...]
    summary: Mapping[str, AlignmentSummary]
    alignment_rows: tuple[str, ...]
    alignment_matrix: Mapping[str, np.ndarray]
    directions: Mapping[str, np.ndarray]
    contexts_without_concept: tuple[str, ...] = ()


def alignment_null(
    F: np.ndarray,
    y: np.ndarray,
    direction: np.ndarray,
    n_perm: int,
    seed: int,
    estimator: DirectionEstimator | None = None,
) -> np.ndarray:
    """Alignment cosines under permuted base/target labels: the null of cos(f̄_W, ḡ_W).

    The mean difference uses :func:`linrep.geometry.label_permutation_null` (vectorised); another
    estimator is refitted on each relabelling (same class sizes, uniformly random).

    Args:
        F: ``(n, d)`` states in the inner product's coordinates. y: ``(n,)`` 0/1 labels.
        direction: ``(d,)`` the unembedding direction ḡ_W (same coordinates).
        n_perm: permutations. seed: their seed. estimator: the direction estimator.

    Returns:
        ``(n_perm,)`` cosines.
    """
    if n_perm <= 0:
        return np.zeros(0)
    if estimator is None or type(estimator) is MeanDifference:
        return geo.label_permutation_null(F, y, direction, n_perm=n_perm, seed=seed)
    y = np.asarray(y).astype(int)
    order = np.argsort(np.random.default_rng(seed).random((n_perm, y.size)), axis=1)
    labels = (order < int(y.sum())).astype(int)
    g = geo.unit(direction)
    return np.array([type(estimator)().fit(F, yy).direction_ @ g for yy in labels])


def _baselines(same: float, cos_all: np.ndarray, j: int, rand: np.ndarray, fbar, null) -> Alignment:
    others = np.delete(cos_all, j)
    rcos = rand @ fbar
    n_random = rand.shape[0]
    has_null = null is not None and null.size > 0
    return Alignment(
        cosine=same,
        other_concepts_mean_abs=float(np.abs(others).mean()) if others.size else None,
        other_concepts_max_abs=float(np.abs(others).max()) if others.size else None,
        rank_among_concepts=int(1 + (cos_all > same).sum()),
        random_mean_abs=float(np.abs(rcos).mean()),
        random_z=float(same / rcos.std(ddof=1)),
        random_p_value=float((1 + (np.abs(rcos) >= abs(same)).sum()) / (n_random + 1)),
        perm_null_mean=float(null.mean()) if has_null else None,
        perm_null_q95=float(np.quantile(null, 0.95)) if has_null else None,
        perm_p_value=float((1 + (null >= same).sum()) / (null.size + 1)) if has_null else None,
        perm_null_mean_abs=float(np.abs(null).mean()) if has_null else None,
        n_perm=int(null.size) if has_null else 0,
    )


def concept_alignment(
    F: np.ndarray,
    y: np.ndarray,
    j: int,
    directions: Mapping[str, np.ndarray],
    inner: Mapping[str, geo.InnerProduct],
    rand: np.ndarray,
    *,
    estimator: DirectionEstimator,
    n_perm: int,
    seed: int,
) -> tuple[dict[str, Alignment], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Alignment of concept j's states F with every concept's ḡ, per inner product.

    Returns:
        (inner → :class:`Alignment`, inner → ``(k,)`` cosines with every concept's ḡ,
        inner → ``(d,)`` the embedding direction f̄'_W in its coordinates).
    """
    out, rows, fbars = {}, {}, {}
    for ip_name, D in directions.items():
        Fp = inner[ip_name].transform_embedding(F)
        fbar = estimator.fit(Fp, y).direction_
        cos_all = geo.unit(D) @ fbar
        null = alignment_null(Fp, y, D[j], n_perm, seed, estimator)
        out[ip_name] = _baselines(float(cos_all[j]), cos_all, j, rand, fbar, null)
        rows[ip_name], fbars[ip_name] = cos_all, fbar
    return out, rows, fbars


def _with_holm(per: list[EmbeddingConcept], ips: list[str]) -> list[EmbeddingConcept]:
    """Add Holm-adjusted permutation p-values across the concepts (per inner product)."""
    import dataclasses

    idx = [i for i, c in enumerate(per) if c.alignment]
    for ip in ips:
        p = np.array(
            [
                np.nan
                if per[i].alignment[ip].perm_p_value is None
                else per[i].alignment[ip].perm_p_value
                for i in idx
            ]
        )
        if p.size == 0 or np.isnan(p).all():
            continue
        adj = geo.holm(p)
        for i, a in zip(idx, adj, strict=True):
            al = dict(per[i].alignment)
            al[ip] = dataclasses.replace(al[ip], perm_p_holm=None if np.isnan(a) else float(a))
            per[i] = dataclasses.replace(per[i], alignment=al)
    return per


def _summary(per: Sequence[EmbeddingConcept], ip_name: str) -> AlignmentSummary | None:
    al = [c.alignment[ip_name] for c in per if c.alignment]
    if not al:
        return None
    others = [a.other_concepts_mean_abs for a in al if a.other_concepts_mean_abs is not None]
    q95 = [a.perm_null_q95 for a in al if a.perm_null_q95 is not None]
    return AlignmentSummary(
        mean_alignment=float(np.mean([a.cosine for a in al])),
        mean_other_concepts_abs=float(np.mean(others)) if others else None,
        mean_random_abs=float(np.mean([a.random_mean_abs for a in al])),
        mean_perm_null_q95=float(np.mean(q95)) if q95 else None,
        n_rank1=int(sum(a.rank_among_concepts == 1 for a in al)),
        n_above_perm_q95=int(
            sum(a.perm_null_q95 is not None and a.cosine > a.perm_null_q95 for a in al)
        ),
        n_concepts=len(al),
    )


def embedding_alignment(
    states: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    directions: Mapping[str, np.ndarray],
    concept_names: Sequence[str],
    inner: Mapping[str, geo.InnerProduct],
    *,
    layer: int,
    n_layers: int,
    pooling: str = "last",
    estimator: DirectionEstimator | None = None,
    n_random: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    probe_cv: int = 5,
    probes: bool = True,
) -> EmbeddingSide:
    """Embedding directions, their alignment with the unembedding directions, and probes.

    Args:
        states: concept → ``F: (n, d)`` hidden states of its contexts.
        labels: concept → ``(n,)`` 0 (base side) / 1 (target side).
        directions: inner product → ``(k, d)`` unembedding directions ḡ' in its coordinates.
        concept_names: the k concept names (rows of ``directions``).
        inner: fitted inner products by name.
        layer: hidden-state index the states come from (recorded).
        n_layers: the model's number of blocks (recorded).
        pooling: how the states were pooled (recorded).
        estimator: direction estimator (default mean difference).
        n_random: random directions of the random baseline.
        n_perm: label permutations.
        seed: seed of the random directions, permutations and probe folds.
        probe_cv: folds of the logistic-regression probe.
        probes: compute the probes.
    """
    estimator = estimator or MeanDifference()
    index = {n: i for i, n in enumerate(concept_names)}
    d = next(iter(states.values())).shape[1] if states else 0
    rand = geo.unit(np.random.default_rng(seed).standard_normal((n_random, d)))
    per, rows = [], []
    mats: dict[str, list] = {ip: [] for ip in directions}
    fdirs: dict[str, list] = {ip: [] for ip in directions}
    for name, F in states.items():
        y = np.asarray(labels[name])
        probe = geo.probe_accuracy(F, y, cv=probe_cv, seed=seed) if probes else None
        if name not in index:
            per.append(EmbeddingConcept(name, int((y == 0).sum()), int((y == 1).sum()), probe))
            continue
        j = index[name]
        al, cos_rows, fbars = concept_alignment(
            F, y, j, directions, inner, rand, estimator=estimator, n_perm=n_perm, seed=seed
        )
        ip0 = next(iter(directions))  # f'ᵀḡ'_W ∝ fᵀ mean Δγ_W under every inner product
        thr = geo.threshold_probe_accuracy(
            inner[ip0].transform_embedding(F) @ directions[ip0][j], y
        )
        per.append(EmbeddingConcept(name, int((y == 0).sum()), int((y == 1).sum()), probe, thr, al))
        rows.append(name)
        for ip_name in directions:
            mats[ip_name].append(cos_rows[ip_name])
            fdirs[ip_name].append(fbars[ip_name])
    per = _with_holm(per, list(directions))
    summary = {ip: s for ip in directions if (s := _summary(per, ip)) is not None}
    return EmbeddingSide(
        layer=layer,
        n_layers=n_layers,
        pooling=pooling,
        concepts=tuple(per),
        summary=summary,
        alignment_rows=tuple(rows),
        alignment_matrix={k: np.asarray(v) for k, v in mats.items() if v},
        directions={k: np.asarray(v).reshape(len(v), d) for k, v in fdirs.items()},
        contexts_without_concept=tuple(sorted(set(states) - set(concept_names))),
    )
