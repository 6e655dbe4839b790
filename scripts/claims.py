#!/usr/bin/env python3
"""README claims: every number in README.md comes from a results file written by a named command.

A number in the README is written as a *marker*::

    same-concept cos <!--claim:e1-same-->0.938 ± 0.002<!--/claim-->

and registered in ``claims.toml`` (repository root)::

    [[claim]]
    id = "e1-same"                                   # the marker's name
    command = "linrep reproduce all --out runs"      # writes the file; must be named in the same
                                                     # README section (text between headings)
    file = "runs/e1_emergence/results.json"          # relative to the folder the command runs in
    path = ["results", "headline", "same_concept_cosine"]   # JSON keys (or list indices, as
                                                             # integers) down to the value
    format = "ci"                                    # see FORMATS below
    quick = true                                     # `--quick` writes this key too (tested)

Usage (from the repository root, after running the commands)::

    python scripts/claims.py check            # fail, naming every stale / missing claim
    python scripts/claims.py update           # rewrite the README's markers from the files
    python scripts/claims.py keys --root DIR --quick-only   # do DIR's files hold the keys?
    python scripts/claims.py check --strict   # also flag unmarked measurements in the README

FORMATS: ``ci`` (mean ± 95 % half-width of a summary {"mean", "ci"}, 3 decimals; ``ci:N`` for N),
a Python format spec for a number or a summary's mean (``.3f``, ``.2e``, ``d``), ``int``, ``str``.
A claim's id may be used by several markers.

A number that is *cited*, not measured (a reference implementation's or a paper's value shown
beside ours for comparison), is written ``<!--ref:SOURCE-->0.27<!--/ref-->`` where SOURCE names
where it comes from (a file of this repository, a paper); ``--strict`` accepts it and checks that
a SOURCE given as a repository path exists. Exit status: 0 all good, 1 problems (listed one per
line), 2 bad registry.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--claim:([\w.\-]+)-->(.*?)<!--/claim-->", re.S)
REF = re.compile(r"<!--ref:([^>]+?)-->(.*?)<!--/ref-->", re.S)
FIELDS = ("id", "command", "file", "path", "format", "quick")


class RegistryError(Exception):
    """claims.toml is malformed (exit 2)."""


@dataclass(frozen=True)
class Claim:
    """One registered number: where it lives and how the README shows it."""

    id: str
    command: str
    file: str
    path: tuple[str | int, ...]
    """JSON object keys (str) and list indices (int) from the file's top down to the value."""
    format: str = "ci"
    quick: bool = False


def load_registry(path: Path) -> dict[str, Claim]:
    """The claims of ``path`` by id (unknown fields, duplicate ids and bad formats are errors)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RegistryError(f"cannot read '{path}': {e}") from None
    out: dict[str, Claim] = {}
    for n, raw in enumerate(doc.get("claim", []), 1):
        extra = set(raw) - set(FIELDS)
        missing = {"id", "command", "file", "path"} - set(raw)
        if extra or missing:
            raise RegistryError(
                f"claim #{n} in '{path}': unknown {sorted(extra)} / missing {sorted(missing)}"
            )
        path_ = tuple(
            p if isinstance(p, int) and not isinstance(p, bool) else str(p) for p in raw["path"]
        )
        c = Claim(**{**raw, "path": path_})
        if c.id in out:
            raise RegistryError(f"claim id '{c.id}' is registered twice in '{path}'")
        _formatter(c.format)  # validate early
        out[c.id] = c
    return out


def _formatter(fmt: str):
    """A function value → README text for one format name (RegistryError if unknown)."""
    if fmt == "str":
        return str
    if fmt == "int":
        return lambda v: str(int(round(_number(v))))
    if fmt == "ci" or fmt.startswith("ci:"):
        digits = int(fmt.split(":")[1]) if ":" in fmt else 3
        return lambda v: _ci(v, digits)
    try:
        format(1.5, fmt)
    except ValueError:
        raise RegistryError(f"unknown format '{fmt}'; use ci, ci:N, int, str or e.g. .3f") from None
    return lambda v: format(_number(v), fmt)


def _number(v: Any) -> float:
    """A plain number, or the mean of a summary {"mean": ...}."""
    if isinstance(v, dict):
        v = v.get("mean")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def _ci(v: Any, digits: int) -> str:
    """``mean ± half-width`` with linrep's own formatter (the one used in every report)."""
    from linrep.report import format_ci, format_value

    mean = _number(v)
    lo, hi = (v.get("ci") or [None, None]) if isinstance(v, dict) else (None, None)
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return format_value(mean, digits)
    return format_ci(mean, lo, hi, digits)


def value(claim: Claim, root: Path) -> Any:
    """The raw JSON value of a claim under ``root`` (KeyError / FileNotFoundError with context)."""
    f = root / claim.file
    if not f.is_file():
        raise FileNotFoundError(f"{claim.id}: '{claim.file}' does not exist; run: {claim.command}")
    node: Any = json.loads(f.read_text(encoding="utf-8"))
    wrote = node.get("command") if isinstance(node, dict) else None
    if isinstance(wrote, str) and wrote != claim.command:  # benchmark files name their command
        raise ValueError(
            f"{claim.id}: '{claim.file}' was written by '{wrote}', not by the command the README "
            f"names; run: {claim.command}"
        )
    for i, key in enumerate(claim.path):
        if isinstance(key, int):
            found = isinstance(node, list) and -len(node) <= key < len(node)
        else:
            found = isinstance(node, dict) and key in node
        if not found:
            where = "/".join(map(str, claim.path[: i + 1]))
            raise KeyError(f"{claim.id}: '{claim.file}' has no '{where}'; run: {claim.command}")
        node = node[key]
    return node


def render(claim: Claim, root: Path) -> str:
    """The README text of a claim, from its file."""
    return _formatter(claim.format)(value(claim, root))


def sections(text: str) -> list[str]:
    """README sections: the text from one markdown heading to the next (code blocks kept whole)."""
    out, cur, fence = [], [], False
    for line in text.splitlines():
        fence ^= line.lstrip().startswith("```")
        if line.startswith("#") and not fence and cur:
            out.append("\n".join(cur))
            cur = []
        cur.append(line)
    out.append("\n".join(cur))
    return out


def check(readme: str, claims: dict[str, Claim], root: Path) -> list[str]:
    """Problems of the README against the registry and the files under ``root`` (empty: all good)."""
    problems = []
    for section in sections(readme):
        for cid, shown in MARKER.findall(section):
            claim = claims.get(cid)
            if claim is None:
                problems.append(f"{cid}: marker in README but not registered in claims.toml")
                continue
            if claim.command not in section:
                problems.append(f"{cid}: its command '{claim.command}' is not named next to it")
            try:
                want = render(claim, root)
            except (OSError, KeyError, ValueError) as e:
                problems.append(f"missing {e}")
                continue
            if want != shown.strip():
                problems.append(f"stale {cid}: README shows '{shown.strip()}', file gives '{want}'")
    return problems


def update(readme: str, claims: dict[str, Claim], root: Path) -> tuple[str, list[str]]:
    """The README with every resolvable marker rewritten; problems for the others."""
    problems: list[str] = []

    def repl(m: re.Match) -> str:
        claim = claims.get(m.group(1))
        if claim is None:
            problems.append(f"{m.group(1)}: not registered in claims.toml")
            return m.group(0)
        try:
            return f"<!--claim:{claim.id}-->{render(claim, root)}<!--/claim-->"
        except (OSError, KeyError, ValueError) as e:
            problems.append(f"missing {e}")
            return m.group(0)

    return MARKER.sub(repl, readme), problems


def keys(claims: dict[str, Claim], root: Path, quick_only: bool) -> list[str]:
    """Problems: claims whose file under ``root`` lacks the key or holds no finite number."""
    problems = []
    for claim in claims.values():
        if quick_only and not claim.quick:
            continue
        try:
            v = value(claim, root)
            if claim.format != "str" and not math.isfinite(_number(v)):
                problems.append(f"{claim.id}: value is not finite")
        except (OSError, KeyError, ValueError) as e:
            problems.append(str(e))
    return problems


UNMARKED = re.compile(r"(?<![\w.])\d+\.\d{2,}(?![\w.])")
SETTING = re.compile(r"(?:\blr|arXiv|=|scales?|rates?|init)\s*$")


def unmarked_numbers(readme: str) -> list[str]:
    """Decimal numbers with ≥ 2 decimals outside markers, code blocks and inline code.

    Settings are not measurements: a number right after "lr", "arXiv", "=", "init", "rate(s)" or
    "scale(s)", or a range "a–b" of such, is not flagged.
    """
    text = re.sub(r"```.*?```", "", readme, flags=re.S)
    text = MARKER.sub("", text)
    text = REF.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        for m in UNMARKED.finditer(line):
            before = re.sub(r"[\d.]+–$", "", line[: m.start()])  # "rates 0.001–1": the range start
            if not SETTING.search(before):
                out.append(f"unmarked number '{m.group(0)}' in: {line.strip()[:80]}")
    return out


def missing_sources(readme: str, root: Path = ROOT) -> list[str]:
    """Cited numbers whose SOURCE looks like a repository path (has a '/' or '.md') but is absent."""
    out = []
    for source, shown in REF.findall(readme):
        path = source.split("#")[0].split(" §")[0].strip()
        if ("/" in path or path.endswith(".md")) and not (root / path).exists():
            out.append(f"cited number '{shown.strip()}': its source '{source}' does not exist")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("check", "update", "keys", "list"))
    p.add_argument("--root", type=Path, default=ROOT, help="folder the commands ran in")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--registry", type=Path, default=ROOT / "claims.toml")
    p.add_argument("--quick-only", action="store_true", help="keys: only claims with quick = true")
    p.add_argument("--strict", action="store_true", help="check: also flag unmarked numbers")
    a = p.parse_args(argv)
    try:
        claims = load_registry(a.registry)
    except RegistryError as e:
        print(f"claims: error: {e}", file=sys.stderr)
        return 2
    if a.action == "list":
        for c in claims.values():
            print(f"{c.id}\t{c.command}\t{c.file}\t{'/'.join(map(str, c.path))}")
        return 0
    if a.action == "keys":
        problems = keys(claims, a.root, a.quick_only)
    else:
        readme = a.readme.read_text(encoding="utf-8")
        if a.action == "update":
            new, problems = update(readme, claims, a.root)
            if new != readme:
                from linrep.io import atomic_write_text

                atomic_write_text(a.readme, new)
        else:
            problems = check(readme, claims, a.root)
            problems += unmarked_numbers(readme) + missing_sources(readme) if a.strict else []
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
