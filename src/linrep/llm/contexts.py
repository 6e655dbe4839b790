"""Paired contexts: sentences whose natural next word is the base word vs the target word.

A contexts folder holds one UTF-8 file per concept in either of two formats:

* linrep's ``[<base> - <target>].tsv``: the header line ``side<TAB>word<TAB>context`` and one row per
  context; ``side`` is ``base`` or ``target`` and the context text ends where ``word`` would follow
  after a space;
* Park et al.'s ``paired_contexts/<lang0>-<lang1>.jsonl``, read as-is: one JSON object per line with
  ``word0``, ``word1``, ``contexts0`` and ``contexts1`` (texts that end with that word, which is cut
  off so the text ends where the word would follow). ``en-fr.jsonl`` is the concept
  "English - French" (ISO codes of :data:`LANGUAGES` are spelled out; others are kept).

These give the embedding side λ(x) = f(x) of a concept: the hidden state of each context (its last
token, or the mean over its tokens).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError

__all__ = [
    "ContextSet",
    "load_contexts",
    "parse_context_file",
    "parse_paired_contexts",
    "builtin_contexts_dir",
    "match_contexts",
    "LANGUAGES",
]

#: ISO 639-1 codes of Park et al.'s paired-context files → the concept names of the word pairs.
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}

_NAME = re.compile(r"^\[(?P<base>.+?) - (?P<target>.+)\]$")
_HEADER = ["side", "word", "context"]


@dataclass
class ContextSet:
    """The paired contexts of one concept.

    Attributes:
        name: concept name (``"male - female"``), matching the word-pair file.
        texts: context strings, base rows first then target rows.
        words: the next word each context calls for.
        labels: 0 = base side, 1 = target side, one per text.
        path: the file.
    """

    name: str
    texts: list[str]
    words: list[str]
    labels: list[int]
    path: Path | None = None

    @property
    def n_base(self) -> int:
        return self.labels.count(0)

    @property
    def n_target(self) -> int:
        return self.labels.count(1)


def builtin_contexts_dir() -> Path:
    """The folder of the paired contexts shipped with linrep (``linrep/data/contexts``)."""
    return Path(str(resources.files("linrep").joinpath("data", "contexts")))


def parse_context_file(path: str | os.PathLike, min_per_side: int = 2) -> ContextSet:
    """Read one ``[base - target].tsv`` contexts file.

    Args:
        path: the file.
        min_per_side: fewest contexts accepted per side.

    Returns:
        The :class:`ContextSet` (base rows first, each side in file order).

    Raises:
        InputError: bad name, header or line (naming the file and line number), or too few contexts.
    """
    path = Path(path)
    m = _NAME.match(path.stem)
    if m is None:
        raise InputError(
            f"contexts file '{path.name}' is not named '[<base> - <target>].tsv'; rename it"
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if not lines or [h.strip().lower() for h in lines[0].split("\t")] != _HEADER:
        raise InputError(f"{path}: line 1: expected the header 'side<TAB>word<TAB>context'; add it")
    rows: dict[int, list[tuple[str, str]]] = {0: [], 1: []}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        parts = raw.rstrip("\r").split("\t")
        if (
            len(parts) != 3
            or parts[0].strip() not in ("base", "target")
            or not all(p.strip() for p in parts)
        ):
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise InputError(
                f"{path}: line {i}: expected 'base|target<TAB>word<TAB>context', got {shown!r}; "
                "fix or delete the line"
            )
        side = 0 if parts[0].strip() == "base" else 1
        word = unicodedata.normalize("NFC", parts[1].strip())
        text = unicodedata.normalize("NFC", parts[2].rstrip())
        rows[side].append((word, text))
    base, target = m["base"].strip(), m["target"].strip()
    return _context_set(path, f"{base} - {target}", rows, min_per_side)


def _strip_word(text: str, word: str) -> str:
    """The context without its final word (Park et al.'s texts end with it)."""
    text = unicodedata.normalize("NFC", text).rstrip()
    return text[: -len(word)].rstrip() if word and text.endswith(word) else text


def parse_paired_contexts(path: str | os.PathLike, min_per_side: int = 2) -> ContextSet:
    """Read one of Park et al.'s ``paired_contexts/<lang0>-<lang1>.jsonl`` files as-is.

    Each line ``{"word0", "word1", "contexts0": [...], "contexts1": [...]}`` gives base-side contexts
    (``contexts0``, next word ``word0``) and target-side contexts (``contexts1``, ``word1``).

    Raises:
        InputError: a line that is not such an object (naming the file and line), or too few contexts.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    rows: dict[int, list[tuple[str, str]]] = {0: [], 1: []}
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            for side in (0, 1):
                word = unicodedata.normalize("NFC", str(obj[f"word{side}"]).strip())
                texts = obj[f"contexts{side}"]
                if not isinstance(texts, list):
                    raise TypeError
                rows[side] += [(word, _strip_word(str(t), word)) for t in texts if str(t).strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(
                f"{path}: line {i}: expected a JSON object with word0, word1, contexts0, "
                "contexts1 (Park et al.'s paired_contexts format); fix or delete the line"
            ) from None
    return _context_set(path, _jsonl_name(path), rows, min_per_side)


def _jsonl_name(path: Path) -> str:
    parts = path.stem.split("-")
    if len(parts) != 2 or not all(parts):
        raise InputError(
            f"paired-contexts file '{path.name}' is not named '<lang0>-<lang1>.jsonl'; rename it "
            "(e.g. 'en-fr.jsonl')"
        )
    return " - ".join(LANGUAGES.get(x.lower(), x) for x in parts)


def _context_set(path: Path, name: str, rows, min_per_side: int) -> ContextSet:
    for side, label in ((0, "base"), (1, "target")):
        if len(rows[side]) < min_per_side:
            raise InputError(
                f"{path}: only {len(rows[side])} {label} contexts, need at least {min_per_side}; "
                "add more rows"
            )
    both = rows[0] + rows[1]
    return ContextSet(
        name,
        [t for _, t in both],
        [w for w, _ in both],
        [0] * len(rows[0]) + [1] * len(rows[1]),
        path,
    )


def match_contexts(contexts: dict[str, ContextSet], names: Sequence[str]) -> dict[str, ContextSet]:
    """Context sets keyed by the concept they belong to (names compared as
    :func:`~linrep.llm.concepts.normalized_name`); sets of no concept keep their own name."""
    from .concepts import normalized_name

    by_norm = {normalized_name(n): n for n in names}
    return {by_norm.get(normalized_name(k), k): v for k, v in contexts.items()}


def load_contexts(source: str | os.PathLike | None = "builtin") -> dict[str, ContextSet]:
    """Load every ``[base - target].tsv`` and ``<lang0>-<lang1>.jsonl`` of a folder.

    Args:
        source: ``"builtin"``/``None`` for linrep's own contexts, or a folder.

    Returns:
        Concept name → :class:`ContextSet`, in name order.

    Raises:
        InputError: a missing folder, no files, or a bad file.
    """
    if source is None or str(source) == "builtin":
        folder = builtin_contexts_dir()
    else:
        folder = Path(source).expanduser()
    if not folder.is_dir():
        raise InputError(
            f"contexts folder '{folder}' does not exist; pass a folder of '[base - target].tsv' "
            "files or --contexts none"
        )
    tsv = sorted(p for p in folder.glob("*.tsv") if p.name.startswith("["))
    jsonl = sorted(folder.glob("*.jsonl"))
    if not tsv and not jsonl:
        raise InputError(
            f"contexts folder '{folder}' has no '[<base> - <target>].tsv' or paired-contexts "
            "'.jsonl' files; pass another folder or --contexts none"
        )
    sets = [parse_context_file(p) for p in tsv] + [parse_paired_contexts(p) for p in jsonl]
    return _refuse_collisions(sets)


def _refuse_collisions(sets: list[ContextSet]) -> dict[str, ContextSet]:
    from .concepts import name_collision, source_label

    clash = name_collision(sets)
    if clash:
        a, b = map(source_label, clash)
        raise InputError(
            f"context files '{a}' and '{b}' are for the same concept '{clash[1].name}'; merge them "
            "or remove one"
        )
    return {s.name: s for s in sets}
