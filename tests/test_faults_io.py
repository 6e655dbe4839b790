"""Fault suite, inputs: files that cannot be read as asked (missing, a folder, a symlink loop, a pipe,
a device, huge, not UTF-8, permission denied), checkpoints that unpickle but are damaged, and sweep
tables with oversized, undecodable or malformed cells. Each must give exit 2 and one line naming the
file, and leave the results already in --out byte-identical.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from faultkit import (
    SWEEP,
    TRAIN,
    assert_one_line_error,
    assert_unchanged,
    call,
    snapshot,
    write_files,
)
from linrep.io import MARKER


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_files(
        tmp_path,
        {"t.toml": TRAIN, "out/metrics.json": '{"old": true}\n', f"out/{MARKER}": "{}"},
    )
    return tmp_path


def _check(work: Path, argv: list[str], *words: str) -> str:
    before = snapshot(work)
    code, _, err = call(argv)
    msg = assert_one_line_error(code, err, *words)
    assert_unchanged(before, snapshot(work))
    return msg


# ------------------------------------------------------------------ unreadable config files
def _loop(work: Path) -> str:
    os.symlink("b.toml", work / "a.toml")
    os.symlink("a.toml", work / "b.toml")
    return "a.toml"


def _fifo(work: Path) -> str:
    os.mkfifo(work / "fifo.toml")
    return "fifo.toml"


def _huge(work: Path) -> str:
    with open(work / "huge.toml", "wb") as fh:
        fh.truncate(40 * 2**20)  # sparse: no disk used
    return "huge.toml"


def _folder(work: Path) -> str:
    (work / "dir.toml").mkdir()
    return "dir.toml"


def _binary(work: Path) -> str:
    (work / "bin.toml").write_bytes(b"\xff\xfe\x00\x80[latent]")
    return "bin.toml"


def _dangling(work: Path) -> str:
    os.symlink("nowhere.toml", work / "dangling.toml")
    return "dangling.toml"


UNREADABLE = {
    "symlink-loop": (_loop, "symbolic links"),
    "fifo": (_fifo, "not a regular file"),
    "device": (lambda w: "/dev/zero", "not a regular file"),
    "huge": (_huge, "MiB"),
    "folder": (_folder, "is a folder"),
    "not-utf8": (_binary, "UTF-8"),
    "dangling-symlink": (_dangling, "does not exist"),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
@pytest.mark.parametrize("command", ["train", "latent", "sweep", "simulate"])
def test_unreadable_config_is_one_line(work, kind, command):
    make, word = UNREADABLE[kind]
    path = make(work)
    argv = [command, path, "--out", "out", "--overwrite"] + (
        ["--serial"] if command == "sweep" else []
    )
    _check(work, argv, word)


def test_permission_denied_config(work, monkeypatch):
    real = Path.read_bytes

    def denied(self):
        if self.name == "t.toml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    before = snapshot(work)
    monkeypatch.setattr(Path, "read_bytes", denied)
    code, _, err = call(["train", "t.toml", "--out", "out", "--overwrite"])
    monkeypatch.undo()
    assert_one_line_error(code, err, "t.toml", "permission")
    assert_unchanged(before, snapshot(work))


def test_sweep_base_that_is_a_folder_or_a_loop(work):
    (work / "basedir").mkdir()
    write_files(
        work,
        {
            "s.toml": 'base = "basedir"\n'
            + SWEEP.split("[latent]")[0]
            + SWEEP[SWEEP.index("[sweep]") :]
        },
    )
    _check(
        work, ["sweep", "s.toml", "--out", "out", "--serial", "--overwrite"], "basedir", "folder"
    )
    _loop(work)
    write_files(work, {"s.toml": 'base = "a.toml"\n' + SWEEP[SWEEP.index("[sweep]") :]})
    _check(work, ["sweep", "s.toml", "--out", "out", "--serial", "--overwrite"], "a.toml")


# ------------------------------------------------------------------ damaged checkpoints
@pytest.fixture
def trained(work):
    code, _, err = call(["train", "t.toml", "--out", "run", "--quiet"])
    assert code == 0, err
    return work


def _resave(path: Path, **changes) -> None:
    """Rewrite a genuine checkpoint with some entries replaced (None deletes the entry)."""
    ck = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if v is None:
            ck.pop(k)
        else:
            ck[k] = v
    torch.save(ck, path)


DAMAGE = {
    "no-theta": {"theta": None},
    "theta-not-tensor": {"theta": [1.0, 2.0]},
    "theta-1d": {"theta": torch.zeros(5)},
    "no-opt-state": {"opt_state": None},
    "opt-state-wrong-K": {"opt_state": {"m": torch.zeros(7, 3)}},
    "no-step": {"step": None},
    "negative-step": {"step": -4},
    "step-is-text": {"step": "10"},
    "history-not-json": {"history_json": "[{"},
    "history-not-rows": {"history_json": "[1, 2, 3]"},
    "history-rows-without-step": {"history_json": '[{"run": 0}]'},
    "history-deeply-nested": {"history_json": "[" * 100_000 + "]" * 100_000},
    "no-fingerprint": {"fingerprint_json": None},
    "fingerprint-not-table": {"fingerprint_json": "[1]"},
    "not-a-dict": None,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_from_a_damaged_checkpoint_is_one_line(trained, damage):
    ck = trained / "run" / "checkpoint.pt"
    if DAMAGE[damage] is None:
        torch.save([1, 2, 3], ck)
    else:
        _resave(ck, **DAMAGE[damage])
    msg = _check(trained, ["train", "t.toml", "--out", "run", "--quiet", "--resume"], "checkpoint")
    assert "run/checkpoint.pt" in msg  # named where the user finds it, not in the staging copy


def test_checkpoint_with_a_mismatched_optimizer_state(trained):
    ck = trained / "run" / "checkpoint.pt"
    _resave(ck, opt_state={"unrelated": torch.zeros(1, 3)})
    code, _, err = call(["train", "t.toml", "--out", "run", "--quiet", "--resume"])
    # gd keeps no state, so an extra entry is harmless; with adam the state must fit
    assert code == 0 or "checkpoint" in err
    code, _, err = call(
        ["train", "t.toml", "--out", "adam", "--quiet", "--set", "train.optimizer=adam"]
    )
    assert code == 0, err
    _resave(trained / "adam" / "checkpoint.pt", opt_state={"m": torch.zeros(1, 2)})
    _check(
        trained,
        [
            "train",
            "t.toml",
            "--out",
            "adam",
            "--quiet",
            "--resume",
            "--set",
            "train.optimizer=adam",
        ],
        "checkpoint",
    )


# ------------------------------------------------------------------ damaged sweep tables
def _sweep_table(work: Path, text: str | bytes) -> None:
    (work / "sw").mkdir(exist_ok=True)
    write_files(work, {"s.toml": SWEEP, f"sw/{MARKER}": json.dumps({"command": "sweep"})})
    code, _, err = call(["sweep", "s.toml", "--out", "sw", "--serial", "--quiet", "--overwrite"])
    assert code == 0, err
    header = (work / "sw" / "results.csv").read_text().splitlines()[0]
    body = text if isinstance(text, bytes) else text.replace("HEADER", header).encode()
    (work / "sw" / "results.csv").write_bytes(body)


TABLES = {
    "oversized-cell": "HEADER\nabc,ok," + "x" * 200_000 + "\n",
    "nul-byte": "HEADER\nabc,ok\x00,1\n",
    "undecodable": b"run_id,status\n\xff\xfe,ok\n",
    "short-row": "HEADER\nabc\n",
    "no-run-id-column": "a,b\n1,2\n",
    "unterminated-quote": 'HEADER\n"abc,ok\n',
}


@pytest.mark.parametrize("table", list(TABLES))
def test_damaged_results_table_is_one_line(work, table):
    _sweep_table(work, TABLES[table])
    _check(work, ["sweep", "s.toml", "--out", "sw", "--serial", "--quiet", "--resume"], "results")


def test_deeply_nested_json_cell_is_read_as_text(work):
    from linrep.sweep import read_results

    (work / "r.csv").write_text("run_id,status,x\nabc,ok," + "[" * 5000 + "\n")
    assert read_results(work / "r.csv")[0]["x"] == "[" * 5000
