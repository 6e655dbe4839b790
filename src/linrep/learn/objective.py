"""Objectives as target tables T: (K|1, n, V) (see :mod:`linrep.learn.losses`).

- ``exact``: T = w(ξ) p(y|ξ), the latent model's population distribution, shared by all runs.
- ``sampled``: T = empirical frequencies of ``n_samples`` draws (ξ, y) from ``latent.sample`` with
  the run's ``data_seed`` (default: its ``seed``).
- Minibatches (``batch_size`` set): at every step ``batch_size`` draws, returned as
  :class:`~linrep.learn.model.Rows` so a step costs O(batch · V · d) and never forms a
  (contexts × tokens) table: dataset rows uniformly with replacement (sampled: the (context, token)
  pairs themselves), or contexts ξ ~ w with their exact rows p(·|ξ) (exact; built from the bit masks
  of ξ when the latent model has no table).
  Draws for steps [c·256, (c+1)·256) of run k come from ``numpy.random.default_rng([seed_k, c])``,
  so they depend only on the run's seed and the step: resuming reproduces them without saved state.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig
from .model import Rows

__all__ = ["Targets", "ExactRows", "CHUNK"]

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
        if self.cfg.objective == "exact" and self.cfg.minibatch and not tables:
            self._exact_rows = ExactRows(latent, dtype, self.device)
        self._chunk_id = -1
        self._chunk: torch.Tensor | None = None

    @property
    def rows(self) -> bool:
        """True if steps take minibatches, as :class:`Rows`: B (context, token) draws (sampled) or
        B contexts ξ ~ w with their exact rows p(·|ξ) (exact); a step then costs O(B · V · d)."""
        return self.cfg.minibatch

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
        for seed in self.run_seeds:
            rng = np.random.default_rng([int(seed), c])
            if self.cfg.objective == "sampled":  # dataset rows of run k
                out.append(rng.integers(0, self.cfg.n_samples, size=(CHUNK, B)))
            else:  # contexts ξ ~ w
                out.append(rng.choice(self.n, size=(CHUNK, B), p=self.w))
        return torch.as_tensor(np.stack(out, axis=1))  # (CHUNK, K, B)

    def batch(self, t: int):
        """The minibatch of step t as :class:`Rows` (see :attr:`rows`)."""
        c, j = divmod(t, CHUNK)
        if c != self._chunk_id:
            self._chunk = self._draw_chunk(c)
            self._chunk_id = c
        idx = self._chunk[j]  # (K, B)
        if self.cfg.objective == "sampled":
            ctx = torch.gather(self._ctx, 1, idx)
            tok = torch.gather(self._tok, 1, idx)
            return Rows(ctx.to(self.device), tok.to(self.device))
        ctx = idx.to(self.device)  # the batch's contexts with their exact rows p(·|ξ), (K, B, V)
        if self.tables:
            return Rows(ctx, None, self.P[0][ctx])
        return Rows(ctx, None, self._exact_rows(ctx))


class ExactRows:
    """p(y | ξ) for any contexts of a latent model, built from bit masks (no table).

    Row ξ is p(c(y)) w(y) on the tokens consistent with ξ (``c(y) & K == V``,
    :func:`~linrep.latent.model.consistent_mass`), divided by its sum p(c_core(ξ)); the sums are
    computed the first time a context is asked for and cached (n numbers).

    Args:
        latent: the latent model.  dtype, device: of the rows.
    """

    def __init__(self, latent, dtype: torch.dtype, device: torch.device | str = "cpu"):
        from ..latent.contexts import encode

        known, values = encode(latent.contexts)  # int32: half the memory traffic
        self.known = torch.as_tensor(known.astype(np.int32), device=device)
        self.values = torch.as_tensor(values.astype(np.int32), device=device)
        self.tv = torch.as_tensor(latent.token_vector.astype(np.int32), device=device)
        p_tok = latent.p_concepts[latent.token_vector] * latent.token_prob
        self.p_tok = torch.as_tensor(p_tok, dtype=dtype, device=device)
        self._p64 = torch.as_tensor(p_tok, dtype=torch.float64, device=device)
        self.inv_mass = torch.full((latent.n_contexts,), float("nan"), dtype=dtype, device=device)

    def __call__(self, ctx: torch.Tensor) -> torch.Tensor:
        """Rows p(· | ξ) of the contexts ``ctx`` (any shape (...)), (..., V)."""
        from ..latent.model import consistent_mass

        new = torch.unique(ctx[torch.isnan(self.inv_mass[ctx])])
        step = max(1, (1 << 22) // self.tv.numel())
        for s in range(0, new.numel(), step):  # p(c_core(ξ)) in float64, once per context
            c = new[s : s + step]
            mass = consistent_mass(self.known[c], self.values[c], self.tv, self._p64).sum(dim=1)
            self.inv_mass[c] = (1.0 / mass).to(self.inv_mass.dtype)
        mask = (self.tv & self.known[ctx][..., None]) == self.values[ctx][..., None]
        return torch.where(mask, self.p_tok, 0.0).mul_(self.inv_mass[ctx][..., None])


def _with_targets(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T, r = Σ_y T, P = T / r) with P = 0 on rows of zero mass."""
    r = T.sum(dim=2, keepdim=True)
    return T, r, T / r.clamp_min(torch.finfo(T.dtype).tiny)
