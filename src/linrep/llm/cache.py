"""Where linrep keeps derived model files, and checksums that are computed once.

Layout of the cache folder (``$LINREP_CACHE``, else ``$XDG_CACHE_HOME/linrep``, else
``~/.cache/linrep``; every function also takes an explicit ``cache_dir``)::

    models/<file>.gguf           built-in models assembled from their wheels' chunks
    unembedding/<sha256>/        γ as float32 .npy + vocabulary, per model checksum
    hf/<sha256>/                 a float32 ``save_pretrained`` copy of a GGUF model (fast reload)
    checksums.json               path -> (size, mtime_ns, sha256): a file is hashed only once

Everything is written atomically (temporary name, then rename), so an interrupted run never leaves a
half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write_text

__all__ = ["cache_dir", "file_sha256", "CACHE_ENV"]

#: Environment variable overriding the cache folder.
CACHE_ENV = "LINREP_CACHE"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder (created if needed).

    Args:
        override: explicit folder; else ``$LINREP_CACHE``; else the user cache folder.

    Returns:
        The folder, which exists and is writable.

    Raises:
        InputError: if it cannot be created.
    """
    if override is not None:
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


def _sha256_stream(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered in the cache by (real path, size, mtime) so it is hashed once.

    Args:
        path: the file.
        cache: cache folder (see :func:`cache_dir`).

    Returns:
        The hex digest.
    """
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns]
    book_path = cache_dir(cache) / "checksums.json"
    try:
        book = json.loads(book_path.read_text(encoding="utf-8"))
        if not isinstance(book, dict):
            book = {}
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        book = {}
    entry = book.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp and "sha256" in entry:
        return str(entry["sha256"])
    digest = _sha256_stream(path)
    book[key] = {"stamp": stamp, "sha256": digest}
    try:
        atomic_write_text(book_path, json.dumps(book, indent=1))
    except OSError:  # a read-only cache only costs speed
        pass
    return digest
