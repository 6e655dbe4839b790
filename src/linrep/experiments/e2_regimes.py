"""E2 — regimes: log-odds matching (independent concepts) vs Ising-coupled concepts.

The log-odds-matching theorem (``docs/theory.md`` §3.1) needs the pair log-odds of concept i to be
one constant over all contexts where i is unknown. Independent concepts satisfy it exactly; an Ising
MRF p(c) ∝ exp(Σ h_i s_i + Σ_{i<j} J_ij s_i s_j) violates it more as the couplings grow. We sweep the
coupling scale σ_J (J_ij ~ N(0, σ_J²) on all pairs, fields h_i ~ N(0, σ_h²)), drawing a fresh MRF
for every seed, and measure how linearity degrades; σ_J = 0 is the independent (matching) regime.
Per concept, the spread of its true pair log-odds (0 = in the regime) is set against its parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry.simulation import with_identifiable
from .cells import ci_cell, label
from .stats import Summary, biases, bounds, run_metrics, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E2"
STEM = "e2_regimes"
TITLE = "log-odds-matching regime vs Ising-coupled concepts"
QUESTION = (
    "How does linearity change when concepts are coupled (Ising MRF with coupling scale σ_J), so that "
    "the true log-odds of a concept depend on the context and the log-odds-matching theorem no "
    "longer applies?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E2."""

    n_seeds: int = 10
    """Seeds per coupling scale; seed s draws the MRF (param_seed = s) and the initialisation."""
    first_seed: int = 0
    """First seed."""
    coupling_sds: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0])
    """Coupling scales σ_J (J_ij ~ N(0, σ_J²)); 0 = independent concepts."""
    field_sd: float = 1.0
    """Field scale σ_h (h_i ~ N(0, σ_h²))."""


KEYS = (*with_identifiable(), "true_log_odds_spread")


def _train_coupling(cfg: ExperimentConfig[Settings], sd: float) -> list[dict[str, Any]]:
    """One model per seed, each on its own MRF at coupling scale sd: per-run metric dicts."""
    runs = []
    for seed in cfg.seeds:
        latent = cfg.latent_model(
            kind="ising", coupling_sd=sd, field_sd=cfg.settings.field_sd, param_seed=seed
        )
        res = train(latent, cfg, [seed], progress=False)
        m = run_metrics(latent, res.embeddings(), res.unembeddings(), bias=biases(res))[0]
        runs.append({**m, "excess_loss": res.final[0]["excess_loss"]})
    return runs


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train one model per (coupling scale, seed), measure, fill the report."""
    s = cfg.settings
    per_sd: dict[float, dict[str, Any]] = {}
    for sd in s.coupling_sds:
        runs = _train_coupling(cfg, sd)
        per_sd[sd] = {k: summarise([r[k] for r in runs]) for k in (*KEYS, "excess_loss")}
        per_sd[sd]["per_run"] = runs
        if progress:
            st = per_sd[sd]
            print(
                f"  E2 σ_J = {sd}: same-concept cos {st['same_concept_cosine'].mean:.3f} "
                f"(in span f {st['same_concept_cosine_identifiable'].mean:.3f}), "
                f"cross |cos| {st['cross_concept_abs_cosine'].mean:.3f}"
            )
    _report(cfg, rep, per_sd)
    head: dict[str, Any] = {}
    for sd in (s.coupling_sds[0], s.coupling_sds[-1]):
        head[f"same_concept_cosine σ_J={sd}"] = per_sd[sd]["same_concept_cosine"]
        head[f"same_concept_cosine_identifiable σ_J={sd}"] = per_sd[sd][
            "same_concept_cosine_identifiable"
        ]
        head[f"cross |cos| σ_J={sd}"] = per_sd[sd]["cross_concept_abs_cosine"]
    return head


def _report(cfg: ExperimentConfig[Settings], rep, per_sd: dict[float, dict[str, Any]]) -> None:
    from ..report import figures

    s = cfg.settings
    cols = (*KEYS, "excess_loss")
    rows = [{"σ_J": sd, **{label(k): ci_cell(st[k]) for k in cols}} for sd, st in per_sd.items()]
    rep.add_heading("Linearity vs coupling strength")
    rep.add_text(
        f"Each seed draws its own MRF: h_i ~ N(0, {s.field_sd}²), J_ij ~ N(0, σ_J²) on all pairs "
        f"(σ_J = 0: independent concepts, exactly in the log-odds-matching regime), then trains "
        f"one model from its own initialisation. For a given seed the fields and the standard-"
        "normal coupling draws are the same at every σ_J (only their scale changes), so the "
        f"comparison across σ_J is paired. {len(cfg.seeds)} seeds per σ_J; mean ± 95 % CI over "
        "seeds. **true log-odds spread** is the standard deviation of a concept's true pair "
        "log-odds over the contexts where it is unknown (0 ⇔ in the regime); **log-odds error** "
        "is the mean |learned − true| pair log-odds there. Columns **in span{f}** measure g "
        "inside the span of the context embeddings, the only part any logit sees "
        "(docs/theory.md §3.4)."
    )
    rep.add_table(rows, caption="E2: metrics per coupling scale (Euclidean)")
    sds = np.array(s.coupling_sds, dtype=float)

    def curve(key):
        return bounds([per_sd[sd][key] for sd in s.coupling_sds])

    panels = {
        "same-concept cos": {
            "raw": curve("same_concept_cosine"),
            "in span{f}": curve("same_concept_cosine_identifiable"),
        },
        "cross-concept |cos| (directions)": {
            "raw": curve("cross_concept_abs_cosine"),
            "in span{f}": curve("cross_concept_abs_cosine_identifiable"),
        },
        "alignment cos(f̄ᵢ, ḡᵢ)": {"raw": curve("alignment_cosine")},
    }
    fig = figures.lines_vs_step(
        sds,
        panels,
        logx=False,
        xlabel="coupling scale σ_J",
        title="Linearity vs coupling (mean ± 95 % CI over seeds)",
    )
    rep.add_figure(fig, "e2_linearity_vs_coupling", caption="Parallelism and orthogonality vs σ_J.")
    _scatter(rep, per_sd)


def _scatter(rep, per_sd: dict[float, dict[str, Any]]) -> None:
    """Per concept of every run: true log-odds spread vs same-concept cos, and their correlation."""
    from ..report import figures

    runs = [r for st in per_sd.values() for r in st["per_run"]]
    x = np.array([v for r in runs for v in r["true_log_odds_spread_per_concept"]])
    y = np.array([v for r in runs for v in r["same_concept_cosine_identifiable_per_concept"]])
    fig = figures.scatter(
        {"one concept of one run": (x, y)},
        xlabel="true pair log-odds spread (nats; 0 = log-odds-matching regime)",
        ylabel="same-concept cos in span{f}",
        title="Per concept: departure from the regime vs parallelism",
    )
    rep.add_figure(
        fig,
        "e2_spread_vs_parallelism",
        caption="Every concept of every run and σ_J: how far its true log-odds vary across "
        "contexts vs how parallel its steering vectors are inside span{f}.",
    )
    rho = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 else float("nan")
    rep.add_text(f"Pearson correlation of the scatter: {rho:.3f} over {len(x)} points.")
    rep.results["per_coupling"] = {
        str(sd): {k: v for k, v in st.items() if k != "per_run"} for sd, st in per_sd.items()
    }
    rep.results["spread_parallelism_correlation"] = rho
