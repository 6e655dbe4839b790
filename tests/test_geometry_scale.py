"""Streaming concept geometry (linrep.geometry.scale) against the dense metrics and brute force.

At small m every pair can be enumerated: the exact streaming statistics must equal the dense
:func:`linrep.geometry.simulation_metrics` (itself tested against brute force) and an explicit
P × P cosine matrix written here; the sampled estimates must cover the dense values within a few
standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from linrep.geometry import simulation_metrics
from linrep.geometry.scale import scale_geometry
from linrep.latent import LatentModel
from linrep.learn import fit


@pytest.fixture(scope="module")
def trained():
    lat = LatentModel.from_config({"m": 5, "p1": [0.3, 0.5, 0.6, 0.5, 0.8]})
    res = fit(
        lat,
        {"encoder": "mlp", "d": 4, "width": 16},  # d < m: the identifiable rank is < d somewhere
        {"steps": 300, "lr": 1.0},
        seeds=[0, 1],
        progress=False,
    )
    return lat, res


def test_exact_statistics_equal_dense_metrics(trained):
    lat, res = trained
    f, g = res.embeddings(), res.unembeddings()
    geo = scale_geometry(lat, f, g, embed=res.embed_contexts, n_cross=20_000, n_align=4000)
    for k in range(2):
        dense = simulation_metrics(lat, f[k], g[k], probes=False, log_odds=False)
        for key in ("same_concept_cosine", "cross_concept_abs_cosine"):
            for suffix in ("", "_identifiable"):
                np.testing.assert_allclose(
                    geo.values[key + suffix][k], dense[f"{key}{suffix}_per_concept"], rtol=1e-9
                )
        np.testing.assert_allclose(
            geo.matrices["direction_cosine_matrix"][k], dense["direction_cosine_matrix"], atol=1e-12
        )
        assert geo.rank[k] == dense["identifiable_rank"]
        # m(m−1)P² = 5·4·16² = 5120 ≤ n_cross ordered pairs: every pair is used, no sampling error
        for suffix in ("", "_identifiable"):
            key = "cross_pair_abs_cosine" + suffix
            assert geo.sampled[key][k] == pytest.approx(dense[key], rel=1e-9)
            assert geo.standard_errors[key][k] == 0.0
    assert geo.cross_exact and geo.n_cross == 5 * 4 * 16**2
    assert "cross-pair |cos| exact" in geo.to_json(intervals=False)["method"]


def test_same_concept_equals_explicit_pair_matrix(trained):
    """Mean over k ≠ l of cos(Δg_k, Δg_l), with the full P × P matrix written out."""
    lat, res = trained
    g = res.unembeddings()
    geo = scale_geometry(lat, res.embeddings(), g, n_cross=10)
    for i in range(lat.m):
        p = lat.counterfactual_pairs(i)
        D = g[1][p[:, 1]] - g[1][p[:, 0]]
        U = D / np.linalg.norm(D, axis=1, keepdims=True)
        C = U @ U.T
        P = len(p)
        ref = (C.sum() - np.trace(C)) / (P * (P - 1))
        assert geo.values["same_concept_cosine"][1, i] == pytest.approx(ref, rel=1e-10)


def test_sampled_estimates_cover_dense_values(trained):
    lat, res = trained
    f, g = res.embeddings(), res.unembeddings()
    # n_cross < the 5120 ordered cross pairs: sampled, with standard errors
    geo = scale_geometry(lat, f, g, embed=res.embed_contexts, n_cross=4000, n_align=3000, seed=1)
    assert not geo.cross_exact
    for k in range(2):
        dense = simulation_metrics(lat, f[k], g[k], probes=False, log_odds=False)
        for suffix in ("", "_identifiable"):
            key = "cross_pair_abs_cosine" + suffix
            se = geo.standard_errors[key][k]
            assert 0 < se and abs(geo.sampled[key][k] - dense[key]) < 4 * se
            key = "alignment_cosine" + suffix
            est, se = geo.values[key][k], geo.standard_errors[key][k]
            ref = np.asarray(dense[f"{key}_per_concept"])
            assert np.all(np.abs(est - ref) < 4 * se + 1e-9), (key, est, ref, se)


def test_linear_encoder_alignment_is_exact():
    """f(ξ') − f(ξ) = W_{C_i=1} − W_{C_i=0} for the linear encoder: no sampling error."""
    lat = LatentModel.from_config({"m": 4})
    res = fit(lat, {"encoder": "linear", "d": 8}, {"steps": 200}, seeds=[0], progress=False)
    f, g = res.embeddings(), res.unembeddings()
    geo = scale_geometry(lat, f, g, embed=res.embed_contexts, n_align=50)
    dense = simulation_metrics(lat, f[0], g[0], probes=False, log_odds=False)
    np.testing.assert_allclose(
        geo.values["alignment_cosine"][0], dense["alignment_cosine_per_concept"], rtol=1e-10
    )


def test_to_json_has_intervals_and_method(trained):
    lat, res = trained
    js = scale_geometry(lat, res.embeddings(), res.unembeddings(), n_cross=100).to_json()
    s = js["same_concept_cosine"]
    assert len(s["per_run"]) == 2 and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    assert "exact over all pairs" in js["method"] and js["n_pairs_per_concept"] == 16
