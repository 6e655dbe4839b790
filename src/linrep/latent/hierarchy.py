"""Hierarchical concepts in the latent conditional model: a child concept exists only under its parent.

Concepts 0..h−1 form a forest: concept i has parent π(i) (or none, a root), and C_i is *defined only
when C_π(i) = 1* — "mammal vs other animal" means nothing for a plant. Concepts h..m−1 are ``n_free``
independent concepts defined for every token (size, colour, …: the variation inside a category).
A concept vector c ∈ {0,1}^m is **valid** when every child of a parent at 0 is stored as 0 (its
"undefined"), and

    p(c) = Π_roots Bern(c_r; q_r) · Π_children [c_π = 1] Bern(c_i; q_i) · Π_free Bern(c_f; q_f)

(zero on invalid vectors). The vocabulary is the valid vectors only (token index ↔ valid vector in
increasing vector order), so no token is impossible in every context. Contexts are partial
assignments ξ ∈ {0,1,⋄}^m that respect the hierarchy: a child is known only when its parent is known
to be 1 (ξ_π(i) = 0 leaves C_i ⋄, meaning "does not exist"). p(y | ξ) ∝ p(c(y)) on the tokens
consistent with ξ — the same exact table as :class:`~linrep.latent.LatentModel`.

Categories: for a concept i, ``i`` = {y : c_i(y) = 1} (its ancestors are 1 by validity) and, for a
child, ``¬i`` = {y : c_π(y) = 1, c_i(y) = 0}; both are subsets of the parent's category, so the
edges π → i and π → ¬i form a category tree (:meth:`HierarchicalLatentModel.category_tree`).

The model exposes what the learner reads (``contexts``, ``weights``, ``p_next``, ``n_tokens``,
``n_contexts``, ``sample``, ``config``), so :func:`linrep.learn.fit` trains on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import ConfigError
from .contexts import UNKNOWN, all_contexts, context_weights, filter_by_known
from .distributions import concept_vectors

__all__ = ["HierarchyConfig", "HierarchicalLatentModel"]


@dataclass(frozen=True)
class HierarchyConfig:
    """A forest of binary concepts plus free concepts.

    Attributes:
        parents: per hierarchical concept, its parent's index or −1 (a root); parents come first.
        names: names of the hierarchical concepts (default ``h0 ..``); free ones are ``free0 ..``.
        q: P(C_i = 1 | C_π(i) = 1) (roots: P(C_i = 1)); default 0.5 each.
        n_free: independent concepts defined for every token.
        q_free: P(C_f = 1) of the free concepts.
        min_known, max_known: keep contexts with that many known concepts (max default m).
        weights: context weights, ``uniform`` or ``known_count``.
    """

    parents: list[int] = field(default_factory=lambda: [-1, 0, 1, -1, 3])
    names: list[str] | None = None
    q: list[float] | None = None
    n_free: int = 3
    q_free: float = 0.5
    min_known: int = 0
    max_known: int | None = None
    weights: Literal["uniform", "known_count"] = "uniform"

    def __post_init__(self) -> None:
        h = len(self.parents)
        if h < 2 or any(not -1 <= p < i for i, p in enumerate(self.parents)):
            raise ConfigError(
                f"hierarchy parents {self.parents}: each entry must be −1 (a root) or the index of "
                "an earlier concept, and there must be ≥ 2 concepts"
            )
        if all(p == -1 for p in self.parents):
            raise ConfigError("hierarchy parents: no concept has a parent; give a child a parent")
        for key in ("names", "q"):
            v = getattr(self, key)
            if v is not None and len(v) != h:
                raise ConfigError(f"hierarchy.{key} has {len(v)} entries; it needs {h}")
        qs = [*(self.q or []), self.q_free]
        if any(not 0 < x < 1 for x in qs):
            raise ConfigError("hierarchy probabilities q, q_free must lie strictly in (0, 1)")
        if self.n_free < 0 or h + self.n_free > 14:
            raise ConfigError("hierarchy: need 0 ≤ n_free and at most 14 concepts in all")

    @property
    def m(self) -> int:
        return len(self.parents) + self.n_free

    @property
    def concept_names(self) -> list[str]:
        h = len(self.parents)
        base = list(self.names) if self.names is not None else [f"h{i}" for i in range(h)]
        return base + [f"free{j}" for j in range(self.n_free)]


class HierarchicalLatentModel:
    """Exact tables of the hierarchical latent model (see the module docstring).

    Attributes:
        config: the :class:`HierarchyConfig`. names: (m,) concept names.
        vector_index: (V,) index t of each token's concept vector (c_i = bit i of t).
        tokens: (V, m) int8 concept vectors. p_tokens: (V,) p(c(y)).
        contexts: (n, m) int8, −1 for ⋄. weights: (n,). p_next: (n, V), rows sum to 1.
    """

    def __init__(self, config: HierarchyConfig):
        self.config = config
        self.m = config.m
        self.names = config.concept_names
        c = concept_vectors(self.m)  # (2^m, m)
        p = _log_p(config, c)
        valid = np.isfinite(p)
        self.vector_index = np.flatnonzero(valid)
        self.tokens = c[valid]
        self.p_tokens = np.exp(p[valid])
        self.p_tokens /= self.p_tokens.sum()
        ctx = _hierarchical_contexts(config)
        w = context_weights(ctx, config.weights)
        self.p_next, possible = _table(ctx, self.tokens, self.p_tokens)
        self.contexts, self.weights = ctx[possible], w[possible] / w[possible].sum()
        self.p_next = self.p_next[possible]
        self._cdf: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_contexts(self) -> int:
        return int(self.contexts.shape[0])

    def entropy(self) -> float:
        """H(Y | X) in nats (the cross-entropy floor)."""
        p = self.p_next
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        return float(self.weights @ h)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws (context index, token): ξ ~ weights, y ~ p(· | ξ) by inverse CDF."""
        if n < 1:
            raise ConfigError(f"number of samples must be ≥ 1, got {n}")
        rng = np.random.default_rng(seed)
        ctx = rng.choice(self.n_contexts, size=n, p=self.weights)
        if self._cdf is None:
            self._cdf = np.cumsum(self.p_next, axis=1)
            self._cdf[:, -1] = 1.0
        u = rng.random(n)
        tok = (self._cdf[ctx] <= u[:, None]).sum(axis=1)
        return ctx.astype(np.int64), np.minimum(tok, self.n_tokens - 1).astype(np.int64)

    def category_tree(self):
        """The categories i / ¬i as token index sets and the edges π → i, π → ¬i.

        Returns:
            :class:`~linrep.geometry.hierarchy.CategoryTree` over token indices.
        """
        from ..geometry.hierarchy import CategoryTree

        names, members, edges = [], [], []
        node: dict[tuple[int, int], int] = {}
        for i, p in enumerate(self.config.parents):
            for v in (1, 0) if p >= 0 else (1,):
                inside = self.tokens[:, i] == v
                if p >= 0:
                    inside &= self.tokens[:, p] == 1
                node[(i, v)] = len(names)
                names.append(self.names[i] if v else f"¬{self.names[i]}")
                members.append(np.flatnonzero(inside))
                if p >= 0:
                    edges.append((node[(p, 1)], node[(i, v)]))
        return CategoryTree(tuple(names), tuple(members), tuple(edges))


def _log_p(cfg: HierarchyConfig, c: np.ndarray) -> np.ndarray:
    """log p(c) for every vector (2^m, m); −inf for invalid vectors."""
    h = len(cfg.parents)
    q = np.full(h, 0.5) if cfg.q is None else np.asarray(cfg.q, float)
    logp = np.zeros(c.shape[0])
    with np.errstate(divide="ignore"):
        for i, p in enumerate(cfg.parents):  # loop over concepts, vectorised over vectors
            bern = np.where(c[:, i] == 1, np.log(q[i]), np.log1p(-q[i]))
            if p < 0:
                logp += bern
            else:
                defined = c[:, p] == 1
                logp += np.where(defined, bern, np.where(c[:, i] == 0, 0.0, -np.inf))
        free = c[:, h:].astype(float)
        logp += (free * np.log(cfg.q_free) + (1 - free) * np.log1p(-cfg.q_free)).sum(axis=1)
    return logp


def _hierarchical_contexts(cfg: HierarchyConfig) -> np.ndarray:
    """All partial assignments with a child known only when its parent is known to be 1."""
    m = cfg.m
    hi = m if cfg.max_known is None else cfg.max_known
    if not 0 <= cfg.min_known <= hi <= m:
        raise ConfigError(f"hierarchy min_known/max_known must satisfy 0 ≤ min ≤ max ≤ m = {m}")
    ctx = filter_by_known(all_contexts(m), cfg.min_known, hi)
    ok = np.ones(ctx.shape[0], dtype=bool)
    for i, p in enumerate(cfg.parents):
        if p >= 0:
            ok &= (ctx[:, i] == UNKNOWN) | (ctx[:, p] == 1)
    return ctx[ok]


def _table(ctx: np.ndarray, tokens: np.ndarray, p_tokens: np.ndarray):
    """p(y | ξ) ∝ p(c(y)) on the tokens that agree with every known concept of ξ; (n, V)."""
    known = ctx != UNKNOWN  # (n, m)
    agree = np.all(~known[:, None, :] | (tokens[None, :, :] == ctx[:, None, :]), axis=2)
    table = agree * p_tokens[None, :]
    z = table.sum(axis=1)
    possible = z > 0
    return table / np.where(possible, z, 1.0)[:, None], possible
