"""mkdocs hooks that keep the site complete as the code grows, without editing mkdocs.yml:

- ``::: modules of linrep.X`` in an API page becomes one ``::: linrep.X.<module>`` block per public
  module of the package (a module added later is documented);
- a page added to docs/ later is listed under "Science";
- Sphinx-style roles in docstrings (``:func:`~x```) are shown as plain code;
- griffe's note that a docstring line is not a ``name: description`` item (several attributes
  described in one sentence, a house style in places) is information, not a warning: the build
  stays strict for everything else (broken links, unknown pages, parameters that do not exist).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PATTERN = re.compile(r"^::: modules of (linrep(?:\.\w+)*)\s*$", re.M)


def _blocks(package: str) -> str:
    folder = SRC.joinpath(*package.split("."))
    names = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    return "\n\n".join(f"::: {package}.{name}" for name in names)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return PATTERN.sub(lambda m: _blocks(m.group(1)), markdown)


ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc|obj):(<code>)~?")


def on_page_content(html: str, **kwargs) -> str:
    """Docstrings cite objects Sphinx-style (``:func:`~linrep.x```); show just the code."""
    return ROLE.sub(r"\1", html)


def _nav_files(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_files(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_nav_files(v) for v in nav)) if nav else set()
    return set()


class _ListLayoutIsInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "Failed to get 'name: description' pair" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def on_config(config, **kwargs):
    """A science page added to docs/ later appears under "Science" without editing mkdocs.yml."""
    logging.getLogger("mkdocs.plugins.griffe").addFilter(_ListLayoutIsInfo())
    docs = Path(config["docs_dir"])
    listed = _nav_files(config["nav"])
    science = next(e["Science"] for e in config["nav"] if isinstance(e, dict) and "Science" in e)
    for page in sorted(docs.glob("*.md")):
        if page.name not in listed:
            title = page.read_text(encoding="utf-8").split("\n", 1)[0].lstrip("# ").strip()
            science.append({title or page.stem: page.name})
    return config
