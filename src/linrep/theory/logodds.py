"""The log-odds-matching theorem as code (``docs/theory.md`` §3.1).

**Statement.** Fix concept i. For a counterfactual pair (y0, y1) of i write Δg = g(y1) − g(y0) and,
for a context ξ with C_i = ⋄ in which both tokens are possible, the learned pair log-odds
ℓ(ξ) = log p̂(y1|ξ) − log p̂(y0|ξ) = f(ξ)ᵀΔg (the softmax normaliser cancels). If ℓ(ξ) = t(ξ) (the
true log-odds) for all such ξ and both pairs, and t(ξ) = α_i is one constant (the regime of
independent concepts: α_i = log p_i/(1 − p_i)), then f(ξ)ᵀ(Δg − Δg') = 0 for every ξ in

    X = {ξ : ξ_i = ⋄ and both pairs consistent with ξ},

so if {f(ξ) : ξ ∈ X} spans ℝ^d then Δg = Δg': all steering vectors of i are identical.

Two facts worth knowing when reading the numbers (both follow from F_X Δg = α_i 1 on X): (1) if
α_i = 0 (p_i = 1/2) the embeddings of X are orthogonal to Δg, so they can never span ℝ^d and the
theorem is vacuous for that concept; (2) in an exactly matching model whose steering vectors are
identical (u_j for concept j), every ξ ∈ X satisfies f(ξ)ᵀu_j = α_j for each of the ≥ 2 concepts that
are ⋄ on X (i and every concept where the two pairs differ), so F_X (α_k u_j − α_j u_k) = 0 and F_X
is rank deficient. Pairs of one concept always differ somewhere else, so the span hypothesis is
strong; we therefore split Δg − Δg' into the part the log-odds constrain (row space of F_X) and the
rest.

**Approximate version (derived here).** Let ε = max |ℓ(ξ) − t(ξ)| over the cells of concept i (the
log-odds mismatch) and δ = max_{ξ∈X} |t(ξ) − t'(ξ)| (0 in the regime). Then for v = Δg − Δg' and
every ξ ∈ X, |f(ξ)ᵀv| = |ℓ(ξ) − ℓ'(ξ)| ≤ 2ε + δ, so with F_X the (|X|, d) matrix of those embeddings,
‖F_X v‖₂ ≤ (2ε + δ) √|X|. Write v = v_∥ + v_⊥ with v_∥ in the row space of F_X; then
‖F_X v‖₂ = ‖F_X v_∥‖₂ ≥ σ_r(F_X) ‖v_∥‖₂ (σ_r the smallest non-zero singular value), hence

    ‖v_∥‖₂ ≤ (2ε + δ) √|X| / σ_r(F_X) = (2ε + δ) / σ̃,    σ̃ = σ_r(F_X / √|X|),

and when F_X has full column rank d, v_∥ = v: ‖Δg − Δg'‖ ≤ (2ε + δ)/σ̃ — the paper's "ε over the
smallest singular value of the context embeddings" with the factor 2 and the RMS normalisation made
explicit. The component v_⊥ is not constrained by the log-odds at all (|X| < d in small simulations:
e.g. m = 4 has at most 27 such contexts against d = 32), so we report both parts.

**With a bias b(y)** the learned log-odds are ℓ = f(ξ)ᵀΔg + Δb (Δb = b(y1) − b(y0)), so
f(ξ)ᵀv = (ℓ − ℓ') − (Δb − Δb') and the same argument gives ‖v_∥‖ ≤ (2ε + δ + |Δb − Δb'|)/σ̃. Every
function here takes ``bias=`` and uses these learned log-odds; dropping Δb measures another model.

This bound holds for *any* f, g (and b): checking it tests the code, not training.

Log-odds are invariant under f ↦ A⁻ᵀf, g ↦ Ag; norms are Euclidean in the coordinates given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from ..latent import LatentModel

__all__ = [
    "MatchingModel",
    "log_odds_construction",
    "check_log_odds_matching",
    "epsilon_bound",
    "excess_loss",
]


@dataclass
class MatchingModel:
    """A model p̂(y|ξ) = softmax(f(ξ)ᵀg(y)) that matches the true log-odds exactly.

    Attributes:
        f: (n, d) embeddings of ``latent.contexts``.
        g: (V, d) unembeddings.
        alpha: (m,) the constant log-odds α_i = log p_i/(1 − p_i).
        beta: the logit margin of known concepts (p̂ → p as β → ∞; KL ~ e^{−2β}).
        mixing: (d, d) the invertible A applied as g ↦ gA, f ↦ f A^{−T}.
    """

    f: np.ndarray
    g: np.ndarray
    alpha: np.ndarray
    beta: float
    mixing: np.ndarray


def log_odds_construction(
    latent: LatentModel,
    d: int | None = None,
    *,
    beta: float = 20.0,
    seed: int = 0,
    mix: bool = True,
) -> MatchingModel:
    """Closed-form f, g matching the true log-odds of a latent model in the log-odds-matching regime.

    With s(y) = 2c(y) − 1 ∈ {±1}^m: g(y) = [s(y), 0] A and f(ξ) = [a(ξ), z(ξ)] A^{−T}, where
    a_i(ξ) = α_i/2 if ξ_i = ⋄ and β(2ξ_i − 1) if known, z(ξ) ~ N(0, I_{d−m}) (directions in which every
    token has the same logit, so they only make f span ℝ^d), and A is a random invertible matrix
    (identity if ``mix=False``). Then for ξ_i = ⋄ every consistent pair has log-odds
    f(ξ)ᵀ(g(y1) − g(y0)) = 2 a_i = α_i exactly, and tokens contradicting a known concept lose 2β logits.

    Args:
        latent: a latent model whose concepts are all in the regime (``latent.regimes()``), e.g.
            independent concepts with at most equal-weight synonyms.
        d: representation dimension (≥ m; default m).
        beta: logit margin of known concepts.
        seed: seed of z and A.
        mix: apply a random invertible A (the construction is only defined up to it).

    Returns:
        :class:`MatchingModel`.
    """
    regimes = latent.regimes()
    bad = [r.name for r in regimes if not r.in_regime]
    if bad:
        raise ConfigError(
            f"concepts {bad} are not in the log-odds-matching regime (pair log-odds vary with the "
            'context); the closed-form construction needs kind = "independent" without unequal synonyms'
        )
    m = latent.m
    d = m if d is None else int(d)
    if d < m:
        raise ConfigError(f"the construction needs d ≥ m = {m}, got d = {d}")
    alpha = np.array([r.alpha for r in regimes], dtype=np.float64)
    rng = np.random.default_rng(seed)
    s = 2.0 * np.asarray(latent.tokens, dtype=np.float64) - 1.0
    ctx = np.asarray(latent.contexts)
    a = np.where(ctx == -1, np.nan_to_num(alpha) / 2, beta * (2.0 * ctx - 1.0))
    g0 = np.concatenate([s, np.zeros((s.shape[0], d - m))], axis=1)
    f0 = np.concatenate([a, rng.standard_normal((ctx.shape[0], d - m))], axis=1)
    A = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d) if mix else np.eye(d)
    return MatchingModel(f=f0 @ np.linalg.inv(A).T, g=g0 @ A, alpha=alpha, beta=beta, mixing=A)


def excess_loss(
    latent: LatentModel, f: np.ndarray, g: np.ndarray, bias: np.ndarray | None = None
) -> float:
    """Population excess cross-entropy Σ_ξ w(ξ) KL(p(·|ξ) ‖ p̂(·|ξ)) in nats (≥ 0).

    Args:
        latent: the latent model. f: (n, d) embeddings of its contexts. g: (V, d).
        bias: optional (V,) per-token bias b(y) (logits f·g + b).
    """
    from scipy.special import logsumexp

    logits = np.asarray(f, np.float64) @ np.asarray(g, np.float64).T + _bias(bias, g)
    logq = logits - logsumexp(logits, axis=1, keepdims=True)
    p = latent.p_next
    ce = -(latent.weights * np.where(p > 0, p * logq, 0.0).sum(axis=1)).sum()
    return float(ce - latent.entropy())


def _bias(bias: np.ndarray | None, g: np.ndarray) -> np.ndarray | float:
    """The (V,) bias as float64 (0.0 when the model has none), checked against g: (V, d)."""
    if bias is None:
        return 0.0
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape[0] != np.shape(g)[0]:
        raise InputError(f"bias has {b.shape[0]} entries but g has {np.shape(g)[0]} tokens")
    return b


def _cells(latent: LatentModel, i: int, f: np.ndarray, g: np.ndarray, bias=None):
    """Rows with C_i = ⋄, pairs, Δg (P, d), learned f·Δg + Δb (r, P), true (r, P; NaN if not)."""
    from ..geometry.simindex import pair_log_odds_table

    rows = np.flatnonzero(np.asarray(latent.contexts)[:, i] == -1)
    pairs = np.asarray(latent.counterfactual_pairs(i))
    D = g[pairs[:, 1]] - g[pairs[:, 0]]
    b = _bias(bias, g)
    db = b[pairs[:, 1]] - b[pairs[:, 0]] if isinstance(b, np.ndarray) else 0.0
    learned = f[rows] @ D.T + db
    true = pair_log_odds_table(latent.p_next, rows, pairs)
    return rows, pairs, D, learned, true


def _check_fg(latent: LatentModel, f: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, g = np.asarray(f, np.float64), np.asarray(g, np.float64)
    if f.shape != (latent.n_contexts, g.shape[-1]) or g.shape[0] != latent.n_tokens:
        raise InputError(
            f"need f ({latent.n_contexts}, d) for latent.contexts and g ({latent.n_tokens}, d); "
            f"got {f.shape} and {g.shape}"
        )
    return f, g


def _max_pairwise_distance(D: np.ndarray, block: int = 64) -> float:
    """max_{k,l} ‖D_k − D_l‖ from explicit differences (no Gram-matrix cancellation), in row blocks."""
    best = 0.0
    for s in range(0, D.shape[0], block):
        diff = D[s : s + block, None, :] - D[None, :, :]
        best = max(best, float(np.sqrt((diff * diff).sum(axis=-1)).max()))
    return best


def check_log_odds_matching(
    latent: LatentModel, f: np.ndarray, g: np.ndarray, bias: np.ndarray | None = None
) -> dict[str, Any]:
    """The numbers of the theorem for one model: log-odds mismatch, steering-vector spread, span.

    Args:
        latent: the latent model. f: (n, d) embeddings of ``latent.contexts``. g: (V, d).
        bias: optional (V,) bias b(y): learned log-odds are f·Δg + Δb.

    Returns:
        Per-concept lists: ``max_log_odds_error`` (ε_i), ``max_steering_distance``
        (max_{k,l} ‖Δg_k − Δg_l‖), ``relative_steering_distance`` (the same over mean ‖Δg‖),
        ``rank_unknown_contexts`` (rank of {f(ξ): ξ_i = ⋄}; at most d − 1 when α_i = 0); and ``d``,
        ``spans`` (rank = d for every concept), ``rank_all_contexts`` (rank of f),
        ``excess_loss`` (nats).
    """
    f, g = _check_fg(latent, f, g)
    err, dist, rel, rank = [], [], [], []
    for i in range(latent.m):
        rows, _, D, learned, true = _cells(latent, i, f, g, bias)
        ok = np.isfinite(true)
        err.append(float(np.abs(learned - true)[ok].max()) if ok.any() else float("nan"))
        dist.append(_max_pairwise_distance(D))
        rel.append(dist[-1] / float(np.linalg.norm(D, axis=1).mean()))
        rank.append(int(np.linalg.matrix_rank(f[rows])) if rows.size else 0)
    d = f.shape[1]
    rank_all = int(np.linalg.matrix_rank(f))
    return {
        "concepts": list(latent.names),
        "max_log_odds_error": err,
        "max_steering_distance": dist,
        "relative_steering_distance": rel,
        "rank_unknown_contexts": rank,
        "d": d,
        "spans": bool(all(r == d for r in rank)),
        "rank_all_contexts": rank_all,
        "excess_loss": excess_loss(latent, f, g, bias),
    }


def epsilon_bound(
    latent: LatentModel,
    f: np.ndarray,
    g: np.ndarray,
    *,
    max_comparisons: int = 2000,
    seed: int = 0,
    rtol: float = 1e-8,
    bias: np.ndarray | None = None,
) -> dict[str, Any]:
    """Measured ‖Δg − Δg'‖ vs the ε-bound of the approximate log-odds-matching theorem.

    For every concept and every compared pair of pairs (all of them, or ``max_comparisons`` drawn
    at random), with X, ε, δ, σ̃ as in the module docstring: ``bound`` = (2ε + δ)/σ̃ bounds the
    in-span part ‖v_∥‖ (and ‖v‖ itself when F_X has rank d).

    Args:
        latent: the latent model. f: (n, d) embeddings of ``latent.contexts``. g: (V, d).
        max_comparisons: cap on the number of pair-of-pairs compared per concept.
        seed: seed of the subsample of comparisons.
        rtol: singular values below rtol · σ_max count as zero (rank of F_X).
        bias: optional (V,) bias b(y): ε uses the learned log-odds f·Δg + Δb; with a bias,
            f(ξ)ᵀ(Δg − Δg') = ℓ − ℓ' − (Δb − Δb'), so the bound becomes (2ε + δ + |Δb − Δb'|)/σ̃.

    Returns:
        Per-concept lists: ``epsilon``, ``delta_max``, ``n_comparisons``,
        ``max_distance`` (max ‖v‖), ``max_distance_in_span`` (max ‖v_∥‖),
        ``max_distance_out_of_span`` (max ‖v_⊥‖), ``median_bound``, ``max_ratio`` (max ‖v_∥‖/bound,
        ≤ 1 by the theorem), ``full_rank_fraction`` (comparisons with rank F_X = d) and
        ``max_distance_full_rank`` / ``median_bound_full_rank`` over those; plus ``bound_holds``.
    """
    f, g = _check_fg(latent, f, g)
    d = f.shape[1]
    rng = np.random.default_rng(seed)
    keys = (
        "epsilon delta_max n_comparisons max_distance max_distance_in_span max_distance_out_of_span "
        "median_bound max_ratio full_rank_fraction max_distance_full_rank median_bound_full_rank"
    ).split()
    res: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(latent.m):
        rows, pairs, D, learned, true = _cells(latent, i, f, g, bias)
        b = _bias(bias, g)
        db = b[pairs[:, 1]] - b[pairs[:, 0]] if isinstance(b, np.ndarray) else np.zeros(len(pairs))
        ok = np.isfinite(true)
        P = pairs.shape[0]
        eps = float(np.abs(learned - true)[ok].max()) if ok.any() else float("nan")
        kk, ll = np.triu_indices(P, k=1)
        if kk.size > max_comparisons:
            pick = rng.choice(kk.size, size=max_comparisons, replace=False)
            kk, ll = kk[pick], ll[pick]
        dist, par, perp, bnd, full, dmax = [], [], [], [], [], 0.0
        for k, l in zip(kk, ll, strict=True):
            x = ok[:, k] & ok[:, l]
            if not x.any():
                continue
            F = f[rows[x]]
            v = D[k] - D[l]
            delta = float(np.abs(true[x, k] - true[x, l]).max())
            _, s, vt = np.linalg.svd(F, full_matrices=False)
            r = int((s > rtol * s[0]).sum()) if s[0] > 0 else 0
            if r == 0:
                continue
            vp = vt[:r].T @ (vt[:r] @ v)
            sig = s[r - 1] / np.sqrt(x.sum())
            dist.append(np.linalg.norm(v))
            par.append(np.linalg.norm(vp))
            perp.append(np.linalg.norm(v - vp))
            bnd.append((2 * eps + delta + abs(db[k] - db[l])) / sig)
            full.append(r == d)
            dmax = max(dmax, delta)
        dist_a, par_a, bnd_a, full_a = map(np.asarray, (dist, par, bnd, full))
        nan = float("nan")
        res["epsilon"].append(eps)
        res["delta_max"].append(dmax)
        res["n_comparisons"].append(len(dist))
        res["max_distance"].append(float(dist_a.max()) if dist else nan)
        res["max_distance_in_span"].append(float(par_a.max()) if dist else nan)
        res["max_distance_out_of_span"].append(float(max(perp)) if dist else nan)
        res["median_bound"].append(float(np.median(bnd_a)) if dist else nan)
        tol = 1e-9 * float(np.linalg.norm(D, axis=1).mean())  # rounding of an exact model
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(par_a <= tol, 0.0, par_a / bnd_a)
        res["max_ratio"].append(float(ratio.max()) if dist else nan)
        res["full_rank_fraction"].append(float(full_a.mean()) if dist else nan)
        res["max_distance_full_rank"].append(float(dist_a[full_a].max()) if full_a.any() else nan)
        res["median_bound_full_rank"].append(
            float(np.median(bnd_a[full_a])) if full_a.any() else nan
        )
    ratios = [r for r in res["max_ratio"] if np.isfinite(r)]
    out: dict[str, Any] = {"concepts": list(latent.names), "d": d, **res}
    out["bound_holds"] = bool(all(r <= 1 + 1e-6 for r in ratios))
    return out
