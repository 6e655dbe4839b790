"""Concept word-pair lists in Park et al.'s format, and the tokenizer-robust single-token filter.

A concept folder holds one UTF-8 file per concept, named ``[<base> - <target>].txt`` (e.g.
``[male - female].txt``), with one ``base<TAB>target`` pair per line (blank lines and lines starting
with ``#`` are skipped). Any such folder works: ours (shipped in ``linrep/data/word_pairs``), Park et
al.'s, or a user's.

Only pairs whose two words are each a *single normal token* of the model (spelled with a leading
space, ``▁word`` or ``Ġword``) give a steering vector Δγ = γ(target) − γ(base), so the usable pairs
depend on the tokenizer; :func:`select_pairs` reports per concept what was kept and why the rest was
dropped.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from .records import Record
from .vocab import Vocabulary

__all__ = [
    "ConceptPairs",
    "ConceptTokens",
    "TokenFilter",
    "DroppedPair",
    "EncodeMismatch",
    "encode_mismatches",
    "normalized_name",
    "builtin_concepts_dir",
    "load_concepts",
    "parse_concept_file",
    "select_pairs",
    "DROP_REASONS",
]

_NAME = re.compile(r"^\[(?P<base>.+?) - (?P<target>.+)\]$")

#: Reasons a pair is dropped by :func:`select_pairs`.
DROP_REASONS = {
    "base_multi_token": "the base word is not a single token",
    "target_multi_token": "the target word is not a single token",
    "both_multi_token": "neither word is a single token",
    "same_token": "base and target are the same token",
    "duplicate": "the same token pair appeared earlier in the file",
}


@dataclass
class ConceptPairs:
    """The word pairs of one concept as written in its file.

    Attributes:
        name: concept name, the file stem without brackets (``"male - female"``).
        base: label of the base side (``"male"``).
        target: label of the target side (``"female"``).
        words: list of ``(base word, target word)``.
        lines: 1-based line number of each pair in ``path``.
        path: the file.
    """

    name: str
    base: str
    target: str
    words: list[tuple[str, str]]
    lines: list[int]
    path: Path | None = None


@dataclass(frozen=True)
class DroppedPair(Record):
    """A pair the single-token filter dropped: its line in the file and the reason
    (a key of :data:`DROP_REASONS`)."""

    line: int
    base: str
    target: str
    reason: str


@dataclass(frozen=True)
class EncodeMismatch(Record):
    """A word on which the vocabulary lookup and ``tokenizer.encode`` disagree.

    Attributes:
        word: the word (spelled with the leading space the analysis uses).
        vocab_id: the single normal token the lookup found (None: not a single token).
        encode_ids: what ``tokenizer.encode(" " + word, add_special_tokens=False)`` returned.
    """

    word: str
    vocab_id: int | None
    encode_ids: tuple[int, ...]


@dataclass(frozen=True)
class TokenFilter(Record):
    """What the single-token filter did to one concept's file.

    Attributes:
        n_lines: pairs in the file. n_pairs: pairs kept.
        dropped: the dropped pairs with their reasons.
        encode_mismatches: words where ``tokenizer.encode`` disagrees with the lookup (empty when
            no tokenizer was available to check).
    """

    n_lines: int
    n_pairs: int
    dropped: tuple[DroppedPair, ...] = ()
    encode_mismatches: tuple[EncodeMismatch, ...] = ()

    @property
    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dropped))

    def to_json(self) -> dict:
        return {
            **super().to_json(),
            "n_dropped": len(self.dropped),
            "dropped_by_reason": self.dropped_by_reason,
        }


@dataclass
class ConceptTokens:
    """The usable pairs of one concept for one vocabulary, with the filter's report.

    Attributes:
        name: concept name.
        pairs: ``(P, 2)`` int64 token ids (base y0, target y1).
        words: the P kept ``(base, target)`` word pairs.
        dropped: the dropped pairs.
        n_lines: number of pairs in the file.
        mismatches: encode disagreements found by :func:`encode_mismatches` (set by the pipeline).
    """

    name: str
    pairs: np.ndarray
    words: list[tuple[str, str]]
    dropped: list[DroppedPair] = field(default_factory=list)
    n_lines: int = 0
    mismatches: tuple[EncodeMismatch, ...] = ()

    @property
    def n_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def filter_report(self) -> TokenFilter:
        """The typed :class:`TokenFilter` of this concept."""
        return TokenFilter(self.n_lines, self.n_pairs, tuple(self.dropped), self.mismatches)


def builtin_concepts_dir() -> Path:
    """The folder of the word-pair lists shipped with linrep (``linrep/data/word_pairs``)."""
    return Path(str(resources.files("linrep").joinpath("data", "word_pairs")))


def parse_concept_file(path: str | os.PathLike) -> ConceptPairs:
    """Read one ``[base - target].txt`` file.

    Args:
        path: the file.

    Returns:
        The :class:`ConceptPairs` (words NFC-normalised, surrounding spaces stripped).

    Raises:
        InputError: a bad file name, a file that is not UTF-8, or a line that is not
            ``base<TAB>target`` (the message names the file and line number).
    """
    path = Path(path)
    m = _NAME.match(path.stem)
    if m is None:
        raise InputError(
            f"concept file '{path.name}' is not named '[<base> - <target>].txt'; rename it "
            "(e.g. '[male - female].txt')"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    words, lines = [], []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(" \r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise InputError(
                f"{path}: line {i}: expected 'base<TAB>target', got {shown!r}; fix or delete the line"
            )
        b, t = (unicodedata.normalize("NFC", p.strip()) for p in parts)
        words.append((b, t))
        lines.append(i)
    base, target = m["base"].strip(), m["target"].strip()
    return ConceptPairs(f"{base} - {target}", base, target, words, lines, path)


def load_concepts(source: str | os.PathLike | None = "builtin") -> list[ConceptPairs]:
    """Load every ``[base - target].txt`` concept of a folder (or one file), sorted by name.

    Args:
        source: ``"builtin"``/``None`` for linrep's own lists, a folder, or a single ``.txt`` file.

    Returns:
        The concepts in name order.

    Raises:
        InputError: a missing path, a folder without concept files, or a bad file/line.
    """
    if source is None or str(source) == "builtin":
        folder = builtin_concepts_dir()
        if not folder.is_dir():
            raise InputError(
                f"the built-in word pairs are missing ({folder}); reinstall linrep or pass "
                "--concepts DIR"
            )
    else:
        folder = Path(source).expanduser()
    if folder.is_file():
        return [parse_concept_file(folder)]
    if not folder.is_dir():
        raise InputError(
            f"concept folder '{folder}' does not exist; pass a folder of '[base - target].txt' files"
        )
    files = sorted(p for p in folder.glob("*.txt") if p.name.startswith("["))
    if not files:
        raise InputError(
            f"concept folder '{folder}' has no '[<base> - <target>].txt' files; pass Park et al.'s "
            "word_pairs folder or your own"
        )
    return _refuse_collisions([parse_concept_file(p) for p in files])


def normalized_name(name: str) -> str:
    """The form under which two concept names count as the same concept (NFKC, case, spaces)."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


def name_collision(items: Sequence) -> tuple | None:
    """The first two of ``items`` (each with ``.name`` and ``.path``) whose names are the same
    concept under :func:`normalized_name`, or None."""
    seen = {}
    for item in items:
        key = normalized_name(item.name)
        if key in seen:
            return seen[key], item
        seen[key] = item
    return None


def source_label(item) -> str:
    """How an error names where a concept came from: its file's name, else the concept's name."""
    return item.path.name if item.path else item.name


def _refuse_collisions(concepts: list[ConceptPairs]) -> list[ConceptPairs]:
    clash = name_collision(concepts)
    if clash:
        a, b = map(source_label, clash)
        raise InputError(
            f"concept files '{a}' and '{b}' name the same concept (names differ only in case, "
            "spacing or Unicode form); merge them or rename one"
        )
    return concepts


def encode_mismatches(
    concept: ConceptPairs,
    vocab: Vocabulary,
    encode: Callable[[Sequence[str]], list[list[int]]],
    leading_space: bool = True,
) -> tuple[EncodeMismatch, ...]:
    """Words of a concept on which the vocabulary lookup and the tokenizer disagree.

    Args:
        concept: the word pairs.
        vocab: the model's vocabulary (string lookup).
        encode: texts → token ids without special tokens (``tokenizer(texts,
            add_special_tokens=False)["input_ids"]``).
        leading_space: spell words with a leading space.
    """
    words = sorted({w for pair in concept.words for w in pair})
    texts = [(" " + w) if leading_space else w for w in words]
    out = []
    for w, text, ids in zip(words, texts, encode(texts), strict=True):
        lookup = vocab.token_id(w, leading_space)
        single = ids[0] if len(ids) == 1 else None
        if lookup != single:
            out.append(EncodeMismatch(text, lookup, tuple(int(i) for i in ids)))
    return tuple(out)


def select_pairs(
    concept: ConceptPairs, vocab: Vocabulary, leading_space: bool = True
) -> ConceptTokens:
    """Keep the pairs whose two words are each one normal token, and say why the others are dropped.

    Args:
        concept: the word pairs.
        vocab: the model's vocabulary.
        leading_space: spell words with a leading space (``▁w``/``Ġw``, as inside a sentence).

    Returns:
        The :class:`ConceptTokens` (pairs in file order, duplicates of token pairs dropped).
    """
    kept, kept_words, dropped, seen = [], [], [], set()
    for (b, t), line in zip(concept.words, concept.lines, strict=True):
        ib, it = vocab.token_id(b, leading_space), vocab.token_id(t, leading_space)
        reason = None
        if ib is None and it is None:
            reason = "both_multi_token"
        elif ib is None:
            reason = "base_multi_token"
        elif it is None:
            reason = "target_multi_token"
        elif ib == it:
            reason = "same_token"
        elif (ib, it) in seen:
            reason = "duplicate"
        if reason is not None:
            dropped.append(DroppedPair(line, b, t, reason))
            continue
        seen.add((ib, it))
        kept.append((ib, it))
        kept_words.append((b, t))
    pairs = np.asarray(kept, dtype=np.int64).reshape(-1, 2)
    return ConceptTokens(concept.name, pairs, kept_words, dropped, len(concept.words))
