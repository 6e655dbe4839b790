"""Simulation metrics: planted linear models with known answers, brute-force loops, the hook."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from linrep.errors import InputError
from linrep.geometry import RandomInnerProduct, SimulationIndex, metric_hook, simulation_metrics
from linrep.latent import LatentModel

P1 = [0.3, 0.6, 0.8]


def _linear_model(latent, d, beta=3.0, seed=0):
    """g(y) = U s(y), s = 2c − 1; f(ξ) = U a(ξ) with a_i = α_i/2 if ⋄ else β s_i: exact log-odds."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((d, latent.m)))
    s = 2.0 * latent.tokens - 1
    alpha = np.log(np.array(P1) / (1 - np.array(P1)))
    ctx = latent.contexts
    a = np.where(ctx == -1, alpha / 2, beta * (2.0 * ctx - 1))
    return a @ U.T, s @ U.T


def test_planted_linear_model_has_perfect_geometry():
    lat = LatentModel.from_config({"m": 3, "p1": P1})
    f, g = _linear_model(lat, d=4)
    for inner in ("euclidean", "causal", "random"):
        r = simulation_metrics(lat, f, g, inner, probes=(inner == "euclidean"))
        assert r["same_concept_cosine"] == pytest.approx(1, abs=1e-9), inner
        if inner != "random":
            assert r["alignment_cosine"] == pytest.approx(1, abs=1e-9), inner
        else:  # f̄_i ∝ u_i, ḡ_i ∝ u_i: cos = uᵀu / (‖u M^{-1/2}‖ ‖u M^{1/2}‖) ≤ 1 (Cauchy–Schwarz)
            ip = RandomInnerProduct(seed=0).fit(4)
            U = g[[1, 2, 4]] - g[0]  # 2 u_i
            want = [
                1 / np.linalg.norm(u @ ip.inv_sqrt_) / np.linalg.norm(u @ ip.sqrt_) for u in U / 2
            ]
            np.testing.assert_allclose(r["alignment_cosine_per_concept"], want, atol=1e-9)
        assert len(r["same_concept_cosine_per_concept"]) == 3
        if inner != "random":  # U orthonormal: orthogonal under I and under Cov(g)^-1 ∝ I on span U
            assert r["cross_concept_abs_cosine"] == pytest.approx(0, abs=1e-9), inner
            assert r["cross_pair_abs_cosine"] == pytest.approx(0, abs=1e-9), inner
            assert r["direction_abs_cosine"] == pytest.approx(0, abs=1e-9), inner
            assert r["alignment_offdiag_abs_cosine"] == pytest.approx(0, abs=1e-9), inner
        else:
            assert r["cross_concept_abs_cosine"] > 1e-3  # a random M breaks orthogonality
        assert r["log_odds_matching_error"] == pytest.approx(0, abs=1e-9)
        assert r["log_odds_spread"] == pytest.approx(0, abs=1e-9)
        assert r["true_log_odds_spread"] == pytest.approx(0, abs=1e-9)
    assert r["learned_log_odds_mean_per_concept"] == pytest.approx(
        np.log(np.divide(P1, 1 - np.array(P1)))
    )
    r = simulation_metrics(lat, f, g, probes=True)
    assert r["probe_accuracy"] == pytest.approx(1.0)
    # a per-token bias b(y) = c · s_0(y) shifts concept 0's learned log-odds by 2c, the others not
    b = 0.7 * (2.0 * lat.tokens[:, 0] - 1)
    rb = simulation_metrics(lat, f, g, probes=False, bias=b)
    assert rb["log_odds_matching_error_per_concept"] == pytest.approx([1.4, 0, 0], abs=1e-9)


def _cos(a, b):
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def test_metrics_vs_brute_force_loops():
    lat = LatentModel.from_config({"m": 3, "kind": "ising", "param_seed": 2})
    rng = np.random.default_rng(1)
    d = 5
    f = rng.standard_normal((lat.n_contexts, d))
    g = rng.standard_normal((lat.n_tokens, d))
    r = simulation_metrics(lat, f, g, probes=False)
    ctx = [tuple(int(v) for v in row) for row in lat.contexts]
    where = {c: k for k, c in enumerate(ctx)}
    m = 3
    same, cross_all, align, err, spread = [], [], [], [], []
    steer = {}
    for i in range(m):
        # pairs written out by hand: tokens t with bit i clear, paired with t + 2^i
        pairs = [(t, t + 2**i) for t in range(2**m) if not (t >> i) & 1]
        D = [g[b] - g[a] for a, b in pairs]
        steer[i] = D
        same.append(
            np.mean([_cos(D[k], D[l]) for k, l in itertools.combinations(range(len(D)), 2)])
        )
        gbar = np.mean(D, axis=0)
        diffs = []
        for c in ctx:
            if c[i] == 0:
                c1 = c[:i] + (1,) + c[i + 1 :]
                if c1 in where:
                    diffs.append(f[where[c1]] - f[where[c]])
        align.append(_cos(np.mean(diffs, axis=0), gbar))
        e, lo = [], []
        for k, c in enumerate(ctx):
            if c[i] != -1:
                continue
            for a, b in pairs:
                if lat.p_next[k, a] > 0 and lat.p_next[k, b] > 0:
                    learned = f[k] @ (g[b] - g[a])
                    e.append(abs(learned - np.log(lat.p_next[k, b] / lat.p_next[k, a])))
                    lo.append(learned)
        err.append(np.mean(e))
        spread.append(np.std(lo))
    for i, j in itertools.combinations(range(m), 2):
        cross_all += [abs(_cos(a, b)) for a in steer[i] for b in steer[j]]
    dirs = [np.mean(steer[i], axis=0) for i in range(m)]
    cross_dir = [abs(_cos(dirs[i], dirs[j])) for i, j in itertools.combinations(range(m), 2)]
    np.testing.assert_allclose(r["same_concept_cosine_per_concept"], same, atol=1e-12)
    np.testing.assert_allclose(r["alignment_cosine_per_concept"], align, atol=1e-12)
    np.testing.assert_allclose(r["log_odds_matching_error_per_concept"], err, atol=1e-10)
    np.testing.assert_allclose(r["log_odds_spread_per_concept"], spread, atol=1e-10)
    assert r["cross_pair_abs_cosine"] == pytest.approx(np.mean(cross_all), abs=1e-12)
    assert r["cross_concept_abs_cosine"] == pytest.approx(np.mean(cross_dir), abs=1e-12)
    assert r["direction_abs_cosine"] == pytest.approx(np.mean(cross_dir), abs=1e-12)
    c01, c02, c12 = cross_dir
    assert r["cross_concept_abs_cosine_per_concept"] == pytest.approx(
        [(c01 + c02) / 2, (c01 + c12) / 2, (c02 + c12) / 2], abs=1e-12
    )
    assert r["same_concept_cosine"] == pytest.approx(np.mean(same))


def test_causal_with_small_vocabulary_is_a_simplex():
    """V ≤ d + 1: whitened tokens form a regular simplex, so disjoint pairs are exactly orthogonal."""
    lat = LatentModel.from_config({"m": 3})
    rng = np.random.default_rng(3)
    f, g = rng.standard_normal((lat.n_contexts, 16)), rng.standard_normal((lat.n_tokens, 16))
    r = simulation_metrics(lat, f, g, "causal", probes=False)
    assert r["same_concept_cosine"] == pytest.approx(0, abs=1e-8)
    assert simulation_metrics(lat, f, g, probes=False)["same_concept_cosine"] != pytest.approx(
        0, abs=1e-3
    )


def test_metric_hook_matches_single_model_metrics():
    lat = LatentModel.from_config({"m": 3, "p1": P1})
    rng = np.random.default_rng(4)
    K, d = 3, 6
    f = rng.standard_normal((K, lat.n_contexts, d))
    g = rng.standard_normal((K, lat.n_tokens, d))
    for inner in ("euclidean", "causal"):
        out = metric_hook(lat, inner, per_concept=True)(f, g)
        assert all(v.shape == (K,) for v in out.values())
        assert "same_concept_cosine/c1" in out and "log_odds_matching_error" in out
        for k in range(K):
            r = simulation_metrics(lat, f[k], g[k], inner, probes=False)
            keys = ("same_concept_cosine", "cross_concept_abs_cosine", "cross_pair_abs_cosine")
            for key in (*keys, "alignment_cosine", "log_odds_matching_error"):
                assert out[key][k] == pytest.approx(r[key], abs=1e-12)
            assert out["direction_abs_cosine"][k] == pytest.approx(r["direction_abs_cosine"])
    with pytest.raises(InputError, match="did you mean"):
        metric_hook(lat, "causl")
    with pytest.raises(InputError, match="latent model has"):
        metric_hook(lat)(f[:, :5], g)


def test_log_odds_subsample_is_a_fixed_subset():
    lat = LatentModel.from_config({"m": 4, "kind": "ising", "param_seed": 1})
    rng = np.random.default_rng(5)
    f, g = rng.standard_normal((lat.n_contexts, 4)), rng.standard_normal((lat.n_tokens, 4))
    full = SimulationIndex.from_latent(lat, max_log_odds_rows=None)
    sub = SimulationIndex.from_latent(lat, max_log_odds_rows=10, seed=3)
    assert [r.size for r in sub.unknown_rows] == [10] * 4 and sub.n_unknown_total == [27] * 4
    assert all(
        np.isin(s, a).all() for s, a in zip(sub.unknown_rows, full.unknown_rows, strict=True)
    )
    rf = simulation_metrics(full, f, g, probes=False)
    rs = simulation_metrics(sub, f, g, probes=False)
    assert rs["log_odds_contexts_used"] == [10] * 4 and rf["log_odds_contexts_used"] == [27] * 4
    # the max error over a subset can only be smaller; cosines do not depend on the subset
    assert all(
        a <= b + 1e-12
        for a, b in zip(
            rs["log_odds_max_error_per_concept"], rf["log_odds_max_error_per_concept"], strict=True
        )
    )
    assert rs["same_concept_cosine"] == rf["same_concept_cosine"]


def test_single_concept_gives_nan_not_errors():
    lat = LatentModel.from_config({"m": 1})
    rng = np.random.default_rng(6)
    r = simulation_metrics(
        lat, rng.standard_normal((lat.n_contexts, 3)), rng.standard_normal((2, 3))
    )
    assert np.isnan(r["same_concept_cosine"]) and np.isnan(r["cross_concept_abs_cosine"])
    assert np.isnan(r["cross_pair_abs_cosine"]) and np.isfinite(r["log_odds_matching_error"])


def _brute_same_concept(g, lat) -> float:
    """Mean over concepts of the mean pairwise cosine of Δg, by explicit loops."""
    out = []
    for i in range(lat.m):
        D = [g[y1] - g[y0] for y0, y1 in lat.counterfactual_pairs(i)]
        out.append(np.mean([_cos(a, b) for a, b in itertools.permutations(D, 2)]))
    return float(np.mean(out))


def test_identifiable_twins_project_g_on_span_f_and_f_on_span_of_g_differences():
    """Independent re-implementation: P_F from numpy's SVD of f, Q_G from the SVD of centred g."""
    lat = LatentModel.from_config({"m": 3, "p1": P1})
    f0, g0 = _linear_model(lat, d=4)
    rng = np.random.default_rng(5)
    d = 12  # embed in ℝ^12, then pollute g (and f) with noise the logits cannot see
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    f = np.concatenate([f0, np.zeros((f0.shape[0], d - 4))], axis=1) @ Q.T
    g = np.concatenate([g0, np.zeros((g0.shape[0], d - 4))], axis=1) @ Q.T
    null_f = Q[:, 4:]  # orthogonal to every f(ξ)
    g_noisy = g + rng.standard_normal((g.shape[0], d - 4)) @ null_f.T
    np.testing.assert_allclose(f @ g_noisy.T, f @ g.T, atol=1e-12)  # the logits cannot tell
    r = simulation_metrics(lat, f, g_noisy, probes=False)
    assert r["identifiable_rank"] == 3 and r["d"] == d  # F = rank f = m here
    assert r["same_concept_cosine"] < 0.6  # raw: the invisible noise dominates
    assert r["same_concept_cosine_identifiable"] == pytest.approx(1, abs=1e-9)
    assert r["cross_concept_abs_cosine_identifiable"] == pytest.approx(0, abs=1e-9)
    assert r["log_odds_matching_error"] == pytest.approx(0, abs=1e-9)  # invariant
    # against an explicit projection with numpy's SVD, on a random (non-planted) model
    fr, gr = rng.standard_normal((lat.n_contexts, 3)) @ rng.standard_normal((3, d)), g_noisy
    _, s, vt = np.linalg.svd(fr)
    Vf = vt[: int((s > 1e-5 * s[0]).sum())]
    gc = gr - gr.mean(0)
    _, s, vt = np.linalg.svd(gc)
    Vg = vt[: int((s > 1e-5 * s[0]).sum())]
    gp, fp = gr @ Vf.T @ Vf, fr @ Vg.T @ Vg
    rr = simulation_metrics(lat, fr, gr, probes=False)
    assert rr["same_concept_cosine_identifiable"] == pytest.approx(_brute_same_concept(gp, lat))
    ref = simulation_metrics(lat, fp, gp, probes=False)  # raw metrics of explicitly projected f, g
    for key in ("cross_concept_abs_cosine", "cross_pair_abs_cosine", "alignment_cosine"):
        assert rr[key + "_identifiable"] == pytest.approx(ref[key], abs=1e-9), key


def test_hook_reports_identifiable_twins_and_rank():
    lat = LatentModel.from_config({"m": 3, "p1": P1})
    f, g = _linear_model(lat, d=4)
    rng = np.random.default_rng(0)
    F = np.stack([f, f @ rng.standard_normal((4, 4))])
    G = np.stack([g, g + rng.standard_normal(g.shape)])
    out = metric_hook(lat)(F, G)
    for k in range(2):
        one = simulation_metrics(lat, F[k], G[k], probes=False)
        for key in ("same_concept_cosine_identifiable", "cross_pair_abs_cosine_identifiable"):
            assert out[key][k] == pytest.approx(one[key], abs=1e-12), key
        assert out["identifiable_rank"][k] == one["identifiable_rank"]
