"""Concept directions as steering vectors: save, load, and export as a llama.cpp control vector.

A :class:`DirectionSet` holds, per inner product ⟨u, v⟩_M, the unit concept directions in that inner
product's coordinates and the map M^{1/2} back to raw coordinates. In those coordinates logits are
f'·g' with f' = f M^{−1/2}, so adding the raw vector

    v = u M^{1/2}                                        (``DirectionSet.direction``)

to a hidden state moves f' by exactly the unit vector u. ``α·v`` therefore moves the representation
a distance α in the inner product's own units: Euclidean v = u; causal v = u Cov(γ)^{−1/2}, whose
unembedding-side read-out is Park et al.'s intervention. Directions come from the unembedding side
(ḡ'_W, meaningful at the final post-norm layer) and, where contexts were measured, from the
embedding side at given layers (f̄'_W^(L)).

Files: :meth:`DirectionSet.save` writes safetensors (float64 tensors ``unembedding.<inner>``,
``map.<inner>``, ``embedding.<inner>``; metadata: model sha256 and name, layers, inner products and
their whitening, estimator, linrep version) and :func:`load_directions` reads it back exactly.
:meth:`DirectionSet.export_control_vector` writes llama.cpp's control-vector GGUF (architecture
``controlvector``, ``controlvector.model_hint``, ``controlvector.layer_count``, float32 tensors
``direction.k``). llama.cpp adds ``direction.k`` to the output of block k (0-based, k ≥ 1), which is
linrep's hidden state k + 1, so linrep layers 2 … n − 1 can be exported (n, the post-norm state,
has no llama.cpp counterpart).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, did_you_mean
from .records import Record

__all__ = ["DirectionSet", "DirectionMetadata", "load_directions"]

_FORMAT = "linrep.directions.v1"


@dataclass(frozen=True)
class DirectionMetadata(Record):
    """Where a direction set comes from.

    Attributes:
        model_name, model_label: the model's name and its exact checkpoint/quantisation.
        model_sha256: checksum of the weights the directions were measured on.
        d: width of the hidden states. n_layers: the model's blocks (hidden states 0 … n).
        estimator: direction estimator. whitening: inner product → how its M was obtained.
        linrep_version: the version that wrote it.
    """

    model_name: str
    model_label: str
    model_sha256: str
    d: int
    n_layers: int | None
    estimator: str = "mean"
    whitening: Mapping[str, str] = field(default_factory=dict)
    linrep_version: str = ""


@dataclass(frozen=True, eq=False)
class DirectionSet(Record):
    """Unit concept directions per inner product, and how to turn them into steering vectors.

    Attributes:
        concepts: the k concept names (rows of ``unembedding``).
        unembedding: inner product → ``(k, d)`` unit ḡ'_W in its coordinates.
        maps: inner product → ``(d, d)`` M^{1/2} (raw vector of a unit move u: u M^{1/2}).
        layers: layers with embedding-side directions (hidden-state indices).
        embedding_concepts: the rows of ``embedding``.
        embedding: inner product → ``(len(layers), len(embedding_concepts), d)`` unit f̄'_W^(L).
        metadata: provenance.
    """

    concepts: tuple[str, ...]
    unembedding: Mapping[str, np.ndarray]
    maps: Mapping[str, np.ndarray]
    metadata: DirectionMetadata
    layers: tuple[int, ...] = ()
    embedding_concepts: tuple[str, ...] = ()
    embedding: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def inner_products(self) -> tuple[str, ...]:
        return tuple(self.unembedding)

    def _row(self, names: Sequence[str], concept: str) -> int:
        if concept not in names:
            raise InputError(
                f"no direction for concept '{concept}'{did_you_mean(concept, names)}; pass one of "
                "the analysed concepts"
            )
        return list(names).index(concept)

    def _inner(self, inner: str) -> str:
        if inner not in self.unembedding:
            raise InputError(
                f"no directions under the '{inner}' inner product{did_you_mean(inner, self.unembedding)}"
            )
        return inner

    def direction(self, concept: str, inner: str = "causal", *, layer: int | None = None):
        """Raw steering vector v = u M^{1/2} of a concept: ``(d,)`` float64.

        Args:
            concept: concept name.
            inner: inner product (its unit of length is the unit of α in :func:`linrep.llm.steer`).
            layer: None = the unembedding direction ḡ'_W (final post-norm layer); an int = the
                embedding-side direction measured on contexts at that hidden state.
        """
        inner = self._inner(inner)
        if layer is None:
            u = self.unembedding[inner][self._row(self.concepts, concept)]
        else:
            if layer not in self.layers:
                raise InputError(
                    f"no embedding-side directions at layer {layer} (measured: "
                    f"{list(self.layers) or 'none'}); run analyze(..., contexts=..., layer="
                    f"{layer}) or layer='all', or use layer=None"
                )
            j = self._row(self.embedding_concepts, concept)
            u = self.embedding[inner][self.layers.index(layer), j]
        return np.asarray(u, dtype=np.float64) @ self.maps[inner]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file (exact float64; read back with :func:`load_directions`)."""
        from safetensors.numpy import save

        from ..io import atomic_write_bytes

        tensors = {f"unembedding.{k}": np.ascontiguousarray(v) for k, v in self.unembedding.items()}
        tensors |= {f"map.{k}": np.ascontiguousarray(v) for k, v in self.maps.items()}
        tensors |= {f"embedding.{k}": np.ascontiguousarray(v) for k, v in self.embedding.items()}
        info = {
            "format": _FORMAT,
            "concepts": list(self.concepts),
            "layers": list(self.layers),
            "embedding_concepts": list(self.embedding_concepts),
            "metadata": asdict(self.metadata),
        }
        meta = {
            "linrep": json.dumps(info, ensure_ascii=False),
            "model_name": self.metadata.model_name,
            "model_sha256": self.metadata.model_sha256,
            "inner_products": ",".join(self.inner_products),
            "whitening": json.dumps(dict(self.metadata.whitening), ensure_ascii=False),
            "layers": ",".join(str(x) for x in self.layers) or "final",
            "linrep_version": self.metadata.linrep_version,
        }
        return atomic_write_bytes(path, save(tensors, metadata=meta))

    def export_control_vector(
        self,
        path: str | os.PathLike,
        concept: str,
        layers: Sequence[int],
        *,
        inner: str = "euclidean",
        scale: float = 1.0,
    ) -> Path:
        """Write llama.cpp's control-vector GGUF: one float32 tensor ``direction.k`` per layer.

        Args:
            path: the ``.gguf`` file.
            concept: the concept whose direction is exported.
            layers: linrep hidden-state indices 2 … n − 1 (llama.cpp's block output k = layer − 1).
            inner: inner product of the direction.
            scale: multiplies every vector (llama.cpp scales again at run time).

        Each layer gets its embedding-side direction when one was measured there, otherwise the
        unembedding direction (the GGUF records which in ``controlvector.linrep.source``).
        """
        vectors, source = self._control_vectors(concept, layers, inner, scale)
        return _write_control_vector(Path(path), vectors, self.metadata, concept, inner, source)

    def _control_vectors(self, concept, layers, inner, scale):
        n = self.metadata.n_layers
        layers = [int(x) for x in layers]
        if not layers or n is None or any(not 2 <= x <= n - 1 for x in layers):
            raise InputError(
                f"control-vector layers must be hidden states 2..{(n or 0) - 1} (llama.cpp adds "
                f"direction.k to block k's output, k ≥ 1; the post-norm state {n} has no "
                f"counterpart); got {layers}"
            )
        if not np.isfinite(scale):
            raise InputError(f"scale must be a finite number, got {scale}")
        measured = all(x in self.layers for x in layers) and concept in self.embedding_concepts
        vectors = {
            x - 1: scale * self.direction(concept, inner, layer=x if measured else None)
            for x in layers
        }
        return vectors, "embedding" if measured else "unembedding"


def _write_control_vector(path, vectors, meta, concept, inner, source) -> Path:
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        w = gguf.GGUFWriter(str(tmp), arch="controlvector")
        w.add_string("controlvector.model_hint", meta.model_name)
        w.add_uint32("controlvector.layer_count", len(vectors))
        w.add_string("controlvector.linrep.concept", concept)
        w.add_string("controlvector.linrep.inner_product", inner)
        w.add_string("controlvector.linrep.source", source)
        w.add_string("controlvector.linrep.model_sha256", meta.model_sha256)
        for k in sorted(vectors):
            w.add_tensor(f"direction.{k}", np.ascontiguousarray(vectors[k], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_directions(path: str | os.PathLike) -> DirectionSet:
    """Read a direction set written by :meth:`DirectionSet.save` (bit-exact).

    Raises:
        InputError: a missing file, or one that is not a linrep direction file.
    """
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        info = json.loads(meta["linrep"])
        if info.get("format") != _FORMAT:
            raise ValueError(info.get("format"))
    except FileNotFoundError:
        raise InputError(f"direction file '{path}' does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, Exception) as e:
        raise InputError(
            f"'{path}' is not a linrep direction file ({type(e).__name__}); pass a file written "
            "by result.save_directions()"
        ) from None

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    m = info["metadata"]
    return DirectionSet(
        concepts=tuple(info["concepts"]),
        unembedding=group("unembedding"),
        maps=group("map"),
        metadata=DirectionMetadata(**{**m, "whitening": dict(m.get("whitening", {}))}),
        layers=tuple(int(x) for x in info["layers"]),
        embedding_concepts=tuple(info["embedding_concepts"]),
        embedding=group("embedding"),
    )
