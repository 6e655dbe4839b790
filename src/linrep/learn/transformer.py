"""A small causal transformer encoder f(ξ), batched over K runs, with a hand-written backward pass.

Token rendering of a context ξ ∈ {0,1,⋄}^m: one token per *known* concept value (token 2i + c_i for
C_i = c_i), in a random order per context (fixed by ``order_seed``), then a query token (id 2m); the
sequence is left-padded to length L = m + 1 with a pad token (id 2m + 1) that no real position
attends to. The query sits at the last position, and f(ξ) is its final hidden state (after a final
LayerNorm) projected to ℝ^d — as a language model's last-layer state at the position predicting the
next token.

Architecture (pre-LayerNorm, as GPT-2): x₀ = E_tok[token] + E_pos[position];
x ← x + Attn(LN(x)); x ← x + MLP(LN(x)) for ``depth`` blocks; f = LN(x_last) W_out, with
Attn(h) = Σ_heads softmax_j(q_i·k_j/√d_h + mask_ij) v_j W_o (q, k, v = h W_qkv split into heads)
and MLP(h) = GELU(h W₁ + b₁) W₂ + b₂ (exact erf GELU, hidden width 4·width).
Initialisation: embeddings N(0, 1); Q/K/V/O and MLP weights fan-in scaled N(0, 1/fan_in) (or
``hidden_init_scale``); LayerNorm gains 1 and biases 0; MLP biases 0; W_out: (width, d) ~
N(0, init_scale²).

How a step is computed — the same function and gradient as a literal evaluation of every block at
every position, with much less work (see :class:`_Plan`):

- **Only what f reads.** A block's output at position i depends only on the first i + 1 positions
  (causal attention, absolute positions), so block 0 runs once per distinct context prefix (the
  middle blocks of a deeper model on every position), and the last block computes keys and values
  at every position but its query, attention, W_o and MLP only at position L − 1.
- **Block 0 on the (token, position) table.** x₀, LN(x₀) and q, k, v depend on the cell (token,
  position) only: they, the attention scores q·k and the value-outputs v_h W_o,h are computed once
  per run on the (2m + 2)·L cells; a row's attention output is a weighted sum of L·H table rows
  (``embedding_bag``), and gradients flow back onto the table.
- **Tiny L.** Attention over L = m + 1 keys is written with the channels as the contiguous inner
  axis of every product and per-head sums as small matmuls (batched matmuls of L × L matrices run
  far below speed on a CPU).
- **Backward by hand** (as the MLP encoder), with the step's intermediates in the model's reused
  buffers. Tests check the gradient against finite differences and against autograd through an
  independent plain-torch transformer.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .encoders import Encoder, Params
from .workspace import Workspace

__all__ = ["TransformerEncoder", "render_contexts"]

EPS = 1e-5  # LayerNorm ε


def render_contexts(contexts: np.ndarray, order_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Token sequences (n, m + 1) int64 and pad mask (n, m + 1) bool of a context set (n, m)."""
    n, m = contexts.shape
    L = m + 1
    rng = np.random.default_rng(order_seed)
    keys = rng.random((n, m))
    known = contexts >= 0
    keys = np.where(known, keys, 2.0)  # unknown concepts sort last, then are dropped
    order = np.argsort(keys, axis=1, kind="stable")
    n_known = known.sum(axis=1)
    tok_of = 2 * np.arange(m)[None, :] + np.where(known, contexts, 0)  # (n, m)
    ordered = np.take_along_axis(tok_of, order, axis=1)  # known tokens first, in random order
    seq = np.full((n, L), 2 * m + 1, dtype=np.int64)
    pad = np.ones((n, L), dtype=bool)
    # right-align: the k known tokens occupy positions L-1-k .. L-2, the query L-1
    pos = np.arange(m)[None, :] + (L - 1 - n_known)[:, None]
    valid = np.arange(m)[None, :] < n_known[:, None]
    rows = np.broadcast_to(np.arange(n)[:, None], (n, m))
    seq[rows[valid], pos[valid]] = ordered[valid]
    pad[rows[valid], pos[valid]] = False
    seq[:, L - 1] = 2 * m
    pad[:, L - 1] = False
    return seq, pad


# ----------------------------------------------------------------------------- where blocks run
class _Plan(NamedTuple):
    """Where the blocks are evaluated for a set of B contexts (index tensors shared by all runs).

    Block 0 runs on U rows: one per distinct prefix (positions 0..i of a context) when depth ≥ 2,
    the B query positions when depth = 1; the residual stream below the last block is laid out
    (position j, context b), j-major. Either way the B query positions are the last B rows, in
    context order. T = (2m + 2)·L table cells, H heads.
    """

    cell: torch.Tensor
    """(U,) table cell (token·L + position) of each block-0 row: its x₀ row."""
    mask0: torch.Tensor
    """(L, U) additive mask (0 or −∞) of key position j for each block-0 row."""
    scores: torch.Tensor
    """(1, H·L·U) index h·T² + cell·T + cell_j of (h, j, u) into the per-head (T, T) score tables."""
    gather: torch.Tensor
    """(1, H·L·U) index h·T·U + cell_j·U + u of (h, j, u) into per-head (T, U) tables."""
    vo: torch.Tensor
    """(U, L·H) index h·T + cell_j of (u, j, h) into the per-head (T, ·) value-output tables."""
    back_rows: torch.Tensor
    """(H·L·U,) block-0 row u of each (h, j, u) sorted by (h, cell_j): the transposed bags."""
    back_weights: torch.Tensor
    """(H·L·U,) flat (h, j, u) index of the same entries."""
    back_offsets: torch.Tensor
    """(H·T,) start of each (h, cell) bag in ``back_rows``."""
    keys: torch.Tensor | None
    """(L·B,) block-0 row of each (position j, context b), j-major; None if depth = 1."""
    mask: torch.Tensor
    """(L, L, B, 1) additive mask of the middle blocks (query i, key j, context b)."""
    qmask: torch.Tensor
    """(1, L, B, 1) additive mask of the last block's query on key j."""


def _plan(seq: np.ndarray, allowed: np.ndarray, n_tok: int, depth: int, heads: int, dtype):
    """:class:`_Plan` of contexts with token sequences seq (B, L) and attention pattern allowed
    (B, L query, L key)."""
    B, L = seq.shape
    T, H = n_tok * L, heads
    cell = seq * L + np.arange(L)  # (B, L)
    if depth == 1:  # only the query position is read
        b, i, keys = np.arange(B), np.full(B, L - 1), None
    else:
        prefix = np.where(np.arange(L) <= np.arange(L)[:, None], seq[:, None, :], -1)  # (B, i, j)
        prefix = prefix.transpose(1, 0, 2).reshape(L * B, L)  # j-major rows j·B + b
        _, first, keys = np.unique(prefix, axis=0, return_index=True, return_inverse=True)
        keys = keys.reshape(-1)
        # the queries' rows (full contexts, distinct) last and in context order: slices, not indices
        is_query = np.zeros(len(first), dtype=bool)
        is_query[keys[-B:]] = True
        order = np.concatenate([np.flatnonzero(~is_query), keys[-B:]])
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        first, keys = first[order], torch.as_tensor(rank[keys])
        i, b = np.divmod(first, B)
    U = len(b)
    kcell = cell[b].T  # (L, U): the cell of each key position of each row
    h = np.arange(H)[:, None, None]
    u = np.arange(U)
    add = np.where(allowed, 0.0, -np.inf)  # (B, i, j)
    # the transposed bags: every (h, j, u), grouped by (h, cell_j) in table order
    order = np.argsort(kcell.reshape(-1), kind="stable")  # over (j, u)
    counts = np.bincount(kcell.reshape(-1), minlength=T)
    starts = np.concatenate([[0], np.cumsum(np.tile(counts, H))[:-1]])

    def t(a, dt=None):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt)

    return _Plan(
        cell=t(cell[b, i]),
        mask0=t(add[b, i].T, dtype),
        scores=t((h * T * T + cell[b, i] * T + kcell).reshape(1, -1)),
        gather=t((h * T * U + kcell * U + u).reshape(1, -1)),
        vo=t((h * T + kcell).transpose(2, 1, 0).reshape(U, L * H)),
        back_rows=t(np.tile(np.tile(u, L)[order], H)),
        back_weights=t((np.arange(H)[:, None] * L * U + order).reshape(-1)),
        back_offsets=t(starts),
        keys=keys,
        mask=t(add.transpose(1, 2, 0)[..., None], dtype),
        qmask=t(add[:, L - 1].T[None, :, :, None], dtype),
    )


class _Bags(NamedTuple):
    """The transposed gather of rows ``index`` (N,) from n rows: ∂src (n, ·) = Σ of the gathered
    rows' gradients per source row, as one ``embedding_bag`` (no zeroed buffer, no index_add)."""

    order: torch.Tensor
    """(N,) positions in the gathered tensor, sorted by source row."""
    offsets: torch.Tensor
    """(n,) start of each source row's bag."""

    @classmethod
    def of(cls, index: torch.Tensor, n: int) -> _Bags:
        idx = index.numpy()
        starts = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=n))[:-1]])
        return cls(torch.as_tensor(np.argsort(idx, kind="stable")), torch.as_tensor(starts))

    def sum(self, grad: torch.Tensor) -> torch.Tensor:
        """(n, w) sums of grad (N, w) per source row (0 for rows never gathered)."""
        return F.embedding_bag(self.order, grad, self.offsets, mode="sum")


class _Runs(NamedTuple):
    """A plan's indices for K runs whose rows are stacked (run k's rows offset by k·rows)."""

    cell: torch.Tensor
    """(K·U,) rows of the (K·T, w) x₀ table for block 0's rows."""
    vo: torch.Tensor
    """(K·U·L·H,) rows of the (K·H·T, w) value-output tables: block 0's bags, L·H entries each."""
    vo_offsets: torch.Tensor
    """(K·U,) their starts."""
    back_rows: torch.Tensor
    """(K·H·L·U,) rows of ∂y (K·U, w): block 0's transposed bags."""
    back_offsets: torch.Tensor
    """(K·H·T,) their starts."""
    keys: torch.Tensor | None
    """(K·L·B,) block-0 row of each (position j, context b); None if depth = 1."""
    key_bags: _Bags | None
    """The transposed gather of ``keys`` (onto block 0's K·U rows)."""
    cell_bags: _Bags
    """The transposed gather of ``cell`` (onto the K·T table cells)."""


def _runs(plan: _Plan, K: int, T: int) -> _Runs:
    """:class:`_Runs` of a plan for K runs (T table cells)."""
    run = torch.arange(K)[:, None]
    U, H = plan.cell.shape[0], plan.back_offsets.shape[0] // T
    N = plan.back_rows.shape[0]
    keys = None if plan.keys is None else (plan.keys + U * run).reshape(-1)  # (K·L·B,)
    cell = (plan.cell + T * run).reshape(-1)
    return _Runs(
        cell=cell,
        vo=(plan.vo + H * T * run[:, :, None]).reshape(-1),
        vo_offsets=torch.arange(0, plan.vo.numel() * K, plan.vo.shape[1]),
        back_rows=(plan.back_rows + U * run).reshape(-1),
        back_offsets=(plan.back_offsets + N * run).reshape(-1),
        keys=keys,
        key_bags=None if keys is None else _Bags.of(keys, K * U),
        cell_bags=_Bags.of(cell, K * T),
    )


# ----------------------------------------------------------------------------- building blocks
class _Buf:
    """Step buffers by name: the model's workspace (reused every step) or fresh tensors."""

    def __init__(self, ws: Workspace | None, dtype: torch.dtype):
        self.ws, self.dtype = ws, dtype

    def __call__(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if self.ws is None:
            return torch.empty(shape, dtype=self.dtype)
        return self.ws("transformer." + name, tuple(shape), self.dtype)

    def zeros(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self(name, shape).zero_()


@functools.lru_cache(maxsize=16)
def _unit_affine(w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain 1 and bias 0 (w,): aten's LayerNorm runs its vectorised loop only when given both
    (x̂ · 1 + 0 = x̂ exactly). Never modified."""
    return torch.ones(w, dtype=dtype), torch.zeros(w, dtype=dtype)


def _ln(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor, buf: _Buf, name: str):
    """LayerNorm over the last axis of x (K, R, w), per-run gain/bias (K, 1, w): h = x̂ ⊙ gain + bias,
    x̂ = (x − μ) ρ, ρ = 1/√(var + ε) (biased variance). Returns h and the cache (x, x̂, μ, ρ);
    x must not change before the backward pass."""
    xhat, mean, rstd = torch.native_layer_norm(
        x, (x.shape[-1],), *_unit_affine(x.shape[-1], x.dtype), EPS
    )
    return torch.addcmul(b, xhat, g, out=buf(name + ".h", x.shape)), (x, xhat, mean, rstd)


def _ln_back(dh: torch.Tensor, g: torch.Tensor, cache: tuple, buf: _Buf, out: Params, names):
    """(∂x, ∂gain, ∂bias) of :func:`_ln` from ∂h (K, R, w):
    ∂x = ρ (∂x̂ − mean ∂x̂ − x̂ mean(∂x̂ ⊙ x̂)), ∂x̂ = ∂h ⊙ gain (aten's LayerNorm backward of
    x without an affine part). ∂gain, ∂bias go into ``out`` under ``names`` (gain, bias) when
    there."""
    x, xhat, mean, rstd = cache
    tmp = buf(f"tmp{tuple(dh.shape)}", dh.shape)
    dg = torch.sum(torch.mul(dh, xhat, out=tmp), dim=1, keepdim=True, out=out.get(names[0]))
    db = torch.sum(dh, dim=1, keepdim=True, out=out.get(names[1]))
    dx = torch.ops.aten.native_layer_norm_backward(
        torch.mul(dh, g, out=tmp), x, (dh.shape[-1],), mean, rstd, None, None, (True, False, False)
    )[0]
    return dx, dg, db


class _Heads(NamedTuple):
    """The (w, H) 0/1 matrix S of channel c in head h: x (…, w) @ S sums each head's d_h channels,
    a (…, H) @ Sᵀ spreads a head's value over its channels; the scaled copies fold the scores'
    1/√d_h into the same products. Contiguous, never modified."""

    S: torch.Tensor
    St: torch.Tensor
    S_scaled: torch.Tensor
    """S / √d_h"""
    St_scaled: torch.Tensor
    """Sᵀ / √d_h"""


@functools.lru_cache(maxsize=16)
def _heads(w: int, heads: int, dtype: torch.dtype) -> _Heads:
    """:class:`_Heads` of width w and H heads."""
    S = (torch.arange(w)[:, None] // (w // heads) == torch.arange(heads)).to(dtype)
    c = 1.0 / math.sqrt(w // heads)
    return _Heads(S, S.T.contiguous(), S * c, (S * c).T.contiguous())


def _attend_table(qkv_t, Wo, plan: _Plan, runs: _Runs, heads: int, buf: _Buf):
    """Block-0 attention of its U rows, W_o included: y_u = Σ_{j,h} a_hju (v_h W_o,h)[cell_ju].

    qkv_t: (K, T, 3w) on the table; a_hju = softmax_j(q_h[cell_u]·k_h[cell_ju]/√d_h + mask), the
    scores gathered from one (T, T) table per head; the sum over (j, h) is an ``embedding_bag`` of
    the value-output table. Returns y (K, U, w) and the cache of :func:`_attend_table_back`.
    """
    K, T, w3 = qkv_t.shape
    L, U = plan.mask0.shape
    w, H = w3 // 3, heads
    dh = w // H
    q, k, v = qkv_t.view(K, T, 3, H, dh).permute(2, 0, 3, 1, 4).reshape(3, K * H, T, dh).unbind()
    s_t = torch.baddbmm(
        buf("t.st", (K * H, T, T)), q, k.transpose(1, 2), beta=0.0, alpha=1.0 / math.sqrt(dh)
    )
    s = torch.index_select(s_t.view(K, -1), 1, plan.scores[0], out=buf("t.s", (K, H * L * U)))
    a = torch.softmax(s.view(K, H, L, U).add_(plan.mask0), dim=2, out=buf("t.a", (K, H, L, U)))
    Wh = Wo.reshape(K * H, dh, w)  # W_o,h: the rows of W_o that head h's channels multiply
    vo = torch.bmm(v, Wh)  # (K·H, T, w): v_h W_o,h on the table
    psw = torch.permute(a, (0, 3, 2, 1)).reshape(-1)  # bag u: its (j, h) entries
    y = F.embedding_bag(
        runs.vo, vo.view(-1, w), runs.vo_offsets, per_sample_weights=psw, mode="sum"
    )
    return y.view(K, U, w), (q, k, v, Wh, a)


def _attend_table_back(dy, cache, Wo, plan: _Plan, runs: _Runs, buf: _Buf):
    """(∂qkv_t (K, T, 3w), ∂W_o (K, w, w)) of :func:`_attend_table` from ∂y (K, U, w)."""
    q, k, v, Wh, a = cache
    K, H, L, U = a.shape
    T, dh = q.shape[1:]
    w = H * dh
    # ∂a_hju = ∂o_hu · v_h[cell_ju], ∂o_h = ∂y W_o,hᵀ: per-head (T, U) tables of v_h · ∂o_h
    doT = torch.bmm(Wo, dy.transpose(1, 2), out=buf("t.doT", (K, w, U)))  # (K, (h, d_h), U)
    m = torch.bmm(v, doT.view(K * H, dh, U), out=buf("t.m", (K * H, T, U)))
    da = torch.index_select(m.view(K, -1), 1, plan.gather[0], out=buf("t.da", (K, H * L * U)))
    da = da.view(a.shape)
    ds = da.sub_((a * da).sum(2, keepdim=True)).mul_(a)  # ∂s·√d_h
    ds_t = buf.zeros("t.dst", (K, H * T * T)).scatter_add_(
        1, plan.scores.expand(K, -1), ds.view(K, -1)
    )
    ds_t = ds_t.view(K * H, T, T)
    psw = torch.index_select(a.view(K, -1), 1, plan.back_weights).view(-1)
    dvo = F.embedding_bag(
        runs.back_rows, dy.reshape(K * U, w), runs.back_offsets, per_sample_weights=psw, mode="sum"
    ).view(K * H, T, w)
    scale = 1.0 / math.sqrt(dh)
    dqkv = buf("t.dqkv", (3, K * H, T, dh))
    torch.baddbmm(q, ds_t, k, beta=0.0, alpha=scale, out=dqkv[0])
    torch.baddbmm(k, ds_t.transpose(1, 2), q, beta=0.0, alpha=scale, out=dqkv[1])
    torch.bmm(dvo, Wh.transpose(1, 2), out=dqkv[2])
    dqkv = dqkv.view(3, K, H, T, dh).permute(1, 3, 0, 2, 4).reshape(K, T, 3 * w)
    return dqkv, torch.bmm(v.transpose(1, 2), dvo).view(K, w, w)


def _attend_rows(q, kv, mask, heads: int, buf: _Buf, name: str):
    """Causal attention at Lq query positions: q (K, Lq, B, w), kv (K, L, B, 2w) keys and values at
    every position, mask (Lq, L, B, 1) additive → (o (K, Lq, B, w), a (K, Lq, L, B, H)).

    Channels stay the contiguous inner axis of every product; per-head sums over d_h and the
    spreading of a head's weight over its channels are small matmuls with :func:`_heads`.
    """
    K, Lq, B, w = q.shape
    L = kv.shape[1]
    S = _heads(w, heads, q.dtype)
    k, v = kv.view(K, L, B, 2, w).unbind(3)
    qk = torch.mul(q.unsqueeze(2), k.unsqueeze(1), out=buf(name + ".qk", (K, Lq, L, B, w)))
    s = torch.matmul(qk, S.S_scaled).add_(mask)
    a = torch.softmax(s, dim=2, out=buf(name + ".a", s.shape))
    av = torch.mul(torch.matmul(a, S.St, out=qk), v.unsqueeze(1), out=qk)  # ⊙ v, head by head
    return av.sum(dim=2), a


def _attend_rows_back(do, q, kv, a, buf: _Buf, name: str):
    """(∂q (K, Lq, B, w), ∂kv (K, L, B, 2w)) of :func:`_attend_rows` from ∂o (K, Lq, B, w)."""
    K, Lq, L, B, H = a.shape
    w = q.shape[-1]
    S = _heads(w, H, q.dtype)
    k, v = kv.view(K, L, B, 2, w).unbind(3)
    do = do.unsqueeze(2)  # (K, Lq, 1, B, w)
    tmp = buf(name + ".qk", (K, Lq, L, B, w))
    dkv = buf(name + ".dkv", (K, L, B, 2, w))
    dk, dv = dkv[:, :, :, 0], dkv[:, :, :, 1]

    def sum_queries(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
        """out = Σ over the Lq queries of x ⊙ y (one query: the product itself, no sum pass)."""
        if Lq == 1:
            torch.mul(x, y, out=out.unsqueeze(1))
        else:
            torch.sum(torch.mul(x, y, out=buf(name + ".t2", tmp.shape)), dim=1, out=out)

    sum_queries(torch.matmul(a, S.St, out=tmp), do, dv)
    da = torch.matmul(torch.mul(do, v.unsqueeze(1), out=tmp), S.S)  # (K, Lq, L, B, H)
    ds = da.sub_((a * da).sum(2, keepdim=True)).mul_(a)  # ∂s
    dse = torch.matmul(ds, S.St_scaled, out=tmp)  # ∂s / √d_h spread over each head's channels
    sum_queries(dse, q.unsqueeze(2), dk)
    dq = torch.mul(dse, k.unsqueeze(1), out=tmp).sum(dim=2)
    return dq, dkv.view(kv.shape)


class TransformerEncoder(Encoder):
    """f(ξ) = query-position output of a small causal transformer (see module docstring)."""

    out_name = "W_out"

    def __init__(self, cfg, contexts, dtype):
        super().__init__(cfg, contexts, dtype)
        seq, pad = render_contexts(contexts, cfg.order_seed)
        self.L = L = self.m + 1
        self.n_tok = 2 * self.m + 2
        self.T = self.n_tok * L  # table cells (token, position)
        self.feature_dim = cfg.width
        self.seq = torch.as_tensor(seq)
        causal = np.tril(np.ones((L, L), dtype=bool))
        allowed = causal[None] & ~pad[:, None, :]  # (n, L query, L key)
        allowed |= np.eye(L, dtype=bool)[None]  # pads attend to themselves (never read)
        self.plan = _plan(seq, allowed, self.n_tok, cfg.depth, cfg.heads, dtype)
        self._runs: dict[int, _Runs] = {}

    def shapes(self):
        w, L = self.cfg.width, self.L
        out = [("tok_emb", (self.n_tok, w)), ("pos_emb", (L, w))]
        for i in range(self.cfg.depth):
            out += [
                (f"ln1_g{i}", (1, w)),
                (f"ln1_b{i}", (1, w)),
                (f"Wqkv{i}", (w, 3 * w)),
                (f"Wo{i}", (w, w)),
                (f"ln2_g{i}", (1, w)),
                (f"ln2_b{i}", (1, w)),
                (f"W1{i}", (w, 4 * w)),
                (f"b1{i}", (1, 4 * w)),
                (f"W2{i}", (4 * w, w)),
                (f"b2{i}", (1, w)),
            ]
        return out + [("lnf_g", (1, w)), ("lnf_b", (1, w)), ("W_out", (w, self.d))]

    def init(self, gen, init_scale, hidden_scale):
        p = {}
        for name, shape in self.shapes():
            if name.startswith("ln") and "_g" in name:
                p[name] = torch.ones(shape, dtype=torch.float64)
            elif name.startswith(("ln", "b1", "b2")):
                p[name] = torch.zeros(shape, dtype=torch.float64)
            elif name.endswith("emb"):
                p[name] = torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name == "W_out":
                p[name] = torch.randn(shape, generator=gen, dtype=torch.float64) * init_scale
            else:
                sd = hidden_scale if hidden_scale is not None else 1.0 / math.sqrt(shape[0])
                p[name] = torch.randn(shape, generator=gen, dtype=torch.float64) * sd
        return p

    # ------------------------------------------------------------------ forward
    def forward(self, p):
        H, cache = self.features(p)
        return torch.bmm(H, p["W_out"]), (cache, H)

    def features(self, p, ws=None):
        """H = LN_f(x_last): (K, n, w), and the cache of :meth:`backward_features`."""
        K = p["tok_emb"].shape[0]
        if K not in self._runs:
            self._runs[K] = _runs(self.plan, K, self.T)
        buf = _Buf(ws if ws is not None else self.ws, p["tok_emb"].dtype)
        return self._features(p, self.plan, self._runs[K], buf)

    def _features(self, p: Params, plan: _Plan, runs: _Runs, buf: _Buf):
        """H (K, B, w) of the B contexts of ``plan``."""
        K, T, w = p["tok_emb"].shape[0], self.T, self.cfg.width
        L, depth, heads = self.L, self.cfg.depth, self.cfg.heads
        U = plan.cell.shape[0]
        # block 0 on the (token, position) table, then at its U rows
        x0t = (p["tok_emb"][:, :, None] + p["pos_emb"][:, None]).view(K, T, w)
        h0t, ln0 = _ln(x0t, p["ln1_g0"], p["ln1_b0"], buf, "ln1.0")
        y, att = _attend_table(
            torch.bmm(h0t, p["Wqkv0"]), p["Wo0"], plan, runs, self.cfg.heads, buf
        )
        x = torch.index_select(x0t.view(K * T, w), 0, runs.cell, out=buf("x0", (K * U, w)))
        x, mlp = self._mlp(p, 0, x.view(K, U, w).add_(y), buf)
        blocks = [{"h": h0t, "ln1": ln0, "att": att, "mlp": mlp}]
        if depth > 2:  # middle blocks run on the full (position, context) grid
            x = torch.index_select(
                x.view(K * U, w), 0, runs.keys, out=buf("xd", (runs.keys.numel(), w))
            )
            x = x.view(K, -1, w)
        B = x.shape[1] // L
        for i in range(1, depth - 1):
            c: dict[str, Any] = {}
            h, c["ln1"] = _ln(x, p[f"ln1_g{i}"], p[f"ln1_b{i}"], buf, f"ln1.{i}")
            qkv = torch.bmm(h, p[f"Wqkv{i}"], out=buf(f"qkv{i}", (K, L * B, 3 * w))).view(
                K, L, B, 3 * w
            )
            o, c["a"] = _attend_rows(qkv[..., :w], qkv[..., w:], plan.mask, heads, buf, f"att{i}")
            x = torch.baddbmm(x, o.view(K, L * B, w), p[f"Wo{i}"], out=buf(f"xa{i}", x.shape))
            c.update(h=h, qkv=qkv, o=o)
            x, c["mlp"] = self._mlp(p, i, x, buf)
            blocks.append(c)
        if depth > 1:
            x = self._last(p, x, plan, runs, blocks, buf)
        H, lnf = _ln(x, p["lnf_g"], p["lnf_b"], buf, "lnf")
        return H, (blocks, lnf, plan, runs, buf)

    def _last(self, p: Params, x: torch.Tensor, plan: _Plan, runs: _Runs, blocks: list, buf: _Buf):
        """The last block: LN, keys and values at every row of x (K, R, w), the rest at the
        query positions only. Returns x after the block at the queries, (K, B, w)."""
        i, L, w = self.cfg.depth - 1, self.L, self.cfg.width
        K, R, _ = x.shape
        B = plan.qmask.shape[2]  # the queries are the last B rows of x
        keys = runs.keys if i == 1 else None  # depth 2: x is on block 0's rows, else the grid
        c: dict[str, Any] = {"key_bags": runs.key_bags if i == 1 else None}
        h, c["ln1"] = _ln(x, p[f"ln1_g{i}"], p[f"ln1_b{i}"], buf, f"ln1.{i}")
        W = p[f"Wqkv{i}"]  # (K, w, 3w)
        kv = torch.bmm(h, W[:, :, w:], out=buf(f"kv{i}", (K, R, 2 * w)))
        if keys is not None:
            kv = kv.view(K * R, 2 * w)
            kv = torch.index_select(kv, 0, keys, out=buf(f"kvg{i}", (K * L * B, 2 * w)))
        kv = kv.view(K, L, B, 2 * w)
        hq = h[:, R - B :]
        q = torch.bmm(hq, W[:, :, :w]).view(K, 1, B, w)
        o, c["a"] = _attend_rows(q, kv, plan.qmask, self.cfg.heads, buf, "last")
        o = o.view(K, B, w)
        x = torch.baddbmm(x[:, R - B :], o, p[f"Wo{i}"])
        c.update(h=h, hq=hq, q=q, kv=kv, o=o)
        x, c["mlp"] = self._mlp(p, i, x, buf)
        blocks.append(c)
        return x

    def _mlp(self, p: Params, i: int, x: torch.Tensor, buf: _Buf) -> tuple[torch.Tensor, tuple]:
        """x + GELU(LN(x) W₁ + b₁) W₂ + b₂ for x (K, R, w), and its cache."""
        K, R, w = x.shape
        h, ln = _ln(x, p[f"ln2_g{i}"], p[f"ln2_b{i}"], buf, f"ln2.{i}")
        a = torch.baddbmm(p[f"b1{i}"], h, p[f"W1{i}"], out=buf(f"mlp{i}.a", (K, R, 4 * w)))
        u = torch.ops.aten.gelu.out(a, out=buf(f"mlp{i}.u", a.shape))
        y = torch.baddbmm(x, u, p[f"W2{i}"], out=buf(f"mlp{i}.y", x.shape)).add_(p[f"b2{i}"])
        return y, (ln, h, a, u)

    # ------------------------------------------------------------------ backward
    grad_into = True

    def backward(self, p, cache, df, out=None):
        feats, H = cache
        o = out or {}
        g = {"W_out": torch.bmm(H.transpose(1, 2), df, out=o.get("W_out"))}
        g.update(
            self.backward_features(p, feats, torch.bmm(df, p["W_out"].transpose(1, 2)), out=out)
        )
        return g

    def backward_features(self, p, cache, dH, ws=None, out=None):
        """Gradients of every parameter but W_out; those with a view in ``out`` (K, *shape) are
        written there (the model's flat gradient)."""
        blocks, lnf, plan, runs, buf = cache
        K, T, w, depth = dH.shape[0], self.T, self.cfg.width, self.cfg.depth
        o: Params = out or {}
        g: Params = {}
        dx, g["lnf_g"], g["lnf_b"] = _ln_back(dH, p["lnf_g"], lnf, buf, o, ("lnf_g", "lnf_b"))
        if depth > 1:
            dx = self._last_back(p, blocks[-1], dx, g, buf, o)  # (K, R, w)
        for i in reversed(range(1, depth - 1)):
            c = blocks[i]
            K, LB, _ = dx.shape
            dx = self._mlp_back(p, i, c["mlp"], dx, g, buf, o)
            g[f"Wo{i}"] = torch.bmm(c["o"].view(K, LB, w).transpose(1, 2), dx, out=o.get(f"Wo{i}"))
            do = torch.bmm(dx, p[f"Wo{i}"].transpose(1, 2)).view(c["o"].shape)
            qkv = c["qkv"]
            dq, dkv = _attend_rows_back(do, qkv[..., :w], qkv[..., w:], c["a"], buf, f"att{i}")
            dqkv = torch.cat((dq, dkv), dim=-1).view(K, LB, 3 * w)
            g[f"Wqkv{i}"] = torch.bmm(c["h"].transpose(1, 2), dqkv, out=o.get(f"Wqkv{i}"))
            dh = torch.bmm(dqkv, p[f"Wqkv{i}"].transpose(1, 2))
            dxi, g[f"ln1_g{i}"], g[f"ln1_b{i}"] = _ln_back(
                dh, p[f"ln1_g{i}"], c["ln1"], buf, o, (f"ln1_g{i}", f"ln1_b{i}")
            )
            dx = dx.add_(dxi)
        # block 0: at its rows, then on the table
        c = blocks[0]
        U = runs.cell.numel() // K
        if depth > 2:  # the full grid's ∂x onto the distinct prefixes
            dx = runs.key_bags.sum(dx.view(-1, w)).view(K, U, w)
        dx = self._mlp_back(p, 0, c["mlp"], dx, g, buf, o)
        dqkv_t, g["Wo0"] = _attend_table_back(dx, c["att"], p["Wo0"], plan, runs, buf)
        g["Wqkv0"] = torch.bmm(c["h"].transpose(1, 2), dqkv_t, out=o.get("Wqkv0"))
        dh0t = torch.bmm(dqkv_t, p["Wqkv0"].transpose(1, 2))
        dx0t, g["ln1_g0"], g["ln1_b0"] = _ln_back(
            dh0t, p["ln1_g0"], c["ln1"], buf, o, ("ln1_g0", "ln1_b0")
        )
        dx0t.view(K * T, w).add_(runs.cell_bags.sum(dx.view(-1, w)))  # the residual ∂x₀
        dx0t = dx0t.view(K, self.n_tok, self.L, w)
        g["tok_emb"] = torch.sum(dx0t, dim=2, out=o.get("tok_emb"))
        g["pos_emb"] = torch.sum(dx0t, dim=1, out=o.get("pos_emb"))
        return g

    def _last_back(self, p: Params, c: dict, dx: torch.Tensor, g: Params, buf: _Buf, o: Params):
        """∂x of the last block's input rows (K, R, w) from ∂x of its output (K, B, w)."""
        i, w = self.cfg.depth - 1, self.cfg.width
        K, B, _ = dx.shape
        h = c["h"]
        R = h.shape[1]
        dx = self._mlp_back(p, i, c["mlp"], dx, g, buf, o)
        g[f"Wo{i}"] = torch.bmm(c["o"].transpose(1, 2), dx, out=o.get(f"Wo{i}"))
        do = torch.bmm(dx, p[f"Wo{i}"].transpose(1, 2)).view(K, 1, B, w)
        dq, dkv = _attend_rows_back(do, c["q"], c["kv"], c["a"], buf, "last")
        dq = dq.view(K, B, w)
        dkv = dkv.view(-1, 2 * w)
        if c["key_bags"] is not None:
            dkv = c["key_bags"].sum(dkv)
        dkv = dkv.view(K, R, 2 * w)
        W = p[f"Wqkv{i}"]
        dW = o.get(f"Wqkv{i}")
        if dW is None:
            dW = torch.empty_like(W)
        torch.bmm(c["hq"].transpose(1, 2), dq, out=dW[:, :, :w])  # the queries'
        torch.bmm(h.transpose(1, 2), dkv, out=dW[:, :, w:])  # keys' and values'
        g[f"Wqkv{i}"] = dW
        dh = torch.bmm(dkv, W[:, :, w:].transpose(1, 2), out=buf(f"dh{i}", h.shape))
        dh[:, R - B :].add_(torch.bmm(dq, W[:, :, :w].transpose(1, 2)))  # the queries: last B rows
        dxr, g[f"ln1_g{i}"], g[f"ln1_b{i}"] = _ln_back(
            dh, p[f"ln1_g{i}"], c["ln1"], buf, o, (f"ln1_g{i}", f"ln1_b{i}")
        )
        dxr[:, R - B :].add_(dx)  # the residual
        return dxr

    def _mlp_back(
        self, p: Params, i: int, cache: tuple, dy: torch.Tensor, g: Params, buf: _Buf, o: Params
    ):
        """∂x of :meth:`_mlp` from ∂y (K, R, w); puts the MLP's and LN₂'s gradients into g (into
        their views in ``o`` when there)."""
        ln, h, a, u = cache
        g[f"W2{i}"] = torch.bmm(u.transpose(1, 2), dy, out=o.get(f"W2{i}"))
        g[f"b2{i}"] = torch.sum(dy, dim=1, keepdim=True, out=o.get(f"b2{i}"))
        du = torch.bmm(dy, p[f"W2{i}"].transpose(1, 2), out=buf(f"mlp{i}.du", a.shape))
        da = torch.ops.aten.gelu_backward.grad_input(du, a, grad_input=du)
        g[f"W1{i}"] = torch.bmm(h.transpose(1, 2), da, out=o.get(f"W1{i}"))
        g[f"b1{i}"] = torch.sum(da, dim=1, keepdim=True, out=o.get(f"b1{i}"))
        dh = torch.bmm(da, p[f"W1{i}"].transpose(1, 2), out=buf(f"mlp{i}.dh", dy.shape))
        dx, g[f"ln2_g{i}"], g[f"ln2_b{i}"] = _ln_back(
            dh, p[f"ln2_g{i}"], ln, buf, o, (f"ln2_g{i}", f"ln2_b{i}")
        )
        return dx.add_(dy)
