"""Atomic, dependency-light result writing and run metadata.

Everything linrep writes goes through here: write to a temporary file in the same folder, flush,
fsync, then ``os.replace`` — so a reader never sees a truncated file and a killed run never leaves
half a result behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "ensure_out_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "save_npz",
    "to_jsonable",
    "run_metadata",
]


def ensure_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check it is writable.

    Raises:
        InputError: if the folder cannot be created or written to.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"cannot create output folder '{out}': {e.strerror}; choose a writable --out path"
        ) from None
    if not out.is_dir():
        raise InputError(f"output path '{out}' is a file, not a folder; choose another --out path")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder '{out}' is not writable; choose a writable --out path")
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should be readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


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


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`, with a clear error if it is missing/corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"file '{path}' does not exist") from None
    except json.JSONDecodeError as e:
        raise InputError(
            f"file '{path}' is not valid JSON (line {e.lineno}): delete it and re-run"
        ) from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save arrays to an uncompressed ``.npz`` atomically (loadable with ``np.load``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def run_metadata(extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Versions of Python, linrep and the numerical stack, the platform and a UTC timestamp."""
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
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
