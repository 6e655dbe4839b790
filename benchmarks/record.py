"""Where a benchmark leaves its numbers: ``benchmarks/results/<name>.json``.

The README quotes benchmark ratios through claim markers (``claims.toml``), so each script writes
what it printed into one JSON file next to the machine it ran on and the load it ran under (the
1-minute load average before and after; these are ratios measured in one run, and the load says how
far to trust them). ``python scripts/claims.py update`` then copies the numbers into the README.

The file also records the exact command that wrote it, arguments included: a partial run
(``--skip-…``, fewer steps) leaves a file that ``scripts/claims.py`` refuses to quote for a README
number registered with the full command.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from linrep.io import run_metadata

RESULTS = Path(
    os.environ.get("LINREP_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)
"""Folder of the results files (``$LINREP_BENCH_RESULTS`` moves it, e.g. in the tests' tiny runs)."""


def linrep_command(*args: object) -> list[str]:
    """``python -m linrep ARGS`` with this interpreter, for timing the CLI as a fresh process."""
    return [sys.executable, "-m", "linrep", *map(str, args)]


class Recorder:
    """Collect a benchmark's numbers and write them, with the machine before and after, at the end.

    >>> rec = Recorder("bench_latent")      # reads the load before the work starts
    >>> rec["ratio"] = 11.0
    >>> rec.write()                          # benchmarks/results/bench_latent.json
    """

    def __init__(self, name: str, out: Path | None = None) -> None:
        self.name = name
        self.path = Path(out) if out is not None else RESULTS / f"{name}.json"
        self.before = run_metadata()  # versions, platform, CPU count, load, time
        self.args = sys.argv[1:]  # the command line this run was given, recorded with its numbers
        self.numbers: dict = {}

    def __setitem__(self, key: str, value) -> None:
        self.numbers[key] = value

    def update(self, **numbers) -> None:
        self.numbers.update(numbers)

    def write(self) -> Path:
        doc = {
            "benchmark": self.name,
            "command": shlex.join(["python", f"benchmarks/{self.name}.py", *self.args]),
            "machine": self.before,
            "load_1min_after": round(os.getloadavg()[0], 2),
            "results": self.numbers,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
        tmp.replace(self.path)
        print(f"wrote {self.path}")
        return self.path
