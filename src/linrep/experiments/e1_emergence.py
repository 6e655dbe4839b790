"""E1 — emergence: are same-concept steering vectors parallel after training, and only then?

For every concept i and its 2^(m−1) counterfactual pairs (y0, y1), the steering vectors
Δg = g(y1) − g(y0) of a trained model should be (nearly) parallel — pairwise cosines near 1 — while
steering vectors of different concepts are (nearly) orthogonal under the Euclidean inner product
(``docs/theory.md`` §3). We compare the trained ensemble with (a) the same models at initialisation
and (b) a shuffled-token null (rows of the trained g permuted, pairs kept), and show the histograms of
same- vs cross-concept cosines pooled over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..geometry.simulation import with_identifiable
from .cells import ci_cell, label
from .stats import Summary, biases, run_metrics, stack_metrics, summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E1"
STEM = "e1_emergence"
TITLE = "emergence of linear representations"
QUESTION = (
    "Do same-concept steering vectors become parallel (and different concepts orthogonal) when a "
    "next-token model is trained on the latent conditional model, compared with the untrained model "
    "and a shuffled-token null?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E1."""

    n_seeds: int = 10
    """Number of independent initialisations (seeds first_seed … first_seed + n_seeds − 1)."""
    first_seed: int = 0
    """First seed."""
    n_shuffles: int = 200
    """Shuffles of the trained unembedding rows per run for the shuffled-token null."""
    probes: bool = True
    """Also report linear-probe accuracy of each known concept from f(ξ) (cross-validated; slow)."""


def cosine_samples(latent, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled same-concept pairwise cosines and cross-concept cosines of K unembeddings (K, V, d)."""
    from ..geometry import cross_concept_cosines, pairwise_cosines, steering_vectors

    deltas = [steering_vectors(g, p) for p in latent.all_counterfactual_pairs()]  # (K, P, d)
    same = np.concatenate([pairwise_cosines(d).ravel() for d in deltas])
    cross = cross_concept_cosines(deltas).ravel()
    return same, cross


def shuffled_null(latent, g: np.ndarray, n_shuffles: int, seed: int) -> np.ndarray:
    """Per run: mean over shuffles and concepts of the same-concept cosine of row-shuffled g, (K,)."""
    from ..geometry import same_concept_cosine, shuffled_unembedding_null

    pairs = latent.all_counterfactual_pairs()
    out = []
    for k in range(g.shape[0]):
        null = shuffled_unembedding_null(
            g[k],
            pairs,
            n_shuffles=n_shuffles,
            seed=seed + k,
            statistic=lambda d: float(same_concept_cosine(d)),
        )  # (n_shuffles, m)
        out.append(float(null.mean()))
    return np.array(out)


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Summary]:
    """Train, measure, and fill the report; returns the headline numbers."""
    from ..report import figures

    s, seeds = cfg.settings, cfg.seeds
    latent = cfg.latent_model()
    res = train(latent, cfg, progress=progress)
    f, g = res.embeddings(), res.unembeddings()
    f0, g0 = res.initial_embeddings(), res.initial_unembeddings()

    trained = run_metrics(latent, f, g, probes=s.probes, bias=biases(res))
    untrained = run_metrics(latent, f0, g0, probes=s.probes, bias=biases(res, initial=True))
    keys = (*with_identifiable(), *(("probe_accuracy",) if s.probes else ()))
    T, U = stack_metrics(trained, keys), stack_metrics(untrained, keys)
    T["excess_loss"] = summarise([r["excess_loss"] for r in res.final])
    first = {r["run"]: r for r in res.history if r["step"] == 0}
    U["excess_loss"] = summarise([first[k]["excess_loss"] for k in sorted(first)])
    null = summarise(shuffled_null(latent, g, s.n_shuffles, seed=10_000))

    cols = [*keys, "excess_loss"]
    rows = [
        {"model": "trained", **{label(k): ci_cell(T[k]) for k in cols}},
        {"model": "untrained (step 0)", **{label(k): ci_cell(U[k]) for k in cols}},
        {
            "model": "shuffled-token null (trained g)",
            label("same_concept_cosine"): ci_cell(null),
        },
    ]
    rep.add_heading("Headline numbers")
    rep.add_text(
        f"m = {latent.m} concepts, {latent.n_contexts} contexts, {latent.n_tokens} tokens; "
        f"{len(seeds)} seeds; mean ± 95 % t-interval over seeds of per-run means over concepts "
        "(Euclidean inner product). **cross-concept |cos| (directions)** is the mean |off-diagonal| "
        "of the concept-direction cosine matrix; **(pairs)** averages |cos| over all steering-vector "
        "pairs of different concepts (the histogram's red distribution). Columns **in span{f}** "
        "measure g projected on the span of the context embeddings (rank "
        f"F = {int(np.mean([r['identifiable_rank'] for r in trained]))} of d = {cfg.model.d}): "
        "the only directions any logit depends on (docs/theory.md §3.4)."
    )
    rep.add_table(rows, caption="E1: trained vs untrained vs shuffled null")

    per = []
    for i, name in enumerate(latent.names):
        per.append(
            {
                "concept": name,
                "same-concept cos (trained)": ci_cell(
                    summarise([r["same_concept_cosine_per_concept"][i] for r in trained])
                ),
                "alignment (trained)": ci_cell(
                    summarise([r["alignment_cosine_per_concept"][i] for r in trained])
                ),
                "same-concept cos (untrained)": ci_cell(
                    summarise([r["same_concept_cosine_per_concept"][i] for r in untrained])
                ),
            }
        )
    rep.add_table(per, caption="Per concept (mean ± 95 % CI over seeds)")

    same, cross = cosine_samples(latent, g)
    same0, cross0 = cosine_samples(latent, g0)
    fig = figures.cosine_histograms(
        {
            f"trained ({cfg.train.steps} steps)": {
                "same concept": same,
                "different concepts": cross,
            },
            "untrained (initialisation)": {"same concept": same0, "different concepts": cross0},
        },
        title="Steering-vector cosines, pooled over concepts and seeds",
    )
    rep.add_figure(
        fig,
        "e1_cosine_histograms",
        caption="Cosines between steering vectors Δg of the same concept (blue) and of different "
        "concepts (red), trained vs at initialisation, pooled over all seeds.",
    )
    rep.results["trained"] = T
    rep.results["untrained"] = U
    rep.results["shuffled_null_same_concept_cosine"] = null
    rep.results["per_run_trained"] = trained
    return {
        "same_concept_cosine": T["same_concept_cosine"],
        "same_concept_cosine_identifiable": T["same_concept_cosine_identifiable"],
        "cross_concept_abs_cosine": T["cross_concept_abs_cosine"],
        "untrained same_concept_cosine": U["same_concept_cosine"],
        "shuffled-null same_concept_cosine": null,
    }
