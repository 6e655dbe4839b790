"""Fault suite, output folders: staging, atomic publishing, --resume / --overwrite, locking.

Every command that writes ``--out DIR`` works in ``.DIR.partial`` and publishes the set into DIR in
one step. These cases attack that protocol: re-runs into finished folders, failures halfway, full
disks, two processes on one folder, kill -9, nested folders, folders linrep did not write.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faultkit import (
    ENV,
    SWEEP,
    TRAIN,
    assert_one_line_error,
    assert_unchanged,
    call,
    run,
    snapshot,
    start,
    write_files,
)
from linrep.errors import OutputError
from linrep.io import MARKER, FolderLock, staged_output


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder holding t.toml / s.toml; the current directory for the case."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    write_files(tmp_path, {"t.toml": TRAIN, "s.toml": SWEEP})
    return tmp_path


@pytest.fixture
def finished(work):
    """``out/`` holds a finished ``linrep train`` run (with its checkpoint)."""
    code, _, err = call(["train", "t.toml", "--out", "out", "--quiet"])
    assert code == 0, err
    return work


def _seeds(path: Path) -> list[int]:
    return json.loads((path / "config.json").read_text())["seeds"]


# ------------------------------------------------------------------ publishing
def test_success_publishes_everything_and_leaves_no_staging(work):
    code, out, err = call(["train", "t.toml", "--out", "runs/a", "--quiet"])
    assert code == 0, err
    names = {p.name for p in (work / "runs").iterdir()}
    assert names == {"a"}  # no .a.partial, no .a.lock, no trash
    for f in ("config.json", "history.csv", "params.safetensors", "checkpoint.pt", MARKER):
        assert (work / "runs/a" / f).is_file(), f
    assert json.loads((work / "runs/a" / MARKER).read_text())["status"] == "complete"
    assert "wrote runs/a/" in out  # paths are printed as the user wrote them


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "t.toml", "--out", "o"],
        ["latent", "t.toml", "--out", "o"],
        ["simulate", "t.toml", "--out", "o"],
        ["sweep", "s.toml", "--out", "o", "--serial"],
        ["reproduce", "E7", "--quick", "--out", "o"],
    ],
    ids=lambda a: a[0],
)
def test_printed_paths_name_the_published_folder_not_the_staging_one(work, argv):
    """Progress and summaries (stdout and stderr) never show ``.o.partial``."""
    code, out, err = call(argv)
    assert code == 0, err
    assert ".partial" not in out + err, out + err


@pytest.mark.parametrize("command", ["train", "latent", "simulate", "sweep"])
def test_non_empty_out_needs_resume_or_overwrite(finished, command):
    argv = {
        "train": ["train", "t.toml"],
        "latent": ["latent", "t.toml"],
        "simulate": ["simulate", "t.toml"],
        "sweep": ["sweep", "s.toml", "--serial"],
    }[command]
    before = snapshot(finished)
    quiet = [] if command == "latent" else ["--quiet"]
    code, _, err = call([*argv, "--out", "out", *quiet])
    assert_one_line_error(code, err, "'out'", "--resume", "--overwrite")
    assert_unchanged(before, snapshot(finished))


def test_overwrite_replaces_the_whole_set(finished):
    (finished / "out" / "stale.txt").write_text("from the old run")
    code, _, err = call(
        ["train", "t.toml", "--out", "out", "--quiet", "--overwrite", "--seeds", "3"]
    )
    assert code == 0, err
    assert _seeds(finished / "out") == [3]
    assert not (finished / "out" / "stale.txt").exists()
    assert sorted(p.name for p in finished.iterdir()) == ["out", "s.toml", "t.toml"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--set", "train.lr=1e30"],  # diverges at step 1
        ["--set", "model.d=0"],  # bad value
        ["--set", "train.lr=nan"],  # non-finite value
        ["--seeds", "9-1"],  # bad seed range
    ],
    ids=["diverges", "bad-value", "nan-value", "bad-seeds"],
)
def test_failed_overwrite_leaves_previous_results_byte_identical(finished, extra):
    before = snapshot(finished)
    code, _, err = call(["train", "t.toml", "--out", "out", "--quiet", "--overwrite", *extra])
    msg = assert_one_line_error(code, err)
    after = snapshot(finished)
    assert_unchanged(before, after, new_ok=True)
    assert all(k.startswith(".out.partial/") for k in set(after) - set(before))
    # the message never points at the previous run's checkpoint
    assert "out/checkpoint.pt" not in msg.replace(".out.partial/", "")


def test_failure_in_a_new_folder_leaves_no_folder_behind(work):
    code, _, err = call(["train", "t.toml", "--out", "new/deeper/run", "--set", "model.d=0"])
    assert_one_line_error(code, err, "model.d")
    assert not (work / "new").exists()


def test_diverging_run_keeps_its_history_in_staging_and_says_so(work):
    code, _, err = call(["train", "t.toml", "--out", "a", "--quiet", "--set", "train.lr=1e30"])
    msg = assert_one_line_error(code, err, "nan", "'.a.partial'", "--overwrite")
    assert "checkpoint" not in msg  # no checkpoint was written by this run
    assert (work / ".a.partial" / "history.csv").is_file()
    assert not (work / "a").exists()
    # the kept work blocks a plain re-run until the user decides
    code, _, err = call(["train", "t.toml", "--out", "a", "--quiet"])
    assert_one_line_error(code, err, "unfinished", "--resume", "--overwrite")
    code, _, err = call(["train", "t.toml", "--out", "a", "--quiet", "--overwrite"])
    assert code == 0, err
    assert not (work / ".a.partial").exists()


def test_resume_a_finished_run_with_more_steps_continues_it(finished):
    ref = finished / "ref"
    code, _, err = call(
        ["train", "t.toml", "--out", str(ref), "--quiet", "--set", "train.steps=40"]
    )
    assert code == 0, err
    code, _, err = call(
        ["train", "t.toml", "--out", "out", "--quiet", "--resume", "--set", "train.steps=40"]
    )
    assert code == 0, err
    for f in ("history.csv", "params.safetensors"):
        assert (finished / "out" / f).read_bytes() == (ref / f).read_bytes(), f


def test_resume_of_another_commands_work_is_refused(finished):
    before = snapshot(finished)
    code, _, err = call(["simulate", "t.toml", "--out", "out", "--quiet", "--resume"])
    assert_one_line_error(code, err, "linrep train", "--overwrite")
    assert_unchanged(before, snapshot(finished))


def test_resume_and_overwrite_exclude_each_other(work):
    code, _, err = call(["train", "t.toml", "--out", "o", "--resume", "--overwrite"])
    assert code == 2 and "not allowed with" in err and "Traceback" not in err
    assert not (work / "o").exists()


def test_sweep_with_failed_runs_publishes_and_exits_2(work):
    (work / "s.toml").write_text(SWEEP.replace("[2, 3]", '[2, 3]\n"train.lr" = [1.0, 1e30]'))
    code, out, err = call(["sweep", "s.toml", "--out", "o", "--serial", "--quiet", "--no-report"])
    assert_one_line_error(code, err, "4 of 8 runs failed", "--resume")
    assert "4 ok, 4 failed" in out  # the summary is printed before the error
    assert (work / "o" / "results.csv").is_file() and not (work / ".o.partial").exists()


# ------------------------------------------------------------------ folders that must not be used
def test_folder_not_written_by_linrep_is_never_replaced(work):
    write_files(work, {"mine/notes.txt": "precious", "mine/data.csv": "1,2"})
    before = snapshot(work)
    code, _, err = call(["train", "t.toml", "--out", "mine", "--overwrite", "--quiet"])
    assert_one_line_error(code, err, "'mine'", "did not write")
    assert_unchanged(before, snapshot(work))


def test_overwrite_refuses_to_delete_nested_results_of_another_command(finished):
    code, _, err = call(["latent", "t.toml", "--out", "out/lat"])
    assert code == 0, err
    before = snapshot(finished)
    code, _, err = call(["train", "t.toml", "--out", "out", "--overwrite", "--quiet"])
    assert_one_line_error(code, err, "out/lat", "move it out")
    assert_unchanged(before, snapshot(finished))


@pytest.mark.parametrize("target", [".", "..", "/"])
def test_current_folder_parents_and_root_are_refused(work, target):
    before = snapshot(work)
    code, _, err = call(["latent", "t.toml", "--out", target, "--overwrite"])
    assert_one_line_error(code, err, "sub-folder")
    assert_unchanged(before, snapshot(work))


def test_out_that_is_a_file_or_a_symlink_loop(work):
    (work / "f").write_text("x")
    os.symlink("loop2", work / "loop1")
    os.symlink("loop1", work / "loop2")
    before = snapshot(work)
    for target, word in (("f", "is a file"), ("loop1/run", "symlink")):
        code, _, err = call(["latent", "t.toml", "--out", target])
        assert_one_line_error(code, err, word)
    assert_unchanged(before, snapshot(work))


def test_out_through_a_symlink_publishes_into_the_target(work):
    (work / "real").mkdir()
    os.symlink("real", work / "link")
    code, _, err = call(["latent", "t.toml", "--out", "link/run"])
    assert code == 0, err
    assert (work / "real" / "run" / "latent.npz").is_file() and (work / "link").is_symlink()


def test_unwritable_parent_is_one_line(work):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    (work / "ro").mkdir()
    (work / "ro").chmod(0o500)
    try:
        code, _, err = call(["latent", "t.toml", "--out", "ro/run"])
        assert_one_line_error(code, err, "ro")
    finally:
        (work / "ro").chmod(0o700)


# ------------------------------------------------------------------ locking
def test_second_process_on_the_same_out_is_refused(work):
    with FolderLock(work / ".a.lock", work / "a"):
        before = snapshot(work)
        code, _, err = call(["train", "t.toml", "--out", "a", "--quiet"])
        assert_one_line_error(code, err, "in use", f"pid {os.getpid()}")
        assert_unchanged(before, snapshot(work))
    code, _, err = call(["train", "t.toml", "--out", "a", "--quiet"])
    assert code == 0, err


def test_out_inside_a_folder_being_written_is_refused(finished):
    with FolderLock(finished / ".out.lock", finished / "out"):
        code, _, err = call(["latent", "t.toml", "--out", "out/inner"])
        assert_one_line_error(code, err, "another linrep process is writing")
    assert not (finished / "out" / "inner").exists()


def test_out_inside_a_folder_still_being_staged_is_refused(work):
    """The outer command's folder does not exist yet (its results are in .out.partial)."""
    with FolderLock(work / ".out.lock", work / "out"):
        code, _, err = call(["latent", "t.toml", "--out", "out/inner"])
        assert_one_line_error(code, err, "another linrep process is writing")
    assert not (work / "out").exists()


def test_publishing_never_deletes_results_written_inside_meanwhile(tmp_path):
    """Another command published into out/inner while this one staged out: nothing is deleted,
    this run's results stay in .out.partial and the error names both."""
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="out/inner") as e:
        with staged_output(out, command="reproduce") as st:
            (st.path / "report.html").write_text("mine")
            (out / "inner").mkdir(parents=True)  # as `linrep llm --out out/inner` would publish
            (out / "inner" / MARKER).write_text("{}")
            (out / "inner" / "results.json").write_text("theirs")
    assert ".out.partial" in str(e.value)
    assert (out / "inner" / "results.json").read_text() == "theirs"
    assert (tmp_path / ".out.partial" / "report.html").read_text() == "mine"


def test_lock_of_a_killed_process_does_not_block(work):
    """kill -9 of the lock holder releases the flock (the kernel closes its descriptor)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from linrep.io import FolderLock;"
            "FolderLock(Path('.a.lock'), Path('a')).acquire(); print('locked', flush=True);"
            "time.sleep(600)",
        ],
        cwd=work,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = call(["latent", "t.toml", "--out", "a"])
        assert_one_line_error(code, err, "in use", f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    code, _, err = call(["latent", "t.toml", "--out", "a"])
    assert code == 0, err


def test_two_processes_started_on_one_out_never_mix_files(work):
    """Both start at once; exactly one wins, the other is refused; DIR holds one run's files."""
    slow = TRAIN.replace("steps = 20", "steps = 4000")
    write_files(work, {"slow.toml": slow})
    procs = [
        start(["train", "slow.toml", "--out", "a", "--quiet", "--seeds", str(seed)], work)
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(e for c, e in results if c == 2)
    assert "in use" in loser
    winner = [1, 2][[c for c, _ in results].index(0)]
    assert _seeds(work / "a") == [winner]
    ck_meta = json.loads((work / "a" / "metrics.json").read_text())["final"]
    assert [row["seed"] for row in ck_meta] == [winner]


# ------------------------------------------------------------------ write failures
def _fail_writes_of(monkeypatch, name: str, err: int):
    """Make the atomic write of files called ``name`` fail with ``err`` (as a full disk would)."""
    import linrep.io.files as files

    real = files.os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(f".{name}."):
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)


@pytest.mark.parametrize(
    ("name", "err", "word"),
    [
        ("params.safetensors", errno.ENOSPC, "No space left"),
        ("metrics.json", errno.EFBIG, "File too large"),
        ("checkpoint.pt", errno.EDQUOT, "quota"),
        (MARKER, errno.ENOSPC, "No space left"),
    ],
    ids=["enospc-params", "efbig-metrics", "edquot-checkpoint", "enospc-marker"],
)
def test_write_failure_halfway_keeps_previous_results(finished, monkeypatch, name, err, word):
    before = snapshot(finished)
    _fail_writes_of(monkeypatch, name, err)
    code, _, err_text = call(["train", "t.toml", "--out", "out", "--quiet", "--overwrite"])
    assert_one_line_error(code, err_text, word)
    monkeypatch.undo()
    after = snapshot(finished)
    assert_unchanged(before, after, new_ok=True)
    assert not [k for k in after if k.endswith(".tmp")], "temporary file left behind"


def test_file_size_limit_in_a_real_process(finished):
    """RLIMIT_FSIZE: a write past the limit fails with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    before = snapshot(finished)
    res = run(
        ["train", "t.toml", "--out", "out", "--quiet", "--overwrite"], finished, preexec_fn=limit
    )
    assert_one_line_error(res.returncode, res.stderr, "File too large")
    assert_unchanged(before, snapshot(finished), new_ok=True)


def test_staged_output_api_publishes_only_on_success(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        with staged_output(out, command="x") as st:
            (st.path / "metrics.json").write_text("{}")
            raise RuntimeError("boom")
    assert not out.exists() and (tmp_path / ".o.partial" / "metrics.json").is_file()
    with staged_output(out, resume=True, command="x") as st:
        assert st.resumed and (st.path / "metrics.json").is_file()
    assert (out / "metrics.json").is_file() and not (tmp_path / ".o.partial").exists()


# ------------------------------------------------------------------ signals
def _start_slow(work: Path) -> subprocess.Popen:
    write_files(
        work,
        {
            "slow.toml": TRAIN.replace("steps = 20", "steps = 400000").replace(
                "log_every = 10", "log_every = 100\ncheckpoint_every = 100"
            )
        },
    )
    return start(["train", "slow.toml", "--out", "a", "--quiet"], work)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_and_sigterm_name_resume_and_resume_works(work, sig, status):
    proc = _start_slow(work)
    ck = work / ".a.partial" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "--resume" in last and ".a.partial" in last, err
    assert not (work / "a").exists() and not (work / ".a.lock").exists()
    res = run(
        ["train", "slow.toml", "--out", "a", "--quiet", "--resume", "--set", "train.steps=300"],
        work,
    )
    # the checkpoint may be past step 300: then resuming is refused with a one-line error
    if res.returncode == 2:
        assert_one_line_error(res.returncode, res.stderr, "train.steps")
    else:
        assert res.returncode == 0, res.stderr
        assert (work / "a" / "params.safetensors").is_file()


def test_reproduce_resume_keeps_finished_experiments(work):
    code, _, err = call(["reproduce", "E7", "--quick", "--out", "r", "--quiet"])
    assert code == 0, err
    kept = (work / "r" / "e7_theory" / "results.json").read_bytes()
    code, out, err = call(["reproduce", "E7", "--quick", "--out", "r", "--quiet", "--resume"])
    assert code == 0, err
    assert (work / "r" / "e7_theory" / "results.json").read_bytes() == kept  # not re-run
    code, _, err = call(["reproduce", "E7", "--out", "r", "--quiet", "--resume", "--overwrite"])
    assert code == 2 and "not allowed with" in err
