"""mkdocs hooks. ``::: modules of linrep.X`` in an API page becomes one ``::: linrep.X.<module>`` block
per public module of the package, so a module added later is documented without editing the page."""

from __future__ import annotations

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
