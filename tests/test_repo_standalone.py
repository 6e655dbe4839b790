"""The repository stands alone: no tracked file points at a path outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a pointer at the parent of the checkout, at the reference notes the project was started from, or
# at a machine-specific absolute path
OUTSIDE = re.compile(
    r"\.\./shared|shared/(?:paper|models|STYLE|REFEREE)\.md|/work/|/root/|/home/\w+"
)


def _tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p]


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in _tracked_files():
        if path.suffix in {".png", ".svg", ".safetensors", ".npz", ".gguf"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and path.name != "test_repo_standalone.py":
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not offenders, "files point outside the repository:\n" + "\n".join(offenders)


def test_docs_sections_cited_by_the_code_exist():
    cited = set()
    for path in _tracked_files():
        if path.suffix in {".py", ".toml", ".md"} and path.is_file():
            cited |= set(re.findall(r"docs/([\w-]+\.md)", path.read_text(encoding="utf-8")))
    missing = sorted(c for c in cited if not (ROOT / "docs" / c).is_file())
    assert cited and not missing, f"cited docs pages missing: {missing}"
