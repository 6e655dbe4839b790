"""``linrep.llm.analyze``: the concept geometry of a model you already have in memory.

One pipeline serves the notebook API and ``linrep llm``; they differ only in where γ and the network
come from::

    model = AutoModelForCausalLM.from_pretrained(...); tok = AutoTokenizer.from_pretrained(...)
    res = linrep.llm.analyze(model, tok, concepts="builtin")          # γ from the output embeddings
    res = linrep.llm.analyze_source(LLMConfig(model="smollm2-135m"))  # γ from the file (cached)

Steps: read the word pairs (and contexts) first, so bad input fails before anything heavy; keep the
single-token pairs (cross-checked against ``tokenizer.encode`` when a tokenizer is at hand); fit the
inner products; measure the unembedding geometry; with contexts, read hidden states at every layer
needed in one forward pass per batch and measure the embedding side (one layer, or a per-layer
profile); the final-layer intervention; steering through the network for ``steer`` concepts; then
the extensions (e.g. the hierarchy analysis), each given an :class:`AnalysisContext`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from .. import geometry as geo
from ..errors import InputError
from .analysis import (
    UnembeddingGeometry,
    analyze_unembedding,
    concept_groups,
    fitted_inner_products,
)
from .cache import ModelCache
from .concepts import ConceptPairs, ConceptTokens, encode_mismatches, load_concepts, select_pairs
from .contexts import ContextSet, load_contexts, match_contexts
from .directions import DirectionMetadata, DirectionSet
from .embedding import EmbeddingSide, embedding_alignment
from .estimators import get_estimator
from .intervention import InterventionSide, context_interventions, intervention_effects
from .layers import LayerProfile, layer_profile, profile_layers
from .model import LoadedLM, resolve_layer
from .options import AnalysisOptions, LLMConfig
from .records import INNER_NAMES
from .result import AnalysisResult, ModelInfo, ResultSection
from .unembedding import Unembedding

__all__ = ["analyze", "analyze_source", "AnalysisContext", "Extension"]


@dataclass(frozen=True, eq=False)
class AnalysisContext:
    """What an extension sees (read-only).

    Attributes:
        unembedding: γ and vocabulary. concepts: the kept concepts (token pairs), in report order.
        inner: fitted inner products. geometry: unembedding-side measurements (directions, Δγ').
        directions: the steering-vector set. options: the options.
        contexts: concept → paired contexts (None without contexts).
        states: concept → layer → ``(n, d)`` hidden states (None without contexts).
        lm: the loaded model (None for an unembedding-only run). progress: show progress.
    """

    unembedding: Unembedding
    concepts: tuple[ConceptTokens, ...]
    inner: Mapping[str, geo.InnerProduct]
    geometry: UnembeddingGeometry
    directions: DirectionSet
    options: AnalysisOptions
    contexts: Mapping[str, ContextSet] | None
    states: Mapping[str, Mapping[int, np.ndarray]] | None
    lm: LoadedLM | None
    progress: bool


#: An extension: called once at the end of an analysis, returns a section of the result.
Extension = Callable[[AnalysisContext], ResultSection]


@dataclass(eq=False)
class _Subject:
    """How the pipeline reaches one model: γ now, the network on demand."""

    unemb: Unembedding
    info: dict[str, Any]
    load: Callable[[], LoadedLM] | None
    _lm: LoadedLM | None = field(default=None, repr=False)

    def lm(self) -> LoadedLM:
        if self._lm is None:
            if self.load is None:
                raise InputError("this analysis needs the full model, but none was given")
            self._lm = self.load()
        return self._lm


class _Timer(dict):
    @contextmanager
    def __call__(self, step: str):
        t = time.perf_counter()
        yield
        self[f"{step}_s"] = self.get(f"{step}_s", 0.0) + time.perf_counter() - t


# ----------------------------------------------------------------------------- entry points
def analyze(
    model: Any,
    tokenizer: Any,
    concepts: str | os.PathLike | Sequence[ConceptPairs] = "builtin",
    *,
    layer: int | str | Sequence[int] | None = None,
    inner_products: Sequence[str] = INNER_NAMES,
    contexts: str | os.PathLike | Mapping[str, ContextSet] | None = None,
    cache: str | os.PathLike | ModelCache | None = None,
    progress: bool = False,
    extensions: Sequence[Extension] = (),
    **options: Any,
) -> AnalysisResult:
    """Concept geometry of a Hugging Face causal LM already in memory.

    Args:
        model: a ``PreTrainedModel`` with output embeddings (``AutoModelForCausalLM``).
        tokenizer: its tokenizer.
        concepts: ``"builtin"``, a folder of Park et al.'s ``[base - target].txt`` files, one such
            file, or a list of :class:`~linrep.llm.ConceptPairs`.
        layer: embedding-side hidden state (None = final post-norm), ``"all"`` or a list (profile).
        inner_products: subset of ``("euclidean", "causal", "random")``.
        contexts: None (unembedding only), ``"builtin"``, a folder of ``.tsv`` / Park et al.'s
            ``paired_contexts`` ``.jsonl`` files, or concept → :class:`~linrep.llm.ContextSet`.
        cache: where the covariance of γ is cached (None = the user cache; False = no cache).
        progress: progress bars. extensions: callables adding result sections.
        **options: any field of :class:`~linrep.llm.AnalysisOptions` (``n_random_pairs``,
            ``estimator``, ``steer`` …).

    Returns:
        The typed :class:`~linrep.llm.AnalysisResult`.

    Raises:
        InputError: a model without output embeddings, a tokenizer of another model, softcapped
            logits, a layer out of range, bad concept/context files (one line, naming the fix).
    """
    opts = _options(AnalysisOptions, layer=layer, inner_products=tuple(inner_products), **options)
    raw, ctx = _inputs(concepts, contexts)
    lm = LoadedLM(model, tokenizer)
    err = lm.check(tokenizer=opts.check_tokenizer)
    unemb = lm.unembedding()
    info = {
        "name": lm.name,
        "checkpoint": lm.name,
        "quantization": unemb.label.quantization,
        "kind": "memory",
        "path": "",
        "logits_note": lm.logit_map.note,
        "logits_check": err,
    }
    subject = _Subject(unemb, info, None, lm)
    cache_obj = (
        cache
        if isinstance(cache, ModelCache)
        else ModelCache.open(cache or None, enabled=cache is not False)
    )
    builtin = isinstance(concepts, str) and concepts == "builtin"
    return _pipeline(subject, raw, ctx, opts, cache_obj, progress, extensions, builtin)


def analyze_source(
    cfg: LLMConfig, *, progress: bool = True, extensions: Sequence[Extension] = ()
) -> AnalysisResult:
    """The analysis ``linrep llm`` runs: a built-in model name, GGUF file or HF folder.

    γ is read from the file (checked cache entry); the network is loaded only when contexts or
    steering need it.
    """
    from .hf_model import load_causal_lm
    from .registry import BUILTIN_MODELS, resolve_model
    from .unembedding import load_unembedding

    cache = ModelCache.open(cfg.cache or None, enabled=cfg.use_cache)
    contexts = None if str(cfg.contexts).lower() == "none" else cfg.contexts
    raw, ctx = _inputs(cfg.concepts, contexts)  # cheap checks before the model is touched
    source = resolve_model(cfg.model, cache)
    unemb = load_unembedding(source, cache, progress=progress)
    builtin = BUILTIN_MODELS.get(source.name) if source.builtin else None
    info = {
        "name": source.name,
        "checkpoint": builtin.checkpoint if builtin else (unemb.label.name or source.name),
        "quantization": unemb.label.quantization,
        "kind": source.kind,
        "path": str(source.path),
        "logits_note": "",
    }

    def load() -> LoadedLM:
        lm = LoadedLM(*load_causal_lm(source, cache, progress=progress))
        info["logits_note"] = lm.logit_map.note
        return lm

    opts = cfg.options()
    return _pipeline(
        _Subject(unemb, info, load),
        raw,
        ctx,
        opts,
        cache,
        progress,
        extensions,
        cfg.concepts in ("", "builtin"),
        cfg.blas_threads,
    )


def _options(cls, **kw: Any) -> AnalysisOptions:
    import dataclasses

    from ..errors import did_you_mean

    names = [f.name for f in dataclasses.fields(cls)]
    for k in kw:
        if k not in names:
            raise InputError(f"analyze() got an unknown option '{k}'{did_you_mean(k, names)}")
    try:
        return cls(**kw)
    except InputError:
        raise
    except Exception as e:  # ConfigError names the key; keep its one line
        raise InputError(str(e).replace("llm.", "")) from None


def _inputs(concepts, contexts) -> tuple[list[ConceptPairs], dict[str, ContextSet] | None]:
    raw = list(concepts) if isinstance(concepts, (list, tuple)) else load_concepts(concepts)
    if contexts is None:
        return raw, None
    ctx = dict(contexts) if isinstance(contexts, Mapping) else load_contexts(contexts)
    return raw, ctx


# ----------------------------------------------------------------------------- the pipeline
def _pipeline(
    subject: _Subject,
    raw: list[ConceptPairs],
    ctx: dict[str, ContextSet] | None,
    opts: AnalysisOptions,
    cache: ModelCache,
    progress: bool,
    extensions: Sequence[Extension],
    builtin: bool,
    threads: int = 0,
) -> AnalysisResult:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads or None):
        return _run(subject, raw, ctx, opts, cache, progress, extensions, builtin)


def _run(subject, raw, ctx, opts, cache, progress, extensions, builtin) -> AnalysisResult:
    t0, timer = time.perf_counter(), _Timer()
    unemb = subject.unemb
    _check_layers(
        opts, unemb.n_layers, needs_model=ctx is not None or bool(opts.steer) or opts.multi_token
    )
    needs_lm = ctx is not None or bool(opts.steer) or opts.multi_token
    lm = subject.lm() if needs_lm else subject._lm
    for ext in extensions:  # e.g. a hierarchy with too few single-token words fails now
        check = getattr(ext, "check", None)
        if callable(check):
            check(unemb.vocab)
    with timer("select_pairs"):
        kept, skipped = _select(raw, unemb, opts, builtin, lm, progress)
    with timer("inner_products"):
        inner = fitted_inner_products(
            unemb,
            opts.inner_products,
            floor=opts.causal_floor,
            seed=opts.random_seed_inner,
            cache=cache,
        )
    with timer("unembedding_analysis"):
        geom = analyze_unembedding(
            unemb,
            kept,
            inner,
            n_random_pairs=opts.n_random_pairs,
            n_shuffles=opts.n_shuffles,
            n_boot=opts.n_boot,
            analogy_queries=opts.analogy_queries,
            groups=opts.groups or None,
            seed=opts.seed,
            progress=progress,
        )
    states = emb = prof = None
    matched = match_contexts(ctx, [c.name for c in kept]) if ctx is not None else None
    if matched is not None:
        with timer("embedding_side"):
            states, emb, prof = _embedding(lm, matched, kept, geom, inner, opts, progress)
    with timer("intervention"):
        iv = _intervention(unemb, kept, geom, inner, opts, matched, states, lm)
    stats = None
    if opts.statistics:
        with timer("statistics"):
            stats = _statistics(unemb, kept, geom, inner, opts, matched, states, emb, lm)
    directions = _direction_set(subject, unemb, geom, inner, emb, prof, opts)
    steering = ()
    if opts.steer:
        from .steering import steering_curves

        with timer("steering"):
            steering = steering_curves(lm, kept, matched or {}, unemb, opts, progress, raw=raw)
    text_pairs = None
    if opts.multi_token:
        with timer("text_pairs"):
            text_pairs = _text_pairs(lm, raw, kept, geom, inner, opts, emb, progress)
    context = AnalysisContext(
        unemb, tuple(kept), inner, geom, directions, opts, matched, states, lm, progress
    )
    sections = tuple(_timed_section(ext, context, timer) for ext in extensions)
    timer["total_s"] = time.perf_counter() - t0
    return AnalysisResult(
        model=_model_info(subject, inner),
        concepts=geom.concepts,
        cross=geom.cross,
        directions=directions,
        intervention=iv,
        options=opts,
        skipped={c.name: c.filter_report() for c in skipped},
        embedding=emb,
        layers=prof,
        statistics=stats,
        text_pairs=text_pairs,
        steering=tuple(steering),
        sections=sections,
        timings=dict(timer),
        notes=tuple(cache.notes),
    )


def _timed_section(ext: Extension, context: AnalysisContext, timer: _Timer) -> ResultSection:
    """Run one extension; its wall time goes to ``timings["<section key>_s"]``."""
    t = time.perf_counter()
    section = ext(context)
    key = f"{getattr(section, 'key', 'section')}_s"
    timer[key] = timer.get(key, 0.0) + time.perf_counter() - t
    return section


def _check_layers(opts: AnalysisOptions, n: int | None, *, needs_model: bool) -> None:
    """Fail on a bad layer before minutes of work (when the number of layers is known)."""
    if n is None or not needs_model:
        return
    if isinstance(opts.layer, int):
        resolve_layer(opts.layer, n)
    for x in profile_layers(opts.layer, n) + list(opts.steer_layers):
        resolve_layer(x, n)


def _select(raw, unemb, opts, builtin, lm, progress):
    """Keep concepts with ≥ min_pairs single-token pairs (report order: related groups first)."""
    encode = None
    if lm is not None:
        tok = lm.tokenizer

        def encode(texts):
            return tok(list(texts), add_special_tokens=False)["input_ids"]

    selected = []
    for c in raw:
        ct = select_pairs(c, unemb.vocab, opts.leading_space)
        if encode is not None:
            ct.mismatches = encode_mismatches(c, unemb.vocab, encode, opts.leading_space)
        selected.append(ct)
    policy = opts.small_concepts
    if policy == "auto":  # multi_token: a concept without single tokens still has its text pairs
        policy = "skip" if (builtin or opts.multi_token) else "error"
    kept = [c for c in selected if c.n_pairs >= opts.min_pairs]
    skipped = [c for c in selected if c.n_pairs < opts.min_pairs]
    if skipped and policy == "error":
        _too_few(skipped[0], unemb.model, opts.min_pairs)
    if progress:
        _print_filter(selected, kept)
    if not kept:
        raise InputError(
            f"no concept has {opts.min_pairs} or more single-token pairs for {unemb.model}; "
            "check the word lists or lower min_pairs"
        )
    return _group_order(kept, opts.groups or None), skipped


def _too_few(c: ConceptTokens, model: str, need: int) -> None:
    why = ", ".join(f"{k} {v}" for k, v in c.filter_report().dropped_by_reason.items())
    raise InputError(
        f"concept '{c.name}' has {c.n_pairs} usable pairs for {model} (need {need}; dropped: "
        f"{why or 'none'}); add single-token pairs, remove the file, or set small_concepts = "
        '"skip"'
    )


def _print_filter(selected, kept) -> None:
    for c in selected:
        r = c.filter_report()
        why = ", ".join(f"{k} {v}" for k, v in r.dropped_by_reason.items())
        tag = "" if c in kept else "  (skipped: too few pairs)"
        mism = (
            f"  encode disagrees on {len(r.encode_mismatches)} words" if r.encode_mismatches else ""
        )
        print(f"  {c.name:24s} kept {c.n_pairs:4d}/{c.n_lines:<4d} {why}{tag}{mism}")


def _group_order(concepts, groups):
    """Related groups first (in their declared order, members by name), then the others."""
    from .analysis import DEFAULT_GROUPS

    order = list((groups or DEFAULT_GROUPS).keys())
    labels = concept_groups([c.name for c in concepts], groups)
    rank = {g: i for i, g in enumerate(order)}
    keyed = sorted(
        range(len(concepts)), key=lambda i: (rank.get(labels[i], len(order)), concepts[i].name)
    )
    return [concepts[i] for i in keyed]


# ----------------------------------------------------------------------------- embedding side
def _embedding(
    lm: LoadedLM, ctx, kept, geom, inner, opts, progress
) -> tuple[dict, EmbeddingSide, LayerProfile | None]:
    n = lm.n_layers
    primary = lm.resolve_layer(opts.layer if isinstance(opts.layer, int) else None)
    prof = [lm.resolve_layer(x) for x in profile_layers(opts.layer, n)]
    need = sorted({primary, n, *prof})
    states = {}
    for name, cs in ctx.items():
        arrays = lm.hidden_states(
            cs.texts,
            need,
            pooling=opts.pooling,
            batch_size=opts.batch_size,
            progress=progress,
            desc=f"forward {name}",
        )
        states[name] = dict(zip(need, arrays, strict=True))
    labels = {name: np.asarray(cs.labels) for name, cs in ctx.items()}
    names = [c.name for c in kept]

    def side(L: int) -> EmbeddingSide:
        return embedding_alignment(
            {nm: st[L] for nm, st in states.items()},
            labels,
            geom.directions,
            names,
            inner,
            layer=L,
            n_layers=n,
            pooling=opts.pooling,
            estimator=get_estimator(opts.estimator),
            n_perm=opts.n_permutations,
            seed=opts.seed,
            probes=opts.probes,
        )

    emb = side(primary)
    profile = layer_profile([emb if L == primary else side(L) for L in prof]) if prof else None
    return states, emb, profile


# ----------------------------------------------------------------------------- intervention
def _intervention(unemb, kept, geom, inner, opts, ctx, states, lm) -> InterventionSide:
    ip_name = opts.intervention_inner
    ip = inner[ip_name]
    names = [c.name for c in kept]
    scale, topk, probs = 1.0, {}, {}
    if states:
        n = lm.n_layers
        final = np.concatenate([st[n] for st in states.values()])
        scale = float(np.linalg.norm(ip.transform_embedding(final), axis=1).mean())
        for j, c in enumerate(kept):
            if c.name not in ctx:
                continue
            cs = ctx[c.name]
            v = ip.transform_vectors(geom.directions[ip_name][j]) * scale
            topk[c.name], wp = context_interventions(
                states[c.name][n],
                np.asarray(cs.labels),
                cs.words,
                cs.texts,
                dict(c.words),
                lambda w: unemb.vocab.token_id(w, opts.leading_space),
                unemb.gamma,
                v,
                opts.alphas,
                unemb.vocab.display,
                unemb.normal,
                k=opts.top_k,
            )
            if wp is not None:
                probs[c.name] = wp
    M, per = intervention_effects(geom.deltas[ip_name], geom.directions[ip_name], names, scale)
    units = (
        "log-odds change per unit alpha; alpha in units of mean ||lambda'(x)||"
        if states
        else "log-odds change per unit step along the unit direction (no contexts)"
    )
    return InterventionSide(ip_name, scale, units, tuple(opts.alphas), M, per, topk, probs)


# ----------------------------------------------------------------------------- text pairs
def _text_pairs(lm, raw, kept, geom, inner, opts, emb, progress):
    """Every concept's pairs (any tokenisation) on the embedding side (:mod:`.textpairs`)."""
    from .textpairs import text_pair_side

    layer = (
        emb.layer
        if emb is not None
        else lm.resolve_layer(opts.layer if isinstance(opts.layer, int) else None)
    )
    ip = "causal" if "causal" in inner else next(iter(inner))
    dirs = {c.name: geom.directions[ip][j] for j, c in enumerate(kept)}
    return text_pair_side(
        lm,
        raw,
        layer=layer,
        pooling=opts.pooling,
        leading_space=opts.leading_space,
        estimator=get_estimator(opts.estimator),
        unembedding_directions=dirs,
        inner=inner,
        alignment_inner=ip,
        batch_size=opts.batch_size,
        n_boot=opts.n_boot,
        seed=opts.seed,
        progress=progress,
    )


# ----------------------------------------------------------------------------- statistics
def _statistics(unemb, kept, geom, inner, opts, ctx, states, emb, lm):
    """Every summary against its null (:func:`linrep.llm.statistics.compute_statistics`)."""
    from .statistics import ContextInputs, StatisticsOptions, alignment_nulls, compute_statistics

    o = StatisticsOptions(
        opts.n_null_draws,
        opts.n_random_inner,
        opts.n_sign_flips,
        opts.n_boot,
        opts.seed,
    )
    contexts = None
    if states:
        n = lm.n_layers
        contexts = ContextInputs(
            {k: st[n] for k, st in states.items()},
            {k: np.asarray(c.labels) for k, c in ctx.items()},
            {k: c.words for k, c in ctx.items()},
        )
    return compute_statistics(
        unemb.gamma,
        unemb.vocab,
        unemb.normal,
        kept,
        inner,
        [c.group for c in geom.concepts],
        o,
        contexts=contexts,
        alignment=alignment_nulls(emb.concepts) if emb is not None else None,
        alphas=opts.alphas,
        leading_space=opts.leading_space,
    )


# ----------------------------------------------------------------------------- directions, info
def _whitening(name: str, ip: geo.InnerProduct, opts: AnalysisOptions) -> str:
    if name == "causal":
        return (
            f"M = Cov(gamma)^-1 over {ip.n_rows_} normal tokens (centred, float64), relative "
            f"eigenvalue floor {opts.causal_floor:g}, rank {ip.rank_} of {ip.dim_}"
        )
    if name == "random":
        return f"random SPD M = Q diag(exp(z)) Q^T (seed {opts.random_seed_inner})"
    return "M = I (identity)"


def _linrep_version() -> str:
    try:
        return version("linrep")
    except PackageNotFoundError:
        return "unknown"


def _direction_set(subject, unemb, geom, inner, emb, prof, opts) -> DirectionSet:
    d = unemb.shape[1]
    maps = {n: np.asarray(ip.sqrt_ if ip.dim_ == d else np.eye(d)) for n, ip in inner.items()}
    sides = {}
    if prof is not None:
        sides = {
            L: {ip: prof.directions[ip][i] for ip in prof.directions}
            for i, L in enumerate(prof.layers)
        }
    if emb is not None and emb.alignment_rows:
        sides.setdefault(emb.layer, dict(emb.directions))
    layers = tuple(sorted(sides))
    embedding = {ip: np.stack([sides[L][ip] for L in layers]) for ip in inner} if layers else {}
    meta = DirectionMetadata(
        model_name=subject.info["name"],
        model_label=_label(subject.info),
        model_sha256=unemb.sha256,
        d=d,
        n_layers=unemb.n_layers,
        estimator=opts.estimator,
        whitening={n: _whitening(n, ip, opts) for n, ip in inner.items()},
        linrep_version=_linrep_version(),
    )
    return DirectionSet(
        concepts=tuple(c.name for c in geom.concepts),
        unembedding={k: np.asarray(v) for k, v in geom.directions.items()},
        maps=maps,
        metadata=meta,
        layers=layers,
        embedding_concepts=tuple(emb.alignment_rows) if (emb is not None and layers) else (),
        embedding=embedding,
    )


def _label(info: Mapping[str, Any]) -> str:
    q = info.get("quantization") or ""
    if not q:
        return str(info["checkpoint"])
    return (
        f"{info['checkpoint']}, GGUF {q}"
        if info["kind"] == "gguf"
        else f"{info['checkpoint']} ({q})"
    )


def _model_info(subject: _Subject, inner) -> ModelInfo:
    u, info = subject.unemb, subject.info
    causal = inner.get("causal")
    return ModelInfo(
        name=info["name"],
        label=_label(info),
        checkpoint=info["checkpoint"],
        quantization=info["quantization"],
        kind=info["kind"],
        path=info["path"],
        sha256=u.sha256,
        vocab=u.shape[0],
        d=u.shape[1],
        n_layers=u.n_layers,
        n_normal_tokens=int(u.normal.sum()),
        tokenizer_convention=u.vocab.convention,
        causal_rank=int(causal.rank_) if causal is not None else None,
        logits_note=info.get("logits_note", ""),
    )
