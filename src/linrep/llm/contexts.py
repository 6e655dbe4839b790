"""Paired contexts: sentences whose natural next word is the base word vs the target word.

A contexts folder holds one UTF-8 file per concept, ``[<base> - <target>].tsv``, with the header line
``side<TAB>word<TAB>context`` and one row per context; ``side`` is ``base`` or ``target`` and the
context text ends where ``word`` would follow after a space. These give the embedding side λ(x) = f(x)
of a concept: the last-token hidden state of each context.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError

__all__ = ["ContextSet", "load_contexts", "parse_context_file", "builtin_contexts_dir"]

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
    for side, label in ((0, "base"), (1, "target")):
        if len(rows[side]) < min_per_side:
            raise InputError(
                f"{path}: only {len(rows[side])} {label} contexts, need at least {min_per_side}; "
                "add more rows"
            )
    both = rows[0] + rows[1]
    base, target = m["base"].strip(), m["target"].strip()
    return ContextSet(
        f"{base} - {target}",
        [t for _, t in both],
        [w for w, _ in both],
        [0] * len(rows[0]) + [1] * len(rows[1]),
        path,
    )


def load_contexts(source: str | os.PathLike | None = "builtin") -> dict[str, ContextSet]:
    """Load every ``[base - target].tsv`` of a folder.

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
    files = sorted(p for p in folder.glob("*.tsv") if p.name.startswith("["))
    if not files:
        raise InputError(
            f"contexts folder '{folder}' has no '[<base> - <target>].tsv' files; pass another "
            "folder or --contexts none"
        )
    sets = [parse_context_file(p) for p in files]
    return {s.name: s for s in sets}
