"""Exact rows p(·|ξ) without a table (learn.objective.ExactRows / SupportRows), for every latent kind.

References: the latent model's own p_next table, and a brute force written here that compares the
int8 concept vectors of every token with every context (no bit masks, no enumeration).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linrep.latent import LatentModel
from linrep.learn.objective import ExactRows

KINDS = {
    "independent": {"m": 5, "kind": "independent", "p1": [0.1, 0.25, 0.5, 0.7, 0.95]},
    "ising": {"m": 6, "kind": "ising", "param_seed": 3},
    "bayesnet": {  # a deterministic CPT entry: tokens and contexts of probability 0
        "m": 4,
        "kind": "bayesnet",
        "parents": [[], [0], [1], [0, 2]],
        "cpt": [[0.3], [0.2, 1.0], [0.6, 0.1], [0.1, 0.4, 0.7, 0.95]],
    },
    "table": {"m": 3, "kind": "table", "table": [0.1, 0.0, 0.2, 0.05, 0.15, 0.3, 0.0, 0.2]},
    "synonyms": {"m": 4, "kind": "ising", "param_seed": 1, "synonyms": [1.0, 2.0, 0.5]},
    "sampled": {"m": 7, "kind": "ising", "param_seed": 2, "contexts": "sampled", "n_contexts": 400},
    "odd m, max_known": {"m": 5, "kind": "ising", "param_seed": 4, "max_known": 2},
}


def _agree(lat: LatentModel) -> np.ndarray:
    """(n, V): token y's concept vector agrees with context ξ on ξ's core (y consistent with ξ)."""
    ctx = lat.contexts[:, None, :].astype(np.int64)  # (n, 1, m)
    tok = lat.tokens[None, :, :].astype(np.int64)  # (1, V, m)
    return ((ctx == -1) | (ctx == tok)).all(axis=2)


def _brute_force(lat: LatentModel) -> np.ndarray:
    """p(y|ξ) ∝ p(c(y)) w(y) on the tokens whose concept vector agrees with ξ on its core."""
    mass = _agree(lat) * (lat.p_concepts[lat.token_vector] * lat.token_prob)[None, :]
    return mass / mass.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module", params=list(KINDS), ids=list(KINDS))
def model(request):
    return LatentModel.from_config(KINDS[request.param])


def test_exact_rows_equal_the_table_and_a_brute_force(model):
    rows = ExactRows(model, torch.float64)
    ctx = torch.arange(model.n_contexts)
    P = rows.dense(ctx).numpy()
    np.testing.assert_allclose(P, model.p_next, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P, _brute_force(model), rtol=1e-12, atol=1e-15)
    # the support: every consistent token once, ascending (the in-place updates rely on it)
    n_known = (model.contexts != -1).sum(axis=1)
    n_syn = model.n_tokens >> model.m
    support = rows(ctx)
    assert [t.numel() for t in support.tokens] == list(2 ** (model.m - n_known) * n_syn)
    for t in support.tokens:
        assert bool((t[1:] > t[:-1]).all())


def test_support_rows_act_like_the_dense_rows(model):
    """x − P, Σ_y P z and the dense form agree for a (K, B) batch with repeated contexts, and a
    context asked for again (cached) gives the same row."""
    rows = ExactRows(model, torch.float64)
    gen = torch.Generator().manual_seed(0)
    ctx = torch.randint(0, model.n_contexts, (3, 9), generator=gen)
    ctx[1, 4] = ctx[0, 2]
    P = torch.as_tensor(model.p_next)[ctx]  # (3, 9, V)
    support = rows(ctx)
    dense = support.dense()
    torch.testing.assert_close(dense, P, rtol=1e-12, atol=1e-15)
    x = torch.randn(P.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(support.sub_from(x.clone()), x - P, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(support.dot(x), (P * x).sum(dim=2), rtol=1e-12, atol=1e-15)
    again = rows(ctx.flip(0)).dense()
    torch.testing.assert_close(again, dense.flip(0), rtol=0, atol=0)


def test_float32_rows_and_row_losses():
    """float32 rows match the float64 table to float32 precision; the row losses of every kind
    of loss with support rows equal those with the dense rows."""
    from linrep.learn.losses import logit_grad, row_losses

    lat = LatentModel.from_config(KINDS["ising"])
    ctx = torch.arange(0, lat.n_contexts, 7)[None].repeat(2, 1)
    rows32 = ExactRows(lat, torch.float32)(ctx)
    P = torch.as_tensor(lat.p_next)[ctx]
    torch.testing.assert_close(rows32.dense().double(), P, rtol=1e-6, atol=1e-7)
    support = ExactRows(lat, torch.float64)(ctx)
    z = torch.randn(P.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for kind in ("cross_entropy", "squared", "sigmoid"):
        torch.testing.assert_close(row_losses(kind, z, support), row_losses(kind, z, P))
        e_sparse = logit_grad(kind, z.clone(), support)
        torch.testing.assert_close(e_sparse, logit_grad(kind, z.clone(), P), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["sampled", "synonyms", "odd m, max_known"])
def test_peak_bytes_bounds_the_cache_after_every_context(name):
    """ExactRows.peak_bytes (the trainer's memory check) bounds what the object holds once every
    context was asked for, in batches that make the token list grow, and not by more than 3×.
    The entry count is checked against the brute-force support sizes."""
    lat = LatentModel.from_config(KINDS[name])
    bound = ExactRows.peak_bytes(lat)
    rows = ExactRows(lat, torch.float64)
    for chunk in torch.arange(lat.n_contexts).split(7):
        rows(chunk)
    assert rows._used == int(_agree(lat).sum())  # every consistent (context, token) entry
    held = sum(
        t.numel() * t.element_size()
        for t in (rows._tok, rows._f, rows._v, rows._n_lo, rows.count, rows.inv_mass, rows.start)
    )
    held += sum(t.numel() * t.element_size() for t in (rows._deposit, rows.p_tok, rows._p64))
    assert held <= bound <= 3 * held
