"""Token strings of a real vocabulary and the leading-space conventions that spell words.

A word in running text is preceded by a space, and tokenizers fold that space into the token:

* SentencePiece (Gemma, LLaMA): ``" king"`` is the piece ``"▁king"`` (U+2581).
* byte-level BPE (GPT-2, SmolLM2, Qwen): the UTF-8 bytes of ``" king"`` are written with GPT-2's
  printable byte alphabet, so the space becomes ``"Ġ"`` and ``"é"`` becomes ``"Ã©"``.

:class:`Vocabulary` maps a word to the id of the *single normal token* that spells it (or ``None``),
which is the filter Park et al. apply to their word pairs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

__all__ = ["Vocabulary", "byte_to_unicode", "detect_convention", "Convention"]

Convention = Literal["sentencepiece", "byte_bpe", "plain"]

#: ``tokenizer.ggml.token_type`` value of ordinary tokens (others: unknown, control, unused, byte).
NORMAL = 1


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 upwards in byte order
    (so the space 0x20 becomes ``"Ġ"`` = U+0120 and newline 0x0A becomes ``"Ċ"``).
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def detect_convention(tokens: Sequence[str], tokenizer_model: str | None = None) -> Convention:
    """Which leading-space convention a vocabulary uses.

    Args:
        tokens: the token strings.
        tokenizer_model: GGUF ``tokenizer.ggml.model`` (``"llama"`` = SentencePiece, ``"gpt2"`` =
            byte-level BPE) when known; otherwise the markers ``▁``/``Ġ`` are counted.

    Returns:
        ``"sentencepiece"``, ``"byte_bpe"`` or ``"plain"`` (no marker: words are looked up as written).
    """
    if tokenizer_model == "gpt2":
        return "byte_bpe"
    if tokenizer_model in ("llama", "gemma"):
        return "sentencepiece"
    step = max(1, len(tokens) // 20000)
    sample = tokens[::step]
    n_sp = sum(t.startswith("▁") for t in sample)
    n_bb = sum(t.startswith("Ġ") for t in sample)
    if max(n_sp, n_bb) < 0.01 * len(sample):
        return "plain"
    return "sentencepiece" if n_sp >= n_bb else "byte_bpe"


class Vocabulary:
    """Lookup from words to single normal tokens.

    Args:
        tokens: token strings, ``(V,)``.
        token_type: ``(V,)`` GGUF token types; only ``NORMAL`` (1) tokens are ever returned.
        convention: leading-space convention (see :func:`detect_convention`).
    """

    def __init__(self, tokens: Sequence[str], token_type: np.ndarray, convention: Convention):
        self.tokens = list(tokens)
        self.token_type = np.asarray(token_type)
        self.convention = convention
        normal = np.flatnonzero(self.token_type == NORMAL)
        index: dict[str, int] = {}
        for i in normal.tolist():  # first occurrence wins for duplicated strings
            index.setdefault(self.tokens[i], i)
        self._index = index

    def __len__(self) -> int:
        return len(self.tokens)

    def word_tokens(self) -> np.ndarray:
        """``(V,)`` bool mask of normal tokens that start with the leading-space marker (words)."""
        marker = {"sentencepiece": "▁", "byte_bpe": "Ġ"}.get(self.convention)
        mask = self.token_type == NORMAL
        if marker is None:
            return mask
        starts = np.fromiter((t.startswith(marker) for t in self.tokens), bool, len(self.tokens))
        return mask & starts

    def piece(self, word: str, leading_space: bool = True) -> str:
        """The token string that spells ``word`` (NFC-normalised) under this convention."""
        word = unicodedata.normalize("NFC", word)
        text = (" " + word) if leading_space else word
        if self.convention == "sentencepiece":
            return text.replace(" ", "▁")
        if self.convention == "byte_bpe":
            table = byte_to_unicode()
            return "".join(table[b] for b in text.encode("utf-8"))
        return word if not leading_space else text

    def token_id(self, word: str, leading_space: bool = True) -> int | None:
        """Id of the single normal token spelling ``word``, or ``None`` if it takes more tokens."""
        return self._index.get(self.piece(word, leading_space))

    def display(self, token: int) -> str:
        """Human-readable token text (``▁``/``Ġ`` shown as a space, bytes decoded when possible)."""
        s = self.tokens[int(token)]
        if self.convention == "byte_bpe":
            inverse = {c: b for b, c in byte_to_unicode().items()}
            try:
                return bytes(inverse[c] for c in s).decode("utf-8", errors="replace")
            except KeyError:
                return s
        return s.replace("▁", " ")
