"""``linrep llm``: the whole real-model analysis of one model, as one function.

Steps (each a module of this package): locate and verify the model (``registry``), read γ
(``unembedding``, cached), load the word pairs and keep single-token pairs (``concepts``), fit the
inner products and measure the unembedding geometry (``analysis``), then — when contexts are given —
load the full model once, read last-token hidden states (``hf_model``), measure the embedding side
(``embedding``) and the intervention (``intervention``), and write ``report.html`` +
``results.json`` (``report``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import section_from_dict
from ..errors import ConfigError, InputError

__all__ = ["LLMConfig", "run_llm", "analyze_model"]


@dataclass
class LLMConfig:
    """The ``[llm]`` section: what ``linrep llm`` measures and how.

    Attributes:
        model: built-in name (gemma-3-270m, smollm2-135m, qwen2.5-0.5b) or a GGUF file / HF folder.
        concepts: ``"builtin"`` (linrep's 27 word-pair lists) or a folder in Park et al.'s format.
        contexts: ``"builtin"``, a folder of ``[base - target].tsv`` files, or ``"none"`` (then the
            full model is never loaded: unembedding-only analysis).
        layer: hidden-state index for the embedding side; −1 = final post-norm state (what γ reads).
        leading_space: spell words with a leading space (``▁w``/``Ġw``), as inside a sentence.
        min_pairs: fewest single-token pairs a concept needs (LOO needs ≥ 2; 3 gives a spread).
        small_concepts: what to do with a concept below ``min_pairs``: ``"auto"`` = skip for the
            built-in lists, error for a user folder; ``"skip"``; ``"error"``.
        causal_floor: relative eigenvalue floor of the causal inner product (Cov over normal tokens).
        random_seed_inner: seed of the random inner product (the heatmaps' control).
        n_random_pairs: random token pairs of the LOO-projection null (Park et al.: 100,000).
        n_shuffles: shuffles of the shuffled-unembedding null (0 = skip; cost ∝ pairs × d²).
        n_boot: bootstrap resamples of the LOO-cosine intervals.
        analogy_queries: analogy queries per concept (0 = skip).
        alphas: intervention strengths α, in units of the mean ‖λ(x)‖ under ``intervention_inner``.
        intervention_inner: inner product whose direction is added (``"causal"`` as Park et al.).
        top_k: tokens per row of the intervention's top-k table.
        batch_size: contexts per forward pass.
        seed: seed of every random draw.
        blas_threads: BLAS threads; 0 = the BLAS default (all cores, fastest on an idle machine:
            3.7 s vs 5.5 s warm on Gemma with 2 cores); 1 is faster when other jobs load the cores.
        cache: cache folder ("" = ``$LINREP_CACHE`` or the user cache folder).
        use_cache: use the unembedding / covariance / float32-model cache.
        groups: related-concept groups for the block-structure summary ({} = the default groups).
        hierarchy: ``""`` (none), ``"builtin"`` or a hierarchy folder (``<category>.txt`` +
            ``hierarchy.txt``): categorical vectors and hierarchy-as-orthogonality with their nulls
            (:mod:`linrep.llm.hierarchy`, results.json section ``hierarchy``).
        hierarchy_n_null: draws per null and edge of the hierarchy analysis.
        hierarchy_min_words: fewest single-token words a category needs (≥ 2).
        n_null_draws: random word-pair direction sets per null of the cross-concept summaries.
        n_random_inner: random inner products of the random-inner-product distribution.
        n_sign_flips: word-cluster sign flips of the leave-one-out test (per concept, inner product).
        n_alignment_perms: label permutations of the alignment null (per concept, inner product).
    """

    model: str = "gemma-3-270m"
    concepts: str = "builtin"
    contexts: str = "builtin"
    layer: int = -1
    leading_space: bool = True
    min_pairs: int = 3
    small_concepts: Literal["auto", "skip", "error"] = "auto"
    causal_floor: float = 1e-10
    random_seed_inner: int = 0
    n_random_pairs: int = 100_000
    n_shuffles: int = 20
    n_boot: int = 2000
    analogy_queries: int = 20
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4])
    intervention_inner: Literal["euclidean", "causal"] = "causal"
    top_k: int = 5
    batch_size: int = 16
    seed: int = 0
    blas_threads: int = 0
    cache: str = ""
    use_cache: bool = True
    groups: dict[str, list[str]] = field(default_factory=dict)
    hierarchy: str = ""
    hierarchy_n_null: int = 200
    hierarchy_min_words: int = 5
    n_null_draws: int = 200
    n_random_inner: int = 32
    n_sign_flips: int = 2000
    n_alignment_perms: int = 2000

    def __post_init__(self) -> None:
        if self.min_pairs < 2:
            raise ConfigError(f"llm.min_pairs = {self.min_pairs}: LOO needs at least 2; use ≥ 2")
        for key in ("n_random_pairs", "n_boot"):
            if getattr(self, key) < 1:
                raise ConfigError(f"llm.{key} must be ≥ 1, got {getattr(self, key)}")
        for key in ("n_null_draws", "n_random_inner", "n_sign_flips", "n_alignment_perms"):
            if getattr(self, key) < 2:
                raise ConfigError(
                    f"llm.{key} must be ≥ 2 (a null needs draws), got {getattr(self, key)}"
                )
        if self.hierarchy_n_null < 2:
            raise ConfigError(f"llm.hierarchy_n_null must be ≥ 2, got {self.hierarchy_n_null}")
        for key in ("n_shuffles", "analogy_queries", "top_k", "batch_size", "blas_threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"llm.{key} must be ≥ 0, got {getattr(self, key)}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> LLMConfig:
        """Build from an ``[llm]`` table (unknown keys rejected with a suggestion)."""
        return section_from_dict(cls, raw, "llm")


INNER_NAMES = ("euclidean", "causal", "random")


def _select(cfg: LLMConfig, raw, unemb, progress: bool):
    from .concepts import select_pairs

    selected = [select_pairs(c, unemb.vocab, cfg.leading_space) for c in raw]
    builtin = cfg.concepts in ("", "builtin")
    policy = cfg.small_concepts
    if policy == "auto":
        policy = "skip" if builtin else "error"
    kept, skipped = [], []
    for c in selected:
        if c.n_pairs >= cfg.min_pairs:
            kept.append(c)
            continue
        if policy == "error":
            why = ", ".join(f"{k} {v}" for k, v in c.report()["dropped_by_reason"].items())
            raise InputError(
                f"concept '{c.name}' has {c.n_pairs} usable pairs for {unemb.model} (need "
                f"{cfg.min_pairs}; dropped: {why or 'none'}); add single-token pairs, remove the "
                'file, or set small_concepts = "skip"'
            )
        skipped.append(c)
    if progress:
        for c in selected:
            r = c.report()
            why = ", ".join(f"{k} {v}" for k, v in r["dropped_by_reason"].items())
            tag = "" if c in kept else "  (skipped: too few pairs)"
            print(f"  {c.name:24s} kept {c.n_pairs:4d}/{c.n_lines:<4d} {why}{tag}")
    if not kept:
        raise InputError(
            f"no concept has {cfg.min_pairs} or more single-token pairs for {unemb.model}; check "
            "the word lists or lower min_pairs"
        )
    return kept, skipped, selected


def _group_order(concepts, groups):
    """Related groups first (in their declared order, members in file order), then the others."""
    from .analysis import DEFAULT_GROUPS, concept_groups

    order = list((groups or DEFAULT_GROUPS).keys())
    labels = concept_groups([c.name for c in concepts], groups)
    rank = {g: i for i, g in enumerate(order)}
    keyed = sorted(
        range(len(concepts)), key=lambda i: (rank.get(labels[i], len(order)), concepts[i].name)
    )
    return [concepts[i] for i in keyed]


def analyze_model(cfg: LLMConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run every measurement of ``cfg`` on one model and return the results (nothing written).

    Returns:
        A dict with the JSON-able results (see :func:`run_llm`) plus ``"_arrays"`` (directions,
        inner products, unembedding) for figures.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cfg.blas_threads or None):
        return _analyze(cfg, progress)


def _analyze(cfg: LLMConfig, progress: bool) -> dict[str, Any]:
    from .. import geometry as geo
    from .analysis import analyze_unembedding, fitted_inner_products
    from .concepts import load_concepts
    from .contexts import load_contexts
    from .registry import resolve_model
    from .unembedding import load_unembedding

    cache = cfg.cache or None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # cheap input checks first: a bad folder must fail before a model is assembled or parsed
    raw_concepts = load_concepts(cfg.concepts)
    contexts = None if str(cfg.contexts).lower() == "none" else load_contexts(cfg.contexts)
    hierarchy_ext = _hierarchy_extension(cfg)  # a bad folder fails here, before any model work
    source = resolve_model(cfg.model, cache)
    unemb = load_unembedding(source, cache, use_cache=cfg.use_cache, progress=progress)
    timings["load_unembedding_s"] = time.perf_counter() - t0
    V, d = unemb.shape
    if progress:
        print(
            f"{source.name}: vocab {V:,} (normal {int(unemb.normal.sum()):,}), d = {d}, "
            f"{unemb.vocab.convention} tokens"
        )
    if contexts is not None and unemb.n_layers is not None:
        from .hf_model import resolve_layer

        resolve_layer(cfg.layer, unemb.n_layers)  # fail before minutes of work, not after
    t = time.perf_counter()
    if hierarchy_ext is not None:
        hierarchy_ext.check(unemb.vocab)  # too few single-token words: fail before the analysis
    kept, skipped, selected = _select(cfg, raw_concepts, unemb, progress)
    kept = _group_order(kept, cfg.groups or None)
    timings["select_pairs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    inner = fitted_inner_products(
        unemb,
        INNER_NAMES,
        floor=cfg.causal_floor,
        seed=cfg.random_seed_inner,
        cache=cache,
        use_cache=cfg.use_cache,
    )
    timings["inner_products_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res = analyze_unembedding(
        unemb,
        kept,
        inner,
        n_random_pairs=cfg.n_random_pairs,
        n_shuffles=cfg.n_shuffles,
        n_boot=cfg.n_boot,
        analogy_queries=cfg.analogy_queries,
        groups=cfg.groups or None,
        seed=cfg.seed,
        progress=progress,
    )
    timings["unembedding_analysis_s"] = time.perf_counter() - t
    names = res["concepts"]
    directions = res.pop("directions")
    for c in selected:
        if c.name in res["per_concept"]:
            res["per_concept"][c.name]["token_filter"] = c.report()
    out: dict[str, Any] = {
        "model": source.name,
        "model_info": {
            "name": source.name,
            "kind": source.kind,
            "path": str(source.path),
            "sha256": source.sha256,
            "vocab": V,
            "d": d,
            "n_normal_tokens": int(unemb.normal.sum()),
            "tokenizer_convention": unemb.vocab.convention,
            "causal_rank": int(inner["causal"].rank_),
        },
        **res,
        "skipped_concepts": {c.name: c.report() for c in skipped},
    }
    # ---- intervention: exact per-unit log-odds changes (context-free)
    ip_name = cfg.intervention_inner
    ip = inner[ip_name]
    deltas = [geo.steering_vectors(unemb.gamma, c.pairs, inner=ip) for c in kept]
    scale = 1.0
    embedding_res = None
    topk: dict[str, Any] = {}
    probs: dict[str, Any] = {}
    if contexts is not None:
        t = time.perf_counter()
        emb = _embedding_side(cfg, contexts, source, unemb, names, directions, inner, progress)
        timings.update(emb.pop("timings"))
        timings["embedding_side_s"] = time.perf_counter() - t
        embedding_res = emb["alignment"]
        scale = emb["scale"]
        F_final, ctx_sets = emb["final_states"], emb["context_sets"]
        for name, F in F_final.items():
            if name not in names:
                continue
            j = names.index(name)
            v = ip.transform_vectors(directions[ip_name][j]) * scale
            topk[name], probs[name] = _context_interventions(
                cfg, unemb, kept[j], ctx_sets[name], F, v
            )
    from .intervention import intervention_effects

    iv = intervention_effects(deltas, directions[ip_name], names, scale=scale)
    iv.update(
        {
            "inner_product": ip_name,
            "alphas": list(cfg.alphas),
            "units": "log-odds change per unit alpha; alpha in units of mean ||lambda'(x)||"
            if embedding_res is not None
            else "log-odds change per unit step along the unit direction (no contexts)",
            "topk": topk,
            "word_probabilities": probs,
        }
    )
    out["intervention"] = iv
    out["embedding"] = embedding_res
    t = time.perf_counter()
    stats = _statistics(
        cfg, unemb, kept, inner, res["groups"], emb if contexts is not None else None
    )
    out["statistics"] = stats  # a RealModelStatistics; the report serialises it
    out["null_mean_abs_offdiag"] = stats.null_mean_abs_offdiag()
    timings["statistics_s"] = time.perf_counter() - t
    if hierarchy_ext is not None:
        t = time.perf_counter()
        ctx = _HierarchyContext(unemb, inner)
        out["hierarchy"] = hierarchy_ext(ctx)  # a HierarchyResult; the report serialises it
        timings["hierarchy_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    out["timings"] = timings
    out["_arrays"] = {"directions": directions}
    return out


@dataclass(frozen=True)
class _HierarchyContext:
    """What :func:`linrep.llm.hierarchy.hierarchy_extension` reads from an analysis."""

    unembedding: Any
    inner: Any


def _hierarchy_extension(cfg: LLMConfig):
    if not cfg.hierarchy:
        return None
    from .hierarchy import HierarchyOptions, hierarchy_extension

    return hierarchy_extension(
        cfg.hierarchy,
        HierarchyOptions(
            n_null=cfg.hierarchy_n_null, min_words=cfg.hierarchy_min_words, seed=cfg.seed
        ),
    )


def _statistics(cfg: LLMConfig, unemb, kept, inner, groups, emb):
    """Every summary against its null (:func:`linrep.llm.statistics.compute_statistics`)."""
    from .statistics import ContextInputs, StatisticsOptions, compute_statistics

    opts = StatisticsOptions(
        cfg.n_null_draws,
        cfg.n_random_inner,
        cfg.n_sign_flips,
        cfg.n_alignment_perms,
        cfg.n_boot,
        cfg.seed,
    )
    contexts = None
    if emb is not None:
        cs = emb["context_sets"]
        labels = {n: np.asarray(c.labels) for n, c in cs.items()}
        words = {n: c.words for n, c in cs.items()}
        contexts = ContextInputs(emb["states"], emb["final_states"], labels, words)
    return compute_statistics(
        unemb.gamma,
        unemb.vocab,
        unemb.normal,
        kept,
        inner,
        [groups[c.name] for c in kept],
        opts,
        contexts=contexts,
        alphas=cfg.alphas,
        leading_space=cfg.leading_space,
    )


def _embedding_side(cfg, ctx, source, unemb, names, directions, inner, progress):
    from .embedding import embedding_alignment
    from .hf_model import last_token_states, load_causal_lm, n_layers, resolve_layer

    cache = cfg.cache or None
    timings = {}
    t = time.perf_counter()
    model, tok = load_causal_lm(source, cache, use_cache=cfg.use_cache, progress=progress)
    timings["load_model_s"] = time.perf_counter() - t
    n = n_layers(model)
    layer = resolve_layer(cfg.layer, n)
    t = time.perf_counter()
    states, final, labels = {}, {}, {}
    for name, cs in ctx.items():
        both = last_token_states(
            model,
            tok,
            cs.texts,
            [layer, n],
            batch_size=cfg.batch_size,
            progress=progress,
            desc=f"forward {name}",
        )
        states[name], final[name] = both
        labels[name] = np.asarray(cs.labels)
    timings["forward_s"] = time.perf_counter() - t
    del model
    ip = inner[cfg.intervention_inner]
    all_final = np.concatenate(list(final.values()))
    scale = float(np.linalg.norm(ip.transform_embedding(all_final), axis=1).mean())
    align = embedding_alignment(
        states, labels, directions, names, inner, seed=cfg.seed, n_random=2000
    )
    align["layer"] = layer
    align["n_layers"] = n
    align["contexts_without_concept"] = sorted(set(ctx) - set(names))
    return {
        "alignment": align,
        "scale": scale,
        "states": states,
        "final_states": final,
        "context_sets": ctx,
        "timings": timings,
    }


def _context_interventions(cfg, unemb, concept, cs, F, v):
    """Top-k table of the first base context; p(target word) vs p(base word) as α grows."""
    from .intervention import topk_table, word_probabilities

    y = np.asarray(cs.labels)
    base_rows = np.flatnonzero(y == 0)
    table = {
        "context": cs.texts[base_rows[0]],
        "rows": topk_table(
            F[base_rows[0]],
            unemb.gamma,
            v,
            cfg.alphas,
            unemb.vocab.display,
            unemb.normal,
            k=cfg.top_k,
        ),
    }
    counterpart = dict(concept.words)
    vocab = unemb.vocab
    rows, toks = [], []
    for i in base_rows:
        b = cs.words[i]
        t = counterpart.get(b)
        ib, it = (
            vocab.token_id(b, cfg.leading_space),
            (vocab.token_id(t, cfg.leading_space) if t else None),
        )
        if ib is not None and it is not None:
            rows.append(i)
            toks.append((ib, it))
    if not rows:
        return table, None
    lp = word_probabilities(
        F[rows], unemb.gamma, v, cfg.alphas, np.asarray(toks), unemb.normal
    )  # (A, n, 2)
    summary = {
        "n_contexts": len(rows),
        "mean_log_odds_change": [
            float((lp[a, :, 1] - lp[a, :, 0] - lp[0, :, 1] + lp[0, :, 0]).mean())
            for a in range(len(cfg.alphas))
        ],
        "mean_p_base": [float(np.exp(lp[a, :, 0]).mean()) for a in range(len(cfg.alphas))],
        "mean_p_target": [float(np.exp(lp[a, :, 1]).mean()) for a in range(len(cfg.alphas))],
        "frac_target_over_base": [
            float((lp[a, :, 1] > lp[a, :, 0]).mean()) for a in range(len(cfg.alphas))
        ],
    }
    return table, summary


def run_llm(cfg: LLMConfig, out: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Analyse one model and write ``report.html``, ``report.md``, ``results.json`` and figures.

    ``results.json`` holds (top level): ``model``, ``model_info``, ``concepts`` (names in order),
    ``per_concept`` (name → ``n_pairs``, ``loo_cosine`` {euclidean, causal}, intervals, nulls,
    analogy accuracy, token-filter report), ``cosine_matrix`` / ``mean_abs_offdiag`` /
    ``block_structure`` (per inner product), ``embedding`` (alignment, probes) and
    ``intervention`` (on/off-target log-odds changes, top-k tables), ``timings``, ``config``,
    ``metadata`` and ``report`` (tables and figure paths).

    Args:
        cfg: the configuration.
        out: output folder.
        progress: progress bars and messages.

    Returns:
        The results dict (as written to ``results.json``).
    """
    from .reporting import write_model_report

    res = analyze_model(cfg, progress=progress)
    return write_model_report(res, cfg, Path(out))


def config_dict(cfg: LLMConfig) -> dict[str, Any]:
    return asdict(cfg)
