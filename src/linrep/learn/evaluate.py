"""The population loss and excess loss of a trained ensemble: exact, or estimated at scale.

The excess loss of a run is its population loss minus the loss's floor (:func:`~linrep.learn.losses.
row_floor`), i.e. Σ_ξ w(ξ) [ℓ(ξ) − h(ξ)] with ℓ(ξ) the loss of context ξ's row and h(ξ) its floor
(for cross-entropy ℓ − h = KL(p(·|ξ) ‖ p̂(·|ξ))).

- **Exact** (the learner holds the exact tables: any objective but sampled minibatches, or a
  small latent model, :attr:`~linrep.latent.LatentModel.small`): the sum over every context with
  the exact table, as the training objective ``exact`` computes it.
- **Held-out estimate** (table-free latent models, m ≳ 12): the sum over every context costs
  n_contexts · V · d per evaluation, so it is estimated on a fixed sample of N *held-out contexts*
  ξ_1..ξ_N drawn i.i.d. from w (``train.eval_contexts``; seed ``train.eval_seed``). Each context's
  term ℓ(ξ_r) − h(ξ_r) is computed exactly over all V tokens (its row of p(·|ξ) is built once), so
  the only randomness is which contexts were drawn: the estimate is their mean and its standard
  error is sd / √N (``excess_loss_se``). When the context set has no more than N contexts, all of
  them are used with their weights and the value is exact (standard error 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .losses import loss_floor, row_floor, row_losses
from .parallel import wide

__all__ = ["PopulationLoss", "Evaluation", "EVAL_CONTEXTS"]

EVAL_CONTEXTS = 512
"""Held-out contexts when ``train.eval_contexts`` is left automatic. Their rows of p(·|ξ) are
built chunk by chunk at every evaluation (never stored), so memory stays O(chunk · V)."""

_CHUNK_CELLS = 1 << 22  # logits (K × contexts × V) or rows p(·|ξ) held at once


@dataclass(frozen=True)
class Evaluation:
    """Population loss of K runs at one step."""

    loss: torch.Tensor
    """(K,) population loss (exact, or the held-out estimate)."""
    excess: np.ndarray
    """(K,) loss − floor, float64."""
    excess_se: np.ndarray | None
    """(K,) standard error of ``excess`` (None when exact)."""


class PopulationLoss:
    """Evaluates the population loss of θ, exactly or on held-out contexts (module docstring).

    Args:
        latent: the latent model.  kind: the loss.  dtype: torch dtype of the model.
        exact_target: the exact (T, r, P) target when the learner holds the tables, else None.
        eval_contexts: number of held-out contexts N (None = :data:`EVAL_CONTEXTS`).
        seed: seed of the held-out draw.
        device: torch device of the model.
    """

    def __init__(
        self,
        latent,
        kind: str,
        dtype: torch.dtype,
        exact_target=None,
        *,
        eval_contexts: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.kind = kind
        self.exact_target = exact_target
        if exact_target is not None:
            self.floor = loss_floor(kind, latent.weights, latent.p_next)
            self.method = f"exact over all {latent.n_contexts} contexts"
            return
        V = latent.n_tokens
        n = eval_contexts if eval_contexts is not None else EVAL_CONTEXTS
        if latent.n_contexts <= n:  # every context, weighted: exact
            rows = np.arange(latent.n_contexts)
            weights = np.asarray(latent.weights, dtype=np.float64)
            self.estimated = False
            self.method = f"exact over all {latent.n_contexts} contexts"
        else:
            rng = np.random.default_rng([int(seed), 0x5EED])
            rows = rng.choice(latent.n_contexts, size=n, p=latent.weights)
            weights = np.full(n, 1.0 / n)
            self.estimated = True
            self.method = (
                f"estimate on {n} held-out contexts drawn from the context weights "
                f"(exact over all {V} tokens per context; ± standard error over contexts)"
            )
        from .objective import ExactRows

        self.rows = torch.as_tensor(rows, dtype=torch.int64, device=device)
        self.exact_rows = ExactRows(latent, dtype, device)  # rows of p(·|ξ), built per chunk
        self.chunk = max(1, _CHUNK_CELLS // latent.n_tokens)
        self.h = np.concatenate(  # (N,) float64 floors, once
            [
                row_floor(kind, self.exact_rows.dense(c).double().cpu().numpy())
                for c in self.rows.split(self.chunk)
            ]
        )
        self.w = weights
        self.floor = float(weights @ self.h)

    def _rows_P(self, a: int, b: int) -> torch.Tensor:
        """p(·|ξ) of held-out contexts a … b − 1, (b − a, V)."""
        return self.exact_rows.dense(self.rows[a:b])

    def __call__(self, model, theta: torch.Tensor) -> Evaluation:
        """Population loss and excess loss of every run at θ: (K, P)."""
        if self.exact_target is not None:
            loss = model.loss(theta, self.kind, self.exact_target)
            return Evaluation(loss, loss.double().cpu().numpy() - self.floor, None)
        K = theta.shape[0]
        p = model.views(theta)
        g, b = p["g"], p.get("b")
        N = self.rows.numel()
        ell = torch.empty((K, N), dtype=torch.float64)
        step = max(1, self.chunk // K)
        for s in range(0, N, step):
            rows = self.rows[s : s + step]
            f = model.embed_rows(theta, rows[None].expand(K, -1))
            with wide(model.wide_threads or torch.get_num_threads()):
                z = torch.bmm(f, g.transpose(1, 2)) if b is None else torch.baddbmm(b, f, g.mT)
                P = self._rows_P(s, s + step)[None]
                ell[:, s : s + step] = row_losses(self.kind, z, P).double()
        ex = ell.numpy() - self.h[None, :]  # (K, N) per-context excess
        excess = (ex * self.w).sum(axis=1)  # row by row: a run's value does not depend on K
        loss = torch.as_tensor(
            (ell.numpy() * self.w).sum(axis=1), dtype=theta.dtype, device=theta.device
        )
        se = ex.std(axis=1, ddof=1) / np.sqrt(N) if self.estimated else np.zeros(K)
        return Evaluation(loss, excess, se)
