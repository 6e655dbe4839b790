"""End-to-end: ``linrep llm`` on the real SmolLM2-135M (offline wheel), as CI runs it (~1-2 min).

One full run (built-in word pairs, three built-in context files cut to 8 contexts per side, smaller
nulls) is shared by the tests; its cache lives in a temporary folder, so the GGUF → float32 model
conversion is exercised too. Checks are against the model itself (logits recomputed from γ and the
hidden state) and against generous bounds that random structure cannot meet.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from linrep.cli import main
from smollm2 import require_smollm2

pytestmark = [pytest.mark.llm, pytest.mark.slow]

require_smollm2()

CONTEXTS = ("male - female", "verb - Ved", "country - capital")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from linrep.llm.contexts import builtin_contexts_dir

    root = tmp_path_factory.mktemp("smollm2")
    ctx = root / "contexts"
    ctx.mkdir()
    for name in CONTEXTS:
        lines = (builtin_contexts_dir() / f"[{name}].tsv").read_text(encoding="utf-8").splitlines()
        base = [x for x in lines[1:] if x.startswith("base\t")][:8]
        target = [x for x in lines[1:] if x.startswith("target\t")][:8]
        (ctx / f"[{name}].tsv").write_text("\n".join([lines[0], *base, *target]) + "\n", "utf-8")
    args = [
        "llm",
        "--model",
        "smollm2-135m",
        "--contexts",
        str(ctx),
        "--out",
        str(root / "out"),
        "--cache",
        str(root / "cache"),
        "--quiet",
        "--set",
        "llm.n_random_pairs=10000",
        "--set",
        "llm.n_shuffles=3",
        "--set",
        "llm.n_boot=200",
        "--set",
        "llm.analogy_queries=5",
        "--set",
        "llm.n_null_draws=60",
        "--set",
        "llm.n_random_inner=8",
        "--set",
        "llm.n_sign_flips=300",
        "--set",
        "llm.n_permutations=300",
        "--steer",
        "male - female",
        "--set",
        "llm.steer_layers=[30]",
        "--set",
        "llm.steer_alphas=[0.0, 0.3]",
    ]
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        rc = main(args)
    (root / "stdout.txt").write_text(printed.getvalue(), encoding="utf-8")
    (root / "stderr.txt").write_text(errors.getvalue(), encoding="utf-8")
    res = json.loads((root / "out" / "results.json").read_text())["results"] if rc == 0 else None
    return root, rc, res, args


def test_run_writes_the_promised_results(run):
    root, rc, res, _ = run
    assert rc == 0
    assert res["model"] == "smollm2-135m"
    assert len(res["concepts"]) >= 20
    for name in res["concepts"]:
        e = res["per_concept"][name]
        assert e["n_pairs"] >= 3
        assert set(e["loo_cosine"]) == {"euclidean", "causal"}
    for r in res["skipped_concepts"].values():
        assert r["n_pairs"] < 3
    for ip in ("euclidean", "causal", "random"):
        k = len(res["concepts"])
        assert np.asarray(res["cosine_matrix"][ip]).shape == (k, k)
        assert 0 <= res["mean_abs_offdiag"][ip] < 1
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in html and "Intervention" in html
    # the last line names the published folder, never the staging one (.out.partial)
    printed = (root / "stdout.txt").read_text(encoding="utf-8")
    assert f"wrote {root / 'out' / 'report.html'} and results.json" in printed.splitlines()[-1]
    assert ".partial" not in printed
    # --quiet: no progress bar, not even transformers' GGUF conversion (the cache starts empty)
    assert "Converting" not in (root / "stderr.txt").read_text(encoding="utf-8")


def test_concepts_are_linear_and_distinct(run):
    _, _, res, _ = run
    per = res["per_concept"]
    # same-concept structure (measured ≈ 0.43 / 0.44) far above what unrelated directions share
    assert per["male - female"]["loo_cosine"]["causal"] > 0.25
    assert per["male - female"]["loo_cosine"]["euclidean"] > 0.25
    assert per["male - female"]["loo_projection"]["causal"]["p_value"] < 0.01
    mean_loo = np.mean([per[n]["loo_cosine"]["causal"] for n in res["concepts"]])
    assert mean_loo > 3 * res["mean_abs_offdiag"]["causal"]
    b = res["block_structure"]["causal"]
    assert b["within_abs_cosine"] > 2 * b["between_abs_cosine"]


def test_embedding_side_and_intervention(run):
    _, _, res, _ = run
    emb = res["embedding"]
    assert emb["layer"] == emb["n_layers"] == 30
    for name in CONTEXTS:
        a = emb["per_concept"][name]["alignment"]["causal"]
        assert a["cosine"] > 5 * a["random_mean_abs"]
        assert emb["per_concept"][name]["probe_accuracy"] >= 0.75
    iv = res["intervention"]
    assert iv["per_concept"]["male - female"]["ratio"] > 3
    wp = iv["word_probabilities"]["male - female"]
    assert wp["mean_p_target"][-1] > wp["mean_p_target"][0]
    rows = iv["topk"]["male - female"]["rows"]
    assert rows[0]["tokens"] != rows[-1]["tokens"]


def test_statistics_against_an_independent_computation(run):
    """results.json's statistics (issue 11 §5) against plain loops written here on SmolLM2's γ."""
    from linrep.llm import load_unembedding, resolve_model
    from linrep.llm.vocab import byte_to_unicode

    root, _, res, _ = run
    st = res["statistics"]
    assert st["inner_product_order"] == ["euclidean", "causal", "random"]
    for ip in ("euclidean", "causal", "random"):
        null = res["null_mean_abs_offdiag"][ip]
        assert null["observed"] == pytest.approx(res["mean_abs_offdiag"][ip], abs=1e-9)
        assert null["n_null"] == 60 and null["q025"] <= null["null_mean"] <= null["q975"]
    unemb = load_unembedding(resolve_model("smollm2-135m", root / "cache"), root / "cache")
    g = unemb.gamma.astype(np.float64)
    # candidate words: 'Ġ' + letters after decoding GPT-2's byte alphabet, normal tokens only
    inv = {c: b for b, c in byte_to_unicode().items()}
    words = []
    for i, t in enumerate(unemb.tokens):
        if unemb.token_type[i] == 1 and t.startswith("Ġ"):
            text = bytes(inv[c] for c in t[1:] if c in inv).decode("utf-8", "replace")
            words.append(i) if text.isalpha() else None
    assert st["n_word_rows"] == len(words)
    sizes = [res["per_concept"][n]["n_pairs"] for n in res["concepts"]]
    rng = np.random.default_rng(123)
    draws = []
    for _ in range(40):  # Euclidean null of mean |offdiag| from independent random word pairs
        dirs = []
        for P in sizes:
            a, b = rng.choice(words, size=(2, P))
            keep = a != b
            m = (g[b[keep]] - g[a[keep]]).mean(axis=0)
            dirs.append(m / np.linalg.norm(m))
        C = np.abs(np.array(dirs) @ np.array(dirs).T)
        draws.append(C[~np.eye(len(sizes), dtype=bool)].mean())
    mine = res["null_mean_abs_offdiag"]["euclidean"]
    se = np.hypot(np.std(draws) / np.sqrt(40), mine["null_std"] / np.sqrt(60))
    assert abs(np.mean(draws) - mine["null_mean"]) < 4 * se
    # the LOO test statistic: each pair against the pairs sharing no word with it
    from linrep.llm import load_concepts, select_pairs

    c = next(
        select_pairs(x, unemb.vocab) for x in load_concepts("builtin") if x.name == "male - female"
    )
    D = g[c.pairs[:, 1]] - g[c.pairs[:, 0]]
    proj = []
    for k, (y0, y1) in enumerate(c.pairs):
        keep = [j for j, p in enumerate(c.pairs) if not {y0, y1} & set(p.tolist())]
        s = D[keep].sum(axis=0)
        proj.append(D[k] @ s / np.linalg.norm(s))
    t = st["loo_test"]["euclidean"]["male - female"]
    assert t["statistic"] == pytest.approx(np.mean(proj), rel=1e-6)
    assert t["p_value"] == pytest.approx(1 / 301) and t["z"] > 3  # above every flip
    assert t["p_holm"] == pytest.approx(min(1.0, len(res["concepts"]) / 301))  # Holm's floor
    # the final-layer intervention is the same number as the LOO statistic, times s
    on = st["intervention"]["euclidean"]["male - female"]["on_target"]
    assert on == pytest.approx(st["intervention_scale"]["euclidean"] * t["statistic"], rel=1e-9)
    for name in CONTEXTS:
        a = st["alignment_null"]["causal"][name]
        assert a["cosine"] > a["null_q95"] and a["n_perm"] == 300
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    assert html.index("Observed vs null (Euclidean first)") < html.index("Per concept")


def test_gamma_and_hidden_state_give_the_models_logits(run):
    import torch

    from linrep.llm import LoadedLM, ModelCache, load_causal_lm, load_unembedding, resolve_model

    root = run[0]
    cache = ModelCache(root / "cache")
    src = resolve_model("smollm2-135m", cache)
    unemb = load_unembedding(src, cache, progress=False)
    model, tok = load_causal_lm(src, cache, progress=False)  # the cached float32 copy
    lm = LoadedLM(model, tok)

    def last_token_states(texts, batch_size=16):
        return lm.hidden_states(texts, [lm.n_layers], batch_size=batch_size)[0]

    text = "The capital of France is"
    f = last_token_states([text])[0]
    with torch.inference_mode():
        logits = model(**tok([text], return_tensors="pt")).logits[0, -1].double().numpy()
    mine = unemb.gamma.astype(np.float64) @ f
    np.testing.assert_allclose(mine, logits, atol=1e-3)
    top3 = [unemb.vocab.display(i) for i in np.argsort(-mine)[:3]]
    assert " Paris" in top3
    # batching (length-sorted, right-padded) returns each text's own last-token state, in order
    texts = ["My father's brother is my", "Hi", text, "One"]
    F = last_token_states(texts, batch_size=2)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(F[i], last_token_states([t])[0], atol=1e-3)
    # the float32 copy is a Hugging Face folder: its γ and vocabulary read back the same
    hf = resolve_model(root / "cache" / "hf-float32" / src.sha256, root / "cache")
    assert hf.kind == "hf"
    u2 = load_unembedding(hf, ModelCache(None), progress=False)
    np.testing.assert_array_equal(u2.gamma, unemb.gamma)
    same = [
        a == b for a, b, t in zip(u2.tokens, unemb.tokens, unemb.token_type, strict=True) if t == 1
    ]
    assert np.mean(same) > 0.99


def test_layer_out_of_range_and_not_a_model(run, tmp_path, capsys):
    root, _, _, args = run
    out_at = args.index("--out")
    bad = [*args[:out_at], "--out", str(tmp_path / "o"), *args[out_at + 2 :], "--layer", "31"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "--layer 31 is out of range for a model with 30 layers" in err
    folder = tmp_path / "junk"
    folder.mkdir()
    shutil.copy(root / "out" / "results.json", folder / "results.json")
    assert main(["llm", "--model", str(folder), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "is not a model" in capsys.readouterr().err


def test_steer_flag_measures_cross_fitted_steering(run):
    root, _, res, _ = run
    (curve,) = res["steering"]
    assert curve["concept"] == "male - female" and curve["layers"] == [30]
    assert curve["on_target"][0][0] == 0 and curve["on_target"][0][1] > 0
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    assert "Steering through the network" in html
