"""Objectives as target tables T: (K|1, n, V) (see :mod:`linrep.learn.losses`).

- ``exact``: T = w(ξ) p(y|ξ), the latent model's population distribution, shared by all runs.
- ``sampled``: T = empirical frequencies of ``n_samples`` draws (ξ, y) from ``latent.sample`` with
  the run's ``data_seed`` (default: its ``seed``).
- Minibatches (``batch_size`` set): at every step a fresh table from ``batch_size`` draws — dataset
  rows uniformly with replacement (sampled), or contexts ξ ~ w with their exact p(·|ξ) (exact).
  Draws for steps [c·256, (c+1)·256) of run k come from ``numpy.random.default_rng([seed_k, c])``,
  so they depend only on the run's seed and the step: resuming reproduces them without saved state.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig

__all__ = ["Targets", "CHUNK"]

CHUNK = 256  # minibatch draws are generated this many steps at a time


class Targets:
    """Training and evaluation target tables for an ensemble.

    Args:
        latent: a :class:`linrep.latent.LatentModel`.
        cfgs: per-run train configs (shared objective/batch size).
        dtype: torch dtype.
    """

    def __init__(self, latent, cfgs: list[TrainConfig], dtype: torch.dtype):
        self.cfg = cfgs[0]
        self.K = len(cfgs)
        self.n, self.V = latent.p_next.shape
        self.dtype = dtype
        w = np.asarray(latent.weights, dtype=np.float64)
        P = np.asarray(latent.p_next, dtype=np.float64)
        self.P = torch.as_tensor(P, dtype=dtype)[None]  # (1, n, V)
        self.w = w
        self.exact_T = torch.as_tensor(w[:, None] * P, dtype=dtype)[None]
        self.exact_r = torch.as_tensor(w, dtype=dtype)[None, :, None]
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
            flat = np.stack([c * self.V + y for c, y in self.data])  # (K, N)
            self._flat_data = torch.as_tensor(flat)
        self._chunk_id = -1
        self._chunk: torch.Tensor | None = None

    # ------------------------------------------------------------------ full batch
    def full(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full-batch training target (T, r, P)."""
        if self.cfg.objective == "exact":
            return self.exact
        rows = self._flat_data[:1] if self.shared_data else self._flat_data
        K = rows.shape[0]
        N = rows.shape[1]
        offs = (torch.arange(K) * (self.n * self.V))[:, None]
        counts = torch.bincount((rows + offs).reshape(-1), minlength=K * self.n * self.V)
        T = counts.view(K, self.n, self.V).to(self.dtype) / N
        return _with_targets(T)

    # ------------------------------------------------------------------ minibatches
    def _draw_chunk(self, c: int) -> torch.Tensor:
        B = self.cfg.batch_size
        out = []
        for k, seed in enumerate(self.run_seeds):
            rng = np.random.default_rng([int(seed), c])
            if self.cfg.objective == "sampled":
                idx = rng.integers(0, self.cfg.n_samples, size=(CHUNK, B))
                flat = self._flat_data[k].numpy()[idx]
                out.append(flat + k * self.n * self.V)
            else:
                ctx = rng.choice(self.n, size=(CHUNK, B), p=self.w)
                out.append(ctx + k * self.n)
        return torch.as_tensor(np.stack(out, axis=1))  # (CHUNK, K, B)

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The minibatch target (T, r, P) of step t."""
        c, j = divmod(t, CHUNK)
        if c != self._chunk_id:
            self._chunk = self._draw_chunk(c)
            self._chunk_id = c
        idx = self._chunk[j].reshape(-1)
        B = self.cfg.batch_size
        if self.cfg.objective == "sampled":
            counts = torch.bincount(idx, minlength=self.K * self.n * self.V)
            T = counts.view(self.K, self.n, self.V).to(self.dtype) / B
            return _with_targets(T)
        counts = torch.bincount(idx, minlength=self.K * self.n).view(self.K, self.n, 1)
        r = counts.to(self.dtype) / B
        return r * self.P, r, self.P


def _with_targets(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T, r = Σ_y T, P = T / r) with P = 0 on rows of zero mass."""
    r = T.sum(dim=2, keepdim=True)
    return T, r, T / r.clamp_min(torch.finfo(T.dtype).tiny)
