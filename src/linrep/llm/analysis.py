"""Unembedding-side concept geometry of a real model (Park et al. 2023, §5 of ``docs/real-models.md``).

For each concept W with counterfactual word pairs (y0, y1), under an inner product ⟨·,·⟩_M:

* steering vectors Δγ_k = γ(y1) − γ(y0) and the concept direction ḡ_W = unit mean of the Δγ_k;
* leave-one-out cosine: mean_k cos(Δγ_k, mean_{l≠k} Δγ_l), with a bootstrap interval over pairs;
* LOO projection Δγ_kᵀ ū_{−k} vs the projections of 100,000 random normal-token pairs on ḡ_W
  (z-score, one-sided p-value);
* shuffled-unembedding null of the mean LOO cosine (token identities permuted);
* cross-concept cosine matrices cos(ḡ_W, ḡ_W'), their mean |off-diagonal| and block structure
  (related concepts such as verb inflections or languages vs unrelated pairs);
* analogy accuracy within a concept (3CosAdd: γ̂(b) − γ̂(a) + γ̂(c) → d, top-1 over normal tokens
  excluding a, b, c; Euclidean, as in the classic test).

All the geometry (inner products, directions, LOO, nulls, intervals, block structure) is
:mod:`linrep.geometry`; this module only feeds it a real unembedding and collects the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .. import geometry as geo
from .cache import cache_dir
from .concepts import ConceptTokens
from .unembedding import Unembedding

__all__ = [
    "DEFAULT_GROUPS",
    "concept_groups",
    "fitted_inner_products",
    "analyze_unembedding",
]

#: Related-concept groups for the block-structure summary (Park et al.'s 27 concept names).
#: Concepts not listed form singleton groups ("unrelated" to every other concept).
DEFAULT_GROUPS: dict[str, list[str]] = {
    "verb inflections": [
        "verb - 3pSg",
        "verb - Ving",
        "verb - Ved",
        "Ving - 3pSg",
        "Ving - Ved",
        "3pSg - Ved",
    ],
    "verb derivations": ["verb - V + able", "verb - V + er", "verb - V + tion", "verb - V + ment"],
    "adjective forms": [
        "adj - un + adj",
        "adj - adj + ly",
        "adj - comparative",
        "adj - superlative",
    ],
    "languages": ["English - French", "French - German", "French - Spanish", "German - Spanish"],
}


def _norm_name(name: str) -> str:
    return "".join(name.lower().split())


def concept_groups(
    names: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Group label of each concept (its own name when it belongs to no group).

    Args:
        names: concept names.
        groups: group → member concept names (spaces and case ignored); default
            :data:`DEFAULT_GROUPS`.

    Returns:
        One label per name.
    """
    groups = DEFAULT_GROUPS if groups is None else groups
    lookup = {_norm_name(m): g for g, members in groups.items() for m in members}
    return [lookup.get(_norm_name(n), n) for n in names]


# ----------------------------------------------------------------------------- inner products
def _covariance_path(unemb: Unembedding, cache: str | os.PathLike | None):
    return cache_dir(cache) / "unembedding" / unemb.sha256 / "covariance_normal_tokens.npz"


def fitted_inner_products(
    unemb: Unembedding,
    names: Sequence[str] = ("euclidean", "causal", "random"),
    *,
    floor: float = 1e-10,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> dict[str, geo.InnerProduct]:
    """Fitted :mod:`linrep.geometry` inner products for one model.

    The causal one is Cov(γ)⁻¹ with the centred float64 covariance over **normal tokens only**
    (token_type == 1: Gemma's 6,249 ``<unusedN>`` rows and control tokens are dropped) and
    geometry's relative eigenvalue floor. The covariance of Gemma (255k × 640) takes seconds, so its
    mean and covariance are stored next to the cached unembedding and the inner product is rebuilt
    with :meth:`~linrep.geometry.CausalInnerProduct.fit_covariance` on the next run.

    Args:
        unemb: the model's unembedding.
        names: which inner products.
        floor: relative eigenvalue floor of the causal inner product.
        seed: seed of the random inner product.
        cache: cache folder.
        use_cache: read/write the stored covariance.

    Returns:
        name → fitted inner product.
    """
    out: dict[str, geo.InnerProduct] = {}
    for name in names:
        if name != "causal":
            out[name] = geo.get_inner_product(name, unemb.gamma, seed=seed)
            continue
        path = _covariance_path(unemb, cache) if use_cache else None
        ip = geo.CausalInnerProduct(floor=floor)
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    ip.fit_covariance(z["mean"], z["cov"], int(z["n_rows"]))
                out[name] = ip
                continue
            except (OSError, ValueError, KeyError):
                pass  # damaged entry: refit
        ip.fit(unemb.gamma, rows=unemb.normal)
        if path is not None and path.parent.is_dir():
            from ..io import save_npz

            try:
                save_npz(path, mean=ip.mean_, cov=ip.cov_, n_rows=np.asarray(ip.n_rows_))
            except OSError:
                pass
        out[name] = ip
    return out


# ----------------------------------------------------------------------------- analogies
# ----------------------------------------------------------------------------- the analysis
def _null_dict(t: geo.NullTest, j: int | None = None) -> dict:
    pick = (lambda a: float(np.asarray(a).ravel()[j])) if j is not None else float
    return {
        "observed": pick(t.observed),
        "null_mean": pick(t.null_mean),
        "null_std": pick(t.null_std),
        "z": pick(t.z),
        "p_value": pick(t.p_value),
        "n_null": t.n_null,
    }


def analyze_unembedding(
    unemb: Unembedding,
    concepts: Sequence[ConceptTokens],
    inner: Mapping[str, geo.InnerProduct],
    *,
    n_random_pairs: int = 100_000,
    n_shuffles: int = 20,
    n_boot: int = 2000,
    analogy_queries: int = 20,
    groups: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """All unembedding-only measurements for a list of concepts.

    Args:
        unemb: the model's γ and vocabulary.
        concepts: concepts with their kept token pairs (each ≥ 2 pairs).
        inner: fitted inner products by name (from :func:`fitted_inner_products`); LOO statistics
            and nulls are computed under every one except ``random`` (which is only used for the
            cross-concept matrix, as in Park et al.'s heatmaps).
        n_random_pairs: size of the random-token-pair null.
        n_shuffles: shuffles of the shuffled-unembedding null (0 = skip).
        n_boot: bootstrap resamples of the LOO-cosine interval.
        analogy_queries: analogy queries per concept (0 = skip).
        groups: related-concept groups for the block-structure summary.
        seed: seed of every random draw.
        progress: show a progress bar.

    Returns:
        A JSON-able dict: ``concepts``, ``per_concept`` (name → numbers), ``directions`` (name of
        inner product → (k, d) array, *not* JSON), ``cosine_matrix`` and ``mean_abs_offdiag`` and
        ``block_structure`` per inner product, ``groups``.
    """
    from tqdm.auto import tqdm

    g = unemb.gamma
    normal = unemb.normal
    names = [c.name for c in concepts]
    plist = [c.pairs for c in concepts]
    per: dict[str, dict] = {
        c.name: {"n_pairs": c.n_pairs, "loo_cosine": {}, "loo_cosine_ci": {}} for c in concepts
    }
    dirs: dict[str, np.ndarray] = {}
    cos_mats: dict[str, np.ndarray] = {}
    offdiag: dict[str, float] = {}
    blocks: dict[str, dict] = {}
    labels = concept_groups(names, groups)
    steps = [n for n in inner]
    all_deltas: dict[str, list[np.ndarray]] = {}
    for ip_name in steps:
        ip = inner[ip_name]
        deltas = [geo.steering_vectors(g, p, inner=ip) for p in plist]
        all_deltas[ip_name] = deltas
        D = np.stack([geo.concept_direction(d) for d in deltas])
        dirs[ip_name] = D
        C = geo.cosine_matrix(D)
        cos_mats[ip_name] = C
        offdiag[ip_name] = float(geo.mean_abs_offdiag(C))
        blocks[ip_name] = geo.block_structure(C, labels)
    tested = [n for n in steps if n != "random"]
    # Random-pair null of the LOO projection, all inner products in one pass over the random rows.
    # The projection of Δ M^{1/2} on a unit u equals that of the raw Δ on w = u M^{1/2} (M^{1/2}
    # symmetric): geometry's null runs on raw rows with the unit w, rescaled here by ‖w‖, which
    # avoids a d × d product per random pair.
    ws = [inner[n].transform_vectors(dirs[n]) if n != "euclidean" else dirs[n] for n in tested]
    W = np.concatenate(ws) if ws else np.zeros((0, g.shape[1]))
    nulls = (
        geo.random_pair_null(g, W, n=n_random_pairs, seed=seed, rows=normal)
        * np.linalg.norm(W, axis=1)
        if ws
        else None
    )
    k = len(concepts)
    for t_i, ip_name in enumerate(
        tqdm(tested, desc="LOO, nulls, intervals", unit="inner product", disable=not progress)
    ):
        ip = inner[ip_name]
        deltas = all_deltas[ip_name]
        null = nulls[:, t_i * k : (t_i + 1) * k]
        if n_shuffles > 0:
            shuf = geo.shuffled_unembedding_null(
                g, plist, n_shuffles=n_shuffles, seed=seed, rows=normal, inner=ip
            )
        for j, (c, d) in enumerate(zip(concepts, deltas, strict=True)):
            e = per[c.name]
            loo = geo.loo_cosines(d)
            ci = geo.bootstrap_interval(loo, n_boot=n_boot, seed=seed)
            e["loo_cosine"][ip_name] = float(loo.mean())
            e["loo_cosine_ci"][ip_name] = [ci.low, ci.high]
            e.setdefault("same_concept_cosine", {})[ip_name] = float(geo.same_concept_cosine(d))
            proj = geo.loo_projections(d)
            t = geo.null_test(float(proj.mean()), null[:, j])
            q99 = float(np.quantile(null[:, j], 0.99))
            e.setdefault("loo_projection", {})[ip_name] = {
                **_null_dict(t),
                "frac_pairs_above_null_q99": float((proj > q99).mean()),
            }
            if n_shuffles > 0:
                e.setdefault("shuffled_null", {})[ip_name] = _null_dict(
                    geo.null_test(float(loo.mean()), shuf[:, j])
                )
    if analogy_queries > 0:
        words = unemb.vocab.word_tokens()
        for p in plist:  # kept pairs are single leading-space tokens already; be safe anyway
            words[p.ravel()] = True
        acc = geo.analogy_accuracy(
            g, plist, candidates=words, max_queries=analogy_queries, seed=seed
        )
        for c, a in zip(concepts, acc, strict=True):
            per[c.name]["analogy_accuracy"] = a["accuracy"]
            per[c.name]["analogy_n_queries"] = a["n_queries"]
    return {
        "concepts": names,
        "per_concept": per,
        "groups": dict(zip(names, labels, strict=True)),
        "directions": dirs,
        "cosine_matrix": {k: v.tolist() for k, v in cos_mats.items()},
        "mean_abs_offdiag": offdiag,
        "block_structure": blocks,
    }
