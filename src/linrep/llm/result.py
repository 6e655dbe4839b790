"""The typed result of a real-model analysis: :class:`AnalysisResult` and what it is made of.

Returned by :func:`linrep.llm.analyze` (a model in memory) and by ``linrep llm`` (which writes
``results.json`` = :meth:`AnalysisResult.to_json` and ``report.html`` from the same object). Every
part is a frozen dataclass with ``to_json()``; numbers are reached by attribute, never by
navigating nested dicts::

    res = linrep.llm.analyze(model, tok, concepts="builtin")
    res.mean_abs_offdiag["euclidean"]          # mean |cos| between concept directions
    res.to_pandas()                            # one row per concept
    res.cosine_table()                         # every pair of concepts, every inner product
    v = res.direction("male - female")         # (d,) raw steering vector (causal)
    res.save_directions("dirs.safetensors")    # → linrep.llm.load_directions
    res.export_control_vector("male_female.gguf", "male - female", layers=[10, 12])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .analysis import ConceptGeometry, CrossConcept
from .concepts import TokenFilter
from .directions import DirectionSet
from .embedding import EmbeddingSide
from .intervention import InterventionSide
from .layers import LayerProfile
from .options import AnalysisOptions
from .records import Record

__all__ = ["AnalysisResult", "ModelInfo", "ResultSection"]


@runtime_checkable
class ResultSection(Protocol):
    """A section added by an extension (e.g. the hierarchy analysis): a frozen dataclass with a
    ``key`` (its name in results.json), ``to_json()`` and ``add_to_report(report)``."""

    key: str

    def to_json(self) -> dict[str, Any]: ...

    def add_to_report(self, report: Any) -> None: ...


@dataclass(frozen=True)
class ModelInfo(Record):
    """Which model was analysed, exactly.

    Attributes:
        name: built-in name, file/folder name, or the in-memory model's ``name_or_path``.
        label: one line for reports: exact checkpoint and quantisation.
        checkpoint: the checkpoint (e.g. "SmolLM2-135M-Instruct").
        quantization: from the file's metadata (e.g. "Q4_1"), or the in-memory dtype.
        kind: ``gguf`` | ``hf`` (files) | ``memory`` (a model passed to ``analyze``).
        path: the file or folder ("" in memory). sha256: checksum of the weights.
        vocab, d, n_layers: γ's shape and the number of blocks.
        n_normal_tokens: rows used for covariances and nulls.
        tokenizer_convention: ``sentencepiece`` / ``byte_bpe`` / ``plain``.
        causal_rank: rank kept by the causal inner product (None if not fitted).
        logits_note: how logits relate to γ·h when not plainly (scale, bias).
    """

    name: str
    label: str
    checkpoint: str
    quantization: str
    kind: str
    path: str
    sha256: str
    vocab: int
    d: int
    n_layers: int | None
    n_normal_tokens: int
    tokenizer_convention: str
    causal_rank: int | None = None
    logits_note: str = ""


@dataclass(frozen=True, eq=False)
class AnalysisResult(Record):
    """Everything one analysis of one model measured.

    Attributes:
        model: :class:`ModelInfo`.
        concepts: unembedding side, one :class:`~linrep.llm.analysis.ConceptGeometry` per concept.
        cross: inner product → :class:`~linrep.llm.analysis.CrossConcept` (cosine matrix, mean
            |off-diagonal|, block structure).
        directions: the :class:`~linrep.llm.directions.DirectionSet` (steering vectors).
        intervention: the final-layer intervention (context-free log-odds; context tables).
        skipped: concepts left out for too few single-token pairs → their token filter.
        embedding: embedding side at one layer (None without contexts).
        layers: per-layer profile (None unless ``layer="all"`` or a list).
        steering: steering through the network, one curve per ``steer`` concept.
        statistics: every summary against its null (:mod:`linrep.llm.statistics`; None when
            ``statistics=False``).
        text_pairs: every concept's pairs of any length on the embedding side
            (:mod:`linrep.llm.textpairs`; None unless ``multi_token=True``).
        sections: extension results (see :class:`ResultSection`).
        timings: step → seconds. options: the options used. notes: what the run noticed.
    """

    model: ModelInfo
    concepts: tuple[ConceptGeometry, ...]
    cross: Mapping[str, CrossConcept]
    directions: DirectionSet
    intervention: InterventionSide
    options: AnalysisOptions
    skipped: Mapping[str, TokenFilter] = field(default_factory=dict)
    embedding: EmbeddingSide | None = None
    layers: LayerProfile | None = None
    steering: tuple[Any, ...] = ()
    statistics: Any = None
    text_pairs: Any = None
    sections: tuple[Any, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ numbers
    @property
    def concept_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.concepts)

    @property
    def mean_abs_offdiag(self) -> dict[str, float]:
        """Inner product → mean |cos| between different concepts' directions."""
        return {k: v.mean_abs_offdiag for k, v in self.cross.items()}

    def concept(self, name: str) -> ConceptGeometry:
        """The unembedding-side numbers of one concept."""
        for c in self.concepts:
            if c.name == name:
                return c
        from ..errors import InputError, did_you_mean

        raise InputError(
            f"no concept '{name}' in this result{did_you_mean(name, self.concept_names)}"
        )

    # ------------------------------------------------------------------ directions
    def direction(self, concept: str, inner: str = "causal", *, layer: int | None = None):
        """Raw steering vector ``(d,)`` of a concept (see :meth:`DirectionSet.direction`)."""
        return self.directions.direction(concept, inner, layer=layer)

    def save_directions(self, path: str | os.PathLike) -> Path:
        """Write the directions as safetensors (read back with :func:`linrep.llm.load_directions`)."""
        return self.directions.save(path)

    def export_control_vector(
        self,
        path: str | os.PathLike,
        concept: str,
        layers: Sequence[int],
        *,
        inner: str = "euclidean",
        scale: float = 1.0,
    ) -> Path:
        """Write a llama.cpp control-vector GGUF (see :meth:`DirectionSet.export_control_vector`)."""
        return self.directions.export_control_vector(
            path, concept, layers, inner=inner, scale=scale
        )

    # ------------------------------------------------------------------ tables
    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per concept (what :meth:`to_pandas` tabulates)."""
        from .tables import concept_rows

        return concept_rows(self)

    def to_pandas(self):
        """One row per concept: pairs kept/dropped, LOO cosine with interval and test, direction
        norm, analogy accuracy, alignment and probes (with contexts), intervention. Needs pandas
        (``pip install 'linrep[all]'``)."""
        return _frame(self.rows())

    def cosine_table(self):
        """The long pairwise table: one row per (inner product, concept a, concept b ≠ a)."""
        from .tables import cosine_rows

        return _frame(cosine_rows(self))

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """``results.json``: flat top-level keys (model, concepts, per_concept, cosine_matrix …)."""
        from .tables import result_json

        return result_json(self)


def _frame(rows: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError:
        from ..errors import InputError

        raise InputError(
            "to_pandas() needs pandas; install it with: pip install 'linrep[all]'"
        ) from None
    return pd.DataFrame(rows)
