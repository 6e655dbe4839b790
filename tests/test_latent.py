"""The latent conditional model against independent brute-force computations."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from linrep.errors import ConfigError
from linrep.latent import LatentConfig, LatentModel


def brute_ising_p(h, J):
    """p(c) ∝ exp(Σ h_i s_i + Σ_{i<j} J_ij s_i s_j), by enumeration, as {tuple(c): p}."""
    m = len(h)
    w = {}
    for c in itertools.product([0, 1], repeat=m):
        s = [2 * v - 1 for v in c]
        e = sum(h[i] * s[i] for i in range(m))
        e += sum(J[i][j] * s[i] * s[j] for i in range(m) for j in range(i + 1, m))
        w[c] = math.exp(e)
    z = sum(w.values())
    return {c: v / z for c, v in w.items()}


def brute_next(pc, context):
    """p(c | core(context)) by enumeration, context a tuple with None for ⋄."""
    ok = {c: p for c, p in pc.items() if all(k is None or k == v for k, v in zip(context, c))}
    z = sum(ok.values())
    return {c: p / z for c, p in ok.items()}


def token_of(c):
    return sum(v << i for i, v in enumerate(c))


H = [0.1, -0.3, 0.5, 0.0]
JM = [[0, 0.8, 0, 0], [0, 0, -0.4, 0], [0, 0, 0, 0.2], [0, 0, 0, 0]]


def test_exact_table_matches_brute_force_ising():
    model = LatentModel(LatentConfig(m=4, kind="ising", h=H, J=JM))
    pc = brute_ising_p(H, JM)
    assert model.n_contexts == 81 and model.n_tokens == 16
    for row, ctx in enumerate(model.contexts):
        context = tuple(None if v == -1 else int(v) for v in ctx)
        expected = np.zeros(16)
        for c, p in brute_next(pc, context).items():
            expected[token_of(c)] = p
        np.testing.assert_allclose(model.p_next[row], expected, rtol=0, atol=1e-12)
    # the token table follows the documented bit order
    for t in range(16):
        assert tuple(model.tokens[t]) == tuple((t >> i) & 1 for i in range(4))


def test_log_odds_and_marginals_brute_force():
    model = LatentModel(
        LatentConfig(
            m=3, kind="ising", h=[0.3, -1.0, 0.2], J=[[0, 1.0, -0.5], [0, 0, 0.7], [0, 0, 0]]
        )
    )
    pc = brute_ising_p([0.3, -1.0, 0.2], [[0, 1.0, -0.5], [0, 0, 0.7], [0, 0, 0]])
    lo = model.log_odds()
    for row, ctx in enumerate(model.contexts):
        context = tuple(None if v == -1 else int(v) for v in ctx)
        cond = brute_next(pc, context)
        for i in range(3):
            q = sum(p for c, p in cond.items() if c[i] == 1)
            if context[i] is None:
                assert lo[row, i] == pytest.approx(math.log(q / (1 - q)), abs=1e-10)
            else:
                assert lo[row, i] == (math.inf if context[i] == 1 else -math.inf)


def test_conditional_entropy_brute_force():
    model = LatentModel(LatentConfig(m=3, kind="independent", p1=[0.2, 0.5, 0.9]))
    pc = {
        c: np.prod([p if v else 1 - p for v, p in zip(c, [0.2, 0.5, 0.9])])
        for c in itertools.product([0, 1], repeat=3)
    }
    total = 0.0
    for ctx in itertools.product([None, 0, 1], repeat=3):
        cond = brute_next(pc, ctx)
        total += -sum(p * math.log(p) for p in cond.values() if p > 0) / 27
    assert model.entropy() == pytest.approx(total, abs=1e-12)


def test_ising_equals_explicit_table():
    ising = LatentModel(LatentConfig(m=4, kind="ising", h=H, J=JM))
    table = LatentModel(LatentConfig(m=4, kind="table", table=ising.p_concepts.tolist()))
    np.testing.assert_allclose(table.p_next, ising.p_next, atol=1e-14)
    # a symmetric J is the same model as its upper triangle
    sym = np.array(JM) + np.array(JM).T
    ising_sym = LatentModel(LatentConfig(m=4, kind="ising", h=H, J=sym.tolist()))
    np.testing.assert_allclose(ising_sym.p_next, ising.p_next, atol=1e-14)


def test_bayesnet_factorisation_and_conditional_independence():
    # chain C0 -> C1 -> C2 plus C3 with parents (C0, C2)
    parents = [[], [0], [1], [0, 2]]
    cpt = [[0.3], [0.2, 0.9], [0.6, 0.1], [0.1, 0.4, 0.7, 0.95]]
    model = LatentModel(LatentConfig(m=4, kind="bayesnet", parents=parents, cpt=cpt))
    for t in range(16):
        c = [(t >> i) & 1 for i in range(4)]
        p = 1.0
        for i in range(4):
            row = sum(c[pa] << k for k, pa in enumerate(parents[i]))
            q = cpt[i][row]
            p *= q if c[i] else 1 - q
        assert model.p_concepts[t] == pytest.approx(p, abs=1e-14)
    # C2 ⟂ C0 | C1: P(C2=1 | C0, C1) does not depend on C0
    ctx = {tuple(r): k for k, r in enumerate(model.contexts.tolist())}
    marg = model.concept_marginals()
    for c1 in (0, 1):
        a = marg[ctx[(0, c1, -1, -1)], 2]
        b = marg[ctx[(1, c1, -1, -1)], 2]
        assert a == pytest.approx(b, abs=1e-12) and a == pytest.approx(cpt[2][c1], abs=1e-12)


def test_sampler_matches_exact_probabilities_chi_square():
    model = LatentModel(
        LatentConfig(
            m=3, kind="ising", h=[0.5, -0.2, 0.1], J=[[0, 0.9, 0], [0, 0, -0.6], [0, 0, 0]]
        )
    )
    n = 200_000
    ctx, tok = model.sample(n, seed=123)
    observed = np.zeros((model.n_contexts, model.n_tokens))
    np.add.at(observed, (ctx, tok), 1)
    expected = n * model.weights[:, None] * model.p_next
    support = expected > 0
    assert observed[~support].sum() == 0  # never a token that contradicts the context
    chi2 = ((observed[support] - expected[support]) ** 2 / expected[support]).sum()
    dof = support.sum() - 1
    assert stats.chi2.sf(chi2, dof) > 1e-3
    # same seed, same samples
    ctx2, tok2 = model.sample(n, seed=123)
    assert np.array_equal(ctx, ctx2) and np.array_equal(tok, tok2)


def test_counterfactual_pairs():
    model = LatentModel(LatentConfig(m=5))
    for i in range(5):
        pairs = model.counterfactual_pairs(i)
        assert pairs.shape == (16, 2)
        diff = model.tokens[pairs[:, 1]].astype(int) - model.tokens[pairs[:, 0]].astype(int)
        assert np.all(diff[:, i] == 1) and np.all(np.delete(diff, i, axis=1) == 0)
        assert len({tuple(p) for p in pairs.tolist()}) == 16


def test_synonyms_split_probability_and_pairs():
    base = LatentModel(LatentConfig(m=3, kind="independent", p1=[0.3, 0.6, 0.5]))
    syn = LatentModel(
        LatentConfig(m=3, kind="independent", p1=[0.3, 0.6, 0.5], synonyms=[3.0, 1.0])
    )
    assert syn.n_tokens == 16
    np.testing.assert_allclose(syn.p_next[:, 0::2], 0.75 * base.p_next, atol=1e-14)
    np.testing.assert_allclose(syn.p_next[:, 1::2], 0.25 * base.p_next, atol=1e-14)
    pairs = syn.counterfactual_pairs(1)
    assert pairs.shape == (4 * 4, 2)
    d = syn.tokens[pairs[:, 1]].astype(int) - syn.tokens[pairs[:, 0]].astype(int)
    assert np.all(d == np.array([0, 1, 0]))


def test_context_sets_and_filters():
    for m in (1, 3, 5):
        assert LatentModel(LatentConfig(m=m)).n_contexts == 3**m
    model = LatentModel(LatentConfig(m=5, min_known=1, max_known=2))
    n_known = (model.contexts != -1).sum(axis=1)
    assert n_known.min() == 1 and n_known.max() == 2
    assert model.n_contexts == math.comb(5, 1) * 2 + math.comb(5, 2) * 4
    assert len({tuple(r) for r in model.contexts.tolist()}) == model.n_contexts
    kc = LatentModel(LatentConfig(m=3, weights="known_count"))
    nk = (kc.contexts != -1).sum(axis=1)
    for k in range(4):
        assert kc.weights[nk == k].sum() == pytest.approx(0.25)


def test_sampled_contexts_follow_core_marginal():
    cfg = LatentConfig(
        m=12,
        kind="independent",
        p1=[0.8] * 12,
        contexts="sampled",
        n_contexts=3000,
        min_known=1,
        max_known=3,
    )
    model = LatentModel(cfg)
    nk = (model.contexts != -1).sum(axis=1)
    assert nk.min() >= 1 and nk.max() <= 3
    known = model.contexts != -1
    frac_one = (model.weights[:, None] * (model.contexts == 1)).sum() / (
        model.weights[:, None] * known
    ).sum()
    assert frac_one == pytest.approx(0.8, abs=0.03)
    np.testing.assert_allclose(model.p_next.sum(axis=1), 1.0, atol=1e-12)


def test_regime_report_is_computed_not_assumed():
    indep = LatentModel(LatentConfig(m=4, kind="independent", p1=[0.1, 0.4, 0.5, 0.8]))
    for r, p in zip(indep.regimes(), [0.1, 0.4, 0.5, 0.8]):
        assert r.in_regime and r.alpha == pytest.approx(math.log(p / (1 - p)), abs=1e-10)
    # an Ising model whose concept 3 has no couplings is in the regime for concept 3 only;
    # its pair log-odds are 2 h_3 (s flips from -1 to +1)
    J = [[0, 0.5, 0.3, 0], [0, 0, 0.2, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    ising = LatentModel(LatentConfig(m=4, kind="ising", h=[0.1, 0.2, 0.3, 0.4], J=J))
    regimes = ising.regimes()
    assert [r.in_regime for r in regimes] == [False, False, False, True]
    assert regimes[3].alpha == pytest.approx(0.8, abs=1e-10)
    # concept 0's pair log-odds range over 2h_0 ± 2(J01 + J02): spread 4 (0.5 + 0.3)
    assert regimes[0].pair_log_odds_spread == pytest.approx(4 * 0.8, abs=1e-10)
    # an "ising" config with J = 0 is in the regime: the report looks at the numbers, not the kind
    flat = LatentModel(LatentConfig(m=3, kind="ising", h=[0.1, 0.2, 0.3], J=[[0] * 3] * 3))
    assert all(r.in_regime for r in flat.regimes())


def test_random_ising_parameters_are_seeded():
    a = LatentModel(LatentConfig(m=4, kind="ising", param_seed=7))
    b = LatentModel(LatentConfig(m=4, kind="ising", param_seed=7))
    c = LatentModel(LatentConfig(m=4, kind="ising", param_seed=8))
    assert np.array_equal(a.p_concepts, b.p_concepts) and not np.allclose(
        a.p_concepts, c.p_concepts
    )
    chain = LatentModel(LatentConfig(m=4, kind="ising", graph="chain", h=[0, 0, 0, 0]))
    # on a chain, C0 ⟂ C2 | C1
    ctx = {tuple(r): k for k, r in enumerate(chain.contexts.tolist())}
    q = chain.concept_marginals()
    assert q[ctx[(0, 1, -1, -1)], 2] == pytest.approx(q[ctx[(1, 1, -1, -1)], 2], abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"m": 0}, "latent.m"),
        ({"m": 3, "p1": [0.5, 0.5]}, "latent.p1"),
        ({"m": 2, "p1": [0.5, 1.5]}, "outside [0, 1]"),
        ({"m": 2, "kind": "ising", "h": [0.1, 0.2, 0.3]}, "latent.h"),
        ({"m": 2, "kind": "ising", "J": [[0, 1]]}, "latent.J"),
        ({"m": 2, "kind": "ising", "J": [[0, 1], [2, 0]]}, "upper-triangular"),
        ({"m": 2, "kind": "table", "table": [0.5, 0.5, 0.5, 0.5]}, "sums to"),
        ({"m": 2, "kind": "table", "table": [0.5, 0.5]}, "latent.table"),
        ({"m": 2, "kind": "table"}, "latent.table"),
        (
            {"m": 2, "kind": "bayesnet", "parents": [[1], [0]], "cpt": [[0.1, 0.2], [0.3, 0.4]]},
            "cycle",
        ),
        (
            {"m": 2, "kind": "bayesnet", "parents": [[], [0]], "cpt": [[0.1], [0.3]]},
            "latent.cpt[1]",
        ),
        (
            {"m": 2, "kind": "bayesnet", "parents": [[], [5]], "cpt": [[0.1], [0.3, 0.2]]},
            "latent.parents[1]",
        ),
        ({"m": 3, "min_known": 2, "max_known": 1}, "min_known"),
        ({"m": 2, "names": ["a"]}, "latent.names"),
        ({"m": 2, "kind": "independent", "h": [0.1, 0.1]}, 'kind = "ising"'),
        ({"m": 14}, "sampled"),
    ],
)
def test_validation_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=None) as info:
        LatentModel(LatentConfig(**kwargs))
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_size_error_says_memory_and_fix():
    with pytest.raises(ConfigError) as info:
        LatentModel(LatentConfig(m=14))
    msg = str(info.value)
    assert "GiB" in msg and 'contexts = "sampled"' in msg


def test_unknown_key_suggests_spelling():
    from linrep.config import section_from_dict

    with pytest.raises(ConfigError, match="did you mean 'min_known'"):
        section_from_dict(LatentConfig, {"m": 3, "min_knwon": 1}, "latent")
    with pytest.raises(ConfigError, match="must be an integer"):
        section_from_dict(LatentConfig, {"m": "four"}, "latent")
    with pytest.raises(ConfigError, match="did you mean 'ising'"):
        section_from_dict(LatentConfig, {"m": 3, "kind": "isnig"}, "latent")
