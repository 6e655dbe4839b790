"""Encoders f: context ξ ∈ {0,1,⋄}^m → f(ξ) ∈ ℝ^d, batched over an ensemble of K runs.

Every parameter tensor carries a leading run axis K, so one call evaluates K independent models
(batched matmuls; no Python loop over runs or contexts). ``free``, ``linear`` and ``mlp`` have
hand-written backward passes (autograd's bookkeeping costs more than the arithmetic at these sizes;
tests check them against autograd and finite differences), the transformer too (its own module).

Input encoding of ``linear`` and ``mlp``: x(ξ) ∈ {0,1}^{3m}, slots (3i, 3i+1, 3i+2) of concept i are
the indicators of C_i = 0, C_i = 1 and C_i = ⋄. Exactly one slot per concept is on, so Σ_slots of a
concept = 1 and a bias on the linear encoder would be redundant: it has none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .config import ModelConfig
from .workspace import Workspace, buffer

__all__ = ["Encoder", "make_encoder", "one_hot_contexts"]

Params = dict[str, torch.Tensor]


def one_hot_contexts(contexts: np.ndarray) -> np.ndarray:
    """The {0, 1, ⋄} one-hot encoding x(ξ), (n, 3m) float64 (slot 3i + {0: C_i=0, 1: C_i=1, 2: ⋄})."""
    n, m = contexts.shape
    slot = np.where(contexts < 0, 2, contexts).astype(np.int64)  # (n, m)
    x = np.zeros((n, 3 * m))
    x[np.arange(n)[:, None], 3 * np.arange(m)[None, :] + slot] = 1.0
    return x


class Encoder:
    """Base class: parameter shapes, initialisation, batched forward and backward.

    Attributes:
        n: number of contexts; d: output dimension.
    """

    #: True if :meth:`backward` is implemented by hand (otherwise the trainer uses autograd).
    manual_backward = True
    #: Name of the bias-free output layer W (f = H W, H from :meth:`features`), or None. Lets the
    #: model compute logits as H (W gᵀ) when that is cheaper (see ``losses.factored_head_loss``).
    out_name: str | None = None
    #: Width h of the features H (when ``out_name`` is set).
    feature_dim = 0
    #: False if H is a constant (no parameters before W_out): then ∂L/∂H is never formed.
    needs_dH = True
    #: The model's step buffers (set by BatchedModel; None when the encoder stands alone). An
    #: encoder may keep a step's intermediates there on its unfactored path too.
    ws: Workspace | None = None
    #: True if :meth:`backward_features` and :meth:`backward` take ``out=``: (K, *shape) views of
    #: the model's flat (K, P) gradient by parameter name, which they may return as their
    #: gradients after writing into them (the model then skips assembling those columns).
    grad_into = False
    #: True if :meth:`features` takes ``x=`` (the inputs of a block of contexts) and its backward
    #: is :meth:`backward_features`: the model may then run a full-batch step block by block.
    blocks = False

    def __init__(
        self,
        cfg: ModelConfig,
        contexts: np.ndarray,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        self.cfg = cfg
        self.contexts = contexts
        self.n, self.m = contexts.shape
        self.d = cfg.d
        self.dtype = dtype
        self.device = torch.device(device)

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Per-run parameter shapes in layout order."""
        raise NotImplementedError

    def init(self, gen: torch.Generator, init_scale: float, hidden_scale: float | None) -> Params:
        """Draw one run's parameters (float64, no run axis) in layout order."""
        raise NotImplementedError

    def forward(self, p: Params) -> tuple[torch.Tensor, Any]:
        """f for every context: (K, n, d), plus whatever :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, p: Params, cache: Any, df: torch.Tensor) -> Params:
        """Gradients of Σ_k ⟨df_k, f_k⟩ with respect to every parameter (same shapes as ``p``)."""
        raise NotImplementedError

    def features(self, p: Params, ws: Workspace | None = None) -> tuple[torch.Tensor, Any]:
        """H: (K, n, h) with f = H W_out (only if ``out_name`` is set), plus the backward cache.

        ``ws``: buffers for the intermediates; H then lives in ``ws`` until the next call.
        """
        raise NotImplementedError

    def backward_features(
        self,
        p: Params,
        cache: Any,
        dH: torch.Tensor | None,
        ws: Workspace | None = None,
        into: Params | None = None,
    ) -> Params:
        """Gradients of every parameter except W_out from ∂L/∂H (None if H has no parameters).

        May overwrite ``dH``. ``into`` (encoders with ``blocks``): (K, *shape) sums, laid out as
        in θ, to add the gradients to instead of returning them (then the result is empty).
        """
        return {}

    @property
    def takes_rows(self) -> bool:
        """True if the encoder implements :meth:`forward_rows` (minibatches of rows)."""
        return type(self).forward_rows is not Encoder.forward_rows

    def forward_rows(self, p: Params, rows: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """f of context ``rows[k]`` under run k: rows (K, B) int64 → (K, B, d), plus the cache.

        The sampled objective's minibatch path: only the B contexts of a batch are encoded.
        """
        raise NotImplementedError

    def backward_rows(self, p: Params, cache: Any, df: torch.Tensor, rows: torch.Tensor) -> Params:
        """Gradients of Σ_k ⟨df_k, f_k(rows_k)⟩ for every parameter, df: (K, B, d)."""
        raise NotImplementedError


def _randn(gen: torch.Generator, shape: tuple[int, ...], sd: float) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64) * sd


class FreeEncoder(Encoder):
    """One free vector per context: f(ξ) = E[ξ], E: (n, d) ~ N(0, init_scale²)."""

    def shapes(self):
        return [("E", (self.n, self.d))]

    def init(self, gen, init_scale, hidden_scale):
        return {"E": _randn(gen, (self.n, self.d), init_scale)}

    def forward(self, p):
        return p["E"], None

    def backward(self, p, cache, df):
        return {"E": df}

    def forward_rows(self, p, rows):
        idx = rows[:, :, None].expand(*rows.shape, self.d)
        return torch.gather(p["E"], 1, idx), idx

    def backward_rows(self, p, idx, df, rows):
        return {"E": torch.zeros_like(p["E"]).scatter_add_(1, idx, df)}


class LinearEncoder(Encoder):
    """f(ξ) = Wᵀ x(ξ), W: (3m, d) ~ N(0, init_scale²), x the {0,1,⋄} one-hot (no bias, see module)."""

    out_name = "W"
    needs_dH = False

    def __init__(self, cfg, contexts, dtype, device="cpu"):
        super().__init__(cfg, contexts, dtype, device)
        self.x = torch.as_tensor(one_hot_contexts(contexts), dtype=dtype, device=device)  # (n, 3m)
        self.xt = self.x.T.contiguous()
        self.feature_dim = 3 * self.m
        self._xk: torch.Tensor | None = None  # x repeated over runs (K, n, 3m), bmm-friendly

    def shapes(self):
        return [("W", (3 * self.m, self.d))]

    def features(self, p, ws=None):
        K = p["W"].shape[0]
        if self._xk is None or self._xk.shape[0] != K:
            self._xk = self.x.expand(K, *self.x.shape).contiguous()
        return self._xk, None

    def init(self, gen, init_scale, hidden_scale):
        return {"W": _randn(gen, (3 * self.m, self.d), init_scale)}

    def forward(self, p):
        return torch.matmul(self.x, p["W"]), None  # (n,3m) @ (K,3m,d) -> (K,n,d)

    def backward(self, p, cache, df):
        return {"W": torch.matmul(self.xt, df)}  # (3m,n) @ (K,n,d)

    def forward_rows(self, p, rows):
        xb = self.x[rows]  # (K, B, 3m)
        return torch.bmm(xb, p["W"]), xb

    def backward_rows(self, p, xb, df, rows):
        return {"W": torch.bmm(xb.transpose(1, 2), df)}


_GAIN = {"relu": math.sqrt(2.0), "gelu": 1.0, "tanh": 1.0}


def _act(name: str, a: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.relu(a)
    if name == "tanh":
        return torch.tanh(a)
    return torch.nn.functional.gelu(a)


def _act_grad(name: str, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """σ'(a) given pre-activation a and h = σ(a)."""
    if name == "relu":
        return (h > 0).to(a.dtype)
    if name == "tanh":
        return 1.0 - h * h
    # exact (erf) GELU: d/da [a Φ(a)] = Φ(a) + a φ(a)
    cdf = 0.5 * (1.0 + torch.erf(a * (1.0 / math.sqrt(2.0))))
    pdf = torch.exp(-0.5 * a * a) * (1.0 / math.sqrt(2.0 * math.pi))
    return cdf + a * pdf


class MLPEncoder(Encoder):
    """f(ξ) = W_outᵀ σ(… σ(W_1ᵀ x(ξ) + b_1) …), ``depth`` hidden layers of ``width`` units.

    Hidden weights ~ N(0, (gain/√fan_in)²) (He for relu, LeCun otherwise) unless
    ``hidden_init_scale`` is given, hidden biases 0; the output layer W_out: (width, d) ~
    N(0, init_scale²) has no bias. depth = 0 is the linear encoder.

    On blocks of contexts (:meth:`block_inputs`) the first layer is one matmul with its bias:
    W_1ᵀ x + b_1 = [W_1; b_1]ᵀ [x; 1] (the block inputs carry a constant 1, and b_1 follows W_1
    in θ, so [W_1; b_1] is a view, :func:`_with_bias`), and its gradient [∂W_1; ∂b_1] = [x, 1]ᵀ ∂a
    is one matmul summed into the step's gradient: no broadcast copy of b_1 and no sum over
    contexts for ∂b_1. Elsewhere (small steps, where every op counts) it is x W_1 + b_1 as usual.
    """

    def __init__(self, cfg, contexts, dtype, device="cpu"):
        super().__init__(cfg, contexts, dtype, device)
        self.x = torch.as_tensor(one_hot_contexts(contexts), dtype=dtype, device=device)
        self.widths = [3 * self.m] + [cfg.width] * cfg.depth
        self.feature_dim = self.widths[-1]
        self._xk: torch.Tensor | None = None
        self._x1k: torch.Tensor | None = None  # [x, 1] repeated over runs (blocks)

    out_name = "W_out"
    needs_dH = True
    blocks = True

    def shapes(self):
        out = []
        for i in range(self.cfg.depth):
            out += [
                (f"W{i}", (self.widths[i], self.widths[i + 1])),
                (f"b{i}", (1, self.widths[i + 1])),
            ]
        return out + [("W_out", (self.widths[-1], self.d))]

    def init(self, gen, init_scale, hidden_scale):
        p = {}
        for i in range(self.cfg.depth):
            fan_in = self.widths[i]
            sd = (
                hidden_scale
                if hidden_scale is not None
                else _GAIN[self.cfg.activation] / math.sqrt(fan_in)
            )
            p[f"W{i}"] = _randn(gen, (fan_in, self.widths[i + 1]), sd)
            p[f"b{i}"] = torch.zeros((1, self.widths[i + 1]), dtype=torch.float64)
        p["W_out"] = _randn(gen, (self.widths[-1], self.d), init_scale)
        return p

    def _x_batched(self, K: int) -> torch.Tensor:
        """x(ξ) repeated over runs, (K, n, 3m) contiguous (cached: bmm-friendly)."""
        if self._xk is None or self._xk.shape[0] != K:
            self._xk = self.x.expand(K, *self.x.shape).contiguous()
        return self._xk

    def block_inputs(self, K: int, a: int, b: int) -> torch.Tensor:
        """[x(ξ), 1] of contexts a … b − 1 for every run, (K, b − a, 3m + 1) (a view; x alone when
        depth = 0: no layer 1)."""
        if not self.cfg.depth:
            return self._x_batched(K)[:, a:b]
        if self._x1k is None or self._x1k.shape[0] != K:
            x1 = torch.cat([self.x, torch.ones_like(self.x[:, :1])], dim=1)
            self._x1k = x1.expand(K, *x1.shape).contiguous()
        return self._x1k[:, a:b]

    def features(self, p, ws=None, x=None):
        """H (K, n, width) of every context, or of block inputs ``x`` (K, B, 3m + 1) if given."""
        act = self.cfg.activation
        K = p["W_out"].shape[0]
        h = self._x_batched(K) if x is None else x
        cache = []
        for i in range(self.cfg.depth):
            shape = (K, h.shape[1], self.widths[i + 1])
            out = buffer(ws, f"a{i}", shape, h.dtype)
            if i == 0 and h.shape[-1] > self.widths[0]:  # block inputs: [x, 1] [W_1; b_1]
                a = torch.bmm(h, _with_bias(p, 0), out=out)
            else:
                a = torch.baddbmm(p[f"b{i}"], h, p[f"W{i}"], out=out)
            if act == "relu":  # the backward pass only needs h = relu(a): overwrite a in place
                hn, a = a.relu_(), None
            else:
                hn = _act(act, a)
            cache.append((h, a, hn))
            h = hn
        return h, cache

    def forward(self, p):
        h, cache = self.features(p)
        return torch.matmul(h, p["W_out"]), (cache, h)

    def backward(self, p, cache, df):
        layers, h_last = cache
        g = {"W_out": torch.matmul(h_last.transpose(-1, -2), df)}
        dh = torch.matmul(df, p["W_out"].transpose(-1, -2))
        g.update(self.backward_features(p, layers, dh))
        return g

    def forward_rows(self, p, rows):
        h, cache = self.features(p, x=self.x[rows])
        return torch.bmm(h, p["W_out"]), (cache, h)

    def backward_rows(self, p, cache, df, rows):
        return self.backward(p, cache, df)

    def backward_features(self, p, cache, dH, ws=None, into=None):
        act = self.cfg.activation
        g = {}
        dh = dH
        for i in reversed(range(self.cfg.depth)):
            h_in, a, h_out = cache[i]
            if act == "relu":  # ∂L/∂a = ∂L/∂h · 1[h > 0], one fused kernel, in place
                da = torch.ops.aten.threshold_backward.grad_input(dh, h_out, 0, grad_input=dh)
            else:
                da = dh.mul_(_act_grad(act, a, h_out))
            h_t = h_in.transpose(1, 2)
            joint = i == 0 and h_in.shape[-1] > self.widths[0]  # block inputs [x, 1]
            if joint and into is not None and (wb := _bias_view(into, 0)) is not None:
                wb.baddbmm_(h_t, da)  # [∂W_1; ∂b_1] += [x, 1]ᵀ ∂a inside the matmul
            else:  # (∂W, ∂b) as two contiguous tensors (no slices for the caller to copy)
                if joint:
                    h_t = h_t[:, :-1]  # x of [x, 1]
                dw, db = torch.bmm(h_t, da), da.sum(dim=1, keepdim=True)
                if into is None:
                    g[f"W{i}"], g[f"b{i}"] = dw, db
                else:
                    into[f"W{i}"].add_(dw)
                    into[f"b{i}"].add_(db)
            if i > 0:
                dh = torch.bmm(
                    da,
                    p[f"W{i}"].transpose(-1, -2),
                    out=buffer(ws, f"dh{i}", h_in.shape, da.dtype),
                )
        return g


def _bias_view(p: Params, i: int) -> torch.Tensor | None:
    """[W_i; b_i]: (K, fan_in + 1, width) as a view of ``p``'s memory, or None if b_i does not
    directly follow W_i there (θ's layout does, and so does any tensor laid out like θ, e.g. a
    gradient sum: a matmul into the view then writes ∂W_i and ∂b_i in place)."""
    W, b = p[f"W{i}"], p[f"b{i}"]
    K, rows, width = W.shape
    follows = (
        W.stride(1) == width
        and W.stride(2) == b.stride(2) == 1
        and (K == 1 or W.stride(0) == b.stride(0))
        and b.data_ptr() == W.data_ptr() + rows * width * W.element_size()
    )
    if not follows or W.requires_grad or b.requires_grad:
        return None
    return W.as_strided((K, rows + 1, width), W.stride())


def _with_bias(p: Params, i: int) -> torch.Tensor:
    """[W_i; b_i]: (K, fan_in + 1, width), the weights of layer i + 1 over its inputs [h, 1]
    (a view of θ when possible, :func:`_bias_view`, else a copy)."""
    wb = _bias_view(p, i)
    return torch.cat([p[f"W{i}"], p[f"b{i}"]], dim=1) if wb is None else wb


def make_encoder(
    cfg: ModelConfig, contexts: np.ndarray, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> Encoder:
    """The encoder named by ``cfg.encoder`` for the context set ``contexts`` (n, m)."""
    if cfg.encoder == "free":
        return FreeEncoder(cfg, contexts, dtype, device)
    if cfg.encoder == "linear":
        return LinearEncoder(cfg, contexts, dtype, device)
    if cfg.encoder == "mlp":
        return MLPEncoder(cfg, contexts, dtype, device)
    from .transformer import TransformerEncoder

    if torch.device(device).type != "cpu":
        raise ConfigError(
            "model.encoder = 'transformer' runs on the CPU only so far; set train.device = 'cpu'"
        )
    return TransformerEncoder(cfg, contexts, dtype)
