"""Executable theory: log-odds-matching construction, ε-bound, max-margin directions."""

from __future__ import annotations

import numpy as np
import pytest

from linrep.errors import ConfigError
from linrep.latent import LatentModel
from linrep.theory import (
    check_log_odds_matching,
    epsilon_bound,
    log_odds_construction,
    max_margin_alignment,
    max_margin_direction,
    max_margin_hook,
)

P1 = [0.2, 0.35, 0.7, 0.9]


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------ log-odds construction
def test_construction_matches_distribution_and_has_identical_steering_vectors():
    lat = LatentModel.from_config({"m": 4, "p1": P1})
    mm = log_odds_construction(lat, d=7, beta=20.0, seed=3)
    # independent check of the construction: its softmax is the true conditional table
    np.testing.assert_allclose(_softmax(mm.f @ mm.g.T), lat.p_next, atol=1e-12)
    np.testing.assert_allclose(mm.alpha, np.log(np.divide(P1, np.subtract(1, P1))), atol=1e-12)
    r = check_log_odds_matching(lat, mm.f, mm.g)
    assert max(r["max_log_odds_error"]) < 1e-10
    assert max(r["relative_steering_distance"]) < 1e-10
    # each steering vector is 2 e_i A by hand
    for i in range(4):
        t = np.arange(16)[((np.arange(16) >> i) & 1) == 0]
        D = mm.g[t + 2**i] - mm.g[t]
        np.testing.assert_allclose(D, np.broadcast_to(2 * mm.mixing[i], D.shape), atol=1e-10)
    assert r["rank_all_contexts"] == 7 and r["spans"]
    assert abs(r["excess_loss"]) < 1e-12
    eb = epsilon_bound(lat, mm.f, mm.g)
    assert eb["bound_holds"] and max(eb["max_distance"]) < 1e-10


def test_construction_rank_deficient_when_alpha_is_zero_and_rejects_coupled_concepts():
    lat = LatentModel.from_config({"m": 3, "p1": [0.5, 0.3, 0.6]})
    r = check_log_odds_matching(lat, *_fg(log_odds_construction(lat, d=5)))
    assert r["rank_unknown_contexts"][0] == 4 and not r["spans"]  # α_0 = 0 ⇒ F Δg = 0
    with pytest.raises(ConfigError, match="regime"):
        log_odds_construction(LatentModel.from_config({"m": 3, "kind": "ising"}))
    with pytest.raises(ConfigError, match="d ≥ m"):
        log_odds_construction(lat, d=2)


def _fg(mm):
    return mm.f, mm.g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epsilon_bound_holds_on_arbitrary_models(seed):
    """The bound is a theorem: it must hold for any f, g (here random, some with rank F_X = d)."""
    lat = LatentModel.from_config({"m": 4, "kind": "ising", "param_seed": seed})
    rng = np.random.default_rng(seed)
    d = 3
    f = rng.standard_normal((lat.n_contexts, d))
    g = rng.standard_normal((lat.n_tokens, d))
    eb = epsilon_bound(lat, f, g)
    assert eb["bound_holds"]
    assert min(eb["full_rank_fraction"]) > 0
    assert all(x <= 1 + 1e-9 for x in eb["max_ratio"])
    assert max(eb["delta_max"]) > 0  # coupled concepts: true log-odds differ between pairs


def test_epsilon_bound_by_hand_m2():
    """m = 2: the pairs of concept 0 are (0,1) and (2,3); X = {the empty context} only."""
    lat = LatentModel.from_config({"m": 2, "p1": [0.3, 0.8]})
    rng = np.random.default_rng(7)
    f = rng.standard_normal((lat.n_contexts, 3))
    g = rng.standard_normal((4, 3))
    eb = epsilon_bound(lat, f, g)
    ctx = lat.contexts
    empty = int(np.flatnonzero((ctx == -1).all(axis=1))[0])
    alpha = np.log(0.3 / 0.7)
    eps = 0.0
    for k in np.flatnonzero(ctx[:, 0] == -1):
        for a, b in [(0, 1), (2, 3)]:
            if lat.p_next[k, a] > 0 and lat.p_next[k, b] > 0:
                eps = max(eps, abs(f[k] @ (g[b] - g[a]) - alpha))
    v = (g[1] - g[0]) - (g[3] - g[2])
    fe = f[empty]
    assert eb["epsilon"][0] == pytest.approx(eps, rel=1e-10)
    assert eb["n_comparisons"][0] == 1
    assert eb["max_distance_in_span"][0] == pytest.approx(abs(fe @ v) / np.linalg.norm(fe))
    assert eb["median_bound"][0] == pytest.approx(2 * eps / np.linalg.norm(fe), rel=1e-10)
    assert eb["max_distance"][0] == pytest.approx(np.linalg.norm(v))


# ------------------------------------------------------------------------------------ max margin
def test_max_margin_known_solutions():
    # constraints w1 ≥ 1, w2 ≥ 1 → w = (1, 1); the point (3, 3) is inactive
    sol = max_margin_direction(np.array([[1.0, 0], [0, -1], [3, 3]]), np.array([1, -1, 1]))
    assert sol.separable and sol.n_support == 2
    np.testing.assert_allclose(sol.w, [1, 1], atol=1e-10)
    assert sol.margin == pytest.approx(1 / np.sqrt(2))
    # adding 3 w1 − 3 w2 ≥ 1 moves the optimum to (4/3, 1) (KKT by hand)
    sol = max_margin_direction(np.array([[1.0, 0], [0, -1], [3, -3]]), np.array([1, 0, 1]))
    np.testing.assert_allclose(sol.w, [4 / 3, 1], atol=1e-10)
    # x and −x with the same label: not separable through the origin
    bad = max_margin_direction(np.array([[1.0, 2], [-1, -2], [0, 1]]), np.array([1, 1, -1]))
    assert not bad.separable and np.isnan(bad.w).all()


def test_max_margin_vs_sklearn_linear_svc():
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(11)
    x = rng.standard_normal((60, 6))
    w0 = rng.standard_normal(6)
    y = np.sign(x @ w0)
    x += 0.3 * y[:, None] * w0 / np.linalg.norm(w0)  # widen the margin
    sol = max_margin_direction(x, y)
    svc = LinearSVC(fit_intercept=False, loss="hinge", C=1e4, max_iter=200000, tol=1e-8)
    svc.fit(x, y)
    w_svc = svc.coef_.ravel()
    assert sol.separable
    assert sol.direction @ w_svc / np.linalg.norm(w_svc) > 0.999
    assert sol.min_functional_margin == pytest.approx(1, abs=1e-8)


def test_max_margin_alignment_planted_and_hook():
    """f(ξ) = Σ_j (2ξ_j − 1) e_j on known concepts: reflections of the other coordinates map the data
    to itself, so w_i ∝ e_i; with g(y) = 2c(y) − 1 every steering vector is 2 e_i: cosine 1."""
    lat = LatentModel.from_config({"m": 3})
    ctx = lat.contexts.astype(float)
    f = np.where(ctx == -1, 0.0, 2 * ctx - 1)
    g = 2.0 * lat.tokens - 1
    r = max_margin_alignment(lat, f, g)
    np.testing.assert_allclose(r["direction_cosine"], 1, atol=1e-9)
    np.testing.assert_allclose(r["steering_cosine"], 1, atol=1e-9)
    assert r["separable_fraction"] == 1
    rng = np.random.default_rng(0)
    fK = np.stack([f, f + 0.01 * rng.standard_normal(f.shape)])
    gK = np.stack([g, rng.standard_normal(g.shape)])
    out = max_margin_hook(lat, per_concept=True)(fK, gK)
    assert all(v.shape == (2,) for v in out.values())
    assert out["svm_direction_cosine"][0] == pytest.approx(1)
    assert abs(out["svm_direction_cosine"][1]) < 0.999
    assert "svm_direction_cosine/c2" in out
