"""Categorical and hierarchical concepts of a real model (Park, Choe, Jiang & Veitch 2024).

**Folder format.** A hierarchy folder holds one UTF-8 ``<category>.txt`` per category (one word per
line; blank lines and ``#`` comments skipped) and ``hierarchy.txt`` with one ``parent<TAB>child``
line per edge. The edges form a DAG (a category may have several parents). A category's token set
Y(w) is the union of its own file and its descendants' files, so a parent file lists only the
members that belong to none of its children (``animal.txt``: worm, snail, …; ``mammal.txt`` and
``bird.txt`` supply the rest). Only words that are one normal token with a leading space
(``▁word`` / ``Ġword``, the filter of the word pairs) are kept.

**Measurement.** In the causal coordinates g(y) = Cov(γ)^{−1/2}(γ(y) − E γ) (normal tokens), every
category gets ℓ_w (:func:`linrep.geometry.categorical.category_vectors`) and every edge the cosines,
intervals and four nulls of :func:`linrep.geometry.hierarchy.analyze_tree`. The random-set null draws
from a random pool of leading-space alphabetic word tokens, the shuffled null from a random pool of
normal tokens (``pool_size`` each; a uniform random pool makes every draw a uniform random set).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "HierarchySpec",
    "HierarchyOptions",
    "HierarchyTokens",
    "HierarchyResult",
    "builtin_hierarchy_dir",
    "load_hierarchy",
    "select_hierarchy",
    "analyze_hierarchy",
    "hierarchy_extension",
    "HierarchyExtension",
]

_NAME = re.compile(r"^[^\t/\\]+$")


@dataclass(frozen=True)
class HierarchySpec:
    """A hierarchy folder as written.

    Attributes:
        source: ``"builtin"`` or the folder path.
        names: category names (file stems), sorted.
        words: per category, its own file's words (NFC, file order, duplicates removed).
        edges: (parent, child) name pairs in ``hierarchy.txt`` order.
        folder: the folder.
    """

    source: str
    names: tuple[str, ...]
    words: dict[str, tuple[str, ...]]
    edges: tuple[tuple[str, str], ...]
    folder: Path

    def descendants(self, name: str) -> list[str]:
        """Every category below ``name`` (depth first, each once)."""
        out: list[str] = []
        todo = [c for p, c in self.edges if p == name]
        while todo:
            c = todo.pop()
            if c not in out:
                out.append(c)
                todo += [k for p, k in self.edges if p == c]
        return out

    def closure_words(self, name: str) -> list[str]:
        """Y(name) as words: its own and its descendants' (first occurrence order)."""
        seen: dict[str, None] = {}
        for c in [name, *self.descendants(name)]:
            seen.update(dict.fromkeys(self.words[c]))
        return list(seen)

    def depth(self) -> int:
        """Number of levels (a lone root = 1)."""
        memo: dict[str, int] = {}

        def d(n: str) -> int:
            if n not in memo:
                memo[n] = 1 + max((d(c) for p, c in self.edges if p == n), default=0)
            return memo[n]

        return max(d(n) for n in self.names)

    @property
    def roots(self) -> list[str]:
        children = {c for _, c in self.edges}
        return [n for n in self.names if n not in children]


def builtin_hierarchy_dir() -> Path:
    """The built-in hierarchy shipped with linrep (``linrep/data/hierarchy``)."""
    return Path(str(resources.files("linrep").joinpath("data", "hierarchy")))


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(" \r")
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((i, line))
    return out


def _read_category(path: Path) -> tuple[str, ...]:
    words: dict[str, None] = {}
    for i, line in _read_lines(path):
        w = unicodedata.normalize("NFC", line.strip())
        if "\t" in w or " " in w:
            raise InputError(
                f"{path}: line {i}: expected one word, got {line!r}; put one word per line"
            )
        words.setdefault(w)
    if not words:
        raise InputError(f"{path}: the category is empty; add one word per line or delete the file")
    return tuple(words)


def _read_edges(path: Path, names: set[str]) -> tuple[tuple[str, str], ...]:
    edges: list[tuple[str, str]] = []
    for i, line in _read_lines(path):
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) != 2 or not all(parts) or not all(_NAME.match(p) for p in parts):
            raise InputError(
                f"{path}: line {i}: expected 'parent<TAB>child', got {line!r}; fix or delete the line"
            )
        for p in parts:
            if p not in names:
                raise InputError(
                    f"{path}: line {i}: category '{p}' has no file {p}.txt in {path.parent}; add "
                    "the file or fix the name"
                )
        if parts[0] == parts[1]:
            raise InputError(f"{path}: line {i}: '{parts[0]}' is its own parent; delete the line")
        if tuple(parts) in edges:
            raise InputError(f"{path}: line {i}: the edge appears twice; delete one line")
        edges.append((parts[0], parts[1]))
        cycle = _cycle(edges)
        if cycle:
            raise InputError(
                f"{path}: line {i}: the edge {parts[0]} → {parts[1]} closes the cycle "
                f"{' → '.join(cycle)}; a hierarchy must be acyclic: delete or reverse one edge"
            )
    if not edges:
        raise InputError(f"{path}: no 'parent<TAB>child' lines; add at least one edge")
    return tuple(edges)


def _cycle(edges: list[tuple[str, str]]) -> list[str] | None:
    """A cycle through the last edge (p → c) if c already reaches p, as a name list."""
    p, c = edges[-1]
    path, todo, prev = None, [c], {c: None}
    while todo:
        x = todo.pop()
        if x == p:
            path = [x]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            break
        for a, b in edges[:-1]:
            if a == x and b not in prev:
                prev[b] = x
                todo.append(b)
    return None if path is None else [p, *reversed(path)]


def load_hierarchy(source: str | os.PathLike = "builtin") -> HierarchySpec:
    """Read and validate a hierarchy folder (or ``"builtin"``).

    Raises:
        InputError: a missing folder or ``hierarchy.txt``, a bad or duplicate line, an unknown
            category, a cycle, or an empty category file (the message names the file and line).
    """
    builtin = str(source) == "builtin"
    folder = builtin_hierarchy_dir() if builtin else Path(source).expanduser()
    if not folder.is_dir():
        raise InputError(
            f"hierarchy folder '{folder}' does not exist; pass a folder with hierarchy.txt and "
            "<category>.txt files, or 'builtin'"
        )
    edges_file = folder / "hierarchy.txt"
    if not edges_file.is_file():
        raise InputError(
            f"hierarchy folder '{folder}' has no hierarchy.txt; add one 'parent<TAB>child' line "
            "per edge"
        )
    files = sorted(p for p in folder.glob("*.txt") if p.name != "hierarchy.txt")
    words = {p.stem: _read_category(p) for p in files}
    edges = _read_edges(edges_file, set(words))
    used = {n for e in edges for n in e}
    names = tuple(n for n in sorted(words) if n in used)
    return HierarchySpec(
        "builtin" if builtin else str(folder), names, {n: words[n] for n in names}, edges, folder
    )


# ------------------------------------------------------------------------------------ tokens
@dataclass(frozen=True)
class HierarchyTokens:
    """A hierarchy restricted to one vocabulary's single-token words.

    Attributes:
        spec: the folder as written.
        tokens: per category, the token ids of Y(w) (own ∪ descendants), sorted unique.
        own_kept, own_dropped: per category, its own file's words kept / not single tokens.
    """

    spec: HierarchySpec
    tokens: dict[str, np.ndarray]
    own_kept: dict[str, tuple[str, ...]]
    own_dropped: dict[str, tuple[str, ...]]


def select_hierarchy(
    spec: HierarchySpec, vocab, min_words: int = 5, leading_space: bool = True
) -> HierarchyTokens:
    """Keep the single-token words; every category and every edge must stay usable.

    Args:
        spec: from :func:`load_hierarchy`.
        vocab: the model's :class:`~linrep.llm.vocab.Vocabulary`.
        min_words: fewest single-token words a category needs (≥ 2: the covariance needs two).
        leading_space: spell words with a leading space.

    Raises:
        InputError: a category with fewer than ``min_words`` single-token words, or a parent with
            no single-token word outside a child (then ℓ_child = ℓ_parent); names the file.
    """
    if min_words < 2:
        raise InputError(
            f"llm.hierarchy_min_words = {min_words}: the estimator needs ≥ 2 words per category"
        )
    ids = {n: [vocab.token_id(w, leading_space) for w in spec.words[n]] for n in spec.names}
    kept = {
        n: tuple(w for w, t in zip(spec.words[n], ids[n], strict=True) if t is not None)
        for n in spec.names
    }
    dropped = {
        n: tuple(w for w, t in zip(spec.words[n], ids[n], strict=True) if t is None)
        for n in spec.names
    }
    own = {n: {t for t in ids[n] if t is not None} for n in spec.names}
    tokens = {}
    for n in spec.names:
        toks = set(own[n]).union(*(own[c] for c in spec.descendants(n)))
        if len(toks) < min_words:
            raise InputError(
                f"{spec.folder / (n + '.txt')}: category '{n}' has {len(toks)} single-token words "
                f"(with its descendants; need ≥ {min_words}); add common one-token words or lower "
                "llm.hierarchy_min_words"
            )
        tokens[n] = np.array(sorted(toks), dtype=np.int64)
    for p, c in spec.edges:
        if tokens[p].size == tokens[c].size:
            raise InputError(
                f"{spec.folder / (p + '.txt')}: parent '{p}' has no single-token word outside its "
                f"child '{c}' (so ℓ_{c} = ℓ_{p}); add words to {p}.txt or another child"
            )
    return HierarchyTokens(spec, tokens, kept, dropped)


# ------------------------------------------------------------------------------------ analysis
@dataclass(frozen=True)
class HierarchyOptions:
    """How the hierarchy is measured.

    Attributes:
        estimators: category-vector estimators; the first is the primary one (``"lda"`` = Park et
            al.'s normalised Ledoit–Wolf Σ⁻¹m, ``"mean"`` = plain mean); each gets its own analysis.
        min_words: fewest single-token words per category.
        n_null: draws per null and edge. n_boot: delete-half jackknife replicates per edge.
        pool_size: random word tokens (random-set null) and normal tokens (shuffled null) sampled.
        nulls: which nulls to run.
        seed: seed of every draw.
    """

    estimators: tuple[str, ...] = ("lda", "mean")
    min_words: int = 5
    n_null: int = 200
    n_boot: int = 100
    pool_size: int = 4096
    nulls: tuple[str, ...] = ("subset", "random_set", "shuffled", "unrelated")
    seed: int = 0


@dataclass(frozen=True)
class HierarchyResult:
    """The ``hierarchy`` section of a model's results.

    Attributes:
        source: ``"builtin"`` or the folder. estimator: the primary estimator.
        categories: per category ``{name, n_words (Y(w), single tokens), n_own_lines, own_dropped}``.
        analyses: estimator → :class:`~linrep.geometry.hierarchy.HierarchyAnalysis`.
        options: the :class:`HierarchyOptions` used.
    """

    source: str
    estimator: str
    categories: tuple[dict[str, Any], ...]
    edges_spec: tuple[tuple[str, str], ...]
    analyses: dict[str, Any]
    options: HierarchyOptions
    key: str = field(default="hierarchy")

    @property
    def primary(self):
        return self.analyses[self.estimator]

    def add_to_report(self, report) -> None:
        """Tables and figures of this section (see :mod:`linrep.llm.hierarchy_report`)."""
        from .hierarchy_report import add_hierarchy_section

        add_hierarchy_section(report, self)

    def summary_line(self) -> str:
        """One line for the ``linrep llm`` summary."""
        h = self.primary.to_json()
        sub = h["summary_nulls"].get("subset")
        null = f" (random-subset null {sub['mean_abs_cos_childdiff_null']:.3f})" if sub else ""
        return (
            f"hierarchy ({self.estimator}): {len(h['edges'])} edges, mean |cos(ℓp, ℓc − ℓp)| "
            f"{h['mean_abs_cos_childdiff']:.3f}{null}, mean cos(ℓp, ℓc) {h['mean_cos_child']:.3f}"
        )

    def to_json(self) -> dict[str, Any]:
        """``{source, estimator, categories, edges, parents, summary_nulls, …, by_estimator}``."""
        prim = self.primary.to_json()
        return {
            "source": self.source,
            "estimator": self.estimator,
            "categories": list(self.categories),
            **prim,
            "by_estimator": {k: v.to_json() for k, v in self.analyses.items()},
            "options": asdict(self.options),
        }


def _pools(unemb, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random pools of leading-space alphabetic word tokens and of normal tokens (ids)."""
    vocab = unemb.vocab
    words = np.flatnonzero(vocab.word_tokens())
    alpha = np.fromiter((vocab.display(t).strip().isalpha() for t in words), bool, words.size)
    words = words[alpha]
    normal = np.flatnonzero(unemb.normal)
    pick = lambda a: np.sort(rng.choice(a, size=min(n, a.size), replace=False))  # noqa: E731
    return pick(words), pick(normal)


def analyze_hierarchy(
    unemb, causal, spec: HierarchySpec, options: HierarchyOptions = HierarchyOptions()
) -> HierarchyResult:
    """Measure a hierarchy on a model's unembedding.

    Args:
        unemb: the :class:`~linrep.llm.unembedding.Unembedding` (γ: (V, d) and its vocabulary).
        causal: the fitted causal inner product (Cov(γ) over normal tokens).
        spec: from :func:`load_hierarchy`.
        options: :class:`HierarchyOptions`.

    Returns:
        :class:`HierarchyResult` (one analysis per estimator, same draws for each).
    """
    from ..geometry.hierarchy import CategoryTree, analyze_tree

    sel = select_hierarchy(spec, unemb.vocab, options.min_words)
    rng = np.random.default_rng(options.seed)
    word_pool, normal_pool = _pools(unemb, options.pool_size, rng)
    cats = np.concatenate(list(sel.tokens.values()))
    universe = np.unique(np.concatenate([cats, word_pool, normal_pool]))
    X = causal.transform_unembedding(unemb.gamma[universe])  # (U, d) causal coordinates
    at = lambda ids: np.searchsorted(universe, ids)  # noqa: E731
    index = {n: i for i, n in enumerate(spec.names)}
    tree = CategoryTree(
        names=spec.names,
        members=tuple(at(sel.tokens[n]) for n in spec.names),
        edges=tuple((index[p], index[c]) for p, c in spec.edges),
    )
    analyses = {
        est: analyze_tree(
            X,
            tree,
            estimator=est,
            word_pool=at(word_pool),
            normal_pool=at(normal_pool),
            n_null=options.n_null,
            n_boot=options.n_boot,
            seed=options.seed,
            nulls=options.nulls,
        )
        for est in options.estimators
    }
    categories = tuple(
        {
            "name": n,
            "n_words": int(sel.tokens[n].size),
            "n_own_lines": len(spec.words[n]),
            "own_dropped": list(sel.own_dropped[n]),
        }
        for n in spec.names
    )
    return HierarchyResult(
        spec.source, options.estimators[0], categories, spec.edges, analyses, options
    )


class HierarchyExtension:
    """An analysis extension (``linrep.llm.analyze(..., extensions=[...])``) measuring a hierarchy.

    Built by :func:`hierarchy_extension`; calling it with an analysis context returns the
    :class:`HierarchyResult`. :meth:`check` runs the single-token filter alone, so a pipeline can
    fail on a too-small category right after reading the vocabulary, before any other work.
    """

    def __init__(self, spec: HierarchySpec, options: HierarchyOptions):
        self.spec, self.options = spec, options

    def check(self, vocab) -> HierarchyTokens:
        """Raise now if a category keeps too few single-token words (see :func:`select_hierarchy`)."""
        return select_hierarchy(self.spec, vocab, self.options.min_words)

    def __call__(self, ctx) -> HierarchyResult:
        """Measure on ``ctx.unembedding`` with ``ctx.inner["causal"]`` (fitted here if absent)."""
        causal = ctx.inner.get("causal") if hasattr(ctx.inner, "get") else None
        if causal is None:
            from .analysis import fitted_inner_products

            causal = fitted_inner_products(ctx.unembedding, ("causal",))["causal"]
        return analyze_hierarchy(ctx.unembedding, causal, self.spec, self.options)


def hierarchy_extension(
    source: str | os.PathLike, options: HierarchyOptions = HierarchyOptions()
) -> HierarchyExtension:
    """The hierarchy as an analysis extension; the folder is read and validated *now* (a cycle or
    a missing file fails before any model is loaded)."""
    return HierarchyExtension(load_hierarchy(source), options)
