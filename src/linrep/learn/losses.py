"""Losses of the head z(ξ, y) = f(ξ)ᵀ g(y) + b(y), with closed-form gradients, batched over K runs.

Every objective is written with a *target table* T: (K|1, n, V), T(ξ, y) ≥ 0, Σ T = 1 — the weight of
(context ξ, next token y) in the data — and its row masses r(ξ) = Σ_y T(ξ, y) (the context weights w).
The exact objective has T = w(ξ) p(y|ξ); a finite dataset has its empirical frequencies. With
P = T / r (the target next-token distribution of each context) and q = softmax(z):

- ``cross_entropy``:  L = Σ_ξ r Σ_y P (−log q) = Σ_ξ r·logsumexp(z) − Σ T z;   ∂L/∂z = r (q − P).
- ``squared``:        L = Σ_ξ r ‖q − P‖²;   ∂L/∂z_j = r · 2 q_j [(q_j − P_j) − Σ_y (q_y − P_y) q_y].
- ``sigmoid``:        L = Σ_ξ Σ_y [r·softplus(z) − T z]  (one-vs-all binary cross-entropy);
                      ∂L/∂z = r (σ(z) − P).

Every gradient has the form ∂L/∂z = r ⊙ e(z, P); the heads below apply the row weights r wherever
it is cheapest (for the linear encoder: once, into the constant one-hot features).

The population minimum ("floor") of each loss, reached when the model matches p exactly, is
H(Y|X) = −Σ_ξ w Σ_y p log p for cross-entropy, 0 for squared, and Σ_ξ w Σ_y H_b(p(y|ξ)) for sigmoid;
the excess loss is loss − floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .workspace import Workspace, buffer

if TYPE_CHECKING:
    from .objective import SupportRows

__all__ = [
    "logit_loss",
    "cross_entropy",
    "logit_grad",
    "row_losses",
    "rows_head",
    "head_loss",
    "factored_head_loss",
    "loss_floor",
    "row_floor",
]


def logit_loss(kind: str, z: torch.Tensor, T: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Loss per run (K,) from the logits z: (K, n, V), table T: (K|1, n, V), row masses r: (K|1, n, 1).

    May overwrite z (cross_entropy: −Σ T log q, with log q = log_softmax(z) written over z: one
    fused pass and one dot product, instead of logsumexp's passes and a T ⊙ z temporary).
    """
    if kind == "cross_entropy":
        return cross_entropy(z, T, out=z)
    if kind == "sigmoid":
        return (torch.nn.functional.softplus(z) * r - T * z).sum(dim=(1, 2))
    P = T / r.clamp_min(torch.finfo(T.dtype).tiny)
    return (row_losses(kind, z, P) * r[..., 0]).sum(dim=1)


def cross_entropy(z: torch.Tensor, T: torch.Tensor, out: torch.Tensor | None = None):
    """Cross-entropy per run (K,), −Σ_{ξ,y} T log q = −⟨T, log_softmax(z)⟩, from logits z: (K, n, V)
    contiguous and table T: (K|1, n, V); log_softmax is written into ``out`` (may be z)."""
    return -_table_dot(torch.log_softmax(z, dim=2, out=out), T)


def _table_dot(x: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Σ_{ξ,y} x T per run, (K,), for x: (K, n, V) contiguous and T: (K|1, n, V)."""
    K = x.shape[0]
    if T.shape[0] == 1 and T.is_contiguous():  # one matrix-vector product, no temporary
        return torch.mv(x.view(K, -1), T.view(-1))
    return (x * T).sum(dim=(1, 2))


def row_losses(kind: str, z: torch.Tensor, P: torch.Tensor | SupportRows) -> torch.Tensor:
    """Loss of every context row, (K, c), from logits z: (K, c, V) and targets P: (K|1, c, V).

    cross_entropy: logsumexp(z) − Σ_y P z (= −Σ_y P log q); squared: ‖softmax(z) − P‖²;
    sigmoid: Σ_y softplus(z) − P z. P may also be exact rows stored by their support
    (:class:`~linrep.learn.objective.SupportRows`, shaped like z).
    """
    if kind == "cross_entropy":
        return torch.logsumexp(z, dim=2) - _target_dot(P, z)
    if kind == "sigmoid":
        if isinstance(P, torch.Tensor):
            return (torch.nn.functional.softplus(z) - P * z).sum(dim=2)
        return torch.nn.functional.softplus(z).sum(dim=2) - P.dot(z)
    e = _sub_target(torch.softmax(z, dim=2), P)
    return (e * e).sum(dim=2)


def _sub_target(x: torch.Tensor, P: torch.Tensor | SupportRows) -> torch.Tensor:
    """x −= P in place: P a tensor or support rows (``SupportRows.sub_from``); returns x."""
    return x.sub_(P) if isinstance(P, torch.Tensor) else P.sub_from(x)


def _target_dot(P: torch.Tensor | SupportRows, z: torch.Tensor) -> torch.Tensor:
    """Σ_y P z per row, (K, c): P a tensor (K|1, c, V) or support rows shaped like z."""
    return (P * z).sum(dim=2) if isinstance(P, torch.Tensor) else P.dot(z)


def rows_head(
    kind: str,
    f: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor | None,
    tok: torch.Tensor | None,
    *,
    P: torch.Tensor | SupportRows | None = None,
    want_grad: bool = True,
    ws: Workspace | None = None,
    dg_out: torch.Tensor | None = None,
    threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Minibatch loss and gradients of B rows per run: (context, sampled token) or (context, p(·|ξ)).

    L = (1/B) Σ_b ℓ(z_b, y_b) with z_b = g f_b + b, i.e. the table form of this module with
    T = the batch's empirical frequencies — without any (contexts × tokens) table: three
    (B × d) × (d × V) matmuls and one pass of softmax over (K, B, V). With e = ∂ℓ/∂z:
    ∂f_b = e_b g / B, ∂g = eᵀ f / B, ∂b = Σ_b e_b / B. Row losses: cross_entropy −log q(y_b);
    sigmoid Σ_y softplus(z) − z_{y_b}; squared ‖q − 1_{y_b}‖² (its gradient equals the table
    form's; its value exceeds it by 1 − ‖P̄(·|ξ)‖², a constant, when a context repeats in a batch).

    Args:
        f: (K, B, d) embeddings of the rows' contexts.
        g: (K, V, d) unembeddings.
        b: (K, 1, V) biases or None.
        tok: (K, B) int64 next tokens, or None with ``P``.
        P: (K, B, V) the rows' exact target distributions (the exact objective's minibatch:
            ℓ_b = the row loss against P_b; a tensor or support rows,
            :class:`~linrep.learn.objective.SupportRows`), or None.
        want_grad: False = the loss only (the gradients are None).
        ws: buffers (the (K, B, V) logits live there).
        dg_out: a (K, V, d) tensor (e.g. a view of the caller's gradient buffer) to write ∂g into.
        threads: torch threads for the wide kernels (the (K, B, V) matmuls and softmax;
            :func:`~linrep.learn.parallel.wide`), None = the current setting.

    Returns:
        (loss (K,), df (K, B, d), dg (K, V, d), db (K, 1, V) or None); with ``P`` and
        ``want_grad`` the loss is None (it would cost two more passes over (K, B, V)).
    """
    from .parallel import wide

    K, B, _ = f.shape
    n = torch.get_num_threads() if threads is None else threads
    gt = g.transpose(1, 2)
    zb = buffer(ws, "z", (K, B, g.shape[1]), f.dtype)
    with wide(n):
        z = torch.bmm(f, gt, out=zb) if b is None else torch.baddbmm(b, f, gt, out=zb)
    if P is not None:  # exact targets: e = ∂ℓ/∂z from the table forms above
        if not want_grad:
            with wide(n):
                return row_losses(kind, z, P).mean(dim=1), None, None, None
        loss = None  # not needed for the step (the exact objective logs the population loss)
        with wide(n):
            e = logit_grad(kind, z, P, out=z)
    else:
        loss, e = _token_rows(kind, z, f, g, b, tok, want_grad, n)
        if e is None:
            return loss.mean(dim=1), None, None, None
    inv = 1.0 / B
    fs = f * inv
    with wide(n):
        dg = torch.bmm(e.transpose(1, 2), fs, out=dg_out)
        df = torch.bmm(e, g)
        db = e.sum(dim=1, keepdim=True) if b is not None else None
    return (
        (None if loss is None else loss.mean(dim=1)),
        df.mul_(inv),
        dg,
        (None if db is None else db.mul_(inv)),
    )


def _token_rows(kind, z, f, g, b, tok, want_grad, threads):
    """Row losses (K, B) and e = ∂ℓ/∂z (None unless ``want_grad``) for sampled next tokens."""
    from .parallel import wide

    y = tok[:, :, None]
    zy = z.gather(2, y)[..., 0]  # (K, B)
    if kind == "sigmoid":
        with wide(threads):
            loss = torch.nn.functional.softplus(z).sum(dim=2) - zy
        if not want_grad:
            return loss, None
        with wide(threads):
            e = torch.sigmoid_(z)
        e.scatter_add_(2, y, torch.full_like(zy[..., None], -1.0))
    else:
        with wide(threads):
            e = torch.softmax(z, dim=2, out=z)  # in place: the logits are not needed again
        qy = e.gather(2, y)[..., 0]
        if kind == "cross_entropy":
            loss = -torch.log(qy)
            bad = qy == 0  # q(y) underflowed: the exact −log q = logsumexp(z) − z_y for those rows
            if bool(bad.any()):
                kk, bb = torch.nonzero(bad, as_tuple=True)
                zrow = torch.einsum("rd,rvd->rv", f[kk, bb], g[kk])
                if b is not None:
                    zrow = zrow + b[kk, 0]
                loss[kk, bb] = torch.logsumexp(zrow, dim=1) - zy[kk, bb]
            if not want_grad:
                return loss, None
            e.scatter_add_(2, y, torch.full_like(qy[..., None], -1.0))
        else:  # squared: ∂/∂z_j ‖q − 1_y‖² = 2 q_j [(q − 1_y)_j − Σ_v (q − 1_y)_v q_v]
            q = e
            with wide(threads):
                qq = (q * q).sum(dim=2)
            loss = qq - 2.0 * qy + 1.0
            if not want_grad:
                return loss, None
            with wide(threads):
                e = q.clone()
                e.scatter_add_(2, y, torch.full_like(qy[..., None], -1.0))
                e.sub_((qq - qy)[..., None]).mul_(q).mul_(2.0)
    return loss, e


def logit_grad(
    kind: str, z: torch.Tensor, P: torch.Tensor | SupportRows, out: torch.Tensor | None = None
) -> torch.Tensor:
    """e with ∂L/∂z = r ⊙ e, from the logits z: (K, n, V) and targets P: (K|1, n, V) (or support
    rows shaped like z, :class:`~linrep.learn.objective.SupportRows`).

    May overwrite z (the training loop never reuses it); ``out`` (shaped like z) may receive e.
    """
    if kind == "cross_entropy":  # one fused max/exp/sum/div kernel, then q − P
        return _sub_target(torch.softmax(z, dim=2, out=out), P)
    if kind == "sigmoid":
        return _sub_target(torch.sigmoid_(z), P)
    q = torch.softmax(z, dim=2)
    e = _sub_target(q.clone(), P)
    return (e - (e * q).sum(dim=2, keepdim=True)).mul_(q).mul_(2.0)


def head_loss(
    kind: str,
    f: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor | None,
    target: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    want_grad: bool = True,
    ws: Workspace | None = None,
    dg_into: torch.Tensor | None = None,
    losses: list | None = None,
):
    """Loss per run, or gradients with respect to f, g and b.

    Args:
        kind: cross_entropy | squared | sigmoid.
        f: (K, n, d) embeddings.  g: (K, V, d) unembeddings.  b: (K, 1, V) token bias or None.
        target: (T, r, P): table (K|1, n, V), row masses (K|1, n, 1), targets P = T / r.
        want_grad: gradients (training step) instead of the loss (evaluation).
        ws: buffers for the intermediates (then df lives in ``ws`` until the next call).
        dg_into: a (K, V, d) sum to add ∂g to inside its matmul (blocks of contexts); it is
            returned as dg.
        losses: with ``want_grad`` and cross_entropy, a list to append the loss per run (K,) to:
            the same bits as ``want_grad=False`` from one more pass over the logits.

    Returns:
        ``want_grad``: (df (K, n, d), dg (K, V, d), db (K, 1, V) or None); otherwise loss (K,).
    """
    T, r, P = target
    gt = g.transpose(1, 2)
    shape = (f.shape[0], f.shape[1], g.shape[1])
    zb = buffer(ws, "z", shape, f.dtype)
    z = torch.bmm(f, gt, out=zb) if b is None else torch.baddbmm(b, f, gt, out=zb)  # (K, n, V)
    if not want_grad:
        return logit_loss(kind, z, T, r)
    if losses is not None:
        losses.append(cross_entropy(z, T, out=buffer(ws, "log_q", shape, f.dtype)))
    # ∂L/∂z = r ⊙ e, e written over z; r ⊙ e is never formed: r scales the (n, d) side of each
    # matmul instead (∂f = r ⊙ (e g), ∂g = eᵀ (r ⊙ f), ∂b = rᵀ e), a pass over (n, V) fewer
    e = logit_grad(kind, z, P, out=z)
    df = torch.bmm(e, g, out=buffer(ws, "df", f.shape, f.dtype)).mul_(r)
    fr = torch.mul(f, r, out=buffer(ws, "fr", f.shape, f.dtype))
    et = e.transpose(1, 2)
    dg = torch.bmm(et, fr) if dg_into is None else dg_into.baddbmm_(et, fr)
    db = torch.matmul(r.transpose(1, 2), e) if b is not None else None
    return df, dg, db


def factored_head_loss(
    kind: str,
    H: torch.Tensor,
    W: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor | None,
    target: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    want_grad: bool = True,
    want_dH: bool = True,
    Hr: torch.Tensor | None = None,
    ws: Workspace | None = None,
):
    """:func:`head_loss` for f = H W without forming f: z = H (W gᵀ) + b.

    Cheaper than the plain head when h·V < h·d + d·V per context (h = width of H), e.g. the linear
    encoder (H = the one-hot x(ξ), h = 3m). Same gradients up to rounding: with A = W gᵀ and
    ∂L/∂z = r ⊙ e, ∂A = (r ⊙ H)ᵀ e, ∂W = ∂A g, ∂g = ∂Aᵀ W, ∂H = r ⊙ (e Aᵀ).

    Args:
        H: (K, n, h) features.
        W: (K, h, d) output layer.
        g: (K, V, d).
        b: as :func:`head_loss`.
        target: as :func:`head_loss`.
        want_dH: also return ∂H.
        Hr: r ⊙ H if already known (H constant).
        ws: buffers for the intermediates (then dH lives in ``ws`` until the next call).

    Returns:
        ``want_grad``: (dH (K, n, h) or None, dW (K, h, d), dg (K, V, d), db or None);
        otherwise loss (K,).
    """
    T, r, P = target
    A = torch.bmm(W, g.transpose(1, 2))  # (K, h, V)
    shape = (H.shape[0], H.shape[1], A.shape[2])
    zb = buffer(ws, "z", shape, H.dtype)
    z = torch.bmm(H, A, out=zb) if b is None else torch.baddbmm(b, H, A, out=zb)
    if not want_grad:
        return logit_loss(kind, z, T, r)
    e = logit_grad(kind, z, P, buffer(ws, "e", shape, H.dtype))
    dH = None
    if want_dH or Hr is None:
        dz = e.mul_(r)
        dA = torch.bmm(H.transpose(1, 2), dz)  # (K, h, V)
        if want_dH:
            dH = torch.bmm(dz, A.transpose(1, 2), out=buffer(ws, "dH", H.shape, H.dtype))
        db = dz.sum(dim=1, keepdim=True) if b is not None else None
    else:
        dA = torch.bmm(Hr.transpose(1, 2), e)
        db = torch.matmul(r.transpose(1, 2), e) if b is not None else None
    dW = torch.bmm(dA, g)
    dg = torch.bmm(dA.transpose(1, 2), W)
    return dH, dW, dg, db


def row_floor(kind: str, P: np.ndarray) -> np.ndarray:
    """Population minimum of loss ``kind`` for every context row of targets P: (n, V), (n,).

    cross_entropy: H(P) = −Σ_y P log P; squared: 0; sigmoid: Σ_y H_b(P(y)).
    """
    P = np.asarray(P, dtype=np.float64)
    if kind == "squared":
        return np.zeros(P.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
        if kind == "sigmoid":
            q = 1.0 - P
            h -= np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
    return h


def loss_floor(kind: str, weights: np.ndarray, p_next: np.ndarray) -> float:
    """Population minimum of loss ``kind`` for context weights (n,) and targets p(y|ξ) (n, V)."""
    return float(np.asarray(weights, dtype=np.float64) @ row_floor(kind, p_next))
