"""The paper's theory as executable code (``docs/theory.md`` §3).

* ``logodds.py`` — the log-odds-matching theorem: :func:`log_odds_construction` builds f, g that match
  the true log-odds exactly (independent concepts) and :func:`check_log_odds_matching` returns the
  numbers (mismatch ε, steering-vector spread, span of f); :func:`epsilon_bound` compares the measured
  ‖Δg − Δg'‖ of any model with the bound (2ε + δ)/σ̃ of the approximate version (derived in the
  module docstring).
* ``maxmargin.py`` — the implicit-bias argument: :func:`max_margin_direction` solves the homogeneous
  hard-margin SVM exactly (Lawson–Hanson least-distance programme via ``scipy.optimize.nnls``);
  :func:`max_margin_alignment` / :func:`max_margin_hook` compare trained steering vectors with the
  max-margin direction of each concept, at the end of training or over steps;
  :func:`least_distance` is the shared least-distance (min ‖w‖, Gw ≥ 1) solver.
* ``implicit_bias.py`` — the theorem for fixed features: :func:`softmax_max_margin` solves the
  support-constrained max-margin programme that gradient descent on softmax cross-entropy converges
  to (in direction, like 1/log t); :class:`ImplicitBiasReference` adds the pair-SVM, concept-SVM and
  mean-difference baselines; :func:`implicit_bias_hook` follows them over training.

Shapes: ``f: (n_contexts, d)`` embeddings of ``latent.contexts``, ``g: (V, d)`` unembeddings.
"""

from __future__ import annotations

from .implicit_bias import (
    IMPLICIT_BIAS_KEYS,
    ImplicitBiasReference,
    SoftmaxMaxMargin,
    implicit_bias_hook,
    implicit_bias_metrics,
    pair_max_margin,
    pair_mean_difference,
    softmax_max_margin,
)
from .logodds import (
    MatchingModel,
    check_log_odds_matching,
    epsilon_bound,
    excess_loss,
    log_odds_construction,
)
from .maxmargin import (
    MaxMargin,
    concept_max_margin,
    least_distance,
    max_margin_alignment,
    max_margin_direction,
    max_margin_hook,
)

__all__ = [
    "MatchingModel",
    "log_odds_construction",
    "check_log_odds_matching",
    "epsilon_bound",
    "excess_loss",
    "MaxMargin",
    "max_margin_direction",
    "concept_max_margin",
    "max_margin_alignment",
    "max_margin_hook",
    "least_distance",
    "SoftmaxMaxMargin",
    "softmax_max_margin",
    "pair_max_margin",
    "pair_mean_difference",
    "ImplicitBiasReference",
    "implicit_bias_metrics",
    "implicit_bias_hook",
    "IMPLICIT_BIAS_KEYS",
]
