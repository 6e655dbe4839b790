"""Staged output folders: a command's results appear in ``--out`` all at once, or not at all.

Layout for ``--out runs/a``::

    runs/.a.lock       flock held while a command uses runs/a (see :mod:`linrep.io.lock`)
    runs/.a.partial/   the staging folder: the command writes here (checkpoints, tables, reports)
    runs/a/            the published results, replaced only by a command that finished

:func:`staged_output` takes the lock, prepares the staging folder, yields a :class:`Stage` and, when
the body returns, publishes the staging folder in one atomic step (``rename`` for a new folder, an
atomic exchange of the two folders otherwise). When the body raises (a bad value, a diverging loss,
a full disk, Ctrl-C, SIGTERM) or the process is killed, ``runs/a`` is untouched; the staging folder
is kept when it holds work (``--resume`` continues from it) and removed when it holds nothing new.

Rules for an existing ``runs/a`` or ``runs/.a.partial``: continuing needs ``resume=True``
(``--resume``), replacing needs ``overwrite=True`` (``--overwrite``); a non-empty folder that linrep
did not write is never replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OutputError
from .files import make_folder, read_json, show, write_json
from .lock import FolderLock, is_locked

__all__ = ["Stage", "staged_output", "resolve_out", "MARKER"]

MARKER = ".linrep.json"
"""Written into every staged folder: command, linrep version, start/finish time, status."""

RESULT_FILES = frozenset(
    {
        "latent.npz",
        "latent_summary.json",
        "metrics.json",
        "history.csv",
        "params.safetensors",
        "checkpoint.pt",
        "results.json",
        "sweep.json",
    }
)
"""Files that identify a folder written by linrep before markers existed."""


@dataclass
class Stage:
    """A command's output folder while it runs.

    Attributes:
        final: the folder the results are published to (``--out``, resolved).
        path: the staging folder to write into.
        resumed: True if ``path`` started with earlier work (a kept staging folder or a copy of
            ``final``).
        kept: set on failure: the staging folder was kept because it holds work.
        published: set once :meth:`publish` has run.
    """

    final: Path
    path: Path
    resumed: bool
    kept: bool = False
    published: bool = False
    _start: frozenset = frozenset()
    _created: bool = True

    def describe(self, text: str) -> str:
        """``text`` (an error message) with the staging folder named as the user will find it.

        While the staging folder exists it is shown relative to the current folder; once it was
        published or removed (a failed run that did nothing new), files are named under ``final``.
        """
        where = self.path if self.kept else self.final
        return text.replace(str(self.path), show(where))

    def publish(self) -> None:
        """Make ``path`` the new ``final`` in one atomic step (idempotent)."""
        if not self.published:
            _publish(self)
            self.published = True


def resolve_out(out: str | os.PathLike) -> Path:
    """``out`` as an absolute path with symlinks resolved, checked to be a usable results folder."""
    given = Path(os.path.expanduser(os.fspath(out)))
    try:
        final = given.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise InputError(f"--out '{out}' cannot be resolved ({e}); fix the symlink") from None
    if final.exists() and not final.is_dir():
        raise InputError(f"--out '{out}' is a file, not a folder; choose another --out path")
    cwd = Path.cwd().resolve()
    if (
        final == cwd
        or final in cwd.parents
        or final == Path(final.anchor)
        or os.path.ismount(final)
    ):
        raise InputError(
            f"--out '{out}' is the current folder, one of its parents or a mount point; "
            "pass a sub-folder such as runs/NAME"
        )
    for parent in final.parents:  # locked even before it exists: its results are still staged
        if is_locked(_lock_path(parent)):
            raise InputError(
                f"--out '{out}' is inside '{show(parent)}', which another linrep process is "
                "writing; wait for it to finish or choose a folder outside it"
            )
    return final


def _lock_path(final: Path) -> Path:
    return final.parent / f".{final.name}.lock"


def _partial(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created (outermost first)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    make_folder(folder, "folder", "choose a writable --out")
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for p in reversed(folders):
        with contextlib.suppress(OSError):
            p.rmdir()


def _listing(folder: Path) -> frozenset:
    """(path, inode, size, mtime) of every file under ``folder`` except the marker."""
    out = []
    for p in folder.rglob("*"):
        if p.name != MARKER and p.is_file():
            st = p.stat()
            out.append((str(p.relative_to(folder)), st.st_ino, st.st_size, st.st_mtime_ns))
    return frozenset(out)


def _names(folder: Path) -> set[str]:
    """Names in ``folder`` (empty if it does not exist); unreadable is a one-line error."""
    if not folder.is_dir():
        return set()
    try:
        return {p.name for p in folder.iterdir()}
    except OSError as e:
        raise InputError(
            f"cannot list '{show(folder)}': {e.strerror or e}; fix its permissions"
        ) from None


def _is_linrep(names: set[str]) -> bool:
    return MARKER in names or bool(names & RESULT_FILES)


def _marker_command(folder: Path) -> str | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    data = read_json(path, "marker file")
    return data.get("command") if isinstance(data, dict) else None


def _check_command(folder: Path, command: str) -> None:
    found = _marker_command(folder)
    if found and command and found != command:
        raise InputError(
            f"'{show(folder)}' holds work of `linrep {found}`, not `linrep {command}`; continue it with "
            f"`linrep {found} ... --resume`, or start again with --overwrite"
        )


def _clone(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` with hard links (files are replaced by rename, never in place)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    try:
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    except OSError as e:
        shutil.rmtree(dst, ignore_errors=True)
        raise OutputError(
            f"cannot copy '{show(src)}' to resume it: {e}; free space and re-run"
        ) from None


def _fresh(path: Path) -> None:
    try:
        path.mkdir()
    except OSError as e:
        raise OutputError(
            f"cannot create '{show(path)}': {e.strerror or e}; choose a writable --out"
        ) from None


def _prepare(final: Path, resume: bool, overwrite: bool, command: str) -> Stage:
    """Decide where the command writes (see the module docstring for the rules)."""
    partial = _partial(final)
    names = _names(final)
    has_final = bool(names)
    if has_final and not _is_linrep(names):
        raise InputError(
            f"--out '{show(final)}' holds files that linrep did not write; choose a new or empty folder"
        )
    if partial.exists() and not partial.is_dir():
        raise InputError(f"'{show(partial)}' is in the way (not a folder); remove it and re-run")
    stage = Stage(final=final, path=partial, resumed=False)
    if overwrite:
        _check_nested(final)
        shutil.rmtree(partial, ignore_errors=True)
        _fresh(partial)
    elif resume and partial.is_dir():
        _check_command(partial, command)
        stage.resumed, stage._created = True, False
    elif resume and has_final:
        _check_command(final, command)
        _clone(final, partial)
        stage.resumed = True
    elif partial.is_dir() and not resume:
        raise InputError(
            f"--out '{show(final)}' has unfinished work of an earlier run in '{show(partial)}'; add --resume "
            "to continue it or --overwrite to discard it"
        )
    elif has_final and not resume:
        raise InputError(
            f"--out '{show(final)}' already holds results; add --resume to continue them, --overwrite "
            "to replace them, or choose a new --out"
        )
    else:
        _fresh(partial)
    stage._start = _listing(partial)
    _write_marker(partial, command, "running")
    return stage


def _check_nested(final: Path) -> None:
    """Refuse to replace a folder that holds the results of other linrep commands."""
    nested = [p.parent for p in final.glob(f"*/**/{MARKER}")]
    if nested:
        raise InputError(
            f"--out '{show(final)}' holds '{show(nested[0])}', the results of another linrep "
            "command, which --overwrite would delete; move it out first or choose a new --out"
        )


def _write_marker(folder: Path, command: str, status: str) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("linrep")
    except PackageNotFoundError:
        v = None
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(
        folder / MARKER, {"command": command, "linrep": v, "status": status, "time_utc": now}
    )


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OutputError(f"cannot publish '{a}' as '{b}': {os.strerror(err)}")


def _trash(final: Path) -> Path:
    return final.parent / f".{final.name}.trash-{uuid.uuid4().hex[:8]}"


def _lost_by_publishing(final: Path, partial: Path) -> list[Path]:
    """Results of other linrep commands inside ``final`` that replacing it by ``partial`` would
    delete (written there while this command ran, or kept by --resume's copy: those are in both)."""
    if not final.is_dir():
        return []
    return [
        p.parent
        for p in final.glob(f"*/**/{MARKER}")
        if not (partial / p.relative_to(final)).exists()
    ]


def _publish(stage: Stage) -> None:
    final, partial = stage.final, stage.path
    lost = _lost_by_publishing(final, partial)
    if lost:
        raise OutputError(
            f"'{show(final)}' now holds '{show(lost[0])}', results another linrep command wrote "
            f"there while this one ran; publishing would delete them, so this run's results stay "
            f"in '{show(partial)}' (move them where you want them, or re-run with another --out)"
        )
    for tmp in partial.rglob(".*.tmp"):  # temp files of a write killed in an earlier attempt
        tmp.unlink(missing_ok=True)
    _write_marker(partial, _marker_command(partial) or "", "complete")
    if not final.exists():
        os.rename(partial, final)
    elif _exchange(partial, final):
        old = _trash(final)
        os.rename(partial, old)
        shutil.rmtree(old, ignore_errors=True)
    else:  # no atomic exchange here: move the old set aside first, so nothing is ever lost
        old = _trash(final)
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean_trash(final: Path) -> None:
    for old in final.parent.glob(f".{final.name}.trash-*"):
        shutil.rmtree(old, ignore_errors=True)


def _abandon(stage: Stage) -> None:
    """After a failure: keep the staging folder if it holds new work, else remove what we made."""
    if stage.published or not stage.path.is_dir():
        return
    if _listing(stage.path) != stage._start or not stage._created:
        stage.kept = True
    else:
        shutil.rmtree(stage.path, ignore_errors=True)


@contextlib.contextmanager
def staged_output(
    out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, command: str = ""
) -> Iterator[Stage]:
    """Lock ``out``, yield a :class:`Stage` to write into, publish it when the body returns.

    Args:
        out: the results folder (``--out``).
        resume: continue earlier work (a kept staging folder, else a copy of ``out``).
        overwrite: start afresh and replace ``out`` when done.
        command: the linrep command (recorded; resuming another command's work is refused).

    Raises:
        InputError: ``out`` is in use, not a folder, non-empty without resume/overwrite, ...
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other; drop one")
    final = resolve_out(out)
    created = _make_parents(final.parent)
    stage = None
    try:
        with FolderLock(_lock_path(final), final):
            _clean_trash(final)
            stage = _prepare(final, resume, overwrite, command)
            try:
                yield stage
                stage.publish()
            except BaseException:
                _abandon(stage)
                raise
    finally:
        if stage is None or not (stage.kept or stage.published):
            _remove_empty(created)
