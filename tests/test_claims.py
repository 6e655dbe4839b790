"""README claims (scripts/claims.py): the machinery on a planted README, and the repository's own
README and claims.toml — registered markers, commands named next to them, and the keys of every
claim that ``--quick`` covers present in (tiny) quick runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _claims_module():
    spec = importlib.util.spec_from_file_location("claims", ROOT / "scripts" / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["claims"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


claims = _claims_module()

REGISTRY = """
[[claim]]
id = "a-same"
command = "linrep reproduce E1 --out runs"
file = "runs/e1/results.json"
path = ["results", "headline", "same"]
format = "ci"
quick = true

[[claim]]
id = "a-rank"
command = "linrep simulate x.toml --out runs/sim"
file = "runs/sim/metrics.json"
path = ["identifiable", "d"]
format = "int"
"""


@pytest.fixture()
def planted(tmp_path):
    (tmp_path / "claims.toml").write_text(REGISTRY)
    (tmp_path / "runs" / "e1").mkdir(parents=True)
    (tmp_path / "runs" / "sim").mkdir(parents=True)
    summary = {"mean": 0.93812, "ci": [0.93612, 0.94012], "n": 10}
    (tmp_path / "runs/e1/results.json").write_text(
        json.dumps({"results": {"headline": {"same": summary}}})
    )
    (tmp_path / "runs/sim/metrics.json").write_text(json.dumps({"identifiable": {"d": 32}}))
    return tmp_path, claims.load_registry(tmp_path / "claims.toml")


def test_check_and_update_on_a_planted_readme(planted):
    root, reg = planted
    good = (
        "| E1 | `linrep reproduce E1 --out runs` | cos <!--claim:a-same-->0.938 ± 0.002<!--/claim--> |\n"
        "| sim | `linrep simulate x.toml --out runs/sim` | d <!--claim:a-rank-->32<!--/claim--> |\n"
    )
    assert claims.check(good, reg, root) == []
    stale = good.replace("0.938 ± 0.002", "0.941 ± 0.002")
    assert claims.check(stale, reg, root) == [
        "stale a-same: README shows '0.941 ± 0.002', file gives '0.938 ± 0.002'"
    ]
    fixed, problems = claims.update(stale, reg, root)
    assert fixed == good and problems == []
    # the command must be named in the same section (between two headings) as the number
    moved = "# A\ncos <!--claim:a-same-->0.938 ± 0.002<!--/claim-->\n# B\n`linrep reproduce E1 --out runs`\n"
    assert any("not named next to it" in p for p in claims.check(moved, reg, root))
    together = "# A\n`linrep reproduce E1 --out runs`\n\n| x | <!--claim:a-same-->0.938 ± 0.002<!--/claim--> |\n"
    assert claims.check(together, reg, root) == []
    unknown = "x <!--claim:nope-->1<!--/claim-->"
    assert claims.check(unknown, reg, root) == [
        "nope: marker in README but not registered in claims.toml"
    ]
    (root / "runs/sim/metrics.json").unlink()
    assert any(
        p.startswith("missing a-rank: 'runs/sim/metrics.json' does not exist")
        for p in claims.check(good, reg, root)
    )


def test_a_benchmark_file_written_by_another_command_is_not_quoted(planted):
    """A partial benchmark run (``--skip-…``) leaves a file that names its own command line: a
    README number registered with the full command is then reported, not copied from it."""
    root, reg = planted
    doc = {"command": "python benchmarks/bench_x.py", "results": {"ratio": 21.5}}
    (root / "benchmarks").mkdir()
    (root / "benchmarks/x.json").write_text(json.dumps(doc))
    reg = {
        "r": claims.Claim(
            "r", "python benchmarks/bench_x.py", "benchmarks/x.json", ("results", "ratio"), ".1f"
        )
    }
    text = "`python benchmarks/bench_x.py`: <!--claim:r-->21.5<!--/claim-->x"
    assert claims.check(text, reg, root) == []
    doc["command"] = "python benchmarks/bench_x.py --skip-ensemble"
    (root / "benchmarks/x.json").write_text(json.dumps(doc))
    problems = claims.check(text, reg, root)
    assert (
        len(problems) == 1
        and "was written by 'python benchmarks/bench_x.py --skip-ensemble'" in problems[0]
    )
    assert claims.update(text, reg, root)[1] == problems  # update leaves the number, says why


def test_keys_strict_and_registry_errors(planted, tmp_path):
    root, reg = planted
    assert claims.keys(reg, root, quick_only=True) == []  # a-same exists and is finite
    assert len(claims.keys(reg, root / "elsewhere", quick_only=True)) == 1
    assert claims.unmarked_numbers("x 0.938 and <!--claim:a-->0.51<!--/claim--> `lr 0.01`") == [
        "unmarked number '0.938' in: x 0.938 and"
    ]
    cited = (
        "ref <!--ref:docs/learner.md §2-->0.27<!--/ref--> and <!--ref:nowhere/x.md-->0.5<!--/ref-->"
    )
    assert claims.unmarked_numbers(cited) == []
    assert claims.missing_sources(cited) == [
        "cited number '0.5': its source 'nowhere/x.md' does not exist"
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[claim]]\nid = "x"\ncommand = "c"\nfile = "f"\npath = ["a"]\nformt = "ci"\n')
    with pytest.raises(claims.RegistryError, match="unknown"):
        claims.load_registry(bad)
    assert claims.main(["check", "--registry", str(bad)]) == 2


def test_the_repository_registry_is_valid_and_every_readme_marker_is_registered_and_named():
    reg = claims.load_registry(ROOT / "claims.toml")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = [
        p
        for p in claims.check(readme, reg, Path("/nonexistent"))
        if not p.startswith(("missing ", "stale "))  # values need the full runs (not in CI)
    ]
    assert problems == []


def test_quick_runs_produce_every_quick_claim(tiny_runs):
    """Every claim marked quick = true is written by `linrep reproduce --quick` (tiny settings)."""
    from linrep.experiments import EXPERIMENTS

    reg = claims.load_registry(ROOT / "claims.toml")
    stems = {stem: name for name, stem in EXPERIMENTS.items()}
    quick = [c for c in reg.values() if c.quick]
    assert quick, "no claim is covered by --quick"
    for c in quick:
        parts = Path(c.file).parts
        assert parts[0] == "runs" and parts[1] in stems, f"{c.id}: not a reproduce output"
        tiny_runs(stems[parts[1]])
    assert claims.keys(reg, tiny_runs.root, quick_only=True) == []


def test_a_path_indexes_lists_with_integers(tmp_path):
    """Integers in a claim's path index JSON lists (negative from the end); an index past the end,
    or a key where a list is, is a missing claim naming the path and the command."""
    reg_file = tmp_path / "claims.toml"
    reg_file.write_text(
        "".join(
            f'[[claim]]\nid = "{i}"\ncommand = "c"\nfile = "r.json"\npath = {p}\nformat = ".1f"\n'
            for i, p in [("lo", '["range", 0]'), ("hi", '["range", -1]'), ("out", '["range", 2]')]
        )
        + '[[claim]]\nid = "key"\ncommand = "c"\nfile = "r.json"\npath = ["range", "0"]\nformat = ".1f"\n'
    )
    (tmp_path / "r.json").write_text(json.dumps({"range": [4.54, 9.21]}))
    reg = claims.load_registry(reg_file)
    assert reg["lo"].path == ("range", 0)
    assert claims.render(reg["lo"], tmp_path) == "4.5"
    assert claims.render(reg["hi"], tmp_path) == "9.2"
    for bad, where in [("out", "range/2"), ("key", "range/0")]:
        with pytest.raises(KeyError, match=f"has no '{where}'; run: c"):
            claims.value(reg[bad], tmp_path)
