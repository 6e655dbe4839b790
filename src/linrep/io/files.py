"""Atomic, dependency-light file writing and reading, and run metadata.

Everything linrep writes goes through here: write to a temporary file in the same folder, flush,
fsync, then ``os.replace`` — so a reader never sees a truncated file and a killed run never leaves
half a result behind. A write that fails (disk full, file too large, permission denied) removes its
temporary file, leaves the old file as it was and raises :class:`~linrep.errors.OutputError`; a read
that fails raises :class:`~linrep.errors.InputError` naming the file and the fix.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import platform
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError

__all__ = [
    "ensure_out_dir",
    "make_folder",
    "show",
    "read_bytes",
    "read_text",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "save_npz",
    "to_jsonable",
    "run_metadata",
]


def show(path: str | os.PathLike) -> str:
    """``path`` for messages: relative to the current folder when it lies below it, else as is."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(p)


def make_folder(
    path: str | os.PathLike, what: str = "output folder", fix: str = "choose a writable --out path"
) -> Path:
    """``mkdir -p path``; a failure is one :class:`InputError` line naming ``what`` and ``fix``."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {what} '{folder}': {e.strerror or e}; {fix}") from None
    return folder


def ensure_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check it is writable.

    Raises:
        InputError: if the folder cannot be created or written to.
    """
    out = make_folder(path)
    if not out.is_dir():
        raise InputError(f"output path '{out}' is a file, not a folder; choose another --out path")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder '{out}' is not writable; choose a writable --out path")
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    Raises:
        OutputError: the folder cannot be created or the data cannot be written (the old file, if
            any, is unchanged and no temporary file is left behind).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should be readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise _write_error(path, e) from None
        raise
    return path


def _write_error(path: Path, e: OSError) -> OutputError:
    """One-line :class:`OutputError` for a failed write, naming the errno and the fix."""
    code = errno.errorcode.get(e.errno or 0, "")
    fix = {
        errno.ENOSPC: "free disk space",
        errno.EDQUOT: "free disk space (quota exceeded)",
        errno.EFBIG: "raise the file-size limit (ulimit -f)",
        errno.EACCES: "make the folder writable",
        errno.EROFS: "choose a writable --out",
    }.get(e.errno or 0, "check the output folder")
    what = e.strerror or str(e)
    return OutputError(
        f"cannot write '{path}': {what}{f' ({code})' if code else ''}; {fix} and re-run"
    )


def read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of ``path``; any failure becomes one :class:`InputError` line naming ``what``.

    Refused before reading: a folder, something that is not a regular file (a pipe or a device
    would block or never end), and a file larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            raise InputError(
                f"{what} '{path}' is not a regular file (a pipe or a device); pass a file"
            )
        if max_bytes is not None and st.st_size > max_bytes:
            raise InputError(
                f"{what} '{path}' is {st.st_size / 2**20:,.0f} MiB, larger than any {what} "
                f"({max_bytes / 2**20:,.0f} MiB at most); check the path"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} '{path}' does not exist; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{what} '{path}' is a folder; pass the path of a file") from None
    except PermissionError:
        raise InputError(
            f"{what} '{path}' is not readable (permission denied); fix its permissions"
        ) from None
    except OSError as e:
        raise InputError(
            f"cannot read {what} '{path}': {e.strerror or e}; check the path"
        ) from None


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> str:
    """The UTF-8 text of ``path`` (see :func:`read_bytes`); not UTF-8 is an :class:`InputError`."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{what} '{path}' is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths and dataclasses into plain JSON values.

    Non-finite floats become ``None`` (JSON has no NaN), so every file is strict JSON.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return to_jsonable(asdict(obj))
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, os.PathLike):
        return str(obj)
    if type(obj).__module__.startswith("torch"):
        return to_jsonable(obj.detach().cpu().numpy())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file written by :func:`write_json`, with a clear error if it is missing/corrupt."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{what} '{path}' is not valid JSON (line {e.lineno}): delete it and re-run"
        ) from None
    except RecursionError:
        raise InputError(f"{what} '{path}' is nested too deeply to be linrep's JSON") from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save arrays to an uncompressed ``.npz`` atomically (loadable with ``np.load``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def run_metadata(extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Versions of Python, linrep and the numerical stack, the platform, the CPU count, the 1-minute
    load average (how busy the machine was: timings in the file depend on it) and a UTC timestamp."""
    pkgs = ("linrep", "numpy", "scipy", "torch", "matplotlib", "scikit-learn", *extra_packages)
    versions = {}
    for name in pkgs:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
