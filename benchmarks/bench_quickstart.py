"""Benchmark: the README's command 1 from a fresh clone, with an empty model cache, timed per stage.

Clones this repository (its committed HEAD) into a temporary folder, makes a new virtual
environment, installs ``.[all]`` (from pip's cache when it is warm), then runs
``linrep reproduce all --quick`` and ``linrep llm`` with ``LINREP_CACHE`` pointing at an empty folder,
exactly as a new user would. Writes the wall time of each stage to
``benchmarks/results/bench_quickstart.json`` with the machine and its load. Run:

    python benchmarks/bench_quickstart.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Recorder

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    """Wall seconds of ``cmd`` (raises CalledProcessError with its output on failure)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-llm", action="store_true", help="only install + quick simulations")
    args = ap.parse_args()
    rec = Recorder("bench_quickstart")

    with tempfile.TemporaryDirectory(prefix="linrep-quickstart-") as tmp:
        root, cache = Path(tmp) / "linrep", Path(tmp) / "cache"
        subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
        venv = root / ".venv" / "bin"
        install = _timed([sys.executable, "-m", "venv", ".venv"], root)
        pip = [str(venv / "python"), "-m", "pip", "install", "-q"]
        install += _timed([*pip, "--upgrade", "pip"], root)
        install += _timed([*pip, "-e", ".[all]"], root)
        env = {**os.environ, "LINREP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        env["PATH"] = f"{venv}:{env['PATH']}"
        quick = _timed(
            ["linrep", "reproduce", "all", "--quick", "--out", "results", "--quiet"], root, env
        )
        llm = (
            None
            if args.skip_llm
            else _timed(["linrep", "llm", "--out", "results/llm", "--quiet"], root, env)
        )
    rec.update(
        install_s=install,
        reproduce_quick_s=quick,
        llm_cold_s=llm,
        total_min=(install + quick + (llm or 0.0)) / 60,
    )
    for k, v in rec.numbers.items():
        print(f"{k}: {v if v is None else round(v, 1)}")
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
