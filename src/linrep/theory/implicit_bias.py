"""The implicit bias of gradient descent on softmax cross-entropy with fixed features (``docs/theory.md`` §3.2).

**Setting.** Features f(ξ) are fixed; only the unembedding g: (V, d) (and a bias) is trained by
full-batch gradient descent on L(g) = Σ_ξ w(ξ) Σ_y p(y|ξ)(−log softmax_y(f(ξ)ᵀg)). Let
S(ξ) = {y : p(y|ξ) > 0} be the support of context ξ. Tokens outside S(ξ) have target 0, so the loss
keeps pushing their logits down relative to S(ξ); inside S(ξ) the targets are finite log-odds.

**Theorem (the multiclass, soft-label form of Soudry et al., JMLR 2018; stated for next-token
prediction by Thrampoulidis, arXiv:2402.18551, 2024).** If the support constraints below are
feasible, the GD iterates grow like g_t = g* + log(t) · G + o(log t) where G is the solution of

    G = argmin ‖G‖_F  subject to, for every context ξ,
        (g(z) − g(z'))ᵀ f(ξ) = 0    for z, z' ∈ S(ξ)            (in-support logits stay finite)
        (g(z) − g(v))ᵀ f(ξ) ≥ 1     for z ∈ S(ξ), v ∉ S(ξ)       (impossible tokens lose),

and g* is finite. Hence the direction of g_t converges to G/‖G‖ with an angle that closes like
1/log t, ‖g_t‖ grows like ‖G‖ · log t, and the normalised margin min (g(z) − g(v))ᵀf(ξ) / ‖g_t‖
approaches the optimum 1/‖G‖_F. G lies in F = span{f(ξ)} (components outside it do not enter any
constraint), so these statements concern P_F g; under GD the rest of g is its initialisation.

A steering vector Δg = g(y1) − g(y0) of a counterfactual pair therefore turns towards ΔG of the same
pair. Same-concept parallelism is predicted exactly when the ΔG of a concept's pairs are parallel.

**Reduction to a least-distance programme [ours].** Write G = H Bᵀ with B (d, F) an orthonormal basis of
F, φ(ξ) = Bᵀf(ξ). Each constraint is linear in vec(H): the equalities span a matrix A_eq, so
vec(H) = N u with N an orthonormal basis of its null space, and the inequalities become C N u ≥ 1: a
least-distance programme solved by :func:`linrep.theory.maxmargin.least_distance`. One reference
token z₀(ξ) ∈ S(ξ) per context suffices (the equalities tie the other in-support tokens to it).

**Baselines (what else could predict Δg).** ``pair_max_margin``: the binary hard-margin SVM of each
pair on its own constraint set (contexts where C_i is known and the pair's consistent token is
possible; contexts where both tokens are impossible are dropped); ``concept_max_margin`` (the same
with every context where C_i is known); ``pair_mean_difference``: the difference of the mean
embeddings of the two classes of that constraint set (no optimisation at all).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..geometry.subspace import DEFAULT_RTOL, row_space
from .maxmargin import concept_max_margin, least_distance, max_margin_direction

if TYPE_CHECKING:
    from ..latent import LatentModel

__all__ = [
    "SoftmaxMaxMargin",
    "softmax_max_margin",
    "pair_constraint_rows",
    "pair_max_margin",
    "pair_mean_difference",
    "ImplicitBiasReference",
    "implicit_bias_metrics",
    "implicit_bias_hook",
    "IMPLICIT_BIAS_KEYS",
]


@dataclass(frozen=True)
class SoftmaxMaxMargin:
    """Solution of the support-constrained max-margin programme (module docstring).

    Attributes:
        G: (V, d) the max-margin unembedding (rows centred; NaN if infeasible).
        separable: whether the constraints are feasible.
        margin: 1/‖G‖_F, the optimal normalised margin (NaN if infeasible).
        rank: F, the dimension of span{f(ξ)}.
        n_equalities, n_inequalities: constraint counts.
    """

    G: np.ndarray
    separable: bool
    margin: float
    rank: int
    n_equalities: int
    n_inequalities: int


def _constraint_rows(S: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A_eq, C): rows vec((e_z − e_z')φ(ξ)ᵀ) of the equalities and inequalities, (r, V·F) each.

    Args:
        S: (n, V) boolean support. phi: (n, F) features in the basis of span{f}.
    """
    n, V = S.shape
    F = phi.shape[1]
    z0 = S.argmax(axis=1)  # one reference token of every context's support

    def rows(k: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> np.ndarray:
        R = np.zeros((k.size, V, F))
        ar = np.arange(k.size)
        R[ar, plus] += phi[k]
        R[ar, minus] -= phi[k]
        return R.reshape(k.size, V * F)

    k_eq, z_eq = np.nonzero(S)
    keep = z_eq != z0[k_eq]
    k_in, v_in = np.nonzero(~S)
    return rows(k_eq[keep], z_eq[keep], z0[k_eq[keep]]), rows(k_in, z0[k_in], v_in)


def softmax_max_margin(
    p_next: np.ndarray, f: np.ndarray, *, rtol: float = DEFAULT_RTOL
) -> SoftmaxMaxMargin:
    """The direction G that GD on softmax cross-entropy with fixed features f converges to.

    Args:
        p_next: (n, V) next-token table p(y|ξ) (only its support p > 0 matters).
        f: (n, d) fixed features f(ξ) of the same contexts.
        rtol: numerical rank tolerance of span{f} (see :mod:`linrep.geometry.subspace`).

    Returns:
        :class:`SoftmaxMaxMargin`.
    """
    f = np.asarray(f, dtype=np.float64)
    S = np.asarray(p_next) > 0
    if f.ndim != 2 or S.ndim != 2 or f.shape[0] != S.shape[0]:
        raise InputError(f"need p_next (n, V) and f (n, d) with equal n; got {S.shape}, {f.shape}")
    V, d = S.shape[1], f.shape[1]
    sub = row_space(f, rtol)
    F = int(sub.rank[0])
    B = np.linalg.eigh(sub.projector[0])[1][:, d - F :]  # orthonormal basis of span{f}, (d, F)
    A, C = _constraint_rows(S, f @ B)
    nan = SoftmaxMaxMargin(np.full((V, d), np.nan), False, float("nan"), F, len(A), len(C))
    if len(C) == 0:
        return nan
    if len(A):
        lam, U = np.linalg.eigh(A.T @ A)
        N = U[:, lam <= 1e-10 * max(float(lam[-1]), 1e-300)]  # null space of the equalities
    else:
        N = np.eye(V * F)
    sol = least_distance(C @ N) if N.shape[1] else None
    if sol is None:
        return nan
    H = (N @ sol[0]).reshape(V, F)
    if (C @ H.ravel()).min() < 1 - 1e-6:  # the certificate must hold
        return nan
    G = H @ B.T
    G -= G.mean(axis=0)  # exact: the constraints only see differences of rows
    return SoftmaxMaxMargin(G, True, float(1 / np.linalg.norm(G)), F, len(A), len(C))


def pair_constraint_rows(latent: LatentModel, i: int, pair: tuple[int, int]):
    """Rows and labels of pair (y0, y1)'s own constraint set for concept i.

    Contexts where C_i is known and the pair's token consistent with ξ_i is possible; a context where
    both tokens are impossible (another known concept contradicts both) constrains nothing.

    Returns:
        (rows (r,), labels (r,) in {0, 1} = ξ_i).
    """
    ctx, P = np.asarray(latent.contexts), latent.p_next
    y0, y1 = pair
    known = ctx[:, i] != -1
    ok = np.where(ctx[:, i] == 1, P[:, y1] > 0, P[:, y0] > 0)
    rows = np.flatnonzero(known & ok)
    return rows, ctx[rows, i].astype(np.int64)


def pair_max_margin(latent: LatentModel, f: np.ndarray, i: int) -> np.ndarray:
    """Binary hard-margin SVM of every pair of concept i on its own constraint set, (P_i, d).

    Rows are NaN for a pair whose points are not separable through the origin.
    """
    out = []
    for pair in latent.counterfactual_pairs(i):
        rows, y = pair_constraint_rows(latent, i, tuple(pair))
        out.append(max_margin_direction(f[rows], y).w)
    return np.array(out)


def pair_mean_difference(latent: LatentModel, f: np.ndarray, i: int) -> np.ndarray:
    """mean f over ξ_i = 1 minus mean over ξ_i = 0, on each pair's constraint set, (P_i, d)."""
    out = []
    for pair in latent.counterfactual_pairs(i):
        rows, y = pair_constraint_rows(latent, i, tuple(pair))
        out.append(f[rows[y == 1]].mean(axis=0) - f[rows[y == 0]].mean(axis=0))
    return np.array(out)


@dataclass(frozen=True)
class ImplicitBiasReference:
    """Everything a trained g is compared with, computed from one set of features f.

    Attributes:
        projector: (d, d) P_F onto span{f}.
        max_margin: the :class:`SoftmaxMaxMargin` of (p, f).
        pairs: (ΣP, 2) all counterfactual pairs, concept by concept; ``concept``: (ΣP,) their concept.
        pair_svm, concept_svm, mean_diff: (ΣP, d) the baselines per pair (concept_svm repeats w_i).
    """

    projector: np.ndarray
    max_margin: SoftmaxMaxMargin
    pairs: np.ndarray
    concept: np.ndarray
    pair_svm: np.ndarray
    concept_svm: np.ndarray
    mean_diff: np.ndarray

    @classmethod
    def from_features(cls, latent: LatentModel, f: np.ndarray) -> ImplicitBiasReference:
        """Solve every programme of the module docstring for features f: (n, d)."""
        f = np.asarray(f, dtype=np.float64)
        concepts = range(latent.m)
        pairs = [np.asarray(latent.counterfactual_pairs(i)) for i in concepts]
        csvm = concept_max_margin(latent, f)
        return cls(
            projector=row_space(f).projector[0],
            max_margin=softmax_max_margin(latent.p_next, f),
            pairs=np.concatenate(pairs),
            concept=np.concatenate([np.full(len(p), i) for i, p in enumerate(pairs)]),
            pair_svm=np.concatenate([pair_max_margin(latent, f, i) for i in concepts]),
            concept_svm=np.concatenate([np.tile(csvm[i].w, (len(pairs[i]), 1)) for i in concepts]),
            mean_diff=np.concatenate([pair_mean_difference(latent, f, i) for i in concepts]),
        )


IMPLICIT_BIAS_KEYS = (
    "cos_max_margin",
    "angle_max_margin",
    "norm",
    "margin_ratio",
    "pair_cos_max_margin",
    "pair_cos_max_margin_raw",
    "pair_cos_pair_svm",
    "pair_cos_concept_svm",
    "pair_cos_mean_diff",
)
"""Names returned by :func:`implicit_bias_metrics` (and the hook)."""


def _rowcos(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine of matching rows (NaN rows skipped)."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = num / den
    return float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")


def _margin(p_next: np.ndarray, f: np.ndarray, g: np.ndarray) -> float:
    """min over (ξ, z ∈ S(ξ), v ∉ S(ξ)) of (g(z) − g(v))ᵀ f(ξ)."""
    z = f @ g.T
    S = p_next > 0
    has = (~S).any(axis=1)
    gap = np.where(S, z, np.inf).min(axis=1) - np.where(S, -np.inf, z).max(axis=1)
    return float(gap[has].min()) if has.any() else float("nan")


def implicit_bias_metrics(
    latent: LatentModel, f: np.ndarray, g: np.ndarray, ref: ImplicitBiasReference
) -> dict[str, float]:
    """Compare one unembedding g: (V, d) (on features f: (n, d)) with the references.

    Returns:
        ``cos_max_margin`` = cos_F(P_F g_c, G) (Frobenius, rows centred), ``angle_max_margin`` its
        angle (radians; the theorem: ≈ c / log t), ``norm`` = ‖P_F g_c‖_F (≈ ‖G‖_F · log t),
        ``margin_ratio`` = normalised margin / optimal margin (→ 1), and the mean over all
        counterfactual pairs of cos(P_F Δg, ·) with ΔG (``pair_cos_max_margin``; ``_raw``: Δg
        unprojected), the pair SVM, the concept SVM and the mean difference.
    """
    g = np.asarray(g, dtype=np.float64)
    gc = (g - g.mean(axis=0)) @ ref.projector
    G = ref.max_margin.G
    norm = float(np.linalg.norm(gc))
    cos = float(np.sum(gc * G) / (norm * np.linalg.norm(G))) if ref.max_margin.separable else np.nan
    p = ref.pairs
    dg = g[p[:, 1]] - g[p[:, 0]]
    dgp = dg @ ref.projector
    return {
        "cos_max_margin": cos,
        "angle_max_margin": float(np.arccos(np.clip(cos, -1, 1))),
        "norm": norm,
        "margin_ratio": _margin(latent.p_next, f, g) / norm / ref.max_margin.margin,
        "pair_cos_max_margin": _rowcos(dgp, G[p[:, 1]] - G[p[:, 0]]),
        "pair_cos_max_margin_raw": _rowcos(dg, G[p[:, 1]] - G[p[:, 0]]),
        "pair_cos_pair_svm": _rowcos(dgp, ref.pair_svm),
        "pair_cos_concept_svm": _rowcos(dgp, ref.concept_svm),
        "pair_cos_mean_diff": _rowcos(dgp, ref.mean_diff),
    }


def implicit_bias_hook(
    latent: LatentModel, *, fixed_features: bool, at_calls: Collection[int] | None = None
) -> Callable[..., dict[str, np.ndarray]]:
    """A learner ``MetricFn`` tracking :func:`implicit_bias_metrics` over training.

    Args:
        latent: the latent model trained on.
        fixed_features: f does not change during training (``train.trainable = "unembedding"``):
            the references are solved once per run, at the first call.
        at_calls: evaluate only at these call indices (0 = the first logged step), NaN elsewhere —
            for joint training, where the references must be re-solved from the current f.

    Returns:
        ``fn(f (K, n, d), g (K, V, d), b=None) -> {name: (K,)}`` with names
        :data:`IMPLICIT_BIAS_KEYS`.
    """
    refs: list[ImplicitBiasReference] = []
    calls = [0]

    def fn(f: np.ndarray, g: np.ndarray, b: np.ndarray | None = None) -> dict[str, np.ndarray]:
        del b  # a bias shifts every logit of a token alike; the margins here are differences
        call = calls[0]
        calls[0] += 1
        K = f.shape[0]
        if at_calls is not None and call not in at_calls:
            return {k: np.full(K, np.nan) for k in IMPLICIT_BIAS_KEYS}
        if not (fixed_features and refs):
            refs[:] = [ImplicitBiasReference.from_features(latent, f[k]) for k in range(K)]
        rows = [implicit_bias_metrics(latent, f[k], g[k], refs[k]) for k in range(K)]
        return {key: np.array([r[key] for r in rows]) for key in IMPLICIT_BIAS_KEYS}

    return fn
