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
- **Minibatches** (:meth:`TransformerEncoder.forward_rows`): the same evaluation on a plan of
  each run's own B contexts (the distinct prefixes of run k's batch, padded to a count shared by
  the runs); the gradient of Σ_k Σ_b ⟨∂f_kb, f_k(ξ_kb)⟩ flows back exactly as on the full batch,
  a context repeated in a batch once per occurrence. A step's cost is O(K·B·L) rows plus the
  table, whatever the number of contexts.
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
    """Where the blocks are evaluated for R sets of B contexts each (index tensors; R = 1: one set
    shared by all runs, the full batch; R = K: run k's own minibatch, :meth:`TransformerEncoder.
    forward_rows`). Every field has the leading axis R; when R > 1 the indices into per-run tables
    are offset by r·(table size): they index the runs' tables stacked into one flat array.

    Block 0 runs on U rows per set: one per distinct prefix (positions 0..i of a context) when
    depth ≥ 2, the B query positions when depth = 1; the residual stream below the last block is
    laid out (position j, context b), j-major. Either way the B query positions are the last B
    rows, in context order (a context repeated in a set gets one query row per occurrence). A set
    with fewer distinct prefixes than U is padded with copies of its first query row before its
    queries (never read: their gradient is 0). T = (2m + 2)·L table cells, H heads.
    """

    cell: torch.Tensor
    """(R, U) table cell (token·L + position) of each block-0 row: its x₀ row."""
    mask0: torch.Tensor
    """(R, 1, L, U) additive mask (0 or −∞) of key position j for each block-0 row."""
    scores: torch.Tensor
    """(R, H·L·U) index h·T² + cell·T + cell_j of (h, j, u) into the per-head (T, T) score tables."""
    gather: torch.Tensor | None
    """(1, H·L·U) index h·T·U + cell_j·U + u of (h, j, u) into per-head (T, U) tables (R = 1 only,
    :func:`_attend_table_back`)."""
    keycell: torch.Tensor
    """(R, L·U) cell_j of (j, u): the table row of key position j of each block-0 row."""
    vo: torch.Tensor
    """(R, U, L·H) index h·T + cell_j of (u, j, h) into the per-head (T, ·) value-output tables."""
    back_rows: torch.Tensor
    """(R, H·L·U) block-0 row u of each (h, j, u) sorted by (h, cell_j): the transposed bags."""
    back_weights: torch.Tensor
    """(R, H·L·U) flat (h, j, u) index of the same entries."""
    back_offsets: torch.Tensor
    """(R, H·T) start of each (h, cell) bag in ``back_rows``."""
    keys: torch.Tensor | None
    """(R, L·B) block-0 row of each (position j, context b), j-major; None if depth = 1."""
    mask: torch.Tensor
    """(R, L, L, B, 1) additive mask of the middle blocks (query i, key j, context b)."""
    qmask: torch.Tensor
    """(R, 1, L, B, 1) additive mask of the last block's query on key j."""


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of int64 keys (N, C) in lexicographic order, as ``np.unique(keys,
    axis=0, return_index=True, return_inverse=True)[1:]``: the first occurrence of each (U,) and
    each row's rank among them (N,), by one stable ``lexsort`` (``np.unique`` on rows sorts a
    structured dtype, ten times slower at a minibatch's 10⁴ rows)."""
    order = np.lexsort(keys.T[::-1])  # the last key of lexsort is its primary one
    ks = keys[order]
    new = np.concatenate([[True], (ks[1:] != ks[:-1]).any(axis=1)])
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def _prefix_keys(seq: np.ndarray, n_tok: int) -> np.ndarray:
    """Keys (R, i, B, C) int64 of the prefixes (positions 0..i) of token sequences seq (R, B, L)
    whose lexicographic order is that of the prefixes padded with −1 after i: digits token + 1
    (0 after i) in mixed radix n_tok + 1, as many positions per key as fit, most significant
    first; the key of prefix i is a cumulative sum along positions (O(L) per context, not L²)."""
    R, B, L = seq.shape
    base = n_tok + 1
    per = next(c for c in range(L, 0, -1) if base**c < 2**62)  # positions per key
    C = -(-L // per)
    digits = np.zeros((R, B, C * per), dtype=np.int64)
    digits[..., :L] = seq + 1
    weight = base ** np.arange(per - 1, -1, -1, dtype=np.int64)
    cs = np.cumsum(digits.reshape(R, B, C, per) * weight, axis=3).reshape(R, B, C * per)
    i, start = np.arange(L)[:, None], np.arange(C) * per
    keys = np.where(start <= i, cs[..., np.minimum(i, start + per - 1)], 0)  # (R, B, i, C)
    return keys.transpose(0, 2, 1, 3)


def _block0_rows(seq: np.ndarray, n_tok: int, depth: int, quantum: int) -> tuple:
    """Block 0's rows of R sets of contexts with token sequences seq (R, B, L): for each set, the
    (position i, context b) of its U rows, (R, U) each, and the block-0 row of each (position j,
    context b), (R, L·B) (None if depth = 1). U is a multiple of ``quantum``."""
    R, B, L = seq.shape
    if depth == 1:  # only the query position is read
        return np.full((R, B), L - 1), np.broadcast_to(np.arange(B), (R, B)), None
    # every (set r, position i, context b) prefix, j-major, tagged with r: sets share no rows
    r, i, b = (a.reshape(-1) for a in np.indices((R, L, B)))
    first, inv = _unique_rows(np.column_stack([r, _prefix_keys(seq, n_tok).reshape(R * L * B, -1)]))
    # place the rows: per set its other prefixes in sorted order, padding, then its B queries —
    # one per context b, also when a context repeats (its keys are then the last copy's row)
    r_u, i_u = r[first], i[first]
    query = i_u == L - 1  # a full context never equals a shorter prefix
    n_other = np.bincount(r_u[~query], minlength=R)
    U = -(-(n_other.max() + B) // quantum) * quantum
    slot = np.cumsum(~query) - 1 - np.concatenate([[0], np.cumsum(n_other)[:-1]])[r_u]
    q = i == L - 1
    slot[query] = 0
    np.maximum.at(slot, inv[q], U - B + b[q])  # a repeated context: its last copy's slot
    rows_i, rows_b = np.full((R, U), L - 1), np.zeros((R, U), dtype=np.int64)  # padding: query 0
    other = ~query
    rows_i[r_u[other], slot[other]] = i_u[other]
    rows_b[r_u[other], slot[other]] = b[first][other]
    rows_b[:, U - B :] = np.arange(B)
    return rows_i, rows_b, slot[inv].reshape(R, L * B)


def _plan(seq: np.ndarray, n_tok: int, depth: int, heads: int, dtype, quantum: int = 1):
    """:class:`_Plan` of R sets of contexts with token sequences seq (R, B, L) (pad = token
    n_tok − 1; causal attention, pads attended by nobody but themselves)."""
    R, B, L = seq.shape
    T, H = n_tok * L, heads
    allowed = np.tril(np.ones((L, L), dtype=bool)) & (seq != n_tok - 1)[:, :, None, :]
    allowed |= np.eye(L, dtype=bool)  # pads attend to themselves (never read)
    add = np.where(allowed, 0.0, -np.inf)  # (R, B, i, j)
    cell = seq * L + np.arange(L)  # (R, B, L)
    i, b, keys = _block0_rows(seq, n_tok, depth, quantum)
    U = b.shape[1]
    r = np.arange(R)[:, None]
    kcell = cell[r, b].transpose(0, 2, 1)  # (R, L, U): the cell of each key position of each row
    cell_u = cell[r, b, i][:, None, None]  # (R, 1, 1, U)
    h = np.arange(H)[:, None, None]
    u = np.arange(U)
    # the transposed bags: every (h, j, u), grouped by (h, cell_j) in table order (a stable sort:
    # int16 cells take numpy's radix sort)
    small = kcell.reshape(R, -1).astype(np.int16 if T < 2**15 else np.int64)
    order = np.argsort(small, axis=1, kind="stable")  # over (j, u)
    counts = np.bincount((kcell + T * r[:, None]).reshape(-1), minlength=R * T).reshape(R, T)
    starts = np.cumsum(np.tile(counts, H), axis=1) - np.tile(counts, H)

    def t(a, dt=None):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt)

    # sets stacked (R > 1): set s's indices into a table of `size` entries are offset by s·size
    stack = np.arange(R)[:, None, None, None] if R > 1 else np.zeros((1, 1, 1, 1), dtype=np.int64)

    return _Plan(
        cell=t(cell_u[:, 0, 0]),
        mask0=t(add[r, b, i].transpose(0, 2, 1)[:, None], dtype),
        scores=t(((cell_u * T + kcell[:, None]) + (h * T * T + stack * H * T * T)).reshape(R, -1)),
        gather=t((h * T * U + kcell[:, None] * U + u).reshape(R, -1)) if R == 1 else None,
        keycell=t((kcell + stack[:, 0] * T).reshape(R, -1)),
        vo=t((kcell.transpose(0, 2, 1)[..., None] + h[:, 0, 0] * T).reshape(R, U, L * H)),
        back_rows=t(np.tile(order % U, (1, H))),
        back_weights=t(
            (order[:, None] + (h[:, :, 0] * L * U + stack[:, 0] * H * L * U)).reshape(R, -1)
        ),
        back_offsets=t(starts),
        keys=None if keys is None else t(keys),
        mask=t(add.transpose(0, 2, 3, 1)[..., None], dtype),
        qmask=t(add[:, :, L - 1].transpose(0, 2, 1)[:, None, :, :, None], dtype),
    )


def _take(src: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """src (K, X) at the columns index (R, N) of each run, into out (K, N): one index for all runs
    (R = 1), or one per run (R = K, offset by k·X: :class:`_Plan`)."""
    if index.shape[0] == 1:
        return torch.index_select(src, 1, index[0], out=out)
    return torch.index_select(src.view(-1), 0, index.view(-1), out=out.view(-1)).view(out.shape)


def _put(dst: torch.Tensor, index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst (K, X) += src (K, N) at the columns index (R, N) of each run (transposed :func:`_take`)."""
    if index.shape[0] == 1:
        return dst.scatter_add_(1, index.expand(dst.shape[0], -1), src)
    dst.view(-1).index_add_(0, index.view(-1), src.view(-1))
    return dst


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
    U, H = plan.cell.shape[1], plan.back_offsets.shape[1] // T
    N = plan.back_rows.shape[1]
    keys = None if plan.keys is None else (plan.keys + U * run).reshape(-1)  # (K·L·B,)
    cell = (plan.cell + T * run).reshape(-1)
    return _Runs(
        cell=cell,
        vo=(plan.vo + H * T * run[:, :, None]).reshape(-1),
        vo_offsets=torch.arange(0, K * plan.vo[0].numel(), plan.vo.shape[2]),
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
    L, U = plan.mask0.shape[2:]
    w, H = w3 // 3, heads
    dh = w // H
    q, k, v = qkv_t.view(K, T, 3, H, dh).permute(2, 0, 3, 1, 4).reshape(3, K * H, T, dh).unbind()
    s_t = torch.baddbmm(
        buf("t.st", (K * H, T, T)), q, k.transpose(1, 2), beta=0.0, alpha=1.0 / math.sqrt(dh)
    )
    s = _take(s_t.view(K, -1), plan.scores, out=buf("t.s", (K, H * L * U)))
    a = torch.softmax(s.view(K, H, L, U).add_(plan.mask0), dim=2, out=buf("t.a", (K, H, L, U)))
    Wh = Wo.reshape(K * H, dh, w)  # W_o,h: the rows of W_o that head h's channels multiply
    vo = torch.bmm(v, Wh)  # (K·H, T, w): v_h W_o,h on the table
    psw = torch.permute(a, (0, 3, 2, 1)).reshape(-1)  # bag u: its (j, h) entries
    y = F.embedding_bag(
        runs.vo, vo.view(-1, w), runs.vo_offsets, per_sample_weights=psw, mode="sum"
    )
    return y.view(K, U, w), (q, k, v, Wh, a)


def _attention_weights_back(dy, v, Wo, plan: _Plan, runs: _Runs, buf: _Buf) -> torch.Tensor:
    """∂a (K, H·L·U) of block 0's attention weights from ∂y (K, U, w), v (K·H, T, d_h) on the
    table: ∂a_hju = ∂o_hu · v_h[cell_ju] with ∂o_h = ∂y W_o,hᵀ.

    The full batch (one plan, R = 1) forms per-head (T, U) tables v_h ∂o_hᵀ and gathers them (fast
    for its few table cells per position); per-run plans gather v at each (j, u) instead —
    L rather than T = (2m + 2)·L products per row, the cheaper one once m grows (at m = 12 the
    (T, U) tables took a third of a minibatch step).
    """
    K, U, w = dy.shape
    KH, T, dh = v.shape
    H, L = KH // K, plan.keycell.shape[1] // U
    if plan.gather is not None:
        doT = torch.bmm(Wo, dy.transpose(1, 2), out=buf("t.doT", (K, w, U)))  # (K, (h, d_h), U)
        m = torch.bmm(v, doT.view(K * H, dh, U), out=buf("t.m", (K * H, T, U)))
        return _take(m.view(K, -1), plan.gather, out=buf("t.da", (K, H * L * U)))
    do = torch.bmm(dy, Wo.transpose(1, 2), out=buf("t.do", (K, U, w)))  # ∂o, channels (h, d_h)
    vt = v.view(K, H, T, dh).transpose(1, 2).reshape(K * T, w)  # the table's v, channels last
    vj = torch.index_select(vt, 0, plan.keycell.view(-1), out=buf("t.vj", (K * L * U, w)))
    vj = vj.view(K, L, U, w).mul_(do.unsqueeze(1))
    da = torch.matmul(vj, _heads(w, H, dy.dtype).S)  # (K, L, U, H): each head's sum
    return buf("t.da", (K, H, L, U)).copy_(da.permute(0, 3, 1, 2)).view(K, -1)


def _attend_table_back(dy, cache, Wo, plan: _Plan, runs: _Runs, buf: _Buf):
    """(∂qkv_t (K, T, 3w), ∂W_o (K, w, w)) of :func:`_attend_table` from ∂y (K, U, w)."""
    q, k, v, Wh, a = cache
    K, H, L, U = a.shape
    T, dh = q.shape[1:]
    w = H * dh
    da = _attention_weights_back(dy, v, Wo, plan, runs, buf).view(a.shape)
    ds = da.sub_((a * da).sum(2, keepdim=True)).mul_(a)  # ∂s·√d_h
    ds_t = _put(buf.zeros("t.dst", (K, H * T * T)), plan.scores, ds.view(K, -1))
    ds_t = ds_t.view(K * H, T, T)
    psw = _take(a.view(K, -1), plan.back_weights, out=buf("t.psw", (K, H * L * U))).view(-1)
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

    #: Block 0's rows of a minibatch are padded to a multiple of this many (the step's buffers
    #: keep their shapes from one batch to the next)
    ROWS_QUANTUM = 64

    def __init__(self, cfg, contexts, dtype):
        super().__init__(cfg, contexts, dtype)
        self.L = self.m + 1
        self.n_tok = 2 * self.m + 2
        self.T = self.n_tok * self.L  # table cells (token, position)
        self.feature_dim = cfg.width
        # built on first use: a minibatch step never needs the plan of every context
        self._seq: np.ndarray | None = None
        self._plan: _Plan | None = None
        self._runs: dict[int, _Runs] = {}

    @property
    def seq(self) -> np.ndarray:
        """Token sequences (n, L) of every context (:func:`render_contexts`; one pass, cached)."""
        if self._seq is None:
            self._seq = render_contexts(self.contexts, self.cfg.order_seed)[0]
        return self._seq

    @property
    def plan(self) -> _Plan:
        """The :class:`_Plan` of every context, shared by all runs (the full batch)."""
        if self._plan is None:
            self._plan = _plan(
                self.seq[None], self.n_tok, self.cfg.depth, self.cfg.heads, self.dtype
            )
        return self._plan

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

    def forward_rows(self, p, rows):
        """f of context ``rows[k]`` under run k, rows (K, B) → (K, B, d), and the backward cache.

        The same evaluation as :meth:`forward`, on a :class:`_Plan` of the batch: run k's blocks
        run on the distinct prefixes of its own B contexts only (and block 0's (token, position)
        table), so a step costs O(K·B·L) rows whatever the number n of contexts. A context
        repeated in a batch gets one query row per occurrence (f and its gradient per row).
        """
        K = p["tok_emb"].shape[0]
        seq = self.seq[rows.cpu().numpy()]  # (K, B, L)
        plan = _plan(seq, self.n_tok, self.cfg.depth, self.cfg.heads, self.dtype, self.ROWS_QUANTUM)
        H, cache = self._features(p, plan, _runs(plan, K, self.T), _Buf(self.ws, self.dtype))
        return torch.bmm(H, p["W_out"]), (cache, H)

    def backward_rows(self, p, cache, df, rows):
        """Gradients of Σ_k ⟨df_k, f_k(rows_k)⟩, df: (K, B, d) (:meth:`backward` of the batch)."""
        return self.backward(p, cache, df)

    def _features(self, p: Params, plan: _Plan, runs: _Runs, buf: _Buf):
        """H (K, B, w) of the B contexts of ``plan``."""
        K, T, w = p["tok_emb"].shape[0], self.T, self.cfg.width
        L, depth, heads = self.L, self.cfg.depth, self.cfg.heads
        U = plan.cell.shape[1]
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
        B = plan.qmask.shape[3]  # the queries are the last B rows of x
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
