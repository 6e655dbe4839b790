"""The latent conditional model: exact next-token table, log-odds, counterfactual pairs, sampler.

Notation (``docs/latent-model.md`` §1): a context ξ fixes the core concepts c_core(ξ) and leaves the others
⋄; the next token y carries the full concept vector c(y), so

    p(y | ξ) = p(c(y) | c_core(ξ)) · w(y)          (zero if c(y) contradicts ξ),

where w(y) is the probability of y among the tokens that share its concept vector (1 for the default
bijection token ↔ concept vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import save_npz
from .config import LatentConfig
from .contexts import (
    UNKNOWN,
    all_contexts,
    context_weights,
    encode,
    filter_by_known,
    sample_contexts,
)
from .distributions import concept_vectors, log_p_concepts

__all__ = ["LatentModel", "ConceptRegime", "SMALL_TABLE", "consistent_mass"]

REGIME_TOL = 1e-8  # log-odds equal up to this many nats count as "constant"
SMALL_TABLE = 2**22
"""Sampled context sets with at most this many (context, token) cells use the exact table for
sampling (and the learner for its evaluation); larger ones are handled table-free."""


@dataclass(frozen=True)
class ConceptRegime:
    """Whether concept i is in the log-odds-matching regime of the theory (paper §3.1).

    The pair log-odds of a counterfactual pair (y0, y1) of concept i in a context ξ with C_i = ⋄ is
    log p(y1|ξ) − log p(y0|ξ). The theorem needs it to be one constant α_i over every such (ξ, pair).
    """

    name: str
    in_regime: bool
    """True iff the pair log-odds are constant (spread ≤ 1e-8) over all (ξ with C_i = ⋄, pair)."""
    alpha: float
    """Mean pair log-odds (the α_i of the theorem when ``in_regime``)."""
    pair_log_odds_spread: float
    """max − min of the pair log-odds."""
    marginal_log_odds_spread: float
    """max − min over contexts with C_i = ⋄ of log P(C_i=1|ξ)/P(C_i=0|ξ)."""


class LatentModel:
    """Exact tables of a latent conditional model (build with :meth:`from_config`).

    Attributes:
        config: the resolved :class:`LatentConfig`.
        names: concept names (m,).
        vectors: (2^m, m) int8, every concept vector in token order (c_i = bit i of the index).
        p_concepts: (2^m,) float64, p(c) in token order.
        token_vector: (V,) int64, the concept-vector index c(y) of every token.
        token_prob: (V,) float64, w(y): probability of y among tokens with the same concept vector.
        tokens: (V, m) int8, the concept vector of every token (0/1).
        contexts: (n, m) int8, the context set, −1 for ⋄.
        weights: (n,) float64, context weights (sum to 1).
        p_next: (n, V) float64, p(y | ξ); every row sums to 1.
    """

    def __init__(self, config: LatentConfig):
        self.config = config
        m = config.m
        self.m = m
        self.names = config.concept_names
        self.vectors = concept_vectors(m)
        self.p_concepts = np.exp(log_p_concepts(config))
        self.p_concepts /= self.p_concepts.sum()

        n_syn = 1 if config.synonyms is None else len(config.synonyms)
        syn = np.ones(1) if config.synonyms is None else np.asarray(config.synonyms, float)
        # token y = vector_index * n_syn + synonym_index
        self.token_vector = np.repeat(np.arange(2**m, dtype=np.int64), n_syn)
        self.token_prob = np.tile(syn / syn.sum(), 2**m)
        self.tokens = self.vectors[self.token_vector]

        if config.contexts == "all":
            n_ctx = _count_contexts(m, config.min_known, config.max_known)
            self._check_size(n_ctx)
            ctx = filter_by_known(all_contexts(m), config.min_known, config.max_known)
            w = context_weights(ctx, config.weights)
        else:
            ctx, w = sample_contexts(
                m,
                config.n_contexts,
                self.p_concepts,
                config.min_known,
                config.max_known,
                config.context_seed,
            )
        self._p_next: np.ndarray | None = None
        cells = ctx.shape[0] * self.token_vector.size
        #: True if the exact next-token table p(y | ξ) may be built (n_contexts × V ≤ max_cells).
        #: Sampled contexts beyond that are *table-free*: their core values come from p(c), so
        #: every one is possible, and every quantity is computed without the table.
        self.tabulated = cells <= config.max_cells
        #: True if :meth:`sample` and the learner use the table (n_contexts × V ≤ SMALL_TABLE, or
        #: all contexts); larger sampled context sets use the table-free sampler.
        self.small = config.contexts == "all" or cells <= SMALL_TABLE
        self.n_impossible_contexts = 0
        if config.contexts == "all":  # built now: contexts of probability 0 must be dropped
            self._p_next, possible = _next_token_table(
                ctx, self.token_vector, self.token_prob, self.p_concepts
            )
            self.n_impossible_contexts = int((~possible).sum())
            if self.n_impossible_contexts:  # drop contexts of probability 0 (p(y|ξ) undefined)
                ctx, w, self._p_next = ctx[possible], w[possible], self._p_next[possible]
        self.contexts = ctx
        if w.size == 0:
            raise ConfigError(
                "no context has positive probability; check latent.min_known/max_known"
            )
        self.weights = w / w.sum()
        self._cdf: np.ndarray | None = None
        self._sampler = None

    @property
    def p_next(self) -> np.ndarray:
        """(n, V) float64 p(y | ξ) for every context (built on first use; needs :attr:`tabulated`)."""
        if self._p_next is None:
            self._check_size(self.n_contexts)
            self._p_next, _ = _next_token_table(
                self.contexts, self.token_vector, self.token_prob, self.p_concepts
            )
        return self._p_next

    def next_token_rows(self, rows: np.ndarray) -> np.ndarray:
        """p(y | ξ) for the contexts ``rows`` only, (len(rows), V) float64 (no full table needed)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._p_next is not None:
            return self._p_next[rows]
        table, _ = _next_token_table(
            self.contexts[rows], self.token_vector, self.token_prob, self.p_concepts
        )
        return table

    @property
    def sampler(self):
        """The table-free :class:`~linrep.latent.sampling.ConceptSampler` of this model (cached)."""
        if self._sampler is None:
            from .sampling import ConceptSampler

            self._sampler = ConceptSampler(self)
        return self._sampler

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, config: LatentConfig | dict[str, Any]) -> LatentModel:
        """Build from a :class:`LatentConfig` or the raw ``[latent]`` table of a config file."""
        if not isinstance(config, LatentConfig):
            from ..config import section_from_dict

            config = section_from_dict(LatentConfig, config, "latent")
        return cls(config)

    @classmethod
    def from_toml(cls, path: str | Path) -> LatentModel:
        """Build from the ``[latent]`` section of a TOML config file."""
        from ..config import load_toml

        return cls.from_config(load_toml(path).get("latent", {}))

    def _check_size(self, n_ctx: int) -> None:
        V = 2**self.m * (1 if self.config.synonyms is None else len(self.config.synonyms))
        cells = n_ctx * V
        if cells > self.config.max_cells:
            gib = cells * 8 / 2**30
            raise ConfigError(
                f"m = {self.m} with {n_ctx:,} contexts × {V:,} tokens needs {gib:,.1f} GiB for the exact "
                f"table (limit latent.max_cells = {self.config.max_cells:,} cells); set "
                f'latent.contexts = "sampled" and train with objective = "sampled" and a '
                f"batch_size (table-free), or restrict max_known"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def n_contexts(self) -> int:
        return self.contexts.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.tokens.shape[0]

    # ------------------------------------------------------------------ exact quantities
    def concept_marginals(self) -> np.ndarray:
        """P(C_i = 1 | ξ) for every context and concept, (n, m)."""
        return self.p_next @ self.tokens.astype(np.float64)

    def log_odds(self) -> np.ndarray:
        """Conditional log-odds log P(C_i=1|ξ)/P(C_i=0|ξ), (n, m); ±inf where C_i is known."""
        q = np.clip(self.concept_marginals(), 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.log(q) - np.log1p(-q)
        known = self.contexts != UNKNOWN
        return np.where(known, np.where(self.contexts == 1, np.inf, -np.inf), lo)

    def entropy(self) -> float:
        """Conditional entropy H(Y | X) = Σ_ξ w(ξ) H(p(· | ξ)) in nats: the floor of cross-entropy."""
        return float(self.weights @ self.row_entropy())

    def row_entropy(self, rows: np.ndarray | None = None) -> np.ndarray:
        """H(p(· | ξ)) for every context (or the contexts ``rows``), (n,) nats.

        Table-free models compute the rows in blocks (O(block · V) memory, O(n · V) time).
        """
        rows = np.arange(self.n_contexts) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.empty(rows.size)
        block = rows.size if self._p_next is not None else max(1, SMALL_TABLE // self.n_tokens)
        for s in range(0, rows.size, block):
            p = self.next_token_rows(rows[s : s + block])
            with np.errstate(divide="ignore", invalid="ignore"):
                out[s : s + block] = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        return out

    def counterfactual_pairs(self, i: int) -> np.ndarray:
        """Token pairs (y0, y1) whose concept vectors differ only in C_i (y0 has C_i = 0), (P, 2).

        For the default vocabulary this is the 2^(m−1) pairs (t, t + 2^i) with bit i of t clear; with
        synonyms every token of c(y0) is paired with every token of c(y1).
        """
        self._check_concept(i)
        v0 = np.flatnonzero(((np.arange(2**self.m) >> i) & 1) == 0)
        n_syn = self.n_tokens // 2**self.m
        s = np.arange(n_syn)
        y0 = (v0[:, None, None] * n_syn + s[None, :, None]).repeat(n_syn, axis=2)
        y1 = ((v0 + (1 << i))[:, None, None] * n_syn + s[None, None, :]).repeat(n_syn, axis=1)
        return np.stack([y0.ravel(), y1.ravel()], axis=1)

    def all_counterfactual_pairs(self) -> list[np.ndarray]:
        """:meth:`counterfactual_pairs` for every concept."""
        return [self.counterfactual_pairs(i) for i in range(self.m)]

    def concept_index(self, concept: int | str) -> int:
        """Index of a concept given by name or index (clear error if unknown)."""
        if isinstance(concept, str):
            if concept not in self.names:
                from ..errors import did_you_mean

                raise ConfigError(f"unknown concept '{concept}'{did_you_mean(concept, self.names)}")
            return self.names.index(concept)
        self._check_concept(concept)
        return int(concept)

    def _check_concept(self, i: int) -> None:
        if not 0 <= i < self.m:
            raise ConfigError(
                f"concept index {i} is out of range; this model has m = {self.m} concepts"
            )

    def regimes(self) -> list[ConceptRegime]:
        """Which concepts are in the log-odds-matching regime, computed exactly from ``p_next``."""
        out = []
        q = self.concept_marginals()
        for i in range(self.m):
            rows = self.contexts[:, i] == UNKNOWN
            pairs = self.counterfactual_pairs(i)
            if not rows.any():
                out.append(ConceptRegime(self.names[i], True, float("nan"), 0.0, 0.0))
                continue
            p0 = self.p_next[np.ix_(rows, pairs[:, 0])]
            p1 = self.p_next[np.ix_(rows, pairs[:, 1])]
            ok = (p0 > 0) & (p1 > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                lo = np.log(p1[ok]) - np.log(p0[ok])
                mq = q[rows, i]
                mlo = np.log(mq) - np.log1p(-mq)
            spread = float(lo.max() - lo.min()) if lo.size else 0.0
            mfin = mlo[np.isfinite(mlo)]
            mspread = float(mfin.max() - mfin.min()) if mfin.size else 0.0
            out.append(
                ConceptRegime(
                    name=self.names[i],
                    in_regime=spread <= REGIME_TOL,
                    alpha=float(lo.mean()) if lo.size else float("nan"),
                    pair_log_odds_spread=spread,
                    marginal_log_odds_spread=mspread,
                )
            )
        return out

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` (context, next token) pairs: ξ ~ weights, y ~ p(· | ξ).

        Uses the exact table when :attr:`small`, otherwise the table-free exact sampler of
        :mod:`linrep.latent.sampling` (same distribution, other random stream).

        Returns:
            (context indices (n,) int64 into ``contexts``, token ids (n,) int64).
        """
        if n < 1:
            raise ConfigError(f"number of samples must be ≥ 1, got {n}")
        if not self.small:
            from .sampling import sample_pairs

            return sample_pairs(self, n, seed, self.sampler)
        rng = np.random.default_rng(seed)
        ctx = rng.choice(self.n_contexts, size=n, p=self.weights)
        u = rng.random(n)
        if self._cdf is None:
            self._cdf = np.cumsum(self.p_next, axis=1)
            self._cdf[:, -1] = 1.0
        tok = np.empty(n, dtype=np.int64)
        chunk = max(1, 2**24 // self.n_tokens)
        for s in range(0, n, chunk):  # chunks bound memory; each chunk is fully vectorised
            c, uu = ctx[s : s + chunk], u[s : s + chunk]
            tok[s : s + chunk] = (self._cdf[c] <= uu[:, None]).sum(axis=1)
        return ctx.astype(np.int64), np.minimum(tok, self.n_tokens - 1)

    # ------------------------------------------------------------------ output
    def summary(self) -> dict[str, Any]:
        """Plain-data summary: sizes, conditional entropy and the regime of every concept."""
        return {
            "m": self.m,
            "kind": self.config.kind,
            "concepts": self.names,
            "labels": self.config.labels,
            "n_tokens": self.n_tokens,
            "n_contexts": self.n_contexts,
            "n_impossible_contexts_dropped": self.n_impossible_contexts,
            "conditional_entropy_nats": self.entropy(),
            "tabulated": self.tabulated,
            # the regime report reads pair log-odds off the exact table (None when table-free)
            "regimes": [r.__dict__ for r in self.regimes()] if self.tabulated else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``latent.npz`` with ``tokens``, ``contexts``, ``p_next`` (if :attr:`tabulated`),
        ``p_concepts``, ``weights``."""
        table = {"p_next": self.p_next} if self.tabulated else {}
        return save_npz(
            path,
            tokens=self.tokens,
            contexts=self.contexts,
            **table,
            p_concepts=self.p_concepts,
            weights=self.weights,
            names=np.array(self.names),
        )


def _count_contexts(m: int, lo: int, hi: int) -> int:
    from math import comb

    return sum(comb(m, k) * 2**k for k in range(lo, hi + 1))


def _next_token_table(
    contexts: np.ndarray, token_vector: np.ndarray, token_prob: np.ndarray, p_concepts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """p(y | ξ) for all contexts and tokens, and which contexts have positive probability.

    Row ξ is p_tok masked to the tokens consistent with ξ (``c(y) & K == V`` on bit masks), then
    normalised. Rows are processed in cache-sized blocks (int32 bit arithmetic), which is ~5× faster
    than one giant temporary for m = 10.
    """
    known, values = encode(contexts)
    known, values = known.astype(np.int32), values.astype(np.int32)
    tv = token_vector.astype(np.int32)
    p_tok = p_concepts[token_vector] * token_prob  # (V,)
    n, V = contexts.shape[0], tv.size
    table = np.empty((n, V))
    block = max(1, 2**21 // V)
    for s in range(0, n, block):  # blocks of rows; each block is one vectorised operation
        table[s : s + block] = consistent_mass(
            known[s : s + block], values[s : s + block], tv, p_tok
        )
    z = table.sum(axis=1)
    possible = z > 0
    table /= np.where(possible, z, 1.0)[:, None]
    return table, possible


def consistent_mass(known, values, token_vector, p_tok):
    """p_tok(y) on the tokens consistent with each context, 0 elsewhere: (..., V).

    ``known``/``values``: (...) bit masks of the contexts (:func:`~linrep.latent.contexts.encode`),
    ``token_vector``: (V,) concept-vector index of every token, ``p_tok``: (V,) p(c(y)) w(y).
    Normalising a row gives p(y | ξ). Written with operators only, so numpy arrays and torch
    tensors (on any device) both work.
    """
    consistent = (token_vector & known[..., None]) == values[..., None]
    return consistent * p_tok
