"""E3 — dynamics and optimisers: what GD and Adam change, and whether the logits can see it.

Part 1 follows the geometry over training for GD (lr 1) and Adam (lr 0.01) with 95 % bands over
seeds. Part 2 sweeps the learning rate (≥ 3 decades) and the initialisation scale (0.001 … 1) of
both optimisers, each optimiser one batched ensemble, and reports every metric twice: raw, and inside
the identifiable subspace span{f(ξ)} (``docs/theory.md`` §3.4). With the one-hot linear encoder
span{f} has rank F = 2m + 1 < d: under GD the other d − F coordinates of g keep their initialisation
(their size is set by ``init_scale``), while Adam's per-coordinate scaling moves them. A difference
between optimisers that survives inside span{f} is learned; one that does not is initialisation.

What it can show: which raw differences are identifiable; whether the end point is a plateau (the
change over the last decade of steps is reported); that GD runs with different learning rates follow
one trajectory in lr·t (gradient-flow time) while stable. What it cannot show: the behaviour of runs
that have not fit the data (their excess loss is in the table — read it before the geometry).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import ci_cell
from .stats import Summary, band, history_arrays, summarise
from .training import train_variants

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E3"
STEM = "e3_dynamics"
TITLE = "training dynamics and optimisers (GD vs Adam, lr × init sweeps)"
QUESTION = (
    "How do parallelism, orthogonality and alignment evolve over training, and which differences "
    "between gradient descent and Adam (over learning rates and initialisation scales) are learned "
    "geometry inside span{f} rather than initialisation left where no logit looks?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E3."""

    n_seeds: int = 10
    """Seeds of each dynamics ensemble (part 1)."""
    first_seed: int = 0
    """First seed (parts 1 and 2)."""
    optimizers: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"label": "GD lr 1", "optimizer": "gd", "lr": 1.0},
            {"label": "Adam lr 0.01", "optimizer": "adam", "lr": 0.01},
        ]
    )
    """Part 1: one curve per entry (``label`` plus ``[train]`` keys replacing the config's)."""
    sweep_optimizers: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"label": "GD", "optimizer": "gd", "lrs": [0.001, 0.01, 0.1, 1.0]},
            {"label": "Adam", "optimizer": "adam", "lrs": [0.001, 0.01, 0.1, 1.0]},
        ]
    )
    """Part 2: per optimiser its learning rates (one batched ensemble per optimiser)."""
    sweep_init_scales: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0])
    """Part 2: initialisation scales (``model.init_scale`` of W and g)."""
    sweep_seeds: int = 3
    """Part 2: seeds per (lr, init_scale) cell."""
    sweep_steps: int = 20000
    """Part 2: steps of every run (the learning rate sets how far along gradient flow that is)."""
    sweep_log_points: int = 20
    """Part 2: metrics every sweep_steps / sweep_log_points steps (the last decade is checked)."""


SAME, SAME_ID = "euclid.same_concept_cosine", "euclid.same_concept_cosine_identifiable"
PANELS = (
    ((SAME, SAME_ID), "same-concept cos"),
    (("euclid.cross_concept_abs_cosine", "euclid.cross_concept_abs_cosine_identifiable"),
     "cross-concept |cos| (directions)"),
    (("euclid.alignment_cosine",), "alignment cos(f̄ᵢ, ḡᵢ)"),
    (("param_norm",), "parameter norm ‖θ‖"),
    (("excess_loss",), "excess loss (nats)"),
    (("euclid.log_odds_matching_error",), "log-odds error (nats)"),
)  # fmt: skip
SWEEP_KEYS = (
    SAME,
    SAME_ID,
    "euclid.cross_concept_abs_cosine_identifiable",
    "excess_loss",
)


def _view(key: str) -> str:
    return "in span{f}" if key.endswith("_identifiable") else "raw"


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Any]:
    """Part 1 (dynamics) and part 2 (lr × init sweeps)."""
    latent = cfg.latent_model()
    finals = _dynamics(cfg, latent, rep, progress)
    sweep = _sweep(cfg, latent, rep, progress)
    head: dict[str, Any] = {}
    for label, fin in finals.items():
        head[f"same_concept_cosine {label}"] = fin[SAME]
        head[f"same_concept_cosine_identifiable {label}"] = fin[SAME_ID]
    head.update(_sweep_headline(sweep))
    return head


# ------------------------------------------------------------------------------ part 1: dynamics
def _dynamics(cfg, latent, rep, progress) -> dict[str, dict[str, Summary]]:
    from ..geometry import metric_hook
    from ..report import figures

    s = cfg.settings
    curves: dict[str, dict[str, Any]] = {}
    finals: dict[str, dict[str, Summary]] = {}
    steps = np.zeros(0)
    variants = train_variants(
        latent, cfg, s.optimizers, label_key="optimizer", progress=progress,
        metrics={"euclid": metric_hook(latent)},
    )  # fmt: skip
    for label, res in variants:
        curves[label], finals[label] = {}, {}
        for keys, _ in PANELS:
            for key in keys:
                steps, vals = history_arrays(res.history, key)
                curves[label][key] = band(vals)
                finals[label][key] = summarise(vals[:, -1])
    panels = {
        title: {
            f"{label} {_view(k)}" if len(keys) > 1 else label: curves[label][k]
            for label in curves
            for k in keys
        }
        for keys, title in PANELS
    }
    fig = figures.lines_vs_step(
        steps,
        panels,
        logy=("excess loss (nats)", "log-odds error (nats)"),
        title="Training dynamics (mean ± 95 % CI over seeds)",
    )
    rep.add_heading("1. Dynamics")
    rep.add_text(
        f"{len(cfg.seeds)} seeds per optimiser; metrics every {cfg.train.log_every} steps (log "
        "step axis). Euclidean inner product; means over concepts. **in span{f}**: g projected on "
        "the span of the context embeddings (rank 2m + 1 with this encoder), the only part of g "
        "any logit depends on."
    )
    rep.add_figure(fig, "e3_dynamics", caption="Metrics vs training step for each optimiser.")
    keys = [k for ks, _ in PANELS for k in ks]
    rows = [
        {"optimiser": label, **{f"{k.split('.')[-1]}": ci_cell(fin[k]) for k in keys}}
        for label, fin in finals.items()
    ]
    rep.add_table(rows, caption="E3.1: final values (mean ± 95 % CI over seeds)")
    rep.results["final"] = finals
    rep.results["steps"] = steps
    return finals


# ------------------------------------------------------------------------------ part 2: sweeps
def _sweep_runs(cfg, entry: dict[str, Any]) -> tuple[list, list, list[tuple[float, float]]]:
    """Per-run model/train configs of one optimiser's (lr × init_scale × seed) grid."""
    s = cfg.settings
    seeds = [s.first_seed + k for k in range(s.sweep_seeds)]
    tr = dataclasses.replace(
        cfg.train,
        optimizer=entry["optimizer"],
        steps=s.sweep_steps,
        log_every=max(1, s.sweep_steps // s.sweep_log_points),
    )
    cells = list(itertools.product(entry["lrs"], s.sweep_init_scales))
    mcfgs, tcfgs = [], []
    for (lr, init), seed in itertools.product(cells, seeds):
        mcfgs.append(dataclasses.replace(cfg.model, init_scale=init))
        tcfgs.append(dataclasses.replace(tr, lr=lr, seed=seed))
    return mcfgs, tcfgs, cells


def _sweep(cfg, latent, rep, progress) -> dict[str, dict[tuple[float, float], dict]]:
    """One batched ensemble per optimiser over (lr, init_scale, seed); per-cell summaries."""
    from ..geometry import metric_hook
    from ..learn import fit

    s = cfg.settings
    out: dict[str, dict[tuple[float, float], dict]] = {}
    for entry in s.sweep_optimizers:
        mcfgs, tcfgs, cells = _sweep_runs(cfg, entry)
        res = fit(latent, mcfgs, tcfgs, progress=progress, metrics={"euclid": metric_hook(latent)})
        hist = {k: history_arrays(res.history, k) for k in SWEEP_KEYS}
        steps = hist[SAME][0]
        last_decade = int(np.searchsorted(steps, steps[-1] / 10))
        per_cell = {}
        for c, cell in enumerate(cells):
            rows = slice(c * s.sweep_seeds, (c + 1) * s.sweep_seeds)
            st = {k: summarise(v[rows, -1]) for k, (_, v) in hist.items()}
            change = hist[SAME_ID][1][rows, -1] - hist[SAME_ID][1][rows, last_decade]
            st["last_decade_change_identifiable"] = summarise(change)
            st["curve_identifiable"] = hist[SAME_ID][1][rows].mean(axis=0)
            per_cell[cell] = st
        out[str(entry.get("label", entry["optimizer"]))] = {"steps": steps, "cells": per_cell}
    _sweep_report(cfg, rep, out)
    return out


def _sweep_report(cfg, rep, out) -> None:
    from ..report import figures

    s = cfg.settings
    inits = np.array(s.sweep_init_scales, dtype=float)
    panels: dict[str, dict[str, Any]] = {}
    rows = []
    for opt, res in out.items():
        lrs = sorted({lr for lr, _ in res["cells"]})
        for key in (SAME, SAME_ID):
            panels[f"{opt}: same-concept cos {_view(key)}"] = {
                f"lr {lr:g}": _bounds_over_inits(res["cells"], lr, s.sweep_init_scales, key)
                for lr in lrs
            }
        for (lr, init), st in res["cells"].items():
            rows.append(
                {
                    "optimiser": opt,
                    "lr": lr,
                    "init scale": init,
                    "same-concept cos raw": ci_cell(st[SAME]),
                    "in span{f}": ci_cell(st[SAME_ID]),
                    "cross |cos| in span{f}": ci_cell(st["euclid.cross_concept_abs_cosine_identifiable"]),
                    "excess loss": ci_cell(st["excess_loss"]),
                    "change over last decade (span{f})": ci_cell(st["last_decade_change_identifiable"]),
                    "at a plateau": _at_plateau(st),
                }
            )  # fmt: skip
    rep.add_heading("2. Learning rate × initialisation scale")
    rep.add_text(
        f"{s.sweep_seeds} seeds per cell, {s.sweep_steps} steps, one batched ensemble per "
        "optimiser. Read the excess loss first: a run that has not fit the data is not at the end "
        "point of training. **change over last decade** = value at the last step minus the value "
        "a decade of steps earlier; **at a plateau** = excess loss < "
        f"{PLATEAU['excess_loss']:g} and |change| < {PLATEAU['last_decade_change']:g} (the "
        "headline ranges use only those cells). Under GD the raw parallelism falls with the "
        "initialisation scale much more than the one inside span{f}: most of the raw gap is "
        "initialisation in the d − F directions no logit sees. Runs at the largest scale are "
        "typically still changing after the last decade (not at a plateau), so their in-span "
        "values are not end points either."
    )
    fig = figures.lines_vs_step(
        inits,
        panels,
        xlabel="initialisation scale",
        title="Final same-concept cos (mean ± 95 % CI)",
    )
    rep.add_figure(
        fig, "e3_sweep", caption="Raw and identifiable parallelism vs init scale, per lr."
    )
    rep.add_table(rows, caption="E3.2: every (optimiser, lr, init scale) cell (mean ± 95 % CI)")
    _equal_time_table(rep, out)
    rep.results["sweep"] = {
        opt: {f"lr={lr:g},init={i:g}": {k: v for k, v in st.items() if k != "curve_identifiable"}
              for (lr, i), st in res["cells"].items()}
        for opt, res in out.items()
    }  # fmt: skip


def _bounds_over_inits(cells, lr, inits, key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .stats import bounds

    return bounds([cells[(lr, i)][key] for i in inits])


def _equal_time_table(rep, out) -> None:
    """Runs with lr and lr/10 compared at the same lr·t (gradient-flow time): steps t/10 vs t."""
    rows = []
    for opt, res in out.items():
        steps = res["steps"]
        lrs = sorted({lr for lr, _ in res["cells"]})
        inits = sorted({i for _, i in res["cells"]})
        for hi, lo in zip(lrs[1:], lrs[:-1], strict=True):
            if not np.isclose(hi, 10 * lo):
                continue
            t = steps[-1]
            a, b = int(np.searchsorted(steps, t / 10)), len(steps) - 1
            if steps[a] * 10 != t:
                continue
            for init in inits:
                x = res["cells"][(hi, init)]["curve_identifiable"][a]
                y = res["cells"][(lo, init)]["curve_identifiable"][b]
                rows.append(
                    {"optimiser": opt, "init scale": init, "lr·t": hi * steps[a],
                     "lr A": hi, "step A": int(steps[a]), "lr B = A/10": lo, "step B": int(t),
                     "A": x, "B": y, "A − B": x - y}
                )  # fmt: skip
    if rows:
        rep.add_text(
            "Equal gradient-flow time: each row compares a run with learning rate lr at step t/10 "
            "with a run with lr/10 at step t (the same lr·t), same-concept cos in span{f}, mean "
            "over seeds. Differences near 0 mean the learning rate only set how far along one "
            "trajectory training went."
        )
        rep.add_table(rows, caption="E3.3: equal lr·t comparisons", digits=3)


PLATEAU = {"excess_loss": 1e-3, "last_decade_change": 0.01}
"""A sweep cell is at its end point when its excess loss and the |change| of its identifiable
parallelism over the last decade of steps (means over seeds) are below these."""


def _at_plateau(st: dict[str, Any]) -> bool:
    return (
        st["excess_loss"].mean < PLATEAU["excess_loss"]
        and abs(st["last_decade_change_identifiable"].mean) < PLATEAU["last_decade_change"]
    )


def _sweep_headline(sweep) -> dict[str, float]:
    """Range over the cells at a plateau (:data:`PLATEAU`) of raw and identifiable parallelism."""
    head: dict[str, float] = {}
    for opt, res in sweep.items():
        done = [st for st in res["cells"].values() if _at_plateau(st)]
        head[f"{opt} sweep cells at a plateau"] = float(len(done))
        for key, tag in ((SAME, "raw"), (SAME_ID, "identifiable")):
            vals = [st[key].mean for st in done] or [float("nan")]
            head[f"{opt} sweep same_concept_cosine {tag} min"] = float(min(vals))
            head[f"{opt} sweep same_concept_cosine {tag} max"] = float(max(vals))
    return head
