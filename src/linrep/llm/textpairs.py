"""Concepts beyond single tokens: multi-token word pairs and sentence-level counterfactual pairs.

A pair whose words are not single tokens has no steering vector Δγ = γ(y1) − γ(y0). It still has

* an **embedding side**: each text (a word written as in running text, ``" " + word``, or a whole
  sentence) is represented by the hidden state λ at its last token or the mean over its tokens; the
  pair's difference Δλ_k = λ(text₁) − λ(text₀) plays the role of Δγ_k (leave-one-out cosines, the
  concept direction from any estimator, cross-concept cosines), measured at one layer;
* an **unembedding side through sequence log-probabilities**: after a context x, a word of several
  tokens has log p(w | x) = Σ_i log p(t_i | x, t_<i) (:meth:`linrep.llm.LoadedLM.sequence_logprobs`),
  so the log-odds of a pair is log p(w₁ | x) − log p(w₀ | x); steering measures its change
  (:mod:`linrep.llm.steering` uses these for every pair, single-token or not).

Concept files are the usual ``[base - target].txt`` with ``base<TAB>target`` lines; an entry with a
space is a sentence and is used as written (no leading space added).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import geometry as geo
from .concepts import ConceptPairs
from .estimators import DirectionEstimator, MeanDifference
from .records import Record

__all__ = ["TextPairConcept", "TextPairSide", "pair_texts", "text_pair_side"]


@dataclass(frozen=True)
class TextPairConcept(Record):
    """Embedding-side numbers of one concept's text pairs at one layer.

    Attributes:
        name: concept. n_pairs: pairs used (all of the file's pairs, any tokenisation).
        n_multi_token: pairs with at least one side longer than one token.
        loo_cosine, loo_cosine_ci: mean LOO cosine of the Δλ_k and its 95 % bootstrap interval.
        same_concept_cosine: mean pairwise cosine of the Δλ_k.
        alignment: cos(direction, ḡ_W) with the concept's unembedding direction when it has one
            (in the inner product ``alignment_inner``'s coordinates; final layer only), else None.
    """

    name: str
    n_pairs: int
    n_multi_token: int
    loo_cosine: float
    loo_cosine_ci: tuple[float, float]
    same_concept_cosine: float
    alignment: float | None = None


@dataclass(frozen=True, eq=False)
class TextPairSide(Record):
    """Text pairs of every concept at one layer.

    Attributes:
        layer, pooling: where and how the texts are represented.
        concepts: per concept. alignment_inner: inner product of the alignment column.
        directions: ``(k, d)`` unit directions (raw coordinates; estimator with the pairs given).
        cosine_matrix: ``(k, k)`` cosines between them; mean_abs_offdiag: its mean |off-diagonal|.
    """

    layer: int
    pooling: str
    concepts: tuple[TextPairConcept, ...]
    alignment_inner: str
    directions: np.ndarray
    cosine_matrix: np.ndarray
    mean_abs_offdiag: float


def pair_texts(concept: ConceptPairs, leading_space: bool = True) -> tuple[list[str], list[str]]:
    """The base and target texts of a concept's pairs (words spelled as inside a sentence)."""

    def text(w: str) -> str:
        return w if (" " in w.strip() or not leading_space) else " " + w

    return [text(b) for b, _ in concept.words], [text(t) for _, t in concept.words]


def _concept_numbers(name, D, n_multi, n_boot, seed, align) -> TextPairConcept:
    cos = geo.loo_cosines(D)
    ci = geo.bootstrap_interval(cos, n_boot=n_boot, seed=seed)
    return TextPairConcept(
        name=name,
        n_pairs=int(D.shape[0]),
        n_multi_token=n_multi,
        loo_cosine=float(cos.mean()),
        loo_cosine_ci=(ci.low, ci.high),
        same_concept_cosine=float(geo.same_concept_cosine(D)),
        alignment=align,
    )


def text_pair_side(
    lm,
    concepts: Sequence[ConceptPairs],
    *,
    layer: int,
    pooling: str = "last",
    leading_space: bool = True,
    estimator: DirectionEstimator | None = None,
    unembedding_directions: Mapping[str, np.ndarray] | None = None,
    inner=None,
    alignment_inner: str = "causal",
    batch_size: int = 16,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
) -> TextPairSide:
    """Measure every concept's text pairs at one layer (concepts with ≥ 2 pairs).

    Args:
        lm: a :class:`~linrep.llm.model.LoadedLM`.
        concepts: the concept files as read (all pairs, single- or multi-token).
        layer: hidden-state index. pooling: ``"last"`` token or ``"mean"`` over the text's tokens.
        leading_space: spell single words with a leading space.
        estimator: direction estimator (default mean difference; pairs are passed).
        unembedding_directions: concept → ḡ'_W (unit, ``alignment_inner`` coordinates) for the
            alignment column; only used at the final layer.
        inner: fitted inner products (for ``alignment_inner``'s embedding map).
        batch_size: texts per forward pass.
        n_boot: bootstrap resamples of the LOO-cosine interval.
        seed: seed of the bootstrap.
        progress: show progress.
    """
    estimator = estimator or MeanDifference()
    use = [c for c in concepts if len(c.words) >= 2]
    final = layer == lm.n_layers and unembedding_directions and inner is not None
    rows, dirs = [], []
    for c in use:
        base, target = pair_texts(c, leading_space)
        H0, H1 = (
            lm.hidden_states(t, [layer], pooling=pooling, batch_size=batch_size)[0]
            for t in (base, target)
        )
        lengths = [
            len(x) for x in lm.tokenizer(base + target, add_special_tokens=False)["input_ids"]
        ]
        n_multi = int(np.sum(np.maximum(lengths[: len(base)], lengths[len(base) :]) > 1))
        P = H0.shape[0]
        pairs = np.c_[np.arange(P), P + np.arange(P)]
        X, y = np.vstack([H0, H1]), np.r_[np.zeros(P), np.ones(P)]
        dirs.append(estimator.fit(X, y, pairs).direction_)
        align = None
        if final and c.name in unembedding_directions:
            ip = inner[alignment_inner]
            u = type(estimator)().fit(ip.transform_embedding(X), y, pairs).direction_
            align = float(u @ geo.unit(unembedding_directions[c.name]))
        rows.append(_concept_numbers(c.name, H1 - H0, n_multi, n_boot, seed, align))
    D = np.asarray(dirs).reshape(len(dirs), lm.d)
    C = geo.cosine_matrix(D) if len(dirs) else np.zeros((0, 0))
    return TextPairSide(
        layer=layer,
        pooling=pooling,
        concepts=tuple(rows),
        alignment_inner=alignment_inner,
        directions=D,
        cosine_matrix=C,
        mean_abs_offdiag=float(geo.mean_abs_offdiag(C)) if len(dirs) > 1 else float("nan"),
    )
