"""The hierarchical latent model against brute force: p(c), contexts, p(y | ξ), sampler, categories.

Every reference is recomputed here from the generative story (roots ~ Bern(q), a child ~ Bern(q)
when its parent is 1 and absent otherwise, free concepts ~ Bern(q_free)) by plain Python loops.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from linrep.errors import ConfigError
from linrep.latent.hierarchy import HierarchicalLatentModel, HierarchyConfig

CFG = HierarchyConfig(parents=[-1, 0, 0, 1], q=[0.3, 0.6, 0.8, 0.25], n_free=1, q_free=0.7)


def brute_p(c, cfg=CFG) -> float:
    h = len(cfg.parents)
    p = 1.0
    for i, par in enumerate(cfg.parents):
        if par >= 0 and c[par] == 0:
            if c[i] != 0:
                return 0.0
            continue
        p *= cfg.q[i] if c[i] else 1 - cfg.q[i]
    for f in c[h:]:
        p *= cfg.q_free if f else 1 - cfg.q_free
    return p


@pytest.fixture(scope="module")
def model():
    return HierarchicalLatentModel(CFG)


def test_tokens_are_the_valid_vectors_with_their_probabilities(model):
    valid = [c for c in itertools.product((0, 1), repeat=CFG.m) if brute_p(c) > 0]
    assert model.n_tokens == len(valid)
    got = {tuple(int(x) for x in t): p for t, p in zip(model.tokens, model.p_tokens, strict=True)}
    for c in valid:
        assert got[c] == pytest.approx(brute_p(c), abs=1e-12)


def test_contexts_respect_the_hierarchy_and_are_all_there(model):
    want = set()
    for xi in itertools.product((-1, 0, 1), repeat=CFG.m):
        if all(xi[i] == -1 or xi[p] == 1 for i, p in enumerate(CFG.parents) if p >= 0):
            want.add(xi)
    assert {tuple(int(x) for x in r) for r in model.contexts} == want
    assert model.weights.sum() == pytest.approx(1.0)


def test_next_token_table_matches_brute_force(model):
    for row, xi in enumerate(model.contexts):
        w = np.array(
            [
                brute_p(c) if all(x == -1 or x == ci for x, ci in zip(xi, c, strict=True)) else 0.0
                for c in model.tokens
            ]
        )
        np.testing.assert_allclose(model.p_next[row], w / w.sum(), atol=1e-12)


def test_sampler_frequencies_match_the_exact_table(model):
    ctx, tok = model.sample(400_000, seed=1)
    emp = np.zeros_like(model.p_next)
    np.add.at(emp, (ctx, tok), 1.0)
    emp /= ctx.size
    exact = model.weights[:, None] * model.p_next
    assert np.abs(emp - exact).max() < 4 * np.sqrt(exact.max() / ctx.size)
    assert np.array_equal(model.sample(10, seed=2)[1], model.sample(10, seed=2)[1])


def test_category_tree_nests_children_in_parents(model):
    tree = model.category_tree()
    names = list(tree.names)
    assert names[:3] == ["h0", "h1", "¬h1"]
    for p, c in tree.edges:
        assert set(tree.members[c]) < set(tree.members[p])
    # h1 and ¬h1 split the tokens of h0 exactly
    i0, i1, n1 = (tree.members[names.index(n)] for n in ("h0", "h1", "¬h1"))
    assert sorted(np.concatenate([i1, n1])) == sorted(i0)
    assert all(model.tokens[i1, 1] == 1) and all(model.tokens[n1, 0] == 1)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"parents": [-1, 2, -1]}, "earlier concept"),
        ({"parents": [-1, -1]}, "no concept has a parent"),
        ({"parents": [-1, 0], "q": [0.5]}, "q has 1 entries"),
        ({"parents": [-1, 0], "q": [0.5, 1.0]}, "strictly"),
    ],
)
def test_bad_hierarchies_are_one_line_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        HierarchyConfig(**kw)
    assert "\n" not in str(e.value)
