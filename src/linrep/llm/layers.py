"""Every layer: the embedding side measured at many hidden states, from one forward pass per batch.

For each requested layer L (hidden-state index, 0 = embeddings, n = final post-norm state) and each
concept with contexts, :func:`layer_profile` collects from :func:`linrep.llm.embedding.embedding_alignment`
the alignment cos(f̄'_W^(L), ḡ'_W) with the unembedding direction, its label-permutation null (95th
percentile and p-value) and the cross-validated probe accuracy, as ``(L, k)`` arrays. The report
plots them against depth: where does the concept become linearly decodable (probe), and where does
its direction start to point along the unembedding's (alignment above the permutation null)?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .embedding import EmbeddingSide
from .records import Record

__all__ = ["LayerProfile", "layer_profile", "profile_layers"]


@dataclass(frozen=True, eq=False)
class LayerProfile(Record):
    """Embedding-side numbers against depth.

    Attributes:
        layers: hidden-state indices (rows of every array). n_layers: the model's blocks.
        concepts: concepts with contexts and an unembedding direction (columns).
        alignment: inner product → ``(L, k)`` cos(f̄'_W^(L), ḡ'_W).
        perm_null_q95, perm_p_value: inner product → ``(L, k)`` label-permutation null.
        probe_accuracy: ``(L, k)`` cross-validated logistic-probe accuracy (NaN when skipped).
        directions: inner product → ``(L, k, d)`` unit embedding directions in its coordinates.
    """

    layers: tuple[int, ...]
    n_layers: int
    concepts: tuple[str, ...]
    alignment: Mapping[str, np.ndarray]
    perm_null_q95: Mapping[str, np.ndarray]
    perm_p_value: Mapping[str, np.ndarray]
    probe_accuracy: np.ndarray
    directions: Mapping[str, np.ndarray]


def profile_layers(layer: int | str | Sequence[int] | None, n: int) -> list[int]:
    """The layers of a profile: ``"all"`` = 0 … n; a list as given (validated by the caller)."""
    if layer == "all":
        return list(range(n + 1))
    return [int(x) for x in layer] if isinstance(layer, (list, tuple)) else []


def _field(sides: Sequence[EmbeddingSide], ip: str, attr: str) -> np.ndarray:
    def row(side: EmbeddingSide) -> list[float]:
        out = []
        for name in side.alignment_rows:
            c = next(c for c in side.concepts if c.name == name)
            v = getattr(c.alignment[ip], attr) if c.alignment else None
            out.append(np.nan if v is None else v)
        return out

    return np.asarray([row(s) for s in sides], dtype=np.float64)


def layer_profile(sides: Sequence[EmbeddingSide]) -> LayerProfile:
    """Stack per-layer :class:`EmbeddingSide` results (same concepts at every layer)."""
    first = sides[0]
    names = first.alignment_rows
    ips = list(first.alignment_matrix)
    by_name = [{c.name: c for c in s.concepts} for s in sides]
    probe = np.asarray(
        [
            [np.nan if m[n].probe_accuracy is None else m[n].probe_accuracy for n in names]
            for m in by_name
        ],
        dtype=np.float64,
    )
    return LayerProfile(
        layers=tuple(s.layer for s in sides),
        n_layers=first.n_layers,
        concepts=tuple(names),
        alignment={ip: _field(sides, ip, "cosine") for ip in ips},
        perm_null_q95={ip: _field(sides, ip, "perm_null_q95") for ip in ips},
        perm_p_value={ip: _field(sides, ip, "perm_p_value") for ip in ips},
        probe_accuracy=probe,
        directions={ip: np.stack([s.directions[ip] for s in sides]) for ip in ips},
    )
