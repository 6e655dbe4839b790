"""Reliability under faults: kill -9 and resume, Ray retries, atomic writes, safe loading.

Subprocesses are started in their own session so that the test can SIGKILL exactly the processes
it started (the CLI and, for sweeps, the Ray processes it spawned), by pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faultkit import run, start
from linrep.cli import COMMANDS
from linrep.errors import InputError
from linrep.io import atomic_write_text, write_json
from linrep.sweep import ResultsTable, read_results


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, s = (int(v) for v in line.split())
        if s == sid:
            pids.append(pid)
    return pids


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the process we started and every process of its session (its Ray children)."""
    for pid in [proc.pid, *_session_pids(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while _session_pids(proc.pid) and time.time() < deadline:
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


# ------------------------------------------------------------------ training
KILL_TRAIN = """
[latent]
m = 4
kind = "ising"
[model]
encoder = "linear"
d = 16
[train]
steps = 20000
log_every = 1000
checkpoint_every = 1000
"""


@pytest.mark.skipif("train" not in COMMANDS, reason="'linrep train' is not in this build")
def test_kill_train_midway_then_resume_equals_uninterrupted(tmp_path):
    from safetensors.numpy import load_file

    (tmp_path / "t.toml").write_text(textwrap.dedent(KILL_TRAIN))
    ck = tmp_path / ".a.partial" / "checkpoint.pt"  # the staging folder while it runs
    proc = start(["train", "t.toml", "--out", "a", "--quiet", "--seeds", "0-1"], tmp_path)
    try:
        deadline = time.time() + 240
        while not ck.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        still_running = proc.poll() is None
    finally:
        kill_session(proc)
    assert still_running and proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert not (tmp_path / "a").exists(), "training finished before the kill"

    res = run(["train", "t.toml", "--out", "a", "--resume", "--quiet", "--seeds", "0-1"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = run(["train", "t.toml", "--out", "b", "--quiet", "--seeds", "0-1"], tmp_path)
    assert res.returncode == 0, res.stderr

    a = json.loads((tmp_path / "a" / "metrics.json").read_text())["final"]
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())["final"]
    assert a == b  # bit-identical final metrics
    assert (tmp_path / "a" / "history.csv").read_text() == (
        tmp_path / "b" / "history.csv"
    ).read_text()
    pa = load_file(tmp_path / "a" / "params.safetensors")
    pb = load_file(tmp_path / "b" / "params.safetensors")
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


# ------------------------------------------------------------------ sweeps
KILL_SWEEP = """
[latent]
m = 3
kind = "ising"
[model]
encoder = "linear"
[train]
steps = 1500
log_every = 500
checkpoint_every = 300    # ensembles killed in flight resume from their last checkpoint
[sweep]
seeds = "0-1"
geometry = false
[sweep.grid]
"model.d" = [3, 4, 5, 6, 7, 8, 9, 10]
"""


def test_kill_sweep_midway_then_rerun_gives_every_run_exactly_once(tmp_path):
    (tmp_path / "s.toml").write_text(textwrap.dedent(KILL_SWEEP))
    out = tmp_path / "out"
    proc = start(["sweep", "s.toml", "--out", "out", "--max-parallel", "2", "--quiet"], tmp_path)
    table = tmp_path / ".out.partial" / "results.csv"  # the staging folder while it runs
    n_seen = 0
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if table.exists():
                n_seen = len(read_results(table))  # every read must parse: atomic rewrites
                if n_seen >= 2:
                    break
            time.sleep(0.05)
    finally:
        kill_session(proc)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    rows = read_results(table)
    assert 2 <= len(rows) < 16, "the sweep was not killed mid-way"
    assert all(r["status"] == "ok" for r in rows)
    assert not out.exists(), "a killed sweep published results"
    # re-run without --resume: refused, nothing touched
    res = run(["sweep", "s.toml", "--out", "out", "--serial", "--quiet"], tmp_path)
    assert res.returncode == 2 and "--resume" in res.stderr.splitlines()[-1], res.stderr
    # re-run with --resume: trains only the missing runs, then publishes
    cmd = ["sweep", "s.toml", "--out", "out", "--serial", "--quiet", "--no-report", "--resume"]
    res = run(cmd, tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{len(rows)} skipped as done" in res.stdout
    assert not table.parent.exists()
    final = read_results(out / "results.csv")
    ids = [r["run_id"] for r in final]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert sorted((r["model.d"], r["seed"]) for r in final) == sorted(
        (d, s) for d in range(3, 11) for s in (0, 1)
    )
    assert all(r["status"] == "ok" and np.isfinite(r["excess_loss"]) for r in final)
    # rows written before the kill are untouched by the re-run
    before = {r["run_id"]: r for r in rows}
    for r in final:
        if r["run_id"] in before:
            assert r == before[r["run_id"]]
    # every run's final loss equals the same run trained alone, uninterrupted
    from linrep.latent import LatentModel
    from linrep.learn import fit

    latent = LatentModel.from_config({"m": 3, "kind": "ising"})
    for d in (3, 10):  # an early and a late setting (typically one before, one after the kill)
        r = next(r for r in final if r["model.d"] == d and r["seed"] == 1)
        alone = fit(
            latent, {"encoder": "linear", "d": d}, {"steps": 1500}, seeds=[1], progress=False
        )
        assert r["excess_loss"] == pytest.approx(alone.final[0]["excess_loss"], rel=1e-4, abs=1e-7)


def test_ray_retries_a_crashed_worker(tmp_path, monkeypatch):
    """LINREP_SWEEP_FAULT_DIR makes each task's worker die (os._exit) on its first attempt."""
    from linrep.sweep import run_sweep

    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("LINREP_SWEEP_FAULT_DIR", str(faults))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    (tmp_path / "s.toml").write_text(
        "[latent]\nm = 3\n[model]\nd = 4\n[train]\nsteps = 100\n"
        '[sweep]\nseeds = "0-2"\ngeometry = false\n'
    )
    res = run_sweep(
        tmp_path / "s.toml",
        tmp_path / "out",
        max_parallel=1,
        progress=False,
        report=False,
        log=lambda s: None,
    )
    assert len(list(faults.iterdir())) == 1  # the one ensemble crashed once ...
    assert (res.n_ok, res.n_failed) == (3, 0)  # ... and Ray's retry finished it
    rows = read_results(tmp_path / "out")
    assert [r["group_size"] for r in rows] == [3, 3, 3]


def test_serial_retry_then_failure_is_recorded(tmp_path, monkeypatch):
    from linrep.sweep import run_sweep

    (tmp_path / "s.toml").write_text(
        "[latent]\nm = 2\n[model]\nd = 2\n[train]\nsteps = 20\n"
        "[sweep]\nseeds = 2\ngeometry = false\nretries = 0\n"
    )
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("LINREP_SWEEP_FAULT_DIR", str(faults))
    # retries = 0: the injected fault fails the ensemble, which is split; each run then fails
    # on its own first attempt too, and is recorded as failed with the error; nothing raises.
    res = run_sweep(
        tmp_path / "s.toml",
        tmp_path / "o",
        serial=True,
        progress=False,
        report=False,
        log=lambda s: None,
    )
    assert (res.n_ok, res.n_failed) == (0, 2)
    rows = read_results(tmp_path / "o")
    assert all("injected fault" in r["error"] for r in rows)
    # the re-run retries failed runs (faults are spent now) and replaces their rows
    res = run_sweep(
        tmp_path / "s.toml",
        tmp_path / "o",
        serial=True,
        progress=False,
        report=False,
        log=lambda s: None,
    )
    assert (res.n_ok, res.n_failed, res.n_skipped) == (2, 0, 0)
    assert len(read_results(tmp_path / "o")) == 2


# ------------------------------------------------------------------ atomic writes
def _hammer(write, read, n_writes: int = 60) -> int:
    """Write in a thread while reading in a loop; return the number of successful reads."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            for i in range(n_writes):
                write(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while not stop.is_set():
        read()  # raises on a truncated / partial file
        reads += 1
    t.join()
    assert not errors, errors
    return reads


def test_json_and_csv_readers_never_see_partial_files(tmp_path):
    path = tmp_path / "r.json"
    big = {"values": list(range(5000))}
    write_json(path, big)

    def read_json_file():
        d = json.loads(path.read_text())
        assert len(d["values"]) == 5000

    assert (
        _hammer(lambda i: write_json(path, {"values": list(range(i, i + 5000))}), read_json_file)
        > 0
    )

    table = ResultsTable(tmp_path / "results.csv")
    table.add([{"run_id": f"r{k}", "status": "ok", "loss": k / 7} for k in range(500)])
    table.write()

    def write_table(i):
        table.add([{"run_id": f"r{i % 500}", "status": "ok", "loss": i / 3, "pad": "x" * 50}])
        table.write()

    def read_table():
        assert len(read_results(tmp_path / "results.csv", typed=False)) == 500

    assert _hammer(write_table, read_table, n_writes=30) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp litter


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    """A write that dies after the data went to the temp file (here: fsync fails) leaves the old
    file intact and no temp file behind."""
    import linrep.io.files

    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(linrep.io.files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# ------------------------------------------------------------------ safe loading
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_loading_never_unpickles_code(tmp_path, monkeypatch):
    import torch

    from linrep.learn.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "x": _Evil()}, bad)
    with pytest.raises(InputError, match=r"checkpoint.pt.*cannot be read"):
        load_checkpoint(bad)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_checkpoint_is_detected_and_named(tmp_path):
    import torch

    from linrep.learn.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path,
        theta=torch.zeros(2, 5),
        opt_state={"m": torch.ones(2, 5)},
        step=10,
        history=[{"run": 0, "step": 0}],
        fingerprint={"a": 1},
    )
    ck = load_checkpoint(path)
    assert ck["step"] == 10 and ck["fingerprint"] == {"a": 1}
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=str(path)):
        load_checkpoint(path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="checkpoint"):
        load_checkpoint(path)


# ------------------------------------------------------------------ every writer is atomic
WRITE_CALL = re.compile(
    r"\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wax]b?\+?['\"]|np\.save\(|np\.savez"
    r"|torch\.save\(|\.savefig\(|\.to_csv\(|json\.dump\(|\.save_pretrained\("
)


def test_package_writes_files_only_atomically():
    """Static audit: outside linrep/io.py, every file-writing call must target a temporary path
    (renamed into place afterwards) or an in-memory buffer — recognised by a ``tmp``/``buf``/
    BytesIO/png/svg name in the call; anything else has to use linrep.io's atomic writers."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "linrep"
    bad = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "files.py" and path.parent == src / "io":
            continue
        text = path.read_text(encoding="utf-8")
        if not WRITE_CALL.search(text):
            continue
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call) or not WRITE_CALL.search(lines[node.lineno - 1]):
                continue
            call = ast.get_source_segment(text, node) or ""
            head = call.split("(", 1)[0] + "("
            if not WRITE_CALL.search(head + call[len(head) : len(head) + 40]):
                continue
            if re.search(r"\btmp\b|\bbuf\b|BytesIO|\(png\b|\(svg\b", call):
                continue
            bad.append(f"{path.relative_to(src)}:{node.lineno}: {call.splitlines()[0]}")
    assert not bad, "non-atomic writes (use linrep.io.atomic_write_*):\n" + "\n".join(bad)


def test_package_never_unpickles():
    """Static audit: torch.load only with weights_only=True, np.load never with allow_pickle=True,
    no pickle/joblib/dill loads, and Hugging Face weights only from safetensors."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "linrep"
    bad = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
            where = f"{path.relative_to(src)}:{node.lineno}: {name}"
            if name.endswith("torch.load") and kw.get("weights_only") != "True":
                bad.append(where + " without weights_only=True")
            if name.endswith(("np.load", "numpy.load")) and kw.get("allow_pickle") not in (
                None,
                "False",
            ):
                bad.append(where + " with allow_pickle")
            if name.split(".")[0] in ("pickle", "joblib", "dill", "cloudpickle") and "load" in name:
                bad.append(where)
            if name.endswith("from_pretrained") and kw.get("use_safetensors") == "False":
                bad.append(where + " with use_safetensors=False")
    assert not bad, "unsafe loading:\n" + "\n".join(bad)
