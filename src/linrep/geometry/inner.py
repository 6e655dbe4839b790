"""Inner products on the representation space: Euclidean, causal (Park et al.) and random.

The softmax model p̂(y | x) = softmax_y(f(x)ᵀ g(y)) is invariant under f ↦ A⁻ᵀ f, g ↦ A g for any
invertible A, so the likelihood does not single out an inner product (``docs/theory.md`` §3.3). An
inner product ⟨u, v⟩_M = uᵀ M v (M symmetric positive definite) on the unembedding side is handled here
by a map into coordinates where the plain dot product *is* that inner product:

    unembedding-side vectors (rows γ(y) = g(y), steering vectors Δg, directions):  v ↦ v M^{1/2}
    embedding-side vectors (contexts λ(x) = f(x), embedding differences):         u ↦ u M^{−1/2}

so logits are unchanged: (f M^{−1/2}) · (g M^{1/2}) = f · g. Rows are vectors (Hugging Face layout:
``g: (vocab, d)``, ``f: (n, d)``); every transform also accepts leading batch axes (``(K, V, d)``).

The causal inner product of Park, Choe & Veitch (2023) is M = Cov(γ)⁻¹ with Cov over the vocabulary,
so the whitened unembedding is g ↦ (g − E g) Cov(γ)^{−1/2} and contexts map f ↦ f Cov(γ)^{1/2}.
Differences of rows do not depend on the centring. We compute the covariance in float64 over selected
rows (e.g. drop padding/control tokens), centred, in chunks (no float64 copy of a 262k × 640 matrix),
and take the square roots from its eigendecomposition.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError

__all__ = [
    "InnerProduct",
    "EuclideanInnerProduct",
    "CausalInnerProduct",
    "RandomInnerProduct",
    "get_inner_product",
    "centred_covariance",
    "INNER_PRODUCTS",
]

INNER_PRODUCTS = ("euclidean", "causal", "random")


class InnerProduct:
    """Base class: ⟨u, v⟩_M = uᵀ M v represented by ``sqrt_`` = M^{1/2} and ``inv_sqrt_`` = M^{−1/2}.

    Attributes (after ``fit``):
        sqrt_: (d, d) float64, M^{1/2} (symmetric); maps unembedding-side row vectors.
        inv_sqrt_: (d, d) float64, M^{−1/2} (symmetric); maps embedding-side row vectors.
        mean_: (d,) float64, subtracted from unembedding rows by :meth:`transform_unembedding`.
        dim_: int, d.
    """

    name = "base"
    sqrt_: np.ndarray
    inv_sqrt_: np.ndarray
    mean_: np.ndarray
    dim_: int

    def _check_fitted(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "sqrt_"):
            raise InputError(f"{type(self).__name__} is not fitted; call .fit(...) first")
        x = np.asarray(x)
        if x.shape[-1] != self.dim_:
            raise InputError(
                f"{type(self).__name__} was fitted for d = {self.dim_} but got vectors of size "
                f"{x.shape[-1]}; fit it on the same model's unembedding"
            )
        return x

    def matrix(self) -> np.ndarray:
        """The Gram matrix M, (d, d) float64 (a pseudo-inverse on floored directions)."""
        return self.sqrt_ @ self.sqrt_

    def transform_unembedding(self, g: np.ndarray, center: bool = True) -> np.ndarray:
        """Map unembedding rows γ(y): g ↦ (g − mean_) M^{1/2}.

        Args:
            g: (..., V, d) unembedding rows (any float dtype).
            center: subtract ``mean_`` first (irrelevant for differences of rows).

        Returns:
            (..., V, d) float64 coordinates in which dot products are ⟨·,·⟩_M.
        """
        g = self._check_fitted(g).astype(np.float64, copy=False)
        if center:
            g = g - self.mean_
        return g @ self.sqrt_

    def transform_vectors(self, v: np.ndarray) -> np.ndarray:
        """Map unembedding-side vectors (steering vectors Δg, directions): v ↦ v M^{1/2}, no centring.

        Args:
            v: (..., d).

        Returns:
            (..., d) float64.
        """
        return self._check_fitted(v).astype(np.float64, copy=False) @ self.sqrt_

    def transform_embedding(self, f: np.ndarray) -> np.ndarray:
        """Map embedding-side vectors λ(x) = f(x) (and their differences): f ↦ f M^{−1/2}.

        Args:
            f: (..., n, d) context embeddings.

        Returns:
            (..., n, d) float64; (f M^{−1/2}) · (g M^{1/2}) = f · g, so logits are unchanged.
        """
        return self._check_fitted(f).astype(np.float64, copy=False) @ self.inv_sqrt_

    def inner(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """⟨u, v⟩_M along the last axis for unembedding-side vectors, (...,)."""
        return np.sum(self.transform_vectors(u) * self.transform_vectors(v), axis=-1)

    def cosine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Cosine under M between unembedding-side vectors along the last axis, (...,)."""
        a, b = self.transform_vectors(u), self.transform_vectors(v)
        den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sum(a * b, axis=-1) / den

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


class EuclideanInnerProduct(InnerProduct):
    """M = I: the plain dot product (transforms only convert to float64; no matrix products)."""

    name = "euclidean"

    def fit(self, g: np.ndarray | int | None = None) -> EuclideanInnerProduct:
        """Record d from an unembedding ``(..., V, d)`` or an int; returns self."""
        d = _dim(g)
        self.dim_ = d if d is not None else -1
        eye = np.eye(max(self.dim_, 0))
        self.sqrt_, self.inv_sqrt_, self.mean_ = eye, eye, np.zeros(max(self.dim_, 0))
        return self

    def _check_fitted(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "dim_") or self.dim_ < 0:  # Euclidean works unfitted
            return np.asarray(x)
        return super()._check_fitted(x)

    def transform_unembedding(self, g: np.ndarray, center: bool = True) -> np.ndarray:
        """Euclidean coordinates of unembedding rows: (..., V, d) float64, *not* centred (Park et al.
        use the raw γ under the Euclidean inner product); ``center`` is ignored."""
        return self._check_fitted(g).astype(np.float64, copy=False)

    def transform_vectors(self, v: np.ndarray) -> np.ndarray:
        """Identity (as float64), (..., d)."""
        return self._check_fitted(v).astype(np.float64, copy=False)

    def transform_embedding(self, f: np.ndarray) -> np.ndarray:
        """Identity (as float64), (..., n, d)."""
        return self._check_fitted(f).astype(np.float64, copy=False)

    def matrix(self) -> np.ndarray:
        if not hasattr(self, "dim_") or self.dim_ < 0:
            raise InputError("EuclideanInnerProduct.matrix needs d: call .fit(g) or .fit(d) first")
        return np.eye(self.dim_)


class CausalInnerProduct(InnerProduct):
    """Park et al.'s causal inner product ⟨u, v⟩_C = uᵀ Cov(γ)⁻¹ v.

    Whitening: g ↦ (g − μ) Cov(γ)^{−1/2}; contexts f ↦ f Cov(γ)^{1/2}. Cov is the centred (ddof = 1)
    float64 covariance of the selected unembedding rows.

    Args:
        floor: relative eigenvalue floor. Eigenvalues λ_k < floor · λ_max are *floored*: with
            ``null_space="drop"`` (default) the direction is projected out (pseudo-inverse square
            roots: 0 in both maps — exact for differences of rows, which lie in range(Cov), and for
            contexts, whose component there shifts every logit equally); with ``"clip"`` λ_k is
            replaced by floor · λ_max (Park et al.'s repo inverts the full covariance).
        null_space: ``"drop"`` or ``"clip"``.
        chunk: rows per float64 chunk when accumulating the covariance (memory ≈ chunk · d · 8 bytes).

    Attributes (after ``fit``):
        cov_: (d, d) float64 covariance. mean_: (d,). eigvals_: (d,) ascending. eigvecs_: (d, d).
        whiten_: (d, d) = Cov^{−1/2} (= ``sqrt_``). unwhiten_: (d, d) = Cov^{1/2} (= ``inv_sqrt_``).
        rank_: number of eigenvalues kept above the floor. n_floored_: d − rank_.
        n_rows_: number of rows used.
    """

    name = "causal"

    def __init__(
        self, floor: float = 1e-10, null_space: Literal["drop", "clip"] = "drop", chunk: int = 16384
    ):
        self.floor = floor
        self.null_space = null_space
        self.chunk = chunk

    def fit(self, g: np.ndarray, rows: np.ndarray | None = None) -> CausalInnerProduct:
        """Estimate Cov(γ) from unembedding rows.

        Args:
            g: (V, d) unembedding γ (float32 or float64; not copied).
            rows: optional boolean mask (V,) or integer indices of the rows to use (e.g. normal
                tokens only: drop unused / padding / control rows).

        Returns:
            self.
        """
        if self.null_space not in ("drop", "clip"):
            raise InputError(
                f"null_space must be 'drop' or 'clip', got {self.null_space!r}; use one of those"
            )
        if not self.floor >= 0:
            raise InputError(f"floor must be ≥ 0, got {self.floor}; use e.g. 1e-10")
        mean, cov, n = centred_covariance(g, rows, self.chunk)
        return self.fit_covariance(mean, cov, n)

    def fit_covariance(
        self, mean: np.ndarray, cov: np.ndarray, n_rows: int = 0
    ) -> CausalInnerProduct:
        """Fit from a precomputed (e.g. cached) mean and covariance instead of the rows.

        The expensive part of :meth:`fit` is the covariance (O(V d²)); cache ``mean_``, ``cov_`` and
        ``n_rows_`` (e.g. with ``linrep.io.save_npz``) and call this to rebuild in O(d³).

        Args:
            mean: (d,) row mean. cov: (d, d) symmetric covariance. n_rows: rows it was computed on.

        Returns:
            self.
        """
        if self.null_space not in ("drop", "clip"):
            raise InputError(
                f"null_space must be 'drop' or 'clip', got {self.null_space!r}; use one of those"
            )
        cov = np.asarray(cov, dtype=np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or np.shape(mean) != cov.shape[:1]:
            raise InputError(f"need mean (d,) and cov (d, d); got {np.shape(mean)} and {cov.shape}")
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.cov_ = (cov + cov.T) / 2
        self.n_rows_ = int(n_rows)
        lam, U = np.linalg.eigh(self.cov_)
        self.eigvals_, self.eigvecs_ = lam, U
        lam_max = max(float(lam[-1]), 0.0)
        thr = self.floor * lam_max
        keep = lam > thr if lam_max > 0 else np.zeros_like(lam, bool)
        if self.null_space == "clip":
            lam_c = np.maximum(lam, thr if thr > 0 else np.finfo(float).tiny)
            inv_half, half = lam_c**-0.5, lam_c**0.5
        else:
            safe = np.where(keep, lam, 1.0)
            inv_half, half = np.where(keep, safe**-0.5, 0.0), np.where(keep, safe**0.5, 0.0)
        self.whiten_ = (U * inv_half) @ U.T
        self.unwhiten_ = (U * half) @ U.T
        self.sqrt_, self.inv_sqrt_ = self.whiten_, self.unwhiten_
        self.rank_ = int(keep.sum())
        self.n_floored_ = int(lam.size - self.rank_)
        self.dim_ = int(lam.size)
        return self


class RandomInnerProduct(InnerProduct):
    """A random positive-definite M = Q diag(exp(s·z)) Qᵀ, Q Haar-orthogonal, z ~ N(0, 1) i.i.d.

    The control of Park et al.'s heatmaps: an inner product with no relation to the model. The
    spread ``log_sd`` = s sets the conditioning: log cond(M) is the range of d draws of N(0, s²),
    ≈ 2 s √(2 ln d) (≈ 5.3 s at d = 32).

    Args:
        seed: random seed (same seed and d → same M).
        log_sd: standard deviation of the log-eigenvalues.

    Attributes (after ``fit``): sqrt_, inv_sqrt_ (d, d); eigvals_ (d,); mean_ = 0; dim_.
    """

    name = "random"

    def __init__(self, seed: int = 0, log_sd: float = 1.0):
        self.seed = seed
        self.log_sd = log_sd

    def fit(self, g: np.ndarray | int) -> RandomInnerProduct:
        """Draw M for dimension d, given as an int or read from an array's last axis; returns self."""
        d = _dim(g)
        if d is None or d < 1:
            raise InputError("RandomInnerProduct.fit needs the dimension d (an int or an array)")
        rng = np.random.default_rng(self.seed)
        Q, R = np.linalg.qr(rng.standard_normal((d, d)))
        Q = Q * np.sign(np.diag(R))  # Haar measure
        lam = np.exp(self.log_sd * rng.standard_normal(d))
        self.eigvals_ = lam
        self.sqrt_ = (Q * lam**0.5) @ Q.T
        self.inv_sqrt_ = (Q * lam**-0.5) @ Q.T
        self.mean_ = np.zeros(d)
        self.dim_ = d
        return self


def get_inner_product(
    name: str | InnerProduct,
    g: np.ndarray | None = None,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    floor: float = 1e-10,
) -> InnerProduct:
    """A fitted inner product by name (``"euclidean"``, ``"causal"``, ``"random"``).

    Args:
        name: the name, or an already fitted :class:`InnerProduct` (returned unchanged).
        g: (V, d) unembedding (needed for ``causal``; gives d for the others).
        rows: rows of ``g`` for the causal covariance (mask or indices).
        seed: seed of the random inner product.
        floor: relative eigenvalue floor of the causal inner product.

    Returns:
        A fitted :class:`InnerProduct`.
    """
    if isinstance(name, InnerProduct):
        return name
    if name == "euclidean":
        return EuclideanInnerProduct().fit(g)
    if name == "causal":
        if g is None:
            raise InputError("the causal inner product needs the unembedding g to be fitted")
        return CausalInnerProduct(floor=floor).fit(g, rows=rows)
    if name == "random":
        if g is None:
            raise InputError("the random inner product needs the unembedding g (or d) to be fitted")
        return RandomInnerProduct(seed=seed).fit(g)
    from ..errors import did_you_mean

    raise InputError(f"unknown inner product '{name}'{did_you_mean(str(name), INNER_PRODUCTS)}")


def centred_covariance(
    g: np.ndarray, rows: np.ndarray | None = None, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and centred (ddof = 1) covariance of the rows of ``g`` in float64, accumulated in chunks.

    Args:
        g: (V, d) any float dtype (never copied as a whole).
        rows: boolean mask (V,) or integer indices; None = all rows.
        chunk: rows converted to float64 at a time.

    Returns:
        (mean (d,), cov (d, d), number of rows used).
    """
    g = np.asarray(g)
    if g.ndim != 2:
        raise InputError(f"the unembedding must be a (vocab, d) matrix, got shape {g.shape}")
    V, d = g.shape
    idx = _row_indices(rows, V)
    n = V if idx is None else idx.size
    if n < 2:
        raise InputError(f"the covariance needs at least 2 rows, got {n}; select more rows")

    def blocks():
        for s in range(0, n, chunk):
            sel = slice(s, min(s + chunk, n)) if idx is None else idx[s : s + chunk]
            yield g[sel].astype(np.float64)

    total = np.zeros(d)
    for b in blocks():
        total += b.sum(axis=0)
    mean = total / n
    cov = np.zeros((d, d))
    for b in blocks():
        b -= mean
        cov += b.T @ b
    cov /= n - 1
    if not np.all(np.isfinite(cov)):
        raise InputError("the unembedding contains NaN or inf values; check the model file")
    return mean, (cov + cov.T) / 2, n


def _row_indices(rows: np.ndarray | None, V: int) -> np.ndarray | None:
    if rows is None:
        return None
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (V,):
            raise InputError(f"row mask has shape {rows.shape} but the unembedding has {V} rows")
        return np.flatnonzero(rows)
    rows = rows.astype(np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= V):
        raise InputError(f"row indices must lie in [0, {V}); got {rows.min()}..{rows.max()}")
    return np.sort(rows)


def _dim(g: np.ndarray | int | None) -> int | None:
    if g is None:
        return None
    if isinstance(g, (int, np.integer)):
        return int(g)
    return int(np.shape(g)[-1])
