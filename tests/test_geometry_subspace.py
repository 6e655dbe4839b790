"""The identifiable subspace span{f(ξ)}: against SVD, planted ranks and the gradient-descent invariant."""

from __future__ import annotations

import numpy as np
import pytest

from linrep.errors import InputError
from linrep.geometry.subspace import (
    GramAccumulator,
    identifiable_subspace,
    row_space,
    subspace_from_gram,
)


def _svd_projector(x: np.ndarray, rtol: float) -> tuple[np.ndarray, int]:
    """Independent reference: P = V_r V_rᵀ from numpy's SVD of x itself (no Gram matrix)."""
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    r = int((s > rtol * s[0]).sum())
    return vt[:r].T @ vt[:r], r


def test_planted_rank_and_projector_match_svd():
    rng = np.random.default_rng(0)
    K, n, d = 3, 50, 12
    ranks = [2, 5, 12]
    x = np.stack([rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) for r in ranks])
    sub = row_space(x)
    assert sub.rank.tolist() == ranks and sub.d == d and sub.K == K
    for k in range(K):
        P, r = _svd_projector(x[k], 1e-5)
        np.testing.assert_allclose(sub.projector[k], P, atol=1e-10)
        np.testing.assert_allclose(
            sub.singular_values[k, :r], np.linalg.svd(x[k])[1][:r], rtol=1e-8
        )
    # the planted row space: P maps the rows to themselves and is idempotent
    np.testing.assert_allclose(sub.project(x), x, atol=1e-9)
    np.testing.assert_allclose(sub.projector @ sub.projector, sub.projector, atol=1e-10)


def test_chunks_and_centring_agree_with_one_shot():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 40, 6)) @ np.diag([1, 1, 1, 1, 0, 0]) + 100.0  # big mean, rank 4 + mean
    one = row_space(x)
    acc = GramAccumulator()
    for s in range(0, 40, 7):
        acc.add(x[:, s : s + 7])
    np.testing.assert_allclose(acc.subspace().projector, one.projector, atol=1e-9)
    assert one.rank.tolist() == [5, 5]  # 4 directions + the mean direction
    cen = row_space(x, centre=True, chunk=9)
    for k in range(2):
        P, r = _svd_projector(x[k] - x[k].mean(0), 1e-5)
        assert cen.rank[k] == r == 4
        np.testing.assert_allclose(cen.projector[k], P, atol=1e-8)


def test_logits_see_only_the_projection_and_zero_rows_give_rank_zero():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 10))
    g = rng.normal(size=(16, 10))
    sub = identifiable_subspace(f)
    np.testing.assert_allclose(f @ sub.project(g[None])[0].T, f @ g.T, atol=1e-10)
    assert sub.to_json() == {"rank": [3], "d": 10, "rtol": 1e-5}
    chunks = identifiable_subspace(iter([f[None, :10], f[None, 10:]]))
    np.testing.assert_allclose(chunks.projector, sub.projector, atol=1e-10)
    zero = subspace_from_gram(np.zeros((4, 4)))
    assert zero.rank.tolist() == [0] and not zero.projector.any()


def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="rtol"):
        row_space(np.ones((3, 2)), rtol=0)
    with pytest.raises(InputError, match=r"\(K=1, \.\.\., d=2\)"):
        row_space(np.ones((3, 2))).project(np.ones((1, 3)))
    with pytest.raises(InputError, match="no rows"):
        GramAccumulator().gram()


@pytest.mark.parametrize("optimizer,lr", [("gd", 1.0), ("adam", 0.01)])
def test_gd_leaves_the_null_space_of_fixed_features_at_its_initialisation(optimizer, lr):
    """With f fixed, ∂L/∂g(y) ∈ span{f}: GD keeps (I − P_F) g at its initial value exactly; Adam's
    per-coordinate scaling does not."""
    from linrep.latent import LatentModel
    from linrep.learn import fit

    lat = LatentModel.from_config({"m": 3})
    tc = {"optimizer": optimizer, "lr": lr, "steps": 300, "log_every": 300, "dtype": "float64"}
    tc["trainable"] = "unembedding"
    r = fit(lat, {"encoder": "linear", "d": 16}, tc, seeds=[0], progress=False)
    sub = identifiable_subspace(r.embeddings())
    assert sub.rank[0] == 2 * lat.m + 1  # one-hot {0,1,⋄} encoding: rank 2m + 1
    moved = sub.project(r.unembeddings() - r.initial_unembeddings())
    null_moved = (r.unembeddings() - r.initial_unembeddings()) - moved
    assert np.abs(moved).max() > 1e-2  # the identifiable part did train
    if optimizer == "gd":
        assert np.abs(null_moved).max() < 1e-10
    else:
        assert np.abs(null_moved).max() > 1e-2
