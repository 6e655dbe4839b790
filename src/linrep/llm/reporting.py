"""The ``linrep llm`` report, written from the typed :class:`~linrep.llm.AnalysisResult`.

Built on :class:`linrep.report.Report` (self-contained ``report.html``, ``report.md``, figures, and
``results.json`` whose ``"results"`` entry is :meth:`AnalysisResult.to_json`). One function per
section; extension sections render themselves (``section.add_to_report(report)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..report import escape
from .records import TESTED_INNER, format_interval
from .result import AnalysisResult

__all__ = [
    "build_report",
    "write_model_report",
    "write_comparison_report",
    "comparison_rows",
    "summary_lines",
]


def offdiag_cells(res: AnalysisResult) -> list[str]:
    """``"Euclidean 0.143 (random word pairs 0.059, shared words 0.088)"`` per inner product,
    Euclidean first (the papers' claim), with the statistics' nulls when they were computed."""
    from .statistics import ordered

    cells = []
    for k in ordered(list(res.mean_abs_offdiag)):
        cell = f"{'Euclidean' if k == 'euclidean' else k} {res.mean_abs_offdiag[k]:.3f}"
        if res.statistics is not None and k in res.statistics.cross:
            c = res.statistics.cross[k]
            cell += (
                f" (random word pairs {float(c.random_pairs.mean_abs_offdiag.null_mean):.3f}, "
                f"shared words {float(c.shared_words.mean_abs_offdiag.null_mean):.3f})"
            )
        cells.append(cell)
    return cells


def _summary(res: AnalysisResult) -> str:
    m = res.model
    off = ", ".join(offdiag_cells(res))
    return (
        f"Model: {escape(m.label)} ({escape(m.name)}; vocab {m.vocab:,}, d = {m.d}, "
        f"{m.tokenizer_convention} tokens), {len(res.concepts)} concepts. Mean |cos| between "
        f"different concepts' directions: {off}."
    )


def _cross_section(rep, res: AnalysisResult) -> None:
    from ..report import figures

    rep.add_heading("Concept directions and cross-concept geometry")
    rep.add_table(
        [
            {
                "inner product": k,
                "mean |offdiag|": v.mean_abs_offdiag,
                "within related groups": v.block_structure.within_abs_cosine,
                "between groups": v.block_structure.between_abs_cosine,
                "ratio": v.block_structure.ratio,
            }
            for k, v in res.cross.items()
        ],
        caption="Mean |cosine| between concept directions; block structure: pairs of concepts in "
        "the same related group (verb inflections, verb derivations, adjective forms, languages) "
        "vs pairs in different groups.",
    )
    names = list(res.concept_names)
    for k, v in res.cross.items():
        rep.add_figure(
            figures.heatmaps(
                {f"{k} inner product": np.abs(v.cosine_matrix)},
                names,
                title=f"{res.model.name}: |cos| between concept directions ({k}; mean |off-diag| "
                f"{v.mean_abs_offdiag:.3f})",
            ),
            f"concept_cosines_{k}",
            caption=f"|cosine| between unembedding concept directions ḡ_W under the {k} inner "
            "product (causal: Cov(γ)⁻¹ over normal tokens; random: a random positive-definite M).",
        )


def _loo_section(rep, res: AnalysisResult) -> None:
    from ..report import figures

    names = list(res.concept_names)
    series = {}
    for ip in TESTED_INNER:
        if all(ip in c.loo_cosine for c in res.concepts):
            m = np.array([c.loo_cosine[ip] for c in res.concepts])
            ci = np.array([c.loo_cosine_ci[ip] for c in res.concepts], dtype=float)
            series[ip] = (m, ci[:, 0], ci[:, 1])
    if series:
        rep.add_figure(
            figures.point_intervals(
                names, series, ylabel="LOO cosine", hlines={"0": 0.0}, title="Leave-one-out cosine"
            ),
            "loo_cosine",
            caption="Mean over pairs of cos(Δγ_k, mean of the other Δγ), with 95 % bootstrap "
            "intervals over pairs.",
        )
    rep.add_heading("Per concept")
    rep.add_table([_concept_row(c) for c in res.concepts], caption=_concept_caption(res))


def _concept_row(c) -> dict[str, Any]:
    row: dict[str, Any] = {
        "concept": escape(c.name),
        "group": escape(c.group),
        "pairs": c.n_pairs,
        "dropped": len(c.token_filter.dropped),
    }
    for ip in TESTED_INNER:
        if ip in c.loo_cosine:
            row[f"LOO cos ({ip})"] = format_interval(c.loo_cosine[ip], *c.loo_cosine_ci[ip])
    if "causal" in c.shuffled_null:
        row["shuffled z (causal)"] = c.shuffled_null["causal"].z
    row["analogy top-1"] = c.analogy_accuracy
    return row


def _concept_caption(res: AnalysisResult) -> str:
    o = res.options
    return (
        "LOO cosine with 95 % bootstrap interval over pairs (the test over word clusters is in the "
        f"observed-vs-null section); z of the mean LOO cosine against {o.n_shuffles} row-shuffled "
        f"unembeddings; analogy (3CosAdd, Euclidean) top-1 accuracy over up to "
        f"{o.analogy_queries} queries per concept."
    )


def _embedding_section(rep, res: AnalysisResult) -> None:
    from ..report import figures

    emb = res.embedding
    if emb is None:
        return
    rep.add_heading("Embedding side (paired contexts)")
    where = "final, post-norm" if emb.layer == emb.n_layers else "not the final layer"
    rep.add_text(
        f"Hidden states ({emb.pooling} token{'s' if emb.pooling == 'mean' else ''}) at layer "
        f"{emb.layer} of {emb.n_layers} ({where}); estimator: {res.options.estimator}. The "
        f"label-permutation null refits the direction on the same contexts with base/target labels "
        f"permuted ({res.options.n_permutations} permutations)."
    )
    rep.add_table(
        [_embedding_row(c) for c in emb.concepts],
        caption="Alignment cos(f̄_W, ḡ_W) (Euclidean, then causal) against the label-permutation "
        "null (95th percentile, Holm-adjusted p), the other concepts' directions and 2,000 random "
        "directions; cross-validated logistic probe; one-threshold probe on the unembedding "
        "direction.",
    )
    mats = {k: v for k, v in emb.alignment_matrix.items() if k != "random"}
    if mats:
        rep.add_figure(
            figures.heatmaps(
                mats,
                list(emb.alignment_rows),
                col_labels=list(res.concept_names),
                vmin=-1,
                vmax=1,
                cmap="RdBu_r",
                annotate=False,
                colorbar_label="cosine",
                title="cos(embedding direction f̄_W, unembedding direction ḡ_W')",
            ),
            "alignment",
            caption="Rows: concepts with paired contexts (embedding side); columns: unembedding "
            "directions of every concept. The matching entry should stand out.",
        )


def _embedding_row(c) -> dict[str, Any]:
    row: dict[str, Any] = {"concept": escape(c.name), "contexts": f"{c.n_base} + {c.n_target}"}
    for ip in ("euclidean", "causal"):
        a = (c.alignment or {}).get(ip)
        if a is None:
            continue
        row[f"align ({ip})"] = a.cosine
        row[f"perm. q95 ({ip})"] = a.perm_null_q95
        row[f"Holm p ({ip})"] = a.perm_p_holm
    a = (c.alignment or {}).get("causal")
    if a is not None:
        row["other concepts |cos| (causal)"] = a.other_concepts_mean_abs
        row["random |cos| (causal)"] = a.random_mean_abs
        row["rank (causal)"] = a.rank_among_concepts
    row["probe acc"] = c.probe_accuracy
    row["ḡ-direction probe acc"] = c.unembedding_direction_probe_accuracy
    return row


def _layers_section(rep, res: AnalysisResult) -> None:
    from .figures import layer_profile_figure

    prof = res.layers
    if prof is None:
        return
    rep.add_heading("Every layer")
    rep.add_figure(
        layer_profile_figure(prof),
        "layers",
        caption="Against depth (hidden state 0 = embeddings, "
        f"{prof.n_layers} = final post-norm): alignment cos(f̄_W^(L), ḡ_W) per concept (thin) and "
        "its mean (thick) with the mean 95th percentile of the label-permutation null (dashed); "
        "cross-validated probe accuracy.",
    )
    ip = "causal" if "causal" in prof.alignment else next(iter(prof.alignment))
    rep.add_table(
        [
            {
                "layer": L,
                f"mean alignment ({ip})": float(np.nanmean(prof.alignment[ip][i])),
                "mean perm. null q95": float(np.nanmean(prof.perm_null_q95[ip][i])),
                "concepts above q95": int(
                    np.sum(prof.alignment[ip][i] > prof.perm_null_q95[ip][i])
                ),
                "mean probe acc": float(np.nanmean(prof.probe_accuracy[i]))
                if np.isfinite(prof.probe_accuracy[i]).any()
                else None,
            }
            for i, L in enumerate(prof.layers)
        ],
        caption=f"Per layer, over the {len(prof.concepts)} concepts with contexts.",
    )


def _intervention_section(rep, res: AnalysisResult) -> None:
    from ..report import figures

    iv = res.intervention
    names = list(res.concept_names)
    stats = res.statistics
    fitted = stats is not None and iv.inner_product in stats.interventions
    M = iv.matrix
    if fitted:  # cross-fitted: each pair scored with a direction from pairs sharing no word with it
        effects = stats.interventions[iv.inner_product]
        M = np.array([effects[n].mean_effects for n in names])
    lim = float(np.nanmax(np.abs(M))) if M.size else 1.0
    rep.add_heading("Intervention at the final layer")
    rep.add_text(
        f"Adding α·s·ḡ'_W ({iv.inner_product} coordinates, s = {iv.scale:.3g}) to the final "
        "hidden state changes the log-odds of every word pair exactly linearly in α. On-target: "
        "concept W's own pairs (leave-one-out); off-target: mean |change| of the other concepts."
    )
    rep.add_figure(
        figures.heatmaps(
            {f"{iv.inner_product} direction added": iv.matrix},
            names,
            vmin=-lim,
            vmax=lim,
            cmap="RdBu_r",
            annotate=False,
            colorbar_label="log-odds change per unit α",
            title="Intervention: row = concept whose direction is added, column = concept measured",
        ),
        "intervention",
        caption="Change of each concept's mean log-odds per unit α"
        + (
            ", cross-fitted (each pair scored with the direction of the pairs that share no word "
            "with it)."
            if fitted
            else " (diagonal leave-one-out)."
        ),
    )
    if fitted:
        rep.add_text(
            "The cross-fitted distribution of that change over held-out pairs and contexts is in "
            "the observed-vs-null section; the tables below illustrate it on single contexts."
        )
    else:
        rep.add_table(
            [{"concept": escape(n), **iv.per_concept[n].to_json()} for n in names],
            caption=f"Log-odds change per unit α ({iv.units}).",
        )
    for n, tab in iv.topk.items():
        rep.add_table(
            [
                {
                    "α": r.alpha,
                    "top tokens": ", ".join(
                        f"{escape(t.strip() or repr(t))} ({p:.2f})"
                        for t, p in zip(r.tokens, r.probs, strict=True)
                    ),
                }
                for r in tab.rows
            ],
            caption=f"{escape(n)}: top-{res.options.top_k} next tokens of “{escape(tab.context)}” "
            "as α grows.",
        )
    _word_probability_table(rep, iv)


def _word_probability_table(rep, iv) -> None:
    if not iv.word_probabilities:
        return
    rows = []
    for n, v in iv.word_probabilities.items():
        row: dict[str, Any] = {"concept": escape(n), "contexts": v.n_contexts}
        row |= {f"p(target) α={a:g}": v.mean_p_target[i] for i, a in enumerate(iv.alphas)}
        row[f"target > base at α={iv.alphas[-1]:g}"] = v.frac_target_over_base[-1]
        rows.append(row)
    rep.add_table(
        rows,
        caption="Base-side contexts: mean probability of the counterpart target word as α grows.",
    )


def _steering_section(rep, res: AnalysisResult) -> None:
    from .figures import steering_figure

    if not res.steering:
        return
    rep.add_heading("Steering through the network")
    rep.add_text(
        "α·v is added to the residual stream at one layer (a forward hook) and the network runs "
        "on held-out contexts. v is the unit embedding-side direction at that layer, estimated "
        "on word pairs disjoint from the evaluated ones (cross-fitting over folds); α is in units "
        "of the mean hidden-state norm at that layer. On-target: change of log p(target word) − "
        "log p(base word); off-target: mean |change| of the other concepts' pairs' log-odds."
    )
    for s in res.steering:
        rep.add_figure(
            steering_figure(s),
            f"steering_{_slug(s.concept)}",
            caption=f"{escape(s.concept)}: on-target vs off-target log-odds change as α grows, per layer "
            f"({s.n_eval_contexts} held-out contexts, {s.folds} folds).",
        )
        rep.add_table(s.table_rows(), caption=f"{escape(s.concept)}: log-odds change (mean ± s.e.)")


def _text_pair_section(rep, res: AnalysisResult) -> None:
    tp = res.text_pairs
    if tp is None:
        return
    rep.add_heading("Pairs of any length (multi-token words, sentences)")
    rep.add_text(
        f"Each text of a pair is represented by its hidden state at layer {tp.layer} "
        f"({tp.pooling} token{'s' if tp.pooling == 'mean' else ''}); Δλ = λ(target) − λ(base) plays "
        f"the role of Δγ. Mean |cos| between the concepts' directions: {tp.mean_abs_offdiag:.3f}."
    )
    rep.add_table(
        [
            {
                "concept": escape(c.name),
                "pairs": c.n_pairs,
                "multi-token": c.n_multi_token,
                "LOO cos": format_interval(c.loo_cosine, *c.loo_cosine_ci),
                "same-concept cos": c.same_concept_cosine,
                f"cos with ḡ_W ({tp.alignment_inner})": c.alignment,
            }
            for c in tp.concepts
        ],
        caption="LOO cosine of the Δλ with its 95 % bootstrap interval over pairs; the last column "
        "compares the text-pair direction with the single-token unembedding direction.",
    )


def _filter_section(rep, res: AnalysisResult) -> None:
    rep.add_heading("Token filter")
    rows = []
    for name, tf, status in [(c.name, c.token_filter, "used") for c in res.concepts] + [
        (n, tf, "skipped (too few pairs)") for n, tf in res.skipped.items()
    ]:
        rows.append(
            {
                "concept": escape(name),
                "lines": tf.n_lines,
                "kept": tf.n_pairs,
                "dropped": ", ".join(f"{k}: {v}" for k, v in tf.dropped_by_reason.items()) or "–",
                "encode disagrees": len(tf.encode_mismatches),
                "status": status,
            }
        )
    rep.add_table(
        rows,
        caption="Pairs kept (both words single normal tokens with a leading space); 'encode "
        "disagrees': words where tokenizer.encode does not give the looked-up single token (only "
        "checked when the tokenizer was loaded).",
    )


def _notes_section(rep, res: AnalysisResult) -> None:
    notes = list(res.notes) + ([res.model.logits_note] if res.model.logits_note else [])
    if notes:
        rep.add_heading("Notes")
        rep.add_text("\n\n".join(escape(n) for n in notes))


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "concept"


def build_report(res: AnalysisResult, config: dict[str, Any] | None = None):
    """The :class:`linrep.report.Report` of one model (not yet written)."""
    from ..report import Report

    rep = Report(f"Concept geometry of {res.model.label}", config=config, summary=_summary(res))
    _cross_section(rep, res)
    if res.statistics is not None:
        res.statistics.add_to_report(rep)
    for section in (
        _loo_section,
        _embedding_section,
        _layers_section,
        _intervention_section,
        _steering_section,
        _text_pair_section,
    ):
        section(rep, res)
    for s in res.sections:
        s.add_to_report(rep)
    _filter_section(rep, res)
    _notes_section(rep, res)
    timings = [{"step": k.removesuffix("_s"), "seconds": v} for k, v in res.timings.items()]
    rep.add_table(timings, caption="Timings of the analysis (total = the run's wall time)")
    rep.set_metadata(model=res.model.label, model_sha256=res.model.sha256)
    rep.results.update(res.to_json())
    return rep


def write_model_report(
    res: AnalysisResult, out: Path, config: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``report.html`` / ``report.md`` / ``results.json`` / figures for one model."""
    rep = build_report(res, config)
    return rep.write(out, wall_time_s=res.timings.get("total_s"))


def _concept_union(results: Sequence[AnalysisResult]) -> list[str]:
    names: list[str] = []
    for r in results:
        names += [n for n in r.concept_names if n not in names]
    return names


def comparison_rows(
    results: Sequence[AnalysisResult], keys: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per concept present in any model: LOO cosines (tested inner products) per model
    (columns ``"<key> <inner>"``; keys default to the model names)."""
    keys = list(keys) if keys is not None else [r.model.name for r in results]
    rows = []
    for n in _concept_union(results):
        row: dict[str, Any] = {"concept": escape(n)}
        for key, r in zip(keys, results, strict=True):
            c = next((c for c in r.concepts if c.name == n), None)
            for ip in TESTED_INNER:
                row[f"{key} {ip}"] = None if c is None else c.loo_cosine.get(ip)
        rows.append(row)
    return rows


def write_comparison_report(
    results: Sequence[AnalysisResult], out: Path, keys: Sequence[str] | None = None
) -> dict[str, Path]:
    """The cross-model table and figure (same concepts on several models; ``keys``: the models'
    sub-folder names, distinct even when two models have the same name)."""
    keys = list(keys) if keys is not None else [r.model.name for r in results]
    from ..report import Report, figures

    rep = Report(
        "Concept geometry across models",
        summary="The same concepts measured on several models (each model's own report is in its "
        "sub-folder): " + "; ".join(escape(r.model.label) for r in results) + ".",
    )
    per_model = []
    for key, r in zip(keys, results, strict=True):
        row: dict[str, Any] = {
            "model": escape(key),
            "checkpoint": escape(r.model.label),
            "concepts": len(r.concepts),
        }
        row |= {f"mean |offdiag| {ip}": v for ip, v in r.mean_abs_offdiag.items()}
        row["mean LOO (causal)"] = float(
            np.mean([c.loo_cosine.get("causal", np.nan) for c in r.concepts])
        )
        per_model.append(row)
    rep.add_table(per_model, caption="Per model")
    rows = comparison_rows(results, keys)
    rep.add_table(rows, caption="Leave-one-out cosine per concept and model")
    names = _concept_union(results)
    series = {}
    for key, r in zip(keys, results, strict=True):
        by = {c.name: c for c in r.concepts}
        m = np.array([by[n].loo_cosine.get("causal", np.nan) if n in by else np.nan for n in names])
        ci = np.array(
            [
                by[n].loo_cosine_ci.get("causal", (np.nan, np.nan)) if n in by else (np.nan, np.nan)
                for n in names
            ],
            dtype=float,
        )
        series[key] = (m, ci[:, 0], ci[:, 1])
    rep.add_figure(
        figures.point_intervals(names, series, ylabel="LOO cosine (causal)", hlines={"0": 0.0}),
        "models_loo",
        caption="Leave-one-out cosine (causal inner product) per concept, one colour per model.",
    )
    rep.results.update({"models": keys, "per_model": per_model, "loo_cosine": rows})
    return rep.write(out)


def summary_lines(res: AnalysisResult) -> list[str]:
    """The few lines ``linrep llm`` prints (Euclidean first, each number next to its null)."""
    lines = [
        f"{res.model.label}: {len(res.concepts)} concepts; mean |cos| between concepts: "
        + ", ".join(offdiag_cells(res))
    ]
    loo = res.statistics.loo if res.statistics is not None else {}
    for c in res.concepts:
        cos = "  ".join(f"{k} {v:.3f}" for k, v in c.loo_cosine.items())
        z = "".join(f"  z {k} {v[c.name].z:5.1f}" for k, v in loo.items() if c.name in v)
        lines.append(f"  {c.name:24s} pairs {c.n_pairs:4d}  LOO cos {cos}{z}")
    emb = res.embedding
    for ip in ("euclidean", "causal"):
        s = emb.summary.get(ip) if emb is not None else None
        if s is not None:
            q95 = f"{s.mean_perm_null_q95:.3f}" if s.mean_perm_null_q95 is not None else "–"
            lines.append(
                f"  alignment cos(f̄_W, ḡ_W) ({ip}): mean {s.mean_alignment:.3f}, permutation-null "
                f"q95 {q95} (above it for {s.n_above_perm_q95}/{s.n_concepts}); other concepts "
                f"{s.mean_other_concepts_abs or float('nan'):.3f}"
            )
    for section in res.sections:
        line = getattr(section, "summary_line", None)
        if callable(line):
            lines.append(f"  {line()}")
    return lines
