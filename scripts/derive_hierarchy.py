"""Derive candidate word lists for the built-in hierarchy from the WordNet 3.0 database files.

Authoring tool, not run by linrep or its tests: it reads ``data.noun`` and ``index.noun`` of a local
WordNet 3.0 copy (e.g. Debian's ``wordnet-base`` package, ``/usr/share/wordnet``) and prints, for each
category synset of ``SPEC``, the single-word lower-case lemmas whose *most frequent* noun sense (the
first offset in ``index.noun``) lies in the synset's hyponym closure (``~`` pointers; instances
excluded). ``--check DIR`` verifies the weaker rule the shipped lists follow: every word of
``<category>.txt`` has *some* noun sense in the category's closure. The shipped lists in ``src/linrep/data/hierarchy/`` were chosen from this output (see
``src/linrep/data/SOURCES.md``).

    python scripts/derive_hierarchy.py /usr/share/wordnet > candidates.txt
    python scripts/derive_hierarchy.py /usr/share/wordnet --check src/linrep/data/hierarchy
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

#: category → the (lemma, sense number) of its WordNet 3.0 noun synset(s).
SPEC: dict[str, tuple[tuple[str, int], ...]] = {
    "animal": (("animal", 1),),
    "mammal": (("mammal", 1),),
    "carnivore": (("carnivore", 1),),
    "ungulate": (("ungulate", 1),),
    "rodent": (("rodent", 1),),
    "bird": (("bird", 1),),
    "raptor": (("bird_of_prey", 1),),
    "waterfowl": (("aquatic_bird", 1),),
    "fish": (("fish", 1),),
    "insect": (("insect", 1),),
    "reptile": (("reptile", 1),),
    "plant": (("plant", 2),),
    "tree": (("tree", 1),),
    "flower": (("flower", 1), ("bulbous_plant", 1)),
    "food": (("food", 1), ("food", 2)),
    "fruit": (("edible_fruit", 1),),
    "vegetable": (("vegetable", 1),),
    "beverage": (("beverage", 1),),
    "alcohol": (("alcohol", 1),),
    "meat": (("meat", 1),),
    "artifact": (("artifact", 1),),
    "vehicle": (("vehicle", 1),),
    "vessel": (("vessel", 2),),
    "aircraft": (("aircraft", 1),),
    "instrument": (("musical_instrument", 1),),
    "tool": (("tool", 1),),
    "weapon": (("weapon", 1),),
    "garment": (("garment", 1),),
    "furniture": (("furniture", 1),),
    "person": (("person", 1),),
    "relative": (("relative", 1),),
    "worker": (("worker", 1),),
}


def read_wordnet(folder: Path):
    hypo: dict[str, list[str]] = {}
    words: dict[str, list[str]] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        f = line.split(" | ")[0].split()
        off, n = f[0], int(f[3], 16)
        words[off] = [f[4 + 2 * i].lower() for i in range(n)]
        k = 4 + 2 * n
        p = int(f[k])
        hypo[off] = [f[k + 2 + 4 * j] for j in range(p) if f[k + 1 + 4 * j] == "~"]
    first: dict[str, str] = {}
    senses: dict[str, list[str]] = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        f = line.split()
        n_syn = int(f[2])
        offs = f[-n_syn:]
        senses[f[0]] = offs
        first[f[0]] = offs[0]
    return hypo, words, first, senses


def closure(root: str, hypo) -> set[str]:
    out, todo = {root}, [root]
    while todo:
        for c in hypo.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def category_closure(cat: str, hypo, senses) -> set[str]:
    """Synset offsets of the category: its synsets and all their hyponyms."""
    return set().union(*(closure(senses[lemma][k - 1], hypo) for lemma, k in SPEC[cat]))


def members(cat: str, hypo, first, senses) -> list[str]:
    """Single lower-case words whose first (most frequent) noun sense is in the closure."""
    cl = category_closure(cat, hypo, senses)
    return sorted(w for w, o in first.items() if o in cl and re.fullmatch(r"[a-z]+", w))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("wordnet_dir", type=Path)
    ap.add_argument("--check", type=Path, default=None)
    a = ap.parse_args()
    hypo, _words, first, senses = read_wordnet(a.wordnet_dir)
    if a.check is None:
        for cat in SPEC:
            ws = members(cat, hypo, first, senses)
            print(f"{cat}\t{len(ws)}\t{' '.join(ws)}")
        return
    bad = n_first = n = 0
    for path in sorted(a.check.glob("*.txt")):
        if path.stem == "hierarchy":
            continue
        cl = category_closure(path.stem, hypo, senses)
        for w in path.read_text(encoding="utf-8").split():
            n += 1
            if not set(senses.get(w, [])) & cl:
                bad += 1
                print(f"{path.name}: '{w}' has no noun sense in the closure of {SPEC[path.stem]}")
            n_first += first.get(w) in cl
    for line in (a.check / "hierarchy.txt").read_text(encoding="utf-8").splitlines():
        parent, child = line.split("\t")
        if not category_closure(child, hypo, senses) <= category_closure(parent, hypo, senses):
            bad += 1
            print(f"hierarchy.txt: {child} is not a hyponym of {parent} in WordNet")
    print(f"{n} words; {bad} problems; {n_first} words in their category by their first sense")


if __name__ == "__main__":
    main()
