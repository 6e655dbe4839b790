"""E5 — scale: parallelism and orthogonality as the number of concepts m and the dimension d grow.

m binary concepts can only get mutually orthogonal directions if d ≥ m (``docs/experiments.md`` §4:
"d ≥ m needed for orthogonal codes"). We train the same learner for d ∈ {⌈m/2⌉, m, 2m, 8m} — the
superposition regime d < m included — and m from 3 up to a real LM's scale (m = 16: 65,536 tokens),
and measure same-concept parallelism, cross-concept |cos| and alignment, raw and inside the
identifiable subspace span{f(ξ)}, against the same models at initialisation.

One protocol for every m, so that only m and d change: sampled contexts (core size uniform, core set
uniform, values from p(c)), the linear encoder, Adam on minibatches of contexts with their *exact*
next-token rows p(·|ξ) (``objective = "exact"`` with a batch size: no (contexts × tokens) table, a
step costs O(batch · V · d)). Geometry comes from :mod:`linrep.geometry.scale` (exact over all
2^(m−1) pairs per concept; sampled estimates ± SE for cross-pair |cos| and alignment); the excess
loss is exact for small m and estimated on held-out contexts (± SE) for large m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import ci_cell
from .stats import Summary, bounds, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E5"
STEM = "e5_scale"
TITLE = "scale: number of concepts m and dimension d (up to 65,536 tokens)"
QUESTION = (
    "How do parallelism and orthogonality depend on the number of concepts m (up to a real LM's "
    "vocabulary size) and on the representation dimension d relative to m (d ∈ {m/2, m, 2m, 8m}, "
    "the superposition regime d < m included)?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E5."""

    n_seeds: int = 5
    """Seeds per (m, d) ensemble."""
    first_seed: int = 0
    """First seed."""
    ms: list[int] = field(default_factory=lambda: [3, 4, 6, 8, 12, 16])
    """Numbers of concepts m (V = 2^m tokens)."""
    d_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 8.0])
    """d = ⌈factor · m⌉ for each factor."""
    n_cross: int = 20_000
    """Sampled steering-vector pairs of different concepts per run (cross-pair |cos| ± SE)."""
    n_align: int = 512
    """Sampled context pairs per concept and run (alignment ± bootstrap SE)."""


RAW = ("same_concept_cosine", "cross_concept_abs_cosine", "alignment_cosine")
KEYS = (*RAW, *(k + "_identifiable" for k in RAW), "cross_pair_abs_cosine")


def _factor_label(fac: float) -> str:
    return {0.5: "d = m/2", 1.0: "d = m", 2.0: "d = 2m"}.get(fac, f"d = {fac:g}m")


def _cell(latent, res, s: Settings) -> dict[str, Any]:
    """Trained and untrained geometry of one (m, d) ensemble, summarised over seeds."""
    from ..geometry.scale import scale_geometry

    kw = {"n_cross": s.n_cross, "n_align": s.n_align}
    trained = scale_geometry(
        latent, res.embeddings(), res.unembeddings(), embed=res.embed_contexts, **kw
    ).summary()
    untrained = scale_geometry(
        latent,
        res.initial_embeddings(),
        res.initial_unembeddings(),
        embed=lambda c: res.embed_contexts(c, initial=True),
        **kw,
    ).summary()
    st: dict[str, Any] = {k: summarise(trained[k]) for k in KEYS}
    st.update({f"untrained {k}": summarise(untrained[k]) for k in KEYS})
    st["identifiable_rank"] = summarise(trained["identifiable_rank"])
    st["excess_loss"] = summarise([r["excess_loss"] for r in res.final])
    se = [r.get("excess_loss_se", 0.0) for r in res.final]
    st["excess_loss_se"] = float(np.sqrt(np.mean(np.square(se))))
    st["excess_loss_method"] = res.excess_loss_method
    st["seconds"] = res.seconds
    return st


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train one ensemble per (m, d), measure it and its initialisation, and compare."""
    s = cfg.settings
    stats: dict[tuple[int, float], dict[str, Any]] = {}
    dims: dict[tuple[int, float], int] = {}
    for m in s.ms:
        latent = cfg.latent_model(m=m)
        for fac in s.d_factors:
            d = max(1, math.ceil(fac * m))
            res = train(latent, cfg.with_model(d=d), progress=progress)
            stats[(m, fac)] = _cell(latent, res, s)
            dims[(m, fac)] = d
    _report(rep, cfg, stats, dims)
    return _headline(s, stats)


def _report(rep, cfg, stats, dims) -> None:
    from ..report import figures

    s, seeds = cfg.settings, cfg.seeds
    rows = [
        {
            "m": m,
            "V": 2**m,
            "d": dims[(m, fac)],
            "d/m": _factor_label(fac),
            "same-concept cos": ci_cell(st["same_concept_cosine"]),
            "in span{f}": ci_cell(st["same_concept_cosine_identifiable"]),
            "untrained": ci_cell(st["untrained same_concept_cosine"]),
            "cross |cos| (directions)": ci_cell(st["cross_concept_abs_cosine"]),
            "in span{f} ": ci_cell(st["cross_concept_abs_cosine_identifiable"]),
            "alignment": ci_cell(st["alignment_cosine"]),
            "rank F": f"{st['identifiable_rank'].mean:.1f}",
            "excess loss": ci_cell(st["excess_loss"]),
            "train s": round(st["seconds"], 1),
        }
        for (m, fac), st in stats.items()
    ]
    rep.add_heading("Parallelism and orthogonality by (m, d)")
    rep.add_text(
        f"{len(seeds)} seeds per cell, mean ± 95 % t-interval over seeds, Euclidean inner product. "
        f"Sampled contexts ({cfg.latent.n_contexts} draws, duplicates merged), linear f, "
        f"{cfg.train.optimizer} lr {cfg.train.lr} for {cfg.train.steps} steps on minibatches of "
        f"{cfg.train.batch_size} contexts with their exact next-token rows. Same-concept and "
        "cross-concept (direction) cosines use every one of the 2^(m−1) pairs per concept; "
        "alignment uses sampled context pairs. **in span{f}**: the same cosine of g projected on "
        "span{f(ξ)}, the only part of g any logit sees (rank F of d). **untrained**: the same "
        "models at initialisation (the null). The excess loss is exact where the context set's "
        "table is small, otherwise estimated on held-out contexts "
        "(see each cell's `excess_loss_method` in results.json)."
    )
    rep.add_table(rows, caption="E5: geometry by (m, d)")
    groups = [_factor_label(f) for f in s.d_factors]
    for key, label, fname in (
        ("same_concept_cosine", "same-concept cos", "e5_parallelism"),
        ("same_concept_cosine_identifiable", "same-concept cos in span{f}", "e5_parallelism_id"),
        ("cross_concept_abs_cosine", "cross-concept |cos| (directions)", "e5_orthogonality"),
    ):
        series = {f"m = {m}": bounds([stats[(m, f)][key] for f in s.d_factors]) for m in s.ms}
        fig = figures.point_intervals(
            groups, series, ylabel=label, xlabel="dimension d", title=f"{label} vs d/m"
        )
        rep.add_figure(fig, fname, caption=f"{label} for each m and d (mean ± 95 % CI over seeds).")
    series = {
        _factor_label(f): bounds([stats[(m, f)]["same_concept_cosine"] for m in s.ms])
        for f in s.d_factors
    }
    fig = figures.point_intervals(
        [f"m = {m}" for m in s.ms],
        series,
        ylabel="same-concept cos",
        xlabel="concepts m",
        title="same-concept cos vs m",
    )
    rep.add_figure(
        fig, "e5_parallelism_vs_m", caption="Same-concept cos against m, one series per d/m."
    )
    rep.results["stats"] = {
        f"m={m},d={dims[(m, fac)]}": {
            k: (v.to_json() if isinstance(v, Summary) else v) for k, v in st.items()
        }
        for (m, fac), st in stats.items()
    }


def _headline(s: Settings, stats) -> dict[str, Summary]:
    head: dict[str, Summary] = {}
    big, small = max(s.ms), min(s.ms)
    lo, hi = min(s.d_factors), max(s.d_factors)
    for m in (small, big):
        for fac in (lo, hi):
            st = stats[(m, fac)]
            tag = f"m={m} {_factor_label(fac)}"
            head[f"same_concept_cosine {tag}"] = st["same_concept_cosine"]
            head[f"cross_concept_abs_cosine {tag}"] = st["cross_concept_abs_cosine"]
    head[f"same_concept_cosine_identifiable m={big} {_factor_label(hi)}"] = stats[(big, hi)][
        "same_concept_cosine_identifiable"
    ]
    head[f"untrained same_concept_cosine m={big} {_factor_label(hi)}"] = stats[(big, hi)][
        "untrained same_concept_cosine"
    ]
    head[f"excess_loss m={big} {_factor_label(hi)}"] = stats[(big, hi)]["excess_loss"]
    return head
