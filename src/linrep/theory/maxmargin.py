"""The implicit-bias argument as code (``docs/theory.md`` §3.2).

In a context ξ where concept i is known, tokens with the wrong C_i have probability 0, so
cross-entropy keeps pushing the logit gap f(ξ)ᵀΔg of every counterfactual pair of i towards
sign(ξ_i) · ∞: for fixed f this is a separable binary classification of the points
{(f(ξ), ±1) : ξ_i known} by the weight vector Δg, with an exponential-tailed loss and no bias term.
Gradient descent then converges *in direction* to the hard-margin max-margin separator (Soudry et al.
2018, JMLR 19(70)):

    w_i = argmin ‖w‖₂  subject to  (2ξ_i − 1) f(ξ)ᵀw ≥ 1 for every ξ with ξ_i known,

which does not depend on the pair, so the steering vectors of i should all turn towards w_i. We solve
this homogeneous (no intercept, like the logit f(ξ)ᵀg(y)) quadratic programme exactly as a
least-distance programme with Lawson & Hanson's reduction to non-negative least squares
(Solving Least Squares Problems, 1974, ch. 23), using ``scipy.optimize.nnls``: with
G = diag(y) X and h = 1, solve u = argmin_{u ≥ 0} ‖E u − e‖, E = [Gᵀ; hᵀ], e = (0, …, 0, 1); the
residual r = E u − e is zero iff the constraints are infeasible (not separable), else w = −r_{1:d}/r_{d+1}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..latent import LatentModel

__all__ = [
    "MaxMargin",
    "max_margin_direction",
    "concept_max_margin",
    "max_margin_alignment",
    "max_margin_hook",
]


@dataclass(frozen=True)
class MaxMargin:
    """Solution of a homogeneous hard-margin SVM.

    Attributes:
        w: (d,) the max-margin weight vector (NaN if not separable).
        separable: whether the points are linearly separable through the origin.
        margin: geometric margin 1/‖w‖ (NaN if not separable).
        n_support: number of active constraints (support vectors).
        min_functional_margin: min_k y_k x_kᵀw (≥ 1 up to rounding when separable).
    """

    w: np.ndarray
    separable: bool
    margin: float
    n_support: int
    min_functional_margin: float

    @property
    def direction(self) -> np.ndarray:
        """w / ‖w‖, (d,)."""
        return self.w / np.linalg.norm(self.w)


def least_distance(G: np.ndarray, *, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray] | None:
    """The least-distance programme min ‖w‖ s.t. G w ≥ 1, by NNLS (Lawson & Hanson, ch. 23).

    With E = [Gᵀ; 1ᵀ] and e = (0, …, 0, 1): u = argmin_{u ≥ 0} ‖E u − e‖, r = E u − e; the
    constraints are infeasible iff r = 0 (or r_{d+1} ≥ 0), else w = −r_{1:d} / r_{d+1}. G is rescaled by
    its largest entry first (the solution scales back exactly).

    Args:
        G: (n, d) constraint rows.
        tol: residual norm under which the programme is declared infeasible.

    Returns:
        (w (d,), u (n,) multipliers; u > 0 marks active constraints), or None if infeasible.
    """
    from scipy.optimize import nnls

    G = np.asarray(G, dtype=np.float64)
    n, d = G.shape
    scale = float(np.abs(G).max()) or 1.0
    E = np.vstack([G.T / scale, np.ones((1, n))])
    e = np.zeros(d + 1)
    e[-1] = 1.0
    u, _ = nnls(E, e, maxiter=50 * E.shape[1])
    r = E @ u - e
    if np.linalg.norm(r) <= tol or r[-1] >= 0:
        return None
    return -r[:d] / r[-1] / scale, u


def max_margin_direction(x: np.ndarray, y: np.ndarray, *, tol: float = 1e-9) -> MaxMargin:
    """Homogeneous hard-margin SVM: argmin ‖w‖ s.t. y_k x_kᵀw ≥ 1, solved exactly via NNLS.

    Args:
        x: (n, d) points (context embeddings f(ξ)).
        y: (n,) labels in {−1, +1} (or {0, 1}, mapped to ±1).
        tol: relative residual norm under which the problem is declared infeasible.

    Returns:
        :class:`MaxMargin`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).ravel()
    if x.ndim != 2 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise InputError(
            f"max-margin needs x (n, d) and y (n,) with n ≥ 1; got {x.shape}, {y.shape}"
        )
    y = np.where(y > 0, 1.0, -1.0) if set(np.unique(y)) <= {0, 1} else np.sign(y).astype(float)
    if np.any(y == 0):
        raise InputError("max-margin labels must be ±1 or 0/1")
    d = x.shape[1]
    sol = least_distance(y[:, None] * x, tol=tol)
    nan = np.full(d, np.nan)
    if sol is None:
        return MaxMargin(nan, False, float("nan"), 0, float("nan"))
    w, u = sol
    fm = y * (x @ w)
    if fm.min() < 1 - 1e-6:  # numerical safety: the certificate must hold
        return MaxMargin(nan, False, float("nan"), 0, float(fm.min()))
    return MaxMargin(w, True, float(1 / np.linalg.norm(w)), int((u > 0).sum()), float(fm.min()))


def concept_max_margin(latent: LatentModel, f: np.ndarray) -> list[MaxMargin]:
    """The max-margin separator w_i of every concept on {(f(ξ), 2ξ_i − 1) : ξ_i known}.

    Args:
        latent: the latent model. f: (n, d) embeddings of ``latent.contexts``.

    Returns:
        m :class:`MaxMargin` solutions (a concept without known contexts gets a NaN,
        ``separable=False`` placeholder).
    """
    ctx = np.asarray(latent.contexts)
    f = np.asarray(f, dtype=np.float64)
    if f.shape[0] != ctx.shape[0]:
        raise InputError(
            f"f has {f.shape[0]} rows but the latent model has {ctx.shape[0]} contexts"
        )
    out = []
    for i in range(latent.m):
        rows = np.flatnonzero(ctx[:, i] != -1)
        if rows.size == 0:
            out.append(MaxMargin(np.full(f.shape[1], np.nan), False, float("nan"), 0, float("nan")))
            continue
        out.append(max_margin_direction(f[rows], ctx[rows, i]))
    return out


def max_margin_alignment(latent: LatentModel, f: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    """Cosine between each concept's trained steering vectors and its max-margin direction.

    Args:
        latent: the latent model. f: (n, d) embeddings of its contexts. g: (V, d) unembeddings.

    Returns:
        Per-concept lists ``direction_cosine`` (cos(ḡ_i, w_i), ḡ_i the unit mean Δg),
        ``steering_cosine`` (mean_k cos(Δg_k, w_i)), ``separable``, ``margin``, and their means
        ``svm_direction_cosine``, ``svm_steering_cosine``, ``separable_fraction``.
    """
    from ..geometry.steering import concept_direction, cosine, steering_vectors

    g = np.asarray(g, dtype=np.float64)
    sols = concept_max_margin(latent, f)
    dcos, scos = [], []
    for i, sol in enumerate(sols):
        D = steering_vectors(g, latent.counterfactual_pairs(i))
        if not sol.separable:
            dcos.append(float("nan"))
            scos.append(float("nan"))
            continue
        dcos.append(float(cosine(concept_direction(D), sol.w)))
        scos.append(float(np.mean(cosine(D, sol.w[None, :]))))
    with np.errstate(invalid="ignore"):
        dm = float(np.nanmean(dcos)) if np.isfinite(dcos).any() else float("nan")
        sm = float(np.nanmean(scos)) if np.isfinite(scos).any() else float("nan")
    return {
        "concepts": list(latent.names),
        "direction_cosine": dcos,
        "steering_cosine": scos,
        "separable": [s.separable for s in sols],
        "margin": [s.margin for s in sols],
        "svm_direction_cosine": dm,
        "svm_steering_cosine": sm,
        "separable_fraction": float(np.mean([s.separable for s in sols])),
    }


def max_margin_hook(
    latent: LatentModel, *, per_concept: bool = False
) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """A learner ``MetricFn`` tracking the max-margin alignment over training.

    Args:
        latent: the latent model trained on.
        per_concept: also return ``svm_direction_cosine/<concept>``.

    Returns:
        ``fn(f (K, n, d), g (K, V, d)) -> {"svm_direction_cosine", "svm_steering_cosine",
        "svm_separable_fraction": (K,)}`` (NaN where no concept is separable).
    """

    def fn(f: np.ndarray, g: np.ndarray, b: np.ndarray | None = None) -> dict[str, np.ndarray]:
        del b  # the separator concerns Δg only (a bias does not move with the features)
        f, g = np.asarray(f), np.asarray(g)
        rs = [max_margin_alignment(latent, f[k], g[k]) for k in range(f.shape[0])]
        out = {
            "svm_direction_cosine": np.array([r["svm_direction_cosine"] for r in rs]),
            "svm_steering_cosine": np.array([r["svm_steering_cosine"] for r in rs]),
            "svm_separable_fraction": np.array([r["separable_fraction"] for r in rs]),
        }
        if per_concept:
            for i, name in enumerate(latent.names):
                out[f"svm_direction_cosine/{name}"] = np.array(
                    [r["direction_cosine"][i] for r in rs]
                )
        return out

    return fn
