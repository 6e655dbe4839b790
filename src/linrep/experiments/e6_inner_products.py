"""E6 — inner products: which orthogonality results are findings and which are forced by the design.

The softmax likelihood is invariant under f ↦ A⁻ᵀf, g ↦ Ag, so it does not pick an inner product
(``docs/theory.md`` §3.3); Park et al. propose the causal one, ⟨u, v⟩ = uᵀCov(γ)⁻¹v with the
covariance taken over the vocabulary. The origins paper's claim is about the Euclidean inner product.
We train one ensemble on concepts with two coupled pairs ("related" concepts) and measure
|cos(ḡ_i, ḡ_j)| of concept directions under the Euclidean, causal and a random inner product, for
the trained g and for two planted linear codes g(y) = A s(y) (s = 2c − 1): an orthogonal one and an
adversarial one whose concept columns have Euclidean cosine ``adversarial_cos``.

**Forced by construction [ours, derived in docs/theory.md §3.3].** Let the covariance be taken with
token weights π (uniform over the vocabulary: Park et al.'s estimate; or token frequencies). For
any linear code g(y) = A s(y) + c with A: (d, m) of full column rank, every steering vector of
concept i is s(y1) − s(y0) = 2e_i mapped by A, so ḡ_i ∝ A e_i; Cov_π(g) = A Σ_π Aᵀ with
Σ_π = Cov_π(s), and ⟨ḡ_i, ḡ_j⟩_C ∝ e_iᵀ Aᵀ(A Σ_π Aᵀ)⁺ A e_j = [Σ_π⁻¹]_ij. The causal cosine is the
normalised inverse covariance of the concept indicators under π — the same number for the
orthogonal and the adversarial code, whatever training did. With the full balanced vocabulary and uniform weights
Σ_π = I, so every causal cosine is 0; with frequency weights it is minus the partial correlation of
the two concepts, non-zero for coupled (related) concepts. We therefore report this **forced value**
next to every causal number, and flag a result as forced when the planted orthogonal and adversarial
codes give the same value. A trained g can only depart from it to the extent that it is not a linear
code.

What it can show: whether Euclidean orthogonality of unrelated concepts is a property of training
(the adversarial code fails it) and how far trained directions are from linear codes. What it cannot
show: evidence for or against causal orthogonality in this setting (forced, as derived above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import ci_cell
from .stats import summarise
from .training import train

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E6"
STEM = "e6_inner_products"
TITLE = "inner products: Euclidean vs causal vs random, and what the design forces"
QUESTION = (
    "Are the concept directions of a trained model orthogonal under the Euclidean inner product, "
    "and which of the Euclidean, causal and random results could the design have produced for any "
    "model (planted orthogonal and adversarial codes, derived forced values)?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E6."""

    n_seeds: int = 10
    """Seeds of the ensemble (and of the planted codes)."""
    first_seed: int = 0
    """First seed."""
    related: list[list[int]] = field(default_factory=lambda: [[0, 1], [2, 3]])
    """Concept pairs counted as related (the coupled pairs of the Ising model)."""
    weightings: list[str] = field(default_factory=lambda: ["uniform", "frequency"])
    """Token weights of the causal covariance: ``uniform`` over the vocabulary (Park et al.) or the
    token ``frequency`` π(y) = Σ_ξ w(ξ) p(y|ξ) of the training distribution."""
    adversarial_cos: float = 0.9
    """Euclidean cosine between the concept columns of the planted adversarial code."""
    noise: float = 0.01
    """Isotropic noise added to the planted codes (keeps their covariance full rank)."""
    random_seed: int = 0
    """Seed of the random positive-definite M (shared by all models)."""


def token_weights(latent, weighting: str) -> np.ndarray:
    """(V,) weights of the causal covariance: uniform, or token frequencies π(y)."""
    from ..errors import ConfigError

    if weighting == "uniform":
        return np.full(latent.n_tokens, 1.0 / latent.n_tokens)
    if weighting == "frequency":
        return latent.weights @ latent.p_next
    raise ConfigError(f"experiment.weightings: unknown '{weighting}'; use uniform or frequency")


def causal_inner_product(g: np.ndarray, pi: np.ndarray):
    """The causal inner product Cov_π(g)⁻¹ of one unembedding g: (V, d) with token weights π."""
    from ..geometry import CausalInnerProduct

    mean = pi @ g
    gc = g - mean
    return CausalInnerProduct().fit_covariance(mean, (gc * pi[:, None]).T @ gc, len(pi))


def forced_causal_cosines(latent, pi: np.ndarray) -> np.ndarray:
    """(m, m) causal cosines of ANY full-rank linear code: normalised Cov_π(s)⁻¹ of the indicators."""
    s = 2.0 * np.asarray(latent.tokens, dtype=np.float64) - 1.0
    sc = s - pi @ s
    prec = np.linalg.inv((sc * pi[:, None]).T @ sc)
    dia = np.sqrt(np.diag(prec))
    return prec / dia[:, None] / dia[None, :]


def planted_code(latent, d: int, cos: float, noise: float, seed: int) -> np.ndarray:
    """g(y) = A s(y) + noise with unit concept columns a_i of pairwise Euclidean cosine ``cos``."""
    rng = np.random.default_rng(seed)
    m = latent.m
    Q, _ = np.linalg.qr(rng.standard_normal((d, m + 1)))
    A = np.sqrt(cos) * Q[:, :1] + np.sqrt(1 - cos) * Q[:, 1:]  # (d, m)
    s = 2.0 * np.asarray(latent.tokens, dtype=np.float64) - 1.0
    return s @ A.T + noise * rng.standard_normal((latent.n_tokens, d))


def direction_cosines(latent, g: np.ndarray, ip) -> np.ndarray:
    """(m, m) cosines of the concept directions of g: (V, d) under an inner product (None: Euclid)."""
    from ..geometry import concept_directions, cosine_matrix

    pairs = latent.all_counterfactual_pairs()
    return cosine_matrix(concept_directions(g, pairs, inner=ip))


def _inner(name: str, g: np.ndarray, pi: np.ndarray | None, seed: int):
    from ..geometry import RandomInnerProduct

    if name == "euclidean":
        return None
    if name == "random":
        return RandomInnerProduct(seed=seed).fit(g.shape[1])
    return causal_inner_product(g, pi)


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Any]:
    """Train, plant the two codes, measure every (inner product, weighting, model) and report."""
    from ..geometry import identifiable_subspace

    s = cfg.settings
    latent = cfg.latent_model()
    res = train(latent, cfg, progress=progress)
    f, g = res.embeddings(), res.unembeddings()
    g_id = identifiable_subspace(f).project(g)
    d = g.shape[2]
    models = {
        "trained": list(g),
        "trained, in span{f}": list(g_id),
        "planted orthogonal": [planted_code(latent, d, 0.0, s.noise, k) for k in cfg.seeds],
        "planted adversarial": [
            planted_code(latent, d, s.adversarial_cos, s.noise, k) for k in cfg.seeds
        ],
    }
    rel, unrel = _masks(latent.m, s.related)
    cells, mats = {}, {}
    for ip, pi_name in _settings(s):
        pi = token_weights(latent, pi_name) if pi_name else None
        for model, gs in models.items():
            C = np.abs([direction_cosines(latent, x, _inner(ip, x, pi, s.random_seed)) for x in gs])
            cells[(ip, pi_name, model)] = {
                "unrelated": summarise(C[:, unrel].mean(axis=1)),
                "related": summarise(C[:, rel].mean(axis=1)),
            }
            if model == "trained":
                mats[f"{ip} ({pi_name})" if pi_name else ip] = C.mean(axis=0)
    forced = {
        w: np.abs(forced_causal_cosines(latent, token_weights(latent, w))) for w in s.weightings
    }
    _report(cfg, rep, latent, cells, forced, mats, rel, unrel)
    return _headline(cells, forced, rel, unrel)


def _settings(s: Settings) -> list[tuple[str, str | None]]:
    return [("euclidean", None), *[("causal", w) for w in s.weightings], ("random", None)]


def _masks(m: int, related: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    rel = np.zeros((m, m), dtype=bool)
    for i, j in related:
        rel[i, j] = rel[j, i] = True
    return rel, ~rel & ~np.eye(m, dtype=bool)


def _is_forced(cells, ip, pi_name) -> bool:
    """A result is forced when the orthogonal and adversarial planted codes give the same numbers."""
    o = cells[(ip, pi_name, "planted orthogonal")]
    a = cells[(ip, pi_name, "planted adversarial")]
    return all(abs(o[k].mean - a[k].mean) < 0.05 for k in ("unrelated", "related"))


def _report(cfg, rep, latent, cells, forced, mats, rel, unrel) -> None:
    from ..report import figures

    s = cfg.settings
    rows = []
    for ip, pi_name in _settings(s):
        for model in (
            "trained",
            "trained, in span{f}",
            "planted orthogonal",
            "planted adversarial",
        ):
            c = cells[(ip, pi_name, model)]
            rows.append(
                {
                    "inner product": ip + (f" ({pi_name} weights)" if pi_name else ""),
                    "model": model,
                    "|cos| unrelated": ci_cell(c["unrelated"]),
                    "|cos| related": ci_cell(c["related"]),
                    "forced by design?": "yes" if _is_forced(cells, ip, pi_name) else "no",
                }
            )
        if pi_name:
            rows.append(
                {
                    "inner product": f"causal ({pi_name} weights)",
                    "model": "forced value (any linear code)",
                    "|cos| unrelated": float(forced[pi_name][unrel].mean()),
                    "|cos| related": float(forced[pi_name][rel].mean()),
                    "forced by design?": "derived",
                }
            )
    rep.add_heading("Concept directions under three inner products")
    rep.add_text(
        f"m = {latent.m} concepts, V = {latent.n_tokens} tokens, d = {cfg.model.d}, "
        f"{len(cfg.seeds)} seeds. Related pairs (coupled in the latent model): {s.related}. Causal "
        "= whitening by each model's own unembedding covariance with uniform token weights (Park "
        "et al.) or with the token frequencies of the training data; random = one fixed random "
        f"positive-definite M (seed {s.random_seed}). Planted codes: g(y) = A s(y) + noise with "
        f"orthogonal concept columns, or columns of Euclidean cosine {s.adversarial_cos}. "
        "**forced by design?** = the orthogonal and the adversarial code give the same numbers "
        "(|difference| < 0.05): then that row cannot confirm or refute anything about training. "
        "**forced value**: the causal cosine every full-rank linear code has under these weights, "
        "derived from the concept distribution alone (docs/theory.md §3.3). Mean ± 95 % CI over "
        "seeds."
    )
    rep.add_table(rows, caption="E6: |cos| between concept directions, trained vs planted codes")
    fig = figures.heatmaps(
        mats, latent.names, title="Trained model: |cos(ḡᵢ, ḡⱼ)| between concept directions"
    )
    rep.add_figure(
        fig,
        "e6_heatmaps",
        caption="Mean over seeds of |cosine| between the trained concept directions under each "
        "inner product (causal with each token weighting).",
    )
    rep.results["cells"] = {" | ".join(str(x) for x in k): v for k, v in cells.items()}
    rep.results["forced_causal_abs_cosines"] = forced
    rep.results["mean_abs_cosine_matrices"] = mats


def _headline(cells, forced, rel, unrel) -> dict[str, Any]:
    head: dict[str, Any] = {}
    for model in ("trained, in span{f}", "planted adversarial"):
        head[f"|cos| unrelated euclidean {model}"] = cells[("euclidean", None, model)]["unrelated"]
    for w in forced:
        head[f"|cos| related causal ({w}) trained"] = cells[("causal", w, "trained")]["related"]
        head[f"|cos| related causal ({w}) forced value"] = float(forced[w][rel].mean())
    head["|cos| unrelated random trained"] = cells[("random", None, "trained")]["unrelated"]
    return head
