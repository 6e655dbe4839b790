"""Real-model statistics a referee expects: every summary against a null built the same way.

For a model's unembedding γ and its concepts (word pairs kept by the single-token filter), under each
inner product (Euclidean first: it is the paper's claim; then causal; then the random control):

* **Cross-concept summaries vs random word pairs** (:func:`cross_concept_nulls`): mean |cos| between
  concept directions, related-vs-unrelated block structure, and the cosine of each direction with the
  mean of γ, each compared with the same summary of directions built from as many random
  single-token word pairs per concept (i) drawn independently and (ii) with the concepts' own tokens
  relabelled into random words, so words shared within and between concepts stay shared.
* **Random inner products** (:func:`random_inner_product_draws`): the observed directions' summaries
  under many random inner products (a distribution, not one draw).
* **Leave-one-out test** (:func:`loo_tests`): each pair against the direction of the pairs sharing no
  word with it; a sign-flip permutation test over word clusters, Holm-adjusted across concepts;
  cluster-bootstrap intervals of the LOO cosine.
* **Alignment** (:func:`alignment_nulls`): cos(f̄_W, ḡ_W) against label permutations of the same
  contexts, Holm-adjusted.
* **Cross-fitted intervention** (:func:`cross_fitted_interventions`): at the final layer, adding
  α·s·ḡ'_W to λ(x) changes the log-odds of a pair by exactly α·s·⟨ḡ'_W, Δγ'⟩ for every context, the
  number the LOO projection measures. The claim is therefore the distribution of that number over
  held-out pairs, each scored with a direction estimated from pairs that share no word with it,
  on-target (the concept's own pairs) and off-target (every other concept's pairs).

Null sizes are options (:class:`StatisticsOptions`) and are written to the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .. import geometry as geo
from ..errors import InputError
from .concepts import ConceptTokens
from .records import INNER_NAMES, Record
from .vocab import Vocabulary

__all__ = [
    "StatisticsOptions",
    "ConceptVectors",
    "null_word_rows",
    "random_word_rows",
    "SummaryNulls",
    "CrossConceptNulls",
    "cross_concept_nulls",
    "RandomInnerDraws",
    "random_inner_product_draws",
    "LooTest",
    "loo_tests",
    "AlignmentNull",
    "alignment_nulls",
    "InterventionEffect",
    "cross_fitted_interventions",
    "ContextIntervention",
    "context_intervention",
    "context_token_pairs",
    "intended_word_ranks",
    "context_check",
    "ContextInputs",
    "ContextCheck",
    "RealModelStatistics",
    "compute_statistics",
    "ordered",
]


@dataclass(frozen=True)
class StatisticsOptions:
    """Sizes of the nulls (every one is reported next to its numbers).

    Attributes:
        n_null_draws: sets of random word-pair directions per null (each set: as many pairs per
            concept as the concept has).
        n_random_inner: random inner products.
        n_sign_flips: word-cluster sign flips per concept and inner product (LOO test).
        n_boot: cluster-bootstrap resamples.
        seed: seed of every draw.
    """

    n_null_draws: int = 200
    n_random_inner: int = 32
    n_sign_flips: int = 2000
    n_boot: int = 2000
    seed: int = 0


def ordered(names: Sequence[str]) -> list[str]:
    """Inner-product names in report order: Euclidean, causal, random, then any others."""
    first = [n for n in INNER_NAMES if n in names]
    return first + [n for n in names if n not in first]


def null_word_rows(vocab: Vocabulary) -> np.ndarray:
    """(V,) bool: the rows random word pairs are drawn from.

    The concept pairs' own filter (a single normal token spelled with the leading-space marker) and
    their alphabet (every built-in concept word is alphabetic): letters only after the marker, in any
    script (byte-level pieces are decoded first). This drops numbers, punctuation and code pieces that
    no concept pair contains.
    """
    from .vocab import byte_to_unicode

    words = vocab.word_tokens()
    if vocab.convention == "byte_bpe":
        inverse = {c: b for b, c in byte_to_unicode().items()}

        def text(t: str) -> str:
            raw = bytes(inverse.get(c, 0) for c in t[1:])
            return raw.decode("utf-8", errors="replace")
    else:
        cut = 1 if vocab.convention == "sentencepiece" else 0

        def text(t: str) -> str:
            return t[cut:]

    idx = np.flatnonzero(words)
    alpha = np.fromiter((text(vocab.tokens[i]).isalpha() for i in idx), dtype=bool, count=idx.size)
    out = np.zeros(len(vocab.tokens), dtype=bool)
    out[idx[alpha]] = True
    return out


def _test_json(t: geo.NullTest) -> dict[str, float | int]:
    return {k: (float(v) if k != "n_null" else int(v)) for k, v in t.to_dict().items()}


@dataclass(frozen=True)
class ConceptVectors:
    """The concepts' steering vectors, computed once and shared by every statistic.

    Attributes:
        names: the k concept names.
        pairs: k arrays (P_j, 2) of token ids (base y0, target y1).
        raw_means: (k, d) mean raw steering vector of each concept (mean_k γ(y1_k) − γ(y0_k)).
        deltas: inner-product name → k arrays (P_j, d) of steering vectors in its coordinates.
    """

    names: tuple[str, ...]
    pairs: tuple[np.ndarray, ...]
    raw_means: np.ndarray
    deltas: Mapping[str, tuple[np.ndarray, ...]]

    @classmethod
    def build(
        cls,
        gamma: np.ndarray,
        concepts: Sequence[ConceptTokens],
        inner: Mapping[str, geo.InnerProduct],
    ) -> ConceptVectors:
        """Steering vectors of every concept under every inner product (one pass per product)."""
        pairs = tuple(c.pairs for c in concepts)
        raw = [geo.steering_vectors(gamma, p) for p in pairs]
        deltas = {n: tuple(ip.transform_vectors(d) for d in raw) for n, ip in inner.items()}
        means = np.stack([d.mean(axis=0) for d in raw])
        return cls(tuple(c.name for c in concepts), pairs, means, deltas)


def _map_null(ip: geo.InnerProduct, vectors: np.ndarray) -> np.ndarray:
    """Null vectors (B, k, d) in an inner product's coordinates; float32 products (the null's
    cosines to ~1e-6, half the cost of float64 for B·k·d² work)."""
    if isinstance(ip, geo.EuclideanInnerProduct):
        return vectors
    return vectors.astype(np.float32) @ ip.sqrt_.astype(np.float32)


# ---------------------------------------------------------------------- cross-concept nulls
_SUMMARIES = tuple(f.name for f in fields(geo.CosineSummary) if f.name != "reference_cos")


@dataclass(frozen=True)
class SummaryNulls:
    """Each scalar cosine summary (fields of :class:`~linrep.geometry.CosineSummary`) vs one null."""

    mean_abs_offdiag: geo.NullTest
    within_abs: geo.NullTest
    between_abs: geo.NullTest
    ratio: geo.NullTest
    mean_abs_reference_cos: geo.NullTest
    mean_abs_offdiag_reference_removed: geo.NullTest

    @classmethod
    def compare(cls, observed: geo.CosineSummary, null: geo.CosineSummary) -> SummaryNulls:
        return cls(**{k: geo.null_test(getattr(observed, k), getattr(null, k)) for k in _SUMMARIES})

    def to_json(self) -> dict[str, dict]:
        return {k: _test_json(getattr(self, k)) for k in _SUMMARIES}


@dataclass(frozen=True)
class CrossConceptNulls:
    """One inner product's cross-concept summaries against random word-pair directions.

    Attributes:
        inner: inner-product name.
        random_pairs: vs independent random word pairs (as many per concept as it has).
        shared_words: vs the concepts' tokens relabelled into random words (shared words kept).
        mean_gamma_cos: (k,) cos(ḡ_W, mean of γ) in this inner product's coordinates.
        mean_gamma_z: (k,) that cosine over the sd of the same cosine for random word-pair
            directions of the concept's size; ``mean_gamma_p`` two-sided normal p; ``mean_gamma_p_holm``.
        n_draws: null draws.
    """

    inner: str
    random_pairs: SummaryNulls
    shared_words: SummaryNulls
    mean_gamma_cos: np.ndarray
    mean_gamma_z: np.ndarray
    mean_gamma_p: np.ndarray
    mean_gamma_p_holm: np.ndarray
    n_draws: int

    def to_json(self, names: Sequence[str]) -> dict:
        per = {
            n: {
                "cos": float(self.mean_gamma_cos[j]),
                "z": float(self.mean_gamma_z[j]),
                "p_value": float(self.mean_gamma_p[j]),
                "p_holm": float(self.mean_gamma_p_holm[j]),
            }
            for j, n in enumerate(names)
        }
        return {
            "random_word_pairs": self.random_pairs.to_json(),
            "shared_words": self.shared_words.to_json(),
            "mean_gamma": per,
            "n_draws": self.n_draws,
        }


def _mean_gamma_tests(obs: np.ndarray, null: np.ndarray):
    """z, two-sided normal p and Holm p of per-concept cosines (k,) against null draws (B, k)."""
    from scipy import stats

    z = (obs - null.mean(axis=0)) / null.std(axis=0, ddof=1)
    p = 2 * stats.norm.sf(np.abs(z))
    return z, p, geo.holm(p)


def cross_concept_nulls(
    gamma: np.ndarray,
    vectors: ConceptVectors,
    inner: Mapping[str, geo.InnerProduct],
    groups: Sequence[str],
    word_rows: np.ndarray,
    mean_gamma: np.ndarray,
    options: StatisticsOptions = StatisticsOptions(),
) -> dict[str, CrossConceptNulls]:
    """Observed cross-concept summaries vs random word-pair directions, per inner product.

    Args:
        gamma: (V, d) unembedding (rows of the random words are read from it).
        vectors: the concepts' steering vectors (:class:`ConceptVectors`).
        inner: fitted inner products by name.
        groups: (k,) related-group labels.
        word_rows: (V,) bool candidate rows of random words (:func:`null_word_rows`).
        mean_gamma: (d,) mean of γ (raw coordinates), the reference direction.
        options: null sizes and seed.

    Returns:
        inner-product name → :class:`CrossConceptNulls`, in :func:`ordered` order.
    """
    o = options
    sizes = [p.shape[0] for p in vectors.pairs]
    indep = geo.random_pair_means(gamma, sizes, o.n_null_draws, o.seed, rows=word_rows)
    relab = geo.relabelled_pair_means(
        gamma, vectors.pairs, o.n_null_draws, o.seed + 1, rows=word_rows
    )
    out = {}
    for name in ordered(list(inner)):
        ip = inner[name]
        ref = ip.transform_vectors(mean_gamma)
        obs = geo.cosine_summary(ip.transform_vectors(vectors.raw_means), groups, ref)
        n_ind = geo.cosine_summary(_map_null(ip, indep), groups, ref)
        n_rel = geo.cosine_summary(_map_null(ip, relab), groups, ref)
        z, p, ph = _mean_gamma_tests(obs.reference_cos, n_ind.reference_cos)
        out[name] = CrossConceptNulls(
            name,
            SummaryNulls.compare(obs, n_ind),
            SummaryNulls.compare(obs, n_rel),
            obs.reference_cos,
            z,
            p,
            ph,
            o.n_null_draws,
        )
    return out


@dataclass(frozen=True)
class RandomInnerDraws:
    """Summaries of the observed concept directions under R random inner products.

    Attributes:
        mean_abs_offdiag, within_abs, between_abs: (R,) one value per random inner product.
        log_sd: spread of the random inner products' log-eigenvalues.
    """

    mean_abs_offdiag: np.ndarray
    within_abs: np.ndarray
    between_abs: np.ndarray
    log_sd: float

    def to_json(self) -> dict:
        def dist(x: np.ndarray) -> dict[str, float]:
            q = np.quantile(x, [0.025, 0.5, 0.975])
            return {
                "mean": float(x.mean()),
                "sd": float(x.std(ddof=1)),
                "q025": float(q[0]),
                "q50": float(q[1]),
                "q975": float(q[2]),
            }

        return {
            "n_draws": int(self.mean_abs_offdiag.size),
            "log_sd": self.log_sd,
            "mean_abs_offdiag": dist(self.mean_abs_offdiag),
            "within_abs": dist(self.within_abs),
            "between_abs": dist(self.between_abs),
        }


def random_inner_product_draws(
    vectors: ConceptVectors,
    groups: Sequence[str],
    options: StatisticsOptions = StatisticsOptions(),
    log_sd: float = 1.0,
) -> RandomInnerDraws:
    """The observed directions' cross-concept summaries under many random inner products."""
    mapped = geo.random_inner_product_directions(
        vectors.raw_means, options.n_random_inner, options.seed + 2, log_sd
    )
    s = geo.cosine_summary(mapped, groups)
    return RandomInnerDraws(s.mean_abs_offdiag, s.within_abs, s.between_abs, log_sd)


# --------------------------------------------------------------------------------- LOO tests
@dataclass(frozen=True)
class LooTest(Record):
    """A concept's leave-one-out test under one inner product.

    Attributes:
        statistic: T = mean_k Δ_kᵀ ū_{−N(k)}, each pair against the pairs sharing no word with it.
        null_mean, null_sd: of T under word-cluster sign flips (null_sd is T's standard error).
        z: (T − null_mean) / null_sd.
        p_value: Monte-Carlo p of the flips; p_holm: Holm-adjusted across concepts.
        n_perm: flips. n_clusters: word clusters (the units flipped and resampled).
        loo_cosine: mean LOO cosine (all other pairs, as Park et al.); loo_cosine_ci: 95 %
            cluster-bootstrap interval over word clusters.
    """

    statistic: float
    null_mean: float
    null_sd: float
    z: float
    p_value: float
    p_holm: float
    n_perm: int
    n_clusters: int
    loo_cosine: float
    loo_cosine_ci: tuple[float, float]


def loo_tests(
    vectors: ConceptVectors,
    inner_names: Sequence[str] = ("euclidean", "causal"),
    options: StatisticsOptions = StatisticsOptions(),
) -> dict[str, dict[str, LooTest]]:
    """Sign-flip LOO tests with Holm across concepts, per inner product.

    Args:
        vectors: the concepts' steering vectors.
        inner_names: inner products to test (the random one is a control of the heatmaps only).
        options: flips, bootstrap size, seed.

    Returns:
        inner-product name → concept name → :class:`LooTest` (inner products in report order).
    """
    o = options
    out: dict[str, dict[str, LooTest]] = {}
    for name in ordered([n for n in inner_names if n in vectors.deltas]):
        rows = []
        for j, (D, p) in enumerate(zip(vectors.deltas[name], vectors.pairs, strict=True)):
            t = geo.loo_sign_flip_test(D, p, o.n_sign_flips, o.seed + j)
            cl = geo.word_clusters(p)
            ci = geo.cluster_bootstrap_interval(
                geo.loo_cosines(D), cl, n_boot=o.n_boot, seed=o.seed
            )
            rows.append((t, int(cl.max()) + 1, ci))
        p_holm = geo.holm([float(t.p_value) for t, _, _ in rows])
        out[name] = {
            n: LooTest(
                float(t.observed),
                float(t.null_mean),
                float(t.null_std),
                float(t.z),
                float(t.p_value),
                float(ph),
                t.n_null,
                n_cl,
                ci.mean,
                (ci.low, ci.high),
            )
            for n, (t, n_cl, ci), ph in zip(vectors.names, rows, p_holm, strict=True)
        }
    return out


# ---------------------------------------------------------------------------------- alignment
@dataclass(frozen=True)
class AlignmentNull(Record):
    """cos(f̄_W, ḡ_W) of one concept vs label permutations of its contexts (one inner product).

    The permutations are drawn by the embedding side (:mod:`linrep.llm.embedding`, with the
    analysis' direction estimator); this is their summary as the statistics report it.

    Attributes:
        cosine: observed alignment. null_mean, null_q95: of the permuted cosines; null_mean_abs:
        mean |permuted cosine|. p_value: (1 + #{null ≥ cosine}) / (n + 1); p_holm: Holm across
        the concepts with contexts. n_perm: permutations.
    """

    cosine: float
    null_mean: float
    null_q95: float
    null_mean_abs: float
    p_value: float
    p_holm: float
    n_perm: int


def alignment_nulls(embedding_concepts: Sequence) -> dict[str, dict[str, AlignmentNull]]:
    """The label-permutation nulls of an embedding side, per inner product (report order).

    Args:
        embedding_concepts: :class:`~linrep.llm.embedding.EmbeddingConcept` items (their
            ``alignment``: inner product → ``Alignment`` with the ``perm_*`` fields).

    Returns:
        inner-product name → concept → :class:`AlignmentNull` (concepts whose null was drawn).
    """
    out: dict[str, dict[str, AlignmentNull]] = {}
    for c in embedding_concepts:
        for ip, a in (c.alignment or {}).items():
            if a.perm_p_value is None:
                continue
            out.setdefault(ip, {})[c.name] = AlignmentNull(
                a.cosine,
                a.perm_null_mean,
                a.perm_null_q95,
                a.perm_null_mean_abs,
                a.perm_p_value,
                a.perm_p_holm,
                a.n_perm,
            )
    return {ip: out[ip] for ip in ordered(list(out))}


# ------------------------------------------------------------------------------ intervention
@dataclass(frozen=True)
class InterventionEffect(Record):
    """Cross-fitted final-layer intervention of one concept's direction (one inner product).

    Effects are log-odds changes per unit α (α in units of ``scale`` = mean ‖λ'(x)‖), exact and
    context-free at the final layer: s·⟨ū, Δγ'⟩ for a pair with steering vector Δγ', with ū estimated
    from the concept's pairs that share no word with the evaluated pair.

    Attributes:
        on_target: mean effect on the concept's own pairs; on_target_ci: 95 % cluster bootstrap
            (word clusters); on_target_frac_positive: share of its pairs moved toward the target.
        off_target: mean over the other concepts W' of |mean effect on the pairs of W'| (as before
            cross-fitting); off_target_max, off_target_max_name: the largest one and its concept.
        off_target_pair_abs: mean |effect| over every other concept's pairs (per-pair collateral).
        ratio: on_target / off_target. n_pairs, n_off_pairs: evaluated pairs.
        mean_effects: (k,) mean effect on the pairs of every concept, in concept order (the row of
            the intervention matrix; its own entry is ``on_target``).
    """

    on_target: float
    on_target_ci: tuple[float, float]
    on_target_frac_positive: float
    off_target: float
    off_target_max: float
    off_target_max_name: str
    off_target_pair_abs: float
    ratio: float
    n_pairs: int
    n_off_pairs: int
    mean_effects: tuple[float, ...]


def _effects(deltas: Sequence[np.ndarray], pairs: Sequence[np.ndarray], w: int, scale: float):
    """Per concept W', s·⟨ū_{W,−N(l)}, Δ_l⟩ for every pair l of W' (ū from W's pairs)."""
    allp = np.concatenate(pairs)
    allD = np.concatenate(deltas)
    u = geo.shared_out_directions(deltas[w], pairs[w], allp)
    eff = scale * np.sum(allD * u, axis=1)
    return np.split(eff, np.cumsum([p.shape[0] for p in pairs])[:-1])  # NaN: no pair left


def cross_fitted_interventions(
    vectors: ConceptVectors,
    inner_name: str,
    scale: float = 1.0,
    options: StatisticsOptions = StatisticsOptions(),
) -> dict[str, InterventionEffect]:
    """On- and off-target log-odds effects per unit α over held-out pairs (cross-fitted).

    Args:
        vectors: the concepts' steering vectors.
        inner_name: the inner product whose direction is added.
        scale: s (mean ‖λ'(x)‖ of the model's contexts, or 1).
        options: bootstrap size and seed.

    Returns:
        concept → :class:`InterventionEffect`.
    """
    pairs = list(vectors.pairs)
    deltas = list(vectors.deltas[inner_name])
    names = list(vectors.names)
    out = {}
    for w, name in enumerate(names):
        eff = _effects(deltas, pairs, w, scale)
        ci = geo.cluster_bootstrap_interval(  # drops NaN effects with their labels
            eff[w], geo.word_clusters(pairs[w]), n_boot=options.n_boot, seed=options.seed
        )
        on = eff[w][np.isfinite(eff[w])]
        eff = [e[np.isfinite(e)] for e in eff]
        others = [(n, e) for n, e in zip(names, eff, strict=True) if n != name and e.size]
        means = np.array([abs(e.mean()) for _, e in others])
        pair_abs = np.abs(np.concatenate([e for _, e in others])) if others else np.zeros(0)
        j = int(np.argmax(means)) if means.size else -1
        off = float(means.mean()) if means.size else float("nan")
        out[name] = InterventionEffect(
            float(on.mean()),
            (ci.low, ci.high),
            float((on > 0).mean()),
            off,
            float(means[j]) if j >= 0 else float("nan"),
            others[j][0] if j >= 0 else "",
            float(pair_abs.mean()) if pair_abs.size else float("nan"),
            float(on.mean() / off) if off > 0 else float("nan"),
            int(on.size),
            int(pair_abs.size),
            tuple(float(e.mean()) if e.size else float("nan") for e in eff),
        )
    return out


@dataclass(frozen=True)
class ContextIntervention(Record):
    """Cross-fitted intervention over one concept's held-out contexts (final layer).

    Contexts are split into word-disjoint folds (:func:`~linrep.geometry.cross_fit_folds`); each
    fold is steered with the unit direction of the concept's pairs that share no word with the
    fold's contexts. Log-odds are target vs base word of each context's pair.

    Attributes:
        alphas: (A,) steps in units of ``scale``.
        effect_per_alpha: mean log-odds change per unit α over the contexts (context-free per pair).
        frac_target_over_base: (A,) share of base-side contexts whose target word beats the base
            word after the step (α = 0: the model's own preference).
        n_contexts: contexts used.
        n_base_contexts: base-side contexts.
        n_folds: cross-fitting folds.
    """

    alphas: tuple[float, ...]
    effect_per_alpha: float
    frac_target_over_base: tuple[float, ...]
    n_contexts: int
    n_base_contexts: int
    n_folds: int


def context_intervention(
    gamma: np.ndarray,
    final_states: np.ndarray,
    context_pairs: np.ndarray,
    sides: np.ndarray,
    pairs: np.ndarray,
    deltas: np.ndarray,
    ip: geo.InnerProduct,
    scale: float,
    alphas: Sequence[float],
    n_folds: int = 5,
    seed: int = 0,
) -> ContextIntervention:
    """Steer held-out contexts with word-disjoint (cross-fitted) directions; only two logits needed.

    Args:
        gamma: (V, d) unembedding.
        final_states: (n, d) final-layer λ(x) of the contexts (raw coordinates).
        context_pairs: (n, 2) token ids (base word, target word) of each context's pair.
        sides: (n,) 0 = the context calls for the base word, 1 = for the target word.
        pairs: (P, 2) the concept's pairs, which estimate the directions.
        deltas: (P, d) their steering vectors in the coordinates of ``ip``.
        ip: the inner product whose direction is added.
        scale: s, the length of a unit α.
        alphas: the α grid.
        n_folds: cross-fitting folds.
        seed: fold assignment seed.

    Returns:
        :class:`ContextIntervention`.
    """
    cp = geo.check_pairs(context_pairs, gamma.shape[0])
    F = np.asarray(final_states, dtype=np.float64)
    D = np.asarray(deltas, dtype=np.float64)
    dg = geo.steering_vectors(gamma, cp)  # raw Δγ of each context's pair
    base_lo = np.sum(F * dg, axis=1)  # log-odds target vs base at α = 0
    slope = np.full(cp.shape[0], np.nan)
    folds = geo.cross_fit_folds(cp, pairs, n_folds=n_folds, seed=seed)
    for f in folds:
        if f.est_idx.size == 0:
            continue
        v = ip.transform_vectors(geo.concept_direction(D[f.est_idx])) * scale  # raw embedding step
        slope[f.eval_idx] = dg[f.eval_idx] @ v
    ok = np.isfinite(slope)
    base = ok & (np.asarray(sides) == 0)
    a = np.asarray(alphas, dtype=np.float64)
    after = base_lo[base][None, :] + a[:, None] * slope[base][None, :]  # (A, n_base)
    return ContextIntervention(
        tuple(float(x) for x in a),
        float(slope[ok].mean()) if ok.any() else float("nan"),
        tuple(float(x) for x in (after > 0).mean(axis=1)) if base.any() else (),
        int(ok.sum()),
        int(base.sum()),
        len(folds),
    )


# --------------------------------------------------------------------------- context helpers
def context_token_pairs(
    pairs_words: Sequence[tuple[str, str]],
    context_words: Sequence[str],
    sides: Sequence[int],
    vocab: Vocabulary,
    leading_space: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Token pair (base, target) of each context: its word and that word's counterpart.

    A base-side context calls for a base word b (counterpart: its target in the concept's pairs), a
    target-side context for a target word t (counterpart: its base).

    Args:
        pairs_words: the concept's (base, target) word pairs.
        context_words: (n,) the word each context calls for.
        sides: (n,) 0 = base side, 1 = target side.
        vocab: the model's vocabulary (single-token lookup).
        leading_space: spell words with the leading-space marker.

    Returns:
        ``pairs`` (m, 2) token ids and ``rows`` (m,) indices of the contexts that have both tokens.
    """
    to_target = dict(pairs_words)
    to_base = {t: b for b, t in pairs_words}
    out, rows = [], []
    for i, (w, s) in enumerate(zip(context_words, sides, strict=True)):
        b, t = (w, to_target.get(w)) if s == 0 else (to_base.get(w), w)
        ib = vocab.token_id(b, leading_space) if b else None
        it = vocab.token_id(t, leading_space) if t else None
        if ib is not None and it is not None and ib != it:
            out.append((ib, it))
            rows.append(i)
    return np.asarray(out, dtype=np.int64).reshape(-1, 2), np.asarray(rows, dtype=np.int64)


def intended_word_ranks(
    final_states: np.ndarray, gamma: np.ndarray, tokens: np.ndarray, normal: np.ndarray, chunk=64
) -> np.ndarray:
    """Rank (1 = most likely) of each context's intended next token among the normal tokens.

    Logits f(x)ᵀγ(y) in γ's dtype, ``chunk`` contexts at a time (memory chunk · V).

    Args:
        final_states: (n, d) final-layer λ(x). gamma: (V, d). tokens: (n,) intended token ids.
        normal: (V,) bool mask of the tokens ranked.

    Returns:
        (n,) int64 ranks.
    """
    g = np.asarray(gamma)
    F = np.asarray(final_states).astype(g.dtype)
    tok = np.asarray(tokens, dtype=np.int64)
    out = np.empty(tok.size, dtype=np.int64)
    for s in range(0, tok.size, chunk):
        logits = F[s : s + chunk] @ g.T  # (c, V)
        own = logits[np.arange(logits.shape[0]), tok[s : s + chunk]]
        out[s : s + chunk] = 1 + ((logits > own[:, None]) & normal[None, :]).sum(axis=1)
    return out


# ------------------------------------------------------------------------------- aggregate
@dataclass(frozen=True)
class ContextInputs:
    """The embedding side of the paired contexts, as read from the model.

    Attributes:
        final_states: concept → (n, d) final post-norm states (interventions, next-word ranks).
        labels: concept → (n,) 0 (base side) / 1 (target side).
        words: concept → the n words the contexts call for.
    """

    final_states: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    words: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class ContextCheck(Record):
    """Does the model expect the word each context was written for? (final layer)

    Attributes:
        n_contexts: contexts whose word is a single token. n_top1, n_top5: contexts whose word ranks
        first / in the top 5 among the normal tokens. median_rank.
    """

    n_contexts: int
    n_top1: int
    n_top5: int
    median_rank: float


@dataclass(frozen=True)
class RealModelStatistics:
    """Every real-model statistic of :mod:`linrep.llm.statistics` for one model (results key
    ``statistics``; the random-word-pair baseline of mean |offdiag| also at ``null_mean_abs_offdiag``).

    Attributes:
        names: concept names (order of every per-concept array).
        options: null sizes and seed.
        n_word_rows: candidate rows of the random word pairs; word_rows_kind: which rows
            (``"letter words"``: the pairs' filter and letters only; ``"words"``; ``"normal tokens"``).
        cross: inner product → :class:`CrossConceptNulls` (Euclidean first).
        random_inner: :class:`RandomInnerDraws`.
        loo: inner product → concept → :class:`LooTest`.
        interventions: inner product → concept → :class:`InterventionEffect` (held-out pairs).
        scales: inner product → s, the unit of α (mean ‖λ'(x)‖, 1 without contexts).
        alignment: inner product → concept → :class:`AlignmentNull` (empty without contexts).
        contexts: inner product → concept → :class:`ContextIntervention` (empty without contexts).
        context_check: :class:`ContextCheck` or None.
        pair_counts: kept pairs over the concepts: ``total``, ``min`` (and ``min_concept``), ``max``.
    """

    key = "statistics"
    names: tuple[str, ...]
    options: StatisticsOptions
    n_word_rows: int
    word_rows_kind: str
    cross: Mapping[str, CrossConceptNulls]
    random_inner: RandomInnerDraws
    loo: Mapping[str, Mapping[str, LooTest]]
    interventions: Mapping[str, Mapping[str, InterventionEffect]]
    scales: Mapping[str, float]
    alignment: Mapping[str, Mapping[str, AlignmentNull]]
    contexts: Mapping[str, Mapping[str, ContextIntervention]]
    context_check: ContextCheck | None
    pair_counts: Mapping[str, int | str]

    def null_mean_abs_offdiag(self) -> dict[str, dict]:
        """Inner product → observed mean |offdiag| vs random word-pair directions (results key)."""
        return {k: _test_json(v.random_pairs.mean_abs_offdiag) for k, v in self.cross.items()}

    def to_json(self) -> dict:
        def nested(d: Mapping[str, Mapping[str, object]]) -> dict:
            return {k: {n: x.to_json() for n, x in v.items()} for k, v in d.items()}

        return {
            "options": asdict(self.options),
            "n_word_rows": self.n_word_rows,
            "word_rows_kind": self.word_rows_kind,
            "inner_product_order": list(self.cross),
            "cross_concept": {k: v.to_json(self.names) for k, v in self.cross.items()},
            "random_inner_products": self.random_inner.to_json(),
            "loo_test": nested(self.loo),
            "intervention": nested(self.interventions),
            "intervention_scale": dict(self.scales),
            "alignment_null": nested(self.alignment),
            "context_intervention": nested(self.contexts),
            "context_check": None if self.context_check is None else self.context_check.to_json(),
            "summary": self.summary(),
        }

    def summary(self) -> dict:
        """Headline numbers, one JSON key each (what the README quotes): per inner product the
        observed summaries with their nulls ({"mean", "ci"} = null mean and 2.5–97.5 % range), test
        counts after Holm, and the cross-fitted intervention ratio."""

        def band(t: geo.NullTest) -> dict:
            return {"mean": float(t.null_mean), "ci": [float(t.q025), float(t.q975)]}

        out: dict = {}
        for ip, c in self.cross.items():
            r, w = c.random_pairs, c.shared_words
            e: dict = {
                "mean_abs_offdiag": float(r.mean_abs_offdiag.observed),
                "random_word_pairs": band(r.mean_abs_offdiag),
                "shared_words": band(w.mean_abs_offdiag),
                "within_abs": float(r.within_abs.observed),
                "within_shared_words": band(w.within_abs),
                "between_abs": float(r.between_abs.observed),
                "between_random_word_pairs": band(r.between_abs),
                "between_shared_words": band(w.between_abs),
                "mean_abs_mean_gamma_cos": float(r.mean_abs_reference_cos.observed),
                "mean_gamma_cos_random_word_pairs": band(r.mean_abs_reference_cos),
                "n_mean_gamma_holm": int((c.mean_gamma_p_holm < 0.05).sum()),
            }
            if ip in self.loo:
                z = {n: t.z for n, t in self.loo[ip].items()}
                low = min(z, key=z.get)
                e |= {
                    "loo_n_holm": sum(t.p_holm < 0.05 for t in self.loo[ip].values()),
                    "loo_median_z": float(np.median(list(z.values()))),
                    "loo_min_z": float(z[low]),
                    "loo_min_z_concept": low,
                }
            if self.alignment.get(ip):
                al = list(self.alignment[ip].values())
                e |= {
                    "alignment_mean": float(np.mean([a.cosine for a in al])),
                    "alignment_null_mean_abs": float(np.mean([a.null_mean_abs for a in al])),
                    "alignment_max_null_q95": float(max(a.null_q95 for a in al)),
                    "alignment_n_holm": sum(a.p_holm < 0.05 for a in al),
                    "alignment_n": len(al),
                }
            if ip in self.interventions:
                ratio = [x.ratio for x in self.interventions[ip].values()]
                e["intervention_median_ratio"] = float(np.nanmedian(ratio))
            out[ip] = e
        ri = self.random_inner.mean_abs_offdiag
        out["random_inner_products"] = {
            "mean": float(ri.mean()),
            "ci": [float(q) for q in np.quantile(ri, [0.025, 0.975])],
        }
        out["pairs"] = dict(self.pair_counts)
        return out

    def add_to_report(self, rep) -> None:
        from .statistics_report import add_statistics_section

        add_statistics_section(rep, self)


def compute_statistics(
    gamma: np.ndarray,
    vocab: Vocabulary,
    normal: np.ndarray,
    concepts: Sequence[ConceptTokens],
    inner: Mapping[str, geo.InnerProduct],
    groups: Sequence[str],
    options: StatisticsOptions = StatisticsOptions(),
    *,
    contexts: ContextInputs | None = None,
    alignment: Mapping[str, Mapping[str, AlignmentNull]] | None = None,
    alphas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4),
    leading_space: bool = True,
    intervention_inner: Sequence[str] = ("euclidean", "causal"),
) -> RealModelStatistics:
    """All statistics of this module for one model.

    Args:
        gamma: (V, d) unembedding. vocab: its vocabulary. normal: (V,) normal-token mask.
        concepts: the kept concepts. inner: fitted inner products by name. groups: (k,) labels.
        options: null sizes and seed.
        contexts: final-layer states of the paired contexts (None: unembedding only).
        alignment: the embedding side's label-permutation nulls (:func:`alignment_nulls`), kept
            with the other statistics (None: none).
        alphas: intervention steps (units of mean ‖λ'(x)‖).
        leading_space: spelling of the context words.
        intervention_inner: inner products whose directions are added.

    Returns:
        :class:`RealModelStatistics`.
    """
    from threadpoolctl import threadpool_limits

    # one BLAS thread: most products here are small (P × P, k × d); with SmolLM2 on a loaded 2-core
    # machine all threads took 3× the CPU time and 3× the wall time of one thread. The next-word
    # check (one (contexts × V) product) runs afterwards on all threads.
    with threadpool_limits(limits=1):
        res = _compute(
            gamma,
            vocab,
            normal,
            concepts,
            inner,
            groups,
            options,
            contexts,
            alphas,
            leading_space,
            intervention_inner,
            dict(alignment or {}),
        )
    if contexts is None:  # one large product: all BLAS threads
        return res
    return replace(res, context_check=context_check(gamma, vocab, normal, contexts, leading_space))


def _compute(
    gamma,
    vocab,
    normal,
    concepts,
    inner,
    groups,
    o,
    contexts,
    alphas,
    leading_space,
    iv_inner,
    alignment,
) -> RealModelStatistics:
    vec = ConceptVectors.build(gamma, concepts, inner)
    need = np.unique(np.concatenate([p.ravel() for p in vec.pairs])).size
    rows, rows_kind = random_word_rows(vocab, normal, need)
    mean_gamma = np.asarray(gamma[normal], dtype=np.float64).mean(axis=0)
    cross = cross_concept_nulls(gamma, vec, inner, groups, rows, mean_gamma, o)
    rand = random_inner_product_draws(vec, groups, o)
    loo = loo_tests(vec, [n for n in inner if n != "random"], o)
    iv_names = ordered([n for n in iv_inner if n in inner])
    scales = {n: 1.0 for n in iv_names}
    ctx: dict = {}
    if contexts is not None:
        all_final = np.concatenate([np.asarray(f) for f in contexts.final_states.values()])
        scales = {
            n: float(np.linalg.norm(inner[n].transform_embedding(all_final), axis=1).mean())
            for n in iv_names
        }
        ctx = _context_side(
            gamma, vocab, concepts, vec, inner, contexts, scales, alphas, leading_space, o
        )
    ivs = {n: cross_fitted_interventions(vec, n, scales[n], o) for n in iv_names}
    return RealModelStatistics(
        vec.names,
        o,
        int(rows.sum()),
        rows_kind,
        cross,
        rand,
        loo,
        ivs,
        scales,
        alignment,
        ctx,
        None,  # the next-word check: see compute_statistics
        _pair_counts(vec),
    )


def _pair_counts(vec: ConceptVectors) -> dict[str, int | str]:
    sizes = {n: int(p.shape[0]) for n, p in zip(vec.names, vec.pairs, strict=True)}
    low = min(sizes, key=sizes.get)
    return {
        "total": sum(sizes.values()),
        "min": sizes[low],
        "min_concept": low,
        "max": max(sizes.values()),
    }


def random_word_rows(
    vocab: Vocabulary, normal: np.ndarray, need: int = 2
) -> tuple[np.ndarray, str]:
    """Rows random word pairs are drawn from, and which kind they are.

    Letter words (:func:`null_word_rows`: the concept pairs' filter and alphabet) when there are at
    least ``need`` of them, else any leading-space words, else the normal tokens (a vocabulary too
    small for the relabelling null, which gives every token the concepts use its own row).

    Returns:
        ((V,) bool mask, ``"letter words"`` | ``"words"`` | ``"normal tokens"``).
    """
    r = np.asarray(normal, dtype=bool)
    for kind, rows in (
        ("letter words", lambda: null_word_rows(vocab)),
        ("words", vocab.word_tokens),
        ("normal tokens", lambda: np.asarray(normal, dtype=bool)),
    ):
        r = rows()
        if r.sum() >= need:
            return r, kind
    raise InputError(f"the vocabulary has {int(r.sum())} normal tokens but {need} are needed")


def context_check(
    gamma: np.ndarray, vocab: Vocabulary, normal: np.ndarray, contexts: ContextInputs, ls: bool
) -> ContextCheck | None:
    """Ranks of the words the contexts were written for (single-token words only)."""
    toks, finals = [], []
    for name, F in contexts.final_states.items():
        single = [vocab.token_id(w, ls) for w in contexts.words[name]]
        keep = [i for i, t in enumerate(single) if t is not None]
        toks += [single[i] for i in keep]
        finals.append(np.asarray(F)[keep])
    if not toks:
        return None
    r = intended_word_ranks(np.concatenate(finals), gamma, np.asarray(toks), normal)
    return ContextCheck(int(r.size), int((r == 1).sum()), int((r <= 5).sum()), float(np.median(r)))


def _context_side(gamma, vocab, concepts, vec, inner, contexts, scales, alphas, ls, o):
    """Cross-fitted context interventions per inner product."""
    index = {n: j for j, n in enumerate(vec.names)}
    out: dict[str, dict[str, ContextIntervention]] = {n: {} for n in scales}
    for name, F in contexts.final_states.items():
        y = np.asarray(contexts.labels[name])
        words = list(contexts.words[name])
        if name not in index:
            continue
        j = index[name]
        cp, rows = context_token_pairs(concepts[j].words, words, y, vocab, ls)
        if rows.size == 0:
            continue
        for n in scales:
            out[n][name] = context_intervention(
                gamma,
                np.asarray(F)[rows],
                cp,
                y[rows],
                vec.pairs[j],
                vec.deltas[n][j],
                inner[n],
                scales[n],
                alphas,
                seed=o.seed,
            )
    return out
