"""Concept geometry of models trained on a latent conditional model (``docs/`` §1–4).

For a :class:`~linrep.latent.LatentModel` with m concepts, embeddings f(ξ) of its contexts
``latent.contexts`` and unembeddings g(y) of its tokens, this module computes, per concept i:

* **same-concept parallelism**: mean pairwise cosine of the steering vectors Δg = g(y1) − g(y0) of
  the 2^(m−1) counterfactual pairs of i (``latent.counterfactual_pairs(i)``);
* **cross-concept** |cosine|: the concept-direction cosine matrix C_ij = cos(ḡ_i, ḡ_j) and its mean
  |off-diagonal| (``cross_concept_abs_cosine``, the statistic of the reference numbers in
  ``docs/learner.md`` §2; ``direction_abs_cosine`` is the same number under its older name), and the
  mean |cos| between individual steering vectors of different concepts (``cross_pair_abs_cosine``,
  the histogram statistic; larger, because each Δg carries pair-specific noise);
* **alignment**: cos(f̄_i, ḡ_i), where f̄_i is the mean of f(ξ') − f(ξ) over the context pairs that are
  identical except ξ_i = 0, ξ'_i = 1 (both known), and ḡ_i the unit mean steering vector; the
  off-diagonal cos(f̄_i, ḡ_j), j ≠ i, is the control;
* **log-odds matching**: learned pair log-odds f(ξ)ᵀΔg vs the true log p(y1|ξ) − log p(y0|ξ) over the
  contexts with C_i = ⋄ and the pairs consistent with them (both probabilities > 0); the error is the
  mean |learned − true| over those (ξ, pair) cells, and the spread is the standard deviation of the
  learned log-odds over the cells (0 is the hypothesis of the log-odds-matching theorem);
* **probe accuracy** (optional): a linear probe of C_i from f(ξ) on the contexts where C_i is known.

Cosines use the chosen inner product (Euclidean, causal = whitening by the covariance of the K-th
model's own unembedding rows, or a random positive-definite M, the same M for every run); log-odds
are inner-product free. All computations are vectorised over the K runs of an ensemble.

Caveat (causal inner product with a small vocabulary): if V ≤ d + 1, the V centred unembedding rows
are affinely independent, so whitening by their covariance maps them to a *regular simplex* whatever
the trained g is. Every causal cosine is then fixed by the pair structure alone (steering vectors of
disjoint pairs are exactly orthogonal), so causal numbers are only informative when V > d + 1
(e.g. m = 6, V = 64 with d = 32), as for real LMs. Even then whitening gives every direction of
ℝ^d unit variance over the tokens, so the d − m directions that carry only small pair-specific
noise are inflated to the scale of the concept directions: a concept's Δg has squared norm ≈ 4
along its own whitened direction but ≈ 2 along each of the d − m noise directions, and because
whitened coordinates are uncorrelated with every concept indicator, the noise parts of a concept's
Δg even sum to exactly zero. Same-concept causal cosines are therefore small for any model with a
small vocabulary: 0.04 for a planted linear g with 1 % isotropic noise at m = 6, d = 32 (Euclidean
0.998) and 0.04 for trained linear-encoder models (Euclidean 0.89). Park et al.'s estimate is meant
for V ≫ d.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .inner import INNER_PRODUCTS, CausalInnerProduct, RandomInnerProduct
from .probes import probe_accuracy
from .simindex import _CACHE_CELLS, SimulationIndex
from .steering import (
    concept_direction,
    cosine,
    cosine_matrix,
    mean_abs_offdiag,
    same_concept_cosine,
)
from .steering import unit as _unit
from .subspace import DEFAULT_RTOL, identifiable_subspace, row_space

if TYPE_CHECKING:
    from ..latent import LatentModel

__all__ = [
    "SimulationIndex",
    "simulation_metrics",
    "metric_hook",
    "identifiable",
    "with_identifiable",
    "HOOK_KEYS",
    "COSINE_KEYS",
    "SUMMARY_KEYS",
    "IDENTIFIABLE_KEYS",
]

MetricFn = Callable[..., dict[str, np.ndarray]]

HOOK_KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "direction_abs_cosine",
    "cross_pair_abs_cosine",
    "alignment_cosine",
    "alignment_offdiag_abs_cosine",
    "same_concept_cosine_identifiable",
    "cross_concept_abs_cosine_identifiable",
    "direction_abs_cosine_identifiable",
    "cross_pair_abs_cosine_identifiable",
    "alignment_cosine_identifiable",
    "alignment_offdiag_abs_cosine_identifiable",
    "identifiable_rank",
    "log_odds_matching_error",
    "log_odds_max_error",
    "log_odds_spread",
)
"""Names returned by :func:`metric_hook` (means over concepts; ``name/<concept>`` per concept)."""

IDENTIFIABLE_SUFFIX = "_identifiable"


def identifiable(key: str) -> str:
    """The name of a metric's identifiable twin: ``key + "_identifiable"``."""
    return key + IDENTIFIABLE_SUFFIX


COSINE_KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "cross_pair_abs_cosine",
    "alignment_cosine",
)
"""Cosine statistics; each also comes as an identifiable twin (``identifiable(key)``)."""

SUMMARY_KEYS = (*COSINE_KEYS, "log_odds_matching_error")
"""The per-run geometry statistics that experiments, ``linrep simulate`` and reports summarise."""

IDENTIFIABLE_KEYS = tuple(identifiable(k) for k in COSINE_KEYS)
"""The identifiable twins of :data:`COSINE_KEYS` (log-odds need none: f·P_F g = f·g)."""


def with_identifiable(keys: tuple[str, ...] = SUMMARY_KEYS) -> tuple[str, ...]:
    """``keys`` with every cosine key followed by its identifiable twin (the order reports use)."""
    return tuple(x for k in keys for x in ((k, identifiable(k)) if k in COSINE_KEYS else (k,)))


def _transforms(g: np.ndarray, inner: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-run (M^{1/2}, M^{−1/2}), (K, d, d) each; None for Euclidean."""
    _check_inner(inner)
    if inner == "euclidean":
        return None
    K, _, d = g.shape
    if inner == "random":
        ip = RandomInnerProduct(seed=seed).fit(d)
        return np.broadcast_to(ip.sqrt_, (K, d, d)), np.broadcast_to(ip.inv_sqrt_, (K, d, d))
    fits = [CausalInnerProduct().fit(g[k]) for k in range(K)]  # causal: one eigh per run
    return np.stack([c.sqrt_ for c in fits]), np.stack([c.inv_sqrt_ for c in fits])


def _check_inner(inner: str) -> None:
    if inner not in INNER_PRODUCTS:
        from ..errors import did_you_mean

        raise InputError(
            f"unknown inner product '{inner}'{did_you_mean(str(inner), INNER_PRODUCTS)}"
        )


def _check_fg(
    index: SimulationIndex, f: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """f (K, n, d), g (K, V, d) as float64, checked against the latent model's tables."""
    f = np.asarray(f, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if f.ndim != 3 or g.ndim != 3 or f.shape[0] != g.shape[0] or f.shape[2] != g.shape[2]:
        raise InputError(
            f"need f (K, n, d) and g (K, V, d) with equal K and d; got {f.shape}, {g.shape}"
        )
    lat = index.latent
    if f.shape[1] != lat.n_contexts or g.shape[1] != lat.n_tokens:
        raise InputError(
            f"f has {f.shape[1]} contexts and g {g.shape[1]} tokens, but the latent model has "
            f"{lat.n_contexts} contexts and {lat.n_tokens} tokens: pass f of latent.contexts"
        )
    return f, g


def _cross_pair(units: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean |cos| between steering vectors of different concepts: per concept (K, m), total (K,).

    Accumulated block by block (no ΣP × ΣP matrix).
    """
    K, m = units[0].shape[0], len(units)
    unitsT = [np.ascontiguousarray(np.swapaxes(u, 1, 2)) for u in units]
    abs_sum, abs_cnt = np.zeros((K, m)), np.zeros(m)
    for i in range(m):
        for j in range(i + 1, m):
            s = np.abs(units[i] @ unitsT[j]).reshape(K, -1).sum(axis=1)
            n = units[i].shape[1] * units[j].shape[1]
            abs_sum[:, [i, j]] += s[:, None]
            abs_cnt[[i, j]] += n
    n_cross = abs_cnt.sum() / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        total = abs_sum.sum(axis=1) / 2 / n_cross if n_cross else np.full(K, np.nan)
        return abs_sum / abs_cnt, total


def _offdiag_abs_mean(c: np.ndarray) -> np.ndarray:
    """Row means of |C_ij| over j ≠ i of (K, m, m) matrices, (K, m) (NaN when m = 1)."""
    K, m = c.shape[0], c.shape[-1]
    if m < 2:
        return np.full((K, m), np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(~np.eye(m, dtype=bool), np.abs(c), 0).sum(axis=2) / (m - 1)


def _cosine_block(
    index: SimulationIndex, f: np.ndarray, g: np.ndarray, inner: str, seed: int
) -> dict[str, np.ndarray]:
    """Cosine metrics of K runs under one inner product: name → (K, m) (matrices (K, m, m))."""
    K, m = f.shape[0], len(index.pairs)
    tr = _transforms(g, inner, seed)
    gt = g if tr is None else g @ tr[0]  # differences of rows do not depend on the centring
    ft = f if tr is None else f @ tr[1]
    deltas = [gt[:, p[:, 1]] - gt[:, p[:, 0]] for p in index.pairs]  # (K, P_i, d)
    out: dict[str, np.ndarray] = {}
    out["same_concept_cosine"] = np.stack(
        [same_concept_cosine(d) if d.shape[1] > 1 else np.full(K, np.nan) for d in deltas], axis=1
    )  # a concept with a single pair (m = 1) has no parallelism to measure
    out["cross_pair_abs_cosine"], out["_cross_pair_total"] = _cross_pair([_unit(d) for d in deltas])
    dirs = np.stack([concept_direction(d) for d in deltas], axis=1)  # (K, m, d)
    out["direction_cosine_matrix"] = cosine_matrix(dirs)
    out["cross_concept_abs_cosine"] = _offdiag_abs_mean(out["direction_cosine_matrix"])
    fbar = np.full((K, m, f.shape[2]), np.nan)
    for i, cp in enumerate(index.context_pairs):
        if cp.size:
            fbar[:, i] = (ft[:, cp[:, 1]] - ft[:, cp[:, 0]]).mean(axis=1)
    align = cosine(fbar[:, :, None, :], dirs[:, None, :, :])  # (K, m, m): cos(f̄_i, ḡ_j)
    out["alignment_matrix"] = align
    out["alignment_cosine"] = np.diagonal(align, axis1=1, axis2=2).copy()
    out["alignment_offdiag_abs_cosine"] = _offdiag_abs_mean(align)
    return out


def _identifiable_block(
    index: SimulationIndex, f: np.ndarray, g: np.ndarray, inner: str, seed: int, rtol: float
) -> dict[str, np.ndarray]:
    """The cosine metrics of (Q_G f, P_F g): g inside span{f}, f inside span{g(y) − g(y')}.

    Keys get the suffix ``_identifiable``; ``identifiable_rank`` is F per run, (K,).
    """
    sub_f = identifiable_subspace(f, rtol)
    sub_g = row_space(g, rtol, centre=True)
    block = _cosine_block(index, sub_g.project(f), sub_f.project(g), inner, seed)
    out = {identifiable(k): v for k, v in block.items()}
    out["identifiable_rank"] = sub_f.rank.astype(np.float64)
    return out


def _log_odds_block(
    index: SimulationIndex, f: np.ndarray, g: np.ndarray, bias: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Learned (f·Δg + Δb) vs true pair log-odds per concept, name → (K, m)."""
    K, m = f.shape[0], len(index.pairs)
    keys = ("log_odds_matching_error", "log_odds_max_error", "log_odds_spread")
    keys += ("true_log_odds_spread", "learned_log_odds_mean", "true_log_odds_mean")
    out = {k: np.full((K, m), np.nan) for k in keys}
    for i in range(m):
        stats = _log_odds_stats(index, i, f, g, bias)
        for k, v in (stats or {}).items():
            out[k][:, i] = v
    return out


def _probe_block(index: SimulationIndex, f: np.ndarray, seed: int) -> np.ndarray:
    """Cross-validated probe accuracy of each known concept from f(ξ), (K, m)."""
    K, m = f.shape[0], len(index.pairs)
    acc = np.full((K, m), np.nan)
    for i, (rows, y) in enumerate(zip(index.known_rows, index.known_labels, strict=True)):
        for k in range(K):
            acc[k, i] = probe_accuracy(f[k, rows], y, seed=seed) if rows.size else np.nan
    return acc


def _batched(
    index: SimulationIndex,
    f: np.ndarray,
    g: np.ndarray,
    inner: str,
    *,
    log_odds: bool = True,
    probes: bool = False,
    seed: int = 0,
    bias: np.ndarray | None = None,
    rtol: float = DEFAULT_RTOL,
) -> dict[str, np.ndarray]:
    """All per-concept metrics for K runs: name → (K, m) (plus matrices (K, m, m), ranks (K,)).

    Raw cosines, their ``_identifiable`` twins (see :func:`_identifiable_block`), the log-odds
    statistics (inner-product free and identifiable by construction: f·P_F g = f·g) and probes.
    """
    f, g = _check_fg(index, f, g)
    out = _cosine_block(index, f, g, inner, seed)
    out.update(_identifiable_block(index, f, g, inner, seed, rtol))
    if log_odds:
        out.update(_log_odds_block(index, f, g, bias))
    if probes:
        out["probe_accuracy"] = _probe_block(index, f, seed)
    return out


def _log_odds_stats(
    index: SimulationIndex, i: int, f: np.ndarray, g: np.ndarray, bias: np.ndarray | None = None
) -> dict[str, np.ndarray] | None:
    """Learned vs true pair log-odds of concept i over (ξ with C_i = ⋄, consistent pair) cells.

    Streams over context rows (bounded memory); spreads use sums shifted by a first-chunk mean so
    that a constant log-odds gives a spread of exactly ~0 (no E[l²] − E[l]² cancellation).
    """
    rows, p = index.unknown_rows[i], index.pairs[i]
    if rows.size == 0:
        return None
    K = f.shape[0]
    D = g[:, p[:, 1]] - g[:, p[:, 0]]  # raw coordinates: the log-odds f·Δg are inner-product free
    db = None if bias is None else bias[:, p[:, 1]] - bias[:, p[:, 0]]  # (K, P): Δb
    step = max(1, _CACHE_CELLS // max(1, p.shape[0] * K))
    abs_sum, abs_max = np.zeros(K), np.full(K, -np.inf)
    l1, l2, t1, t2 = np.zeros(K), np.zeros(K), 0.0, 0.0
    l_shift = t_shift = None
    cnt = 0
    for s in range(0, rows.size, step):
        r = rows[s : s + step]
        t = index.true_pair_log_odds(i, r)  # (r, P), NaN where the pair contradicts ξ
        ok = np.isfinite(t)
        if not ok.any():
            continue
        lrn = f[:, r] @ np.swapaxes(D, 1, 2)  # (K, r, P), batched BLAS
        if db is not None:
            lrn = lrn + db[:, None, :]
        if l_shift is None:
            l_shift = lrn[:, ok].mean(axis=1)
            t_shift = float(t[ok].mean())
        e = np.where(ok, np.abs(lrn - t), 0.0)
        lz = np.where(ok, lrn - l_shift[:, None, None], 0.0)
        tz = np.where(ok, t - t_shift, 0.0)
        abs_sum += e.sum(axis=(1, 2))
        abs_max = np.maximum(abs_max, e.max(axis=(1, 2)))
        l1 += lz.sum(axis=(1, 2))
        l2 += (lz * lz).sum(axis=(1, 2))
        t1 += tz.sum()
        t2 += (tz * tz).sum()
        cnt += int(ok.sum())
    if cnt == 0:
        return None
    lm, tm = l1 / cnt, t1 / cnt
    return {
        "log_odds_matching_error": abs_sum / cnt,
        "log_odds_max_error": abs_max,
        "log_odds_spread": np.sqrt(np.maximum(l2 / cnt - lm**2, 0)),
        "true_log_odds_spread": np.full(K, np.sqrt(max(t2 / cnt - tm**2, 0))),
        "learned_log_odds_mean": lm + l_shift,
        "true_log_odds_mean": np.full(K, tm + t_shift),
    }


def _concept_mean(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(x, axis=-1)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def simulation_metrics(
    latent: LatentModel | SimulationIndex,
    f: np.ndarray,
    g: np.ndarray,
    inner: str = "euclidean",
    *,
    probes: bool = True,
    log_odds: bool = True,
    seed: int = 0,
    bias: np.ndarray | None = None,
) -> dict[str, Any]:
    """Concept-geometry metrics of ONE trained model of a latent conditional model.

    Args:
        latent: the :class:`~linrep.latent.LatentModel` (or a prebuilt :class:`SimulationIndex`).
        f: (n, d) embeddings f(ξ) of ``latent.contexts`` (row k ↔ context k).
        g: (V, d) unembeddings g(y) of the tokens.
        inner: ``"euclidean"``, ``"causal"`` or ``"random"`` (cosines only; log-odds are invariant).
        probes: also compute linear-probe accuracies (slower: cross-validated logistic regression).
        log_odds: also compute the log-odds-matching statistics.
        seed: seed of the random inner product and of the probes' folds.
        bias: optional (V,) per-token logit bias b(y) of the learner (log-odds f·Δg + Δb).

    Returns:
        A JSON-ready dict. Scalars are means over concepts (NaN-skipping); ``<key>_per_concept``
        holds the m per-concept values. Keys: ``same_concept_cosine``, ``cross_concept_abs_cosine``
        (mean |off-diagonal| of the concept-direction cosine matrix ``direction_cosine_matrix``;
        per concept: mean_{j≠i} |cos(ḡ_i, ḡ_j)|), ``direction_abs_cosine`` (the same number, older
        name), ``cross_pair_abs_cosine`` (mean |cos| over all steering-vector pairs of different
        concepts; per concept: vs all other concepts), ``alignment_cosine`` (cos(f̄_i, ḡ_i)),
        ``alignment_offdiag_abs_cosine`` (mean_{j≠i} |cos(f̄_i, ḡ_j)|) and ``alignment_matrix``
        (m × m, row i = f̄_i, column j = ḡ_j), ``log_odds_matching_error`` (mean |learned − true|),
        ``log_odds_max_error`` (the ε of the theorem), ``log_odds_spread`` / ``true_log_odds_spread``
        (std over cells), ``learned_log_odds_mean`` / ``true_log_odds_mean``, ``probe_accuracy``,
        plus ``inner``, ``concepts``, ``log_odds_contexts_used`` / ``log_odds_contexts_total``
        (per concept; they differ when the index subsamples, m ≥ 9 by default). Every cosine key
        (and ``direction_cosine_matrix``, ``alignment_matrix``) has an ``<key>_identifiable`` twin
        computed from P_F g (g inside span{f(ξ)}) and Q_G f (f inside span{g(y) − g(y')}), with
        ``identifiable_rank`` (F), ``d`` and ``identifiable_rtol`` (``docs/theory.md`` §3.4).
    """
    index = latent if isinstance(latent, SimulationIndex) else SimulationIndex.from_latent(latent)
    f, g = np.asarray(f), np.asarray(g)
    if f.ndim != 2 or g.ndim != 2:
        raise InputError(
            f"simulation_metrics takes one model: f (n, d) and g (V, d), got {f.shape} and "
            f"{g.shape}; use metric_hook for ensembles"
        )
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64).reshape(1, -1)
        if bias.shape[1] != g.shape[0]:
            raise InputError(f"bias has {bias.shape[1]} entries but g has {g.shape[0]} tokens")
    b = _batched(
        index, f[None], g[None], inner, log_odds=log_odds, probes=probes, seed=seed, bias=bias
    )
    res: dict[str, Any] = {"inner": inner, "concepts": index.names}
    res["log_odds_contexts_used"] = [int(r.size) for r in index.unknown_rows]
    res["log_odds_contexts_total"] = index.n_unknown_total
    res["identifiable_rank"] = int(b["identifiable_rank"][0])
    res["d"] = int(f.shape[1])
    res["identifiable_rtol"] = DEFAULT_RTOL
    for key, val in b.items():
        if key.startswith("_") or val.ndim != 2:
            continue
        res[key] = float(_concept_mean(val[0]))
        res[f"{key}_per_concept"] = val[0].tolist()
    for sfx in ("", IDENTIFIABLE_SUFFIX):
        res["cross_pair_abs_cosine" + sfx] = float(b["_cross_pair_total" + sfx][0])
        dmat = b["direction_cosine_matrix" + sfx][0]
        res["direction_cosine_matrix" + sfx] = dmat.tolist()
        res["direction_abs_cosine" + sfx] = float(mean_abs_offdiag(dmat))
        res["alignment_matrix" + sfx] = b["alignment_matrix" + sfx][0].tolist()
    return res


def metric_hook(
    latent: LatentModel,
    inner: str = "euclidean",
    *,
    log_odds: bool = True,
    probes: bool = False,
    per_concept: bool = False,
    seed: int = 0,
    max_log_odds_rows: int | None = 4096,
) -> MetricFn:
    """A learner ``MetricFn`` following the simulation metrics over training steps.

    Args:
        latent: the latent model the learner is trained on.
        inner: inner product of the cosines (see :func:`simulation_metrics`).
        log_odds: include the log-odds-matching statistics.
        probes: include linear-probe accuracy (slow; off by default).
        per_concept: also return ``<key>/<concept name>`` for every concept.
        seed: seed of the random inner product / probes.
        max_log_odds_rows: cap on contexts per concept for the log-odds statistics (see
            :meth:`SimulationIndex.from_latent`; exact for m ≤ 8).

    Returns:
        ``fn(f, g, b=None) -> {name: (K,) array}`` with ``f: (K, n_contexts, d)``, ``g: (K, V, d)``
        and the optional bias ``b: (K, V)`` (log-odds f·Δg + Δb); names are
        :data:`HOOK_KEYS` (means over concepts; ``log_odds_*`` only if ``log_odds``), plus
        ``probe_accuracy`` if ``probes``.
    """
    _check_inner(inner)
    index = SimulationIndex.from_latent(latent, max_log_odds_rows=max_log_odds_rows)

    def fn(f: np.ndarray, g: np.ndarray, b: np.ndarray | None = None) -> dict[str, np.ndarray]:
        b = _batched(index, f, g, inner, log_odds=log_odds, probes=probes, seed=seed, bias=b)
        out: dict[str, np.ndarray] = {"identifiable_rank": b["identifiable_rank"]}
        for key in (*HOOK_KEYS, "probe_accuracy"):
            if key not in b or b[key].ndim != 2:
                continue
            out[key] = _concept_mean(b[key])
            if per_concept:
                for i, name in enumerate(index.names):
                    out[f"{key}/{name}"] = b[key][:, i].copy()
        for sfx in ("", IDENTIFIABLE_SUFFIX):
            out["cross_pair_abs_cosine" + sfx] = b["_cross_pair_total" + sfx]
            out["direction_abs_cosine" + sfx] = mean_abs_offdiag(b["direction_cosine_matrix" + sfx])
        return out

    return fn
