"""Hierarchies on real vocabularies: the extension, the report section, and the estimator on real
models against an independent implementation written here (numpy covariance + eigh whitening +
scikit-learn's LedoitWolf + a dense solve), for a hierarchy folder linrep does not ship.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from linrep.llm.hierarchy import HierarchyOptions, hierarchy_extension, load_hierarchy
from linrep.llm.unembedding import Unembedding

UNSEEN = {
    "body": ["head", "neck", "back", "chest", "skin", "hair", "face", "hip"],
    "organ": ["heart", "lung", "liver", "kidney", "brain", "stomach", "bladder", "spleen"],
    "limb": ["arm", "leg", "hand", "foot", "finger", "toe", "knee", "elbow", "wrist", "thumb"],
    "emotion": ["emotion", "feeling", "mood"],
    "positive": ["joy", "happiness", "love", "hope", "pride", "delight", "bliss"],
    "negative": ["anger", "fear", "sadness", "grief", "shame", "guilt", "envy", "rage"],
}
EDGES = [("body", "organ"), ("body", "limb"), ("emotion", "positive"), ("emotion", "negative")]
FAST = HierarchyOptions(n_null=20, n_boot=20, pool_size=512, min_words=3)


def write_folder(path, cats=UNSEEN, edges=EDGES):
    path.mkdir(parents=True, exist_ok=True)
    for name, words in cats.items():
        (path / f"{name}.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (path / "hierarchy.txt").write_text("".join(f"{p}\t{c}\n" for p, c in edges), "utf-8")
    return path


def synthetic_unembedding(seed=0, d=24, n_filler=400) -> Unembedding:
    """Every word of UNSEEN as a ▁token with a planted category offset, plus filler tokens."""
    rng = np.random.default_rng(seed)
    words = [w for ws in UNSEEN.values() for w in ws]
    offsets = {n: 2 * rng.standard_normal(d) for n in UNSEEN}
    rows = []
    for name, ws in UNSEEN.items():
        root = "body" if name in ("body", "organ", "limb") else "emotion"
        for _ in ws:
            rows.append(
                offsets[root] + (offsets[name] if name != root else 0) + rng.standard_normal(d)
            )
    fill = [f"▁f{i}x" for i in range(n_filler)]
    gamma = np.vstack([rows, rng.standard_normal((n_filler, d))]).astype(np.float32)
    tokens = [f"▁{w}" for w in words] + fill
    return Unembedding(gamma, tokens, np.ones(len(tokens), np.int32), "llama", "toy", "0" * 64)


def test_extension_result_json_and_report(tmp_path):
    from linrep.geometry import CausalInnerProduct
    from linrep.report import Report

    unemb = synthetic_unembedding()
    causal = CausalInnerProduct().fit(unemb.gamma)
    ext = hierarchy_extension(write_folder(tmp_path / "h"), FAST)
    res = ext(SimpleNamespace(unembedding=unemb, inner={"causal": causal}))
    js = json.loads(json.dumps(res.to_json()))  # JSON-able
    assert js["estimator"] == "lda" and set(js["by_estimator"]) == {"lda", "mean"}
    edge = js["edges"][0]
    for key in ("parent", "child", "n_words", "cos_parent_childdiff", "cos_parent_child"):
        assert key in edge
    assert edge["orthogonality"]["subset"]["n"] == FAST.n_null
    assert {e["child"]: e["n_words"] for e in js["edges"]}["organ"] == 8
    rep = Report("hierarchy")
    res.add_to_report(rep)
    paths = rep.write(tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "hierarchy_tree.png").is_file()
    assert "organ" in paths["md"].read_text(encoding="utf-8")


def test_bad_folder_fails_before_any_model_is_touched(tmp_path):
    from linrep.errors import InputError

    f = write_folder(tmp_path / "h", edges=[*EDGES, ("organ", "body")])
    with pytest.raises(InputError, match="hierarchy.txt: line 5: .*cycle"):
        hierarchy_extension(f)


# ----------------------------------------------------------------------------- real models
def independent_edge_cosines(unemb, spec) -> dict[tuple[str, str], tuple[float, float]]:
    """Park et al.'s estimator from scratch: the covariance of the normal tokens from raw first and
    second moments (Σ x, Σ xxᵀ in float64 chunks), eigh whitening, sklearn's LedoitWolf, a dense
    solve."""
    from sklearn.covariance import LedoitWolf

    rows = np.flatnonzero(unemb.normal)
    d = unemb.gamma.shape[1]
    s1, s2 = np.zeros(d), np.zeros((d, d))
    for k in range(0, rows.size, 32768):
        x = unemb.gamma[rows[k : k + 32768]].astype(np.float64)
        s1 += x.sum(axis=0)
        s2 += x.T @ x
    n = rows.size
    mu = s1 / n
    cov = (s2 - n * np.outer(mu, mu)) / (n - 1)
    lam, U = np.linalg.eigh(cov)
    W = (U / np.sqrt(lam)) @ U.T  # Cov^{-1/2}
    vocab = unemb.vocab

    def ell(words):
        ids = sorted({vocab.token_id(w) for w in words} - {None})
        X = (unemb.gamma[ids].astype(np.float64) - mu) @ W
        m = X.mean(axis=0)
        v = np.linalg.solve(LedoitWolf().fit(X).covariance_, m)
        g = v / np.linalg.norm(v)
        return (g @ m) * g

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    out = {}
    for p, c in spec.edges:
        lp, lc = ell(spec.closure_words(p)), ell(spec.closure_words(c))
        out[(p, c)] = (cos(lp, lc - lp), cos(lp, lc))
    return out


def _model_or_skip(name):
    from linrep.errors import LinrepError
    from linrep.llm import load_unembedding, resolve_model

    try:
        source = resolve_model(name)
    except LinrepError as e:  # the offline wheel is not installed
        pytest.skip(str(e))
    return load_unembedding(source, progress=False)


@pytest.mark.llm
def test_smollm2_edges_match_an_independent_implementation(tmp_path):
    from linrep.llm import fitted_inner_products

    unemb = _model_or_skip("smollm2-135m")
    spec = load_hierarchy(write_folder(tmp_path / "h"))
    causal = fitted_inner_products(unemb, ("causal",))["causal"]
    res = hierarchy_extension(spec.folder, FAST)(
        SimpleNamespace(unembedding=unemb, inner={"causal": causal})
    )
    ref = independent_edge_cosines(unemb, spec)
    for e in res.primary.edges:
        a, b = ref[(e.parent, e.child)]
        assert e.cos_parent_childdiff == pytest.approx(a, abs=1e-6)
        assert e.cos_parent_child == pytest.approx(b, abs=1e-6)


@pytest.mark.llm
@pytest.mark.slow
def test_gemma_cli_hierarchy_matches_an_independent_implementation(tmp_path, capsys):
    """The issue's done-when: ``linrep llm --hierarchy DIR --contexts none`` on Gemma 3 270M gives
    the independent estimator's edge cosines (within 0.03) and reports the random-subset null."""
    from linrep.cli import main

    unemb = _model_or_skip("gemma-3-270m")
    folder = write_folder(tmp_path / "h")
    out = tmp_path / "out"
    sets = ["llm.n_random_pairs=2000", "llm.n_shuffles=0", "llm.analogy_queries=0"]
    sets += ["llm.n_boot=50", "llm.hierarchy_n_null=30"]
    args = ["llm", "--model", "gemma-3-270m", "--hierarchy", str(folder), "--contexts", "none"]
    args += ["--out", str(out), "--quiet", *[x for s in sets for x in ("--set", s)]]
    assert main(args) == 0, capsys.readouterr().err
    h = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]["hierarchy"]
    ref = independent_edge_cosines(unemb, load_hierarchy(folder))
    assert len(h["edges"]) == len(EDGES)
    for e in h["edges"]:
        a, b = ref[(e["parent"], e["child"])]
        assert abs(e["cos_parent_childdiff"] - a) < 0.03 and abs(e["cos_parent_child"] - b) < 0.03
        sub = e["orthogonality"]["subset"]
        assert sub["n"] == 30 and 0 <= sub["q025"] <= sub["mean"] <= sub["q975"]
    assert h["summary_nulls"]["subset"]["n"] == 30
    assert "hierarchy_tree.png" in {p.name for p in (out / "figures").iterdir()}


@pytest.mark.llm
@pytest.mark.parametrize(
    "case,match",
    [
        ("cycle", "hierarchy.txt: line 5: the edge organ → body closes the cycle"),
        ("no_file", "hierarchy.txt: line 5: category 'spleen' has no file spleen.txt"),
        ("empty", "limb.txt: the category is empty"),
        ("too_few", "positive.txt: category 'positive' has 2 single-token words"),
    ],
)
def test_cli_bad_hierarchy_is_one_line_naming_the_file(tmp_path, capsys, case, match):
    from linrep.cli import main

    _model_or_skip("smollm2-135m")
    cats, edges = dict(UNSEEN), list(EDGES)
    if case == "cycle":
        edges.append(("organ", "body"))
    elif case == "no_file":
        edges.append(("organ", "spleen"))
    elif case == "empty":
        cats["limb"] = []
    else:
        cats["positive"] = ["joy", "love", "qzxv", "vvkrq"]
    folder = write_folder(tmp_path / "h", cats, edges)
    args = ["llm", "--model", "smollm2-135m", "--hierarchy", str(folder), "--contexts", "none"]
    rc = main([*args, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("linrep: error:") and "\n" not in err
    assert match in err
    assert "delete" in err or "add" in err or "fix" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_cli_hierarchy_reads_only_the_unembedding_by_default(tmp_path, capsys, monkeypatch):
    """``linrep llm --hierarchy DIR`` without --contexts/--layer/--steer runs no forward pass: a
    GGUF holding only γ (no network to load) is enough, and the word pairs are still measured."""
    pytest.importorskip("gguf")
    from linrep.cli import main
    from test_llm import write_gguf, write_pairs

    monkeypatch.setenv("LINREP_CACHE", str(tmp_path / "cache"))
    u = synthetic_unembedding()
    model = write_gguf(tmp_path / "toy.gguf", u.vocab.tokens, u.token_type, u.gamma, "llama")
    for a, b in (("organ", "limb"), ("positive", "negative")):
        write_pairs(tmp_path / "pairs", f"{a} - {b}", list(zip(UNSEEN[a], UNSEEN[b])))
    sets = ["llm.n_random_pairs=500", "llm.n_boot=20", "llm.hierarchy_n_null=20"]
    sets += ["llm.hierarchy_min_words=3", "llm.n_null_draws=20", "llm.n_sign_flips=50"]
    args = ["llm", "--model", str(model), "--concepts", str(tmp_path / "pairs")]
    args += ["--hierarchy", str(write_folder(tmp_path / "h")), "--out", str(tmp_path / "out")]
    assert main([*args, "--quiet", *[x for s in sets for x in ("--set", s)]]) == 0, (
        capsys.readouterr().err
    )
    res = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["results"]
    assert len(res["hierarchy"]["edges"]) == len(EDGES) and res["embedding"] is None
    assert set(res["concepts"]) == {"organ - limb", "positive - negative"}
    assert res["timings"]["hierarchy_s"] > 0 and "embedding_side_s" not in res["timings"]


def test_tree_rows_keep_trees_whole_and_rows_narrow():
    """Every category once, each tree in one row, no row wider than the limit unless one tree is."""
    from linrep.llm.hierarchy_report import tree_rows

    spec = load_hierarchy("builtin")
    names = list(spec.names)
    edges = [tuple(e) for e in spec.edges]
    rows = tree_rows(names, edges, max_leaves=12)
    assert sorted(n for r in rows for n in r) == sorted(names)
    for p, c in edges:  # a child sits in its parent's row
        assert any(p in r and c in r for r in rows)
    parents = {p for p, _ in edges}
    for r in rows:
        leaves = [n for n in r if n not in parents]
        roots = [n for n in r if all(c != n for _, c in edges)]
        assert len(leaves) + 0.6 * (len(roots) - 1) <= 12 or len(roots) == 1
    assert len(rows) > 1  # the built-in forest (5 trees, 23 leaves) does not fit one row
