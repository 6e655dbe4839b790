"""Bad input across every command: exit 2, one line naming the problem, no traceback, and results
already in --out left exactly as they were.

Each case writes its input files into a fresh folder that also holds an earlier run's results
(``out/keep.json`` with linrep's folder marker and, for some cases, ``out/checkpoint.pt`` / sweep
tables), runs ``linrep.cli.main([...])`` capturing stderr — with ``--overwrite`` unless the case
resumes, so the command really tries to replace those results — and checks:

* the exit status is 2;
* stderr ends with ONE ``linrep...: error: ...`` line containing the case's key words (argparse
  errors are preceded by their usage line; linrep's own errors are the only line);
* there is no "Traceback";
* every file that existed before is byte-for-byte unchanged, and no result file was added.

A few cases also run the real ``linrep`` process to check the same from the outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from linrep.cli import COMMANDS, main
from linrep.io import MARKER

TRAIN = "[latent]\nm = 3\n[model]\nd = 4\n[train]\nsteps = 40\nlog_every = 20\n"
SWEEP = TRAIN + '[sweep]\nseeds = "0-1"\n[sweep.grid]\n"model.d" = [2, 4]\n'


@dataclass
class Case:
    id: str
    argv: list[str]
    words: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    prep: Callable[[Path], None] | None = None
    new_files_ok: bool = False
    """Runtime failures (a NaN loss) may add diagnostics (history.csv); existing files stay."""

    @property
    def command(self) -> str:
        return self.argv[0]


def _real_checkpoint(tmp: Path) -> None:
    """A genuine checkpoint written by a short training run with lr = 1.0."""
    (tmp / "ck.toml").write_text(TRAIN)
    assert main(["train", "ck.toml", "--out", "out", "--quiet", "--overwrite"]) == 0
    (tmp / "out" / "keep.json").write_text('{"keep": true}\n')


def _foreign_sweep(tmp: Path) -> None:
    (tmp / "out" / "sweep.json").write_text(
        json.dumps(
            {
                "fingerprint": "0123456789ab",
                "base": {
                    "latent": {"m": 3},
                    "model": {"d": 4},
                    "train": {"steps": 99, "log_every": 20},
                },
            }
        )
    )
    (tmp / "out" / "results.csv").write_text("run_id,status\nabc,ok\n")


CASES = [
    # ---------------------------------------------------------------- any command
    Case("unknown-command", ["fly"], ["invalid choice", "fly"]),
    Case("latent-missing-out", ["latent", "c.toml"], ["required", "--out"]),
    # ---------------------------------------------------------------- latent: files
    Case(
        "latent-config-missing",
        ["latent", "nope.toml", "--out", "out"],
        ["nope.toml", "does not exist"],
    ),
    Case("latent-config-is-folder", ["latent", "out", "--out", "out"], ["is a folder"]),
    Case(
        "latent-not-toml",
        ["latent", "c.toml", "--out", "out"],
        ["c.toml", "not valid TOML"],
        {"c.toml": "[latent\nm = 3\n"},
    ),
    Case(
        "latent-not-utf8",
        ["latent", "c.toml", "--out", "out"],
        ["not UTF-8"],
        {"c.toml": b"\xff\xfe\x00["},
    ),
    Case(
        "latent-no-section",
        ["latent", "c.toml", "--out", "out"],
        ["no [latent] section"],
        {"c.toml": "[model]\nd = 3\n"},
    ),
    Case(
        "latent-out-is-file",
        ["latent", "c.toml", "--out", "out/keep.json"],
        ["out/keep.json", "--out"],
        {"c.toml": "[latent]\nm = 2\n"},
    ),
    # ---------------------------------------------------------------- latent: values
    Case(
        "latent-unknown-key",
        ["latent", "c.toml", "--out", "out"],
        ["'mm'", "[latent]", "did you mean 'm'"],
        {"c.toml": "[latent]\nmm = 3\n"},
    ),
    Case(
        "latent-m-zero",
        ["latent", "c.toml", "--out", "out"],
        ["latent.m", "1 ≤ m"],
        {"c.toml": "[latent]\nm = 0\n"},
    ),
    Case(
        "latent-m-type",
        ["latent", "c.toml", "--out", "out"],
        ["latent.m", "integer"],
        {"c.toml": "[latent]\nm = 'four'\n"},
    ),
    Case(
        "latent-kind-typo",
        ["latent", "c.toml", "--out", "out"],
        ["isng", "did you mean 'ising'"],
        {"c.toml": "[latent]\nkind = 'isng'\n"},
    ),
    Case(
        "latent-known-range",
        ["latent", "c.toml", "--out", "out"],
        ["min_known", "max_known"],
        {"c.toml": "[latent]\nm = 3\nmin_known = 3\nmax_known = 1\n"},
    ),
    Case(
        "latent-p1-range",
        ["latent", "c.toml", "--out", "out"],
        ["latent.p1", "[0, 1]"],
        {"c.toml": "[latent]\nm = 2\np1 = [0.5, 1.5]\n"},
    ),
    Case(
        "latent-table-sum",
        ["latent", "c.toml", "--out", "out"],
        ["latent.table", "sum to 1"],
        {"c.toml": "[latent]\nm = 1\nkind = 'table'\ntable = [0.5, 0.6]\n"},
    ),
    Case(
        "latent-dag-cycle",
        ["latent", "c.toml", "--out", "out"],
        ["cycle", "DAG"],
        {
            "c.toml": "[latent]\nm = 2\nkind = 'bayesnet'\nparents = [[1], [0]]\ncpt = [[0.5, 0.5], [0.5, 0.5]]\n"
        },
    ),
    Case(
        "latent-J-shape",
        ["latent", "c.toml", "--out", "out"],
        ["latent.J", "(2, 2)"],
        {"c.toml": "[latent]\nm = 2\nkind = 'ising'\nJ = [[0, 1]]\n"},
    ),
    Case(
        "latent-too-big",
        ["latent", "c.toml", "--out", "out"],
        ["max_cells", "sampled"],
        {"c.toml": "[latent]\nm = 16\n"},
    ),
    Case(
        "latent-wrong-kind-key",
        ["latent", "c.toml", "--out", "out"],
        ["latent.p1", "kind"],
        {"c.toml": "[latent]\nkind = 'ising'\np1 = [0.5]\nm = 1\n"},
    ),
    Case(
        "latent-synonyms",
        ["latent", "c.toml", "--out", "out"],
        ["latent.synonyms", "positive"],
        {"c.toml": "[latent]\nsynonyms = [1, -1]\n"},
    ),
    # ---------------------------------------------------------------- train
    Case(
        "train-set-unknown-key",
        ["train", "t.toml", "--out", "out", "--set", "train.lrr=1"],
        ["'lrr'", "did you mean 'lr'"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-set-no-section",
        ["train", "t.toml", "--out", "out", "--set", "lr=1"],
        ["--set", "section.key=value"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-encoder-typo",
        ["train", "t.toml", "--out", "out", "--set", "model.encoder=lineer"],
        ["lineer", "did you mean 'linear'"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-loss-unknown",
        ["train", "t.toml", "--out", "out", "--set", "train.loss=mse"],
        ["train.loss", "mse", "cross_entropy"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-optimizer-typo",
        ["train", "t.toml", "--out", "out", "--set", "train.optimizer=adan"],
        ["adan", "did you mean 'adam'"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-steps-zero",
        ["train", "t.toml", "--out", "out", "--set", "train.steps=0"],
        ["train.steps", "> 0"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-lr-negative",
        ["train", "t.toml", "--out", "out", "--set", "train.lr=-1"],
        ["train.lr", "> 0"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-d-zero",
        ["train", "t.toml", "--out", "out", "--set", "model.d=0"],
        ["model.d", "≥ 1"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-seeds-bad",
        ["train", "t.toml", "--out", "out", "--seeds", "5-1"],
        ["--seeds", "5-1"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-unknown-section",
        ["train", "t.toml", "--out", "out"],
        ["[trian]", "did you mean 'train'"],
        {"t.toml": TRAIN + "[trian]\nx = 1\n"},
    ),
    Case(
        "train-corrupt-checkpoint",
        ["train", "t.toml", "--out", "out", "--resume"],
        ["out/checkpoint.pt", "cannot be read"],
        {"t.toml": TRAIN, "out/checkpoint.pt": b"not a checkpoint"},
    ),
    Case(
        "train-resume-other-config",
        ["train", "ck.toml", "--out", "out", "--resume", "--set", "train.lr=0.5"],
        ["cannot resume", "train", "lr"],
        prep=_real_checkpoint,
    ),
    Case(
        "train-sgd-needs-batch-size",
        ["train", "t.toml", "--out", "out", "--set", "train.optimizer=sgd"],
        ["train.optimizer", "batch_size"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-transformer-heads",
        [
            "train",
            "t.toml",
            "--out",
            "out",
            "--set",
            "model.encoder=transformer",
            "--set",
            "model.heads=3",
        ],
        ["model.heads", "divide"],
        {"t.toml": TRAIN},
    ),
    Case(
        "train-diverging-lr",
        ["train", "t.toml", "--out", "out", "--quiet", "--set", "train.lr=1e30"],
        ["nan", "step", "lower train.lr"],
        {"t.toml": TRAIN},
        new_files_ok=True,
    ),
    # ---------------------------------------------------------------- sweep
    Case(
        "sweep-file-missing",
        ["sweep", "nope.toml", "--out", "out", "--serial"],
        ["nope.toml", "does not exist"],
    ),
    Case(
        "sweep-no-sweep-section",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["no [sweep] section"],
        {"s.toml": TRAIN},
    ),
    Case(
        "sweep-grid-unknown-key",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["model.dd", "did you mean 'd'"],
        {"s.toml": SWEEP.replace('"model.d"', '"model.dd"')},
    ),
    Case(
        "sweep-grid-unknown-section",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["modle.d", "did you mean 'model'"],
        {"s.toml": SWEEP.replace('"model.d"', '"modle.d"')},
    ),
    Case(
        "sweep-grid-bad-value",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["model.d=0", "model.d must be ≥ 1"],
        {"s.toml": SWEEP.replace("[2, 4]", "[2, 0]")},
    ),
    Case(
        "sweep-grid-not-list",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["model.d", "list"],
        {"s.toml": SWEEP.replace("[2, 4]", "4")},
    ),
    Case(
        "sweep-seeds-bad",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["sweep.seeds", "0-9"],
        {"s.toml": SWEEP.replace('"0-1"', '"zero"')},
    ),
    Case(
        "sweep-seed-in-grid",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["train.seed", "seeds"],
        {"s.toml": SWEEP.replace('"model.d"', '"train.seed"')},
    ),
    Case(
        "sweep-base-missing",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["base.toml", "does not exist"],
        {"s.toml": 'base = "base.toml"\n' + SWEEP},
    ),
    Case(
        "sweep-random-unknown-dist",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["train.lr", "log_uniform"],
        {
            "s.toml": SWEEP.replace("[sweep]\n", "[sweep]\nn_random = 2\n")
            + '[sweep.random]\n"train.lr" = { normal = [0, 1] }\n'
        },
    ),
    Case(
        "sweep-unknown-option",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["'sedes'", "did you mean 'seeds'"],
        {"s.toml": SWEEP.replace("seeds =", "sedes =")},
    ),
    Case(
        "sweep-base-bad-value",
        ["sweep", "s.toml", "--out", "out", "--serial"],
        ["train.steps", "> 0"],
        {"s.toml": SWEEP.replace("steps = 40", "steps = 0")},
    ),
    Case(
        "sweep-max-parallel-zero",
        ["sweep", "s.toml", "--out", "out", "--max-parallel", "0"],
        ["--max-parallel", "≥ 1"],
        {"s.toml": SWEEP},
    ),
    Case(
        "sweep-address-malformed",
        ["sweep", "s.toml", "--out", "out", "--address", "not an address"],
        ["--address", "HOST:PORT"],
        {"s.toml": SWEEP},
    ),
    Case(
        "sweep-address-unreachable",
        ["sweep", "s.toml", "--out", "out", "--address", "127.0.0.1:1"],
        ["cannot reach", "127.0.0.1:1"],
        {"s.toml": SWEEP},
    ),
    Case(
        "sweep-address-and-serial",
        ["sweep", "s.toml", "--out", "out", "--address", "auto", "--serial"],
        ["--address", "--serial"],
        {"s.toml": SWEEP},
    ),
    Case(
        "sweep-foreign-results",
        ["sweep", "s.toml", "--out", "out", "--serial", "--resume"],
        ["results.csv", "not from linrep sweep"],
        {"s.toml": SWEEP, "out/results.csv": "a,b\n1,2\n"},
    ),
    Case(
        "sweep-into-another-commands-folder",
        ["sweep", "s.toml", "--out", "out", "--serial", "--resume"],
        ["report.html", "not from linrep sweep"],
        {"s.toml": SWEEP, "out/report.html": "<html>simulate report</html>"},
    ),
    Case(
        "sweep-other-base-config",
        ["sweep", "s.toml", "--out", "out", "--serial", "--resume"],
        ["different base config", "train.steps"],
        {"s.toml": SWEEP},
        prep=_foreign_sweep,
    ),
    Case(
        "sweep-damaged-sweep-json",
        ["sweep", "s.toml", "--out", "out", "--serial", "--resume"],
        ["sweep.json", "not valid JSON"],
        {"s.toml": SWEEP, "out/sweep.json": '{"fingerprint": '},
    ),
    # ---------------------------------------------------------------- llm (model paths, concept files)
    Case(
        "llm-unknown-model",
        ["llm", "--model", "gemma-9000", "--out", "out", "--contexts", "none"],
        ["gemma-9000", "did you mean 'gemma-3-270m'"],
    ),
    Case(
        "llm-model-path-missing",
        ["llm", "--model", "nope/model.gguf", "--out", "out", "--contexts", "none"],
        ["nope/model.gguf", "existing path"],
    ),
    Case(
        "llm-not-a-gguf",
        ["llm", "--model", "bad.gguf", "--out", "out", "--contexts", "none"],
        ["bad.gguf", "GGUF"],
        {"bad.gguf": b"\x00" * 512},
    ),
    Case(
        "llm-corrupt-gguf",
        ["llm", "--model", "bad.gguf", "--out", "out", "--contexts", "none"],
        ["bad.gguf", "corrupted"],
        {"bad.gguf": b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8},
    ),
    Case(
        "llm-hf-folder-without-weights",
        ["llm", "--model", "hf", "--out", "out", "--contexts", "none"],
        ["'hf'", "safetensors"],
        {"hf/config.json": "{}"},
    ),
    Case(
        "llm-concepts-missing",
        ["llm", "--concepts", "nodir", "--out", "out", "--contexts", "none"],
        ["nodir", "does not exist"],
    ),
    Case(
        "llm-concepts-empty",
        ["llm", "--concepts", "pairs", "--out", "out", "--contexts", "none"],
        ["pairs", "[<base> - <target>].txt"],
        {"pairs/readme.md": "no pairs here"},
    ),
    Case(
        "llm-concepts-bad-line",
        ["llm", "--concepts", "pairs", "--out", "out", "--contexts", "none"],
        ["[male - female].txt", "line 1", "base<TAB>target"],
        {"pairs/[male - female].txt": "king\n"},
    ),
    Case(
        "llm-contexts-missing",
        ["llm", "--contexts", "nodir", "--out", "out"],
        ["contexts folder", "nodir"],
    ),
    Case(
        "llm-set-unknown-key", ["llm", "--set", "llm.bogus=1", "--out", "out"], ["'bogus'", "[llm]"]
    ),
    Case(
        "llm-config-unknown-section",
        ["llm", "--config", "l.toml", "--out", "out"],
        ["[llmm]", "did you mean 'llm'"],
        {"l.toml": "[llmm]\nx = 1\n"},
    ),
    # ---------------------------------------------------------------- simulate / reproduce
    Case(
        "simulate-config-missing",
        ["simulate", "nope.toml", "--out", "out"],
        ["nope.toml", "does not exist"],
    ),
    Case(
        "simulate-unknown-key",
        ["simulate", "t.toml", "--out", "out"],
        ["'bogus'", "[simulate]"],
        {"t.toml": TRAIN + "[simulate]\nbogus = 1\n"},
    ),
    Case(
        "simulate-seeds-bad",
        ["simulate", "t.toml", "--out", "out", "--seeds", "x"],
        ["--seeds", "'x'"],
        {"t.toml": TRAIN},
    ),
    Case("reproduce-unknown-experiment", ["reproduce", "E19", "--out", "out"], ["E19", "E1"]),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    if case.command not in COMMANDS and case.command != "fly":
        pytest.skip(f"'linrep {case.command}' does not exist in this build")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("LINREP_CACHE", str(tmp_path / "cache"))  # llm: any cache write is seen
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.json").write_text('{"keep": true}\n')
    (tmp_path / "out" / MARKER).write_text(json.dumps({"command": case.command}))
    for name, content in case.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    if case.prep is not None:
        case.prep(tmp_path)
    capsys.readouterr()
    before = _snapshot(tmp_path)

    argv = case.argv
    if "--out" in argv and not {"--resume", "--overwrite"} & set(argv):
        argv = [*argv, "--overwrite"]
    code = _call(argv)

    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "no error message"
    msg = lines[-1]
    assert msg.startswith("linrep") and "error:" in msg, err
    others = [ln for ln in lines[:-1] if "error" in ln.lower()]
    assert not others, f"the error takes more than one line: {lines}"
    for word in case.words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    after = _snapshot(tmp_path)
    if case.new_files_ok:
        after = {k: v for k, v in after.items() if k in before}
    assert after == before, "bad input changed or added files"


def test_suite_is_large_and_covers_every_command():
    assert len(CASES) >= 30
    covered = {c.command for c in CASES}
    missing = set(COMMANDS) - covered
    # a command added later must come with cases of its own
    assert not missing, f"no bad-input cases for: {missing}"


@pytest.mark.parametrize(
    ("argv", "files", "words"),
    [
        (["latent", "c.toml", "--out", "out"], {"c.toml": "[latent]\nm = 0\n"}, ["latent.m"]),
        (["sweep", "s.toml", "--out", "out", "--serial"], {"s.toml": TRAIN}, ["[sweep]"]),
        (["train", "t.toml", "--out", "out", "--set", "train.lrr=1"], {"t.toml": TRAIN}, ["lrr"]),
        (["latent", "--out"], {}, ["--out"]),
    ],
    ids=["latent", "sweep", "train", "argparse"],
)
def test_real_process_exits_2_without_traceback(argv, files, words, tmp_path):
    if argv[0] not in COMMANDS:
        pytest.skip(f"'linrep {argv[0]}' does not exist in this build")
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    res = subprocess.run(
        [sys.executable, "-m", "linrep", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "error:" in last and all(w in last for w in words), res.stderr
