"""The README's qualitative simulation claims, asserted at reduced scale (fixed seeds).

- identifiable GD ≈ Adam: inside span{f} the two optimisers give nearly the same parallelism while
  their raw values differ a lot (README "Read geometry inside span{f}", E3);
- E2's monotone decrease of parallelism with the coupling scale σ_J (paired seeds);
- the frozen-f convergence is asserted in tests/test_implicit_bias.py.

Same-concept cosines here are recomputed from g with plain numpy (projection by numpy's SVD), not
read from linrep.geometry.
"""

from __future__ import annotations

import numpy as np

from linrep.latent import LatentModel
from linrep.learn import fit


def _same_concept(lat, g: np.ndarray, f: np.ndarray | None = None) -> float:
    """Mean over concepts of the mean pairwise cosine of Δg; inside span{f} if f is given."""
    if f is not None:
        _, s, vt = np.linalg.svd(f, full_matrices=False)
        V = vt[: int((s > 1e-5 * s[0]).sum())]
        g = g @ V.T @ V
    out = []
    for i in range(lat.m):
        p = np.asarray(lat.counterfactual_pairs(i))
        D = g[p[:, 1]] - g[p[:, 0]]
        U = D / np.linalg.norm(D, axis=1, keepdims=True)
        C = U @ U.T
        out.append(C[~np.eye(len(U), dtype=bool)].mean())
    return float(np.mean(out))


def test_identifiable_parallelism_of_gd_and_adam_agree_while_raw_values_do_not():
    lat = LatentModel.from_config({"m": 4})
    res = {}
    for opt, lr in (("gd", 1.0), ("adam", 0.01)):
        r = fit(
            lat,
            {"encoder": "linear", "d": 32},
            {"optimizer": opt, "lr": lr, "steps": 3000, "log_every": 3000},
            seeds=[0, 1, 2],
            progress=False,
        )
        f, g = r.embeddings(), r.unembeddings()
        raw = np.mean([_same_concept(lat, g[k]) for k in range(3)])
        ident = np.mean([_same_concept(lat, g[k], f[k]) for k in range(3)])
        assert max(x["excess_loss"] for x in r.final) < 1e-3  # both fit the data
        res[opt] = raw, ident
    assert res["gd"][0] - res["adam"][0] > 0.2  # raw: a large gap
    assert abs(res["gd"][1] - res["adam"][1]) < 0.02  # inside span{f}: the same geometry
    assert min(res["gd"][1], res["adam"][1]) > 0.97


def test_parallelism_decreases_with_the_coupling_scale():
    """E2 at reduced scale: σ_J ∈ {0, 1, 2}, 3 paired seeds (own MRF each), 3000 GD steps."""
    means = []
    for sd in (0.0, 1.0, 2.0):
        vals = []
        for seed in range(3):
            lat = LatentModel.from_config(
                {"m": 4, "kind": "ising", "coupling_sd": sd, "field_sd": 1.0, "param_seed": seed}
            )
            r = fit(
                lat,
                {"encoder": "linear", "d": 32},
                {"lr": 1.0, "steps": 3000, "log_every": 3000},
                seeds=[seed],
                progress=False,
            )
            vals.append(_same_concept(lat, r.unembeddings()[0], r.embeddings()[0]))
        means.append(np.mean(vals))
    assert means[0] > means[1] + 0.03 > means[2] + 0.06, means
