"""The batched learner p̂(y | ξ) = softmax_y(f(ξ)ᵀ g(y) + b(y)) for K runs, on one flat θ: (K, P).

Layout of a run's parameter vector: the encoder's tensors (in :meth:`Encoder.shapes` order), then the
unembedding g: (V, d), then the optional bias b: (1, V). Initialisation of run k uses only its own
seed (a ``torch.Generator``), drawing the encoder's tensors and then g in that order, in float64
before casting — so a run's initial parameters do not depend on the ensemble it is part of, nor
(beyond rounding) on the dtype.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .config import ModelConfig
from .encoders import Encoder, make_encoder
from .losses import factored_head_loss, head_loss, rows_head
from .workspace import Workspace, buffer

if TYPE_CHECKING:
    from .objective import SupportRows

__all__ = ["BatchedModel", "Target", "Rows", "BLOCK_BYTES"]

BLOCK_BYTES = 1 << 21
"""Logits per block of a blocked full-batch step (:meth:`BatchedModel.block_rows`), in bytes:
2 MB, the L2 of a core here. Measured (K = 10, d = 64, MLP width 256, 1 thread, CPU time, load
~5): m = 8 (V = 256) 5-8 % faster than 4 MB, m = 7 (V = 128) 27 % faster than one pass (4 MB
left it unblocked). Before the step wrote its softmax in place, 2-8 MB were equally good."""

Target = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(T: (K|1, n, V) table, r: (K|1, n, 1) row masses, P = T / r: (K|1, n, V) targets)."""


class Rows(NamedTuple):
    """A minibatch of B contexts per run with their targets: sampled next tokens (``tok``) or the
    exact next-token distributions (``P``)."""

    ctx: torch.Tensor
    """(K, B) int64 context indices into the model's context set."""
    tok: torch.Tensor | None
    """(K, B) int64 sampled next tokens (objective ``sampled``), or None."""
    P: torch.Tensor | SupportRows | None = None
    """(K, B, V) p(y | ξ) of the batch's contexts (objective ``exact``): a tensor, or the rows
    stored by their support (:class:`~linrep.learn.objective.SupportRows`); or None."""


class BatchedModel:
    """Encoder + unembedding for an ensemble of K runs sharing shapes.

    Args:
        cfg: the shared model config (per-run ``init_scale`` comes from :meth:`init`).
        contexts: (n, m) int8 context set (−1 = ⋄).
        vocab: number of tokens V.
        dtype: torch dtype of the parameters.
        device: where the encoder's constant tensors live (θ must be on the same device).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        contexts: np.ndarray,
        vocab: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        self.cfg = cfg
        self.dtype = dtype
        self.device = torch.device(device)
        self.V = vocab
        self.d = cfg.d
        self.encoder: Encoder = make_encoder(cfg, contexts, dtype, device)
        shapes = list(self.encoder.shapes()) + [("g", (vocab, cfg.d))]
        if cfg.unembedding_bias:
            shapes.append(("b", (1, vocab)))
        self.layout: list[tuple[str, tuple[int, ...], int, int]] = []
        off = 0
        for name, shape in shapes:
            size = math.prod(shape)
            self.layout.append((name, shape, off, size))
            off += size
        self.P = off
        self.g_slice = next(slice(o, o + s) for n, _, o, s in self.layout if n == "g")
        self.n_encoder = self.g_slice.start
        enc = self.encoder
        h, d, V = enc.feature_dim, cfg.d, vocab
        #: compute logits as H (W gᵀ) instead of f gᵀ (fewer multiply-adds per context)
        self.factored = enc.out_name is not None and h * V < h * d + d * V
        self._hr_key: torch.Tensor | None = None
        self._hr: torch.Tensor | None = None
        self._view_src: torch.Tensor | None = None
        self._view_ptr = 0
        self._view_cache: dict[str, torch.Tensor] = {}
        self._grad_key: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        self.ws = Workspace(self.device)  # buffers of the intermediates of loss() and grad()
        self._block_wss: list[tuple[Workspace, Workspace]] = []  # per block worker: full, tail
        self._threads: tuple | None = None  # (count, thread pool) of the blocked step
        #: torch threads of the wide kernels of a minibatch of rows (None = the current setting;
        #: see :mod:`linrep.learn.parallel`)
        self.wide_threads: int | None = None
        self.encoder.ws = self.ws
        #: The training target, or None: the blocked cross-entropy :meth:`loss` on this very
        #: target also computes the gradient at θ (one pass over the logits more than a step) and
        #: keeps it for the next :meth:`grad` at the same θ and target (the training loop's
        #: history rows: the loss at θ_t, then the step from θ_t), which is then a copy. Same
        #: bits as computing them apart.
        self.keep_grad_of: Target | None = None
        self._kept: tuple | None = None  # (θ, its data pointer and version, kind, target)

    # ------------------------------------------------------------------ parameters
    def init(self, seeds: list[int], cfgs: list[ModelConfig]) -> torch.Tensor:
        """Initial θ: (K, P) for the runs with these seeds and (per-run) model configs."""
        rows = []
        for seed, c in zip(seeds, cfgs, strict=True):
            gen = torch.Generator().manual_seed(int(seed))
            p = self.encoder.init(gen, c.init_scale, c.hidden_init_scale)
            p["g"] = (
                torch.randn((self.V, self.d), generator=gen, dtype=torch.float64) * c.init_scale
            )
            if self.cfg.unembedding_bias:
                p["b"] = torch.zeros((1, self.V), dtype=torch.float64)
            rows.append(torch.cat([p[name].reshape(-1) for name, *_ in self.layout]))
        return torch.stack(rows).to(self.dtype).contiguous()

    def views(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views (K, *shape) into θ (no copies; cached for the training loop's θ)."""
        if theta is self._view_src and theta.data_ptr() == self._view_ptr:
            return self._view_cache
        views = self._split(theta)
        self._view_src, self._view_ptr, self._view_cache = theta, theta.data_ptr(), views
        return views

    def _grad_views(self, out: torch.Tensor | None, K: int) -> tuple[torch.Tensor, dict]:
        """A (K, P) gradient buffer (``out`` or a new one) and its named views (K, *shape), cached
        for the training loop's reused buffer."""
        if out is not None and self._grad_key is not None and self._grad_key[0] is out:
            return self._grad_key
        if out is None:
            out = torch.empty(K, self.P, dtype=self.dtype, device=self.device)
        self._grad_key = (out, self._split(out))
        return self._grad_key

    def _split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views (K, *shape) into any (K, P) tensor laid out like θ."""
        K = flat.shape[0]
        return {name: flat[:, o : o + s].view(K, *shape) for name, shape, o, s in self.layout}

    def embed(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f: (K, n, d) for every context, g: (K, V, d))."""
        with torch.no_grad():
            p = self.views(theta)
            f, _ = self.encoder.forward(p)
            return f, p["g"]

    # ------------------------------------------------------------------ loss and gradient
    def loss(self, theta: torch.Tensor, kind: str, target: Target) -> torch.Tensor:
        """Loss per run (K,) of θ on the target (T, r, P) (see :mod:`linrep.learn.losses`)."""
        p = self.views(theta)
        enc = self.encoder
        ws = self.ws
        if self.factored:
            H, _ = enc.features(p, ws)
            return factored_head_loss(
                kind, H, p[enc.out_name], p["g"], p.get("b"), target, False, ws=ws
            )
        rows = self.block_rows(theta.shape[0], target)
        if rows and target is self.keep_grad_of and kind == "cross_entropy":
            kept = self.ws("kept_grad", tuple(theta.shape), theta.dtype)
            loss = self._grad_blocked(theta, kind, target, rows, kept, with_loss=True)
            self._kept = (theta, theta.data_ptr(), theta._version, kind, target)
            return loss
        if rows:  # a sum over contexts: block by block, as the step (see block_rows)

            def share(blocks: list[tuple[int, int]], worker: int) -> torch.Tensor:
                return sum(
                    self._block_loss(p, kind, target, a, e, self._block_ws(worker, a, e, rows))
                    for a, e in blocks
                )

            return sum(self._over_blocks(theta.shape[0], target, rows, share))
        f, _ = enc.forward(p)
        return head_loss(kind, f, p["g"], p.get("b"), target, want_grad=False, ws=ws)

    def grad(
        self, theta: torch.Tensor, kind: str, target: Target, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Gradient of the loss of every run with respect to its parameters, (K, P).

        ``out``: a (K, P) tensor to write the gradient into (the training loop reuses one).
        """
        K = theta.shape[0]
        enc = self.encoder
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is theta and kept[3] == kind and kept[4] is target:
            if kept[1:3] == (theta.data_ptr(), theta._version):  # θ unchanged since loss()
                grad = self.ws("kept_grad", tuple(theta.shape), theta.dtype)
                return grad.clone() if out is None else out.copy_(grad)
        if not enc.manual_backward:
            return self._grad_autograd(theta, kind, target)
        block = self.block_rows(K, target)
        if block:
            return self._grad_blocked(theta, kind, target, block, out)
        p = self.views(theta)
        ws = self.ws
        flat, into = self._grad_views(out, K) if enc.grad_into else (out, None)
        kw = {} if into is None else {"out": into}  # the encoder writes into flat's columns
        if self.factored:
            H, cache = enc.features(p, ws)
            Hr = None
            if not enc.needs_dH:  # constant features: fold the row weights r into H once
                r = target[1]
                if self._hr_key is not r:
                    self._hr_key, self._hr = r, H * r
                Hr = self._hr
            dH, dW, dg, db = factored_head_loss(
                kind, H, p[enc.out_name], p["g"], p.get("b"), target, True, enc.needs_dH, Hr, ws
            )
            grads = enc.backward_features(p, cache, dH, ws, **kw)
            grads[enc.out_name] = dW
        else:
            f, cache = enc.forward(p)
            df, dg, db = head_loss(kind, f, p["g"], p.get("b"), target, ws=ws)
            grads = enc.backward(p, cache, df, **kw)
        grads["g"] = dg
        if db is not None:
            grads["b"] = db
        if into is None:
            parts = [grads[name].reshape(K, -1) for name, *_ in self.layout]
            return torch.cat(parts, dim=1, out=flat)
        for name, view in into.items():
            if grads[name] is not view:  # the head's gradients, any the encoder did not write
                view.copy_(grads[name].reshape(view.shape))
        return flat

    def block_rows(self, K: int, target: Target) -> int:
        """Contexts per block of a blocked full-batch step (:meth:`_grad_blocked`), 0 = none.

        The step's (K, n, V) logits are read and written ~6 times (softmax, q − P, r ⊙, three
        matmuls); once they exceed the cache every pass goes to memory. Blocks of contexts whose
        logits fill about :data:`BLOCK_BYTES` keep them in cache from the matmul that makes them
        to the two that consume them. Only for encoders that run by blocks (``Encoder.blocks``)
        on the unfactored head, and when the logits exceed 4 blocks.
        """
        n = target[0].shape[1]
        if self.factored or not self.encoder.blocks:
            return 0
        row_bytes = K * self.V * torch.finfo(self.dtype).bits // 8
        rows = max(16, BLOCK_BYTES // row_bytes)
        return rows if n > 4 * rows else 0

    def _grad_blocked(
        self,
        theta: torch.Tensor,
        kind: str,
        target: Target,
        rows: int,
        out: torch.Tensor | None,
        with_loss: bool = False,
    ) -> torch.Tensor:
        """:meth:`grad` of the unfactored head, ``rows`` contexts at a time (:meth:`block_rows`).

        The loss is a sum over contexts, so its gradient is the sum of the blocks' gradients; each
        block runs the encoder on its inputs, the head and the backward pass, and adds its (K, P)
        gradient into a sum. With t > 1 torch threads the blocks are split into t contiguous
        shares, one per Python thread running its kernels on one torch thread (the kernels
        release the GIL): no OpenMP barrier per kernel, where a descheduled worker would stall
        every kernel of the step on a shared machine. The shares' sums are added in share order,
        so a run's gradient depends only on (rows, t), never on timing. Same gradient as
        :meth:`grad` up to the order of the sum over contexts.

        ``with_loss`` (cross_entropy): return the loss per run (K,) instead, summed as
        :meth:`loss` sums it (same bits), with the gradient in ``out``.
        """
        K = theta.shape[0]
        p = self.views(theta)
        out = torch.empty_like(theta) if out is None else out

        def share(blocks: list[tuple[int, int]], worker: int):
            total = out if worker == 0 else self.ws(f"block_sum{worker}", out.shape, out.dtype)
            losses = [] if with_loss else None
            self._blocks_sum(p, kind, target, blocks, total, worker, losses)
            return total, (sum(losses) if with_loss else None)

        shares = self._over_blocks(K, target, rows, share)
        for total, _ in shares[1:]:
            out.add_(total)
        return sum(loss for _, loss in shares) if with_loss else out

    def _over_blocks(self, K: int, target: Target, rows: int, share) -> list:
        """[share(blocks_i, i) for each share i]: the blocks of ``rows`` contexts split into t
        contiguous shares, t = the torch threads (see :meth:`_grad_blocked`); share i runs on
        Python thread i with one torch thread (share 0 on the caller's thread when t = 1)."""
        n = target[0].shape[1]
        blocks = [(a, min(n, a + rows)) for a in range(0, n, rows)]
        threads = min(torch.get_num_threads(), len(blocks))
        self.encoder.block_inputs(K, 0, 1)  # build the shared inputs before any thread reads them
        if threads == 1:
            return [share(blocks, 0)]
        shares = [
            blocks[i * len(blocks) // threads : (i + 1) * len(blocks) // threads]
            for i in range(threads)
        ]

        def run(i: int):
            torch.set_num_threads(1)  # this Python thread's kernels: one torch thread
            return share(shares[i], i)

        pool = self._pool(threads)
        return [job.result() for job in [pool.submit(run, i) for i in range(threads)]]

    def _block_forward(self, p, target: Target, a: int, e: int, ws: Workspace | None = None):
        """(H, cache, f, targets) of contexts a … e − 1: the encoder on the block's inputs, f = H W
        and the block's rows of (T, r, P) (``ws``: buffers for H and f, None to allocate)."""
        enc = self.encoder
        W = p[enc.out_name]
        K = W.shape[0]
        H, cache = enc.features(p, ws, x=enc.block_inputs(K, a, e))
        f = torch.bmm(H, W, out=buffer(ws, "f", (K, e - a, self.d), H.dtype))
        return H, cache, f, tuple(x[:, a:e] for x in target)

    def _block_loss(self, p, kind: str, target: Target, a: int, e: int, ws) -> torch.Tensor:
        """Loss per run (K,) of contexts a … e − 1 (a block of the loss's sum over contexts)."""
        _, _, f, tgt = self._block_forward(p, target, a, e, ws)
        return head_loss(kind, f, p["g"], p.get("b"), tgt, want_grad=False, ws=ws)

    def _blocks_sum(self, p, kind, target, blocks, out, worker: int, losses=None) -> None:
        """Write Σ over ``blocks`` [(a, e), …] of the blocks' gradients into ``out`` (K, P)
        (and append each block's cross-entropy (K,) to ``losses`` if given).

        The sums live in ``out`` itself (named views, :meth:`_split`): ∂g, ∂W_out and the
        encoder's matmul gradients are summed inside their matmuls (``baddbmm_``, β = 1), the
        rest added block by block; no final copy.
        """
        enc = self.encoder
        W, g, b = p[enc.out_name], p["g"], p.get("b")
        acc = self._split(out.zero_())
        rows = blocks[0][1] - blocks[0][0]
        for a, e in blocks:
            ws = self._block_ws(worker, a, e, rows)
            H, cache, f, tgt = self._block_forward(p, target, a, e, ws)
            df, _, db = head_loss(kind, f, g, b, tgt, ws=ws, dg_into=acc["g"], losses=losses)
            acc[enc.out_name].baddbmm_(H.mT, df)
            dH = torch.bmm(df, W.mT, out=buffer(ws, "dH", tuple(H.shape), H.dtype))
            enc.backward_features(p, cache, dH, ws, into=acc)
            if db is not None:
                acc["b"].add_(db)

    def _block_ws(self, worker: int, a: int, e: int, rows: int) -> Workspace:
        """Buffers of one block worker for a block a … e − 1: one set for full blocks of
        ``rows`` contexts, one for the last shorter block."""
        while len(self._block_wss) <= worker:
            self._block_wss.append((Workspace(self.device), Workspace(self.device)))
        full, tail = self._block_wss[worker]
        return full if e - a == rows else tail

    def _pool(self, threads: int):
        """A thread pool of ``threads`` workers for the blocked step (kept across steps)."""
        if self._threads is None or self._threads[0] != threads:
            from concurrent.futures import ThreadPoolExecutor

            self.release_threads()
            self._threads = (threads, ThreadPoolExecutor(threads, thread_name_prefix="linrep"))
        return self._threads[1]

    def release_threads(self) -> None:
        """Shut the blocked step's thread pool down (it is rebuilt when needed)."""
        if self._threads is not None:
            self._threads[1].shutdown()
            self._threads = None

    def clear_buffers(self) -> None:
        """Release every step buffer and the blocked step's threads (a trained model keeps none)."""
        self.ws.clear()
        self._kept = None
        for full, tail in self._block_wss:
            full.clear()
            tail.clear()
        self.release_threads()

    def embed_contexts(self, theta: torch.Tensor, contexts: np.ndarray) -> torch.Tensor:
        """f of any contexts (N, m) int8 (−1 = ⋄) under every run, (K, N, d).

        The free encoder has vectors only for its own context set: other contexts get NaN rows.
        (The transformer draws the token order of these contexts afresh from ``order_seed``.)
        """
        contexts = np.asarray(contexts, dtype=np.int8)
        with torch.no_grad():
            p = self.views(theta)
            if self.cfg.encoder == "free":
                rows = _rows_of(self.encoder.contexts, contexts)
                f = p["E"][:, torch.as_tensor(np.maximum(rows, 0), device=theta.device)]
                f[:, torch.as_tensor(rows < 0, device=theta.device)] = float("nan")
                return f
            enc = make_encoder(self.cfg, contexts, self.dtype, self.device)
            return enc.forward(p)[0]

    def embed_rows(self, theta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """f of context ``rows[k]`` under run k, rows: (K, B) int64 → (K, B, d)."""
        with torch.no_grad():
            return self.encoder.forward_rows(self.views(theta), rows)[0]

    def loss_rows(self, theta: torch.Tensor, kind: str, batch: Rows) -> torch.Tensor:
        """Minibatch loss (K,) of sampled rows (no gradient)."""
        p = self.views(theta)
        f = self.encoder.forward_rows(p, batch.ctx)[0]
        return rows_head(
            kind,
            f,
            p["g"],
            p.get("b"),
            batch.tok,
            P=batch.P,
            want_grad=False,
            ws=self.ws,
            threads=self.wide_threads,
        )[0]

    def grad_rows(
        self, theta: torch.Tensor, kind: str, batch: Rows, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient (K, P) and loss (K,) of a minibatch of rows (O(B·V·d) per run); the loss is
        None for rows with exact targets ``P`` (see :func:`~linrep.learn.losses.rows_head`).

        ``out``: a (K, P) tensor to write the gradient into.
        """
        K = theta.shape[0]
        p = self.views(theta)
        enc = self.encoder
        if out is None:
            out = torch.empty_like(theta)
        dg_out = out[:, self.g_slice].view(K, self.V, self.d)  # ∂g, the big part, in place
        head = {"ws": self.ws, "dg_out": dg_out, "P": batch.P, "threads": self.wide_threads}
        if enc.manual_backward:
            f, cache = enc.forward_rows(p, batch.ctx)
            loss, df, dg, db = rows_head(kind, f, p["g"], p.get("b"), batch.tok, **head)
            grads = enc.backward_rows(p, cache, df, batch.ctx)
        else:
            names = [name for name, *_ in self.layout if name not in ("g", "b")]
            with torch.enable_grad():
                leaves = {name: p[name].detach().requires_grad_(True) for name in names}
                f, _ = enc.forward_rows(leaves, batch.ctx)
            loss, df, dg, db = rows_head(kind, f.detach(), p["g"], p.get("b"), batch.tok, **head)
            grads = dict(zip(names, torch.autograd.grad(f, list(leaves.values()), df), strict=True))
        if db is not None:
            grads["b"] = db
        for name, _, o, size in self.layout:  # ∂g is already in place
            if name != "g":
                out[:, o : o + size].copy_(grads[name].reshape(K, size))
        return out, loss

    def _grad_autograd(self, theta: torch.Tensor, kind: str, target: Target) -> torch.Tensor:
        """Encoder backward by autograd, head by the closed form (for an encoder without
        ``manual_backward``)."""
        K = theta.shape[0]
        views = self.views(theta)
        enc_names = [name for name, *_ in self.layout if name not in ("g", "b")]
        with torch.enable_grad():
            leaves = {name: views[name].detach().requires_grad_(True) for name in enc_names}
            f, _ = self.encoder.forward(leaves)
        df, dg, db = head_loss(kind, f.detach(), views["g"], views.get("b"), target)
        grads = dict(zip(enc_names, torch.autograd.grad(f, list(leaves.values()), df), strict=True))
        grads["g"] = dg
        if db is not None:
            grads["b"] = db
        return torch.cat([grads[name].reshape(K, -1) for name, *_ in self.layout], dim=1)


def _rows_of(table: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Row of each context in ``table`` (n, m) by its base-3 code, −1 where absent, (N,)."""
    pow3 = 3 ** np.arange(table.shape[1], dtype=np.int64)
    code = ((table.astype(np.int64) + 1) * pow3).sum(axis=1)
    want = ((contexts.astype(np.int64) + 1) * pow3).sum(axis=1)
    order = np.argsort(code)
    pos = np.clip(np.searchsorted(code[order], want), 0, len(code) - 1)
    return np.where(code[order][pos] == want, order[pos], -1)
