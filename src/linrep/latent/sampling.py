"""Table-free sampling of next tokens: y ~ p(· | ξ) without the (contexts × tokens) table.

At m = 18 the vocabulary has 2^18 tokens, and a table of p(y | ξ) over even a few thousand contexts
holds ~10^9 cells. These samplers draw y ~ p(· | ξ) = p(c(y) | c_core(ξ)) · w(y) from the joint
p(c) alone (a 2^m vector, the size of one unembedding column), with cost per draw that does not grow
like 2^m (docs/latent-model.md §1):

- **independent concepts**: exact, O(m) per draw. Given ξ, the unknown concepts stay independent
  Bernoulli(p_i): draw them bit by bit.
- **every other family** (Ising, Bayesian network, explicit table), for a context with unknown set U:
  - |U| ≤ ``max_enumerated`` (12 by default): **exact enumeration** of the 2^|U| consistent concept
    vectors (a gather from log p(c) and one inverse-CDF draw), O(2^|U|) ≤ 4096 per draw.
  - |U| > ``max_enumerated``: **exact rejection sampling**. A full vector c ~ p(c) is drawn by
    inverse CDF on the 2^m table (O(log V) per draw: one binary search) and kept if it agrees with
    ξ on the known concepts. It is accepted with probability p(c_core(ξ)), so the expected number of
    proposals is 1 / p(c_core(ξ)); when ξ's core values were themselves drawn from p(c) (sampled
    contexts) this averages to at most 2^|core| ≤ 2^(m − max_enumerated − 1) proposals.
  - a context whose core is so improbable that ``max_proposals`` proposals all fail falls back to
    exact enumeration (2^|U| work for that draw only; counted in :attr:`SamplerStats.fallbacks`).

  Every draw is therefore exact; no Markov chain is needed. (A Markov chain would be the
  fallback for m beyond ``MAX_M`` = 20, where the joint table itself no longer fits; linrep does
  not go there.)
- **synonyms**: the token among the k tokens of the drawn vector, by its within-vector probability.

All randomness comes from one ``numpy.random.Generator`` passed in, so draws are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from .model import LatentModel

__all__ = ["ConceptSampler", "SamplerStats", "sample_pairs", "MAX_ENUMERATED", "MAX_PROPOSALS"]

MAX_ENUMERATED = 12
"""Enumerate the consistent vectors exactly when a context has at most this many unknown concepts."""
MAX_PROPOSALS = 1 << 14
"""Rejection proposals per draw before falling back to exact enumeration."""

_ENUM_CELLS = 1 << 22  # candidate vectors held at once while enumerating


@dataclass
class SamplerStats:
    """Which path each conditional draw took (for reports and tests)."""

    bitwise: int = 0
    enumerated: int = 0
    rejection: int = 0
    proposals: int = 0
    fallbacks: int = 0


class ConceptSampler:
    """Draws concept vectors from p(c) and from p(c | c_core(ξ)) using only the joint table.

    Args:
        latent: the :class:`~linrep.latent.LatentModel` (its ``p_concepts``, ``config.kind``).
        max_enumerated: enumerate exactly up to this many unknown concepts (see module docstring).
        max_proposals: rejection proposals per draw before the exact-enumeration fallback.
    """

    def __init__(
        self,
        latent: LatentModel,
        *,
        max_enumerated: int = MAX_ENUMERATED,
        max_proposals: int = MAX_PROPOSALS,
    ):
        self.m = latent.m
        self.p = np.asarray(latent.p_concepts, dtype=np.float64)
        with np.errstate(divide="ignore"):
            self.log_p = np.log(self.p)
        self.cdf = np.cumsum(self.p)
        self.cdf /= self.cdf[-1]
        self.independent = latent.config.kind == "independent"
        bits = (np.arange(self.p.size, dtype=np.int64)[:, None] >> np.arange(self.m)) & 1
        #: P(C_i = 1) under p(c), (m,) (the Bernoulli parameters when concepts are independent)
        self.p1 = self.p @ bits
        self.max_enumerated = int(max_enumerated)
        self.max_proposals = int(max_proposals)
        self.stats = SamplerStats()

    # ------------------------------------------------------------------ joint
    def joint(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n concept-vector indices c ~ p(c) by inverse CDF (exact), (n,) int64."""
        t = np.searchsorted(self.cdf, rng.random(n), side="right")
        return np.minimum(t, self.p.size - 1).astype(np.int64)

    # ------------------------------------------------------------------ conditional
    def conditional(
        self, known: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Concept-vector indices c ~ p(c | c_K = v) for bit masks ``known`` K and ``values`` v.

        Args:
            known: (n,) int64 bit mask of the known concepts of each context.
            values: (n,) int64 their values (bits outside ``known`` are 0).
            rng: the random generator.

        Returns:
            (n,) int64 vector indices t with ``t & known == values``.
        """
        known = np.asarray(known, dtype=np.int64)
        values = np.asarray(values, dtype=np.int64)
        if self.independent:
            self.stats.bitwise += known.size
            draws = rng.random((known.size, self.m)) < self.p1[None, :]
            free = (draws.astype(np.int64) << np.arange(self.m, dtype=np.int64)).sum(axis=1)
            return values | (free & ~known)
        out = np.empty(known.size, dtype=np.int64)
        n_unknown = self.m - _popcount(known)
        small = n_unknown <= self.max_enumerated
        for u in np.unique(n_unknown[small]):  # one vectorised pass per number of unknowns
            rows = np.flatnonzero(n_unknown == u)
            out[rows] = self._enumerate(known[rows], values[rows], int(u), rng)
        big = np.flatnonzero(~small)
        if big.size:
            out[big] = self._reject(known[big], values[big], rng)
        return out

    def _enumerate(self, known, values, u: int, rng) -> np.ndarray:
        """Exact draws for contexts that all have u unknown concepts (2^u candidates each)."""
        self.stats.enumerated += known.size
        pos = _unknown_positions(known, self.m, u)  # (n, u)
        sub = np.arange(1 << u, dtype=np.int64)
        out = np.empty(known.size, dtype=np.int64)
        step = max(1, _ENUM_CELLS >> u)
        for s in range(0, known.size, step):
            p = pos[s : s + step]
            cand = np.repeat(values[s : s + step, None], sub.size, axis=1)
            for j in range(u):  # deposit bit j of the subset index at the j-th unknown position
                cand |= ((sub >> j) & 1)[None, :] << p[:, j : j + 1]
            w = self.p[cand]
            c = np.cumsum(w, axis=1)
            total = c[:, -1]
            if np.any(total <= 0):
                raise ConfigError("a context has probability 0 under p(c); it cannot be sampled")
            r = rng.random(c.shape[0]) * total
            k = np.minimum((c <= r[:, None]).sum(axis=1), sub.size - 1)
            out[s : s + step] = cand[np.arange(c.shape[0]), k]
        return out

    def _reject(self, known, values, rng) -> np.ndarray:
        """Exact draws by rejection from c ~ p(c); enumeration for cores that stay unmatched."""
        self.stats.rejection += known.size
        out = np.full(known.size, -1, dtype=np.int64)
        todo = np.arange(known.size)
        tries, batch = 0, 32
        while todo.size and tries < self.max_proposals:
            b = min(batch, self.max_proposals - tries, max(1, _ENUM_CELLS // todo.size))
            t = self.joint(todo.size * b, rng).reshape(todo.size, b)
            self.stats.proposals += t.size
            ok = (t & known[todo, None]) == values[todo, None]
            hit = ok.any(axis=1)
            first = ok.argmax(axis=1)
            out[todo[hit]] = t[hit, first[hit]]
            todo = todo[~hit]
            tries += b
            batch = min(4 * batch, 4096)
        if todo.size:  # improbable cores: exact enumeration for these draws only
            self.stats.fallbacks += todo.size
            n_unknown = self.m - _popcount(known[todo])
            for u in np.unique(n_unknown):
                rows = todo[n_unknown == u]
                out[rows] = self._enumerate(known[rows], values[rows], int(u), rng)
        return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each int64 (x ≥ 0), (n,)."""
    x = np.asarray(x, dtype=np.int64)
    count = np.zeros(x.shape, dtype=np.int64)
    while np.any(x):
        count += x & 1
        x = x >> 1
    return count


def _unknown_positions(known: np.ndarray, m: int, u: int) -> np.ndarray:
    """Positions of the u clear bits (of m) of each mask, ascending, (n, u) int64."""
    clear = ((known[:, None] >> np.arange(m, dtype=np.int64)) & 1) == 0  # (n, m)
    order = np.argsort(~clear, axis=1, kind="stable")  # clear positions first, ascending
    return order[:, :u].astype(np.int64)


def sample_pairs(
    latent: LatentModel, n: int, seed: int, sampler: ConceptSampler | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n (context, next token) pairs without the next-token table.

    ξ ~ the context weights w, then y ~ p(· | ξ) with :class:`ConceptSampler` (exact; see module
    docstring), then the synonym of y by its within-vector probability.

    Returns:
        (context indices (n,) int64 into ``latent.contexts``, token ids (n,) int64).
    """
    from .contexts import encode

    rng = np.random.default_rng(seed)
    ctx = rng.choice(latent.n_contexts, size=n, p=latent.weights).astype(np.int64)
    known, values = encode(latent.contexts)
    sampler = sampler if sampler is not None else ConceptSampler(latent)
    vec = sampler.conditional(known[ctx], values[ctx], rng)
    n_syn = latent.n_tokens >> latent.m
    if n_syn == 1:
        return ctx, vec
    syn_p = latent.token_prob[:n_syn]
    syn = np.searchsorted(np.cumsum(syn_p) / syn_p.sum(), rng.random(n), side="right")
    return ctx, vec * n_syn + np.minimum(syn, n_syn - 1)
