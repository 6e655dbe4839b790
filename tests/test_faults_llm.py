"""Fault suite, real-model command: damaged cache entries, hostile and colliding concept names,
a single concept, bad sizes. A tiny planted GGUF model (tests/test_llm.py's helpers) stands in for a
real one, so every case runs ``linrep llm`` end to end in a second or two (``--contexts none``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultkit import assert_one_line_error, assert_unchanged, call, snapshot
from linrep.report.render import blank_fraction, find_chromium, screenshot
from test_faults_report import _assert_safe_html

pytest.importorskip("gguf")
from test_llm import planted_model, write_gguf, write_pairs  # noqa: E402

HOSTILE_CONCEPTS = [
    "<script>alert(1)<\\script> - x",
    "a $\\frac{$ - b",
    "**x** - [y](javascript:alert(1))",
]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """toy.gguf with three planted concepts in pairs/; the cache in c/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINREP_CACHE", str(tmp_path / "c"))
    tokens, types, gamma, concepts, _ = planted_model(seed=3, n_filler=60)
    write_gguf(tmp_path / "toy.gguf", tokens, types, gamma)
    for name, pairs in concepts.items():
        write_pairs(tmp_path / "pairs", name, pairs)
    tmp_path.joinpath("concepts.json").write_text(json.dumps(concepts))
    return tmp_path


def _llm(*extra: str) -> tuple[int, str, str]:
    base = ["llm", "--model", "toy.gguf", "--contexts", "none", "--quiet"]
    return call([*base, "--set", "llm.n_random_pairs=500", "--set", "llm.n_boot=50", *extra])


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["results"]


@pytest.mark.parametrize("entry", ["gamma", "covariance"])
def test_a_damaged_cache_entry_is_detected_rebuilt_and_noted(toy, entry):
    code, _, err = _llm("--concepts", "pairs", "--out", "clean")
    assert code == 0, err
    (victim,) = [p for p in (toy / "c" / entry).glob("*/*") if p.name != "linrep_entry.json"][:1]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte: still a loadable file, wrong numbers
    victim.write_bytes(bytes(data))
    code, _, err = _llm("--concepts", "pairs", "--out", "again")
    assert code == 0, err
    clean, again = _results(toy / "clean"), _results(toy / "again")
    assert again["mean_abs_offdiag"] == clean["mean_abs_offdiag"]  # the damage was not used
    assert "checksum mismatch" in json.dumps(again["notes"])  # and the run says so
    code, _, err = _llm("--concepts", "pairs", "--out", "third")
    assert code == 0 and "checksum mismatch" not in json.dumps(_results(toy / "third")["notes"])


def test_hostile_concept_and_model_names_give_a_safe_report(toy):
    concepts = json.loads((toy / "concepts.json").read_text())
    for bad, pairs in zip(HOSTILE_CONCEPTS, concepts.values(), strict=True):
        write_pairs(toy / "hostile", bad, pairs)
    model = toy / "[m](javascript:alert(1)) <b>x.gguf"  # the model's name comes from its file
    model.hardlink_to(toy / "toy.gguf")
    code, _, err = call(
        ["llm", "--model", str(model), "--contexts", "none", "--quiet", "--concepts", "hostile"]
        + ["--out", "o", "--set", "llm.n_random_pairs=500", "--set", "llm.n_boot=50"]
    )
    assert code == 0, err
    page = (toy / "o" / "report.html").read_text()
    _assert_safe_html(page)
    assert "&lt;b&gt;x" in page  # the name is shown, as text
    assert "<b>x" not in page and "javascript:" not in page.replace("(javascript:alert(1))", "")
    if find_chromium() is not None:  # and it renders in a real browser
        png = screenshot(toy / "o" / "report.html", toy / "s.png", width=1400, height=1600)
        assert blank_fraction(png) < 0.97


def test_a_folder_with_a_single_concept(toy):
    concepts = json.loads((toy / "concepts.json").read_text())
    write_pairs(toy / "one", "male - female", concepts["male - female"])
    code, _, err = _llm("--concepts", "one", "--out", "o")
    if code:
        assert_one_line_error(code, err, "concept")
    else:
        assert _results(toy / "o")["concepts"] == ["male - female"]


def test_concept_files_naming_one_concept_twice_are_refused(toy):
    concepts = json.loads((toy / "concepts.json").read_text())
    write_pairs(toy / "pairs", "Male -  Female", concepts["male - female"])
    before = snapshot(toy)
    code, _, err = _llm("--concepts", "pairs", "--out", "o")
    assert_one_line_error(code, err, "male - female", "Male -  Female")
    assert_unchanged(before, snapshot(toy))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("llm.batch_size", "0"),
        ("llm.n_random_pairs", "0"),
        ("llm.top_k", "-1"),
        ("llm.n_boot", "1e400"),
        ("llm.alphas", "[nan]"),
        ("llm.seed", "-3"),
    ],
)
def test_bad_sizes_name_their_key(toy, key, value):
    before = snapshot(toy)
    code, _, err = _llm("--concepts", "pairs", "--out", "o", "--set", f"{key}={value}")
    assert_one_line_error(code, err, key)
    assert_unchanged(before, snapshot(toy))


def test_two_model_paths_with_the_same_folder_name_keep_both(toy):
    for parent in ("a", "b"):
        (toy / parent / "model").mkdir(parents=True)
        (toy / "toy.gguf").link_to(toy / parent / "model" / "toy.gguf")
    code, _, err = call(
        ["llm", "--model", "a/model/toy.gguf", "--model", "b/model/toy.gguf", "--contexts", "none"]
        + ["--concepts", "pairs", "--out", "cmp", "--quiet", "--set", "llm.n_random_pairs=500"]
    )
    if code:
        assert_one_line_error(code, err, "a/model", "b/model")
    else:
        subfolders = sorted(p.name for p in (toy / "cmp").iterdir() if p.is_dir())
        assert len([s for s in subfolders if "toy" in s]) == 2, subfolders
