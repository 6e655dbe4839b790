"""E4 — architecture of the encoder f: free table vs linear vs MLP vs transformer.

The theory is stated for any f, but how much structure f shares across contexts changes what
gradient descent finds (``docs/learner.md`` §2: the calibration measured 0.27 for a free table,
0.93 for a linear map of the one-hot context, 0.88 for an MLP). We train every encoder on the same
independent and Ising-coupled latent models and compare parallelism, orthogonality, alignment and
fit, next to the calibration's single-seed reference values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..geometry.simulation import with_identifiable
from .cells import ci_cell, geometry_cells
from .stats import Summary, biases, bounds, run_metrics, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E4"
STEM = "e4_architecture"
TITLE = "architecture of the encoder f"
QUESTION = (
    "Does the architecture of the context encoder f (free vectors, linear, MLP, transformer) "
    "change how linear the learned representations are?"
)

REFERENCE = {
    # docs/learner.md §2 (independent implementation, one seed): same-concept / cross-concept |cos|
    ("free", "independent"): (0.27, 0.01),
    ("free", "ising"): (0.22, 0.08),
    ("linear", "independent"): (0.93, 0.00),
    ("linear", "ising"): (0.81, 0.08),
    ("mlp", "independent"): (0.88, 0.01),
    ("mlp", "ising"): (0.62, 0.09),
}


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E4."""

    n_seeds: int = 10
    """Seeds per (encoder, regime) ensemble."""
    first_seed: int = 0
    """First seed."""
    encoders: list[str] = field(default_factory=lambda: ["free", "linear", "mlp", "transformer"])
    """Encoders to compare (``model.encoder`` values)."""
    regimes: list[str] = field(default_factory=lambda: ["independent", "ising"])
    """Latent models: ``independent`` = the config's [latent]; ``ising`` = the same m with an Ising
    MRF h ~ N(0, ising_field_sd²), J ~ N(0, ising_coupling_sd²) drawn with ``ising_param_seed``."""
    ising_field_sd: float = 1.0
    """σ_h of the Ising regime."""
    ising_coupling_sd: float = 1.0
    """σ_J of the Ising regime."""
    ising_param_seed: int = 0
    """Seed of the Ising parameters (one fixed MRF, so the seeds of an encoder share one ensemble)."""
    encoder_model: dict[str, Any] = field(default_factory=dict)
    """Per-encoder ``[model]`` overrides, e.g. ``{ transformer = { width = 64 } }``."""
    encoder_train: dict[str, Any] = field(default_factory=dict)
    """Per-encoder ``[train]`` overrides, e.g. ``{ transformer = { lr = 0.3, steps = 3000 } }``."""


KEYS = with_identifiable()


def _latent(cfg: ExperimentConfig[Settings], regime: str):
    from ..errors import ConfigError

    s = cfg.settings
    if regime == "independent":
        return cfg.latent_model()
    if regime == "ising":
        return cfg.latent_model(
            kind="ising",
            p1=None,
            field_sd=s.ising_field_sd,
            coupling_sd=s.ising_coupling_sd,
            param_seed=s.ising_param_seed,
        )
    raise ConfigError(
        f"experiment.regimes: unknown regime '{regime}'; use 'independent' or 'ising'"
    )


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train every (encoder, regime) ensemble and compare."""
    from ..report import figures

    s, seeds = cfg.settings, cfg.seeds
    latents = {r: _latent(cfg, r) for r in s.regimes}
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    for enc in s.encoders:
        ecfg = cfg.with_model(encoder=enc, **dict(s.encoder_model.get(enc, {})))
        ecfg = ecfg.with_train(**dict(s.encoder_train.get(enc, {})))
        for regime, latent in latents.items():
            res = train(latent, ecfg, progress=progress)
            per_run = run_metrics(latent, res.embeddings(), res.unembeddings(), bias=biases(res))
            st: dict[str, Any] = {k: summarise([r[k] for r in per_run]) for k in KEYS}
            st["excess_loss"] = summarise([r["excess_loss"] for r in res.final])
            st["steps"] = ecfg.train.steps
            st["lr"] = ecfg.train.lr
            stats[(enc, regime)] = st

    rows = []
    for (enc, regime), st in stats.items():
        ref = REFERENCE.get((enc, regime))
        rows.append(
            {
                "encoder": enc,
                "concepts": regime,
                **geometry_cells(st),
                "excess loss": ci_cell(st["excess_loss"]),
                "steps, lr": f"{st['steps']}, {st['lr']}",
                "reference same / cross": f"{ref[0]:.2f} / {ref[1]:.2f}" if ref else "–",
            }
        )
    rep.add_heading("Encoders compared")
    rep.add_text(
        f"{len(seeds)} seeds per cell, mean ± 95 % CI; Euclidean inner product; columns **in "
        "span{f}** measure g inside the span of the context embeddings (the free and MLP encoders "
        "span all d dimensions, so raw = in span{f} for them). The Ising regime is "
        f"one MRF (h ~ N(0, {s.ising_field_sd}²), J ~ N(0, {s.ising_coupling_sd}²), parameter seed "
        f"{s.ising_param_seed}). **reference** = the single-seed values of an independent "
        "implementation (docs/learner.md §2; transformer: none). Encoders with their own steps/lr "
        "are listed in the table; an encoder whose excess loss is far from 0 has not fit the data "
        "yet and its geometry is not the end point of training."
    )
    rep.add_table(rows, caption="E4: geometry by encoder and regime")

    def tri(regime, key):
        return bounds([stats[(e, regime)][key] for e in s.encoders])

    series = {}
    for regime in s.regimes:
        series[f"same-concept cos ({regime})"] = tri(regime, "same_concept_cosine")
    for regime in s.regimes:
        series[f"same-concept cos in span{{f}} ({regime})"] = tri(
            regime, "same_concept_cosine_identifiable"
        )
    for regime in s.regimes:
        series[f"cross |cos| ({regime})"] = tri(regime, "cross_concept_abs_cosine")
    fig = figures.point_intervals(
        s.encoders,
        series,
        ylabel="cosine",
        xlabel="encoder f",
        title="Linearity by architecture (mean ± 95 % CI over seeds)",
    )
    rep.add_figure(
        fig,
        "e4_architecture",
        caption="Same-concept parallelism and cross-concept "
        "|cos| (concept directions) for each encoder and regime.",
    )
    rep.results["stats"] = {f"{e}/{r}": st for (e, r), st in stats.items()}
    rep.results["reference"] = {f"{e}/{r}": v for (e, r), v in REFERENCE.items()}
    return {
        f"same_concept_cosine {e}/{r}": stats[(e, r)]["same_concept_cosine"]
        for (e, r) in stats
        if r == s.regimes[0]
    }
