"""Index tables of a latent model for the simulation metrics (built once, reused every evaluation).

Counterfactual token pairs per concept, context pairs that differ only in one known concept, the
contexts where a concept is ⋄ (optionally a fixed random subset) and the true pair log-odds there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..latent import LatentModel

__all__ = ["SimulationIndex", "pair_log_odds_table"]

_CACHE_CELLS = 2**23  # cache true log-odds tables up to this many (context, pair) cells


@dataclass
class SimulationIndex:
    """Index tables of a latent model, computed once and reused at every evaluation.

    Attributes:
        names: concept names (m,).
        pairs: per concept, (P_i, 2) counterfactual token pairs (y0, y1).
        context_pairs: per concept, (Q_i, 2) row indices (ξ with ξ_i = 0, ξ' with ξ_i = 1) of
            contexts identical in every other coordinate.
        unknown_rows: per concept, rows of contexts with C_i = ⋄ used for the log-odds statistics
            (all of them, or a fixed random subset of ``max_log_odds_rows``).
        n_unknown_total: per concept, the number of contexts with C_i = ⋄ before subsampling.
        known_rows: per concept, rows of contexts with C_i known; ``known_labels`` their values.
        true_log_odds: per concept, (|unknown_rows|, P_i) true pair log-odds with NaN for pairs
            inconsistent with the context (None when too large to cache; then computed on demand).
    """

    names: list[str]
    pairs: list[np.ndarray]
    context_pairs: list[np.ndarray]
    unknown_rows: list[np.ndarray]
    known_rows: list[np.ndarray]
    known_labels: list[np.ndarray]
    true_log_odds: list[np.ndarray | None]
    latent: Any
    n_unknown_total: list[int]

    @classmethod
    def from_latent(
        cls, latent: LatentModel, max_log_odds_rows: int | None = 4096, seed: int = 0
    ) -> SimulationIndex:
        """Build the index of a :class:`~linrep.latent.LatentModel`.

        Args:
            latent: the latent model.
            max_log_odds_rows: if a concept has more contexts with C_i = ⋄ than this, the log-odds
                statistics use a fixed random subset of this many (an unbiased estimate of the mean
                error; the max error is then a lower bound). 4096 keeps every m ≤ 8 exact
                (3^(m−1) such contexts) and an m = 10 hook evaluation fast. None = always all.
            seed: seed of that subset.
        """
        rng = np.random.default_rng(seed)
        ctx = np.asarray(latent.contexts)
        m = ctx.shape[1]
        pow3 = 3 ** np.arange(m, dtype=np.int64)
        code = ((ctx.astype(np.int64) + 1) * pow3).sum(axis=1)  # base-3 code, ⋄ = digit 0
        order = np.argsort(code)
        sorted_code = code[order]
        pairs, cpairs, unk, kn, lab, tlo, ntot = [], [], [], [], [], [], []
        for i in range(m):
            p = np.asarray(latent.counterfactual_pairs(i), dtype=np.int64)
            pairs.append(p)
            base = np.flatnonzero(ctx[:, i] == 0)
            want = code[base] + pow3[i]  # the same context with ξ_i = 1
            pos = np.clip(np.searchsorted(sorted_code, want), 0, len(code) - 1)
            found = sorted_code[pos] == want
            cpairs.append(np.stack([base[found], order[pos[found]]], axis=1))
            rows = np.flatnonzero(ctx[:, i] == -1)
            ntot.append(int(rows.size))
            if max_log_odds_rows is not None and rows.size > max_log_odds_rows:
                rows = np.sort(rng.choice(rows, size=max_log_odds_rows, replace=False))
            unk.append(rows)
            krows = np.flatnonzero(ctx[:, i] != -1)
            kn.append(krows)
            lab.append(ctx[krows, i].astype(np.int64))
            cells = rows.size * p.shape[0]
            tlo.append(
                pair_log_odds_table(latent.p_next, rows, p) if cells <= _CACHE_CELLS else None
            )
        return cls(list(latent.names), pairs, cpairs, unk, kn, lab, tlo, latent, ntot)

    def true_pair_log_odds(self, i: int, rows: np.ndarray | None = None) -> np.ndarray:
        """True pair log-odds of concept i on ``unknown_rows[i]`` (or a subset), NaN if inconsistent."""
        t = self.true_log_odds[i]
        if t is not None:
            return t if rows is None else t[np.searchsorted(self.unknown_rows[i], rows)]
        r = self.unknown_rows[i] if rows is None else rows
        return pair_log_odds_table(self.latent.p_next, r, self.pairs[i])


def pair_log_odds_table(p_next: np.ndarray, rows: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """True pair log-odds log p(y1|ξ) − log p(y0|ξ), (len(rows), P); NaN where a token is impossible.

    Args:
        p_next: (n, V) exact next-token table of the latent model.
        rows: (r,) context rows. pairs: (P, 2) token pairs (y0, y1).
    """
    p0 = p_next[np.ix_(rows, pairs[:, 0])]
    p1 = p_next[np.ix_(rows, pairs[:, 1])]
    ok = (p0 > 0) & (p1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(p1) - np.log(p0), np.nan)
