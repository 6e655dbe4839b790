"""Embedding side of a real model: context representations λ(x) = f(x) and their alignment with γ.

For a concept W with paired contexts (base side y = 0, target side y = 1) and their last-token hidden
states F: (n, d), under an inner product with maps f ↦ f M^{−1/2} (embedding side) and
g ↦ g M^{1/2} (unembedding side) from :mod:`linrep.geometry`:

* embedding direction f̄_W = unit(mean F'[y=1] − mean F'[y=0]) (F' = mapped states);
* alignment cos(f̄_W, ḡ_W) with the unembedding direction of the same concept, compared with
  cos(f̄_W, ḡ_W') for the other concepts and with |cos| to random directions (≈ √(2/(π d)));
* linear-probe accuracy (cross-validated logistic regression on F) and the accuracy of the
  one-threshold probe sign(f'ᵀ ḡ'_W − midpoint), which uses the *unembedding* direction only
  (f'ᵀḡ'_W ∝ fᵀ mean_k Δγ_k, the concept's mean logit difference, whatever the inner product).

Paper: Jiang et al. §5 / ``docs/experiments.md`` §4 (real LLMs, ii). The alignment is meaningful at the final,
post-norm layer, whose dot products with γ are the logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import geometry as geo

__all__ = ["embedding_alignment"]


def embedding_alignment(
    states: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    directions: Mapping[str, np.ndarray],
    concept_names: Sequence[str],
    inner: Mapping[str, geo.InnerProduct],
    *,
    n_random: int = 2000,
    seed: int = 0,
    probe_cv: int = 5,
) -> dict:
    """Embedding directions, alignment with unembedding directions, and probes.

    Args:
        states: concept → ``F: (n, d)`` hidden states of its contexts.
        labels: concept → ``(n,)`` 0 (base side) / 1 (target side).
        directions: inner-product name → ``(k, d)`` unembedding concept directions ḡ in that inner
            product's coordinates (from :func:`linrep.llm.analyze_unembedding`).
        concept_names: the k concept names (rows of ``directions``).
        inner: fitted inner products by name.
        n_random: random directions of the random-direction baseline.
        seed: seed of the random directions and the probe folds.
        probe_cv: folds of the logistic-regression probe.

    Returns:
        ``{"per_concept": {name: {...}}, "summary": {ip: {...}}, "alignment_matrix": {ip: rows}}``
        where each row holds cos(f̄_W, ḡ_W') for every concept W' (rows: concepts with contexts).
    """
    rng = np.random.default_rng(seed)
    index = {n: i for i, n in enumerate(concept_names)}
    per: dict[str, dict] = {}
    matrices: dict[str, list[list[float]]] = {ip: [] for ip in directions}
    rows: list[str] = []
    d = next(iter(states.values())).shape[1] if states else 0
    rand = geo.unit(rng.standard_normal((n_random, d))) if d else np.zeros((0, 0))
    for name, F in states.items():
        y = np.asarray(labels[name])
        entry: dict = {
            "n_base": int((y == 0).sum()),
            "n_target": int((y == 1).sum()),
            "probe_accuracy": geo.probe_accuracy(F, y, cv=probe_cv, seed=seed),
        }
        if name in index:
            rows.append(name)
            j = index[name]
            for ip_name, D in directions.items():
                ip = inner[ip_name]
                Fp = ip.transform_embedding(F)
                fbar = geo.unit(Fp[y == 1].mean(axis=0) - Fp[y == 0].mean(axis=0))
                cos_all = geo.unit(D) @ fbar  # (k,)
                matrices[ip_name].append(cos_all.tolist())
                others = np.delete(cos_all, j)
                rcos = rand @ fbar
                same = float(cos_all[j])
                entry.setdefault("alignment", {})[ip_name] = {
                    "cosine": same,
                    "other_concepts_mean_abs": float(np.abs(others).mean())
                    if others.size
                    else None,
                    "other_concepts_max_abs": float(np.abs(others).max()) if others.size else None,
                    "rank_among_concepts": int(1 + (cos_all > same).sum()),
                    "random_mean_abs": float(np.abs(rcos).mean()),
                    "random_z": float(same / rcos.std(ddof=1)),
                    "random_p_value": float(
                        (1 + (np.abs(rcos) >= abs(same)).sum()) / (n_random + 1)
                    ),
                }
            # f'ᵀḡ'_W ∝ fᵀ mean Δγ_W (the concept's mean logit difference) under every inner
            # product, so the one-threshold probe does not depend on it: computed once.
            ip0 = next(iter(directions))
            entry["unembedding_direction_probe_accuracy"] = geo.threshold_probe_accuracy(
                inner[ip0].transform_embedding(F) @ directions[ip0][j], y
            )
        per[name] = entry
    summary = {}
    for ip_name in directions:
        al = [per[n]["alignment"][ip_name] for n in rows]
        if al:
            summary[ip_name] = {
                "mean_alignment": float(np.mean([a["cosine"] for a in al])),
                "mean_other_concepts_abs": float(
                    np.mean(
                        [
                            a["other_concepts_mean_abs"]
                            for a in al
                            if a["other_concepts_mean_abs"] is not None
                        ]
                    )
                ),
                "mean_random_abs": float(np.mean([a["random_mean_abs"] for a in al])),
                "n_rank1": int(sum(a["rank_among_concepts"] == 1 for a in al)),
                "n_concepts": len(al),
            }
    return {
        "per_concept": per,
        "summary": summary,
        "alignment_rows": rows,
        "alignment_matrix": {k: v for k, v in matrices.items() if v},
    }
