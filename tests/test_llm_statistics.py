"""Real-model statistics (linrep.llm.statistics) on synthetic unembeddings with planted structure.

Expected values come from planted truths and planted nulls (concepts made of random word pairs,
concepts that share words by design), logits recomputed from scratch, and brute-force loops.
"""

from __future__ import annotations

import numpy as np
import pytest

import linrep.geometry as G
from linrep.llm import statistics as st
from linrep.llm.concepts import ConceptTokens
from linrep.llm.vocab import Vocabulary

OPTS = st.StatisticsOptions(n_null_draws=120, n_random_inner=8, n_sign_flips=300, n_boot=300)


def _concept(name, pairs):
    return ConceptTokens(name, np.asarray(pairs, dtype=np.int64), [])


def _world(seed=0, V=3000, d=48, planted=3.0, n_pairs=60):
    """γ i.i.d. N(0, I) plus a common mean; concepts:
    'a', 'b': planted orthogonal directions (disjoint words);
    'n1', 'n2': random word pairs (the null is true);
    'v1', 'v2': share every base word (v_i = γ(base) → γ(other word)), no planted direction."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((V, d)) + 0.5
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    ids = iter(rng.permutation(V))
    cs = []
    for name, u in (("a", Q[0]), ("b", Q[1])):
        p = np.array([[next(ids), next(ids)] for _ in range(n_pairs)])
        g[p[:, 1]] += planted * u
        cs.append(_concept(name, p))
    for name in ("n1", "n2"):
        cs.append(_concept(name, [[next(ids), next(ids)] for _ in range(n_pairs)]))
    base = [next(ids) for _ in range(n_pairs)]
    for name in ("v1", "v2"):
        cs.append(_concept(name, [[b, next(ids)] for b in base]))
    return g, cs


def test_null_word_rows_use_the_pair_filter_and_letters_only():
    toks = ["Ġcat", "Ġ42", "dog", "ĠÃ©t", "Ġ", "Ġ(", "Ġbig"]
    v = Vocabulary(toks, np.array([1, 1, 1, 1, 1, 1, 3]), "byte_bpe")
    np.testing.assert_array_equal(st.null_word_rows(v), [1, 0, 0, 1, 0, 0, 0])


def test_ordered_puts_euclidean_first():
    assert st.ordered(["random", "causal", "x", "euclidean"]) == [
        "euclidean",
        "causal",
        "random",
        "x",
    ]


def test_cross_concept_nulls_shared_words_null_reproduces_design_forced_cosines():
    """v1 and v2 share all base words: their directions have cos ≈ 1/2 by construction. The
    independent random-pair null cannot produce that; the relabelled null (shared words kept) does."""
    g, cs = _world()
    inner = {
        "random": G.RandomInnerProduct(3).fit(g.shape[1]),
        "euclidean": G.EuclideanInnerProduct().fit(g),
        "causal": G.CausalInnerProduct().fit(g),
    }
    groups = ["x1", "x2", "x3", "x4", "v", "v"]
    rows = np.ones(g.shape[0], dtype=bool)
    vec = st.ConceptVectors.build(g, cs, inner)
    res = st.cross_concept_nulls(g, vec, inner, groups, rows, g.mean(axis=0), OPTS)
    assert list(res) == ["euclidean", "causal", "random"]
    c = res["causal"]
    within = c.random_pairs.within_abs
    assert float(within.observed) > float(within.q975)  # forced cosine far above independent pairs
    sw = c.shared_words.within_abs
    assert float(sw.q025) <= float(within.observed) <= float(sw.q975)
    assert abs(float(sw.null_mean) - 0.5) < 0.1  # closed form for i.i.d. isotropic words
    # under the causal inner product nothing lines up with the mean of γ; Holm ≥ raw p
    assert np.all(c.mean_gamma_p_holm >= c.mean_gamma_p - 1e-15)
    js = c.to_json([x.name for x in cs])
    assert set(js) == {"random_word_pairs", "shared_words", "mean_gamma", "n_draws"}
    assert set(js["random_word_pairs"]["mean_abs_offdiag"]) >= {"observed", "null_mean", "q975"}


def test_euclidean_directions_correlate_with_a_planted_common_mean():
    """Pairs whose target words are more 'frequent' (larger component along the mean of γ) give
    directions that correlate with it; random word pairs do not."""
    rng = np.random.default_rng(1)
    V, d = 3000, 24
    m = rng.standard_normal(d)
    m /= np.linalg.norm(m)
    g = rng.standard_normal((V, d)) + 2 * m
    p = rng.choice(V, size=(40, 2), replace=False)
    g[p[:, 1]] += 1.0 * m  # targets sit further along the mean
    cs = [_concept("freq", p), _concept("other", rng.choice(V, size=(40, 2), replace=False))]
    ip = {"euclidean": G.EuclideanInnerProduct().fit(g)}
    vec = st.ConceptVectors.build(g, cs, ip)
    res = st.cross_concept_nulls(g, vec, ip, ["a", "b"], np.ones(V, bool), g.mean(0), OPTS)
    e = res["euclidean"]
    assert e.mean_gamma_cos[0] > 0.3 and e.mean_gamma_p_holm[0] < 0.01
    assert e.mean_gamma_p[1] > 0.01


def test_random_inner_product_draws_are_a_distribution():
    g, cs = _world(seed=2)
    vec = st.ConceptVectors.build(g, cs, {"euclidean": G.EuclideanInnerProduct()})
    r = st.random_inner_product_draws(vec, ["a"] * 6, OPTS)
    assert r.mean_abs_offdiag.shape == (8,) and r.mean_abs_offdiag.std() > 0
    js = r.to_json()
    assert js["n_draws"] == 8 and js["mean_abs_offdiag"]["q025"] <= js["mean_abs_offdiag"]["q975"]


def test_loo_tests_planted_vs_null_concepts_with_holm():
    g, cs = _world(seed=3)
    inner = {"causal": G.CausalInnerProduct().fit(g), "euclidean": G.EuclideanInnerProduct()}
    res = st.loo_tests(st.ConceptVectors.build(g, cs, inner), ("causal", "euclidean"), OPTS)
    assert list(res) == ["euclidean", "causal"]
    for ip in res:
        t = res[ip]
        assert t["a"].p_holm < 0.05 and t["b"].p_holm < 0.05 and t["a"].z > 5
        assert t["n1"].p_holm > 0.05 and t["n2"].p_holm > 0.05
        assert t["v1"].n_clusters == 60 and t["a"].n_clusters == 60
        p = np.array([x.p_value for x in t.values()])
        np.testing.assert_allclose([x.p_holm for x in t.values()], G.holm(p))
        lo, hi = t["a"].loo_cosine_ci
        assert lo < t["a"].loo_cosine < hi


def test_alignment_nulls_read_the_embedding_sides_permutations():
    """The statistics keep the embedding side's label-permutation null (one implementation):
    planted alignment passes after Holm, a concept without alignment does not."""
    from linrep.llm.embedding import embedding_alignment

    rng = np.random.default_rng(4)
    d, n = 24, 60
    u = np.eye(d)[0]
    y = np.repeat([0, 1], n // 2)
    states = {
        "a": rng.standard_normal((n, d)) + 1.5 * y[:, None] * u,  # aligned with its direction
        "b": rng.standard_normal((n, d)),  # no alignment
    }
    dirs = {"causal": np.stack([u, np.eye(d)[1]]), "euclidean": np.stack([u, np.eye(d)[1]])}
    inner = {"causal": G.EuclideanInnerProduct(), "euclidean": G.EuclideanInnerProduct()}
    emb = embedding_alignment(
        states,
        {"a": y, "b": y},
        dirs,
        ["a", "b"],
        inner,
        layer=1,
        n_layers=1,
        n_perm=300,
        probes=False,
    )
    res = st.alignment_nulls(emb.concepts)
    assert list(res) == ["euclidean", "causal"]
    a, b = res["euclidean"]["a"], res["euclidean"]["b"]
    assert a.cosine > a.null_q95 and a.p_holm < 0.05 and a.n_perm == 300
    assert b.p_value > 0.05 and abs(b.null_mean) < 0.1 and b.null_mean_abs > abs(b.null_mean)


def test_cross_fitted_intervention_matches_recomputed_logits():
    """The on-target effect of pair k is the log-odds change per unit α when λ ↦ λ + α·s·v with v
    the raw step of the direction of the pairs sharing no word with k — recomputed from logits."""
    g, cs = _world(seed=5, V=1200, d=12)
    cs = cs[:2] + cs[4:]  # a, b, v1, v2
    ip = G.CausalInnerProduct().fit(g)
    s = 2.5
    vec = st.ConceptVectors.build(g, cs, {"causal": ip})
    res = st.cross_fitted_interventions(vec, "causal", scale=s, options=OPTS)
    lam = np.random.default_rng(0).standard_normal(12)  # any context: the change is context-free
    for c in cs:
        effects = []
        for b, t in c.pairs:
            keep = [j for j, q in enumerate(c.pairs) if not {b, t} & set(q.tolist())]
            D = G.steering_vectors(g, c.pairs[keep], inner=ip)
            v = G.concept_direction(D) @ ip.sqrt_ * s  # raw embedding-side step
            before, after = lam @ g[[b, t]].T, (lam + v) @ g[[b, t]].T  # logits of (base, target)
            effects.append((after[1] - after[0]) - (before[1] - before[0]))
        assert res[c.name].on_target == pytest.approx(np.mean(effects), rel=1e-9)
    assert res["a"].ratio > 5 and res["a"].on_target_frac_positive > 0.9
    # v1 and v2 share every base word: v1's full direction moves v2's pairs through the shared
    # words; cross-fitting (no pair sharing a word with the evaluated one) removes that leak
    D1, D2 = (G.steering_vectors(g, c.pairs, inner=ip) for c in cs[2:])
    leaky = s * np.mean(D2 @ G.concept_direction(D1))
    fitted = res["v1"].mean_effects[3]
    assert leaky > 0.4 and abs(fitted) < leaky / 3
    assert res["a"].mean_effects[0] == res["a"].on_target
    assert res["a"].to_json()["n_pairs"] == 60


def test_context_intervention_folds_never_use_the_evaluated_words():
    g, cs = _world(seed=6, V=1000, d=12)
    c = cs[0]
    rng = np.random.default_rng(0)
    ctx_pairs = c.pairs[rng.integers(0, 60, size=30)]  # contexts call for some of the pairs
    sides = np.tile([0, 1], 15)
    F = rng.standard_normal((30, 12))
    ip = G.EuclideanInnerProduct().fit(g)
    D = G.steering_vectors(g, c.pairs)
    r = st.context_intervention(
        g, F, ctx_pairs, sides, c.pairs, D, ip, 1.0, [0.0, 2.0, 1e6], n_folds=3
    )
    assert r.n_contexts == 30 and r.n_base_contexts == 15 and r.n_folds == 3
    before = np.mean([f @ (g[t] - g[b]) > 0 for f, (b, t) in zip(F[::2], ctx_pairs[::2])])
    assert r.frac_target_over_base[0] == pytest.approx(before)
    # the effect is the mean over contexts of ⟨v_fold, Δγ⟩ with v from word-disjoint pairs
    folds = G.cross_fit_folds(ctx_pairs, c.pairs, n_folds=3, seed=0)
    eff = np.empty(30)
    for f in folds:
        assert not set(c.pairs[f.est_idx].ravel()) & set(ctx_pairs[f.eval_idx].ravel())
        v = G.concept_direction(G.steering_vectors(g, c.pairs[f.est_idx]))
        eff[f.eval_idx] = (g[ctx_pairs[f.eval_idx, 1]] - g[ctx_pairs[f.eval_idx, 0]]) @ v
    assert r.effect_per_alpha == pytest.approx(eff.mean())
    # a huge step: the target wins exactly where the held-out effect is positive
    assert r.frac_target_over_base[-1] == pytest.approx((eff[::2] > 0).mean())


# ---------------------------------------------------------------------- contexts and aggregate
def _w(i: int) -> str:
    """A letters-only word for index i (wa, wb, …, wba, …)."""
    s = ""
    while True:
        s = "abcdefghijklmnopqrstuvwxyz"[i % 26] + s
        i //= 26
        if i == 0:
            return "w" + s


def _vocab_world(seed=7, n_words=600, d=16):
    """A byte-BPE vocabulary of letter words 'Ġw…' (normal), a planted concept, and paired contexts."""
    rng = np.random.default_rng(seed)
    toks = [f"Ġ{_w(i)}" for i in range(n_words)] + ["Ġ42", "<pad>"]
    types = np.ones(len(toks), dtype=int)
    types[-1] = 3
    g = rng.standard_normal((len(toks), d))
    u = np.eye(d)[0]
    pairs = np.array([[2 * i, 2 * i + 1] for i in range(40)])
    g[pairs[:, 1]] += 3 * u
    other = np.array([[100 + 2 * i, 101 + 2 * i] for i in range(40)])
    vocab = Vocabulary(toks, types, "byte_bpe")
    cs = [
        ConceptTokens(n, p, [(_w(x), _w(y)) for x, y in p]) for n, p in (("a", pairs), ("b", other))
    ]
    return g, vocab, cs, u


def test_context_token_pairs_and_word_ranks():
    g, vocab, cs, _ = _vocab_world()
    # base word 0 → pair (0, 1); target word 3 → (2, 3); unknown word; word 0 is no target
    words = [_w(0), _w(3), "zzz", _w(0)]
    cp, rows = st.context_token_pairs(cs[0].words, words, [0, 1, 0, 1], vocab)
    np.testing.assert_array_equal(cp, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(rows, [0, 1])
    rng = np.random.default_rng(0)
    F = rng.standard_normal((5, g.shape[1]))
    tok = np.array([3, 7, 100, 0, 5])
    normal = np.ones(g.shape[0], bool)
    normal[-1] = False
    ranks = st.intended_word_ranks(F, g, tok, normal, chunk=2)
    for i in range(5):
        logits = g[normal] @ F[i]
        order = np.argsort(-logits)
        assert ranks[i] == 1 + int(np.flatnonzero(np.flatnonzero(normal)[order] == tok[i])[0])


def test_compute_statistics_end_to_end_json_and_report(tmp_path):
    import json

    from linrep.report import Report

    g, vocab, cs, u = _vocab_world()
    inner = {
        "causal": G.CausalInnerProduct().fit(g),
        "euclidean": G.EuclideanInnerProduct().fit(g),
        "random": G.RandomInnerProduct(0).fit(g.shape[1]),
    }
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    F = rng.standard_normal((40, g.shape[1])) + 2.0 * y[:, None] * u
    ctx_words = [_w(2 * i) for i in range(20)] + [_w(2 * i + 1) for i in range(20)]
    from linrep.llm.embedding import embedding_alignment

    contexts = st.ContextInputs({"a": F}, {"a": y}, {"a": ctx_words})
    normal = vocab.token_type == 1
    dirs = {
        k: np.stack([G.concept_direction(G.steering_vectors(g, c.pairs, inner=ip)) for c in cs])
        for k, ip in inner.items()
    }
    emb = embedding_alignment(
        {"a": F}, {"a": y}, dirs, ["a", "b"], inner, layer=1, n_layers=1, n_perm=300, probes=False
    )
    res = st.compute_statistics(
        g,
        vocab,
        normal,
        cs,
        inner,
        ["a", "b"],
        OPTS,
        contexts=contexts,
        alignment=st.alignment_nulls(emb.concepts),
        alphas=(0.0, 1.0),
    )
    assert list(res.cross) == ["euclidean", "causal", "random"]
    assert list(res.loo) == ["euclidean", "causal"] and list(res.interventions) == list(res.loo)
    assert res.n_word_rows == 600 and res.word_rows_kind == "letter words"  # not Ġ42, <pad>
    assert res.alignment["causal"]["a"].p_holm < 0.05
    assert res.contexts["euclidean"]["a"].n_contexts == 40
    assert res.context_check.n_contexts == 40 and res.context_check.n_top5 <= 40
    s_e = np.linalg.norm(F, axis=1).mean()
    assert res.scales["euclidean"] == pytest.approx(s_e)
    js = json.loads(json.dumps(res.to_json()))
    assert js["loo_test"]["causal"]["a"]["p_holm"] < 0.05
    assert set(res.null_mean_abs_offdiag()) == {"euclidean", "causal", "random"}
    sm = js["summary"]
    assert sm["pairs"] == {"total": 80, "min": 40, "min_concept": "a", "max": 40}
    assert sm["causal"]["loo_n_holm"] == sum(t.p_holm < 0.05 for t in res.loo["causal"].values())
    assert sm["euclidean"]["alignment_n"] == 1
    lo, hi = sm["euclidean"]["random_word_pairs"]["ci"]
    assert lo <= sm["euclidean"]["random_word_pairs"]["mean"] <= hi
    rep = Report("t")
    res.add_to_report(rep)
    paths = rep.write(tmp_path)
    md = paths["md"].read_text(encoding="utf-8")
    assert "Observed vs null (Euclidean first)" in md and "exactly α·s·⟨ū, Δγ⟩" in md
    assert md.index("| Euclidean") < md.index("| causal")


def test_random_word_rows_fall_back_when_too_few_letter_words():
    toks = ["Ġa1", "Ġb2", "Ġc3", "Ġd4", "Ġcat", "x"]
    v = Vocabulary(toks, np.ones(6, dtype=int), "byte_bpe")
    rows, kind = st.random_word_rows(v, np.ones(6, bool), need=4)
    assert kind == "words" and rows.sum() == 5  # one letter word cannot host 4 tokens
    assert st.random_word_rows(v, np.ones(6, bool), need=1)[1] == "letter words"
    assert st.random_word_rows(v, np.ones(6, bool), need=6)[1] == "normal tokens"
