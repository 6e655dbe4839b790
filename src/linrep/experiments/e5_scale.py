"""E5 — scale: parallelism and orthogonality as the number of concepts m and the dimension d grow.

m binary concepts can only get mutually orthogonal directions if d ≥ m (``docs/experiments.md`` §4:
"d ≥ m needed for orthogonal codes"). We train the same learner for d ∈ {⌈m/2⌉, m, 2m, 8m} — the
superposition regime d < m included — and m from 3 up to a real LM's scale (m = 16: 65,536 tokens),
and measure same-concept parallelism, cross-concept |cos| and alignment, raw and inside the
identifiable subspace span{f(ξ)}, against the same models at initialisation.

One protocol for every m, so that only m, d and the step budget change: sampled contexts (core size
uniform, core set uniform, values from p(c)), the linear encoder, Adam with a cosine-decayed learning
rate on minibatches of contexts with their *exact* next-token rows p(·|ξ) (``objective = "exact"``
with a batch size: no (contexts × tokens) table, a step costs O(batch · V · d)). The number of steps
is declared per m (``train_by_m``): small m fit in a few hundred steps, m = 16 needs far more
contexts per token. Geometry comes from :mod:`linrep.geometry.scale` (exact over all 2^(m−1) pairs
per concept; sampled estimates ± SE for cross-pair |cos| and alignment); the excess loss is exact
for small m and estimated on held-out contexts (± SE) for large m.

**Fitted** (:func:`fit_check`, per run, then per cell). Let H̄ be the loss floor (the mean entropy
of p(·|ξ), over the contexts the excess loss is measured on) and I = log V − H̄ the excess loss of
the uniform predictor — the information the context carries about the next token, which is where
every run starts (small initialisation). A run *captures* 1 − excess / I of it. A run is

- **fitted** if excess + 2 SE ≤ ``fit_fraction`` · I (it captures ≥ 1 − fit_fraction, with the
  held-out estimate's standard error counted against it);
- **at a plateau** if its excess fell by no more than max(``plateau_fraction`` · excess, 2 SE) over
  the last quarter of its steps (from the last logged step ≤ 3T/4 to T).

A cell is "fitted" if every run is, else "plateau" if every run is at a plateau, else "not fitted".
For d < m the floor of the class is above 0 (m independent bits do not fit in rank d), so "fitted"
is not expected there and "plateau" is the most the design allows one to say. With a decaying
learning rate a plateau is necessary, not sufficient, for having reached the floor.
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
TITLE = "scale: number of concepts m and dimension d"


def title(cfg: ExperimentConfig[Settings]) -> str:
    """The title with the m range this config runs (``--quick`` runs a small slice)."""
    ms = cfg.settings.ms
    return f"{TITLE} (m = {min(ms)}…{max(ms)}, up to {2 ** max(ms):,} tokens)"


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
    train_by_m: dict[str, Any] = field(default_factory=dict)
    """Per-m ``[train]`` overrides, keyed by m, e.g. ``{ 16 = { steps = 800, log_every = 100 } }``
    (m not listed use ``[train]``)."""
    fit_fraction: float = 0.05
    """A run is fitted if excess + 2 SE ≤ fit_fraction · (log V − H̄) (module docstring)."""
    plateau_fraction: float = 0.05
    """A run is at a plateau if its excess fell by ≤ max(plateau_fraction · excess, 2 SE) over
    the last quarter of its steps."""

    def __post_init__(self) -> None:
        from ..errors import ConfigError
        from ..learn.config import config_keys

        valid = config_keys()["train"]
        for m, over in self.train_by_m.items():
            if not str(m).isdigit() or not isinstance(over, dict):
                raise ConfigError(
                    f"experiment.train_by_m: entry {m!r} must be m = {{ key = value }} with an "
                    "integer m, e.g. { 16 = { steps = 800 } }"
                )
            bad = [k for k in over if k not in valid]
            if bad:
                raise ConfigError(
                    f"experiment.train_by_m.{m}: unknown [train] key '{bad[0]}'; valid keys: "
                    + ", ".join(valid)
                )
        for key in ("fit_fraction", "plateau_fraction"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"experiment.{key} must be in (0, 1), e.g. 0.05")

    def train_for(self, m: int) -> dict[str, Any]:
        """The ``[train]`` overrides of m (empty when m has none)."""
        return dict(self.train_by_m.get(str(m), {}))


RAW = ("same_concept_cosine", "cross_concept_abs_cosine", "alignment_cosine")
KEYS = (*RAW, *(k + "_identifiable" for k in RAW), "cross_pair_abs_cosine")


@dataclass(frozen=True)
class FitCheck:
    """Whether the K runs of one (m, d) ensemble are fitted or at a plateau (module docstring)."""

    learnable: float
    """I = log V − H̄: the excess loss of the uniform predictor (nats)."""
    excess: np.ndarray
    """(K,) final excess loss."""
    se: np.ndarray
    """(K,) its standard error (0 when exact)."""
    captured: np.ndarray
    """(K,) 1 − excess / I."""
    drop: np.ndarray
    """(K,) excess at ``from_step`` minus the final excess."""
    from_step: int
    """The last logged step ≤ 3/4 of the final step (start of the plateau window)."""
    fitted: np.ndarray
    """(K,) bool: excess + 2 SE ≤ fit_fraction · I."""
    plateaued: np.ndarray
    """(K,) bool: drop ≤ max(plateau_fraction · excess, 2 SE)."""

    @property
    def status(self) -> str:
        """The cell's status: fitted if every run is, else plateau if every run is, else not fitted."""
        if self.fitted.all():
            return "fitted"
        return "plateau" if self.plateaued.all() else "not fitted"


def fit_check(
    history, loss_floor: float, n_tokens: int, *, fit_fraction: float, plateau_fraction: float
) -> FitCheck:
    """:class:`FitCheck` of an ensemble from its history rows (``run, step, excess_loss[, _se]``).

    Args:
        history: ``TrainResult.history``.  loss_floor: H̄ (``TrainResult.loss_floor``).
        n_tokens: V.  fit_fraction, plateau_fraction: the thresholds (module docstring).
    """
    from .stats import history_arrays

    steps, ex = history_arrays(history, "excess_loss")
    _, se = history_arrays(history, "excess_loss_se")
    se = np.nan_to_num(se, nan=0.0)
    q = int(np.flatnonzero(steps <= 0.75 * steps[-1])[-1])
    learnable = math.log(n_tokens) - float(loss_floor)
    final, final_se = ex[:, -1], se[:, -1]
    drop = ex[:, q] - final
    return FitCheck(
        learnable=learnable,
        excess=final,
        se=final_se,
        captured=1.0 - final / learnable,
        drop=drop,
        from_step=int(steps[q]),
        fitted=final + 2 * final_se <= fit_fraction * learnable,
        plateaued=drop <= np.maximum(plateau_fraction * final, 2 * final_se),
    )


def _factor_label(fac: float) -> str:
    return {0.5: "d = m/2", 1.0: "d = m", 2.0: "d = 2m"}.get(fac, f"d = {fac:g}m")


def _cell(latent, res, s: Settings, train_cfg) -> dict[str, Any]:
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
    fit = fit_check(
        res.history,
        res.loss_floor,
        latent.n_tokens,
        fit_fraction=s.fit_fraction,
        plateau_fraction=s.plateau_fraction,
    )
    st["captured"] = summarise(fit.captured)
    st["learnable_information"] = fit.learnable
    st["loss_floor"] = float(res.loss_floor)
    st["plateau_drop"] = summarise(fit.drop)
    st["plateau_from_step"] = fit.from_step
    st["fitted_runs"] = int(fit.fitted.sum())
    st["plateau_runs"] = int(fit.plateaued.sum())
    st["status"] = fit.status
    st["steps"] = train_cfg.steps
    st["lr"] = train_cfg.lr
    st["batch_size"] = train_cfg.batch_size
    return st


def run(
    cfg: ExperimentConfig[Settings], rep, *, progress: bool = True
) -> dict[str, Summary | float]:
    """Train one ensemble per (m, d), measure it and its initialisation, and compare."""
    s = cfg.settings
    stats: dict[tuple[int, float], dict[str, Any]] = {}
    dims: dict[tuple[int, float], int] = {}
    for m in s.ms:
        latent = cfg.latent_model(m=m)
        mcfg = cfg.with_train(**s.train_for(m))
        for fac in s.d_factors:
            d = max(1, math.ceil(fac * m))
            res = train(latent, mcfg.with_model(d=d), progress=progress)
            stats[(m, fac)] = _cell(latent, res, s, mcfg.train)
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
            "steps": st["steps"],
            "excess loss": ci_cell(st["excess_loss"]),
            "captured": ci_cell(st["captured"]),
            "status": st["status"],
            "train s": f"{st['seconds']:.1f}",  # one decimal (the table's default is 3)
        }
        for (m, fac), st in stats.items()
    ]
    per_m = ", ".join(f"m = {m}: {s.train_for(m).get('steps', cfg.train.steps)}" for m in s.ms)
    rep.add_heading("Parallelism and orthogonality by (m, d)")
    rep.add_text(
        f"{len(seeds)} seeds per cell, mean ± 95 % t-interval over seeds, Euclidean inner product. "
        f"Sampled contexts ({cfg.latent.n_contexts} draws, duplicates merged), linear f, "
        f"{cfg.train.optimizer} lr {cfg.train.lr} ({cfg.train.lr_schedule} schedule, "
        f"{cfg.train.warmup_steps} warm-up steps) on minibatches of {cfg.train.batch_size} contexts "
        f"with their exact next-token rows; steps per m: {per_m}. Same-concept and "
        "cross-concept (direction) cosines use every one of the 2^(m−1) pairs per concept; "
        "alignment uses sampled context pairs. **in span{f}**: the same cosine of g projected on "
        "span{f(ξ)}, the only part of g any logit sees (rank F of d). **untrained**: the same "
        "models at initialisation (the null). The excess loss is exact where the context set's "
        "table is small, otherwise estimated on held-out contexts "
        "(see each cell's `excess_loss_method` in results.json). **captured**: 1 − excess / "
        "(log V − H̄), the share of the information the context carries about the next token "
        "that the learner has picked up (log V − H̄ is the uniform predictor's excess). "
        f"**status**: `fitted` if every run has excess + 2 SE ≤ {s.fit_fraction:g} · "
        "(log V − H̄); else `plateau` if every run's excess fell by at most "
        f"max({s.plateau_fraction:g} · excess, 2 SE) over the last quarter of its steps; else "
        "`not fitted`. For d < m the class cannot reach the floor (m independent bits do not fit "
        "in rank d), so `plateau` is the most one can ask there; with a decaying learning rate a "
        "plateau is necessary, not sufficient, for having reached the class's floor."
    )
    rep.add_table(rows, caption="E5: geometry by (m, d)")
    bad = [
        f"m = {m}, {_factor_label(f)}"
        for (m, f), st in stats.items()
        if st["status"] == "not fitted"
    ]
    unfit = (
        f"Not fitted (a learner still moving): {'; '.join(bad)}."
        if bad
        else "Every cell is fitted or at a plateau."
    )
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
    for key, label, fname in (
        ("same_concept_cosine", "same-concept cos", "e5_parallelism_vs_m"),
        (
            "same_concept_cosine_identifiable",
            "same-concept cos in span{f}",
            "e5_parallelism_id_vs_m",
        ),
        ("captured", "captured share of log V − H̄", "e5_captured_vs_m"),
    ):
        series = {_factor_label(f): bounds([stats[(m, f)][key] for m in s.ms]) for f in s.d_factors}
        fig = figures.point_intervals(
            [f"m = {m}" for m in s.ms],
            series,
            ylabel=label,
            xlabel="concepts m",
            title=f"{label} vs m",
        )
        rep.add_figure(fig, fname, caption=f"{label} against m, one series per d/m. {unfit}")
    rep.results["fit"] = {
        "fit_fraction": s.fit_fraction,
        "plateau_fraction": s.plateau_fraction,
        "definition": (
            "fitted: excess + 2 SE <= fit_fraction * (log V - loss_floor) for every run; plateau: "
            "excess fell by <= max(plateau_fraction * excess, 2 SE) over the last quarter of "
            "steps for every run; else not fitted"
        ),
        "cells": {f"m={m},d={dims[(m, fac)]}": st["status"] for (m, fac), st in stats.items()},
    }
    rep.results["stats"] = {
        f"m={m},d={dims[(m, fac)]}": {
            k: (v.to_json() if isinstance(v, Summary) else v) for k, v in st.items()
        }
        for (m, fac), st in stats.items()
    }


def _headline(s: Settings, stats) -> dict[str, Summary | float]:
    head: dict[str, Summary | float] = {}
    big, small = max(s.ms), min(s.ms)
    lo, hi = min(s.d_factors), max(s.d_factors)
    for m in (small, big):
        for fac in (lo, hi):
            st = stats[(m, fac)]
            tag = f"m={m} {_factor_label(fac)}"
            head[f"same_concept_cosine {tag}"] = st["same_concept_cosine"]
            head[f"cross_concept_abs_cosine {tag}"] = st["cross_concept_abs_cosine"]
            head[f"same_concept_cosine_identifiable {tag}"] = st["same_concept_cosine_identifiable"]
            head[f"captured {tag}"] = st["captured"]
    for m in s.ms[1:-1]:  # the in-between m at the largest d (small and big are above)
        head[f"same_concept_cosine_identifiable m={m} {_factor_label(hi)}"] = stats[(m, hi)][
            "same_concept_cosine_identifiable"
        ]
        head[f"captured m={m} {_factor_label(hi)}"] = stats[(m, hi)]["captured"]
    if 1.0 in s.d_factors:  # d = m: the smallest d that can hold m orthogonal directions
        for m in (small, big):
            st = stats[(m, 1.0)]
            head[f"same_concept_cosine_identifiable m={m} d = m"] = st[
                "same_concept_cosine_identifiable"
            ]
            head[f"cross_concept_abs_cosine_identifiable m={m} d = m"] = st[
                "cross_concept_abs_cosine_identifiable"
            ]
            head[f"captured m={m} d = m"] = st["captured"]
    head[f"untrained same_concept_cosine m={big} {_factor_label(hi)}"] = stats[(big, hi)][
        "untrained same_concept_cosine"
    ]
    head[f"excess_loss m={big} {_factor_label(hi)}"] = stats[(big, hi)]["excess_loss"]
    fit_d = [f for f in s.d_factors if f >= 1.0]
    head["fitted cells with d >= m"] = float(
        sum(stats[(m, f)]["status"] == "fitted" for m in s.ms for f in fit_d)
    )
    head["cells with d >= m"] = float(len(s.ms) * len(fit_d))
    head["fitted or plateau cells"] = float(
        sum(st["status"] != "not fitted" for st in stats.values())
    )
    return head
