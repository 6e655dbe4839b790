"""The model cache: derived model files kept between runs, each entry checked before it is trusted.

Layout of the cache folder (``$LINREP_CACHE``, else ``$XDG_CACHE_HOME/linrep``, else
``~/.cache/linrep``)::

    models/<file>.gguf           built-in models assembled from their wheels' chunks (sha256-checked)
    gamma/<key>/                 γ as float32 .npy + vocabulary + file label, key = model sha256
    covariance/<key>/            mean and Cov(γ) over the normal tokens (the causal inner product)
    hf-float32/<key>/            a float32 ``save_pretrained`` copy of a GGUF model (fast reload)
    checksums.json               path -> (size, mtime, ctime, inode, sha256): a file is hashed once

Every entry folder holds ``linrep_entry.json``: the checksum of its **source** (the model file, or
what the entry was derived from) and the sha256 of **each file** in it. :meth:`ModelCache.load`
re-hashes the files before an entry is used; a missing, extra or changed file, or a different
source, makes it rebuild, with a note (printed and kept in :attr:`ModelCache.notes`, which the
results carry). Entries are built in a temporary folder and published with one rename, so an
interrupted run never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write_text

__all__ = ["ModelCache", "cache_dir", "file_sha256", "CACHE_ENV"]

#: Environment variable overriding the cache folder.
CACHE_ENV = "LINREP_CACHE"

_MANIFEST = "linrep_entry.json"
_FORMAT = 1


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder (created if needed).

    Args:
        override: explicit folder; else ``$LINREP_CACHE``; else the user cache folder.

    Raises:
        InputError: if it cannot be created.
    """
    if override is not None and str(override) != "":
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
        root = Path(base) / "linrep"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"cannot create cache folder '{root}': {e.strerror}; set {CACHE_ENV} to a writable folder"
        ) from None
    return root


def sha256_stream(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """sha256 of a file, read in chunks (≈ 1 GB/s)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> list[int]:
    """What changes whenever a file's content can have changed: size, mtime, ctime, inode.

    ctime cannot be set back by ``os.utime``, so a rewrite that restores the mtime is still seen.
    """
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def file_sha256(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered in ``checksums.json`` by its stamp so it is hashed once.

    Args:
        path: the file.
        cache: cache folder (see :func:`cache_dir`).
    """
    path = Path(path)
    key, stamp = str(path.resolve()), _stamp(path)
    book_path = cache_dir(cache) / "checksums.json"
    try:
        book = json.loads(book_path.read_text(encoding="utf-8"))
        book = book if isinstance(book, dict) else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        book = {}
    entry = book.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp and "sha256" in entry:
        return str(entry["sha256"])
    digest = sha256_stream(path)
    book[key] = {"stamp": stamp, "sha256": digest}
    try:
        atomic_write_text(book_path, json.dumps(book, indent=1))
    except OSError:  # a read-only cache only costs speed
        pass
    return digest


@dataclass
class ModelCache:
    """The cache folder as one object passed down the pipeline (``root=None``: no cache).

    Attributes:
        root: the cache folder, or None when caching is off (nothing is read or written).
        notes: what happened to damaged entries (one line each), for the run's results.
    """

    root: Path | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, *, enabled: bool = True) -> ModelCache:
        """The cache at ``folder`` (default: :func:`cache_dir`), or a disabled one."""
        return cls(cache_dir(folder) if enabled else None)

    @classmethod
    def of(cls, cache: ModelCache | str | os.PathLike | bool | None) -> ModelCache:
        """The cache an argument means: itself; None = the default folder; a path; False = off."""
        if isinstance(cache, ModelCache):
            return cache
        if cache is False:
            return cls(None)
        return cls.open(None if cache is True else cache)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    @property
    def folder(self) -> Path:
        """The cache folder even when entries are disabled (e.g. for assembled model files)."""
        return self.root if self.root is not None else cache_dir()

    def file_sha256(self, path: str | os.PathLike) -> str:
        """sha256 of a file (remembered between runs when the cache is on)."""
        if self.root is None:
            return sha256_stream(path)
        return file_sha256(path, self.root)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        print(f"linrep: note: {text}", file=sys.stderr, flush=True)

    def load(self, kind: str, key: str, source: str) -> Path | None:
        """The folder of entry ``kind/key`` if every file matches its manifest, else None.

        A damaged entry (missing manifest, other source, missing/extra/changed file) is removed and
        noted, so the caller rebuilds it.

        Args:
            kind: entry kind (``"gamma"``, ``"covariance"``, ``"hf-float32"``).
            key: folder name (a checksum).
            source: checksum of what the entry must have been built from.
        """
        if self.root is None:
            return None
        entry = self.root / kind / key
        if not entry.exists():
            return None
        problem = _entry_problem(entry, source)
        if problem is None:
            return entry
        self._note(f"cache entry {kind}/{key[:12]}… is damaged ({problem}); rebuilding it")
        shutil.rmtree(entry, ignore_errors=True)
        return None

    def store(self, kind: str, key: str, source: str, fill: Callable[[Path], None]) -> Path | None:
        """Build entry ``kind/key``: ``fill(folder)`` writes the files, then the manifest is added.

        Returns the published folder, or None if the cache is off or not writable (only speed is
        lost).
        """
        if self.root is None:
            return None
        entry = self.root / kind / key
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            fill(tmp)
            files = {p.relative_to(tmp).as_posix(): sha256_stream(p) for p in _files(tmp)}
            manifest = {"format": _FORMAT, "kind": kind, "source": source, "files": files}
            (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
            return entry
        except OSError:  # a read-only or full cache only costs speed
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != _MANIFEST)


def _entry_problem(entry: Path, source: str) -> str | None:
    """Why an entry cannot be trusted, or None."""
    try:
        manifest = json.loads((entry / _MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != _FORMAT or not isinstance(files, dict):
            return "unknown manifest format"
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable manifest"
    if manifest.get("source") != source:
        return "built from another source"
    present = {p.relative_to(entry).as_posix() for p in _files(entry)}
    if present != set(files):
        return f"files differ from the manifest: {sorted(present ^ set(files))[:3]}"
    for name, digest in files.items():
        if sha256_stream(entry / name) != digest:
            return f"file {name}: checksum mismatch"
    return None
