"""The identifiable subspace of a softmax model: what the logits can see (``docs/theory.md`` §3.4).

Logits are z(ξ, y) = f(ξ)ᵀg(y) + b(y). Write F = span{f(ξ) : ξ a context} ⊂ ℝ^d (the row space of the
(n, d) matrix of context embeddings) and P_F its orthogonal projector. Then

    f(ξ)ᵀg(y) = f(ξ)ᵀ(P_F g(y))        for every context ξ and token y,

so the part (I − P_F) g(y) never enters a logit: no data can identify it. Under gradient descent it is
the initialisation (∂L/∂g(y) = Σ_ξ w(ξ)(q − p)(y|ξ) f(ξ) ∈ F), while adaptive optimisers (Adam's
per-coordinate scaling) move it. Symmetrically the softmax only sees differences g(y) − g(y'), so f is
identified only through its projection on G = span{g(y) − g(y')} (the row space of the *centred*
unembedding). Metrics "inside span{f}" use P_F g (and Q_G f for embedding-side vectors).

**Numerical rank.** F = #{k : σ_k > rtol · σ_max} over the singular values σ of the row matrix. They are
computed as square roots of the eigenvalues of the d × d Gram matrix Σ_rows x xᵀ, accumulated in chunks
of rows: O(n·d²) time, O(d²) memory per run, so n may be large (sampled contexts at m = 18) and the rows
may arrive in pieces (:class:`GramAccumulator`). Eigenvalues of the Gram matrix carry an absolute
error ≈ 1e-16·σ_max², i.e. singular values below ≈ 1e-8·σ_max are noise; float32-trained embeddings add
rounding noise ≈ 1e-7·σ_max. The default ``rtol = 1e-5`` sits two decades above both and far below the
smallest real singular values of trained models (≳ 1e-2·σ_max in our simulations).

Every array carries a leading ensemble axis K (one subspace per run); a single (n, d) matrix is
treated as K = 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "DEFAULT_RTOL",
    "Subspace",
    "GramAccumulator",
    "subspace_from_gram",
    "row_space",
    "identifiable_subspace",
]

DEFAULT_RTOL = 1e-5
"""Relative tolerance on singular values: σ_k counts if σ_k > rtol · σ_max (see module docstring)."""


@dataclass(frozen=True)
class Subspace:
    """One subspace of ℝ^d per run of an ensemble, as orthogonal projectors.

    Attributes:
        projector: (K, d, d) symmetric P with P² = P (zero matrix for an all-zero row set).
        rank: (K,) numerical rank F of each run.
        singular_values: (K, d) singular values of the rows, descending.
        rtol: the relative tolerance that defined the rank.
    """

    projector: np.ndarray
    rank: np.ndarray
    singular_values: np.ndarray
    rtol: float

    @property
    def d(self) -> int:
        """Ambient dimension d."""
        return int(self.projector.shape[-1])

    @property
    def K(self) -> int:
        """Number of runs."""
        return int(self.projector.shape[0])

    def project(self, v: np.ndarray) -> np.ndarray:
        """P v for row vectors of every run: v (K, ..., d) → (K, ..., d) float64.

        Row vectors are mapped v ↦ v P (P symmetric), e.g. g: (K, V, d) or steering vectors (K, P, d).
        """
        v = np.asarray(v, dtype=np.float64)
        if v.ndim < 2 or v.shape[0] != self.K or v.shape[-1] != self.d:
            raise InputError(
                f"project needs vectors (K={self.K}, ..., d={self.d}); got shape {v.shape}"
            )
        flat = v.reshape(self.K, -1, self.d)
        return (flat @ self.projector).reshape(v.shape)

    def to_json(self) -> dict[str, object]:
        """``{"rank": [F per run], "d": d, "rtol": rtol}``."""
        return {"rank": [int(r) for r in self.rank], "d": self.d, "rtol": self.rtol}


def _as_batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"need rows (n, d) or (K, n, d); got shape {x.shape}")
    return x


class GramAccumulator:
    """Streaming Gram matrix Σ_rows x xᵀ (optionally of centred rows) for K runs.

    ``acc.add(rows)`` with rows (K, r, d) any number of times, then ``acc.subspace(rtol)``. Centring
    uses the exact identity Σ (x − μ)(x − μ)ᵀ = Σ (x − s)(x − s)ᵀ − n (μ − s)(μ − s)ᵀ with the shift s
    taken from the first chunk (no cancellation when the mean is large).

    Args:
        centre: subtract the mean row first (the span of the differences of rows).
    """

    def __init__(self, centre: bool = False):
        self.centre = centre
        self._gram: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._shift: np.ndarray | None = None
        self.n = 0

    def add(self, rows: np.ndarray) -> GramAccumulator:
        """Accumulate rows (K, r, d) (or (r, d) for K = 1); returns self."""
        x = _as_batch(rows).astype(np.float64, copy=False)
        if self._gram is None:
            K, _, d = x.shape
            self._gram = np.zeros((K, d, d))
            self._sum = np.zeros((K, d))
            self._shift = x.mean(axis=1) if self.centre else np.zeros((K, d))
        elif x.shape[0] != self._gram.shape[0] or x.shape[2] != self._gram.shape[2]:
            raise InputError(f"chunk of shape {x.shape} does not match the first chunk's (K, d)")
        xs = x - self._shift[:, None, :]
        self._gram += np.swapaxes(xs, 1, 2) @ xs
        self._sum += xs.sum(axis=1)
        self.n += x.shape[1]
        return self

    def gram(self) -> np.ndarray:
        """(K, d, d) Gram matrix of the (centred) rows seen so far."""
        if self._gram is None or self.n == 0:
            raise InputError("no rows were added; call add(rows) with rows (K, r, d) first")
        if not self.centre:
            return self._gram.copy()
        mu = self._sum / self.n  # mean of the shifted rows
        return self._gram - self.n * mu[:, :, None] * mu[:, None, :]

    def subspace(self, rtol: float = DEFAULT_RTOL) -> Subspace:
        """The row space of everything added (see :func:`subspace_from_gram`)."""
        return subspace_from_gram(self.gram(), rtol)


def subspace_from_gram(gram: np.ndarray, rtol: float = DEFAULT_RTOL) -> Subspace:
    """Row space from a Gram matrix G = XᵀX: eigenvectors with σ_k = √λ_k > rtol · σ_max.

    Args:
        gram: (K, d, d) or (d, d) symmetric positive semi-definite.
        rtol: relative tolerance on singular values, in (0, 1).

    Returns:
        :class:`Subspace` with P = U_F U_Fᵀ.
    """
    if not 0 < rtol < 1:
        raise InputError(f"rtol must lie in (0, 1), got {rtol}; the default is {DEFAULT_RTOL}")
    G = np.asarray(gram, dtype=np.float64)
    G = G[None] if G.ndim == 2 else G
    lam, U = np.linalg.eigh((G + np.swapaxes(G, 1, 2)) / 2)  # ascending
    sv = np.sqrt(np.clip(lam[:, ::-1], 0.0, None))  # (K, d) descending
    U = U[:, :, ::-1]
    keep = (sv > rtol * sv[:, :1]) & (sv[:, :1] > 0)  # (K, d)
    Uk = U * keep[:, None, :]
    return Subspace(
        projector=Uk @ np.swapaxes(Uk, 1, 2),
        rank=keep.sum(axis=1),
        singular_values=sv,
        rtol=float(rtol),
    )


def row_space(
    x: np.ndarray,
    rtol: float = DEFAULT_RTOL,
    *,
    centre: bool = False,
    chunk: int = 8192,
) -> Subspace:
    """Row space of x (optionally of its centred rows), computed in chunks of rows.

    Args:
        x: (K, n, d) or (n, d) rows.
        rtol: relative tolerance on singular values.
        centre: use the rows minus their mean (span of the differences of rows).
        chunk: rows per Gram update (bounds the float64 working copy).

    Returns:
        :class:`Subspace`.
    """
    x = _as_batch(x)
    acc = GramAccumulator(centre=centre)
    for s in range(0, x.shape[1], chunk):
        acc.add(x[:, s : s + chunk])
    return acc.subspace(rtol)


def identifiable_subspace(
    f: np.ndarray | Iterable[np.ndarray], rtol: float = DEFAULT_RTOL
) -> Subspace:
    """span{f(ξ)}: the only directions of unembedding space that any logit depends on.

    Args:
        f: context embeddings (K, n, d) or (n, d), or an iterable of (K, r, d) chunks of them.
        rtol: relative tolerance on singular values (numerical rank F).

    Returns:
        :class:`Subspace`; ``project(g)`` gives P_F g, the identifiable part of the unembedding.
    """
    if isinstance(f, np.ndarray) or hasattr(f, "__array__"):
        return row_space(np.asarray(f), rtol)
    acc = GramAccumulator()
    for rows in f:
        acc.add(rows)
    return acc.subspace(rtol)
