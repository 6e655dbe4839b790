"""Concept geometry: the one implementation used by the simulations and by real language models.

Everything works on plain numpy arrays in float64 (float32 inputs are read row by row as needed):

* **Inner products** (``inner.py``): :class:`EuclideanInnerProduct`, :class:`CausalInnerProduct`
  (Park et al.: ⟨u, v⟩_C = uᵀ Cov(γ)⁻¹ v, whitening g ↦ (g − μ) Cov^{−1/2}, contexts f ↦ f Cov^{1/2}),
  :class:`RandomInnerProduct`. Each maps unembedding-side vectors (``transform_unembedding``,
  ``transform_vectors``) and embedding-side vectors (``transform_embedding``) into coordinates where
  the dot product is that inner product; :func:`get_inner_product` builds one by name.
* **Steering vectors and cosines** (``steering.py``): Δg = g(y1) − g(y0) for (P, 2) pairs, concept
  directions (unit mean), pairwise / same-concept / cross-concept cosines, cosine matrices and their
  mean |off-diagonal|, leave-one-out cosines and projections, block structure.
* **Categorical concepts** (``categorical.py``, ``hierarchy.py``): category vectors ℓ_w (Park et al.
  2024: normalised Ledoit–Wolf Σ_w⁻¹m_w, or the mean), edge cosines cos(ℓ_p, ℓ_c − ℓ_p) and
  cos(ℓ_p, ℓ_c), sibling differences, simplices, and a category tree's nulls (random subsets, random
  token sets, shuffled unembedding, unrelated categories) with Holm-adjusted tests.
* **Nulls** (``nulls.py``): random token pairs, shuffled unembedding, random word-pair directions,
  random inner-product draws, z-scores, quantiles and p-values.
* **Test statistics** (``stats.py``): word clusters of pairs sharing words, shared-out (leave
  neighbours out) directions and cross-fitting folds, the word-cluster sign-flip test of the LOO
  projection, the label-permutation null of an alignment, Holm's adjustment, cosine summaries of direction sets.
* **Intervals** (``intervals.py``): seed-based t, bootstrap and cluster-bootstrap 95 % intervals.
* **Probes** (``probes.py``): cross-validated logistic-regression accuracy.
* **Identifiable subspace** (``subspace.py``): span{f(ξ)} (numerical rank F, streaming Gram, batched
  over runs) and the projection P_F of unembedding-side vectors onto it.
* **Simulations** (``simulation.py``): :func:`simulation_metrics` for one trained model of a
  :class:`~linrep.latent.LatentModel` and :func:`metric_hook`, a learner ``MetricFn``.

Shapes: unembedding ``g: (V, d)`` (Hugging Face layout), embeddings ``f: (n, d)``, pairs ``(P, 2)``
as (base y0, target y1); steering vectors ``(P, d)``.

Example::

    from linrep.geometry import CausalInnerProduct, steering_vectors, loo_cosines
    ip = CausalInnerProduct().fit(gamma, rows=normal_tokens)      # gamma: (V, d)
    deltas = steering_vectors(gamma, pairs, inner=ip)              # (P, d), whitened
    print(loo_cosines(deltas).mean())
"""

from __future__ import annotations

from .analogy import analogy_accuracy
from .categorical import (
    ESTIMATORS,
    category_vectors,
    edge_cosines,
    sibling_cosines,
    simplex_singular_values,
)
from .hierarchy import CategoryTree, HierarchyAnalysis, analyze_tree
from .inner import (
    INNER_PRODUCTS,
    CausalInnerProduct,
    EuclideanInnerProduct,
    InnerProduct,
    RandomInnerProduct,
    centred_covariance,
    get_inner_product,
)
from .intervals import (
    Interval,
    bootstrap_interval,
    cluster_bootstrap_interval,
    seed_interval,
    support_of,
)
from .nulls import (
    NullTest,
    mean_loo_cosine,
    null_test,
    random_inner_product_directions,
    random_pair_means,
    random_pair_null,
    relabelled_pair_means,
    shuffled_unembedding_null,
)
from .probes import probe_accuracy, threshold_probe_accuracy
from .simulation import HOOK_KEYS, SimulationIndex, metric_hook, simulation_metrics
from .stats import (
    CosineSummary,
    Fold,
    cosine_summary,
    cross_fit_folds,
    holm,
    label_permutation_null,
    loo_sign_flip_test,
    mean_difference_direction,
    shared_out_directions,
    shared_out_projections,
    word_clusters,
)
from .steering import (
    ConceptDirection,
    block_means,
    block_structure,
    check_pairs,
    concept_direction,
    concept_directions,
    cosine,
    cosine_matrix,
    cross_concept_cosines,
    loo_cosines,
    loo_projections,
    mean_abs_offdiag,
    pairwise_cosines,
    same_concept_cosine,
    steering_vectors,
    unit,
)
from .subspace import (
    DEFAULT_RTOL,
    GramAccumulator,
    Subspace,
    identifiable_subspace,
    row_space,
    subspace_from_gram,
)

__all__ = [
    "analogy_accuracy",
    "threshold_probe_accuracy",
    # inner products
    "INNER_PRODUCTS",
    "InnerProduct",
    "EuclideanInnerProduct",
    "CausalInnerProduct",
    "RandomInnerProduct",
    "get_inner_product",
    "centred_covariance",
    # steering vectors, directions, cosines
    "ConceptDirection",
    "check_pairs",
    "steering_vectors",
    "unit",
    "concept_direction",
    "concept_directions",
    "cosine",
    "cosine_matrix",
    "pairwise_cosines",
    "same_concept_cosine",
    "cross_concept_cosines",
    "mean_abs_offdiag",
    "loo_cosines",
    "loo_projections",
    "block_structure",
    "block_means",
    # categorical concepts and hierarchy
    "ESTIMATORS",
    "category_vectors",
    "edge_cosines",
    "sibling_cosines",
    "simplex_singular_values",
    "CategoryTree",
    "HierarchyAnalysis",
    "analyze_tree",
    # nulls and intervals
    "random_pair_null",
    "shuffled_unembedding_null",
    "mean_loo_cosine",
    "null_test",
    "NullTest",
    "Interval",
    "seed_interval",
    "support_of",
    "bootstrap_interval",
    "cluster_bootstrap_interval",
    "random_pair_means",
    "relabelled_pair_means",
    "random_inner_product_directions",
    # test statistics respecting shared words
    "holm",
    "word_clusters",
    "shared_out_directions",
    "shared_out_projections",
    "Fold",
    "cross_fit_folds",
    "loo_sign_flip_test",
    "mean_difference_direction",
    "label_permutation_null",
    "CosineSummary",
    "cosine_summary",
    # probes
    "probe_accuracy",
    # identifiable subspace
    "DEFAULT_RTOL",
    "Subspace",
    "GramAccumulator",
    "identifiable_subspace",
    "row_space",
    "subspace_from_gram",
    # simulations (latent conditional model)
    "simulation_metrics",
    "metric_hook",
    "SimulationIndex",
    "HOOK_KEYS",
]
