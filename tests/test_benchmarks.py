"""The benchmark scripts stay runnable (tiny sizes; their timings are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> tuple[str, list[str]]:
    """Stdout of ``python benchmarks/<script> <args>`` and the results files it wrote (fails the
    test on a non-zero exit); tiny runs write into a temporary folder, never over the real numbers."""
    cmd = [sys.executable, str(BENCH / script), *args]
    with tempfile.TemporaryDirectory() as results:  # tiny runs must not replace the real numbers
        env = {**os.environ, "LINREP_BENCH_RESULTS": results}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, env=env)
        written = sorted(p.name for p in Path(results).glob("*.json"))
    return out.stdout, written


def test_bench_train_runs_and_reports_its_ratios():
    out, written = _run("bench_train.py", "--steps", "20", "--naive-runs", "4")
    assert written == ["bench_train.json"]
    assert "RATIO naive / linrep" in out
    assert "linrep's step reduced to its matmul and softmax kernels" in out
    assert "(fit default), factored logits" in out  # the FLOP/s part, on fit's own path
    assert out.count("-bound: ") == 5  # every group of part 1 and part 4 classified
    assert out.count("inside element-wise kernels (") == 5  # by the profiler's op categories
    assert "start-up + linrep's own matmul and softmax kernels" in out  # part 3's ceilings
    assert (
        "written by hand as six torch kernels and the update" in out
    )  # linrep's step vs a hand-written one
    assert out.count("  round ") == 3  # interleaved rounds, each with its own ratios
    assert out.count("the most a fully fused step could reach") == 5
    assert "== 4. compute-bound group" in out


def test_bench_transformer_runs_and_reports_its_ratio():
    out, written = _run(
        "bench_transformer.py", "--rounds", "1", "--steps", "2",
        "--filing-rounds", "1", "--filing-steps", "2", "3",
    )  # fmt: skip
    assert written == ["bench_transformer.json"]
    assert out.count("RATIO previous / linrep") == 2  # train_transformer.toml and E4's setting
    assert "same math" in out and "load average" in out
    # part 2 runs the filing-time commit's CLI, or says why it cannot (a shallow clone)
    assert "== vs the filing-time code 96ee160" in out
    assert ("RATIO filing-time code / linrep" in out) != ("SKIPPED: " in out)
    trees = subprocess.run(["git", "-C", str(BENCH), "worktree", "list"], capture_output=True)
    assert b"linrep-filing-" not in trees.stdout  # its temporary worktree is gone


def test_bench_scale_runs_and_records_the_floor_ratio():
    out, written = _run("bench_scale.py", "--ms", "6", "8", "--steps", "2")
    assert "step vs its matmul floor" in out
    assert written == ["bench_scale.json"]
