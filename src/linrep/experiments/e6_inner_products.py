"""E6 — inner products: concept-direction heatmaps under the Euclidean, causal and a random inner product.

The softmax likelihood is invariant under f ↦ A⁻ᵀf, g ↦ Ag, so it does not pick an inner product
(``docs/theory.md`` §3.3; hence Park et al.'s causal inner product ⟨u, v⟩ = uᵀCov(γ)⁻¹v). The paper
argues that gradient descent nevertheless makes unrelated concepts nearly orthogonal in the plain
Euclidean inner product. We train one ensemble on concepts with two coupled pairs (so "related"
concepts exist, as verb inflections do in real LMs) and show |cos(ḡ_i, ḡ_j)| under each inner product,
separating related (coupled) from unrelated pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import ci_cell
from .stats import Summary, run_metrics, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E6"
STEM = "e6_inner_products"
TITLE = "inner products: Euclidean vs causal vs random"
QUESTION = (
    "Are the concept directions of a trained model orthogonal under the Euclidean inner product, "
    "and how does that compare with the causal inner product of Park et al. and a random one?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E6."""

    n_seeds: int = 10
    """Seeds of the ensemble."""
    first_seed: int = 0
    """First seed."""
    inner_products: list[str] = field(default_factory=lambda: ["euclidean", "causal", "random"])
    """Inner products to compare."""
    related: list[list[int]] = field(default_factory=lambda: [[0, 1], [2, 3]])
    """Concept pairs counted as related (e.g. the coupled pairs of the Ising model)."""
    random_seed: int = 0
    """Seed of the random positive-definite M (shared by all runs)."""


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train, then measure concept directions under each inner product."""
    from ..report import figures

    s, seeds = cfg.settings, cfg.seeds
    latent = cfg.latent_model()
    res = train(latent, cfg, progress=progress)
    f, g = res.embeddings(), res.unembeddings()
    m = latent.m
    rel = np.zeros((m, m), dtype=bool)
    for i, j in s.related:
        rel[i, j] = rel[j, i] = True
    unrel = ~rel & ~np.eye(m, dtype=bool)

    mats, rows, head = {}, [], {}
    stats: dict[str, Any] = {}
    for ip in s.inner_products:
        per_run = run_metrics(latent, f, g, inner=ip)
        C = np.abs(np.array([r["direction_cosine_matrix"] for r in per_run]))  # (K, m, m)
        mats[ip] = C.mean(axis=0)
        st = {
            "same_concept_cosine": summarise([r["same_concept_cosine"] for r in per_run]),
            "unrelated_abs_cosine": summarise(C[:, unrel].mean(axis=1)),
            "related_abs_cosine": summarise(C[:, rel].mean(axis=1)) if rel.any() else None,
            "alignment_cosine": summarise([r["alignment_cosine"] for r in per_run]),
        }
        stats[ip] = st
        rows.append(
            {
                "inner product": ip,
                "same-concept cos": ci_cell(st["same_concept_cosine"]),
                "|cos| unrelated concepts": ci_cell(st["unrelated_abs_cosine"]),
                "|cos| related concepts": ci_cell(st["related_abs_cosine"]) if rel.any() else "–",
                "alignment": ci_cell(st["alignment_cosine"]),
            }
        )
        head[f"|cos| unrelated ({ip})"] = st["unrelated_abs_cosine"]
    d = res.model_configs[0].d
    rep.add_heading("Concept directions under three inner products")
    rep.add_text(
        f"m = {m} concepts, V = {latent.n_tokens} tokens, d = {d}, {len(seeds)} seeds. Related pairs "
        f"(coupled in the latent model): {s.related}. Causal = whitening by the covariance of each "
        f"run's own unembedding rows (Park et al.); random = one fixed random positive-definite M "
        f"(seed {s.random_seed}). Mean ± 95 % CI over seeds."
        + (
            " **Caveat:** V ≤ d + 1 here, so causal cosines are degenerate (regular simplex)."
            if latent.n_tokens <= d + 1
            else ""
        )
    )
    rep.add_table(rows, caption="E6: orthogonality under each inner product")
    # why the causal numbers look the way they do: how much of Cov(g) the m trained directions hold
    sv = np.linalg.svd(g - g.mean(axis=1, keepdims=True), compute_uv=False)  # (K, min(V, d))
    top = summarise((sv[:, :m] ** 2).sum(axis=1) / (sv**2).sum(axis=1))
    stats["variance_share_top_m"] = top
    if "causal" in stats and "euclidean" in stats:
        rep.add_text(
            f"The top m = {m} principal directions of the trained unembedding hold "
            f"{ci_cell(top)} of its variance; the other d − m directions are mostly left-over "
            "initialisation noise. The causal inner product whitens by Cov(g)⁻¹ᐟ², giving every "
            "direction unit variance, so those noise directions weigh as much as the trained "
            "ones in every causal cosine (same-concept cos "
            f"{ci_cell(stats['causal']['same_concept_cosine'])} causal vs "
            f"{ci_cell(stats['euclidean']['same_concept_cosine'])} Euclidean). In a real LM the "
            "unembedding is full rank and this degeneracy does not arise in the same way."
        )
    fig = figures.heatmaps(
        mats, latent.names, title="|cos(ḡᵢ, ḡⱼ)| between concept directions (mean over seeds)"
    )
    rep.add_figure(
        fig,
        "e6_heatmaps",
        caption="Mean |cosine| between concept directions under the Euclidean, causal and random "
        "inner products.",
    )
    rep.results["stats"] = stats
    rep.results["mean_abs_cosine_matrices"] = {k: v for k, v in mats.items()}
    return head
