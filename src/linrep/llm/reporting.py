"""The ``linrep llm`` report: tables and figures of one model, and the cross-model comparison.

Built on :class:`linrep.report.Report` (self-contained ``report.html``, ``report.md``, figures). The
results dict of :func:`linrep.llm.run.analyze_model` is written to ``results.json`` at the top level
(``model``, ``concepts``, ``per_concept``, ...) with the report's tables under ``"report"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..io import run_metadata, write_json

__all__ = ["write_model_report", "write_comparison_report", "comparison_rows"]

_INNER = ("euclidean", "causal", "random")


def _fmt_ci(m: float, ci: Sequence[float]) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    lo, hi = ci
    return f"{m:.3f} [{lo:.2f}, {hi:.2f}]"


def _add_figures(rep, res: dict[str, Any], stats=None) -> None:
    from ..report import figures

    names = res["concepts"]
    mats = {
        f"{k} (mean |off-diag| {res['mean_abs_offdiag'][k]:.3f})": np.abs(np.asarray(v))
        for k, v in res["cosine_matrix"].items()
    }
    rep.add_figure(
        figures.heatmaps(mats, names, title=f"{res['model']}: |cos| between concept directions"),
        "concept_cosines",
        caption="|cosine| between unembedding concept directions ḡ_W under the Euclidean, causal "
        "(Cov(γ)⁻¹ over normal tokens) and a random inner product.",
    )
    series = {}
    for ip in ("euclidean", "causal"):
        m = np.array([res["per_concept"][n]["loo_cosine"][ip] for n in names])
        ci = np.array([res["per_concept"][n]["loo_cosine_ci"][ip] for n in names], dtype=float)
        series[ip] = (m, ci[:, 0], ci[:, 1])
    rep.add_figure(
        figures.point_intervals(
            names, series, ylabel="LOO cosine", hlines={"0": 0.0}, title="Leave-one-out cosine"
        ),
        "loo_cosine",
        caption="Mean over pairs of cos(Δγ_k, mean of the other Δγ), with 95 % bootstrap intervals.",
    )
    emb = res.get("embedding")
    if emb and emb.get("alignment_matrix"):
        rows = emb["alignment_rows"]
        mats = {k: np.asarray(v) for k, v in emb["alignment_matrix"].items() if k != "random"}
        rep.add_figure(
            figures.heatmaps(
                mats,
                rows,
                col_labels=names,
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
    iv = res["intervention"]
    M = np.asarray(iv["matrix"])
    fitted = stats is not None and iv["inner_product"] in stats.interventions
    if fitted:  # cross-fitted: each pair scored with a direction from pairs sharing no word with it
        rows = stats.interventions[iv["inner_product"]]
        M = np.array([rows[n].mean_effects for n in names])
    lim = float(np.nanmax(np.abs(M))) if M.size else 1.0
    rep.add_figure(
        figures.heatmaps(
            {f"{iv['inner_product']} direction added": M},
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


def _offdiag_summary(offdiag: dict[str, float], stats) -> str:
    """ ": Euclidean 0.143 (random word pairs 0.059, shared words 0.088), causal …" (Euclidean first)."""
    from .statistics import ordered

    parts = []
    for k in ordered(list(offdiag)):
        cell = f"{'Euclidean' if k == 'euclidean' else k} {offdiag[k]:.3f}"
        if stats is not None and k in stats.cross:
            c = stats.cross[k]
            cell += (
                f" (random word pairs {float(c.random_pairs.mean_abs_offdiag.null_mean):.3f}, "
                f"shared words {float(c.shared_words.mean_abs_offdiag.null_mean):.3f})"
            )
        parts.append(cell)
    return ": " + ", ".join(parts)


def write_model_report(res: dict[str, Any], cfg, out: Path) -> dict[str, Any]:
    """Write ``report.html`` / ``report.md`` / ``results.json`` / figures for one model.

    Args:
        res: from :func:`linrep.llm.run.analyze_model` (its ``_arrays`` entry is dropped).
        cfg: the :class:`~linrep.llm.run.LLMConfig`.
        out: output folder.

    Returns:
        The dict written to ``results.json``.
    """
    from ..report import Report

    res = dict(res)
    res.pop("_arrays", None)
    hierarchy = res.pop("hierarchy", None)  # a HierarchyResult (linrep.llm.hierarchy)
    stats = res.pop("statistics", None)  # a RealModelStatistics (linrep.llm.statistics)
    names = res["concepts"]
    per = res["per_concept"]
    mi = res["model_info"]
    cfg_d = asdict(cfg)
    rep = Report(
        f"Concept geometry of {res['model']}",
        config={"llm": cfg_d},
        seeds=[cfg.seed],
        summary=(
            f"Model {res['model']} (vocab {mi['vocab']:,}, d = {mi['d']}, "
            f"{mi['tokenizer_convention']} tokens), {len(names)} concepts. "
            f"Mean |cos| between different concepts' directions"
            f"{_offdiag_summary(res['mean_abs_offdiag'], stats)}."
        ),
    )
    rep.add_heading("Concept directions and cross-concept geometry")
    rep.add_table(
        [
            {
                "inner product": k,
                "mean |offdiag|": res["mean_abs_offdiag"][k],
                "within related groups": res["block_structure"][k]["within_abs_cosine"],
                "between groups": res["block_structure"][k]["between_abs_cosine"],
                "ratio": res["block_structure"][k]["ratio"],
            }
            for k in res["mean_abs_offdiag"]
        ],
        caption="Mean |cosine| between concept directions; block structure: pairs of concepts in "
        "the same related group (verb inflections, verb derivations, adjective forms, languages) vs "
        "pairs in different groups.",
    )
    _add_figures(rep, res, stats)
    if stats is not None:
        stats.add_to_report(rep)
    rep.add_heading("Per concept")
    rows = []
    for n in names:
        e = per[n]
        rows.append(
            {
                "concept": n,
                "group": res["groups"][n],
                "pairs": e["n_pairs"],
                "dropped": e.get("token_filter", {}).get("n_dropped", 0),
                "LOO cos (Eucl.)": _fmt_ci(
                    e["loo_cosine"]["euclidean"], e["loo_cosine_ci"]["euclidean"]
                ),
                "LOO cos (causal)": _fmt_ci(
                    e["loo_cosine"]["causal"], e["loo_cosine_ci"]["causal"]
                ),
                "shuffled z (causal)": e.get("shuffled_null", {}).get("causal", {}).get("z"),
                "analogy top-1": e.get("analogy_accuracy"),
            }
        )
    rep.add_table(
        rows,
        caption="LOO cosine with 95 % bootstrap interval over pairs (word clusters: see the LOO "
        f"test above); z of the mean LOO cosine against {cfg.n_shuffles} row-shuffled "
        f"unembeddings; analogy (3CosAdd, Euclidean) top-1 accuracy over up to "
        f"{cfg.analogy_queries} queries per concept.",
    )
    emb = res.get("embedding")
    if emb:
        rep.add_heading("Embedding side (paired contexts)")
        rep.add_text(
            f"Last-token hidden states at layer {emb['layer']} of {emb['n_layers']} "
            f"({'final, post-norm' if emb['layer'] == emb['n_layers'] else 'not the final layer'})."
        )
        erows = []
        for n, e in emb["per_concept"].items():
            a = e.get("alignment", {})
            erows.append(
                {
                    "concept": n,
                    "contexts": f"{e['n_base']} + {e['n_target']}",
                    "align (Eucl.)": a.get("euclidean", {}).get("cosine"),
                    "align (causal)": a.get("causal", {}).get("cosine"),
                    "other concepts |cos| (causal)": a.get("causal", {}).get(
                        "other_concepts_mean_abs"
                    ),
                    "random |cos| (causal)": a.get("causal", {}).get("random_mean_abs"),
                    "rank (causal)": a.get("causal", {}).get("rank_among_concepts"),
                    "probe acc": e["probe_accuracy"],
                    "ḡ-direction probe acc": e.get("unembedding_direction_probe_accuracy"),
                }
            )
        rep.add_table(
            erows,
            caption="Alignment cos(f̄_W, ḡ_W) vs other concepts' directions and vs 2,000 random "
            "directions (the label-permutation null, the right baseline, is in the observed-vs-null "
            "section); cross-validated logistic-regression probe; one-threshold probe on the "
            "unembedding direction.",
        )
    iv = res["intervention"]
    rep.add_heading("Intervention")
    rep.add_text(
        f"Adding α·s·ḡ'_W ({iv['inner_product']} coordinates, s = {iv['scale']:.3g}) to the final "
        "hidden state changes the log-odds of every word pair exactly linearly in α. On-target: "
        "concept W's own pairs (leave-one-out); off-target: mean |change| of the other concepts."
    )
    if stats is None:
        rep.add_table(
            [{"concept": n, **iv["per_concept"][n]} for n in names],
            caption=f"Log-odds change per unit α ({iv['units']}).",
        )
    else:
        rep.add_text(
            "The cross-fitted distribution of that change over held-out pairs and contexts is in "
            "the observed-vs-null section; the tables below illustrate it on single contexts."
        )
    for n, tab in iv.get("topk", {}).items():
        rep.add_table(
            [
                {
                    "α": r["alpha"],
                    "top tokens": ", ".join(
                        f"{t.strip() or repr(t)} ({p:.2f})"
                        for t, p in zip(r["tokens"], r["probs"], strict=True)
                    ),
                }
                for r in tab["rows"]
            ],
            caption=f"{n}: top-{cfg.top_k} next tokens of “{tab['context']}” as α grows.",
        )
    wp = {n: v for n, v in iv.get("word_probabilities", {}).items() if v}
    if wp:
        rep.add_table(
            [
                {
                    "concept": n,
                    "contexts": v["n_contexts"],
                    **{
                        f"p(target) α={a:g}": v["mean_p_target"][i]
                        for i, a in enumerate(iv["alphas"])
                    },
                    f"target > base at α={iv['alphas'][-1]:g}": v["frac_target_over_base"][-1],
                }
                for n, v in wp.items()
            ],
            caption="Base-side contexts: mean probability of the counterpart target word as α grows.",
        )
    if hierarchy is not None:
        hierarchy.add_to_report(rep)
    rep.add_heading("Token filter")
    frows = []
    for n in names + list(res["skipped_concepts"]):
        r = per[n]["token_filter"] if n in per else res["skipped_concepts"][n]
        frows.append(
            {
                "concept": n,
                "lines": r["n_lines"],
                "kept": r["n_pairs"],
                "dropped": ", ".join(f"{k}: {v}" for k, v in r["dropped_by_reason"].items()) or "–",
                "status": "used" if n in per else "skipped (too few pairs)",
            }
        )
    rep.add_table(
        frows, caption="Pairs kept (both words single normal tokens with a leading space)."
    )
    rep.add_table([{"step": k, "seconds": v} for k, v in res["timings"].items()], caption="Timings")
    rep.set_metadata(model_sha256=mi["sha256"])
    paths = rep.write(out)
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    final = {
        **res,
        **({"hierarchy": hierarchy.to_json()} if hierarchy is not None else {}),
        **({"statistics": stats.to_json()} if stats is not None else {}),
        "config": cfg_d,
        "metadata": run_metadata(("transformers", "gguf")),
        "report": {k: written[k] for k in ("title", "tables", "figures")},
    }
    write_json(paths["json"], final)
    return json.loads(paths["json"].read_text(encoding="utf-8"))


def comparison_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per concept present in any model: LOO cosines (Euclidean/causal) per model."""
    names: list[str] = []
    for r in results:
        names += [n for n in r["concepts"] if n not in names]
    rows = []
    for n in names:
        row: dict[str, Any] = {"concept": n}
        for r in results:
            e = r["per_concept"].get(n)
            for ip in ("euclidean", "causal"):
                row[f"{r['model']} {ip}"] = None if e is None else e["loo_cosine"][ip]
        rows.append(row)
    return rows


def write_comparison_report(results: Sequence[dict[str, Any]], out: Path) -> dict[str, Any]:
    """The cross-model table and figure (same concepts on several models)."""
    from ..report import Report, figures

    rep = Report(
        "Concept geometry across models",
        summary="The same concepts measured on several models (each model's own report is in its "
        "sub-folder).",
    )
    summary_rows = []
    for r in results:
        row = {"model": r["model"], "concepts": len(r["concepts"])}
        for ip in _INNER:
            row[f"mean |offdiag| {ip}"] = r["mean_abs_offdiag"][ip]
        row["mean LOO (causal)"] = float(
            np.mean([r["per_concept"][n]["loo_cosine"]["causal"] for n in r["concepts"]])
        )
        emb = r.get("embedding") or {}
        row["mean alignment (causal)"] = (
            emb.get("summary", {}).get("causal", {}).get("mean_alignment")
        )
        summary_rows.append(row)
    rep.add_table(summary_rows, caption="Per model")
    rows = comparison_rows(results)
    rep.add_table(rows, caption="Leave-one-out cosine per concept and model")
    names = [r["concept"] for r in rows]
    series = {}
    for r in results:
        m = np.array(
            [
                r["per_concept"][n]["loo_cosine"]["causal"] if n in r["per_concept"] else np.nan
                for n in names
            ]
        )
        lo = np.array(
            [
                r["per_concept"][n]["loo_cosine_ci"]["causal"][0]
                if n in r["per_concept"]
                else np.nan
                for n in names
            ]
        )
        hi = np.array(
            [
                r["per_concept"][n]["loo_cosine_ci"]["causal"][1]
                if n in r["per_concept"]
                else np.nan
                for n in names
            ]
        )
        series[r["model"]] = (m, lo, hi)
    rep.add_figure(
        figures.point_intervals(names, series, ylabel="LOO cosine (causal)", hlines={"0": 0.0}),
        "models_loo",
        caption="Leave-one-out cosine (causal inner product) per concept, one colour per model.",
    )
    paths = rep.write(out)
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    final = {
        "models": [r["model"] for r in results],
        "per_model": summary_rows,
        "loo_cosine": rows,
        "metadata": run_metadata(),
        "report": {k: written[k] for k in ("title", "tables", "figures")},
    }
    write_json(paths["json"], final)
    return final
