"""The statistics section of a model report: every summary next to its null, Euclidean first.

Tables and figures only show numbers held by :class:`~linrep.llm.statistics.RealModelStatistics`,
so the report, its tables and ``results.json`` agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..report import format_ci

if TYPE_CHECKING:
    from ..geometry import NullTest
    from .statistics import RealModelStatistics

__all__ = ["add_statistics_section"]

_LABEL = {"euclidean": "Euclidean", "causal": "causal", "random": "random"}


def _null(t: NullTest) -> str:
    return format_ci(float(t.null_mean), float(t.q025), float(t.q975))


def _label(name: str) -> str:
    return _LABEL.get(name, name)


def add_statistics_section(rep, s: RealModelStatistics) -> None:
    """Add the observed-vs-null tables and figures of ``s`` to a :class:`~linrep.report.Report`."""
    o = s.options
    rep.add_heading("Observed vs null (Euclidean first)")
    rep.add_text(
        "The paper's prediction is about the Euclidean inner product; the causal inner product and "
        "a random one follow. Every summary is compared with the same summary of directions built "
        f"from random single-token words ({s.n_word_rows:,} candidate rows, {s.word_rows_kind}: "
        f"the concept pairs' own filter), {o.n_null_draws} draws: **random word pairs** (as many independent "
        "pairs per concept as it has) and **shared words** (the concepts' own tokens relabelled "
        "into random words, so words shared within and between concepts stay shared: what the "
        "word lists force by themselves). Null columns show the null mean with its 2.5–97.5 % range."
    )
    _cross_tables(rep, s)
    _loo_table(rep, s)
    if s.alignment:
        _alignment_table(rep, s)
    _intervention_tables(rep, s)


def _cross_tables(rep, s: RealModelStatistics) -> None:
    rows = []
    for ip, c in s.cross.items():
        r, w = c.random_pairs.mean_abs_offdiag, c.shared_words.mean_abs_offdiag
        rows.append(
            {
                "inner product": _label(ip),
                "observed": float(r.observed),
                "random word pairs": _null(r),
                "p (null ≥ obs.)": float(r.p_value),
                "shared words": _null(w),
                "p (null ≥ obs.) ": float(w.p_value),
            }
        )
    ri = s.random_inner
    q = np.quantile(ri.mean_abs_offdiag, [0.025, 0.975])
    rows.append(
        {
            "inner product": f"{ri.mean_abs_offdiag.size} random inner products",
            "observed": format_ci(float(ri.mean_abs_offdiag.mean()), q[0], q[1]),
        }
    )
    rep.add_table(
        rows,
        caption="Mean |cos| between different concepts' directions. The last row is the observed "
        "directions under many random inner products (mean and 2.5–97.5 % range). p: share of "
        "null draws at least as large as the observed value (upper tail).",
    )
    _cross_figure(rep, s)
    rows = []
    for ip, c in s.cross.items():
        for key, what in (("within_abs", "related (same group)"), ("between_abs", "unrelated")):
            r, w = getattr(c.random_pairs, key), getattr(c.shared_words, key)
            rows.append(
                {
                    "inner product": _label(ip),
                    "concept pairs": what,
                    "observed": float(r.observed),
                    "random word pairs": _null(r),
                    "shared words": _null(w),
                    "p (shared ≥ obs.)": float(w.p_value),
                }
            )
    rep.add_table(
        rows,
        caption="Block structure: mean |cos| between related concepts (verb inflections, verb "
        "derivations, adjective forms, languages) and between unrelated ones. Related concepts "
        "share words (every verb concept holds the bare verb), so compare with the shared-words null.",
    )
    rows = []
    for ip, c in s.cross.items():
        t = c.random_pairs.mean_abs_reference_cos
        flagged = [n for n, p in zip(s.names, c.mean_gamma_p_holm, strict=True) if p < 0.05]
        rows.append(
            {
                "inner product": _label(ip),
                "mean |cos(ḡ_W, mean γ)|": float(t.observed),
                "random word pairs": _null(t),
                "concepts correlated with mean γ (Holm p < 0.05)": ", ".join(flagged) or "none",
                "mean |offdiag| without mean-γ component": float(
                    c.random_pairs.mean_abs_offdiag_reference_removed.observed
                ),
            }
        )
    rep.add_table(
        rows,
        caption="Projection of each concept direction on the mean of γ (over normal tokens); per "
        "concept z against random word-pair directions of its size, two-sided normal p, Holm across "
        "concepts. The last column removes the mean-γ component from every direction first.",
    )


def _cross_figure(rep, s: RealModelStatistics) -> None:
    """Observed vs both nulls: all concept pairs, related pairs, unrelated pairs, per inner product."""
    from .figures import null_panels_figure

    keys = ("mean_abs_offdiag", "within_abs", "between_abs")

    def pick(ip: str, attr: str, field: str) -> np.ndarray:
        return np.array(
            [float(getattr(getattr(getattr(s.cross[ip], attr), k), field)) for k in keys]
        )

    panels = {}
    for ip in s.cross:
        obs = pick(ip, "random_pairs", "observed")
        panels[_label(ip)] = {"observed": (obs, obs, obs)} | {
            label: (pick(ip, attr, "null_mean"), pick(ip, attr, "q025"), pick(ip, attr, "q975"))
            for label, attr in (
                ("random word pairs", "random_pairs"),
                ("shared words", "shared_words"),
            )
        }
    rep.add_figure(
        null_panels_figure(
            panels,
            ["all", "related", "unrelated"],
            ylabel="mean |cos| between concepts",
            title="Observed vs nulls (2.5–97.5 % of null draws)",
        ),
        "statistics_offdiag_vs_null",
        caption="Mean |cos| between different concepts' directions (all pairs of concepts, related "
        "pairs, unrelated pairs), observed and under the two random word-pair nulls, per inner "
        "product.",
    )


def _loo_table(rep, s: RealModelStatistics) -> None:
    rows = []
    for n in s.names:
        row: dict[str, object] = {"concept": n}
        for ip, tests in s.loo.items():
            t = tests[n]
            row["word clusters"] = t.n_clusters
            row[f"LOO cos ({_label(ip)})"] = format_ci(t.loo_cosine, *t.loo_cosine_ci)
            row[f"z ({_label(ip)})"] = t.z
            row[f"Holm p ({_label(ip)})"] = t.p_holm
        rows.append(row)
    rep.add_table(
        rows,
        caption=f"Leave-one-out test. Statistic: mean over pairs of Δγ_kᵀū, ū the unit mean of the "
        f"pairs sharing no word with pair k; null: the same statistic after flipping base/target of "
        f"whole word clusters at random ({s.options.n_sign_flips} flips), so z is the statistic over "
        "its own standard error. Holm across concepts (its smallest possible value is "
        f"k/(flips + 1) = {len(s.names) / (s.options.n_sign_flips + 1):.3f}). LOO cos: mean "
        "cos(Δγ_k, mean of the other Δγ) with a 95 % cluster-bootstrap interval over word clusters.",
    )


def _alignment_table(rep, s: RealModelStatistics) -> None:
    names = [n for n in s.names if any(n in a for a in s.alignment.values())]
    rows = []
    for n in names:
        row: dict[str, object] = {"concept": n}
        for ip, al in s.alignment.items():
            if ip == "random":  # in results.json; the table keeps the two that carry the claim
                continue
            a = al[n]
            row[f"cos ({_label(ip)})"] = a.cosine
            row[f"perm. null |cos| ({_label(ip)})"] = a.null_mean_abs
            row[f"null 95 % ({_label(ip)})"] = a.null_q95
            row[f"Holm p ({_label(ip)})"] = a.p_holm
        rows.append(row)
    rep.add_table(
        rows,
        caption="Alignment cos(f̄_W, ḡ_W) against a label-permutation null: the base/target labels "
        f"of the same contexts permuted ({_n_perm(s)} permutations, class sizes kept); mean |null "
        "cosine|, its 95th percentile, and the Holm-adjusted one-sided p.",
    )


def _n_perm(s: RealModelStatistics) -> int:
    return max((a.n_perm for al in s.alignment.values() for a in al.values()), default=0)


def _intervention_tables(rep, s: RealModelStatistics) -> None:
    rep.add_text(
        "**Intervention at the final layer.** Adding α·s·ū (mapped to the embedding side) to λ(x) "
        "changes the log-odds of a word pair (y0, y1) by exactly α·s·⟨ū, Δγ⟩ for every context: "
        "the same number as the leave-one-out projection, times α·s. What is measured is therefore "
        "its distribution over held-out pairs: each pair scored with the direction of the pairs that "
        "share no word with it (on-target: the concept's own pairs; off-target: every other "
        "concept's pairs), and over held-out contexts (word-disjoint folds)."
    )
    rows = []
    for n in s.names:
        row: dict[str, object] = {"concept": n}
        for ip, effects in s.interventions.items():
            e = effects[n]
            row[f"on-target ({_label(ip)})"] = format_ci(e.on_target, *e.on_target_ci)
            row[f"off-target ({_label(ip)})"] = e.off_target
            row[f"ratio ({_label(ip)})"] = e.ratio
        rows.append(row)
    scales = ", ".join(f"{_label(k)} s = {v:.3g}" for k, v in s.scales.items())
    rep.add_table(
        rows,
        caption="Cross-fitted log-odds change per unit α (α in units of s, the mean ‖λ'(x)‖: "
        f"{scales}). On-target: mean over the concept's pairs with a 95 % cluster-bootstrap "
        "interval; off-target: mean over the other concepts of |mean change of their pairs|.",
    )
    if any(s.contexts.values()):
        rows = []
        for n in s.names:
            row = {"concept": n}
            for ip, ctx in s.contexts.items():
                if n not in ctx:
                    continue
                c = ctx[n]
                row["contexts"] = c.n_contexts
                row[f"change per α ({_label(ip)})"] = c.effect_per_alpha
                row[f"target > base at α=0 → {c.alphas[-1]:g} ({_label(ip)})"] = (
                    f"{c.frac_target_over_base[0]:.2f} → {c.frac_target_over_base[-1]:.2f}"
                    if c.frac_target_over_base
                    else "–"
                )
            if len(row) > 1:
                rows.append(row)
        rep.add_table(
            rows,
            caption="Held-out contexts (5 word-disjoint folds, each steered with the direction of "
            "the pairs sharing no word with its contexts): mean log-odds change per unit α, and the "
            "share of base-side contexts where the target word beats the base word.",
        )
    if s.context_check is not None:
        c = s.context_check
        rep.add_text(
            f"Context check: the model ranks the word each context was written for first in "
            f"{c.n_top1} and in its top 5 in {c.n_top5} of {c.n_contexts} contexts (median rank "
            f"{c.median_rank:g})."
        )
