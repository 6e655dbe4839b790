"""The documentation site builds with warnings as errors (``mkdocs build --strict``): every page in
the nav, every link resolved, every docstring of the API reference parsed without a complaint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    problems = [ln for ln in res.stderr.splitlines() if not ln.startswith("INFO")]
    assert res.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems[-40:])
    api = (tmp_path / "site" / "api" / "learn" / "index.html").read_text()
    assert "linrep.learn.trainer" in api and "TrainResult" in api  # modules are documented


def test_every_science_page_is_in_the_site(tmp_path):
    """Pages added to docs/ later are put in the nav by the hook (nothing to edit)."""
    pytest.importorskip("mkdocs")
    from mkdocs.config import load_config

    cfg = load_config(str(ROOT / "mkdocs.yml"))
    hooks = cfg["hooks"]
    for hook in hooks.values():
        if hasattr(hook, "on_config"):
            cfg = hook.on_config(cfg)
    nav = str(cfg["nav"])
    pages = [p.name for p in (ROOT / "docs").glob("*.md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]
