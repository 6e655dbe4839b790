"""Unembedding-side concept geometry of a real model (Park et al. 2023, ``docs/real-models.md``).

For each concept W with counterfactual word pairs (y0, y1), under an inner product ⟨·,·⟩_M:

* steering vectors Δγ_k = γ(y1) − γ(y0) and the concept direction ḡ_W = unit mean of the Δγ_k;
* leave-one-out cosine: mean_k cos(Δγ_k, mean_{l≠k} Δγ_l), with a bootstrap interval over pairs;
* LOO projection Δγ_kᵀ ū_{−k} vs the projections of single random word pairs on ḡ_W (Park et
  al.'s per-pair scale; the test of the mean is :mod:`linrep.llm.statistics`' sign-flip test);
* shuffled-unembedding null of the mean LOO cosine (token identities permuted);
* cross-concept cosine matrices cos(ḡ_W, ḡ_W'), their mean |off-diagonal| and block structure
  (related concepts such as verb inflections or languages vs unrelated pairs);
* analogy accuracy within a concept (3CosAdd over the word tokens, Euclidean as in the classic test).

All the geometry is :mod:`linrep.geometry`; this module feeds it a real unembedding and returns the
typed :class:`UnembeddingGeometry`. One small function per statistic, so a new statistic is one new
function and one new field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import geometry as geo
from .cache import ModelCache
from .concepts import ConceptTokens, TokenFilter
from .records import TESTED_INNER, NullComparison, Record
from .unembedding import Unembedding

__all__ = [
    "DEFAULT_GROUPS",
    "concept_groups",
    "fitted_inner_products",
    "analyze_unembedding",
    "ConceptGeometry",
    "CrossConcept",
    "BlockStructure",
    "LooProjection",
    "UnembeddingGeometry",
]

#: Related-concept groups for the block-structure summary (Park et al.'s 27 concept names).
#: Concepts not listed form singleton groups ("unrelated" to every other concept).
DEFAULT_GROUPS: dict[str, list[str]] = {
    "verb inflections": [
        "verb - 3pSg",
        "verb - Ving",
        "verb - Ved",
        "Ving - 3pSg",
        "Ving - Ved",
        "3pSg - Ved",
    ],
    "verb derivations": ["verb - V + able", "verb - V + er", "verb - V + tion", "verb - V + ment"],
    "adjective forms": [
        "adj - un + adj",
        "adj - adj + ly",
        "adj - comparative",
        "adj - superlative",
    ],
    "languages": ["English - French", "French - German", "French - Spanish", "German - Spanish"],
}


def _norm_name(name: str) -> str:
    return "".join(name.lower().split())


def concept_groups(
    names: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Group label of each concept (its own name when it belongs to no group; spaces/case ignored)."""
    groups = DEFAULT_GROUPS if not groups else groups
    lookup = {_norm_name(m): g for g, members in groups.items() for m in members}
    return [lookup.get(_norm_name(n), n) for n in names]


# ----------------------------------------------------------------------------- typed results
@dataclass(frozen=True)
class LooProjection(NullComparison):
    """Mean LOO projection vs single random word pairs (Park et al.'s per-pair scale), plus the
    share of pairs above the null's 99th percentile. Its z compares a mean of P projections with the
    spread of single pairs, so it is not a test statistic: the test is ``statistics.loo_test``."""

    frac_pairs_above_null_q99: float = float("nan")


@dataclass(frozen=True)
class ConceptGeometry(Record):
    """Unembedding-side numbers of one concept (keys of the mappings: inner-product names).

    Attributes:
        name, group: concept and its related-concept group.
        n_pairs: single-token pairs used.
        token_filter: what the single-token filter kept and dropped (and encode disagreements).
        loo_cosine, loo_cosine_ci: mean LOO cosine and its 95 % bootstrap interval over pairs.
        same_concept_cosine: mean pairwise cosine of the Δγ.
        loo_projection: mean LOO projection vs random pairs (tested inner products).
        shuffled_null: mean LOO cosine vs shuffled unembeddings (empty when skipped).
        direction_norm: ‖mean_k Δγ_k‖ in each inner product's coordinates.
        analogy_accuracy, analogy_n_queries: 3CosAdd top-1 accuracy within the concept.
    """

    name: str
    group: str
    n_pairs: int
    token_filter: TokenFilter
    loo_cosine: Mapping[str, float]
    loo_cosine_ci: Mapping[str, tuple[float, float]]
    same_concept_cosine: Mapping[str, float]
    loo_projection: Mapping[str, LooProjection]
    shuffled_null: Mapping[str, NullComparison] = field(default_factory=dict)
    direction_norm: Mapping[str, float] = field(default_factory=dict)
    analogy_accuracy: float | None = None
    analogy_n_queries: int = 0


@dataclass(frozen=True)
class BlockStructure(Record):
    """Mean |cos| within related groups vs between groups (see :func:`linrep.geometry.block_structure`)."""

    within_abs_cosine: float
    between_abs_cosine: float
    ratio: float
    n_within: int
    n_between: int


@dataclass(frozen=True, eq=False)
class CrossConcept(Record):
    """Cross-concept geometry under one inner product.

    Attributes:
        inner_product: its name.
        cosine_matrix: ``(k, k)`` cos(ḡ_W, ḡ_W').
        mean_abs_offdiag: mean |cos| over W ≠ W'.
        block_structure: related groups vs the rest.
    """

    inner_product: str
    cosine_matrix: np.ndarray
    mean_abs_offdiag: float
    block_structure: BlockStructure


@dataclass(frozen=True, eq=False)
class UnembeddingGeometry:
    """Everything :func:`analyze_unembedding` measures (not serialised itself: its parts are).

    Attributes:
        concepts: one :class:`ConceptGeometry` per concept, in order.
        cross: inner product → :class:`CrossConcept`.
        directions: inner product → ``(k, d)`` unit directions ḡ'_W in its coordinates.
        deltas: inner product → k arrays ``(P_j, d)`` of Δγ' in its coordinates.
    """

    concepts: tuple[ConceptGeometry, ...]
    cross: Mapping[str, CrossConcept]
    directions: Mapping[str, np.ndarray]
    deltas: Mapping[str, list[np.ndarray]]


# ----------------------------------------------------------------------------- inner products
def _covariance_key(unemb: Unembedding) -> str:
    import hashlib

    h = hashlib.sha256(unemb.sha256.encode())
    h.update(np.packbits(unemb.normal).tobytes())
    return h.hexdigest()


def fitted_inner_products(
    unemb: Unembedding,
    names: Sequence[str] = ("euclidean", "causal", "random"),
    *,
    floor: float = 1e-10,
    seed: int = 0,
    cache: ModelCache | str | os.PathLike | bool | None = False,
) -> dict[str, geo.InnerProduct]:
    """Fitted :mod:`linrep.geometry` inner products for one model.

    The causal one is Cov(γ)⁻¹ with the centred float64 covariance over **normal tokens only**
    (token_type == 1: Gemma's 6,249 ``<unusedN>`` rows and control tokens are dropped) and
    geometry's relative eigenvalue floor. Its mean and covariance are a checked cache entry
    (``covariance/<key>``, key = model checksum + the normal-token mask), refitted with
    :meth:`~linrep.geometry.CausalInnerProduct.fit_covariance` on later runs.

    Args:
        unemb: the model's unembedding.
        names: which inner products.
        floor: relative eigenvalue floor of the causal inner product.
        seed: seed of the random inner product.
        cache: the model cache or a cache folder (False, the default: always refit).
    """
    out: dict[str, geo.InnerProduct] = {}
    for name in names:
        if name != "causal":
            out[name] = geo.get_inner_product(name, unemb.gamma, seed=seed)
        else:
            out[name] = _causal(unemb, floor, ModelCache.of(cache))
    return out


def _causal(unemb: Unembedding, floor: float, cache: ModelCache) -> geo.CausalInnerProduct:
    key = _covariance_key(unemb)
    ip = geo.CausalInnerProduct(floor=floor)
    entry = cache.load("covariance", key, key)
    if entry is not None:
        try:
            with np.load(entry / "covariance.npz") as z:
                return ip.fit_covariance(z["mean"], z["cov"], int(z["n_rows"]))
        except (OSError, ValueError, KeyError):
            pass  # unreadable although its checksum matched: refit
    ip.fit(unemb.gamma, rows=unemb.normal)

    def fill(tmp) -> None:  # a temporary folder, published by ModelCache.store
        np.savez(tmp / "covariance.npz", mean=ip.mean_, cov=ip.cov_, n_rows=ip.n_rows_)

    cache.store("covariance", key, key, fill)
    return ip


# ----------------------------------------------------------------------------- statistics
def _cross_concept(name: str, directions: np.ndarray, labels: Sequence[str]) -> CrossConcept:
    C = geo.cosine_matrix(directions)
    b = geo.block_structure(C, labels)
    return CrossConcept(name, C, float(geo.mean_abs_offdiag(C)), BlockStructure(**b))


def _random_pair_nulls(
    unemb: Unembedding, dirs: Mapping[str, np.ndarray], inner, n: int, seed: int
) -> dict[str, np.ndarray]:
    """``(n, k)`` random-pair projections per tested inner product, in one pass over random rows.

    The projection of Δ M^{1/2} on a unit u equals that of the raw Δ on w = u M^{1/2} (M^{1/2}
    symmetric): geometry's null runs on raw rows with the unit w, rescaled by ‖w‖ — no d × d product
    per random pair.
    """
    tested = list(dirs)
    if not tested:
        return {}
    ws = [inner[t].transform_vectors(dirs[t]) for t in tested]
    W = np.concatenate(ws)
    from .statistics import random_word_rows

    rows, _ = random_word_rows(unemb.vocab, unemb.normal)  # the same rows as every other null
    null = geo.random_pair_null(unemb.gamma, W, n=n, seed=seed, rows=rows)
    null = null * np.linalg.norm(W, axis=1)
    k = len(ws[0])
    return {t: null[:, i * k : (i + 1) * k] for i, t in enumerate(tested)}


def _loo_projection(deltas: np.ndarray, null: np.ndarray) -> LooProjection:
    proj = geo.loo_projections(deltas)
    t = NullComparison.from_test(geo.null_test(float(proj.mean()), null))
    q99 = float(np.quantile(null, 0.99))
    return LooProjection(**vars(t), frac_pairs_above_null_q99=float((proj > q99).mean()))


def _analogies(unemb: Unembedding, concepts, n_queries: int, seed: int) -> list[dict]:
    if n_queries <= 0:
        return [{"accuracy": None, "n_queries": 0} for _ in concepts]
    words = unemb.vocab.word_tokens()
    for c in concepts:  # kept pairs are single leading-space tokens already; be safe anyway
        words[c.pairs.ravel()] = True
    return geo.analogy_accuracy(
        unemb.gamma, [c.pairs for c in concepts], candidates=words, max_queries=n_queries, seed=seed
    )


def _per_concept(j, c, label, deltas, nulls, shuffled, n_boot, seed, analogy) -> ConceptGeometry:
    loo, ci, same, proj, shuf, norm = {}, {}, {}, {}, {}, {}
    for ip_name, ds in deltas.items():
        d = ds[j]
        norm[ip_name] = float(np.linalg.norm(d.mean(axis=0)))
        if ip_name not in nulls:
            continue
        cos = geo.loo_cosines(d)
        interval = geo.bootstrap_interval(cos, n_boot=n_boot, seed=seed)
        loo[ip_name], ci[ip_name] = float(cos.mean()), (interval.low, interval.high)
        same[ip_name] = float(geo.same_concept_cosine(d))
        proj[ip_name] = _loo_projection(d, nulls[ip_name][:, j])
        if ip_name in shuffled:
            test = geo.null_test(float(cos.mean()), shuffled[ip_name][:, j])
            shuf[ip_name] = NullComparison.from_test(test)
    return ConceptGeometry(
        name=c.name,
        group=label,
        n_pairs=c.n_pairs,
        token_filter=c.filter_report(),
        loo_cosine=loo,
        loo_cosine_ci=ci,
        same_concept_cosine=same,
        loo_projection=proj,
        shuffled_null=shuf,
        direction_norm=norm,
        analogy_accuracy=analogy["accuracy"],
        analogy_n_queries=int(analogy["n_queries"]),
    )


def analyze_unembedding(
    unemb: Unembedding,
    concepts: Sequence[ConceptTokens],
    inner: Mapping[str, geo.InnerProduct],
    *,
    n_random_pairs: int = 100_000,
    n_shuffles: int = 20,
    n_boot: int = 2000,
    analogy_queries: int = 20,
    groups: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> UnembeddingGeometry:
    """All unembedding-only measurements for a list of concepts.

    Args:
        unemb: the model's γ and vocabulary.
        concepts: concepts with their kept token pairs (each ≥ 2 pairs).
        inner: fitted inner products by name (:func:`fitted_inner_products`); LOO statistics and
            nulls are computed under the Euclidean and causal ones (random is only the heatmaps'
            control, as in Park et al.).
        n_random_pairs: size of the random-token-pair null.
        n_shuffles: shuffles of the shuffled-unembedding null (0 = skip).
        n_boot: bootstrap resamples of the LOO-cosine interval.
        analogy_queries: analogy queries per concept (0 = skip).
        groups: related-concept groups for the block structure (None = :data:`DEFAULT_GROUPS`).
        seed: seed of every random draw.
        progress: show a progress bar.
    """
    from ..progress import progress_bar

    names = [c.name for c in concepts]
    labels = concept_groups(names, groups)
    deltas = {
        n: [geo.steering_vectors(unemb.gamma, c.pairs, inner=ip) for c in concepts]
        for n, ip in inner.items()
    }
    dirs = {n: np.stack([geo.concept_direction(d) for d in ds]) for n, ds in deltas.items()}
    cross = {n: _cross_concept(n, D, labels) for n, D in dirs.items()}
    tested = {n: dirs[n] for n in TESTED_INNER if n in dirs}
    nulls = _random_pair_nulls(unemb, tested, inner, n_random_pairs, seed)
    shuffled = {}
    if n_shuffles > 0:
        for n in progress_bar(
            tested, desc="shuffled nulls", unit="inner product", enabled=progress
        ):
            shuffled[n] = geo.shuffled_unembedding_null(
                unemb.gamma,
                [c.pairs for c in concepts],
                n_shuffles=n_shuffles,
                seed=seed,
                rows=unemb.normal,
                inner=inner[n],
            )
    analogies = _analogies(unemb, concepts, analogy_queries, seed)
    per = tuple(
        _per_concept(j, c, labels[j], deltas, nulls, shuffled, n_boot, seed, analogies[j])
        for j, c in enumerate(concepts)
    )
    return UnembeddingGeometry(per, cross, dirs, deltas)
