"""E8 — losses: does softmax + cross-entropy matter?

The implicit-bias argument (``docs/theory.md`` §3.2) uses two properties of softmax cross-entropy:
impossible tokens reach probability 0 only as logit gaps go to ±∞ (a separable problem with an
exponential tail), and log-odds are what the loss matches. We train the same learner with
cross-entropy, the squared error between softmax probabilities and the target, and one-vs-all sigmoid
cross-entropy (no softmax), with two encoders: the one-hot linear map and a free vector per context.

A geometry comparison is only meaningful between models that reached their loss's floor, so we
report, for every (loss, encoder, learning rate): the excess of its own loss at the last step and a
decade of steps earlier (equal: a plateau), and for the linear encoder the lowest loss its whole
function class can reach. With one-hot inputs the logits of the linear encoder are z = X M
(X: (n, 3m) one-hot contexts, M = W gᵀ: (3m, V), unrestricted when d ≥ 3m), so for the sigmoid and
cross-entropy losses, which are convex in z, that class floor is a convex programme we solve
directly (:func:`class_floor`). A run whose excess sits above the class floor is stuck for
optimisation reasons (e.g. a step size too large for the loss's curvature), not because the encoder
cannot represent the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry.simulation import with_identifiable
from .cells import ci_cell, geometry_cells
from .stats import biases, bounds, history_arrays, run_metrics, summarise
from .training import train_variants

if TYPE_CHECKING:
    from .config import ExperimentConfig

NAME = "E8"
STEM = "e8_losses"
TITLE = "losses: cross-entropy vs squared vs sigmoid"
QUESTION = (
    "Is softmax + cross-entropy needed for linear representations, as the paper's implicit-bias "
    "argument suggests, or do squared-error and one-vs-all sigmoid losses give the same geometry "
    "once every model has reached its loss's floor?"
)


@dataclass(frozen=True)
class Settings:
    """``[experiment]`` section of E8."""

    n_seeds: int = 10
    """Seeds per (loss, encoder) ensemble."""
    first_seed: int = 0
    """First seed."""
    losses: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"label": "CE", "loss": "cross_entropy", "lr": 1.0},
            {"label": "squared", "loss": "squared", "lr": 1.0},
            {"label": "sigmoid lr 1", "loss": "sigmoid", "lr": 1.0},
            {"label": "sigmoid lr 0.1", "loss": "sigmoid", "lr": 0.1},
        ]
    )
    """One ensemble per entry and encoder: a short ``label`` + ``[train]`` keys."""
    encoders: list[str] = field(default_factory=lambda: ["linear", "free"])
    """Encoders (``model.encoder``): the one-hot linear map and a free vector per context."""


KEYS = with_identifiable()


def class_floor(latent, loss: str) -> float:
    """Lowest excess loss of the one-hot linear class z = X M (convex losses only; NaN otherwise).

    Minimises Σ_ξ w(ξ) ℓ(p(·|ξ), x(ξ)ᵀM) over M: (3m, V) by L-BFGS (the sigmoid loss separates
    over tokens; cross-entropy is the softmax regression of the soft targets), minus the loss's
    population floor. Returns the excess in nats (an upper bound of the infimum, to solver tolerance).
    """
    from scipy.optimize import minimize
    from scipy.special import expit, logsumexp, softmax

    from ..learn.losses import loss_floor

    if loss not in ("sigmoid", "cross_entropy"):
        return float("nan")
    c = np.asarray(latent.contexts)
    X = np.concatenate([c == 0, c == 1, c == -1], axis=1).astype(np.float64)
    w, P = latent.weights[:, None], latent.p_next

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ flat.reshape(X.shape[1], -1)
        if loss == "sigmoid":
            value = (w * (np.logaddexp(0, z) - P * z)).sum()
            resid = expit(z) - P
        else:
            value = (w * (logsumexp(z, axis=1, keepdims=True) - z) * P).sum()
            resid = softmax(z, axis=1) - P
        return float(value), (X.T @ (w * resid)).ravel()

    x0 = np.zeros(X.shape[1] * P.shape[1])
    opts = {"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-15}
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", options=opts)
    return float(res.fun - loss_floor(loss, latent.weights, latent.p_next))


def run(cfg: ExperimentConfig[Settings], rep, *, progress: bool = True) -> dict[str, Any]:
    """Train one ensemble per (loss, encoder) and compare."""
    from ..theory import excess_loss

    s = cfg.settings
    latent = cfg.latent_model()
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    for enc in s.encoders:
        ecfg = cfg.with_model(encoder=enc)
        for label, res in train_variants(
            latent, ecfg, s.losses, label_key="loss", progress=progress
        ):
            f, g, b = res.embeddings(), res.unembeddings(), biases(res)
            per_run = run_metrics(latent, f, g, bias=b)
            st: dict[str, Any] = {k: summarise([r[k] for r in per_run]) for k in KEYS}
            steps, ex = history_arrays(res.history, "excess_loss")
            earlier = int(np.searchsorted(steps, steps[-1] / 10))
            st["own_excess_loss"] = summarise(ex[:, -1])
            st["own_excess_loss_decade_earlier"] = summarise(ex[:, earlier])
            st["ce_excess_loss"] = summarise(
                [
                    excess_loss(latent, f[k], g[k], None if b is None else b[k])
                    for k in range(len(f))
                ]
            )
            stats[(label, enc)] = st
    floors = {e["loss"]: class_floor(latent, e["loss"]) for e in s.losses}
    _report(cfg, rep, stats, floors)
    rep.results["stats"] = {f"{label}/{enc}": st for (label, enc), st in stats.items()}
    rep.results["linear_class_floor"] = floors
    head: dict[str, Any] = {}
    for (label, enc), st in stats.items():
        head[f"same_concept_cosine_identifiable {label}/{enc}"] = st[
            "same_concept_cosine_identifiable"
        ]
        head[f"own excess {label}/{enc}"] = st["own_excess_loss"]
    head["linear class floor (sigmoid)"] = floors.get("sigmoid", float("nan"))
    return head


def _report(cfg, rep, stats, floors) -> None:
    from ..report import figures

    s = cfg.settings
    rows = []
    for (label, enc), st in stats.items():
        loss = next(e["loss"] for e in s.losses if e.get("label", e["loss"]) == label)
        rows.append(
            {
                "loss": label,
                "encoder": enc,
                **geometry_cells(st),
                "own excess, decade earlier": ci_cell(st["own_excess_loss_decade_earlier"]),
                "own excess, last step": ci_cell(st["own_excess_loss"]),
                "linear class floor": floors[loss] if enc == "linear" else "–",
                "KL to data (softmax)": ci_cell(st["ce_excess_loss"]),
            }
        )
    rep.add_heading("Losses compared")
    rep.add_text(
        f"{len(cfg.seeds)} seeds per cell, {cfg.train.optimizer}, {cfg.train.steps} steps; the "
        "learning rate is part of each loss's label where it differs. **own excess**: the "
        "training loss minus its population floor, at the last step and a decade of steps earlier "
        "(equal values: a plateau). **linear class floor**: the lowest excess any linear one-hot "
        "encoder can reach for that loss (a convex programme, solved directly; – for the squared "
        "loss, which is not convex in the logits). A run on a plateau above that floor is stuck for "
        "optimisation reasons, not for lack of capacity; a run at its floor is at the end point of "
        "training and only those are compared. **KL to data** is the cross-entropy excess of "
        "softmax(f·g) for every model, a diagnostic for the non-softmax losses. Columns **in "
        "span{f}** measure g inside the span of the context embeddings (docs/theory.md §3.4)."
    )
    rep.add_table(rows, caption="E8: geometry and fit by loss and encoder (mean ± 95 % CI)")
    labels = [e.get("label", e["loss"]) for e in s.losses]
    series = {}
    for enc in s.encoders:
        for key, tag in (
            ("same_concept_cosine", "raw"),
            ("same_concept_cosine_identifiable", "in span{f}"),
        ):
            series[f"{enc} f, {tag}"] = bounds([stats[(lab, enc)][key] for lab in labels])
    fig = figures.point_intervals(
        labels, series, ylabel="same-concept cos", xlabel="training loss",
        title="Parallelism by loss and encoder (mean ± 95 % CI over seeds)",
    )  # fmt: skip
    rep.add_figure(
        fig,
        "e8_losses",
        caption="Same-concept parallelism for each loss (x) and encoder (colour), raw and inside "
        "span{f}. CE = softmax cross-entropy; squared = squared error of softmax probabilities; "
        "sigmoid = one-vs-all binary cross-entropy.",
    )
