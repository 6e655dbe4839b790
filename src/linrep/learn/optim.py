"""Batched optimisers on a flat parameter matrix θ: (K, P), one row per run.

All runs' parameters live in one contiguous tensor, so an update is a handful of tensor operations
whatever the number of parameter tensors or runs. Per-run hyper-parameters (lr, weight decay, Adam
betas/eps, min_lr) are (K, 1) columns.

Updates at step t = 0, 1, … with learning rate η_t = schedule(t) and gradient G of the loss:

- gd / sgd:  θ ← θ − η_t (G + λ θ)                       (λ = weight_decay: L2 penalty λ/2 ‖θ‖²)
- adam:      G' = G + λ θ;  m ← β₁m + (1−β₁)G';  v ← β₂v + (1−β₂)G'²;
             θ ← θ − η_t m̂ / (√v̂ + ε), m̂ = m/(1−β₁^{t+1}), v̂ = v/(1−β₂^{t+1})   (Kingma & Ba 2015)
- adamw:     as adam on G, with decoupled decay θ ← θ(1 − η_t λ) first (Loshchilov & Hutter 2019).

Schedule: linear warm-up over ``warmup_steps``, then constant or cosine from lr to min_lr at ``steps``.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["BatchedOptimizer", "lr_factor"]


def lr_factor(cfg: TrainConfig, t: int) -> tuple[float, float]:
    """(warm-up factor, cosine factor c ∈ [0, 1]) at step t: η_t = warm · (min_lr + (lr − min_lr) c)."""
    warm = min(1.0, (t + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "constant":
        return warm, 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    u = min(1.0, max(0.0, (t - cfg.warmup_steps) / span))
    return warm, 0.5 * (1.0 + math.cos(math.pi * u))


class BatchedOptimizer:
    """One optimiser for K runs (configs share everything but the per-run hyper-parameters)."""

    def __init__(self, cfgs: list[TrainConfig], P: int, dtype: torch.dtype):
        c0 = cfgs[0]
        self.cfg = c0
        self.kind = c0.optimizer

        def col(name: str) -> torch.Tensor:
            return torch.tensor([[float(getattr(c, name))] for c in cfgs], dtype=dtype)

        self.lr, self.min_lr, self.wd = col("lr"), col("min_lr"), col("weight_decay")
        self.beta1, self.beta2, self.eps = col("beta1"), col("beta2"), col("eps")
        self.any_wd = bool((self.wd > 0).any())
        self.constant = c0.lr_schedule == "constant" and c0.warmup_steps == 0
        self.state: dict[str, torch.Tensor] = {}
        if self.kind in ("adam", "adamw"):
            K = len(cfgs)
            self.state = {
                "m": torch.zeros((K, P), dtype=dtype),
                "v": torch.zeros((K, P), dtype=dtype),
            }

    def lr_at(self, t: int) -> torch.Tensor:
        """η_t per run, (K, 1)."""
        if self.constant:
            return self.lr
        warm, c = lr_factor(self.cfg, t)
        return warm * (self.min_lr + (self.lr - self.min_lr) * c)

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        """Update θ (K, P) in place from the loss gradient ``grad`` (K, P) (modified in place)."""
        lr = self.lr_at(t)
        if self.kind in ("gd", "sgd"):
            if self.any_wd:
                grad.addcmul_(theta, self.wd)
            theta.addcmul_(grad, lr, value=-1.0)
            return
        if self.any_wd:
            if self.kind == "adamw":
                theta.mul_(1.0 - lr * self.wd)
            else:
                grad.addcmul_(theta, self.wd)
        m, v = self.state["m"], self.state["v"]
        m.lerp_(grad, 1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(grad * grad, 1.0 - self.beta2)
        bc1 = 1.0 - self.beta1 ** (t + 1)
        bc2 = 1.0 - self.beta2 ** (t + 1)
        denom = (v / bc2).sqrt_().add_(self.eps)
        theta.addcdiv_(m * (lr / bc1), denom, value=-1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.state:
            self.state[k].copy_(state[k])
