"""Reading and writing files, and the output-folder protocol of every linrep command.

- :mod:`linrep.io.files`: atomic writes (temp + fsync + rename), JSON / npz, one-line errors for
  unreadable inputs and failed writes, run metadata;
- :mod:`linrep.io.staging`: :func:`staged_output` — a command writes into a staging folder beside
  ``--out`` and publishes the whole set atomically when it finishes; ``--resume`` / ``--overwrite``;
- :mod:`linrep.io.lock`: the ``flock`` that keeps two processes out of one ``--out``.
"""

from .files import (
    atomic_write_bytes,
    atomic_write_text,
    ensure_out_dir,
    make_folder,
    read_bytes,
    read_json,
    read_text,
    run_metadata,
    save_npz,
    show,
    to_jsonable,
    write_json,
)
from .lock import FolderLock
from .staging import MARKER, Stage, resolve_out, staged_output

__all__ = [
    "ensure_out_dir",
    "make_folder",
    "read_bytes",
    "read_text",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "save_npz",
    "to_jsonable",
    "run_metadata",
    "staged_output",
    "Stage",
    "resolve_out",
    "FolderLock",
    "MARKER",
    "show",
]
