"""E7 — the theory, executed: the log-odds-matching construction, the ε-bound, max-margin alignment.

1. **Construction** (``docs/theory.md`` §3.1): :func:`linrep.theory.log_odds_construction` builds
   f, g that match the true log-odds exactly; its steering vectors must be identical (distance 0,
   same-concept cos 1). Because the likelihood only fixes g up to g ↦ gA, the same construction with a
   random invertible A (``mix``) keeps the log-odds but not Euclidean orthogonality — orthogonality
   is a property of what training selects, not of the data (§3.3).
2. **ε-bound** for trained models: :func:`linrep.theory.epsilon_bound` compares ‖Δg − Δg'‖ with
   (2ε + δ)/σ̃ (the part of Δg − Δg' in the span of the context embeddings is bounded; the rest is not).
3. **Implicit bias** (§3.2): the cosine between trained steering vectors and the hard-margin SVM
   direction of each concept (:func:`linrep.theory.max_margin_hook`) over training, GD vs Adam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import ci_cell
from .stats import Summary, band, history_arrays, run_metrics, summarise
from .training import train_variants

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E7"
STEM = "e7_theory"
TITLE = "theory: log-odds construction, ε-bound, max-margin alignment"
QUESTION = (
    "Do the paper's two mechanisms hold in code: exact log-odds matching forces identical steering "
    "vectors, and gradient descent drives steering vectors towards each concept's max-margin "
    "direction?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E7."""

    n_seeds: int = 10
    """Seeds of each trained ensemble (and of the construction's random mixing A)."""
    first_seed: int = 0
    """First seed."""
    construction_beta: float = 20.0
    """Logit margin β of known concepts in the construction (KL to the data ~ e^{−2β})."""
    optimizers: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"label": "GD lr 1", "optimizer": "gd", "lr": 1.0},
            {"label": "Adam lr 0.01", "optimizer": "adam", "lr": 0.01},
        ]
    )
    """Ensembles whose max-margin alignment is followed over training (label + [train] keys)."""


def _construction(latent, d: int, s: Settings, seeds: list[int]) -> tuple[list[dict], dict]:
    from ..theory import check_log_odds_matching, log_odds_construction

    rows, stats = [], {}
    for mix in (False, True):
        checks, geo = [], []
        for seed in seeds if mix else seeds[:1]:
            mm = log_odds_construction(latent, d, beta=s.construction_beta, seed=seed, mix=mix)
            checks.append(check_log_odds_matching(latent, mm.f, mm.g))
            geo.append(run_metrics(latent, mm.f[None], mm.g[None])[0])
        label = "construction, random mixing A" if mix else "construction, A = I"
        st = {
            "max_log_odds_error": summarise([max(c["max_log_odds_error"]) for c in checks]),
            "max_steering_distance": summarise([max(c["max_steering_distance"]) for c in checks]),
            "same_concept_cosine": summarise([g["same_concept_cosine"] for g in geo]),
            "cross_concept_abs_cosine": summarise([g["cross_concept_abs_cosine"] for g in geo]),
            "excess_loss": summarise([c["excess_loss"] for c in checks]),
            "n_models": len(checks),
        }
        stats[label] = st
        rows.append(
            {
                "model": f"{label} ({len(checks)} draw{'s' if len(checks) > 1 else ''})",
                "max |log-odds error| ε": ci_cell(st["max_log_odds_error"]),
                "max ‖Δg − Δg'‖": ci_cell(st["max_steering_distance"]),
                "same-concept cos": ci_cell(st["same_concept_cosine"]),
                "cross |cos| (directions)": ci_cell(st["cross_concept_abs_cosine"]),
                "excess loss": ci_cell(st["excess_loss"]),
            }
        )
    return rows, stats


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Construction, ε-bound of trained models and max-margin curves."""
    from ..report import figures
    from ..theory import epsilon_bound, max_margin_alignment, max_margin_hook

    s, seeds = cfg.settings, cfg.seeds
    latent = cfg.latent_model()
    d = cfg.model.d

    rows, cons = _construction(latent, d, s, seeds)
    rep.add_heading("1. The log-odds-matching construction")
    rep.add_text(
        "A closed-form model matching the true log-odds exactly (independent concepts). Its "
        "steering vectors coincide (distance ≈ 0, same-concept cos = 1) and cross-concept "
        "directions are orthogonal when A = I; a random invertible mixing A keeps every "
        "log-odds (and the likelihood) but destroys Euclidean orthogonality."
    )
    rep.add_table(rows, caption="E7.1: construction (mean ± 95 % CI over draws of A)")

    hook = max_margin_hook(latent)
    curves, eps_rows, finals = {}, [], {}
    steps = None
    for label, res in train_variants(
        latent,
        cfg,
        s.optimizers,
        label_key="optimizer",
        progress=progress,
        metrics={"svm": hook},
    ):
        f, g = res.embeddings(), res.unembeddings()
        eb = [epsilon_bound(latent, f[k], g[k]) for k in range(len(seeds))]
        mma = [max_margin_alignment(latent, f[k], g[k]) for k in range(len(seeds))]
        geo = run_metrics(latent, f, g)
        fin = {
            "epsilon": summarise([max(e["epsilon"]) for e in eb]),
            "max_distance": summarise([max(e["max_distance"]) for e in eb]),
            "max_distance_in_span": summarise([max(e["max_distance_in_span"]) for e in eb]),
            "median_bound": summarise([float(np.median(e["median_bound"])) for e in eb]),
            "max_ratio": summarise([max(e["max_ratio"]) for e in eb]),
            "bound_holds": all(bool(e["bound_holds"]) for e in eb),
            "svm_direction_cosine": summarise([a["svm_direction_cosine"] for a in mma]),
            "svm_steering_cosine": summarise([a["svm_steering_cosine"] for a in mma]),
            "same_concept_cosine": summarise([x["same_concept_cosine"] for x in geo]),
        }
        finals[label] = fin
        eps_rows.append(
            {
                "trained model": label,
                "ε (max log-odds error)": ci_cell(fin["epsilon"]),
                "max ‖Δg − Δg'‖": ci_cell(fin["max_distance"]),
                "max in-span part": ci_cell(fin["max_distance_in_span"]),
                "median bound (2ε+δ)/σ̃": ci_cell(fin["median_bound"]),
                "max in-span/bound": ci_cell(fin["max_ratio"]),
                "bound holds (all runs)": fin["bound_holds"],
            }
        )
        curves[label] = {}
        for key, title in (
            ("svm.svm_direction_cosine", "cos(ḡᵢ, max-margin wᵢ)"),
            ("svm.svm_steering_cosine", "mean cos(Δg, wᵢ)"),
            ("param_norm", "parameter norm ‖θ‖"),
        ):
            steps, vals = history_arrays(res.history, key)
            curves[label][title] = band(vals)

    rep.add_heading("2. The ε-bound for trained models")
    rep.add_text(
        "For each concept and pair of its counterfactual pairs, the part of Δg − Δg' in the span of "
        "the embeddings of contexts where the concept is unknown is bounded by (2ε + δ)/σ̃; the "
        "part outside that span is unconstrained by the log-odds (m = 4 has at most 27 such "
        "contexts against d = 32), so the total distance can exceed the bound. Max over concepts "
        "and pairs, then mean ± 95 % CI over seeds."
    )
    rep.add_table(eps_rows, caption="E7.2: measured distances vs the ε-bound")

    rep.add_heading("3. Max-margin alignment over training")
    panels = {
        title: {label: curves[label][title] for label in curves}
        for title in next(iter(curves.values()))
    }
    fig = figures.lines_vs_step(
        steps, panels, title="Alignment with the max-margin SVM direction (mean ± 95 % CI)"
    )
    rep.add_figure(
        fig,
        "e7_max_margin",
        caption="Cosine between trained steering vectors and each concept's hard-margin SVM "
        "direction on {(f(ξ), ±1): ξ_i known}, recomputed at every logged step.",
    )
    rep.add_table(
        [
            {
                "optimiser": label,
                "cos(ḡᵢ, wᵢ) final": ci_cell(fin["svm_direction_cosine"]),
                "mean cos(Δg, wᵢ) final": ci_cell(fin["svm_steering_cosine"]),
                "same-concept cos final": ci_cell(fin["same_concept_cosine"]),
            }
            for label, fin in finals.items()
        ],
        caption="E7.3: final alignment with the max-margin direction",
    )
    rep.results["construction"] = cons
    rep.results["trained"] = finals
    head = {
        "construction max ‖Δg − Δg'‖": cons["construction, A = I"]["max_steering_distance"],
    }
    for label, fin in finals.items():
        head[f"cos(ḡ, SVM w) {label}"] = fin["svm_direction_cosine"]
        head[f"mean cos(Δg, SVM w) {label}"] = fin["svm_steering_cosine"]
    return head
