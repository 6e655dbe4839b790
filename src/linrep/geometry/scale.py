"""Concept geometry at a real vocabulary's size: streaming metrics in O(V·d) memory.

At m = 18 concepts the vocabulary has V = 2^18 tokens and every concept has 2^17 counterfactual
pairs; a pair × pair cosine matrix would hold 2^34 entries per concept. This module computes the
statistics of :mod:`linrep.geometry.simulation` (docs/latent-model.md §1–4) without such matrices:

- **same-concept parallelism** of concept i, the mean pairwise cosine over its P = 2^(m−1) steering
  vectors Δg = g(y1) − g(y0), from the identity Σ_{k≠l} û_kᵀû_l = ‖Σ_k û_k‖² − P: one pass over the
  pairs in chunks. Exact (every pair is used).
- **concept directions** ḡ_i (unit mean Δg) and the **cross-concept** cosine matrix cos(ḡ_i, ḡ_j),
  with its mean |off-diagonal| per concept. Exact.
- **cross-pair** |cos| between steering vectors of different concepts: there are Σ_{i<j} P_i P_j
  ≈ 2^(2m−1)·m²/2 such pairs, so it is **estimated** from ``n_cross`` uniformly drawn pairs, with its
  standard error sd/√n — or computed exactly over every pair (standard error 0) when there are at
  most ``n_cross`` ordered pairs m(m−1)P² (small m).
- **alignment** cos(f̄_i, ḡ_j): f̄_i is the mean of f(ξ') − f(ξ) over context pairs identical except
  ξ_i = 0, ξ'_i = 1. It is **estimated** from ``n_align`` contexts drawn from the context weights,
  each set to C_i = 0 and to C_i = 1 and encoded by the trained encoder (``embed``), with a bootstrap
  standard error of the diagonal.
- **identifiable twins** (``<metric>_identifiable``): the same cosines of P_F g, g projected on
  F = span{f(ξ)} (the only part of g the logits see), and of Q_G f, f projected on span{g(y) − g(y')};
  the subspaces come from :mod:`linrep.geometry.subspace` (Gram matrices built here in O(V·d²)).

Everything runs in torch on the device of the given tensors (float64), over the K runs of an
ensemble at once; numpy inputs run on the CPU. Cosines are Euclidean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .subspace import DEFAULT_RTOL, subspace_from_gram

__all__ = ["ScaleGeometry", "scale_geometry", "scale_hook", "SCALE_KEYS"]

SCALE_KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "cross_pair_abs_cosine",
    "alignment_cosine",
)
"""Per-run summary metrics (means over concepts); each also has an ``_identifiable`` twin."""

_CHUNK = 1 << 15  # steering vectors per chunk
_EPS = 1e-300


@dataclass(frozen=True)
class ScaleGeometry:
    """Concept geometry of K runs (every array has the run axis first; see module docstring).

    Attributes:
        concepts: the m concept names.
        n_pairs: steering vectors per concept (P).
        values: name → (K, m) per-concept values (``same_concept_cosine``,
            ``cross_concept_abs_cosine``, ``alignment_cosine``, ``alignment_offdiag_abs_cosine``
            and their ``_identifiable`` twins).
        matrices: name → (K, m, m) (``direction_cosine_matrix``, ``alignment_matrix`` + twins).
        sampled: name → (K,) estimates from sampled pairs (``cross_pair_abs_cosine`` + twin).
        standard_errors: name → (K,) or (K, m) sampling standard errors of the estimated entries.
        rank: (K,) numerical rank of span{f(ξ)}.
        n_cross, n_align: the sample sizes of the estimated entries.
    """

    concepts: list[str]
    n_pairs: int
    values: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray]
    sampled: dict[str, np.ndarray]
    standard_errors: dict[str, np.ndarray]
    rank: np.ndarray
    n_cross: int
    n_align: int
    cross_exact: bool = False
    """True when ``cross_pair_abs_cosine`` used every ordered pair (``n_cross`` of them)."""

    def summary(self) -> dict[str, np.ndarray]:
        """Per-run scalars, name → (K,): means over concepts and the sampled estimates."""
        out: dict[str, np.ndarray] = {}
        for key, v in self.values.items():
            with np.errstate(invalid="ignore"):
                out[key] = np.nanmean(v, axis=1) if np.isfinite(v).any() else v[:, 0]
        out.update(self.sampled)
        out["identifiable_rank"] = self.rank.astype(np.float64)
        return out

    def to_json(self, *, intervals: bool = True) -> dict[str, Any]:
        """Plain data: per-run summaries (mean, standard error over runs and, with ``intervals``, a
        95 % seed t-interval — which imports scipy), per-concept values, matrices, sampling
        standard errors and sample sizes."""
        summ = self.summary()
        out: dict[str, Any] = {
            "concepts": self.concepts,
            "n_pairs_per_concept": self.n_pairs,
            "n_cross_pairs_sampled": self.n_cross,
            "n_context_pairs_sampled": self.n_align,
            "method": (
                "same-concept and cross-concept (direction) cosines exact over all pairs; "
                + (
                    "cross-pair |cos| exact over all pairs; "
                    if self.cross_exact
                    else "cross-pair |cos| estimated from sampled pairs (± standard error); "
                )
                + "alignment estimated from sampled context pairs (± standard error)"
            ),
        }
        for key, v in summ.items():
            fin = v[np.isfinite(v)]
            se = float(fin.std(ddof=1) / np.sqrt(fin.size)) if fin.size > 1 else float("nan")
            mean = float(fin.mean()) if fin.size else float("nan")
            out[key] = {"per_run": v.tolist(), "mean": mean, "se": se}
            if intervals:
                from .intervals import seed_interval

                iv = seed_interval(v)
                out[key]["ci95"] = [iv.low, iv.high]
        for key, v in self.values.items():
            out[key]["per_concept"] = v.tolist()
        for key, v in self.matrices.items():
            out[key] = v.tolist()
        for key, v in self.standard_errors.items():
            out[f"{key}_se"] = v.tolist()
        return out


def _torch(x, device=None):
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype=torch.float64, device=device if device is not None else t.device)


def scale_geometry(
    latent,
    f,
    g,
    *,
    embed: Callable[[np.ndarray], Any] | None = None,
    n_cross: int = 100_000,
    n_align: int = 2048,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
) -> ScaleGeometry:
    """Streaming concept geometry of K trained runs (module docstring).

    Args:
        latent: the :class:`~linrep.latent.LatentModel` (pairs, contexts, weights).
        f: (K, n, d) embeddings of ``latent.contexts`` (numpy or torch): span{f(ξ)}.
        g: (K, V, d) unembeddings (numpy or torch; the computation runs on its device).
        embed: ``contexts (N, m) int8 → f (K, N, d)`` for any contexts (the trained encoder);
            without it the alignment entries are NaN.
        n_cross: sampled steering-vector pairs of different concepts.
        n_align: sampled context pairs per concept for the alignment.
        seed: seed of the samples.
        rtol: relative tolerance of the identifiable subspaces' rank.

    Returns:
        A :class:`ScaleGeometry`.
    """
    import torch

    g = _torch(g)
    f = _torch(f, g.device)
    if g.ndim != 3 or f.ndim != 3 or f.shape[0] != g.shape[0] or f.shape[2] != g.shape[2]:
        raise InputError(
            f"need f (K, n, d) and g (K, V, d); got {tuple(f.shape)}, {tuple(g.shape)}"
        )
    if g.shape[1] != latent.n_tokens:
        raise InputError(f"g has {g.shape[1]} tokens but the latent model has {latent.n_tokens}")
    pairs = [
        torch.as_tensor(latent.counterfactual_pairs(i), device=g.device) for i in range(latent.m)
    ]
    rng = np.random.default_rng(seed)
    diffs = _context_differences(latent, embed, n_align, rng, g.device)  # (K, m, N, d) or None
    sub_f = subspace_from_gram(_gram(f, centre=False).cpu().numpy(), rtol)
    sub_g = subspace_from_gram(_gram(g, centre=True).cpu().numpy(), rtol)
    PF = torch.as_tensor(sub_f.projector, device=g.device)
    QG = torch.as_tensor(sub_g.projector, device=g.device)
    values, matrices, sampled, ses = {}, {}, {}, {}
    cross_draw, cross_exact = _cross_draws(pairs, n_cross, rng)
    for suffix, gg, dd in (
        ("", g, diffs),
        ("_identifiable", g @ PF, None if diffs is None else diffs @ QG[:, None]),
    ):
        block = _cosine_block(gg, pairs, cross_draw, dd, rng, cross_exact)
        for key, v in block["values"].items():
            values[key + suffix] = v
        for key, v in block["matrices"].items():
            matrices[key + suffix] = v
        for key, v in block["sampled"].items():
            sampled[key + suffix] = v
        for key, v in block["se"].items():
            ses[key + suffix] = v
    return ScaleGeometry(
        concepts=list(latent.names),
        n_pairs=int(pairs[0].shape[0]),
        values=values,
        matrices=matrices,
        sampled=sampled,
        standard_errors=ses,
        rank=np.asarray(sub_f.rank),
        n_cross=int(cross_draw[0].shape[0]),
        cross_exact=cross_exact,
        n_align=0 if diffs is None else int(diffs.shape[2]),
    )


def _gram(x, *, centre: bool):
    """(K, d, d) Gram matrix of the rows of x (centred: of the rows minus their mean), chunked."""
    import torch

    K, n, d = x.shape
    shift = x[:, :1] if centre else torch.zeros((K, 1, d), dtype=x.dtype, device=x.device)
    G = torch.zeros((K, d, d), dtype=x.dtype, device=x.device)
    s = torch.zeros((K, d), dtype=x.dtype, device=x.device)
    for a in range(0, n, _CHUNK):
        xs = x[:, a : a + _CHUNK] - shift
        G += xs.mT @ xs
        s += xs.sum(dim=1)
    if centre:  # Σ(x − μ)(x − μ)ᵀ = Σ(x − s)(x − s)ᵀ − n (μ − s)(μ − s)ᵀ
        mu = s / n
        G -= n * mu[:, :, None] * mu[:, None, :]
    return G


def _unit(x):
    import torch

    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_EPS)


def _cosine_block(g, pairs, cross_draw, diffs, rng, exact) -> dict[str, dict[str, np.ndarray]]:
    """Same-concept, direction, cross-pair and alignment cosines of one unembedding g (K, V, d)."""
    import torch

    K, _, d = g.shape
    m = len(pairs)
    same = torch.empty((K, m), dtype=g.dtype, device=g.device)
    dirs = torch.empty((K, m, d), dtype=g.dtype, device=g.device)
    for i, p in enumerate(pairs):
        S = torch.zeros((K, d), dtype=g.dtype, device=g.device)
        D = torch.zeros((K, d), dtype=g.dtype, device=g.device)
        for a in range(0, p.shape[0], _CHUNK):
            q = p[a : a + _CHUNK]
            delta = g[:, q[:, 1]] - g[:, q[:, 0]]  # (K, c, d)
            D += delta.sum(dim=1)
            S += _unit(delta).sum(dim=1)
        P = p.shape[0]
        same[:, i] = ((S * S).sum(dim=1) - P) / (P * (P - 1)) if P > 1 else float("nan")
        dirs[:, i] = _unit(D)
    C = dirs @ dirs.mT  # (K, m, m)
    off = ~torch.eye(m, dtype=torch.bool, device=g.device)
    cross = (C.abs() * off).sum(dim=2) / (m - 1) if m > 1 else torch.full_like(same, float("nan"))
    out = {
        "values": {"same_concept_cosine": same, "cross_concept_abs_cosine": cross},
        "matrices": {"direction_cosine_matrix": C},
        "sampled": {},
        "se": {},
    }
    ci, k, cj, l_ = cross_draw
    if ci.size:
        u = _unit(_pair_vectors(g, pairs, ci, k))
        v = _unit(_pair_vectors(g, pairs, cj, l_))
        a = (u * v).sum(dim=2).abs()  # (K, n)
        out["sampled"]["cross_pair_abs_cosine"] = a.mean(dim=1)
        se = a.std(dim=1) / np.sqrt(a.shape[1])
        out["se"]["cross_pair_abs_cosine"] = torch.zeros_like(se) if exact else se
    if diffs is not None:
        fbar = diffs.mean(dim=2)  # (K, m, d)
        align = _unit(fbar) @ dirs.mT  # (K, m, m): cos(f̄_i, ḡ_j)
        out["matrices"]["alignment_matrix"] = align
        diag = torch.diagonal(align, dim1=1, dim2=2)
        out["values"]["alignment_cosine"] = diag
        offd = (
            (align.abs() * off).sum(dim=2) / (m - 1)
            if m > 1
            else torch.full_like(diag, float("nan"))
        )
        out["values"]["alignment_offdiag_abs_cosine"] = offd
        out["se"]["alignment_cosine"] = _bootstrap_alignment_se(diffs, dirs, rng)
    return {
        part: {key: v.detach().cpu().numpy() for key, v in items.items()}
        for part, items in out.items()
    }


def _pair_vectors(g, pairs, concept, index):
    """Δg of the ``index``-th pair of ``concept`` for each draw, (K, n, d)."""
    import torch

    y = torch.empty((concept.size, 2), dtype=torch.int64, device=g.device)
    for i in np.unique(concept):
        sel = np.flatnonzero(concept == i)
        y[torch.as_tensor(sel, device=g.device)] = pairs[i][
            torch.as_tensor(index[sel], device=g.device)
        ]
    return g[:, y[:, 1]] - g[:, y[:, 0]]


def _cross_draws(pairs, n: int, rng) -> tuple[tuple[np.ndarray, ...], bool]:
    """Draws (concept i, pair k, concept j ≠ i, pair l) and whether they are exhaustive.

    Every ordered (i, k, j, l) once when there are at most n of them (m(m−1)P², exact), else n
    uniform draws; pair counts P are equal across concepts.
    """
    m = len(pairs)
    if m < 2 or n < 1:
        return (np.zeros(0, np.int64),) * 4, False
    P = pairs[0].shape[0]
    if m * (m - 1) * P * P <= n:
        i, k, j, l_ = (a.ravel() for a in np.indices((m, P, m, P)))
        keep = i != j
        return (i[keep], k[keep], j[keep], l_[keep]), True
    ci = rng.integers(0, m, n)
    cj = (ci + rng.integers(1, m, n)) % m  # uniform over j ≠ i
    return (ci, rng.integers(0, P, n), cj, rng.integers(0, P, n)), False


def _context_differences(latent, embed, n: int, rng, device):
    """f(ξ with C_i = 1) − f(ξ with C_i = 0) for n contexts ξ ~ w per concept, (K, m, n, d)."""

    if embed is None or n < 1:
        return None
    m = latent.m
    rows = rng.choice(latent.n_contexts, size=n, p=latent.weights)
    base = np.asarray(latent.contexts)[rows]  # (n, m)
    ctx = np.repeat(base[None], 2 * m, axis=0)  # (2m, n, m): concept i with value 0, then 1
    for i in range(m):
        ctx[2 * i, :, i] = 0
        ctx[2 * i + 1, :, i] = 1
    f = _torch(embed(ctx.reshape(-1, m)), device)  # (K, 2m·n, d)
    K, _, d = f.shape
    f = f.reshape(K, m, 2, n, d)
    return f[:, :, 1] - f[:, :, 0]


def _bootstrap_alignment_se(diffs, dirs, rng, reps: int = 200) -> Any:
    """Bootstrap standard error of cos(f̄_i, ḡ_i) over the sampled context pairs, (K, m).

    Each resample's mean is a multinomial reweighting of the n differences, so all resamples are
    one matmul: (reps, n) weights × (K, m, n, d).
    """
    import torch

    K, m, n, d = diffs.shape
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=reps) / n  # (reps, n)
    w = torch.as_tensor(counts, dtype=diffs.dtype, device=diffs.device)
    fbar = torch.einsum("rn,kmnd->rkmd", w, diffs)
    return (_unit(fbar) * dirs[None]).sum(dim=3).std(dim=0)


def scale_hook(latent, **kw) -> Callable[..., dict[str, np.ndarray]]:
    """A learner metric hook ``fn(f, g, b=None) -> {name: (K,)}`` with the :data:`SCALE_KEYS`
    summaries (and twins) that need no encoder: same-concept, cross-concept and cross-pair."""

    def fn(f, g, b=None):
        return scale_geometry(latent, f, g, **kw).summary()

    return fn
