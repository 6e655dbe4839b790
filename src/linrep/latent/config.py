"""``[latent]`` section: the typed configuration of the latent conditional model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["LatentConfig", "MAX_M"]

MAX_M = 20  # 2^20 concept vectors is the largest joint table we ever build (8 MiB in float64)


@dataclass
class LatentConfig:
    """The latent conditional model of Jiang et al. (2024), §1 of ``docs/latent-model.md``.

    m binary concepts C = (C_1..C_m) with joint pmf p(c); a context is a partial assignment
    ξ ∈ {0,1,⋄}^m; the next token y is the full concept vector drawn from p(c | c_core(ξ)).
    """

    m: int = 4
    """Number of binary concepts (1 ≤ m ≤ 20; all 3^m contexts are enumerable up to about m = 11)."""
    kind: Literal["independent", "ising", "bayesnet", "table"] = "independent"
    """Family of p(c): independent Bernoulli, pairwise Ising MRF, Bayesian network, explicit table."""
    names: list[str] | None = None
    """Concept names (default ``c0 .. c{m-1}``), e.g. ``["royalty", "gender"]``."""
    labels: list[list[str]] | None = None
    """Per concept, the labels of its values 0 and 1, e.g. ``[["male", "female"], ...]``."""

    # --- independent -----------------------------------------------------------------------
    p1: list[float] | None = None
    """kind = "independent": P(C_i = 1) for each concept (default 0.5 each)."""

    # --- ising --------------------------------------------------------------------------------
    h: list[float] | None = None
    """kind = "ising": fields h_i; if omitted, drawn h_i ~ N(0, field_sd²) with ``param_seed``."""
    J: list[list[float]] | None = None
    """kind = "ising": m×m couplings, upper triangle used (a symmetric matrix is accepted); if omitted,
    drawn J_ij ~ N(0, coupling_sd²) on the edges of ``graph``."""
    field_sd: float = 1.0
    """Standard deviation of random fields (used only when ``h`` is omitted)."""
    coupling_sd: float = 1.0
    """Standard deviation of random couplings (used only when ``J`` is omitted)."""
    graph: Literal["complete", "random", "chain", "empty"] = "complete"
    """Graph of random couplings: all pairs, Erdős–Rényi with ``edge_prob``, a chain, or none."""
    edges: list[list[int]] | None = None
    """Explicit coupling graph as ``[[i, j], ...]`` (overrides ``graph``); used when ``J`` is omitted."""
    edge_prob: float = 0.5
    """Edge probability of ``graph = "random"``."""
    param_seed: int = 0
    """Seed for randomly drawn parameters (h, J, graph)."""

    # --- bayesnet -----------------------------------------------------------------------------
    parents: list[list[int]] | None = None
    """kind = "bayesnet": for each concept, the indices of its parents (must form a DAG)."""
    cpt: list[list[float]] | None = None
    """kind = "bayesnet": for each concept i, P(C_i = 1 | parents) for each of the 2^|pa(i)| parent
    configurations, indexed by Σ_k pa_k · 2^k (k-th listed parent is bit k)."""

    # --- table --------------------------------------------------------------------------------
    table: list[float] | None = None
    """kind = "table": p(c) for all 2^m concept vectors, in token order (c_i = bit i of the index)."""

    # --- contexts -----------------------------------------------------------------------------
    contexts: Literal["all", "sampled"] = "all"
    """"all": every partial assignment (3^m before filters); "sampled": ``n_contexts`` draws of
    (core-set size k ~ U{min_known..max_known}, core set uniform of size k, core values from p(c))."""
    min_known: int = 0
    """Keep contexts with at least this many known concepts."""
    max_known: int | None = None
    """Keep contexts with at most this many known concepts (default m)."""
    n_contexts: int = 4096
    """contexts = "sampled": number of draws (duplicates merge; weights become their frequencies)."""
    context_seed: int = 0
    """contexts = "sampled": seed of the draws."""
    weights: Literal["uniform", "known_count"] = "uniform"
    """Context weights: uniform over the context set, or uniform over the number of known concepts
    and then uniform within (ignored for sampled contexts, whose weights are draw frequencies)."""

    # --- tokens -------------------------------------------------------------------------------
    synonyms: list[float] | None = None
    """Non-injective vocabulary: every concept vector gets len(synonyms) tokens with these relative
    probabilities (normalised), e.g. ``[0.7, 0.3]``. Default: one token per concept vector."""

    max_cells: int = 2**28
    """Largest exact table (contexts × tokens) to build; beyond it, use ``contexts = "sampled"``."""

    def __post_init__(self) -> None:
        m = self.m
        if not 1 <= m <= MAX_M:
            raise ConfigError(f"latent.m = {m} is out of range; use 1 ≤ m ≤ {MAX_M}")
        if self.max_known is None:
            self.max_known = m
        if not 0 <= self.min_known <= self.max_known <= m:
            raise ConfigError(
                f"latent.min_known = {self.min_known}, max_known = {self.max_known} must satisfy "
                f"0 ≤ min_known ≤ max_known ≤ m = {m}"
            )
        if self.names is not None:
            if len(self.names) != m:
                raise ConfigError(f"latent.names has {len(self.names)} entries; it needs m = {m}")
            if len(set(self.names)) != m:
                raise ConfigError("latent.names has duplicates; give every concept its own name")
        if self.labels is not None and (
            len(self.labels) != m or any(len(pair) != 2 for pair in self.labels)
        ):
            raise ConfigError(f'latent.labels must be m = {m} pairs like ["male", "female"]')
        if self.n_contexts < 1:
            raise ConfigError(f"latent.n_contexts = {self.n_contexts} must be ≥ 1")
        if not 0.0 <= self.edge_prob <= 1.0:
            raise ConfigError(f"latent.edge_prob = {self.edge_prob} must be in [0, 1]")
        if self.field_sd < 0 or self.coupling_sd < 0:
            raise ConfigError("latent.field_sd and latent.coupling_sd must be ≥ 0")
        if self.synonyms is not None:
            if not self.synonyms or any(w <= 0 for w in self.synonyms):
                raise ConfigError("latent.synonyms must be a non-empty list of positive weights")
        self._check_kind_keys()

    def _check_kind_keys(self) -> None:
        used = {
            "independent": {"p1"},
            "ising": {"h", "J"},
            "bayesnet": {"parents", "cpt"},
            "table": {"table"},
        }
        for kind, keys in used.items():
            if kind == self.kind:
                continue
            for key in keys:
                if getattr(self, key) is not None:
                    raise ConfigError(
                        f'latent.{key} is a parameter of kind = "{kind}" but kind = "{self.kind}"; '
                        f'remove it or set kind = "{kind}"'
                    )

    @property
    def concept_names(self) -> list[str]:
        """Concept names, defaulting to ``c0 .. c{m-1}``."""
        return list(self.names) if self.names is not None else [f"c{i}" for i in range(self.m)]
