"""Table-free sampling (linrep.latent.sampling) against the exact next-token table, by χ².

Every path of the sampler (bitwise for independent concepts, exact enumeration, rejection from
p(c), the enumeration fallback) is forced in turn and its draws are compared with
N · w(ξ) · p(y | ξ) from the exact table (itself checked against brute force in test_latent.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from linrep.latent import LatentConfig, LatentModel
from linrep.latent.sampling import ConceptSampler, sample_pairs

N = 120_000

FAMILIES = {
    "independent": {"m": 4, "p1": [0.2, 0.5, 0.7, 0.9], "synonyms": [0.7, 0.3]},
    "ising": {"m": 4, "kind": "ising", "param_seed": 3},
    "bayesnet": {
        "m": 4,
        "kind": "bayesnet",
        "parents": [[], [0], [0, 1], [2]],
        "cpt": [[0.3], [0.2, 0.8], [0.1, 0.5, 0.6, 0.95], [0.25, 0.75]],
    },
    "table": {"m": 3, "kind": "table", "table": [0.1, 0.0, 0.2, 0.05, 0.15, 0.1, 0.3, 0.1]},
}


def _chi2_pvalue(latent: LatentModel, ctx: np.ndarray, tok: np.ndarray) -> float:
    """Pearson χ² of the (context, token) counts against N·w(ξ)·p(y|ξ), cells with E ≥ 5."""
    n, V = latent.p_next.shape
    observed = np.bincount(ctx * V + tok, minlength=n * V).astype(float)
    expected = ctx.size * (latent.weights[:, None] * latent.p_next).ravel()
    assert observed[expected == 0].sum() == 0, "a draw fell on a token of probability 0"
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize(
    "path,kw",
    [
        ("enumerate", {}),
        ("reject", {"max_enumerated": 0}),
        ("fallback", {"max_enumerated": 0, "max_proposals": 1}),
    ],
)
def test_sampler_paths_match_exact_table(family, path, kw):
    latent = LatentModel.from_config(FAMILIES[family])
    sampler = ConceptSampler(latent, **kw)
    ctx, tok = sample_pairs(latent, N, seed=11, sampler=sampler)
    assert _chi2_pvalue(latent, ctx, tok) > 1e-3
    st = sampler.stats
    if family == "independent":
        assert st.bitwise == N  # independent concepts never need the other paths
    elif path == "enumerate":
        assert st.enumerated == N and st.rejection == 0
    elif path == "reject":
        assert st.rejection > N / 2 and st.fallbacks < st.rejection
    else:
        assert st.fallbacks > N / 4


def test_joint_draws_match_p_of_c():
    latent = LatentModel.from_config(FAMILIES["ising"])
    t = ConceptSampler(latent).joint(N, np.random.default_rng(0))
    counts = np.bincount(t, minlength=16)
    assert stats.chisquare(counts, N * latent.p_concepts).pvalue > 1e-3


def test_table_free_model_beyond_max_cells():
    """Sampled contexts whose table would exceed max_cells: no table, exact rows on demand."""
    cfg = dict(m=12, p1=list(np.linspace(0.1, 0.9, 12)), contexts="sampled", n_contexts=3000)
    lat = LatentModel(LatentConfig(**cfg, max_cells=2**20))
    assert not lat.tabulated
    with pytest.raises(Exception, match="max_cells"):
        lat.p_next  # noqa: B018 - the property raises the size error
    full = LatentModel(LatentConfig(**cfg))
    assert full.tabulated and np.array_equal(full.contexts, lat.contexts)
    rows = np.array([0, 5, 17, lat.n_contexts - 1])
    np.testing.assert_array_equal(lat.next_token_rows(rows), full.p_next[rows])
    # entropy of independent concepts: Σ over unknown concepts of the binary entropy (closed form)
    p = np.asarray(cfg["p1"])
    hb = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    unknown = lat.contexts[rows] < 0
    np.testing.assert_allclose(lat.row_entropy(rows), unknown @ hb, rtol=1e-10)
    ctx, tok = lat.sample(5000, seed=1)
    vec = lat.contexts[ctx]
    bits = (tok[:, None] >> np.arange(12)) & 1
    assert np.all((vec < 0) | (vec == bits))  # every draw agrees with its context


def test_ising_m16_rejection_marginals_match_exact():
    """A large unknown set (rejection path, |U| up to 16) against exact single-concept marginals."""
    lat = LatentModel.from_config(
        {
            "m": 16,
            "kind": "ising",
            "coupling_sd": 0.4,
            "graph": "chain",
            "param_seed": 2,
            "contexts": "sampled",
            "n_contexts": 3,
            "min_known": 2,
            "max_known": 2,
            "context_seed": 4,
        }
    )
    sampler = ConceptSampler(lat)
    from linrep.latent.contexts import encode

    known, values = encode(lat.contexts)
    n = 40_000
    for k in range(lat.n_contexts):
        t = sampler.conditional(
            np.full(n, known[k]), np.full(n, values[k]), np.random.default_rng(k)
        )
        assert np.all(t & known[k] == values[k])
        ok = (np.arange(2**16) & known[k]) == values[k]  # exact conditional by brute force
        pc = np.where(ok, lat.p_concepts, 0.0)
        pc /= pc.sum()
        bits = (np.arange(2**16)[:, None] >> np.arange(16)) & 1
        exact = pc @ bits
        freq = ((t[:, None] >> np.arange(16)) & 1).mean(axis=0)
        unknown = ((known[k] >> np.arange(16)) & 1) == 0
        se = np.sqrt(exact * (1 - exact) / n)[unknown]
        z = np.abs(freq - exact)[unknown] / se
        assert z.max() < 4.5, z.max()  # 16 marginals, Bonferroni at ~1e-4
    assert sampler.stats.rejection > 0 and math.isclose(sampler.stats.fallbacks, 0)
