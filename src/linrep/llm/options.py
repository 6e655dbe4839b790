"""What a real-model analysis measures and how: :class:`AnalysisOptions`, and the ``[llm]`` section.

:func:`linrep.llm.analyze` takes the options as keyword arguments; ``linrep llm`` reads them from the
``[llm]`` table of a TOML file (:class:`LLMConfig` = the options + which model, word pairs, contexts
and cache). One dataclass serves both, so a key means the same in Python and in a config file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import section_from_dict
from ..errors import ConfigError
from .estimators import ESTIMATORS
from .records import INNER_NAMES

__all__ = ["AnalysisOptions", "LLMConfig", "MAX_ABS_ALPHA"]

#: Largest |α| accepted anywhere (α is in units of a typical hidden-state norm, or of the direction).
MAX_ABS_ALPHA = 1000.0


def _tuple(x: Any) -> Any:
    return tuple(x) if isinstance(x, list) else x


@dataclass(frozen=True)
class AnalysisOptions:
    """Every knob of a real-model analysis (defaults: Park et al.'s choices where they made one).

    Attributes:
        inner_products: which inner products (subset of euclidean, causal, random).
        layer: embedding-side hidden state: None or −1 = final post-norm state (what γ reads), an
            index 0 … n, ``"all"`` or a list of indices = also a per-layer profile (alignment with its
            permutation null and probe accuracy at each layer, one forward pass per batch).
        leading_space: spell words with a leading space (``▁w``/``Ġw``, as inside a sentence).
        min_pairs: fewest single-token pairs a concept needs (LOO needs ≥ 2; 3 gives a spread).
        small_concepts: a concept below ``min_pairs``: ``"auto"`` = skip for the built-in lists,
            error for a user folder; ``"skip"``; ``"error"``.
        causal_floor: relative eigenvalue floor of the causal inner product.
        random_seed_inner: seed of the random inner product.
        n_random_pairs: random word pairs of the per-pair LOO-projection scale (Park et al.: 100,000).
        n_shuffles: shuffles of the shuffled-unembedding null (0 = skip; cost ∝ pairs × d²).
        n_boot: bootstrap resamples of the LOO-cosine intervals.
        analogy_queries: analogy queries per concept (0 = skip).
        estimator: direction estimator: ``mean`` (default), ``lda``, ``logistic``, ``pca``.
        pooling: context representation: ``last`` token or ``mean`` over tokens.
        n_permutations: label permutations of the alignment null (0 = skip; with 12 concepts Holm
            needs ≥ 240 to reach p < 0.05; the mean difference takes 2000 in well under a second).
        probes: cross-validated logistic probes on the contexts.
        alphas: intervention strengths α, in units of the mean ‖λ(x)‖ under ``intervention_inner``.
        intervention_inner: inner product whose direction is added (``"causal"`` as Park et al.).
        top_k: tokens per row of the intervention's top-k table.
        batch_size: contexts per forward pass.
        seed: seed of every random draw.
        groups: related-concept groups for the block-structure summary ({} = the default groups).
        check_tokenizer: check on one forward pass that the tokenizer belongs to the model.
        steer: concepts to steer through the network (``--steer``).
        steer_layers: layers to steer at ([] = five layers spread over the depth, final included).
        steer_alphas: steering strengths, in units of the mean hidden-state norm at that layer.
        steer_folds: cross-fitting folds (direction from the other folds' pairs, ≥ 2).
        multi_token: also use pairs whose words are several tokens, and sentence pairs: their
            embedding side (:mod:`linrep.llm.textpairs`) and sequence log-probabilities in steering.
        statistics: every summary against its null (:mod:`linrep.llm.statistics`).
        n_null_draws: random word-pair direction sets per null of the cross-concept summaries.
        n_random_inner: random inner products of the random-inner-product distribution.
        n_sign_flips: word-cluster sign flips of the leave-one-out test (per concept, inner product).
    """

    inner_products: tuple[str, ...] = INNER_NAMES
    layer: int | str | tuple[int, ...] | None = None
    leading_space: bool = True
    min_pairs: int = 3
    small_concepts: Literal["auto", "skip", "error"] = "auto"
    causal_floor: float = 1e-10
    random_seed_inner: int = 0
    n_random_pairs: int = 100_000
    n_shuffles: int = 20
    n_boot: int = 2000
    analogy_queries: int = 20
    estimator: str = "mean"
    pooling: Literal["last", "mean"] = "last"
    n_permutations: int = 2000
    probes: bool = True
    alphas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    intervention_inner: Literal["euclidean", "causal"] = "causal"
    top_k: int = 5
    batch_size: int = 16
    seed: int = 0
    groups: Mapping[str, list[str]] = field(default_factory=dict)
    check_tokenizer: bool = True
    steer: tuple[str, ...] = ()
    steer_layers: tuple[int, ...] = ()
    steer_alphas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4)
    steer_folds: int = 2
    multi_token: bool = False
    statistics: bool = True
    n_null_draws: int = 200
    n_random_inner: int = 32
    n_sign_flips: int = 2000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _tuple(getattr(self, f.name)))
        if self.layer == -1:
            object.__setattr__(self, "layer", None)
        self._check()

    def _check(self) -> None:
        import math

        from ..errors import did_you_mean

        bad = [n for n in self.inner_products if n not in INNER_NAMES]
        if bad or not self.inner_products:
            raise ConfigError(
                f"llm.inner_products = {list(self.inner_products)}: use a subset of "
                f"{list(INNER_NAMES)}{did_you_mean(str(bad[0]), INNER_NAMES) if bad else ''}"
            )
        if isinstance(self.layer, str) and self.layer != "all":
            raise ConfigError(f'llm.layer = {self.layer!r}: use an integer, a list or "all"')
        if self.min_pairs < 2:
            raise ConfigError(f"llm.min_pairs = {self.min_pairs}: LOO needs at least 2; use ≥ 2")
        for key in ("n_random_pairs", "n_boot", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"llm.{key} must be ≥ 1, got {getattr(self, key)}")
        for key in ("n_shuffles", "analogy_queries", "top_k", "n_permutations"):
            if getattr(self, key) < 0:
                raise ConfigError(f"llm.{key} must be ≥ 0, got {getattr(self, key)}")
        if self.estimator not in ESTIMATORS:
            raise ConfigError(
                f"llm.estimator = {self.estimator!r} is unknown{did_you_mean(self.estimator, ESTIMATORS)}"
            )
        for key in ("n_null_draws", "n_random_inner", "n_sign_flips"):
            if getattr(self, key) < 2:
                raise ConfigError(
                    f"llm.{key} must be ≥ 2 (a null needs draws), got {getattr(self, key)}"
                )
        if self.steer_folds < 2:
            raise ConfigError(f"llm.steer_folds = {self.steer_folds}: cross-fitting needs ≥ 2")
        for key in ("alphas", "steer_alphas"):
            for a in getattr(self, key):
                if not (math.isfinite(a) and abs(a) <= MAX_ABS_ALPHA):
                    raise ConfigError(
                        f"llm.{key} holds {a}: every α must be finite with |α| ≤ {MAX_ABS_ALPHA:g}"
                    )
        if self.intervention_inner not in self.inner_products:
            raise ConfigError(
                f"llm.intervention_inner = {self.intervention_inner!r} is not among "
                f"llm.inner_products {list(self.inner_products)}; add it there"
            )

    @property
    def profile_layers(self) -> bool:
        """Whether a per-layer profile is asked for (``layer="all"`` or a list)."""
        return self.layer == "all" or isinstance(self.layer, tuple)


@dataclass(frozen=True)
class LLMConfig(AnalysisOptions):
    """The ``[llm]`` section of ``linrep llm``: the analysis options plus what to analyse.

    Attributes:
        model: built-in name (gemma-3-270m, smollm2-135m, qwen2.5-0.5b) or a GGUF file / HF folder.
        concepts: ``"builtin"`` (linrep's 27 word-pair lists) or a folder in Park et al.'s format.
        contexts: ``"builtin"``, a folder of ``[base - target].tsv`` files or of Park et al.'s
            ``paired_contexts`` JSONL files, or ``"none"`` (unembedding only: no torch). With a
            ``hierarchy`` and no ``contexts``, ``layer`` or ``steer`` given, ``linrep llm`` uses
            ``"none"`` (the hierarchy reads γ only).
        cache: cache folder ("" = ``$LINREP_CACHE`` or the user cache folder).
        use_cache: use the unembedding / covariance / float32-model cache.
        blas_threads: BLAS threads; 0 = the BLAS default (all cores, fastest on an idle machine);
            1 is faster when other jobs load the cores.
        hierarchy: ``""`` (none), ``"builtin"`` or a hierarchy folder (``<category>.txt`` +
            ``hierarchy.txt``): categorical vectors and hierarchy-as-orthogonality with their nulls
            (:mod:`linrep.llm.hierarchy`, results section ``hierarchy``).
        hierarchy_n_null: draws per null and edge of the hierarchy analysis.
        hierarchy_min_words: fewest single-token words a category needs (≥ 2).
    """

    model: str = "gemma-3-270m"
    concepts: str = "builtin"
    contexts: str = "builtin"
    cache: str = ""
    use_cache: bool = True
    blas_threads: int = 0
    hierarchy: str = ""
    hierarchy_n_null: int = 200
    hierarchy_min_words: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.blas_threads < 0:
            raise ConfigError(f"llm.blas_threads must be ≥ 0, got {self.blas_threads}")
        if self.hierarchy_n_null < 2:
            raise ConfigError(f"llm.hierarchy_n_null must be ≥ 2, got {self.hierarchy_n_null}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> LLMConfig:
        """Build from an ``[llm]`` table (unknown keys rejected with a suggestion)."""
        return section_from_dict(cls, raw, "llm")

    def options(self) -> AnalysisOptions:
        """The analysis options alone."""
        names = [f.name for f in dataclasses.fields(AnalysisOptions)]
        return AnalysisOptions(**{n: getattr(self, n) for n in names})
