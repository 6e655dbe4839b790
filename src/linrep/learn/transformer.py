"""A small causal transformer encoder f(ξ), batched over K runs (backward by autograd).

Token rendering of a context ξ ∈ {0,1,⋄}^m: one token per *known* concept value (token 2i + c_i for
C_i = c_i), in a random order per context (fixed by ``order_seed``), then a query token (id 2m); the
sequence is left-padded to length m + 1 with a pad token (id 2m + 1) that no real position attends
to. The query sits at the last position, and f(ξ) is its final hidden state (after a final
LayerNorm) projected to ℝ^d — as a language model's last-layer state at the position predicting the
next token.

Architecture (pre-LayerNorm, as GPT-2): x₀ = E_tok[token] + E_pos[position];
x ← x + Attn(LN(x)); x ← x + MLP(LN(x)) for ``depth`` blocks; f = LN(x_last) W_out.
Initialisation: embeddings N(0, 1); Q/K/V/O and MLP weights fan-in scaled N(0, 1/fan_in) (or
``hidden_init_scale``); LayerNorm gains 1 and biases 0; MLP biases 0; W_out: (width, d) ~
N(0, init_scale²).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .encoders import Encoder

__all__ = ["TransformerEncoder", "render_contexts"]


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


def _layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis; gain/bias: (K, w), broadcast over the middle axes of x."""
    mu = x.mean(dim=-1, keepdim=True)
    var = (x - mu).pow(2).mean(dim=-1, keepdim=True)
    shape = (gain.shape[0],) + (1,) * (x.dim() - 2) + (gain.shape[1],)
    return (x - mu) / torch.sqrt(var + 1e-5) * gain.view(shape) + bias.view(shape)


def _mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(K, ..., a) @ (K, a, b) → (K, ..., b) as one batched matmul."""
    K = x.shape[0]
    out = torch.bmm(x.reshape(K, -1, x.shape[-1]), w)
    return out.view(*x.shape[:-1], w.shape[-1])


class TransformerEncoder(Encoder):
    """f(ξ) = query-position output of a small causal transformer (see module docstring)."""

    manual_backward = False

    def __init__(self, cfg, contexts, dtype):
        super().__init__(cfg, contexts, dtype)
        seq, pad = render_contexts(contexts, cfg.order_seed)
        self.L = self.m + 1
        self.n_tok = 2 * self.m + 2
        self.seq = torch.as_tensor(seq)
        L = self.L
        causal = np.tril(np.ones((L, L), dtype=bool))
        allowed = causal[None] & ~pad[:, None, :]  # (n, L query, L key)
        allowed |= np.eye(L, dtype=bool)[None]  # pads attend to themselves (never read)
        mask = np.where(allowed, 0.0, -np.inf)
        self.mask = torch.as_tensor(mask, dtype=dtype)[None, :, None]  # (1, n, 1, L, L)

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

    def forward(self, p):
        K = p["tok_emb"].shape[0]
        n, L, w, H = self.n, self.L, self.cfg.width, self.cfg.heads
        dh = w // H
        x = p["tok_emb"][:, self.seq] + p["pos_emb"][:, None]  # (K, n, L, w)
        for i in range(self.cfg.depth):
            h = _layer_norm(x, p[f"ln1_g{i}"][:, 0], p[f"ln1_b{i}"][:, 0])
            qkv = _mm(h, p[f"Wqkv{i}"]).view(K, n, L, 3, H, dh)
            q, k, v = (qkv[:, :, :, j].transpose(2, 3) for j in range(3))  # (K, n, H, L, dh)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + self.mask, dim=-1)
            a = (att @ v).transpose(2, 3).reshape(K, n, L, w)
            x = x + _mm(a, p[f"Wo{i}"])
            h = _layer_norm(x, p[f"ln2_g{i}"][:, 0], p[f"ln2_b{i}"][:, 0])
            u = torch.nn.functional.gelu(_mm(h, p[f"W1{i}"]) + p[f"b1{i}"][:, None])
            x = x + _mm(u, p[f"W2{i}"]) + p[f"b2{i}"][:, None]
        last = _layer_norm(x[:, :, -1], p["lnf_g"][:, 0], p["lnf_b"][:, 0])  # (K, n, w)
        return torch.bmm(last, p["W_out"]), None
