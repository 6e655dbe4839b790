"""E9 — hierarchy: does next-token training give ℓ_parent ⟂ ℓ_child − ℓ_parent?

Park, Choe, Jiang & Veitch (2024) report that in LLMs a category's vector ℓ_w is orthogonal to its
children's offsets ℓ_child − ℓ_parent. We train on the hierarchical latent model
(:class:`~linrep.latent.hierarchy.HierarchicalLatentModel`: a child concept exists only when its
parent is 1, free concepts vary inside every category) and measure the same estimator and nulls as
on real models (:func:`linrep.geometry.hierarchy.analyze_tree`) in the **identifiable subspace**:
g is projected on span{f(ξ)} (:func:`linrep.geometry.identifiable_subspace`; rank F reported), then
put in causal coordinates (whitened by the covariance of the V token rows, V ≫ d so the whitening is
not forced to a simplex). Conditions, same seeds and trees:

* **trained** — the learned g;
* **untrained** — the same models at initialisation (what the design gives without learning);
* **planted linear** — g(y) = Σ_i c_i(y) a_i with random a_i ~ N(0, I_d): an unembedding that is
  exactly linear in the concept bits, to see whether orthogonality follows from linearity alone.

Per run the statistic is the mean over edges of |cos(ℓ_p, ℓ_c − ℓ_p)| (and of cos(ℓ_p, ℓ_c)), set
against the same mean under the four nulls; intervals are 95 % t-intervals over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .cells import ci_cell
from .stats import Summary, bounds, summarise
from .training import train

if TYPE_CHECKING:
    from ..geometry.hierarchy import HierarchyAnalysis
    from .config import ExperimentConfig

NAME = "E9"
STEM = "e9_hierarchy"
TITLE = "hierarchy as orthogonality in the latent model"
QUESTION = (
    "When a child concept exists only under its parent, does next-token training make the parent's "
    "category vector orthogonal to the child's offset, ℓ_parent ⟂ ℓ_child − ℓ_parent, in the "
    "identifiable subspace and beyond what random subsets, random token sets, shuffled tokens and "
    "unrelated categories give?"
)

CONDITIONS = ("trained", "untrained", "planted linear")


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E9 (the latent hierarchy is defined here, not in ``[latent]``)."""

    n_seeds: int = 10
    """Independent initialisations (and planted draws)."""
    first_seed: int = 0
    """First seed."""
    parents: list[int] = field(default_factory=lambda: [-1, 0, 1, -1, 3])
    """Parent of each hierarchical concept (−1 = root)."""
    names: list[str] = field(
        default_factory=lambda: ["animal", "mammal", "carnivore", "plant", "tree"]
    )
    """Names of the hierarchical concepts."""
    q: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.3, 0.4, 0.7])
    """P(C_i = 1 | parent = 1): non-uniform, so no symmetry forces the geometry."""
    n_free: int = 3
    """Free concepts defined for every token (variation inside a category)."""
    estimator: str = "lda"
    """Category-vector estimator: ``lda`` (Park et al.) or ``mean``."""
    n_null: int = 200
    """Draws per null and edge."""
    n_boot: int = 100
    """Delete-half jackknife replicates per edge (the per-edge intervals)."""


def latent_of(s: Settings):
    from ..latent.hierarchy import HierarchicalLatentModel, HierarchyConfig

    return HierarchicalLatentModel(
        HierarchyConfig(parents=list(s.parents), names=list(s.names), q=list(s.q), n_free=s.n_free)
    )


def causal_coordinates(g: np.ndarray) -> np.ndarray:
    """Rows of g (V, d) whitened by their own covariance, in a basis of their span: (V, r)."""
    from ..geometry import CausalInnerProduct
    from ..geometry.categorical import subspace_coordinates

    X = CausalInnerProduct().fit(g).transform_unembedding(g)
    Y = subspace_coordinates(X)
    keep = np.linalg.norm(Y, axis=0) > 1e-8 * np.linalg.norm(Y, axis=0).max()
    return Y[:, keep]


def measure(latent, g: np.ndarray, s: Settings, seed: int) -> HierarchyAnalysis:
    """The category tree's analysis for one unembedding g (V, d)."""
    from ..geometry.hierarchy import analyze_tree

    tree = latent.category_tree()
    return analyze_tree(
        causal_coordinates(g),
        tree,
        estimator=s.estimator,
        n_null=s.n_null,
        n_boot=s.n_boot,
        seed=seed,
    )


def planted_linear(latent, d: int, seed: int) -> np.ndarray:
    """g(y) = Σ_i c_i(y) a_i with a_i ~ N(0, I_d): (V, d)."""
    rng = np.random.default_rng(10_000 + seed)
    return latent.tokens.astype(np.float64) @ rng.standard_normal((latent.m, d))


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train, project on span{f}, measure every condition, fill the report."""
    from ..geometry import identifiable_subspace

    s, seeds = cfg.settings, cfg.seeds
    latent = latent_of(s)
    res = train(latent, cfg, progress=progress)
    sub = identifiable_subspace(res.embeddings())
    gs = {
        "trained": sub.project(res.unembeddings()),
        "untrained": res.initial_unembeddings(),
        "planted linear": np.stack([planted_linear(latent, cfg.model.d, k) for k in seeds]),
    }
    an = {c: [measure(latent, gs[c][k], s, seeds[k]) for k in range(len(seeds))] for c in gs}
    stats = {c: _condition_stats(a) for c, a in an.items()}
    _report(rep, latent, s, seeds, sub, stats, an, res)
    t = stats["trained"]
    return {
        "mean_abs_cos_childdiff": t["mean_abs_cos_childdiff"],
        "subset_null_mean_abs_cos_childdiff": t["null subset"],
        "untrained_mean_abs_cos_childdiff": stats["untrained"]["mean_abs_cos_childdiff"],
        "mean_cos_parent_child": t["mean_cos_child"],
    }


def _condition_stats(runs: list[HierarchyAnalysis]) -> dict[str, Summary]:
    out = {
        "mean_abs_cos_childdiff": summarise([a.mean_abs_cos_childdiff for a in runs]),
        "mean_cos_child": summarise([a.mean_cos_child for a in runs]),
    }
    for name in runs[0].summary_nulls:
        out[f"null {name}"] = summarise(
            [a.summary_nulls[name].mean_abs_cos_childdiff_null for a in runs]
        )
        out[f"beats {name}"] = summarise(
            [float(a.summary_nulls[name].p_orthogonality < 0.05) for a in runs]
        )
        out[f"edges beating {name}"] = summarise(
            [np.mean([e.orthogonality[name].beats for e in a.edges]) for a in runs]
        )
    return out


def _report(rep, latent, s, seeds, sub, stats, an, res) -> None:
    from ..report import figures

    tree = latent.category_tree()
    nulls = list(an["trained"][0].summary_nulls)
    rep.add_heading("Setup")
    rep.add_text(
        f"Hierarchical latent model: concepts {', '.join(latent.names)} (parents "
        f"{list(s.parents)}; q = {list(s.q)}), {latent.n_tokens} tokens, {latent.n_contexts} "
        f"contexts; {len(tree.edges)} edges "
        + ", ".join(f"{tree.names[p]} → {tree.names[c]}" for p, c in tree.edges)
        + f". {len(seeds)} seeds; rank F of span{{f}} = {sorted(set(sub.rank.tolist()))} of "
        f"d = {sub.d}; excess loss {ci_cell(summarise([r['excess_loss'] for r in res.final]))} "
        f"nats. Estimator: **{s.estimator}**; {s.n_null} draws per null and edge."
    )
    rep.add_heading("Orthogonality of parent and child offset")
    rep.add_text(
        "How to read it: **planted linear** is an unembedding exactly linear in the concept bits; "
        "whatever it gives, the estimator and the category structure give to any linear "
        "representation. **untrained** is what the design gives without learning. The question "
        "is whether training moves g from the untrained row to the planted-linear row, and "
        "whether its orthogonality beats the random-subset null (a child that is just some "
        "subset of its parent) and not only random token sets."
    )
    rows = []
    for c, st in stats.items():
        row = {
            "condition": c,
            "mean |cos(ℓp, ℓc − ℓp)|": ci_cell(st["mean_abs_cos_childdiff"]),
            "mean cos(ℓp, ℓc)": ci_cell(st["mean_cos_child"]),
        }
        for n in nulls:
            row[f"null {n}"] = ci_cell(st[f"null {n}"])
            row[f"runs beating {n}"] = ci_cell(st[f"beats {n}"])
        rows.append(row)
    rep.add_table(
        rows,
        caption="Per run: mean over edges; 'null X' is the same mean under null X; 'runs beating "
        "X' is the share of runs whose mean |cos| lies below X's distribution of means (empirical "
        "p < 0.05). Mean ± 95 % t-interval over seeds.",
    )
    rep.add_table(
        [
            {"condition": c, **{n: ci_cell(st[f"edges beating {n}"]) for n in nulls}}
            for c, st in stats.items()
        ],
        caption="Share of single edges whose |cos| beats each null (normal-fit p, Holm over edges, "
        "0.05). A lower-tail test of one |cos| has little power: even |cos| ten times below the "
        "null's typical value gives p ≈ 0.05, so the per-run mean above is the test to read.",
    )
    edge_names = [f"{tree.names[p]}→{tree.names[c]}" for p, c in tree.edges]
    series = {}
    for c in CONDITIONS:
        per_edge = np.array([[abs(e.cos_parent_childdiff) for e in a.edges] for a in an[c]])
        series[c] = bounds([summarise(per_edge[:, j]) for j in range(len(edge_names))])
    sub_null = np.array([[e.orthogonality["subset"].mean for e in a.edges] for a in an["trained"]])
    series["subset null (trained g)"] = bounds(
        [summarise(sub_null[:, j]) for j in range(len(edge_names))]
    )
    rep.add_figure(
        figures.point_intervals(
            edge_names,
            series,
            ylabel="|cos(ℓ_parent, ℓ_child − ℓ_parent)|",
            hlines={"0": 0.0},
            title="E9: orthogonality per edge (mean ± 95 % CI over seeds)",
        ),
        "e9_orthogonality",
        caption="Per edge, |cos(ℓ_parent, ℓ_child − ℓ_parent)| for the trained, untrained and "
        "planted-linear unembeddings, and the random-subset null's mean |cos| on the trained g.",
    )
    rep.results["conditions"] = {
        c: {k: v.to_json() for k, v in st.items()} for c, st in stats.items()
    }
    rep.results["runs"] = {c: [a.to_json() for a in runs] for c, runs in an.items()}
    rep.results["identifiable_subspace"] = sub.to_json()
