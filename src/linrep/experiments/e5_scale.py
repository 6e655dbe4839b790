"""E5 — scale: representation dimension d relative to the number of concepts m.

m binary concepts can only get mutually orthogonal directions if d ≥ m (``docs/experiments.md`` §4:
"d ≥ m needed for orthogonal codes"). We train the same learner for d ∈ {⌈m/2⌉, m, 2m, 8m} and
several m and measure parallelism, cross-concept |cos| and fit. The exact objective enumerates all
3^m contexts × 2^m tokens, so the cost grows like 6^m: the config states which m fit the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cells import ci_cell
from .stats import Summary, bounds, run_metrics, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E5"
STEM = "e5_scale"
TITLE = "scale: dimension d vs number of concepts m"
QUESTION = (
    "How do parallelism and orthogonality depend on the representation dimension d relative to "
    "the number of concepts m (d ∈ {m/2, m, 2m, 8m})?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E5."""

    n_seeds: int = 5
    """Seeds per (m, d) ensemble."""
    first_seed: int = 0
    """First seed."""
    ms: list[int] = field(default_factory=lambda: [3, 4, 5, 6])
    """Numbers of concepts m."""
    d_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 8.0])
    """d = ⌈factor · m⌉ for each factor."""


KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "alignment_cosine",
    "log_odds_matching_error",
)


def _factor_label(fac: float) -> str:
    return {0.5: "d = m/2", 1.0: "d = m", 2.0: "d = 2m"}.get(fac, f"d = {fac:g}m")


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train one ensemble per (m, d) and compare."""
    from ..report import figures

    s, seeds = cfg.settings, cfg.seeds
    stats: dict[tuple[int, float], dict[str, Any]] = {}
    for m in s.ms:
        latent = cfg.latent_model(m=m)
        for fac in s.d_factors:
            d = max(1, math.ceil(fac * m))
            res = train(latent, cfg.with_model(d=d), progress=progress)
            per_run = run_metrics(latent, res.embeddings(), res.unembeddings())
            st: dict[str, Any] = {k: summarise([r[k] for r in per_run]) for k in KEYS}
            st["excess_loss"] = summarise([r["excess_loss"] for r in res.final])
            st["d"] = d
            st["seconds"] = res.seconds
            stats[(m, fac)] = st
    rows = [
        {
            "m": m,
            "d": st["d"],
            "d/m": _factor_label(fac),
            "same-concept cos": ci_cell(st["same_concept_cosine"]),
            "cross |cos| (directions)": ci_cell(st["cross_concept_abs_cosine"]),
            "alignment": ci_cell(st["alignment_cosine"]),
            "excess loss": ci_cell(st["excess_loss"]),
            "train s": round(st["seconds"], 1),
        }
        for (m, fac), st in stats.items()
    ]
    rep.add_heading("Dimension vs number of concepts")
    rep.add_text(
        f"{len(seeds)} seeds per cell, mean ± 95 % CI, Euclidean inner product. m ∈ {s.ms}: the exact "
        "objective over all 3^m contexts and 2^m tokens costs ∝ 6^m per step, so larger m do not "
        "fit the 60-minute budget of `linrep reproduce` on 2 cores (run them with "
        "`--set experiment.ms=[8]` or with sampled contexts via `linrep simulate`)."
    )
    rep.add_table(rows, caption="E5: geometry by (m, d)")
    groups = [_factor_label(f) for f in s.d_factors]
    for key, label, fname in (
        ("same_concept_cosine", "same-concept cos", "e5_parallelism"),
        ("cross_concept_abs_cosine", "cross-concept |cos| (directions)", "e5_orthogonality"),
    ):
        series = {}
        for m in s.ms:
            series[f"m = {m}"] = bounds([stats[(m, f)][key] for f in s.d_factors])
        fig = figures.point_intervals(
            groups, series, ylabel=label, xlabel="dimension d", title=f"{label} vs d/m"
        )
        rep.add_figure(fig, fname, caption=f"{label} for each m and d (mean ± 95 % CI over seeds).")
    rep.results["stats"] = {f"m={m},d={st['d']}": st for (m, _), st in stats.items()}
    head = {}
    for m in (s.ms[0], s.ms[-1]):
        for fac in (s.d_factors[0], s.d_factors[-1]):
            head[f"same_concept_cosine m={m} {_factor_label(fac)}"] = stats[(m, fac)][
                "same_concept_cosine"
            ]
    return head
