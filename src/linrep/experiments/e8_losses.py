"""E8 — losses: does softmax + cross-entropy matter?

The implicit-bias argument (``docs/theory.md`` §3.2) uses two properties of softmax cross-entropy:
probabilities of impossible tokens can only reach 0 as logit gaps go to ±∞ (an exponential-tailed,
separable classification problem), and log-odds are what the loss matches. We train the same
learner with (a) cross-entropy, (b) the squared error between softmax probabilities and the target
distribution (bounded gradients, no push to infinity) and (c) one-vs-all sigmoid cross-entropy (no
softmax: each token is its own binary problem), and compare the geometry. Each loss's excess loss is
relative to its own floor; the cross-entropy excess (KL to the data) of every model is shown too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..geometry.simulation import SUMMARY_KEYS
from .cells import ci_cell, geometry_cells
from .stats import Summary, bounds, run_metrics, summarise
from .training import train_variants

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E8"
STEM = "e8_losses"
TITLE = "losses: cross-entropy vs squared vs sigmoid"
QUESTION = (
    "Is softmax + cross-entropy needed for linear representations, as the paper's implicit-bias "
    "argument suggests, or do squared-error and one-vs-all sigmoid losses give the same geometry?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E8."""

    n_seeds: int = 10
    """Seeds per loss (one ensemble each)."""
    first_seed: int = 0
    """First seed."""
    losses: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"label": "cross-entropy", "loss": "cross_entropy"},
            {"label": "squared (softmax probs)", "loss": "squared"},
            {"label": "sigmoid (one-vs-all)", "loss": "sigmoid"},
        ]
    )
    """One ensemble per entry: ``label`` + ``[train]`` keys replacing the config's."""


KEYS = SUMMARY_KEYS


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train one ensemble per loss and compare."""
    from ..report import figures
    from ..theory import excess_loss

    s, seeds = cfg.settings, cfg.seeds
    latent = cfg.latent_model()
    stats: dict[str, dict[str, Any]] = {}
    for label, res in train_variants(latent, cfg, s.losses, label_key="loss", progress=progress):
        f, g = res.embeddings(), res.unembeddings()
        per_run = run_metrics(latent, f, g)
        st = {k: summarise([r[k] for r in per_run]) for k in KEYS}
        st["own_excess_loss"] = summarise([r["excess_loss"] for r in res.final])
        st["ce_excess_loss"] = summarise(
            [excess_loss(latent, f[k], g[k]) for k in range(len(seeds))]
        )
        stats[label] = st
    rows = [
        {
            "loss": label,
            **geometry_cells(st),
            "excess of own loss": ci_cell(st["own_excess_loss"]),
            "KL to data (softmax)": ci_cell(st["ce_excess_loss"]),
        }
        for label, st in stats.items()
    ]
    rep.add_heading("Losses compared")
    rep.add_text(
        f"{len(seeds)} seeds per loss, same optimiser, learning rate and steps for all "
        f"({cfg.train.optimizer}, lr {cfg.train.lr}, {cfg.train.steps} steps). **KL to data** is Σ_ξ w(ξ) KL(p(·|ξ) ‖ softmax(f(ξ)ᵀg)) for "
        "every model, whichever loss trained it; for the sigmoid loss the softmax of the logits is "
        "not the model's own prediction, so read its KL as a diagnostic. An **excess of own loss** "
        "far from 0 means that loss has not reached its floor within the step budget: its "
        "geometry is then not the end point of training."
    )
    rep.add_table(rows, caption="E8: geometry by training loss (mean ± 95 % CI over seeds)")
    labels = list(stats)

    def tri(key):
        return bounds([stats[k][key] for k in labels])

    fig = figures.point_intervals(
        labels,
        {
            "same-concept cos": tri("same_concept_cosine"),
            "cross |cos| (directions)": tri("cross_concept_abs_cosine"),
            "cross |cos| (pairs)": tri("cross_pair_abs_cosine"),
        },
        ylabel="cosine",
        title="Linearity by loss (mean ± 95 % CI over seeds)",
    )
    rep.add_figure(
        fig, "e8_losses", caption="Parallelism and orthogonality for each training loss."
    )
    rep.results["stats"] = stats
    return {f"same_concept_cosine {k}": st["same_concept_cosine"] for k, st in stats.items()}
