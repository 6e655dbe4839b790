"""The hierarchy section of a model report: the tree at a glance, the edges against their nulls.

Figures only draw numbers already in :class:`~linrep.llm.hierarchy.HierarchyResult` (so the report,
its tables and ``results.json`` agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..geometry.hierarchy import EdgeResult, HierarchyAnalysis
    from .hierarchy import HierarchyResult

__all__ = ["add_hierarchy_section", "tree_figure", "edge_figure", "tree_layout", "tree_rows"]

NULL_LABELS = {
    "subset": "random subset of parent",
    "random_set": "random token sets",
    "shuffled": "shuffled unembedding",
    "unrelated": "unrelated category",
}


def tree_layout(names: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[float, int]]:
    """(x, depth) per node: roots at depth 0, leaves spread evenly, a parent above its children.

    A node with several parents is placed under its first one.
    """
    kids: dict[str, list[str]] = {n: [] for n in names}
    parent: dict[str, str] = {}
    for p, c in edges:
        kids[p].append(c)
        parent.setdefault(c, p)
    pos: dict[str, tuple[float, int]] = {}
    slot = [0.0]

    def place(n: str, depth: int) -> float:
        mine = [c for c in kids[n] if parent.get(c) == n]
        if not mine:
            x = slot[0]
            slot[0] += 1.0
        else:
            x = float(np.mean([place(c, depth + 1) for c in mine]))
        pos[n] = (x, depth)
        return x

    for r in [n for n in names if n not in parent]:
        place(r, 0)
        slot[0] += 0.6  # a gap between trees
    return pos


def tree_rows(
    names: list[str], edges: list[tuple[str, str]], max_leaves: float = 12.0
) -> list[list[str]]:
    """Split the forest into rows of whole trees, each at most ``max_leaves`` leaves wide
    (first fit, trees in their order; a wider tree gets a row of its own).

    A node with several parents belongs to the tree of its first one.
    """
    parent: dict[str, str] = {}
    for p, c in edges:
        parent.setdefault(c, p)

    def root(n: str) -> str:
        while n in parent:
            n = parent[n]
        return n

    trees: dict[str, list[str]] = {}
    for n in names:
        trees.setdefault(root(n), []).append(n)
    rows: list[tuple[float, list[str]]] = []
    for members in trees.values():
        leaves = sum(1 for n in members if n not in parent.values())
        for k, (used, row) in enumerate(rows):
            if used + 0.6 + leaves <= max_leaves:
                rows[k] = (used + 0.6 + leaves, row + members)
                break
        else:
            rows.append((float(leaves), list(members)))
    return [row for _, row in rows]


def tree_figure(result: HierarchyResult):
    """The hierarchy as a tree; each edge coloured by |cos(ℓ_parent, ℓ_child − ℓ_parent)| and drawn
    solid when that |cos| beats the random-subset null (dashed otherwise); nodes show Y(w).

    Whole trees are packed into rows (:func:`tree_rows`) drawn at the page width on one x scale,
    so node labels keep their size in the report however many categories there are.
    """
    from ..report.figures import _plt
    from ..report.layout import page_inches

    plt = _plt()
    an = result.primary
    names = [c["name"] for c in result.categories]
    n_words = {c["name"]: c["n_words"] for c in result.categories}
    spec = [tuple(e) for e in result.edges_spec]
    rows = tree_rows(names, spec)
    layouts = [tree_layout(r, [(p, c) for p, c in spec if p in r and c in r]) for r in rows]
    width = max(max(x for x, _ in pos.values()) + 1 for pos in layouts)
    depth = max(d for pos in layouts for _, d in pos.values()) + 1
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(page_inches(), 0.7 + len(rows) * (0.3 + 1.05 * depth)),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("RdYlBu_r")
    vmax = max(0.1, max(abs(e.cos_parent_childdiff) for e in an.edges))
    for ax, pos in zip(axes[:, 0], layouts, strict=True):
        _draw_tree(ax, pos, [e for e in an.edges if e.parent in pos and e.child in pos], cmap, vmax)
        for n, (x, y) in pos.items():
            ax.text(
                x,
                -y,
                f"{n}\n{n_words[n]}",
                ha="center",
                va="center",
                fontsize=8,
                zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "fc": "#f2f2f2", "ec": "#555555"},
            )
        ax.set_xlim(-0.6, width - 0.4)
        ax.set_ylim(-depth + 0.5, 0.5)
        ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
    fig.colorbar(sm, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, label="|cos(ℓp, ℓc − ℓp)|")
    fig.suptitle(
        f"Category hierarchy ({an.estimator} estimator); edge label = cos(ℓ_parent, ℓ_child − "
        "ℓ_parent)\nsolid = beats the random-subset null, dashed = does not",
        fontsize=10,
    )
    return fig


def _draw_tree(ax, pos: dict[str, tuple[float, int]], edges, cmap, vmax: float) -> None:
    """Edges of one row: colour = |cos(ℓp, ℓc − ℓp)| / vmax, solid when it beats the subset null."""
    for e in edges:
        (x0, y0), (x1, y1) = pos[e.parent], pos[e.child]
        beats = e.orthogonality.get("subset")
        style = "-" if beats is not None and beats.beats else "--"
        ax.plot([x0, x1], [-y0, -y1], style, color=cmap(abs(e.cos_parent_childdiff) / vmax), lw=2)
        t = 0.7  # labels nearer the child: the labels of siblings spread out
        ax.text(
            x0 + t * (x1 - x0),
            -(y0 + t * (y1 - y0)),
            f"{e.cos_parent_childdiff:+.2f}",
            fontsize=7,
            ha="center",
            va="center",
            bbox={"fc": "white", "ec": "none", "pad": 0.5},
            zorder=2,
        )


def _abs_interval(lo: float, hi: float) -> tuple[float, float]:
    """The interval of |x| for x in [lo, hi]."""
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def edge_figure(an: HierarchyAnalysis):
    """Per edge (one row each): |cos(ℓ_p, ℓ_c − ℓ_p)| with its jackknife interval (black) and each
    null's 2.5–97.5 % range with its mean (coloured), on a log axis."""
    from ..report.figures import _COLORS, _plt

    plt = _plt()
    E = len(an.edges)
    nulls = list(an.summary_nulls)
    height = 2.6 + 0.32 * E
    fig, ax = plt.subplots(figsize=(8.5, height))
    floor = 1e-4
    y = np.arange(E)[::-1].astype(float)
    step = 0.6 / max(1, len(nulls))
    for j, name in enumerate(nulls):
        c = [e.orthogonality[name] for e in an.edges]
        yy = y + 0.3 - step * (j + 0.5)
        lo = np.maximum([x.q025 for x in c], floor)
        hi = np.maximum([x.q975 for x in c], floor)
        ax.hlines(yy, lo, hi, color=_COLORS[1 + j], lw=2.5, alpha=0.7)
        ax.plot(
            np.maximum([x.mean for x in c], floor),
            yy,
            "|",
            color=_COLORS[1 + j],
            ms=8,
            label=f"null: {NULL_LABELS.get(name, name)} (mean, 95 % range)",
        )
    iv = np.array([_abs_interval(*e.cos_parent_childdiff_ci) for e in an.edges])
    obs = np.array([abs(e.cos_parent_childdiff) for e in an.edges])
    ax.hlines(y, np.maximum(iv[:, 0], floor), np.maximum(iv[:, 1], floor), color="black", lw=1)
    ax.plot(
        np.maximum(obs, floor),
        y,
        "o",
        color="black",
        ms=4,
        zorder=3,
        label="observed (95 % jackknife interval)",
    )
    ax.set_xscale("log")
    ax.set_yticks(y, [f"{e.parent} → {e.child}" for e in an.edges], fontsize=8)
    ax.set_xlabel(f"|cos(ℓ_parent, ℓ_child − ℓ_parent)|  (log axis, floored at {floor:g})")
    ax.set_title(f"Orthogonality per edge vs its nulls ({an.estimator} estimator)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 1.0 / height, 1, 1))  # the legend's inch at the bottom
    return fig


def _mark(beats: bool) -> str:
    return "yes" if beats else "no"


def _edge_row(e: EdgeResult) -> dict[str, Any]:
    lo, hi = e.cos_parent_childdiff_ci
    lo2, hi2 = e.cos_parent_child_ci
    row: dict[str, Any] = {
        "edge": f"{e.parent} → {e.child}",
        "words (child / parent)": f"{e.n_words} / {e.n_parent_words}",
        "cos(ℓp, ℓc − ℓp)": f"{e.cos_parent_childdiff:+.3f} [{lo:+.2f}, {hi:+.2f}]",
    }
    for n, c in e.orthogonality.items():
        row[f"⟂ beats {n}"] = f"{_mark(c.beats)} ({c.mean:.3f})"
    row["cos(ℓp, ℓc)"] = f"{e.cos_parent_child:.3f} [{lo2:.2f}, {hi2:.2f}]"
    for n, c in e.alignment.items():
        row[f"align beats {n}"] = f"{_mark(c.beats)} ({c.mean:.3f})"
    return row


def add_hierarchy_section(rep, result: HierarchyResult) -> None:
    """Add the hierarchy's heading, summary, tree, per-edge and per-parent tables to a Report."""
    an = result.primary
    rep.add_heading("Categorical concepts and hierarchy")
    others = ", ".join(
        f"{k}: mean |cos(ℓp, ℓc − ℓp)| {a.mean_abs_cos_childdiff:.3f}, mean cos(ℓp, ℓc) "
        f"{a.mean_cos_child:.3f}"
        for k, a in result.analyses.items()
        if k != result.estimator
    )
    rep.add_text(
        f"Hierarchy `{result.source}`: {len(result.categories)} categories, {len(an.edges)} "
        f"edges. Category vectors ℓ_w in causal coordinates with the **{an.estimator}** estimator "
        "(Park et al. 2024: normalised Ledoit–Wolf Σ_w⁻¹m_w; `mean` = plain mean). Nulls of the "
        "same sizes: a random subset of the parent's words as the child; random word-token sets as "
        "parent and a random subset as child; a shuffled unembedding; a category from outside the "
        f"parent's lineage as the child ({an.n_null} draws each). Intervals: ± 1.96 standard errors "
        f"from a stratified delete-half jackknife ({an.n_boot} replicates). An edge 'beats' a null when its |cos(ℓp, ℓc − ℓp)| is "
        "smaller (orthogonality) or its cos(ℓp, ℓc) larger (alignment), Holm-adjusted over edges. "
        + (f"Other estimators: {others}." if others else "")
    )
    rows = []
    for name, s in an.summary_nulls.items():
        lo, hi = s.mean_abs_cos_childdiff_q
        lo2, hi2 = s.mean_cos_child_q
        rows.append(
            {
                "null": NULL_LABELS.get(name, name),
                "observed mean |cos(ℓp, ℓc − ℓp)|": an.mean_abs_cos_childdiff,
                "null mean [95 %]": f"{s.mean_abs_cos_childdiff_null:.3f} [{lo:.3f}, {hi:.3f}]",
                "p (smaller)": s.p_orthogonality,
                "observed mean cos(ℓp, ℓc)": an.mean_cos_child,
                "null mean [95 %] ": f"{s.mean_cos_child_null:.3f} [{lo2:.3f}, {hi2:.3f}]",
                "p (larger)": s.p_alignment,
            }
        )
    rep.add_table(
        rows,
        caption="Means over edges against each null's distribution of the same mean "
        f"({an.n_null} draws; empirical one-sided p).",
    )
    rep.add_figure(
        tree_figure(result),
        "hierarchy_tree",
        caption="The hierarchy; node: category and its number of single-token words; edge colour "
        "and label: cos(ℓ_parent, ℓ_child − ℓ_parent); solid edges beat the random-subset null.",
    )
    rep.add_figure(
        edge_figure(an),
        "hierarchy_edges",
        caption="Per edge: observed |cos(ℓ_parent, ℓ_child − ℓ_parent)| with its jackknife "
        "interval, and each null's mean with its 2.5–97.5 % range.",
    )
    rep.add_table(
        [_edge_row(e) for e in an.edges],
        caption="Per edge (in brackets: 95 % delete-half jackknife interval; after yes/no: the "
        "null's mean).",
    )
    if an.parents:
        rep.add_table(
            [
                {
                    "parent": p.parent,
                    "children": ", ".join(p.children),
                    "mean |cos(ℓp, ℓci − ℓcj)|": float(
                        np.mean([abs(c) for _, _, c in p.sibling_cosines])
                    ),
                    "simplex σ_min/σ_max": p.sigma_ratio,
                    "random-subset σ_min/σ_max": p.sigma_ratio_null_mean,
                    "p (flatter)": p.sigma_ratio_null_p,
                    "affinely independent": _mark(p.affinely_independent),
                }
                for p in an.parents
            ],
            caption="Parents with ≥ 2 children: the parent vector against sibling differences, and "
            "whether the children's vectors span a simplex (in d ≫ k dimensions almost any k "
            "vectors do, so compare σ_min/σ_max with children replaced by random subsets).",
        )
    rep.add_table(
        [
            {
                "category": c["name"],
                "single-token words (with descendants)": c["n_words"],
                "own lines": c["n_own_lines"],
                "own words dropped (not one token)": ", ".join(c["own_dropped"]) or "–",
            }
            for c in result.categories
        ],
        caption="Words kept: one normal token with a leading space.",
    )
