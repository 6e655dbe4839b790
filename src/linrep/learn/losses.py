"""Losses of the head z(ξ, y) = f(ξ)ᵀ g(y) + b(y), with closed-form gradients, batched over K runs.

Every objective is written with a *target table* T: (K|1, n, V), T(ξ, y) ≥ 0, Σ T = 1 — the weight of
(context ξ, next token y) in the data — and its row masses r(ξ) = Σ_y T(ξ, y) (the context weights w).
The exact objective has T = w(ξ) p(y|ξ); a finite dataset has its empirical frequencies. With
P = T / r (the target next-token distribution of each context) and q = softmax(z):

- ``cross_entropy``:  L = Σ_ξ r Σ_y P (−log q) = Σ_ξ r·logsumexp(z) − Σ T z;   ∂L/∂z = r q − T.
- ``squared``:        L = Σ_ξ r ‖q − P‖²;   ∂L/∂z_j = 2 r q_j [(q_j − P_j) − Σ_y (q_y − P_y) q_y].
- ``sigmoid``:        L = Σ_ξ Σ_y [r·softplus(z) − T z]  (one-vs-all binary cross-entropy);
                      ∂L/∂z = r σ(z) − T.

The population minimum ("floor") of each loss, reached when the model matches p exactly, is
H(Y|X) = −Σ_ξ w Σ_y p log p for cross-entropy, 0 for squared, and Σ_ξ w Σ_y H_b(p(y|ξ)) for sigmoid;
the excess loss is loss − floor.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["logit_loss", "head_loss", "factored_head_loss", "loss_floor"]


def logit_loss(
    kind: str,
    z: torch.Tensor,
    T: torch.Tensor,
    r: torch.Tensor,
    want_loss: bool = True,
    want_grad: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Loss per run (K,) and ∂L/∂z (K, n, V) from the logits z: (K, n, V) (z is overwritten).

    Args:
        kind: cross_entropy | squared | sigmoid.
        z: (K, n, V) logits f(ξ)ᵀg(y) + b(y); used as scratch space.
        T: (K or 1, n, V) target table.  r: (K or 1, n, 1) its row masses.
        want_loss: compute the loss (skipped in the training loop's hot path).
        want_grad: compute ∂L/∂z.
    """
    loss = None
    if kind == "cross_entropy":
        z.sub_(z.amax(dim=2, keepdim=True))  # shift: z − max z, softmax and Σr·lse − ΣTz unchanged
        if want_loss:
            zs = (T * z).sum(dim=(1, 2))
        e = z.exp_()
        s = e.sum(dim=2, keepdim=True)
        if want_loss:
            loss = (s.log() * r).sum(dim=(1, 2)) - zs  # Σ_y T = r, so the shift cancels
        if not want_grad:
            return loss, None
        return loss, e.mul_(r / s).sub_(T)  # r q − T
    if kind == "sigmoid":
        if want_loss:
            loss = (torch.nn.functional.softplus(z) * r - T * z).sum(dim=(1, 2))
        if not want_grad:
            return loss, None
        return loss, torch.sigmoid(z).mul_(r).sub_(T)
    q = torch.softmax(z, dim=2)  # squared
    P = T / r.clamp_min(torch.finfo(T.dtype).tiny)
    e = q - P
    if want_loss:
        loss = ((e * e).sum(dim=2, keepdim=True) * r).sum(dim=(1, 2))
    if not want_grad:
        return loss, None
    return loss, 2.0 * r * q * (e - (e * q).sum(dim=2, keepdim=True))


def head_loss(
    kind: str,
    f: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor | None,
    T: torch.Tensor,
    r: torch.Tensor,
    want_loss: bool = True,
    want_grad: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Loss per run and gradients with respect to f, g and b.

    Args:
        kind: cross_entropy | squared | sigmoid.
        f: (K, n, d) embeddings.  g: (K, V, d) unembeddings.  b: (K, 1, V) token bias or None.
        T: (K or 1, n, V) target table.  r: (K or 1, n, 1) its row masses.
        want_loss / want_grad: what to compute.

    Returns:
        (loss (K,) or None, df (K, n, d), dg (K, V, d), db (K, 1, V) or None); gradients are None if
        not ``want_grad``.
    """
    gt = g.transpose(1, 2)
    z = torch.bmm(f, gt) if b is None else torch.baddbmm(b, f, gt)  # (K, n, V)
    loss, dz = logit_loss(kind, z, T, r, want_loss, want_grad)
    if dz is None:
        return loss, None, None, None
    df = torch.bmm(dz, g)
    dg = torch.bmm(dz.transpose(1, 2), f)
    db = dz.sum(dim=1, keepdim=True) if b is not None else None
    return loss, df, dg, db


def factored_head_loss(
    kind: str,
    H: torch.Tensor,
    W: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor | None,
    T: torch.Tensor,
    r: torch.Tensor,
    want_loss: bool = True,
    want_grad: bool = True,
    want_dH: bool = True,
):
    """:func:`head_loss` for f = H W without forming f: z = H (W gᵀ) + b.

    Cheaper than the plain head when h·V < h·d + d·V per context (h = width of H), e.g. the linear
    encoder (H = the one-hot x(ξ), h = 3m). Same gradients up to rounding:
    A = W gᵀ, ∂A = Hᵀ ∂z, ∂W = ∂A g, ∂g = ∂Aᵀ W, ∂H = ∂z Aᵀ.

    Args:
        H: (n, h) shared or (K, n, h) features.  W: (K, h, d) output layer.  g: (K, V, d).
        b, T, r, want_loss, want_grad: as :func:`head_loss`.  want_dH: also return ∂H.

    Returns:
        (loss, dH (K, n, h) or None, dW (K, h, d), dg (K, V, d), db or None).
    """
    A = torch.bmm(W, g.transpose(1, 2))  # (K, h, V)
    z = torch.matmul(H, A)
    if b is not None:
        z = z.add_(b)
    loss, dz = logit_loss(kind, z, T, r, want_loss, want_grad)
    if dz is None:
        return loss, None, None, None, None
    dA = torch.matmul(H.transpose(-1, -2), dz)  # (K, h, V)
    dW = torch.bmm(dA, g)
    dg = torch.bmm(dA.transpose(1, 2), W)
    dH = torch.bmm(dz, A.transpose(1, 2)) if want_dH else None
    db = dz.sum(dim=1, keepdim=True) if b is not None else None
    return loss, dH, dW, dg, db


def loss_floor(kind: str, weights: np.ndarray, p_next: np.ndarray) -> float:
    """Population minimum of loss ``kind`` for context weights (n,) and targets p(y|ξ) (n, V)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "cross_entropy":
            h = -np.where(p_next > 0, p_next * np.log(p_next), 0.0).sum(axis=1)
        elif kind == "sigmoid":
            q = 1.0 - p_next
            h = -(
                np.where(p_next > 0, p_next * np.log(p_next), 0.0)
                + np.where(q > 0, q * np.log(q), 0.0)
            ).sum(axis=1)
        else:
            return 0.0
    return float(weights @ h)
