"""Learned log-odds are f·Δg + Δb when the model has a bias b(y): every metric keeps the Δb term."""

from __future__ import annotations

import numpy as np
import pytest

from linrep.geometry import metric_hook, simulation_metrics
from linrep.latent import LatentModel
from linrep.theory import check_log_odds_matching, epsilon_bound, excess_loss

P1 = [0.2, 0.7, 0.9]


@pytest.fixture(scope="module")
def fitted():
    """m = 3 independent concepts with non-uniform marginals, linear f, bias b(y), GD to a fit."""
    from linrep.learn import fit

    lat = LatentModel.from_config({"m": 3, "p1": P1})
    r = fit(
        lat,
        {"encoder": "linear", "d": 8, "unembedding_bias": True},
        {"optimizer": "gd", "lr": 1.0, "steps": 3000, "log_every": 3000},
        seeds=[0, 1],
        progress=False,
    )
    b = r.params()["b"].reshape(2, -1)
    return lat, r.embeddings(), r.unembeddings(), b, r


def _independent_log_odds_error(lat, f, g, b, i):
    """Max over (ξ with C_i = ⋄, consistent pair) of |f·Δg + Δb − α_i|, by explicit loops."""
    alpha = np.log(P1[i] / (1 - P1[i]))
    worst = 0.0
    for k in np.flatnonzero(lat.contexts[:, i] == -1):
        for y0, y1 in lat.counterfactual_pairs(i):
            if lat.p_next[k, y0] > 0 and lat.p_next[k, y1] > 0:
                worst = max(worst, abs(f[k] @ (g[y1] - g[y0]) + b[y1] - b[y0] - alpha))
    return worst


def test_a_fitted_model_with_bias_matches_the_log_odds(fitted):
    lat, f, g, b, res = fitted
    for k in range(2):
        m = simulation_metrics(lat, f[k], g[k], bias=b[k], probes=False)
        assert m["log_odds_matching_error"] < 0.01  # the done-when
        without = simulation_metrics(lat, f[k], g[k], probes=False)  # Δb dropped: another model
        assert without["log_odds_matching_error"] > 10 * m["log_odds_matching_error"]
        chk = check_log_odds_matching(lat, f[k], g[k], bias=b[k])
        for i in range(lat.m):
            assert chk["max_log_odds_error"][i] == pytest.approx(
                _independent_log_odds_error(lat, f[k], g[k], b[k], i), rel=1e-9
            )
        assert chk["excess_loss"] == pytest.approx(res.final[k]["excess_loss"], abs=1e-5)
        assert excess_loss(lat, f[k], g[k]) > chk["excess_loss"] + 1e-3  # without b: worse fit
    hook = metric_hook(lat)(f, g, b=b)
    assert np.all(hook["log_odds_matching_error"] < 0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_epsilon_bound_with_bias_is_a_theorem_for_any_model(seed):
    """(2ε + δ + |Δb − Δb'|)/σ̃ bounds the in-span distance for random f, g, b."""
    lat = LatentModel.from_config({"m": 4, "kind": "ising", "param_seed": seed})
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((lat.n_contexts, 3))
    g = rng.standard_normal((lat.n_tokens, 3))
    b = 3 * rng.standard_normal(lat.n_tokens)
    eb = epsilon_bound(lat, f, g, bias=b)
    assert eb["bound_holds"] and min(eb["full_rank_fraction"]) > 0
    # ε is computed with Δb: it differs from the bias-free ε of the same f, g
    assert eb["epsilon"] != epsilon_bound(lat, f, g)["epsilon"]


def test_epsilon_bound_with_bias_is_tight_when_the_log_odds_match_exactly():
    """m = 2: concept 0's only context with both pairs possible is the empty one, ξ_e. Make the
    learned log-odds f_e·Δg + Δb equal α exactly for both pairs while Δb ≠ Δb': then ε = δ = 0 and the
    in-span distance |f_eᵀ(Δg − Δg')|/‖f_e‖ = |Δb − Δb'|/‖f_e‖ equals the bound — ratio exactly 1."""
    lat = LatentModel.from_config({"m": 2, "p1": [0.3, 0.8]})
    rng = np.random.default_rng(3)
    f = rng.standard_normal((lat.n_contexts, 3))
    g = rng.standard_normal((4, 3))
    b = rng.standard_normal(4)
    e = int(np.flatnonzero((lat.contexts == -1).all(axis=1))[0])
    alpha = np.log(0.3 / 0.7)
    fe = f[e]
    f[lat.contexts[:, 0] == -1] = fe  # (⋄, 0) and (⋄, 1) see one pair each: give them f_e too
    for y0, y1 in [(0, 1), (2, 3)]:  # move g(y1) along f_e until the pair's log-odds equal α
        gap = fe @ (g[y1] - g[y0]) + b[y1] - b[y0] - alpha
        g[y1] -= gap * fe / (fe @ fe)
    eb = epsilon_bound(lat, f, g, bias=b)
    assert eb["epsilon"][0] == pytest.approx(0, abs=1e-12)
    want = abs((b[1] - b[0]) - (b[3] - b[2])) / np.linalg.norm(fe)
    assert eb["max_distance_in_span"][0] == pytest.approx(want, rel=1e-9)
    assert eb["median_bound"][0] == pytest.approx(want, rel=1e-9)
    assert eb["max_ratio"][0] == pytest.approx(1.0, rel=1e-9) and eb["bound_holds"]


def test_sweep_worker_measures_log_odds_with_the_bias():
    from linrep.sweep.worker import train_group

    cfg = {
        "latent": {"m": 3, "p1": P1},
        "model": {"encoder": "linear", "d": 8, "unembedding_bias": True},
        "train": {"optimizer": "gd", "lr": 1.0, "steps": 3000, "log_every": 3000},
    }
    runs = [{"run_id": f"r{s}", "seed": s, "config": cfg} for s in (0, 1)]
    out = train_group({"group_id": "g", "runs": runs, "geometry": True})
    assert out["ok"], out
    for row in out["rows"]:
        assert row["log_odds_matching_error"] < 0.01
        assert row["identifiable_rank"] == 2 * 3 + 1  # one-hot linear encoder: F = 2m + 1 < d
        assert "same_concept_cosine_identifiable" in row
