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

from typing import NamedTuple

import numpy as np
import torch

from .config import TrainConfig
from .model import Rows

__all__ = ["Targets", "ExactRows", "SupportRows", "CHUNK"]

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


class SupportRows(NamedTuple):
    """Exact rows p(·|ξ) of a batch of contexts stored by their support (no (..., V) tensor).

    Row ξ is nonzero only on the tokens consistent with ξ: 2^(m − |core|) · n_syn of V (on
    average about 2V / (m + 1) for a core size uniform in 0…m), where it is p(c(y)) w(y) /
    p(c_core(ξ)). A step that needs "x − P" or Σ_y P z touches those entries only.

    The methods loop over the K·B rows (contexts, never tokens): each row's tokens are one
    contiguous slice of the cache, and a flat (row·V + y) index over all rows measured 2.4× slower
    (m = 16, 160 rows, 378k entries: its int64 index costs more than 160 small kernels).
    """

    shape: tuple[int, ...]
    """(..., V): the shape the dense rows would have."""
    tokens: list[torch.Tensor]
    """Per flat row (context), its consistent tokens, (N_r,) int32 ascending."""
    scale: list[float]
    """Per flat row, 1 / p(c_core(ξ))."""
    p_tok: torch.Tensor
    """(V,) p(c(y)) w(y)."""

    def sub_from(self, x: torch.Tensor) -> torch.Tensor:
        """x −= P in place (x: a contiguous (..., V) tensor of :attr:`shape`); returns x."""
        xr = x.view(-1, self.shape[-1])
        for r, (t, s) in enumerate(zip(self.tokens, self.scale, strict=True)):
            xr[r].index_add_(0, t, self.p_tok.index_select(0, t), alpha=-s)
        return x

    def dot(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_y P(y|ξ) z(ξ, y) for every row, (...): z is (..., V) of :attr:`shape`."""
        zr = z.reshape(-1, self.shape[-1])
        out = torch.empty(zr.shape[0], dtype=z.dtype, device=z.device)
        for r, (t, s) in enumerate(zip(self.tokens, self.scale, strict=True)):
            out[r] = torch.dot(zr[r].index_select(0, t), self.p_tok.index_select(0, t)) * s
        return out.view(self.shape[:-1])

    def dense(self) -> torch.Tensor:
        """The rows as a (..., V) tensor."""
        out = torch.zeros(self.shape, dtype=self.p_tok.dtype, device=self.p_tok.device)
        xr = out.view(-1, self.shape[-1])
        for r, (t, s) in enumerate(zip(self.tokens, self.scale, strict=True)):
            xr[r].index_add_(0, t, self.p_tok.index_select(0, t), alpha=s)  # onto zeros: exact
        return out


class ExactRows:
    """p(y | ξ) for any contexts of a latent model, from bit masks (no table), for every latent kind.

    Row ξ is p(c(y)) w(y) on the tokens consistent with ξ (``c(y) & K == V`` on the bit masks of
    :func:`~linrep.latent.contexts.encode`), divided by its sum p(c_core(ξ)). The first time a
    context is asked for, its consistent tokens are enumerated directly (never by a pass over all
    V tokens): the free bits of c(y) (the concepts ξ leaves ⋄) are filled with 0 … 2^free − 1 by a
    bit-deposit table per half of the m bits; the token list and 1 / p(c_core(ξ)) (float64 sum)
    are cached, so a later batch only gathers them (:class:`SupportRows`).

    Args:
        latent: the latent model (``contexts``, ``m``, ``token_vector``, ``p_concepts``,
            ``token_prob``; token y = c(y) · n_syn + synonym).  dtype, device: of the rows.
    """

    def __init__(self, latent, dtype: torch.dtype, device: torch.device | str = "cpu"):
        from ..latent.contexts import encode

        self.device = torch.device(device)
        self.m, self.V = latent.m, latent.n_tokens
        self.n_syn = self.V >> self.m
        known, values = encode(latent.contexts)
        self.lo = self.m // 2  # bits of the low half
        lo_mask = (1 << self.lo) - 1
        free = ~known & ((1 << self.m) - 1)
        w = max(self.lo, self.m - self.lo)
        deposit, ones = _deposit_table(w)
        self._deposit = torch.as_tensor(deposit, device=device)
        i64 = {"dtype": torch.int64, "device": device}
        # per context: free / known-value bits of each half, and the size of its support
        self._f = torch.as_tensor(np.stack([free & lo_mask, free >> self.lo], 1), **i64)
        self._v = torch.as_tensor(np.stack([values & lo_mask, values >> self.lo], 1), **i64)
        count = (1 << ones[self._f.cpu().numpy()]).astype(np.int64)  # (n, 2) per half
        self._n_lo = torch.as_tensor(count[:, 0], **i64)
        self.count = torch.as_tensor(count[:, 0] * count[:, 1] * self.n_syn, **i64)
        p_tok = latent.p_concepts[latent.token_vector] * latent.token_prob
        self.p_tok = torch.as_tensor(p_tok, dtype=dtype, device=device)
        self._p64 = torch.as_tensor(p_tok, dtype=torch.float64, device=device)
        self.inv_mass = torch.zeros(latent.n_contexts, dtype=torch.float64, device=device)
        self.start = torch.full((latent.n_contexts,), -1, **i64)  # −1: not enumerated yet
        self._tok = torch.empty(0, dtype=torch.int32, device=device)  # the cached token lists
        self._used = 0

    @staticmethod
    def peak_bytes(latent) -> int:
        """An upper bound on this object's memory once every context of ``latent`` was asked for.

        The cached token lists hold n_syn · Σ_ξ 2^free(ξ) int32 entries (free(ξ): the concepts ξ
        leaves ⋄); the list grows geometrically, so its capacity is below twice that and, while it
        grows, the old list lives beside the new one: 3 · 4 bytes per entry. Per context, eight
        int64 / float64 numbers (its halves' free and value bits, two support sizes, start,
        1 / mass); per token, p(c(y)) w(y) twice (≤ 16 bytes); the deposit table (2^w)² int64 with
        w = ⌈m / 2⌉.
        """
        free = (np.asarray(latent.contexts) < 0).sum(axis=1)
        entries = (latent.n_tokens >> latent.m) * int(
            np.sum(np.left_shift(1, free, dtype=np.int64))
        )
        w = latent.m - latent.m // 2
        return 12 * entries + 64 * latent.n_contexts + 16 * latent.n_tokens + 8 * 4**w

    def __call__(self, ctx: torch.Tensor) -> SupportRows:
        """Rows p(· | ξ) of the contexts ``ctx`` (any shape (...)), as (..., V) support rows."""
        c = ctx.reshape(-1)
        new = torch.unique(c[self.start[c] < 0])
        if new.numel():
            self._enumerate(new)
        start, count = self.start[c].tolist(), self.count[c].tolist()
        tokens = [self._tok[a : a + n] for a, n in zip(start, count, strict=True)]
        scale = self.inv_mass[c].tolist()
        return SupportRows((*ctx.shape, self.V), tokens, scale, self.p_tok)

    def dense(self, ctx: torch.Tensor) -> torch.Tensor:
        """Rows p(· | ξ) of the contexts ``ctx`` as a (..., V) tensor."""
        return self(ctx).dense()

    def tokens(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens consistent with each context c: (N,) int64 ascending per context, and
        each one's position in ``c``, (N,) int64 (contexts in the order of c)."""
        cnt = self.count[c]
        row = torch.repeat_interleave(torch.arange(c.numel(), device=c.device), cnt)
        j = torch.arange(row.numel(), device=c.device) - (torch.cumsum(cnt, 0) - cnt)[row]
        syn, j = j % self.n_syn, j // self.n_syn
        n_lo = self._n_lo[c][row]
        f, v = self._f[c][row], self._v[c][row]
        lo = self._deposit[f[:, 0], j % n_lo] | v[:, 0]
        hi = self._deposit[f[:, 1], j // n_lo] | v[:, 1]
        return ((hi << self.lo) | lo) * self.n_syn + syn, row

    def _enumerate(self, new: torch.Tensor) -> None:
        """Cache the token lists and 1 / p(c_core(ξ)) of the contexts ``new``."""
        tok, row = self.tokens(new)
        mass = torch.zeros(new.numel(), dtype=torch.float64, device=new.device)
        mass.index_add_(0, row, self._p64[tok])
        self.inv_mass[new] = 1.0 / mass
        need = self._used + tok.numel()
        if need > self._tok.numel():  # grow geometrically: amortised O(1) per entry
            grown = torch.empty(max(need, 2 * self._tok.numel()), dtype=torch.int32)
            grown[: self._used] = self._tok[: self._used]
            self._tok = grown.to(self.device)
        self._tok[self._used : need] = tok.to(torch.int32)
        cnt = self.count[new]
        self.start[new] = self._used + torch.cumsum(cnt, 0) - cnt
        self._used = need


def _deposit_table(w: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit deposit on w bits: T[f, i] = the bits of i placed, in order, at the set bits of f
    ((2^w, 2^w) int64; valid for i < 2^popcount(f)), and popcount(f), (2^w,) int64."""
    f = np.arange(1 << w, dtype=np.int64)[:, None]
    r = np.arange(1 << w, dtype=np.int64)[None, :].repeat(1 << w, axis=0)
    out = np.zeros_like(r)
    for b in range(w):  # loop over bit positions, not tokens
        fb = (f >> b) & 1
        out |= (r & fb) << b
        r >>= fb
    ones = np.zeros(1 << w, dtype=np.int64)
    for b in range(w):
        ones += (f[:, 0] >> b) & 1
    return out, ones


def _with_targets(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T, r = Σ_y T, P = T / r) with P = 0 on rows of zero mass."""
    r = T.sum(dim=2, keepdim=True)
    return T, r, T / r.clamp_min(torch.finfo(T.dtype).tiny)
