"""Geometry core: inner products, steering vectors, cosines, LOO, nulls, intervals, probes.

Every expected value comes from an independent derivation: planted directions, brute-force loops
written here, closed forms, or invariances of the softmax model.
"""

from __future__ import annotations

import numpy as np
import pytest

import linrep.geometry as G
from linrep.errors import InputError


def _planted(seed=0, V=400, d=24, P=30, scale=3.0, noise=0.05):
    """Unembedding with a planted concept direction u: g(y1) = g(y0) + scale·u + noise."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((V, d))
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    y0 = rng.choice(V // 2, size=P, replace=False)
    y1 = V // 2 + np.arange(P)
    g[y1] = g[y0] + scale * u + noise * rng.standard_normal((P, d))
    return g, np.stack([y0, y1], axis=1), u


# ------------------------------------------------------------------------------------ inner products
def test_planted_direction_recovered_euclidean_and_causal():
    g, pairs, u = _planted()
    d_e = G.concept_direction(G.steering_vectors(g, pairs))
    assert d_e @ u > 0.99
    ip = G.CausalInnerProduct().fit(g)
    d_c = G.concept_direction(G.steering_vectors(g, pairs, inner=ip))
    assert G.cosine(d_c, ip.transform_vectors(u)) > 0.99
    # float32 input gives the same directions
    d_32 = G.concept_direction(G.steering_vectors(g.astype(np.float32), pairs))
    assert d_32 @ d_e > 1 - 1e-6


def test_concept_direction_estimator():
    g, pairs, u = _planted(seed=10)
    ip = G.CausalInnerProduct().fit(g)
    est = G.ConceptDirection(inner=ip).fit(g, pairs)
    assert est.n_pairs_ == len(pairs) and est.deltas_.shape == (len(pairs), g.shape[1])
    assert G.cosine(est.direction_, ip.transform_vectors(u)) > 0.99
    assert est.loo_cosines_.min() > 0.9 and est.same_concept_cosine_ > 0.9
    # projection of a pair's difference equals the whitened dot product with the direction
    k = pairs[0]
    diff = g[k[1]] - g[k[0]]
    assert est.transform(diff) == pytest.approx(ip.transform_vectors(diff) @ est.direction_)
    one = G.ConceptDirection().fit(g, pairs[:1])
    assert np.isnan(one.same_concept_cosine_) and one.direction_ @ u > 0.99


def test_whitened_covariance_is_identity_with_row_selection():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((12, 12))
    g = (rng.standard_normal((3000, 12)) @ A + 5.0).astype(np.float32)
    rows = rng.random(3000) < 0.7
    ip = G.CausalInnerProduct(chunk=257).fit(g, rows=rows)  # odd chunk: exercises accumulation
    ref = np.cov(g[rows].astype(np.float64).T)  # independent: numpy's covariance
    np.testing.assert_allclose(ip.cov_, ref, rtol=1e-10, atol=1e-10)
    w = ip.transform_unembedding(g[rows])
    np.testing.assert_allclose(np.cov(w.T), np.eye(12), atol=1e-9)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-9)
    # Cov^{-1/2} Cov^{1/2} = I and M = Cov^{-1}
    np.testing.assert_allclose(ip.whiten_ @ ip.unwhiten_, np.eye(12), atol=1e-9)
    np.testing.assert_allclose(ip.matrix(), np.linalg.inv(ref), rtol=1e-6, atol=1e-9)
    # rebuilding from a cached covariance gives the same maps
    ip2 = G.CausalInnerProduct().fit_covariance(ip.mean_, ip.cov_, ip.n_rows_)
    np.testing.assert_allclose(ip2.whiten_, ip.whiten_, atol=1e-12)
    np.testing.assert_allclose(ip2.unwhiten_, ip.unwhiten_, atol=1e-12)


def test_causal_rank_deficient_drops_null_space():
    rng = np.random.default_rng(2)
    g = rng.standard_normal((6, 10))  # V < d: covariance has rank 5
    ip = G.CausalInnerProduct().fit(g)
    assert ip.rank_ == 5 and ip.n_floored_ == 5
    w = ip.transform_unembedding(g)
    c = np.cov(w.T)
    # whitened covariance is the orthogonal projector onto range(Cov): idempotent, trace 5
    np.testing.assert_allclose(c @ c, c, atol=1e-8)
    assert np.trace(c) == pytest.approx(5, abs=1e-8)
    # logit differences between tokens are preserved for any context
    f = rng.standard_normal((4, 10))
    lg = f @ g.T
    lw = ip.transform_embedding(f) @ w.T
    np.testing.assert_allclose(lw - lw[:, :1], lg - lg[:, :1], atol=1e-8)


def test_causal_cosines_invariant_under_reparametrisation():
    """Softmax invariance g → gA, f → f A^{-T}: causal cosines must not change (Park et al.)."""
    rng = np.random.default_rng(3)
    V, d, n = 300, 16, 40
    g = rng.standard_normal((V, d)) @ np.diag(np.linspace(0.2, 3, d))
    f = rng.standard_normal((n, d))
    A = rng.standard_normal((d, d)) + 3 * np.eye(d)
    gA, fA = g @ A, f @ np.linalg.inv(A).T
    np.testing.assert_allclose(fA @ gA.T, f @ g.T, atol=1e-9)  # same model
    pairs = [rng.integers(0, V, (15, 2)) for _ in range(3)]
    ip, ipA = G.CausalInnerProduct().fit(g), G.CausalInnerProduct().fit(gA)
    D, DA = G.concept_directions(g, pairs, ip), G.concept_directions(gA, pairs, ipA)
    np.testing.assert_allclose(G.cosine_matrix(DA), G.cosine_matrix(D), atol=1e-9)
    np.testing.assert_allclose(
        G.loo_cosines(G.steering_vectors(gA, pairs[0], ipA)),
        G.loo_cosines(G.steering_vectors(g, pairs[0], ip)),
        atol=1e-9,
    )
    # embedding side: cos(f-difference, direction) is invariant too
    fd, fdA = ip.transform_embedding(f[1] - f[0]), ipA.transform_embedding(fA[1] - fA[0])
    np.testing.assert_allclose(G.cosine(fdA, DA), G.cosine(fd, D), atol=1e-9)
    # ... while Euclidean cosines do change (the test can fail)
    E, EA = G.concept_directions(g, pairs), G.concept_directions(gA, pairs)
    assert np.abs(G.cosine_matrix(EA) - G.cosine_matrix(E)).max() > 1e-2


def test_random_inner_product_is_spd_and_preserves_logits():
    rng = np.random.default_rng(4)
    ip = G.RandomInnerProduct(seed=7).fit(9)
    M = ip.matrix()
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    assert np.linalg.eigvalsh(M).min() > 0
    np.testing.assert_allclose(ip.sqrt_ @ ip.inv_sqrt_, np.eye(9), atol=1e-10)
    u, v = rng.standard_normal(9), rng.standard_normal(9)
    assert ip.inner(u, v) == pytest.approx(u @ M @ v)
    f, g = rng.standard_normal((5, 9)), rng.standard_normal((7, 9))
    np.testing.assert_allclose(
        ip.transform_embedding(f) @ ip.transform_unembedding(g).T, f @ g.T, atol=1e-10
    )
    np.testing.assert_allclose(G.RandomInnerProduct(seed=7).fit(9).sqrt_, ip.sqrt_)  # deterministic
    assert G.get_inner_product("random", g, seed=7).matrix() == pytest.approx(M)
    with pytest.raises(InputError, match="did you mean"):
        G.get_inner_product("casual", g)


# ------------------------------------------------------------------------------- cosine statistics
def test_cosine_matrix_by_hand():
    a = np.array([[1.0, 0, 0], [1, 1, 0], [0, 0, -2]])
    s = 1 / np.sqrt(2)
    expected = np.array([[1, s, 0], [s, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(G.cosine_matrix(a), expected, atol=1e-12)
    assert G.mean_abs_offdiag(expected) == pytest.approx(2 * s / 6)
    np.testing.assert_allclose(G.pairwise_cosines(a), [s, 0, 0], atol=1e-12)
    assert G.same_concept_cosine(a) == pytest.approx(s / 3)
    b = np.array([[0.0, 3, 0]])
    np.testing.assert_allclose(G.cosine_matrix(a, b), [[0], [s], [0]], atol=1e-12)
    np.testing.assert_allclose(G.cross_concept_cosines([a[:2], b]), [0, s], atol=1e-12)


def test_loo_and_parallelism_vs_brute_force():
    rng = np.random.default_rng(5)
    D = rng.standard_normal((3, 9, 6)) + np.array([2.0, 0, 0, 0, 0, 0])  # batch of K = 3
    loo, proj, par = G.loo_cosines(D), G.loo_projections(D), G.same_concept_cosine(D)
    for k in range(3):
        for p in range(9):
            rest = np.delete(D[k], p, axis=0).mean(axis=0)
            c = D[k, p] @ rest / np.linalg.norm(D[k, p]) / np.linalg.norm(rest)
            assert loo[k, p] == pytest.approx(c, abs=1e-12)
            assert proj[k, p] == pytest.approx(D[k, p] @ rest / np.linalg.norm(rest), abs=1e-12)
        cs = [
            D[k, i] @ D[k, j] / np.linalg.norm(D[k, i]) / np.linalg.norm(D[k, j])
            for i in range(9)
            for j in range(i + 1, 9)
        ]
        assert par[k] == pytest.approx(np.mean(cs), abs=1e-12)
        assert G.pairwise_cosines(D)[k] == pytest.approx(cs, abs=1e-12)
    with pytest.raises(InputError):
        G.loo_cosines(D[:, :1])


def test_block_structure():
    c = np.array([[1, 0.8, 0.1, 0.0], [0.8, 1, -0.1, 0.1], [0.1, -0.1, 1, 0.5], [0, 0.1, 0.5, 1]])
    b = G.block_structure(c, ["verb", "verb", "lang", "lang"])
    assert b["within_abs_cosine"] == pytest.approx(0.65)
    assert b["between_abs_cosine"] == pytest.approx(0.075)
    assert b["n_within"] == 4 and b["n_between"] == 8


def test_pairs_validated():
    g = np.zeros((5, 3))
    with pytest.raises(InputError, match="lie in"):
        G.steering_vectors(g, np.array([[0, 5]]))
    with pytest.raises(InputError, match="shape"):
        G.steering_vectors(g, np.array([0, 1]))


# ---------------------------------------------------------------------------------------- nulls
def test_random_pair_null_values_and_rows():
    V = 50
    g = np.zeros((V, 4), dtype=np.float32)
    g[:, 0] = np.arange(V)  # projection of g(b) − g(a) on e1 is b − a
    rows = np.arange(10, 30)
    e1 = np.array([1.0, 0, 0, 0])
    vals = G.random_pair_null(g, 2 * e1, n=5000, seed=1, rows=rows, chunk=333)
    assert vals.shape == (5000,)
    assert np.all(vals != 0) and np.all(np.abs(vals) <= 19) and np.all(vals == np.round(vals))
    assert abs(vals.mean()) < 0.5  # symmetric distribution of b − a
    cos = G.random_pair_null(g, np.stack([e1, -e1]), n=100, seed=1, statistic="cosine")
    np.testing.assert_allclose(np.abs(cos), 1)
    np.testing.assert_allclose(cos[:, 0], -cos[:, 1])


def test_random_pair_null_under_inner_product_equals_prewhitened():
    rng = np.random.default_rng(12)
    g = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    ip = G.CausalInnerProduct().fit(g)
    u = rng.standard_normal((2, 6))
    gw = ip.transform_unembedding(g, center=False)  # map every row first, then plain dot products
    for stat in ("projection", "cosine"):
        a = G.random_pair_null(g, u, n=300, seed=4, inner=ip, statistic=stat, chunk=64)
        b = G.random_pair_null(gw, u, n=300, seed=4, statistic=stat)
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_null_test_by_hand():
    null = np.array([0.0, 1, 2, 3, 4])
    t = G.null_test(3.5, null)
    assert t.z == pytest.approx((3.5 - 2) / np.std(null, ddof=1))
    assert t.p_value == pytest.approx((1 + 1) / 6)
    t2 = G.null_test(np.array([-1.0, 10.0]), null)
    np.testing.assert_allclose(t2.p_value, [1.0, 1 / 6])


def test_planted_concept_beats_nulls():
    g, pairs, u = _planted(seed=6, scale=2.0, noise=0.5)
    D = G.steering_vectors(g, pairs)
    obs = G.loo_projections(D).mean()
    null = G.random_pair_null(g, G.concept_direction(D), n=20000, seed=0)
    assert G.null_test(obs, null).z > 1.0
    shuf = G.shuffled_unembedding_null(g, pairs, n_shuffles=30, seed=0)
    assert shuf.shape == (30,)
    assert G.mean_loo_cosine(D) > shuf.max()
    both = G.shuffled_unembedding_null(g, [pairs, pairs[:5]], n_shuffles=4, seed=0)
    assert both.shape == (4, 2)


# ----------------------------------------------------------------------------------- intervals
def test_seed_interval_closed_form():
    iv = G.seed_interval([1.0, 2.0, 3.0, np.nan])
    t975_2 = 4.302652729749464  # Student-t 0.975 quantile with 2 d.o.f. (tables)
    assert iv.n == 3 and iv.mean == pytest.approx(2.0)
    assert iv.half_width == pytest.approx(t975_2 / np.sqrt(3), rel=1e-6)
    assert np.isnan(G.seed_interval([1.0]).low)


def test_bootstrap_interval_covers_and_is_deterministic():
    x = np.random.default_rng(8).normal(1.0, 1.0, size=400)
    a, b = G.bootstrap_interval(x, seed=3), G.bootstrap_interval(x, seed=3)
    assert a == b
    assert a.low < x.mean() < a.high
    # width ≈ 2 · 1.96 · σ/√n
    assert a.high - a.low == pytest.approx(2 * 1.96 * x.std() / 20, rel=0.15)


# --------------------------------------------------------------------------------------- probes
def test_probe_accuracy_separable_and_random():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((200, 5))
    assert G.probe_accuracy(x, x[:, 2] > 0) >= 0.95
    assert 0.3 < G.probe_accuracy(x, rng.random(200) > 0.5) < 0.7
    assert np.isnan(G.probe_accuracy(x, np.zeros(200)))


def test_threshold_probe_accuracy_counts_by_hand():
    from linrep.geometry import threshold_probe_accuracy

    y = np.array([0, 0, 0, 1, 1, 1])
    assert threshold_probe_accuracy(np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2]), y) == 1.0
    # the sign of the score does not matter: the class means decide which side is which
    assert threshold_probe_accuracy(-np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2]), y) == 1.0
    # midpoint of means 0.5 (class 0 mean 0.2, class 1 mean 0.8): one point on the wrong side
    s = np.array([0.0, 0.0, 0.6, 0.8, 0.8, 0.8])
    assert threshold_probe_accuracy(s, y) == pytest.approx(5 / 6)
