"""Test statistics that respect shared words, and the nulls of concept-direction summaries.

Expected values come from hand computations, brute-force loops written here, exact enumeration of
small permutation distributions, closed-form variances, and simulations with a planted truth (or a
planted null) and fixed seeds.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import linrep.geometry as G
from linrep.errors import InputError
from linrep.geometry.stats import _shared_out_mean, _sign_flip_terms


# ------------------------------------------------------------------------------------------ Holm
def test_holm_hand_example():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 → 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06, 0.04
    # running maximum → 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(G.holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])


def _holm_rejections(p, alpha):
    """Holm's step-down procedure as written in Holm (1979): stop at the first non-rejection."""
    order = np.argsort(p)
    m = len(p)
    rejected = np.zeros(m, dtype=bool)
    for i, j in enumerate(order):
        if p[j] > alpha / (m - i):
            break
        rejected[j] = True
    return rejected


def test_holm_equals_the_step_down_procedure_at_every_level():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.random(8) ** 3
        adj = G.holm(p)
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.3):
            np.testing.assert_array_equal(adj <= alpha, _holm_rejections(p, alpha))


# ------------------------------------------------------------------------------- word clusters
def test_word_clusters_hand_example():
    pairs = np.array([[1, 2], [3, 4], [2, 5], [6, 7], [5, 8], [9, 4]])
    np.testing.assert_array_equal(G.word_clusters(pairs), [0, 1, 0, 2, 0, 1])


def _union_find_clusters(pairs):
    parent = list(range(len(pairs)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(pairs)), 2):
        if set(pairs[i]) & set(pairs[j]):
            parent[root(i)] = root(j)
    return [root(i) for i in range(len(pairs))]


def test_word_clusters_match_union_find():
    rng = np.random.default_rng(1)
    for _ in range(20):
        pairs = rng.integers(0, 25, size=(15, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        got = G.word_clusters(pairs)
        ref = _union_find_clusters(pairs.tolist())
        same_got = got[:, None] == got[None, :]
        same_ref = np.array(ref)[:, None] == np.array(ref)[None, :]
        np.testing.assert_array_equal(same_got, same_ref)


# ---------------------------------------------------------------------- shared-out directions
def test_shared_out_directions_brute_force():
    rng = np.random.default_rng(2)
    est = np.array([[0, 1], [0, 2], [3, 4], [5, 6], [6, 7], [8, 9]])
    ev = np.array([[0, 1], [7, 10], [11, 12], [2, 4]])
    D = rng.standard_normal((len(est), 5))
    got = G.shared_out_directions(D, est, ev)
    for l, (a, b) in enumerate(ev):
        keep = [k for k, (c, e) in enumerate(est) if not {a, b} & {c, e}]
        s = D[keep].sum(axis=0)
        np.testing.assert_allclose(got[l], s / np.linalg.norm(s), atol=1e-12)


def test_shared_out_equals_loo_without_shared_words_and_nan_when_nothing_is_left():
    rng = np.random.default_rng(3)
    pairs = np.arange(20).reshape(10, 2)
    D = rng.standard_normal((10, 7))
    np.testing.assert_allclose(G.shared_out_projections(D, pairs), G.loo_projections(D), atol=1e-12)
    star = np.array([[0, 1], [0, 2], [0, 3]])  # every pair shares word 0
    assert np.isnan(G.shared_out_projections(rng.standard_normal((3, 4)), star)).all()


def test_cross_fit_folds_partition_and_word_disjointness():
    rng = np.random.default_rng(4)
    est = rng.integers(0, 60, size=(80, 2))
    est = est[est[:, 0] != est[:, 1]]
    ev = np.concatenate([est[:30], est[:5], rng.integers(60, 90, size=(10, 2))])  # repeats too
    folds = G.cross_fit_folds(ev, est, n_folds=4, seed=0)
    assert len(folds) == 4
    idx = np.sort(np.concatenate([f.eval_idx for f in folds]))
    np.testing.assert_array_equal(idx, np.arange(len(ev)))
    for f in folds:
        banned = set(ev[f.eval_idx].ravel().tolist())
        assert not banned & set(est[f.est_idx].ravel().tolist())
        # every estimation pair that avoids the fold's words is used
        n_ok = sum(not banned & set(p.tolist()) for p in est)
        assert len(f.est_idx) == n_ok
    # evaluated items sharing a word sit in one fold
    fold_of = np.empty(len(ev), dtype=int)
    for i, f in enumerate(folds):
        fold_of[f.eval_idx] = i
    cl = G.word_clusters(ev)
    for c in np.unique(cl):
        assert len(set(fold_of[cl == c])) == 1
    with pytest.raises(InputError):
        G.cross_fit_folds(ev, est, n_folds=1)


# ------------------------------------------------------------------------- cluster bootstrap
def test_cluster_bootstrap_with_singletons_is_the_ordinary_bootstrap_of_the_mean():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(400)
    ci = G.cluster_bootstrap_interval(x, np.arange(400), n_boot=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(400)  # normal-theory half width of the mean
    assert ci.half_width == pytest.approx(half, rel=0.1)
    assert ci.mean == pytest.approx(x.mean()) and ci.n == 400 and ci.method == "cluster bootstrap"


def test_cluster_bootstrap_covers_under_cluster_dependence_where_the_pair_bootstrap_fails():
    """Planted truth: 30 clusters of 10 values with a shared cluster effect (sd 1) and noise (sd 0.3),
    true mean 0. The cluster bootstrap keeps ≈ 95 % coverage; resampling single values ignores the
    dependence and covers far less."""
    rng = np.random.default_rng(6)
    lab = np.repeat(np.arange(30), 10)
    cover_c = cover_i = 0
    reps = 200
    for r in range(reps):
        x = rng.standard_normal(30)[lab] + 0.3 * rng.standard_normal(300)
        c = G.cluster_bootstrap_interval(x, lab, n_boot=500, seed=r)
        i = G.bootstrap_interval(x, n_boot=500, seed=r)
        cover_c += c.low <= 0 <= c.high
        cover_i += i.low <= 0 <= i.high
    assert cover_c / reps > 0.87
    assert cover_i / reps < 0.6


def test_cluster_bootstrap_bad_input():
    with pytest.raises(InputError, match="cluster labels"):
        G.cluster_bootstrap_interval([1.0, 2.0], [0])
    one = G.cluster_bootstrap_interval([1.0, 3.0], [7, 7])
    assert one.mean == 2.0 and np.isnan(one.low) and one.n == 1


# -------------------------------------------------------------------------- sign-flip LOO test
def _shared_words_concept(rng, n_base=12, fan=3, d=8, V=200, planted=0.0):
    """Pairs (a, b_1..b_fan) sharing their base word a; token vectors i.i.d. N(0, I) (+ planted u)."""
    g = rng.standard_normal((V, d))
    u = np.eye(d)[0]
    base = np.arange(n_base)
    pairs = np.array([[a, n_base + fan * a + j] for a in base for j in range(fan)])
    g[pairs[:, 1]] += planted * u
    return g, pairs


def test_sign_flip_gram_formula_equals_recomputing_with_flipped_pairs():
    rng = np.random.default_rng(7)
    g, pairs = _shared_words_concept(rng)
    pairs = np.concatenate([pairs, [[150, 151], [152, 153]]])  # two singleton clusters too
    D = G.steering_vectors(g, pairs)
    cl = G.word_clusters(pairs)
    terms = _sign_flip_terms(D, pairs)
    for _ in range(5):
        sigma = rng.choice([-1.0, 1.0], size=cl.max() + 1)
        s = sigma[cl]
        brute = np.nanmean(G.shared_out_projections(s[:, None] * D, pairs))
        assert _shared_out_mean(*terms, s[:, None])[0] == pytest.approx(brute, abs=1e-12)
    t = G.loo_sign_flip_test(D, pairs, n_perm=200, seed=0)
    assert float(t.observed) == pytest.approx(np.nanmean(G.shared_out_projections(D, pairs)))


def test_sign_flip_test_is_calibrated_under_a_planted_null_with_shared_words():
    """No common direction, every base word shared by 3 pairs: p-values are uniform, and the plain
    LOO projection (which keeps the shared word's partners) is biased upward."""
    rng = np.random.default_rng(8)
    ps, plain = [], []
    for r in range(150):
        g, pairs = _shared_words_concept(rng)
        D = G.steering_vectors(g, pairs)
        ps.append(float(G.loo_sign_flip_test(D, pairs, n_perm=199, seed=r).p_value))
        plain.append(G.loo_projections(D).mean())
    ps = np.array(ps)
    from scipy import stats

    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.04 < (ps <= 0.1).mean() < 0.18
    plain = np.array(plain)
    assert plain.mean() > 4 * plain.std(ddof=1) / np.sqrt(plain.size)  # shared words leak in


def test_sign_flip_test_detects_a_planted_direction():
    """12 word clusters allow only 2¹² flips, so z is bounded; 60 clusters a larger one."""
    rng = np.random.default_rng(9)
    for n_base, z_min in ((12, 2.5), (60, 4.5)):
        g, pairs = _shared_words_concept(rng, n_base=n_base, V=400, planted=1.5)
        t = G.loo_sign_flip_test(G.steering_vectors(g, pairs), pairs, n_perm=500, seed=0)
        assert float(t.p_value) == pytest.approx(1 / 501) and float(t.z) > z_min


# --------------------------------------------------------------------- label-permutation null
def test_label_permutation_null_matches_exact_enumeration():
    rng = np.random.default_rng(10)
    F = rng.standard_normal((6, 4))
    y = np.array([0, 1, 0, 1, 1, 0])
    u = rng.standard_normal(4)
    exact = []
    for sub in itertools.combinations(range(6), 3):
        lab = np.zeros(6, dtype=int)
        lab[list(sub)] = 1
        diff = F[lab == 1].mean(0) - F[lab == 0].mean(0)
        exact.append(diff @ u / np.linalg.norm(diff) / np.linalg.norm(u))
    exact = np.round(exact, 10)
    null = np.round(G.label_permutation_null(F, y, u, n_perm=20000, seed=0), 10)
    values, counts = np.unique(null, return_counts=True)
    assert set(values) <= set(exact)
    np.testing.assert_allclose(counts / null.size, 1 / 20, atol=0.012)
    assert G.mean_difference_direction(F, y) @ u / np.linalg.norm(u) == pytest.approx(
        exact[list(itertools.combinations(range(6), 3)).index((1, 3, 4))], abs=1e-9
    )


def test_label_permutation_null_planted_alignment_and_shapes():
    rng = np.random.default_rng(11)
    n, d = 60, 30
    u = np.eye(d)[0]
    y = np.repeat([0, 1], n // 2)
    F = rng.standard_normal((n, d)) + 1.5 * y[:, None] * u
    obs = G.mean_difference_direction(F, y) @ u
    null = G.label_permutation_null(F, y, np.stack([u, -u]), n_perm=999, seed=1)
    assert null.shape == (999, 2)
    np.testing.assert_allclose(null[:, 0], -null[:, 1])
    assert G.null_test(obs, null[:, 0]).p_value == pytest.approx(1 / 1000)
    with pytest.raises(InputError, match="both sides"):
        G.label_permutation_null(F, np.ones(n), u)


# ---------------------------------------------------------------- random word-pair directions
def test_random_pair_means_uniform_distinct_pairs_in_candidate_rows():
    V = 5
    g = np.eye(V)  # the mean steering vector of one pair is e_b − e_a: it names the pair
    rows = np.array([1, 2, 4])
    m = G.random_pair_means(g, [1], n_draws=6000, seed=0, rows=rows)[:, 0]  # (B, V)
    a, b = m.argmin(axis=1), m.argmax(axis=1)
    assert np.all(a != b) and set(a) | set(b) <= set(rows.tolist())
    codes, counts = np.unique(a * V + b, return_counts=True)
    assert codes.size == 6  # all ordered pairs of 3 rows
    np.testing.assert_allclose(counts / 6000, 1 / 6, atol=0.02)


def test_random_pair_means_variance_closed_form():
    """Column 0 of g is the row index: the mean of P differences b − a of distinct uniform rows has
    variance 2σ²R/(R−1)/P, σ² the population variance of the R candidate values."""
    R, P = 40, 7
    g = np.zeros((R, 3))
    g[:, 0] = np.arange(R)
    m = G.random_pair_means(g, [P, 1], n_draws=20000, seed=3)
    sigma2 = np.var(np.arange(R))
    assert m[:, 0, 0].var() == pytest.approx(2 * sigma2 * R / (R - 1) / P, rel=0.05)
    assert abs(m[:, 0, 0].mean()) < 4 * np.sqrt(2 * sigma2 / P / 20000)
    np.testing.assert_array_equal(m[:, :, 1:], 0)


def test_relabelled_pair_means_keep_shared_words_shared():
    V = 30
    g = np.eye(V)
    pairs = [np.array([[0, 1], [0, 2]]), np.array([[3, 0]])]  # word 0 in both concepts
    rows = np.arange(10, 30)
    m = G.relabelled_pair_means(g, pairs, n_draws=3000, seed=0, rows=rows)
    first, second = m[:, 0], m[:, 1]
    # concept 1: (e_π1 + e_π2 − 2 e_π0)/2 ; concept 2: e_π0 − e_π3
    np.testing.assert_array_equal(first.argmin(axis=1), second.argmax(axis=1))
    np.testing.assert_allclose(first.min(axis=1), -1.0)
    assert ((first == 0.5).sum(axis=1) == 2).all() and (second.min(axis=1) == -1).all()
    assert set(first.argmin(axis=1)) <= set(rows.tolist())
    _, counts = np.unique(first.argmin(axis=1), return_counts=True)
    np.testing.assert_allclose(counts / 3000, 1 / 20, atol=0.015)  # π(0) uniform over rows


def test_random_inner_product_directions_have_the_cosine_law_of_random_inner_products():
    """The O(d r²) frame construction gives the same distribution of cosines as the full
    RandomInnerProduct (Haar Q, log-normal spectrum) applied to the same vectors."""
    rng = np.random.default_rng(12)
    v = rng.standard_normal((3, 6)) + np.array([1.0, 0, 0, 0, 0, 0])
    fast = G.random_inner_product_directions(v, n_draws=3000, seed=5)
    assert fast.shape == (3000, 3, 6)
    iu = np.triu_indices(3, 1)
    c_fast = G.cosine_matrix(fast)[:, iu[0], iu[1]]  # (R, 3)
    c_ref = np.array(
        [
            G.cosine_matrix(G.RandomInnerProduct(seed=s).fit(6).transform_vectors(v))[iu]
            for s in range(3000)
        ]
    )
    from scipy import stats

    for j in range(3):
        assert stats.ks_2samp(c_fast[:, j], c_ref[:, j]).pvalue > 0.001
        assert c_fast[:, j].mean() == pytest.approx(c_ref[:, j].mean(), abs=0.03)
    assert c_fast.std(axis=0).min() > 0.05  # the draws differ


# ------------------------------------------------------------------------------ cosine summary
def test_cosine_summary_hand_example_and_batching():
    e1, e2 = np.eye(3)[:2]
    D = np.stack([e1, e2, (e1 + e2) / np.sqrt(2), 2 * e1])
    groups = ["a", "a", "b", "b"]
    s = G.cosine_summary(D, groups, reference=e1)
    c = 1 / np.sqrt(2)
    # |C| off-diagonal: (1,2)=0, (1,3)=c, (1,4)=1, (2,3)=c, (2,4)=0, (3,4)=c
    assert float(s.mean_abs_offdiag) == pytest.approx((0 + c + 1 + c + 0 + c) / 6)
    assert float(s.within_abs) == pytest.approx((0 + c) / 2)
    assert float(s.between_abs) == pytest.approx((c + 1 + c + 0) / 4)
    np.testing.assert_allclose(s.reference_cos, [1, 0, c, 1])
    # e1 removed: rows 0, e2, e2, 0 → only the (2, 3) cosine is nonzero (= 1)
    assert float(s.mean_abs_offdiag_reference_removed) == pytest.approx(1 / 6)
    rng = np.random.default_rng(13)
    B = rng.standard_normal((5, 4, 3))
    batch = G.cosine_summary(B, groups, reference=e2)
    for b in range(5):
        one = G.cosine_summary(B[b], groups, reference=e2)
        assert batch.mean_abs_offdiag[b] == pytest.approx(float(one.mean_abs_offdiag))
        assert batch.ratio[b] == pytest.approx(float(one.ratio))
        np.testing.assert_allclose(batch.reference_cos[b], one.reference_cos)
    assert np.isnan(G.cosine_summary(D, groups).mean_abs_reference_cos)


def test_null_test_quantiles_and_lower_tail():
    null = np.arange(101, dtype=float)  # 0..100
    t = G.null_test(10.0, null)
    assert float(t.q50) == 50 and float(t.q95) == 95 and float(t.q025) == 2.5
    assert float(t.p_value_less) == pytest.approx(12 / 102)
    assert float(t.p_value) == pytest.approx(92 / 102)
