"""Flat views of an :class:`~linrep.llm.result.AnalysisResult`: rows per concept, the pairwise
cosine table and the ``results.json`` document. Kept apart from the dataclasses so they stay plain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .result import AnalysisResult

__all__ = ["concept_rows", "cosine_rows", "result_json"]


def _unembedding_row(c) -> dict[str, Any]:
    row: dict[str, Any] = {
        "concept": c.name,
        "group": c.group,
        "n_lines": c.token_filter.n_lines,
        "n_pairs": c.n_pairs,
        "n_dropped": len(c.token_filter.dropped),
        "n_encode_mismatches": len(c.token_filter.encode_mismatches),
    }
    for ip, v in c.loo_cosine.items():
        lo, hi = c.loo_cosine_ci[ip]
        p = c.loo_projection[ip]
        row |= {f"loo_cosine_{ip}": v, f"loo_cosine_{ip}_low": lo, f"loo_cosine_{ip}_high": hi}
        row |= {f"loo_projection_z_{ip}": p.z, f"loo_projection_p_{ip}": p.p_value}
        if ip in c.shuffled_null:
            row[f"shuffled_z_{ip}"] = c.shuffled_null[ip].z
    row |= {f"direction_norm_{ip}": v for ip, v in c.direction_norm.items()}
    row["analogy_accuracy"] = c.analogy_accuracy
    return row


def _embedding_row(res: AnalysisResult, name: str) -> dict[str, Any]:
    if res.embedding is None:
        return {}
    e = next((c for c in res.embedding.concepts if c.name == name), None)
    if e is None:
        return {}
    row: dict[str, Any] = {"n_contexts": e.n_base + e.n_target, "probe_accuracy": e.probe_accuracy}
    for ip, a in (e.alignment or {}).items():
        row |= {f"alignment_{ip}": a.cosine, f"alignment_perm_q95_{ip}": a.perm_null_q95}
        row |= {f"alignment_perm_p_{ip}": a.perm_p_value}
    return row


def concept_rows(res: AnalysisResult) -> list[dict[str, Any]]:
    """One flat dict per concept (unembedding side, embedding side, intervention)."""
    rows = []
    for c in res.concepts:
        iv = res.intervention.per_concept[c.name]
        extra = {
            f"intervention_on_target_{res.intervention.inner_product}": iv.on_target,
            f"intervention_off_target_{res.intervention.inner_product}": iv.off_target,
        }
        rows.append(_unembedding_row(c) | _embedding_row(res, c.name) | extra)
    return rows


def cosine_rows(res: AnalysisResult) -> list[dict[str, Any]]:
    """One row per (inner product, concept a, concept b ≠ a): cosine and whether same group."""
    names = res.concept_names
    groups = [c.group for c in res.concepts]
    rows = []
    for ip, cross in res.cross.items():
        C = cross.cosine_matrix
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    rows.append(
                        {
                            "inner_product": ip,
                            "concept_a": a,
                            "concept_b": b,
                            "cosine": float(C[i, j]),
                            "same_group": groups[i] == groups[j],
                        }
                    )
    return rows


def _embedding_json(side) -> dict[str, Any] | None:
    if side is None:
        return None
    doc = side.to_json()
    doc["per_concept"] = {c["name"]: c for c in doc.pop("concepts")}
    doc.pop("directions", None)  # arrays: in the direction file, not in results.json
    return doc


def result_json(res: AnalysisResult) -> dict[str, Any]:
    """The ``results.json`` document (top level: model, concepts, per_concept, cosine_matrix …)."""
    per = {}
    for c in res.concepts:
        d = c.to_json()
        d.pop("name")
        per[c.name] = d
    layers = res.layers.to_json() if res.layers is not None else None
    if layers is not None:
        layers.pop("directions", None)
    doc: dict[str, Any] = {
        "model": res.model.name,
        "model_info": res.model.to_json(),
        "concepts": list(res.concept_names),
        "per_concept": per,
        "groups": {c.name: c.group for c in res.concepts},
        "cosine_matrix": {k: np.asarray(v.cosine_matrix).tolist() for k, v in res.cross.items()},
        "mean_abs_offdiag": res.mean_abs_offdiag,
        "block_structure": {k: v.block_structure.to_json() for k, v in res.cross.items()},
        "skipped_concepts": {k: v.to_json() for k, v in res.skipped.items()},
        "embedding": _embedding_json(res.embedding),
        "layers": layers,
        "intervention": res.intervention.to_json(),
        "steering": [s.to_json() for s in res.steering],
        "directions": {
            "inner_products": list(res.directions.inner_products),
            "layers": list(res.directions.layers),
            "metadata": res.directions.metadata.to_json(),
        },
        "options": _options_json(res.options),
        "timings": dict(res.timings),
        "notes": list(res.notes),
    }
    if res.text_pairs is not None:
        tp = res.text_pairs.to_json()
        tp.pop("directions", None)  # arrays: not for results.json
        doc["text_pairs"] = tp
    if res.statistics is not None:
        doc["null_mean_abs_offdiag"] = res.statistics.null_mean_abs_offdiag()
        doc["statistics"] = res.statistics.to_json()
    for s in res.sections:
        doc[s.key] = s.to_json()
    from ..io import to_jsonable

    return to_jsonable(doc)


def _options_json(options) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(options)
