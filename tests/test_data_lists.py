"""Checks of linrep's shipped concept data (word pairs and paired contexts).

Fast and model-free: the files are read through ``importlib.resources`` exactly as the package ships
them, and every rule of ``src/linrep/data/SOURCES.md`` is checked independently of any loader code.
"""

from __future__ import annotations

import importlib.resources
import re
import unicodedata

import pytest

# Park et al.'s 27 categories (arXiv 2311.03658), with the minimum pair counts documented in
# SOURCES.md. Every one of them must ship.
MIN_PAIRS: dict[str, int] = {
    "[verb - 3pSg]": 150,
    "[verb - Ving]": 150,
    "[verb - Ved]": 150,
    "[Ving - 3pSg]": 150,
    "[Ving - Ved]": 150,
    "[3pSg - Ved]": 150,
    "[verb - V + able]": 50,
    "[verb - V + er]": 50,
    "[verb - V + tion]": 60,
    "[verb - V + ment]": 40,
    "[adj - un + adj]": 50,
    "[adj - adj + ly]": 60,
    "[small - big]": 40,
    "[thing - color]": 60,
    "[thing - part]": 60,
    "[country - capital]": 80,
    "[pronoun - possessive]": 15,
    "[male - female]": 60,
    "[lower - upper]": 100,
    "[noun - plural]": 100,
    "[adj - comparative]": 60,
    "[adj - superlative]": 60,
    "[frequent - infrequent]": 60,
    "[English - French]": 150,
    "[French - German]": 150,
    "[French - Spanish]": 150,
    "[German - Spanish]": 150,
}
MIN_CONTEXT_CONCEPTS = 8
MIN_CONTEXTS_PER_SIDE = 20
NAME_RE = re.compile(r"^\[[^\[\]]+ - [^\[\]]+\]$")


def _data_dir(sub: str):
    return importlib.resources.files("linrep").joinpath("data", sub)


def _read_text(entry) -> str:
    raw = entry.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), f"{entry.name}: UTF-8 BOM"
    text = raw.decode("utf-8")  # raises on invalid UTF-8
    assert "\r" not in text, f"{entry.name}: CR line endings"
    assert text.endswith("\n"), f"{entry.name}: last line must end with a newline"
    return text


def _load_pairs() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for entry in _data_dir("word_pairs").iterdir():
        if not entry.name.endswith(".txt"):
            continue
        pairs = []
        for lineno, line in enumerate(_read_text(entry).split("\n")[:-1], start=1):
            fields = line.split("\t")
            where = f"{entry.name}:{lineno}"
            assert len(fields) == 2, f"{where}: expected exactly 2 tab-separated fields: {line!r}"
            for w in fields:
                assert w, f"{where}: empty field"
                assert w == w.strip(), f"{where}: surrounding whitespace in {w!r}"
                assert not any(c.isspace() for c in w), f"{where}: whitespace inside {w!r}"
                assert unicodedata.is_normalized("NFC", w), f"{where}: {w!r} is not NFC"
            pairs.append((fields[0], fields[1]))
        out[entry.name[: -len(".txt")]] = pairs
    return out


def _load_contexts() -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list[tuple[str, str, str]]] = {}
    for entry in _data_dir("contexts").iterdir():
        if not entry.name.endswith(".tsv"):
            continue
        lines = _read_text(entry).split("\n")[:-1]
        assert lines[0] == "side\tword\tcontext", f"{entry.name}: bad header {lines[0]!r}"
        rows = []
        for lineno, line in enumerate(lines[1:], start=2):
            fields = line.split("\t")
            where = f"{entry.name}:{lineno}"
            assert len(fields) == 3, f"{where}: expected 3 tab-separated fields: {line!r}"
            side, word, context = fields
            assert side in ("base", "target"), f"{where}: side must be base or target, got {side!r}"
            assert word and word == word.strip() and " " not in word, f"{where}: bad word {word!r}"
            assert context == context.strip() and context, f"{where}: empty context or edge space"
            assert unicodedata.is_normalized("NFC", context), f"{where}: context is not NFC"
            rows.append((side, word, context))
        out[entry.name[: -len(".tsv")]] = rows
    return out


PAIRS = _load_pairs()
CONTEXTS = _load_contexts()


def test_all_27_categories_ship_and_nothing_else():
    assert len(PAIRS) >= 25
    assert set(MIN_PAIRS) <= set(PAIRS), f"missing: {sorted(set(MIN_PAIRS) - set(PAIRS))}"
    for name in PAIRS:
        assert NAME_RE.match(name), f"file name {name!r} is not in Park's '[base - target]' form"


@pytest.mark.parametrize("concept", sorted(MIN_PAIRS))
def test_pairs_are_clean_and_numerous(concept):
    pairs = PAIRS[concept]
    assert len(pairs) >= MIN_PAIRS[concept], f"{concept}: {len(pairs)} < {MIN_PAIRS[concept]}"
    assert len(set(pairs)) == len(pairs), f"{concept}: duplicate pairs"
    same = [p for p in pairs if p[0] == p[1]]
    assert not same, f"{concept}: base == target in {same}"


def test_documented_minimums_match_the_checked_minimums():
    """SOURCES.md's definitions table states each concept's minimum; it must agree with MIN_PAIRS."""
    text = _read_text(importlib.resources.files("linrep").joinpath("data", "SOURCES.md"))
    text = text.split("## Relation definitions", 1)[1].split("\n## ", 1)[0]
    documented = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^\| `(\[[^`]+\])` \|.*\| (\d+) \|$", text, flags=re.MULTILINE)
    }
    assert documented == MIN_PAIRS


def test_inflection_files_are_consistent_with_one_verb_table():
    """The six verb files describe one table: composing verb→Ving with Ving→X gives verb→X."""
    ving = dict(PAIRS["[verb - Ving]"])
    third = dict(PAIRS["[verb - 3pSg]"])
    past = dict(PAIRS["[verb - Ved]"])
    assert len(ving) == len(PAIRS["[verb - Ving]"]), "a verb has two -ing forms"
    for v, s in third.items():
        assert (ving[v], s) in set(PAIRS["[Ving - 3pSg]"])
    for v, d in past.items():
        assert (ving[v], d) in set(PAIRS["[Ving - Ved]"])
        assert (third[v], d) in set(PAIRS["[3pSg - Ved]"])


def test_morphology_spot_checks():
    """Independent, hand-written facts that a careless list would get wrong."""
    past = dict(PAIRS["[verb - Ved]"])
    for v, d in {
        "go": "went",
        "buy": "bought",
        "teach": "taught",
        "swim": "swam",
        "be": "was",
    }.items():
        assert past[v] == d
    for v in ("put", "cut", "read"):  # past == base: must be absent, not listed as a self-pair
        assert v not in past
    plural = dict(PAIRS["[noun - plural]"])
    assert (
        plural["mouse"] == "mice" and plural["child"] == "children" and plural["city"] == "cities"
    )
    comp = dict(PAIRS["[adj - comparative]"])
    sup = dict(PAIRS["[adj - superlative]"])
    assert comp["good"] == "better" and sup["good"] == "best" and sup["bad"] == "worst"
    assert set(comp) == set(sup), "comparative and superlative files cover different adjectives"
    third = dict(PAIRS["[verb - 3pSg]"])
    assert all(s.endswith("s") for v, s in third.items() if v != "be")
    ving = dict(PAIRS["[verb - Ving]"])
    assert all(g.endswith("ing") for g in ving.values())
    for concept, suffix in [
        ("[verb - V + able]", "ble"),
        ("[verb - V + er]", "er"),
        ("[verb - V + tion]", "ion"),
        ("[verb - V + ment]", "ment"),
        ("[adj - adj + ly]", "ly"),
    ]:
        bad = [t for _, t in PAIRS[concept] if not t.endswith(suffix)]
        assert not bad, f"{concept}: targets without -{suffix}: {bad}"
    bad = [(b, t) for b, t in PAIRS["[adj - un + adj]"] if t != "un" + b]
    assert not bad, bad
    bad = [
        (b, t)
        for b, t in PAIRS["[lower - upper]"]
        if not (b.islower() and t == b[0].upper() + b[1:])
    ]
    assert not bad, bad


def test_world_facts_spot_checks():
    cap = dict(PAIRS["[country - capital]"])
    expected = {
        "France": "Paris",
        "Japan": "Tokyo",
        "Australia": "Canberra",
        "Canada": "Ottawa",
        "Brazil": "Brasília",
        "Turkey": "Ankara",
        "Kazakhstan": "Astana",
        "Ukraine": "Kyiv",
    }
    for country, capital in expected.items():
        assert cap[country] == capital
    assert len(set(cap.values())) == len(cap), "two countries share a capital"
    gender = dict(PAIRS["[male - female]"])
    assert (
        gender["king"] == "queen" and gender["nephew"] == "niece" and gender["stallion"] == "mare"
    )
    color = dict(PAIRS["[thing - color]"])
    assert color["banana"] == "yellow" and color["grass"] == "green" and color["coal"] == "black"


def test_translation_files_share_one_table_and_keep_accents():
    en_fr = dict(PAIRS["[English - French]"])
    fr_de = dict(PAIRS["[French - German]"])
    fr_es = dict(PAIRS["[French - Spanish]"])
    de_es = dict(PAIRS["[German - Spanish]"])
    assert en_fr["water"] == "eau" and fr_de["eau"] == "Wasser" and de_es["Wasser"] == "agua"
    assert en_fr["sister"] == "sœur" and fr_de["sœur"] == "Schwester" and fr_es["sœur"] == "hermana"
    assert fr_de["rue"] == "Straße" and de_es["Kind"] == "niño" and en_fr["school"] == "école"
    # German nouns are capitalised; French and Spanish common nouns are not.
    assert {"Haus", "Hund", "Buch"} <= set(de_es) and "haus" not in de_es
    assert {"maison", "chien", "livre"} <= set(fr_de)


def test_contexts_files_are_well_formed_and_paired():
    assert len(CONTEXTS) >= MIN_CONTEXT_CONCEPTS, f"only {len(CONTEXTS)} context files"
    for concept, rows in CONTEXTS.items():
        assert concept in PAIRS, f"contexts for {concept} but no word-pair file of that name"
        pairs = set(PAIRS[concept])
        base = [r for r in rows if r[0] == "base"]
        target = [r for r in rows if r[0] == "target"]
        assert len(base) >= MIN_CONTEXTS_PER_SIDE and len(target) >= MIN_CONTEXTS_PER_SIDE, concept
        assert len(base) == len(target), f"{concept}: {len(base)} base vs {len(target)} target rows"
        for (_, wb, cb), (_, wt, ct) in zip(base, target, strict=True):
            assert (wb, wt) in pairs, (
                f"{concept}: context pair ({wb}, {wt}) not in the word-pair list"
            )
            assert cb != ct, f"{concept}: identical base and target context {cb!r}"
        contexts = [r[2] for r in rows]
        assert len(set(contexts)) == len(contexts), f"{concept}: duplicate contexts"


def test_contexts_do_not_give_the_answer_away_at_the_end():
    """The next word must not already be the last word of its own context (a copy task)."""
    for concept, rows in CONTEXTS.items():
        for _, word, context in rows:
            assert context.split()[-1] != word, f"{concept}: {context!r} ends with {word!r}"
