"""Objectives as target tables T: (K|1, n, V) (see :mod:`linrep.learn.losses`).

- ``exact``: T = w(ξ) p(y|ξ), the latent model's population distribution, shared by all runs.
- ``sampled``: T = empirical frequencies of ``n_samples`` draws (ξ, y) from ``latent.sample`` with
  the run's ``data_seed`` (default: its ``seed``).
- Minibatches (``batch_size`` set): at every step ``batch_size`` draws — dataset rows uniformly with
  replacement (sampled: returned as :class:`~linrep.learn.model.Rows`, the (context, token) pairs
  themselves, so a step costs O(batch · V · d) and never forms a (contexts × tokens) table), or
  contexts ξ ~ w with their exact p(·|ξ) (exact: a table).
  Draws for steps [c·256, (c+1)·256) of run k come from ``numpy.random.default_rng([seed_k, c])``,
  so they depend only on the run's seed and the step: resuming reproduces them without saved state.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig
from .model import Rows

__all__ = ["Targets", "CHUNK"]

CHUNK = 256  # minibatch draws are generated this many steps at a time


class Targets:
    """Training and evaluation target tables for an ensemble.

    Args:
        latent: a :class:`linrep.latent.LatentModel`.
        cfgs: per-run train configs (shared objective/batch size).
        dtype: torch dtype.  device: torch device of the targets.
        tables: build the exact (contexts × tokens) tables (False: sampled rows only).
    """

    def __init__(
        self,
        latent,
        cfgs: list[TrainConfig],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        *,
        tables: bool = True,
    ):
        self.cfg = cfgs[0]
        self.K = len(cfgs)
        self.n, self.V = latent.n_contexts, latent.n_tokens
        self.dtype = dtype
        self.device = torch.device(device)
        self.w = np.asarray(latent.weights, dtype=np.float64)
        #: False: no (contexts × tokens) tables at all, only sampled minibatches (rows)
        self.tables = tables
        self.exact = None
        if tables:
            P = np.asarray(latent.p_next, dtype=np.float64)
            self.P = torch.as_tensor(P, dtype=dtype, device=device)[None]  # (1, n, V)
            self.exact_T = torch.as_tensor(self.w[:, None] * P, dtype=dtype, device=device)[None]
            self.exact_r = torch.as_tensor(self.w, dtype=dtype, device=device)[None, :, None]
            self.exact = (self.exact_T, self.exact_r, self.P)
        self.run_seeds = [c.seed for c in cfgs]
        self.data: list[tuple[np.ndarray, np.ndarray]] | None = None
        if self.cfg.objective == "sampled":
            data_seeds = [c.seed if c.data_seed is None else c.data_seed for c in cfgs]
            cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for s in data_seeds:
                if s not in cache:
                    cache[s] = latent.sample(self.cfg.n_samples, seed=s)
            self.data = [cache[s] for s in data_seeds]
            self.shared_data = len(set(data_seeds)) == 1
            self._ctx = torch.as_tensor(np.stack([c for c, _ in self.data]))  # (K, N)
            self._tok = torch.as_tensor(np.stack([y for _, y in self.data]))
        self._chunk_id = -1
        self._chunk: torch.Tensor | None = None

    @property
    def rows(self) -> bool:
        """True if minibatches are (context, token) rows (sampled objective with a batch size)."""
        return self.cfg.objective == "sampled" and self.cfg.minibatch

    # ------------------------------------------------------------------ full batch
    def full(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full-batch training target (T, r, P)."""
        if self.cfg.objective == "exact":
            return self.exact
        flat = self._ctx * self.V + self._tok
        rows = flat[:1] if self.shared_data else flat
        K = rows.shape[0]
        N = rows.shape[1]
        offs = (torch.arange(K) * (self.n * self.V))[:, None]
        counts = torch.bincount((rows + offs).reshape(-1), minlength=K * self.n * self.V)
        T = counts.view(K, self.n, self.V).to(self.dtype) / N
        return _with_targets(T.to(self.device))

    # ------------------------------------------------------------------ minibatches
    def _draw_chunk(self, c: int) -> torch.Tensor:
        B = self.cfg.batch_size
        out = []
        for k, seed in enumerate(self.run_seeds):
            rng = np.random.default_rng([int(seed), c])
            if self.cfg.objective == "sampled":  # dataset rows of run k
                out.append(rng.integers(0, self.cfg.n_samples, size=(CHUNK, B)))
            else:
                ctx = rng.choice(self.n, size=(CHUNK, B), p=self.w)
                out.append(ctx + k * self.n)
        return torch.as_tensor(np.stack(out, axis=1))  # (CHUNK, K, B)

    def batch(self, t: int):
        """The minibatch of step t: :class:`Rows` (sampled) or a table (T, r, P) (exact)."""
        c, j = divmod(t, CHUNK)
        if c != self._chunk_id:
            self._chunk = self._draw_chunk(c)
            self._chunk_id = c
        idx = self._chunk[j]  # (K, B)
        if self.cfg.objective == "sampled":
            ctx = torch.gather(self._ctx, 1, idx)
            tok = torch.gather(self._tok, 1, idx)
            return Rows(ctx.to(self.device), tok.to(self.device))
        B = self.cfg.batch_size
        counts = torch.bincount(idx.reshape(-1), minlength=self.K * self.n).view(self.K, self.n, 1)
        r = counts.to(self.dtype).to(self.device) / B
        return r * self.P, r, self.P


def _with_targets(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T, r = Σ_y T, P = T / r) with P = 0 on rows of zero mass."""
    r = T.sum(dim=2, keepdim=True)
    return T, r, T / r.clamp_min(torch.finfo(T.dtype).tiny)
