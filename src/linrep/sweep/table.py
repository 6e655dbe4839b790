"""The results table of a sweep: one CSV row per run, rewritten atomically as groups finish.

``DIR/results.csv`` always holds complete rows only: every update writes the whole table to a
temporary file and renames it over the old one (:func:`linrep.io.atomic_write_text`), so a sweep
killed at any moment leaves either the previous or the next complete table, never half a row.
Rows are keyed by ``run_id``; adding a row for a run already present replaces it, so re-running
a sweep never duplicates a run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import atomic_write_text, read_text

__all__ = ["ResultsTable", "read_results", "to_cell", "from_cell", "LEADING", "TRAILING"]

LEADING = ("run_id", "status", "case", "seed")
"""Columns that come first (then the swept keys, then metrics)."""
TRAILING = ("wall_time_s", "group_wall_time_s", "group_size", "group_id", "attempts", "error")
"""Bookkeeping columns placed after the metrics (then the full config, ``latent.*`` ...)."""


TEXT_COLUMNS = frozenset({"run_id", "group_id", "status", "case", "error", "time_utc"})
"""Columns read back as text even when they look like numbers (a hex id may be all digits)."""


def to_cell(value: Any) -> str:
    """A CSV cell: numbers as repr (exact round trip), lists/tables as JSON, None/NaN as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def from_cell(text: str) -> Any:
    """Inverse of :func:`to_cell` for numbers/JSON; anything else stays a string (empty → None)."""
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            pass
    return text


def read_results(path: str | Path, typed: bool = True) -> list[dict[str, Any]]:
    """Read a sweep's ``results.csv`` (a file or the sweep folder) into a list of row dicts.

    Args:
        path: ``DIR/results.csv`` or ``DIR``.
        typed: convert cells back to numbers / lists (else keep the strings).

    Raises:
        InputError: if the file is missing, not a CSV table of a sweep, or damaged.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    try:
        text = read_text(path, "results table")
    except InputError as e:
        raise InputError(f"{e}; run linrep sweep first, or delete it and re-run") from None
    try:
        return _parse(text, path, typed)
    except csv.Error as e:
        raise InputError(
            f"results table '{path}' is damaged ({e}); delete it and re-run to recompute"
        ) from None


def _parse(text: str, path: Path, typed: bool) -> list[dict[str, Any]]:
    if "\0" in text:
        raise csv.Error("it contains NUL bytes")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or "run_id" not in reader.fieldnames:
        raise InputError(
            f"'{path}' is not a linrep sweep results table (no run_id column); "
            "delete it or choose another --out folder"
        )
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise InputError(
                f"results table '{path}' is damaged at line {lineno} (wrong number of cells); "
                "delete it and re-run to recompute"
            )
        if typed:
            row = {k: v if k in TEXT_COLUMNS else from_cell(v) for k, v in row.items()}
        rows.append(dict(row))
    return rows


class ResultsTable:
    """In-memory results keyed by ``run_id``, persisted atomically to ``path`` on :meth:`write`.

    Args:
        path: the CSV file (``DIR/results.csv``).
        front: columns to put right after :data:`LEADING` (the swept keys).
        order: run ids in the sweep's order; rows are written in this order (others last).
    """

    def __init__(self, path: str | Path, front: Sequence[str] = (), order: Sequence[str] = ()):
        self.path = Path(path)
        self.front = [c for c in front if c not in LEADING]
        self.order = {run_id: i for i, run_id in enumerate(order)}
        self.rows: dict[str, dict[str, str]] = {}
        if self.path.exists():
            for row in read_results(self.path, typed=False):
                self.rows[row["run_id"]] = row

    def status(self, run_id: str) -> str | None:
        """``"ok"``, ``"failed"`` or None if the run has no row."""
        row = self.rows.get(run_id)
        return row.get("status") if row else None

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace rows (by ``run_id``); values are stored as CSV cells."""
        for row in rows:
            self.rows[str(row["run_id"])] = {k: to_cell(v) for k, v in row.items()}

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows.values():
            seen.update(dict.fromkeys(row))
        config = sorted(c for c in seen if c.split(".", 1)[0] in ("latent", "model", "train"))
        config = [c for c in config if c not in self.front]
        fixed = set(LEADING) | set(self.front) | set(TRAILING) | set(config) | {"time_utc"}
        metrics = sorted(c for c in seen if c not in fixed)
        cols = [*LEADING, *self.front, *metrics, *TRAILING, "time_utc", *config]
        return [c for c in cols if c in seen or c in LEADING]

    def write(self) -> Path:
        """Write the whole table atomically (temp file + fsync + rename)."""
        cols = self.columns()
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
        writer.writeheader()
        rank = self.order
        for row in sorted(self.rows.values(), key=lambda r: rank.get(r["run_id"], len(rank))):
            writer.writerow(row)
        return atomic_write_text(self.path, buf.getvalue())
