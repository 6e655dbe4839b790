"""Categorical vectors and hierarchy (Park et al. 2024): estimator, planted structure, nulls, loader.

Expected values come from independent derivations written here: scikit-learn's ``LedoitWolf`` and a
dense ``np.linalg.solve`` for the estimator, planted geometry whose answer is known in closed form,
a brute-force Holm loop, and toy vocabularies for the folder format.
"""

from __future__ import annotations

import numpy as np
import pytest

from linrep.errors import InputError
from linrep.geometry.categorical import (
    category_vectors,
    edge_cosines,
    ledoit_wolf_shrinkage,
    sibling_cosines,
    simplex_singular_values,
)
from linrep.geometry.hierarchy import CategoryTree, analyze_tree, holm
from linrep.llm.hierarchy import load_hierarchy, select_hierarchy
from linrep.llm.vocab import Vocabulary


def reference_vector(X: np.ndarray) -> np.ndarray:
    """ℓ = (ĝᵀm)ĝ with ĝ ∝ Σ⁻¹m, Σ from sklearn's LedoitWolf, solved densely in d dimensions."""
    from sklearn.covariance import LedoitWolf

    m = X.mean(axis=0)
    v = np.linalg.solve(LedoitWolf().fit(X).covariance_, m)
    g = v / np.linalg.norm(v)
    return (g @ m) * g


@pytest.mark.parametrize("n,d", [(7, 40), (60, 12), (12, 12), (3, 200)])
def test_lda_vector_matches_sklearn_ledoit_wolf(n, d):
    from sklearn.covariance import ledoit_wolf_shrinkage as sk_shrinkage

    rng = np.random.default_rng(n * d)
    A = rng.standard_normal((d, d)) * rng.exponential(1.0, d)
    X = rng.standard_normal((n, d)) @ A + 2 * rng.standard_normal(d)
    delta, _ = ledoit_wolf_shrinkage(X - X.mean(axis=0))
    assert delta == pytest.approx(sk_shrinkage(X), abs=1e-12)
    np.testing.assert_allclose(category_vectors(X), reference_vector(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(category_vectors(X, "mean"), X.mean(axis=0))


def test_batched_vectors_equal_one_by_one():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 9, 30)) + 1.0
    np.testing.assert_allclose(
        category_vectors(X), np.stack([reference_vector(x) for x in X]), rtol=1e-9, atol=1e-12
    )


def planted(rng, n_parent_only=40, n_child=30, d=50, a=2.0, b=1.5, tilt=0.0):
    """Parent-only tokens: a·u − (b n_c / n_o)·v + z; child tokens: (a + tilt)·u + b·v + z'.

    The noise z lives in the coordinates ⟂ {u, v} and comes in ± pairs inside each group, so it sums
    to zero per group and is uncorrelated with every group-constant coordinate: the covariance is
    block diagonal with zero variance along u for the parent and along u, v for the child. With
    tilt = 0 the parent's mean has no v part, so Σ_p⁻¹m_p ∝ u and ℓ_parent = a·u; for the child
    Σ_c⁻¹m_c ∝ a·u + b·v, so ℓ_child = a·u + b·v and ℓ_child − ℓ_parent = b·v ⟂ u exactly, with
    cos(ℓ_parent, ℓ_child) = a / √(a² + b²).
    """
    u, v = np.eye(d)[0], np.eye(d)[1]

    def pm_noise(n):
        z = rng.standard_normal((n // 2, d)) * 1.5
        z[:, :2] = 0
        return np.vstack([z, -z])

    own = a * u - (b * n_child / n_parent_only) * v + pm_noise(n_parent_only)
    kid = (a + tilt) * u + b * v + pm_noise(n_child)
    X = np.vstack([own, kid])
    parent = np.arange(n_parent_only + n_child)
    child = np.arange(n_parent_only, n_parent_only + n_child)
    return X, parent, child, u


def test_planted_orthogonality_is_recovered_and_a_tilted_child_is_not_orthogonal():
    rng = np.random.default_rng(0)
    X, parent, child, u = planted(rng)
    lp, lc = category_vectors(X[parent]), category_vectors(X[child])
    np.testing.assert_allclose(lp, 2.0 * u, atol=1e-9)
    diff, cos_pc = edge_cosines(lp, lc)
    assert abs(diff) < 1e-9
    assert cos_pc == pytest.approx(2.0 / np.hypot(2.0, 1.5), abs=1e-9)
    # the metric can fail: a child shifted along u is not orthogonal to its parent's offset
    Xt, parent, child, _ = planted(rng, tilt=1.0)
    diff_t, _ = edge_cosines(category_vectors(Xt[parent]), category_vectors(Xt[child]))
    assert abs(diff_t) > 0.1  # vs 1e-9 without the tilt


def test_sibling_cosines_and_simplex():
    lp = np.array([1.0, 0, 0])
    kids = np.array([[1.0, 1, 0], [1.0, -1, 0], [1.0, 0, 1]])
    np.testing.assert_allclose(sibling_cosines(lp, kids), [0, 0, 0], atol=1e-12)
    sv = simplex_singular_values(kids)
    assert sv[-1] > 0.5  # three affinely independent points
    flat = np.array([[0.0, 0, 0], [1.0, 1, 0], [2.0, 2, 0]])  # collinear: a degenerate simplex
    assert simplex_singular_values(flat)[-1] < 1e-12


def test_holm_matches_a_brute_force_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    order = np.argsort(p)
    ref = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (p.size - rank) * p[i])
        ref[i] = min(1.0, running)
    np.testing.assert_allclose(holm(p), ref)


def planted_tree(seed=0):
    rng = np.random.default_rng(seed)
    X, parent, child, _ = planted(rng)
    other = rng.standard_normal((60, X.shape[1])) + 3 * np.eye(X.shape[1])[5]
    X = np.vstack([X, other, rng.standard_normal((300, X.shape[1]))])
    n0 = parent.size
    tree = CategoryTree(
        names=("parent", "child", "other"),
        members=(parent, child, np.arange(n0, n0 + 60)),
        edges=((0, 1),),
    )
    return X, tree


def test_tree_analysis_is_deterministic_and_shaped():
    X, tree = planted_tree()
    a = analyze_tree(X, tree, n_null=40, n_boot=30, seed=3)
    b = analyze_tree(X, tree, n_null=40, n_boot=30, seed=3)
    assert a.to_json() == b.to_json()
    (e,) = a.edges
    assert (e.parent, e.child, e.n_words) == ("parent", "child", 30)
    assert set(e.orthogonality) == {"subset", "random_set", "shuffled", "unrelated"}
    lo, hi = e.cos_parent_child_ci
    assert lo <= e.cos_parent_child <= hi
    # the planted offset is exactly orthogonal: random token sets and subsets are not
    assert abs(e.cos_parent_childdiff) < 1e-9
    assert e.orthogonality["random_set"].beats and e.orthogonality["shuffled"].beats
    assert e.orthogonality["random_set"].q975 > 0.01
    assert a.summary_nulls["subset"].n == 40


def test_child_outside_its_parent_is_rejected():
    with pytest.raises(InputError, match="not contained"):
        CategoryTree(("a", "b"), (np.arange(5), np.arange(3, 8)), ((0, 1),))


# ------------------------------------------------------------------------------ folder format
def toy_vocab(words):
    tokens = ["<pad>"] + [f"▁{w}" for w in words] + ["▁two words"]
    types = np.ones(len(tokens), dtype=np.int32)
    types[0] = 3
    return Vocabulary(tokens, types, "sentencepiece")


def write_folder(path, cats, edges):
    path.mkdir(parents=True, exist_ok=True)
    for name, words in cats.items():
        (path / f"{name}.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    (path / "hierarchy.txt").write_text("".join(f"{p}\t{c}\n" for p, c in edges), "utf-8")
    return path


ANIMALS = {
    "animal": ["worm", "snail"],
    "mammal": ["cat", "dog", "cow"],
    "bird": ["owl", "hen", "duck"],
}


def test_folder_closure_and_single_token_filter(tmp_path):
    f = write_folder(tmp_path / "h", ANIMALS, [("animal", "mammal"), ("animal", "bird")])
    spec = load_hierarchy(f)
    assert spec.roots == ["animal"] and spec.depth() == 2
    vocab = toy_vocab(["worm", "cat", "dog", "cow", "owl", "hen", "duck"])  # no "snail"
    sel = select_hierarchy(spec, vocab, min_words=3)
    assert sel.tokens["animal"].size == 7 and sel.own_dropped["animal"] == ("snail",)
    assert set(sel.tokens["mammal"]) < set(sel.tokens["animal"])


@pytest.mark.parametrize(
    "edges,cats,match",
    [
        ([("animal", "mammal"), ("mammal", "animal")], ANIMALS, r"hierarchy.txt: line 2: .*cycle"),
        ([("animal", "fish")], ANIMALS, r"hierarchy.txt: line 1: category 'fish' has no file"),
        ([("animal", "mammal")], {**ANIMALS, "mammal": []}, r"mammal.txt: the category is empty"),
    ],
)
def test_bad_folders_fail_in_one_line_naming_the_file(tmp_path, edges, cats, match):
    f = write_folder(tmp_path / "h", cats, edges)
    with pytest.raises(InputError, match=match) as e:
        load_hierarchy(f)
    assert "\n" not in str(e.value)


def test_too_few_single_token_words_names_the_file(tmp_path):
    f = write_folder(tmp_path / "h", ANIMALS, [("animal", "mammal"), ("animal", "bird")])
    vocab = toy_vocab(["worm", "cat", "dog", "cow", "owl"])  # bird keeps 1 word
    with pytest.raises(InputError, match=r"bird.txt: category 'bird' has 1 single-token") as e:
        select_hierarchy(load_hierarchy(f), vocab, min_words=3)
    assert "\n" not in str(e.value) and "add" in str(e.value)


def test_builtin_hierarchy_meets_the_issue():
    spec = load_hierarchy("builtin")
    assert len(spec.roots) >= 4 and len(spec.names) >= 20 and spec.depth() >= 3
    for name in spec.names:  # lower-case single words, no word in two unrelated files
        assert all(w.isalpha() and w.islower() for w in spec.words[name])
    seen: dict[str, str] = {}
    for name in spec.names:
        for w in spec.words[name]:
            assert w not in seen, f"'{w}' is in {seen.get(w)}.txt and {name}.txt"
            seen[w] = name


def test_vectors_in_the_span_of_the_rows_give_the_same_cosines():
    """Σ_w maps span{rows} to itself, so working in a basis of the span (with the ambient d in the
    Ledoit–Wolf formula) must give the same ℓ up to that isometry."""
    from linrep.geometry.categorical import subspace_coordinates

    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 200)) @ np.diag(rng.exponential(1.0, 200)) + 1.0
    Y = subspace_coordinates(X)  # (30, 30)
    a, b = np.arange(30), np.arange(5, 17)
    full = edge_cosines(category_vectors(X[a]), category_vectors(X[b]))
    local = edge_cosines(category_vectors(Y[a], dim=200), category_vectors(Y[b], dim=200))
    np.testing.assert_allclose(local, full, atol=1e-10)


def test_jackknife_interval_matches_the_sampling_spread():
    """Draw many independent parent/child samples from one population; the spread of the edge
    statistics across samples is the truth the one-sample jackknife standard error must match."""
    from linrep.geometry.hierarchy import _jackknife_sd, _Parent

    d, n_own, n_child = 30, 50, 25
    mean_own, mean_child = np.zeros(d), np.zeros(d)
    mean_own[0], mean_child[0], mean_child[1] = 2.0, 2.0, 1.5
    scale = np.linspace(0.5, 1.5, d)

    def sample(rng):
        own = mean_own + rng.standard_normal((n_own, d)) * scale
        kid = mean_child + rng.standard_normal((n_child, d)) * scale
        return np.vstack([own, kid])

    parent, child = np.arange(n_own + n_child), np.arange(n_own, n_own + n_child)
    rng = np.random.default_rng(0)
    stats = np.array(
        [
            edge_cosines(category_vectors(X[parent]), category_vectors(X[child]))
            for X in (sample(rng) for _ in range(300))
        ]
    )
    true_sd = stats.std(axis=0, ddof=1)
    tree = CategoryTree(("p", "c"), (parent, child), ((0, 1),))
    est = np.array(
        [_jackknife_sd(_Parent(sample(rng), tree, 0, "lda"), child, 200, rng) for _ in range(8)]
    ).mean(axis=0)
    np.testing.assert_array_less(est, 1.5 * true_sd)
    np.testing.assert_array_less(true_sd, 1.5 * est)
