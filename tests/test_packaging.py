"""What users expect of a Python package: typed lazy exports, citation metadata, a changelog,
complete project metadata, a docs extra inside ``all``."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["linrep", "linrep.learn", "linrep.llm"]


def _exports_and_typed_names(package: str) -> tuple[dict[str, str], dict[str, str]]:
    """The package's ``_EXPORTS`` and, from its ``if TYPE_CHECKING:`` block, name → module."""
    init = ROOT / "src" / Path(*package.split(".")) / "__init__.py"
    tree = ast.parse(init.read_text())
    exports: dict[str, str] = {}
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if getattr(target, "id", None) == "_EXPORTS":
                exports = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                module = f"{package}.{imp.module}" if imp.module else package
                for alias in imp.names:
                    assert alias.asname == alias.name, "re-export as `import X as X`"
                    typed[alias.name] = module
    return exports, typed


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_are_visible_to_type_checkers(package):
    exports, typed = _exports_and_typed_names(package)
    assert exports and typed == exports  # same names, from the same modules
    for name, module in exports.items():  # and each really lives there
        assert hasattr(importlib.import_module(module), name), (name, module)


def test_py_typed_ships_with_the_package():
    assert (ROOT / "src" / "linrep" / "py.typed").is_file()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"]["linrep"]


def test_project_metadata_is_complete():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for key in ("name", "version", "description", "readme", "license", "authors", "keywords"):
        assert project.get(key), key
    assert any(c.startswith("Typing :: Typed") for c in project["classifiers"])
    assert {"2403.03867", "2311.03658"} <= {u.rsplit("/", 1)[-1] for u in project["urls"].values()}
    extras = project["optional-dependencies"]
    assert "docs" in extras and "docs" in extras["all"][0]


def test_citation_names_the_software_and_both_papers():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == version and cff["authors"]
    dois = {i["value"] for r in cff["references"] for i in r["identifiers"]}
    assert dois == {"10.48550/arXiv.2403.03867", "10.48550/arXiv.2311.03658"}
    for ref in cff["references"]:
        assert ref["title"] and ref["year"] == 2024 and len(ref["authors"]) >= 3


def test_changelog_has_an_entry_for_this_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in text and "## [Unreleased]" in text
