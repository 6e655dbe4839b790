"""Shared pieces of the fault suite (tests/test_faults_*.py): tiny configs, running the CLI
in-process or as a real process, and the two checks every fault case makes:

* the command either succeeds or exits 2 with ONE ``linrep: error: ...`` line and no traceback;
* every file that existed before is byte-identical afterwards (unless the command succeeded and
  was meant to replace it), compared with :func:`snapshot`.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from linrep.cli import main

TRAIN = "[latent]\nm = 2\n[model]\nd = 3\n[train]\nsteps = 20\nlog_every = 10\n"
"""A training config that runs in well under a second."""
SWEEP = TRAIN + '[sweep]\nseeds = "0-1"\ngeometry = false\n[sweep.grid]\n"model.d" = [2, 3]\n'
"""A 4-run sweep of :data:`TRAIN` (two ensembles)."""
LINREP = [sys.executable, "-m", "linrep"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative path → text or bytes) under ``root``."""
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) → its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def call(argv: list[str]) -> tuple[int, str, str]:
    """``linrep.cli.main(argv)`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = int(e.code)
    return code, out.getvalue(), err.getvalue()


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A test run started in the background of a shell
    without job control inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """The real ``linrep`` process, running (own session, text pipes) — for signals and races."""
    return subprocess.Popen(
        [*LINREP, *argv],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def run(argv: list[str], cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """The real ``linrep`` process (for signals, resource limits, concurrency)."""
    return subprocess.run(
        [*LINREP, *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, **kw
    )


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    """Exit 2, no traceback, the last stderr line is the only error line and contains ``words``."""
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "no error message"
    msg = lines[-1]
    assert msg.startswith("linrep") and "error:" in msg, err
    assert not [ln for ln in lines[:-1] if "error" in ln.lower()], f"more than one line: {lines}"
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return msg


def assert_unchanged(before: dict[str, bytes], after: dict[str, bytes], new_ok: bool = False):
    """Files of ``before`` are byte-identical in ``after``; no new file unless ``new_ok``."""
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"changed or removed: {changed}"
    if not new_ok:
        added = sorted(set(after) - set(before))
        assert not added, f"added: {added}"
